//! The main job on the embedded default engines (disk storage, memory index, no Redis):
//! ingest realistic series (or CSV files you name), close, reopen, query, and print
//! throughput, size on disk and compression.
//!
//! ```text
//! cargo run --release -p tsdb-facade --example demo                      # 1,000 generated series x 10,000 points
//! cargo run --release -p tsdb-facade --example demo -- --series 100 --points 1000
//! cargo run --release -p tsdb-facade --example demo -- data/*.csv        # header `timestamp,value`
//! cargo run --release -p tsdb-facade --example demo -- --data-dir ./tsdb-data
//! ```
//!
//! CSV files have the header `timestamp,value`; timestamps are `YYYY-MM-DD HH:MM:SS` (UTC) or
//! integer milliseconds since the epoch. Each file becomes one series `csv{file="<name>"}`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gorilla_tsdb::{
    DataPoint, DatabaseConfig, LabelMatcher, Labels, TimeRange, TimeSeriesDB, TimeSeriesDBBuilder,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Workload = Vec<(Labels, Vec<(i64, f64)>)>;

struct Args {
    data_dir: Option<PathBuf>,
    series: usize,
    points: usize,
    files: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        data_dir: None,
        series: 1_000,
        points: 10_000,
        files: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--data-dir" => args.data_dir = Some(PathBuf::from(value("--data-dir")?)),
            "--series" => args.series = value("--series")?.parse()?,
            "--points" => args.points = value("--points")?.parse()?,
            "-h" | "--help" => {
                println!("usage: demo [--data-dir DIR] [--series N] [--points N] [FILE.csv ...]");
                std::process::exit(0);
            }
            f if f.starts_with('-') => return Err(format!("unknown option {f}").into()),
            f => args.files.push(PathBuf::from(f)),
        }
    }
    Ok(args)
}

/// Loads a CSV file of `timestamp,value` lines.
fn load_csv(path: &Path) -> Result<Vec<(i64, f64)>, BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(points) = tsdb_testdata::real::parse_nab(path, &text) {
        return Ok(points);
    }
    let mut points = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let (t, v) = line
            .split_once(',')
            .ok_or_else(|| format!("{}:{}: expected `timestamp,value`", path.display(), n + 1))?;
        let t: i64 = t
            .trim()
            .parse()
            .map_err(|e| format!("{}:{}: timestamp {t:?}: {e}", path.display(), n + 1))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|e| format!("{}:{}: value {v:?}: {e}", path.display(), n + 1))?;
        points.push((t, v));
    }
    Ok(points)
}

/// The series to ingest: generated (gauges, counters, constants) or loaded from files.
fn workload(args: &Args) -> Result<Workload, BoxError> {
    if !args.files.is_empty() {
        return args
            .files
            .iter()
            .map(|f| {
                let name = f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                Ok((Labels::new("csv", [("file", name)])?, load_csv(f)?))
            })
            .collect();
    }
    use tsdb_testdata::synthetic::{constant, counter, prom_gauge};
    (0..args.series)
        .map(|s| {
            let (metric, points) = match s % 10 {
                0..=5 => (
                    "node_memory_active_bytes",
                    prom_gauge(args.points, s as u64),
                ),
                6..=8 => ("http_requests_total", counter(args.points, s as u64)),
                _ => ("node_cpu_count", constant(args.points)),
            };
            let labels = Labels::new(
                metric,
                [
                    ("host", format!("host-{s:04}")),
                    ("region", format!("region-{}", s % 10)),
                ],
            )?;
            Ok((labels, points))
        })
        .collect()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_size(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

async fn open(dir: &Path) -> Result<TimeSeriesDB, BoxError> {
    Ok(TimeSeriesDBBuilder::new()
        .with_config(DatabaseConfig {
            data_dir: dir.to_path_buf(),
            // Recorded files can step back in time; accept a day of disorder.
            out_of_order_window: Duration::from_secs(24 * 3600),
            ..Default::default()
        })
        .build()
        .await?)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let temp = tempfile::tempdir()?;
    let dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let series = workload(&args)?;
    let total: usize = series.iter().map(|s| s.1.len()).sum();
    println!("data dir: {}", dir.display());
    println!("workload: {} series, {total} points", series.len());

    // Ingest: 8 writer tasks, batches of about 1,000 points, WAL with group commit.
    let db = Arc::new(open(&dir).await?);
    let started = Instant::now();
    let series = Arc::new(series);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (db, series) = (db.clone(), series.clone());
        tasks.push(tokio::spawn(async move {
            for (labels, points) in series.iter().skip(w).step_by(8) {
                let id = db.register_series(labels).await?;
                for chunk in points.chunks(1_000) {
                    let batch: Vec<DataPoint> = chunk
                        .iter()
                        .map(|&(t, v)| DataPoint::new(id, t, v))
                        .collect();
                    db.insert_batch(&batch).await?;
                }
            }
            Ok::<(), gorilla_tsdb::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let ingest = started.elapsed();
    let db = Arc::into_inner(db).ok_or("database still shared")?;
    let close_started = Instant::now();
    db.close().await?;
    println!(
        "ingest:   {:.2} s, {:.2} M points/s (acknowledged, WAL fsynced); close (seal + flush) {:.2} s",
        ingest.as_secs_f64(),
        total as f64 / ingest.as_secs_f64() / 1e6,
        close_started.elapsed().as_secs_f64()
    );
    let chunk_bytes = dir_size(&dir.join("chunks"));
    let all_bytes = dir_size(&dir);
    println!(
        "size:     chunks {:.1} MB ({:.2} bytes/point, {:.1}:1 against 16-byte points), data dir {:.1} MB",
        chunk_bytes as f64 / 1e6,
        chunk_bytes as f64 / total as f64,
        16.0 * total as f64 / chunk_bytes.max(1) as f64,
        all_bytes as f64 / 1e6
    );

    // Reopen and read everything back.
    let started = Instant::now();
    let db = open(&dir).await?;
    println!("reopen:   {:.3} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let everything = db.query(Vec::<LabelMatcher>::new(), TimeRange::ALL).await?;
    let read: usize = everything.iter().map(|s| s.len()).sum();
    println!(
        "scan:     {read} points of {} series in {:.3} s ({:.1} M points/s)",
        everything.len(),
        started.elapsed().as_secs_f64(),
        read as f64 / started.elapsed().as_secs_f64() / 1e6
    );
    // One hour of one series, many times.
    if let Some(first) = everything.first()
        && let Some(&last) = first.timestamps.last()
    {
        let range = TimeRange::new(last - 3_600_000, last)?;
        let mut latencies = Vec::new();
        for _ in 0..1_000 {
            let t = Instant::now();
            db.query(first.series_id, range).await?;
            latencies.push(t.elapsed());
        }
        latencies.sort();
        println!(
            "query:    last hour of {}: p50 {:?}, p99 {:?}",
            first.labels,
            latencies[latencies.len() / 2],
            latencies[latencies.len() * 99 / 100]
        );
    }
    db.close().await?;
    if read != total {
        println!(
            "note: {} points were duplicates of a timestamp and replaced",
            total - read
        );
    }
    Ok(())
}
