//! [`ConfigFile`]: the TOML configuration of `gorilla-tsdb serve`, mapped onto
//! [`DatabaseConfig`] and [`ServerOptions`]. Durations are written as everywhere else in
//! this workspace ([`gorilla_tsdb::promql::notation`]): `15d`, `2m`, `500ms`, `1h30m`, or a
//! number of seconds.
//!
//! ```toml
//! [http]
//! listen = "127.0.0.1:9201"
//!
//! [database]
//! data_dir = "/var/lib/gorilla-tsdb"
//! retention = "15d"
//! wal_durability = "always"   # "always", "never", or an fsync interval such as "10ms"
//! cold_after = "2h"
//!
//! # Rollup tiers (downsampling), kept longer than the raw points.
//! [[database.rollup_tiers]]
//! resolution = "5m"
//! retention = "400d"
//! [[database.rollup_tiers]]
//! resolution = "1h"
//!
//! [query]
//! timeout = "2m"
//! max_samples = 50000000
//! ```
//!
//! Every key is optional; what is not given keeps its default (or the command line's
//! value: flags and `GORILLA_TSDB_*` variables win over the file). Unknown keys are errors,
//! so that a typo does not go unnoticed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gorilla_tsdb::{DatabaseConfig, Error, RollupTier, WalDurability, WalRecovery};
use serde::Deserialize;

use crate::options::ServerOptions;
use gorilla_tsdb::promql::notation::parse_duration;

/// An optional duration key, in the workspace's duration notation.
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text: Option<String> = Option::deserialize(d)?;
    text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
        .transpose()
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ConfigFile {
    /// `[http]`.
    #[serde(default)]
    pub http: HttpSection,
    /// `[database]`: onto [`DatabaseConfig`].
    #[serde(default)]
    pub database: DatabaseSection,
    /// `[query]`.
    #[serde(default)]
    pub query: QuerySection,
    /// `[write]`.
    #[serde(default)]
    pub write: WriteSection,
}

/// `[http]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct HttpSection {
    /// Address to listen on, e.g. `127.0.0.1:9201`.
    pub listen: Option<SocketAddr>,
    /// [`ServerOptions::request_timeout`].
    #[serde(default, deserialize_with = "duration")]
    pub request_timeout: Option<Duration>,
    /// [`ServerOptions::max_body_bytes`].
    pub max_body_bytes: Option<usize>,
}

/// `[database]`: each key is the [`DatabaseConfig`] field of the same name.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct DatabaseSection {
    /// [`DatabaseConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// [`DatabaseConfig::redis_url`].
    pub redis_url: Option<String>,
    /// [`DatabaseConfig::redis_key_prefix`].
    pub redis_key_prefix: Option<String>,
    /// [`DatabaseConfig::chunk_max_points`].
    pub chunk_max_points: Option<u32>,
    /// [`DatabaseConfig::flush_interval`].
    #[serde(default, deserialize_with = "duration")]
    pub flush_interval: Option<Duration>,
    /// [`DatabaseConfig::wal_durability`]: `"always"`, `"never"` or an fsync interval.
    pub wal_durability: Option<String>,
    /// [`DatabaseConfig::wal_segment_size`], bytes.
    pub wal_segment_size: Option<u64>,
    /// [`DatabaseConfig::retention`]; absent keeps everything.
    #[serde(default, deserialize_with = "duration")]
    pub retention: Option<Duration>,
    /// [`DatabaseConfig::future_tolerance`]: how far ahead of the clock a point may be;
    /// `"none"` accepts any timestamp.
    pub future_tolerance: Option<String>,
    /// [`DatabaseConfig::out_of_order_window`]; absent accepts any point (the default).
    #[serde(default, deserialize_with = "duration")]
    pub out_of_order_window: Option<Duration>,
    /// [`DatabaseConfig::ingest_shards`].
    pub ingest_shards: Option<usize>,
    /// [`DatabaseConfig::flush_queue_capacity`].
    pub flush_queue_capacity: Option<usize>,
    /// [`DatabaseConfig::max_buffered_points`].
    pub max_buffered_points: Option<u64>,
    /// [`DatabaseConfig::flush_workers`].
    pub flush_workers: Option<usize>,
    /// [`DatabaseConfig::checkpoint_interval`].
    #[serde(default, deserialize_with = "duration")]
    pub checkpoint_interval: Option<Duration>,
    /// [`DatabaseConfig::wal_recovery`]: `"strict"` or `"skip-damaged"`.
    pub wal_recovery: Option<String>,
    /// [`DatabaseConfig::stall_timeout`].
    #[serde(default, deserialize_with = "duration")]
    pub stall_timeout: Option<Duration>,
    /// [`DatabaseConfig::compaction_interval`]: a duration, or `"none"` for explicit
    /// compactions only.
    pub compaction_interval: Option<String>,
    /// [`DatabaseConfig::cold_after`].
    #[serde(default, deserialize_with = "duration")]
    pub cold_after: Option<Duration>,
    /// [`DatabaseConfig::compacted_chunk_points`].
    pub compacted_chunk_points: Option<u32>,
    /// [`DatabaseConfig::pack_decimal_chunks`].
    pub pack_decimal_chunks: Option<bool>,
    /// [`DatabaseConfig::rollup_tiers`] (`[[database.rollup_tiers]]` tables).
    pub rollup_tiers: Option<Vec<RollupTierSection>>,
}

/// One `[[database.rollup_tiers]]` table: a [`RollupTier`].
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct RollupTierSection {
    /// [`RollupTier::resolution`].
    #[serde(deserialize_with = "required_duration")]
    pub resolution: Duration,
    /// [`RollupTier::retention`]; absent keeps the tier's buckets for ever.
    #[serde(default, deserialize_with = "duration")]
    pub retention: Option<Duration>,
}

fn required_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// `[query]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct QuerySection {
    /// [`ServerOptions::query_timeout`].
    #[serde(default, deserialize_with = "duration")]
    pub timeout: Option<Duration>,
    /// [`ServerOptions::query_max_samples`].
    pub max_samples: Option<usize>,
    /// [`ServerOptions::query_max_concurrency`].
    pub max_concurrency: Option<usize>,
    /// [`ServerOptions::query_lookback_delta`].
    #[serde(default, deserialize_with = "duration")]
    pub lookback_delta: Option<Duration>,
}

/// `[write]`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct WriteSection {
    /// [`ServerOptions::max_decoded_bytes`].
    pub max_decoded_bytes: Option<usize>,
    /// [`ServerOptions::write_max_concurrency`].
    pub max_concurrency: Option<usize>,
    /// [`ServerOptions::write_queue_timeout`].
    #[serde(default, deserialize_with = "duration")]
    pub queue_timeout: Option<Duration>,
}

/// `"always"`, `"never"` or an fsync interval (`"10ms"`) as a [`WalDurability`].
pub fn parse_wal_durability(text: &str) -> Result<WalDurability, Error> {
    match text.trim() {
        "always" => Ok(WalDurability::Always),
        "never" => Ok(WalDurability::Never),
        other => parse_duration(other)
            .map(WalDurability::Interval)
            .map_err(|e| {
                Error::invalid_input(format_args!(
                    "wal_durability {text:?}: expected always, never or an interval such as 10ms ({e})"
                ))
            }),
    }
}

/// A duration, or `"none"` for no limit.
pub fn parse_optional_duration(key: &str, text: &str) -> Result<Option<Duration>, Error> {
    match text.trim() {
        "none" => Ok(None),
        other => parse_duration(other).map(Some).map_err(|e| {
            Error::invalid_input(format_args!(
                "{key} {text:?}: expected a duration such as 10m, or none ({e})"
            ))
        }),
    }
}

/// `"strict"` or `"skip-damaged"` as a [`WalRecovery`].
pub fn parse_wal_recovery(text: &str) -> Result<WalRecovery, Error> {
    match text.trim() {
        "strict" => Ok(WalRecovery::Strict),
        "skip-damaged" | "skip_damaged" => Ok(WalRecovery::SkipDamaged),
        _ => Err(Error::invalid_input(format_args!(
            "wal_recovery {text:?}: expected strict or skip-damaged"
        ))),
    }
}

impl ConfigFile {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<ConfigFile, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))?;
        Self::parse(&text)
            .map_err(|e| Error::invalid_input(format_args!("{}: {e}", path.display())))
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<ConfigFile, Error> {
        toml::from_str(text).map_err(|e| Error::invalid_input(e.to_string().trim_end()))
    }

    /// Sets the fields of `db` and `server` that the file gives.
    pub fn apply(&self, db: &mut DatabaseConfig, server: &mut ServerOptions) -> Result<(), Error> {
        let d = &self.database;
        set(&mut db.data_dir, d.data_dir.clone());
        if d.redis_url.is_some() {
            db.redis_url.clone_from(&d.redis_url);
        }
        set(&mut db.redis_key_prefix, d.redis_key_prefix.clone());
        set(&mut db.chunk_max_points, d.chunk_max_points);
        set(&mut db.flush_interval, d.flush_interval);
        if let Some(w) = &d.wal_durability {
            db.wal_durability = parse_wal_durability(w)?;
        }
        set(&mut db.wal_segment_size, d.wal_segment_size);
        if d.retention.is_some() {
            db.retention = d.retention;
        }
        if let Some(t) = &d.future_tolerance {
            db.future_tolerance = parse_optional_duration("future_tolerance", t)?;
        }
        set(&mut db.out_of_order_window, d.out_of_order_window);
        set(&mut db.ingest_shards, d.ingest_shards);
        set(&mut db.flush_queue_capacity, d.flush_queue_capacity);
        set(&mut db.max_buffered_points, d.max_buffered_points);
        set(&mut db.flush_workers, d.flush_workers);
        set(&mut db.checkpoint_interval, d.checkpoint_interval);
        if let Some(r) = &d.wal_recovery {
            db.wal_recovery = parse_wal_recovery(r)?;
        }
        set(&mut db.stall_timeout, d.stall_timeout);
        if let Some(i) = &d.compaction_interval {
            db.compaction_interval = parse_optional_duration("compaction_interval", i)?;
        }
        set(&mut db.cold_after, d.cold_after);
        set(&mut db.compacted_chunk_points, d.compacted_chunk_points);
        set(&mut db.pack_decimal_chunks, d.pack_decimal_chunks);
        if let Some(tiers) = &d.rollup_tiers {
            db.rollup_tiers = tiers
                .iter()
                .map(|t| RollupTier {
                    resolution: t.resolution,
                    retention: t.retention,
                })
                .collect();
        }

        let q = &self.query;
        set(&mut server.query_timeout, q.timeout);
        set(&mut server.query_max_samples, q.max_samples);
        set(&mut server.query_max_concurrency, q.max_concurrency);
        set(&mut server.query_lookback_delta, q.lookback_delta);
        let w = &self.write;
        set(&mut server.max_decoded_bytes, w.max_decoded_bytes);
        set(&mut server.write_max_concurrency, w.max_concurrency);
        set(&mut server.write_queue_timeout, w.queue_timeout);
        let h = &self.http;
        set(&mut server.request_timeout, h.request_timeout);
        set(&mut server.max_body_bytes, h.max_body_bytes);
        Ok(())
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *field = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_maps_onto_the_configs_with_the_workspace_durations() {
        let file = ConfigFile::parse(
            r#"
            [http]
            listen = "127.0.0.1:9999"
            [database]
            data_dir = "/tmp/x"
            retention = "15d"
            wal_durability = "10ms"
            out_of_order_window = "1h30m"
            future_tolerance = "none"
            compaction_interval = "none"
            cold_after = "30m"
            pack_decimal_chunks = false
            [[database.rollup_tiers]]
            resolution = "5m"
            retention = "400d"
            [[database.rollup_tiers]]
            resolution = "1h"
            [query]
            timeout = "30s"
            max_samples = 1000
            "#,
        )
        .expect("valid");
        let (mut db, mut server) = (DatabaseConfig::default(), ServerOptions::default());
        file.apply(&mut db, &mut server).expect("applies");
        assert_eq!(
            file.http.listen,
            Some("127.0.0.1:9999".parse().expect("addr"))
        );
        assert_eq!(db.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(db.retention, Some(Duration::from_secs(15 * 86_400)));
        assert_eq!(
            db.wal_durability,
            WalDurability::Interval(Duration::from_millis(10))
        );
        assert_eq!(db.out_of_order_window, Duration::from_secs(5400));
        assert_eq!(db.future_tolerance, None);
        assert_eq!(db.compaction_interval, None);
        assert_eq!(db.cold_after, Duration::from_secs(1800));
        assert!(!db.pack_decimal_chunks);
        assert_eq!(
            db.rollup_tiers,
            [
                RollupTier {
                    resolution: Duration::from_secs(300),
                    retention: Some(Duration::from_secs(400 * 86_400)),
                },
                RollupTier {
                    resolution: Duration::from_secs(3600),
                    retention: None,
                },
            ]
        );
        assert_eq!(
            db.chunk_max_points,
            DatabaseConfig::default().chunk_max_points
        );
        assert_eq!(server.query_timeout, Duration::from_secs(30));
        assert_eq!(server.query_max_samples, 1000);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        assert!(ConfigFile::parse("[database]\nretension = \"1d\"\n").is_err());
        assert!(ConfigFile::parse("[query]\ntimeout = \"soon\"\n").is_err());
        let file =
            ConfigFile::parse("[database]\nwal_durability = \"sometimes\"\n").expect("parses");
        let (mut db, mut server) = (DatabaseConfig::default(), ServerOptions::default());
        assert!(file.apply(&mut db, &mut server).is_err());
    }
}
