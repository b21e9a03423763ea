//! The [`Compressor`] trait: turns the points of one series into a [`CompressedBlock`] and back.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::types::{CodecId, CompressedBlock, DataPoint};

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
}

/// A compressor behind a pointer: `Arc<DynCompressor>`.
pub type DynCompressor = dyn Compressor;

macro_rules! forward_compressor {
    ($($wrapper:ident),*) => {$(
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
        }
    )*};
}

forward_compressor!(Arc, Box);
