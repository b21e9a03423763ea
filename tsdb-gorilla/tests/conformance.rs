//! The `tsdb-core` conformance kit, run against `GorillaCompressor`.

use tsdb_gorilla::GorillaCompressor;

#[tokio::test]
async fn gorilla_compressor_conforms() {
    tsdb_core::testkit::compressor::run_all_assigned(
        &GorillaCompressor::new(),
        tsdb_core::CodecId::GORILLA,
    )
    .await;
}
