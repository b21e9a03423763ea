//! Arbitrary bytes as a remote-write body (snappy, then protobuf) and as a bare protobuf
//! `WriteRequest`: decoding must never panic, and never allocate past the limit it is given
//! (snappy's declared length is checked first; a body that declares more must be refused).
//! The in-place scanner must agree with `prost` on every request both accept: the same
//! series, labels and samples, bit for bit.

#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsdb_formats::remote_write::{DecodeError, WriteRequest, decode, decompress, scan};

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
    let scanned = scan(data);
    if let (Ok(request), Ok(scanned)) = (WriteRequest::decode(data), scanned) {
        assert_eq!(request.timeseries.len(), scanned.series.len());
        let histograms: usize = request.timeseries.iter().map(|t| t.histograms.len()).sum();
        assert_eq!(histograms as u64, scanned.histograms);
        for (t, s) in request.timeseries.iter().zip(&scanned.series) {
            let theirs: Vec<(i64, u64)> =
                t.samples.iter().map(|p| (p.timestamp, p.value.to_bits())).collect();
            let ours: Vec<(i64, u64)> = scanned.samples[s.samples.clone()]
                .iter()
                .map(|&(ts, v)| (ts, v.to_bits()))
                .collect();
            assert_eq!(theirs, ours);
            let pairs = tsdb_core::Labels::from_pairs(
                t.labels.iter().map(|l| (l.name.clone(), l.value.clone())),
            );
            match (pairs, s.labels()) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => panic!("labels disagree: {a:?} vs {b:?}"),
            }
        }
    }
});
