// etcd_client.h — a small etcd v3 client over its HTTP/JSON gateway
// (grpc-gateway: POST /v3/kv/range, /v3/kv/put, /v3/kv/deleterange,
// /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive, /v3/lease/timetolive,
// /v3/lease/revoke, /v3/watch, /v3/auth/authenticate), as Patroni's etcd3
// support talks to it. Keys and values are base64 in the JSON and plain
// strings here; int64 fields arrive as JSON strings and are parsed strictly.
//
// Transport: sys/http_client.h (libcurl), one HttpClient per concurrent
// caller taken from a small pool, so the keep-alive thread, the watch thread
// and the apply threads never wait for one another's connection. Endpoints
// are tried in order starting from the last one that answered: a transport
// failure (refused, reset, timeout) moves to the next endpoint within the
// same call, until every endpoint failed once or the call's deadline passed.
// An HTTP answer with a gRPC error code (e.g. "etcdserver: no leader",
// "requested lease not found") is an Error, not a failover: the member
// answered. Errors name the endpoint and the operation, never credentials.
//
// TLS: `cacert` verifies the members, `cert`/`key` are the client identity.
// Auth: with `user` set, POST /v3/auth/authenticate gives a token sent as the
// "Authorization" header; an "invalid auth token" answer re-authenticates
// once and retries.
//
// Hostile members: answers are bounded (max_body) and parsed with
// util/json_input.h limits; a malformed answer is an Error, never a crash.
//
// Thread safety: every method may be called from any thread at once.
//
// Decisions where the gateway or the contract above left room:
// - Deadline: a call's attempts share `request_timeout`; each attempt gets
//   its share (left / endpoints not tried yet; the last one all that is
//   left), connecting and answering alike, so a black-holed member — also
//   one behind a kept connection, cut off by a partition — still leaves time
//   for the others. A member that failed is not tried first by the next
//   call. Running out is an Error with `timeout` set.
// - An answer over max_body is refused by the transport (not read) and
//   counts as that endpoint failing: the next endpoint is tried.
// - `requests()` counts every HTTP request sent: each endpoint attempt
//   (also one refused at once), each authenticate, one per watch stream.
// - Error flags: `config` (and `permanent`) for gRPC PermissionDenied (7),
//   Unauthenticated (16) other than an expired token, and a failed
//   authenticate; any other gRPC error is a plain Error.
// - keep_alive: etcd 3.4 answers the keep-alive of an unknown or expired
//   lease with HTTP 200 and {"result":{"header":..,"ID":".."}}, no TTL; that
//   (TTL absent or <= 0) is the "expired" Error. The answer is wrapped in
//   "result" (it is a stream's message), unlike every other call's.
// - time_to_live: etcd answers TTL "-1" for an unknown lease (HTTP 200).
// - revoke of a lease etcd no longer has ("requested lease not found",
//   HTTP 404 gRPC 5) is Ok: the lease is gone, which is what was asked.
// - grant: TTLs below etcd's minimum are raised by etcd (TTL 1 → 2 here).
// - watch: failover happens only until a member answers; after that a broken
//   or ended stream is an Error. Connecting (and authenticating) gets
//   request_timeout, the stream max_time; a member that accepts and then
//   never sends holds the watch until max_time (then Ok). Batches without
//   events ("created", progress notices) are not reported. The revision
//   given to `on_events` is the batch's largest event mod_revision, not the
//   message header's (which etcd may set past a batch it split): re-watching
//   from it + 1 misses nothing. `max_body` also caps one watch message. An
//   "invalid auth token" on the stream is an Error (the token is dropped, so
//   the next call authenticates again). The stream is read by
//   HttpClient::stream, which polls every kStreamTickMs (50 ms) so `stop` is
//   seen within that, not only when data arrives.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "util/result.h"

namespace stackflip {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379", "https://..."
  std::string cacert, cert, key;       // PEM files (TLS); empty = none
  std::string user, password;          // resolved secret; empty user = no auth
  // Deadline of one call across all endpoints it tries.
  std::chrono::milliseconds request_timeout{1500};
  size_t max_body = size_t{64} << 20;  // range answers of 10,000 groups fit
};

struct EtcdKeyValue {
  std::string key, value;
  int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct EtcdRangeOptions {
  bool prefix = false;        // every key that starts with `key`
  int64_t limit = 0;          // 0 = all
  bool newest_first = false;  // sort by create revision, descending
  bool keys_only = false;
  bool count_only = false;
};

struct EtcdRange {
  std::vector<EtcdKeyValue> kvs;
  int64_t revision = 0;  // the store's revision the answer was read at
  int64_t count = 0;     // keys in the range (may exceed kvs.size() with a limit)
  bool more = false;
};

// One comparison of a transaction: `key`'s `target` `op` the given number
// (create/mod revision, version, lease) or `value`.
struct EtcdCompare {
  enum class Target { create_revision, mod_revision, version, value, lease };
  enum class Op { equal, not_equal, greater, less };
  std::string key;
  Target target = Target::create_revision;
  Op op = Op::equal;
  int64_t number = 0;
  std::string value;
};

// One operation of a transaction branch.
struct EtcdOp {
  enum class Kind { put, remove, range };
  Kind kind = Kind::put;
  std::string key, value;  // value: put only
  int64_t lease = 0;       // put only; 0 = no lease
  bool prefix = false;     // remove / range
};

struct EtcdTxnResult {
  bool succeeded = false;  // the compares held; the success branch ran
  int64_t revision = 0;
  std::vector<EtcdRange> ranges;  // one per range op of the branch that ran, in order
};

struct EtcdWatchEvent {
  bool removed = false;  // DELETE (a key deleted or its lease expired); else PUT
  EtcdKeyValue kv;
};

class EtcdClient {
 public:
  static Result<std::unique_ptr<EtcdClient>> create(EtcdOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  Result<EtcdRange> range(const std::string& key, const EtcdRangeOptions& o = {});
  Result<int64_t> put(const std::string& key, const std::string& value, int64_t lease = 0);
  Result<int64_t> remove(const std::string& key, bool prefix = false);  // keys deleted
  Result<EtcdTxnResult> txn(const std::vector<EtcdCompare>& compares,
                            const std::vector<EtcdOp>& success,
                            const std::vector<EtcdOp>& failure = {});

  // A new lease of `ttl`; its ID.
  Result<int64_t> grant(std::chrono::seconds ttl);
  // One keep-alive; the TTL the lease has again, in seconds. A lease that
  // expired (or never existed) is an Error whose message says so.
  Result<int64_t> keep_alive(int64_t lease);
  // Seconds the lease has left; -1 when it has expired or does not exist.
  Result<int64_t> time_to_live(int64_t lease);
  Status revoke(int64_t lease);

  // Watches `key` (a prefix when `prefix`) from `start_revision` (0 = now)
  // and calls `on_events` with each batch of events and the revision it
  // brings the watcher to. Returns when `stop` is set (checked at least every
  // 200 ms), `on_events` returns false, `max_time` passed, or the stream
  // broke (an Error; the caller re-ranges and watches again from the
  // revision it had). A compacted start revision is an Error too.
  Status watch(const std::string& key, bool prefix, int64_t start_revision,
               const std::function<bool(const std::vector<EtcdWatchEvent>&, int64_t)>& on_events,
               const std::atomic<bool>& stop, std::chrono::milliseconds max_time);

  // The endpoint the last successful call used (for /status and logs).
  std::string endpoint() const;
  // Requests sent since creation (the scale benchmark reports a rate).
  uint64_t requests() const;

 private:
  struct Impl;
  explicit EtcdClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Base64 (RFC 4648, with padding) as the gateway wants keys and values.
std::string base64_encode(const std::string& bytes);
// Strict decoding; an Error for any character outside the alphabet or bad padding.
Result<std::string> base64_decode(const std::string& text);

// The end of the range of every key starting with `prefix` (etcd's
// "prefix + 1": the last byte incremented, trailing 0xff bytes dropped;
// "\0" when the prefix is empty or all 0xff).
std::string prefix_range_end(const std::string& prefix);

}  // namespace stackflip
