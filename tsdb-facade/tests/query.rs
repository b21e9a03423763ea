//! The query engine against a straightforward reference evaluation over the raw points, and
//! its handling of bad input and limits.

use std::collections::BTreeMap;

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

/// The reference range function: each definition written out plainly over the window.
fn reference_function(f: RangeFunction, ts: &[i64], vs: &[f64], t: i64, w: i64) -> Option<f64> {
    let n = vs.len();
    if n == 0 {
        return None;
    }
    let mean = vs.iter().sum::<f64>() / n as f64;
    let var = vs.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
    let counter_increase = || {
        let mut inc = 0.0;
        for i in 1..n {
            inc += if vs[i] < vs[i - 1] {
                vs[i]
            } else {
                vs[i] - vs[i - 1]
            };
        }
        inc
    };
    let extrapolate = |change: f64, counter: bool, per_second: bool| -> Option<f64> {
        if n < 2 || ts[n - 1] == ts[0] {
            return None;
        }
        let sampled = (ts[n - 1] - ts[0]) as f64 / 1e3;
        let avg_gap = sampled / (n - 1) as f64;
        let mut to_start = (ts[0] - (t - w)) as f64 / 1e3;
        let to_end = (t - ts[n - 1]) as f64 / 1e3;
        if counter && change > 0.0 && vs[0] >= 0.0 {
            to_start = to_start.min(sampled * vs[0] / change);
        }
        let grow = |d: f64| if d < avg_gap * 1.1 { d } else { avg_gap / 2.0 };
        let covered = sampled + grow(to_start) + grow(to_end);
        let total = change * covered / sampled;
        Some(if per_second {
            total / (w as f64 / 1e3)
        } else {
            total
        })
    };
    match f {
        RangeFunction::Avg => Some(mean),
        RangeFunction::Min => vs.iter().copied().reduce(f64::min),
        RangeFunction::Max => vs.iter().copied().reduce(f64::max),
        RangeFunction::Sum => Some(vs.iter().sum()),
        RangeFunction::Count => Some(n as f64),
        RangeFunction::First => Some(vs[0]),
        RangeFunction::Last => Some(vs[n - 1]),
        RangeFunction::Stddev => Some(var.sqrt()),
        RangeFunction::Stdvar => Some(var),
        RangeFunction::Quantile(q) => Some(reference_quantile(q, vs.to_vec())),
        RangeFunction::Rate => extrapolate(counter_increase(), true, true),
        RangeFunction::Increase => extrapolate(counter_increase(), true, false),
        RangeFunction::Delta => extrapolate(vs[n - 1] - vs[0], false, false),
        RangeFunction::Irate => {
            if n < 2 {
                return None;
            }
            let (a, b) = (vs[n - 2], vs[n - 1]);
            let inc = if b < a { b } else { b - a };
            Some(inc / ((ts[n - 1] - ts[n - 2]) as f64 / 1e3))
        }
        RangeFunction::Changes => Some((1..n).filter(|&i| vs[i] != vs[i - 1]).count() as f64),
        RangeFunction::Resets => Some((1..n).filter(|&i| vs[i] < vs[i - 1]).count() as f64),
    }
}

fn reference_quantile(q: f64, mut v: Vec<f64>) -> f64 {
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN in tests"));
    let rank = q * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (rank - rank.floor())
}

/// A series' labels and its values by step.
type Evaluated = (Labels, BTreeMap<i64, f64>);

/// Evaluates the query over the final (last-write-wins) points of each series.
fn reference(
    q: &RangeQuery,
    series: &BTreeMap<usize, BTreeMap<i64, f64>>,
) -> BTreeMap<ResultLabels, BTreeMap<i64, f64>> {
    let mut per_series: Vec<Evaluated> = Vec::new();
    for (&i, points) in series {
        let mut out = BTreeMap::new();
        let mut t = q.start;
        while t <= q.end {
            let window: Vec<(i64, f64)> = points
                .range(t - q.window + 1..=t)
                .map(|(&t, &v)| (t, v))
                .collect();
            let ts: Vec<i64> = window.iter().map(|p| p.0).collect();
            let vs: Vec<f64> = window.iter().map(|p| p.1).collect();
            let v = match q.function {
                None => vs.last().copied(),
                Some(f) => reference_function(f, &ts, &vs, t, q.window),
            };
            if let Some(v) = v {
                out.insert(t, v);
            }
            t += q.step;
        }
        per_series.push((labels(i), out));
    }
    let own = |l: &Labels| -> ResultLabels {
        l.iter()
            .filter(|x| q.function.is_none() || x.name != "__name__")
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect()
    };
    let Some((op, grouping)) = &q.aggregation else {
        return per_series
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(l, v)| (own(l), v.clone()))
            .collect();
    };
    let mut groups: BTreeMap<ResultLabels, Vec<&Evaluated>> = BTreeMap::new();
    for s in &per_series {
        let key: ResultLabels = match grouping {
            Grouping::All => ResultLabels::new(),
            Grouping::By(names) => names
                .iter()
                .filter_map(|n| s.0.get(n).map(|v| (n.clone(), v.to_owned())))
                .collect(),
            Grouping::Without(names) => {
                s.0.iter()
                    .filter(|l| l.name != "__name__" && !names.contains(&l.name))
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect()
            }
        };
        groups.entry(key).or_default().push(s);
    }
    let mut result = BTreeMap::new();
    for (key, members) in groups {
        let mut t = q.start;
        while t <= q.end {
            let mut at: Vec<(&Labels, f64)> = members
                .iter()
                .filter_map(|(l, v)| v.get(&t).map(|&x| (l, x)))
                .collect();
            t += q.step;
            if at.is_empty() {
                continue;
            }
            let t = t - q.step;
            let vals: Vec<f64> = at.iter().map(|x| x.1).collect();
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let var = vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            let v = match op {
                Aggregation::Sum => vals.iter().sum(),
                Aggregation::Avg => mean,
                Aggregation::Min => vals.iter().copied().fold(f64::INFINITY, f64::min),
                Aggregation::Max => vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Aggregation::Count => n,
                Aggregation::Stddev => var.sqrt(),
                Aggregation::Stdvar => var,
                Aggregation::Quantile(q) => reference_quantile(*q, vals),
                Aggregation::Topk(k) | Aggregation::Bottomk(k) => {
                    let top = matches!(op, Aggregation::Topk(_));
                    at.sort_by(|a, b| {
                        let c = a.1.partial_cmp(&b.1).expect("no NaN");
                        (if top { c.reverse() } else { c }).then(a.0.cmp(b.0))
                    });
                    for (l, v) in at.iter().take(*k) {
                        result
                            .entry(own(l))
                            .or_insert_with(BTreeMap::new)
                            .insert(t, *v);
                    }
                    continue;
                }
            };
            result
                .entry(key.clone())
                .or_insert_with(BTreeMap::new)
                .insert(t, v);
        }
    }
    result
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
        Just(Some(RangeFunction::First)),
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

    /// `count` over windows of chunks alone is answered from the chunk headers where a window
    /// holds whole chunks: the same answers as the reference.
    #[test]
    fn counts_from_chunk_headers_match_the_reference(
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
        let want = reference(q, &truth);
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
    // Within the limits the same query answers.
    let ok = db
        .range_query(&limited(QueryLimits {
            max_series: 4,
            max_points: 400,
            max_steps: 101,
            max_samples: 404,
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
    // The read range is (15 s, 100 s]: the chunks of 10..19 s up to 90..99 s overlap it, the
    // chunk of 0..9 s does not; 100 s comes from the head.
    assert_eq!(r.stats.chunks_read, 9);
    assert_eq!(r.series.len(), 1);
    assert_eq!(r.series[0].timestamps, vec![25_000, 100_000]);
    assert_eq!(r.series[0].values, vec![10.0, 10.0]);
    let narrow = RangeQuery::new(vec![LabelMatcher::equal("host", "h0")], 35_000, 35_000, 1)
        .with_function(RangeFunction::Last, 5_000);
    let r = db.range_query(&narrow).await.expect("query");
    assert_eq!(
        r.stats.chunks_read, 1,
        "only the chunk of 30..39 s overlaps (30 s, 35 s]"
    );
    assert_eq!(r.series[0].values, vec![35.0]);

    // With everything in chunks, a count over windows holding whole chunks reads headers only.
    db.flush().await.expect("flush");
    let count = RangeQuery::new(vec![LabelMatcher::equal("host", "h0")], 100_000, 100_000, 1)
        .with_function(RangeFunction::Count, 100_001)
        .with_aggregation(Aggregation::Sum, Grouping::All);
    let r = db.range_query(&count).await.expect("query");
    assert_eq!(r.series[0].values, vec![101.0]);
    assert_eq!(r.stats.chunks_read, 0, "{:?}", r.stats);
    assert_eq!(r.stats.points_counted, 101);
    // A window edge inside a chunk: that chunk alone is decoded.
    let cut = count.clone().with_function(RangeFunction::Count, 95_000);
    let r = db.range_query(&cut).await.expect("query");
    assert_eq!(r.series[0].values, vec![95.0]);
    assert_eq!(r.stats.chunks_read, 1, "{:?}", r.stats);
    db.close().await.expect("close");
}
