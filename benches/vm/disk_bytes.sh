#!/usr/bin/env bash
# Bytes on disk a point after compaction: Gorilla TSDB, VictoriaMetrics and Prometheus on the
# same files, in the same run.
#
#   bash benches/vm/disk_bytes.sh [PROMTOOL_DUMP]
#
# 1. benches/vm/datasets.py writes each dataset as Prometheus text (ms timestamps) and as
#    OpenMetrics (s timestamps): `cents` (1,000 series x 10,000 two-decimal gauge points),
#    the recordings of ../shared/data (nab, alp; skipped with a notice when absent), and a real
#    Prometheus self-scrape when PROMTOOL_DUMP (the output of `promtool tsdb dump`) is given;
# 2. Gorilla TSDB: `gorilla-tsdb import -f prometheus`, then `gorilla-tsdb compact
#    --cold-after 0s`; the data directory's bytes after close, divided by the points stored;
# 3. VictoriaMetrics 1.79 (Debian package victoria-metrics, installed if absent): the same
#    file to /api/v1/import/prometheus, then /internal/force_flush and /internal/force_merge,
#    stopped, and the bytes of its `data` and `indexdb` directories (its caches left out);
# 4. Prometheus 2.42: `promtool tsdb create-blocks-from openmetrics` (2-hour blocks, as
#    promtool writes them; a running Prometheus would compact them further), for the datasets
#    in PROM_DATASETS (default `cents prometheus`: nab spans years, thousands of 2-hour blocks).
#
# Prints one JSON object a dataset. Every server listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

DUMP="${1:-}"
PORT="${VM_PORT:-18430}"
WORK="$(mktemp -d /tmp/tsdb-disk-bytes.XXXXXX)"
VM_PID=""
cleanup() {
    if [ -n "$VM_PID" ]; then kill "$VM_PID" 2>/dev/null || true; wait "$VM_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

if ! command -v victoria-metrics >/dev/null; then
    apt-get install -y victoria-metrics >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y victoria-metrics >/dev/null; }
fi
if ! command -v promtool >/dev/null; then
    apt-get install -y prometheus >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y prometheus >/dev/null; }
fi

SHARED="${TSDB_SHARED_DATA:-../shared/data}"
if [ ! -d "$SHARED" ]; then
    echo "NOTICE: $SHARED is absent: the real recordings are skipped" >&2
    SHARED=""
fi
cargo build -q --release -p tsdb-cli
BIN="${CARGO_TARGET_DIR:-target}/release/gorilla-tsdb"

echo "== writing the datasets" >&2
timeout 900 python3 benches/vm/datasets.py "$WORK/in" "$SHARED" "$DUMP" >"$WORK/counts"

bytes() { du -sb "$@" 2>/dev/null | awk '{s += $1} END {print s + 0}'; }

while read -r name points; do
    echo "== $name ($points points)" >&2
    db="$WORK/ours-$name"
    timeout 900 "$BIN" --data-dir "$db" import -f prometheus --no-progress "$WORK/in/$name.prom" >&2
    gorilla=$(bytes "$db")
    timeout 900 "$BIN" --data-dir "$db" compact --cold-after 0s >"$WORK/compact.out"
    cat "$WORK/compact.out" >&2
    ours=$(bytes "$db")
    stored=$(sed -n 's/.* \([0-9]*\) points stored.*/\1/p' "$WORK/compact.out")

    vmdir="$WORK/vm-$name"
    timeout 900 victoria-metrics -storageDataPath="$vmdir" -httpListenAddr="127.0.0.1:$PORT" \
        -retentionPeriod=100y >"$WORK/vm.log" 2>&1 &
    VM_PID=$!
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
        sleep 0.2
    done
    curl -sf --max-time 900 -X POST --data-binary "@$WORK/in/$name.prom" \
        "http://127.0.0.1:$PORT/api/v1/import/prometheus"
    curl -sf "http://127.0.0.1:$PORT/internal/force_flush" >/dev/null
    curl -sf "http://127.0.0.1:$PORT/internal/force_merge" >/dev/null || true
    sleep 3
    vm_points=$(curl -sf "http://127.0.0.1:$PORT/api/v1/export" --data-urlencode 'match[]={__name__!=""}' \
        | python3 -c 'import json,sys; print(sum(len(json.loads(l)["values"]) for l in sys.stdin if l.strip()))')
    kill -INT "$VM_PID"; wait "$VM_PID" 2>/dev/null || true; VM_PID=""
    vm=$(bytes "$vmdir/data" "$vmdir/indexdb")

    promdir="$WORK/prom-$name"
    prom=-1
    case " ${PROM_DATASETS:-cents prometheus} " in
    *" $name "*)
        timeout 900 promtool tsdb create-blocks-from openmetrics "$WORK/in/$name.om" "$promdir" >/dev/null
        prom=$(bytes "$promdir")
        ;;
    esac

    python3 - "$name" "$points" "$stored" "$gorilla" "$ours" "$vm_points" "$vm" "$prom" <<'EOF'
import json, sys
name, points, stored, gorilla, ours, vm_points, vm, prom = sys.argv[1], *map(int, sys.argv[2:])
print(json.dumps({
    "dataset": name, "points": points,
    "ours_points_stored": stored, "ours_gorilla_bytes_per_point": round(gorilla / stored, 3),
    "ours_compacted_bytes_per_point": round(ours / stored, 3),
    "vm_points_stored": vm_points, "vm_bytes_per_point_stored": round(vm / vm_points, 3),
    "vm_bytes_per_point": round(vm / points, 3),
    "prometheus_bytes_per_point": round(prom / points, 3) if prom >= 0 else None,
    "vm_over_ours": round((vm / points) / (ours / stored), 2),
}))
EOF
done <"$WORK/counts"
