//! The [`Compressor`] trait: turns the points of one series into a [`CompressedBlock`] and back.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::types::{CodecId, CompressedBlock, DataPoint, SeriesId, TimeRange};

/// A codec for the points of one series.
///
/// # Contract
/// - `compress` takes the points of **one** series in the order given (not necessarily sorted,
///   duplicates allowed) and encodes them all. Points of a second series make it fail with
///   [`crate::Error::MixedSeries`]. An empty slice gives an empty block (`point_count == 0`,
///   series id `0`, times `0`).
/// - The block's `start_time`/`end_time` are the smallest/largest timestamp, `codec` is
///   [`Compressor::codec_id`].
/// - `decompress` returns exactly the points given to `compress`, in the same order, bit for bit
///   (values compared by `f64::to_bits`: every NaN payload, `-0.0`, infinities and subnormals
///   survive).
/// - `decompress` of a block whose `codec` is not this codec's fails with
///   [`crate::Error::UnsupportedCodec`]; of bytes that are not a valid encoding, or that disagree
///   with the block's `point_count`, `start_time` or `end_time`, with [`crate::Error::Corrupt`].
///   It never panics and never allocates much more than the input justifies.
///
/// - The column methods ([`Compressor::compress_columns`], [`Compressor::decompress_into`]) are
///   the same codec seen through columns; their defaults go through `compress`/`decompress`,
///   and a codec overrides them when it can do better. They must agree with the point methods.
/// - Codec ids below `0x8000` belong to this project; a third-party codec uses one in
///   `0x8000..=0xFFFF` (the kit checks it, and the database refuses a reserved id that is not
///   the project's own codec).
///
/// The conformance kit (`tsdb_core::testkit::compressor`, feature `testkit`) checks all this.
#[async_trait]
pub trait Compressor: Send + Sync + Debug + 'static {
    /// A short, stable name, e.g. `"gorilla"`.
    fn name(&self) -> &'static str;

    /// The id written into every block this codec produces.
    fn codec_id(&self) -> CodecId;

    /// Encodes the points of one series.
    async fn compress(&self, points: &[DataPoint]) -> Result<CompressedBlock>;

    /// Decodes a block written by [`Compressor::compress`].
    async fn decompress(&self, block: &CompressedBlock) -> Result<Vec<DataPoint>>;

    /// Encodes the points of one series given as columns (`timestamps[i]`, `values[i]`), as
    /// [`Compressor::compress`] would encode them. Lengths that differ are
    /// [`Error::InvalidInput`]. The default builds the points and calls `compress`.
    async fn compress_columns(
        &self,
        series: SeriesId,
        timestamps: &[i64],
        values: &[f64],
    ) -> Result<CompressedBlock> {
        if timestamps.len() != values.len() {
            return Err(Error::invalid_input(format_args!(
                "{} timestamps but {} values",
                timestamps.len(),
                values.len()
            )));
        }
        let points: Vec<DataPoint> = timestamps
            .iter()
            .zip(values)
            .map(|(&t, &v)| DataPoint::new(series, t, v))
            .collect();
        self.compress(&points).await
    }

    /// Appends the points of a block to the columns, in the block's order (the hot path of
    /// reads). On error the columns may hold part of the block; callers truncate them. The
    /// default calls `decompress`.
    async fn decompress_into(
        &self,
        block: &CompressedBlock,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        let points = self.decompress(block).await?;
        timestamps.extend(points.iter().map(|p| p.timestamp));
        values.extend(points.iter().map(|p| p.value));
        Ok(())
    }

    /// [`Compressor::decompress_into`] for a reader that only needs the points inside
    /// `range` (inclusive): every point of the block inside it must be appended, in the
    /// block's order; points outside it may be appended too or left out. A codec whose
    /// blocks decode in parts (pages with their time spans) decodes only the parts that
    /// overlap. The default decodes the whole block.
    async fn decompress_range_into(
        &self,
        block: &CompressedBlock,
        range: TimeRange,
        timestamps: &mut Vec<i64>,
        values: &mut Vec<f64>,
    ) -> Result<()> {
        let _ = range;
        self.decompress_into(block, timestamps, values).await
    }

    /// Whether the blocks this codec writes are exactly the Gorilla bit format of the
    /// `tsdb-gorilla` crate, so that a database whose head buffers already hold a series in
    /// that format may store those bytes without encoding them again. Default `false`; only
    /// the Gorilla codec itself says yes.
    fn writes_gorilla_format(&self) -> bool {
        false
    }

    /// Whether a value of `block` may be NaN (a staleness marker is one), told from the
    /// block's header without decoding it. For a block without NaN, a reader that only counts
    /// points in a window the block lies inside (PromQL's `count_over_time`) takes the count
    /// from the header. The default, `true`, is always correct; a codec that records the fact
    /// in its blocks overrides it, and must never answer `false` for a block holding a NaN.
    fn may_hold_nan(&self, block: &CompressedBlock) -> bool {
        let _ = block;
        true
    }
}

/// A compressor behind a pointer: `Arc<DynCompressor>`.
pub type DynCompressor = dyn Compressor;

macro_rules! forward_compressor {
    ($($wrapper:ident),*) => {$(
        #[deny(clippy::missing_trait_methods)]
        #[async_trait]
        impl<T: Compressor + ?Sized> Compressor for $wrapper<T> {
            fn name(&self) -> &'static str {
                (**self).name()
            }
            fn codec_id(&self) -> CodecId {
                (**self).codec_id()
            }
            async fn compress(&self, points: &[DataPoint]) -> Result<CompressedBlock> {
                (**self).compress(points).await
            }
            async fn decompress(&self, block: &CompressedBlock) -> Result<Vec<DataPoint>> {
                (**self).decompress(block).await
            }
            async fn compress_columns(
                &self,
                series: SeriesId,
                timestamps: &[i64],
                values: &[f64],
            ) -> Result<CompressedBlock> {
                (**self).compress_columns(series, timestamps, values).await
            }
            async fn decompress_into(
                &self,
                block: &CompressedBlock,
                timestamps: &mut Vec<i64>,
                values: &mut Vec<f64>,
            ) -> Result<()> {
                (**self).decompress_into(block, timestamps, values).await
            }
            async fn decompress_range_into(
                &self,
                block: &CompressedBlock,
                range: TimeRange,
                timestamps: &mut Vec<i64>,
                values: &mut Vec<f64>,
            ) -> Result<()> {
                (**self)
                    .decompress_range_into(block, range, timestamps, values)
                    .await
            }
            fn writes_gorilla_format(&self) -> bool {
                (**self).writes_gorilla_format()
            }
            fn may_hold_nan(&self, block: &CompressedBlock) -> bool {
                (**self).may_hold_nan(block)
            }
        }
    )*};
}

forward_compressor!(Arc, Box);
