// answering_server.h — a loopback HTTP server for driver tests: answers
// every request with a settable body and records what was asked.
#pragma once

#include <httplib.h>

#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace stackflip::testing {

// A loopback server answering every GET/PATCH/POST/PUT with `body`, recording
// the raw request targets.
struct Answering {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::string body;
  std::vector<std::string> targets;
  std::vector<std::string> methods;
  std::vector<std::string> bodies;  // of PATCH/POST/PUT requests

  explicit Answering(std::string answer) : body(std::move(answer)) {
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu);
      targets.push_back(req.target);
      methods.push_back(req.method);
      if (!req.body.empty()) bodies.push_back(req.body);
      res.set_content(body, "application/json");
    };
    server.Get(".*", handler);
    server.Patch(".*", handler);
    server.Post(".*", handler);
    server.Put(".*", handler);
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~Answering() {
    server.stop();
    thread.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> lock(mu);
    return targets;
  }
  void answer(std::string b) {
    std::lock_guard<std::mutex> lock(mu);
    body = std::move(b);
  }
};

}  // namespace stackflip::testing
