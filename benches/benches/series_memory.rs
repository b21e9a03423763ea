//! Heap memory the database holds per series, phase by phase: registered, one point each,
//! ten points each, flushed (no head left), closed.
//!
//! A counting global allocator keeps the live heap bytes; each phase prints one JSON line
//! with the live bytes per series above the freshly opened database (and the process RSS
//! from `/proc/self/status`). Default embedded setup: disk storage, memory index, WAL.
//! `SERIES_MEMORY_N` sets the number of series (default 1,000,000).
//!
//! ```text
//! cargo bench -p tsdb-benches --bench series_memory
//! ```

// The workspace denies `unsafe_code`; a global allocator can only be written as an
// `unsafe impl GlobalAlloc`, which this bench needs to count live heap bytes. The impl only
// forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use gorilla_tsdb::{
    DataPoint, DatabaseConfig, Labels, SeriesId, TimeSeriesDB, TimeSeriesDBBuilder,
};

/// `System`, counting the bytes currently allocated.
struct Counting;

/// Live heap bytes (allocated and not yet freed).
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments, so `System`'s
// guarantees hold; the counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; `ptr` came from this allocator with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Series registered per `register_series_batch` call, and points per `insert_batch`.
const BATCH: usize = 10_000;

/// The labels of series `i`: a node-exporter-like metric, ten series per instance.
fn labels(i: usize) -> Labels {
    Labels::new(
        "node_network_receive_bytes_total",
        [
            ("instance", format!("host-{}:9100", i / 10)),
            ("job", "node".to_owned()),
            ("series", format!("s{i}")),
        ],
    )
    .expect("valid labels")
}

/// Live heap and RSS when the database was just opened; phases are measured against it.
struct Baseline {
    heap: usize,
    rss: u64,
    /// Live heap at the previous phase.
    previous: usize,
}

impl Baseline {
    /// Prints one JSON line for `phase`.
    fn report(&mut self, phase: &str, n: usize, db: Option<&TimeSeriesDB>) {
        let heap = LIVE.load(Ordering::Relaxed);
        let rss = tsdb_benches::rss_bytes("self").unwrap_or(0);
        let per = |bytes: f64| bytes / n as f64;
        let heads = db.map_or(0, |db| db.stats().buffered_bytes);
        println!(
            "{{\"bench\":\"series_memory\",\"phase\":\"{phase}\",\"series\":{n},\"heap_bytes\":{heap},\"heap_bytes_per_series\":{:.1},\"phase_heap_bytes_per_series\":{:.1},\"head_stats_bytes_per_series\":{:.1},\"rss_bytes\":{rss},\"rss_bytes_per_series\":{:.1}}}",
            per(heap as f64 - self.heap as f64),
            per(heap as f64 - self.previous as f64),
            per(heads as f64),
            per(rss as f64 - self.rss as f64),
        );
        self.previous = heap;
    }
}

/// Writes sample `k` of every series, `BATCH` points per call.
async fn write_sample(db: &TimeSeriesDB, ids: &[SeriesId], start_ms: i64, k: usize) {
    let mut batch = Vec::with_capacity(BATCH);
    for (chunk_no, chunk) in ids.chunks(BATCH).enumerate() {
        batch.clear();
        for (j, &id) in chunk.iter().enumerate() {
            let i = chunk_no * BATCH + j;
            // 10 s scrapes, a counter-like value growing at a per-series rate.
            let t = start_ms + k as i64 * 10_000;
            let v = (i % 1000) as f64 * 1_000.0 + (k * (1 + i % 7) * 1_500) as f64;
            batch.push(DataPoint::new(id, t, v));
        }
        db.insert_batch(&batch).await.expect("insert");
    }
}

fn main() {
    let n: usize = std::env::var("SERIES_MEMORY_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000)
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).expect("temp dir");
        let db = TimeSeriesDBBuilder::new()
            .with_config(DatabaseConfig {
                data_dir: dir.path().to_path_buf(),
                ..Default::default()
            })
            .build()
            .await
            .expect("database opens");
        let heap = LIVE.load(Ordering::Relaxed);
        let mut base = Baseline {
            heap,
            rss: tsdb_benches::rss_bytes("self").unwrap_or(0),
            previous: heap,
        };
        base.report("opened", n, Some(&db));

        let mut ids = Vec::with_capacity(n);
        let mut start = 0;
        while start < n {
            let end = (start + BATCH).min(n);
            let batch: Vec<Labels> = (start..end).map(labels).collect();
            ids.extend(db.register_series_batch(&batch).await.expect("register"));
            start = end;
        }
        base.report("registered", n, Some(&db));

        // An hour ago, so that ten samples stay well inside the future tolerance.
        let now_ms = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_millis(),
        )
        .expect("ms fit i64");
        let start_ms = now_ms - 3_600_000;
        write_sample(&db, &ids, start_ms, 0).await;
        base.report("one_point", n, Some(&db));
        for k in 1..10 {
            write_sample(&db, &ids, start_ms, k).await;
        }
        base.report("ten_points", n, Some(&db));

        db.flush().await.expect("flush");
        // Let the background tasks settle (a checkpoint may be under way).
        tokio::time::sleep(Duration::from_millis(200)).await;
        base.report("flushed", n, Some(&db));
        db.close().await.expect("close");
        base.report("closed", n, None);
        drop(db);
        drop(ids);
        base.report("dropped", n, None);
    });
}
