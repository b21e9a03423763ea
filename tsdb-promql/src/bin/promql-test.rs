//! Runs PromQL test scripts: `promql-test <files>`; exits 1 when any case fails.

use tsdb_promql::EngineOptions;
use tsdb_promql::testscript::run_script;

fn main() {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: promql-test <file.test>...");
        std::process::exit(2);
    }
    let (mut passed, mut failed) = (0, 0);
    for f in &files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{f}: cannot read: {e}");
                failed += 1;
                continue;
            }
        };
        let r = run_script(&text, &EngineOptions::default());
        println!("{f}: {r}");
        passed += r.passed;
        failed += r.failed;
    }
    println!("total: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
