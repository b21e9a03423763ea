//! The `TimeIndex` conformance kit against a real Redis, and randomized comparisons with the
//! memory index.

mod common;

use std::sync::Arc;

use tsdb_core::DynTimeIndex;
use tsdb_core::testkit::index::{compare_random, run_all};
use tsdb_index_memory::MemoryTimeIndex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_index_conforms() {
    let Some(server) = common::server() else {
        return;
    };
    let server = Arc::new(server);
    run_all(|| {
        let server = Arc::clone(&server);
        async move { Arc::new(common::index(&server, "kit").await) as Arc<DynTimeIndex> }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_memory_agree_on_random_sequences() {
    let Some(server) = common::server() else {
        return;
    };
    for seed in 0..12 {
        let redis = common::index(&server, "random").await;
        compare_random(&redis, &MemoryTimeIndex::new(), seed, 400).await;
    }
}
