//! The `StorageEngine` conformance kit of `tsdb-core`, run against `LocalDiskEngine` under
//! both durability policies and with segments small enough that chunks span many of them.

use std::sync::Arc;
use std::time::Duration;

use tsdb_core::DynStorageEngine;
use tsdb_core::testkit::storage;
use tsdb_storage_disk::{Durability, LocalDiskConfig, LocalDiskEngine};

async fn run(config: LocalDiskConfig) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().to_path_buf();
    storage::run_all(move |name| {
        let path = base.join(name);
        async move {
            Arc::new(
                LocalDiskEngine::open_with(path, config)
                    .await
                    .expect("open store"),
            ) as Arc<DynStorageEngine>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_always_and_small_segments() {
    run(LocalDiskConfig::default()
        .durability(Durability::Always)
        .segment_size(LocalDiskConfig::MIN_SEGMENT_SIZE))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conforms_with_interval_and_default_segments() {
    run(LocalDiskConfig::default().durability(Durability::Interval(Duration::from_millis(5))))
        .await;
}

#[tokio::test]
async fn conforms_on_a_current_thread_runtime() {
    run(LocalDiskConfig::default().segment_size(256 << 10)).await;
}
