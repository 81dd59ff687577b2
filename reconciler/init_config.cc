#include "init_config.h"

#include <algorithm>
#include <cstdint>
#include <sstream>

#include "config/loader.h"
#include "core/planner.h"

namespace stackflip {

namespace {

constexpr char kHex[] = "0123456789ABCDEF";

std::string hex_byte(unsigned char c) { return {'\\', 'x', kHex[c >> 4], kHex[c & 15]}; }

// The code point of the UTF-8 sequence at `s[i]` and its length, or
// nullopt for an invalid or overlong sequence or a surrogate.
std::optional<std::pair<uint32_t, size_t>> utf8_at(const std::string& s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
  if (c >= 0xF5 || n == 0 || i + n > s.size()) return std::nullopt;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
  return std::make_pair(cp, n);
}

std::string code_point_escape(uint32_t cp) {
  std::string out = cp > 0xFFFF ? "\\U" : "\\u";
  for (int shift = cp > 0xFFFF ? 28 : 12; shift >= 0; shift -= 4) out += kHex[(cp >> shift) & 15];
  return out;
}

// Lines of YAML with the comments that explain them. A DECIDE note is both
// a comment where it applies and an entry of `decide`.
class Writer {
 public:
  void line(int indent, const std::string& text) {
    out_ << std::string(static_cast<size_t>(indent), ' ') << text << '\n';
  }
  void comment(int indent, const std::string& text) { line(indent, "# " + comment_safe(text)); }
  void decide(int indent, const std::string& text) {
    line(indent, "# DECIDE: " + comment_safe(text, 600));
    decide_.push_back(text);
  }
  std::string text() const { return out_.str(); }
  std::vector<std::string>& decisions() { return decide_; }

 private:
  std::ostringstream out_;
  std::vector<std::string> decide_;
};

bool is_primary(const InitStack& s) {
  return s.observed && s.obs.reachable && s.obs.database && s.obs.database->role == Role::primary;
}

std::optional<std::string> traffic_target(const InitFacts& f) {
  if (!f.traffic_observed || !f.traffic.reachable) return std::nullopt;
  return f.traffic.target;
}

// --- active

struct ActiveChoice {
  std::string name;
  std::string why;     // comment
  std::string decide;  // "" when the facts settle it
};

std::string list_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i)
    out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  return out;
}

ActiveChoice choose_active(const InitFacts& f) {
  std::vector<std::string> primaries;
  for (const auto& s : f.stacks)
    if (is_primary(s)) primaries.push_back(s.name);
  const auto target = traffic_target(f);
  const bool target_primary =
      target && std::find(primaries.begin(), primaries.end(), *target) != primaries.end();
  if (primaries.size() == 1) return {primaries[0], primaries[0] + " is the only primary", ""};
  if (primaries.size() > 1) {
    std::string pick = target_primary ? *target : primaries[0];
    return {pick, "",
            list_names(primaries) + " are all primaries (only one may accept writes): `active: " +
                pick + "` was chosen because " +
                (target_primary ? "the record points at it" : "it was given first") +
                ". The first plan fences the others (maintenance on); re-attaching one as a "
                "replica may need pg_rewind. Choose the one whose data must survive."};
  }
  std::string pick = target ? *target : f.stacks.front().name;
  return {pick, "",
          "no server was observed as primary: `active: " + pick + "` was chosen because " +
              (target ? "the record points at it" : "it was given first") +
              ". Find out which server holds the latest data before the first apply: it would "
              "promote the active stack."};
}

// --- stacks

std::string describe_database(const StackObs& o) {
  if (!o.database) return "database unknown";
  const DatabaseObs& db = *o.database;
  std::string out = to_string(db.role);
  if (db.upstream) out += " of " + *db.upstream;
  if (db.role == Role::replica)
    out += db.streaming.value_or(false) ? ", streaming" : ", not streaming";
  if (db.lsn) out += (db.role == Role::replica ? ", replayed to " : ", at ") + format_lsn(*db.lsn);
  if (db.timeline) out += ", timeline " + std::to_string(*db.timeline);
  if (o.maintenance) out += *o.maintenance ? ", maintenance on" : ", maintenance off";
  return out;
}

// The DECIDE note for a non-active replica whose replication differs from
// stackflip's default (streaming from the active stack); "" when it does not.
std::string replica_decision(const InitStack& s, const std::string& active) {
  const DatabaseObs& db = *s.obs.database;
  if (db.upstream == active) {
    if (db.streaming.value_or(false)) return "";
    return s.name + " is configured to replicate from " + active +
           " but is not streaming: look at its log (a diverged timeline?); the first plan "
           "re-attaches it.";
  }
  if (db.upstream)
    return s.name + " replicates from " + *db.upstream + ", not from the active stack " + active +
           ": stackflip streams from the active stack to every other, and the first plan "
           "re-points it at " +
           active + ".";
  if (!s.obs.error.empty())
    return s.name + " streams from a server that was not given (" + s.obs.error +
           "): give that server with --postgres too (hosts are compared as written: a server given "
           "under another name needs the same host in its DSN), or accept that the first plan "
           "re-points " +
           s.name + " at " + active + ".";
  return s.name + " is a replica with replication stopped (no primary_conninfo): the first plan " +
         "re-attaches it to " + active + ".";
}

// Comments and DECIDE notes of one stack; whether to write `maintenance: false`.
bool stack_notes(Writer& w, const InitStack& s, const std::string& active, bool several_primaries) {
  if (!s.observed) return false;
  if (!s.obs.reachable) {
    w.decide(8, s.name + " could not be observed (" + s.obs.error + ")" +
                    (s.obs.config_error ? ": it refused our login, give --password or a .pgpass"
                                        : ": its role is unknown") +
                    ". Run init again when it answers, or check this stack by hand.");
    return false;
  }
  w.comment(8, "observed: " + describe_database(s.obs));
  const bool replica = s.obs.database && s.obs.database->role == Role::replica;
  if (s.name == active) {
    if (s.obs.maintenance.value_or(false) && !several_primaries && is_primary(s))
      w.decide(8, s.name +
                      " is in maintenance (it refuses writes): the first plan turns "
                      "maintenance off; write `maintenance: true` here to keep it closed.");
    return false;
  }
  if (replica) {
    if (auto d = replica_decision(s, active); !d.empty()) w.decide(8, d);
  } else if (!s.obs.database || s.obs.database->role != Role::primary) {
    w.decide(8, s.name + "'s role is unknown: check it before the first apply.");
  }
  // A replica cannot accept writes whatever the flag says: stating the flag
  // it has keeps adoption a no-op. A primary that is not active is fenced
  // whatever is written (the planner's first phase), so nothing is stated.
  return replica && s.obs.maintenance == false;
}

void write_stack(Writer& w, const InitStack& s, const std::string& active, bool several_primaries) {
  w.line(6, yaml_name(s.name) + ":");
  const bool keep_open = stack_notes(w, s, active, several_primaries);
  w.line(8, "provider: db");
  w.line(8, "dsn: " + yaml_quote(s.dsn));
  if (!s.password.empty()) w.line(8, "password: " + yaml_quote(s.password));
  w.line(8, "address: " + yaml_quote(s.address) + "  # " + comment_safe(s.address_from));
  if (keep_open) {
    w.comment(8, "observed off: stated so that adopting changes nothing; remove it to keep");
    w.comment(8, "this standby in maintenance while it is not active (the default)");
    w.line(8, "maintenance: false");
  }
}

// --- traffic

std::string describe_records(const InitFacts& f) {
  std::string out;
  for (const auto& r : f.traffic.records) {
    if (!out.empty()) out += ", ";
    out += r.content + (r.stack ? " (" + *r.stack + ")" : " (no stack given)") +
           (r.disabled ? " disabled" : "");
    if (out.size() > 400) return out + ", ...";
  }
  return out;
}

void traffic_notes(Writer& w, const InitFacts& f, const std::string& active) {
  const std::string rec = f.record + " " + f.record_type;
  if (!f.zone_problem.empty())
    w.decide(6, "zone " + f.zone + " is a guess: " + f.zone_problem +
                    "; write here the zone that holds the record.");
  if (!f.traffic_observed) return;
  if (!f.traffic.reachable) {
    if (f.zone_problem.empty())
      w.decide(6, rec + " could not be read (" + f.traffic.error + ")" +
                      (f.traffic.config_error
                           ? ": fix what it names (the API key, server_id, the zone) and run "
                             "init again."
                           : ". Run init again when PowerDNS answers."));
    return;
  }
  std::string ttl = f.traffic.ttl ? ", TTL " + std::to_string(*f.traffic.ttl) : "";
  if (f.traffic.records.empty()) {
    w.decide(6, rec + " does not exist: the first plan creates it, pointing at " + active + ".");
    return;
  }
  w.comment(6, "observed: " + rec + " holds " + describe_records(f) + ttl);
  if (!f.traffic.blocker.empty()) w.decide(6, f.traffic.blocker);
  const auto stacks = traffic_stacks(f.traffic);
  if (f.traffic.target == active) return;
  if (f.traffic.target)
    w.decide(6, rec + " points at " + *f.traffic.target + ", but " + active +
                    " is active: the first plan points it at " + active +
                    " (make sure that is where clients should go).");
  else if (stacks.empty())
    w.decide(6, rec +
                    " holds the address of no stack given: give each stack's traffic address "
                    "with --address (in the order of --postgres), or accept that the first "
                    "plan points the record at " +
                    active + ".");
  else
    w.decide(6, rec + " holds the addresses of " + list_names(stacks) +
                    ": the first plan leaves only " + active + "'s.");
}

void write_traffic(Writer& w, const InitFacts& f, const std::string& active) {
  w.line(4, "traffic:");
  traffic_notes(w, f, active);
  w.line(6, "provider: dns");
  w.line(6, "zone: " + yaml_quote(f.zone));
  w.line(6, "record: " + yaml_quote(f.record));
  if (f.record_type != "A") w.line(6, "record_type: " + f.record_type);
  int ttl = f.traffic_observed && f.traffic.ttl ? *f.traffic.ttl : 60;
  w.line(6, "ttl: " + std::to_string(ttl) +
                (f.traffic_observed && f.traffic.ttl ? "  # as observed" : ""));
}

// --- the file

// Written last: it counts the decisions.
std::string header(const InitFacts& f, size_t decisions) {
  Writer w;
  w.line(0, "# yaml-language-server: $schema=" + comment_safe(f.schema, 400));
  w.line(0, "#");
  w.comment(0, "Written by `stackflip init` from what it observed" +
                   (f.observed_at.empty() ? std::string() : " at " + f.observed_at) + ".");
  if (decisions == 0) {
    w.comment(0, "It adopts the pair as it is: `stackflip plan -c FILE` says \"No changes\".");
  } else {
    w.comment(0, std::to_string(decisions) + (decisions == 1 ? " note" : " notes") +
                     " below marked `# DECIDE:` " + (decisions == 1 ? "says" : "say") +
                     " what to settle before the first apply;");
    w.comment(0, "settle each, remove its note, and plan again.");
  }
  w.comment(0, "A failover is a reviewed commit that changes `active:`.");
  return w.text();
}

void write_providers(Writer& w, const InitFacts& f) {
  w.line(0, "providers:");
  w.line(2, "db:");
  w.line(4, "type: postgres");
  if (!f.password.empty())
    w.line(4, "password: " + yaml_quote(f.password));
  else
    w.comment(4, "password: \"${env:PGPASSWORD}\"  # if the servers ask for one: a reference");
  w.comment(4, "pg_rewind: true  # lets a former primary that wrote after a switch be rewound");
  w.line(2, "dns:");
  w.line(4, "type: powerdns");
  w.line(4, "url: " + yaml_quote(f.powerdns_url));
  w.line(4, "api_key: " + yaml_quote(f.api_key));
}

void write_group(Writer& w, const InitFacts& f, const ActiveChoice& a) {
  w.line(0, "groups:");
  w.line(2, yaml_name(f.group) + ":");
  if (!a.decide.empty()) w.decide(4, a.decide);
  if (!a.why.empty()) w.comment(4, a.why + "; a failover changes this line");
  w.line(4, "active: " + yaml_name(a.name));
  w.line(4, "stacks:");
  size_t primaries = 0;
  for (const auto& s : f.stacks) primaries += is_primary(s);
  for (const auto& s : f.stacks) write_stack(w, s, a.name, primaries > 1);
  w.comment(4, "from the active stack to the others; a planned switch promotes a standby only");
  w.comment(4, "once it has replayed everything the primary wrote");
  w.line(4, "replication: {max_lag_bytes: 0}");
  write_traffic(w, f, a.name);
}

bool all_observed(const InitFacts& f) {
  if (!f.traffic_observed) return false;
  for (const auto& s : f.stacks)
    if (!s.observed) return false;
  return true;
}

// What the first plan would do, one line per action, skip or block.
std::vector<std::string> describe_plan(const Plan& p) {
  std::vector<std::string> out;
  for (const auto& [g, why] : p.config_errors) out.push_back("configuration error: " + why);
  for (const auto& [g, why] : p.blocked_groups) out.push_back("group blocked: " + why);
  for (const auto& a : p.actions)
    out.push_back(std::string(to_string(a.kind)) + " " + a.stack + ": " + a.reason +
                  (a.blocked ? " (blocked: " + a.why_blocked + ")" : ""));
  for (const auto& s : p.skipped)
    out.push_back(std::string(to_string(s.kind)) + " " + s.stack + " skipped: " + s.reason);
  return out;
}

}  // namespace

std::string yaml_quote(const std::string& text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      out += hex_byte(c);
    } else if (c >= 0x80) {
      auto cp = utf8_at(text, i);
      out += code_point_escape(cp ? cp->first : 0xFFFD);
      i += cp ? cp->second : 1;
      continue;
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  return out + "\"";
}

std::string comment_safe(const std::string& text, size_t max) {
  std::string out;
  const size_t n = std::min(text.size(), max);
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    out += c >= 0x20 && c < 0x7F ? std::string(1, static_cast<char>(c)) : hex_byte(c);
  }
  return text.size() > max ? out + "..." : out;
}

std::string yaml_name(const std::string& name) {
  static const char* const kWords[] = {"null", "true", "false", "yes", "no", "on", "off", "y", "n"};
  bool bare = !name.empty() && name[0] >= 'a' && name[0] <= 'z';
  for (char c : name)
    bare = bare && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
  for (const char* word : kWords) bare = bare && name != word;
  return bare ? name : yaml_quote(name);
}

ObservedState init_observation(const InitFacts& f) {
  ObservedState obs;
  obs.observed_at = f.observed_at;
  GroupObs& g = obs.groups[f.group];
  for (const auto& s : f.stacks) g.stacks[s.name] = s.obs;
  g.traffic = f.traffic;
  return obs;
}

InitOutput write_init_config(const InitFacts& f) {
  InitOutput out;
  if (f.stacks.empty()) {
    out.errors.push_back({Mark{"stackflip init", 0, 0}, "no servers were given"});
    return out;
  }
  Writer w;
  const ActiveChoice active = choose_active(f);
  w.line(0, "apiVersion: stackflip/v1");
  write_providers(w, f);
  write_group(w, f, active);
  out.active = active.name;
  LoadResult body = load_desired_text("stackflip init", w.text());
  if (body.desired && all_observed(f)) {
    out.first_plan = describe_plan(make_plan(*body.desired, init_observation(f)));
    // Anything the first plan would do that no note explains is a decision
    // too: "no decisions" must mean "No changes".
    if (w.decisions().empty() && !out.first_plan.empty()) {
      w.line(0, "");
      w.decide(0, "the first plan would not be \"No changes\"; it would:");
      for (const auto& step : out.first_plan) w.comment(0, "  " + step);
    }
  }
  out.yaml = header(f, w.decisions().size()) + w.text();
  out.decide = w.decisions();
  // What is printed is what is checked, header comments and all.
  LoadResult loaded = load_desired_text("stackflip init", out.yaml);
  out.desired = std::move(loaded.desired);
  out.errors = std::move(loaded.errors);
  return out;
}

}  // namespace stackflip
