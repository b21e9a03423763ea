#!/usr/bin/env python3
"""Loads the query benchmark's dataset into a running VictoriaMetrics, runs Q1..Q4 against it
over its HTTP API, compares the answers with ours (benches/benches/query.rs, JSON document)
and prints a latency table with ratios.

Usage: compare.py OURS_JSON VM_IMPORT_JSONL HOST:PORT [OUR_SERVER_HOST:PORT]
With the last argument (a `gorilla-tsdb serve` over the same data), the queries also go to
our server over HTTP, with the same client, and a second table compares the two servers.
Only the standard library is used. Exits non-zero when an answer differs.
"""

import http.client
import json
import os
import statistics
import sys
import time
import urllib.parse

REL_TOL = 1e-9


def cpu_seconds(pid):
    """User + system CPU time of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid, limit_s):
    """Waits until the process used under 2% of a core over a second (or `limit_s` passed);
    returns the seconds waited."""
    started = time.monotonic()
    before = cpu_seconds(pid)
    while time.monotonic() - started < limit_s:
        time.sleep(1)
        now = cpu_seconds(pid)
        if now - before < 0.02:
            break
        before = now
    return time.monotonic() - started


def main():
    ours_path, import_path, addr = sys.argv[1:4]
    our_server = sys.argv[4] if len(sys.argv) > 4 else None
    host, port = addr.rsplit(":", 1)
    ours = json.load(open(ours_path))
    conn = http.client.HTTPConnection(host, int(port), timeout=120)

    def getter(c, who):
        def get(path, params):
            url = path + "?" + urllib.parse.urlencode(params)
            c.request("GET", url)
            resp = c.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise SystemExit(f"{who} answered {resp.status} to {url}: {body[:500]!r}")
            return json.loads(body)
        return get

    get = getter(conn, "VictoriaMetrics")

    # Load the same data.
    started = time.monotonic()
    with open(import_path, "rb") as f:
        conn.request("POST", "/api/v1/import", body=f,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status not in (200, 204):
            raise SystemExit(f"import failed: {resp.status} {body[:500]!r}")
    conn.request("GET", "/internal/force_flush")
    conn.getresponse().read()
    t_eval, q2_end = ours["eval"] / 1000, ours["q2_end"] // 1000
    q3_start, q3_end = ours["q3_start"] // 1000, ours["q3_end"] // 1000
    q4 = {"query": "sum(count_over_time(bench_gauge[30h]))", "time": t_eval}
    deadline = time.monotonic() + 300
    while True:
        r = get("/api/v1/query", dict(q4, nocache=1))["data"]["result"]
        if r and float(r[0]["value"][1]) == ours["points"]:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"VictoriaMetrics holds {r} points after 300 s, expected {ours['points']}")
        time.sleep(1)
        conn.request("GET", "/internal/force_flush")
        conn.getresponse().read()
    load_s = time.monotonic() - started
    print(f"VictoriaMetrics loaded {ours['points']} points in {load_s:.1f} s "
          f"(ours: {ours['load_s']:.1f} s incl. flush to chunks)", file=sys.stderr)
    # VictoriaMetrics merges what it imported in the background: measure once it is done
    # (its process idle), so that its merges slow neither its own queries nor our server's.
    vm_pid = os.environ.get("VM_PID")
    if vm_pid:
        settled = wait_idle(int(vm_pid), limit_s=120)
        print(f"VictoriaMetrics idle after {settled:.1f} s", file=sys.stderr)

    queries = {
        "Q1": ("/api/v1/query", lambda i: {
            "query": f'avg_over_time(bench_gauge{{host="h{i % ours["series"]}"}}[1h])',
            "time": t_eval}, 300),
        "Q2": ("/api/v1/query_range", lambda i: {
            "query": "sum by (region) (bench_gauge)",
            "start": q2_end - 3600, "end": q2_end, "step": "60s"}, 30),
        "Q3": ("/api/v1/query_range", lambda i: {
            "query": "sum by (region) (avg_over_time(bench_gauge[5m]))",
            "start": q3_start, "end": q3_end, "step": "300s"}, 10),
        "Q4": ("/api/v1/query", lambda i: q4, 10),
    }

    failures = []
    rows = []
    for name, (path, params, runs) in queries.items():
        # The answer: Q1 for host h1, as ours.
        answer = get(path, dict(params(1), nocache=1))["data"]["result"]
        diff = compare(name, answer, ours[name]["answer"])
        if diff:
            failures.append(diff)
        timings = {}
        for mode, extra in (("nocache", {"nocache": 1}), ("cache", {})):
            for i in range(3):
                get(path, dict(params(i), **extra))
            lat = []
            for i in range(runs):
                p = dict(params(i), **extra)
                t = time.perf_counter()
                get(path, p)
                lat.append((time.perf_counter() - t) * 1e3)
            lat.sort()
            timings[mode] = (statistics.median(lat), lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))])
        rows.append((name, ours[name]["median_ms"], ours[name]["p99_ms"], timings))

    http_rows = []
    if our_server:
        h, p = our_server.rsplit(":", 1)
        get_ours = getter(http.client.HTTPConnection(h, int(p), timeout=120), "Gorilla TSDB")
        for name, (path, params, runs) in queries.items():
            diff = compare(name + " (our server)", get_ours(path, params(1))["data"]["result"],
                           ours[name]["answer"])
            if diff:
                failures.append(diff)
            targets = ((get_ours, {}), (get, {"nocache": 1}))
            for g, extra in targets:
                for i in range(3):
                    g(path, dict(params(i), **extra))
            # Interleaved, the order swapped every run, so that both see the same moments of
            # this shared machine; Q1 (the HTTP floor) gets ten times the runs.
            lats = ([], [])
            for i in range(runs * (10 if name == "Q1" else 1)):
                order = (0, 1) if i % 2 == 0 else (1, 0)
                for k in order:
                    g, extra = targets[k]
                    p = dict(params(i), **extra)
                    t = time.perf_counter()
                    g(path, p)
                    lats[k].append((time.perf_counter() - t) * 1e3)
            both = []
            for lat in lats:
                lat.sort()
                both.append((statistics.median(lat), lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))]))
            http_rows.append((name, both[0], both[1]))

    print()
    print("| query | Gorilla TSDB median (p99) | VictoriaMetrics nocache=1 median (p99) | VM/ours | "
          "VictoriaMetrics with its cache median (p99) | VM cached/ours | answers |")
    print("|---|---|---|---|---|---|---|")
    for name, med, p99, t in rows:
        nc, c = t["nocache"], t["cache"]
        ok = "equal" if not any(f.startswith(name) for f in failures) else "DIFFER"
        print(f"| {name} | {med:.3f} ms ({p99:.3f}) | {nc[0]:.3f} ms ({nc[1]:.3f}) | {nc[0] / med:.1f}x | "
              f"{c[0]:.3f} ms ({c[1]:.3f}) | {c[0] / med:.1f}x | {ok} |")
    if http_rows:
        print("\nBoth over HTTP, the same client, keep-alive connections (ours: gorilla-tsdb serve):\n")
        print("| query | Gorilla TSDB server median (p99) | VictoriaMetrics nocache=1 median (p99) | VM/ours | answers |")
        print("|---|---|---|---|---|")
        for name, o, v in http_rows:
            ok = "equal" if not any(f.startswith(name) for f in failures) else "DIFFER"
            print(f"| {name} | {o[0]:.3f} ms ({o[1]:.3f}) | {v[0]:.3f} ms ({v[1]:.3f}) | {v[0] / o[0]:.1f}x | {ok} |")
    cq = ours["Q1_concurrent"]
    print(f"\nGorilla TSDB Q1 from {cq['tasks']} concurrent tasks: {cq['queries_per_s']:.0f} queries/s, "
          f"p99 {cq['p99_ms']:.3f} ms")
    if failures:
        print("\nANSWERS DIFFER:\n" + "\n".join(failures), file=sys.stderr)
        sys.exit(1)
    print("\nAll four answers equal within a relative tolerance of 1e-9.")


def close(a, b):
    return a == b or abs(a - b) <= REL_TOL * max(abs(a), abs(b), 1.0)


def compare(name, vm, ours):
    """VM's result (vector or matrix) against ours; a description of the first difference."""
    def key(labels):
        return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))

    theirs = {}
    for s in vm:
        pts = s.get("values") or [s["value"]]
        theirs[key(s["metric"])] = {round(float(t) * 1000): float(v) for t, v in pts}
    mine = {key(s["labels"]): {t: v for t, v in s["values"]} for s in ours}
    if theirs.keys() != mine.keys():
        return f"{name}: series differ: VM {sorted(theirs)} vs ours {sorted(mine)}"
    for k in mine:
        a, b = mine[k], theirs[k]
        if a.keys() != b.keys():
            only_ours = sorted(set(a) - set(b))[:5]
            only_vm = sorted(set(b) - set(a))[:5]
            return f"{name} {k}: timestamps differ (only ours {only_ours}, only VM {only_vm})"
        for t in a:
            if not close(a[t], b[t]):
                return f"{name} {k} at {t}: ours {a[t]!r}, VM {b[t]!r}"
    return None


if __name__ == "__main__":
    main()
