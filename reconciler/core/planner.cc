#include "core/planner.h"

#include <algorithm>
#include <cstdio>

namespace stackflip {

namespace {

std::string bytes(uint64_t n) { return std::to_string(n) + (n == 1 ? " byte" : " bytes"); }

// Plans one group over a simulated copy of its observation.
class GroupPlanner {
 public:
  // `clients`: plan the steps of phase 0 (pre_switch) too.
  GroupPlanner(const GroupSpec& g, const GroupObs& o, std::vector<Action>& actions,
               std::vector<Skipped>& skipped, bool clients = false)
      : g_(g),
        sim_(o),
        actions_(actions),
        skipped_(skipped),
        first_(actions.size()),
        clients_(clients),
        reached_(traffic_stacks(o.traffic)) {
    // Every declared stack has an entry; what was not observed is unreachable.
    for (const auto& [name, spec] : g_.stacks) {
      auto it = sim_.stacks.find(name);
      if (it == sim_.stacks.end()) sim_.stacks[name] = StackObs{false, {}, {}, "not observed"};
    }
  }

  // `resume_first`: the pooler holds its clients and this plan cannot
  // complete (plan_group): let them go before anything else.
  void run(bool resume_first = false) {
    if (resume_first)
      emit(ActionKind::traffic_resume, sim_.traffic.target.value_or(""), "",
           "the traffic pooler holds its clients' queries and the switch cannot complete now "
           "(see the blocked step): let them go to " +
               sim_.traffic.target.value_or("where it points") +
               " rather than hold them until it can",
           "none needed: clients are better served an answer (or an error) than held");
    if (clients_) pre_switch();
    fence();
    promote();
    active_maintenance();
    traffic();
    resume();
    replication();
  }

 private:
  const StackObs& st(const std::string& s) const { return sim_.stacks.at(s); }
  StackObs& st(const std::string& s) { return sim_.stacks.at(s); }
  bool reachable(const std::string& s) const { return st(s).reachable; }
  Role role(const std::string& s) const {
    const auto& d = st(s).database;
    return d ? d->role : Role::unknown;
  }
  std::optional<std::string> upstream(const std::string& s) const {
    const auto& d = st(s).database;
    return d ? d->upstream : std::nullopt;
  }
  bool not_streaming(const std::string& s) const {
    const auto& d = st(s).database;
    return d && d->streaming == false;
  }
  std::optional<uint64_t> lsn(const std::string& s) const {
    const auto& d = st(s).database;
    return d ? d->lsn : std::nullopt;
  }
  // A reachable stack whose maintenance flag is unknown is treated as not in
  // maintenance: fencing it again is harmless, assuming it fenced is not.
  bool in_maintenance(const std::string& s) const { return st(s).maintenance.value_or(false); }
  bool writable(const std::string& s) const {
    return reachable(s) && role(s) == Role::primary && !in_maintenance(s);
  }
  // The provider reports no database at all (e.g. Cloud 66 without
  // `database_dsn`): roles and positions are unknown, and the traffic target
  // is the only record of which stack's database was promoted.
  bool db_unobserved(const std::string& s) const { return reachable(s) && !st(s).database; }
  // May accept writes now: not known to be a replica, maintenance off.
  bool serving(const std::string& s) const {
    return reachable(s) && role(s) != Role::replica && !in_maintenance(s);
  }
  std::string unreachable_why(const std::string& s) const {
    const auto& e = st(s).error;
    if (st(s).config_error) return s + " cannot be observed: configuration error (" + e + ")";
    return s + " is unreachable" + (e.empty() ? "" : " (" + e + ")");
  }
  static std::string traffic_unreachable_why(const TrafficObs& t) {
    if (t.config_error)
      return "the traffic provider cannot be observed: configuration error (" + t.error + ")";
    return "the traffic provider is unreachable" + (t.error.empty() ? "" : " (" + t.error + ")");
  }

  // Appends an action and applies its expected effect to the simulation.
  void emit(ActionKind kind, const std::string& stack, const std::string& source,
            std::string reason, std::string guard, std::string why_blocked = "") {
    Action a;
    a.group = g_.name;
    a.kind = kind;
    a.stack = stack;
    a.source = source;
    a.reason = std::move(reason);
    a.guard = std::move(guard);
    if (!why_blocked.empty()) {
      a.blocked = true;
      a.why_blocked = std::move(why_blocked);
    } else if (blocked_at_) {
      a.blocked = true;
      a.why_blocked = "waits on step " + std::to_string(*blocked_at_ + 1) + ", which is blocked";
    }
    if (a.blocked && !blocked_at_) blocked_at_ = actions_.size() - first_;
    actions_.push_back(std::move(a));
    simulate(kind, stack, source);
  }

  void skip(ActionKind kind, const std::string& stack, std::string reason) {
    skipped_.push_back(Skipped{g_.name, kind, stack, std::move(reason)});
  }

  void simulate(ActionKind kind, const std::string& stack, const std::string& source) {
    TrafficObs& tr = sim_.traffic;
    if (kind == ActionKind::traffic_ttl) {
      for (size_t i = 0; i < views(); ++i)
        if (auto sw = switch_ttl(i); sw && view(i).ttl && *view(i).ttl > *sw) view(i).ttl = *sw;
      if (!tr.parts.empty()) tr.ttl = tr.parts.front().ttl;
      return;
    }
    if (kind == ActionKind::traffic_pause || kind == ActionKind::traffic_resume) {
      const bool on = kind == ActionKind::traffic_pause;
      for (TrafficObs& p : tr.parts)
        if (p.paused) p.paused = on;
      if (tr.paused) tr.paused = on;
      return;
    }
    if (kind == ActionKind::traffic_wait) return;
    if (kind == ActionKind::traffic_switch) {
      TrafficObs& t = sim_.traffic;
      t.target = stack;
      t.ttl = g_.traffic.empty() ? 60 : g_.traffic.front().ttl;
      t.records.clear();
      t.content.clear();
      t.absent.clear();  // the switch creates what did not exist
      for (size_t i = 0; i < t.parts.size(); ++i) {
        t.parts[i].target = stack;
        t.parts[i].ttl = desired_ttl(i);
        t.parts[i].records.clear();
        t.parts[i].content.clear();
        t.parts[i].absent.clear();
      }
      return;
    }
    StackObs& s = st(stack);
    if (kind == ActionKind::maintenance_on || kind == ActionKind::maintenance_off) {
      s.maintenance = kind == ActionKind::maintenance_on;
      return;
    }
    DatabaseObs& db = s.database ? *s.database : s.database.emplace();
    switch (kind) {
      case ActionKind::maintenance_on:
      case ActionKind::maintenance_off:
        break;
      case ActionKind::replication_wait:
        if (auto src = lsn(source)) db.lsn = *src;
        break;
      case ActionKind::replication_stop:
        db.upstream.reset();
        break;
      case ActionKind::database_promote:
        db.role = Role::primary;
        db.upstream.reset();
        if (db.timeline) ++*db.timeline;
        // A reachable replica configured for it streams from it now.
        for (auto& [name, other] : sim_.stacks)
          if (name != stack && other.reachable && other.database &&
              other.database->role == Role::replica && other.database->upstream == stack)
            other.database->streaming = true;
        break;
      case ActionKind::replication_start:
        db.role = Role::replica;
        db.upstream = source;
        db.lsn = lsn(source);
        db.streaming = true;
        break;
      case ActionKind::replication_bootstrap: {
        // A copy of the source: its cluster, its timeline, streaming.
        const std::optional<DatabaseObs> src = st(source).database;
        db = DatabaseObs{};
        db.role = Role::replica;
        db.upstream = source;
        db.streaming = true;
        if (src) {
          db.lsn = src->lsn;
          db.timeline = src->timeline;
          db.system_id = src->system_id;
        }
        s.reachable = true;
        s.error.clear();
        s.bootstrap_phase.reset();
        break;
      }
      case ActionKind::traffic_switch:
      case ActionKind::traffic_ttl:
      case ActionKind::traffic_wait:
      case ActionKind::traffic_pause:
      case ActionKind::traffic_resume:
        break;
    }
  }

  // Whether and how the desired active stack can be promoted, judged on the
  // simulation as it stands.
  struct Promotion {
    std::optional<std::string> old_primary;  // the stack to catch up with
    bool resume = false;                     // restart replication from it first
    bool wait = false;                       // a replication.wait applies
    std::string block;                       // why promotion must not happen
    std::string loss;                        // what allow_data_loss would accept
    bool forced() const { return !block.empty(); }
  };

  Promotion judge_promotion() const {
    const std::string& d = g_.active;
    Promotion pr;
    if (!reachable(d)) {
      pr.block = unreachable_why(d);
      return pr;
    }
    if (db_unobserved(d)) {
      pr.block = "the no-data-loss guard cannot be verified: " + d +
                 "'s database role and replication position are not observed (Cloud 66 exposes "
                 "no replication lag; set `database_dsn` on the stack to check it)";
      // The traffic target is then the only record of a promotion, and an
      // address that does not exist records nothing (issue 17): say so
      // rather than let a missing record look like a switch to finish.
      if (!sim_.traffic.absent.empty())
        pr.block += "; the traffic record does not exist either, so nothing records whether " + d +
                    " was promoted: create the record by hand pointing at the primary stack, or "
                    "set `database_dsn`";
      pr.loss = "an unknown amount of data";
      return pr;
    }
    if (role(d) == Role::unknown) {
      pr.block = "the role of " + d + "'s database could not be read";
      return pr;
    }
    const uint64_t max_lag = g_.replication.max_lag_bytes;
    auto p = old_primary();
    pr.old_primary = p;
    // Issue 17: positions of two clusters do not compare, and none of the
    // old primary's writes are in another cluster.
    if (p && !same_cluster(d, *p)) {
      pr.block = d + " is another PostgreSQL cluster than the old primary " + *p +
                 " (system identifier " + *st(d).database->system_id + ", " + *p + "'s " +
                 *st(*p).database->system_id + "): promoting it leaves every write of " + *p +
                 " behind";
      pr.loss = "every write of " + *p + " (another cluster)";
      return pr;
    }
    // A copy that diverged from the old primary replays nothing more of it.
    if (p && reachable(*p) && st(d).database && st(d).database->cannot_follow) {
      pr.block = d + " cannot catch up with " + *p + ": " + *st(d).database->cannot_follow;
      auto lag = lag_bytes(sim_, d, *p);
      pr.loss = lag ? bytes(*lag) : std::string("an unknown amount of data");
      return pr;
    }
    if (p && reachable(*p)) {
      auto lag = lag_bytes(sim_, d, *p);
      if (upstream(d) == *p || (lag && *lag <= max_lag)) {
        pr.wait = true;
      } else if (role(d) == Role::replica && !upstream(d) && role(*p) == Role::primary) {
        // Replication into it was stopped (an interrupted switch) while the
        // old primary kept writing, if only background WAL: a replica never
        // diverges, so resuming replication lets it catch up.
        pr.resume = pr.wait = true;
      } else {
        pr.block =
            d + " " + (lag ? "is " + bytes(*lag) + " behind " + *p : "has an unknown position") +
            " and is not replicating from it (max_lag_bytes: " + std::to_string(max_lag) + ")";
        pr.loss = lag ? bytes(*lag) : std::string("an unknown amount of data");
      }
      if (!pr.forced()) {
        std::string loss, why = others_ahead(*p, loss);
        if (!why.empty()) {
          pr.block = why;
          pr.loss = loss;
        }
      }
    } else if (p) {
      auto lag = lag_bytes(sim_, d, *p);
      pr.block = "the old primary " + unreachable_why(*p) + ", so " + d +
                 "'s data loss cannot be ruled out (" +
                 (lag ? "last known lag " + bytes(*lag) : std::string("last known lag unknown")) +
                 ")";
      // The replica's position is its replay position: WAL it received but
      // had not replayed is replayed at promotion, and writes after the last
      // observation are not counted. So the last known lag is stated as
      // such, not as a bound.
      pr.loss = "the writes " + d + " has not replayed (" +
                (lag ? "last known lag " + bytes(*lag) : std::string("last known lag unknown")) +
                "; writes after that observation are not counted)";
    } else {
      // No primary anywhere: the newest writes may be on a stack that cannot
      // be seen, or on another replica that is further ahead.
      pr.block = "no stack is observed as primary, so the newest writes may be elsewhere";
      for (const auto& [name, spec] : g_.stacks)
        if (name != d && !reachable(name)) pr.block += "; " + unreachable_why(name);
      for (const auto& [name, spec] : g_.stacks)
        if (name != d && lsn(name) && lsn(d) && *lsn(name) > *lsn(d))
          pr.block += "; " + name + " is " + bytes(*lsn(name) - *lsn(d)) + " ahead";
      pr.loss = "an unknown amount of data";
    }
    return pr;
  }

  // Unreachable or unknown-role stacks cannot be promoted even when data loss
  // is allowed.
  bool promotion_impossible() const {
    return !reachable(g_.active) || (role(g_.active) == Role::unknown && !db_unobserved(g_.active));
  }

  // Whether the active stack still has to be promoted. Without database
  // observation, traffic already on it means the promotion happened.
  bool needs_promotion() const {
    const std::string& d = g_.active;
    if (db_unobserved(d)) return sim_.traffic.target != d;
    return role(d) != Role::primary;
  }

  // Why the serving primary must not be fenced for the switch (the
  // promotion or the traffic move cannot happen); "" when it may be.
  std::string fence_hold() const {
    const std::string& active = g_.active;
    if (std::string cross = cross_cluster_switch(); !cross.empty()) return cross;
    int primaries = 0;
    for (const auto& [name, spec] : g_.stacks)
      primaries += name != active && reachable(name) && role(name) == Role::primary;
    if (!needs_promotion() || primaries > 1) return "";
    Promotion pr = judge_promotion();
    if (pr.forced() && (promotion_impossible() || !g_.allow_data_loss))
      return "the promotion of " + active + " is blocked (" + pr.block +
             "), so the serving primary is not fenced";
    if (!sim_.traffic.reachable && sim_.traffic.target != active)
      return traffic_unreachable_why(sim_.traffic) +
             ", so traffic could not follow the switch; the serving primary is not fenced";
    if (!traffic_blocker().empty() && sim_.traffic.target != active)
      return traffic_blocker() +
             ", so traffic could not follow the switch; the serving primary is not fenced";
    return "";
  }

  // Issue 17: traffic reaches (as observed) a primary of another cluster
  // than the active stack's: moving it would leave every write of that
  // primary behind (a commit that made a fresh, unrelated server active),
  // and that primary could then be bootstrapped over. Held, unless
  // `allow_data_loss`; "" when not so.
  std::string cross_cluster_switch() const {
    if (g_.allow_data_loss) return "";
    const std::string& d = g_.active;
    for (const std::string& q : reached_)
      if (q != d && g_.stacks.count(q) && role(q) == Role::primary && !same_cluster(d, q))
        return d + " is another PostgreSQL cluster than " + q +
               ", the primary traffic reaches (system identifier " + *st(d).database->system_id +
               ", " + q + "'s " + *st(q).database->system_id +
               "): switching would leave every write of " + q +
               " behind; a commit with `allow_data_loss: true` forces it";
    return "";
  }

  // The traffic addresses one by one: the observation's parts, or the
  // whole when it has none (a snapshot without per-address detail).
  size_t views() const { return sim_.traffic.parts.empty() ? 1 : sim_.traffic.parts.size(); }
  TrafficObs& view(size_t i) {
    return sim_.traffic.parts.empty() ? sim_.traffic : sim_.traffic.parts[i];
  }
  const TrafficObs& view(size_t i) const {
    return sim_.traffic.parts.empty() ? sim_.traffic : sim_.traffic.parts[i];
  }
  std::optional<int> switch_ttl(size_t part) const {
    if (g_.traffic.empty()) return std::nullopt;
    return g_.traffic[std::min(part, g_.traffic.size() - 1)].switch_ttl;
  }

  // Phase 0 (issue 15): what clients see of a planned switch. When traffic
  // moves away from a serving primary (reachable, writable: the switch is
  // planned, not a failover from a dead stack), first lower each address's
  // TTL to its `switch_ttl` and wait until resolvers forgot answers with
  // the previous TTL, then let a pooler hold its clients' queries; the
  // fence comes after. A failover from a stack that is down or already
  // fenced skips all of it: waiting would only lengthen the outage.
  void pre_switch() {
    const std::string& d = g_.active;
    const TrafficObs& t = sim_.traffic;
    if (!t.target || *t.target == d || !writable(*t.target)) return;
    const std::string old = *t.target;
    std::string lower;
    int64_t wait_s = 0;
    for (size_t i = 0; i < views(); ++i) {
      auto sw = switch_ttl(i);
      const TrafficObs& p = view(i);
      if (!sw || !p.ttl) continue;
      const std::string who = p.name.empty() ? "traffic" : p.name;
      if (*p.ttl > *sw) {
        lower += (lower.empty() ? "" : "; ") + who + " from " + std::to_string(*p.ttl) + " s to " +
                 std::to_string(*sw) + " s";
        wait_s = std::max<int64_t>(wait_s, *p.ttl);
      } else if (desired_ttl(i) > *sw) {
        // Lowered before (an interrupted switch): the journal says when.
        wait_s = std::max<int64_t>(wait_s, desired_ttl(i));
      }
    }
    if (!lower.empty())
      emit(ActionKind::traffic_ttl, old, "",
           "before the switch from " + old + " to " + d + ", lower the TTL (switch_ttl): " + lower +
               ", so that resolvers forget " + old + "'s address soon after the switch",
           "none needed: the values stay " + old + "'s");
    if (wait_s > 0) {
      emit(ActionKind::traffic_wait, old, "",
           "resolvers may hold " + old + "'s address with the previous TTL for up to " +
               std::to_string(wait_s) +
               " s after the TTL was lowered: wait that long before "
               "fencing " +
               old + " (an interrupted wait resumes from the journal)",
           "none needed: nothing changes while waiting");
      actions_.back().wait_ms = wait_s * 1000;
    }
    bool pausable = false;
    for (size_t i = 0; i < views(); ++i) pausable |= view(i).paused == false;
    if (pausable)
      emit(ActionKind::traffic_pause, old, "",
           "step 1 of the switch, for pooled clients: hold their queries once the running "
           "transactions finish, so the switch is a pause for them, not an error",
           old + " is a writable primary (the switch is planned)");
  }

  // Phase 1: no second writable database, ever; then maintenance drift.
  void fence() {
    const std::string& active = g_.active;
    // Fencing the only serving primary for a promotion that cannot happen
    // would only take the application down: that fence waits, blocked. With
    // two or more primaries every one is fenced. They are counted fenced or
    // not, so that the count is a fact the plan's own fences do not change:
    // counting the writable ones, the re-plan after the first of two fences
    // held the second, and the plan went stale mid-apply (issue 12).
    const std::string hold = fence_hold();
    for (const auto& [name, spec] : g_.stacks) {
      if (name == active) continue;
      if (!reachable(name)) {
        bool maybe_writable = role(name) != Role::replica && !in_maintenance(name);
        if (maybe_writable && role(active) != Role::primary)
          skip(ActionKind::maintenance_on, name,
               unreachable_why(name) +
                   "; it cannot be fenced now and will be fenced first "
                   "when it returns");
        continue;
      }
      if (writable(name) || (serving(name) && !hold.empty())) {
        auto reached = traffic_stacks(sim_.traffic);
        bool was_active = std::find(reached.begin(), reached.end(), name) != reached.end();
        std::string reason = was_active
                                 ? "step 1 of the switch: `active: " + active +
                                       "`, so stop new writes on " + name + ", the current primary"
                                 : name + " is a writable primary but `active: " + active +
                                       "`: fence it before anything else";
        emit(ActionKind::maintenance_on, name, "", reason,
             "none needed: refusing writes never endangers data", hold);
      }
    }
    for (const auto& [name, spec] : g_.stacks) {
      if (name == active || !reachable(name)) continue;
      if (g_.desired_maintenance(name) && !in_maintenance(name))
        emit(ActionKind::maintenance_on, name, "",
             "maintenance of non-active stack " + name + " is desired on, observed off",
             "none needed: refusing writes never endangers data", serving(name) ? hold : "");
    }
  }

  // Whether `s` (not the active stack) may hold writes the active stack
  // lacks because it is, or may have been, a primary: observed primary
  // (reachable or last seen so), or unreachable with its role unknown.
  bool may_be_primary(const std::string& s) const {
    return role(s) == Role::primary || (!reachable(s) && role(s) == Role::unknown);
  }

  // Whether `s` streams, directly or through other replicas, from `p`: all
  // it holds, `p` holds too (a replica observed a moment after its primary
  // may show a position past it, never data it lacks).
  bool streams_from(std::string s, const std::string& p) const {
    for (size_t hops = 0; hops < g_.stacks.size(); ++hops) {
      if (!reachable(s) || role(s) != Role::replica || !upstream(s) || not_streaming(s))
        return false;
      s = *upstream(s);
      if (s == p) return true;
    }
    return false;
  }

  // The stack `active` should catch up with: the reachable primary furthest
  // ahead (an unknown position counts as furthest), its upstream first among
  // equals, then by name; with no reachable primary, the first stack last
  // seen primary. Chosen from facts the plan's own steps do not change (a
  // fence leaves positions as they are), so every step's re-plan picks the
  // same one; a replication.stop clears the upstream only after the
  // candidate caught up, when an equal primary is as good a source.
  std::optional<std::string> old_primary() const {
    const std::string& d = g_.active;
    std::optional<std::string> best;
    auto ahead = [&](const std::string& a, const std::string& b) {  // a before b
      auto la = lsn(a), lb = lsn(b);
      if (la != lb) return !la || (lb && *la > *lb);
      return upstream(d) == a && upstream(d) != b;
    };
    for (const auto& [name, spec] : g_.stacks)
      if (name != d && reachable(name) && role(name) == Role::primary &&
          (!best || ahead(name, *best)))
        best = name;
    if (best) return best;
    for (const auto& [name, spec] : g_.stacks)
      if (name != d && role(name) == Role::primary) return name;
    return std::nullopt;
  }

  // With a reachable old primary `p` to catch up with, what else may hold
  // writes the active stack would lack after catching up with `p` (issue
  // 12): an unreachable stack that is or may have been primary, another
  // primary whose position is unknown, a stack whose position is past
  // `p`'s and that does not stream from `p`. "" when nothing.
  std::string others_ahead(const std::string& p, std::string& loss) const {
    const std::string& d = g_.active;
    std::string why;
    auto add = [&](const std::string& w, const std::string& l) {
      why += (why.empty() ? "" : "; ") + w;
      loss += (loss.empty() ? "" : "; ") + l;
    };
    for (const auto& [q, spec] : g_.stacks) {
      if (q == d || q == p) continue;
      if (!reachable(q) && may_be_primary(q)) {
        add((role(q) == Role::primary ? "the old primary " + unreachable_why(q)
                                      : unreachable_why(q) + " and its role is unknown") +
                ", so writes " + d + " lacks may be there",
            "the writes only " + q + " may hold (unknown)");
      } else if (role(q) == Role::primary && !lsn(q)) {
        add(q + " is a primary too, at an unknown position", "the writes only " + q + " may hold");
      } else if (lsn(q) && lsn(p) && *lsn(q) > *lsn(p) && !streams_from(q, p)) {
        add(q + " is " + bytes(*lsn(q) - *lsn(p)) + " ahead of " + p,
            bytes(*lsn(q) - *lsn(p)) + " only " + q + " holds");
      }
    }
    return why;
  }

  // Phase 2: make the desired active stack the primary, guarded.
  void promote() {
    const std::string& d = g_.active;
    if (!needs_promotion()) return;
    promoted_ = true;
    const std::string not_primary = "`active: " + d + "` but " + d + " is not primary";
    Promotion pr = judge_promotion();
    if (promotion_impossible()) {
      emit(ActionKind::database_promote, d, "", not_primary,
           "the stack is reachable and its role is known", pr.block);
      return;
    }
    const std::string& p = pr.old_primary.value_or("");
    if (pr.old_primary && !reachable(p)) {
      auto lag = lag_bytes(sim_, d, p);
      skip(ActionKind::replication_wait, d,
           "the old primary " + unreachable_why(p) + ": its write position is unknown (" +
               (lag ? "last known lag " + bytes(*lag) : std::string("last known lag unknown")) +
               ")");
    }
    std::string why_blocked;
    std::string reason = "`active: " + d + "` but " + d + " is a replica";
    if (pr.forced()) {
      if (g_.allow_data_loss)
        reason += "; `allow_data_loss: true` accepts losing " + pr.loss + " (" + pr.block + ")";
      else
        why_blocked = pr.block + "; a commit with `allow_data_loss: true` forces the failover";
    }
    const uint64_t max_lag = g_.replication.max_lag_bytes;
    if (pr.resume) {
      auto lag = lag_bytes(sim_, d, p);
      emit(ActionKind::replication_start, d, p,
           "no-data-loss guard: " + d + " is " + (lag ? bytes(*lag) + " behind " : "behind ") + p +
               " and replication into it is stopped: resume it to catch up before the promotion",
           d + " is a replica and " + p + " is primary");
    }
    if (pr.wait)
      emit(ActionKind::replication_wait, d, p,
           "no-data-loss guard: " + d + " must replay everything " + p + " wrote before the fence",
           d + "'s replayed position reaches " + p + "'s write position read after the fence " +
               "(max_lag_bytes: " + std::to_string(max_lag) + ")");
    // Data loss accepted while the candidate follows a stack other than the
    // reachable old primary: it is promoted as it is (a promotion ends its
    // replication). Stopped first, it would be a replica with replication
    // stopped behind a reachable primary, which the re-plan at the promotion
    // resumes instead: the plan would go stale in its own apply (issue 12).
    const bool promote_as_is = pr.forced() && pr.old_primary && reachable(p) && upstream(d) != p;
    if ((upstream(d) && !promote_as_is) || db_unobserved(d))
      emit(ActionKind::replication_stop, d, "",
           db_unobserved(d)
               ? "step 3 of the switch: stop replication into " + d +
                     " (on Cloud 66 promote_slave_db detaches the slave itself)"
               : "step 3 of the switch: stop replication into " + d + " before promoting it",
           pr.wait ? d + " has caught up (previous step)" : "promotion of " + d + " is allowed",
           why_blocked);
    emit(ActionKind::database_promote, d, "", reason,
         pr.wait ? d + " lags " + p + " by at most " + bytes(max_lag) + "; " + p +
                       " is fenced; no other writable database"
                 : "no other reachable writable database",
         why_blocked);
    if (pr.forced() && g_.allow_data_loss) actions_.back().data_loss = pr.loss;
  }

  // Phase 3: the active stack's maintenance as desired.
  void active_maintenance() {
    const std::string& d = g_.active;
    bool want = g_.desired_maintenance(d);
    if (st(d).maintenance == want) return;
    if (want) {
      emit(ActionKind::maintenance_on, d, "", "maintenance of " + d + " is desired on (explicit)",
           "none needed: refusing writes never endangers data",
           reachable(d) ? "" : unreachable_why(d));
      return;
    }
    emit(ActionKind::maintenance_off, d, "",
         "step 5 of the switch: active stack " + d + " must accept writes",
         d + " is primary and no other reachable stack is a writable primary",
         reachable(d) ? "" : unreachable_why(d));
  }

  // Phase 4: every traffic address to the active stack, exactly.
  int desired_ttl(size_t part) const {
    if (g_.traffic.empty()) return 60;
    return g_.traffic[std::min(part, g_.traffic.size() - 1)].ttl;
  }

  // Why a switch of the traffic addresses cannot succeed, seen before it
  // starts (a record type the name cannot hold, ...); "" when none is known.
  std::string traffic_blocker() const {
    std::string why;
    for (const TrafficObs& p : sim_.traffic.parts)
      if (!p.blocker.empty()) why += (why.empty() ? "" : "; ") + p.name + ": " + p.blocker;
    if (why.empty() && !sim_.traffic.blocker.empty()) why = sim_.traffic.blocker;
    return why;
  }

  // What is wrong with one address (or with a snapshot's whole traffic when
  // it has no per-address detail), "" when it holds exactly the active
  // stack's values with the desired TTL.
  std::string traffic_drift(const TrafficObs& p, int want_ttl, bool named) const {
    const std::string& d = g_.active;
    const std::string who = named && !p.name.empty() ? p.name : "traffic";
    if (!p.absent.empty() && p.target != d)
      return (p.name.empty() ? std::string("the traffic record") : p.name) +
             (p.absent == "zone" ? " does not exist, nor its zone: create both"
                                 : " does not exist: create it") +
             " pointing at " + d + " with TTL " + std::to_string(want_ttl);
    if (p.target == d) {
      if (p.ttl && *p.ttl != want_ttl)
        return who + " TTL is " + std::to_string(*p.ttl) + ", desired " + std::to_string(want_ttl);
      return "";
    }
    std::vector<const TrafficRecord*> enabled;
    for (const TrafficRecord& r : p.records)
      if (!r.disabled) enabled.push_back(&r);
    bool others = false, own = false;
    for (const TrafficRecord* r : enabled) (r->stack == d ? own : others) = true;
    auto show = [](const TrafficRecord& r) {
      return r.content + " (" + (r.stack ? *r.stack : std::string("no stack of the group")) + ")";
    };
    if (!own || !others) {
      if (!enabled.empty() && !p.target && !others)
        return who + " holds only some of " + d + "'s addresses";
      if (!p.target && !enabled.empty()) {
        std::string held;
        for (const TrafficRecord* r : enabled) held += (held.empty() ? "" : ", ") + show(*r);
        return who + " holds " + held;
      }
      return who + " points at " + p.target.value_or("no stack");
    }
    // Mixed: some of it goes to the active stack, the rest elsewhere.
    std::string extra;
    for (const TrafficRecord* r : enabled)
      if (r->stack != d) extra += (extra.empty() ? "" : ", ") + show(*r);
    return who + " is mixed: besides " + d + "'s address it holds " + extra;
  }

  void traffic() {
    const std::string& d = g_.active;
    const TrafficObs& t = sim_.traffic;
    std::vector<std::string> wrong;
    bool target_wrong = t.target != d;
    // Every address that drifts does not exist: the step creates them and
    // switches nothing, so it is no step of a switch (issue 17).
    bool only_absent = true;
    if (t.parts.empty()) {
      if (auto w = traffic_drift(t, desired_ttl(0), false); !w.empty()) {
        wrong.push_back(w);
        only_absent = !t.absent.empty();
      }
    } else {
      for (size_t i = 0; i < t.parts.size(); ++i)
        if (auto w = traffic_drift(t.parts[i], desired_ttl(i), t.parts.size() > 1); !w.empty()) {
          wrong.push_back(w);
          only_absent = only_absent && !t.parts[i].absent.empty();
        }
    }
    if (wrong.empty()) return;
    std::string what;
    for (const auto& w : wrong) what += (what.empty() ? "" : "; ") + w;
    std::string reason = only_absent    ? what + " (`active: " + d + "`)"
                         : target_wrong ? "step 6 of the switch: " + what + ", `active: " + d + "`"
                                        : what;
    if (!t.reachable || !traffic_blocker().empty())
      reason +=
          "; not switchable now: " +
          (t.error.empty() ? traffic_blocker()
                           : t.error + (traffic_blocker().empty() ? "" : "; " + traffic_blocker()));
    // With several addresses, those that can be switched are, even while
    // another cannot (its zone unreachable, a CNAME in the way): after a
    // fence, each name left behind is an outage of its own. The step then
    // fails on the rest, and a later pass finishes it.
    bool some_switchable = false;
    for (size_t i = 0; i < t.parts.size(); ++i)
      some_switchable |= t.parts.size() > 1 && t.parts[i].reachable && t.parts[i].blocker.empty() &&
                         !traffic_drift(t.parts[i], desired_ttl(i), true).empty();
    std::string why;
    if (std::string cross = cross_cluster_switch(); !cross.empty())
      why = cross;
    else if (!t.reachable && !some_switchable)
      why = traffic_unreachable_why(t);
    else if (!traffic_blocker().empty() && !some_switchable)
      why = traffic_blocker();
    else if (!reachable(d))
      why = unreachable_why(d) + "; traffic is never sent to a stack that cannot be seen";
    emit(ActionKind::traffic_switch, d, "", reason,
         d + " is primary (traffic never points at a writable replica)", why);
  }

  // Phase 4b: a pooler that holds its clients lets them go once traffic
  // points at the writable active stack.
  void resume() {
    if (sim_.traffic.paused != true) return;
    const std::string& d = g_.active;
    emit(ActionKind::traffic_resume, d, "",
         "the traffic pooler holds its clients' queries: let them go to " + d,
         d + " is a writable primary and traffic points at it",
         !sim_.traffic.reachable ? traffic_unreachable_why(sim_.traffic)
         : reachable(d)          ? ""
                                 : unreachable_why(d));
  }

  // Issue 17: why `name` can never stream from the active stack, so that
  // only a new base backup makes it a replica: another cluster (its system
  // identifier differs), or a copy of this one that diverged from the
  // active stack's timeline while pg_rewind is off (the driver observes
  // that: DatabaseObs::cannot_follow). "" when replication.start may work.
  std::string cannot_follow(const std::string& name) const {
    const std::string& d = g_.active;
    const auto& me = st(name).database;
    const auto& src = st(d).database;
    if (other_cluster(name))
      return name + " is another PostgreSQL cluster (system identifier " + *me->system_id + ", " +
             d + "'s " + *src->system_id + "): it can never stream from " + d;
    if (me && me->cannot_follow) return *me->cannot_follow;
    return "";
  }
  // False only when both system identifiers are known and differ.
  bool same_cluster(const std::string& a, const std::string& b) const {
    const auto& x = st(a).database;
    const auto& y = st(b).database;
    return !(x && y && x->system_id && y->system_id && *x->system_id != *y->system_id);
  }
  bool other_cluster(const std::string& name) const {
    const auto& me = st(name).database;
    const auto& src = st(g_.active).database;
    return me && src && me->system_id && src->system_id && *me->system_id != *src->system_id;
  }

  // What a bootstrap of `name` removes, from its observation.
  std::string removes(const std::string& name) const {
    const StackSpec& spec = g_.stacks.at(name);
    const bool keep = spec.get("keep_old_data") == "true";
    const auto& phase = st(name).bootstrap_phase;
    if (phase && *phase != "stop")
      return keep ? "nothing more: its old data directory, moved aside by the interrupted "
                    "bootstrap, is kept (keep_old_data)"
                  : "its old data directory, moved aside by the interrupted bootstrap (once "
                    "the new replica streams)";
    const auto& db = st(name).database;
    std::string what;
    uint64_t total = 0;
    if (db)
      for (const auto& x : db->databases) {
        what += (what.empty() ? "" : ", ") + x.name + " (" + human_bytes(x.bytes) + ")";
        total += x.bytes;
      }
    what = what.empty() ? "all its databases (their sizes were not observed)"
                        : "its databases " + what + "; " + human_bytes(total) + " in all";
    return what + (keep ? ", kept aside as a data directory of its own (keep_old_data)" : "");
  }
  static std::string human_bytes(uint64_t n) {
    const char* units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = static_cast<double>(n);
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, ++u;
    if (u == 0) return bytes(n);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
    return buf;
  }

  // replication.bootstrap of `name` from the active stack (issue 17): opted
  // in per stack, never on the active stack (phase 5 skips it), never on
  // a stack that may hold writes the active stack lacks unless
  // `allow_data_loss` (a copy of this cluster that diverged holds WAL past
  // the fork; another cluster that traffic reaches took writes of the
  // group's clients). `why` is empty when an interrupted one is resumed.
  void bootstrap(const std::string& name, const std::string& why) {
    const std::string& d = g_.active;
    const StackSpec& spec = g_.stacks.at(name);
    const bool opted = spec.get("bootstrap") == "basebackup";
    const auto& phase = st(name).bootstrap_phase;
    const std::string what = removes(name);
    std::string reason =
        phase ? "resume the interrupted bootstrap of " + name + " (phase " + *phase +
                    ", recorded beside its data directory)"
              : "replication from " + d + " into " + name + " is desired, but " + why;
    reason += "; DESTRUCTIVE: a base backup of " + d + " replaces " + name + "'s data (removes " +
              what + ")";
    std::string block;
    std::string loss;
    if (!phase && other_cluster(name) &&
        std::find(reached_.begin(), reached_.end(), name) != reached_.end())
      loss = "traffic reaches " + name + ", so it may hold writes of the group's clients";
    else if (!phase && !other_cluster(name))
      loss = name + " holds WAL " + d + " lacks (it diverged: " + why + ")";
    if (!opted && phase)
      block = "an interrupted bootstrap of " + name + " (phase " + *phase +
              ") is under way but stack " + name +
              " no longer says `bootstrap: basebackup`: set it again to finish it (the old data "
              "directory stays aside beside the data directory until then)";
    else if (!opted)
      block = name + " cannot become a replica of " + d + " (" + why +
              "); set `bootstrap: basebackup` (and `data_directory:`) on stack " + name +
              " to let stackflip replace its data with a base backup of " + d + " (it removes " +
              what + "), or rebuild it by hand";
    else if (!reachable(d))
      block = "the source " + unreachable_why(d);
    else if (role(d) != Role::primary)
      block = d + " is not primary";
    else if (reachable(name) && role(name) != Role::replica && !in_maintenance(name))
      block = name + " is not in maintenance";
    else if (!loss.empty() && !g_.allow_data_loss)
      block = loss +
              ": a bootstrap would discard that; a commit with `allow_data_loss: true` "
              "accepts it";
    if (!loss.empty() && g_.allow_data_loss && block.empty())
      reason += "; `allow_data_loss: true` accepts it although " + loss;
    emit(ActionKind::replication_bootstrap, name, d, reason,
         name + " is not active and, unless it is down for the bootstrap itself, in maintenance; " +
             d + " is a reachable primary",
         block);
    actions_.back().destructive = true;
    actions_.back().removes = what;
  }

  // Phase 5: replication into the other stacks as desired.
  void replication() {
    const std::string& d = g_.active;
    std::vector<std::pair<std::string, std::string>> bootstraps;  // stack, why
    for (const auto& [name, spec] : g_.stacks) {
      if (name == d) continue;
      if (g_.wants_replica(name)) {
        if (st(name).bootstrap_phase) {
          bootstraps.push_back({name, ""});  // resumed whatever it observes now
          continue;
        }
        if (role(name) == Role::replica && upstream(name) == d && !not_streaming(name)) continue;
        if (db_unobserved(name) || db_unobserved(d)) {
          if (promoted_)
            skip(ActionKind::replication_start, name,
                 "replication into " + name + " cannot be observed (its database or " + d +
                     "'s is not observed); re-attach it by hand" +
                     (st(name).attach_by_hand.empty()
                          ? " (Cloud 66: resync_slave_db once replication is set up again)"
                          : ": " + st(name).attach_by_hand + "; choose " + d +
                                "'s database as the master"));
          continue;
        }
        if (!reachable(name)) {
          skip(ActionKind::replication_start, name,
               unreachable_why(name) + "; it will be re-attached when it returns");
          continue;
        }
        if (role(name) == Role::unknown) {
          skip(ActionKind::replication_start, name,
               "the role of " + name + "'s database could not be read");
          continue;
        }
        // Its driver can only re-sync a replica (Cloud 66): a primary, never
        // replicated or promoted by a failover, is made one by a person
        // (issue 17). The fence above keeps it from taking writes.
        if (role(name) == Role::primary && !st(name).attach_by_hand.empty()) {
          skip(ActionKind::replication_start, name,
               "replication from " + d + " into " + name + " is desired, but " + name +
                   "'s database is a primary, not a replica: " + st(name).attach_by_hand +
                   "; choose " + d + "'s database as the master");
          continue;
        }
        if (std::string why = cannot_follow(name); !why.empty()) {
          bootstraps.push_back({name, why});
          continue;
        }
        std::string reason =
            role(name) == Role::primary
                ? "replication from " + d + " into " + name + " is desired; " + name +
                      " is a fenced former primary: re-attach it by the non-destructive path "
                      "(immediate stop, standby.signal, primary_conninfo)"
                : "replication from " + d + " into " + name + " is desired; " + name +
                      (upstream(name) == d ? " is configured for " + d + " but not streaming"
                       : upstream(name)    ? " streams from " + *upstream(name)
                                           : " has replication stopped");
        std::string why;
        if (!reachable(d))
          why = "the source " + unreachable_why(d);
        else if (!in_maintenance(name))
          why = name + " is not in maintenance";
        emit(ActionKind::replication_start, name, d, reason,
             name + " is in maintenance and " + d + " is primary", why);
      } else if (role(name) == Role::replica && upstream(name)) {
        emit(ActionKind::replication_stop, name, "",
             "replication into " + name + " is not desired, observed streaming from " +
                 *upstream(name),
             "none needed: " + name + " stays a replica",
             reachable(name) ? "" : unreachable_why(name));
      }
    }
    // Bootstraps last: each takes a base backup, and one that is blocked
    // (not opted in) must not hold the other stacks' re-attaches.
    for (const auto& [name, why] : bootstraps) bootstrap(name, why);
    // Explicit `maintenance: false` on a non-active stack: only a replica may
    // leave maintenance (it cannot accept writes anyway).
    for (const auto& [name, spec] : g_.stacks) {
      if (name == d || g_.desired_maintenance(name) || !in_maintenance(name)) continue;
      if (!reachable(name)) continue;
      if (role(name) == Role::replica)
        emit(ActionKind::maintenance_off, name, "",
             "maintenance of " + name + " is desired off (explicit)", name + " is a replica");
      else
        skip(ActionKind::maintenance_off, name,
             name +
                 " is a primary that is not active: leaving maintenance would make a second "
                 "writable database");
    }
  }

  const GroupSpec& g_;
  GroupObs sim_;
  std::vector<Action>& actions_;
  std::vector<Skipped>& skipped_;
  size_t first_;
  bool clients_;
  std::vector<std::string> reached_;  // the stacks traffic reaches, as observed
  std::optional<size_t> blocked_at_;
  bool promoted_ = false;  // this plan promotes the active stack
};

// A reachable stack's server identity, as shared_server_blocks compares it.
struct ServerSeen {
  std::string identity, group, stack, shown;
};

void servers_of(const std::string& gname, const GroupObs& g, std::vector<ServerSeen>& out) {
  for (const auto& [sname, s] : g.stacks) {
    if (!s.reachable || !s.database || !s.database->system_id || !s.database->started_at) continue;
    const DatabaseObs& db = *s.database;
    out.push_back({*db.system_id + "@" + *db.started_at, gname, sname,
                   "system identifier " + *db.system_id + ", started at " + *db.started_at});
  }
}

std::map<std::string, std::string> blocks_of(std::vector<ServerSeen> seen) {
  std::map<std::string, std::vector<std::string>> found;  // group -> servers named twice
  std::stable_sort(seen.begin(), seen.end(), [](const ServerSeen& a, const ServerSeen& b) {
    return a.identity < b.identity;
  });
  for (size_t i = 0; i < seen.size();) {
    size_t j = i + 1;
    while (j < seen.size() && seen[j].identity == seen[i].identity) ++j;
    if (j - i > 1) {
      std::string names;
      for (size_t k = i; k < j; ++k)
        names += (k == i       ? ""
                  : k + 1 == j ? " and "
                               : ", ") +
                 ("stack " + seen[k].stack + " of group " + seen[k].group);
      const std::string what = names + " are one PostgreSQL server (" + seen[i].shown + ")";
      for (size_t k = i; k < j; ++k) {
        auto& w = found[seen[k].group];
        if (std::find(w.begin(), w.end(), what) == w.end()) w.push_back(what);
      }
    }
    i = j;
  }
  std::map<std::string, std::string> out;
  for (const auto& [group, whats] : found) {
    std::string why;
    for (const auto& w : whats) why += (why.empty() ? "" : "; ") + w;
    out[group] =
        why +
        ": a promotion is per server, so two plans would fence and promote it against each other; "
        "nothing is applied until the config names each server once (applications that share a "
        "database pair belong in one group)";
  }
  return out;
}

bool same_step(const Action& a, const Action& b) {
  return a.group == b.group && a.kind == b.kind && a.stack == b.stack && a.source == b.source;
}

}  // namespace

std::optional<uint64_t> lag_bytes(const GroupObs& observed, const std::string& stack,
                                  const std::string& source) {
  auto s = observed.stacks.find(stack), p = observed.stacks.find(source);
  if (s == observed.stacks.end() || p == observed.stacks.end()) return std::nullopt;
  if (!s->second.database || !p->second.database) return std::nullopt;
  auto a = s->second.database->lsn, b = p->second.database->lsn;
  if (!a || !b) return std::nullopt;
  return *b > *a ? *b - *a : 0;
}

void plan_group(const GroupSpec& group, const GroupObs& observed, std::vector<Action>& actions,
                std::vector<Skipped>& skipped, const std::string& block) {
  const size_t first = actions.size();
  const size_t first_skipped = skipped.size();
  auto plan_once = [&](bool clients, bool resume_first) {
    actions.resize(first);
    skipped.resize(first_skipped);
    GroupPlanner(group, observed, actions, skipped, clients).run(resume_first);
    bool stuck = !block.empty();
    for (size_t i = first; i < actions.size(); ++i) stuck |= actions[i].blocked;
    return stuck;
  };
  // What clients see (phase 0: TTL pre-lowering, the pooler's pause) is
  // planned only for a switch that can complete: before a fence that a
  // blocked step follows, waiting out a TTL or holding clients would only
  // delay the fence and then leave them where they were. Phase 0 never
  // blocks and changes nothing the later phases judge by, so a plan with it
  // is stuck exactly when the plan without it is: the common plan is made
  // once.
  bool clients = false;
  for (const TrafficSpec& t : group.traffic) clients |= t.switch_ttl.has_value();
  clients |= observed.traffic.paused.has_value();
  bool stuck = plan_once(clients, false);
  if (stuck && clients) stuck = plan_once(false, false);
  // A pooler holding its clients (a switch interrupted after its pause)
  // while the plan cannot complete: planned again with the resume first, so
  // that clients are not held until someone unblocks it.
  if (stuck && observed.traffic.paused == true && observed.traffic.reachable)
    plan_once(false, true);
  std::string why = block;
  if (why.empty()) {
    // Two stacks of this group on one server: seen here too, so that apply's
    // re-plan of one group (which sees no other group) keeps the block.
    std::vector<ServerSeen> seen;
    servers_of(group.name, observed, seen);
    auto b = blocks_of(std::move(seen));
    if (auto it = b.find(group.name); it != b.end()) why = it->second;
  }
  if (why.empty()) return;
  for (size_t i = first; i < actions.size(); ++i) {
    actions[i].blocked = true;
    actions[i].why_blocked = why;
  }
}

std::map<std::string, std::string> shared_server_blocks(const ObservedState& observed) {
  std::vector<ServerSeen> seen;
  for (const auto& [gname, g] : observed.groups) servers_of(gname, g, seen);
  return blocks_of(std::move(seen));
}

Plan make_plan(const DesiredState& desired, const ObservedState& observed) {
  Plan plan;
  plan.desired_digest = desired.digest;
  static const GroupObs kNothingObserved = [] {
    GroupObs g;
    g.traffic.reachable = false;
    g.traffic.error = "not observed";
    return g;
  }();
  const auto blocks = shared_server_blocks(observed);
  for (const auto& [name, group] : desired.groups) {
    auto it = observed.groups.find(name);
    auto b = blocks.find(name);
    const std::string& block = b == blocks.end() ? std::string() : b->second;
    plan_group(group, it == observed.groups.end() ? kNothingObserved : it->second, plan.actions,
               plan.skipped, block);
    if (!block.empty()) plan.blocked_groups[name] = block;
    if (it != observed.groups.end())
      if (std::string e = config_error_of(it->second); !e.empty()) plan.config_errors[name] = e;
  }
  return plan;
}

bool still_next(const Action& action, const std::vector<Action>& fresh, const GroupSpec& group,
                const GroupObs& observed, const std::vector<Action>& done_unobservable) {
  for (const Action& a : fresh) {
    if (a.group != action.group) continue;
    if (same_step(a, action)) return !a.blocked;
    bool done = false;
    for (const Action& d : done_unobservable) done |= same_step(a, d);
    if (done) continue;
    bool satisfied_wait = a.kind == ActionKind::replication_wait && !a.blocked &&
                          lag_bytes(observed, a.stack, a.source).value_or(UINT64_MAX) <=
                              group.replication.max_lag_bytes;
    if (!satisfied_wait) return false;
  }
  return false;
}

}  // namespace stackflip
