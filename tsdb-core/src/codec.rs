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
    if let (Some(&lo), Some(&hi)) = (timestamps.iter().min(), timestamps.iter().max())
        && (lo != block.start_time || hi != block.end_time)
    {
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
