//! Arbitrary query text through parse and evaluation (instant and range) on a small
//! in-memory source: must never panic, overflow the stack or run away.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_core::Labels;
use tsdb_promql::{Engine, EngineOptions, MemorySource, STALE_NAN_BITS};

fn source() -> MemorySource {
    let s = MemorySource::new();
    for (name, labels, step) in [
        ("m", vec![("a", "1")], 1.0),
        ("m", vec![("a", "2")], -3.5),
        ("c_total", vec![("job", "x"), ("le", "0.5")], 2.0),
        ("c_total", vec![("job", "x"), ("le", "+Inf")], 4.0),
    ] {
        let mut pts: Vec<(i64, f64)> = (0..40).map(|i| (i * 15_000, i as f64 * step)).collect();
        pts.push((40 * 15_000, f64::from_bits(STALE_NAN_BITS)));
        if let Ok(l) = Labels::new(name, labels) {
            let _ = s.add(l, &pts);
        }
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let opts = EngineOptions::default()
        .with_max_samples(200_000)
        .with_max_processed_samples(200_000)
        .with_max_subquery_steps(2_000);
    let engine = Engine::new(source(), opts);
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    rt.block_on(async {
        let _ = engine.instant_query(text, 300_000).await;
        let _ = engine.range_query(text, 0, 600_000, 60_000).await;
    });
});
