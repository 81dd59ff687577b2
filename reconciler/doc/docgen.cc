// docgen — writes the man page stackflip(1) and the bash completion from the
// command table run_cli() parses with (visit_cli(), cli.h), so neither can
// list a command or option --help does not, or miss one. A build tool: the
// build runs it, the package installs what it writes; it is not installed.
//
//   stackflip-docgen man TEMPLATE OUT   TEMPLATE is reconciler/doc/stackflip.1.in
//   stackflip-docgen bash OUT           the completion, for
//                                       /usr/share/bash-completion/completions
//
// The template holds the prose (description, exit status, environment,
// files); @SYNOPSIS@, @GLOBAL_OPTIONS@, @COMMANDS@, @VERSION@ and @DATE@ are
// filled in here. Option types say how a value completes: FILE and DIR
// complete paths, "TEXT:{a,b}" (CLI::IsMember) the choices, anything else
// nothing.
#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "build_info.h"
#include "cli.h"

namespace {

using stackflip::visit_cli;

// Text for roff: backslashes and minus signs escaped, a line never starting
// with a control character, the few non-ASCII symbols the help texts use
// written as roff glyphs so the page renders in any locale.
std::string roff(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '\\') {
      out += "\\e";
    } else if (c == '-') {
      out += "\\-";
    } else if ((c == '.' || c == '\'') && (out.empty() || out.back() == '\n')) {
      out += "\\&";
      out += c;
    } else if (s.compare(i, 3, "\xe2\x80\x94") == 0) {  // em dash
      out += "\\(em";
      i += 2;
    } else if (s.compare(i, 3, "\xe2\x86\x92") == 0) {  // rightwards arrow
      out += "\\(->";
      i += 2;
    } else if (s.compare(i, 3, "\xe2\x80\xa6") == 0) {  // ellipsis
      out += "...";
      i += 2;
    } else {
      out += c;
    }
  }
  return out;
}

bool is_help(const CLI::Option* o) { return o->get_lnames() == std::vector<std::string>{"help"}; }

// "TEXT:{text,json}" -> {"text", "json"}; none for other types.
std::vector<std::string> choices(const CLI::Option* o) {
  std::string t = o->get_type_name();
  auto open = t.find(":{");
  if (open == std::string::npos || t.back() != '}') return {};
  std::vector<std::string> out;
  std::stringstream in(t.substr(open + 2, t.size() - open - 3));
  for (std::string c; std::getline(in, c, ',');) out.push_back(c);
  return out;
}

bool takes_value(const CLI::Option* o) { return o->get_expected_max() > 0; }
bool repeatable(const CLI::Option* o) { return o->get_expected_max() > 1; }

// How the value is named: its type, or the choices joined by "|".
std::string value_name(const CLI::Option* o) {
  auto c = choices(o);
  if (c.empty()) return o->get_type_name();
  std::string s;
  for (const auto& x : c) s += (s.empty() ? "" : "|") + x;
  return s;
}

std::vector<std::string> names(const CLI::Option* o) {
  std::vector<std::string> n;
  for (const auto& s : o->get_snames()) n.push_back("-" + s);
  for (const auto& l : o->get_lnames()) n.push_back("--" + l);
  return n;
}

// One option as a .TP paragraph: "-c, --config FILE (required)".
void man_option(std::ostream& out, const CLI::Option* o) {
  out << ".TP\n";
  if (o->get_positional()) {
    out << "\\fI" << roff(o->get_name(true)) << "\\fR" << (repeatable(o) ? "..." : "");
  } else {
    std::string sep;
    for (const auto& n : names(o)) {
      out << sep << "\\fB" << roff(n) << "\\fR";
      sep = ", ";
    }
    if (takes_value(o)) out << " \\fI" << roff(value_name(o)) << "\\fR";
    if (repeatable(o) && takes_value(o)) out << " (repeatable)";
  }
  if (o->get_required()) out << " (required)";
  out << "\n" << roff(o->get_description()) << "\n";
}

// "stackflip plan -c FILE [options]": the required options and positionals.
std::string synopsis(const CLI::App* sub) {
  std::string s = "\\fBstackflip " + roff(sub->get_name()) + "\\fR";
  bool optional = false;
  for (const CLI::Option* o : sub->get_options()) {
    if (is_help(o)) continue;
    if (o->get_positional()) {
      std::string p = "\\fI" + roff(o->get_name(true)) + "\\fR" + (repeatable(o) ? "..." : "");
      s += " " + (o->get_required() ? p : "[" + p + "]");
    } else if (o->get_required()) {
      s += " \\fB" + roff(names(o).front()) + "\\fR \\fI" + roff(value_name(o)) + "\\fR";
    } else {
      optional = true;
    }
  }
  if (optional) s += " [\\fIoptions\\fR]";
  return s;
}

void replace(std::string& s, const std::string& key, const std::string& value) {
  auto at = s.find(key);
  if (at == std::string::npos) throw std::runtime_error("template lacks " + key);
  s.replace(at, key.size(), value);
}

std::string man_page(const CLI::App& app, const std::string& tmpl) {
  std::ostringstream syn, global, commands;
  for (const CLI::App* sub : app.get_subcommands({})) {
    syn << ".br\n" << synopsis(sub) << "\n";
    commands << ".SS \"" << sub->get_name() << "\"\n"
             << synopsis(sub) << "\n.PP\n"
             << roff(sub->get_description()) << ".\n";
    for (const CLI::Option* o : sub->get_options())
      if (!is_help(o)) man_option(commands, o);
  }
  for (const CLI::Option* o : app.get_options()) man_option(global, o);
  std::string page = tmpl;
  replace(page, "@SYNOPSIS@\n", syn.str());
  replace(page, "@GLOBAL_OPTIONS@\n", global.str());
  replace(page, "@COMMANDS@\n", commands.str());
  replace(page, "@VERSION@", STACKFLIP_VERSION);
  replace(page, "@DATE@", stackflip::build_date());
  return page;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

// Options that take a value, as case patterns "cmd:--opt", with how the
// value completes.
void value_cases(std::ostream& out, const std::string& cmd, const CLI::App& app) {
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_positional() || !takes_value(o)) continue;
    std::string pattern;
    for (const auto& n : names(o)) pattern += (pattern.empty() ? "" : "|") + cmd + ":" + n;
    auto c = choices(o);
    std::string t = o->get_type_name();
    std::string action = !c.empty()        ? "_stackflip_words \"" + join(c) + "\""
                         : t == "FILE"     ? "_stackflip_paths -f"
                         : t == "DIR"      ? "_stackflip_paths -d"
                                           : "COMPREPLY=()";
    out << "    " << pattern << ") " << action << "; return ;;\n";
  }
}

std::string completion(const CLI::App& app) {
  std::ostringstream out, values, words, positional;
  std::vector<std::string> top;
  for (const CLI::Option* o : app.get_options())
    for (const auto& n : names(o)) top.push_back(n);
  std::vector<std::string> subs;
  for (const CLI::App* sub : app.get_subcommands({})) subs.push_back(sub->get_name());
  value_cases(values, "", app);
  for (const CLI::App* sub : app.get_subcommands({})) {
    // Global options come before the command: after it they are not parsed.
    value_cases(values, sub->get_name(), *sub);
    std::vector<std::string> opts;
    for (const CLI::Option* o : sub->get_options()) {
      for (const auto& n : names(o)) opts.push_back(n);
      if (o->get_positional())
        positional << "    " << sub->get_name() << ") _stackflip_paths -f; return ;;\n";
    }
    words << "    " << sub->get_name() << ") _stackflip_words \"" << join(opts) << "\" ;;\n";
  }
  out << "# bash completion for stackflip(1). Generated from the command table by\n"
         "# stackflip-docgen (reconciler/doc/docgen.cc); do not edit.\n"
         "_stackflip_words() {\n"
         "  mapfile -t COMPREPLY < <(compgen -W \"$1\" -- \"$cur\")\n"
         "}\n"
         "_stackflip_paths() {\n"
         "  compopt -o filenames 2>/dev/null\n"
         "  mapfile -t COMPREPLY < <(compgen \"$1\" -- \"$cur\")\n"
         "}\n"
         "_stackflip() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} cmd= i\n"
         "  COMPREPLY=()\n"
         "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
         "    case ${COMP_WORDS[i]} in\n"
         "    "
      << [&] {
           std::string s;
           for (const auto& x : subs) s += (s.empty() ? "" : "|") + x;
           return s;
         }()
      << ") cmd=${COMP_WORDS[i]}; break ;;\n"
         "    esac\n"
         "  done\n"
         "  # The value of the option before the cursor.\n"
         "  case $cmd:$prev in\n"
      << values.str()
      << "  esac\n"
         "  if [[ -z $cmd ]]; then\n"
         "    _stackflip_words \""
      << join(top) << (top.empty() ? "" : " ") << join(subs)
      << "\"\n"
         "    return\n"
         "  fi\n"
         "  if [[ $cur != -* ]]; then\n"
         "    case $cmd in\n"
      << positional.str()
      << "    esac\n"
         "  fi\n"
         "  case $cmd in\n"
      << words.str()
      << "  esac\n"
         "}\n"
         "complete -F _stackflip stackflip\n";
  return out.str();
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  if (!((mode == "man" && argc == 4) || (mode == "bash" && argc == 3))) {
    std::cerr << "usage: stackflip-docgen man TEMPLATE OUT | bash OUT\n";
    return 1;
  }
  try {
    std::string text;
    if (mode == "man") {
      std::ifstream in(argv[2]);
      if (!in) throw std::runtime_error(std::string("cannot read ") + argv[2]);
      std::stringstream tmpl;
      tmpl << in.rdbuf();
      visit_cli([&](const CLI::App& app) { text = man_page(app, tmpl.str()); });
    } else {
      visit_cli([&](const CLI::App& app) { text = completion(app); });
    }
    const char* path = argv[argc - 1];
    std::ofstream out(path, std::ios::trunc);
    out << text;
    out.close();
    if (!out) throw std::runtime_error(std::string("cannot write ") + path);
  } catch (const std::exception& e) {
    std::cerr << "stackflip-docgen: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
