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
