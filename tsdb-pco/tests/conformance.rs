//! The `tsdb-core` conformance kit, property tests and the real recordings, run against
//! `PcoCompressor`.

use proptest::prelude::*;
use tsdb_core::{CodecId, Compressor, DataPoint, Error, SeriesId};
use tsdb_pco::PcoCompressor;

#[tokio::test]
async fn pco_compressor_conforms() {
    tsdb_core::testkit::compressor::run_all_assigned(&PcoCompressor::new(), CodecId::PCO).await;
}

fn round_trip(ts: &[i64], vs: &[f64]) {
    let c = PcoCompressor::new();
    let data = c.encode_columns(ts, vs).expect("encode");
    let (mut t2, mut v2) = (Vec::new(), Vec::new());
    c.decode_columns(&data, &mut t2, &mut v2).expect("decode");
    assert_eq!(t2, ts);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&v2), bits(vs));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any timestamps and any bit patterns come back exactly.
    #[test]
    fn any_points_round_trip_bit_for_bit(
        points in prop::collection::vec((any::<i64>(), any::<u64>()), 0..600)
    ) {
        let ts: Vec<i64> = points.iter().map(|p| p.0).collect();
        let vs: Vec<f64> = points.iter().map(|p| f64::from_bits(p.1)).collect();
        round_trip(&ts, &vs);
    }

    /// Decimals with a few other values among them (which make the block fall back to
    /// floats) come back exactly, whichever encoding was chosen.
    #[test]
    fn decimals_mixed_with_any_bits_round_trip(
        units in prop::collection::vec(-1_000_000i64..1_000_000, 1..400),
        decimals in 0u32..10,
        odd in prop::collection::vec((any::<prop::sample::Index>(), any::<u64>()), 0..3),
    ) {
        let scale = 10f64.powi(decimals as i32);
        let mut vs: Vec<f64> = units.iter().map(|&u| u as f64 / scale).collect();
        for (at, bits) in &odd {
            let i = at.index(vs.len());
            vs[i] = f64::from_bits(*bits);
        }
        let ts: Vec<i64> = (0..vs.len() as i64).collect();
        round_trip(&ts, &vs);
    }

    /// A read of a range gets every point of the block inside it, in the block's order,
    /// and nothing the block does not hold; sorted blocks of several pages skip pages.
    #[test]
    fn range_reads_hold_every_point_inside_the_range(
        len in 1usize..9_000,
        scrambled in any::<bool>(),
        from in any::<prop::sample::Index>(),
        width in 0i64..40_000_000,
        decimals in any::<bool>(),
    ) {
        let mut ts: Vec<i64> = (0..len as i64).map(|i| 1_700_000_000_000 + i * 10_000).collect();
        if scrambled {
            let n = ts.len();
            for i in 0..n {
                ts.swap(i, (i * 7919) % n);
            }
        }
        let vs: Vec<f64> = (0..len)
            .map(|i| if decimals { (i % 977) as f64 / 100.0 } else { (i as f64).sqrt() })
            .collect();
        let c = PcoCompressor::new();
        let data = c.encode_columns(&ts, &vs).expect("encode");
        let start = ts[from.index(len)];
        let range = tsdb_core::TimeRange { start, end: start + width };
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        c.decode_columns_in(&data, range, &mut t2, &mut v2).expect("decode");
        let inside = |t: &i64| range.start <= *t && *t <= range.end;
        let want: Vec<(i64, u64)> = ts.iter().zip(&vs).filter(|(t, _)| inside(t)).map(|(t, v)| (*t, v.to_bits())).collect();
        let got: Vec<(i64, u64)> = t2.iter().zip(&v2).filter(|(t, _)| inside(t)).map(|(t, v)| (*t, v.to_bits())).collect();
        prop_assert_eq!(got, want);
        // What was decoded is a subsequence of the block: pages in order.
        let all: Vec<(i64, u64)> = ts.iter().zip(&vs).map(|(t, v)| (*t, v.to_bits())).collect();
        let mut it = all.iter();
        for p in t2.iter().zip(&v2).map(|(t, v)| (*t, v.to_bits())) {
            prop_assert!(it.any(|q| *q == p), "{:?} not in the block's order", p);
        }
        if !scrambled && width < 10_000 * tsdb_pco::PAGE_POINTS as i64 && len > 3 * tsdb_pco::PAGE_POINTS {
            prop_assert!(t2.len() < len, "a short range of a sorted block skips pages");
        }
    }

    /// Regular scrapes of decimal gauges, the data the cold tier is for.
    #[test]
    fn decimal_gauges_round_trip(
        start in -1_000_000_000_000i64..2_000_000_000_000,
        step in 1i64..100_000,
        jitter in 0i64..3,
        cents in prop::collection::vec(-100_000i64..100_000, 1..2_000),
        decimals in 0u32..4,
    ) {
        let scale = 10f64.powi(decimals as i32);
        let ts: Vec<i64> = (0..cents.len() as i64).map(|i| start + i * step + (i * 7) % (jitter + 1)).collect();
        let vs: Vec<f64> = cents.iter().map(|&c| c as f64 / scale).collect();
        round_trip(&ts, &vs);
    }

    /// Timestamps made of stretches that are evenly spaced (any step, zero included) or not,
    /// across page boundaries: every page comes back exactly, whole or by range.
    #[test]
    fn evenly_spaced_and_irregular_stretches_round_trip(
        stretches in prop::collection::vec((1usize..3_000, 0i64..100_000, any::<bool>()), 1..6),
        start in -1_000_000_000_000i64..2_000_000_000_000,
        from in any::<prop::sample::Index>(),
        width in 0i64..30_000_000,
    ) {
        let mut ts = Vec::new();
        let mut t = start;
        for (k, &(len, step, even)) in stretches.iter().enumerate() {
            for i in 0..len as i64 {
                t += if even { step } else { step + (i * 7 + k as i64) % 5 };
                ts.push(t);
            }
        }
        let vs: Vec<f64> = (0..ts.len()).map(|i| (i % 613) as f64 / 100.0).collect();
        round_trip(&ts, &vs);
        let c = PcoCompressor::new();
        let data = c.encode_columns(&ts, &vs).expect("encode");
        let first = ts[from.index(ts.len())];
        let range = tsdb_core::TimeRange { start: first, end: first.saturating_add(width) };
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        c.decode_columns_in(&data, range, &mut t2, &mut v2).expect("decode");
        let inside = |t: &i64| range.start <= *t && *t <= range.end;
        let want: Vec<i64> = ts.iter().copied().filter(inside).collect();
        let got: Vec<i64> = t2.iter().copied().filter(inside).collect();
        prop_assert_eq!(got, want);
    }

    /// Damaged bytes give an error or other points, never a panic.
    #[test]
    fn damaged_blocks_never_panic(
        cents in prop::collection::vec(0i64..10_000, 1..300),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let ts: Vec<i64> = (0..cents.len() as i64).map(|i| i * 10_000).collect();
        let vs: Vec<f64> = cents.iter().map(|&c| c as f64 / 100.0).collect();
        let c = PcoCompressor::new();
        let mut data = c.encode_columns(&ts, &vs).expect("encode");
        for (at, bit) in &flips {
            let i = at.index(data.len());
            data[i] ^= 1 << bit;
        }
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        let _ = c.decode_columns(&data, &mut t2, &mut v2);
        data.truncate(cut.index(data.len()));
        let _ = c.decode_columns(&data, &mut t2, &mut v2);
    }
}

/// A truncated block is `Corrupt`, naming the codec's block.
#[tokio::test]
async fn truncated_blocks_are_corrupt() {
    let points: Vec<DataPoint> = (0..500)
        .map(|i| DataPoint::new(SeriesId(1), i * 10_000, (i % 97) as f64 / 100.0))
        .collect();
    let c = PcoCompressor::new();
    let block = c.compress(&points).await.expect("compress");
    for len in [0, 1, 5, 9, block.data.len() / 2, block.data.len() - 1] {
        let mut cut = block.clone();
        cut.data = block.data.slice(..len);
        match c.decompress(&cut).await {
            Err(Error::Corrupt { source_name, .. }) => assert_eq!(source_name, "pco block"),
            other => panic!("{len} bytes: expected Corrupt, got {other:?}"),
        }
    }
}

/// A range read of a block whose header claims a narrower span or fewer points than its
/// bytes hold is `Corrupt`, for pages with and without stored timestamps, whichever pages it
/// reads; a range read of a sound block gives exactly the points inside the range.
#[tokio::test]
async fn range_reads_check_the_header() {
    let c = PcoCompressor::new();
    for jitter in [0, 1] {
        let points: Vec<DataPoint> = (0..3 * tsdb_pco::PAGE_POINTS as i64)
            .map(|i| {
                DataPoint::new(
                    SeriesId(1),
                    i * 10_000 + jitter * (i % 3),
                    (i % 97) as f64 / 100.0,
                )
            })
            .collect();
        let block = c.compress(&points).await.expect("compress");
        let last = points[points.len() - 1].timestamp;
        let tail = tsdb_core::TimeRange {
            start: last - 10_000,
            end: last,
        };
        let head = tsdb_core::TimeRange {
            start: 0,
            end: 10_000,
        };
        let mut narrower = block.clone();
        narrower.end_time -= 1;
        let mut fewer = block.clone();
        fewer.point_count = 10;
        for (what, bad, range) in [
            ("end_time - 1", &narrower, tail),
            ("point_count 10", &fewer, tail),
            ("end_time - 1", &narrower, head),
            ("point_count 10", &fewer, head),
        ] {
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            match c.decompress_range_into(bad, range, &mut ts, &mut vs).await {
                Err(Error::Corrupt { source_name, .. }) => assert_eq!(source_name, "pco block"),
                other => panic!("jitter {jitter}, {what}: expected Corrupt, got {other:?}"),
            }
        }
        for range in [head, tail] {
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            c.decompress_range_into(&block, range, &mut ts, &mut vs)
                .await
                .expect("a sound block");
            let want: Vec<DataPoint> = points
                .iter()
                .filter(|p| range.contains(p.timestamp))
                .copied()
                .collect();
            let got: Vec<DataPoint> = ts
                .iter()
                .zip(&vs)
                .map(|(&t, &v)| DataPoint::new(SeriesId(1), t, v))
                .collect();
            assert_eq!(got, want, "jitter {jitter}, {range:?}");
        }
    }
}

/// Two-decimal gauges take about a byte a point or less, the timestamps of regular scrapes
/// almost nothing.
#[test]
fn two_decimal_gauges_take_about_a_byte_a_point() {
    let data = tsdb_testdata::synthetic::cents(10_000, 7);
    let ts: Vec<i64> = data.iter().map(|p| p.0).collect();
    let vs: Vec<f64> = data.iter().map(|p| p.1).collect();
    let bytes = PcoCompressor::new()
        .encode_columns(&ts, &vs)
        .expect("encode");
    let per_point = bytes.len() as f64 / data.len() as f64;
    assert!(per_point < 1.0, "{per_point:.3} bytes a point");
}

/// Values as printed with a few decimals are found as such; anything else is not.
#[test]
fn decimal_digits_are_the_fewest_that_reproduce_every_value() {
    use tsdb_pco::decimal_digits;
    assert_eq!(
        decimal_digits(&[0.5, 12.0, 57.34]),
        Some((2, vec![50, 1200, 5734]))
    );
    assert_eq!(decimal_digits(&[3.0, -7.0, 0.0]), Some((0, vec![3, -7, 0])));
    assert_eq!(decimal_digits(&[-1.125]), Some((3, vec![-1125])));
    assert_eq!(decimal_digits(&[]), None);
    for odd in [
        f64::NAN,
        f64::INFINITY,
        -0.0,
        0.1 + 0.2,
        1e300,
        std::f64::consts::PI,
    ] {
        assert_eq!(decimal_digits(&[1.5, odd]), None, "{odd:?}");
    }
}

/// A block of decimals says it holds no NaN (so `count_over_time` is answered from its
/// header); a block of floats says it may.
#[tokio::test]
async fn decimal_blocks_hold_no_nan_float_blocks_may() {
    let c = PcoCompressor::new();
    let ts: Vec<i64> = (0..100).collect();
    let decimals: Vec<f64> = (0..100).map(|i| f64::from(i) / 4.0).collect();
    let block = c
        .compress_columns(SeriesId(1), &ts, &decimals)
        .await
        .expect("compress");
    assert!(!c.may_hold_nan(&block));
    let mut with_nan = decimals.clone();
    with_nan[50] = f64::NAN;
    let block = c
        .compress_columns(SeriesId(1), &ts, &with_nan)
        .await
        .expect("compress");
    assert!(c.may_hold_nan(&block));
}

/// Blocks of format version 1 (values always as floats, a 13-byte header) still decode.
#[test]
fn version_one_blocks_still_decode() {
    let ts: Vec<i64> = (0..300).map(|i| 1_700_000_000_000 + i * 15_000).collect();
    let vs: Vec<f64> = (0..300).map(|i| (f64::from(i) * 0.37).sin()).collect();
    let config = pco::ChunkConfig::default();
    let tcol = pco::standalone::simple_compress(&ts, &config).expect("timestamps");
    let vcol = pco::standalone::simple_compress(&vs, &config).expect("values");
    let mut block = vec![1u8];
    block.extend_from_slice(&300u32.to_le_bytes());
    block.extend_from_slice(&(tcol.len() as u32).to_le_bytes());
    block.extend_from_slice(&(vcol.len() as u32).to_le_bytes());
    block.extend_from_slice(&tcol);
    block.extend_from_slice(&vcol);
    let (mut t2, mut v2) = (Vec::new(), Vec::new());
    PcoCompressor::new()
        .decode_columns(&block, &mut t2, &mut v2)
        .expect("decode");
    assert_eq!(t2, ts);
    assert_eq!(v2, vs);
}

/// Pages of evenly spaced timestamps store none (version 3): regular scrapes cost their
/// values and page table only, and a block of such pages has no timestamp column at all.
#[test]
fn evenly_spaced_pages_store_no_timestamps() {
    let n = 3 * tsdb_pco::PAGE_POINTS + 17;
    let regular: Vec<i64> = (0..n as i64)
        .map(|i| 1_700_000_000_000 + i * 10_000)
        .collect();
    let mut jittered = regular.clone();
    for (i, t) in jittered.iter_mut().enumerate() {
        *t += (i as i64 * 7) % 3;
    }
    let vs: Vec<f64> = (0..n).map(|i| ((i * 37) % 1000) as f64 / 100.0).collect();
    let c = PcoCompressor::new();
    let even = c.encode_columns(&regular, &vs).expect("encode");
    let uneven = c.encode_columns(&jittered, &vs).expect("encode");
    assert_eq!(even[0], tsdb_pco::FORMAT_VERSION);
    assert!(
        even.len() + 100 < uneven.len(),
        "evenly spaced: {} bytes, jittered: {}",
        even.len(),
        uneven.len()
    );
    round_trip(&regular, &vs);
    round_trip(&jittered, &vs);
}

/// Blocks of format version 2 (every page stores its timestamps) still decode; a version 2
/// block is laid out as version 3 when no page is evenly spaced. In version 2 a page without
/// timestamps is damage, not an evenly spaced page.
#[test]
fn version_two_blocks_still_decode() {
    let ts: Vec<i64> = (0..5_000i64)
        .map(|i| 1_700_000_000_000 + i * 15_000 + i % 4)
        .collect();
    let vs: Vec<f64> = (0..5_000).map(|i| f64::from(i % 300) / 10.0).collect();
    let c = PcoCompressor::new();
    let mut block = c.encode_columns(&ts, &vs).expect("encode");
    block[0] = 2;
    let (mut t2, mut v2) = (Vec::new(), Vec::new());
    c.decode_columns(&block, &mut t2, &mut v2).expect("decode");
    assert_eq!(t2, ts);
    assert_eq!(v2, vs);

    let regular: Vec<i64> = (0..5_000i64).map(|i| i * 15_000).collect();
    let mut block = c.encode_columns(&regular, &vs).expect("encode");
    block[0] = 2;
    let err = c
        .decode_columns(&block, &mut Vec::new(), &mut Vec::new())
        .expect_err("a version 2 page without timestamps");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

/// Every real recording round-trips bit for bit (skipped loudly without `../shared/data`,
/// failing under `CI=true`).
#[test]
fn every_real_recording_round_trips() {
    let Some(datasets) = tsdb_testdata::real::datasets("tsdb-pco every_real_recording_round_trips")
        .expect("shared data loads")
    else {
        return;
    };
    for d in &datasets {
        let ts: Vec<i64> = d.points.iter().map(|p| p.0).collect();
        let vs: Vec<f64> = d.points.iter().map(|p| p.1).collect();
        round_trip(&ts, &vs);
    }
}
