//! End-to-end ingestion throughput and head-buffer memory of the database on its default
//! engines (disk storage, memory index, WAL with group commit).
//!
//! Prints one JSON object per measurement. `TSDB_BENCH_QUICK=1` runs a tenth of the points.
//!
//! ```text
//! cargo bench -p tsdb-benches --bench ingest
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use gorilla_tsdb::{
    DataPoint, DatabaseConfig, Labels, SeriesId, TimeSeriesDB, TimeSeriesDBBuilder, WalDurability,
};

const WRITERS: usize = 8;
const BATCH_POINTS: usize = 1000;

/// A Prometheus-like gauge: 10 s scrapes with ±1 ms jitter, small integers that mostly repeat.
fn sample(series: usize, i: usize) -> (i64, f64) {
    let t = 1_700_000_000_000 + i as i64 * 10_000 + ((i * 7 + series) % 3) as i64 - 1;
    let v = 100.0 + ((i / 10 + series) % 7) as f64;
    (t, v)
}

async fn open(
    dir: &std::path::Path,
    durability: WalDurability,
    chunk_max_points: u32,
) -> TimeSeriesDB {
    TimeSeriesDBBuilder::new()
        .with_config(DatabaseConfig {
            data_dir: dir.to_path_buf(),
            wal_durability: durability,
            chunk_max_points,
            flush_interval: Duration::from_secs(24 * 3600),
            max_buffered_points: 200_000_000,
            ..Default::default()
        })
        .build()
        .await
        .expect("database opens")
}

async fn register(db: &TimeSeriesDB, series: usize) -> Vec<SeriesId> {
    let mut ids = Vec::with_capacity(series);
    for s in 0..series {
        let labels = Labels::new(
            "node_cpu_seconds",
            [
                ("host", format!("host-{s}")),
                ("region", format!("r{}", s % 10)),
            ],
        )
        .expect("valid labels");
        ids.push(db.register_series(&labels).await.expect("register"));
    }
    ids
}

/// 8 writer tasks each write their share of the series, `points` points per series, in
/// batches of about 1,000 points. Returns (points, seconds until the last acknowledgement).
async fn ingest(db: Arc<TimeSeriesDB>, ids: &[SeriesId], points: usize) -> (u64, f64) {
    ingest_range(db, ids, 0..points).await
}

/// [`ingest`] of the samples numbered `range` of every series, oldest first.
async fn ingest_range(
    db: Arc<TimeSeriesDB>,
    ids: &[SeriesId],
    range: std::ops::Range<usize>,
) -> (u64, f64) {
    let (from, points) = (range.start, range.end);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mine: Vec<(usize, SeriesId)> = ids
            .iter()
            .copied()
            .enumerate()
            .filter(|(s, _)| s % WRITERS == w)
            .collect();
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let per_batch = (BATCH_POINTS / mine.len().max(1)).max(1);
            let mut batch = Vec::with_capacity(BATCH_POINTS.max(mine.len()));
            let mut written = 0u64;
            for chunk in mine.chunks(BATCH_POINTS) {
                let mut i = from;
                while i < points {
                    let k = per_batch.min(points - i);
                    batch.clear();
                    for &(s, id) in chunk {
                        for j in i..i + k {
                            let (t, v) = sample(s, j);
                            batch.push(DataPoint::new(id, t, v));
                        }
                    }
                    db.insert_batch(&batch).await.expect("insert");
                    written += batch.len() as u64;
                    i += k;
                }
            }
            written
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("writer task");
    }
    (total, started.elapsed().as_secs_f64())
}

fn main() {
    let quick = std::env::var_os("TSDB_BENCH_QUICK").is_some();
    let scale = if quick { 10 } else { 1 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        // Head-buffer memory: 10M points held in heads (1,000 series x 10,000 points).
        let points = 10_000 / scale;
        let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("temp dir");
        let db = Arc::new(open(dir.path(), WalDurability::Never, 20_000).await);
        let ids = register(&db, 1_000).await;
        let before = tsdb_benches::rss_bytes("self").unwrap_or(0);
        let (n, _) = ingest(db.clone(), &ids, points).await;
        let after = tsdb_benches::rss_bytes("self").unwrap_or(0);
        let stats = db.stats();
        println!(
            "{{\"bench\":\"buffered_memory\",\"points\":{n},\"buffered_points\":{},\"head_heap_bytes\":{},\"rss_growth_bytes\":{},\"head_bytes_per_point\":{:.3},\"rss_bytes_per_point\":{:.3},\"raw_struct_bytes\":{}}}",
            stats.buffered_points,
            stats.buffered_bytes,
            after.saturating_sub(before),
            stats.buffered_bytes as f64 / n as f64,
            after.saturating_sub(before) as f64 / n as f64,
            n * 16,
        );
        db.close().await.expect("close");
        for (series, points) in [(1_000usize, 10_000 / scale), (100_000, 100 / scale)] {
            for (name, durability) in [("always", WalDurability::Always), ("never", WalDurability::Never)] {
                let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("temp dir");
                let db = Arc::new(open(dir.path(), durability, 1024).await);
                let ids = register(&db, series).await;
                let (n, secs) = ingest(db.clone(), &ids, points).await;
                let wal_written = db.stats().wal_bytes_written;
                let close_started = Instant::now();
                db.close().await.expect("close");
                let close_secs = close_started.elapsed().as_secs_f64();
                let disk: u64 = walk_size(dir.path());
                println!(
                    "{{\"bench\":\"ingest\",\"series\":{series},\"writers\":{WRITERS},\"wal\":\"{name}\",\"points\":{n},\"seconds\":{secs:.3},\"points_per_sec\":{:.0},\"close_seconds\":{close_secs:.3},\"bytes_on_disk\":{disk},\"bytes_per_point_on_disk\":{:.3},\"wal_bytes_per_point\":{:.2}}}",
                    n as f64 / secs,
                    disk as f64 / n as f64,
                    wal_written as f64 / n as f64
                );
            }
        }

        // Back-fill: the history of 1,000 live series (each already holding its newest 100
        // points) written oldest first, against the same history into a fresh database.
        let history = 10_000 / scale;
        let mut rates = Vec::new();
        for live in [false, true] {
            let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("temp dir");
            let db = Arc::new(open(dir.path(), WalDurability::Always, 1024).await);
            let ids = register(&db, 1_000).await;
            if live {
                ingest_range(db.clone(), &ids, history..history + 100).await;
            }
            let (n, secs) = ingest_range(db.clone(), &ids, 0..history).await;
            db.close().await.expect("close");
            rates.push(n as f64 / secs);
            println!(
                "{{\"bench\":\"history\",\"into\":\"{}\",\"series\":1000,\"wal\":\"always\",\"points\":{n},\"seconds\":{secs:.3},\"points_per_sec\":{:.0}}}",
                if live { "live series (back-fill)" } else { "a fresh database" },
                n as f64 / secs
            );
        }
        println!(
            "{{\"bench\":\"backfill_vs_fresh\",\"ratio\":{:.3}}}",
            rates[1] / rates[0]
        );
    });
}

fn walk_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => total += walk_size(&e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}
