//! Monitoring an embedded database as an application would: the database's logs through a
//! `tracing` subscriber, and its counters (`db.stats()`) read periodically while writing and
//! exported in the Prometheus text format.
//!
//! ```text
//! cargo run -p tsdb-facade --example monitoring
//! RUST_LOG=debug cargo run -p tsdb-facade --example monitoring   # every log line of the engines
//! ```

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gorilla_tsdb::{
    DataPoint, DatabaseConfig, DbStats, LabelMatcher, Labels, TimeRange, TimeSeriesDBBuilder,
};
use tracing_subscriber::EnvFilter;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `db.stats()` as a `/metrics` endpoint would serve it (name, type, value).
fn exposition(s: &DbStats) -> String {
    let rows = [
        ("tsdb_series", "gauge", s.series),
        ("tsdb_points_written_total", "counter", s.points_written),
        ("tsdb_points_replayed", "gauge", s.points_replayed),
        ("tsdb_buffered_points", "gauge", s.buffered_points),
        ("tsdb_buffered_bytes", "gauge", s.buffered_bytes),
        ("tsdb_chunks_pending", "gauge", s.chunks_pending),
        ("tsdb_chunks_written_total", "counter", s.chunks_written),
        ("tsdb_chunks_decoded_total", "counter", s.chunks_decoded),
        (
            "tsdb_chunks_answered_by_header_total",
            "counter",
            s.chunks_answered_by_header,
        ),
        ("tsdb_wal_bytes", "gauge", s.wal_bytes),
        (
            "tsdb_wal_bytes_written_total",
            "counter",
            s.wal_bytes_written,
        ),
        ("tsdb_flush_failures", "gauge", s.flush_failures),
        ("tsdb_damaged", "gauge", s.damaged),
    ];
    rows.iter()
        .map(|(name, kind, value)| format!("# TYPE {name} {kind}\n{name} {value}\n"))
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Logs: the database and its engines log through `tracing` (WAL opened and replayed,
    // deletions, retention, retried flushes, damage). Any subscriber shows them; this one
    // prints to stderr at the level RUST_LOG asks for, `info` by default.
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let dir = tempfile::tempdir()?;
    let db = Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(DatabaseConfig {
                data_dir: dir.path().to_path_buf(),
                chunk_max_points: 120, // small chunks, so that the counters move
                checkpoint_interval: Duration::from_millis(500),
                ..Default::default()
            })
            .build()
            .await?,
    );

    // The application's work: 50 hosts report 10 samples a round, for 100 rounds.
    let writer = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut hosts = Vec::new();
            for h in 0..50 {
                let labels = Labels::new("app_queue_depth", [("host", format!("host-{h:02}"))])?;
                hosts.push(db.register_series(&labels).await?);
            }
            let start = 1_700_000_000_000i64;
            for round in 0..100i64 {
                // One batch a round: one WAL commit for every host's last 10 samples.
                let batch: Vec<DataPoint> = (hosts.iter().enumerate())
                    .flat_map(|(h, &id)| {
                        (0..10).map(move |i| {
                            let t = start + (round * 10 + i) * 1_000;
                            DataPoint::new(id, t, (h as i64 + round + i) as f64)
                        })
                    })
                    .collect();
                db.insert_batch(&batch).await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<(), gorilla_tsdb::Error>(())
        })
    };

    // Meanwhile, read the counters every half second: a heartbeat line, and an alert when
    // storing chunks fails or data was found damaged (what an operator should be paged for).
    let began = Instant::now();
    let mut every = tokio::time::interval(Duration::from_millis(500));
    every.tick().await; // the first tick is immediate
    let (mut last, mut last_at) = (db.stats(), Instant::now());
    while !writer.is_finished() {
        every.tick().await;
        let s = db.stats();
        let rate =
            (s.points_written - last.points_written) as f64 / last_at.elapsed().as_secs_f64();
        println!(
            "[{:>4.1}s] {rate:.0} points/s, {} buffered, {} chunks written, WAL {} KiB",
            began.elapsed().as_secs_f64(),
            s.buffered_points,
            s.chunks_written,
            s.wal_bytes / 1024,
        );
        if s.flush_failures > 0 || s.damaged > 0 {
            eprintln!(
                "ALERT: {} failed flushes in a row, {} damage entries",
                s.flush_failures, s.damaged
            );
        }
        (last, last_at) = (s, Instant::now());
    }
    writer.await??;

    // A deletion and a query move other counters (and the deletion is logged at info).
    db.delete_series(&[LabelMatcher::equal("host", "host-00")], TimeRange::ALL)
        .await?;
    let series = db
        .query(
            vec![LabelMatcher::metric("app_queue_depth")],
            TimeRange::ALL,
        )
        .await?;
    println!("query: {} series", series.len());

    println!("--- what a scrape of /metrics would return now:");
    print!("{}", exposition(&db.stats()));
    db.close().await?;
    Ok(())
}
