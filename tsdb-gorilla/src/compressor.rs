//! [`GorillaCompressor`]: the [`Compressor`] built on [`Encoder`] and [`Decoder`].

use bytes::Bytes;
use tsdb_core::{
    CodecId, CompressedBlock, Compressor, DataPoint, Error, Result, SeriesId, async_trait,
};

use crate::decoder::Decoder;
use crate::encoder::Encoder;
use crate::format::SOURCE;

/// The Gorilla codec as a [`Compressor`] (codec id [`CodecId::GORILLA`]).
///
/// The work is synchronous and CPU-bound; [`GorillaCompressor::compress_sync`] and
/// [`GorillaCompressor::decompress_sync`] do it without an executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct GorillaCompressor {
    _private: (),
}

/// `n` as a block's point count, which a `u32` holds.
fn block_point_count(n: usize) -> Result<u32> {
    u32::try_from(n).map_err(|_| {
        Error::invalid_input(format_args!(
            "a block holds at most {} points, got {n}",
            u32::MAX
        ))
    })
}

/// A decoder of `block`, once its codec and point count are checked against the block.
fn block_decoder(block: &CompressedBlock) -> Result<Decoder<'_>> {
    if block.codec != CodecId::GORILLA {
        return Err(Error::UnsupportedCodec {
            engine: "gorilla",
            codec: block.codec,
        });
    }
    let dec = Decoder::new(&block.data)?;
    if dec.point_count() != u64::from(block.point_count) {
        return Err(Error::corrupt(
            SOURCE,
            1,
            format_args!(
                "header holds {} points but the block says {}",
                dec.point_count(),
                block.point_count
            ),
        ));
    }
    Ok(dec)
}

impl GorillaCompressor {
    /// The codec.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Compressor::compress`] without `async`.
    pub fn compress_sync(&self, points: &[DataPoint]) -> Result<CompressedBlock> {
        let Some(first) = points.first() else {
            return Ok(CompressedBlock {
                codec: CodecId::GORILLA,
                series_id: SeriesId(0),
                start_time: 0,
                end_time: 0,
                point_count: 0,
                data: Bytes::from(Encoder::new().finish()),
            });
        };
        let point_count = block_point_count(points.len())?;
        let series = first.series_id;
        // Encode while noting (branch-free) whether any point belongs to another series; the
        // rare mixed batch is then reported with the first such point.
        let mut other_series = 0u64;
        let mut enc = Encoder::with_capacity(points.len());
        enc.append_all(points.iter().map(|p| {
            other_series |= p.series_id.0 ^ series.0;
            (p.timestamp, p.value)
        }));
        if other_series != 0
            && let Some((index, p)) = points
                .iter()
                .enumerate()
                .find(|(_, p)| p.series_id != series)
        {
            return Err(Error::MixedSeries {
                expected: series,
                found: p.series_id,
                index,
            });
        }
        // Timestamps that went back somewhere: the range from the points, not by decoding.
        let (start_time, end_time) = enc.ordered_time_range().unwrap_or_else(|| {
            points.iter().fold((i64::MAX, i64::MIN), |(min, max), p| {
                (min.min(p.timestamp), max.max(p.timestamp))
            })
        });
        Ok(CompressedBlock {
            codec: CodecId::GORILLA,
            series_id: series,
            start_time,
            end_time,
            point_count,
            data: Bytes::from(enc.finish()),
        })
    }

    /// [`Compressor::decompress`] without `async`.
    pub fn decompress_sync(&self, block: &CompressedBlock) -> Result<Vec<DataPoint>> {
        let mut dec = block_decoder(block)?;
        // Bounded by the block size (checked in `Decoder::new`).
        let mut out = Vec::new();
        let (min, max) = dec.decode_rows(block.series_id, &mut out)?;
        let (min, max) = if out.is_empty() { (0, 0) } else { (min, max) };
        if (min, max) != (block.start_time, block.end_time) {
            return Err(Error::corrupt(
                SOURCE,
                0,
                format_args!(
                    "decoded timestamps span [{min}, {max}] but the block says [{}, {}]",
                    block.start_time, block.end_time
                ),
            ));
        }
        Ok(out)
    }
}

#[async_trait]
impl Compressor for GorillaCompressor {
    fn name(&self) -> &'static str {
        "gorilla"
    }

    fn codec_id(&self) -> CodecId {
        CodecId::GORILLA
    }

    async fn compress(&self, points: &[DataPoint]) -> Result<CompressedBlock> {
        self.compress_sync(points)
    }

    async fn decompress(&self, block: &CompressedBlock) -> Result<Vec<DataPoint>> {
        self.decompress_sync(block)
    }

    async fn compress_columns(
        &self,
        series: SeriesId,
        timestamps: &[i64],
        values: &[f64],
    ) -> Result<CompressedBlock> {
        let point_count = block_point_count(timestamps.len())?;
        let data = crate::encode_columns(timestamps, values)?;
        if timestamps.is_empty() {
            return self.compress_sync(&[]);
        }
        let (mut start_time, mut end_time) = (i64::MAX, i64::MIN);
        for &t in timestamps {
            start_time = start_time.min(t);
            end_time = end_time.max(t);
        }
        Ok(CompressedBlock {
            codec: CodecId::GORILLA,
            series_id: series,
            start_time,
            end_time,
            point_count,
            data: Bytes::from(data),
        })
    }

    async fn decompress_into(
        &self,
        block: &CompressedBlock,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        self.decompress_columns(block, timestamps, values)
    }

    fn writes_gorilla_format(&self) -> bool {
        true
    }

    /// From the header's flags (version 2); a block that is not this codec's, or of version
    /// 1, may.
    fn may_hold_nan(&self, block: &CompressedBlock) -> bool {
        block.codec != CodecId::GORILLA
            || Decoder::new(&block.data).map_or(true, |d| d.may_hold_nan())
    }
}

impl GorillaCompressor {
    /// [`Compressor::decompress_into`] without `async`: bulk decoding straight into the
    /// columns' spare room, checked against the block's point count and time range.
    pub fn decompress_columns(
        &self,
        block: &CompressedBlock,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        let mut dec = block_decoder(block)?;
        let at = timestamps.len();
        let n = block.point_count as usize;
        timestamps.resize(at + n, 0);
        values.resize(at + n, 0.0);
        let got = dec.decode_into(&mut timestamps[at..], &mut values[at..])?;
        timestamps.truncate(at + got);
        values.truncate(at + got);
        Ok(())
    }
}
