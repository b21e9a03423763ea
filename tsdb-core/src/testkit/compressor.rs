//! Conformance tests for [`Compressor`] implementations.

use bytes::{Bytes, BytesMut};

use super::data::{SplitMix64, adversarial_series};
use crate::compressor::Compressor;
use crate::error::Error;
use crate::types::{CodecId, CompressedBlock, DataPoint, SeriesId};

/// Runs every check of this module on a third-party codec, whose id must be outside the
/// range this project reserves (`0x8000..=0xFFFF`).
pub async fn run_all(c: &dyn Compressor) {
    assert!(
        c.codec_id().0 >= 0x8000,
        "{}: codec id {} is reserved for this project's codecs; third-party codecs pick one in 0x8000..=0xFFFF",
        c.name(),
        c.codec_id()
    );
    run_checks(c).await;
}

/// Runs every check on one of this project's codecs, whose id is assigned in the reserved
/// range (`id` must be the one it reports).
pub async fn run_all_assigned(c: &dyn Compressor, id: CodecId) {
    assert_eq!(c.codec_id(), id, "{}: not the assigned codec id", c.name());
    assert!(id.0 != 0 && id.0 < 0x8000, "{id} is not a reserved id");
    run_checks(c).await;
}

async fn run_checks(c: &dyn Compressor) {
    columns_agree_with_points(c).await;
    round_trips_adversarial_series(c).await;
    says_when_a_block_may_hold_nan(c).await;
    handles_empty_and_single_point(c).await;
    rejects_mixed_series(c).await;
    rejects_foreign_codec(c).await;
    rejects_truncated_and_extended_blocks(c).await;
    rejects_metadata_mismatch(c).await;
    survives_damaged_bytes(c).await;
}

/// The column methods encode and decode the same as the point methods.
pub async fn columns_agree_with_points(c: &dyn Compressor) {
    for (name, points) in adversarial_series() {
        let series = points[0].series_id;
        let ts: Vec<i64> = points.iter().map(|p| p.timestamp).collect();
        let vs: Vec<f64> = points.iter().map(|p| p.value).collect();
        let by_points = c
            .compress(&points)
            .await
            .unwrap_or_else(|e| panic!("{name}: compress failed: {e}"));
        let by_columns = c
            .compress_columns(series, &ts, &vs)
            .await
            .unwrap_or_else(|e| panic!("{name}: compress_columns failed: {e}"));
        assert_eq!(
            (
                by_columns.codec,
                by_columns.series_id,
                by_columns.start_time,
                by_columns.end_time,
                by_columns.point_count
            ),
            (
                by_points.codec,
                by_points.series_id,
                by_points.start_time,
                by_points.end_time,
                by_points.point_count
            ),
            "{name}: compress_columns writes other metadata than compress"
        );
        let (mut got_t, mut got_v) = (vec![7i64], vec![7.0f64]);
        c.decompress_into(&by_columns, &mut got_t, &mut got_v)
            .await
            .unwrap_or_else(|e| panic!("{name}: decompress_into failed: {e}"));
        assert_eq!(
            (got_t[0], got_v[0]),
            (7, 7.0),
            "{name}: decompress_into must append"
        );
        let got: Vec<DataPoint> = got_t[1..]
            .iter()
            .zip(&got_v[1..])
            .map(|(&t, &v)| DataPoint::new(series, t, v))
            .collect();
        assert_bit_exact(name, &got, &points);
    }
    assert!(
        c.compress_columns(SeriesId(1), &[1, 2], &[1.0])
            .await
            .is_err(),
        "{}: columns of different lengths must be refused",
        c.name()
    );
}

fn assert_bit_exact(name: &str, got: &[DataPoint], want: &[DataPoint]) {
    assert_eq!(
        got.len(),
        want.len(),
        "{name}: point count differs after round trip"
    );
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.bit_eq(w),
            "{name}: point {i} differs after round trip: got ({}, {}, {:#018x}), want ({}, {}, {:#018x})",
            g.series_id,
            g.timestamp,
            g.value.to_bits(),
            w.series_id,
            w.timestamp,
            w.value.to_bits()
        );
    }
}

/// Every adversarial series round-trips bit-exact, in order, with correct block metadata.
pub async fn round_trips_adversarial_series(c: &dyn Compressor) {
    for (name, points) in adversarial_series() {
        let block = c
            .compress(&points)
            .await
            .unwrap_or_else(|e| panic!("{name}: compress failed: {e}"));
        let min = points.iter().map(|p| p.timestamp).min();
        let max = points.iter().map(|p| p.timestamp).max();
        assert_eq!(block.codec, c.codec_id(), "{name}: block codec id");
        assert_eq!(
            block.series_id, points[0].series_id,
            "{name}: block series id"
        );
        assert_eq!(
            block.point_count as usize,
            points.len(),
            "{name}: block point count"
        );
        assert_eq!(
            Some(block.start_time),
            min,
            "{name}: start_time must be the smallest timestamp"
        );
        assert_eq!(
            Some(block.end_time),
            max,
            "{name}: end_time must be the largest timestamp"
        );
        let back = c
            .decompress(&block)
            .await
            .unwrap_or_else(|e| panic!("{name}: decompress failed: {e}"));
        assert_bit_exact(name, &back, &points);
    }
}

/// [`Compressor::may_hold_nan`] never says `false` of a block holding a NaN (readers would
/// count a staleness marker as a sample).
pub async fn says_when_a_block_may_hold_nan(c: &dyn Compressor) {
    for (name, points) in adversarial_series() {
        if !points.iter().any(|p| p.value.is_nan()) {
            continue;
        }
        let block = c
            .compress(&points)
            .await
            .unwrap_or_else(|e| panic!("{name}: compress failed: {e}"));
        assert!(
            c.may_hold_nan(&block),
            "{name}: may_hold_nan is false for a block holding a NaN"
        );
    }
}

/// Empty input gives an empty block that decodes to nothing; one point round-trips.
pub async fn handles_empty_and_single_point(c: &dyn Compressor) {
    let empty = c
        .compress(&[])
        .await
        .expect("compress of no points must succeed");
    assert_eq!(empty.point_count, 0, "empty block point count");
    assert_eq!(
        (empty.start_time, empty.end_time),
        (0, 0),
        "empty block times"
    );
    assert_eq!(empty.series_id, SeriesId(0), "empty block series id");
    let back = c.decompress(&empty).await.expect("empty block must decode");
    assert!(
        back.is_empty(),
        "empty block decoded to {} points",
        back.len()
    );

    for bits in super::data::SPECIAL_VALUE_BITS {
        for t in [i64::MIN, -1, 0, 1, i64::MAX] {
            let p = [DataPoint::new(77u64, t, f64::from_bits(*bits))];
            let block = c.compress(&p).await.expect("compress of one point");
            assert_eq!(
                (block.start_time, block.end_time, block.point_count),
                (t, t, 1)
            );
            let back = c.decompress(&block).await.expect("decompress of one point");
            assert_bit_exact("single point", &back, &p);
        }
    }
}

/// A batch with points of two series is refused with [`Error::MixedSeries`].
pub async fn rejects_mixed_series(c: &dyn Compressor) {
    let points = [
        DataPoint::new(1u64, 0, 1.0),
        DataPoint::new(1u64, 1, 2.0),
        DataPoint::new(2u64, 2, 3.0),
    ];
    match c.compress(&points).await {
        Err(Error::MixedSeries {
            expected,
            found,
            index,
        }) => {
            assert_eq!(
                (expected, found, index),
                (SeriesId(1), SeriesId(2), 2),
                "MixedSeries fields"
            );
        }
        other => panic!("mixed series must give Error::MixedSeries, got {other:?}"),
    }
}

/// A block written by another codec is refused with [`Error::UnsupportedCodec`].
pub async fn rejects_foreign_codec(c: &dyn Compressor) {
    let points: Vec<_> = (0..10).map(|i| DataPoint::new(3u64, i, i as f64)).collect();
    let mut block = c.compress(&points).await.expect("compress");
    block.codec = CodecId(c.codec_id().0.wrapping_add(1).max(1));
    match c.decompress(&block).await {
        Err(Error::UnsupportedCodec { codec, .. }) => assert_eq!(codec, block.codec),
        other => panic!("foreign codec id must give Error::UnsupportedCodec, got {other:?}"),
    }
}

fn sample_block_points() -> Vec<DataPoint> {
    let mut rng = SplitMix64(1234);
    (0..300)
        .map(|i| {
            let v = if i % 3 == 0 {
                (rng.below(10)) as f64
            } else {
                f64::from_bits(rng.next_u64())
            };
            DataPoint::new(9u64, i * 1000 + rng.below(5) as i64, v)
        })
        .collect()
}

/// Every truncation of a block's bytes, and every extension by a byte, is a
/// [`Error::Corrupt`], never a panic or a short answer.
pub async fn rejects_truncated_and_extended_blocks(c: &dyn Compressor) {
    let points = sample_block_points();
    let block = c.compress(&points).await.expect("compress");
    for len in 0..block.data.len() {
        let mut cut = block.clone();
        cut.data = block.data.slice(..len);
        match c.decompress(&cut).await {
            Err(Error::Corrupt { .. }) => {}
            other => panic!(
                "block truncated to {len} of {} bytes must give Error::Corrupt, got {}",
                block.data.len(),
                describe(&other)
            ),
        }
    }
    for extra in [0u8, 1, 0x80, 0xff] {
        let mut longer = BytesMut::from(&block.data[..]);
        longer.extend_from_slice(&[extra]);
        let mut ext = block.clone();
        ext.data = longer.freeze();
        match c.decompress(&ext).await {
            Err(Error::Corrupt { .. }) => {}
            other => panic!(
                "block with a trailing byte {extra:#x} must give Error::Corrupt, got {}",
                describe(&other)
            ),
        }
    }
}

/// A block whose `point_count`, `start_time` or `end_time` disagree with its bytes is a
/// [`Error::Corrupt`].
pub async fn rejects_metadata_mismatch(c: &dyn Compressor) {
    let points = sample_block_points();
    let block = c.compress(&points).await.expect("compress");
    type Tweak = fn(&mut CompressedBlock);
    let tweaks: [(&str, Tweak); 5] = [
        ("point_count + 1", |b| b.point_count += 1),
        ("point_count - 1", |b| b.point_count -= 1),
        ("start_time - 1", |b| b.start_time -= 1),
        ("end_time + 1", |b| b.end_time += 1),
        ("empty data", |b| b.data = Bytes::new()),
    ];
    for (what, tweak) in tweaks {
        let mut bad = block.clone();
        tweak(&mut bad);
        match c.decompress(&bad).await {
            Err(Error::Corrupt { .. }) => {}
            other => panic!(
                "block with {what} must give Error::Corrupt, got {}",
                describe(&other)
            ),
        }
    }
}

/// Flipped bits and random bytes never make `decompress` panic, and whatever it returns
/// honours the block's metadata.
pub async fn survives_damaged_bytes(c: &dyn Compressor) {
    let points = sample_block_points();
    let block = c.compress(&points).await.expect("compress");
    for bit in 0..block.data.len() * 8 {
        let mut data = BytesMut::from(&block.data[..]);
        data[bit / 8] ^= 0x80 >> (bit % 8);
        let mut bad = block.clone();
        bad.data = data.freeze();
        if let Ok(decoded) = c.decompress(&bad).await {
            check_consistent(&bad, &decoded, &format!("bit {bit} flipped"));
        }
    }
    let mut rng = SplitMix64(4321);
    for round in 0..2000 {
        let len = rng.below(64) as usize;
        let data: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        let mut bad = block.clone();
        bad.data = Bytes::from(data);
        bad.point_count = rng.below(100) as u32;
        if let Ok(decoded) = c.decompress(&bad).await {
            check_consistent(&bad, &decoded, &format!("random bytes, round {round}"));
        }
    }
}

fn check_consistent(block: &CompressedBlock, decoded: &[DataPoint], what: &str) {
    assert_eq!(
        decoded.len(),
        block.point_count as usize,
        "{what}: decoded count differs from point_count"
    );
    if !decoded.is_empty() {
        let min = decoded.iter().map(|p| p.timestamp).min();
        let max = decoded.iter().map(|p| p.timestamp).max();
        assert_eq!(
            (min, max),
            (Some(block.start_time), Some(block.end_time)),
            "{what}: decoded times outside the block's bounds"
        );
    }
    assert!(
        decoded.iter().all(|p| p.series_id == block.series_id),
        "{what}: decoded points of another series"
    );
}

fn describe(r: &Result<Vec<DataPoint>, Error>) -> String {
    match r {
        Ok(p) => format!("Ok with {} points", p.len()),
        Err(e) => format!("Err({e:?})"),
    }
}
