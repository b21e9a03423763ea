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
