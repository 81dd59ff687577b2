# libpq.py — libpq through ctypes, for the Python clients of the namespace
# suites (netns_lib.sh), pgbouncer_e2e.sh and scripts/bench-clients.sh. They
# copy this file next to the client they write, where Python finds it.
#   pq        the library, each function used here with its C signature
#   Conn(dsn) one connection; q(sql) -> (command tag, rows of the first
#             column); raises PgError (with the SQLSTATE) on a failure
import ctypes

pq = ctypes.CDLL("libpq.so.5")
_P, _S, _I = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
for _name, _res, _args in [
    ("PQconnectdb", _P, [_S]),
    ("PQstatus", _I, [_P]),
    ("PQexec", _P, [_P, _S]),
    ("PQresultStatus", _I, [_P]),
    ("PQntuples", _I, [_P]),
    ("PQgetvalue", _S, [_P, _I, _I]),
    ("PQcmdStatus", _S, [_P]),
    ("PQresultErrorField", _S, [_P, _I]),
    ("PQresultErrorMessage", _S, [_P]),
    ("PQerrorMessage", _S, [_P]),
    ("PQhostaddr", _S, [_P]),
    ("PQhost", _S, [_P]),
    ("PQclear", None, [_P]),
    ("PQfinish", None, [_P]),
]:
    _f = getattr(pq, _name)
    _f.restype, _f.argtypes = _res, _args

CONNECTION_OK, PGRES_COMMAND_OK, PGRES_TUPLES_OK = 0, 1, 2
PG_DIAG_SQLSTATE = ord("C")


class PgError(Exception):
    def __init__(self, msg, sqlstate=""):
        super().__init__(msg)
        self.sqlstate = sqlstate


class Conn:
    def __init__(self, dsn):
        self.c = pq.PQconnectdb(dsn.encode())
        if pq.PQstatus(self.c) != CONNECTION_OK:
            msg = (pq.PQerrorMessage(self.c) or b"").decode(errors="replace").strip()
            pq.PQfinish(self.c)
            self.c = None
            raise PgError(msg)

    def ok(self):
        return self.c is not None and pq.PQstatus(self.c) == CONNECTION_OK

    def q(self, sql):
        r = pq.PQexec(self.c, sql.encode())
        try:
            if pq.PQresultStatus(r) not in (PGRES_COMMAND_OK, PGRES_TUPLES_OK):
                state = (pq.PQresultErrorField(r, PG_DIAG_SQLSTATE) or b"").decode()
                msg = (pq.PQerrorMessage(self.c) or b"").decode(errors="replace").strip()
                raise PgError(msg, state)
            tag = (pq.PQcmdStatus(r) or b"").decode()
            rows = [[(pq.PQgetvalue(r, i, 0) or b"").decode()] for i in range(pq.PQntuples(r))]
            return tag, rows
        finally:
            pq.PQclear(r)

    def close(self):
        if self.c:
            pq.PQfinish(self.c)
            self.c = None
