//! The memory budget of a query: samples held at once, series, label bytes, and the size of
//! the label names and values functions make. Each limit fails the query with a typed error
//! instead of growing without bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use tsdb_core::{LabelMatcher, Labels, TimeRange};
use tsdb_promql::{
    Engine, EngineOptions, MemorySource, PromqlError, Resource, SelectLimits, SeriesData,
    SeriesSource, Value,
};

/// `series` series `m{a="x", host="h<i>"}`, one point every 15 s from 0 for `points` points.
fn source(series: usize, points: i64) -> Arc<MemorySource> {
    let s = MemorySource::new();
    for i in 0..series {
        let pts: Vec<(i64, f64)> = (0..points).map(|k| (k * 15_000, k as f64)).collect();
        let host = format!("h{i}");
        s.add(
            Labels::new("m", [("a", "x"), ("host", host.as_str())]).expect("valid"),
            &pts,
        )
        .expect("added");
    }
    Arc::new(s)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

/// The query of the fault report: 28 nested `label_replace(..., "$1$1", ...)`, each doubling
/// the value of `a` (1.1 KB of text, 2^28 times the value at the end).
fn nested_label_replace(levels: usize) -> String {
    let mut q = "m".to_owned();
    for _ in 0..levels {
        q = format!(r#"label_replace({q}, "a", "$1$1", "a", "(.*)")"#);
    }
    q
}

fn resource_of(e: &PromqlError) -> Option<Resource> {
    match e {
        PromqlError::ResourceLimit { resource, .. } => Some(*resource),
        _ => None,
    }
}

#[test]
fn nested_label_replace_fails_at_the_label_value_limit() {
    let q = nested_label_replace(28);
    assert!(q.len() > 1000, "the reported query is about 1.1 KB");
    let engine = Engine::new(source(1, 10), EngineOptions::default());
    let e = rt()
        .block_on(engine.instant_query(&q, 60_000))
        .expect_err("a doubled label value outgrows the limit");
    // "x" doubled 15 times is 32 KiB, the first value over 16 KiB: the query stops there.
    assert_eq!(
        e,
        PromqlError::ResourceLimit {
            resource: Resource::LabelValueBytes,
            requested: 32 * 1024,
            limit: Labels::MAX_VALUE_BYTES,
            context: r#"label_replace() destination "a""#.to_owned(),
        }
    );
    let text = e.to_string();
    assert!(
        text.contains("label value too long") && text.contains("32768 bytes"),
        "{text}"
    );
    // Over a range it fails at the first step too.
    let e = rt()
        .block_on(engine.range_query(&q, 0, 600_000, 15_000))
        .expect_err("range query");
    assert_eq!(resource_of(&e), Some(Resource::LabelValueBytes), "{e}");
    // Fourteen levels make a value of exactly 16 KiB, which is allowed.
    let Value::Vector(v) = rt()
        .block_on(engine.instant_query(&nested_label_replace(14), 60_000))
        .expect("16 KiB values are within the limit")
    else {
        panic!("an instant vector")
    };
    assert_eq!(v[0].metric.get("a").map(str::len), Some(16 * 1024));
}

#[test]
fn label_bytes_budget_stops_growth_when_the_value_limit_is_lifted() {
    let opts = EngineOptions::default()
        .with_max_label_value_bytes(usize::MAX)
        .with_max_label_bytes(1 << 20);
    let engine = Engine::new(source(1, 10), opts);
    let e = rt()
        .block_on(engine.instant_query(&nested_label_replace(28), 60_000))
        .expect_err("the total label bytes outgrow 1 MiB");
    match &e {
        PromqlError::ResourceLimit {
            resource: Resource::LabelBytes,
            requested,
            limit,
            ..
        } => {
            assert_eq!(*limit, 1 << 20);
            // Stopped at the first level over the budget, not at 2^28 bytes.
            assert!(*requested < 4 << 20, "{requested}");
        }
        other => panic!("expected the label bytes budget, got {other}"),
    }
    assert!(
        e.to_string().contains("too many label bytes in memory"),
        "{e}"
    );
}

#[test]
fn big_labels_over_many_series_are_bounded_by_the_label_bytes_budget() {
    // 200 series, each given a 10 KB label: 2 MB in all, over a 1 MiB budget.
    let engine = Engine::new(
        source(200, 10),
        EngineOptions::default().with_max_label_bytes(1 << 20),
    );
    let wide = format!(
        r#"label_join(label_replace(m, "big", "{}", "", ""), "big2", "", "big")"#,
        "y".repeat(10_000)
    );
    let e = rt()
        .block_on(engine.instant_query(&wide, 60_000))
        .expect_err("2 MB of labels");
    assert_eq!(resource_of(&e), Some(Resource::LabelBytes), "{e}");
    // label_join measures the joined value before building it.
    let joined = r#"label_join(label_replace(m, "b", "$1$1$1$1$1$1$1$1$1$1", "a", "(.*)"), "c", "", "b", "b")"#;
    let small = Engine::new(
        source(1, 10),
        EngineOptions::default().with_max_label_value_bytes(15),
    );
    let e = rt()
        .block_on(small.instant_query(joined, 60_000))
        .expect_err("20 bytes joined over 15");
    assert_eq!(
        e,
        PromqlError::ResourceLimit {
            resource: Resource::LabelValueBytes,
            requested: 20,
            limit: 15,
            context: r#"label_join() destination "c""#.to_owned(),
        }
    );
}

#[test]
fn created_label_names_are_bounded() {
    let engine = Engine::new(source(1, 10), EngineOptions::default());
    let long = "n".repeat(Labels::MAX_NAME_BYTES + 1);
    for q in [
        format!(r#"label_replace(m, "{long}", "v", "", "")"#),
        format!(r#"label_join(m, "{long}", ",", "a")"#),
        format!(r#"count_values("{long}", m)"#),
    ] {
        let e = rt()
            .block_on(engine.instant_query(&q, 60_000))
            .expect_err("name over 1 KiB");
        assert!(
            matches!(
                e,
                PromqlError::ResourceLimit {
                    resource: Resource::LabelNameBytes,
                    requested: 1025,
                    limit: 1024,
                    ..
                }
            ),
            "{e}"
        );
    }
}

#[test]
fn max_samples_refuses_a_query_holding_too_many_samples() {
    // 10 series of 41 points: a range query of `m` holds the 410 fetched points plus 10
    // samples for each of its 41 steps.
    let engine = Engine::new(
        source(10, 41),
        EngineOptions::default().with_max_samples(500),
    );
    let e = rt()
        .block_on(engine.range_query("m", 0, 600_000, 15_000))
        .expect_err("410 fetched + 410 in the result > 500");
    assert!(
        matches!(
            e,
            PromqlError::ResourceLimit {
                resource: Resource::Samples,
                limit: 500,
                requested: 501..,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains(
            "query processing would load too many samples into memory in query execution"
        ),
        "{e}"
    );
    // The database's error keeps the kind and the numbers.
    let core = tsdb_core::Error::from(e);
    assert!(
        matches!(
            core,
            tsdb_core::Error::LimitExceeded { what, limit: 500, .. } if what.contains("samples")
        ),
        "{core}"
    );
    // Fetching alone can be over the budget: refused before evaluation.
    let tiny = Engine::new(
        source(10, 41),
        EngineOptions::default().with_max_samples(100),
    );
    let e = rt()
        .block_on(tiny.instant_query("count_over_time(m[10m])", 600_000))
        .expect_err("410 points fetched > 100");
    assert_eq!(resource_of(&e), Some(Resource::Samples), "{e}");
    // With room for both the same query answers.
    let roomy = Engine::new(
        source(10, 41),
        EngineOptions::default().with_max_samples(1000),
    );
    let series = rt()
        .block_on(roomy.range_query("m", 0, 600_000, 15_000))
        .expect("820 samples fit in 1000");
    assert_eq!(series.len(), 10);
}

#[test]
fn samples_are_counted_while_held_not_summed_over_steps() {
    // `sum(m)` over 41 steps evaluates 41 vectors of 10 samples, 451 samples in all beyond
    // the 410 fetched; it never holds more than 410 + 41 + 11 of them.
    let engine = Engine::new(
        source(10, 41),
        EngineOptions::default().with_max_samples(470),
    );
    let series = rt()
        .block_on(engine.range_query("sum(m)", 0, 600_000, 15_000))
        .expect("held at once: 410 fetched, 41 results, one step's 11");
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].points.len(), 41);
}

#[test]
fn subquery_results_count_as_they_accumulate() {
    // The subquery holds 10 series x 41 steps = 410 samples besides the 410 fetched.
    let q = "count_over_time(m[10m:15s])";
    let small = Engine::new(
        source(10, 41),
        EngineOptions::default().with_max_samples(700),
    );
    let e = rt()
        .block_on(small.instant_query(q, 600_000))
        .expect_err("820 > 700");
    assert_eq!(resource_of(&e), Some(Resource::Samples), "{e}");
    let enough = Engine::new(
        source(10, 41),
        EngineOptions::default().with_max_samples(900),
    );
    let Value::Vector(v) = rt()
        .block_on(enough.instant_query(q, 600_000))
        .expect("fits")
    else {
        panic!("an instant vector")
    };
    assert!(v.iter().all(|s| s.value == 41.0), "{v:?}");
}

#[test]
fn max_series_bounds_fetched_and_intermediate_series() {
    let engine = Engine::new(source(10, 10), EngineOptions::default().with_max_series(5));
    let e = rt()
        .block_on(engine.instant_query("sum(m)", 60_000))
        .expect_err("10 series > 5");
    assert!(
        matches!(
            e,
            PromqlError::ResourceLimit {
                resource: Resource::Series,
                limit: 5,
                ..
            }
        ),
        "{e}"
    );
    // Series a query makes count too: one series per inner step of the subquery here.
    let made = r#"count_over_time(count_values("t", vector(time()))[2m:10s])"#;
    let e = rt()
        .block_on(engine.instant_query(made, 120_000))
        .expect_err("13 series made > 5");
    assert_eq!(resource_of(&e), Some(Resource::Series), "{e}");
    let roomy = Engine::new(source(2, 10), EngineOptions::default().with_max_series(13));
    let Value::Vector(v) = rt()
        .block_on(roomy.instant_query(made, 120_000))
        .expect("13 series fit")
    else {
        panic!("an instant vector")
    };
    assert_eq!(v.len(), 13);
}

#[test]
fn the_processed_samples_bound_is_separate_from_the_memory_budget() {
    let engine = Engine::new(
        source(10, 41),
        EngineOptions::default().with_max_processed_samples(900),
    );
    let e = rt()
        .block_on(engine.range_query("sum(m)", 0, 600_000, 15_000))
        .expect_err("984 samples processed > 900");
    assert!(
        matches!(
            e,
            PromqlError::LimitExceeded {
                what: "samples processed",
                limit: 900,
                ..
            }
        ),
        "{e}"
    );
}

/// A source that only implements `select`, and records what it was asked.
struct Plain {
    inner: Arc<MemorySource>,
    calls: AtomicUsize,
}

#[async_trait]
impl SeriesSource for Plain {
    async fn select(
        &self,
        matchers: &[LabelMatcher],
        range: TimeRange,
    ) -> tsdb_core::Result<Vec<SeriesData>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.select(matchers, range).await
    }
}

#[test]
fn sources_get_the_remaining_budget_and_the_default_checks_it() {
    let plain = Arc::new(Plain {
        inner: source(10, 41),
        calls: AtomicUsize::new(0),
    });
    let engine = Engine::new(
        plain.clone(),
        EngineOptions::default().with_max_samples(300),
    );
    let e = rt()
        .block_on(engine.instant_query("m[10m]", 600_000))
        .expect_err("410 points > 300");
    assert!(
        matches!(
            e,
            PromqlError::ResourceLimit {
                resource: Resource::Samples,
                requested: 410,
                limit: 300,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(plain.calls.load(Ordering::Relaxed), 1);
    // The second selector gets what the first left: 410 + 410 > 600.
    let engine = Engine::new(
        plain.clone(),
        EngineOptions::default().with_max_samples(600),
    );
    let e = rt()
        .block_on(
            engine.instant_query("count_over_time(m[10m]) + count_over_time(m[10m])", 600_000),
        )
        .expect_err("820 > 600");
    assert!(
        matches!(
            e,
            PromqlError::ResourceLimit {
                resource: Resource::Samples,
                requested: 820,
                ..
            }
        ),
        "{e}"
    );
    // The limits a source is given.
    let limits = SelectLimits::new(5, 2);
    assert!(limits.check(2, 5).is_ok());
    assert!(matches!(
        limits.check(3, 0),
        Err(tsdb_core::Error::LimitExceeded {
            what: SelectLimits::SERIES,
            ..
        })
    ));
    assert!(matches!(
        limits.check(0, 6),
        Err(tsdb_core::Error::LimitExceeded {
            what: SelectLimits::POINTS,
            ..
        })
    ));
}

#[test]
fn everyday_queries_pass_within_the_default_budget() {
    let engine = Engine::new(source(10, 41), EngineOptions::default());
    let rt = rt();
    let Value::Vector(v) = rt
        .block_on(engine.instant_query(
            r#"sum by (a) (label_replace(rate(m[5m]), "a", "$1-$1", "host", "(.*)"))"#,
            600_000,
        ))
        .expect("runs")
    else {
        panic!("an instant vector")
    };
    assert_eq!(v.len(), 10);
    assert!(
        v.iter().all(|s| (s.value - 1.0 / 15.0).abs() < 1e-9),
        "{v:?}"
    );
    assert!(v.iter().any(|s| s.metric.get("a") == Some("h3-h3")));
    let series = rt
        .block_on(engine.range_query(
            r#"label_join(m, "j", "/", "a", "host") * 2"#,
            0,
            600_000,
            60_000,
        ))
        .expect("runs");
    assert_eq!(series.len(), 10);
    assert!(series.iter().all(|s| s.points.len() == 11));
    assert_eq!(series[0].metric.get("j"), Some("x/h0"));
    let Value::Vector(v) = rt
        .block_on(engine.instant_query("max_over_time(sum(m)[10m:1m])", 600_000))
        .expect("runs")
    else {
        panic!("an instant vector")
    };
    assert_eq!(v[0].value, 400.0);
}
