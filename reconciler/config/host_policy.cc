#include "config/host_policy.h"

#include <fcntl.h>
#include <fnmatch.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "config/secret.h"
#include "config/yaml_doc.h"
#include "util/strings.h"

namespace stackflip {

namespace {

std::unique_ptr<HostPolicy>& installed() {
  static std::unique_ptr<HostPolicy> p;
  return p;
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 5) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  const int port = parse_int(s, 0);
  return port > 0 && port <= 65535;
}

// Splits "host:port" / "[v6]:port" / "host"; host lower-cased, brackets kept.
Result<std::pair<std::string, std::string>> split_host_port(const std::string& hp,
                                                            const std::string& default_port,
                                                            const std::string& what) {
  std::string host, port;
  if (!hp.empty() && hp[0] == '[') {
    size_t close = hp.find(']');
    if (close == std::string::npos) return Err(what + ": unclosed '[' in the host");
    host = hp.substr(0, close + 1);
    std::string rest = hp.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Err(what + ": expected ':port' after the IPv6 address");
      port = rest.substr(1);
    }
  } else {
    size_t colon = hp.rfind(':');
    host = colon == std::string::npos ? hp : hp.substr(0, colon);
    if (colon != std::string::npos) port = hp.substr(colon + 1);
  }
  if (host.empty()) return Err(what + ": no host");
  if (port.empty()) port = default_port;
  if (!all_digits(port)) return Err(what + ": bad port '" + port + "'");
  return std::pair{to_lower(host), std::to_string(parse_int(port, 0))};
}

}  // namespace

Result<std::string> url_origin(const std::string& url) {
  size_t sep = url.find("://");
  if (sep == std::string::npos)
    return Err("'" + url + "' is not a URL (expected http:// or https://)");
  std::string scheme = to_lower(url.substr(0, sep));
  std::string default_port = scheme == "http" ? "80" : scheme == "https" ? "443" : "";
  if (default_port.empty())
    return Err("'" + url.substr(0, sep) + "://' is not allowed (expected http:// or https://)");
  std::string rest = url.substr(sep + 3);
  std::string authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.find('@') != std::string::npos)
    return Err("a URL must not carry credentials (user:password@); give secrets as references");
  for (char c : authority)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '\\')
      return Err("the URL's host contains a space or a control character");
  for (char c : rest)  // the path too: it goes into the request line as written
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f)
      return Err("the URL contains a space or a control character (percent-encode it)");
  auto hp = split_host_port(authority, default_port, "URL");
  if (!hp.ok()) return hp.error();
  return scheme + "://" + hp->first + ":" + hp->second;
}

std::string postgres_origin(const std::string& host, const std::string& port) {
  std::string h = to_lower(host);
  if (h.find(':') != std::string::npos && h[0] != '[' && h[0] != '/') h = "[" + h + "]";
  return "postgres://" + h + ":" + (port.empty() ? "5432" : port);
}

Result<std::string> normalize_endpoint(const std::string& endpoint) {
  const std::string pg = "postgres://";
  if (to_lower(endpoint.substr(0, pg.size())) == pg) {
    std::string rest = endpoint.substr(pg.size());
    if (!rest.empty() && rest[0] == '/') {  // a socket folder: postgres:///run/postgresql:5432
      size_t colon = rest.rfind(':');
      std::string port = colon == std::string::npos ? "5432" : rest.substr(colon + 1);
      if (!all_digits(port)) return Err("endpoint '" + endpoint + "': bad port");
      return postgres_origin(colon == std::string::npos ? rest : rest.substr(0, colon), port);
    }
    if (rest.find('@') != std::string::npos || rest.find('/') != std::string::npos)
      return Err("endpoint '" + endpoint + "': expected postgres://host:port");
    auto hp = split_host_port(rest, "5432", "endpoint '" + endpoint + "'");
    if (!hp.ok()) return hp.error();
    return "postgres://" + hp->first + ":" + hp->second;
  }
  auto o = url_origin(endpoint);
  if (!o.ok()) return Err("endpoint '" + endpoint + "': " + o.error().message);
  std::string rest = endpoint.substr(endpoint.find("://") + 3);
  if (rest.find_first_of("/?#") != std::string::npos &&
      rest.substr(rest.find_first_of("/?#")) != "/")
    return Err("endpoint '" + endpoint + "': an origin has no path (write scheme://host:port)");
  return *o;
}

bool HostPolicy::health_allowed(const std::string& origin) const {
  return std::find(health_urls.begin(), health_urls.end(), origin) != health_urls.end();
}

bool HostPolicy::pgbouncer_file_allowed(const std::string& path) const {
  return std::find(pgbouncer_files.begin(), pgbouncer_files.end(), path) != pgbouncer_files.end();
}

Result<std::string> HostPolicy::allow_command(const std::string& program) const {
  std::string path;
  if (program.empty()) return Err("an empty program name");
  if (program.find('/') == std::string::npos) {
    const char* env = std::getenv("PATH");
    std::string dirs = env ? env : "/usr/local/bin:/usr/bin:/bin";
    size_t start = 0;
    while (start <= dirs.size()) {
      size_t end = dirs.find(':', start);
      if (end == std::string::npos) end = dirs.size();
      std::string dir = dirs.substr(start, end - start);
      std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
      if (::access(candidate.c_str(), X_OK) == 0) {
        path = candidate;
        break;
      }
      start = end + 1;
    }
    if (path.empty()) return Err("program `" + program + "` is not found in PATH");
  } else {
    path = program;
  }
  char real[PATH_MAX];
  if (!::realpath(path.c_str(), real))
    return Err("program `" + program + "`: " + std::strerror(errno));
  struct stat st {};
  if (::stat(real, &st) != 0 || !S_ISREG(st.st_mode))
    return Err("program `" + program + "` is not a regular file");
  for (const auto& glob : commands)
    if (::fnmatch(glob.c_str(), real, 0) == 0) return std::string(real);
  std::string list;
  for (const auto& g : commands) list += (list.empty() ? "" : ", ") + g;
  return Err(
      "program `" + program + "` (" + real + ") is not allowed on this host: " +
      (commands.empty() ? "the host policy allows no programs" : "the host policy allows " + list) +
      " (" + describe() + "; add it to `commands:` there or pass --allow-command)");
}

bool HostPolicy::secret_allowed(const std::string& reference, const std::string& origin) const {
  auto it = secrets.find(reference);
  if (it == secrets.end()) return false;
  for (const auto& o : it->second)
    if (o == origin) return true;
  return false;
}

std::string HostPolicy::describe() const {
  return source.empty() ? "no host policy file is in force: give one with --host-config, "
                          "STACKFLIP_HOST_CONFIG or /etc/stackflip/host.yaml"
                        : "host policy " + source;
}

Result<HostPolicy> load_host_policy(const std::string& path, std::vector<Diagnostic>* errors) {
  auto fail = [&](int line, int col, const std::string& msg) -> Error {
    if (errors) errors->push_back({Mark{path, line, col}, msg});
    return Err(path + ":" + std::to_string(line) + ":" + std::to_string(col) + ": error: " + msg);
  };
  auto read = read_regular_file(path, 64 * 1024);
  if (!read.ok()) return fail(0, 0, "cannot read the host policy: " + read.error().message);
  const std::string& text = *read;

  YamlParse parsed = parse_yaml(path, text);
  if (!parsed.doc) {
    if (errors) errors->insert(errors->end(), parsed.errors.begin(), parsed.errors.end());
    return Err(format_diagnostics(parsed.errors));
  }
  const YamlDocument& doc = *parsed.doc;
  HostPolicy p;
  p.source = path;
  std::vector<Diagnostic> found = parsed.errors;
  auto error = [&](const std::string& ptr, const std::string& msg, bool key = false) {
    found.push_back({key ? doc.key_mark_of(ptr) : doc.mark_of(ptr), msg});
  };
  if (!doc.json.IsObject()) {
    error("",
          "the host policy is a mapping (commands, command_env, secrets, files, health_urls, "
          "pgbouncer_files, insecure_tls)");
  } else {
    for (const auto& m : doc.json.GetObject()) {
      const std::string key = m.name.GetString();
      const std::string ptr = pointer_append("", key);
      auto string_list = [&](std::vector<std::string>& out, const char* what) {
        if (!m.value.IsArray()) return error(ptr, key + " is a list of " + what);
        for (rapidjson::SizeType i = 0; i < m.value.Size(); ++i) {
          const auto& v = m.value[i];
          if (!v.IsString() || v.GetStringLength() == 0)
            error(ptr + "/" + std::to_string(i), "expected " + std::string(what));
          else
            out.push_back(v.GetString());
        }
      };
      if (key == "commands") {
        string_list(p.commands, "absolute program paths or globs");
        for (size_t i = 0; i < p.commands.size(); ++i)
          if (p.commands[i][0] != '/')
            error(ptr + "/" + std::to_string(i), "a command glob must be an absolute path");
      } else if (key == "command_env") {
        string_list(p.command_env, "environment variable names");
      } else if (key == "files") {
        string_list(p.files, "absolute file paths");
        for (size_t i = 0; i < p.files.size(); ++i)
          if (p.files[i][0] != '/')
            error(ptr + "/" + std::to_string(i), "a file must be an absolute path");
      } else if (key == "health_urls") {
        if (!m.value.IsArray()) {
          error(ptr, "health_urls is a list of origins (http://host:port or https://host:port)");
          continue;
        }
        for (rapidjson::SizeType i = 0; i < m.value.Size(); ++i) {
          const auto& v = m.value[i];
          auto o = v.IsString() ? normalize_endpoint(v.GetString())
                                : Result<std::string>(Err("expected an origin string"));
          if (o.ok() && o->rfind("postgres://", 0) == 0)
            o = Err("a health check origin is http://host:port or https://host:port");
          if (!o.ok())
            error(ptr + "/" + std::to_string(i), o.error().message);
          else
            p.health_urls.push_back(*o);
        }
      } else if (key == "pgbouncer_files") {
        // Exact paths, compared as written: one spelling per file, so a
        // config cannot reach another file through "..", "." or "//".
        string_list(p.pgbouncer_files, "absolute file paths");
        for (size_t i = 0; i < p.pgbouncer_files.size(); ++i) {
          const std::string& f = p.pgbouncer_files[i];
          const bool plain = f[0] == '/' && f.back() != '/' && f.find("//") == std::string::npos &&
                             f.find("/./") == std::string::npos &&
                             f.find("/../") == std::string::npos &&
                             f.substr(f.size() - std::min<size_t>(f.size(), 3)) != "/.." &&
                             f.substr(f.size() - std::min<size_t>(f.size(), 2)) != "/.";
          if (!plain)
            error(ptr + "/" + std::to_string(i),
                  "a PgBouncer file is an absolute path to a file, without '.', '..' or '//'");
        }
      } else if (key == "insecure_tls") {
        if (!m.value.IsBool())
          error(ptr, "insecure_tls is true or false");
        else
          p.insecure_tls = m.value.GetBool();
      } else if (key == "secrets") {
        if (!m.value.IsObject()) {
          error(ptr,
                "secrets maps each reference (${env:NAME} or ${file:PATH}) to the endpoints it may "
                "be sent to");
          continue;
        }
        for (const auto& s : m.value.GetObject()) {
          const std::string ref = s.name.GetString();
          const std::string sp = pointer_append(ptr, ref);
          if (!is_secret_reference(ref)) {
            error(sp,
                  "'" + ref + "' is not a secret reference (expected ${env:NAME} or ${file:PATH})",
                  true);
            continue;
          }
          auto& origins = p.secrets[ref];
          if (!s.value.IsArray()) {
            error(sp,
                  "expected a list of endpoints (http://host:port, https://host:port, "
                  "postgres://host:port)");
            continue;
          }
          for (rapidjson::SizeType i = 0; i < s.value.Size(); ++i) {
            const auto& v = s.value[i];
            auto o = v.IsString() ? normalize_endpoint(v.GetString())
                                  : Result<std::string>(Err("expected an endpoint string"));
            if (!o.ok())
              error(sp + "/" + std::to_string(i), o.error().message);
            else
              origins.push_back(*o);
          }
        }
      } else {
        error(ptr,
              "unknown key '" + key +
                  "' (expected commands, command_env, secrets, files, health_urls, "
                  "pgbouncer_files, insecure_tls)",
              true);
      }
    }
  }
  if (!found.empty()) {
    sort_diagnostics(found);
    if (errors) errors->insert(errors->end(), found.begin(), found.end());
    return Err(format_diagnostics(found));
  }
  return p;
}

const HostPolicy* host_policy() { return installed().get(); }
void install_host_policy(HostPolicy policy) {
  installed() = std::make_unique<HostPolicy>(std::move(policy));
}
void clear_host_policy() { installed().reset(); }

}  // namespace stackflip
