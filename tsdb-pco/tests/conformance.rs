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
    assert!(per_point < 1.3, "{per_point:.3} bytes a point");
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
