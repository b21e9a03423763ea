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
mod tiers;
mod tombstones;

pub use builder::TimeSeriesDBBuilder;
pub use config::{
    DatabaseConfig, FSYNC_BUCKET_BOUNDS, FsyncLatency, RollupTier, WalDurability, WalRecovery,
};
pub use damage::Damage;
pub use db::{CompactionStats, DbStats, RollupStats, Selector, SnapshotStats, TimeSeriesDB};
pub use read::SeriesPoints;
pub use tsdb_core::{Error, Result};

/// Entry points for `fuzz/` (not a stable API): parsers of on-disk bytes the database owns.
#[doc(hidden)]
pub mod fuzzing {
    use tsdb_core::{Bytes, CodecId, CompressedBlock, Error, SeriesId};

    use crate::tiers::{TierState, derived_id, unwrap, wrap};

    /// Parses `data` as a rollup container whose outer block names the series its header
    /// names; when it parses, its parts lie inside it and writing them again gives `data`
    /// back. Returns whether it parsed.
    pub fn rollup_container(data: &[u8]) -> bool {
        let u64_at = |at: usize| {
            data.get(at..at + 8).map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                u64::from_le_bytes(a)
            })
        };
        let series_id = match (u64_at(1), u64_at(9)) {
            (Some(base), Some(r)) => derived_id(SeriesId(base), r as i64),
            _ => SeriesId(0),
        };
        let block = CompressedBlock {
            codec: CodecId::ROLLUP,
            series_id,
            start_time: 0,
            end_time: 0,
            point_count: 0,
            data: Bytes::copy_from_slice(data),
        };
        let Ok((of, parts)) = unwrap(&block) else {
            return false;
        };
        assert_eq!(
            &wrap(of, &parts).data[..],
            data,
            "a parsed container writes back as it was"
        );
        true
    }

    /// Parses `data` as the tiers' state file; when it parses, storing it again and parsing
    /// that gives the same state. Returns whether it parsed.
    pub fn rollup_state(data: &[u8]) -> bool {
        match TierState::parse(data, "fuzz") {
            Ok(state) => {
                let again =
                    TierState::parse(&state.encode(), "fuzz").expect("a stored state parses");
                assert_eq!(again, state, "a state stores and parses back as it was");
                true
            }
            Err(Error::Corrupt { .. }) => false,
            Err(e) => panic!("only `Corrupt` for bad bytes: {e}"),
        }
    }
}
