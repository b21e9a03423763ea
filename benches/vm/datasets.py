#!/usr/bin/env python3
"""Writes the datasets of benches/vm/disk_bytes.sh, each twice: Prometheus text exposition
with millisecond timestamps (`<name>.prom`, for `gorilla-tsdb import -f prometheus` and
VictoriaMetrics' /api/v1/import/prometheus) and OpenMetrics with second timestamps
(`<name>.om`, for `promtool tsdb create-blocks-from openmetrics`).

    python3 benches/vm/datasets.py OUT_DIR [SHARED_DATA_DIR] [PROMTOOL_DUMP]

- `cents`: 1,000 series x 10,000 points, 10 s apart, a random walk in cents (two-decimal
  gauges, the values of the query comparison);
- `nab` and `alp`: every recording of ../shared/data (nab's own timestamps; alp's columns on a
  10 s grid), one series a file, values as recorded;
- `prometheus`: a real Prometheus self-scrape, from `promtool tsdb dump` output (given as
  the third argument), NaN samples kept.
"""
import csv
import datetime
import math
import os
import re
import sys

T0 = 1_700_000_000_000


class Out:
    def __init__(self, out_dir, name):
        self.prom = open(os.path.join(out_dir, f"{name}.prom"), "w", buffering=1 << 20)
        self.om = open(os.path.join(out_dir, f"{name}.om"), "w", buffering=1 << 20)
        self.points = 0

    def write(self, series, ts_ms, value):
        self.prom.write(f"{series} {value} {ts_ms}\n")
        self.om.write(f"{series} {value} {ts_ms // 1000}.{ts_ms % 1000:03d}\n")
        self.points += 1

    def close(self):
        self.om.write("# EOF\n")
        self.prom.close()
        self.om.close()
        return self.points


def cents(out_dir):
    out = Out(out_dir, "cents")
    state = 0x9E3779B97F4A7C15
    for s in range(1000):
        c = 5_000 + (s % 100) * 10
        name = f'cents_gauge{{series="{s:04d}",job="bench"}}'
        for i in range(10_000):
            state ^= (state << 13) & 0xFFFFFFFFFFFFFFFF
            state ^= state >> 7
            state ^= (state << 17) & 0xFFFFFFFFFFFFFFFF
            c = max(0, c + state % 201 - 100)
            out.write(name, T0 + i * 10_000, f"{c // 100}.{c % 100:02d}")
    return out.close()


def nab(out_dir, shared):
    out = Out(out_dir, "nab")
    root = os.path.join(shared, "nab")
    for group in sorted(os.listdir(root)):
        folder = os.path.join(root, group)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".csv"):
                continue
            series = f'nab{{set="{group}",file="{name[:-4]}"}}'
            with open(os.path.join(folder, name)) as f:
                for row in csv.DictReader(f):
                    t = datetime.datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S")
                    ms = int(t.replace(tzinfo=datetime.timezone.utc).timestamp()) * 1000
                    out.write(series, ms, row["value"])
    return out.close()


def alp(out_dir, shared):
    out = Out(out_dir, "alp")
    root = os.path.join(shared, "alp")
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith("LICENSE") or name.startswith("README") or not os.path.isfile(path):
            continue
        series = f'alp{{file="{os.path.splitext(name)[0]}"}}'
        with open(path) as f:
            for i, line in enumerate(l.strip() for l in f):
                if line:
                    out.write(series, T0 + i * 10_000, line)
    return out.close()


DUMP_LINE = re.compile(r"^(\{.*\}) (\S+) (-?\d+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def prometheus(out_dir, dump):
    """`promtool tsdb dump` prints `{__name__="m", k="v"} value timestamp_ms` a line."""
    out = Out(out_dir, "prometheus")
    with open(dump) as f:
        for line in f:
            m = DUMP_LINE.match(line.strip())
            if not m:
                continue
            labels = dict(LABEL.findall(m.group(1)))
            name = labels.pop("__name__", None)
            if not name:
                continue
            inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            value = m.group(2)
            if value.lower() == "nan" or (value not in ("+Inf", "-Inf") and math.isnan(float(value))):
                value = "NaN"
            out.write(f"{name}{{{inner}}}", int(m.group(3)), value)
    return out.close()


def main():
    out_dir = sys.argv[1]
    shared = sys.argv[2] if len(sys.argv) > 2 else ""
    dump = sys.argv[3] if len(sys.argv) > 3 else ""
    os.makedirs(out_dir, exist_ok=True)
    counts = {"cents": cents(out_dir)}
    if shared and os.path.isdir(os.path.join(shared, "nab")):
        counts["nab"] = nab(out_dir, shared)
    if shared and os.path.isdir(os.path.join(shared, "alp")):
        counts["alp"] = alp(out_dir, shared)
    if dump and os.path.isfile(dump):
        counts["prometheus"] = prometheus(out_dir, dump)
    for name, points in counts.items():
        print(f"{name} {points}")


if __name__ == "__main__":
    main()
