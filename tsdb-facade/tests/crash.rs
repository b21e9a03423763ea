//! Crash safety: a child process ingests and reports each acknowledged batch; the parent kills
//! it with SIGKILL at random moments, reopens the database, and checks that every acknowledged
//! point reads back and nothing else was invented. Batches are written out of time order
//! (scrambled within blocks of 64), so out-of-order heads and their chunks are killed too, and
//! now and then series 0's points of an older batch are deleted: an acknowledged deletion
//! never comes back. Compaction runs in the background all the while (every chunk is cold
//! here), so kills land in its every step: each point must still be there exactly once.
//! Snapshots are taken too; each one reported complete opens as a database
//! holding every batch acknowledged before it. The child's compaction builds rollup tiers as
//! well; the parent (which does not build them) reads them, and their answers must be the
//! answers over the points it finds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gorilla_tsdb::{
    DataPoint, DatabaseConfig, Labels, TimeRange, TimeSeriesDBBuilder, WalDurability,
};

const CHILD_ENV: &str = "TSDB_CRASH_CHILD_DIR";
const START_ENV: &str = "TSDB_CRASH_CHILD_START";
const SERIES: usize = 40;
const POINTS_PER_SERIES: i64 = 5;

fn config(dir: &std::path::Path) -> DatabaseConfig {
    DatabaseConfig {
        // Compaction runs all the time in the child (every chunk is cold: timestamps near
        // 1970), so kills land inside it too.
        compaction_interval: Some(Duration::from_millis(30)),
        cold_after: Duration::ZERO,
        compacted_chunk_points: 64,
        rollup_tiers: vec![
            gorilla_tsdb::RollupTier {
                resolution: Duration::from_secs(5),
                retention: None,
            },
            gorilla_tsdb::RollupTier {
                resolution: Duration::from_secs(20),
                retention: None,
            },
        ],
        ..checked_config(dir)
    }
}

/// What the parent opens to check: no compaction of its own, so that what it finds
/// compacted is the child's work.
fn checked_config(dir: &std::path::Path) -> DatabaseConfig {
    DatabaseConfig {
        data_dir: dir.to_path_buf(),
        chunk_max_points: 32,
        flush_interval: Duration::from_millis(200),
        checkpoint_interval: Duration::from_millis(50),
        wal_durability: WalDurability::Always,
        wal_segment_size: 64 << 10,
        compaction_interval: None,
        ..Default::default()
    }
}

fn labels(s: usize) -> Labels {
    Labels::new("crash_test", [("series", s.to_string())]).expect("valid labels")
}

/// The value batch `batch` writes for series `s` at point `p`: recomputable by the parent.
fn value(batch: u64, s: usize, p: i64) -> f64 {
    (batch as f64) * 1000.0 + (s as f64) + (p as f64) / 10.0
}

/// The time slot of a batch: the batch number with its low 6 bits reversed, a bijection that
/// scrambles the order within each block of 64 batches (and is its own inverse).
fn slot(batch: u64) -> u64 {
    (batch & !63) | ((batch & 63).reverse_bits() >> 58)
}

/// The batch whose series-0 points the child deletes after writing `batch`, if any.
fn deletion_after(batch: u64) -> Option<u64> {
    (batch % 16 == 15).then(|| batch - 8)
}

fn timestamp(batch: u64, p: i64) -> i64 {
    slot(batch) as i64 * POINTS_PER_SERIES * 1000 + p * 1000
}

/// Runs only when started by the parent test: ingests batches until killed.
#[tokio::test]
async fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var(START_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let snaps = std::path::Path::new(&dir).join("snaps");
    let db = TimeSeriesDBBuilder::new()
        .with_config(config(&std::path::Path::new(&dir).join("db")))
        .build()
        .await
        .expect("child opens the database");
    let ids: Vec<_> = (0..SERIES).map(labels).collect();
    for l in &ids {
        db.register_series(l).await.expect("register");
    }
    println!("ready");
    for batch in start.. {
        let points: Vec<DataPoint> = ids
            .iter()
            .enumerate()
            .flat_map(|(s, l)| {
                (0..POINTS_PER_SERIES).map(move |p| {
                    DataPoint::new(l.series_id(), timestamp(batch, p), value(batch, s, p))
                })
            })
            .collect();
        db.insert_batch(&points).await.expect("insert");
        println!("ack {batch}");
        if let Some(gone) = deletion_after(batch) {
            let range = TimeRange {
                start: timestamp(gone, 0),
                end: timestamp(gone, POINTS_PER_SERIES - 1),
            };
            let series0 = [gorilla_tsdb::LabelMatcher::equal("series", "0")];
            db.delete_series(&series0, range).await.expect("delete");
            println!("deleted {gone}");
        }
        if batch % 8 == 7 {
            // A whole round now and then, rollup tiers included (a child seldom lives
            // through a throttled background round and the build after it).
            db.compact().await.expect("compact");
        }
        if batch % 61 == 60 {
            db.snapshot(snaps.join(batch.to_string()))
                .await
                .expect("snapshot");
            println!("snap {batch}");
        }
        // Pace the child so that rounds stay small; the kill still lands mid-write.
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_points_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary path");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next_batch = 0u64;
    let mut acked_total = 0u64;
    // Batches whose series-0 points the child deleted and said so.
    let mut deleted = std::collections::BTreeSet::new();
    let mut maybe_deleted = std::collections::BTreeSet::new();
    let mut snapshots_checked = 0;
    let rounds = 30;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut rounds_run = 0;
    // Chunks the child's compaction wrote, counted at each reopen.
    let mut compacted_seen = 0;
    let mut tier_answers = 0u64;
    for round in 0..rounds {
        if Instant::now() > deadline {
            break;
        }
        rounds_run += 1;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Every fifth child lives long enough for whole compactions and rollup builds too.
        let run_for =
            Duration::from_millis(20 + seed % 300 + if round % 5 == 4 { 1500 } else { 0 });
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(START_ENV, next_batch.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is ready, then let it run a random while and kill it.
        let ready_by = Instant::now() + Duration::from_secs(20);
        while Instant::now() < ready_by {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(50))
                && line.ends_with("ready")
            {
                break;
            }
        }
        std::thread::sleep(run_for);
        child.kill().expect("SIGKILL child");
        child.wait().expect("reap child");
        reader.join().expect("reader thread");
        let mut last_acked = None;
        let mut snapshot = None;
        for line in rx.try_iter() {
            if let Some(n) = line.strip_prefix("ack ") {
                last_acked = Some(n.parse::<u64>().expect("batch number"));
            }
            if let Some(n) = line.strip_prefix("deleted ") {
                deleted.insert(n.parse::<u64>().expect("batch number"));
            }
            if let Some(n) = line.strip_prefix("snap ") {
                snapshot = Some(n.parse::<u64>().expect("batch number"));
            }
        }
        if let Some(last) = last_acked {
            acked_total += last + 1 - next_batch;
            next_batch = last + 1;
            // Killed between the deletion and its report: it may or may not have happened
            // (the next child does not try it again).
            if let Some(gone) = deletion_after(last).filter(|g| !deleted.contains(g)) {
                maybe_deleted.insert(gone);
            }
        }

        // A snapshot reported complete holds every batch up to it.
        if let Some(b) = snapshot {
            let snap = TimeSeriesDBBuilder::new()
                .with_config(checked_config(
                    &dir.path().join("snaps").join(b.to_string()),
                ))
                .build()
                .await
                .expect("the snapshot opens");
            let either = |batch: &u64| deleted.contains(batch) || maybe_deleted.contains(batch);
            for s in 0..SERIES {
                let got = snap.query(&labels(s), TimeRange::ALL).await.expect("query");
                let present: std::collections::BTreeMap<i64, f64> =
                    got.first().map(|g| g.iter().collect()).unwrap_or_default();
                for batch in 0..=b {
                    if s == 0 && either(&batch) {
                        continue;
                    }
                    for p in 0..POINTS_PER_SERIES {
                        assert_eq!(
                            present.get(&timestamp(batch, p)).map(|v| v.to_bits()),
                            Some(value(batch, s, p).to_bits()),
                            "round {round}: snapshot {b} misses batch {batch} of series {s}"
                        );
                    }
                }
            }
            snap.close().await.expect("close the snapshot");
            snapshots_checked += 1;
        }

        // Reopen and check: every acknowledged batch is there, and nothing invented.
        let db = TimeSeriesDBBuilder::new()
            .with_config(checked_config(&dir.path().join("db")))
            .build()
            .await
            .expect("parent reopens the database");
        let db = std::sync::Arc::new(db);
        let engine = gorilla_tsdb::promql::Engine::new(
            db.clone(),
            gorilla_tsdb::promql::EngineOptions::default(),
        );
        let stored = db.storage().list_chunks().await.expect("list chunks");
        compacted_seen += stored
            .iter()
            .filter(|c| c.codec == gorilla_tsdb::CodecId::PCO)
            .count();
        for s in 0..SERIES {
            let got = db.query(&labels(s), TimeRange::ALL).await.expect("query");
            let (ts, vs) = got
                .first()
                .map(|g| (g.timestamps.clone(), g.values.clone()))
                .unwrap_or_default();
            let present: std::collections::BTreeMap<i64, f64> =
                ts.iter().copied().zip(vs.iter().copied()).collect();
            assert_eq!(
                present.len(),
                ts.len(),
                "round {round}: duplicate timestamps"
            );
            for batch in 0..next_batch {
                if s == 0 && deleted.contains(&batch) {
                    for p in 0..POINTS_PER_SERIES {
                        let t = timestamp(batch, p);
                        assert!(
                            !present.contains_key(&t),
                            "round {round}: a deleted point of batch {batch} came back at {t}"
                        );
                    }
                    continue;
                }
                if s == 0 && maybe_deleted.contains(&batch) {
                    continue;
                }
                for p in 0..POINTS_PER_SERIES {
                    let t = timestamp(batch, p);
                    assert_eq!(
                        present.get(&t).map(|v| v.to_bits()),
                        Some(value(batch, s, p).to_bits()),
                        "round {round}: series {s} misses acknowledged batch {batch} at {t}"
                    );
                }
            }
            // Unacknowledged batches may be present too (written, not yet acknowledged; the
            // next child writes them again, the same values), but nothing else.
            for (&t, &v) in &present {
                let batch = slot((t / 1000 / POINTS_PER_SERIES) as u64);
                let p = (t / 1000) % POINTS_PER_SERIES;
                assert_eq!(
                    t,
                    timestamp(batch, p),
                    "round {round}: unexpected timestamp"
                );
                assert_eq!(
                    v.to_bits(),
                    value(batch, s, p).to_bits(),
                    "round {round}: wrong value at {t}"
                );
            }
            // On the tiers' grid: answered from the child's tiers where they hold the
            // windows, from the points after; either way, the answers over `present`.
            let Some(&last) = present.keys().next_back() else {
                continue;
            };
            let end = last.div_euclid(20_000) * 20_000 + 20_000;
            for function in ["count_over_time", "max_over_time"] {
                let q = format!("{function}(crash_test{{series=\"{s}\"}}[20s])");
                let got = engine
                    .range_query(&q, 0, end, 20_000)
                    .await
                    .expect("tier query");
                let got = got.first().map(|g| g.points.clone()).unwrap_or_default();
                let mut want = Vec::new();
                for t in (0..=end).step_by(20_000) {
                    let window: Vec<f64> = present.range(t - 20_000..=t).map(|(_, v)| *v).collect();
                    if window.is_empty() {
                        continue;
                    }
                    let v = if function == "count_over_time" {
                        window.len() as f64
                    } else {
                        window.iter().copied().fold(f64::MIN, f64::max)
                    };
                    want.push((t, v));
                }
                assert_eq!(got, want, "round {round}: {q}");
            }
        }
        tier_answers += db.stats().rollup.series_answered;
        db.close().await.expect("close");
    }
    assert!(rounds_run >= 10, "only {rounds_run} rounds ran");
    assert!(acked_total > 0, "the child never acknowledged a batch");
    assert!(!deleted.is_empty(), "the child never deleted");
    assert!(compacted_seen > 0, "the child never compacted");
    assert!(
        tier_answers > 0,
        "no answer came from the child's rollup tiers"
    );
    assert!(
        snapshots_checked > 0,
        "the child never completed a snapshot"
    );
    eprintln!(
        "crash test: {rounds_run} rounds, {acked_total} acknowledged batches, {} deletions, {snapshots_checked} snapshots, {compacted_seen} compacted chunks and {tier_answers} series answered from tiers checked",
        deleted.len()
    );
}
