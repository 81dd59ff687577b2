#include "sys/http_client.h"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <optional>

#include "util/deadline.h"
#include "util/json_input.h"
#include "util/strings.h"

namespace stackflip {

namespace {

// curl_global_init is not thread-safe; drivers may be created concurrently.
void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Body {
  std::string text;
  size_t max = 0;
  bool over = false;
};

// Returning less than given makes libcurl stop with CURLE_WRITE_ERROR.
size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<Body*>(user);
  if (size * n > body->max - body->text.size()) {
    body->over = true;
    return 0;
  }
  body->text.append(data, size * n);
  return size * n;
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

// Response headers are capped too (libcurl bounds each line, not how many).
constexpr size_t kMaxHeaderBytes = size_t{256} << 10;

struct Headers {
  std::vector<std::pair<std::string, std::string>>* list;
  size_t bytes = 0;
  bool over = false;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* h = static_cast<Headers*>(user);
  if ((h->bytes += size * n) > kMaxHeaderBytes) {
    h->over = true;
    return 0;
  }
  auto* headers = h->list;
  std::string line(data, size * n);
  // A new status line (e.g. after "100 Continue") starts a new header block.
  if (line.rfind("HTTP/", 0) == 0) {
    headers->clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon != std::string::npos)
    headers->emplace_back(trim(line.substr(0, colon)), trim(line.substr(colon + 1)));
  return size * n;
}

}  // namespace

std::string HttpResponse::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (iequals(k, name)) return v;
  return "";
}

std::string first_bad_header(const std::vector<std::pair<std::string, std::string>>& headers) {
  for (const auto& [name, value] : headers) {
    for (unsigned char c : name)
      if (is_control(c) || c == ':' || c == ' ') return name;
    for (unsigned char c : value)
      if (is_control(c) && c != '\t') return name;
  }
  return "";
}

std::string percent_encode_path_segment(const std::string& s) {
  // "." and ".." are unreserved but would move up a level: encoded too.
  if (s == "." || s == "..") return s == "." ? "%2E" : "%2E%2E";
  return url_encode(s, true);
}

struct HttpClient::Impl {
  HttpClientOptions options;
  CURL* easy = nullptr;
};

HttpClient::HttpClient(HttpClientOptions options) : impl_(std::make_unique<Impl>()) {
  global_init_once();
  impl_->options = std::move(options);
  impl_->easy = curl_easy_init();
  if (impl_->options.insecure)
    spdlog::warn("TLS certificate verification is disabled (insecure: true) for an HTTP provider");
}

HttpClient::~HttpClient() {
  if (impl_->easy) curl_easy_cleanup(impl_->easy);
}

namespace {

// What one transfer needs alive while libcurl runs it.
struct Transfer {
  Body body;
  Headers received{nullptr};
  curl_slist* headers = nullptr;
  char errbuf[CURL_ERROR_SIZE] = {0};
  bool cut = false;  // the timeout was cut to the operation deadline
  ~Transfer() { curl_slist_free_all(headers); }
};

// Sets `c` up for `request` (after a reset, which keeps the connection cache:
// connections are reused across requests of this client). The caller sets
// the write function.
void prepare(CURL* c, const HttpClientOptions& options, const HttpRequest& request,
             HttpResponse& response, Transfer& t) {
  curl_easy_reset(c);
  t.body.max = request.max_body;
  t.received.list = &response.headers;
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, t.errbuf);
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
  // Cut to the operation deadline (util/deadline.h); can_send() made sure
  // some time is left (CURLOPT_TIMEOUT_MS 0 would mean "no limit").
  const auto total = std::max(std::chrono::milliseconds(1), within_deadline(request.timeout));
  t.cut = total < request.timeout;
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(total.count()));
  auto connect = request.connect_timeout.count() > 0 ? request.connect_timeout : request.timeout;
  connect = std::clamp(connect, std::chrono::milliseconds(1), total);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(connect.count()));
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &t.received);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "stackflip/" STACKFLIP_VERSION);

  if (options.insecure) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  } else {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options.ca_file.c_str());
  }
  if (!options.cert_file.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, options.cert_file.c_str());
  if (!options.key_file.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, options.key_file.c_str());

  if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (!request.body.empty() ||
      (request.method != "GET" && request.method != "HEAD" && request.method != "DELETE")) {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
  }

  for (const auto& [k, v] : request.headers)
    t.headers = curl_slist_append(t.headers, (k + ": " + v).c_str());
  // No "Expect: 100-continue" round trip for small bodies.
  t.headers = curl_slist_append(t.headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, t.headers);
}

// The error of a finished transfer, if any.
std::optional<Error> transfer_error(const std::string& where, const HttpRequest& request,
                                    const Transfer& t, CURLcode rc) {
  if (t.received.over)
    return Err(where + ": the response headers are larger than " +
               format_byte_size(kMaxHeaderBytes) + "; not read");
  if (t.body.over)
    return Err(where + ": the response body is larger than the " +
               format_byte_size(request.max_body) + " limit; not read");
  if (rc != CURLE_OK) {
    std::string reason = t.errbuf[0] ? trim(t.errbuf) : curl_easy_strerror(rc);
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      std::string stopped = t.cut ? deadline_reason() : "";
      return Timeout(where + ": timed out (" + reason + ")" +
                     (stopped.empty() ? "" : "; " + stopped));
    }
    return Err(where + ": " + reason);
  }
  return std::nullopt;
}

// Streams a 2xx body to the caller, collects any other body under its cap.
struct Sink {
  CURL* easy = nullptr;
  const std::function<bool(std::string_view)>* on_data = nullptr;
  Body* body = nullptr;
  bool stopped = false;  // on_data returned false
};

size_t on_stream(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  long status = 0;
  curl_easy_getinfo(sink->easy, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status > 299) return on_body(data, size, n, sink->body);
  if (!(*sink->on_data)(std::string_view(data, size * n))) {
    sink->stopped = true;
    return 0;
  }
  return size * n;
}

// What perform() and stream() check before sending anything.
Status can_send(CURL* c, const std::string& where, const HttpRequest& request) {
  if (!c) return Err(where + ": cannot initialise libcurl");
  if (std::string stopped = operation_stopped(); !stopped.empty())
    return Timeout(where + ": not sent: " + stopped);
  std::string bad = first_bad_header(request.headers);
  if (!bad.empty())
    return Err(where + ": refused to send header \"" + trim_for_message(bad, 64) +
               "\": its name or value holds a control character (CR, LF, ...)");
  return Status::Ok();
}

}  // namespace

Result<HttpResponse> HttpClient::perform(const HttpRequest& request) {
  const std::string where = request.method + " " + request.url;
  CURL* c = impl_->easy;
  if (Status ok = can_send(c, where, request); !ok.ok()) return ok.error();

  HttpResponse response;
  Transfer t;
  prepare(c, impl_->options, request, response, t);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &t.body);

  CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);

  if (auto e = transfer_error(where, request, t, rc)) return *e;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  response.body = std::move(t.body.text);
  return response;
}

Result<HttpResponse> HttpClient::stream(const HttpRequest& request,
                                        const std::function<bool(std::string_view)>& on_data) {
  const std::string where = request.method + " " + request.url;
  CURL* c = impl_->easy;
  if (Status ok = can_send(c, where, request); !ok.ok()) return ok.error();
  CURLM* multi = curl_multi_init();
  if (!multi) return Err(where + ": cannot initialise libcurl");

  HttpResponse response;
  Transfer t;
  prepare(c, impl_->options, request, response, t);
  Sink sink{c, &on_data, &t.body};
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_multi_add_handle(multi, c);

  CURLcode rc = CURLE_OK;
  bool finished = false;
  std::string multi_error;
  for (;;) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi, &running);
    if (mc != CURLM_OK) {
      multi_error = curl_multi_strerror(mc);
      break;
    }
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg == CURLMSG_DONE) {
        rc = msg->data.result;
        finished = true;
      }
    }
    if (finished || sink.stopped) break;
    if (!on_data(std::string_view())) {
      sink.stopped = true;
      break;
    }
    mc = curl_multi_poll(multi, nullptr, 0, kStreamTickMs, nullptr);
    if (mc != CURLM_OK) {
      multi_error = curl_multi_strerror(mc);
      break;
    }
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  curl_multi_remove_handle(multi, c);
  curl_multi_cleanup(multi);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);

  if (sink.stopped) return response;
  if (!multi_error.empty()) return Err(where + ": " + multi_error);
  if (auto e = transfer_error(where, request, t, rc)) return *e;
  response.body = std::move(t.body.text);
  return response;
}

}  // namespace stackflip
