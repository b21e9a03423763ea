//! Runs every PromQL test script under `testdata/`.

use tsdb_promql::EngineOptions;
use tsdb_promql::testscript::run_script;

#[test]
fn every_testdata_script_passes() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testdata directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the project's scripts in {dir:?}"
    );
    let mut failures = Vec::new();
    let mut passed = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable script");
        let r = run_script(&text, &EngineOptions::default());
        passed += r.passed;
        if r.failed > 0 {
            failures.push(format!("{}: {r}", f.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(passed > 100, "only {passed} cases ran");
}
