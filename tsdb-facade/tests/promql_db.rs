//! PromQL evaluated against the database, compared with the same data in the engine's own
//! in-memory source.

use std::sync::Arc;

use gorilla_tsdb::promql::{Engine, EngineOptions, MemorySource};
use gorilla_tsdb::{DatabaseConfig, Labels, TimeSeriesDBBuilder, WalDurability};

#[tokio::test]
async fn promql_over_the_database_matches_the_reference_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(DatabaseConfig {
                data_dir: dir.path().to_path_buf(),
                chunk_max_points: 64,
                wal_durability: WalDurability::Never,
                ..Default::default()
            })
            .build()
            .await
            .expect("database opens"),
    );
    let memory = MemorySource::new();
    for host in 0..6 {
        let labels = Labels::new(
            "http_requests_total",
            [
                ("host", format!("h{host}")),
                ("region", format!("r{}", host % 2)),
            ],
        )
        .expect("valid labels");
        let points: Vec<(i64, f64)> = (0..600)
            .map(|i| (i * 15_000, ((i * (host + 1)) % 1000) as f64))
            .collect();
        db.insert_series(&labels, &points).await.expect("insert");
        memory.add(labels, &points).expect("memory add");
    }
    // Part in chunks, part in heads.
    db.flush().await.expect("flush");
    let on_db = Engine::new(db.clone(), EngineOptions::default());
    let on_memory = Engine::new(memory, EngineOptions::default());
    for query in [
        "sum by (region) (rate(http_requests_total[5m]))",
        "max_over_time(http_requests_total{host=~\"h[0-2]\"}[10m])",
        "count(http_requests_total > 500)",
        "http_requests_total offset 1m",
    ] {
        for t in [300_000, 4_500_000, 8_985_000] {
            let a = on_db
                .instant_query(query, t)
                .await
                .expect("query on the database");
            let b = on_memory
                .instant_query(query, t)
                .await
                .expect("query on memory");
            assert_eq!(a.to_string(), b.to_string(), "{query} at {t}");
        }
        let a = on_db
            .range_query(query, 0, 9_000_000, 60_000)
            .await
            .expect("range on the database");
        let b = on_memory
            .range_query(query, 0, 9_000_000, 60_000)
            .await
            .expect("range on memory");
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{query} over the range");
    }
    db.close().await.expect("close");
}
