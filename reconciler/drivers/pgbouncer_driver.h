// pgbouncer_driver.h — TrafficDriver for one database entry of a PgBouncer
// (issue 15): clients connect through PgBouncer, and the entry says which
// stack's server it forwards them to.
//
// Provider settings: `admin_dsn` (libpq conninfo of PgBouncer's admin
// console, dbname=pgbouncer), `password` (secret reference, sent only to the
// admin_dsn's endpoints: host_policy.h), `databases_file` (the file
// PgBouncer `%include`s for its [databases] section, which this driver
// rewrites), `connect_timeout_ms`, `timeout_ms` (each admin command),
// `pause_timeout_ms`. Traffic settings: `database` (the PgBouncer database
// name whose entry is managed) and `dbname` (the server-side database,
// default `database`). Defaults are in config/loader.cc's type table.
//
// Which stack the entry points at: the host and port of each stack's DSN
// (`dsn`, or a Cloud 66 stack's `database_dsn`), which must name exactly one
// server. observe() asks the admin console `SHOW DATABASES` for the entry's
// host, port, database, `paused` and `disabled`, and reads the databases
// file: an entry the file holds but PgBouncer has not loaded (a hand edit
// before a RELOAD) is a second record, so the address is "mixed" until a
// switch rewrites and reloads it. A missing entry is no record (target
// null) and no `paused` (nothing to hold, so no pause is planned for it).
// Unreachable: reachable=false with libpq's message (never the password);
// an authentication failure is Error::config (result.h).
//
// switch_to() writes the databases file with the stack's host and port
// (nothing else: one `[databases]` section holding the one entry, under a
// header line saying stackflip writes it), sends RELOAD (PgBouncer closes
// server connections to the old server as they are released, the same as
// RECONNECT: no RECONNECT is needed), ENABLEs a DISABLEd entry, and checks
// with SHOW DATABASES that PgBouncer took the new entry: a file it cannot
// load leaves the old one in force, and RELOAD does not say so. It writes
// nothing when the entry and the file already point at the stack. The file
// must be granted by the host (host_policy.h `pgbouncer_files:`), checked at
// load time and again before each write. It is replaced atomically (a new
// file beside it, renamed over it), never following a link; as root the new
// file keeps the old one's owner, group and mode (PgBouncer must still read
// it), else it is the caller's, mode 0644 (it holds no secret).
//
// pause() sends `PAUSE db`, which returns once every server connection of
// the database is released: in transaction pooling when the running
// transactions end; in session pooling only when the clients disconnect.
// When it has not returned within `pause_timeout_ms` (cut by the operation
// deadline, util/deadline.h) the admin connection is closed, `RESUME db` is
// sent on a fresh one (even past the operation deadline: a pool left paused
// holds every client), and pause() fails for good (permanent and timeout)
// with why: how many server connections were still busy and the pool mode.
// Pausing a paused database, or one PgBouncer does not have, succeeds;
// resume() likewise for one that is not paused or not there.
//
// The entry and its file: pgbouncer_entry.h; the admin console connection
// (simple query protocol, every wait bounded): pgbouncer_admin.h. One admin
// connection is kept across calls and reopened once when it was lost (every
// command sent is idempotent). Used from one thread at a time (provider.h).
#pragma once

#include <memory>

#include "core/model.h"
#include "core/provider.h"

namespace stackflip {

std::unique_ptr<TrafficDriver> make_pgbouncer_traffic_driver(const ProviderConfig& provider,
                                                             const GroupSpec& group,
                                                             const TrafficSpec& traffic);

}  // namespace stackflip
