#include "config/secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "config/host_policy.h"
#include "util/redact.h"

namespace stackflip {

namespace {

// Splits "${kind:name}"; false when `value` is not exactly one reference.
bool split_reference(const std::string& value, std::string& kind, std::string& name) {
  for (const char* k : {"env", "file"}) {
    std::string open = std::string("${") + k + ":";
    if (value.size() > open.size() + 1 && value.compare(0, open.size(), open) == 0 &&
        value.back() == '}') {
      name = value.substr(open.size(), value.size() - open.size() - 1);
      if (name.empty() || name.find('}') != std::string::npos) return false;
      kind = k;
      return true;
    }
  }
  return false;
}

}  // namespace

Result<std::string> read_regular_file(const std::string& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Err(path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Err(path + " is not a regular file");
  }
  auto too_large = [&](size_t size) {
    return Err(path + " is " + std::to_string(size) + " bytes; at most " +
               std::to_string(max_bytes) + " are read");
  };
  if (static_cast<size_t>(st.st_size) > max_bytes) {
    ::close(fd);
    return too_large(static_cast<size_t>(st.st_size));
  }
  // The size may change while it is read: never more than max_bytes + 1.
  std::string v(static_cast<size_t>(st.st_size) + 1, '\0');
  size_t got = 0;
  while (got < v.size()) {
    ssize_t n = ::read(fd, v.data() + got, v.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
    if (got == v.size() && v.size() <= max_bytes) v.resize(std::min(v.size() * 2, max_bytes + 1));
  }
  ::close(fd);
  if (got > max_bytes) return too_large(got);
  v.resize(got);
  return v;
}

bool is_secret_reference(const std::string& value) {
  std::string kind, name;
  return split_reference(value, kind, name);
}

Result<std::string> resolve_secret(const std::string& reference) {
  std::string kind, name;
  if (!split_reference(reference, kind, name))
    return Err("not a secret reference (expected ${env:NAME} or ${file:PATH})");
  std::string v;
  if (kind == "env") {
    const char* e = std::getenv(name.c_str());
    if (!e) return Err("secret ${env:" + name + "}: environment variable " + name + " is not set");
    v = e;
  } else {
    auto f = read_regular_file(name, kMaxSecretFileBytes);
    if (!f.ok()) return Err("secret ${file:" + name + "}: " + f.error().message);
    v = std::move(*f);
  }
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  remember_secret_value(v);
  return v;
}

Result<std::string> resolve_secret_for(const std::string& reference,
                                       const std::vector<std::string>& origins) {
  if (const HostPolicy* p = host_policy()) {
    if (!p->secret_granted(reference))
      return Err("secret " + reference + " is not granted on this host (" + p->describe() + ")");
    for (const auto& o : origins)
      if (!p->secret_allowed(reference, o))
        return Err("secret " + reference + " may not be sent to " + o + " (" + p->describe() + ")");
  }
  return resolve_secret(reference);
}

}  // namespace stackflip
