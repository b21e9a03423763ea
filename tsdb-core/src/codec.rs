//! Helpers for [`crate::Compressor`] implementations: what every codec does the same way
//! around its own encoding (splitting points into columns, a block's span, checking a decoded
//! block against its header).

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::types::{CodecId, CompressedBlock, DataPoint, SeriesId};

/// The series of `points` and their two columns. Points of a second series are
/// [`Error::MixedSeries`]; an empty slice gives series `0` and empty columns.
pub fn split_points(points: &[DataPoint]) -> Result<(SeriesId, Vec<i64>, Vec<f64>)> {
    let Some(first) = points.first() else {
        return Ok((SeriesId(0), Vec::new(), Vec::new()));
    };
    if let Some((index, other)) = points
        .iter()
        .enumerate()
        .find(|(_, p)| p.series_id != first.series_id)
    {
        return Err(Error::MixedSeries {
            expected: first.series_id,
            found: other.series_id,
            index,
        });
    }
    Ok((
        first.series_id,
        points.iter().map(|p| p.timestamp).collect(),
        points.iter().map(|p| p.value).collect(),
    ))
}

/// The block of `codec` whose bytes `data` encode `timestamps` of `series`: its span is their
/// smallest and largest (`0, 0` when there are none). `timestamps` must be at most
/// `u32::MAX` long (the codec bounds its blocks).
pub fn block_of(
    codec: CodecId,
    series: SeriesId,
    timestamps: &[i64],
    data: Vec<u8>,
) -> CompressedBlock {
    let (start_time, end_time) = match (timestamps.iter().min(), timestamps.iter().max()) {
        (Some(&lo), Some(&hi)) => (lo, hi),
        _ => (0, 0),
    };
    CompressedBlock {
        codec,
        series_id: series,
        start_time,
        end_time,
        point_count: timestamps.len() as u32,
        data: Bytes::from(data),
    }
}

/// [`Error::UnsupportedCodec`] unless `block` was written by `codec` (`engine` names the codec
/// in the error).
pub fn expect_codec(block: &CompressedBlock, codec: CodecId, engine: &'static str) -> Result<()> {
    if block.codec == codec {
        Ok(())
    } else {
        Err(Error::UnsupportedCodec {
            engine,
            codec: block.codec,
        })
    }
}

/// Checks the timestamps a codec decoded from `block` against the block's header: as many as
/// its point count, spanning exactly its time range. Otherwise [`Error::Corrupt`] from
/// `source` (the codec's name for its blocks).
pub fn check_decoded(
    source: &'static str,
    block: &CompressedBlock,
    timestamps: &[i64],
) -> Result<()> {
    let n = timestamps.len();
    if n != block.point_count as usize {
        return Err(Error::corrupt(
            source,
            0,
            format_args!(
                "block holds {n} points but its header says {}",
                block.point_count
            ),
        ));
    }
    let (lo, hi, _) = span(timestamps);
    if n > 0 && (lo != block.start_time || hi != block.end_time) {
        return Err(Error::corrupt(
            source,
            0,
            format_args!(
                "timestamps span [{lo}, {hi}], the block says [{}, {}]",
                block.start_time, block.end_time
            ),
        ));
    }
    Ok(())
}

/// The smallest and largest of `ts` (`i64::MAX, i64::MIN` when empty), and whether they are
/// strictly ascending, in one pass that runs at the speed of the loads for ascending ones
/// (then the span is the first and the last).
pub fn span(ts: &[i64]) -> (i64, i64, bool) {
    let (Some(&first), Some(&last)) = (ts.first(), ts.last()) else {
        return (i64::MAX, i64::MIN, true);
    };
    if strictly_ascending(ts) {
        return (first, last, true);
    }
    let (lo, hi) = ts
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
    (lo, hi, false)
}

/// Whether every timestamp is below the next: four comparisons a step, joined without a
/// branch, so that the loop runs at the speed of the loads.
pub fn strictly_ascending(ts: &[i64]) -> bool {
    let Some(pairs) = ts.len().checked_sub(1) else {
        return true;
    };
    let (lower, upper) = (&ts[..pairs], &ts[1..]);
    let (quads, rest) = (lower.chunks_exact(4), upper.chunks_exact(4));
    let tail = quads.remainder().iter().zip(rest.remainder());
    let mut out_of_order = tail.fold(false, |bad, (a, b)| bad | (a >= b));
    for (a, b) in quads.zip(rest) {
        out_of_order |= (a[0] >= b[0]) | (a[1] >= b[1]) | (a[2] >= b[2]) | (a[3] >= b[3]);
    }
    !out_of_order
}

#[cfg(test)]
mod tests {
    use super::{span, strictly_ascending};

    #[test]
    fn strictly_ascending_finds_any_step_that_is_not_up() {
        assert!(strictly_ascending(&[]));
        assert!(strictly_ascending(&[5]));
        let up: Vec<i64> = (0..23).map(|i| i * 10).collect();
        assert!(strictly_ascending(&up));
        for at in 1..up.len() {
            for bad in [up[at - 1], up[at - 1] - 1, i64::MIN] {
                let mut ts = up.clone();
                ts[at] = bad;
                assert!(!strictly_ascending(&ts), "step into {at} to {bad}");
                let (lo, hi, ascending) = span(&ts);
                assert!(!ascending);
                assert_eq!(
                    (lo, hi),
                    (
                        ts.iter().copied().min().expect("not empty"),
                        ts.iter().copied().max().expect("not empty")
                    )
                );
            }
        }
        assert_eq!(span(&up), (0, 220, true));
        assert_eq!(span(&[]), (i64::MAX, i64::MIN, true));
    }
}
