#!/usr/bin/env python3
"""Timeline recorder for etcd_cutoff_e2e.sh (not a suite of its own).

  poll OUT SECONDS STOPFILE ETCD_URL PREFIX NAME=PORT:LOG...
      every 100 ms until STOPFILE exists or SECONDS passed (bounded): one JSON
      line per sample to OUT: time, per instance /status (etcd healthy, leader
      of shop, own lease left) and /metrics stackflip_etcd_up, the log lines
      that appeared since the last sample, and etcd's view through ETCD_URL
      of live/leader/shop (value, lease) and that lease's TTL.
"""
import base64
import json
import os
import sys
import time
import urllib.request


def get(url, body=None, timeout=0.5):
    data = None if body is None else json.dumps(body).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
        return r.read().decode()


def b64(s):
    return base64.b64encode(s.encode()).decode()


def main():
    out, seconds, stopfile, etcd, prefix = sys.argv[2:7]
    insts = {}
    for a in sys.argv[7:]:
        name, rest = a.split("=", 1)
        port, log = rest.split(":", 1)
        insts[name] = {"port": port, "log": log, "pos": 0}
    for i in insts.values():  # only lines written from now on
        try:
            i["pos"] = os.path.getsize(i["log"])
        except OSError:
            pass
    deadline = time.time() + float(seconds)
    with open(out, "a") as f:
        while time.time() < deadline and not os.path.exists(stopfile):
            t0 = time.time()
            s = {"t": t0, "inst": {}, "etcd": {}}
            for name, i in insts.items():
                r = {}
                try:
                    j = json.loads(get("http://127.0.0.1:%s/status" % i["port"]))
                    c = j.get("coordination") or {}
                    r["healthy"] = (c.get("etcd") or {}).get("healthy")
                    r["leader"] = ((c.get("groups") or {}).get("shop") or {}).get("leader")
                    r["lease_left"] = c.get("lease_remaining_seconds")
                except Exception as e:  # noqa: BLE001 - recorded, not fatal
                    r["status_error"] = str(e)
                try:
                    for line in get("http://127.0.0.1:%s/metrics" % i["port"]).splitlines():
                        if line.startswith("stackflip_etcd_up "):
                            r["up"] = float(line.split()[1])
                except Exception as e:  # noqa: BLE001
                    r["metrics_error"] = str(e)
                try:
                    with open(i["log"], errors="replace") as lf:
                        lf.seek(i["pos"])
                        new = lf.read()
                        if new.endswith("\n"):
                            i["pos"] += len(new.encode())
                            r["lines"] = new.splitlines()
                except OSError:
                    pass
                s["inst"][name] = r
            try:
                kv = json.loads(get(etcd + "/v3/kv/range", {"key": b64(prefix + "live/leader/shop")})).get("kvs") or []
                if kv:
                    s["etcd"]["leader"] = base64.b64decode(kv[0]["value"]).decode()
                    s["etcd"]["lease"] = kv[0].get("lease")
                    s["etcd"]["create_revision"] = kv[0].get("create_revision")
                    ttl = json.loads(get(etcd + "/v3/lease/timetolive", {"ID": kv[0].get("lease")}))
                    s["etcd"]["ttl"] = int(ttl.get("TTL", -1))
                else:
                    s["etcd"]["leader"] = None
            except Exception as e:  # noqa: BLE001
                s["etcd"]["error"] = str(e)
            f.write(json.dumps(s) + "\n")
            f.flush()
            time.sleep(max(0.0, 0.1 - (time.time() - t0)))


if __name__ == "__main__":
    if len(sys.argv) < 8 or sys.argv[1] != "poll":
        sys.exit(__doc__)
    main()
