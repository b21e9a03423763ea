//! The `tsdb-core` conformance kit and property tests, run against `PackedCompressor`.

use proptest::prelude::*;
use tsdb_core::{CodecId, Compressor, DataPoint, Error, SeriesId};
use tsdb_packed::PackedCompressor;

#[tokio::test]
async fn packed_compressor_conforms() {
    tsdb_core::testkit::compressor::run_all_assigned(&PackedCompressor::new(), CodecId::PACKED)
        .await;
}

fn round_trip(ts: &[i64], vs: &[f64]) -> Vec<u8> {
    let c = PackedCompressor::new();
    let data = c.encode_columns(ts, vs).expect("encode");
    let (mut t2, mut v2) = (Vec::new(), Vec::new());
    let n = c.decode_columns(&data, &mut t2, &mut v2).expect("decode");
    assert_eq!(n, ts.len());
    assert_eq!(t2, ts);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&v2), bits(vs));
    data
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any timestamps (any order, duplicates, the extremes) and any bit patterns come back
    /// exactly.
    #[test]
    fn any_points_round_trip_bit_for_bit(
        points in prop::collection::vec((any::<i64>(), any::<u64>()), 0..300)
    ) {
        let ts: Vec<i64> = points.iter().map(|p| p.0).collect();
        let vs: Vec<f64> = points.iter().map(|p| f64::from_bits(p.1)).collect();
        round_trip(&ts, &vs);
    }

    /// Scrapes with jitter and decimals of any digit count, with a few other values among
    /// them (NaN, `-0.0`, any bits: the block then stores floats), come back exactly.
    #[test]
    fn decimals_mixed_with_any_bits_round_trip(
        units in prop::collection::vec(-1_000_000i64..1_000_000, 1..700),
        jitter in prop::collection::vec(-50i64..50, 700),
        decimals in 0u32..12,
        odd in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![
            Just(f64::NAN.to_bits()), Just((-0.0f64).to_bits()), Just(f64::INFINITY.to_bits()), any::<u64>()
        ]), 0..3),
    ) {
        let scale = 10f64.powi(decimals as i32);
        let mut vs: Vec<f64> = units.iter().map(|&u| u as f64 / scale).collect();
        for (at, bits) in &odd {
            let i = at.index(vs.len());
            vs[i] = f64::from_bits(*bits);
        }
        let ts: Vec<i64> = (0..vs.len()).map(|i| 1_700_000_000_000 + i as i64 * 15_000 + jitter[i]).collect();
        round_trip(&ts, &vs);
    }

    /// A block cut anywhere, or with any byte changed, decodes to an error or to points; it
    /// never panics.
    #[test]
    fn damaged_blocks_never_panic(
        units in prop::collection::vec(-10_000i64..10_000, 1..200),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let vs: Vec<f64> = units.iter().map(|&u| u as f64 / 100.0).collect();
        let ts: Vec<i64> = (0..vs.len() as i64).map(|i| i * 10_000).collect();
        let data = round_trip(&ts, &vs);
        let c = PackedCompressor::new();
        let i = at.index(data.len());
        let (mut t, mut v) = (Vec::new(), Vec::new());
        prop_assert!(c.decode_columns(&data[..i], &mut t, &mut v).is_err(), "a cut block is refused");
        let mut changed = data.clone();
        changed[i] = byte;
        let (mut t, mut v) = (Vec::new(), Vec::new());
        let _ = c.decode_columns(&changed, &mut t, &mut v);
    }

    /// Arbitrary bytes never panic, and whatever decodes encodes again to the same points.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let c = PackedCompressor::new();
        let (mut t, mut v) = (Vec::new(), Vec::new());
        if c.decode_columns(&data, &mut t, &mut v).is_ok() {
            round_trip(&t, &v);
        }
    }
}

#[test]
fn regular_decimal_gauges_take_little_more_than_a_byte_a_point() {
    // A random walk in cents, one point every 10 s.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut cents = 5_000i64;
    let vs: Vec<f64> = (0..10_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cents += (x % 201) as i64 - 100;
            cents as f64 / 100.0
        })
        .collect();
    let ts: Vec<i64> = (0..vs.len() as i64)
        .map(|i| 1_700_000_000_000 + i * 10_000)
        .collect();
    let data = round_trip(&ts, &vs);
    let per_point = data.len() as f64 / vs.len() as f64;
    assert!(per_point < 1.2, "{per_point} bytes a point");
}

#[test]
fn a_block_without_nan_says_so_in_its_header() {
    let c = PackedCompressor::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let block = |vs: &[f64]| {
        let pts: Vec<DataPoint> = vs
            .iter()
            .enumerate()
            .map(|(i, &v)| DataPoint::new(SeriesId(1), i as i64, v))
            .collect();
        rt.block_on(c.compress(&pts)).expect("compress")
    };
    assert!(!c.may_hold_nan(&block(&[1.5, 2.25])));
    assert!(!c.may_hold_nan(&block(&[1.0 / 3.0, 2.0])));
    assert!(c.may_hold_nan(&block(&[1.0, f64::NAN])));
    // The stale marker's NaN payload counts too.
    assert!(c.may_hold_nan(&block(&[1.0, f64::from_bits(0x7ff0_0000_0000_0002)])));
}

#[test]
fn wrong_counts_and_spans_are_corrupt() {
    let c = PackedCompressor::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let pts: Vec<DataPoint> = (0..50)
        .map(|i| DataPoint::new(SeriesId(3), i * 1000, i as f64))
        .collect();
    let block = rt.block_on(c.compress(&pts)).expect("compress");
    let mut more = block.clone();
    more.point_count += 1;
    assert!(matches!(
        rt.block_on(c.decompress(&more)),
        Err(Error::Corrupt { .. })
    ));
    let mut later = block.clone();
    later.end_time += 1;
    assert!(matches!(
        rt.block_on(c.decompress(&later)),
        Err(Error::Corrupt { .. })
    ));
    let mut other = block;
    other.codec = CodecId::GORILLA;
    assert!(matches!(
        rt.block_on(c.decompress(&other)),
        Err(Error::UnsupportedCodec { .. })
    ));
}

/// Every real recording and synthetic series round-trips through blocks of 1,000 points (the
/// size the database flushes); prints the bytes a point next to Gorilla's.
#[test]
fn real_and_synthetic_series_round_trip() {
    use tsdb_testdata::synthetic;
    let mut sets: Vec<(String, Vec<(i64, f64)>)> = vec![
        ("synthetic gauge".into(), synthetic::prom_gauge(20_000, 1)),
        ("synthetic counter".into(), synthetic::counter(20_000, 2)),
        ("synthetic random".into(), synthetic::random(20_000, 3)),
    ];
    if let Some(real) = tsdb_testdata::real::datasets("packed codec round trip").expect("loads") {
        sets.extend(real.into_iter().map(|d| (d.name, d.points)));
    }
    for (name, points) in &sets {
        let (mut ours, mut gorilla) = (0usize, 0usize);
        for block in points.chunks(1_000) {
            let ts: Vec<i64> = block.iter().map(|p| p.0).collect();
            let vs: Vec<f64> = block.iter().map(|p| p.1).collect();
            ours += round_trip(&ts, &vs).len();
            let mut enc = tsdb_gorilla::Encoder::new();
            for &(t, v) in block {
                enc.append(t, v);
            }
            gorilla += enc.finish().len();
        }
        let n = points.len() as f64;
        println!(
            "{name}: {} points, packed {:.2} B/pt, gorilla {:.2} B/pt",
            points.len(),
            ours as f64 / n,
            gorilla as f64 / n
        );
    }
}
