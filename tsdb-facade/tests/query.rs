//! The typed query API (a builder of PromQL, evaluated by the database through the PromQL
//! engine) against the PromQL engine over the raw points in memory, and its handling of bad
//! input and limits.

use std::collections::BTreeMap;

use gorilla_tsdb::promql::{Engine, EngineOptions, MemorySource};
use gorilla_tsdb::query::{
    Aggregation, Grouping, QueryLimits, RangeFunction, RangeQuery, ResultLabels,
};
use gorilla_tsdb::{
    DatabaseConfig, Error, LabelMatcher, Labels, MatchOp, TimeSeriesDB, TimeSeriesDBBuilder,
    WalDurability,
};
use proptest::prelude::*;

async fn open(dir: &std::path::Path, chunk_max_points: u32) -> TimeSeriesDB {
    TimeSeriesDBBuilder::new()
        .with_config(DatabaseConfig {
            data_dir: dir.to_path_buf(),
            chunk_max_points,
            wal_durability: WalDurability::Never,
            ..Default::default()
        })
        .build()
        .await
        .expect("database opens")
}

fn labels(i: usize) -> Labels {
    Labels::new(
        "m",
        [("host", format!("h{i}")), ("region", format!("r{}", i % 3))],
    )
    .expect("valid labels")
}

// ---------------------------------------------------------------- reference evaluation

/// The reference: the query's PromQL text evaluated by the engine over the raw points (the
/// last write of each timestamp) held in memory, with the same limits.
async fn reference(
    q: &RangeQuery,
    truth: &BTreeMap<usize, BTreeMap<i64, f64>>,
) -> BTreeMap<ResultLabels, BTreeMap<i64, f64>> {
    let source = MemorySource::new();
    for (i, points) in truth {
        let points: Vec<(i64, f64)> = points.iter().map(|(&t, &v)| (t, v)).collect();
        source.add(labels(*i), &points).expect("memory source");
    }
    let engine = Engine::new(source, EngineOptions::default());
    let series = engine
        .range_query(&q.to_promql(), q.start, q.end, q.step)
        .await
        .expect("reference evaluation");
    series
        .into_iter()
        .map(|s| {
            (
                s.metric
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                s.points.into_iter().collect(),
            )
        })
        .collect()
}

fn close_enough(a: f64, b: f64) -> bool {
    // NaN (e.g. the variance of infinities) must match NaN.
    a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

// ---------------------------------------------------------------- strategies

fn function() -> impl Strategy<Value = Option<RangeFunction>> {
    prop_oneof![
        Just(None),
        Just(Some(RangeFunction::Avg)),
        Just(Some(RangeFunction::Min)),
        Just(Some(RangeFunction::Max)),
        Just(Some(RangeFunction::Sum)),
        Just(Some(RangeFunction::Count)),
        Just(Some(RangeFunction::Last)),
        Just(Some(RangeFunction::Stddev)),
        Just(Some(RangeFunction::Stdvar)),
        (-0.2f64..1.2).prop_map(|q| Some(RangeFunction::Quantile(q))),
        Just(Some(RangeFunction::Rate)),
        Just(Some(RangeFunction::Increase)),
        Just(Some(RangeFunction::Delta)),
        Just(Some(RangeFunction::Irate)),
        Just(Some(RangeFunction::Changes)),
        Just(Some(RangeFunction::Resets)),
    ]
}

fn aggregation() -> impl Strategy<Value = Option<(Aggregation, Grouping)>> {
    let op = prop_oneof![
        Just(Aggregation::Sum),
        Just(Aggregation::Avg),
        Just(Aggregation::Min),
        Just(Aggregation::Max),
        Just(Aggregation::Count),
        Just(Aggregation::Stddev),
        Just(Aggregation::Stdvar),
        (0.0f64..=1.0).prop_map(Aggregation::Quantile),
        (1usize..4).prop_map(Aggregation::Topk),
        (1usize..4).prop_map(Aggregation::Bottomk),
    ];
    let grouping = prop_oneof![
        Just(Grouping::All),
        Just(Grouping::By(vec!["region".into()])),
        Just(Grouping::Without(vec!["host".into()])),
        Just(Grouping::By(vec!["host".into(), "nope".into()])),
    ];
    prop_oneof![
        1 => Just(None),
        3 => (op, grouping).prop_map(Some),
    ]
}

/// Writes of one series: (gap to the previous timestamp in s, value); a gap of 0 rewrites
/// the timestamp (last write wins).
fn writes() -> impl Strategy<Value = Vec<(i64, i32)>> {
    proptest::collection::vec((0i64..40, -20i32..60), 0..120)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    /// Random series (spread over chunks, sealed heads and live heads, with rewrites),
    /// random ranges, steps, windows, functions and aggregations: the engine's answer equals
    /// the reference evaluation over the raw points.
    #[test]
    fn range_queries_match_the_reference(
        series in proptest::collection::vec(writes(), 1..6),
        flush_after in 0usize..150,
        flush_at_end in any::<bool>(),
        start in -100i64..2500,
        len in 0i64..3000,
        step in 1i64..400,
        window in 1i64..600,
        function in function(),
        aggregation in aggregation(),
    ) {
        let q = query(start, len, step, window, function, aggregation);
        check(&series, flush_after, flush_at_end, &q)?;
    }

    /// `count` over windows of chunks alone (everything flushed): the same answers as the
    /// reference.
    #[test]
    fn counts_over_chunks_match_the_reference(
        series in proptest::collection::vec(writes(), 1..4),
        start in -100i64..2500,
        len in 0i64..3000,
        step in 1i64..400,
        window in 1i64..3000,
    ) {
        let q = query(start, len, step, window, Some(RangeFunction::Count), None);
        check(&series, usize::MAX, true, &q)?;
    }
}

fn query(
    start: i64,
    len: i64,
    step: i64,
    window: i64,
    function: Option<RangeFunction>,
    aggregation: Option<(Aggregation, Grouping)>,
) -> RangeQuery {
    RangeQuery {
        matchers: vec![LabelMatcher::metric("m")],
        start: start * 1000,
        end: (start + len) * 1000,
        step: step * 1000,
        function,
        window: window * 1000,
        aggregation,
        limits: QueryLimits::default(),
    }
}

/// Writes the series (interleaved, flushing to chunks after `flush_after` rounds and, if
/// `flush_at_end`, after the last), runs `q` and compares with the reference.
fn check(
    series: &[Vec<(i64, i32)>],
    flush_after: usize,
    flush_at_end: bool,
    q: &RangeQuery,
) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = open(dir.path(), 16).await;
        let mut truth: BTreeMap<usize, BTreeMap<i64, f64>> = BTreeMap::new();
        let longest = series.iter().map(Vec::len).max().unwrap_or(0);
        let mut clocks = vec![0i64; series.len()];
        for n in 0..longest {
            if n == flush_after {
                db.flush().await.expect("flush");
            }
            for (i, s) in series.iter().enumerate() {
                let Some(&(gap, v)) = s.get(n) else { continue };
                clocks[i] += gap * 1000;
                let v = f64::from(v) / 4.0;
                db.insert(&labels(i), clocks[i], v).await.expect("insert");
                truth.entry(i).or_default().insert(clocks[i], v);
            }
        }
        if flush_at_end {
            // Everything in chunks: the paths that read chunks alone (and count from chunk
            // headers) are taken.
            db.flush().await.expect("flush");
        }
        let got = db.range_query(q).await.expect("query");
        let want = reference(q, &truth).await;
        let got_map: BTreeMap<ResultLabels, BTreeMap<i64, f64>> = got
            .series
            .iter()
            .map(|s| {
                (
                    s.labels.clone(),
                    s.timestamps
                        .iter()
                        .copied()
                        .zip(s.values.iter().copied())
                        .collect(),
                )
            })
            .collect();
        prop_assert_eq!(got_map.len(), got.series.len(), "result labels are unique");
        prop_assert_eq!(
            got_map.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "query {:?}",
            q
        );
        for (labels, w) in &want {
            let g = &got_map[labels];
            prop_assert_eq!(
                g.keys().collect::<Vec<_>>(),
                w.keys().collect::<Vec<_>>(),
                "{:?}",
                labels
            );
            for (t, wv) in w {
                let gv = g[t];
                prop_assert!(
                    close_enough(gv, *wv),
                    "{:?} at {}: got {} want {} ({:?})",
                    labels,
                    t,
                    gv,
                    wv,
                    q
                );
            }
        }
        db.close().await.expect("close");
        Ok(())
    })
}

// ---------------------------------------------------------------- bad input and limits

async fn small_db(dir: &std::path::Path) -> TimeSeriesDB {
    let db = open(dir, 64).await;
    for i in 0..4 {
        let points: Vec<(i64, f64)> = (0..100).map(|k| (k * 10_000, k as f64)).collect();
        db.insert_series(&labels(i), &points).await.expect("insert");
    }
    db
}

#[tokio::test]
async fn unknown_series_or_label_gives_an_empty_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = small_db(dir.path()).await;
    for matchers in [
        vec![LabelMatcher::metric("absent")],
        vec![LabelMatcher::equal("host", "h99")],
        vec![LabelMatcher::equal("no_such_label", "x")],
    ] {
        let q = RangeQuery::new(matchers, 0, 1_000_000, 10_000)
            .with_aggregation(Aggregation::Sum, Grouping::All);
        let r = db
            .range_query(&q)
            .await
            .expect("an empty answer, not an error");
        assert!(r.series.is_empty(), "{r:?}");
        assert_eq!(r.stats.series, 0);
    }
    db.close().await.expect("close");
}

#[tokio::test]
async fn inverted_range_and_zero_step_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = small_db(dir.path()).await;
    let m = vec![LabelMatcher::metric("m")];
    let err = db
        .range_query(&RangeQuery::new(m.clone(), 10, 5, 1))
        .await
        .expect_err("inverted range");
    assert!(
        matches!(&err, Error::InvalidInput { reason } if reason.contains("after its end")),
        "{err}"
    );
    let err = db
        .range_query(&RangeQuery::new(m.clone(), 0, 5, 0))
        .await
        .expect_err("zero step");
    assert!(
        matches!(&err, Error::InvalidInput { reason } if reason.contains("step")),
        "{err}"
    );
    let err = db
        .range_query(&RangeQuery::new(m, 0, 5, 1).with_function(RangeFunction::Avg, 0))
        .await
        .expect_err("zero window");
    assert!(
        matches!(&err, Error::InvalidInput { reason } if reason.contains("window")),
        "{err}"
    );
    db.close().await.expect("close");
}

#[tokio::test]
async fn queries_over_the_limits_are_refused_naming_the_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = small_db(dir.path()).await;
    db.flush().await.expect("flush");
    let m = vec![LabelMatcher::new("host", MatchOp::RegexMatch, "h.*").expect("regex")];
    let base = RangeQuery::new(m, 0, 1_000_000, 10_000);
    let limited = |limits| base.clone().with_limits(limits);
    let err = db
        .range_query(&limited(QueryLimits {
            max_series: 3,
            ..QueryLimits::default()
        }))
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
    assert!(err.to_string().contains("the limit is 3"), "{err}");
    let err = db
        .range_query(&limited(QueryLimits {
            max_points: 250,
            ..QueryLimits::default()
        }))
        .await
        .expect_err("400 points > 250");
    assert!(
        matches!(err, Error::LimitExceeded { what, limit: 250, .. } if what.contains("points")),
        "{err}"
    );
    let err = db
        .range_query(&limited(QueryLimits {
            max_steps: 10,
            ..QueryLimits::default()
        }))
        .await
        .expect_err("101 steps > 10");
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                requested: 101,
                limit: 10,
                ..
            }
        ),
        "{err}"
    );
    // Within the limits the same query answers. PromQL counts what is held at once: the
    // selector's 404 values at the 101 steps (evaluated by the database), the 404 result
    // values, and the 4 of the step being evaluated.
    let ok = db
        .range_query(&limited(QueryLimits {
            max_series: 4,
            max_points: 400,
            max_steps: 101,
            max_samples: 812,
        }))
        .await
        .expect("within limits");
    assert_eq!(ok.series.len(), 4);
    db.close().await.expect("close");
}

#[tokio::test]
async fn only_chunks_overlapping_the_range_are_decoded_and_heads_are_visible() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = open(dir.path(), 10).await;
    let l = labels(0);
    let points: Vec<(i64, f64)> = (0..100).map(|k| (k * 1000, k as f64)).collect();
    db.insert_series(&l, &points).await.expect("insert");
    db.flush().await.expect("flush"); // 10 chunks of 10 points
    db.insert(&l, 100_000, 100.0)
        .await
        .expect("newest point, in the head");
    let q = RangeQuery::new(
        vec![LabelMatcher::equal("host", "h0")],
        25_000,
        100_000,
        75_000,
    )
    .with_function(RangeFunction::Count, 10_000);
    let r = db.range_query(&q).await.expect("query");
    // The read range is [15 s, 100 s]: the chunks of 10..19 s up to 90..99 s overlap it, the
    // chunk of 0..9 s does not; 100 s comes from the head. Windows are PromQL's, [t - 10 s, t]:
    // 11 points each.
    assert_eq!(r.stats.chunks_read, 9);
    assert_eq!(r.series.len(), 1);
    assert_eq!(r.series[0].timestamps, vec![25_000, 100_000]);
    assert_eq!(r.series[0].values, vec![11.0, 11.0]);
    let narrow = RangeQuery::new(vec![LabelMatcher::equal("host", "h0")], 35_000, 35_000, 1)
        .with_function(RangeFunction::Last, 5_000);
    let r = db.range_query(&narrow).await.expect("query");
    assert_eq!(
        r.stats.chunks_read, 1,
        "only the chunk of 30..39 s overlaps [30 s, 35 s]"
    );
    assert_eq!(r.series[0].values, vec![35.0]);

    // Everything in chunks: a count over all of them.
    db.flush().await.expect("flush");
    let count = RangeQuery::new(vec![LabelMatcher::equal("host", "h0")], 100_000, 100_000, 1)
        .with_function(RangeFunction::Count, 100_001)
        .with_aggregation(Aggregation::Sum, Grouping::All);
    let r = db.range_query(&count).await.expect("query");
    assert_eq!(r.series[0].values, vec![101.0]);
    assert_eq!(r.stats.points_read, 101, "{:?}", r.stats);
    let cut = count.clone().with_function(RangeFunction::Count, 95_000);
    let r = db.range_query(&cut).await.expect("query");
    assert_eq!(r.series[0].values, vec![96.0]);
    db.close().await.expect("close");
}
