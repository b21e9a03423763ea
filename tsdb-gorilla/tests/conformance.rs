//! The `tsdb-core` conformance kit, run against `GorillaCompressor`.

use tsdb_gorilla::GorillaCompressor;

#[tokio::test]
async fn gorilla_compressor_conforms() {
    tsdb_core::testkit::compressor::run_all(&GorillaCompressor::new()).await;
}
