//! Property tests: results against a direct computation over the raw points, and range
//! queries against instant queries at each step.

use proptest::prelude::*;
use tsdb_core::Labels;
use tsdb_promql::{Engine, EngineOptions, MemorySource, Value};

/// Up to three series of points at multiples of 15 s; some steps skipped.
fn series() -> impl Strategy<Value = Vec<Vec<(i64, f64)>>> {
    prop::collection::vec(
        prop::collection::vec(prop::option::of(-1000.0f64..1000.0), 1..60).prop_map(|vals| {
            vals.into_iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as i64 * 15_000, v)))
                .collect::<Vec<_>>()
        }),
        1..4,
    )
}

fn engine(data: &[Vec<(i64, f64)>]) -> Engine<MemorySource> {
    let source = MemorySource::new();
    for (i, pts) in data.iter().enumerate() {
        let labels = Labels::new("m", [("i", i.to_string())]).expect("valid labels");
        source.add(labels, pts).expect("added");
    }
    Engine::new(source, EngineOptions::default())
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn vector_sum(v: Value) -> Option<f64> {
    match v {
        Value::Vector(s) if s.is_empty() => None,
        Value::Vector(s) => Some(s[0].value),
        other => panic!("expected a vector, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn sum_takes_the_last_point_within_the_lookback(data in series(), t in 0i64..1_200_000) {
        let engine = engine(&data);
        let got = vector_sum(rt().block_on(engine.instant_query("sum(m)", t)).expect("query runs"));
        let latest: Vec<f64> = data
            .iter()
            .filter_map(|pts| pts.iter().rev().find(|p| p.0 <= t).filter(|p| p.0 >= t - 300_000).map(|p| p.1))
            .collect();
        let want = (!latest.is_empty()).then(|| latest.iter().sum::<f64>());
        match (got, want) {
            (None, None) => {}
            (Some(g), Some(w)) => prop_assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{g} vs {w}"),
            other => prop_assert!(false, "{other:?}"),
        }
    }

    #[test]
    fn count_and_max_over_time_cover_the_closed_range(data in series(), t in 0i64..1_200_000, r in 1i64..40) {
        let engine = engine(&data);
        let range = r * 15_000;
        let q = format!("sum(count_over_time(m[{}s]))", range / 1000);
        let got = vector_sum(rt().block_on(engine.instant_query(&q, t)).expect("query runs"));
        let n = data.iter().flatten().filter(|p| p.0 >= t - range && p.0 <= t).count();
        prop_assert_eq!(got, (n > 0).then_some(n as f64));
        let q = format!("max(max_over_time(m[{}s]))", range / 1000);
        let got = vector_sum(rt().block_on(engine.instant_query(&q, t)).expect("query runs"));
        let want = data.iter().flatten().filter(|p| p.0 >= t - range && p.0 <= t).map(|p| p.1).reduce(f64::max);
        prop_assert_eq!(got, want);
    }

    #[test]
    fn range_queries_agree_with_instant_queries(data in series(), start in 0i64..600_000, steps in 1i64..12) {
        let engine = engine(&data);
        let rt = rt();
        for q in ["rate(m[1m])", "sum by (i) (m) * 2", "max_over_time(m[2m:30s])", "m > 0"] {
            let end = start + (steps - 1) * 45_000;
            let series = rt.block_on(engine.range_query(q, start, end, 45_000)).expect("range query runs");
            for k in 0..steps {
                let t = start + k * 45_000;
                let Value::Vector(inst) = rt.block_on(engine.instant_query(q, t)).expect("instant query runs") else {
                    panic!("vector expected");
                };
                let from_range: Vec<_> = series
                    .iter()
                    .filter_map(|s| s.points.iter().find(|p| p.0 == t).map(|p| (s.metric.clone(), p.1)))
                    .collect();
                prop_assert_eq!(inst.len(), from_range.len(), "{} at {}", q, t);
                for s in inst {
                    prop_assert!(from_range.iter().any(|(m, v)| *m == s.metric && (v == &s.value || (v.is_nan() && s.value.is_nan()))), "{} at {}", q, t);
                }
            }
        }
    }
}
