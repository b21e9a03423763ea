#!/usr/bin/env bash
# Q1..Q4 of issue 6 on Gorilla TSDB and VictoriaMetrics, same data, same machine, same run.
#
#   bash benches/vm/compare.sh
#
# 1. runs benches/benches/query.rs (JSON only): loads 1,000 series x 10,000 points into
#    Gorilla TSDB, times Q1..Q4 and Q1 from 8 tasks, writes the answers and the same data in
#    VictoriaMetrics' JSON-lines import format;
# 2. installs VictoriaMetrics (Debian package victoria-metrics) if absent, starts it on
#    127.0.0.1 with a temporary data directory (stopped on exit, and after 30 minutes at most);
# 3. benches/vm/compare.py loads the data into it, runs Q1..Q4 over its HTTP API (with
#    nocache=1, and again with its result cache), compares the answers with ours (relative
#    tolerance 1e-9; exit status 1 when one differs) and prints the table.
#
# The first table's latencies are in-process (the engine's API); VictoriaMetrics' include a
# loopback HTTP round trip from Python (about 0.1-0.2 ms), which matters for Q1 only. The
# second table sends the same queries to `gorilla-tsdb serve` over the same data, over HTTP
# with the same client, so both pay the same HTTP floor.
set -euo pipefail
cd "$(dirname "$0")/../.."

PORT="${VM_PORT:-18428}"
OUR_PORT="${OUR_PORT:-18429}"
WORK="$(mktemp -d /tmp/tsdb-vm-compare.XXXXXX)"
VM_PID=""
OUR_PID=""
cleanup() {
    if [ -n "$VM_PID" ]; then kill "$VM_PID" 2>/dev/null || true; wait "$VM_PID" 2>/dev/null || true; fi
    if [ -n "$OUR_PID" ]; then kill "$OUR_PID" 2>/dev/null || true; wait "$OUR_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v victoria-metrics >/dev/null; then
    apt-get install -y victoria-metrics >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y victoria-metrics >/dev/null; }
fi

echo "== Gorilla TSDB (cargo bench -p tsdb-benches --bench query, JSON only)" >&2
QUERY_BENCH_JSON_ONLY=1 QUERY_BENCH_OUT="$WORK/ours.json" QUERY_BENCH_VM_IMPORT="$WORK/vm.jsonl" \
    QUERY_BENCH_KEEP_DIR="$WORK/ours-db" cargo bench -p tsdb-benches --bench query >/dev/null

echo "== Gorilla TSDB server (gorilla-tsdb serve over the same data)" >&2
cargo build -q --release -p tsdb-cli
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
timeout 1800 "$TARGET_DIR/release/gorilla-tsdb" --data-dir "$WORK/ours-db" serve \
    --listen "127.0.0.1:$OUR_PORT" >"$WORK/ours.log" 2>&1 &
OUR_PID=$!
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$OUR_PORT/-/ready', timeout=1)" 2>/dev/null; then
        break
    fi
    sleep 0.2
done

echo "== VictoriaMetrics $(victoria-metrics -version 2>&1 | head -1)" >&2
timeout 1800 victoria-metrics \
    -storageDataPath="$WORK/vmdata" \
    -httpListenAddr="127.0.0.1:$PORT" \
    -retentionPeriod=100y \
    -search.latencyOffset=0s \
    -loggerLevel=ERROR >"$WORK/vm.log" 2>&1 &
VM_PID=$!
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=1)" 2>/dev/null; then
        break
    fi
    sleep 0.2
done

# The process `timeout` started, whose CPU time compare.py watches.
VM_CHILD="$(pgrep -P "$VM_PID" | head -1 || true)"
VM_PID="${VM_CHILD:-$VM_PID}" python3 benches/vm/compare.py "$WORK/ours.json" "$WORK/vm.jsonl" "127.0.0.1:$PORT" "127.0.0.1:$OUR_PORT"
