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
        let point_count = u32::try_from(points.len()).map_err(|_| {
            Error::invalid_input(format_args!(
                "a block holds at most {} points, got {}",
                u32::MAX,
                points.len()
            ))
        })?;
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
        let (start_time, end_time) = enc.time_range().unwrap_or((0, 0));
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
        if block.codec != CodecId::GORILLA {
            return Err(Error::UnsupportedCodec {
                engine: "gorilla",
                codec: block.codec,
            });
        }
        let mut dec = Decoder::new(&block.data)?;
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
        // Bounded by the block size (checked in `Decoder::new`).
        let mut out = Vec::with_capacity(block.point_count as usize);
        let mut min = i64::MAX;
        let mut max = i64::MIN;
        // Bulk decode through a small pair of columns (the fast path), then the points.
        let mut ts = [0i64; 256];
        let mut vs = [0f64; 256];
        loop {
            let n = dec.decode_into(&mut ts, &mut vs)?;
            if n == 0 {
                break;
            }
            out.extend(ts[..n].iter().zip(&vs[..n]).map(|(&timestamp, &value)| {
                min = min.min(timestamp);
                max = max.max(timestamp);
                DataPoint {
                    series_id: block.series_id,
                    timestamp,
                    value,
                }
            }));
        }
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
}
