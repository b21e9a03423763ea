#!/usr/bin/env bash
# Prometheus remote write into `gorilla-tsdb serve` and into VictoriaMetrics, same bodies,
# same client, same run (benches/benches/remote_write.rs: 8 senders, 500 samples a request):
#
#   bash benches/vm/remote_write.sh
#
# 1. ingestion: 1,000 series and 100,000 series, RW_SAMPLES samples each time (4M), into a
#    fresh server and a fresh VictoriaMetrics (both on 127.0.0.1, temporary data directories);
#    the samples written are then counted back through each one's query API;
# 2. memory: 1,000,000 series (2 samples each) into fresh ones, resident memory read from
#    /proc before and after, divided by the series.
# Prints a markdown table with the ratios. Everything stops by itself (timeouts, and the
# servers are killed on exit).
set -euo pipefail
cd "$(dirname "$0")/../.."

SAMPLES="${RW_SAMPLES:-4000000}"
VM_PORT="${VM_PORT:-18438}"
OUR_PORT="${OUR_PORT:-18439}"
WORK="$(mktemp -d /tmp/tsdb-rw-compare.XXXXXX)"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v victoria-metrics >/dev/null; then
    apt-get install -y victoria-metrics >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y victoria-metrics >/dev/null; }
fi
cargo build -q --release -p tsdb-cli
cargo bench -q -p tsdb-benches --bench remote_write --no-run 2>/dev/null
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OURS_BIN="$TARGET_DIR/release/gorilla-tsdb"

wait_ready() {
    for _ in $(seq 1 150); do
        if python3 -c "import urllib.request; urllib.request.urlopen('$1', timeout=1)" 2>/dev/null; then
            return 0
        fi
        sleep 0.2
    done
    echo "not ready: $1" >&2
    return 1
}

# The process `timeout` started (whose memory is measured).
child_of() {
    for _ in $(seq 1 50); do
        local c
        c="$(pgrep -P "$1" | head -1)"
        if [ -n "$c" ]; then echo "$c"; return 0; fi
        sleep 0.1
    done
    echo "$1"
}

# Starts both receivers with fresh directories; sets OUR_PID and VM_PID.
start_both() {
    local tag="$1"
    timeout 1800 "$OURS_BIN" --data-dir "$WORK/ours-$tag" serve --listen "127.0.0.1:$OUR_PORT" \
        >"$WORK/ours-$tag.log" 2>&1 &
    PIDS+=("$!")
    OUR_PID="$(child_of $!)"
    timeout 1800 victoria-metrics -storageDataPath="$WORK/vm-$tag" -httpListenAddr="127.0.0.1:$VM_PORT" \
        -retentionPeriod=100y -search.latencyOffset=0s -search.maxUniqueTimeseries=5000000 -loggerLevel=ERROR >"$WORK/vm-$tag.log" 2>&1 &
    PIDS+=("$!")
    VM_PID="$(child_of $!)"
    wait_ready "http://127.0.0.1:$OUR_PORT/-/ready"
    wait_ready "http://127.0.0.1:$VM_PORT/health"
}

stop_both() {
    kill "$OUR_PID" "$VM_PID" 2>/dev/null || true
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}

run() {
    local tag="$1" series="$2" samples="$3"
    start_both "$tag"
    echo "== $tag: $series series" >&2
    RW_TARGETS="ours=http://127.0.0.1:$OUR_PORT,vm=http://127.0.0.1:$VM_PORT" \
        RW_PIDS="ours=$OUR_PID,vm=$VM_PID" RW_SERIES="$series" RW_SAMPLES="$samples" \
        timeout 1200 cargo bench -q -p tsdb-benches --bench remote_write >"$WORK/$tag.json"
    # Count what each one holds (VictoriaMetrics flushes its buffers first).
    curl -s "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null || true
    sleep 2
    python3 - "$WORK/$tag.json" "$OUR_PORT" "$VM_PORT" <<'EOF' >"$WORK/$tag.counts"
import json, sys, urllib.error, urllib.parse, urllib.request
run = json.load(open(sys.argv[1]))
span = (run["last_ms"] - run["first_ms"]) // 1000 + 1
q = f'sum(count_over_time({run["metric"]}[{span}s]))'
out = {}
for name, port in (("ours", sys.argv[2]), ("vm", sys.argv[3])):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode(
        {"query": q, "time": run["last_ms"] / 1000, "nocache": 1})
    try:
        body = json.load(urllib.request.urlopen(url, timeout=120))
    except urllib.error.HTTPError as e:
        sys.exit(f"{name}: {q}: {e}: {e.read()[:300]!r}")
    result = body["data"]["result"]
    out[name] = int(float(result[0]["value"][1])) if result else 0
print(json.dumps(out))
EOF
    stop_both
}

run small 1000 "$SAMPLES"
run large 100000 "$SAMPLES"
run memory 1000000 2000000

python3 - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
print("| series | Gorilla TSDB samples/s | VictoriaMetrics samples/s | ours/VM | samples counted back (ours, VM) | p99 request ms (ours, VM) |")
print("|---|---|---|---|---|---|")
for tag in ("small", "large", "memory"):
    run = json.load(open(f"{work}/{tag}.json"))
    counts = json.load(open(f"{work}/{tag}.counts"))
    o, v = run["ours"], run["vm"]
    print(f"| {run['series']:,} | {o['samples_per_s']:,.0f} | {v['samples_per_s']:,.0f} | "
          f"{o['samples_per_s'] / v['samples_per_s']:.2f}x | {counts['ours']:,}, {counts['vm']:,} of {run['samples']:,} | "
          f"{o['p99_ms']:.1f}, {v['p99_ms']:.1f} |")
run = json.load(open(f"{work}/memory.json"))
o, v = run["ours"], run["vm"]
print()
print(f"Resident memory per active series at {run['series']:,} series (RSS after minus before, / series): "
      f"Gorilla TSDB {o['rss_per_series']:.0f} B, VictoriaMetrics {v['rss_per_series']:.0f} B "
      f"(ours/VM {o['rss_per_series'] / v['rss_per_series']:.2f}).")
EOF
