//! [`TimeSeriesDBBuilder`]: puts engines and configuration together into a database.

use std::sync::Arc;

use tsdb_core::{Compressor, DirLock, Error, Result, StorageEngine, TimeIndex};

use crate::config::DatabaseConfig;
use crate::db::{Engines, TimeSeriesDB};

/// Builds a [`TimeSeriesDB`]. Every engine is optional: what is not set comes from the
/// engines the crate's features provide (see the crate documentation).
///
/// ```no_run
/// use tsdb_database::{DatabaseConfig, TimeSeriesDBBuilder};
/// # async fn run() -> Result<(), tsdb_database::Error> {
/// let db = TimeSeriesDBBuilder::new()
///     .with_config(DatabaseConfig { data_dir: "/tmp/metrics".into(), ..Default::default() })
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct TimeSeriesDBBuilder {
    config: DatabaseConfig,
    compressor: Option<Arc<dyn Compressor>>,
    cold_compressor: Option<Arc<dyn Compressor>>,
    storage: Option<Arc<dyn StorageEngine>>,
    index: Option<Arc<dyn TimeIndex>>,
}

impl TimeSeriesDBBuilder {
    /// A builder with [`DatabaseConfig::default`] and no engine chosen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses this configuration.
    pub fn with_config(mut self, config: DatabaseConfig) -> Self {
        self.config = config;
        self
    }

    /// Uses this codec for new chunks (a concrete codec, or an `Arc<dyn Compressor>`).
    /// Chunks written by the built-in Gorilla codec stay readable whatever is chosen here.
    pub fn with_compressor<C: Compressor>(mut self, compressor: C) -> Self {
        self.compressor = Some(Arc::new(compressor));
        self
    }

    /// Uses this codec for the chunks compaction writes once data has gone cold
    /// ([`DatabaseConfig::cold_after`]). Default: `PcoCompressor` with the `pco` feature,
    /// otherwise the codec of new chunks. Chunks it wrote stay readable only while it is
    /// configured (or built in, like Gorilla and pco).
    pub fn with_cold_compressor<C: Compressor>(mut self, compressor: C) -> Self {
        self.cold_compressor = Some(Arc::new(compressor));
        self
    }

    /// Uses this storage engine (a concrete engine, or an `Arc<dyn StorageEngine>`).
    pub fn with_storage<S: StorageEngine>(mut self, storage: S) -> Self {
        self.storage = Some(Arc::new(storage));
        self
    }

    /// Uses this index (a concrete index, or an `Arc<dyn TimeIndex>`).
    pub fn with_index<I: TimeIndex>(mut self, index: I) -> Self {
        self.index = Some(Arc::new(index));
        self
    }

    /// Opens (or creates) the database: engines that were not set are created from the
    /// configuration, then the catalog and WAL are replayed and background tasks started.
    /// Must be called inside a Tokio runtime.
    ///
    /// The data directory is locked (an OS lock on the directory itself) before anything in
    /// it is read or repaired, so a second opener fails with [`Error::InUse`] and never
    /// touches the files of a live database. With [`DatabaseConfig::read_only`] nothing is
    /// locked or written, and a directory that holds no database is an error.
    pub async fn build(self) -> Result<TimeSeriesDB> {
        let config = self.config;
        let dir = config.data_dir.clone();
        let lock = if config.read_only {
            if !holds_database(&dir) {
                return Err(Error::invalid_input(format_args!(
                    "{} holds no database (no series catalog or WAL in it)",
                    dir.display()
                )));
            }
            None
        } else {
            let lock = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir).map_err(|e| Error::io(dir.display(), e))?;
                DirLock::acquire(&dir, "database", std::time::Duration::from_secs(2))
            })
            .await
            .map_err(|e| Error::task_failed("open", e))??;
            Some(lock)
        };
        let compressor = match self.compressor {
            Some(c) => c,
            None => default_compressor()?,
        };
        let cold = match self.cold_compressor {
            Some(c) => c,
            None => default_cold_compressor().unwrap_or_else(|| compressor.clone()),
        };
        let storage = match self.storage {
            Some(s) => s,
            None => default_storage(&config).await?,
        };
        let index = match self.index {
            Some(i) => i,
            None => default_index(&config).await?,
        };
        TimeSeriesDB::open(
            config,
            Engines {
                compressor,
                cold,
                storage,
                index,
            },
            lock,
        )
        .await
    }
}

/// Whether `dir` looks like a database's data directory.
pub(crate) fn holds_database(dir: &std::path::Path) -> bool {
    dir.join("series").is_dir() || dir.join("wal").is_dir()
}

#[allow(clippy::unnecessary_wraps)]
fn default_compressor() -> Result<Arc<dyn Compressor>> {
    #[cfg(feature = "gorilla")]
    return Ok(Arc::new(tsdb_gorilla::GorillaCompressor::new()));
    #[cfg(not(feature = "gorilla"))]
    return Err(Error::invalid_input(
        "no compressor: call with_compressor or enable the `gorilla` feature",
    ));
}

fn default_cold_compressor() -> Option<Arc<dyn Compressor>> {
    #[cfg(feature = "pco")]
    return Some(Arc::new(tsdb_pco::PcoCompressor::new()));
    #[cfg(not(feature = "pco"))]
    return None;
}

async fn default_storage(config: &DatabaseConfig) -> Result<Arc<dyn StorageEngine>> {
    #[cfg(feature = "storage-disk")]
    {
        use tsdb_storage_disk::{Durability, LocalDiskConfig, LocalDiskEngine};
        // The WAL protects acknowledged points; storage is synced before the WAL is
        // truncated, so chunk writes need not wait for their own fsync.
        let storage_config = LocalDiskConfig::default()
            .durability(Durability::Interval(std::time::Duration::from_secs(1)))
            .read_only(config.read_only);
        let engine =
            LocalDiskEngine::open_with(config.data_dir.join("chunks"), storage_config).await?;
        Ok(Arc::new(engine))
    }
    #[cfg(not(feature = "storage-disk"))]
    {
        let _ = config;
        Err(Error::invalid_input(
            "no storage engine: call with_storage or enable the `storage-disk` feature",
        ))
    }
}

async fn default_index(config: &DatabaseConfig) -> Result<Arc<dyn TimeIndex>> {
    if let Some(url) = config.redis_url.as_ref().filter(|_| !config.read_only) {
        #[cfg(feature = "index-redis")]
        {
            use tsdb_index_redis::{RedisIndexConfig, RedisTimeIndex};
            let redis =
                RedisIndexConfig::new(url.clone()).with_prefix(config.redis_key_prefix.clone());
            let index = RedisTimeIndex::connect(redis).await?;
            return Ok(Arc::new(index));
        }
        #[cfg(not(feature = "index-redis"))]
        return Err(Error::invalid_input(format!(
            "redis_url is set ({url}) but tsdb-database was built without the `index-redis` feature"
        )));
    }
    #[cfg(feature = "index-memory")]
    return Ok(Arc::new(tsdb_index_memory::MemoryTimeIndex::new()));
    #[cfg(not(feature = "index-memory"))]
    return Err(Error::invalid_input(
        "no index: call with_index, set redis_url (feature `index-redis`) or enable the `index-memory` feature",
    ));
}
