#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The database: builder, configuration, handle, statistics, damage, reads.
pub use tsdb_database::{
    CompactionStats, Damage, DatabaseConfig, DbStats, RollupStats, RollupTier, Selector,
    SeriesPoints, SnapshotStats, TimeSeriesDB, TimeSeriesDBBuilder, WalDurability, WalRecovery,
};

// The contract's types and traits, at the top for convenience.
pub use tsdb_core::{
    ChunkLocation, ChunkReference, CodecId, CompressedBlock, Compressor, DataPoint, DynCompressor,
    DynStorageEngine, DynTimeIndex, Error, Label, LabelMatcher, Labels, MatchOp, Result, SeriesId,
    StorageEngine, TimeIndex, TimeRange,
};

/// The contract crate, for engine authors: traits, types and (feature `testkit`) the
/// conformance kit.
pub use tsdb_core as core;

/// The database engine crate (builder, ingestion, flush, recovery, reads).
pub use tsdb_database as database;

/// The typed query API: range functions over a sliding window, aggregations across series.
pub use tsdb_database::query;

/// PromQL with the semantics of Prometheus 2.42, evaluated against a [`TimeSeriesDB`] (which
/// implements [`promql::SeriesSource`]).
pub use tsdb_promql as promql;

/// Codecs for chunks.
pub mod compression {
    #[cfg(feature = "gorilla")]
    #[cfg_attr(docsrs, doc(cfg(feature = "gorilla")))]
    pub use tsdb_gorilla::GorillaCompressor;
    /// Bit-packed columns: about as small as Gorilla on floats, much smaller on decimals,
    /// and several times faster to decode (its chunks are always readable).
    pub use tsdb_packed::PackedCompressor;
    #[cfg(feature = "pco")]
    #[cfg_attr(docsrs, doc(cfg(feature = "pco")))]
    pub use tsdb_pco::PcoCompressor;
}

/// Storage engines for chunks.
pub mod storage {
    #[cfg(feature = "storage-disk")]
    #[cfg_attr(docsrs, doc(cfg(feature = "storage-disk")))]
    pub use tsdb_storage_disk::*;
}

/// Indexes of series and chunks.
pub mod index {
    #[cfg(feature = "index-memory")]
    #[cfg_attr(docsrs, doc(cfg(feature = "index-memory")))]
    pub use tsdb_index_memory::*;
    #[cfg(feature = "index-redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "index-redis")))]
    pub use tsdb_index_redis::*;
}
