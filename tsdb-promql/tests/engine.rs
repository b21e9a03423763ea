//! The public API: instant and range queries, errors and limits.

use std::sync::Arc;

use tsdb_core::Labels;
use tsdb_promql::{Engine, EngineOptions, MemorySource, PromqlError, Resource, Value};

fn source() -> Arc<MemorySource> {
    let s = MemorySource::new();
    for (inst, step) in [("0", 1.0), ("1", 2.0)] {
        let pts: Vec<(i64, f64)> = (0..=20).map(|i| (i * 60_000, i as f64 * step)).collect();
        s.add(Labels::new("m", [("instance", inst)]).expect("valid"), &pts)
            .expect("added");
    }
    Arc::new(s)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

#[test]
fn range_query_evaluates_every_step_and_sorts_series() {
    let engine = Engine::new(source(), EngineOptions::default());
    let series = rt()
        .block_on(engine.range_query("m * 10", 0, 180_000, 60_000))
        .expect("query runs");
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].metric.to_string(), r#"{instance="0"}"#);
    assert_eq!(
        series[1].points,
        vec![(0, 0.0), (60_000, 20.0), (120_000, 40.0), (180_000, 60.0)]
    );
}

#[test]
fn at_start_and_end_refer_to_the_range_of_the_query() {
    let engine = Engine::new(source(), EngineOptions::default());
    let rt = rt();
    let start = rt
        .block_on(engine.range_query(r#"m{instance="1"} @ start()"#, 120_000, 240_000, 60_000))
        .expect("query runs");
    assert!(start[0].points.iter().all(|p| p.1 == 4.0), "{start:?}");
    let end = rt
        .block_on(engine.range_query(r#"m{instance="1"} @ end()"#, 120_000, 240_000, 60_000))
        .expect("query runs");
    assert!(end[0].points.iter().all(|p| p.1 == 8.0), "{end:?}");
}

#[test]
fn scalar_range_query_has_one_unlabelled_series() {
    let engine = Engine::new(source(), EngineOptions::default());
    let series = rt()
        .block_on(engine.range_query("time()", 0, 120_000, 60_000))
        .expect("query runs");
    assert_eq!(series.len(), 1);
    assert!(series[0].metric.is_empty());
    assert_eq!(
        series[0].points,
        vec![(0, 0.0), (60_000, 60.0), (120_000, 120.0)]
    );
}

#[test]
fn range_query_rejects_bad_steps_and_range_vectors() {
    let engine = Engine::new(source(), EngineOptions::default());
    let rt = rt();
    assert!(matches!(
        rt.block_on(engine.range_query("m", 0, 60_000, 0)),
        Err(PromqlError::Execution(_))
    ));
    assert!(matches!(
        rt.block_on(engine.range_query("m", 60_000, 0, 1000)),
        Err(PromqlError::Execution(_))
    ));
    let e = rt
        .block_on(engine.range_query("m[5m]", 0, 60_000, 1000))
        .expect_err("a range vector cannot be range-queried");
    assert!(e.to_string().contains("range vector"), "{e}");
    assert!(matches!(
        rt.block_on(engine.range_query("m", 0, 1_000_000_000, 1)),
        Err(PromqlError::LimitExceeded {
            what: "range query steps",
            ..
        })
    ));
}

#[test]
fn instant_query_of_a_range_selector_is_a_matrix() {
    let engine = Engine::new(source(), EngineOptions::default());
    let v = rt()
        .block_on(engine.instant_query(r#"m{instance="0"}[2m]"#, 300_000))
        .expect("query runs");
    let Value::Matrix(m) = v else {
        panic!("expected a matrix, got {v:?}")
    };
    assert_eq!(
        m[0].points,
        vec![(180_000, 3.0), (240_000, 4.0), (300_000, 5.0)]
    );
}

#[test]
fn parse_errors_name_the_position() {
    let engine = Engine::new(source(), EngineOptions::default());
    let rt = rt();
    match rt.block_on(engine.instant_query("sum(rate(m[5m])", 0)) {
        Err(PromqlError::Parse { position, .. }) => assert_eq!(position, Some(3)),
        other => panic!("expected a parse error, got {other:?}"),
    }
    match rt.block_on(engine.instant_query("m + $", 0)) {
        Err(PromqlError::Parse { position, message }) => {
            assert_eq!(position, Some(4), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    for (q, pos, expected) in [
        ("foo bar", 4, "expected an operator"),
        ("1 +", 3, "expected more of the expression"),
        ("m{a=}", 4, "expected a string"),
        ("sum by (a) m", 11, "expected an operator"),
    ] {
        match rt.block_on(engine.instant_query(q, 0)) {
            Err(PromqlError::Parse { position, message }) => {
                assert_eq!(position, Some(pos), "{q}: {message}");
                assert!(message.contains(expected), "{q}: {message}");
            }
            other => panic!("{q}: expected a parse error, got {other:?}"),
        }
    }
    let e = rt
        .block_on(engine.instant_query("m{", 0))
        .expect_err("unclosed brace");
    let core: tsdb_core::Error = e.into();
    assert!(
        matches!(core, tsdb_core::Error::InvalidInput { .. }),
        "{core}"
    );
}

#[test]
fn deep_or_long_queries_are_refused_before_evaluation() {
    let engine = Engine::new(source(), EngineOptions::default());
    let rt = rt();
    let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
    assert!(matches!(
        rt.block_on(engine.instant_query(&deep, 0)),
        Err(PromqlError::TooComplex { .. })
    ));
    let chain = vec!["m"; 400].join(" + ");
    assert!(matches!(
        rt.block_on(engine.instant_query(&chain, 0)),
        Err(PromqlError::TooComplex {
            what: "expression depth",
            ..
        })
    ));
    let ops = vec!["(m + m)"; 600].join(" * ");
    assert!(matches!(
        rt.block_on(engine.instant_query(&ops, 0)),
        Err(PromqlError::TooComplex {
            what: "number of operators",
            ..
        })
    ));
    let long = "1+".repeat(20_000) + "1";
    assert!(matches!(
        rt.block_on(engine.instant_query(&long, 0)),
        Err(PromqlError::TooComplex {
            what: "query length in bytes",
            ..
        })
    ));
}

#[test]
fn sample_and_subquery_limits_are_enforced() {
    let rt = rt();
    let small = Engine::new(source(), EngineOptions::default().with_max_samples(10));
    let e = rt
        .block_on(small.instant_query("count_over_time(m[20m])", 1_200_000))
        .expect_err("42 points exceed 10");
    assert!(
        matches!(
            e,
            PromqlError::ResourceLimit {
                resource: Resource::Samples,
                limit: 10,
                ..
            }
        ),
        "{e}"
    );
    let few_steps = Engine::new(
        source(),
        EngineOptions::default().with_max_subquery_steps(100),
    );
    let e = rt
        .block_on(few_steps.instant_query("max_over_time(m[1d:1s])", 1_200_000))
        .expect_err("86400 steps exceed 100");
    assert!(
        matches!(
            e,
            PromqlError::LimitExceeded {
                what: "subquery evaluation steps",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn many_to_many_matching_is_an_error() {
    let engine = Engine::new(source(), EngineOptions::default());
    let e = rt()
        .block_on(engine.instant_query("m + on() m", 60_000))
        .expect_err("two series on each side of on()");
    assert!(e.to_string().contains("many-to-many"), "{e}");
}

#[test]
fn results_serialize_like_the_prometheus_api() {
    let engine = Engine::new(source(), EngineOptions::default());
    let v = rt()
        .block_on(engine.instant_query(r#"m{instance="1"} / 0"#, 60_000))
        .expect("query runs");
    let json = serde_json::to_string(&v).expect("serializes");
    assert_eq!(
        json,
        r#"{"resultType":"vector","result":[{"metric":{"instance":"1"},"timestamp":60000,"value":"+Inf"}]}"#
    );
    assert_eq!(v.to_string(), r#"{instance="1"} => +Inf @[60000]"#);
}

#[test]
fn numeric_durations_out_of_range_are_parse_errors() {
    let engine = Engine::new(source(), EngineOptions::default());
    let rt = rt();
    for (q, pos) in [
        ("max_over_time(m[5m:22222222222222222222] offset 0m)", 19),
        ("m offset Inf", 9),
        ("m offset - 1e300", 11),
        ("m[NaN]", 2),
        ("m offset 0xFFFFFFFFFFFFFFFF", 9),
    ] {
        match rt.block_on(engine.instant_query(q, 0)) {
            Err(PromqlError::Parse { position, message }) => {
                assert_eq!(position, Some(pos), "{q}: {message}");
            }
            other => panic!("{q}: expected a parse error, got {other:?}"),
        }
    }
    // Text outside ASCII where the parser does not expect it.
    assert!(matches!(
        rt.block_on(engine.instant_query("Џ m", 0)),
        Err(PromqlError::Parse { .. })
    ));
    assert!(matches!(
        rt.block_on(engine.instant_query("m Џ+ Џ", 0)),
        Err(PromqlError::Parse { .. })
    ));
    // Words that only look like numbers are left to the parser.
    assert!(matches!(
        rt.block_on(engine.instant_query("quantile_over_time(5, mH[2m0x(])", 0)),
        Err(PromqlError::Parse { .. })
    ));
    // In range: accepted.
    assert!(
        rt.block_on(engine.instant_query("m offset 60", 120_000))
            .is_ok()
    );
}

#[test]
fn query_futures_can_move_between_threads() {
    // Compile-time check: the facade runs queries on a multi-threaded runtime.
    fn assert_send<T: Send>(_: &T) {}
    let engine = Engine::new(source(), EngineOptions::default());
    let f = engine.instant_query("m", 0);
    assert_send(&f);
    let g = engine.range_query("m", 0, 60_000, 60_000);
    assert_send(&g);
    drop((f, g));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .expect("runtime");
    let engine = Arc::new(engine);
    let e2 = Arc::clone(&engine);
    let v = rt
        .block_on(async move {
            tokio::spawn(async move { e2.instant_query("count(m)", 60_000).await }).await
        })
        .expect("task joins")
        .expect("query runs");
    assert_eq!(v.to_string(), "{} => 2 @[60000]");
}
