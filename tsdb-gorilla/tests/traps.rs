//! One test per known trap of Gorilla implementations, and hand-made corrupt blocks.

use tsdb_core::Error;
use tsdb_gorilla::{Decoder, Encoder, decode, decode_to_vecs, encode};

fn bits(points: &[(i64, f64)]) -> Vec<(i64, u64)> {
    points.iter().map(|&(t, v)| (t, v.to_bits())).collect()
}

fn round_trips(points: &[(i64, f64)]) {
    let got = decode(&encode(points)).expect("decode");
    assert_eq!(bits(&got), bits(points));
}

/// Builds blocks bit by bit.
#[derive(Default)]
struct Bits(Vec<bool>);

impl Bits {
    fn put(&mut self, value: u64, n: u32) -> &mut Self {
        for i in (0..n).rev() {
            self.0.push((value >> i) & 1 == 1);
        }
        self
    }
    /// Version 1, the count as one LEB128 byte, then the bits zero-padded.
    fn block(&self, count: u8) -> Vec<u8> {
        let mut out = vec![1, count];
        for chunk in self.0.chunks(8) {
            let mut b = 0u8;
            for (i, &bit) in chunk.iter().enumerate() {
                b |= u8::from(bit) << (7 - i);
            }
            out.push(b);
        }
        out
    }
}

fn expect_corrupt(block: &[u8], what: &str) -> (u64, String) {
    match decode(block) {
        Err(Error::Corrupt {
            source_name,
            offset,
            reason,
        }) => {
            assert_eq!(source_name, "gorilla block", "{what}");
            assert!(offset <= block.len() as u64, "{what}: offset {offset}");
            // The bulk path must agree.
            assert!(
                matches!(decode_to_vecs(block), Err(Error::Corrupt { .. })),
                "{what}: bulk decode"
            );
            (offset, reason)
        }
        other => panic!("{what}: want Error::Corrupt, got {other:?}"),
    }
}

#[test]
fn leading_zeros_above_31_are_not_clamped() {
    // XORs with 32..=63 leading zeros: a 5-bit field would clamp them at 31.
    for lz in 32..64u32 {
        let xor = 1u64 << (63 - lz);
        round_trips(&[
            (0, 1.0),
            (1, f64::from_bits(1.0f64.to_bits() ^ xor)),
            (2, 1.0),
        ]);
    }
    round_trips(&[(0, 0.0), (1, f64::from_bits(1)), (2, f64::from_bits(3))]);
}

#[test]
fn sixty_four_meaningful_bits_round_trip() {
    let a = f64::from_bits(0x8000_0000_0000_0001);
    let pts: Vec<(i64, f64)> = (0..10)
        .map(|i| (i, if i % 2 == 0 { a } else { 0.0 }))
        .collect();
    round_trips(&pts);
    // By hand: a new window of 0 leading zeros and 64 meaningful bits (stored as 63).
    let mut b = Bits::default();
    b.put(0, 64).put(0, 64); // first point: t = 0, value 0.0
    b.put(0b10, 2).put(3, 3); // dod 3
    b.put(0b11, 2).put(0, 6).put(63, 6).put(u64::MAX, 64);
    let got = decode(&b.block(2)).expect("valid block");
    assert_eq!(bits(&got), [(0, 0), (3, u64::MAX)]);
}

#[test]
fn first_delta_beyond_14_bits_round_trips() {
    for d in [16_383i64, 16_384, 1 << 20, 1 << 40, i64::MAX, -1, i64::MIN] {
        round_trips(&[(0, 1.0), (d, 2.0), (d.wrapping_mul(2), 3.0)]);
        round_trips(&[(i64::MIN, 1.0), (i64::MIN.wrapping_add(d), 2.0)]);
    }
}

#[test]
fn deltas_of_deltas_beyond_32_bits_use_the_64_bit_escape() {
    let ts = [
        i64::MIN,
        i64::MAX,
        i64::MIN,
        0,
        i64::MAX,
        i64::MAX,
        -1,
        1 << 33,
        -(1 << 40),
    ];
    let pts: Vec<(i64, f64)> = ts.iter().map(|&t| (t, 0.5)).collect();
    round_trips(&pts);
    // Each bucket boundary of the delta-of-delta code, both signs.
    let mut pts = vec![(0i64, 0.0), (0, 0.0)];
    let mut t = 0i64;
    for w in [3u32, 11, 20, 32] {
        for dod in [
            (1i64 << (w - 1)) - 1,
            1 << (w - 1),
            -(1 << (w - 1)),
            -(1 << (w - 1)) - 1,
        ] {
            t = t.wrapping_add(dod);
            pts.push((t, 0.0));
            pts.push((t, 0.0)); // back to delta 0
        }
    }
    round_trips(&pts);
}

#[test]
fn window_reuse_before_any_window_is_corrupt() {
    let mut b = Bits::default();
    b.put(0, 64).put(0, 64); // first point
    b.put(0, 1); // dod 0
    b.put(0b10, 2); // reuse a window that does not exist
    let (_, reason) = expect_corrupt(&b.block(2), "reuse without window");
    assert!(reason.contains("window reuse"), "{reason}");
}

#[test]
fn window_wider_than_64_bits_is_corrupt() {
    let mut b = Bits::default();
    b.put(0, 64).put(0, 64);
    b.put(0, 1);
    b.put(0b11, 2).put(10, 6).put(59, 6).put(0, 60); // 10 leading + 60 meaningful
    let (_, reason) = expect_corrupt(&b.block(2), "window > 64 bits");
    assert!(reason.contains("exceeds 64"), "{reason}");
}

#[test]
fn huge_claimed_count_is_rejected_before_allocating() {
    // 4 294 967 295 points claimed, 10 bytes of data.
    let mut block = vec![1u8, 0xff, 0xff, 0xff, 0xff, 0x0f];
    block.extend_from_slice(&[0u8; 10]);
    let (_, reason) = expect_corrupt(&block, "huge count");
    assert!(reason.contains("at most"), "{reason}");
    // A count overflowing u64 or longer than 10 bytes is corrupt too.
    let mut block = vec![1u8];
    block.extend_from_slice(&[0xff; 9]);
    block.push(0x02);
    expect_corrupt(&block, "count overflow");
    let mut block = vec![1u8];
    block.extend_from_slice(&[0x80; 11]);
    expect_corrupt(&block, "count too long");
}

#[test]
fn headers_are_checked() {
    expect_corrupt(&[], "empty");
    expect_corrupt(&[3, 0, 0], "unknown version");
    // Version 2: a flags byte before the count.
    expect_corrupt(&[2], "no flags");
    expect_corrupt(&[2, 0], "no count after the flags");
    expect_corrupt(&[2, 0b10, 0], "unknown flag");
    assert!(decode(&[2, 0, 0]).expect("empty block").is_empty());
    assert!(decode(&[2, 1, 0]).expect("empty block").is_empty());
    expect_corrupt(&[1], "no count");
    expect_corrupt(&[1, 0x80], "count cut short");
    assert!(decode(&[1, 0]).expect("empty block").is_empty());
    expect_corrupt(&[1, 0, 0], "trailing byte after an empty block");
}

#[test]
fn padding_and_trailing_bytes_are_checked() {
    let block = encode(&[(1, 2.0), (2, 2.0), (3, 3.0)]);
    // Version, flags, a one-byte count.
    let body_bits = (block.len() - 3) * 8;
    // First point; dod 1 (`10` + 3 bits) + same value; dod 0 + a new window of 1 bit.
    let used = 128 + (5 + 1) + (1 + 14 + 1);
    assert_eq!(body_bits, (used as usize).div_ceil(8) * 8);
    assert_ne!(used % 8, 0, "the test needs padding bits");
    let mut bad = block.clone();
    *bad.last_mut().expect("non-empty") |= 1;
    let (offset, reason) = expect_corrupt(&bad, "non-zero padding");
    assert_eq!(offset, block.len() as u64 - 1);
    assert!(reason.contains("padding"), "{reason}");
    let mut longer = block.clone();
    longer.push(0);
    let (offset, _) = expect_corrupt(&longer, "trailing byte");
    assert_eq!(offset, block.len() as u64);
    for len in 0..block.len() {
        expect_corrupt(&block[..len], "truncated");
    }
}

#[test]
fn iterator_reports_a_bad_end_after_the_last_point() {
    let mut block = encode(&[(1, 1.0), (2, 3.0)]);
    block.push(7);
    let mut it = Decoder::new(&block).expect("header is fine");
    assert!(matches!(it.next(), Some(Ok((1, _)))));
    assert!(matches!(it.next(), Some(Ok((2, _)))));
    assert!(matches!(it.next(), Some(Err(Error::Corrupt { .. }))));
    assert!(it.next().is_none());
}

#[test]
fn stale_nan_and_special_floats_keep_their_bits() {
    let specials = [
        0x7ff0_0000_0000_0002u64,
        0x7ff8_0000_0000_0000,
        0xfff8_0000_0000_0001,
        0x8000_0000_0000_0000,
        0,
        0x7ff0_0000_0000_0000,
        0xfff0_0000_0000_0000,
        1,
        0x000f_ffff_ffff_ffff,
    ];
    let pts: Vec<(i64, f64)> = specials
        .iter()
        .cycle()
        .take(100)
        .enumerate()
        .map(|(i, &b)| (i as i64 * 10_000, f64::from_bits(b)))
        .collect();
    round_trips(&pts);
}

#[test]
fn resume_rejects_corrupt_blocks_and_accepts_empty_ones() {
    assert!(matches!(
        Encoder::resume(&[1, 5, 0]),
        Err(Error::Corrupt { .. })
    ));
    let mut e = Encoder::resume(&Encoder::new().finish()).expect("empty block");
    assert!(e.is_empty());
    e.append(7, 7.0);
    assert_eq!(e.finish(), encode(&[(7, 7.0)]));
}

#[test]
fn truncated_runs_of_repeats_are_corrupt_in_bulk_too() {
    // A constant series is one long run of `00` codes, which the bulk decoder reads in
    // batches: a cut anywhere must still be caught.
    let pts: Vec<(i64, f64)> = (0..500).map(|i| (i * 1_000, 42.0)).collect();
    let block = encode(&pts);
    for len in 0..block.len() {
        expect_corrupt(&block[..len], "truncated run");
    }
    let (ts, vs) = decode_to_vecs(&block).expect("whole block");
    assert_eq!(ts, pts.iter().map(|p| p.0).collect::<Vec<_>>());
    assert!(vs.iter().all(|v| *v == 42.0));
}

#[test]
fn runs_of_repeats_that_wrap_around_keep_the_true_time_range() {
    // A constant value every 3 * 2^61 ms from 0: the timestamps wrap past i64::MAX, and the
    // smallest (i64::MIN, the fifth point) sits inside the run of `00` codes that starts at
    // the third point, not at one of its ends.
    let step = 3i64 << 61;
    let points: Vec<(i64, f64)> = (0..12i64).map(|i| (i.wrapping_mul(step), 1.5)).collect();
    let (min, max) = (i64::MIN, step);
    assert_eq!(points[4].0, min);
    round_trips(&points);

    let mut bulk = Encoder::new();
    bulk.extend_from_slice(&points);
    let mut one_by_one = Encoder::new();
    points.iter().for_each(|&(t, v)| one_by_one.append(t, v));
    assert_eq!(bulk.time_range(), Some((min, max)));
    assert_eq!(one_by_one.time_range(), Some((min, max)));

    let dps: Vec<tsdb_core::DataPoint> = points
        .iter()
        .map(|&(t, v)| tsdb_core::DataPoint::new(9u64, t, v))
        .collect();
    let c = tsdb_gorilla::GorillaCompressor::new();
    let block = c.compress_sync(&dps).expect("one series");
    assert_eq!((block.start_time, block.end_time), (min, max));
    let back = c.decompress_sync(&block).expect("its own block");
    assert!(back.iter().zip(&dps).all(|(a, b)| a.bit_eq(b)));
}

#[test]
fn the_header_records_whether_a_value_is_nan() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    type Case = (&'static str, Vec<(i64, f64)>, bool);
    let cases: [Case; 6] = [
        ("no point", vec![], false),
        (
            "plain values",
            vec![(1, 1.0), (2, 2.5), (3, f64::INFINITY)],
            false,
        ),
        ("a NaN first", vec![(1, f64::NAN), (2, 2.0)], true),
        (
            "a staleness marker last",
            vec![(1, 1.0), (2, 1.0), (3, stale)],
            true,
        ),
        // A repeat of the value before is counted in a run, not seen point by point.
        (
            "repeated NaNs",
            vec![(1, 1.0), (2, f64::NAN), (3, f64::NAN), (4, f64::NAN)],
            true,
        ),
        (
            "one NaN among many",
            (0..500)
                .map(|i| (i, if i == 321 { f64::NAN } else { i as f64 }))
                .collect(),
            true,
        ),
    ];
    for (what, points, nan) in cases {
        let block = encode(&points);
        let dec = Decoder::new(&block).expect("valid block");
        assert_eq!(dec.may_hold_nan(), nan, "{what}");
        assert_eq!(block[1] & 1 == 1, nan, "{what}: flags byte");
        // Point by point, in bulk, and continued after a resume: the same flag.
        let mut one = Encoder::new();
        for &(t, v) in &points {
            one.append(t, v);
        }
        assert_eq!(one.finish(), block, "{what}: append gives the same bytes");
        let half = points.len() / 2;
        let mut resumed = Encoder::resume(&encode(&points[..half])).expect("resume");
        resumed.extend_from_slice(&points[half..]);
        assert_eq!(
            resumed.finish(),
            block,
            "{what}: resumed gives the same bytes"
        );
    }
    // Version 1 does not record it: any value may be NaN.
    assert!(
        Decoder::new(&[1, 0])
            .expect("empty v1 block")
            .may_hold_nan()
    );
}
