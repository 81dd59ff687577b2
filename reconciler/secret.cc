#include "secret.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "host_policy.h"
#include "redact.h"

namespace stackflip {

namespace {

// Splits "${kind:name}"; false when `value` is not exactly one reference.
bool split_reference(const std::string& value, std::string& kind, std::string& name) {
  for (const char* k : {"env", "file"}) {
    std::string open = std::string("${") + k + ":";
    if (value.size() > open.size() + 1 && value.compare(0, open.size(), open) == 0 && value.back() == '}') {
      name = value.substr(open.size(), value.size() - open.size() - 1);
      if (name.empty() || name.find('}') != std::string::npos) return false;
      kind = k;
      return true;
    }
  }
  return false;
}

Result<std::string> read_secret_file(const std::string& path) {
  const std::string what = "secret ${file:" + path + "}: ";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Err(what + "cannot read " + path + ": " + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Err(what + path + " is not a regular file");
  }
  if (st.st_size > static_cast<off_t>(kMaxSecretFileBytes)) {
    ::close(fd);
    return Err(what + path + " is larger than " + std::to_string(kMaxSecretFileBytes) + " bytes");
  }
  std::string v(kMaxSecretFileBytes + 1, '\0');
  size_t got = 0;
  while (got < v.size()) {
    ssize_t n = ::read(fd, v.data() + got, v.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  if (got > kMaxSecretFileBytes)
    return Err(what + path + " is larger than " + std::to_string(kMaxSecretFileBytes) + " bytes");
  v.resize(got);
  return v;
}

}  // namespace

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
    auto f = read_secret_file(name);
    if (!f.ok()) return f.error();
    v = std::move(*f);
  }
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  remember_secret_value(v);
  return v;
}

Result<std::string> resolve_secret_for(const std::string& reference, const std::vector<std::string>& origins) {
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
