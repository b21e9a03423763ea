//! Arbitrary bytes as a remote-write body (snappy, then protobuf) and as a bare protobuf
//! `WriteRequest`: decoding must never panic, and never allocate past the limit it is given
//! (snappy's declared length is checked first; a body that declares more must be refused).

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsdb_formats::remote_write::{DecodeError, WriteRequest, decode, decompress};

/// The decompressed size allowed, small so that the fuzzer meets the limit often.
const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    match decompress(data, LIMIT) {
        Ok(raw) => assert!(raw.len() <= LIMIT, "decompressed past the limit"),
        Err(DecodeError::TooLarge { declared, limit }) => assert!(declared > limit),
        Err(_) => {}
    }
    if let Ok(request) = decode(data, LIMIT) {
        let decoded = request.into_series();
        for s in &decoded.series {
            assert!(!s.samples.is_empty());
        }
    }
    if let Ok(request) = WriteRequest::decode(data) {
        let total: usize = request.timeseries.iter().map(|t| t.samples.len()).sum();
        let decoded = request.into_series();
        let rejected: u64 = decoded.rejected.iter().map(|r| r.1).sum();
        // Every float sample is either kept or counted as refused (histograms aside).
        assert!(decoded.sample_count() <= total);
        assert!(decoded.sample_count() as u64 + rejected >= total as u64);
    }
});
