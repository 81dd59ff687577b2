// Issue 10, items 1, 2 and 12: a commit must not own the reconciler host.
// The attacks of the security review, as a loader-level table: each config
// is refused at load time with file:line:col when a host policy is in force.
#include "config/host_policy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/loader.h"
#include "config/secret.h"
#include "config_text.h"
#include "sys/subprocess.h"

using namespace stackflip;
using stackflip::testing::edit;
using stackflip::testing::first_error;

namespace {

const std::string kBase =
    "apiVersion: stackflip/v1\n"                                                               // 1
    "providers:\n"                                                                             // 2
    "  db: {type: postgres}\n"                                                                 // 3
    "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: \"${env:PDNS_KEY}\"}\n"  // 4
    "groups:\n"                                                                                // 5
    "  shop:\n"                                                                                // 6
    "    active: primary\n"                                                                    // 7
    "    stacks:\n"                                                                            // 8
    "      primary:\n"                                                                         // 9
    "        provider: db\n"                                                                   // 10
    "        dsn: \"host=10.0.0.5 user=stackflip dbname=postgres\"\n"                          // 11
    "        address: 10.0.0.5\n"                                                              // 12
    "      standby:\n"                                                                         // 13
    "        provider: db\n"                                                                   // 14
    "        dsn: \"host=10.0.0.6 user=stackflip dbname=postgres\"\n"                          // 15
    "        address: 10.0.0.6\n"                                                              // 16
    "    traffic: {provider: dns, zone: example.com., record: shop.example.com.}\n";           // 17

HostPolicy base_policy() {
  HostPolicy p;
  p.source = "host.yaml";
  p.secrets["${env:PDNS_KEY}"] = {"http://127.0.0.1:8081"};
  return p;
}

struct Scratch {
  std::string dir;
  Scratch() {
    char tmpl[] = "/tmp/stackflip-policy-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = dir + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
};

}  // namespace

TEST_CASE("the base config loads under a policy that grants its one secret", "[host_policy]") {
  CHECK(first_error(kBase, base_policy()) == "");
}

TEST_CASE("issue 10: a command provider running /bin/sh is refused at load time", "[host_policy]") {
  std::string text = edit(kBase, "  db: {type: postgres}\n",
                          "  db: {type: postgres}\n  cmd: {type: command, commands: {observe: "
                          "[/bin/sh, -c, 'id; env > /tmp/x']}}\n");
  text = edit(text, "      standby:\n        provider: db\n",
              "      standby:\n        provider: cmd\n");
  text = edit(text, "        dsn: \"host=10.0.0.6 user=stackflip dbname=postgres\"\n", "");
  std::string e = first_error(text, base_policy());
  CHECK(e.rfind("4:", 0) == 0);
  CHECK(e.find("program `/bin/sh`") != std::string::npos);
  CHECK(e.find("not allowed on this host") != std::string::npos);
  CHECK(e.find("host.yaml") != std::string::npos);
}

TEST_CASE("issue 10: control_command must be on the host's allow-list", "[host_policy]") {
  std::string text =
      edit(kBase, "        address: 10.0.0.5\n",
           "        address: 10.0.0.5\n        control_command: [/bin/sh, -c, id]\n");
  std::string e = first_error(text, base_policy());
  CHECK(e.rfind("13:", 0) == 0);
  CHECK(e.find("/bin/sh") != std::string::npos);

  HostPolicy allowed = base_policy();
  allowed.commands = {"/usr/bin/*"};
  // /bin/sh resolves to /usr/bin/dash (or bash) on Debian 12: its real path is matched.
  CHECK(first_error(text, allowed) == "");
}

TEST_CASE("issue 10: ${file:/etc/shadow} sent to a capture server is refused", "[host_policy]") {
  std::string text = edit(kBase, "url: \"http://127.0.0.1:8081\", api_key: \"${env:PDNS_KEY}\"",
                          "url: \"http://127.0.0.1:9999\", api_key: \"${file:/etc/shadow}\"");
  std::string e = first_error(text, base_policy());
  CHECK(e.rfind("4:", 0) == 0);
  CHECK(e.find("${file:/etc/shadow}") != std::string::npos);
  CHECK(e.find("not granted") != std::string::npos);
}

TEST_CASE("issue 10: a granted secret pointed at another endpoint is refused", "[host_policy]") {
  std::string text = edit(kBase, "http://127.0.0.1:8081", "http://127.0.0.1:9999");
  std::string e = first_error(text, base_policy());
  CHECK(e.rfind("4:", 0) == 0);
  CHECK(e.find("may not be sent to http://127.0.0.1:9999") != std::string::npos);
}

TEST_CASE("issue 10: a Cloud 66 token goes only to the base_url it is bound to", "[host_policy]") {
  const std::string text =
      "apiVersion: stackflip/v1\n"
      "providers:\n"
      "  c66: {type: cloud66, token: \"${env:C66}\", base_url: \"http://127.0.0.1:7777/api/3\"}\n"
      "groups:\n"
      "  g:\n"
      "    active: a\n"
      "    stacks: {a: {provider: c66, stack_uid: aaa}, b: {provider: c66, stack_uid: bbb}}\n"
      "    traffic: {provider: c66, failover_group: fg}\n";
  HostPolicy p;
  p.secrets["${env:C66}"] = {"https://app.cloud66.com:443"};
  CHECK(first_error(text, p).find("may not be sent to http://127.0.0.1:7777") != std::string::npos);
  p.secrets["${env:C66}"].push_back("http://127.0.0.1:7777");
  CHECK(first_error(text, p) == "");
}

TEST_CASE("issue 10: a database password is bound to every server of its group", "[host_policy]") {
  std::string text =
      edit(kBase, "  db: {type: postgres}", "  db: {type: postgres, password: \"${env:PGPW}\"}");
  HostPolicy p = base_policy();
  p.secrets["${env:PGPW}"] = {"postgres://10.0.0.5:5432"};
  std::string e = first_error(text, p);
  CHECK(e.find("may not be sent to postgres://10.0.0.6:5432") != std::string::npos);
  p.secrets["${env:PGPW}"].push_back("postgres://10.0.0.6:5432");
  CHECK(first_error(text, p) == "");
}

TEST_CASE("issue 10: PGPASSWORD in stackflip's environment is bound like a reference",
          "[host_policy]") {
  ::setenv("PGPASSWORD", "ambient-secret", 1);
  std::string e = first_error(kBase, base_policy());
  HostPolicy p = base_policy();
  p.secrets["${env:PGPASSWORD}"] = {"postgres://10.0.0.5:5432", "postgres://10.0.0.6:5432"};
  std::string ok = first_error(kBase, p);
  ::unsetenv("PGPASSWORD");
  CHECK(e.rfind("11:", 0) == 0);
  CHECK(e.find("PGPASSWORD is set") != std::string::npos);
  CHECK(ok == "");
}

TEST_CASE("issue 10: DSN keywords that name host files are refused, policy or not",
          "[host_policy]") {
  for (const char* kw :
       {"passfile=/etc/shadow", "sslkey=/root/.ssh/id_rsa", "sslrootcert=/etc/x", "service=prod"}) {
    std::string text =
        edit(kBase, "host=10.0.0.5 user", std::string("host=10.0.0.5 ") + kw + " user");
    LoadResult r = load_desired_text("c.yaml", text);
    REQUIRE(!r.errors.empty());
    CHECK(r.errors[0].mark.line == 11);
    CHECK(r.errors[0].message.find("is not allowed in a DSN") != std::string::npos);
  }
}

TEST_CASE("issue 10: URLs with user:password@ are refused", "[host_policy]") {
  std::string text = edit(kBase, "http://127.0.0.1:8081", "http://u:x@127.0.0.1:8081");
  LoadResult r = load_desired_text("c.yaml", text);
  REQUIRE(!r.errors.empty());
  CHECK(r.errors[0].mark.line == 4);
  CHECK(r.errors[0].message.find("must not carry credentials") != std::string::npos);
}

TEST_CASE("issue 10: insecure TLS and ca_file are the host's to allow", "[host_policy]") {
  std::string text =
      edit(kBase, "api_key: \"${env:PDNS_KEY}\"", "api_key: \"${env:PDNS_KEY}\", insecure: true");
  CHECK(first_error(text, base_policy()).find("insecure_tls") != std::string::npos);
  text = edit(kBase, "api_key: \"${env:PDNS_KEY}\"",
              "api_key: \"${env:PDNS_KEY}\", ca_file: /etc/shadow");
  CHECK(first_error(text, base_policy()).find("file /etc/shadow is not allowed") !=
        std::string::npos);
}

TEST_CASE("without a policy, validate checks nothing host-side", "[host_policy]") {
  clear_host_policy();
  std::string text = edit(kBase, "http://127.0.0.1:8081", "http://127.0.0.1:9999");
  CHECK(load_desired_text("c.yaml", text).errors.empty());
}

TEST_CASE("the host policy file is read with positions", "[host_policy]") {
  Scratch s;
  std::string good = s.write(
      "good.yaml",
      "commands: [/usr/local/lib/stackflip/*]\n"
      "command_env: [PGPASSFILE]\n"
      "secrets:\n"
      "  \"${env:K}\": [\"HTTP://LocalHost:80/\", \"postgres://[::1]\", \"postgres:///run/pg\"]\n");
  auto p = load_host_policy(good, nullptr);
  REQUIRE(p.ok());
  CHECK(p->secrets.at("${env:K}") == std::vector<std::string>{"http://localhost:80",
                                                              "postgres://[::1]:5432",
                                                              "postgres:///run/pg:5432"});
  std::string bad = s.write("bad.yaml",
                            "commands: [relative/*]\n"
                            "secrets:\n"
                            "  literal: [http://x]\n"
                            "  \"${env:K}\": [ftp://x]\n"
                            "colour: blue\n");
  std::vector<Diagnostic> errors;
  auto b = load_host_policy(bad, &errors);
  REQUIRE(!b.ok());
  REQUIRE(errors.size() == 4);
  CHECK(errors[0].mark.line == 1);
  CHECK(errors[1].mark.line == 3);
  CHECK(errors[2].mark.line == 4);
  CHECK(errors[3].mark.line == 5);
}

TEST_CASE("issue 10: ${file:} secrets are regular files of bounded size", "[secret]") {
  Scratch s;
  CHECK(resolve_secret("${file:/dev/zero}").error().message.find("not a regular file") !=
        std::string::npos);
  std::string fifo = s.dir + "/fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  auto f = resolve_secret("${file:" + fifo + "}");  // must not hang
  CHECK(!f.ok());
  std::string big = s.write("big", std::string(kMaxSecretFileBytes + 1, 'x'));
  CHECK(resolve_secret("${file:" + big + "}").error().message.find("at most 65536 are read") !=
        std::string::npos);
  std::string ok = s.write("ok", "s3cret-value\n");
  CHECK(*resolve_secret("${file:" + ok + "}") == "s3cret-value");
}

TEST_CASE("issue 10: resolve_secret_for refuses a secret the host did not bind there", "[secret]") {
  ::setenv("SF_TEST_KEY", "value-of-key", 1);
  HostPolicy p;
  p.secrets["${env:SF_TEST_KEY}"] = {"http://127.0.0.1:8081"};
  install_host_policy(p);
  auto good = resolve_secret_for("${env:SF_TEST_KEY}", {"http://127.0.0.1:8081"});
  auto bad = resolve_secret_for("${env:SF_TEST_KEY}", {"http://127.0.0.1:9"});
  auto other = resolve_secret_for("${env:HOME}", {"http://127.0.0.1:8081"});
  clear_host_policy();
  CHECK(good.ok());
  CHECK(!bad.ok());
  CHECK(!other.ok());
  CHECK(bad.error().message.find("value-of-key") == std::string::npos);
}

TEST_CASE("issue 10: children get PATH, HOME, LANG and the named variables only", "[subprocess]") {
  ::setenv("PGPASSWORD", "must-not-leak", 1);
  ::setenv("SF_ALLOWED", "passed", 1);
  SubprocessOptions o;
  o.argv = {"env"};
  o.pass_env = {"SF_ALLOWED"};
  auto r = run_subprocess(o);
  ::unsetenv("PGPASSWORD");
  REQUIRE(r.ok());
  CHECK(r->out.find("must-not-leak") == std::string::npos);
  CHECK(r->out.find("SF_ALLOWED=passed") != std::string::npos);
  CHECK(r->out.find("PATH=") != std::string::npos);
}
