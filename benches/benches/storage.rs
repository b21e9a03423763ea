//! `LocalDiskEngine`: write throughput per durability policy with 1 and 8 concurrent writers,
//! and random-read latency of 1 KiB chunks from a 1 GiB store (page cache warm).
//!
//! ```text
//! cargo bench -p tsdb-benches --bench storage
//! TSDB_BENCH_QUICK=1 cargo bench -p tsdb-benches --bench storage   # smaller store, shorter runs
//! ```
//!
//! Besides criterion's means, the bench prints one JSON line per measurement (prefix
//! `storage-summary:`): write throughput in chunks/s and MB/s from a fixed-duration run, the
//! group-commit speed-up (8 writers over 1 under `Always`), and random-read latency
//! percentiles from a timing loop over individual reads. Stores live in a scratch directory
//! under `TSDB_BENCH_DIR` (default: the system temp dir) and are removed at the end.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;
use tsdb_core::{Bytes, ChunkLocation, CodecId, CompressedBlock, SeriesId, StorageEngine};
use tsdb_storage_disk::{Durability, LocalDiskConfig, LocalDiskEngine};

const CHUNK: usize = 1024;

/// SplitMix64: deterministic chunk bytes and read order without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn quick() -> bool {
    std::env::var_os("TSDB_BENCH_QUICK").is_some_and(|v| v != "0")
}

fn scratch() -> PathBuf {
    let base = std::env::var_os("TSDB_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("tsdb-storage-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn block(i: u64) -> CompressedBlock {
    let mut rng = SplitMix64(i);
    let data: Vec<u8> = (0..CHUNK).map(|_| rng.next_u64() as u8).collect();
    CompressedBlock {
        codec: CodecId::GORILLA,
        series_id: SeriesId(i % 1000),
        start_time: i as i64 * 1000,
        end_time: i as i64 * 1000 + 999,
        point_count: 120,
        data: Bytes::from(data),
    }
}

fn policies() -> [(&'static str, Durability); 2] {
    [
        ("always", Durability::Always),
        (
            "interval_10ms",
            Durability::Interval(Duration::from_millis(10)),
        ),
    ]
}

async fn open(dir: &Path, durability: Durability) -> LocalDiskEngine {
    LocalDiskEngine::open_with(dir, LocalDiskConfig::default().durability(durability))
        .await
        .expect("open store")
}

/// Writes `total` chunks with `writers` concurrent tasks; returns the elapsed time.
async fn write_batch(
    engine: &LocalDiskEngine,
    writers: u64,
    total: u64,
    blk: &CompressedBlock,
) -> Duration {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let engine = engine.clone();
            let next = next.clone();
            let blk = blk.clone();
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    engine.write_chunk(&blk).await.expect("write");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task");
    }
    start.elapsed()
}

/// Writes for `run` with `writers` tasks; returns chunks written.
async fn write_for(
    engine: &LocalDiskEngine,
    writers: u64,
    run: Duration,
    blk: &CompressedBlock,
) -> u64 {
    let deadline = Instant::now() + run;
    let count = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let engine = engine.clone();
            let count = count.clone();
            let blk = blk.clone();
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    engine.write_chunk(&blk).await.expect("write");
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task");
    }
    count.load(Ordering::Relaxed)
}

fn bench_writes(c: &mut Criterion) {
    let rt = runtime();
    let dir = scratch();
    let blk = block(1);
    let record = (CHUNK + 64) as f64;

    // Side by side, same run: fixed-duration throughput and the group-commit ratio. The 1- and
    // 8-writer runs alternate in short slices, so that drift in fsync latency (a shared disk)
    // hits both alike.
    let (slices, slice) = if quick() {
        (8, Duration::from_millis(125))
    } else {
        (20, Duration::from_millis(150))
    };
    let mut always = [0.0f64; 2];
    for (pname, policy) in policies() {
        let mut chunks = [0u64; 2];
        let mut secs = [0.0f64; 2];
        let paths = [1u64, 8].map(|w| dir.join(format!("summary-{pname}-{w}")));
        rt.block_on(async {
            let engines = [open(&paths[0], policy).await, open(&paths[1], policy).await];
            for _ in 0..slices {
                for (slot, writers) in [1u64, 8].into_iter().enumerate() {
                    let start = Instant::now();
                    chunks[slot] += write_for(&engines[slot], writers, slice, &blk).await;
                    secs[slot] += start.elapsed().as_secs_f64();
                }
            }
            for e in engines {
                e.close().await.expect("close");
            }
        });
        for (slot, writers) in [1u64, 8].into_iter().enumerate() {
            let per_s = chunks[slot] as f64 / secs[slot];
            if pname == "always" {
                always[slot] = per_s;
            }
            println!(
                "storage-summary: {{\"bench\":\"write\",\"policy\":\"{pname}\",\"writers\":{writers},\"chunk_bytes\":{CHUNK},\"chunks\":{},\"seconds\":{:.3},\"chunks_per_s\":{per_s:.0},\"payload_mb_per_s\":{:.2},\"disk_mb_per_s\":{:.2}}}",
                chunks[slot],
                secs[slot],
                per_s * CHUNK as f64 / 1e6,
                per_s * record / 1e6
            );
        }
        for p in &paths {
            let _ = std::fs::remove_dir_all(p);
        }
    }
    println!(
        "storage-summary: {{\"bench\":\"group_commit\",\"always_1_writer_chunks_per_s\":{:.0},\"always_8_writers_chunks_per_s\":{:.0},\"speedup\":{:.2}}}",
        always[0],
        always[1],
        always[1] / always[0]
    );

    let mut g = c.benchmark_group("storage_write_1KiB");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(if quick() {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        });
    for (pname, policy) in policies() {
        for writers in [1u64, 8] {
            let path = dir.join(format!("criterion-{pname}-{writers}"));
            let engine = rt.block_on(open(&path, policy));
            // Enough chunks per iteration that the 8 writers overlap.
            let per_iter = if policy == Durability::Always {
                32
            } else {
                1024
            };
            g.throughput(Throughput::Elements(per_iter));
            g.bench_function(BenchmarkId::new(pname, format!("{writers}_writers")), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(write_batch(&engine, writers, per_iter * iters, &blk))
                })
            });
            rt.block_on(engine.close()).expect("close");
            drop(engine);
            let _ = std::fs::remove_dir_all(&path);
        }
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_random_reads(c: &mut Criterion) {
    let rt = runtime();
    let dir = scratch();
    let store_bytes: u64 = if quick() { 128 << 20 } else { 1 << 30 };
    let record = (CHUNK + 64) as u64;
    let n = store_bytes / record;

    // Build the store once: no fsync per write, one sync at the end.
    let build = Instant::now();
    let locations: Vec<ChunkLocation> = rt.block_on(async {
        let engine = open(&dir, Durability::Interval(Duration::from_secs(1))).await;
        let blocks: Vec<_> = (0..64).map(block).collect();
        let mut locs = Vec::with_capacity(n as usize);
        for i in 0..n {
            locs.push(
                engine
                    .write_chunk(&blocks[(i % 64) as usize])
                    .await
                    .expect("write"),
            );
        }
        engine.close().await.expect("close");
        locs
    });
    let build_s = build.elapsed().as_secs_f64();
    let open_start = Instant::now();
    let engine = rt.block_on(open(&dir, Durability::Always));
    let open_s = open_start.elapsed().as_secs_f64();
    // Warm the page cache and the maps' page tables.
    rt.block_on(async {
        for loc in &locations {
            black_box(engine.read_chunk(loc).await.expect("read"));
        }
    });

    let samples = if quick() { 200_000 } else { 1_000_000 };
    let mut rng = SplitMix64(42);
    let picks: Vec<ChunkLocation> = (0..samples)
        .map(|_| locations[rng.below(n) as usize])
        .collect();
    let mut nanos: Vec<u64> = Vec::with_capacity(samples);
    rt.block_on(async {
        for loc in &picks {
            let t = Instant::now();
            let b = engine.read_chunk(loc).await.expect("read");
            nanos.push(t.elapsed().as_nanos() as u64);
            black_box(b);
        }
    });
    nanos.sort_unstable();
    let pct =
        |p: f64| nanos[((nanos.len() as f64 * p) as usize).min(nanos.len() - 1)] as f64 / 1000.0;
    let mean = nanos.iter().sum::<u64>() as f64 / nanos.len() as f64 / 1000.0;
    println!(
        "storage-summary: {{\"bench\":\"random_read\",\"chunk_bytes\":{CHUNK},\"store_bytes\":{},\"chunks\":{n},\"build_s\":{build_s:.2},\"open_s\":{open_s:.3},\"reads\":{samples},\"mean_us\":{mean:.2},\"p50_us\":{:.2},\"p90_us\":{:.2},\"p99_us\":{:.2},\"p999_us\":{:.2},\"max_us\":{:.2}}}",
        n * record,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        nanos[nanos.len() - 1] as f64 / 1000.0
    );

    // The same reads while eight `Always` writers append and fsync into the same store: reads
    // must not wait behind an fsync.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let engine = engine.clone();
            let stop = stop.clone();
            let written = written.clone();
            let blk = block(1000 + w);
            rt.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    engine.write_chunk(&blk).await.expect("write");
                    written.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let busy_for = if quick() {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(3)
    };
    let mut nanos: Vec<u64> = Vec::with_capacity(4 << 20);
    let start = Instant::now();
    rt.block_on(async {
        for loc in picks.iter().cycle() {
            let t = Instant::now();
            let b = engine.read_chunk(loc).await.expect("read");
            nanos.push(t.elapsed().as_nanos() as u64);
            black_box(b);
            if nanos.len().is_multiple_of(1024) && start.elapsed() > busy_for {
                break;
            }
        }
    });
    let busy_s = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        rt.block_on(w).expect("writer task");
    }
    nanos.sort_unstable();
    let pct =
        |p: f64| nanos[((nanos.len() as f64 * p) as usize).min(nanos.len() - 1)] as f64 / 1000.0;
    println!(
        "storage-summary: {{\"bench\":\"random_read_during_always_writes\",\"writers\":8,\"writes_during_reads\":{},\"reads\":{},\"seconds\":{busy_s:.2},\"p50_us\":{:.2},\"p90_us\":{:.2},\"p99_us\":{:.2},\"p999_us\":{:.2}}}",
        written.load(Ordering::Relaxed),
        nanos.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999)
    );

    let mut g = c.benchmark_group("storage_read_1KiB");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(if quick() {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        })
        .throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function(format!("random_of_{}MiB", store_bytes >> 20), |b| {
        b.iter(|| {
            i = (i + 1) % picks.len();
            rt.block_on(engine.read_chunk(&picks[i])).expect("read")
        })
    });
    g.finish();
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_writes, bench_random_reads);
criterion_main!(benches);
