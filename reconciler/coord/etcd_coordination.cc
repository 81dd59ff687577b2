// etcd_coordination.cc — see etcd_coordination.h.
#include "coord/etcd_coordination.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "config/snapshot.h"
#include "gitops/last_known.h"
#include "util/clock.h"
#include "util/deadline.h"
#include "util/json_input.h"
#include "util/strings.h"

namespace stackflip {

namespace {

using Steady = std::chrono::steady_clock;

std::string json_object(const std::vector<std::pair<std::string, std::string>>& strings,
                        const std::vector<std::pair<std::string, int64_t>>& numbers = {}) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  for (const auto& [k, v] : strings) {
    w.Key(k.c_str());
    w.String(v.c_str(), static_cast<rapidjson::SizeType>(v.size()));
  }
  for (const auto& [k, v] : numbers) {
    w.Key(k.c_str());
    w.Int64(v);
  }
  w.EndObject();
  return buf.GetString();
}

// A flat JSON object of strings and integers from etcd (hostile input:
// bounded, and a malformed one reads as empty).
std::map<std::string, std::string> read_object(const std::string& text) {
  std::map<std::string, std::string> out;
  rapidjson::Document doc;
  JsonLimits limits;
  limits.max_bytes = size_t{4} << 20;
  limits.max_depth = 2;
  if (parse_json_input(text, doc, limits) || !doc.IsObject()) return out;
  for (const auto& m : doc.GetObject()) {
    if (m.value.IsString())
      out[m.name.GetString()] = m.value.GetString();
    else if (m.value.IsInt64())
      out[m.name.GetString()] = std::to_string(m.value.GetInt64());
  }
  return out;
}

double seconds_between(Steady::time_point from, Steady::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

std::string rest_after(const std::string& k, const std::string& prefix) {
  return k.compare(0, prefix.size(), prefix) == 0 ? k.substr(prefix.size()) : "";
}

}  // namespace

// ---------------------------------------------------------------- journal

class EtcdCoordination::Journal : public ActionLog {
 public:
  explicit Journal(EtcdCoordination& c) : c_(c) {
    run_ = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count());
  }

  Result<int64_t> begin(const Action& a, const std::string& origin) override {
    int64_t token = 0;
    std::string jkey;
    {
      std::unique_lock lock(c_.mu_);
      auto budget = c_.o_.budget ? c_.o_.budget(a) : std::chrono::milliseconds(0);
      for (int round = 0;; ++round) {
        if (c_.quiet_)
          return Err("etcd: the last keep-alive failed (" + c_.etcd_error_ +
                     "); no new action until it succeeds");
        auto now = Steady::now();
        if (c_.act_until_locked() - now > budget) break;
        if (round == 1 || c_.stop_)
          return Err("the lease has " + c_.lease_left_text(now) +
                     " left, not more than the stop margin and the " +
                     std::to_string(budget.count()) + " ms this action may take; not starting it");
        // A keep-alive slow to be answered (etcd busy after an election) is
        // no reason to stop a switch half-way: ask for one now and wait for
        // its answer, at most until the lease's end by our count.
        const SteadyTime renewed = c_.lease_expires_;
        const int64_t lease = c_.lease_;
        c_.keepalive_now_ = true;
        c_.cv_.notify_all();
        c_.cv_.wait_until(lock, c_.act_until_locked(), [&] {
          return c_.stop_ || c_.quiet_ || c_.lease_ != lease || c_.lease_expires_ != renewed;
        });
      }
      auto it = c_.leaders_.find(a.group);
      if (it == c_.leaders_.end() || it->second.instance != c_.o_.instance ||
          it->second.lease != c_.lease_)
        return Err("not the leader of group " + a.group + " (fencing: action not started)");
      token = it->second.token;
      jkey = c_.key("journal/" + c_.o_.instance + "/" + run_ + "." + std::to_string(++seq_));
    }
    Entry e{a, origin, token, jkey, Clock::Duration{}};
    auto txn = fenced_put(e, "started", "", "", 0);
    if (!txn.ok() &&
        c_.lease_covers(c_.o_.budget ? c_.o_.budget(a) : std::chrono::milliseconds(0))) {
      // Once more (an election can time out one request): the same key
      // under the same comparison, so a first try that did land is
      // overwritten, not recorded twice.
      spdlog::warn("etcd: recording {} {} of group {}: {}; once more", to_string(a.kind), a.stack,
                   a.group, txn.error().message);
      txn = fenced_put(e, "started", "", "", 0);
    }
    if (!txn.ok()) return Err("etcd: cannot record the action: " + txn.error().message);
    if (!*txn) {
      c_.lost(a.group, token);
      return Err("fencing: the leadership of group " + a.group + " (token " +
                 std::to_string(token) + ") was taken over; action not started");
    }
    auto id = c_.local_.begin(a, origin);
    if (!id.ok()) return id;
    std::lock_guard lock(mu_);
    entries_[*id] = std::move(e);
    return id;
  }

  Status finish(int64_t id, const std::string& result, const std::string& error,
                int64_t duration_ms) override {
    Status local = c_.local_.finish(id, result, error, duration_ms);
    Entry e;
    {
      std::lock_guard lock(mu_);
      auto it = entries_.find(id);
      if (it == entries_.end()) return local;
      e = std::move(it->second);
      entries_.erase(it);
    }
    auto txn = fenced_put(e, "finished", result, error, duration_ms);
    if (!txn.ok())
      spdlog::warn("etcd: the end of {} {} of group {} is not in the shared journal: {}",
                   to_string(e.action.kind), e.action.stack, e.action.group, txn.error().message);
    else if (!*txn)
      spdlog::warn("etcd: the end of {} {} of group {} is not recorded: token {} was superseded",
                   to_string(e.action.kind), e.action.stack, e.action.group, e.token);
    return local;
  }

 private:
  struct Entry {
    Action action;
    std::string origin;
    int64_t token = 0;
    std::string key;
    Clock::Duration unused{};
  };

  // The entry under the fencing comparison; false when the token is gone.
  Result<bool> fenced_put(const Entry& e, const std::string& phase, const std::string& result,
                          const std::string& error, int64_t duration_ms) {
    EtcdCompare cmp;
    cmp.key = c_.key("live/leader/" + e.action.group);
    cmp.target = EtcdCompare::Target::create_revision;
    cmp.number = e.token;
    EtcdOp put;
    put.key = e.key;
    put.value = json_object({{"time", real_clock().rfc3339_now()},
                             {"group", e.action.group},
                             {"kind", to_string(e.action.kind)},
                             {"stack", e.action.stack},
                             {"source", e.action.source},
                             {"origin", e.origin},
                             {"instance", c_.o_.instance},
                             {"phase", phase},
                             {"result", result},
                             {"error", error.substr(0, 2000)}},
                            {{"token", e.token}, {"duration_ms", duration_ms}});
    auto r = c_.etcd_.txn({cmp}, {put});
    if (!r.ok()) return r.error();
    return r->succeeded;
  }

  EtcdCoordination& c_;
  std::string run_;  // distinguishes this process's keys from an earlier one's
  std::mutex mu_;
  uint64_t seq_ = 0;  // under c_.mu_
  std::map<int64_t, Entry> entries_;
};

// ---------------------------------------------------------------- memory

// The local memory (SQLite) and, per group, the shared one: the newer
// observation of a group wins; the leader of a group publishes it when it
// changed.
class EtcdCoordination::Memory : public LastKnown {
 public:
  explicit Memory(EtcdCoordination& c) : c_(c), local_(c.local_) {}

  // The shared observations are read whole on the first load, and then only
  // for the groups this instance came to lead since (a takeover): every
  // instance observes every group itself, so at rest its own memory is as
  // fresh, and 10,000 snapshots are not parsed on every pass.
  Result<std::optional<ObservedState>> load() override {
    auto mine = local_.load();
    std::optional<ObservedState> out;
    if (mine.ok() && *mine) out = std::move(**mine);
    std::vector<std::string> keys;
    {
      std::lock_guard lock(c_.mu_);
      if (loaded_once_)
        for (const auto& g : c_.gained_) keys.push_back(c_.key("observed/" + g));
      c_.gained_.clear();
    }
    std::vector<EtcdKeyValue> kvs;
    if (!loaded_once_) {
      EtcdRangeOptions ro;
      ro.prefix = true;
      auto all = c_.etcd_.range(c_.key("observed/"), ro);
      if (!all.ok()) {
        spdlog::debug("etcd: shared observations unreadable: {}", all.error().message);
        return out;
      }
      loaded_once_ = true;
      kvs = std::move(all->kvs);
    }
    for (const auto& k : keys)
      if (auto one = c_.etcd_.range(k); one.ok())
        kvs.insert(kvs.end(), one->kvs.begin(), one->kvs.end());
    for (const auto& kv : kvs) {
      std::string group = rest_after(kv.key, c_.key("observed/"));
      auto fields = read_object(kv.value);
      if (group.empty() || fields["snapshot"].empty()) continue;
      if (out && out->groups.count(group) && fields["observed_at"] <= out->observed_at) continue;
      auto snap = parse_snapshot("etcd " + kv.key, fields["snapshot"]);
      if (!snap.ok()) continue;
      auto g = snap->groups.find(group);
      if (g == snap->groups.end()) continue;
      if (!out) out.emplace(), out->observed_at = fields["observed_at"];
      out->groups[group] = std::move(g->second);
    }
    return out;
  }

  // The leader of a group publishes its observation when it changed, in
  // transactions of up to 64 puts (10,000 groups' first pass: 157 requests,
  // not 10,000).
  Status remember(const ObservedState& obs) override {
    Status st = local_.remember(obs);
    std::vector<std::pair<std::string, std::string>> changed;  // key, snapshot
    for (const auto& [group, g] : obs.groups) {
      {
        std::lock_guard lock(c_.mu_);
        auto it = c_.leaders_.find(group);
        if (it == c_.leaders_.end() || it->second.instance != c_.o_.instance) continue;
      }
      // The time goes beside the snapshot, not in it, so an unchanged
      // observation is not written again.
      ObservedState one;
      one.observed_at = "1970-01-01T00:00:00Z";
      one.groups.emplace(group, g);
      std::string snap = snapshot_to_json(one);
      std::string k = c_.key("observed/" + group);
      std::lock_guard lock(c_.mu_);
      if (c_.published_[k] != snap) changed.emplace_back(k, std::move(snap));
    }
    constexpr size_t kBatch = 64;
    for (size_t i = 0; i < changed.size(); i += kBatch) {
      std::vector<EtcdOp> puts;
      for (size_t j = i; j < std::min(changed.size(), i + kBatch); ++j) {
        EtcdOp p;
        p.key = changed[j].first;
        p.value = json_object({{"observed_at", obs.observed_at}, {"snapshot", changed[j].second}});
        puts.push_back(std::move(p));
      }
      auto r = c_.etcd_.txn({}, puts);
      if (!r.ok()) {
        spdlog::debug("etcd: cannot publish observations: {}", r.error().message);
        break;
      }
      std::lock_guard lock(c_.mu_);
      for (size_t j = i; j < std::min(changed.size(), i + kBatch); ++j)
        c_.published_[changed[j].first] = std::move(changed[j].second);
    }
    return st;
  }

 private:
  EtcdCoordination& c_;
  StoredLastKnown local_;
  bool loaded_once_ = false;  // load() runs on the loop's thread only
};

// ---------------------------------------------------------------- coordination

EtcdCoordination::EtcdCoordination(EtcdClient& etcd, StateStore& local,
                                   EtcdCoordinationOptions options)
    : etcd_(etcd), local_(local), o_(std::move(options)) {
  journal_ = std::make_unique<Journal>(*this);
  memory_ = std::make_unique<Memory>(*this);
}

EtcdCoordination::~EtcdCoordination() { stop(); }

void EtcdCoordination::on_isolated(std::function<void()> f) {
  std::lock_guard lock(mu_);
  on_isolated_ = std::move(f);
}

void EtcdCoordination::on_change(std::function<void()> f) {
  std::lock_guard lock(mu_);
  on_change_ = std::move(f);
}

Status EtcdCoordination::register_instance() {
  auto sent = Steady::now();
  auto lease = etcd_.grant(o_.lease_ttl);
  if (!lease.ok()) return lease.status();
  // Created only if absent: two processes given one --instance name would
  // both take that name's leader keys for their own.
  EtcdCompare absent;
  absent.key = key("live/instances/" + o_.instance);
  absent.number = 0;
  EtcdOp put;
  put.key = absent.key;
  put.value = json_object({{"site", o_.site}}, {{"pid", ::getpid()}});
  put.lease = *lease;
  EtcdOp holder;
  holder.kind = EtcdOp::Kind::range;
  holder.key = absent.key;
  auto txn = etcd_.txn({absent}, {put}, {holder});
  if (!txn.ok() || !txn->succeeded) {
    (void)etcd_.revoke(*lease);
    if (!txn.ok()) return txn.status();
    std::string who = txn->ranges.empty() || txn->ranges[0].kvs.empty()
                          ? ""
                          : " (" + txn->ranges[0].kvs[0].value.substr(0, 200) + ")";
    return Err("another instance named " + o_.instance + " is registered" + who +
               ": each instance needs its own --instance; waiting for that lease to expire");
  }
  std::lock_guard lock(mu_);
  lease_ = *lease;
  lease_expires_ = sent + o_.lease_ttl;
  quiet_ = false;
  isolated_ = false;
  etcd_error_.clear();
  return Status::Ok();
}

Status EtcdCoordination::start() {
  Status st = register_instance();
  if (!st.ok()) {
    std::lock_guard lock(mu_);
    etcd_error_ = st.message();
  }
  if (!keepalive_.joinable()) {
    keepalive_ = std::thread([this] { keepalive_loop(); });
    if (o_.watch) watch_ = std::thread([this] { watch_loop(); });
  }
  return st;
}

void EtcdCoordination::stop() {
  if (stop_.exchange(true)) return;
  cv_.notify_all();
  if (keepalive_.joinable()) keepalive_.join();
  if (watch_.joinable()) watch_.join();
  int64_t lease = 0;
  {
    std::lock_guard lock(mu_);
    lease = lease_;
    lease_ = 0;
    quiet_ = true;
  }
  // Revoked, the leader keys go at once: the other instances take over now.
  if (lease) (void)etcd_.revoke(lease);
}

std::chrono::steady_clock::time_point EtcdCoordination::act_until() {
  std::lock_guard lock(mu_);
  return act_until_locked();
}

EtcdCoordination::SteadyTime EtcdCoordination::fence_at_locked() const {
  // Earlier than act_until: the fence itself takes time (a reload, new
  // sessions seeing it, sessions ended: 0.1-0.5 s seen), and must be done
  // before etcd can let the lease go. By then the keep-alive due TTL/4
  // after the last answered one has gone unanswered for half the lease.
  auto lead = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(250),
      std::chrono::duration_cast<std::chrono::milliseconds>(o_.lease_ttl) / 4);
  return std::min(act_until_locked(), lease_expires_ - lead);
}

bool EtcdCoordination::lease_covers(std::chrono::milliseconds budget) {
  std::lock_guard lock(mu_);
  return !quiet_ && act_until_locked() - Steady::now() > budget;
}

EtcdCoordination::SteadyTime EtcdCoordination::act_until_locked() const {
  if (lease_ == 0) return SteadyTime::min();
  auto margin = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(250),
      std::chrono::duration_cast<std::chrono::milliseconds>(o_.lease_ttl) / 10);
  return lease_expires_ - margin;
}

void EtcdCoordination::keepalive_loop() {
  const auto period = std::max<std::chrono::milliseconds>(
      std::chrono::milliseconds(250),
      std::chrono::duration_cast<std::chrono::milliseconds>(o_.lease_ttl) / 4);
  // Cut off until our own count of the lease we held ran out: fence, once
  // per lost lease (re-armed by an answered keep-alive or a new lease).
  auto check_isolated = [this] {
    std::function<void()> fence;
    {
      std::lock_guard lock(mu_);
      if (quiet_ && !isolated_ && lease_expires_ != SteadyTime{} &&
          Steady::now() >= fence_at_locked()) {
        isolated_ = true;
        fence = on_isolated_;
        spdlog::error(
            "etcd: no keep-alive answered until this instance's lease count ran out "
            "({}); another instance may take its groups from now on",
            etcd_error_);
      }
    }
    if (fence) fence();
  };
  while (!stop_) {
    int64_t lease = 0;
    {
      std::unique_lock lock(mu_);
      lease = lease_;
    }
    if (lease == 0) {
      if (Status st = register_instance(); !st.ok()) {
        std::lock_guard lock(mu_);
        if (st.message() != etcd_error_) spdlog::warn("etcd: {}", st.message());
        etcd_error_ = st.message();
      } else {
        spdlog::info("etcd: registered as {} ({})", o_.instance, o_.site);
        campaign();
      }
    } else {
      check_isolated();
      SteadyTime cut_off;
      bool cut;
      {
        std::lock_guard lock(mu_);
        cut = !isolated_;
        cut_off = fence_at_locked();
      }
      auto sent = Steady::now();
      Result<int64_t> ttl = Err("not sent");
      if (cut) {
        // Until we count ourselves cut off, a keep-alive hanging on a dead
        // member is cut at that point, so the fence is not delayed; after
        // it, keep-alives go on as long as they take: one answered before
        // etcd lets the lease go still keeps it.
        DeadlineScope scope([cut_off] { return cut_off; }, "this instance's lease count ran out");
        ttl = etcd_.keep_alive(lease);
      } else {
        ttl = etcd_.keep_alive(lease);
      }
      std::lock_guard lock(mu_);
      if (ttl.ok() && *ttl > 0) {
        lease_expires_ = sent + std::chrono::seconds(*ttl);
        if (quiet_) spdlog::info("etcd: keep-alive works again; actions may start");
        quiet_ = false;
        isolated_ = false;
        etcd_error_.clear();
      } else {
        std::string why = ttl.ok() ? "the lease expired" : ttl.error().message;
        if (!quiet_) spdlog::warn("etcd: keep-alive failed ({}); starting no action", why);
        quiet_ = true;
        etcd_error_ = why;
        // Expired for sure (etcd said so, or our own count ran out): every
        // leader key of ours is gone; start over with a new lease.
        if ((ttl.ok() || why.find("expired or does not exist") != std::string::npos) ||
            Steady::now() > lease_expires_) {
          lease_ = 0;
          for (auto it = leaders_.begin(); it != leaders_.end();)
            it = it->second.instance == o_.instance ? leaders_.erase(it) : std::next(it);
        }
      }
    }
    check_isolated();
    // After a failure, try again soon (while the lease may still be alive)
    // rather than a whole period later, and wake at the cut-off point.
    std::unique_lock lock(mu_);
    auto wait = quiet_ && lease_ ? std::chrono::milliseconds(100) : period;
    if (quiet_ && !isolated_ && lease_ != 0)
      wait = std::min(wait, std::max(std::chrono::milliseconds(1),
                                     std::chrono::duration_cast<std::chrono::milliseconds>(
                                         fence_at_locked() - Steady::now())));
    cv_.notify_all();  // begin() may wait for this answer
    cv_.wait_for(lock, wait, [&] { return stop_.load() || keepalive_now_; });
    keepalive_now_ = false;
  }
}

Result<int64_t> EtcdCoordination::reload_live() {
  EtcdRangeOptions ro;
  ro.prefix = true;
  auto r = etcd_.range(key("live/"), ro);
  if (!r.ok()) return r.error();
  std::lock_guard lock(mu_);
  instances_.clear();
  leaders_.clear();
  for (const auto& kv : r->kvs) apply_event(EtcdWatchEvent{false, kv});
  return r->revision;
}

void EtcdCoordination::apply_event(const EtcdWatchEvent& e) {
  std::string inst = rest_after(e.kv.key, key("live/instances/"));
  std::string group = rest_after(e.kv.key, key("live/leader/"));
  if (!inst.empty()) {
    if (e.removed)
      instances_.erase(inst);
    else
      instances_[inst] = InstanceInfo{inst, read_object(e.kv.value)["site"]};
  } else if (!group.empty()) {
    if (e.removed) {
      leaders_.erase(group);
      leaderless_since_[group] = Steady::now();
    } else {
      leaders_[group] = Leader{e.kv.value, e.kv.create_revision, e.kv.lease};
      leaderless_since_.erase(group);
    }
  }
}

void EtcdCoordination::watch_loop() {
  while (!stop_) {
    auto rev = reload_live();
    if (!rev.ok()) {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_.load(); });
      continue;
    }
    campaign();
    int64_t next = *rev + 1;
    Status st = etcd_.watch(
        key("live/"), true, next,
        [&](const std::vector<EtcdWatchEvent>& events, int64_t revision) {
          {
            std::lock_guard lock(mu_);
            for (const auto& e : events) apply_event(e);
          }
          next = revision + 1;
          bool lost = std::any_of(events.begin(), events.end(),
                                  [](const EtcdWatchEvent& e) { return e.removed; });
          if (lost) campaign();
          return !stop_.load();
        },
        stop_, std::chrono::seconds(60));
    if (!st.ok() && !stop_) {
      spdlog::debug("etcd: watch ended: {}", st.message());
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(200), [&] { return stop_.load(); });
    }
  }
}

void EtcdCoordination::campaign() {
  std::vector<std::string> want;
  int64_t lease = 0;
  {
    std::lock_guard lock(mu_);
    if (lease_ == 0 || quiet_ || group_sites_.empty()) return;
    lease = lease_;
    std::vector<InstanceInfo> live;
    for (const auto& [n, i] : instances_) live.push_back(i);
    if (!instances_.count(o_.instance)) live.push_back({o_.instance, o_.site});
    auto assigned = assign_groups(live, group_sites_);
    auto now = Steady::now();
    for (const auto& [group, site] : group_sites_) {
      if (leaders_.count(group)) continue;
      auto since = leaderless_since_.find(group);
      if (since == leaderless_since_.end()) since = leaderless_since_.emplace(group, now).first;
      bool orphan = now - since->second > o_.lease_ttl;
      if (assigned[group] == o_.instance || orphan) want.push_back(group);
    }
  }
  bool gained = false;
  // Up to 64 groups per transaction (etcd allows 128 operations); a batch
  // that fails because one key exists is tried one group at a time.
  constexpr size_t kBatch = 64;
  auto try_take = [&](size_t from, size_t to) -> Result<bool> {
    std::vector<EtcdCompare> cmps;
    std::vector<EtcdOp> puts;
    for (size_t i = from; i < to; ++i) {
      EtcdCompare c;
      c.key = key("live/leader/" + want[i]);
      c.target = EtcdCompare::Target::create_revision;
      c.number = 0;
      cmps.push_back(c);
      EtcdOp p;
      p.key = c.key;
      p.value = o_.instance;
      p.lease = lease;
      puts.push_back(p);
    }
    auto r = etcd_.txn(cmps, puts);
    if (!r.ok()) return r.error();
    if (r->succeeded) {
      std::lock_guard lock(mu_);
      for (size_t i = from; i < to; ++i) {
        leaders_[want[i]] = Leader{o_.instance, r->revision, lease};
        leaderless_since_.erase(want[i]);
        gained_.insert(want[i]);
      }
      gained = true;
    }
    return r->succeeded;
  };
  for (size_t i = 0; i < want.size() && !stop_; i += kBatch) {
    size_t end = std::min(want.size(), i + kBatch);
    auto ok = try_take(i, end);
    if (!ok.ok()) {
      spdlog::debug("etcd: campaign: {}", ok.error().message);
      break;
    }
    if (!*ok && end - i > 1)
      for (size_t j = i; j < end; ++j)
        if (!try_take(j, j + 1).ok()) break;
  }
  if (gained) {
    spdlog::info("etcd: {} now leads {} group(s)", o_.instance, groups_led());
    std::function<void()> f;
    {
      std::lock_guard lock(mu_);
      f = on_change_;
    }
    if (f) f();
  }
}

void EtcdCoordination::release_foreign() {
  std::vector<std::pair<std::string, int64_t>> give;
  {
    std::lock_guard lock(mu_);
    std::vector<InstanceInfo> live;
    for (const auto& [n, i] : instances_) live.push_back(i);
    if (live.size() < 2) return;
    auto assigned = assign_groups(live, group_sites_);
    for (const auto& [group, l] : leaders_) {
      if (l.instance != o_.instance) continue;
      auto a = assigned.find(group);
      // Gone from the config, or assigned to another live instance.
      if (a == assigned.end() || (a->second != o_.instance && instances_.count(a->second)))
        give.emplace_back(group, l.token);
    }
  }
  for (const auto& [group, token] : give) {
    EtcdCompare c;
    c.key = key("live/leader/" + group);
    c.number = token;
    EtcdOp del;
    del.kind = EtcdOp::Kind::remove;
    del.key = c.key;
    auto r = etcd_.txn({c}, {del});
    if (!r.ok()) break;
    std::lock_guard lock(mu_);
    leaders_.erase(group);
    leaderless_since_[group] = Steady::now();
  }
  if (!give.empty())
    spdlog::info("etcd: handed {} group(s) to the instances they belong to", give.size());
}

void EtcdCoordination::set_groups(const std::vector<GroupSite>& groups) {
  {
    std::lock_guard lock(mu_);
    group_sites_.clear();
    for (const auto& g : groups) group_sites_[g.group] = g.active_site;
  }
  release_foreign();
  campaign();
}

bool EtcdCoordination::leads(const std::string& group, std::string* why) {
  std::lock_guard lock(mu_);
  auto it = leaders_.find(group);
  if (quiet_) {
    if (why)
      *why = "etcd unreachable or lease lost (" + etcd_error_ +
             "): no instance starts actions it cannot fence";
    return false;
  }
  if (it == leaders_.end()) {
    if (why) *why = "no instance leads this group yet";
    return false;
  }
  if (it->second.instance == o_.instance && it->second.lease != lease_) {
    if (why) *why = "held under an earlier lease of " + o_.instance + "; waiting for it to expire";
    return false;
  }
  if (it->second.instance != o_.instance) {
    auto inst = instances_.find(it->second.instance);
    if (why)
      *why =
          "led by " + it->second.instance +
          (inst != instances_.end() && !inst->second.site.empty() ? " (" + inst->second.site + ")"
                                                                  : "");
    return false;
  }
  return true;
}

ActionLog& EtcdCoordination::journal() { return *journal_; }
LastKnown& EtcdCoordination::last_known() { return *memory_; }

std::string EtcdCoordination::shared_commit() {
  auto r = etcd_.range(key("commit"));
  if (!r.ok() || r->kvs.empty()) return "";
  return read_object(r->kvs.front().value)["commit"];
}

void EtcdCoordination::publish_commit(const std::string& commit) {
  std::string v = json_object({{"commit", commit}, {"instance", o_.instance}});
  {
    std::lock_guard lock(mu_);
    if (last_commit_ == commit) return;
  }
  if (etcd_.put(key("commit"), v).ok()) {
    std::lock_guard lock(mu_);
    last_commit_ = commit;
  }
}

void EtcdCoordination::publish_invalid_head(const std::string& commit, const std::string& error) {
  std::string k = key("invalid_head");
  std::string v = json_object({{"commit", commit}, {"error", error.substr(0, 4000)}});
  {
    std::lock_guard lock(mu_);
    if (published_[k] == v) return;
  }
  if (etcd_.put(k, v).ok()) {
    std::lock_guard lock(mu_);
    published_[k] = v;
  }
}

void EtcdCoordination::publish_verdicts(const std::map<std::string, WitnessVerdict>& failing) {
  std::map<std::string, std::string> want;
  for (const auto& [group, v] : failing)
    want[key("witness/" + group + "/" + o_.instance)] = json_object(
        {{"since", v.since}, {"why", v.why.substr(0, 1000)}}, {{"since_ms", v.since_ms}});
  int64_t lease;
  std::map<std::string, std::string> held;
  {
    std::lock_guard lock(mu_);
    if (quiet_) return;  // no lease to keep them under
    // Keys under an earlier lease went with it: all are written again.
    if (verdicts_lease_ != lease_) verdicts_.clear();
    if (want == verdicts_ && verdicts_lease_ == lease_) return;  // unchanged
    lease = verdicts_lease_ = lease_;
    held = verdicts_;
  }
  // Only what changed; a put failing leaves the key out of verdicts_, so it
  // is tried again next pass.
  for (auto it = held.begin(); it != held.end();)  // erase() while iterating: by iterator
    if (!want.count(it->first) && etcd_.remove(it->first).ok())
      it = held.erase(it);
    else
      ++it;
  for (const auto& [k, v] : want)
    if (held[k] != v) {
      if (etcd_.put(k, v, lease).ok())
        held[k] = v;
      else
        held.erase(k);
    }
  std::lock_guard lock(mu_);
  verdicts_ = std::move(held);
}

Result<std::vector<WitnessVerdict>> EtcdCoordination::verdicts(const std::string& group) {
  const std::string prefix = key("witness/" + group + "/");
  EtcdRangeOptions ro;
  ro.prefix = true;
  auto r = etcd_.range(prefix, ro);
  if (!r.ok()) return Err("witnesses of group " + group + ": " + r.error().message);
  std::map<std::string, std::map<std::string, std::string>> by_instance;
  for (const auto& kv : r->kvs) {
    std::string inst = rest_after(kv.key, prefix);
    if (!inst.empty()) by_instance[inst] = read_object(kv.value);
  }
  std::vector<WitnessVerdict> out;
  std::lock_guard lock(mu_);
  for (const auto& [name, info] : instances_) {
    WitnessVerdict v{name, info.site, false, 0, "", ""};
    auto it = by_instance.find(name);
    if (it != by_instance.end() && it->second.count("since_ms")) {
      v.failing = true;
      v.since_ms = std::strtoll(it->second["since_ms"].c_str(), nullptr, 10);
      v.since = trim_for_message(it->second["since"], 40);
      v.why = trim_for_message(it->second["why"], 500);
    }
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::optional<int64_t>> EtcdCoordination::last_auto_failover(const std::string& group) {
  auto r = etcd_.range(key("auto_failover/" + group));
  if (!r.ok()) return r.error();
  if (r->kvs.empty()) return std::optional<int64_t>();
  auto o = read_object(r->kvs.front().value);
  if (!o.count("unix_ms"))
    return Err("auto_failover/" + group + " in etcd is not ours (no unix_ms)");
  return std::optional<int64_t>(std::strtoll(o["unix_ms"].c_str(), nullptr, 10));
}

Status EtcdCoordination::record_auto_failover(const std::string& group, int64_t unix_ms) {
  auto r = etcd_.put(key("auto_failover/" + group),
                     json_object({{"instance", o_.instance}}, {{"unix_ms", unix_ms}}));
  if (!r.ok()) return r.error();
  return Status::Ok();
}

Result<std::map<std::string, std::string>> EtcdCoordination::overrides() {
  const std::string prefix = key("override/");
  EtcdRangeOptions ro;
  ro.prefix = true;
  ro.limit = 10000;
  auto r = etcd_.range(prefix, ro);
  if (!r.ok()) return Err("overrides: " + r.error().message);
  std::map<std::string, std::string> out;
  for (const auto& kv : r->kvs)
    if (std::string group = rest_after(kv.key, prefix); !group.empty() && kv.value.size() < 65536)
      out[group] = kv.value;
  return out;
}

Status EtcdCoordination::put_override(const std::string& group, const std::string& json) {
  auto r = etcd_.put(key("override/" + group), json);
  if (!r.ok()) return r.error();
  return Status::Ok();
}

Status EtcdCoordination::delete_override(const std::string& group) {
  auto r = etcd_.remove(key("override/" + group));
  if (!r.ok()) return r.error();
  return Status::Ok();
}

void EtcdCoordination::lost(const std::string& group, int64_t token) {
  std::lock_guard lock(mu_);
  auto it = leaders_.find(group);
  if (it != leaders_.end() && it->second.token == token && it->second.instance == o_.instance)
    leaders_.erase(it);
}

std::string EtcdCoordination::lease_left_text(SteadyTime now) const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f s", std::max(0.0, seconds_between(now, lease_expires_)));
  return buf;
}

size_t EtcdCoordination::groups_led() {
  std::lock_guard lock(mu_);
  return static_cast<size_t>(std::count_if(leaders_.begin(), leaders_.end(), [&](const auto& l) {
    return l.second.instance == o_.instance;
  }));
}

std::string EtcdCoordination::status_json() {
  // Remaining time of every live lease: ours from our count, the others'
  // from etcd (one question per instance, not per group).
  std::map<int64_t, double> left;
  std::vector<int64_t> others;
  {
    std::lock_guard lock(mu_);
    if (lease_) left[lease_] = std::max(0.0, seconds_between(Steady::now(), lease_expires_));
    for (const auto& [g, l] : leaders_)
      if (!left.count(l.lease) && std::find(others.begin(), others.end(), l.lease) == others.end())
        others.push_back(l.lease);
  }
  for (int64_t lease : others) {
    auto ttl = etcd_.time_to_live(lease);
    left[lease] = ttl.ok() ? static_cast<double>(*ttl) : -1;
  }
  std::lock_guard lock(mu_);
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("instance");
  w.String(o_.instance.c_str());
  w.Key("site");
  w.String(o_.site.c_str());
  w.Key("etcd");
  w.StartObject();
  w.Key("endpoint");
  w.String(etcd_.endpoint().c_str());
  w.Key("healthy");
  w.Bool(!quiet_);
  w.Key("error");
  if (etcd_error_.empty())
    w.Null();
  else
    w.String(etcd_error_.c_str());
  w.EndObject();
  w.Key("lease_remaining_seconds");
  if (lease_)
    w.Double(left[lease_]);
  else
    w.Null();
  w.Key("instances");
  w.StartArray();
  for (const auto& [n, i] : instances_) {
    w.StartObject();
    w.Key("name");
    w.String(n.c_str());
    w.Key("site");
    w.String(i.site.c_str());
    w.EndObject();
  }
  w.EndArray();
  w.Key("groups");
  w.StartObject();
  for (const auto& [g, site] : group_sites_) {
    w.Key(g.c_str());
    w.StartObject();
    auto l = leaders_.find(g);
    w.Key("leader");
    if (l == leaders_.end())
      w.Null();
    else
      w.String(l->second.instance.c_str());
    w.Key("fencing_revision");  // not "token": /status redacts anything named so
    w.Int64(l == leaders_.end() ? 0 : l->second.token);
    w.Key("lease_remaining_seconds");
    if (l == leaders_.end() || left[l->second.lease] < 0)
      w.Null();
    else
      w.Double(left[l->second.lease]);
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  return buf.GetString();
}

std::string EtcdCoordination::prometheus() {
  uint64_t requests = etcd_.requests();
  size_t led = groups_led();
  std::lock_guard lock(mu_);
  char buf[1024];
  std::snprintf(
      buf, sizeof buf,
      "# HELP stackflip_etcd_up 1 while keep-alives succeed (actions may start)\n"
      "# TYPE stackflip_etcd_up gauge\nstackflip_etcd_up %d\n"
      "# HELP stackflip_etcd_requests_total Requests sent to etcd\n"
      "# TYPE stackflip_etcd_requests_total counter\nstackflip_etcd_requests_total %llu\n"
      "# HELP stackflip_groups_led Failover groups this instance leads\n"
      "# TYPE stackflip_groups_led gauge\nstackflip_groups_led %zu\n"
      "# HELP stackflip_etcd_instances Instances registered in etcd\n"
      "# TYPE stackflip_etcd_instances gauge\nstackflip_etcd_instances %zu\n"
      "# HELP stackflip_lease_remaining_seconds Time left on this instance's lease\n"
      "# TYPE stackflip_lease_remaining_seconds gauge\nstackflip_lease_remaining_seconds %.3f\n",
      quiet_ ? 0 : 1, static_cast<unsigned long long>(requests), led, instances_.size(),
      lease_ ? std::max(0.0, seconds_between(Steady::now(), lease_expires_)) : 0.0);
  return buf;
}

Result<std::vector<JournalEntry>> etcd_history(EtcdClient& etcd, const std::string& prefix,
                                               size_t limit, const std::string& group) {
  EtcdRangeOptions ro;
  ro.prefix = true;
  ro.newest_first = true;
  ro.limit = group.empty() ? static_cast<int64_t>(limit) : 0;
  auto r = etcd.range(prefix + "journal/", ro);
  if (!r.ok()) return r.error();
  std::vector<JournalEntry> out;
  for (const auto& kv : r->kvs) {
    auto f = read_object(kv.value);
    if (!group.empty() && f["group"] != group) continue;
    JournalEntry e;
    e.id = kv.create_revision;
    e.time = f["time"];
    e.group = f["group"];
    e.kind = f["kind"];
    e.stack = f["stack"];
    e.source = f["source"];
    e.origin = f["origin"];
    e.instance = f["instance"];
    e.phase = f["phase"];
    e.result = f["result"];
    e.error = f["error"];
    e.open = e.phase == "started";
    e.duration_ms = std::atoll(f["duration_ms"].c_str());
    e.token = std::atoll(f["token"].c_str());
    out.push_back(std::move(e));
    if (out.size() >= limit) break;
  }
  return out;
}

}  // namespace stackflip
