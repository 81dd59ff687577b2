#include "drivers/pgbouncer_entry.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>

#include "config/conninfo.h"
#include "sys/safe_file.h"
#include "util/strings.h"

namespace stackflip {

namespace {

// Characters a host or port may have in a PgBouncer connection string
// written unquoted: names, IPv4, IPv6 and socket folders, nothing that
// could end the value or the line.
bool plain_value(const std::string& v) {
  if (v.empty() || v.size() > 255) return false;
  for (char c : v)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ||
          c == ':' || c == '/'))
      return false;
  return true;
}
// "key=value key='quoted value'" as PgBouncer reads a database entry.
std::map<std::string, std::string> parse_connstr(const std::string& s) {
  std::map<std::string, std::string> out;
  size_t i = 0;
  auto skip = [&] {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  };
  for (;;) {
    skip();
    if (i >= s.size()) return out;
    size_t k = i;
    while (i < s.size() && s[i] != '=' && !std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    std::string key = s.substr(k, i - k);
    skip();
    if (i >= s.size() || s[i] != '=') return out;  // not key=value: stop reading
    ++i;
    skip();
    std::string value;
    if (i < s.size() && s[i] == '\'') {
      for (++i; i < s.size(); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) {
          value += s[++i];
        } else if (s[i] == '\'') {
          if (i + 1 < s.size() && s[i + 1] == '\'') {
            value += '\'';
            ++i;
          } else {
            ++i;
            break;
          }
        } else {
          value += s[i];
        }
      }
    } else {
      while (i < s.size() && !std::isspace(static_cast<unsigned char>(s[i]))) value += s[i++];
    }
    out[key] = value;
  }
}
}  // namespace

bool same_pgbouncer_entry(const PgBouncerEntry& a, const PgBouncerEntry& b) {
  return to_lower(a.host) == to_lower(b.host) && a.port == b.port && a.dbname == b.dbname;
}
std::string pgbouncer_entry_text(const PgBouncerEntry& e, const std::string& dbname) {
  const bool v6 = e.host.find(':') != std::string::npos && e.host[0] != '/';
  std::string out = (v6 ? "[" + e.host + "]" : e.host) + ":" + e.port;
  if (e.dbname != dbname) out += "/" + e.dbname;
  return out;
}

Result<PgBouncerEntry> pgbouncer_entry_of(const StackSpec& stack, const std::string& dbname) {
  const char* key = stack.get("dsn").empty() ? "database_dsn" : "dsn";
  const std::string dsn = stack.get(key);
  if (dsn.empty())
    return Err("stack " + stack.name +
               " has no dsn: PgBouncer traffic points at the server a stack's dsn names");
  auto c = parse_dsn(dsn);
  if (!c.ok()) return Err("stack " + stack.name + " " + key + ": " + c.error().message);
  if (c->endpoints.size() != 1)
    return Err("stack " + stack.name + " " + key + " names " + std::to_string(c->endpoints.size()) +
               " servers; a PgBouncer entry points at exactly one");
  std::string hp = c->endpoints.front().substr(std::string("postgres://").size());
  const size_t colon = hp.rfind(':');
  PgBouncerEntry e{hp.substr(0, colon), hp.substr(colon + 1), dbname};
  if (e.host.size() > 2 && e.host.front() == '[' && e.host.back() == ']')
    e.host = e.host.substr(1, e.host.size() - 2);
  if (!plain_value(e.host) || !plain_value(e.port))
    return Err("stack " + stack.name + " " + key + ": host '" + escape_control(e.host) +
               "' cannot be written into a PgBouncer entry (letters, digits, '.', '-', '_', ':' "
               "and '/' only)");
  return e;
}

std::string pgbouncer_databases_file(const std::string& database, const PgBouncerEntry& e) {
  return "; Written by stackflip: the one PgBouncer database entry it manages (traffic of "
         "database " +
         database +
         "). It is replaced whole at every switch; keep other entries in another file.\n"
         "[databases]\n" +
         database + " = host=" + e.host + " port=" + e.port + " dbname=" + e.dbname + "\n";
}

std::optional<PgBouncerEntry> parse_pgbouncer_databases_file(const std::string& text,
                                                             const std::string& database) {
  bool in_databases = false;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string line = trim(std::string_view(text).substr(start, end - start));
    start = end + 1;
    if (line.empty() || line[0] == ';' || line[0] == '#' || line[0] == '%') continue;
    if (line[0] == '[') {
      const size_t close = line.find(']');
      in_databases =
          close != std::string::npos && to_lower(trim(line.substr(1, close - 1))) == "databases";
      continue;
    }
    if (!in_databases) continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos || trim(line.substr(0, eq)) != database) continue;
    auto kv = parse_connstr(line.substr(eq + 1));
    PgBouncerEntry e{kv.count("host") ? kv["host"] : "", kv.count("port") ? kv["port"] : "5432",
                     kv.count("dbname") ? kv["dbname"] : database};
    return e;
  }
  return std::nullopt;
}
Status replace_pgbouncer_databases_file(const std::string& path, const std::string& text) {
  const size_t slash = path.rfind('/');
  if (path.empty() || path[0] != '/' || slash == std::string::npos || slash + 1 == path.size())
    return Err("databases_file " + path + ": not an absolute file path");
  const std::string dir = slash == 0 ? "/" : path.substr(0, slash);
  const std::string name = path.substr(slash + 1);
  const std::string what = "cannot write databases_file " + path;
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0) return Err(what + ": folder " + dir + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{dfd};
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  mode_t mode = 0644;
  struct stat st {};
  if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
    if (S_ISLNK(st.st_mode)) return Err(what + ": it is a symbolic link: refused (name the file)");
    if (!S_ISREG(st.st_mode)) return Err(what + ": it is not a regular file: refused");
    if (uid == 0) uid = st.st_uid, gid = st.st_gid, mode = st.st_mode & 0777;
  } else if (errno != ENOENT) {
    return Err(what + ": " + std::strerror(errno));
  }
  const std::string temp = "." + name + ".stackflip-new";
  if (::unlinkat(dfd, temp.c_str(), 0) != 0 && errno != ENOENT)
    return Err(what + ": removing the leftover " + temp + ": " + std::strerror(errno));
  if (Status s = write_file_as_owner(dfd, temp, text, uid, gid, WriteMode::kCreate, mode); !s.ok())
    return Err(what + ": " + s.message());
  if (::renameat(dfd, temp.c_str(), dfd, name.c_str()) != 0) {
    const int e = errno;
    ::unlinkat(dfd, temp.c_str(), 0);
    return Err(what + ": rename: " + std::strerror(e));
  }
  ::fsync(dfd);
  return Status::Ok();
}

}  // namespace stackflip
