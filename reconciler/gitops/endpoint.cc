#include "gitops/endpoint.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace stackflip {

EndpointResponse EndpointResponse::text(int status, std::string body) {
  EndpointResponse r;
  r.status = status;
  r.body = std::make_shared<const std::string>(std::move(body));
  return r;
}

EndpointResponse EndpointResponse::shared(std::shared_ptr<const std::string> body,
                                          std::string content_type) {
  EndpointResponse r;
  r.body = std::move(body);
  r.content_type = std::move(content_type);
  return r;
}

namespace {

using Clock = std::chrono::steady_clock;

const char* reason_phrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 303:
      return "See Other";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Status";
  }
}

enum class Phase { kHead, kBody, kWrite, kDrain };

struct Conn {
  int fd = -1;
  std::string remote;
  Phase phase = Phase::kHead;
  std::string in;        // received, not yet consumed
  bool started = false;  // the current request's first byte has arrived
  EndpointRequest req;
  size_t reserved = 0;  // declared body bytes counted in Loop::buffered
  std::string out_head;
  std::shared_ptr<const std::string> out_body;
  size_t out_off = 0;
  bool close_after = false;
  size_t served = 0;
  size_t drained = 0;
  Clock::time_point deadline, waiting_since;
};

constexpr auto kDrainTime = std::chrono::milliseconds(1000);
constexpr size_t kDrainBytes = 1 << 20;

std::string peer_name(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET)
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, host, sizeof host);
  else if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, host, sizeof host);
  return host;
}

// The state of one run of HttpEndpoint's loop thread.
class Loop {
 public:
  Loop(const EndpointLimits& limits, int listen_fd, int wake_fd,
       std::function<EndpointResponse(const EndpointRequest&)> dispatch,
       const std::atomic<bool>& stop)
      : limits_(limits),
        listen_fd_(listen_fd),
        wake_fd_(wake_fd),
        dispatch_(std::move(dispatch)),
        stop_(stop) {}

  ~Loop() {
    for (auto& c : conns_)
      if (c->fd >= 0) ::close(c->fd);
  }

  void run() {
    std::vector<pollfd> fds;
    while (!stop_) {
      fds.clear();
      fds.push_back({wake_fd_, POLLIN, 0});
      fds.push_back({listen_fd_, POLLIN, 0});
      auto now = Clock::now();
      auto next = now + std::chrono::seconds(1);
      for (auto& c : conns_) {
        fds.push_back({c->fd, static_cast<short>(c->phase == Phase::kWrite ? POLLOUT : POLLIN), 0});
        next = std::min(next, c->deadline);
      }
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next - now).count();
      int n = ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<int64_t>(wait, 0, 1000)));
      if (n < 0 && errno != EINTR) {
        spdlog::error("http endpoint: poll failed: {}", std::strerror(errno));
        return;
      }
      if (stop_) return;
      if (fds[0].revents) {
        char b[64];
        while (::read(wake_fd_, b, sizeof b) > 0) {
        }
      }
      size_t count = conns_.size();  // accept() below appends
      for (size_t i = 0; i < count; ++i) {
        Conn& c = *conns_[i];
        if (!fds[i + 2].revents) continue;
        if (c.phase == Phase::kWrite)
          on_writable(c);
        else
          on_readable(c);
      }
      if (fds[1].revents & POLLIN) accept_all();
      now = Clock::now();
      for (auto& c : conns_)
        if (c->fd >= 0 && c->deadline <= now) close(*c);
      conns_.erase(std::remove_if(conns_.begin(), conns_.end(),
                                  [](const std::unique_ptr<Conn>& c) { return c->fd < 0; }),
                   conns_.end());
    }
  }

 private:
  void close(Conn& c) {
    if (c.fd < 0) return;
    ::close(c.fd);
    c.fd = -1;
    release(c);
  }

  void release(Conn& c) {
    buffered_ -= c.reserved;
    c.reserved = 0;
  }

  // Closes the connection that has waited longest for a whole request.
  bool evict_one() {
    Conn* oldest = nullptr;
    for (auto& c : conns_)
      if (c->fd >= 0 && (c->phase == Phase::kHead || c->phase == Phase::kBody) &&
          (!oldest || c->waiting_since < oldest->waiting_since))
        oldest = c.get();
    if (!oldest)
      for (auto& c : conns_)
        if (c->fd >= 0 && (!oldest || c->waiting_since < oldest->waiting_since)) oldest = c.get();
    if (!oldest) return false;
    close(*oldest);
    return true;
  }

  size_t open_count() const {
    return static_cast<size_t>(
        std::count_if(conns_.begin(), conns_.end(), [](const auto& c) { return c->fd >= 0; }));
  }

  void accept_all() {
    for (int i = 0; i < 256; ++i) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if ((errno == EMFILE || errno == ENFILE) && evict_one()) continue;
        return;  // EAGAIN, or nothing to give up
      }
      while (open_count() >= limits_.max_connections && evict_one()) {
      }
      auto c = std::make_unique<Conn>();
      c->fd = fd;
      c->remote = peer_name(ss);
      c->waiting_since = Clock::now();
      c->deadline = c->waiting_since + limits_.idle_timeout;
      conns_.push_back(std::move(c));
    }
  }

  void on_readable(Conn& c) {
    char buf[16384];
    for (int i = 0; i < 8 && c.fd >= 0 && c.phase != Phase::kWrite; ++i) {
      ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n == 0) return close(c);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) close(c);
        return;
      }
      if (c.phase == Phase::kDrain) {
        c.drained += static_cast<size_t>(n);
        if (c.drained > kDrainBytes) return close(c);
        continue;
      }
      c.in.append(buf, static_cast<size_t>(n));
      if (!c.started) {
        c.started = true;
        c.deadline = Clock::now() + limits_.request_timeout;
      }
      progress(c);
    }
  }

  void progress(Conn& c) {
    if (c.phase == Phase::kHead) {
      size_t end = find_head_end(std::string_view(c.in).substr(0, limits_.max_head));
      if (end == 0) {
        if (c.in.size() >= limits_.max_head) refuse(c, 431, "request head too large");
        return;
      }
      HeadParse p = parse_request_head(std::string_view(c.in).substr(0, end), limits_.max_body);
      if (p.status) return refuse(c, p.status, p.reason);
      c.req = std::move(p.request);
      c.req.remote = c.remote;
      c.in.erase(0, end);
      if (c.req.content_length > 0) {
        if (buffered_ + c.req.content_length > limits_.max_buffered)
          return refuse(c, 503, "too many request bodies in flight; retry later");
        c.reserved = c.req.content_length;
        buffered_ += c.reserved;
        c.phase = Phase::kBody;
        if (c.req.expect_continue && c.in.empty()) {
          static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
          (void)!::send(c.fd, kContinue, sizeof kContinue - 1, MSG_NOSIGNAL);
        }
      }
    }
    if (c.phase == Phase::kBody) {
      if (c.in.size() < c.req.content_length) return;
      c.req.body = c.in.substr(0, c.req.content_length);
      c.in.erase(0, c.req.content_length);
    }
    ++c.served;
    EndpointResponse res;
    try {
      res = dispatch_(c.req);
    } catch (const std::exception& e) {
      spdlog::error("http endpoint: {} {}: {}", c.req.method, c.req.path, e.what());
      res = EndpointResponse::text(500, "internal error\n");
    }
    bool keep = c.req.keep_alive && c.served < limits_.max_requests;
    respond(c, res, !keep, c.req.method == "HEAD");
    c.req = EndpointRequest();  // frees the body; the reservation goes once it is written
  }

  void refuse(Conn& c, int status, const std::string& reason) {
    spdlog::info("http endpoint: {} from {}: {}", status, c.remote, reason);
    respond(c, EndpointResponse::text(status, reason + "\n"), true, false);
  }

  void respond(Conn& c, const EndpointResponse& res, bool close_after, bool head_only) {
    size_t length = res.body ? res.body->size() : 0;
    std::string h = "HTTP/1.1 " + std::to_string(res.status) + " " + reason_phrase(res.status) +
                    "\r\nContent-Type: " + res.content_type +
                    "\r\nContent-Length: " + std::to_string(length) +
                    "\r\nConnection: " + (close_after ? "close" : "keep-alive") + "\r\n";
    for (const auto& [k, v] : res.headers) h += k + ": " + v + "\r\n";
    h += "\r\n";
    c.out_head = std::move(h);
    c.out_body = head_only ? nullptr : res.body;
    c.out_off = 0;
    c.close_after = close_after;
    c.phase = Phase::kWrite;
    c.deadline = Clock::now() + limits_.write_timeout;
    on_writable(c);
  }

  void on_writable(Conn& c) {
    size_t head = c.out_head.size(), total = head + (c.out_body ? c.out_body->size() : 0);
    while (c.out_off < total) {
      const char* p = c.out_off < head ? c.out_head.data() + c.out_off
                                       : c.out_body->data() + (c.out_off - head);
      size_t len = c.out_off < head ? head - c.out_off : total - c.out_off;
      ssize_t n = ::send(c.fd, p, len, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) close(c);
        return;
      }
      c.out_off += static_cast<size_t>(n);
    }
    c.out_head.clear();
    c.out_body.reset();
    release(c);
    auto now = Clock::now();
    if (c.close_after) {
      // Let the client read the answer before the reset an unread input causes.
      ::shutdown(c.fd, SHUT_WR);
      c.in.clear();
      c.in.shrink_to_fit();
      c.phase = Phase::kDrain;
      c.deadline = now + kDrainTime;
      return;
    }
    c.phase = Phase::kHead;
    c.started = !c.in.empty();
    c.waiting_since = now;
    c.deadline = now + (c.started ? limits_.request_timeout : limits_.idle_timeout);
    if (c.started) progress(c);  // a pipelined request
  }

  const EndpointLimits& limits_;
  int listen_fd_, wake_fd_;
  std::function<EndpointResponse(const EndpointRequest&)> dispatch_;
  const std::atomic<bool>& stop_;
  std::vector<std::unique_ptr<Conn>> conns_;
  size_t buffered_ = 0;
};

}  // namespace

HttpEndpoint::HttpEndpoint(EndpointLimits limits) : limits_(limits) {
  if (::pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) wake_[0] = wake_[1] = -1;
}

HttpEndpoint::~HttpEndpoint() {
  stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  for (int fd : wake_)
    if (fd >= 0) ::close(fd);
}

void HttpEndpoint::handle(const std::string& method, const std::string& path, HttpHandler handler) {
  routes_[path][method] = std::move(handler);
}

EndpointResponse HttpEndpoint::dispatch(const EndpointRequest& req) const {
  auto route = routes_.find(req.path);
  if (route == routes_.end()) return EndpointResponse::text(404, "not found\n");
  auto it = route->second.find(req.method == "HEAD" ? "GET" : req.method);
  if (it == route->second.end()) {
    EndpointResponse r = EndpointResponse::text(405, "method not allowed\n");
    std::string allow;
    for (const auto& [m, h] : route->second) allow += (allow.empty() ? "" : ", ") + m;
    r.headers.emplace_back("Allow", allow);
    return r;
  }
  return it->second(req);
}

Status HttpEndpoint::listen(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size())
    return Err("cannot listen on \"" + address + "\": expected HOST:PORT");
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit) ||
      std::stoi(port) > 65535)
    return Err("cannot listen on \"" + address + "\": bad port");
  addrinfo hints{}, *ai = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  if (int e = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &ai))
    return Err("cannot listen on " + address + ": " + ::gai_strerror(e));
  std::string why = "no address";
  for (addrinfo* a = ai; a; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, a->ai_addr, a->ai_addrlen) == 0 && ::listen(fd, 512) == 0) {
      sockaddr_storage ss{};
      socklen_t len = sizeof ss;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
      port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(ss).sin6_port
                                             : reinterpret_cast<sockaddr_in&>(ss).sin_port);
      listen_fd_ = fd;
      ::freeaddrinfo(ai);
      return Status::Ok();
    }
    why = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(ai);
  return Err("cannot listen on " + address + ": " + why);
}

void HttpEndpoint::start() {
  if (listen_fd_ < 0 || thread_.joinable()) return;
  thread_ = std::thread([this] {
    Loop loop(
        limits_, listen_fd_, wake_[0], [this](const EndpointRequest& r) { return dispatch(r); },
        stop_);
    loop.run();
  });
}

void HttpEndpoint::stop() {
  stop_ = true;
  if (wake_[1] >= 0) (void)!::write(wake_[1], "x", 1);
  if (thread_.joinable()) thread_.join();
}

}  // namespace stackflip
