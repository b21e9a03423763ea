#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod checkpoint_mark;
mod config;
mod damage;
mod db;
mod ingest;
mod promql_source;
pub mod query;
mod read;
mod records;

pub use builder::TimeSeriesDBBuilder;
pub use config::{DatabaseConfig, WalDurability, WalRecovery};
pub use damage::Damage;
pub use db::{DbStats, Selector, TimeSeriesDB};
pub use read::SeriesPoints;

pub use tsdb_core::{
    ChunkLocation, ChunkReference, CodecId, CompressedBlock, Compressor, DataPoint, DynCompressor,
    DynStorageEngine, DynTimeIndex, Error, Label, LabelMatcher, Labels, MatchOp, Result, SeriesId,
    StorageEngine, TimeIndex, TimeRange,
};

/// The contract crate, for engine authors: traits, types and (feature `testkit`) the
/// conformance kit.
pub use tsdb_core as core;

/// PromQL with the semantics of Prometheus 2.42, evaluated against a [`TimeSeriesDB`] (which
/// implements [`promql::SeriesSource`]).
pub use tsdb_promql as promql;

/// Codecs for chunks.
pub mod compression {
    #[cfg(feature = "gorilla")]
    #[cfg_attr(docsrs, doc(cfg(feature = "gorilla")))]
    pub use tsdb_gorilla::GorillaCompressor;
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
