//! Property tests: every encoding decodes bit for bit, through every API.

use proptest::prelude::*;
use tsdb_core::DataPoint;
use tsdb_gorilla::{Decoder, Encoder, GorillaCompressor, decode, decode_to_vecs, encode};

fn bits(points: &[(i64, f64)]) -> Vec<(i64, u64)> {
    points.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

/// Checks every decoding path against `points`.
fn assert_round_trip(points: &[(i64, f64)]) {
    let want = bits(points);
    let block = encode(points);

    // The bulk encoders write exactly the bytes of appending point by point.
    let mut one_by_one = Encoder::new();
    for &(t, v) in points {
        one_by_one.append(t, v);
    }
    assert_eq!(one_by_one.finish(), block, "append and extend_from_slice");
    let (tcol, vcol): (Vec<i64>, Vec<f64>) = points.iter().copied().unzip();
    let columns = tsdb_gorilla::encode_columns(&tcol, &vcol).expect("equal lengths");
    assert_eq!(columns, block, "encode_columns");

    let got = decode(&block).expect("decode");
    assert_eq!(bits(&got), want, "decode");

    let (ts, vs) = decode_to_vecs(&block).expect("decode_to_vecs");
    let cols: Vec<(i64, f64)> = ts.into_iter().zip(vs).collect();
    assert_eq!(bits(&cols), want, "decode_to_vecs");

    // Bulk decode in uneven slices.
    let mut dec = Decoder::new(&block).expect("header");
    let mut got = Vec::new();
    let mut t = [0i64; 7];
    let mut v = [0f64; 7];
    loop {
        let n = dec.decode_into(&mut t, &mut v).expect("decode_into");
        if n == 0 {
            break;
        }
        got.extend(t[..n].iter().copied().zip(v[..n].iter().copied()));
    }
    assert_eq!(bits(&got), want, "decode_into");

    // The iterator ends with None after the last point.
    let mut it = Decoder::new(&block).expect("header");
    assert_eq!(it.by_ref().count(), points.len());
    assert!(it.next().is_none());

    // Through the Compressor.
    let dps: Vec<DataPoint> = points
        .iter()
        .map(|&(t, v)| DataPoint::new(5u64, t, v))
        .collect();
    let c = GorillaCompressor::new();
    let blk = c.compress_sync(&dps).expect("compress");
    assert_eq!(blk.data.as_ref(), block.as_slice(), "compressor bytes");
    let back = c.decompress_sync(&blk).expect("decompress");
    assert_eq!(back.len(), dps.len());
    assert!(back.iter().zip(&dps).all(|(a, b)| a.bit_eq(b)));
}

/// Encodes `points[..split]`, finishes, resumes, appends the rest: the bytes must equal a
/// one-shot encoding (the format is resume-stable, see the README).
fn assert_resume_identical(points: &[(i64, f64)], split: usize) {
    let split = split.min(points.len());
    let one_shot = encode(points);
    let mut first = Encoder::new();
    first.extend(points[..split].iter().copied());
    let sealed = first.finish();
    let mut resumed = Encoder::resume(&sealed).expect("resume");
    assert_eq!(resumed.point_count(), split as u64);
    resumed.extend(points[split..].iter().copied());
    assert_eq!(resumed.bytes_len(), one_shot.len());
    assert_eq!(resumed.finish(), one_shot, "resumed at {split}");
}

fn special_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::from_bits(0x7ff0_0000_0000_0002)),
        Just(f64::from_bits(0xfff8_0000_0000_0001)),
        Just(-0.0),
        Just(0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN_POSITIVE),
        Just(f64::from_bits(1)),
        Just(f64::MAX),
        Just(f64::MIN),
        any::<u64>().prop_map(f64::from_bits),
    ]
}

fn extreme_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0),
        Just(-1),
        any::<i64>(),
        (-10i64..10),
        any::<i32>().prop_map(i64::from),
    ]
}

/// A realistic series: a start, a regular step with jitter and gaps, values from a small
/// set, a random walk of decimals, or repeated values.
fn realistic() -> impl Strategy<Value = Vec<(i64, f64)>> {
    (
        0i64..2_000_000_000_000,
        prop_oneof![Just(1_000i64), Just(10_000), Just(15_000), Just(300_000)],
        0i64..3,
        proptest::collection::vec((0u8..100, -50i32..50), 1..600),
    )
        .prop_map(|(start, step, jitter, steps)| {
            let mut t = start;
            let mut v = 100.0f64;
            steps
                .into_iter()
                .map(|(r, dv)| {
                    t += step + (i64::from(r) % (2 * jitter + 1)) - jitter;
                    if r == 0 {
                        t += step * 50; // a gap
                    }
                    match r % 4 {
                        0 => v += f64::from(dv) / 100.0,
                        1 => v = f64::from(dv),
                        _ => {}
                    }
                    (t, v)
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_points_round_trip(points in proptest::collection::vec((any::<i64>(), any::<u64>().prop_map(f64::from_bits)), 0..300)) {
        assert_round_trip(&points);
    }

    #[test]
    fn adversarial_points_round_trip(points in proptest::collection::vec((extreme_i64(), special_f64()), 0..300)) {
        assert_round_trip(&points);
    }

    #[test]
    fn decreasing_and_duplicate_timestamps_round_trip(
        start in any::<i64>(),
        steps in proptest::collection::vec((-3i64..=3, special_f64()), 1..300),
        scale in prop_oneof![Just(1i64), Just(1_000), Just(1 << 33), Just(i64::MAX / 7)],
    ) {
        let mut t = start;
        let points: Vec<(i64, f64)> = steps.into_iter().map(|(d, v)| { t = t.wrapping_add(d.wrapping_mul(scale)); (t, v) }).collect();
        assert_round_trip(&points);
    }

    #[test]
    fn realistic_series_round_trip(points in realistic()) {
        assert_round_trip(&points);
    }

    #[test]
    fn resume_after_finish_is_byte_identical(
        points in prop_oneof![
            realistic(),
            proptest::collection::vec((extreme_i64(), special_f64()), 0..200),
        ],
        split in 0usize..600,
    ) {
        assert_resume_identical(&points, split);
    }

    #[test]
    fn snapshot_decodes_to_the_points_so_far(points in realistic(), every in 1usize..50) {
        let mut enc = Encoder::new();
        for (i, &(t, v)) in points.iter().enumerate() {
            enc.append(t, v);
            if i % every == 0 {
                let snap = enc.snapshot();
                prop_assert_eq!(snap.len(), enc.bytes_len());
                let got = decode(&snap).expect("snapshot decodes");
                prop_assert_eq!(bits(&got), bits(&points[..=i]));
            }
        }
        prop_assert_eq!(enc.point_count(), points.len() as u64);
        let min = points.iter().map(|p| p.0).min();
        let max = points.iter().map(|p| p.0).max();
        prop_assert_eq!(enc.time_range(), min.zip(max));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        // Whatever happens, no panic; a successful decode agrees with itself.
        if let Ok(points) = decode(&data) {
            let (ts, vs) = decode_to_vecs(&data).expect("same input decodes in bulk");
            prop_assert_eq!(ts.len(), points.len());
            prop_assert!(points.iter().zip(ts.iter().zip(&vs)).all(|(p, (t, v))| p.0 == *t && p.1.to_bits() == v.to_bits()));
        }
    }
}

#[test]
fn synthetic_series_round_trip_and_resume() {
    for d in tsdb_testdata::synthetic::all(5_000, 42) {
        assert_round_trip(&d.points);
        for split in [0, 1, 2, 63, 64, 1_000, 4_999, 5_000] {
            assert_resume_identical(&d.points, split);
        }
    }
}
