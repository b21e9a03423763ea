#!/usr/bin/env bash
# Import speed of issue 16: `gorilla-tsdb import` against VictoriaMetrics'
# /api/v1/import/prometheus, same files, same machine, same run.
#
#   bash benches/vm/import.sh            # 1,000 x 10,000 points and 1,000,000 new series
#   POINTS_SERIES=100 POINTS_PER_SERIES=1000 NEW_SERIES=10000 REPEAT=1 bash benches/vm/import.sh
#
# 1. generates two Prometheus text files: POINTS_SERIES series x POINTS_PER_SERIES points
#    (two-decimal gauges, millisecond timestamps 10 s apart, time-major as scrapes come),
#    and NEW_SERIES series of one point each;
# 2. imports each with `gorilla-tsdb import --format prometheus` (release build, a fresh data
#    directory; the time includes opening and closing the database, so every point is in
#    chunks on disk at the end), measured by /usr/bin/time;
# 3. installs VictoriaMetrics (Debian package victoria-metrics) if absent, and for each file
#    starts a fresh one on 127.0.0.1 with a temporary data directory, POSTs the file with
#    `curl --data-binary`, forces a flush and polls until /api/v1/series/count and a query
#    see every series and point; its time runs from the POST to that moment, its CPU seconds
#    and peak RSS come from /proc (the server's, plus curl's CPU);
# 4. repeats both REPEAT times (default 3: other work on the machine makes single runs
#    noisy), checks every count (exit status 1 when one is wrong) and prints a markdown
#    table of the best runs, with ratios, and every run below it.
#
# Everything stops by itself: each step has a timeout, VictoriaMetrics is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT="${VM_PORT:-18430}"
POINTS_SERIES="${POINTS_SERIES:-1000}"
POINTS_PER_SERIES="${POINTS_PER_SERIES:-10000}"
NEW_SERIES="${NEW_SERIES:-1000000}"
STEP_TIMEOUT="${STEP_TIMEOUT:-900}"
REPEAT="${REPEAT:-3}"
WORK="$(mktemp -d /tmp/tsdb-vm-import.XXXXXX)"
VM_PID=""
stop_vm() {
    if [ -n "$VM_PID" ]; then
        kill "$VM_PID" 2>/dev/null || true
        wait "$VM_PID" 2>/dev/null || true
        VM_PID=""
    fi
}
cleanup() {
    stop_vm
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

if ! command -v victoria-metrics >/dev/null; then
    apt-get install -y victoria-metrics >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y victoria-metrics >/dev/null; }
fi

VM_VERSION="$(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || victoria-metrics -version 2>&1 | head -1)"

echo "== building gorilla-tsdb (release)" >&2
cargo build -q --release -p tsdb-cli
BIN="${CARGO_TARGET_DIR:-target}/release/gorilla-tsdb"

echo "== generating the files in $WORK" >&2
timeout "$STEP_TIMEOUT" python3 - "$WORK" "$POINTS_SERIES" "$POINTS_PER_SERIES" "$NEW_SERIES" <<'EOF'
import sys
work, series, per_series, new_series = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
T0 = 1_700_000_000_000
with open(f"{work}/points.prom", "w", buffering=1 << 20) as f:
    prefixes = [f'bench_gauge{{host="host-{s:04d}",job="bench"}} ' for s in range(series)]
    for t in range(per_series):
        ts = f" {T0 + t * 10_000}\n"
        f.write("".join(f"{p}{((s * 7919 + t * 104729) % 100000) / 100:.2f}{ts}"
                        for s, p in enumerate(prefixes)))
with open(f"{work}/series.prom", "w", buffering=1 << 20) as f:
    for b in range(0, new_series, 10_000):
        f.write("".join(f'new_series{{id="{s:07d}",host="host-{s % 100:02d}"}} {s % 1000 / 10:.1f} {T0}\n'
                        for s in range(b, min(new_series, b + 10_000))))
EOF

# Polls VictoriaMetrics until it sees SERIES series and POINTS points of METRIC.
vm_wait() {
    timeout "$STEP_TIMEOUT" python3 - "127.0.0.1:$PORT" "$1" "$2" "$3" "$4" <<'EOF'
import json, sys, time, urllib.parse, urllib.request
addr, metric, series, points, at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
def get(path, **params):
    url = f"http://{addr}{path}?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=120) as r:
        return json.load(r)
while True:
    urllib.request.urlopen(f"http://{addr}/internal/force_flush", timeout=120).read()
    n = get("/api/v1/series/count", nocache=1)["data"][0]
    if n >= series:
        window = (at - 1_700_000_000_000) // 1000 + 1
        q = get("/api/v1/query", query=f"sum(count_over_time({metric}[{window}s]))",
                time=f"{at / 1000:.3f}", nocache=1)["data"]["result"]
        seen = int(float(q[0]["value"][1])) if q else 0
        if seen >= points:
            print(n, seen)
            break
    time.sleep(0.1)
EOF
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# name file metric series points last_timestamp_ms
run_one() {
    local name=$1 file=$2 metric=$3 series=$4 points=$5 last=$6
    local bytes
    bytes=$(stat -c %s "$file")
    echo "== $name: gorilla-tsdb import" >&2
    rm -rf "$WORK/db"
    /usr/bin/time -f '%e %U %S %M' -o "$WORK/ours.time" timeout "$STEP_TIMEOUT" \
        "$BIN" --data-dir "$WORK/db" import --format prometheus --no-progress "$file" \
        2>"$WORK/ours.log" || { cat "$WORK/ours.log" >&2; exit 1; }
    cat "$WORK/ours.log" >&2
    read -r o_wall o_user o_sys o_rss <"$WORK/ours.time"
    local o_stats o_series o_points
    o_stats=$("$BIN" --data-dir "$WORK/db" stats --json)
    o_series=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["series"])' <<<"$o_stats")
    o_points=$(python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["points_in_chunks"] + d["points_buffered"])' <<<"$o_stats")
    rm -rf "$WORK/db"

    echo "== $name: VictoriaMetrics $VM_VERSION" >&2
    rm -rf "$WORK/vmdata"
    timeout 3600 victoria-metrics \
        -storageDataPath="$WORK/vmdata" \
        -httpListenAddr="127.0.0.1:$PORT" \
        -retentionPeriod=100y \
        -search.latencyOffset=0s \
        -search.maxUniqueTimeseries=100000000 \
        -search.maxSamplesPerQuery=100000000000 \
        -loggerLevel=ERROR >"$WORK/vm.log" 2>&1 &
    VM_PID=$!
    local vm
    for _ in $(seq 1 150); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
        sleep 0.2
    done
    # The server itself, not the timeout(1) above it.
    vm=$(pgrep -P "$VM_PID" | head -1 || true); vm=${vm:-$VM_PID}
    local c0 t0 t1 c1 v_rss v_seen
    c0=$(cpu_ticks "$vm")
    t0=$(date +%s.%N)
    /usr/bin/time -f '%U %S' -o "$WORK/curl.time" timeout "$STEP_TIMEOUT" \
        curl -sf --data-binary "@$file" "http://127.0.0.1:$PORT/api/v1/import/prometheus"
    v_seen=$(vm_wait "$metric" "$series" "$points" "$last")
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "$vm")
    v_rss=$(awk '/VmHWM/ {print $2}' "/proc/$vm/status")
    stop_vm
    read -r curl_user curl_sys <"$WORK/curl.time"
    read -r v_series v_points <<<"$v_seen"

    # One record per run: name, size, expected counts, then ours and VictoriaMetrics'.
    echo "$name|$bytes|$points|$series|$o_wall|$o_user|$o_sys|$o_rss|$o_series|$o_points|$t0|$t1|$c0|$c1|$curl_user|$curl_sys|$v_rss|$v_series|$v_points" >>"$WORK/runs"
}

P=$((POINTS_SERIES * POINTS_PER_SERIES))
LAST=$((1700000000000 + (POINTS_PER_SERIES - 1) * 10000))
for r in $(seq 1 "$REPEAT"); do
    echo "== round $r of $REPEAT" >&2
    run_one "points" "$WORK/points.prom" bench_gauge "$POINTS_SERIES" "$P" "$LAST"
    run_one "new series" "$WORK/series.prom" new_series "$NEW_SERIES" "$NEW_SERIES" 1700000000000
done

echo
echo "Import of Prometheus text, gorilla-tsdb import (release) vs VictoriaMetrics $VM_VERSION /api/v1/import/prometheus, $(nproc) cores, load average at the end $(cut -d' ' -f1-3 /proc/loadavg), best of $REPEAT rounds (each round: ours, then VictoriaMetrics, fresh data directories)."
echo "Times are from start to every point stored (ours: the whole command, open to close; VictoriaMetrics: POST to every point visible to a query). CPU is user + system seconds (VictoriaMetrics: the server's, plus curl's) of the best run; every run is listed below the table."
echo
python3 - "$WORK/runs" "$(getconf CLK_TCK)" <<'EOF'
import sys
runs, tck = sys.argv[1], int(sys.argv[2])
by_name = {}
for line in open(runs):
    (name, size, points, series, o_wall, o_user, o_sys, o_rss, o_series, o_points, t0, t1, c0, c1,
     cu, cs, v_rss, v_series, v_points) = line.strip().split("|")
    points, series = int(points), int(series)
    ours = (float(o_wall), float(o_user) + float(o_sys), int(o_rss) / 1024,
            int(o_series) == series and int(o_points) == points)
    vm = (float(t1) - float(t0), (int(c1) - int(c0)) / tck + float(cu) + float(cs),
          int(v_rss) / 1024, int(v_series) >= series and int(v_points) >= points)
    entry = by_name.setdefault(name, (int(size), points, series, [], []))
    entry[3].append(ours)
    entry[4].append(vm)
print("| file | ours points/s | VM points/s | speed ratio | ours s | VM s | ours CPU-s | VM CPU-s "
      "| VM/ours CPU | ours max RSS MB | VM max RSS MB | counts right (ours, VM) |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
notes = []
wrong = False
for name, (size, points, series, ours, vm) in by_name.items():
    o, v = min(ours), min(vm)
    ok = "yes" if all(r[3] for r in ours) else "NO"
    vok = "yes" if all(r[3] for r in vm) else "NO"
    wrong = wrong or ok == "NO" or vok == "NO"
    print(f"| {name} ({points:,} points, {series:,} series, {size / 1e6:.0f} MB) "
          f"| {points / o[0] / 1e3:,.0f}K | {points / v[0] / 1e3:,.0f}K | {v[0] / o[0]:.2f}x "
          f"| {o[0]:.2f} | {v[0]:.2f} | {o[1]:.2f} | {v[1]:.2f} | {v[1] / o[1]:.2f}x "
          f"| {o[2]:.0f} | {v[2]:.0f} | {ok}, {vok} |")
    notes.append(f"{name}: ours " + ", ".join(f"{r[0]:.2f} s ({r[1]:.2f} CPU-s, {r[2]:.0f} MB)" for r in ours)
                 + "; VictoriaMetrics " + ", ".join(f"{r[0]:.2f} s ({r[1]:.2f} CPU-s, {r[2]:.0f} MB)" for r in vm))
print()
for n in notes:
    print(f"- {n}")
sys.exit(1 if wrong else 0)
EOF
