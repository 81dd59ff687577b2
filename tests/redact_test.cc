// Issue 10, item 8: redaction that is hard to get around. Every variant the
// security review used to leak a secret through /status and notifications.
#include "util/redact.h"

#include <catch2/catch.hpp>
#include <string>

using namespace stackflip;

namespace {
bool leaks(const std::string& text, const std::string& secret) {
  return redact(text).find(secret) != std::string::npos;
}
}  // namespace

TEST_CASE("issue 10: credential-shaped text is masked in every spelling", "[redact]") {
  const std::string x = "hunter2x";
  for (const std::string& t :
       {"password: " + x, "\"password\":\"" + x + "\"", "PASSWORD = " + x, "password=" + x,
        "postgres://u:" + x + "@db:5432/x", "X-API-Key: " + x, "pwd=" + x, "Bearer\t" + x,
        "bearer " + x, "Authorization: Bearer " + x, "Authorization: Basic " + x, "password%3D" + x,
        "access_token=" + x, "{\"api_key\": \"" + x + "\"}", "secret='" + x + "'", "token:\t" + x,
        "https://" + x + "@git.example.com/repo", "private_key = \"" + x + "\"",
        "{\"error\": \"\\\"token\\\":\\\"" + x + "\\\"\"}"}) {
    INFO(t);
    CHECK(leaks(t, x) == false);
  }
}

TEST_CASE("references and ordinary text are kept", "[redact]") {
  CHECK(redact("api_key: ${env:PDNS_API_KEY}") == "api_key: ${env:PDNS_API_KEY}");
  CHECK(redact("\"password\":\"${file:/run/pw}\"") == "\"password\":\"${file:/run/pw}\"");
  CHECK(redact("the standby is behind by 120 bytes") == "the standby is behind by 120 bytes");
  CHECK(redact("secrets: granted") == "secrets: granted");
  CHECK(redact("http://127.0.0.1:8081/api/v1") == "http://127.0.0.1:8081/api/v1");
}

TEST_CASE("issue 10: a resolved secret is masked wherever it appears", "[redact]") {
  const std::string v = "Zq9/secret+value";
  CHECK(redact("server said: " + v) == "server said: " + v);  // not remembered yet
  remember_secret_value(v);
  CHECK(!leaks("server said: " + v + " (status 401)", v));
  CHECK(!leaks("echo Zq9%2Fsecret%2Bvalue in a URL", "Zq9%2Fsecret%2Bvalue"));
  CHECK(!leaks("lower zq9 Zq9%2fsecret%2bvalue", "Zq9%2fsecret%2bvalue"));
  remember_secret_value("ab");  // too short to be told from text
  CHECK(redact("a tab") == "a tab");
}
