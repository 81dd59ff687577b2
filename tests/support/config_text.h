// config_text.h — editing a config's text and loading it, for the tests of
// what the loader says about it.
#pragma once

#include <catch2/catch.hpp>
#include <string>

#include "config/host_policy.h"
#include "config/loader.h"

namespace stackflip::testing {

// `text` with the first `find` replaced; the test stops when there is none.
inline std::string edit(std::string text, const std::string& find, const std::string& replace) {
  auto pos = text.find(find);
  REQUIRE(pos != std::string::npos);
  return text.replace(pos, find.size(), replace);
}

// "line:col: message" of the first error loading `text` (under `policy`,
// when given), "" when it loads.
inline std::string first_error(const std::string& text, const HostPolicy* policy = nullptr) {
  if (policy) install_host_policy(*policy);
  LoadResult r = load_desired_text("c.yaml", text);
  clear_host_policy();
  if (r.errors.empty()) return "";
  const auto& e = r.errors.front();
  return std::to_string(e.mark.line) + ":" + std::to_string(e.mark.column) + ": " + e.message;
}
inline std::string first_error(const std::string& text, const HostPolicy& policy) {
  return first_error(text, &policy);
}

}  // namespace stackflip::testing
