//! Shared helpers: one throwaway server per test, fresh prefixes.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tsdb_index_redis::testing::RedisServer;
use tsdb_index_redis::{RedisIndexConfig, RedisTimeIndex};

/// A server, or `None` (notice printed) when redis-server is missing outside CI.
pub fn server() -> Option<RedisServer> {
    RedisServer::start().expect("redis-server must start (CI=true requires it)")
}

/// A prefix no other index of this test process uses.
pub fn fresh_prefix(tag: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "t{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// An index with a fresh prefix on `server`.
pub async fn index(server: &RedisServer, tag: &str) -> RedisTimeIndex {
    RedisTimeIndex::connect(
        RedisIndexConfig::new(server.url())
            .with_prefix(fresh_prefix(tag))
            .with_timeout(Duration::from_secs(5)),
    )
    .await
    .expect("connect to the test server")
}
