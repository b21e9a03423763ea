//! Times each query given in a file (one per line) on a small in-memory source.

use tsdb_core::Labels;
use tsdb_promql::{Engine, EngineOptions, MemorySource};

fn main() {
    let source = MemorySource::new();
    for (a, s) in [("1", 1.0), ("2", 2.0)] {
        let pts: Vec<(i64, f64)> = (0..400).map(|i| (i * 15_000, i as f64 * s)).collect();
        let _ = source.add(Labels::new("m", [("a", a)]).expect("valid"), &pts);
    }
    let engine = Engine::new(source, EngineOptions::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("rt");
    let file = std::env::args().nth(1).expect("file");
    for q in std::fs::read_to_string(file).expect("read").lines() {
        let t = std::time::Instant::now();
        let r = rt.block_on(engine.instant_query(q, 6_000_000));
        let short: String = q.chars().take(60).collect();
        let res: String = format!("{r:?}").chars().take(80).collect();
        println!("{:>8.3} s  {short}  -> {res}", t.elapsed().as_secs_f64());
    }
}
