#include "secret.h"

#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>

namespace stackflip {

namespace {
const std::regex& reference_pattern() {
  static const std::regex re(R"(^\$\{(env|file):([^}]+)\}$)");
  return re;
}
}  // namespace

bool is_secret_reference(const std::string& value) {
  return std::regex_match(value, reference_pattern());
}

Result<std::string> resolve_secret(const std::string& reference) {
  std::smatch m;
  if (!std::regex_match(reference, m, reference_pattern()))
    return Err("not a secret reference (expected ${env:NAME} or ${file:PATH})");
  const std::string kind = m[1], name = m[2];
  if (kind == "env") {
    const char* v = std::getenv(name.c_str());
    if (!v) return Err("secret ${env:" + name + "}: environment variable " + name + " is not set");
    return std::string(v);
  }
  std::ifstream in(name, std::ios::binary);
  if (!in) return Err("secret ${file:" + name + "}: cannot read " + name);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string v = ss.str();
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

}  // namespace stackflip
