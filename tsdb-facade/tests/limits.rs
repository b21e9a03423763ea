//! Limits of the database's two query paths: the typed engine's budgets (series, points,
//! values held) and PromQL's memory budget through the database, which counts a selection
//! from the index before decoding it. Also the label size limits at ingestion.

use std::sync::Arc;

use gorilla_tsdb::promql::{Engine, EngineOptions, PromqlError, Resource};
use gorilla_tsdb::query::{Aggregation, Grouping, QueryLimits, RangeQuery};
use gorilla_tsdb::{
    DatabaseConfig, Error, LabelMatcher, Labels, TimeRange, TimeSeriesDB, TimeSeriesDBBuilder,
    WalDurability,
};

async fn open(dir: &std::path::Path) -> TimeSeriesDB {
    TimeSeriesDBBuilder::new()
        .with_config(DatabaseConfig {
            data_dir: dir.to_path_buf(),
            chunk_max_points: 50,
            wal_durability: WalDurability::Never,
            ..Default::default()
        })
        .build()
        .await
        .expect("database opens")
}

/// 4 series `m{a="x", host="h<i>"}` of 200 points every 15 s from 0, flushed into chunks of
/// 50 points.
async fn db_with_data(dir: &std::path::Path) -> TimeSeriesDB {
    let db = open(dir).await;
    for i in 0..4 {
        let labels = Labels::new("m", [("a", "x".to_owned()), ("host", format!("h{i}"))])
            .expect("valid labels");
        let points: Vec<(i64, f64)> = (0..200).map(|k| (k * 15_000, k as f64)).collect();
        db.insert_series(&labels, &points).await.expect("insert");
    }
    db.flush().await.expect("flush");
    db
}

fn all() -> Vec<LabelMatcher> {
    vec![LabelMatcher::metric("m")]
}

#[tokio::test]
async fn typed_queries_stop_when_their_answer_holds_too_many_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_with_data(dir.path()).await;
    // 4 series x 101 steps with a value each: 404 values. The engine holds, at once, the
    // selector's values at every step (evaluated by the database), the result so far and
    // the step being evaluated: 404 + 404 + 4 at the end.
    let q = RangeQuery::new(all(), 0, 1_500_000, 15_000);
    let err = db
        .range_query(
            &q.clone()
                .with_limits(QueryLimits::default().with_max_samples(300)),
        )
        .await
        .expect_err("404 values > 300");
    assert!(
        matches!(
            &err,
            Error::LimitExceeded { what, limit: 300, requested }
                if what.contains("samples") && *requested > 300
        ),
        "{err}"
    );
    let ok = db
        .range_query(
            &q.clone()
                .with_limits(QueryLimits::default().with_max_samples(812)),
        )
        .await
        .expect("404 values fit");
    assert_eq!(ok.series.iter().map(|s| s.values.len()).sum::<usize>(), 404);
    // An aggregation's result holds one value per group and step: 4 groups x 101 steps.
    let by_host = q
        .clone()
        .with_aggregation(Aggregation::Sum, Grouping::By(vec!["host".into()]));
    let err = db
        .range_query(
            &by_host
                .clone()
                .with_limits(QueryLimits::default().with_max_samples(250)),
        )
        .await
        .expect_err("4 groups x 101 slots > 250");
    assert!(
        matches!(err, Error::LimitExceeded { limit: 250, .. }),
        "{err}"
    );
    let summed = q.with_aggregation(Aggregation::Sum, Grouping::All);
    let ok = db
        .range_query(&summed.with_limits(QueryLimits::default().with_max_samples(404 + 101 + 4)))
        .await
        .expect("the selector's values and one group of 101 fit");
    assert_eq!(ok.series.len(), 1);
    db.close().await.expect("close");
}

#[tokio::test]
async fn typed_queries_over_the_point_budget_are_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db_with_data(dir.path()).await;
    // The window of the first step reaches one chunk of each series: 4 x 50 points, counted
    // from the chunk headers.
    let q =
        RangeQuery::instant(all(), 60_000).with_limits(QueryLimits::default().with_max_points(199));
    let err = db.range_query(&q).await.expect_err("200 points > 199");
    assert!(
        matches!(
            &err,
            Error::LimitExceeded { what, requested: 200, limit: 199 } if what.contains("points")
        ),
        "{err}"
    );
    // The bounded selection behind PromQL counts the same way.
    let err = db
        .query_within(
            &all(),
            TimeRange::new(0, 60_000).expect("range"),
            &QueryLimits::default().with_max_points(199),
        )
        .await
        .expect_err("200 points > 199");
    assert!(
        matches!(err, Error::LimitExceeded { requested: 200, .. }),
        "{err}"
    );
    let err = db
        .query_within(
            &all(),
            TimeRange::ALL,
            &QueryLimits::default().with_max_series(3),
        )
        .await
        .expect_err("4 series > 3");
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                requested: 4,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    // Within the limits it answers like `query`.
    let range = TimeRange::new(0, 60_000).expect("range");
    let within = db
        .query_within(&all(), range, &QueryLimits::default())
        .await
        .expect("within the limits");
    let plain = db.query(all(), range).await.expect("query");
    assert_eq!(within, plain);
    db.close().await.expect("close");
}

#[tokio::test]
async fn nested_label_replace_over_the_database_fails_at_the_label_value_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(db_with_data(dir.path()).await);
    let engine = Engine::new(db.clone(), EngineOptions::default());
    let mut q = "m".to_owned();
    for _ in 0..28 {
        q = format!(r#"label_replace({q}, "a", "$1$1", "a", "(.*)")"#);
    }
    let err = engine
        .instant_query(&q, 600_000)
        .await
        .expect_err("a doubled label outgrows 16 KiB");
    assert!(
        matches!(
            err,
            PromqlError::ResourceLimit {
                resource: Resource::LabelValueBytes,
                requested: 32_768,
                limit: 16_384,
                ..
            }
        ),
        "{err}"
    );
    // As a database error it is a limit too.
    assert!(
        matches!(Error::from(err), Error::LimitExceeded { limit: 16_384, .. }),
        "converted"
    );
    drop(engine);
    Arc::into_inner(db)
        .expect("no other handle")
        .close()
        .await
        .expect("close");
}

#[tokio::test]
async fn promql_selections_over_the_sample_budget_are_refused_by_the_database() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Arc::new(db_with_data(dir.path()).await);
    // `m[1m]` at 60 s holds 5 points per series, but the read would decode one chunk of 50
    // points per series: the database refuses from the chunk headers, before decoding. (A
    // range function over it, `count_over_time(m[1m])`, is evaluated by the database one
    // series at a time and holds only its answers.)
    let engine = |opts| Engine::new(db.clone(), opts);
    let err = engine(EngineOptions::default().with_max_samples(199))
        .instant_query("m[1m]", 60_000)
        .await
        .expect_err("200 points to decode > 199");
    assert!(
        matches!(
            err,
            PromqlError::ResourceLimit {
                resource: Resource::Samples,
                requested: 200,
                limit: 199,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("query processing would load too many samples into memory"),
        "{err}"
    );
    let err = engine(EngineOptions::default().with_max_series(3))
        .instant_query("count_over_time(m[1m])", 60_000)
        .await
        .expect_err("4 series > 3");
    assert!(
        matches!(
            err,
            PromqlError::ResourceLimit {
                resource: Resource::Series,
                requested: 4,
                limit: 3,
                ..
            }
        ),
        "{err}"
    );
    // With the default budget the same query answers.
    let value = engine(EngineOptions::default())
        .instant_query("count_over_time(m[1m])", 60_000)
        .await
        .expect("within the budget");
    assert_eq!(value.to_string().lines().count(), 4, "{value}");
    Arc::into_inner(db)
        .expect("no other handle")
        .close()
        .await
        .expect("close");
}

#[tokio::test]
async fn oversized_labels_are_refused_at_ingestion() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(dir.path()).await;
    let ten_mb = "v".repeat(10 * 1024 * 1024);
    let err = Labels::new("m", [("path", ten_mb.as_str())]).expect_err("10 MB value");
    assert!(
        matches!(&err, Error::InvalidLabels { reason } if reason.contains("\"path\"") && reason.contains("10485760")),
        "{err}"
    );
    // The largest accepted value is stored and read back.
    let big = "v".repeat(Labels::MAX_VALUE_BYTES);
    let labels = Labels::new("m", [("path", big.as_str())]).expect("16 KiB value");
    db.insert(&labels, 0, 1.0).await.expect("insert");
    let found = db
        .query(vec![LabelMatcher::metric("m")], TimeRange::ALL)
        .await
        .expect("query");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].labels, labels);
    db.close().await.expect("close");
}
