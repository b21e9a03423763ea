#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use tsdb_core::decimal::decimal_digits;
use tsdb_core::{
    CodecId, CompressedBlock, Compressor, DataPoint, Error, Result, SeriesId, async_trait, codec,
};

mod format;
pub use format::{FORMAT_VERSION, GROUP, MAX_BLOCK_POINTS};

/// The bit-packed column codec (see the crate documentation). Stateless; cheap to clone.
#[derive(Clone, Copy, Debug, Default)]
pub struct PackedCompressor;

impl PackedCompressor {
    /// The codec.
    pub fn new() -> Self {
        PackedCompressor
    }

    /// Encodes two columns of the same length (at most [`MAX_BLOCK_POINTS`]) into a block's
    /// bytes.
    pub fn encode_columns(&self, timestamps: &[i64], values: &[f64]) -> Result<Vec<u8>> {
        check_columns(timestamps, values)?;
        Ok(format::encode(timestamps, values))
    }

    /// The block of `series` when its values are all decimals (`tsdb_core::decimal`), where
    /// this codec is far smaller than Gorilla; `None`, without encoding anything, otherwise.
    pub fn compress_decimals(
        &self,
        series: SeriesId,
        timestamps: &[i64],
        values: &[f64],
    ) -> Result<Option<CompressedBlock>> {
        check_columns(timestamps, values)?;
        let Some(decimal) = decimal_digits(values) else {
            return Ok(None);
        };
        let data = format::encode_as(timestamps, values, Some(decimal));
        Ok(Some(codec::block_of(
            CodecId::PACKED,
            series,
            timestamps,
            data,
        )))
    }

    /// Decodes a block's bytes, appending to the columns; returns the points decoded. On
    /// error the columns may hold part of the block.
    pub fn decode_columns(
        &self,
        data: &[u8],
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<usize> {
        format::decode(data, timestamps, values)
    }

    fn block(
        &self,
        series: SeriesId,
        timestamps: &[i64],
        values: &[f64],
    ) -> Result<CompressedBlock> {
        let data = self.encode_columns(timestamps, values)?;
        Ok(codec::block_of(CodecId::PACKED, series, timestamps, data))
    }

    /// [`Compressor::decompress_into`] without `async`, checked against the block's codec,
    /// point count and time range.
    pub fn decompress_columns(
        &self,
        block: &CompressedBlock,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        codec::expect_codec(block, CodecId::PACKED, "packed")?;
        let at = timestamps.len();
        self.decode_columns(&block.data, timestamps, values)?;
        codec::check_decoded("packed block", block, &timestamps[at..])
    }
}

/// Columns of the same length, at most [`MAX_BLOCK_POINTS`] long.
fn check_columns(timestamps: &[i64], values: &[f64]) -> Result<()> {
    if timestamps.len() != values.len() {
        return Err(Error::invalid_input(format_args!(
            "{} timestamps but {} values",
            timestamps.len(),
            values.len()
        )));
    }
    if timestamps.len() > MAX_BLOCK_POINTS {
        return Err(Error::invalid_input(format_args!(
            "a block holds at most {MAX_BLOCK_POINTS} points, got {}",
            timestamps.len()
        )));
    }
    Ok(())
}

#[async_trait]
impl Compressor for PackedCompressor {
    fn name(&self) -> &'static str {
        "packed"
    }

    fn codec_id(&self) -> CodecId {
        CodecId::PACKED
    }

    async fn compress(&self, points: &[DataPoint]) -> Result<CompressedBlock> {
        let (series, ts, vs) = codec::split_points(points)?;
        self.block(series, &ts, &vs)
    }

    async fn decompress(&self, block: &CompressedBlock) -> Result<Vec<DataPoint>> {
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        self.decompress_columns(block, &mut ts, &mut vs)?;
        Ok(ts
            .into_iter()
            .zip(vs)
            .map(|(t, v)| DataPoint::new(block.series_id, t, v))
            .collect())
    }

    async fn compress_columns(
        &self,
        series: SeriesId,
        timestamps: &[i64],
        values: &[f64],
    ) -> Result<CompressedBlock> {
        self.block(series, timestamps, values)
    }

    async fn decompress_into(
        &self,
        block: &CompressedBlock,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        self.decompress_columns(block, timestamps, values)
    }

    fn may_hold_nan(&self, block: &CompressedBlock) -> bool {
        format::read_header(&block.data).map_or(true, |h| h.may_hold_nan)
    }
}
