//! Arbitrary points through the Gorilla encoder: they must decode bit for bit on every path,
//! and resuming a finished block must give the bytes of a one-shot encoding.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tsdb_core::DataPoint;
use tsdb_gorilla::{Decoder, Encoder, GorillaCompressor, decode, decode_to_vecs, encode};

#[derive(Arbitrary, Debug)]
struct Input {
    /// `(timestamp, value bits)`; the timestamp is taken as a delta from the previous one
    /// when `relative`, so small steps are common.
    points: Vec<(i64, u64)>,
    relative: bool,
    split: u16,
}

fuzz_target!(|input: Input| {
    let mut t = 0i64;
    let points: Vec<(i64, f64)> = input
        .points
        .iter()
        .map(|&(ts, bits)| {
            t = if input.relative {
                t.wrapping_add(ts % 4096)
            } else {
                ts
            };
            (t, f64::from_bits(bits))
        })
        .collect();
    let want: Vec<(i64, u64)> = points.iter().map(|&(t, v)| (t, v.to_bits())).collect();

    let block = encode(&points);
    let got: Vec<(i64, u64)> = decode(&block)
        .expect("decode")
        .into_iter()
        .map(|(t, v)| (t, v.to_bits()))
        .collect();
    assert_eq!(got, want);
    let (ts, vs) = decode_to_vecs(&block).expect("decode_to_vecs");
    let cols: Vec<(i64, u64)> = ts
        .into_iter()
        .zip(vs)
        .map(|(t, v)| (t, v.to_bits()))
        .collect();
    assert_eq!(cols, want);
    assert_eq!(Decoder::new(&block).expect("header").count(), points.len());

    // Snapshot and resume at `split`.
    let split = usize::from(input.split).min(points.len());
    let mut first = Encoder::new();
    first.extend(points[..split].iter().copied());
    assert_eq!(first.snapshot().len(), first.bytes_len());
    let mut resumed = Encoder::resume(&first.finish()).expect("resume");
    // Point-by-point appends before the split, the bulk path after it: same bytes.
    resumed.extend_from_slice(&points[split..]);
    assert_eq!(resumed.finish(), block);

    // Through the Compressor.
    let dps: Vec<DataPoint> = points
        .iter()
        .map(|&(t, v)| DataPoint::new(3u64, t, v))
        .collect();
    let c = GorillaCompressor::new();
    let blk = c.compress_sync(&dps).expect("compress");
    let back = c.decompress_sync(&blk).expect("decompress");
    assert_eq!(back.len(), dps.len());
    assert!(back.iter().zip(&dps).all(|(a, b)| a.bit_eq(b)));
});
