// etcd_client.cc — see etcd_client.h.
#include "coord/etcd_client.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <charconv>
#include <mutex>
#include <optional>

#include "sys/http_client.h"
#include "util/json_input.h"
#include "util/strings.h"

namespace stackflip {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string base64_encode(const std::string& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 |
                 uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint32_t(uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> base64_decode(const std::string& text) {
  if (text.size() % 4 != 0)
    return Err("base64: length " + std::to_string(text.size()) + " is not a multiple of 4");
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    int pad = 0;
    uint32_t v = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = text[i + j];
      if (c == '=' && last && j >= 2 && (j == 3 || text[i + 3] == '=')) {
        ++pad;
        v <<= 6;
        continue;
      }
      int s = sextet(c);
      if (s < 0 || pad > 0)
        return Err("base64: invalid character at offset " + std::to_string(i + j));
      v = v << 6 | uint32_t(s);
    }
    out += char((v >> 16) & 0xff);
    if (pad < 2) out += char((v >> 8) & 0xff);
    if (pad < 1) out += char(v & 0xff);
  }
  return out;
}

std::string prefix_range_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (uint8_t(end.back()) < 0xff) {
      end.back() = char(uint8_t(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

namespace {

using Clock = std::chrono::steady_clock;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
using Doc = std::unique_ptr<rapidjson::Document>;

// A member's answer and who gave it (for messages).
struct Answer {
  Doc doc;
  std::string endpoint;
};

// ---- request bodies -------------------------------------------------------

void put_string(Writer& w, const char* name, const std::string& text) {
  w.Key(name);
  w.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
}
void put_bytes(Writer& w, const char* name, const std::string& bytes) {
  put_string(w, name, base64_encode(bytes));
}
// int64 fields go as JSON strings, as the gateway writes them.
void put_int(Writer& w, const char* name, int64_t n) { put_string(w, name, std::to_string(n)); }

void put_key_range(Writer& w, const std::string& key, bool prefix) {
  put_bytes(w, "key", key);
  if (prefix) put_bytes(w, "range_end", prefix_range_end(key));
}

void put_range_request(Writer& w, const std::string& key, const EtcdRangeOptions& o) {
  w.StartObject();
  put_key_range(w, key, o.prefix);
  if (o.limit > 0) put_int(w, "limit", o.limit);
  if (o.newest_first) {
    put_string(w, "sort_order", "DESCEND");
    put_string(w, "sort_target", "CREATE");
  }
  for (auto [name, on] : {std::pair{"keys_only", o.keys_only}, {"count_only", o.count_only}}) {
    if (!on) continue;
    w.Key(name);
    w.Bool(true);
  }
  w.EndObject();
}

void put_op(Writer& w, const EtcdOp& op) {
  w.StartObject();
  switch (op.kind) {
    case EtcdOp::Kind::put:
      w.Key("request_put");
      w.StartObject();
      put_bytes(w, "key", op.key);
      put_bytes(w, "value", op.value);
      if (op.lease != 0) put_int(w, "lease", op.lease);
      w.EndObject();
      break;
    case EtcdOp::Kind::remove:
      w.Key("request_delete_range");
      w.StartObject();
      put_key_range(w, op.key, op.prefix);
      w.EndObject();
      break;
    case EtcdOp::Kind::range:
      w.Key("request_range");
      put_range_request(w, op.key, EtcdRangeOptions{op.prefix});
      break;
  }
  w.EndObject();
}

void put_compare(Writer& w, const EtcdCompare& c) {
  static const char* const kOps[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
  w.StartObject();
  put_bytes(w, "key", c.key);
  put_string(w, "result", kOps[static_cast<int>(c.op)]);
  switch (c.target) {
    case EtcdCompare::Target::create_revision:
      put_string(w, "target", "CREATE");
      put_int(w, "create_revision", c.number);
      break;
    case EtcdCompare::Target::mod_revision:
      put_string(w, "target", "MOD");
      put_int(w, "mod_revision", c.number);
      break;
    case EtcdCompare::Target::version:
      put_string(w, "target", "VERSION");
      put_int(w, "version", c.number);
      break;
    case EtcdCompare::Target::value:
      put_string(w, "target", "VALUE");
      put_bytes(w, "value", c.value);
      break;
    case EtcdCompare::Target::lease:
      put_string(w, "target", "LEASE");
      put_int(w, "lease", c.number);
      break;
  }
  w.EndObject();
}

template <class F>
std::string json_body(F&& write) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  write(w);
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize());
}

// ---- answers ----------------------------------------------------------------

// Reads fields of gateway answers: an absent field is 0/false/empty (proto3
// JSON leaves defaults out); a field of the wrong type or an int64 that is
// not a decimal number in range is recorded as the first problem.
struct Reader {
  std::string problem;

  void fail(const std::string& what) {
    if (problem.empty()) problem = what;
  }
  const rapidjson::Value* field(const rapidjson::Value& o, const char* name) {
    if (!o.IsObject()) {
      fail(std::string("expected an object holding \"") + name + "\"");
      return nullptr;
    }
    auto it = o.FindMember(name);
    return it == o.MemberEnd() || it->value.IsNull() ? nullptr : &it->value;
  }
  int64_t number(const rapidjson::Value& o, const char* name) {
    const auto* v = field(o, name);
    if (!v) return 0;
    if (v->IsInt64()) return v->GetInt64();
    if (v->IsString()) {
      std::string_view text(v->GetString(), v->GetStringLength());
      int64_t n = 0;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
      if (ec == std::errc() && end == text.data() + text.size() && !text.empty()) return n;
    }
    fail(std::string("\"") + name + "\" is not an int64");
    return 0;
  }
  bool flag(const rapidjson::Value& o, const char* name) {
    const auto* v = field(o, name);
    if (!v) return false;
    if (v->IsBool()) return v->GetBool();
    fail(std::string("\"") + name + "\" is not a boolean");
    return false;
  }
  std::string text(const rapidjson::Value& o, const char* name) {
    const auto* v = field(o, name);
    if (!v) return "";
    if (v->IsString()) return std::string(v->GetString(), v->GetStringLength());
    fail(std::string("\"") + name + "\" is not a string");
    return "";
  }
  std::string bytes(const rapidjson::Value& o, const char* name) {
    std::string t = text(o, name);
    auto decoded = base64_decode(t);
    if (decoded.ok()) return *decoded;
    fail(std::string("\"") + name + "\": " + decoded.error().message);
    return "";
  }
  // The object (or array) `name`, or null when absent or of the wrong type.
  const rapidjson::Value* object(const rapidjson::Value& o, const char* name) {
    const auto* v = field(o, name);
    if (v && !v->IsObject()) {
      fail(std::string("\"") + name + "\" is not an object");
      return nullptr;
    }
    return v;
  }
  const rapidjson::Value* array(const rapidjson::Value& o, const char* name) {
    const auto* v = field(o, name);
    if (v && !v->IsArray()) {
      fail(std::string("\"") + name + "\" is not an array");
      return nullptr;
    }
    return v;
  }
  int64_t revision(const rapidjson::Value& o) {
    const auto* header = object(o, "header");
    return header ? number(*header, "revision") : 0;
  }
  EtcdKeyValue kv(const rapidjson::Value& o) {
    EtcdKeyValue kv;
    if (!o.IsObject()) {
      fail("a key-value is not an object");
      return kv;
    }
    kv.key = bytes(o, "key");
    kv.value = bytes(o, "value");
    kv.create_revision = number(o, "create_revision");
    kv.mod_revision = number(o, "mod_revision");
    kv.version = number(o, "version");
    kv.lease = number(o, "lease");
    return kv;
  }
  EtcdRange range(const rapidjson::Value& o) {
    EtcdRange r;
    r.revision = revision(o);
    r.count = number(o, "count");
    r.more = flag(o, "more");
    if (const auto* kvs = array(o, "kvs"))
      for (const auto& item : kvs->GetArray()) r.kvs.push_back(kv(item));
    return r;
  }
};

// The message of a gRPC error answer ({"error","code","message"}; in a
// stream the gateway may also nest it: {"error":{"message",...}}), or "".
std::string grpc_error(const rapidjson::Value& doc, int* code = nullptr) {
  if (!doc.IsObject()) return "";
  auto error = doc.FindMember("error");
  if (error == doc.MemberEnd()) return "";
  const rapidjson::Value* holder = &doc;
  if (error->value.IsObject()) holder = &error->value;
  std::string message;
  for (const char* name : {"message", "error"}) {
    auto m = holder->FindMember(name);
    if (m != holder->MemberEnd() && m->value.IsString() && m->value.GetStringLength() > 0) {
      message = std::string(m->value.GetString(), m->value.GetStringLength());
      break;
    }
  }
  if (code) {
    auto c = holder->FindMember("code");
    if (c == holder->MemberEnd()) c = holder->FindMember("grpc_code");
    if (c != holder->MemberEnd() && c->value.IsInt()) *code = c->value.GetInt();
  }
  if (message.empty()) message = "an error without a message";
  return trim_for_message(message, 300);
}

constexpr int kGrpcUnauthenticated = 16;
constexpr int kGrpcPermissionDenied = 7;

bool invalid_token(const std::string& message) {
  return message.find("invalid auth token") != std::string::npos;
}

// Splits a byte stream into top-level JSON objects (the watch stream: one
// object per message, separated by newlines, cut anywhere by the transport).
// Strings are tracked so braces inside keys/values do not count.
class ObjectSplitter {
 public:
  explicit ObjectSplitter(size_t max) : max_(max) {}

  // Feeds `data`; calls `on_object` per complete object until it returns
  // false. Returns a problem ("" when none).
  template <class F>
  std::string feed(std::string_view data, F&& on_object) {
    for (char c : data) {
      if (depth_ == 0) {
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c != '{')
          return "unexpected " + escape_control(std::string(1, c)) + " between messages";
        buffer_.assign(1, c);
        depth_ = 1;
        continue;
      }
      if (buffer_.size() >= max_)
        return "a message is larger than the " + format_byte_size(max_) + " limit";
      buffer_ += c;
      if (in_string_) {
        if (escaped_)
          escaped_ = false;
        else if (c == '\\')
          escaped_ = true;
        else if (c == '"')
          in_string_ = false;
      } else if (c == '"') {
        in_string_ = true;
      } else if (c == '{' || c == '[') {
        ++depth_;
      } else if (c == '}' || c == ']') {
        if (--depth_ == 0) {
          std::string message;
          message.swap(buffer_);
          if (!on_object(std::string_view(message))) return "";
        }
      }
    }
    return "";
  }

 private:
  size_t max_;
  std::string buffer_;
  size_t depth_ = 0;
  bool in_string_ = false, escaped_ = false;
};

}  // namespace

// ---- the client ---------------------------------------------------------------

struct EtcdClient::Impl {
  EtcdOptions options;
  HttpClientOptions http_options;
  std::atomic<size_t> current{0};  // index of the endpoint that last answered
  std::atomic<uint64_t> requests{0};
  mutable std::mutex mu;  // guards the three below
  std::vector<std::unique_ptr<HttpClient>> pool;
  std::string token;
  std::string last_endpoint;

  // An HttpClient for one call, returned to the pool when the call ends.
  struct Lease {
    Impl* impl;
    std::unique_ptr<HttpClient> client;
    ~Lease() {
      std::lock_guard<std::mutex> lock(impl->mu);
      if (impl->pool.size() < 8) impl->pool.push_back(std::move(client));
    }
  };
  Lease take() {
    std::unique_ptr<HttpClient> client;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!pool.empty()) {
        client = std::move(pool.back());
        pool.pop_back();
      }
    }
    if (!client) client = std::make_unique<HttpClient>(http_options);
    return Lease{this, std::move(client)};
  }

  std::string current_token() {
    std::lock_guard<std::mutex> lock(mu);
    return token;
  }
  void forget_token(const std::string& old) {
    std::lock_guard<std::mutex> lock(mu);
    if (token == old) token.clear();
  }
  void answered(size_t index) {
    current = index;
    std::lock_guard<std::mutex> lock(mu);
    last_endpoint = options.endpoints[index];
  }

  HttpRequest request(const std::string& endpoint, const std::string& path, std::string body,
                      Clock::time_point deadline, size_t endpoints_left) const {
    HttpRequest req;
    req.method = "POST";
    req.url = endpoint + path;
    req.headers = {{"Content-Type", "application/json"}};
    req.body = std::move(body);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    // A black-holed member gets its share of the deadline, not all of it:
    // also on a kept connection, where the request is sent and the answer
    // never comes (a member cut off by a partition).
    req.timeout = std::max(left / static_cast<long>(std::max<size_t>(endpoints_left, 1)),
                           std::chrono::milliseconds(1));
    req.connect_timeout = req.timeout;
    req.max_body = options.max_body;
    return req;
  }

  // The answer of a member: a JSON object, or an Error for a gRPC error
  // answer or a malformed one.
  Result<Doc> interpret(const std::string& op, const std::string& endpoint,
                        const HttpResponse& response) const {
    const std::string where = "etcd " + op + " at " + endpoint;
    auto doc = std::make_unique<rapidjson::Document>();
    auto bad = parse_json_input(response.body, *doc, JsonLimits{options.max_body});
    if (response.status != 200) {
      int code = -1;
      std::string message = bad ? "" : grpc_error(*doc, &code);
      if (message.empty())
        return Err(where + ": HTTP " + std::to_string(response.status) + ": " +
                   trim_for_message(response.body, 200));
      Error e = Err(where + ": " + message + " (HTTP " + std::to_string(response.status) +
                    ", gRPC code " + std::to_string(code) + ")");
      if (code == kGrpcPermissionDenied ||
          (code == kGrpcUnauthenticated && !invalid_token(message)))
        e.config = e.permanent = true;
      return e;
    }
    if (bad) return Err(where + ": malformed answer: " + bad->message());
    if (!doc->IsObject()) return Err(where + ": malformed answer: not a JSON object");
    std::string message = grpc_error(*doc);
    if (!message.empty()) return Err(where + ": " + message);
    return doc;
  }

  // Authenticates at `endpoint` unless a token is held. A transport failure
  // is returned in `transport` (the caller tries the next endpoint).
  Status ensure_token(HttpClient& client, size_t index, Clock::time_point deadline,
                      size_t endpoints_left, std::optional<Error>& transport) {
    if (options.user.empty() || !current_token().empty()) return Status::Ok();
    const std::string& endpoint = options.endpoints[index];
    std::string body = json_body([&](Writer& w) {
      put_string(w, "name", options.user);
      put_string(w, "password", options.password);
    });
    ++requests;
    auto r =
        client.perform(request(endpoint, "/v3/auth/authenticate", body, deadline, endpoints_left));
    if (!r.ok()) {
      transport = r.error();
      return Status::Ok();
    }
    auto doc = interpret("authenticate as " + options.user, endpoint, *r);
    if (!doc.ok()) {
      Error e = doc.error();
      e.config = e.permanent = true;
      return e;
    }
    Reader read;
    std::string token = read.text(**doc, "token");
    if (!read.problem.empty() || token.empty())
      return Err("etcd authenticate at " + endpoint + ": the answer holds no token");
    std::lock_guard<std::mutex> lock(mu);
    this->token = token;
    return Status::Ok();
  }

  // One call: tries the endpoints from the one that last answered until one
  // answers or the deadline passes.
  Result<Answer> exchange(const std::string& op, const std::string& path, const std::string& body,
                          Clock::time_point deadline, std::string& used_token) {
    auto lease = take();
    const size_t n = options.endpoints.size();
    const size_t start = current.load();
    std::string failures;
    bool timed_out = false;
    for (size_t i = 0; i < n; ++i) {
      if (Clock::now() >= deadline) {
        timed_out = true;
        break;
      }
      const size_t index = (start + i) % n;
      const std::string& endpoint = options.endpoints[index];
      std::optional<Error> transport;
      Status auth = ensure_token(*lease.client, index, deadline, n - i, transport);
      if (!auth.ok()) return auth.error();
      if (!transport) {
        HttpRequest req = request(endpoint, path, body, deadline, n - i);
        used_token = current_token();
        if (!used_token.empty()) req.headers.emplace_back("Authorization", used_token);
        ++requests;
        auto r = lease.client->perform(req);
        if (r.ok()) {
          answered(index);
          auto doc = interpret(op, endpoint, *r);
          if (!doc.ok()) return doc.error();
          return Answer{std::move(*doc), endpoint};
        }
        transport = r.error();
        // The next call starts with the next member, not this one again.
        size_t was = index;
        current.compare_exchange_strong(was, (index + 1) % n);
      }
      timed_out = timed_out || transport->timeout;
      failures += (failures.empty() ? "" : "; ") + transport->message;
    }
    if (Clock::now() >= deadline) timed_out = true;
    std::string message =
        "etcd " + op + ": no endpoint answered" +
        (timed_out ? " within " + std::to_string(options.request_timeout.count()) + " ms" : "") +
        (failures.empty() ? "" : " (" + failures + ")");
    return timed_out ? Timeout(message) : Err(message);
  }

  Result<Answer> call(const std::string& op, const std::string& path, const std::string& body) {
    const auto deadline = Clock::now() + options.request_timeout;
    std::string token;
    auto r = exchange(op, path, body, deadline, token);
    if (!r.ok() && !options.user.empty() && invalid_token(r.error().message)) {
      forget_token(token);  // expired: authenticate again, once
      r = exchange(op, path, body, deadline, token);
    }
    return r;
  }
};

EtcdClient::EtcdClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
EtcdClient::~EtcdClient() = default;

Result<std::unique_ptr<EtcdClient>> EtcdClient::create(EtcdOptions options) {
  if (options.endpoints.empty()) return Err("etcd: no endpoints");
  for (auto& e : options.endpoints) {
    if (e.rfind("http://", 0) != 0 && e.rfind("https://", 0) != 0)
      return Err("etcd: endpoint \"" + trim_for_message(e, 100) +
                 "\" is not an http:// or https:// URL");
    while (e.size() > 8 && e.back() == '/') e.pop_back();
  }
  if (options.cert.empty() != options.key.empty())
    return Err("etcd: a client certificate needs its key and a key its certificate");
  if (options.request_timeout.count() <= 0) return Err("etcd: request_timeout must be positive");
  auto impl = std::make_unique<Impl>();
  impl->http_options.ca_file = options.cacert;
  impl->http_options.cert_file = options.cert;
  impl->http_options.key_file = options.key;
  impl->options = std::move(options);
  return std::unique_ptr<EtcdClient>(new EtcdClient(std::move(impl)));
}

namespace {
// Reads a typed answer; a problem in it is an Error naming the call.
template <class T, class F>
Result<T> read_answer(const std::string& op, Result<Answer> answer, F&& read) {
  if (!answer.ok()) return answer.error();
  Reader reader;
  T value = read(reader, *answer->doc);
  if (!reader.problem.empty())
    return Err("etcd " + op + " at " + answer->endpoint + ": malformed answer: " + reader.problem);
  return value;
}
}  // namespace

Result<EtcdRange> EtcdClient::range(const std::string& key, const EtcdRangeOptions& o) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  put_range_request(w, key, o);
  std::string op = "range " + trim_for_message(escape_control(key), 100);
  return read_answer<EtcdRange>(op, impl_->call(op, "/v3/kv/range", buffer.GetString()),
                                [](Reader& r, const rapidjson::Value& d) { return r.range(d); });
}

Result<int64_t> EtcdClient::put(const std::string& key, const std::string& value, int64_t lease) {
  std::string body = json_body([&](Writer& w) {
    put_bytes(w, "key", key);
    put_bytes(w, "value", value);
    if (lease != 0) put_int(w, "lease", lease);
  });
  std::string op = "put " + trim_for_message(escape_control(key), 100);
  return read_answer<int64_t>(op, impl_->call(op, "/v3/kv/put", body),
                              [](Reader& r, const rapidjson::Value& d) { return r.revision(d); });
}

Result<int64_t> EtcdClient::remove(const std::string& key, bool prefix) {
  std::string body = json_body([&](Writer& w) { put_key_range(w, key, prefix); });
  std::string op = "delete " + trim_for_message(escape_control(key), 100);
  return read_answer<int64_t>(
      op, impl_->call(op, "/v3/kv/deleterange", body),
      [](Reader& r, const rapidjson::Value& d) { return r.number(d, "deleted"); });
}

Result<EtcdTxnResult> EtcdClient::txn(const std::vector<EtcdCompare>& compares,
                                      const std::vector<EtcdOp>& success,
                                      const std::vector<EtcdOp>& failure) {
  std::string body = json_body([&](Writer& w) {
    w.Key("compare");
    w.StartArray();
    for (const auto& c : compares) put_compare(w, c);
    w.EndArray();
    for (auto [name, ops] : {std::pair{"success", &success}, std::pair{"failure", &failure}}) {
      w.Key(name);
      w.StartArray();
      for (const auto& op : *ops) put_op(w, op);
      w.EndArray();
    }
  });
  std::string op = "txn";
  if (!compares.empty()) op += " on " + trim_for_message(escape_control(compares[0].key), 100);
  return read_answer<EtcdTxnResult>(op, impl_->call(op, "/v3/kv/txn", body),
                                    [](Reader& r, const rapidjson::Value& d) {
                                      EtcdTxnResult t;
                                      t.succeeded = r.flag(d, "succeeded");
                                      t.revision = r.revision(d);
                                      if (const auto* responses = r.array(d, "responses"))
                                        for (const auto& item : responses->GetArray()) {
                                          if (!item.IsObject()) {
                                            r.fail("a response is not an object");
                                            continue;
                                          }
                                          if (const auto* range = r.object(item, "response_range"))
                                            t.ranges.push_back(r.range(*range));
                                        }
                                      return t;
                                    });
}

Result<int64_t> EtcdClient::grant(std::chrono::seconds ttl) {
  std::string body = json_body([&](Writer& w) { put_int(w, "TTL", ttl.count()); });
  auto id = read_answer<int64_t>("lease grant", impl_->call("lease grant", "/v3/lease/grant", body),
                                 [](Reader& r, const rapidjson::Value& d) {
                                   // LeaseGrantResponse carries its own "error" string.
                                   std::string error = r.text(d, "error");
                                   if (!error.empty())
                                     r.fail("the member refused: " + trim_for_message(error, 200));
                                   int64_t id = r.number(d, "ID");
                                   if (id == 0) r.fail("no lease ID");
                                   return id;
                                 });
  return id;
}

Result<int64_t> EtcdClient::keep_alive(int64_t lease) {
  std::string body = json_body([&](Writer& w) { put_int(w, "ID", lease); });
  std::string op = "keep-alive of lease " + std::to_string(lease);
  auto answer = impl_->call(op, "/v3/lease/keepalive", body);
  if (!answer.ok()) return answer.error();
  std::string where = "etcd " + op + " at " + answer->endpoint;
  Reader r;
  // A stream's message: {"result": {...}}.
  const auto* result = r.object(*answer->doc, "result");
  if (!result) r.fail("no \"result\"");
  int64_t ttl = result ? r.number(*result, "TTL") : 0;
  if (!r.problem.empty()) return Err(where + ": malformed answer: " + r.problem);
  if (ttl <= 0) return Err(where + ": the lease expired or does not exist");
  return ttl;
}

Result<int64_t> EtcdClient::time_to_live(int64_t lease) {
  std::string body = json_body([&](Writer& w) { put_int(w, "ID", lease); });
  std::string op = "time-to-live of lease " + std::to_string(lease);
  auto ttl =
      read_answer<int64_t>(op, impl_->call(op, "/v3/lease/timetolive", body),
                           [](Reader& r, const rapidjson::Value& d) { return r.number(d, "TTL"); });
  if (ttl.ok() && *ttl < 0) return int64_t{-1};
  return ttl;
}

Status EtcdClient::revoke(int64_t lease) {
  std::string body = json_body([&](Writer& w) { put_int(w, "ID", lease); });
  std::string op = "revoke of lease " + std::to_string(lease);
  auto r = impl_->call(op, "/v3/lease/revoke", body);
  if (!r.ok() && r.error().message.find("requested lease not found") != std::string::npos)
    return Status::Ok();  // gone already: what revoking wanted
  return r.status();
}

Status EtcdClient::watch(
    const std::string& key, bool prefix, int64_t start_revision,
    const std::function<bool(const std::vector<EtcdWatchEvent>&, int64_t)>& on_events,
    const std::atomic<bool>& stop, std::chrono::milliseconds max_time) {
  Impl& impl = *impl_;
  const auto end = Clock::now() + max_time;
  std::string body = json_body([&](Writer& w) {
    w.Key("create_request");
    w.StartObject();
    put_key_range(w, key, prefix);
    if (start_revision > 0) put_int(w, "start_revision", start_revision);
    w.EndObject();
  });
  const std::string what = "watch " + trim_for_message(escape_control(key), 100);
  auto lease = impl.take();
  const size_t n = impl.options.endpoints.size();
  const size_t start = impl.current.load();
  std::string failures;
  for (size_t i = 0; i < n; ++i) {
    if (stop.load() || Clock::now() >= end) return Status::Ok();
    const size_t index = (start + i) % n;
    const std::string& endpoint = impl.options.endpoints[index];
    const std::string where = "etcd " + what + " at " + endpoint;
    // Connecting and authenticating get the request timeout, the stream max_time.
    auto connect_deadline = std::min(end, Clock::now() + impl.options.request_timeout);
    std::optional<Error> transport;
    Status auth = impl.ensure_token(*lease.client, index, connect_deadline, n - i, transport);
    if (!auth.ok()) return auth;
    if (!transport) {
      HttpRequest req = impl.request(endpoint, "/v3/watch", body, end, 1);
      req.connect_timeout = impl.request(endpoint, "", "", connect_deadline, n - i).connect_timeout;
      std::string token = impl.current_token();
      if (!token.empty()) req.headers.emplace_back("Authorization", token);

      ObjectSplitter splitter(impl.options.max_body);
      bool got_data = false, callback_stopped = false;
      std::optional<Error> failed;
      auto on_message = [&](std::string_view text) {
        rapidjson::Document doc;
        if (auto bad = parse_json_input(text, doc, JsonLimits{impl.options.max_body})) {
          failed = Err(where + ": malformed message: " + bad->message());
          return false;
        }
        std::string error = grpc_error(doc);
        if (!error.empty()) {
          if (invalid_token(error)) impl.forget_token(token);
          failed = Err(where + ": " + error);
          return false;
        }
        Reader r;
        const auto* result = r.object(doc, "result");
        if (!result) {
          failed = Err(where +
                       ": malformed message: " + (r.problem.empty() ? "no \"result\"" : r.problem));
          return false;
        }
        if (r.flag(*result, "canceled")) {
          int64_t compacted = r.number(*result, "compact_revision");
          std::string reason = r.text(*result, "cancel_reason");
          failed =
              Err(where + ": " +
                  (compacted > 0
                       ? "revision " + std::to_string(start_revision) +
                             " was compacted (the oldest is " + std::to_string(compacted) + ")"
                       : "the member cancelled the watch" + (reason.empty() ? "" : ": " + reason)));
          return false;
        }
        std::vector<EtcdWatchEvent> events;
        int64_t revision = 0;
        if (const auto* list = r.array(*result, "events"))
          for (const auto& item : list->GetArray()) {
            EtcdWatchEvent event;
            std::string type = item.IsObject() ? r.text(item, "type") : "";
            if (type == "DELETE")
              event.removed = true;
            else if (!type.empty() && type != "PUT")
              r.fail("unknown event type \"" + trim_for_message(escape_control(type), 40) + "\"");
            const auto* kv = item.IsObject() ? r.object(item, "kv") : nullptr;
            if (!kv) r.fail("an event without \"kv\"");
            if (kv) event.kv = r.kv(*kv);
            revision = std::max(revision, event.kv.mod_revision);
            events.push_back(std::move(event));
          }
        if (!r.problem.empty()) {
          failed = Err(where + ": malformed message: " + r.problem);
          return false;
        }
        if (events.empty()) return true;  // "created", progress notices
        if (!on_events(events, revision)) {
          callback_stopped = true;
          return false;
        }
        return true;
      };
      ++impl.requests;
      auto r = lease.client->stream(req, [&](std::string_view chunk) {
        if (stop.load()) return false;
        if (chunk.empty()) return true;
        got_data = true;
        std::string problem = splitter.feed(chunk, on_message);
        if (!problem.empty() && !failed) failed = Err(where + ": " + problem);
        return !failed && !callback_stopped;
      });
      if (got_data || r.ok()) impl.answered(index);
      if (failed) return *failed;
      if (callback_stopped || stop.load()) return Status::Ok();
      if (r.ok()) {
        if (r->status != 200) return impl.interpret(what, endpoint, *r).status();
        return Err(where + ": the member ended the stream");
      }
      if (r.error().timeout && Clock::now() + std::chrono::milliseconds(20) >= end)
        return Status::Ok();  // max_time passed
      if (got_data) return Err(where + ": the stream broke: " + r.error().message);
      transport = r.error();
    }
    failures += (failures.empty() ? "" : "; ") + transport->message;
  }
  return Err("etcd " + what + ": no endpoint answered (" + failures + ")");
}

std::string EtcdClient::endpoint() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->last_endpoint;
}

uint64_t EtcdClient::requests() const { return impl_->requests.load(); }

}  // namespace stackflip
