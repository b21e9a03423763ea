//! The database end to end on the default engines (disk storage, memory index).

use std::sync::Arc;
use std::time::Duration;

use gorilla_tsdb::{
    DataPoint, DatabaseConfig, Error, LabelMatcher, Labels, MatchOp, SeriesId, TimeRange,
    TimeSeriesDB, TimeSeriesDBBuilder, WalDurability,
};

fn config(dir: &std::path::Path) -> DatabaseConfig {
    DatabaseConfig {
        data_dir: dir.to_path_buf(),
        chunk_max_points: 100,
        wal_durability: WalDurability::Never,
        ..Default::default()
    }
}

async fn open(config: DatabaseConfig) -> TimeSeriesDB {
    TimeSeriesDBBuilder::new()
        .with_config(config)
        .build()
        .await
        .expect("database opens")
}

fn cpu(host: &str) -> Labels {
    Labels::new("cpu", [("host", host), ("region", "eu")]).expect("valid labels")
}

#[tokio::test]
async fn points_are_readable_before_and_after_flush_and_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(config(dir.path())).await;
    let a = cpu("a");
    let points: Vec<(i64, f64)> = (0..1000).map(|i| (i * 1000, i as f64 * 0.5)).collect();
    db.insert_series(&a, &points).await.expect("insert");
    let all = TimeRange::ALL;
    let got = db.query(&a, all).await.expect("query");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].iter().collect::<Vec<_>>(), points);

    db.flush().await.expect("flush");
    assert_eq!(db.stats().buffered_points, 0);
    assert!(db.stats().chunks_written >= 10);
    let got = db
        .query(&a, TimeRange::new(100_000, 199_000).expect("range"))
        .await
        .expect("query");
    assert_eq!(
        got[0].timestamps,
        (100..200).map(|i| i * 1000).collect::<Vec<_>>()
    );
    db.close().await.expect("close");

    let db = open(config(dir.path())).await;
    let got = db.query(&a, all).await.expect("query after reopen");
    assert_eq!(got[0].iter().collect::<Vec<_>>(), points);
    let found = db
        .find_series(&[LabelMatcher::new("host", MatchOp::RegexMatch, "a|b").expect("regex")])
        .await
        .expect("find");
    assert_eq!(found, vec![(a.series_id(), a.clone())]);
    db.close().await.expect("close");
}

#[tokio::test]
async fn unflushed_points_come_back_from_the_wal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = cpu("wal");
    {
        let db = open(config(dir.path())).await;
        db.insert_series(&a, &[(1, 1.0), (2, 2.0), (3, f64::NAN)])
            .await
            .expect("insert");
        // Dropped without close: only the WAL has the points.
    }
    let db = open(config(dir.path())).await;
    assert_eq!(db.stats().points_replayed, 3);
    let got = db.query(&a, TimeRange::ALL).await.expect("query");
    assert_eq!(got[0].timestamps, vec![1, 2, 3]);
    assert!(got[0].values[2].is_nan());
    db.close().await.expect("close");
}

#[tokio::test]
async fn out_of_order_window_duplicates_and_special_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(DatabaseConfig {
        out_of_order_window: Duration::from_secs(60),
        ..config(dir.path())
    })
    .await;
    let s = cpu("ooo");
    let id = db.register_series(&s).await.expect("register");
    db.insert_series(&s, &[(100_000, 1.0), (200_000, 2.0)])
        .await
        .expect("insert");
    // Within the window: accepted and stored in order.
    db.insert(&s, 150_000, 1.5)
        .await
        .expect("late point within the window");
    // Older than the window: rejected, naming series and timestamp; nothing of the batch kept.
    let err = db
        .insert_batch(&[
            DataPoint::new(id, 250_000, 9.0),
            DataPoint::new(id, 139_999, 9.0),
        ])
        .await
        .expect_err("too old");
    match err {
        Error::OutOfOrder {
            series,
            timestamp,
            oldest_accepted,
        } => {
            assert_eq!((series, timestamp, oldest_accepted), (id, 139_999, 190_000));
        }
        other => panic!("expected OutOfOrder, got {other:?}"),
    }
    // A duplicate timestamp keeps the last value written.
    db.insert(&s, 200_000, 20.0).await.expect("duplicate");
    db.insert(&s, 210_000, f64::INFINITY).await.expect("inf");
    db.insert(&s, 220_000, f64::NEG_INFINITY)
        .await
        .expect("-inf");
    let expect = |got: &gorilla_tsdb::SeriesPoints| {
        assert_eq!(
            got.timestamps,
            vec![100_000, 150_000, 200_000, 210_000, 220_000]
        );
        assert_eq!(&got.values[..3], &[1.0, 1.5, 20.0]);
        assert_eq!(got.values[3], f64::INFINITY);
        assert_eq!(got.values[4], f64::NEG_INFINITY);
    };
    expect(&db.query(id, TimeRange::ALL).await.expect("query")[0]);
    db.flush().await.expect("flush");
    expect(&db.query(id, TimeRange::ALL).await.expect("query")[0]);
    // A duplicate of a point already in a chunk still wins over it.
    db.insert(&s, 200_000, -2.0)
        .await
        .expect("duplicate of a stored point");
    let got = db.query(id, TimeRange::ALL).await.expect("query");
    assert_eq!(got[0].timestamps.len(), 5);
    assert_eq!(got[0].values[2], -2.0);
    db.flush().await.expect("flush");
    let got = db.query(id, TimeRange::ALL).await.expect("query");
    assert_eq!(
        got[0].values[2], -2.0,
        "the newer chunk wins over the older one"
    );
    db.close().await.expect("close");
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(since.as_millis()).expect("fits")
}

#[tokio::test]
async fn retention_deletes_expired_chunks_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = cpu("retention");
    // 100 points a minute apart per chunk; 10 chunks spanning the last 1000 minutes, written
    // without a retention.
    let start = now_ms() - 1000 * 60_000;
    let points: Vec<(i64, f64)> = (0..1000).map(|i| (start + i * 60_000, i as f64)).collect();
    let db = open(config(dir.path())).await;
    db.insert_series(&s, &points).await.expect("insert");
    db.close().await.expect("close");
    let db = open(DatabaseConfig {
        retention: Some(Duration::from_secs(3600)),
        ..config(dir.path())
    })
    .await;
    // With one, a point older than it is refused: it would be deleted at the next round.
    let err = db
        .insert(&s, start, 0.0)
        .await
        .expect_err("older than the retention");
    assert!(matches!(err, Error::OutOfOrder { .. }), "{err}");
    let deleted = db.apply_retention().await.expect("retention");
    // Cutoff: an hour ago, about minute 940: chunks ending before it go (minutes 0..899).
    assert_eq!(deleted, 9);
    let got = db.query(&s, TimeRange::ALL).await.expect("query");
    assert_eq!(got[0].timestamps.first(), Some(&(start + 900 * 60_000)));
    assert_eq!(got[0].len(), 100);
    db.close().await.expect("close");
    let db = open(config(dir.path())).await;
    assert_eq!(
        db.query(&s, TimeRange::ALL).await.expect("query")[0].len(),
        100,
        "deletions persist"
    );
    db.close().await.expect("close");
}

/// A point dated far ahead (here: seconds taken for milliseconds the other way round, a
/// nanosecond timestamp) is refused, naming series and timestamp, and nothing of its batch is
/// kept; with the guard off it is accepted, and retention, which measures age against the
/// wall clock, still keeps every recent chunk.
#[tokio::test]
async fn points_far_in_the_future_are_refused_and_cannot_make_retention_delete_recent_data() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(config(dir.path())).await;
    let s = cpu("future");
    let id = db.register_series(&s).await.expect("register");
    let now = now_ms();
    // Five minutes ahead is within the default tolerance of ten.
    db.insert_series(&s, &[(now - 1_000, 1.0), (now + 5 * 60_000, 2.0)])
        .await
        .expect("near-future point");
    let nanos = now * 1_000_000;
    let err = db
        .insert_batch(&[DataPoint::new(id, now, 3.0), DataPoint::new(id, nanos, 4.0)])
        .await
        .expect_err("a nanosecond timestamp");
    match &err {
        Error::InTheFuture {
            series,
            timestamp,
            latest_accepted,
        } => {
            assert_eq!((*series, *timestamp), (id, nanos));
            assert!((now + 10 * 60_000..now + 11 * 60_000).contains(latest_accepted));
        }
        other => panic!("expected InTheFuture, got {other:?}"),
    }
    assert!(err.to_string().contains("milliseconds"), "{err}");
    let got = db.query(&s, TimeRange::ALL).await.expect("query");
    assert_eq!(
        got[0].values,
        vec![1.0, 2.0],
        "nothing of the refused batch"
    );
    db.close().await.expect("close");

    let db = open(DatabaseConfig {
        future_tolerance: None,
        retention: Some(Duration::from_secs(3600)),
        ..config(dir.path())
    })
    .await;
    db.insert(&s, 4_102_444_800_000 /* 2100-01-01 */, 5.0)
        .await
        .expect("accepted with the guard off");
    db.flush().await.expect("flush");
    assert_eq!(db.apply_retention().await.expect("retention"), 0);
    let got = db.query(&s, TimeRange::ALL).await.expect("query");
    assert_eq!(got[0].len(), 3, "the recent points survive retention");
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_data_dir_is_used_by_one_database_at_a_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(config(dir.path())).await;
    let second = TimeSeriesDBBuilder::new()
        .with_config(config(dir.path()))
        .build()
        .await;
    assert!(matches!(second, Err(Error::InUse { .. })), "got {second:?}");
    db.close().await.expect("close");
    drop(db);
    let again = open(config(dir.path())).await;
    again.close().await.expect("close");
}

#[tokio::test]
async fn unknown_series_and_closed_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(config(dir.path())).await;
    let err = db
        .insert_batch(&[DataPoint::new(SeriesId(42), 1, 1.0)])
        .await
        .expect_err("unknown series");
    assert!(matches!(err, Error::SeriesNotFound { series } if series == SeriesId(42)));
    assert!(
        db.query(SeriesId(42), TimeRange::ALL)
            .await
            .expect("query")
            .is_empty()
    );
    db.close().await.expect("close");
    assert!(matches!(
        db.insert(&cpu("x"), 1, 1.0).await,
        Err(Error::Closed { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_and_readers_see_every_point() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = std::sync::Arc::new(open(config(dir.path())).await);
    let mut tasks = Vec::new();
    for w in 0..8 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let labels: Vec<Labels> = (0..20).map(|s| cpu(&format!("w{w}s{s}"))).collect();
            for step in 0..50i64 {
                let batch: Vec<DataPoint> = labels
                    .iter()
                    .map(|l| DataPoint::new(l.series_id(), step * 10, (w * 1000 + step) as f64))
                    .collect();
                for l in &labels {
                    db.register_series(l).await.expect("register");
                }
                db.insert_batch(&batch).await.expect("insert");
            }
        }));
    }
    let reader = {
        let db = db.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let all = db
                    .query(vec![LabelMatcher::metric("cpu")], TimeRange::ALL)
                    .await
                    .expect("query");
                for s in all {
                    // Each series is written in time order, so what a reader sees is a prefix.
                    let n = s.len() as i64;
                    assert_eq!(s.timestamps, (0..n).map(|i| i * 10).collect::<Vec<_>>());
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for t in tasks {
        t.await.expect("writer");
    }
    reader.await.expect("reader");
    let all = db
        .query(vec![LabelMatcher::metric("cpu")], TimeRange::ALL)
        .await
        .expect("query");
    assert_eq!(all.len(), 160);
    assert!(all.iter().all(|s| s.len() == 50));
    db.close().await.expect("close");
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("entry"))
                .map(|e| {
                    let meta = e.metadata().expect("metadata");
                    if meta.is_dir() {
                        dir_bytes(&e.path())
                    } else {
                        meta.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// After a clean close the WAL keeps nothing but an empty segment, so the data directory is
/// its chunks and its series catalog (and a few small files); reopening replays nothing and
/// every point is there.
#[tokio::test]
async fn after_a_clean_close_the_directory_is_its_chunks_and_reopen_replays_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(DatabaseConfig {
        chunk_max_points: 1024,
        wal_segment_size: 1 << 20,
        ..config(dir.path())
    })
    .await;
    let start = now_ms() - 3_000 * 10_000;
    for s in 0..100 {
        let labels = cpu(&format!("h{s}"));
        let points: Vec<(i64, f64)> = (0..3_000)
            .map(|i| (start + i * 10_000, ((i * 37 + s) % 1000) as f64 / 100.0))
            .collect();
        db.insert_series(&labels, &points).await.expect("insert");
    }
    assert!(
        dir_bytes(&dir.path().join("wal")) > 1 << 20,
        "the WAL held the points"
    );
    db.close().await.expect("close");

    let (chunks, catalog, wal) = (
        dir_bytes(&dir.path().join("chunks")),
        dir_bytes(&dir.path().join("series")),
        dir_bytes(&dir.path().join("wal")),
    );
    let total = dir_bytes(dir.path());
    assert!(wal <= 64, "the WAL keeps an empty segment: {wal} bytes");
    assert!(
        total as f64 <= 1.05 * chunks as f64 + catalog as f64,
        "{total} bytes in all for {chunks} of chunks and {catalog} of catalog"
    );

    let db = open(config(dir.path())).await;
    assert_eq!(db.stats().points_replayed, 0, "nothing replayed");
    for s in [0, 57, 99] {
        let got = db
            .query(&cpu(&format!("h{s}")), TimeRange::ALL)
            .await
            .expect("query");
        assert_eq!(got[0].len(), 3_000, "series h{s}");
    }
    // Writes go on after the truncated log, and survive a reopen without close.
    db.insert(&cpu("h0"), now_ms(), 1.0).await.expect("insert");
    drop(db);
    let db = open(config(dir.path())).await;
    let got = db.query(&cpu("h0"), TimeRange::ALL).await.expect("query");
    assert_eq!(
        got[0].len(),
        3_001,
        "the write after the truncated log was replayed"
    );
    db.close().await.expect("close");
}

/// Writes in any order: a live series back-filled with a month of history and rewritten here
/// and there, then random writes over the whole month with flushes and reopens in between.
/// Every read equals a model in which the last write of a timestamp wins, and the in-order
/// chunk of the live hour stays as narrow as the hour (the back-fill goes to chunks of its
/// own).
#[tokio::test]
async fn writes_in_any_order_are_kept_and_the_last_write_of_a_timestamp_wins() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = || DatabaseConfig {
        chunk_max_points: 1024,
        ..config(dir.path())
    };
    let mut db = open(cfg()).await;
    let now = now_ms();
    let live_start = now - 3_600_000;
    let s = cpu("any-order");
    let mut model: BTreeMap<i64, f64> = BTreeMap::new();
    let live: Vec<(i64, f64)> = (0..360)
        .map(|i| (live_start + i * 10_000, i as f64))
        .collect();
    db.insert_series(&s, &live).await.expect("live");
    model.extend(live.iter().copied());
    // A month of history, oldest first, in batches, behind the live data.
    let month = 30 * 24 * 3_600_000i64;
    let history: Vec<(i64, f64)> = (0..month / 60_000)
        .map(|i| (live_start - month + i * 60_000, -(i as f64)))
        .collect();
    for batch in history.chunks(5_000) {
        db.insert_series(&s, batch).await.expect("back-fill");
    }
    model.extend(history.iter().copied());
    // Rewrites in both the live hour and the history.
    let rewrites = [
        (live_start + 50 * 10_000, 0.5),
        (live_start - 7 * 60_000, 0.25),
    ];
    db.insert_series(&s, &rewrites).await.expect("rewrites");
    model.extend(rewrites);
    db.flush().await.expect("flush");
    assert_eq!(
        all_points(&db, &s).await,
        model,
        "after back-fill and rewrites"
    );
    let chunks = db.storage().list_chunks().await.expect("chunks");
    let live_chunks: Vec<_> = chunks.iter().filter(|c| c.end_time >= live_start).collect();
    assert_eq!(
        live_chunks.len(),
        1,
        "one chunk holds the live hour: {live_chunks:?}"
    );
    assert_eq!(
        (live_chunks[0].start_time, live_chunks[0].end_time),
        (live_start, live_start + 359 * 10_000),
        "the in-order chunk spans the live hour only"
    );

    // Random writes anywhere in the month, flushes and reopens in between.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..6 {
        for _ in 0..40 {
            let batch: Vec<(i64, f64)> = (0..50)
                .map(|_| {
                    let t = live_start - month + (next() % (month as u64 + 3_600_000)) as i64;
                    (t / 1_000 * 1_000, (next() % 10_000) as f64)
                })
                .collect();
            // Within a batch too, the later of two equal timestamps wins.
            db.insert_series(&s, &batch).await.expect("random write");
            model.extend(batch);
        }
        match round % 3 {
            0 => db.flush().await.expect("flush"),
            1 => {
                db.close().await.expect("close");
                db = open(cfg()).await;
            }
            _ => {
                drop(db);
                db = open(cfg()).await;
            }
        }
        assert_eq!(all_points(&db, &s).await, model, "round {round}");
    }
    db.close().await.expect("close");
}

/// Every point of series `s`, by timestamp.
async fn all_points(db: &TimeSeriesDB, s: &Labels) -> std::collections::BTreeMap<i64, f64> {
    let got = db.query(s, TimeRange::ALL).await.expect("query");
    got.first()
        .map(|p| {
            p.timestamps
                .iter()
                .copied()
                .zip(p.values.iter().copied())
                .collect()
        })
        .unwrap_or_default()
}

/// `delete_series` hides the points of the matched series in the range from every read
/// (queries, PromQL's rollups and header counts), durably: after a clean reopen and after a
/// crash whose WAL still holds the deleted points. Points written afterwards in the range,
/// and other series, stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_points_stay_deleted_and_later_writes_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(config(dir.path())).await;
    let start = now_ms() - 1_000 * 1_000;
    let points: Vec<(i64, f64)> = (0..1_000).map(|i| (start + i * 1_000, i as f64)).collect();
    let (a, b, other) = (cpu("del-a"), cpu("del-b"), cpu("keep"));
    for s in [&a, &b, &other] {
        db.insert_series(s, &points).await.expect("insert");
    }
    // Half of it in chunks, the rest still buffered when the delete comes.
    db.flush().await.expect("flush");
    let late: Vec<(i64, f64)> = (1_000..1_200)
        .map(|i| (start + i * 1_000, i as f64))
        .collect();
    for s in [&a, &b, &other] {
        db.insert_series(s, &late).await.expect("insert");
    }
    let range = TimeRange {
        start: start + 100_000,
        end: start + 1_099_000,
    };
    let matchers = [LabelMatcher::new("host", MatchOp::RegexMatch, "del-.*").expect("regex")];
    assert_eq!(db.delete_series(&matchers, range).await.expect("delete"), 2);
    // Written after the delete, inside its range: kept.
    db.insert(&a, start + 500_000, -1.0).await.expect("insert");

    let db = check_deletion(db, start, "at once").await;
    // A crash: the WAL still holds the deleted points of the buffered part.
    drop(db);
    let db = check_deletion(open(config(dir.path())).await, start, "after a crash").await;
    db.close().await.expect("close");
    let db = check_deletion(
        open(config(dir.path())).await,
        start,
        "after a clean reopen",
    )
    .await;
    db.close().await.expect("close");
}

/// What `deleted_points_stay_deleted_and_later_writes_stay` expects to read.
async fn check_deletion(db: TimeSeriesDB, start: i64, what: &str) -> Arc<TimeSeriesDB> {
    use gorilla_tsdb::promql::{Engine, EngineOptions, Value};
    let (a, b, other) = (cpu("del-a"), cpu("del-b"), cpu("keep"));
    let a_points = all_points(&db, &a).await;
    let kept: Vec<i64> = a_points.keys().copied().collect();
    let mut want: Vec<i64> = (0..100)
        .chain(1_100..1_200)
        .map(|i| start + i * 1_000)
        .collect();
    want.push(start + 500_000);
    want.sort_unstable();
    assert_eq!(kept, want, "{what}: series a");
    assert_eq!(
        a_points[&(start + 500_000)],
        -1.0,
        "{what}: the later write"
    );
    assert_eq!(all_points(&db, &b).await.len(), 200, "{what}: series b");
    assert_eq!(
        all_points(&db, &other).await.len(),
        1_200,
        "{what}: another series"
    );
    // PromQL: rollups and counts from chunk headers see the deletion too.
    let db = Arc::new(db);
    let engine = Engine::new(db.clone(), EngineOptions::default());
    let q = "count_over_time(cpu{host=~\"del-b|keep\"}[1h])";
    let Value::Vector(v) = engine
        .instant_query(q, start + 1_200_000)
        .await
        .expect("promql")
    else {
        panic!("a vector")
    };
    let mut counts: Vec<(String, f64)> = v
        .iter()
        .map(|s| (s.metric.get("host").unwrap_or_default().to_owned(), s.value))
        .collect();
    counts.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        counts,
        vec![("del-b".to_owned(), 200.0), ("keep".to_owned(), 1_200.0)],
        "{what}: {q}"
    );
    db
}

/// A snapshot opens as a database holding exactly what the source held when it was taken:
/// out-of-order writes, rewrites (the last write wins), deletions (left out) and buffered
/// points; writes after it are not in it, and the source goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_opens_as_the_database_it_copied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(config(dir.path())).await;
    let start = now_ms() - 2_000 * 1_000;
    let series: Vec<Labels> = (0..5).map(|s| cpu(&format!("snap{s}"))).collect();
    for (s, labels) in series.iter().enumerate() {
        let in_order: Vec<(i64, f64)> = (1_000..2_000)
            .map(|i| (start + i * 1_000, (i + s as i64) as f64))
            .collect();
        db.insert_series(labels, &in_order).await.expect("insert");
        // Back-fill, then rewrites of both halves.
        let back: Vec<(i64, f64)> = (0..1_000)
            .map(|i| (start + i * 1_000, -(i as f64)))
            .collect();
        db.insert_series(labels, &back).await.expect("back-fill");
        db.insert_series(labels, &[(start + 10_000, 0.5), (start + 1_500_000, 0.25)])
            .await
            .expect("rewrite");
    }
    db.flush().await.expect("flush");
    db.delete_series(
        &[LabelMatcher::equal("host", "snap3")],
        TimeRange {
            start: start + 100_000,
            end: start + 200_000,
        },
    )
    .await
    .expect("delete");
    db.insert(&series[0], start + 1_999_500, 7.0)
        .await
        .expect("buffered");
    let mut before = Vec::new();
    for labels in &series {
        before.push(all_points(&db, labels).await);
    }

    let snap = tempfile::tempdir().expect("snapshot dir");
    let target = snap.path().join("copy");
    let stats = db.snapshot(&target).await.expect("snapshot");
    assert_eq!(stats.series, 5);
    // Chunks hold rewritten timestamps twice (the reads keep the last write).
    let unique: u64 = before.iter().map(|p| p.len() as u64).sum();
    assert!(
        (unique..=unique + 10).contains(&stats.points),
        "{stats:?} for {unique}"
    );
    // A second snapshot into the same, now full, directory is refused.
    assert!(db.snapshot(&target).await.is_err());
    db.insert(&series[1], start + 1_999_700, 8.0)
        .await
        .expect("after");

    let copy = open(config(&target)).await;
    for (labels, want) in series.iter().zip(&before) {
        assert_eq!(&all_points(&copy, labels).await, want, "{labels}");
    }
    copy.close().await.expect("close the copy");
    assert_eq!(all_points(&db, &series[1]).await.len(), before[1].len() + 1);
    db.close().await.expect("close");
}
