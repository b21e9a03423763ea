//! The `TimeIndex` conformance kit, and a randomized comparison with the reference index.

use std::sync::Arc;

use tsdb_core::DynTimeIndex;
use tsdb_core::testkit::index::{ReferenceIndex, compare_random, run_all};
use tsdb_index_memory::MemoryTimeIndex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_index_conforms() {
    run_all(|| async { Arc::new(MemoryTimeIndex::new()) as Arc<DynTimeIndex> }).await;
}

#[tokio::test]
async fn memory_index_matches_reference_on_random_sequences() {
    for seed in 0..40 {
        compare_random(
            &MemoryTimeIndex::new(),
            &ReferenceIndex::default(),
            seed,
            1_000,
        )
        .await;
    }
}

/// Lookups over a few thousand series, where unions of many postings lists and both probe
/// strategies (per-list lookups and merged unions) come into play.
#[tokio::test]
async fn lookups_over_many_series_match_reference() {
    use tsdb_core::testkit::index::labels;
    use tsdb_core::{LabelMatcher, MatchOp, TimeIndex};
    let memory = MemoryTimeIndex::new();
    let reference = ReferenceIndex::default();
    for i in 0..3_000u64 {
        let instance = format!("host-{i}");
        let job = format!("job-{}", i % 40);
        let mut pairs = vec![("instance", instance.as_str()), ("job", job.as_str())];
        if i % 3 != 0 {
            pairs.push(("env", ["prod", "dev"][(i % 2) as usize]));
        }
        let l = labels(&format!("m{}", i % 7), &pairs);
        memory
            .register_series(l.series_id(), &l)
            .await
            .expect("register");
        reference
            .register_series(l.series_id(), &l)
            .await
            .expect("register");
    }
    let re = |n: &str, op, v: &str| LabelMatcher::new(n, op, v).expect("compiles");
    let cases: Vec<Vec<LabelMatcher>> = vec![
        vec![re("instance", MatchOp::RegexMatch, "host-1.*")],
        vec![re("instance", MatchOp::RegexMatch, ".*7.*")],
        vec![
            LabelMatcher::metric("m3"),
            re("instance", MatchOp::RegexMatch, "host-2.*"),
        ],
        vec![
            LabelMatcher::metric("m3"),
            re("job", MatchOp::RegexMatch, "job-(1|2|3).*"),
        ],
        vec![
            re("job", MatchOp::RegexMatch, "job-1.*"),
            re("instance", MatchOp::RegexNoMatch, "host-1.*"),
        ],
        vec![
            LabelMatcher::equal("job", "job-5"),
            re("instance", MatchOp::RegexNoMatch, ".*1.*"),
        ],
        vec![
            LabelMatcher::equal("env", ""),
            re("job", MatchOp::RegexMatch, "job-3."),
        ],
        vec![
            re("env", MatchOp::RegexMatch, "prod|"),
            LabelMatcher::not_equal("job", "job-1"),
        ],
        vec![re("instance", MatchOp::RegexNoMatch, "host-.*")],
        vec![LabelMatcher::equal("instance", "host-42")],
    ];
    for matchers in cases {
        let got = memory.find_series(&matchers).await.expect("memory");
        let want = reference.find_series(&matchers).await.expect("reference");
        assert_eq!(got, want, "find_series({matchers:?})");
    }
}
