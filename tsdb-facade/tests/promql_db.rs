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

/// The database evaluates range functions and instant selectors itself (on every core, from
/// its chunks and head buffers); on data with out-of-order writes, overwritten timestamps,
/// staleness markers, overlapping chunks and points still buffered, every answer must equal
/// the engine's own evaluation over the same samples.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_evaluated_by_the_database_match_the_engine_on_awkward_data() {
    use gorilla_tsdb::promql::STALE_NAN_BITS;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(DatabaseConfig {
                data_dir: dir.path().to_path_buf(),
                chunk_max_points: 50,
                wal_durability: WalDurability::Never,
                out_of_order_window: std::time::Duration::from_secs(24 * 3600),
                ..Default::default()
            })
            .build()
            .await
            .expect("database opens"),
    );
    let memory = MemorySource::new();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for s in 0..40 {
        let labels = Labels::new(
            "m",
            [("host", format!("h{s}")), ("region", format!("r{}", s % 3))],
        )
        .expect("labels");
        let mut written: std::collections::BTreeMap<i64, f64> = Default::default();
        let mut batch = Vec::new();
        for i in 0..400i64 {
            // Mostly in order, sometimes late, sometimes a rewrite, now and then stale.
            let t = match next() % 20 {
                0 => (i - (next() % 30) as i64).max(0) * 10_000,
                1 => i * 10_000 + 3_000,
                _ => i * 10_000,
            };
            let v = match next() % 50 {
                0 => f64::from_bits(STALE_NAN_BITS),
                1 => f64::NAN,
                _ => (next() % 10_000) as f64 / 100.0,
            };
            batch.push((t, v));
            written.insert(t, v);
            if next() % 7 == 0 {
                db.insert_series(&labels, &batch).await.expect("insert");
                batch.clear();
            }
            if i == 250 && s % 2 == 0 {
                db.insert_series(&labels, &batch).await.expect("insert");
                batch.clear();
                db.flush().await.expect("flush");
            }
        }
        db.insert_series(&labels, &batch).await.expect("insert");
        let points: Vec<(i64, f64)> = written.into_iter().collect();
        memory.add(labels, &points).expect("memory add");
    }
    let on_db = Engine::new(db.clone(), EngineOptions::default());
    let on_memory = Engine::new(memory, EngineOptions::default());
    for query in [
        "m",
        "sum by (region) (m)",
        "avg_over_time(m[5m])",
        "sum by (region) (avg_over_time(m[5m]))",
        "sum(count_over_time(m[30m]))",
        "rate(m[2m])",
        "max by (region) (increase(m[10m] offset 3m))",
        "quantile_over_time(0.9, m{region=\"r1\"}[7m])",
        "last_over_time(m[1m])",
        "timestamp(m)",
        "changes(m[15m]) > 3",
        "stddev_over_time(m[10m] @ 2000)",
    ] {
        for t in [0, 600_000, 2_222_000, 3_990_000] {
            let a = on_db
                .instant_query(query, t)
                .await
                .expect("on the database");
            let b = on_memory.instant_query(query, t).await.expect("on memory");
            assert_eq!(a.to_string(), b.to_string(), "{query} at {t}");
        }
        let a = on_db
            .range_query(query, 100_000, 4_000_000, 37_000)
            .await
            .expect("range on the database");
        let b = on_memory
            .range_query(query, 100_000, 4_000_000, 37_000)
            .await
            .expect("range on memory");
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{query} over a range");
    }
    db.close().await.expect("close");
}

/// `count_over_time` takes the count of a chunk that a window holds whole from the chunk's
/// header, unless the chunk may hold a NaN (a staleness marker is one, and is not counted):
/// every answer equals the engine's own count over the same samples, and only chunks with a
/// NaN, or cut by a window's edge, are decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_over_time_is_answered_from_chunk_headers_and_staleness_still_counts() {
    use gorilla_tsdb::promql::STALE_NAN_BITS;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(
        TimeSeriesDBBuilder::new()
            .with_config(DatabaseConfig {
                data_dir: dir.path().to_path_buf(),
                chunk_max_points: 100,
                wal_durability: WalDurability::Never,
                ..Default::default()
            })
            .build()
            .await
            .expect("database opens"),
    );
    let memory = MemorySource::new();
    let (series, points, with_nan) = (20usize, 1_000i64, 5usize);
    for s in 0..series {
        let labels = Labels::new("m", [("host", format!("h{s}"))]).expect("labels");
        let batch: Vec<(i64, f64)> = (0..points)
            .map(|i| {
                let v = match (s < with_nan, i) {
                    (true, 500) => f64::from_bits(STALE_NAN_BITS),
                    (true, 777) => f64::NAN,
                    _ => (i % 17) as f64 + s as f64 / 8.0,
                };
                (i * 10_000, v)
            })
            .collect();
        db.insert_series(&labels, &batch).await.expect("insert");
        memory.add(labels, &batch).expect("memory add");
    }
    db.flush().await.expect("flush");
    let on_db = Engine::new(db.clone(), EngineOptions::default());
    let on_memory = Engine::new(memory, EngineOptions::default());

    // Everything in one window: each chunk without NaN is counted from its header.
    let before = db.stats();
    let end = points * 10_000;
    let query = "sum(count_over_time(m[30h]))";
    let a = on_db
        .instant_query(query, end)
        .await
        .expect("on the database");
    let b = on_memory
        .instant_query(query, end)
        .await
        .expect("on memory");
    assert_eq!(a.to_string(), b.to_string(), "{query}");
    // 1,000 points a series, the staleness marker of 5 series not counted.
    assert!(a.to_string().contains("19995"), "{a}");
    let after = db.stats();
    let decoded = after.chunks_decoded - before.chunks_decoded;
    let by_header = after.chunks_answered_by_header - before.chunks_answered_by_header;
    assert!(
        (with_nan as u64..=2 * with_nan as u64).contains(&decoded),
        "only the chunks holding a NaN are decoded: {decoded}"
    );
    assert_eq!(
        decoded + by_header,
        after.chunks_written,
        "every chunk read once"
    );

    // Windows that cut chunks, at instants and over ranges: still the engine's answers.
    for query in [
        "count_over_time(m[30h])",
        "count_over_time(m[17m])",
        "count_over_time(m[2h] offset 20m)",
        "sum(count_over_time(m[45m]))",
        "count_over_time(m{host=\"h1\"}[1000s])",
    ] {
        for t in [
            0,
            123_000,
            1_000_000,
            5_000_000,
            7_770_000,
            end,
            end + 3_600_000,
        ] {
            let a = on_db
                .instant_query(query, t)
                .await
                .expect("on the database");
            let b = on_memory.instant_query(query, t).await.expect("on memory");
            assert_eq!(a.to_string(), b.to_string(), "{query} at {t}");
        }
        for (start, stop, step) in [(0, end, 1_000_000), (-600_000, end + 600_000, 777_000)] {
            let a = on_db
                .range_query(query, start, stop, step)
                .await
                .expect("range on the database");
            let b = on_memory
                .range_query(query, start, stop, step)
                .await
                .expect("range on memory");
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "{query} over a range");
        }
    }
    db.close().await.expect("close");
}
