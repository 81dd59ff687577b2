// fake_cloud66 — the in-memory Cloud 66 API v3 of tests/support/fake_cloud66
// as a process, so CLI-level tests can drive the real `stackflip` binary
// against it. Loopback only (127.0.0.1); the real API is never contacted.
//
//   fake_cloud66 --config FILE [--port N] [--port-file FILE] [--requests-file FILE]
//
// --config is a small JSON file:
//   {"token": "test-token",                       (default "test-token")
//    "action_delay_ms": 20, "toggle_delay_ms": 20, (optional)
//    "stacks": [{"uid": "...", "name": "eu", "maintenance_mode": false}],
//    "groups": [{"uid": "fg-1", "address": "203.0.113.10",
//                "primary_stack_uid": "...", "secondary_stack_uid": "...",
//                "current_stack": 1}],
//    "refuse": [{"stack_uid": "...", "command": "promote_slave_db",   (optional:
//                "message": "no slave database server to promote"}]}  every such
//                                                 action finishes failed)
// The base URL (http://127.0.0.1:PORT/api/3) is printed on stdout and, with
// --port-file, the port is written to that file once the server listens.
// With --requests-file, every request that changes something is written
// there as one "METHOD path body" line, rewritten whenever the log grows and
// once more at exit. Runs until SIGTERM or SIGINT; exit 0.
#include <rapidjson/document.h>
#include <signal.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "fake_cloud66.h"

namespace {

using stackflip::testing::C66Group;
using stackflip::testing::C66Stack;
using stackflip::testing::FakeCloud66;

int usage(const std::string& why) {
  std::cerr << "fake_cloud66: " << why
            << "\nusage: fake_cloud66 --config FILE [--port N] [--port-file FILE] "
               "[--requests-file FILE]\n";
  return 2;
}

std::string str(const rapidjson::Value& o, const char* k, const std::string& fallback = "") {
  return o.IsObject() && o.HasMember(k) && o[k].IsString() ? o[k].GetString() : fallback;
}

// Writes atomically so a reader never sees half a log.
void write_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
  }
  std::rename(tmp.c_str(), path.c_str());
}

std::string log_text(FakeCloud66& fake) {
  std::string text;
  for (const auto& line : fake.changes()) text += line + "\n";
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config, port_file, requests_file;
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return usage(a + " needs a value");
    std::string v = argv[++i];
    if (a == "--config")
      config = v;
    else if (a == "--port-file")
      port_file = v;
    else if (a == "--requests-file")
      requests_file = v;
    else if (a == "--port")
      port = std::atoi(v.c_str());
    else
      return usage("unknown option " + a);
  }
  if (config.empty()) return usage("--config is required");

  std::ifstream in(config);
  if (!in) return usage("cannot read " + config);
  std::stringstream buf;
  buf << in.rdbuf();
  rapidjson::Document d;
  d.Parse(buf.str().c_str());
  if (d.HasParseError() || !d.IsObject()) return usage(config + " is not a JSON object");

  // Block the stop signals before the server threads start, so only the
  // sigtimedwait below receives them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  try {
    FakeCloud66 fake(str(d, "token", "test-token"), port);
    if (d.HasMember("action_delay_ms") && d["action_delay_ms"].IsInt())
      fake.set_action_delay(std::chrono::milliseconds(d["action_delay_ms"].GetInt()));
    if (d.HasMember("toggle_delay_ms") && d["toggle_delay_ms"].IsInt())
      fake.set_toggle_delay(std::chrono::milliseconds(d["toggle_delay_ms"].GetInt()));
    if (d.HasMember("stacks") && d["stacks"].IsArray())
      for (const auto& s : d["stacks"].GetArray()) {
        C66Stack st{str(s, "uid"), str(s, "name"), false};
        if (s.HasMember("maintenance_mode") && s["maintenance_mode"].IsBool())
          st.maintenance_mode = s["maintenance_mode"].GetBool();
        fake.add_stack(st);
      }
    if (d.HasMember("groups") && d["groups"].IsArray())
      for (const auto& g : d["groups"].GetArray()) {
        C66Group fg{str(g, "uid"), str(g, "address"), str(g, "primary_stack_uid"),
                    str(g, "secondary_stack_uid")};
        if (g.HasMember("current_stack") && g["current_stack"].IsInt())
          fg.current_stack = g["current_stack"].GetInt();
        fake.add_group(fg);
      }

    if (d.HasMember("refuse") && d["refuse"].IsArray())
      for (const auto& r : d["refuse"].GetArray())
        fake.refuse_action(str(r, "stack_uid"), str(r, "command"), str(r, "message", "refused"));

    std::cout << fake.base_url() << std::endl;
    if (!port_file.empty()) write_file(port_file, std::to_string(fake.port()) + "\n");

    size_t logged = 0;
    bool written = false;
    const timespec tick{0, 20 * 1000 * 1000};
    for (;;) {
      int sig = sigtimedwait(&stop, nullptr, &tick);
      if (!requests_file.empty()) {
        auto changes = fake.changes();
        if (changes.size() != logged || sig > 0 || !written) {
          write_file(requests_file, log_text(fake));
          logged = changes.size();
          written = true;
        }
      }
      if (sig > 0) break;
    }
  } catch (const std::exception& e) {
    std::cerr << "fake_cloud66: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
