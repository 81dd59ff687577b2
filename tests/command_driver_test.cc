#include "drivers/command_driver.h"

#include <rapidjson/document.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "config/host_policy.h"

using namespace stackflip;
namespace fs = std::filesystem;

namespace {

std::string temp_dir() {
  std::string t = (fs::temp_directory_path() / "stackflip-cmd-XXXXXX").string();
  REQUIRE(mkdtemp(t.data()) != nullptr);
  return t;
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

GroupSpec shop() {
  GroupSpec g;
  g.name = "shop";
  g.active = "primary";
  for (auto [name, addr] : {std::pair{"primary", "203.0.113.10"}, {"standby", "198.51.100.7"}}) {
    StackSpec s;
    s.name = name;
    s.provider = "cmd";
    s.address = addr;
    s.addresses = {addr};
    s.settings["host"] = std::string(name) + ".internal";
    g.stacks[name] = s;
  }
  g.traffic.emplace_back();
  g.traffic[0].provider = "cmdtraffic";
  g.traffic[0].ttl = 30;
  g.traffic[0].name = "traffic command";
  return g;
}

ProviderConfig provider_for(const std::string& script, std::initializer_list<const char*> ops) {
  ProviderConfig p;
  p.name = "cmd";
  p.type = "command";
  for (const char* op : ops) p.lists[op] = {script};
  return p;
}

bool have_jq() { return system("command -v jq >/dev/null 2>&1") == 0; }

bool process_gone(pid_t pid) {
  for (int i = 0; i < 100; ++i) {
    if (::kill(pid, 0) != 0) return true;
    std::string line = read_file("/proc/" + std::to_string(pid) + "/stat");
    auto close = line.rfind(')');
    if (close != std::string::npos && close + 2 < line.size() && line[close + 2] == 'Z')
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace

TEST_CASE("a planned switch runs through the example command scripts") {
  if (!have_jq()) {
    WARN("jq is not installed; the example scripts need it");
    return;
  }
  std::string state = temp_dir();
  setenv("STACKFLIP_EXAMPLE_STATE", state.c_str(), 1);
  write_file(
      state + "/primary.json",
      R"({"maintenance":false,"role":"primary","upstream":null,"lsn":"0/3000060","timeline":1})");
  write_file(
      state + "/standby.json",
      R"({"maintenance":true,"role":"replica","upstream":"primary","lsn":"0/3000060","timeline":1})");
  write_file(state + "/traffic.json", R"({"content":"203.0.113.10"})");

  const std::string dir = STACKFLIP_SOURCE_DIR "/examples/command/";
  // Children get only what the host policy passes (issue 10): the scripts'
  // state folder, and the scripts themselves on the allow-list.
  HostPolicy policy;
  policy.commands = {std::filesystem::canonical(dir).string() + "/*"};
  policy.command_env = {"STACKFLIP_EXAMPLE_STATE"};
  install_host_policy(policy);
  struct Clear {
    ~Clear() { clear_host_policy(); }
  } clear;
  auto stacks =
      provider_for(dir + "stack.sh", {"observe", "maintenance_on", "maintenance_off",
                                      "replication_stop", "replication_start", "promote"});
  auto traffic = provider_for(dir + "traffic.sh", {"observe_traffic", "traffic_switch"});
  GroupSpec g = shop();
  auto a = make_command_stack_driver(stacks, g, "primary");
  auto b = make_command_stack_driver(stacks, g, "standby");
  auto t = make_command_traffic_driver(traffic, g, g.traffic[0]);

  auto before = t->observe();
  REQUIRE(before.reachable);
  CHECK(before.target == std::optional<std::string>("primary"));
  CHECK(before.ttl == 30);
  auto b0 = b->observe();
  REQUIRE(b0.reachable);
  CHECK(b0.database->role == Role::replica);
  CHECK(b0.database->upstream == std::optional<std::string>("primary"));

  REQUIRE(a->set_maintenance(true).ok());
  REQUIRE(b->stop_replication().ok());
  REQUIRE(b->promote().ok());
  REQUIRE(b->set_maintenance(false).ok());
  REQUIRE(t->switch_to("standby").ok());
  REQUIRE(a->start_replication(g.stacks.at("standby")).ok());

  auto oa = a->observe(), ob = b->observe();
  auto ot = t->observe();
  REQUIRE(oa.reachable);
  REQUIRE(ob.reachable);
  CHECK(oa.maintenance == true);
  CHECK(oa.database->role == Role::replica);
  CHECK(oa.database->upstream == std::optional<std::string>("standby"));
  CHECK(ob.maintenance == false);
  CHECK(ob.database->role == Role::primary);
  CHECK_FALSE(ob.database->upstream.has_value());
  CHECK(ob.database->timeline == 2);
  CHECK(ot.target == std::optional<std::string>("standby"));
  CHECK(ot.content == "198.51.100.7");
  fs::remove_all(state);
}

TEST_CASE("a command gets the operation as JSON on stdin") {
  std::string dir = temp_dir();
  ProviderConfig p;
  p.name = "cmd";
  p.lists["replication_start"] = {"sh", "-c", "cat > \"$1\"", "sh", dir + "/req.json"};
  GroupSpec g = shop();
  auto a = make_command_stack_driver(p, g, "primary");
  REQUIRE(a->start_replication(g.stacks.at("standby")).ok());
  rapidjson::Document d;
  d.Parse(read_file(dir + "/req.json").c_str());
  REQUIRE(d.IsObject());
  CHECK(std::string(d["operation"].GetString()) == "replication_start");
  CHECK(std::string(d["group"].GetString()) == "shop");
  CHECK(std::string(d["stack"].GetString()) == "primary");
  CHECK(std::string(d["source"].GetString()) == "standby");
  CHECK(std::string(d["address"].GetString()) == "203.0.113.10");
  CHECK(std::string(d["settings"]["host"].GetString()) == "primary.internal");
  fs::remove_all(dir);
}

TEST_CASE("a hanging command is killed at timeout_ms with its children and reports a timeout") {
  std::string dir = temp_dir();
  ProviderConfig p;
  p.name = "cmd";
  // 1 s: time enough for the shell to start its child even on a loaded
  // machine under the sanitizers (200 ms was not: no pid was written).
  p.settings["timeout_ms"] = "1000";
  p.lists["maintenance_on"] = {"sh", "-c", "sleep 30 & echo $! > \"$1\"; wait", "sh", dir + "/pid"};
  auto a = make_command_stack_driver(p, shop(), "primary");
  auto t0 = std::chrono::steady_clock::now();
  Status s = a->set_maintenance(true);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().timeout);
  CHECK(s.message().find("timed out after 1000 ms") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));  // not the 30 s sleep
  std::string pid_text = read_file(dir + "/pid");
  REQUIRE_FALSE(pid_text.empty());
  pid_t child = std::stoi(pid_text);
  CHECK(process_gone(child));
  fs::remove_all(dir);
}

TEST_CASE(
    "an observe command that prints invalid JSON leaves the stack unreachable with the parse "
    "error") {
  ProviderConfig p;
  p.name = "cmd";
  p.lists["observe"] = {"sh", "-c", "echo '{\"reachable\": tru'"};
  auto a = make_command_stack_driver(p, shop(), "primary");
  StackObs o = a->observe();
  CHECK_FALSE(o.reachable);
  CHECK(o.error.rfind("observe command printed invalid JSON: ", 0) == 0);
  CHECK(o.error.find("offset") != std::string::npos);
}

TEST_CASE("an observe answer outside the observed schema is reported, not guessed") {
  ProviderConfig p;
  p.name = "cmd";
  p.lists["observe"] = {"sh", "-c",
                        "echo '{\"reachable\": true, \"database\": {\"role\": \"leader\"}}'"};
  auto a = make_command_stack_driver(p, shop(), "primary");
  StackObs o = a->observe();
  CHECK_FALSE(o.reachable);
  CHECK(o.error.find("database/role") != std::string::npos);
}

TEST_CASE("a failing command's error carries its exit status and trimmed stderr") {
  ProviderConfig p;
  p.name = "cmd";
  p.lists["promote"] = {"sh", "-c", "echo '  pg_ctl: server is not running  ' >&2; exit 4"};
  auto a = make_command_stack_driver(p, shop(), "standby");
  Status s = a->promote();
  REQUIRE_FALSE(s.ok());
  CHECK_FALSE(s.error().timeout);
  CHECK(s.message().find("exited with status 4: pg_ctl: server is not running") !=
        std::string::npos);
}

TEST_CASE("an operation with no command configured is an error naming it") {
  ProviderConfig p;
  p.name = "cmd";
  auto a = make_command_stack_driver(p, shop(), "standby");
  Status s = a->stop_replication();
  REQUIRE_FALSE(s.ok());
  CHECK(s.message().find("no `replication_stop` command configured") != std::string::npos);
}
