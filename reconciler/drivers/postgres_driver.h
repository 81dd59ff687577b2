// postgres_driver.h — StackDriver for one PostgreSQL server (libpq).
//
// Provider settings: `password` (secret reference, optional),
// `connect_timeout_ms`, `statement_timeout_ms`, `pg_rewind`; their defaults
// (2000, 5000, false) are written once, in the loader's table: a setting the
// ProviderConfig lacks is read from provider_default() (loader.h).
// Stack settings: `dsn` (libpq conninfo without password, kept as the
// operator wrote it: passed with expand_dbname), `password` (secret ref,
// overrides the provider's), list `control_command` (argv, optional).
//
// Connections: one session is kept open across calls (application_name
// stackflip, statement_timeout set through `options`); it is re-opened when
// it dropped, and a statement that fails because the connection was lost is
// retried once on a fresh session (every statement the driver sends is
// idempotent). Secrets are resolved only when connecting and never appear in
// messages or logs. All waits are short growing polls (1 ms doubling to a
// 50 ms cap) bounded by a deadline; no fixed sleeps.
//
// observe() never fails: an unreachable server, or one that refuses our
// login, is reachable=false with the message in StackObs::error (which has
// no field for Error::config; the actions return the classified Error).
// observe(): role from pg_is_in_recovery(); lsn = pg_current_wal_lsn() on a
// primary, pg_last_wal_replay_lsn() on a replica; timeline from the current
// WAL file name on a primary (pg_control_checkpoint() lags right after a
// promotion), from pg_stat_wal_receiver.received_tli (else the last
// checkpoint) on a replica; maintenance = default_transaction_read_only.
// upstream = the stack of this group whose dsn has the host and port of the
// replica's configured primary_conninfo (needs superuser or
// pg_read_all_settings); empty primary_conninfo → null (replication
// stopped). DECISION: when primary_conninfo names a host:port that matches
// no stack of the group, upstream is null (the planner only understands
// stack names, and "not replicating from any stack we manage" is what null
// means to it), the role stays replica and StackObs::error carries a note
// naming that host:port while reachable stays true. Hosts are compared as
// text (case-insensitively): write the same host spelling in the dsn as in
// primary_conninfo.
//
// set_maintenance(on): ALTER SYSTEM SET default_transaction_read_only = on
// (it only writes postgresql.auto.conf, so it works on a replica too),
// pg_reload_conf(), wait until a NEW session sees the setting (the reload is
// asynchronous), then terminate the other client sessions so none keeps
// writing with its old setting. The fence is advisory: a session can still
// write with `SET transaction_read_only = off` or `BEGIN READ WRITE`. A hard
// fence (stop the server, change pg_hba.conf) belongs in the stack's
// control command. off: ALTER SYSTEM RESET, reload, wait for new sessions.
//
// stop_replication(): primary_conninfo = '' + reload; waits until the WAL
// receiver is gone. promote(): pg_promote(wait => false), then polls
// pg_is_in_recovery() itself — pg_promote's own wait loop checks only every
// 100 ms, which alone would eat a third of the switchover budget.
//
// start_replication(source): sets primary_conninfo from the source stack's
// dsn (host, hostaddr, port, user, sslmode, sslrootcert, plus
// application_name = this stack's name and, if a password secret is
// configured, password — it is then stored in this server's
// postgresql.auto.conf; prefer a .pgpass / passfile or trust/cert auth for
// replication). A replica reloads and waits for status 'streaming' from the
// source. A primary (a fenced former primary) that has not diverged is
// restarted as a standby (postgres_control.h: the stack's control_command
// or local pg_ctl, with an immediate stop). Then it waits up to 10 s for
// streaming and for replay up to the source's position. A server whose
// timeline diverged from the source's (it wrote WAL after the source was
// promoted: postgres_wal.h) is rewound with pg_rewind when `pg_rewind: true`
// is set on the stack or its provider (postgres_control.h), else refused
// with an error naming the positions; it stays fenced either way until it
// follows. "Streaming" means: status streaming, from the source's
// host:port, on the source's current timeline (a diverged server streams
// the old timeline up to the fork point and then stalls, still showing
// "streaming" for a while).
//
// Why an immediate stop: the re-attached server must not have WAL past the
// point where the new primary's timeline forked. A fast shutdown writes a
// shutdown checkpoint record after that point, and the server then logs
// "new timeline N forked off current database system timeline N-1 before
// current recovery point" forever. A control command must therefore stop
// with -m immediate too (the server is fenced; crash recovery replays
// everything committed). Crash recovery first fsyncs the data directory:
// recovery_init_sync_method = syncfs keeps that short on busy disks.
//
// Issue 17, stacks with `bootstrap: basebackup` (and `data_directory`,
// `keep_old_data`) only. observe() also reads the marker of an interrupted
// bootstrap beside the data directory (pg_read_file through the session,
// else the control command's `bootstrap-state`; while the server is down,
// the control command), and, unless the server streams, its databases and
// their sizes and, with pg_rewind off, whether it diverged from the active
// stack (DatabaseObs::cannot_follow). bootstrap_replica(source): the
// running server must run from `data_directory`; primary_conninfo is set
// (the command carries the *.conf files over), the control command's
// `bootstrap` replaces the data and starts a standby, the driver waits for
// streaming and replay as a re-attach does, and only then runs
// `bootstrap-finish` (the old data removed or kept).
//
// Parts: postgres_session.h (libpq sessions, retry, authentication failures
// as Error::config), postgres_wal.h (the timeline arithmetic, pure),
// postgres_control.h (pg_ctl, pg_rewind, control_command; the data
// directory's files, issue 10). Waits poll with Backoff (backoff.h) on the
// Clock given to make_postgres_stack_driver.
//
// Thread safety: one thread at a time per driver (provider.h).
#pragma once

#include <memory>
#include <string>

#include "core/model.h"
#include "core/provider.h"
#include "util/clock.h"

namespace stackflip {

std::unique_ptr<StackDriver> make_postgres_stack_driver(const ProviderConfig& provider,
                                                        const GroupSpec& group,
                                                        const std::string& stack,
                                                        Clock& clock = real_clock());

}  // namespace stackflip
