//! Prints the parse errors of a few broken queries.

fn main() {
    let opts = tsdb_promql::EngineOptions::default();
    for q in std::env::args().skip(1) {
        match tsdb_promql::parse(&q, &opts) {
            Ok(_) => println!("{q:?}: ok"),
            Err(e) => println!("{q:?}: {e}"),
        }
    }
}
