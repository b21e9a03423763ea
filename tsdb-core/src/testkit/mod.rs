//! Conformance tests that any engine can run against itself (feature `testkit`).
//!
//! Each module holds public async functions that exercise one trait through its contract and
//! panic with a message naming the broken rule, plus a `run_all` that calls them all. Call them
//! from your engine's tests:
//!
//! ```no_run
//! # use tsdb_core::{CodecId, CompressedBlock, Compressor, DataPoint, Result, async_trait};
//! # #[derive(Debug)]
//! # struct MyCodec;
//! # impl MyCodec {
//! #     fn new() -> Self {
//! #         MyCodec
//! #     }
//! # }
//! # #[async_trait]
//! # impl Compressor for MyCodec {
//! #     fn name(&self) -> &'static str {
//! #         "my-codec"
//! #     }
//! #     fn codec_id(&self) -> CodecId {
//! #         CodecId(0x8001)
//! #     }
//! #     async fn compress(&self, _: &[DataPoint]) -> Result<CompressedBlock> {
//! #         unimplemented!()
//! #     }
//! #     async fn decompress(&self, _: &CompressedBlock) -> Result<Vec<DataPoint>> {
//! #         unimplemented!()
//! #     }
//! # }
//! # // Doc tests are not built with `--test`, which drops `#[test]` functions unchecked: this
//! # // shim makes `#[tokio::test]` mean `#[tokio::main]`, so the test below is compiled.
//! # mod tokio {
//! #     pub use ::tokio::main as test;
//! #     pub use ::tokio::*;
//! # }
//! #[tokio::test]
//! async fn conforms() {
//!     tsdb_core::testkit::compressor::run_all(&MyCodec::new()).await;
//! }
//! # fn main() {
//! #     conforms();
//! # }
//! ```

pub mod compressor;
pub mod data;
pub mod index;
pub mod storage;
