#!/usr/bin/env bash
# Differential check: the query corpus through Prometheus 2.42 (Debian's `prometheus`) and
# through tsdb-promql, on the same data. Loopback only, temporary data dir, bounded run.
# Usage: tsdb-promql/scripts/differential.sh   (needs: apt-get install -y prometheus curl)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
for tool in prometheus promtool curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y prometheus curl python3)" >&2; exit 2; }
done
tmp="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

cargo build -q -p tsdb-promql --bin promql-differential
bin="${CARGO_TARGET_DIR:-$root/target}/debug/promql-differential"
"$bin" gen > "$tmp/data.om"
promtool tsdb create-blocks-from openmetrics "$tmp/data.om" "$tmp/db" >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf 'global:\n  scrape_interval: 1h\n' > "$tmp/prometheus.yml"
prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/db" \
  --storage.tsdb.retention.time=100y --web.listen-address="127.0.0.1:$port" \
  --log.level=warn > "$tmp/prometheus.log" 2>&1 &
pid=$!
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null || { cat "$tmp/prometheus.log" >&2; exit 2; }

mapfile -t times < <("$bin" times)
read -r rstart rend rstep < <("$bin" range)
: > "$tmp/answers.jsonl"
: > "$tmp/ranges.jsonl"
grep -v '^\s*#' "$here/corpus.txt" | grep -v '^\s*$' | while IFS= read -r query; do
  for t in "${times[@]}"; do
    curl -s --max-time 10 --get "http://127.0.0.1:$port/api/v1/query" \
      --data-urlencode "query=$query" --data-urlencode "time=$t" >> "$tmp/answers.jsonl"
    echo >> "$tmp/answers.jsonl"
  done
  curl -s --max-time 10 --get "http://127.0.0.1:$port/api/v1/query_range" \
    --data-urlencode "query=$query" --data-urlencode "start=$rstart" \
    --data-urlencode "end=$rend" --data-urlencode "step=$rstep" >> "$tmp/ranges.jsonl"
  echo >> "$tmp/ranges.jsonl"
done
"$bin" compare "$here/corpus.txt" "$tmp/answers.jsonl" "$tmp/ranges.jsonl"
