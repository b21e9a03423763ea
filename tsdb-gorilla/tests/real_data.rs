//! Every real recording of the shared data directory round-trips bit for bit.

use tsdb_core::DataPoint;
use tsdb_gorilla::{GorillaCompressor, decode_to_vecs, encode};

#[test]
fn every_real_recording_round_trips() {
    let Some(datasets) =
        tsdb_testdata::real::datasets("tsdb-gorilla every_real_recording_round_trips")
            .expect("shared data loads")
    else {
        return;
    };
    assert!(datasets.len() >= 60, "only {} recordings", datasets.len());
    let c = GorillaCompressor::new();
    let (mut raw, mut packed) = (0usize, 0usize);
    for d in &datasets {
        let what = format!("{}/{}", d.group, d.name);
        let block = encode(&d.points);
        let (ts, vs) = decode_to_vecs(&block).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(ts.len(), d.points.len(), "{what}: point count");
        for (i, ((t, v), p)) in ts.iter().zip(&vs).zip(&d.points).enumerate() {
            assert!(
                *t == p.0 && v.to_bits() == p.1.to_bits(),
                "{what}: point {i} differs"
            );
        }
        let dps: Vec<DataPoint> = d
            .points
            .iter()
            .map(|&(t, v)| DataPoint::new(1u64, t, v))
            .collect();
        let blk = c
            .compress_sync(&dps)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let back = c
            .decompress_sync(&blk)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(back.iter().zip(&dps).all(|(a, b)| a.bit_eq(b)), "{what}");
        raw += d.points.len() * 16;
        packed += block.len();
    }
    // Lossless and smaller: the real recordings must compress, not just survive.
    assert!(packed < raw, "{packed} bytes encoded from {raw} raw bytes");
}
