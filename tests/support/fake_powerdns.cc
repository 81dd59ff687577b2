#include "fake_powerdns.h"

#include <httplib.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace stackflip::testing {

FakePowerDns::FakePowerDns() : server_(std::make_unique<httplib::Server>()) {
  const std::string prefix = "/api/v1/servers/localhost/zones/";
  server_->Get(prefix + "(.+)", [this](const httplib::Request& req, httplib::Response& res) {
    std::chrono::milliseconds delay;
    {
      std::lock_guard lock(mu_);
      ++gets_[req.matches[1]];
      delay = get_delay_;
    }
    std::this_thread::sleep_for(delay);
    std::lock_guard lock(mu_);
    if (fail_status_) {
      res.status = fail_status_;
      res.set_content("{\"error\": \"injected\"}", "application/json");
      return;
    }
    auto z = zones_.find(req.matches[1]);
    if (z == zones_.end()) {
      res.status = 404;
      res.set_content("Not Found", "text/plain");  // PowerDNS 4.7's answer, not JSON
      return;
    }
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartObject();
    w.Key("name"), w.String(z->first.c_str());
    w.Key("rrsets");
    w.StartArray();
    for (const auto& [key, rr] : z->second) {
      w.StartObject();
      w.Key("name"), w.String(key.first.c_str());
      w.Key("type"), w.String(key.second.c_str());
      w.Key("ttl"), w.Int(rr.ttl);
      w.Key("records");
      w.StartArray();
      for (const auto& c : rr.contents) {
        w.StartObject();
        w.Key("content"), w.String(c.c_str());
        w.Key("disabled"), w.Bool(false);
        w.EndObject();
      }
      w.EndArray();
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    res.set_content(buf.GetString(), "application/json");
  });
  server_->Patch(prefix + "(.+)", [this](const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu_);
    ++patches_[req.matches[1]];
    auto z = zones_.find(req.matches[1]);
    rapidjson::Document d;
    if (z == zones_.end() || d.Parse(req.body.c_str()).HasParseError() || !d.IsObject() ||
        !d.HasMember("rrsets") || !d["rrsets"].IsArray()) {
      res.status = z == zones_.end() ? 404 : 400;
      return;
    }
    for (const auto& rr : d["rrsets"].GetArray()) {
      std::pair<std::string, std::string> key{rr["name"].GetString(), rr["type"].GetString()};
      if (std::string(rr["changetype"].GetString()) == "DELETE") {
        z->second.erase(key);
        continue;
      }
      Rrset set;
      set.ttl = rr.HasMember("ttl") ? rr["ttl"].GetInt() : 60;
      for (const auto& rec : rr["records"].GetArray())
        set.contents.push_back(rec["content"].GetString());
      z->second[key] = set;
    }
    res.status = 204;
  });
  server_->Get("/api/v1/servers/localhost", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"id": "localhost", "type": "Server"})", "application/json");
  });
  server_->Post("/api/v1/servers/localhost/zones", [this](const httplib::Request& req,
                                                          httplib::Response& res) {
    std::lock_guard lock(mu_);
    ++posts_;
    rapidjson::Document d;
    if (d.Parse(req.body.c_str()).HasParseError() || !d.IsObject() || !d.HasMember("name") ||
        !d["name"].IsString()) {
      res.status = 422;
      return;
    }
    const std::string name = d["name"].GetString();
    if (zones_.count(name)) {
      res.status = 409;
      res.set_content(R"({"error": "Domain ')" + name + R"(' already exists"})",
                      "application/json");
      return;
    }
    zones_[name];
    res.status = 201;
    res.set_content(R"({"id": ")" + name + R"(", "name": ")" + name + R"("})", "application/json");
  });
  port_ = server_->bind_to_any_port("127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

FakePowerDns::~FakePowerDns() {
  server_->stop();
  thread_.join();
}

std::string FakePowerDns::url() const { return "http://127.0.0.1:" + std::to_string(port_); }

void FakePowerDns::set_rrset(const std::string& zone, const std::string& name,
                             const std::string& type, std::vector<std::string> contents, int ttl) {
  std::lock_guard lock(mu_);
  zones_[zone][{name, type}] = Rrset{ttl, std::move(contents)};
}

std::vector<std::string> FakePowerDns::rrset(const std::string& zone, const std::string& name,
                                             const std::string& type) {
  std::lock_guard lock(mu_);
  auto z = zones_.find(zone);
  if (z == zones_.end()) return {};
  auto r = z->second.find({name, type});
  return r == z->second.end() ? std::vector<std::string>{} : r->second.contents;
}

int FakePowerDns::gets(const std::string& zone) {
  std::lock_guard lock(mu_);
  return gets_[zone];
}

int FakePowerDns::patches(const std::string& zone) {
  std::lock_guard lock(mu_);
  return patches_[zone];
}

void FakePowerDns::set_get_delay(std::chrono::milliseconds d) {
  std::lock_guard lock(mu_);
  get_delay_ = d;
}

void FakePowerDns::fail_gets(int status) {
  std::lock_guard lock(mu_);
  fail_status_ = status;
}

}  // namespace stackflip::testing

namespace stackflip::testing {

int FakePowerDns::rrset_ttl(const std::string& zone, const std::string& name,
                            const std::string& type) {
  std::lock_guard lock(mu_);
  auto z = zones_.find(zone);
  if (z == zones_.end()) return -1;
  auto r = z->second.find({name, type});
  return r == z->second.end() ? -1 : r->second.ttl;
}

void FakePowerDns::delete_rrset(const std::string& zone, const std::string& name,
                                const std::string& type) {
  std::lock_guard lock(mu_);
  auto z = zones_.find(zone);
  if (z != zones_.end()) z->second.erase({name, type});
}

void FakePowerDns::add_zone(const std::string& zone) {
  std::lock_guard lock(mu_);
  zones_[zone];
}

void FakePowerDns::delete_zone(const std::string& zone) {
  std::lock_guard lock(mu_);
  zones_.erase(zone);
}

bool FakePowerDns::has_zone(const std::string& zone) {
  std::lock_guard lock(mu_);
  return zones_.count(zone) > 0;
}

int FakePowerDns::posts() {
  std::lock_guard lock(mu_);
  return posts_;
}

}  // namespace stackflip::testing
