//! [`DatabaseConfig`]: every knob of the database, with documented defaults.

use std::path::PathBuf;
use std::time::Duration;

pub use tsdb_wal::{FSYNC_BUCKET_BOUNDS, FsyncLatency, WalDurability, WalRecovery};

/// Configuration of a [`crate::TimeSeriesDB`]. Build one with struct-update syntax:
///
/// ```
/// use tsdb_database::DatabaseConfig;
/// use std::path::PathBuf;
/// let config = DatabaseConfig {
///     data_dir: PathBuf::from("/var/lib/tsdb"),
///     ..Default::default()
/// };
/// assert_eq!(config.chunk_max_points, 1024);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseConfig {
    /// Where chunks, the WAL and the series catalog live. Default: `./tsdb-data`.
    pub data_dir: PathBuf,
    /// When set (e.g. `redis://localhost:6379`), the series and chunk index lives in Redis and
    /// is shared by every process using the same URL and [`Self::redis_key_prefix`]; needs the
    /// `index-redis` feature. Default: `None` (in-memory index, rebuilt from disk on open).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key. Default: `gorilla-tsdb`.
    pub redis_key_prefix: String,
    /// A series' head buffer is sealed into a chunk when it holds this many points.
    /// Default: 1024.
    pub chunk_max_points: u32,
    /// A head buffer is sealed into a chunk when its first point was buffered this long ago,
    /// even if not full; this bounds how much WAL is kept. Default: 1 hour.
    pub flush_interval: Duration,
    /// Durability of acknowledged writes. Default: [`WalDurability::Always`].
    pub wal_durability: WalDurability,
    /// Size at which a WAL segment file is closed and a new one started. Default: 64 MiB.
    pub wal_segment_size: u64,
    /// Chunks whose newest point is older than this, against the wall clock, are deleted
    /// (so data imported from further back than the retention goes at the next round).
    /// Default: `None` (keep everything).
    pub retention: Option<Duration>,
    /// How far ahead of the wall clock a point may be; later points are rejected with
    /// [`crate::Error::InTheFuture`] (Prometheus refuses them too). `None` accepts any
    /// timestamp. Default: 10 minutes.
    pub future_tolerance: Option<Duration>,
    /// How far behind the newest point of its series a point may be and still be accepted;
    /// older points are rejected with [`crate::Error::OutOfOrder`]. Points older than the
    /// series' head go to an out-of-order head of their own, sealed as separate chunks and
    /// merged on read (the last write of a timestamp wins), so back-fill and clocks stepping
    /// back are taken as they come. With [`Self::retention`], points older than it (against the
    /// wall clock) are rejected too. Default: [`Duration::MAX`] (any point).
    pub out_of_order_window: Duration,
    /// Number of independently locked head-buffer shards. Default: 64.
    pub ingest_shards: usize,
    /// Sealed chunks waiting to be written to storage; when the queue is full, writers wait
    /// (backpressure). Default: 4096.
    pub flush_queue_capacity: usize,
    /// Points that head buffers may hold in all; above it, the largest heads are sealed early
    /// and writers wait for room. Default: 50,000,000.
    pub max_buffered_points: u64,
    /// Concurrent tasks writing sealed chunks to storage and the index. Default: 2.
    pub flush_workers: usize,
    /// How often the WAL is truncated behind the chunks made durable. Default: 5 seconds.
    pub checkpoint_interval: Duration,
    /// What opening does with damage in the WAL or the series catalog that is not a torn
    /// tail: [`WalRecovery::Strict`] (the default) refuses to open with
    /// [`crate::Error::Corrupt`] naming the file and offset; [`WalRecovery::SkipDamaged`]
    /// opens anyway, keeps every record it can read and records what was lost (see
    /// [`crate::TimeSeriesDB::damage`]). Damage in records the checkpoint no longer needs is
    /// only a warning either way.
    pub wal_recovery: WalRecovery,
    /// How long `flush`, `close` and writers waiting for room wait while storing chunks makes
    /// no progress (the disk full, the index unreachable) before they return an error; the
    /// chunks not stored stay in the WAL. Default: 10 seconds.
    pub stall_timeout: Duration,
    /// Opens for reading only: nothing in the data directory is created, repaired or written,
    /// no lock is taken (a live writer may hold it), no background task runs, and every write
    /// fails with [`crate::Error::ReadOnly`]. The index is a private in-memory one rebuilt
    /// from disk, whatever `redis_url` says. For tools that inspect a database. Default: `false`.
    pub read_only: bool,
    /// How often the background compaction runs (see [`crate::TimeSeriesDB::compact`]),
    /// counted from open; `None` leaves compaction to explicit calls. Default: 10 minutes.
    pub compaction_interval: Option<Duration>,
    /// Chunks whose newest point is older than this, against the wall clock, are cold:
    /// compaction merges them into chunks of up to [`Self::compacted_chunk_points`] points
    /// in the cold codec (see [`crate::TimeSeriesDBBuilder::with_cold_compressor`]).
    /// Default: 2 hours.
    pub cold_after: Duration,
    /// Most points in a chunk that compaction writes. Default: 16384.
    pub compacted_chunk_points: u32,
    /// Rollup tiers (downsampling) that compaction builds from cold data and range functions
    /// are answered from when they can be exactly (see [`RollupTier`]). Default: none.
    pub rollup_tiers: Vec<RollupTier>,
    /// With the Gorilla codec for new chunks (the default), a sealed head whose values are
    /// all decimals of at most 9 digits (checked bit for bit, see `tsdb_core::decimal`) is
    /// stored by the bit-packed codec of `tsdb-packed` instead: a gauge printed with two
    /// decimals takes about a byte a point instead of about seven, and decodes several times
    /// faster. Other values, and every chunk of a configured third-party codec, are stored as
    /// before. Default: `true`.
    pub pack_decimal_chunks: bool,
}

/// One rollup tier: per series, the count, sum, minimum, maximum and last value of every
/// bucket `(k - resolution, k]`, built by compaction once the bucket is older than
/// [`DatabaseConfig::cold_after`], and kept for its own retention (longer than the raw data's,
/// typically).
///
/// `count_over_time`, `sum_over_time`, `avg_over_time`, `min_over_time`, `max_over_time`,
/// `last_over_time` and `present_over_time` over a range that is a multiple of the resolution,
/// at evaluation times that are multiples of it (an instant query at such a time, or a range
/// query whose start and step are multiples of it, offsets and `@` included), are answered from
/// the coarsest such tier for every window the tier has built; the others, and the windows with
/// points written or deleted since, from raw data. Counts, minima, maxima and last values are
/// the raw answers bit for bit; sums and means are sums of per-bucket sums, equal to the raw
/// answers up to floating-point rounding.
///
/// ```
/// use std::time::Duration;
/// use tsdb_database::{DatabaseConfig, RollupTier};
/// let config = DatabaseConfig {
///     rollup_tiers: vec![
///         RollupTier { resolution: Duration::from_secs(300), retention: Some(Duration::from_secs(400 * 86_400)) },
///         RollupTier { resolution: Duration::from_secs(3600), retention: None },
///     ],
///     ..Default::default()
/// };
/// assert_eq!(config.rollup_tiers.len(), 2);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollupTier {
    /// Width of a bucket: at least a millisecond, at most a year.
    pub resolution: Duration,
    /// Buckets whose label is older than this, against the wall clock, are deleted; `None`
    /// keeps them for ever.
    pub retention: Option<Duration>,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            data_dir: PathBuf::from("./tsdb-data"),
            redis_url: None,
            redis_key_prefix: "gorilla-tsdb".to_owned(),
            chunk_max_points: 1024,
            flush_interval: Duration::from_secs(3600),
            wal_durability: WalDurability::Always,
            wal_segment_size: 64 << 20,
            retention: None,
            future_tolerance: Some(Duration::from_secs(600)),
            out_of_order_window: Duration::MAX,
            ingest_shards: 64,
            flush_queue_capacity: 4096,
            max_buffered_points: 50_000_000,
            flush_workers: 2,
            checkpoint_interval: Duration::from_secs(5),
            wal_recovery: WalRecovery::Strict,
            stall_timeout: Duration::from_secs(10),
            read_only: false,
            compaction_interval: Some(Duration::from_secs(600)),
            cold_after: Duration::from_secs(2 * 3600),
            compacted_chunk_points: 16384,
            rollup_tiers: Vec::new(),
            pack_decimal_chunks: true,
        }
    }
}
