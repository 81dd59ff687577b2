// The GitOps pass on a real local Git repository (made by the test with the
// git CLI) and the fake drivers: switches by commit, invalid commits, idle
// passes, force-pushes, signatures; plus the run loop's small pieces.
#include <httplib.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "fake_provider.h"
#include "gitops/coordination.h"
#include "gitops/git_source.h"
#include "gitops/last_known.h"
#include "gitops/metrics.h"
#include "gitops/notify.h"
#include "gitops/reconcile.h"
#include "gitops/server.h"
#include "sys/subprocess.h"
#include "util/digest.h"

using namespace stackflip;
using namespace stackflip::testing;

namespace {

std::string config(const std::string& active) {
  return "apiVersion: stackflip/v1\n"
         "providers:\n"
         "  db: {type: postgres}\n"
         "  dns: {type: powerdns, url: \"http://127.0.0.1:8081\", api_key: "
         "\"${env:PDNS_API_KEY}\"}\n"
         "groups:\n"
         "  shop:\n"
         "    active: " +
         active +
         "\n"
         "    stacks:\n"
         "      primary: {provider: db, dsn: \"host=127.0.0.1\", address: 127.0.0.1}\n"
         "      standby: {provider: db, dsn: \"host=127.0.0.2\", address: 127.0.0.2}\n"
         "    traffic: {provider: dns, zone: example.test., record: shop.example.test.}\n";
}

std::string run(std::vector<std::string> argv, const std::string& cwd = "") {
  if (!cwd.empty()) argv.insert(argv.begin() + 1, {"-C", cwd});
  SubprocessOptions so;
  so.argv = argv;
  so.pass_env = {"GNUPGHOME"};  // children get a minimal environment (issue 10)
  auto r = run_subprocess(so);
  REQUIRE(r.ok());
  INFO(r->err);
  REQUIRE(r->exit_code == 0);
  return trim_output(r->out);
}

// A work repository the "operators" commit to, a state store and a cache.
struct Repo {
  std::filesystem::path dir;
  std::string work, state, cache;
  FakeWorld world;
  FakeDriverFactory factory{world};
  std::unique_ptr<StateStore> journal;

  Repo() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "stackflip-gitops-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    work = (dir / "work").string();
    state = (dir / "state.db").string();
    cache = (dir / "cache").string();
    run({"git", "init", "-q", "-b", "main", work});
    run({"git", "config", "user.email", "ops@example.test"}, work);
    run({"git", "config", "user.name", "Ops"}, work);
    run({"git", "config", "commit.gpgsign", "false"}, work);
    journal = std::move(*StateStore::open(state));
    world.stacks["shop"]["primary"] = FakeStack{true, false, Role::primary, "", 100, 1};
    world.stacks["shop"]["standby"] = FakeStack{true, true, Role::replica, "primary", 100, 1};
    world.traffic["shop"] = FakeTraffic{true, "primary", 60};
  }
  ~Repo() { std::filesystem::remove_all(dir); }

  std::string commit(const std::string& text, std::vector<std::string> extra = {}) {
    std::ofstream(work + "/stackflip.yaml", std::ios::trunc) << text;
    run({"git", "add", "stackflip.yaml"}, work);
    std::vector<std::string> argv = {"git"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    for (auto s : {"commit", "-q", "-m", "change"}) argv.push_back(s);
    run(argv, work);
    return run({"git", "rev-parse", "HEAD"}, work);
  }
  GitSourceOptions source_options(const std::string& url = "") const {
    GitSourceOptions o;
    o.url = url.empty() ? "file://" + work : url;
    o.cache_dir = cache;
    return o;
  }
};

ReconcileSettings fast_settings() {
  ReconcileSettings s;
  s.apply.action_timeout = std::chrono::milliseconds(500);
  s.apply.wait_timeout = std::chrono::milliseconds(500);
  return s;
}

}  // namespace

TEST_CASE("a commit flipping active makes the next reconcile perform the switch") {
  Repo r;
  std::string first = r.commit(config("primary"));
  GitSource src(r.source_options());
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  PassReport p1 = rec.pass();
  CHECK(p1.run.result == "no-changes");
  CHECK(p1.exit_code == 0);
  CHECK(p1.run.commit == first);
  CHECK(p1.converged());

  std::string second = r.commit(config("standby"));
  PassReport p2 = rec.pass();
  CHECK(p2.run.result == "applied");
  CHECK(p2.exit_code == 0);
  CHECK(p2.run.commit == second);
  CHECK(r.world.traffic["shop"].target == "standby");
  CHECK(r.world.stacks["shop"]["standby"].role == Role::primary);
  CHECK(p2.groups.at("shop").converged);
  auto h = r.journal->history(100);
  REQUIRE(h.ok());
  REQUIRE(!h->empty());
  for (const auto& e : *h) CHECK(e.origin == second);
  CHECK(**r.journal->get("gitops.commit") == second);
}

TEST_CASE("a pass that leaves a step skipped because its stack is down is not converged") {
  Repo r;
  r.commit(config("standby"));
  r.world.stacks["shop"]["primary"].up = false;  // e.g. left stopped by a failed re-attach
  r.world.stacks["shop"]["standby"] = FakeStack{true, false, Role::primary, "", 200, 2};
  r.world.traffic["shop"].target = "standby";
  GitSource src(r.source_options());
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  PassReport p = rec.pass();
  CHECK(p.groups.at("shop").drift == 0);
  CHECK_FALSE(p.groups.at("shop").converged);
  CHECK_FALSE(p.converged());
  CHECK(**r.journal->get("gitops.converged") == "0");

  r.world.stacks["shop"]["primary"] = FakeStack{true, true, Role::replica, "standby", 200, 2};
  CHECK(rec.pass().converged());
}

namespace {
// The fenced old primary writes (background) WAL right after replication into
// the standby stopped, once: the promotion's guard then finds the plan stale.
class WritesAfterStop : public StackDriver {
 public:
  WritesAfterStop(std::unique_ptr<StackDriver> inner, FakeStack& old_primary)
      : inner_(std::move(inner)), old_primary_(old_primary) {}
  StackObs observe() override { return inner_->observe(); }
  Status set_maintenance(bool on) override { return inner_->set_maintenance(on); }
  Status stop_replication() override {
    Status s = inner_->stop_replication();
    if (!fired_) old_primary_.lsn += 50;
    fired_ = true;
    return s;
  }
  Status promote() override { return inner_->promote(); }
  Status start_replication(const StackSpec& src) override { return inner_->start_replication(src); }

 private:
  std::unique_ptr<StackDriver> inner_;
  FakeStack& old_primary_;
  bool fired_ = false;
};
}  // namespace

TEST_CASE("a pass whose plan goes stale mid-switch plans again and converges") {
  Repo r;
  r.commit(config("primary"));
  GitSource src(r.source_options());
  r.factory.wrap_stack = [&](std::unique_ptr<StackDriver> d,
                             const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "standby") return d;
    return std::make_unique<WritesAfterStop>(std::move(d), r.world.stacks["shop"]["primary"]);
  };
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  REQUIRE(rec.pass().converged());
  r.commit(config("standby"));
  PassReport p = rec.pass();
  CHECK(p.run.result == "applied");
  CHECK(p.exit_code == 0);
  CHECK(p.converged());
  CHECK(r.world.stacks["shop"]["standby"].role == Role::primary);
  CHECK(r.world.traffic["shop"].target == "standby");
  // The second plan resumed replication so the standby caught up first.
  CHECK(std::count(r.world.calls.begin(), r.world.calls.end(),
                   "replication.start shop/standby from primary") == 1);
}

TEST_CASE("an idle pass neither re-reads the config nor applies anything") {
  Repo r;
  r.commit(config("primary"));
  GitSource src(r.source_options());
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  CHECK_FALSE(rec.pass().idle);
  r.world.calls.clear();
  PassReport p = rec.pass();
  CHECK(p.idle);
  CHECK(p.run.result == "no-changes");
  CHECK(r.world.calls.empty());

  SECTION("a fresh process restores the commit in force from the state store") {
    GitSource src2(r.source_options());
    Reconciler rec2(src2, *r.journal, r.factory, real_clock(), fast_settings());
    CHECK(rec2.pass().idle);
  }
}

TEST_CASE("a broken commit applies nothing, records the error and keeps the last valid commit") {
  Repo r;
  std::string good = r.commit(config("primary"));
  GitSource src(r.source_options());
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  REQUIRE(rec.pass().exit_code == 0);
  std::string bad = r.commit(config("standby") + "  oops: [unclosed\n");
  r.world.stacks["shop"]["standby"].maintenance = false;  // drift meanwhile
  PassReport p = rec.pass();
  CHECK(p.exit_code == 1);
  CHECK(p.run.result == "invalid");
  CHECK(p.run.commit == bad);
  CHECK(p.commit_in_force == good);
  CHECK(p.run.error.find("stackflip.yaml:") != std::string::npos);
  // Nothing of the bad commit applied; the drift corrected against the good one.
  CHECK(r.world.traffic["shop"].target == "primary");
  CHECK(r.world.stacks["shop"]["standby"].maintenance);
  CHECK(**r.journal->get("gitops.commit") == good);
  auto runs = r.journal->runs(1);
  REQUIRE(runs->size() == 1);
  CHECK(runs->front().result == "invalid");
  auto lg = r.journal->last_good_run();
  CHECK((*lg)->commit == good);
}

TEST_CASE("the first commit being invalid observes and applies nothing") {
  Repo r;
  r.commit("apiVersion: stackflip/v1\ngroups: 3\n");
  GitSource src(r.source_options());
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  PassReport p = rec.pass();
  CHECK(p.exit_code == 1);
  CHECK(p.run.result == "invalid");
  CHECK_FALSE(p.observed);
}

TEST_CASE("git source errors: unreachable repository, missing branch, missing file") {
  Repo r;
  std::string head = r.commit(config("primary"));
  {
    GitSource src(r.source_options((r.dir / "nowhere").string()));
    auto h = src.fetch();
    REQUIRE_FALSE(h.ok());
    CHECK(h.error().message.find("cannot fetch") != std::string::npos);
  }
  {
    auto o = r.source_options();
    o.ref = "release";
    GitSource src(o);
    auto h = src.fetch();
    REQUIRE_FALSE(h.ok());
    CHECK(h.error().message == "branch 'release' not found in file://" + r.work);
  }
  GitSource src(r.source_options(r.work));  // a plain local path works too
  REQUIRE(src.fetch().ok());
  auto f = src.read_file(head, "missing.yaml");
  REQUIRE_FALSE(f.ok());
  CHECK(f.error().message.find("missing.yaml does not exist at commit") == 0);
}

TEST_CASE("a force-push moves the branch to the new head") {
  Repo r;
  r.commit(config("primary"));
  std::string old = r.commit(config("standby"));
  GitSource src(r.source_options());
  CHECK(*src.fetch() == old);
  run({"git", "reset", "-q", "--hard", "HEAD~1"}, r.work);
  std::string rewritten = r.commit(config("primary") + "# rewritten\n");
  CHECK(*src.fetch() == rewritten);
  CHECK(src.read_file(rewritten, "stackflip.yaml")->find("# rewritten") != std::string::npos);
}

TEST_CASE("with signatures required, only commits signed by a trusted SSH key are applied") {
  Repo r;
  std::string key = (r.dir / "key").string(), other = (r.dir / "other").string();
  run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", key});
  run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stranger", "-f", other});
  std::string pub;
  std::getline(std::ifstream(key + ".pub"), pub);
  std::string signers = (r.dir / "allowed_signers").string();
  std::ofstream(signers) << "ops@example.test " << pub << "\n";
  auto signing = [](const std::string& k) {
    return std::vector<std::string>{"-c", "gpg.format=ssh",     "-c", "user.signingkey=" + k,
                                    "-c", "commit.gpgsign=true"};
  };
  ReconcileSettings s = fast_settings();
  s.require_signed = true;
  s.trust.allowed_signers = signers;
  GitSource src(r.source_options());
  Reconciler rec(src, *r.journal, r.factory, real_clock(), s);

  r.commit(config("primary"), signing(key));
  CHECK(rec.pass().run.result == "no-changes");

  r.commit(config("standby"));  // unsigned
  PassReport p = rec.pass();
  CHECK(p.exit_code == 1);
  CHECK(p.run.error.find("is not signed") != std::string::npos);
  CHECK(r.world.traffic["shop"].target == "primary");

  r.commit(config("standby") + "# by a stranger\n", signing(other));
  p = rec.pass();
  CHECK(p.exit_code == 1);
  CHECK(p.run.error.find("not in " + signers) != std::string::npos);
  CHECK(r.world.traffic["shop"].target == "primary");

  r.commit(config("standby") + "# signed\n", signing(key));
  p = rec.pass();
  CHECK(p.run.result == "applied");
  CHECK(r.world.traffic["shop"].target == "standby");
}

TEST_CASE("a commit adopted before signatures were required is not trusted after a restart") {
  Repo r;
  r.commit(config("primary"));
  GitSource plain_src(r.source_options());
  Reconciler plain(plain_src, *r.journal, r.factory, real_clock(), fast_settings());
  REQUIRE(plain.pass().run.result == "no-changes");
  ReconcileSettings s = fast_settings();
  s.require_signed = true;
  s.trust.allowed_signers = (r.dir / "allowed_signers").string();
  GitSource src(r.source_options());
  Reconciler strict(src, *r.journal, r.factory, real_clock(), s);
  PassReport p = strict.pass();
  CHECK_FALSE(p.idle);
  CHECK(p.run.result == "invalid");
  CHECK(p.run.error.find("is not signed") != std::string::npos);
  CHECK_FALSE(p.observed);
}

TEST_CASE("webhook signatures are GitHub's X-Hub-Signature-256") {
  std::string body = R"({"ref":"refs/heads/main"})";
  std::string good = "sha256=" + hmac_sha256_hex("s3cret", body);
  CHECK(webhook_signature_ok("s3cret", body, good));
  CHECK_FALSE(webhook_signature_ok("other", body, good));
  CHECK_FALSE(webhook_signature_ok("s3cret", body + " ", good));
  CHECK_FALSE(webhook_signature_ok("s3cret", body, good.substr(7)));
  CHECK_FALSE(webhook_signature_ok("s3cret", body, ""));
  CHECK_FALSE(webhook_signature_ok("", body, "sha256=" + hmac_sha256_hex("", body)));
}

TEST_CASE("durations for --interval") {
  CHECK(*parse_duration("30s") == std::chrono::milliseconds(30000));
  CHECK(*parse_duration("5m") == std::chrono::milliseconds(300000));
  CHECK(*parse_duration("250ms") == std::chrono::milliseconds(250));
  CHECK(*parse_duration("2") == std::chrono::milliseconds(2000));
  CHECK_FALSE(parse_duration("soon").ok());
  CHECK_FALSE(parse_duration("0s").ok());
}

TEST_CASE("a second process cannot take the state lock") {
  Repo r;
  auto first = StateLock::acquire(r.state);
  REQUIRE(first.ok());
  // flock locks belong to the open file description: a second open conflicts.
  auto second = StateLock::acquire(r.state);
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().message.find("another stackflip process (pid " + std::to_string(getpid())) ==
        0);
  first->reset();
  CHECK(StateLock::acquire(r.state).ok());
}

TEST_CASE("metrics and status describe the last pass") {
  PassReport p;
  p.run.result = "applied";
  p.run.commit = "abc";
  p.run.duration_ms = 30;
  GroupStatus& shop = p.groups["shop"];
  shop.active = "standby";
  shop.converged = true;
  shop.drift = 6;
  shop.traffic = "standby";
  shop.outcome = GroupOutcome::switched;
  shop.steps = 6;
  shop.seconds = 0.4123;
  GroupStatus& blog = p.groups["blog"];
  blog.active = "ams";
  blog.outcome = GroupOutcome::failed;
  blog.reason = "database.promote ams: refused";
  Metrics m;
  m.record(p, 1700000000);
  std::string text = m.prometheus();
  CHECK(text.find("stackflip_reconcile_total 1\n") != std::string::npos);
  CHECK(text.find("stackflip_reconcile_duration_seconds_bucket{le=\"0.05\"} 1\n") !=
        std::string::npos);
  CHECK(text.find("stackflip_reconcile_duration_seconds_bucket{le=\"0.025\"} 0\n") !=
        std::string::npos);
  CHECK(text.find("stackflip_group_active_stack{group=\"shop\",stack=\"standby\"} 1") !=
        std::string::npos);
  CHECK(text.find("stackflip_group_drift_actions{group=\"shop\"} 6") != std::string::npos);
  CHECK(text.find("stackflip_last_success_timestamp_seconds 1.7e+09") != std::string::npos);
  std::string js = status_json(&p, "repo@main");
  CHECK(js.find(
            R"("shop":{"active":"standby","converged":true,"drift_actions":6,"traffic":"standby",)"
            R"("outcome":"switched","steps":6,"seconds":0.412,"reason":null,"config_error":false,)"
            R"("outage":null,"decision":null,"override":null}})") != std::string::npos);
  // issue 11: the pass summary names each group's outcome.
  CHECK(
      js.find(
          R"("outcome":"failed","steps":0,"seconds":0.0,"reason":"database.promote ams: refused",)"
          R"("config_error":false,"outage":null,"decision":null,"override":null})") !=
      std::string::npos);
  CHECK(format_group_outcomes(p, true) ==
        "  blog: failed: database.promote ams: refused\n  shop: switched, 6 steps in 0.412 s\n");
  p.groups["wiki"].active = "a";
  CHECK(format_group_outcomes(p, false) ==
        "  blog: failed: database.promote ams: refused\n  shop: switched, 6 steps in 0.412 s\n"
        "  (1 other group converged)\n");
}

TEST_CASE("notifications post Slack-compatible JSON without secrets") {
  httplib::Server srv;
  std::string got;
  srv.Post("/hook", [&](const httplib::Request& req, httplib::Response& res) {
    got = req.body;
    res.set_content("ok", "text/plain");
  });
  int port = srv.bind_to_any_port("127.0.0.1");
  std::thread t([&] { srv.listen_after_bind(); });
  setenv("STACKFLIP_TEST_HOOK", ("http://127.0.0.1:" + std::to_string(port) + "/hook").c_str(), 1);
  WebhookNotifier n("${env:STACKFLIP_TEST_HOOK}");
  n.notify("failed", "apply \"x\" failed: password=hunter2\n");
  srv.stop();
  t.join();
  CHECK(got == R"({"text":"apply \"x\" failed: password=***\n"})");
}

TEST_CASE("with an OpenPGP keyring, only commits signed by a key in it are applied") {
  Repo r;
  std::string home = (r.dir / "gnupg").string();
  std::filesystem::create_directory(home);
  std::filesystem::permissions(home, std::filesystem::perms::owner_all);
  setenv("GNUPGHOME", home.c_str(), 1);  // for gpg and for git's signing
  for (const char* uid : {"Ops <ops@example.test>", "Stranger <stranger@example.test>"})
    run({"gpg", "--batch", "--quiet", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign",
         "never"});
  std::string keyring = (r.dir / "trusted.gpg").string();
  run({"gpg", "--batch", "--quiet", "--output", keyring, "--export", "ops@example.test"});
  auto signing = [](const std::string& who) {
    return std::vector<std::string>{"-c", "gpg.format=openpgp", "-c", "user.signingkey=" + who,
                                    "-c", "commit.gpgsign=true"};
  };
  ReconcileSettings s = fast_settings();
  s.require_signed = true;
  s.trust.gpg_keyring = keyring;
  GitSource src(r.source_options());
  Reconciler rec(src, *r.journal, r.factory, real_clock(), s);

  r.commit(config("primary"), signing("ops@example.test"));
  PassReport p = rec.pass();
  INFO(p.run.error);
  CHECK(p.run.result == "no-changes");

  r.commit(config("standby"), signing("stranger@example.test"));
  p = rec.pass();
  CHECK(p.exit_code == 1);
  CHECK(p.run.error.find("not in " + keyring) != std::string::npos);
  CHECK(r.world.traffic["shop"].target == "primary");

  SECTION("an SSH-signed commit needs an allowed-signers file") {
    CommitSignature ssh{"-----BEGIN SSH SIGNATURE-----\n...", "data"};
    Status v = verify_commit_signature("0123456789abcdef", ssh, s.trust);
    CHECK(v.message() ==
          "commit 0123456789ab has an SSH signature but no --allowed-signers file is configured");
  }
  run({"gpgconf", "--kill", "all"});
  unsetenv("GNUPGHOME");
}

// ------------------------------------------------------------------ issue 10

namespace {
struct RecordingNotifier : Notifier {
  std::vector<std::pair<std::string, std::string>> sent;
  void notify(const std::string& event, const std::string& text) override {
    sent.emplace_back(event, text);
  }
};

// Two trusted commits, A (primary active) then B (standby active), B in force.
struct SignedHistory {
  Repo r;
  std::string key, signers, a, b;
  SignedHistory() {
    key = (r.dir / "key").string();
    run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", key});
    std::string pub;
    std::getline(std::ifstream(key + ".pub"), pub);
    signers = (r.dir / "allowed_signers").string();
    std::ofstream(signers) << "ops@example.test " << pub << "\n";
    a = r.commit(config("primary"), signing());
    b = r.commit(config("standby"), signing());
  }
  std::vector<std::string> signing() const {
    return {"-c", "gpg.format=ssh", "-c", "user.signingkey=" + key, "-c", "commit.gpgsign=true"};
  }
  ReconcileSettings settings(bool allow_rewind = false) const {
    ReconcileSettings s = fast_settings();
    s.require_signed = true;
    s.trust.allowed_signers = signers;
    s.allow_rewind = allow_rewind;
    return s;
  }
};
}  // namespace

TEST_CASE("issue 10: a force-push back to an older signed commit is refused and notified") {
  SignedHistory h;
  Repo& r = h.r;
  run({"git", "reset", "-q", "--hard", h.a}, r.work);  // A is the first pass's head
  GitSource src(r.source_options());
  RecordingNotifier notes;
  Reconciler rec(src, *r.journal, r.factory, real_clock(), h.settings(), &notes);
  PassReport p = rec.pass();
  REQUIRE(p.run.result == "no-changes");  // the first pass ever accepts the head
  run({"git", "reset", "-q", "--hard", h.b}, r.work);
  p = rec.pass();
  REQUIRE(p.run.result == "applied");  // B descends from A
  REQUIRE(r.world.traffic["shop"].target == "standby");
  CHECK(rec.pass().idle);  // the commit in force seen again is fine

  run({"git", "reset", "-q", "--hard", h.a}, r.work);  // the rollback, signed all right
  p = rec.pass();
  INFO(p.run.error);
  CHECK(p.exit_code == 1);
  CHECK(p.run.result == "invalid");
  CHECK(p.run.commit == h.a);
  CHECK(p.commit_in_force == h.b);
  CHECK(p.run.error.find("does not descend from the commit in force " + h.b.substr(0, 12)) !=
        std::string::npos);
  CHECK(p.run.error.find("--allow-rewind") != std::string::npos);
  CHECK(r.world.traffic["shop"].target == "standby");
  CHECK(r.world.stacks["shop"]["standby"].role == Role::primary);
  CHECK(**r.journal->get("gitops.commit") == h.b);
  REQUIRE(notes.sent.size() == 2);  // applied B, then the refusal
  CHECK(notes.sent.back().first == "failed");
  CHECK(notes.sent.back().second.find("does not descend") != std::string::npos);
  CHECK(rec.pass().run.result == "invalid");
  CHECK(notes.sent.size() == 2);  // told once

  SECTION("a fresh process restores B and refuses A all the same") {
    GitSource src2(r.source_options());
    Reconciler rec2(src2, *r.journal, r.factory, real_clock(), h.settings());
    PassReport p2 = rec2.pass();
    CHECK(p2.run.result == "invalid");
    CHECK(p2.commit_in_force == h.b);
  }
  SECTION("so is unrelated history, and a fresh cache that never saw B") {
    run({"git", "checkout", "-q", "--orphan", "other"}, r.work);
    std::string unrelated = r.commit(config("primary") + "# new history\n", h.signing());
    run({"git", "branch", "-q", "-f", "main", unrelated}, r.work);
    std::filesystem::remove_all(r.cache);
    GitSource src2(r.source_options());
    Reconciler rec2(src2, *r.journal, r.factory, real_clock(), h.settings());
    PassReport p2 = rec2.pass();
    CHECK(p2.run.result == "invalid");
    CHECK(p2.run.error.find("does not descend") != std::string::npos);
    CHECK(r.world.traffic["shop"].target == "standby");
  }
}

TEST_CASE("issue 10: --allow-rewind adopts one rewind, and the next one is refused again") {
  SignedHistory h;
  Repo& r = h.r;
  GitSource src(r.source_options());
  {
    Reconciler first(src, *r.journal, r.factory, real_clock(), h.settings());
    REQUIRE(first.pass().exit_code == 0);  // B in force: switched to the standby
  }
  REQUIRE(**r.journal->get("gitops.commit") == h.b);
  run({"git", "reset", "-q", "--hard", h.a}, r.work);
  Reconciler rec(src, *r.journal, r.factory, real_clock(), h.settings(/*allow_rewind=*/true));
  PassReport p = rec.pass();
  INFO(p.run.error);
  CHECK(p.exit_code == 0);
  CHECK(p.commit_in_force == h.a);
  CHECK(**r.journal->get("gitops.commit") == h.a);
  CHECK(r.world.traffic["shop"].target == "primary");

  std::string c = r.commit(config("primary") + "# c\n", h.signing());
  CHECK(rec.pass().commit_in_force == c);  // descends: fine
  run({"git", "reset", "-q", "--hard", h.a}, r.work);
  p = rec.pass();
  CHECK(p.run.result == "invalid");  // the flag was good for one rewind
  CHECK(p.commit_in_force == c);
}

TEST_CASE("issue 10: a state store that cannot be written is counted and shown") {
  Repo r;
  r.commit(config("primary"));
  GitSource src(r.source_options());
  RecordingNotifier notes;
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings(), &notes);
  Metrics m;
  PassReport p = rec.pass();
  m.record(p, 1700000000);
  REQUIRE(p.state_store_error.empty());
  REQUIRE(r.journal->refuse_writes_for_testing(true).ok());
  p = rec.pass();
  m.record(p, 1700000100);
  CHECK(p.run.result == "no-changes");  // the pass still reconciled
  CHECK(p.exit_code == 1);
  CHECK(p.state_store_error.find("read-only") != std::string::npos);
  CHECK(p.run.error.find("state store: ") != std::string::npos);
  std::string text = m.prometheus();
  CHECK(text.find("stackflip_state_store_errors_total 1\n") != std::string::npos);
  CHECK(text.find("stackflip_reconcile_errors_total 1\n") != std::string::npos);
  CHECK(text.find("stackflip_last_success_timestamp_seconds 1.7e+09\n") != std::string::npos);
  std::string js = status_json(&p, "repo@main");
  CHECK(js.find("\"state_store_error\":\"") != std::string::npos);
  CHECK(js.find("read-only") != std::string::npos);
  REQUIRE(notes.sent.size() == 1);
  CHECK(notes.sent[0].second.find("state store") != std::string::npos);

  REQUIRE(r.journal->refuse_writes_for_testing(false).ok());
  p = rec.pass();
  m.record(p, 1700000200);
  CHECK(p.exit_code == 0);
  CHECK(p.state_store_error.empty());
  CHECK(m.prometheus().find("stackflip_state_store_errors_total 1\n") != std::string::npos);
  CHECK(status_json(&p, "repo@main").find("\"state_store_error\":null") != std::string::npos);
}

TEST_CASE("issue 10: the Git cache keeps no credentials, they reach the server by callback") {
  Repo r;
  CHECK(split_url_credentials("https://x-access-token:s%40cret@git.example/o/r.git").url ==
        "https://git.example/o/r.git");
  CHECK(split_url_credentials("https://x-access-token:s%40cret@git.example/o/r.git").password ==
        "s@cret");
  CHECK(split_url_credentials("ssh://git:pw@host/r.git").url == "ssh://git@host/r.git");
  CHECK(split_url_credentials("git@host:o/r.git").url == "git@host:o/r.git");

  // A server that asks for Basic credentials: what libgit2 sends back.
  httplib::Server srv;
  std::string auth;
  srv.Get(".*", [&](const httplib::Request& req, httplib::Response& res) {
    if (req.has_header("Authorization")) auth = req.get_header_value("Authorization");
    res.status = 401;
    res.set_header("WWW-Authenticate", "Basic realm=\"git\"");
  });
  int port = srv.bind_to_any_port("127.0.0.1");
  std::thread t([&] { srv.listen_after_bind(); });
  std::string clean = "http://127.0.0.1:" + std::to_string(port) + "/o/r.git";
  // An older stackflip left the credential URL in the cache's config.
  run({"git", "init", "-q", "--bare", r.cache});
  run({"git", "--git-dir", r.cache, "remote", "add", "origin",
       "http://ops:hunter2@127.0.0.1:" + std::to_string(port) + "/o/r.git"});
  std::filesystem::permissions(r.cache, std::filesystem::perms::all);
  {
    GitSource src(
        r.source_options("http://ops:hunter2@127.0.0.1:" + std::to_string(port) + "/o/r.git"));
    auto h = src.fetch();
    CHECK_FALSE(h.ok());
    CHECK(h.error().message.find("hunter2") == std::string::npos);
  }
  srv.stop();
  t.join();
  CHECK(auth == "Basic b3BzOmh1bnRlcjI=");  // ops:hunter2
  std::stringstream cfg;
  cfg << std::ifstream(r.cache + "/config").rdbuf();
  CHECK(cfg.str().find("hunter2") == std::string::npos);
  // No remote is kept in the cache at all (fetch uses an in-memory one):
  // an old cache's `origin` with the credential URL is dropped.
  CHECK(cfg.str().find("url =") == std::string::npos);
  (void)clean;
  struct stat sb;
  REQUIRE(::stat(r.cache.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0700);
  REQUIRE(::stat((r.cache + "/config").c_str(), &sb) == 0);
  CHECK((sb.st_mode & 0777) == 0600);
}

TEST_CASE(
    "issue 12: an SSH host key on another port is looked up as bracketed host:port, as OpenSSH "
    "files it") {
  CHECK(known_hosts_name("ssh://git@git.example:2222/o/r.git", "git.example") ==
        "[git.example]:2222");
  CHECK(known_hosts_name("ssh://git.example:2222/r.git", "git.example") == "[git.example]:2222");
  CHECK(known_hosts_name("git+ssh://git@127.0.0.1:10022/r.git", "127.0.0.1") ==
        "[127.0.0.1]:10022");
  CHECK(known_hosts_name("ssh://git@[::1]:2222/r.git", "::1") == "[::1]:2222");
  CHECK(known_hosts_name("ssh://git@git.example:22/r.git", "git.example") == "git.example");
  CHECK(known_hosts_name("ssh://git@git.example/r.git", "git.example") == "git.example");
  CHECK(known_hosts_name("git@git.example:o/r.git", "git.example") ==
        "git.example");  // scp-like: no port
  CHECK(known_hosts_name("https://git.example:8443/r.git", "git.example") == "git.example");
}

TEST_CASE(
    "issue 12: ssh-keygen finds a key filed under bracketed host:port, hashed or not, by that name "
    "only") {
  if (std::system("command -v ssh-keygen >/dev/null 2>&1") != 0) return;
  char dir_template[] = "/tmp/stackflip-kh-XXXXXX";
  REQUIRE(mkdtemp(dir_template));
  const std::string dir = dir_template, kh = dir + "/known_hosts";
  const std::string key = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
  {
    std::ofstream f(kh);
    f << "[127.0.0.1]:10022 ssh-ed25519 " << key << "\n";
  }
  auto find = [&](const std::string& name) {
    std::string cmd =
        "ssh-keygen -F '" + name + "' -f " + kh + " 2>/dev/null | grep -q '" + key + "'";
    return std::system(cmd.c_str()) == 0;
  };
  CHECK(find(known_hosts_name("ssh://git@127.0.0.1:10022/r.git", "127.0.0.1")));
  CHECK_FALSE(find("127.0.0.1"));  // the bare host, as the lookup was before
  REQUIRE(std::system(("ssh-keygen -H -f " + kh + " >/dev/null 2>&1").c_str()) == 0);  // hash it
  CHECK(find(known_hosts_name("ssh://git@127.0.0.1:10022/r.git", "127.0.0.1")));
  std::filesystem::remove_all(dir);
}

namespace {
// A stack whose provider rejects our credentials (Error::config).
class RejectsCredentials : public StackDriver {
 public:
  StackObs observe() override {
    StackObs s;
    s.error = "Cloud 66 rejected the token from ${env:T} (HTTP 401): invalid token";
    s.config_error = true;
    return s;
  }
  Status set_maintenance(bool) override { return ConfigError("rejected"); }
  Status stop_replication() override { return ConfigError("rejected"); }
  Status promote() override { return ConfigError("rejected"); }
  Status start_replication(const StackSpec&) override { return ConfigError("rejected"); }
};
}  // namespace

TEST_CASE(
    "issue 12: a pass meeting rejected credentials fails with exit 1, named in /status and "
    "metrics") {
  Repo r;
  r.commit(config("standby"));  // a switch is wanted; the standby's credentials are rejected
  r.factory.wrap_stack = [](std::unique_ptr<StackDriver> d,
                            const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack == "standby") return std::make_unique<RejectsCredentials>();
    return d;
  };
  GitSource src(r.source_options());
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  PassReport p = rec.pass();
  CHECK(p.exit_code == 1);  // not 3: exit 3 is a safety guard's alone
  CHECK(p.run.result == "failed");
  CHECK(p.run.error.find("group shop: configuration error: stack standby: Cloud 66 rejected") !=
        std::string::npos);
  const GroupStatus& shop = p.groups.at("shop");
  CHECK(shop.config_error);
  CHECK(shop.outcome == GroupOutcome::failed);
  CHECK(shop.reason.rfind("configuration error: ", 0) == 0);
  CHECK(format_group_outcomes(p, false).find("shop: failed: configuration error: stack standby") !=
        std::string::npos);
  std::string js = status_json(&p, "repo@main");
  CHECK(js.find(R"("config_error":true)") != std::string::npos);
  CHECK(js.find("unreachable") == std::string::npos);
  Metrics m;
  m.record(p, 1700000000);
  std::string text = m.prometheus();
  CHECK(text.find("stackflip_group_config_error{group=\"shop\"} 1\n") != std::string::npos);
  CHECK(text.find("stackflip_reconcile_errors_total 1\n") != std::string::npos);
  CHECK(text.find("stackflip_reconcile_blocked_total 0\n") != std::string::npos);
  CHECK(r.world.calls.empty());  // nothing was done to the primary either
}

namespace {

// Two instances' view of etcd, in memory: the shared commit, and who leads
// which group. Each instance journals to and remembers in its own store.
struct SharedEtcd {
  std::string commit;
  std::map<std::string, std::string> leader;                              // group → instance
  std::map<std::string, std::string> live;                                // instance → site
  std::map<std::string, std::map<std::string, WitnessVerdict>> verdicts;  // group → instance →
  std::map<std::string, int64_t> auto_failover;                           // group → epoch ms
  std::map<std::string, std::string> overrides;                           // group → JSON
};

class MemoryCoordination : public Coordination {
 public:
  MemoryCoordination(SharedEtcd& etcd, std::string instance, StateStore& store)
      : etcd_(etcd), instance_(std::move(instance)), store_(store), memory_(store) {}
  void set_groups(const std::vector<GroupSite>&) override {}
  bool leads(const std::string& group, std::string* why) override {
    bool mine = etcd_.leader[group] == instance_;
    if (!mine && why) *why = "led by " + etcd_.leader[group];
    return mine;
  }
  ActionLog& journal() override { return store_; }
  LastKnown& last_known() override { return memory_; }
  std::chrono::steady_clock::time_point act_until() override {
    return std::chrono::steady_clock::now() + std::chrono::hours(1);
  }
  std::string shared_commit() override { return etcd_.commit; }
  void publish_commit(const std::string& commit) override { etcd_.commit = commit; }
  void publish_invalid_head(const std::string&, const std::string&) override {}
  void publish_verdicts(const std::map<std::string, WitnessVerdict>& failing) override {
    for (auto& [group, by] : etcd_.verdicts) by.erase(instance_);
    for (const auto& [group, v] : failing) etcd_.verdicts[group][instance_] = v;
  }
  Result<std::vector<WitnessVerdict>> verdicts(const std::string& group) override {
    std::vector<WitnessVerdict> out;
    for (const auto& [name, site] : etcd_.live) {
      auto v = etcd_.verdicts[group].find(name);
      out.push_back(v != etcd_.verdicts[group].end()
                        ? v->second
                        : WitnessVerdict{name, site, false, 0, "", ""});
    }
    return out;
  }
  Result<std::optional<int64_t>> last_auto_failover(const std::string& group) override {
    auto it = etcd_.auto_failover.find(group);
    return it == etcd_.auto_failover.end() ? std::optional<int64_t>() : it->second;
  }
  Status record_auto_failover(const std::string& group, int64_t unix_ms) override {
    etcd_.auto_failover[group] = unix_ms;
    return Status::Ok();
  }
  Result<std::map<std::string, std::string>> overrides() override { return etcd_.overrides; }
  Status put_override(const std::string& group, const std::string& json) override {
    etcd_.overrides[group] = json;
    return Status::Ok();
  }
  Status delete_override(const std::string& group) override {
    etcd_.overrides.erase(group);
    return Status::Ok();
  }

 private:
  SharedEtcd& etcd_;
  std::string instance_;
  StateStore& store_;
  StoredLastKnown memory_;
};

}  // namespace

TEST_CASE("issue 13: a rewind one instance adopts with --allow-rewind is followed by the others") {
  SignedHistory h;
  Repo& r = h.r;
  SharedEtcd etcd;
  etcd.leader["shop"] = "ams-1";  // the instance without --allow-rewind applies
  auto other_state = std::move(*StateStore::open((r.dir / "ams-state.db").string()));
  GitSource fra_src(r.source_options());
  GitSourceOptions ams_options = r.source_options();
  ams_options.cache_dir = (r.dir / "ams-cache").string();
  GitSource ams_src(ams_options);
  MemoryCoordination fra_c(etcd, "fra-1", *r.journal), ams_c(etcd, "ams-1", *other_state);
  Reconciler fra(fra_src, *r.journal, r.factory, real_clock(), h.settings(/*allow_rewind=*/true));
  Reconciler ams(ams_src, *other_state, r.factory, real_clock(), h.settings());
  fra.set_coordination(&fra_c);
  ams.set_coordination(&ams_c);

  // B (standby active) in force on both; ams-1 switched.
  PassReport p0 = fra.pass();
  INFO(p0.run.result << ": " << p0.run.error);
  REQUIRE(p0.exit_code == 0);
  REQUIRE(ams.pass().exit_code == 0);
  REQUIRE(etcd.commit == h.b);
  REQUIRE(r.world.traffic["shop"].target == "standby");

  // The operator force-pushes back to A and starts fra-1 with --allow-rewind.
  run({"git", "reset", "-q", "--hard", h.a}, r.work);
  PassReport pf = fra.pass();
  INFO(pf.run.error);
  CHECK(pf.commit_in_force == h.a);
  CHECK(etcd.commit == h.a);  // published over B, as the flag allows
  // ams-1 has no flag, but the shared commit is the branch's head: it follows.
  PassReport pa = ams.pass();
  INFO(pa.run.error);
  CHECK(pa.exit_code == 0);
  CHECK(pa.commit_in_force == h.a);
  CHECK(r.world.traffic["shop"].target == "primary");

  // C on top of A, then a force-push back to A: a rewind again, refused by
  // both (fra-1's flag was good for one rewind); the shared commit stays C.
  std::string c = r.commit(config("primary") + "# c\n", h.signing());
  CHECK(fra.pass().commit_in_force == c);
  CHECK(ams.pass().commit_in_force == c);
  run({"git", "reset", "-q", "--hard", h.a}, r.work);
  CHECK(fra.pass().run.result == "invalid");
  CHECK(ams.pass().run.result == "invalid");
  CHECK(etcd.commit == c);
  CHECK(r.world.traffic["shop"].target == "primary");
}

TEST_CASE("issue 14: the active stack down leads the pass, the status and the notification") {
  Repo r;
  r.commit(config("primary"));
  GitSource src(r.source_options());
  RecordingNotifier notes;
  ReconcileSettings s = fast_settings();
  s.instance = "fra-1";
  Reconciler rec(src, *r.journal, r.factory, real_clock(), s, &notes);
  REQUIRE(rec.pass().exit_code == 0);  // converged, remembered: primary at 100
  CHECK(notes.sent.empty());

  r.world.stacks["shop"]["standby"].lsn = 100;
  r.world.stacks["shop"]["primary"].up = false;  // killed
  PassReport p = rec.pass();
  const GroupStatus& g = p.groups["shop"];
  INFO(g.outage << "\n" << g.decision);
  CHECK_THAT(g.outage, Catch::StartsWith("active stack primary of group shop down since "));
  CHECK_THAT(g.outage, Catch::Contains("(seen by fra-1): primary is unreachable"));
  CHECK_THAT(g.outage, Catch::Contains("last known lag 0 bytes: standby standby caught up"));
  CHECK_THAT(g.decision, Catch::StartsWith(
                             "to fail over, commit `active: standby` with `allow_data_loss: true` "
                             "for group shop (stackflip.yaml:"));
  const std::string summary = format_group_outcomes(p, false);
  CHECK(summary.rfind("  shop: active stack primary of group shop down since ", 0) == 0);
  std::string js = status_json(&p, "repo@main");
  CHECK_THAT(js, Catch::Contains(R"("outage":"active stack primary of group shop down since )"));
  REQUIRE(notes.sent.size() == 1);
  CHECK(notes.sent[0].second.rfind(g.outage + "\n" + g.decision + "\n", 0) == 0);
  // For `stackflip status`.
  CHECK(**r.journal->get("gitops.outages") == g.outage + "\n" + g.decision + "\n");

  // Still down: the same since, told once.
  PassReport again = rec.pass();
  CHECK(again.groups["shop"].outage == g.outage);
  CHECK(notes.sent.size() == 1);

  // Back: nothing more to tell about it.
  r.world.stacks["shop"]["primary"].up = true;
  PassReport back = rec.pass();
  CHECK(back.groups["shop"].outage.empty());
  CHECK(back.groups["shop"].decision.empty());
  CHECK(**r.journal->get("gitops.outages") == "");
}

TEST_CASE("issue 14: a commit made and pushed by stackflip, signed, lands as a fast-forward only") {
  Repo r;
  std::string first = r.commit(config("primary"));
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});
  std::string key = (r.dir / "stackflip_key").string();
  run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stackflip", "-f", key});
  std::string pub;
  std::getline(std::ifstream(key + ".pub"), pub);
  std::string signers = (r.dir / "allowed_signers").string();
  std::ofstream(signers) << "stackflip@localhost " << pub << "\n";

  GitSource src(r.source_options("file://" + origin));
  REQUIRE(*src.fetch() == first);
  CommitRequest c;
  c.parent = first;
  c.path = "stackflip.yaml";
  c.text = config("standby");
  c.message = "stackflip: fail over group shop\n\nevidence\n";
  c.signing_key = key;
  PushResult pushed = src.commit_and_push(c);
  INFO(pushed.error);
  REQUIRE(pushed.ok());
  CHECK(run({"git", "rev-parse", "main"}, origin) == pushed.commit);
  CHECK(run({"git", "log", "-1", "--format=%an <%ae>%n%s", "main"}, origin) ==
        "stackflip <stackflip@localhost>\nstackflip: fail over group shop");
  CHECK(run({"git", "show", "main:stackflip.yaml"}, origin) + "\n" == config("standby"));
  CHECK(*src.fetch() == pushed.commit);
  auto sig = src.signature(pushed.commit);
  REQUIRE(sig.ok());
  TrustConfig trust;
  trust.allowed_signers = signers;
  Status verified = verify_commit_signature(pushed.commit, *sig, trust);
  INFO((verified.ok() ? std::string() : verified.error().message));
  CHECK(verified.ok());
  // git itself agrees.
  run({"git", "-c", "gpg.ssh.allowedSignersFile=" + signers, "verify-commit", pushed.commit},
      origin);

  // Someone pushes meanwhile: a commit on the old head is refused as "moved",
  // never forced over theirs.
  c.parent = first;
  c.text = config("standby") + "# again\n";
  PushResult late = src.commit_and_push(c);
  CHECK(late.failure == PushFailure::moved);
  INFO(late.error);
  CHECK(run({"git", "rev-parse", "main"}, origin) == pushed.commit);
  // A key that cannot sign: nothing is pushed.
  c.parent = pushed.commit;
  c.signing_key = (r.dir / "no-such-key").string();
  PushResult unsigned_ = src.commit_and_push(c);
  CHECK(unsigned_.failure == PushFailure::local);
  CHECK(run({"git", "rev-parse", "main"}, origin) == pushed.commit);
  // The repository gone: unreachable.
  c.signing_key = key;
  std::filesystem::rename(origin, origin + ".away");
  CHECK(src.commit_and_push(c).failure == PushFailure::unreachable);
}

namespace {

// config() with automatic failover for group shop.
std::string auto_config(const std::string& active, const std::string& after = "200ms",
                        const std::string& extra = "    auto_failover: {after: ") {
  std::string c = config(active);
  c.insert(c.find("    stacks:"), extra + after + ", witnesses: 1}\n");
  return c;
}

// Stack primary's packets dropped while `silent` holds (SilentStackDriver).
void silent_primary(Repo& r, std::atomic<bool>& silent, std::chrono::milliseconds timeout,
                    std::atomic<int>& waits, std::atomic<int>& cut) {
  r.factory.wrap_stack = [&silent, &waits, &cut, timeout](
                             std::unique_ptr<StackDriver> d,
                             const std::string& stack) -> std::unique_ptr<StackDriver> {
    if (stack != "primary") return d;
    return std::make_unique<SilentStackDriver>(std::move(d), &silent, timeout, &waits, &cut);
  };
}

}  // namespace

TEST_CASE(
    "issue 14: the active stack down for `after`, stackflip commits the failover, signed, "
    "and the next pass applies it, and no second one within the cooldown") {
  Repo r;
  std::string ops = (r.dir / "ops").string(), key = (r.dir / "stackflip_key").string();
  run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ops", "-f", ops});
  run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stackflip", "-f", key});
  std::string ops_pub, sf_pub;
  std::getline(std::ifstream(ops + ".pub"), ops_pub);
  std::getline(std::ifstream(key + ".pub"), sf_pub);
  const std::string signers = (r.dir / "allowed_signers").string();
  std::ofstream(signers) << "ops@example.test " << ops_pub << "\nstackflip@localhost " << sf_pub
                         << "\n";
  std::string first = r.commit(
      auto_config("primary"),
      {"-c", "gpg.format=ssh", "-c", "user.signingkey=" + ops, "-c", "commit.gpgsign=true"});
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});

  ReconcileSettings s = fast_settings();
  s.require_signed = true;
  s.trust.allowed_signers = signers;
  s.commit_signing_key = key;
  s.instance = "fra-1";
  s.site = "ams";
  GitSource src(r.source_options("file://" + origin));
  Reconciler rec(src, *r.journal, r.factory, real_clock(), s);
  REQUIRE(rec.pass().run.result == "no-changes");

  r.world.stacks["shop"]["primary"].up = false;  // killed: the port closed
  PassReport p = rec.pass();
  const GroupStatus& waiting = p.groups.at("shop");
  INFO(waiting.outage << "\n" << waiting.decision);
  CHECK_THAT(waiting.decision, Catch::StartsWith("automatic failover in "));
  CHECK_THAT(waiting.decision, Catch::Contains(" if primary stays down (0 of 1 witnesses saw "
                                               "primary failing for 200ms (1 needed)); else to "
                                               "fail over, commit `active: standby`"));
  REQUIRE(p.next_within);
  CHECK(*p.next_within <= std::chrono::milliseconds(250));
  CHECK_FALSE(p.again);
  CHECK(run({"git", "rev-parse", "main"}, origin) == first);

  std::this_thread::sleep_for(*p.next_within);
  p = rec.pass();
  const GroupStatus& done = p.groups.at("shop");
  INFO(done.decision);
  CHECK(p.again);
  const std::string pushed = run({"git", "rev-parse", "main"}, origin);
  REQUIRE(pushed != first);
  CHECK_THAT(done.decision, Catch::StartsWith("stackflip committed the failover to standby with "
                                              "`allow_data_loss: true` as " +
                                              pushed.substr(0, 12) + " (signed)"));
  const std::string msg = run({"git", "log", "-1", "--format=%an%n%B", "main"}, origin);
  CHECK_THAT(msg, Catch::StartsWith("stackflip\nstackflip: fail over group shop from primary to "
                                    "standby\n\nAutomatic failover decided by fra-1 at "));
  CHECK_THAT(msg, Catch::Contains("fra-1 (site ams): failing since "));
  CHECK_THAT(msg, Catch::Contains("lag 0 bytes."));
  std::string want = auto_config("standby");
  want.insert(want.find("    auto_failover:"), "    allow_data_loss: true\n");
  CHECK(run({"git", "show", "main:stackflip.yaml"}, origin) + "\n" == want);
  CHECK(r.world.traffic["shop"].target == "primary");  // nothing applied yet

  p = rec.pass();  // adopts its own commit (the signature verifies) and switches
  INFO(p.run.error);
  CHECK(p.run.commit == pushed);
  CHECK(p.run.result == "applied");
  CHECK(r.world.traffic["shop"].target == "standby");
  CHECK(r.world.stacks["shop"]["standby"].role == Role::primary);

  // The new active stack dies too, within the cooldown: a person decides.
  r.world.stacks["shop"]["primary"] = FakeStack{true, true, Role::replica, "standby", 100, 2};
  rec.pass();
  r.world.stacks["shop"]["standby"].up = false;
  rec.pass();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  p = rec.pass();
  INFO(p.groups.at("shop").decision);
  CHECK_FALSE(p.again);
  CHECK_THAT(p.groups.at("shop").decision,
             Catch::StartsWith("automatic failover held back: an automatic failover of group "
                               "shop ran "));
  CHECK_THAT(p.groups.at("shop").decision, Catch::Contains("within its cooldown of 30m"));
  CHECK(run({"git", "rev-parse", "main"}, origin) == pushed);
}

TEST_CASE(
    "issue 14: an outage shorter than `after` commits nothing, and a standby behind the policy "
    "is left to a person") {
  Repo r;
  std::string first = r.commit(auto_config("primary"));
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});
  GitSource src(r.source_options("file://" + origin));
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  REQUIRE(rec.pass().run.result == "no-changes");
  // Flapping: down, back before `after`, down again: the clock starts again.
  for (int i = 0; i < 3; ++i) {
    r.world.stacks["shop"]["primary"].up = false;
    CHECK_FALSE(rec.pass().again);
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    r.world.stacks["shop"]["primary"].up = true;
    CHECK(rec.pass().groups.at("shop").outage.empty());
  }
  CHECK(run({"git", "rev-parse", "main"}, origin) == first);

  // The standby is behind: the lag is above max_data_loss_bytes 0, a person
  // decides.
  r.world.instant_replay = false;
  r.world.stacks["shop"]["standby"].lsn = 50;
  rec.pass();
  r.world.stacks["shop"]["primary"].up = false;
  rec.pass();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  PassReport p = rec.pass();
  INFO(p.groups.at("shop").decision);
  CHECK_THAT(p.groups.at("shop").decision,
             Catch::StartsWith("automatic failover held back: the last known lag of standby is "
                               "50 bytes, above max_data_loss_bytes 0: a person decides; to fail "
                               "over, commit `active: standby` with `allow_data_loss: true`"));
  CHECK(run({"git", "rev-parse", "main"}, origin) == first);

  CHECK(run({"git", "rev-parse", "main"}, origin) == first);
}

TEST_CASE(
    "issue 14: a silent active stack is failing from the start of the observation that found it "
    "so, and the pass that applies the failover waits for it once") {
  Repo r;
  std::string first = r.commit(auto_config("primary"));  // after 200ms, witnesses 1
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});
  std::atomic<bool> silent{false};
  std::atomic<int> waits{0}, cut{0};
  silent_primary(r, silent, std::chrono::milliseconds(300), waits, cut);
  GitSource src(r.source_options("file://" + origin));
  ReconcileSettings s = fast_settings();
  s.apply.silent_limit = std::chrono::milliseconds(20);
  Reconciler rec(src, *r.journal, r.factory, real_clock(), s);
  REQUIRE(rec.pass().run.result == "no-changes");
  silent = true;  // its packets dropped from now on
  // The pass's observation waits 300 ms for primary, which answers nothing
  // it was asked from the start: failing for longer than `after` when the
  // pass decides, which it does at once.
  PassReport p = rec.pass();
  INFO(p.groups.at("shop").outage << "\n" << p.groups.at("shop").decision);
  CHECK(p.again);
  CHECK_THAT(p.groups.at("shop").decision,
             Catch::StartsWith("stackflip committed the failover to standby with "
                               "`allow_data_loss: true` as "));
  CHECK(run({"git", "rev-parse", "main"}, origin) != first);
  CHECK(waits == 1);

  // The next pass applies it. primary, silent a moment ago, is given 20 ms
  // by its observation and by each of the 4 guards; only the observation
  // after the apply waits its whole timeout again.
  p = rec.pass();
  INFO(p.run.error);
  CHECK(p.run.result == "applied");
  CHECK(r.world.traffic["shop"].target == "standby");
  CHECK(waits == 1 + 1 + 4 + 1);
  CHECK(cut == 1 + 4);
}

TEST_CASE(
    "issue 14: while a failover waits for `after`, a silent active stack is observed with the "
    "short limit every other pass, never twice in a row") {
  Repo r;
  r.commit(auto_config("primary", "10s"));
  std::atomic<bool> silent{false};
  std::atomic<int> waits{0}, cut{0};
  silent_primary(r, silent, std::chrono::milliseconds(200), waits, cut);
  GitSource src(r.source_options());
  ReconcileSettings s = fast_settings();
  s.apply.silent_limit = std::chrono::milliseconds(20);
  Reconciler rec(src, *r.journal, r.factory, real_clock(), s);
  REQUIRE(rec.pass().run.result == "no-changes");
  silent = true;
  // Whole timeout, then the limit, then the whole timeout again, ...: a
  // stack that answers slowly is never taken for down by limited
  // observations alone.
  for (int pass = 1; pass <= 4; ++pass) {
    PassReport p = rec.pass();
    INFO("pass " << pass << ": " << p.groups.at("shop").decision);
    CHECK_THAT(p.groups.at("shop").decision, Catch::StartsWith("automatic failover in "));
    CHECK(waits == pass);
    CHECK(cut == pass / 2);
  }
}

TEST_CASE(
    "issue 14: the active stack failing its health check while its database answers: "
    "stackflip commits the failover without allow_data_loss, and applies it as a planned "
    "switch") {
  Repo r;
  std::string c = auto_config("primary");
  const std::string stack = "address: 127.0.0.1}";
  c.replace(c.find(stack), stack.size(),
            "address: 127.0.0.1, health: {url: \"http://127.0.0.1:9/healthz\", timeout: 1s}}");
  std::string first = r.commit(c);
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});
  auto answer = std::make_shared<std::string>();
  std::vector<std::string> probed;
  r.factory.make_health = [&](const StackSpec& s) {
    probed.push_back(s.name + " " + s.health->url);
    return std::make_unique<ScriptedHealthProbe>(answer);
  };
  GitSource src(r.source_options("file://" + origin));
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  REQUIRE(rec.pass().run.result == "no-changes");
  CHECK(probed == std::vector<std::string>{"primary http://127.0.0.1:9/healthz"});

  *answer = "GET http://127.0.0.1:9/healthz: HTTP 503";
  PassReport p = rec.pass();
  INFO(p.groups.at("shop").outage << "\n" << p.groups.at("shop").decision);
  CHECK_THAT(p.groups.at("shop").outage,
             Catch::Contains("its health check fails (GET http://127.0.0.1:9/healthz: HTTP 503); "
                             "its database answers"));
  CHECK_THAT(p.groups.at("shop").decision, Catch::StartsWith("automatic failover in "));
  REQUIRE(p.next_within);
  std::this_thread::sleep_for(*p.next_within);
  p = rec.pass();
  INFO(p.groups.at("shop").decision);
  CHECK(p.again);
  const std::string pushed = run({"git", "rev-parse", "main"}, origin);
  REQUIRE(pushed != first);
  CHECK_THAT(
      p.groups.at("shop").decision,
      Catch::StartsWith("stackflip committed the failover to standby as " + pushed.substr(0, 12)));
  const std::string yaml = run({"git", "show", "main:stackflip.yaml"}, origin);
  CHECK_THAT(yaml, Catch::Contains("    active: standby\n"));
  CHECK_THAT(yaml, !Catch::Contains("allow_data_loss"));
  CHECK_THAT(run({"git", "log", "-1", "--format=%B", "main"}, origin),
             Catch::Contains("health check: GET http://127.0.0.1:9/healthz: HTTP 503"));

  p = rec.pass();  // the planned switch: the old primary fenced, then the promotion
  INFO(p.run.error);
  CHECK(p.run.result == "applied");
  CHECK(r.world.traffic["shop"].target == "standby");
  CHECK(r.world.stacks["shop"]["standby"].role == Role::primary);
  CHECK(r.world.stacks["shop"]["primary"].maintenance);
  CHECK(r.world.stacks["shop"]["primary"].role == Role::replica);
  // The new active stack has no health check: nothing more to say.
  p = rec.pass();
  CHECK(p.groups.at("shop").outage.empty());
}

TEST_CASE("issue 14: a group not converged when its active stack went down is left to a person") {
  Repo r;
  std::string first = r.commit(auto_config("primary"));
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});
  // The standby's maintenance was turned off by hand and cannot be turned
  // on again: the group never converges.
  r.factory.wrap_stack = [](std::unique_ptr<StackDriver> d, const std::string& stack) {
    if (stack != "standby") return d;
    return std::unique_ptr<StackDriver>(
        std::make_unique<FaultyStackDriver>(std::move(d), 1, false, true, true));
  };
  r.world.stacks["shop"]["standby"].maintenance = false;
  GitSource src(r.source_options("file://" + origin));
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  CHECK_FALSE(rec.pass().converged());
  r.world.stacks["shop"]["primary"].up = false;
  rec.pass();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  PassReport p = rec.pass();
  INFO(p.groups.at("shop").decision);
  CHECK_FALSE(p.again);
  CHECK_THAT(p.groups.at("shop").decision,
             Catch::StartsWith("automatic failover held back: group shop was not converged when "
                               "primary went down"));
  CHECK(run({"git", "rev-parse", "main"}, origin) == first);
}

TEST_CASE(
    "issue 14: with etcd, the leader fails over only when a majority of the live instances, "
    "one outside the failing site, saw it failing for `after`") {
  Repo r;
  std::string c = config("primary");
  c.insert(c.find("    stacks:"), "    auto_failover: {after: 200ms}\n");
  const std::string first = r.commit(c);
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});
  SharedEtcd etcd;
  etcd.leader["shop"] = "ams-1";
  etcd.live = {{"ams-1", "ams"}, {"fra-1", "fra"}, {"wit-1", "wit"}};
  auto fra_state = std::move(*StateStore::open((r.dir / "fra-state.db").string()));
  auto ams_state = std::move(*StateStore::open((r.dir / "ams-state.db").string()));
  GitSourceOptions fo = r.source_options("file://" + origin), ao = fo;
  fo.cache_dir += "-fra";
  ao.cache_dir += "-ams";
  GitSource fra_src(fo), ams_src(ao);
  MemoryCoordination fra_coord(etcd, "fra-1", *fra_state), ams_coord(etcd, "ams-1", *ams_state);
  ReconcileSettings fs = fast_settings(), as = fast_settings();
  fs.instance = "fra-1", fs.site = "fra";
  as.instance = "ams-1", as.site = "ams";
  Reconciler fra(fra_src, *fra_state, r.factory, real_clock(), fs);
  Reconciler ams(ams_src, *ams_state, r.factory, real_clock(), as);
  fra.set_coordination(&fra_coord);
  ams.set_coordination(&ams_coord);
  REQUIRE(fra.pass().run.error.empty());
  REQUIRE(ams.pass().run.error.empty());

  r.world.stacks["shop"]["primary"].up = false;
  ams.pass();  // the leader alone has seen it
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  PassReport p = ams.pass();
  INFO(p.groups.at("shop").decision);
  CHECK_FALSE(p.again);
  CHECK_THAT(p.groups.at("shop").decision,
             Catch::Contains("(1 of 3 witnesses saw primary failing for 200ms (2 needed, one "
                             "outside site primary))"));
  fra.pass();  // a second witness, from the start of its own observation
  p = ams.pass();
  CHECK_FALSE(p.again);  // fra-1 has not seen it for 200 ms yet
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  CHECK_FALSE(fra.pass().again);  // not the leader: it only testifies
  CHECK(run({"git", "rev-parse", "main"}, origin) == first);
  p = ams.pass();
  INFO(p.groups.at("shop").decision);
  CHECK(p.again);
  const std::string msg = run({"git", "log", "-1", "--format=%B", "main"}, origin);
  CHECK_THAT(msg, Catch::Contains("Automatic failover decided by ams-1 at "));
  CHECK_THAT(msg, Catch::Contains("Witnesses (2 of 3 live instances agree):\n"
                                  "  ams-1 (site ams): failing since "));
  CHECK_THAT(msg, Catch::Contains("\n  fra-1 (site fra): failing since "));
  CHECK_THAT(msg, Catch::Contains("\n  wit-1 (site wit): healthy\n"));
  CHECK_THAT(msg, Catch::Contains("a majority of witnesses with one outside site primary"));
  REQUIRE(etcd.auto_failover.count("shop"));  // the cooldown is shared

  // `after` must outlast the etcd lease plus 1 s (self-fencing lands first).
  ReconcileSettings ls = as;
  ls.lease_ttl = std::chrono::seconds(5);
  auto lstate = std::move(*StateStore::open((r.dir / "l-state.db").string()));
  GitSourceOptions lo = ao;
  lo.cache_dir += "-l";
  GitSource l_src(lo);
  MemoryCoordination l_coord(etcd, "ams-1", *lstate);
  Reconciler l(l_src, *lstate, r.factory, real_clock(), ls);
  l.set_coordination(&l_coord);
  {
    // Back to a commit with primary active and down, for this instance.
    std::string c2 = c + "# again\n";
    r.commit(c2);
    run({"git", "push", "-q", "-f", origin, "main"}, r.work);
    r.world.stacks["shop"]["primary"].up = false;
    r.world.stacks["shop"]["primary"].role = Role::primary;
    l.pass();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    PassReport lp = l.pass();
    INFO(lp.groups.at("shop").decision);
    CHECK_THAT(lp.groups.at("shop").decision,
               Catch::StartsWith("automatic failover held back: auto_failover.after 200ms is not "
                                 "longer than the etcd lease (5s) plus 1s"));
  }

  // A witness whose active stack answers again withdraws its verdict.
  r.world.stacks["shop"]["primary"].up = true;
  fra.pass();
  CHECK_FALSE(etcd.verdicts["shop"].count("fra-1"));
}

TEST_CASE(
    "issue 14: self-fencing turns maintenance on for the active stacks of its own site's "
    "auto_failover groups only") {
  Repo r;
  std::string c = config("primary");
  c.insert(c.find("    stacks:"), "    auto_failover: {after: 10s}\n");
  c.replace(c.find("address: 127.0.0.1}"), 19, "address: 127.0.0.1, site: fra}");
  r.commit(c);
  GitSource src(r.source_options());
  ReconcileSettings s = fast_settings();
  s.site = "ams";
  Reconciler ams(src, *r.journal, r.factory, real_clock(), s);
  CHECK(ams.self_fence().empty());  // nothing adopted yet
  ams.pass();
  CHECK(ams.self_fence().empty());  // not its site
  CHECK_FALSE(r.world.stacks["shop"]["primary"].maintenance);
  auto fra_state = std::move(*StateStore::open((r.dir / "fra.db").string()));
  GitSourceOptions fo = r.source_options();
  fo.cache_dir += "-fra";
  GitSource fra_src(fo);
  s.site = "fra";
  Reconciler fra(fra_src, *fra_state, r.factory, real_clock(), s);
  fra.pass();
  // Called from another thread, as the keep-alive thread does.
  std::vector<std::string> lines;
  std::thread([&] { lines = fra.self_fence(); }).join();
  CHECK(lines == std::vector<std::string>{"self-fencing: group shop: maintenance on primary"});
  CHECK(r.world.stacks["shop"]["primary"].maintenance);
  // On record in its own journal (etcd, the shared one, is out of reach).
  auto fenced = fra_state->history(10, "shop");
  REQUIRE(fenced.ok());
  REQUIRE(fenced->size() >= 2);
  CHECK((*fenced)[0].kind == "maintenance.on");
  CHECK((*fenced)[0].stack == "primary");
  CHECK((*fenced)[0].result == "ok");
  CHECK((*fenced)[0].origin == "self-fence: cut off from etcd in site fra");
  // Opted out: nothing.
  r.world.stacks["shop"]["primary"].maintenance = false;
  c.replace(c.find("{after: 10s}"), 12, "{after: 10s, self_fence: false}");
  r.commit(c);
  fra.pass();
  CHECK(fra.self_fence().empty());
  CHECK_FALSE(r.world.stacks["shop"]["primary"].maintenance);
}

TEST_CASE(
    "issue 14: Git down during the failover, an override in force until the commit lands, "
    "and no pass in between flips traffic back") {
  Repo r;
  const std::string first = r.commit(auto_config("primary"));
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});
  GitSource src(r.source_options("file://" + origin));
  Reconciler rec(src, *r.journal, r.factory, real_clock(), fast_settings());
  REQUIRE(rec.pass().run.result == "no-changes");
  r.world.stacks["shop"]["primary"].up = false;
  rec.pass();
  std::filesystem::rename(origin, origin + ".away");  // Git down
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  PassReport p = rec.pass();
  INFO(p.groups.at("shop").decision);
  CHECK(p.run.result == "failed");  // the fetch
  CHECK(p.again);
  CHECK_THAT(p.groups.at("shop").decision,
             Catch::StartsWith("stackflip decided the failover to standby with `allow_data_loss: "
                               "true` but cannot push it (cannot push to file://"));
  CHECK_THAT(p.groups.at("shop").decision,
             Catch::EndsWith("it is in force as an override in the state store from the next "
                             "pass on, and pushed when Git answers"));
  for (int i = 0; i < 3; ++i) {
    p = rec.pass();
    INFO(p.run.error);
    CHECK(r.world.traffic["shop"].target == "standby");
    CHECK(r.world.stacks["shop"]["standby"].role == Role::primary);
    CHECK_THAT(p.groups.at("shop").override_note,
               Catch::StartsWith("override in force, not yet in Git: `active: standby` with "
                                 "`allow_data_loss: true` (automatic failover by stackflip on "));
    CHECK_THAT(format_group_outcomes(p, false),
               Catch::Contains("shop: override in force, not yet in Git"));
  }
  CHECK(**r.journal->get("gitops.outages") != "");
  // Git back: the override is pushed, then adopted, which ends it.
  std::filesystem::rename(origin + ".away", origin);
  p = rec.pass();
  INFO(p.groups.at("shop").override_note);
  CHECK(p.again);
  CHECK_THAT(p.groups.at("shop").override_note, Catch::Contains("; pushed as "));
  const std::string pushed = run({"git", "rev-parse", "main"}, origin);
  CHECK(run({"git", "rev-parse", "main~1"}, origin) == first);
  CHECK_THAT(run({"git", "log", "-1", "--format=%B", "main"}, origin),
             Catch::Contains("(Pushed after Git could not be reached; in force as an override "
                             "until now.)"));
  p = rec.pass();
  CHECK(p.run.commit == pushed);
  CHECK(p.groups.at("shop").override_note.empty());
  CHECK(**r.journal->get("auto_failover.overrides") == "{}");
  CHECK(r.world.traffic["shop"].target == "standby");
  // The old primary back: fenced and re-attached, never sent traffic.
  r.world.stacks["shop"]["primary"].up = true;
  rec.pass();
  rec.pass();
  CHECK(r.world.traffic["shop"].target == "standby");
  CHECK(r.world.stacks["shop"]["primary"].role == Role::replica);
}

TEST_CASE(
    "issue 14: with --require-signed but no signing key, nothing is committed that the loop "
    "itself would refuse") {
  SignedHistory h;
  Repo& r = h.r;
  std::string c = auto_config("primary");
  r.commit(c, h.signing());
  const std::string origin = (r.dir / "origin.git").string();
  run({"git", "clone", "-q", "--bare", r.work, origin});
  const std::string head = run({"git", "rev-parse", "main"}, origin);
  GitSource src(r.source_options("file://" + origin));
  Reconciler rec(src, *r.journal, r.factory, real_clock(), h.settings());  // no signing key
  REQUIRE(rec.pass().run.result == "no-changes");  // the signed head, primary active
  r.world.stacks["shop"]["primary"].up = false;
  rec.pass();
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  PassReport p = rec.pass();
  INFO(p.groups.at("shop").decision);
  CHECK_FALSE(p.again);
  CHECK_THAT(p.groups.at("shop").decision,
             Catch::StartsWith("automatic failover to standby held back: with --require-signed, "
                               "stackflip's own commit needs --commit-signing-key"));
  CHECK(run({"git", "rev-parse", "main"}, origin) == head);
}
