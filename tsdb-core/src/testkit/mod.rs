//! Conformance tests that any engine can run against itself (feature `testkit`).
//!
//! Each module holds public async functions that exercise one trait through its contract and
//! panic with a message naming the broken rule, plus a `run_all` that calls them all. Call them
//! from your engine's tests:
//!
//! ```ignore
//! #[tokio::test]
//! async fn conforms() {
//!     tsdb_core::testkit::compressor::run_all(&MyCodec::new()).await;
//! }
//! ```

pub mod compressor;
pub mod data;
pub mod index;
pub mod storage;
