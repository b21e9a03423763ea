//! PromQL text, the path users type, on the dataset of issue 6: 1,000 series x 10,000 points
//! (10 s spacing, gauge values with two decimals, labels `host` (1,000 values) and `region`
//! (10 values)).
//!
//! - Q1 `avg_over_time(bench_gauge{host="h1"}[1h])`, instant, at the end of the data;
//! - Q2 `sum by (region) (bench_gauge)` over the last hour at a 60 s step;
//! - Q3 `sum by (region) (avg_over_time(bench_gauge[5m]))` over the whole range at 300 s;
//! - Q4 `sum(count_over_time(bench_gauge[30h]))`, instant (every point);
//! - Q1 from 8 concurrent tasks for 3 s: queries per second and p99.
//!
//! The samples sit 5 s off the step grid, so that no window edge falls on a sample:
//! Prometheus 2.42 (which this engine follows) counts a sample on a window's left edge,
//! VictoriaMetrics does not, and the answers are compared.
//!
//! First prints one JSON document (latencies by a plain loop, and the answers, which
//! `benches/vm/compare.sh` compares with VictoriaMetrics'), then runs the criterion groups.
//!
//! ```text
//! cargo bench -p tsdb-benches --bench query
//! ```
//!
//! Environment: `QUERY_BENCH_JSON_ONLY=1` skips criterion; `QUERY_BENCH_VM_IMPORT=<path>`
//! also writes the dataset as VictoriaMetrics' JSON-lines import format;
//! `QUERY_BENCH_OUT=<path>` writes the JSON document there too; `QUERY_BENCH_KEEP_DIR=<path>`
//! loads the data into that directory and keeps it (closed) for `gorilla-tsdb serve`; `QUERY_BENCH_ONLY=Q3` times
//! that query alone, `QUERY_BENCH_RUNS=N` runs each query N times (both for a profile);
//! `QUERY_BENCH_COLD=1` compacts everything into the cold tier (pco chunks of 16,384 points)
//! before timing, for the same queries over cold data; `QUERY_BENCH_DURING_COMPACTION=1`
//! instead times Q2 and ingestion (a writer adding a point to every series every 5 ms, 200,000
//! points/s, and the latency of those writes) before and while the throttled background
//! compaction rewrites the whole dataset; `QUERY_BENCH_TIERS=1` also builds rollup tiers of
//! 5 minutes and 1 hour while compacting, and Q3 (on the 5 minute grid) is answered from the
//! 5 minute tier; `QUERY_BENCH_GORILLA=1` keeps every hot chunk in the Gorilla codec (the
//! decimal values are otherwise flushed by the bit-packed one).

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use gorilla_tsdb::promql::{Engine, EngineOptions, Value};
use gorilla_tsdb::{DatabaseConfig, Labels, TimeSeriesDB, TimeSeriesDBBuilder, WalDurability};

const SERIES: usize = 1_000;
const POINTS: usize = 10_000;
const SPACING_MS: i64 = 10_000;
/// A whole hour: the step grids start here.
const HOUR: i64 = 1_699_999_200_000;
/// First sample: 5 s after the hour (off every step grid).
const T0: i64 = HOUR + 5_000;
const T_LAST: i64 = T0 + (POINTS as i64 - 1) * SPACING_MS;
/// Instant queries run here: just after the last sample, on the 10 s grid.
const EVAL: i64 = T_LAST + 5_000;
const METRIC: &str = "bench_gauge";

/// Values of series `s`: a random walk in cents (two decimals), deterministic per series.
fn series_values(s: usize) -> Vec<f64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (s as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let mut cents: i64 = 5_000 + (s as i64 % 100) * 10;
    (0..POINTS)
        .map(|_| {
            // splitmix64
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            cents = (cents + (z % 201) as i64 - 100).max(0);
            cents as f64 / 100.0
        })
        .collect()
}

fn labels(s: usize) -> Labels {
    Labels::new(
        METRIC,
        [
            ("host", format!("h{s}")),
            ("region", format!("r{}", s % 10)),
        ],
    )
    .expect("valid labels")
}

/// The last whole minute of the data.
const Q2_END: i64 = HOUR + (T_LAST - HOUR) / 60_000 * 60_000;
/// Q3's range: from the hour to the last whole 300 s.
const Q3_END: i64 = HOUR + (T_LAST - HOUR) / 300_000 * 300_000;

/// One query: PromQL text, and its time(s): `(start, end, step)`, `step == 0` for instant.
struct Query {
    text: String,
    start: i64,
    end: i64,
    step: i64,
}

fn q1(host: usize) -> Query {
    Query {
        text: format!("avg_over_time({METRIC}{{host=\"h{host}\"}}[1h])"),
        start: EVAL,
        end: EVAL,
        step: 0,
    }
}

fn q2() -> Query {
    Query {
        text: format!("sum by (region) ({METRIC})"),
        start: Q2_END - 3_600_000,
        end: Q2_END,
        step: 60_000,
    }
}

fn q3() -> Query {
    Query {
        text: format!("sum by (region) (avg_over_time({METRIC}[5m]))"),
        start: HOUR,
        end: Q3_END,
        step: 300_000,
    }
}

fn q4() -> Query {
    Query {
        text: format!("sum(count_over_time({METRIC}[30h]))"),
        start: EVAL,
        end: EVAL,
        step: 0,
    }
}

/// An answer as series of `(timestamp ms, value)`.
type Answer = Vec<(Vec<(String, String)>, Vec<(i64, f64)>)>;

async fn run(engine: &Engine<Arc<TimeSeriesDB>>, q: &Query) -> Answer {
    let owned = |l: &gorilla_tsdb::promql::LabelSet| {
        l.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    if q.step == 0 {
        match engine.instant_query(&q.text, q.start).await.expect("query") {
            Value::Vector(v) => v
                .iter()
                .map(|s| (owned(&s.metric), vec![(s.timestamp, s.value)]))
                .collect(),
            other => panic!("{}: not a vector: {other}", q.text),
        }
    } else {
        engine
            .range_query(&q.text, q.start, q.end, q.step)
            .await
            .expect("query")
            .iter()
            .map(|s| (owned(&s.metric), s.points.clone()))
            .collect()
    }
}

/// The bench's configuration: every chunk cold (their timestamps are in 2023), compacted by
/// the background service every `compaction_interval` or only when asked.
fn bench_config(dir: &std::path::Path, compaction_interval: Option<Duration>) -> DatabaseConfig {
    DatabaseConfig {
        data_dir: dir.to_path_buf(),
        wal_durability: WalDurability::Never,
        flush_interval: Duration::from_secs(24 * 3600),
        max_buffered_points: 200_000_000,
        compaction_interval,
        cold_after: Duration::ZERO,
        pack_decimal_chunks: std::env::var_os("QUERY_BENCH_GORILLA").is_none(),
        ..Default::default()
    }
}

async fn load(
    dir: &std::path::Path,
    vm_import: Option<&str>,
    cold: bool,
    tiers: bool,
) -> (TimeSeriesDB, f64) {
    let tier = |minutes: u64| gorilla_tsdb::RollupTier {
        resolution: Duration::from_secs(60 * minutes),
        retention: None,
    };
    let db = TimeSeriesDBBuilder::new()
        // Compaction only when asked (below), never during the timings.
        .with_config(DatabaseConfig {
            rollup_tiers: if tiers {
                vec![tier(5), tier(60)]
            } else {
                Vec::new()
            },
            ..bench_config(dir, None)
        })
        .build()
        .await
        .expect("database opens");
    let mut vm = vm_import.map(|p| {
        std::io::BufWriter::new(std::fs::File::create(p).expect("create the VM import file"))
    });
    let timestamps: Vec<i64> = (0..POINTS as i64).map(|i| T0 + i * SPACING_MS).collect();
    let started = Instant::now();
    for s in 0..SERIES {
        let values = series_values(s);
        let points: Vec<(i64, f64)> = timestamps
            .iter()
            .copied()
            .zip(values.iter().copied())
            .collect();
        db.insert_series(&labels(s), &points).await.expect("insert");
        if let Some(out) = vm.as_mut() {
            let vs: Vec<String> = values.iter().map(|v| format!("{v}")).collect();
            let ts: Vec<String> = timestamps.iter().map(|t| t.to_string()).collect();
            writeln!(
                out,
                r#"{{"metric":{{"__name__":"{METRIC}","host":"h{s}","region":"r{}"}},"values":[{}],"timestamps":[{}]}}"#,
                s % 10,
                vs.join(","),
                ts.join(",")
            )
            .expect("write the VM import file");
        }
    }
    db.flush().await.expect("flush");
    if cold || tiers {
        let started = Instant::now();
        let stats = db.compact().await.expect("compact");
        eprintln!(
            "compacted in {:.1} s: {stats:?}; rollup tiers: {:?}",
            started.elapsed().as_secs_f64(),
            db.stats().rollup
        );
        let chunks = db.storage().list_chunks().await.expect("list chunks");
        let bytes = |rollup: bool| -> u64 {
            chunks
                .iter()
                .filter(|c| (c.codec == gorilla_tsdb::CodecId::ROLLUP) == rollup)
                .map(|c| c.location.length)
                .sum()
        };
        eprintln!(
            "chunk bytes: raw {} ({:.3} a point), rollup tiers {} in {} chunks",
            bytes(false),
            bytes(false) as f64 / (SERIES * POINTS) as f64,
            bytes(true),
            chunks
                .iter()
                .filter(|c| c.codec == gorilla_tsdb::CodecId::ROLLUP)
                .count()
        );
    }
    if let Some(mut out) = vm {
        out.flush().expect("write the VM import file");
    }
    (db, started.elapsed().as_secs_f64())
}

fn answer_json(r: &Answer) -> String {
    let series: Vec<String> = r
        .iter()
        .map(|(labels, points)| {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("\"{k}\":\"{v}\""))
                .collect();
            let values: Vec<String> = points.iter().map(|(t, v)| format!("[{t},{v}]")).collect();
            format!(
                "{{\"labels\":{{{}}},\"values\":[{}]}}",
                labels.join(","),
                values.join(",")
            )
        })
        .collect();
    format!("[{}]", series.join(","))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Builds the query of run `i`.
type MakeQuery = dyn Fn(usize) -> Query;

/// Runs `q` until `runs` runs or `budget` elapsed (after warm-up); latencies in ms.
fn time_query(
    rt: &tokio::runtime::Runtime,
    engine: &Engine<Arc<TimeSeriesDB>>,
    make: &MakeQuery,
    runs: usize,
    budget: Duration,
) -> (Vec<f64>, Answer) {
    let first = rt.block_on(run(engine, &make(1)));
    for i in 0..3 {
        rt.block_on(run(engine, &make(i)));
    }
    let mut lat = Vec::with_capacity(runs);
    let started = Instant::now();
    for i in 0..runs {
        let q = make(i % SERIES);
        let t = Instant::now();
        let r = rt.block_on(run(engine, &q));
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(r);
        if started.elapsed() > budget {
            break;
        }
    }
    lat.sort_by(f64::total_cmp);
    (lat, first)
}

/// Q1 from `tasks` concurrent tasks for `secs`: queries/s and p99 (ms).
fn concurrent_q1(
    rt: &tokio::runtime::Runtime,
    engine: &Arc<Engine<Arc<TimeSeriesDB>>>,
    tasks: usize,
    secs: f64,
) -> (f64, f64) {
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|k| {
            let engine = engine.clone();
            rt.spawn(async move {
                let mut lat = Vec::new();
                let mut i = k;
                while started.elapsed().as_secs_f64() < secs {
                    let t = Instant::now();
                    let r = run(&engine, &q1(i % SERIES)).await;
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                    std::hint::black_box(r);
                    i += tasks;
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(rt.block_on(h).expect("task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    (all.len() as f64 / elapsed, percentile(&all, 0.99))
}

/// Q2's median latency, a paced writer's points/s and its p99 write latency (ms) for `secs`
/// (or, with `until_compacted`, until the first compaction round is done), with `db`
/// serving both; and the writer's next timestamp.
fn q2_and_ingest(
    rt: &tokio::runtime::Runtime,
    db: &Arc<TimeSeriesDB>,
    from: i64,
    secs: f64,
    until_compacted: bool,
) -> (f64, f64, f64, i64) {
    let engine = Engine::new(db.clone(), EngineOptions::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        rt.spawn(async move {
            let ids: Vec<_> = (0..SERIES).map(|s| labels(s).series_id()).collect();
            let mut t = from;
            let mut points = 0u64;
            let mut lat = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tick.tick().await;
                let batch: Vec<gorilla_tsdb::DataPoint> = ids
                    .iter()
                    .map(|&id| gorilla_tsdb::DataPoint::new(id, t, 1.0))
                    .collect();
                let began = Instant::now();
                db.insert_batch(&batch).await.expect("insert");
                lat.push(began.elapsed().as_secs_f64() * 1e3);
                points += batch.len() as u64;
                t += 1;
            }
            lat.sort_by(f64::total_cmp);
            (points, percentile(&lat, 0.99), t)
        })
    };
    let started = Instant::now();
    let mut lat = Vec::new();
    loop {
        let done = if until_compacted {
            db.stats().compaction_rounds > 0
        } else {
            started.elapsed().as_secs_f64() >= secs
        };
        if done || started.elapsed().as_secs_f64() > 600.0 {
            break;
        }
        let t = Instant::now();
        std::hint::black_box(rt.block_on(run(&engine, &q2())));
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let (points, write_p99, next) = rt.block_on(writer).expect("writer");
    lat.sort_by(f64::total_cmp);
    (
        percentile(&lat, 0.5),
        points as f64 / elapsed,
        write_p99,
        next,
    )
}

/// `QUERY_BENCH_DURING_COMPACTION=1`: Q2 and ingestion before and during compaction.
fn during_compaction(rt: &tokio::runtime::Runtime, dir: &std::path::Path) {
    let (db, _) = rt.block_on(load(dir, None, false, false));
    let db = Arc::new(db);
    let (q2_before, ingest_before, p99_before, next) =
        q2_and_ingest(rt, &db, T_LAST + 10_000, 10.0, false);
    let db = Arc::into_inner(db).expect("one handle");
    rt.block_on(db.close()).expect("close");
    let db = TimeSeriesDBBuilder::new()
        .with_config(bench_config(dir, Some(Duration::from_millis(1))))
        .build();
    let db = Arc::new(rt.block_on(db).expect("reopen"));
    let started = Instant::now();
    let (q2_during, ingest_during, p99_during, _) = q2_and_ingest(rt, &db, next, 0.0, true);
    let compaction_s = started.elapsed().as_secs_f64();
    let stats = db.stats().compaction;
    eprintln!(
        "before: Q2 median {q2_before:.2} ms, {ingest_before:.0} points/s (write p99 {p99_before:.2} ms); during a {compaction_s:.1} s compaction ({} chunks into {}): Q2 median {q2_during:.2} ms, {ingest_during:.0} points/s (write p99 {p99_during:.2} ms)",
        stats.chunks_replaced, stats.chunks_written
    );
    println!(
        "{{\"bench\":\"during_compaction\",\"q2_median_ms_before\":{q2_before:.3},\"q2_median_ms_during\":{q2_during:.3},\"ingest_points_per_s_before\":{ingest_before:.0},\"ingest_points_per_s_during\":{ingest_during:.0},\"write_p99_ms_before\":{p99_before:.3},\"write_p99_ms_during\":{p99_during:.3},\"compaction_s\":{compaction_s:.2},\"chunks_replaced\":{}}}",
        stats.chunks_replaced
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    // `QUERY_BENCH_KEEP_DIR=<path>` loads the data there and keeps it (closed) for a server.
    let keep = std::env::var_os("QUERY_BENCH_KEEP_DIR").map(std::path::PathBuf::from);
    let data_dir = keep.clone().unwrap_or_else(|| dir.path().to_path_buf());
    if std::env::var("QUERY_BENCH_DURING_COMPACTION").is_ok_and(|v| v == "1") {
        during_compaction(&rt, &data_dir);
        return;
    }
    let vm_import = std::env::var("QUERY_BENCH_VM_IMPORT").ok();
    let cold = std::env::var("QUERY_BENCH_COLD").is_ok_and(|v| v == "1");
    let tiers = std::env::var("QUERY_BENCH_TIERS").is_ok_and(|v| v == "1");
    let (db, load_s) = rt.block_on(load(&data_dir, vm_import.as_deref(), cold, tiers));
    let db = Arc::new(db);
    let stats = db.stats();
    let engine = Arc::new(Engine::new(db.clone(), EngineOptions::default()));
    eprintln!(
        "loaded {} points of {SERIES} series in {load_s:.1} s ({} chunks)",
        SERIES * POINTS,
        stats.chunks_written
    );

    let budget = Duration::from_secs(10);
    let queries: [(&str, &MakeQuery, usize); 4] = [
        ("Q1", &q1, 2_000),
        ("Q2", &|_| q2(), 50),
        ("Q3", &|_| q3(), 20),
        ("Q4", &|_| q4(), 20),
    ];
    let mut parts = Vec::new();
    // `QUERY_BENCH_ONLY=Q3` times one query alone (for a profile).
    let only = std::env::var("QUERY_BENCH_ONLY").ok();
    // `QUERY_BENCH_RUNS=200` runs each query that many times (for a profile).
    let runs_override: Option<usize> = std::env::var("QUERY_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok());
    for (name, make, runs) in queries {
        let runs = runs_override.unwrap_or(runs);
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let (lat, answer) = time_query(&rt, &engine, make, runs, budget);
        let median = percentile(&lat, 0.5);
        let p99 = percentile(&lat, 0.99);
        eprintln!(
            "{name}: median {median:.3} ms, p99 {p99:.3} ms over {} runs",
            lat.len(),
        );
        parts.push(format!(
            "\"{name}\":{{\"query\":{:?},\"runs\":{},\"median_ms\":{median},\"p99_ms\":{p99},\"min_ms\":{},\"answer\":{}}}",
            make(1).text,
            lat.len(),
            lat[0],
            answer_json(&answer)
        ));
    }
    let (qps, p99) = if only.is_some() {
        (0.0, 0.0)
    } else {
        concurrent_q1(&rt, &engine, 8, 3.0)
    };
    eprintln!("Q1 from 8 tasks: {qps:.0} queries/s, p99 {p99:.3} ms");
    parts.push(format!(
        "\"Q1_concurrent\":{{\"tasks\":8,\"queries_per_s\":{qps},\"p99_ms\":{p99}}}"
    ));
    let doc = format!(
        "{{\"tier\":\"{}\",\"series\":{SERIES},\"points\":{},\"eval\":{EVAL},\"q2_end\":{Q2_END},\"q3_start\":{HOUR},\"q3_end\":{Q3_END},\"load_s\":{load_s},{}}}",
        if tiers {
            "tiers"
        } else if cold {
            "cold"
        } else {
            "hot"
        },
        SERIES * POINTS,
        parts.join(",")
    );
    println!("{doc}");
    if let Ok(path) = std::env::var("QUERY_BENCH_OUT") {
        std::fs::write(&path, &doc).expect("write QUERY_BENCH_OUT");
    }
    if keep.is_some() {
        rt.block_on(db.close()).expect("close the kept database");
        return;
    }
    if std::env::var("QUERY_BENCH_JSON_ONLY").is_ok_and(|v| v == "1") {
        return;
    }

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("query");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    let mut host = 0usize;
    g.bench_function("Q1_avg_1h_one_series", |b| {
        b.iter(|| {
            host = (host + 1) % SERIES;
            rt.block_on(run(&engine, &q1(host)))
        })
    });
    g.bench_function("Q2_sum_by_region_1h_60s", |b| {
        b.iter(|| rt.block_on(run(&engine, &q2())))
    });
    g.bench_function("Q3_sum_by_region_avg5m_all_300s", |b| {
        b.iter(|| rt.block_on(run(&engine, &q3())))
    });
    g.bench_function("Q4_count_all_points", |b| {
        b.iter(|| rt.block_on(run(&engine, &q4())))
    });
    g.finish();
    c.final_summary();
}
