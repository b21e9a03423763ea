#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Putting it together: engines and configuration into a database.
mod builder;
mod config;
// The database handle; its write, flush, read and recover phases are its submodules.
mod db;
// Ingestion: per-series head buffers and the queue of sealed heads.
mod ingest;
// Reads: merging stored chunks and buffered points.
mod read;
// The typed query API: a builder of PromQL, evaluated by `tsdb-promql`.
pub mod query;
// The PromQL series source over the database.
mod promql_source;
// What the database keeps on disk beside the engines: WAL records, the checkpoint mark,
// the damage log.
mod checkpoint_mark;
// The wall clock (the future guard, retention).
mod clock;
mod damage;
mod records;
#[doc(hidden)]
pub mod tiers;
mod tombstones;

pub use builder::TimeSeriesDBBuilder;
pub use config::{
    DatabaseConfig, FSYNC_BUCKET_BOUNDS, FsyncLatency, RollupTier, WalDurability, WalRecovery,
};
pub use damage::Damage;
pub use db::{CompactionStats, DbStats, RollupStats, Selector, SnapshotStats, TimeSeriesDB};
pub use read::SeriesPoints;
pub use tsdb_core::{Error, Result};
