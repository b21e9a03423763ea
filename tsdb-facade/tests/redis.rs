//! The database with its index in a real Redis (started by the test itself).

use gorilla_tsdb::index::testing::RedisServer;
use gorilla_tsdb::{
    DatabaseConfig, Error, LabelMatcher, Labels, TimeRange, TimeSeriesDB, TimeSeriesDBBuilder,
    WalDurability,
};

fn config(dir: &std::path::Path, url: String) -> DatabaseConfig {
    DatabaseConfig {
        data_dir: dir.to_path_buf(),
        redis_url: Some(url),
        chunk_max_points: 50,
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

fn series(i: usize) -> Labels {
    Labels::new(
        "requests_total",
        [("instance", format!("i{i}")), ("job", "api".into())],
    )
    .expect("valid labels")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_index_end_to_end_and_reconciliation() {
    let Some(server) = RedisServer::start().expect("redis-server starts") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let points: Vec<(i64, f64)> = (0..500).map(|i| (i * 15_000, i as f64)).collect();
    {
        let db = open(config(dir.path(), server.url())).await;
        for i in 0..5 {
            db.insert_series(&series(i), &points).await.expect("insert");
        }
        let got = db
            .query(vec![LabelMatcher::equal("job", "api")], TimeRange::ALL)
            .await
            .expect("query");
        assert_eq!(got.len(), 5);
        assert!(got.iter().all(|s| s.iter().eq(points.iter().copied())));
        db.close().await.expect("close");
    }
    // Another process (here: another database handle) on the same Redis sees the catalog.
    {
        let db = open(config(dir.path(), server.url())).await;
        let found = db
            .find_series(&[LabelMatcher::metric("requests_total")])
            .await
            .expect("find");
        assert_eq!(found.len(), 5);
        db.close().await.expect("close");
    }
    // Redis loses everything: reopening rebuilds series and chunks from disk.
    let Some(empty) = RedisServer::start().expect("second redis-server starts") else {
        return;
    };
    let db = open(config(dir.path(), empty.url())).await;
    let got = db
        .query(vec![LabelMatcher::metric("requests_total")], TimeRange::ALL)
        .await
        .expect("query after reconciliation");
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|s| s.iter().eq(points.iter().copied())));
    db.close().await.expect("close");
}

#[tokio::test]
async fn redis_url_with_redis_down_is_a_clear_error() {
    let Some(mut server) = RedisServer::start_tcp().expect("redis-server starts") else {
        return;
    };
    let url = server.url();
    server.kill();
    let dir = tempfile::tempdir().expect("temp dir");
    let started = std::time::Instant::now();
    let err = TimeSeriesDBBuilder::new()
        .with_config(config(dir.path(), url))
        .build()
        .await
        .expect_err("no Redis");
    assert!(matches!(err, Error::Unavailable { .. }), "got {err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "must not hang"
    );
}

/// Reads every series until the answer is whole; every answer on the way is either whole or
/// a retryable error, never a partial `Ok`.
async fn read_until_whole(db: &TimeSeriesDB, series: usize, points: &[(i64, f64)], what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut errors = 0;
    loop {
        match db
            .query(vec![LabelMatcher::metric("requests_total")], TimeRange::ALL)
            .await
        {
            Ok(got) => {
                assert_eq!(got.len(), series, "{what}: an Ok answer lacks series");
                for s in &got {
                    assert!(
                        s.len() >= points.len(),
                        "{what}: an Ok answer lacks points ({} of {})",
                        s.len(),
                        points.len()
                    );
                }
                return;
            }
            Err(e) => {
                assert!(e.is_retryable(), "{what}: a read failed for good: {e}");
                errors += 1;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: the index was not rebuilt within 30 s ({errors} retryable errors)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_under_a_running_database_is_rebuilt_never_answered_empty() {
    let Some(mut server) = RedisServer::start_tcp().expect("redis-server starts") else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(DatabaseConfig {
        stall_timeout: std::time::Duration::from_secs(20),
        ..config(dir.path(), server.url())
    })
    .await;
    let points: Vec<(i64, f64)> = (0..400).map(|i| (i * 15_000, i as f64)).collect();
    for i in 0..5 {
        db.insert_series(&series(i), &points).await.expect("insert");
    }
    db.flush().await.expect("flush");
    read_until_whole(&db, 5, &points, "before the restart").await;

    // Redis comes back without its data, twice, while the database keeps running.
    for round in 0..2 {
        server.restart().expect("redis-server restarts");
        read_until_whole(&db, 5, &points, &format!("after restart {round}")).await;
    }
    // Writes and flushes go on; a new series registered now is indexed too.
    let more: Vec<(i64, f64)> = (400..450).map(|i| (i * 15_000, i as f64)).collect();
    for i in 0..6 {
        db.insert_series(&series(i), &more)
            .await
            .expect("insert after");
    }
    let flushed = tokio::time::timeout(std::time::Duration::from_secs(60), db.flush())
        .await
        .expect("flush does not hang");
    flushed.expect("flush after the rebuild");
    let got = db
        .query(vec![LabelMatcher::metric("requests_total")], TimeRange::ALL)
        .await
        .expect("query");
    assert_eq!(got.len(), 6);
    let closed = tokio::time::timeout(std::time::Duration::from_secs(60), db.close())
        .await
        .expect("close does not hang");
    closed.expect("close");
}
