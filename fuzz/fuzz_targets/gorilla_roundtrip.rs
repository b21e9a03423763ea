//! Arbitrary points through the Gorilla encoder: they must decode bit for bit on every path,
//! and resuming a finished block must give the bytes of a one-shot encoding.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tsdb_core::DataPoint;
use tsdb_gorilla::{Decoder, Encoder, GorillaCompressor, decode, decode_to_vecs, encode};

/// How the pairs of an [`Input`] become points.
#[derive(Arbitrary, Debug)]
enum Mode {
    /// `(timestamp, value bits)` as they are.
    Absolute,
    /// The timestamp is a small step from the previous one.
    Relative,
    /// Each pair is a run: 1 to 16 points `delta` apart (any i64, so runs wrap around the
    /// range) with one value, the number taken from the value's top bits.
    Runs,
}

#[derive(Arbitrary, Debug)]
struct Input {
    points: Vec<(i64, u64)>,
    mode: Mode,
    split: u16,
}

/// Points at the most (runs multiply them).
const MAX_POINTS: usize = 4096;

fuzz_target!(|input: Input| {
    let mut t = 0i64;
    let mut points: Vec<(i64, f64)> = Vec::new();
    for &(ts, bits) in &input.points {
        let (step, repeat) = match input.mode {
            Mode::Absolute => {
                t = ts;
                (0, 1)
            }
            Mode::Relative => (ts % 4096, 1),
            Mode::Runs => (ts, 1 + (bits >> 60) as usize),
        };
        for _ in 0..repeat {
            t = t.wrapping_add(step);
            points.push((t, f64::from_bits(bits)));
        }
        if points.len() >= MAX_POINTS {
            break;
        }
    }
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
    if let (Some(min), Some(max)) = (
        points.iter().map(|p| p.0).min(),
        points.iter().map(|p| p.0).max(),
    ) {
        assert_eq!(
            (blk.start_time, blk.end_time),
            (min, max),
            "block time range"
        );
    }
    let back = c.decompress_sync(&blk).expect("decompress");
    assert_eq!(back.len(), dps.len());
    assert!(back.iter().zip(&dps).all(|(a, b)| a.bit_eq(b)));
});
