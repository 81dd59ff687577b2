// postgres_driver.h — StackDriver for one PostgreSQL server (libpq).
//
// Provider settings: `password` (secret reference, optional),
// `connect_timeout_ms` (default 2000), `statement_timeout_ms` (default 5000).
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
// dsn (host, hostaddr, port, user, sslmode, plus application_name = this
// stack's name and, if a password secret is configured, password — it is
// then stored in this server's postgresql.auto.conf; prefer a .pgpass /
// passfile or trust/cert auth for replication). A replica reloads and waits
// for status 'streaming' from the source. A primary (a fenced former
// primary) is restarted as a standby by `control_command... restart-as-standby
// DATA_DIR` (fork/exec, no shell, 60 s limit, stderr captured) or, without
// a control command, locally with pg_ctl (immediate stop, standby.signal,
// start; as the data directory's owner when run as root: see "Files in the
// data directory" below). Then it waits up
// to 10 s for streaming; a server that comes up but does not stream (e.g.
// its timeline diverged from the source: it wrote WAL after the source was
// promoted) is reported as an error — pg_rewind is a later hardening.
// "Streaming" means: status streaming, from the source's host:port, on the
// source's current timeline (a diverged server streams the old timeline up
// to the fork point and then stalls, still showing "streaming" for a while).
//
// Why an immediate stop: the re-attached server must not have WAL past the
// point where the new primary's timeline forked. A clean (fast) shutdown
// writes a shutdown checkpoint record after that point, and the server then
// logs "new timeline N forked off current database system timeline N-1
// before current recovery point" forever. A control command must therefore
// stop with -m immediate too (the server is fenced; crash recovery replays
// everything committed). Crash recovery first fsyncs the data directory:
// recovery_init_sync_method = syncfs keeps that short on busy disks.
//
// Files in the data directory (issue 10): its owner (the postgres user) can
// plant a symbolic link at any name there. The data directory is opened
// once without following a link and must be owned by a user other than root
// (as root; by ourselves otherwise) and hold that user's PG_VERSION; the
// files stackflip itself touches (standby.signal, the *.conf files kept
// across pg_rewind) are reached through that descriptor with O_NOFOLLOW,
// created for the owner with fchown() on the open file (safe_file.h). A
// planted link at standby.signal is refused before the server is stopped; a
// *.conf that is not a regular file of the owner is not kept across
// pg_rewind (warning). pg_ctl and pg_rewind run as the owner.
//
// Thread safety: one thread at a time per driver (provider.h).
#pragma once

#include <memory>
#include <string>

#include "core/model.h"
#include "core/provider.h"

namespace stackflip {

std::unique_ptr<StackDriver> make_postgres_stack_driver(const ProviderConfig& provider,
                                                        const GroupSpec& group,
                                                        const std::string& stack);

}  // namespace stackflip
