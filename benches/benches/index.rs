//! The two `TimeIndex` engines side by side: `add_chunk` throughput, `query_chunks` latency
//! (p50/p99 from an own timing loop, printed as JSON lines), series lookup with regex
//! matchers over 100K series, and the memory index's bytes per series and per chunk.
//!
//! ```text
//! cargo bench -p tsdb-benches --bench index
//! ```
//!
//! The Redis half starts its own `redis-server` on a loopback TCP port
//! (`tsdb_index_redis::testing`); without the binary it is skipped with a notice. Every JSON
//! line starts with `{"bench":"index"` so it can be grepped out of criterion's output.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use tokio::runtime::Runtime;
use tsdb_core::{
    ChunkLocation, ChunkReference, CodecId, LabelMatcher, Labels, MatchOp, SeriesId, TimeIndex,
    TimeRange,
};
use tsdb_index_memory::MemoryTimeIndex;
use tsdb_index_redis::testing::RedisServer;
use tsdb_index_redis::{RedisIndexConfig, RedisTimeIndex};

/// SplitMix64: a small deterministic generator, so runs are comparable.
struct SplitMix64(u64);

impl SplitMix64 {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

/// Series registered in each index (the lookup benchmarks run over all of them).
const SERIES: u64 = 100_000;
/// Chunks per series in the memory index (1M chunk references in all).
const MEMORY_CHUNKS_PER_SERIES: u64 = 10;
/// Series with chunks in the Redis index, and chunks per such series.
const REDIS_CHUNK_SERIES: u64 = 1_000;
const REDIS_CHUNKS_PER_SERIES: u64 = 100;
/// One chunk spans two hours of milliseconds.
const CHUNK_SPAN: i64 = 7_200_000;
const T0: i64 = 1_700_000_000_000;
/// Requests kept in flight when loading Redis.
const IN_FLIGHT: usize = 64;

fn series_labels(i: u64) -> Labels {
    let env = ["prod", "staging", "dev"][(i % 3) as usize];
    Labels::new(
        &format!("metric_{}", i % 10),
        [
            ("instance", format!("host-{i}")),
            ("job", format!("job-{}", i % 50)),
            ("env", env.to_owned()),
        ],
    )
    .expect("valid labels")
}

fn chunk(series: SeriesId, j: u64) -> ChunkReference {
    let start = T0 + j as i64 * CHUNK_SPAN;
    ChunkReference {
        series_id: series,
        location: ChunkLocation {
            segment: j,
            offset: series.0 % 1_000_000,
            length: 1_000,
        },
        start_time: start,
        end_time: start + CHUNK_SPAN - 1,
        point_count: 720,
        codec: CodecId::GORILLA,
    }
}

/// A query of about one chunk's span at a random place among `chunks` chunks.
fn random_range(rng: &mut SplitMix64, chunks: u64) -> TimeRange {
    let start = T0 + rng.below(chunks * CHUNK_SPAN as u64) as i64;
    TimeRange {
        start,
        end: start + CHUNK_SPAN / 2,
    }
}

/// The matchers of the lookup benchmark, by name.
fn lookups() -> Vec<(&'static str, Vec<LabelMatcher>)> {
    let re = |n: &str, op, v: &str| LabelMatcher::new(n, op, v).expect("regex compiles");
    vec![
        (
            "instance=~host-1.*",
            vec![re("instance", MatchOp::RegexMatch, "host-1.*")],
        ),
        (
            "instance=~.*-99.*",
            vec![re("instance", MatchOp::RegexMatch, ".*-99.*")],
        ),
        (
            "name=metric_3,env=~prod|staging",
            vec![
                LabelMatcher::metric("metric_3"),
                re("env", MatchOp::RegexMatch, "prod|staging"),
            ],
        ),
        (
            "job=~job-(1|2),instance!~host-1.*",
            vec![
                re("job", MatchOp::RegexMatch, "job-(1|2)"),
                re("instance", MatchOp::RegexNoMatch, "host-1.*"),
            ],
        ),
        ("job=job-7", vec![LabelMatcher::equal("job", "job-7")]),
        (
            "instance=~host-1|host-22|host-333",
            vec![re(
                "instance",
                MatchOp::RegexMatch,
                "host-1|host-22|host-333",
            )],
        ),
    ]
}

/// Polls a future that completes without waiting (the memory index's) to its output.
fn ready<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn percentiles(mut ns: Vec<u64>) -> (u64, u64, u64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.99), ns[ns.len() - 1])
}

fn report_latency(engine: &str, what: &str, ns: Vec<u64>, extra: &str) {
    let n = ns.len();
    let (p50, p99, max) = percentiles(ns);
    println!(
        r#"{{"bench":"index","engine":"{engine}","op":"{what}","samples":{n},"p50_ns":{p50},"p99_ns":{p99},"max_ns":{max}{extra}}}"#
    );
}

fn report_rate(engine: &str, what: &str, ops: u64, elapsed: Duration) {
    println!(
        r#"{{"bench":"index","engine":"{engine}","op":"{what}","ops":{ops},"seconds":{:.3},"ops_per_s":{:.0}}}"#,
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64()
    );
}

/// Builds the memory index, measuring its memory and add rate; prints percentiles.
fn memory_half(c: &mut Criterion) {
    let rss0 = tsdb_benches::rss_bytes("self");
    let index = MemoryTimeIndex::new();
    let started = Instant::now();
    for i in 0..SERIES {
        let l = series_labels(i);
        ready(index.register_series(l.series_id(), &l)).expect("register");
    }
    report_rate("memory", "register_series", SERIES, started.elapsed());
    let rss1 = tsdb_benches::rss_bytes("self");
    let ids: Vec<SeriesId> = (0..SERIES).map(|i| series_labels(i).series_id()).collect();
    let started = Instant::now();
    for j in 0..MEMORY_CHUNKS_PER_SERIES {
        for id in &ids {
            ready(index.add_chunk(&chunk(*id, j))).expect("add_chunk");
        }
    }
    let chunks = SERIES * MEMORY_CHUNKS_PER_SERIES;
    report_rate("memory", "add_chunk", chunks, started.elapsed());
    let rss2 = tsdb_benches::rss_bytes("self");
    if let (Some(a), Some(b), Some(c)) = (rss0, rss1, rss2) {
        println!(
            r#"{{"bench":"index","engine":"memory","op":"memory","series":{SERIES},"chunks":{chunks},"bytes_per_series":{},"bytes_per_chunk":{},"note":"RSS growth; series include 4 labels each"}}"#,
            (b.saturating_sub(a)) / SERIES,
            (c.saturating_sub(b)) / chunks
        );
    }

    let mut rng = SplitMix64(1);
    let mut ns = Vec::with_capacity(100_000);
    let mut found = 0usize;
    for _ in 0..100_000 {
        let id = ids[rng.below(SERIES) as usize];
        let range = random_range(&mut rng, MEMORY_CHUNKS_PER_SERIES);
        let t = Instant::now();
        let got = ready(index.query_chunks(id, range)).expect("query");
        ns.push(t.elapsed().as_nanos() as u64);
        found += got.len();
    }
    report_latency(
        "memory",
        "query_chunks",
        ns,
        &format!(r#","chunks_returned":{found}"#),
    );
    for (name, matchers) in lookups() {
        let mut ns = Vec::new();
        let mut n = 0;
        for _ in 0..30 {
            let t = Instant::now();
            n = ready(index.find_series(&matchers)).expect("find").len();
            ns.push(t.elapsed().as_nanos() as u64);
        }
        report_latency(
            "memory",
            &format!("find_series {name}"),
            ns,
            &format!(r#","series_found":{n}"#),
        );
    }

    // Concurrency: the same queries from 1 and 2 threads, then 2 threads while a third adds
    // chunks (sharded locks: readers share, writers lock one shard of 64).
    let queries_per_thread = 200_000u64;
    let index = &index;
    let ids = &ids;
    let run_queries = |seed: u64| {
        let mut rng = SplitMix64(seed);
        let mut found = 0usize;
        for _ in 0..queries_per_thread {
            let id = ids[rng.below(SERIES) as usize];
            let range = random_range(&mut rng, MEMORY_CHUNKS_PER_SERIES);
            found += ready(index.query_chunks(id, range)).expect("query").len();
        }
        black_box(found);
    };
    for threads in [1u64, 2] {
        let started = Instant::now();
        std::thread::scope(|s| {
            for t in 0..threads {
                s.spawn(move || run_queries(10 + t));
            }
        });
        report_rate(
            "memory",
            &format!("query_chunks ({threads} threads)"),
            threads * queries_per_thread,
            started.elapsed(),
        );
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let added = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut added = 0u64;
            let mut j = MEMORY_CHUNKS_PER_SERIES;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for id in ids.iter().take(1_000) {
                    ready(index.add_chunk(&chunk(*id, j))).expect("add_chunk");
                    added += 1;
                }
                j += 1;
            }
            added
        });
        let readers: Vec<_> = (0..2u64)
            .map(|t| s.spawn(move || run_queries(20 + t)))
            .collect();
        for r in readers {
            r.join().expect("reader thread");
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().expect("writer thread")
    });
    let elapsed = started.elapsed();
    report_rate(
        "memory",
        "query_chunks (2 threads, 1 writer adding)",
        2 * queries_per_thread,
        elapsed,
    );
    report_rate(
        "memory",
        "add_chunk (writer beside 2 query threads)",
        added,
        elapsed,
    );

    let mut g = c.benchmark_group("index/memory");
    g.throughput(Throughput::Elements(1));
    let mut rng = SplitMix64(2);
    g.bench_function("query_chunks", |b| {
        b.iter(|| {
            let id = ids[rng.below(SERIES) as usize];
            let range = random_range(&mut rng, MEMORY_CHUNKS_PER_SERIES);
            black_box(ready(index.query_chunks(id, range)).expect("query"))
        })
    });
    let fresh = MemoryTimeIndex::new();
    let l = series_labels(0);
    ready(fresh.register_series(l.series_id(), &l)).expect("register");
    let mut j = 0u64;
    g.bench_function("add_chunk (append)", |b| {
        b.iter(|| {
            j += 1;
            ready(fresh.add_chunk(&chunk(l.series_id(), j))).expect("add");
        })
    });
    for (name, matchers) in lookups() {
        g.bench_with_input(BenchmarkId::new("find_series", name), &matchers, |b, m| {
            b.iter(|| black_box(ready(index.find_series(m)).expect("find")))
        });
    }
    g.finish();
}

fn redis_half(c: &mut Criterion, rt: &Runtime) {
    let server = match RedisServer::start_tcp() {
        Ok(Some(s)) => s,
        Ok(None) => return, // notice printed by the harness
        Err(e) => panic!("redis-server did not start: {e}"),
    };
    let index = Arc::new(
        rt.block_on(RedisTimeIndex::connect(
            RedisIndexConfig::new(server.url())
                .with_prefix("bench")
                .with_timeout(Duration::from_secs(10)),
        ))
        .expect("connect"),
    );
    let ids: Vec<SeriesId> = (0..SERIES).map(|i| series_labels(i).series_id()).collect();

    // Register every series, IN_FLIGHT at a time.
    let started = Instant::now();
    rt.block_on(async {
        let mut set: tokio::task::JoinSet<tsdb_core::Result<()>> = tokio::task::JoinSet::new();
        for i in 0..SERIES {
            if set.len() >= IN_FLIGHT {
                set.join_next()
                    .await
                    .expect("a task")
                    .expect("task")
                    .expect("register");
            }
            let index = Arc::clone(&index);
            set.spawn(async move {
                let l = series_labels(i);
                index.register_series(l.series_id(), &l).await
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("task").expect("register");
        }
    });
    report_rate(
        "redis",
        &format!("register_series ({IN_FLIGHT} in flight)"),
        SERIES,
        started.elapsed(),
    );

    // add_chunk: one at a time (latency-bound), then IN_FLIGHT at a time.
    let sequential = 5_000u64;
    let mut ns = Vec::with_capacity(sequential as usize);
    let started = Instant::now();
    rt.block_on(async {
        for k in 0..sequential {
            let id = ids[(k % REDIS_CHUNK_SERIES) as usize];
            let t = Instant::now();
            index
                .add_chunk(&chunk(id, k / REDIS_CHUNK_SERIES))
                .await
                .expect("add_chunk");
            ns.push(t.elapsed().as_nanos() as u64);
        }
    });
    report_rate(
        "redis",
        "add_chunk (1 in flight)",
        sequential,
        started.elapsed(),
    );
    report_latency("redis", "add_chunk", ns, "");
    let total = REDIS_CHUNK_SERIES * REDIS_CHUNKS_PER_SERIES;
    let started = Instant::now();
    rt.block_on(async {
        let mut set: tokio::task::JoinSet<tsdb_core::Result<()>> = tokio::task::JoinSet::new();
        for k in sequential..total {
            if set.len() >= IN_FLIGHT {
                set.join_next()
                    .await
                    .expect("a task")
                    .expect("task")
                    .expect("add_chunk");
            }
            let index = Arc::clone(&index);
            let id = ids[(k % REDIS_CHUNK_SERIES) as usize];
            set.spawn(async move { index.add_chunk(&chunk(id, k / REDIS_CHUNK_SERIES)).await });
        }
        while let Some(r) = set.join_next().await {
            r.expect("task").expect("add_chunk");
        }
    });
    report_rate(
        "redis",
        &format!("add_chunk ({IN_FLIGHT} in flight)"),
        total - sequential,
        started.elapsed(),
    );

    let mut rng = SplitMix64(1);
    let mut ns = Vec::with_capacity(10_000);
    let mut found = 0usize;
    rt.block_on(async {
        for _ in 0..10_000 {
            let id = ids[rng.below(REDIS_CHUNK_SERIES) as usize];
            let range = random_range(&mut rng, REDIS_CHUNKS_PER_SERIES);
            let t = Instant::now();
            let got = index.query_chunks(id, range).await.expect("query");
            ns.push(t.elapsed().as_nanos() as u64);
            found += got.len();
        }
    });
    report_latency(
        "redis",
        "query_chunks",
        ns,
        &format!(r#","chunks_returned":{found}"#),
    );
    for (name, matchers) in lookups() {
        let mut ns = Vec::new();
        let mut n = 0;
        rt.block_on(async {
            for _ in 0..5 {
                let t = Instant::now();
                n = index.find_series(&matchers).await.expect("find").len();
                ns.push(t.elapsed().as_nanos() as u64);
            }
        });
        report_latency(
            "redis",
            &format!("find_series {name}"),
            ns,
            &format!(r#","series_found":{n}"#),
        );
    }

    let mut g = c.benchmark_group("index/redis");
    g.throughput(Throughput::Elements(1));
    let mut rng = SplitMix64(2);
    g.bench_function("query_chunks", |b| {
        b.iter(|| {
            let id = ids[rng.below(REDIS_CHUNK_SERIES) as usize];
            let range = random_range(&mut rng, REDIS_CHUNKS_PER_SERIES);
            black_box(rt.block_on(index.query_chunks(id, range)).expect("query"))
        })
    });
    let id = ids[SERIES as usize - 1];
    let mut j = 0u64;
    g.bench_function("add_chunk (append)", |b| {
        b.iter(|| {
            j += 1;
            rt.block_on(index.add_chunk(&chunk(id, j))).expect("add");
        })
    });
    g.finish();
    drop(server);
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .configure_from_args();
    memory_half(&mut c);
    // One thread drives the connection and the caller: on a loopback round trip, hopping
    // between worker threads would cost more than the request itself.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    redis_half(&mut c, &rt);
    c.final_summary();
}
