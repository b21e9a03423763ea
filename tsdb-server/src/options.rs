//! [`ServerOptions`]: the server's limits and defaults, with the names of Prometheus's flags
//! where Prometheus has one.

use std::time::Duration;

/// Limits and defaults of the server. Build one with struct-update syntax from
/// [`ServerOptions::default`].
///
/// ```
/// use std::time::Duration;
/// use tsdb_server::ServerOptions;
/// let options = ServerOptions { query_timeout: Duration::from_secs(30), ..Default::default() };
/// assert_eq!(options.query_max_samples, 50_000_000);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ServerOptions {
    /// Longest a query may run (Prometheus's `--query.timeout`); a request's `timeout`
    /// parameter can only shorten it. Default: 2 minutes.
    pub query_timeout: Duration,
    /// Most samples a query may hold in memory at once (Prometheus's `--query.max-samples`).
    /// Default: 50,000,000.
    pub query_max_samples: usize,
    /// Queries evaluated at once (Prometheus's `--query.max-concurrency`); more wait for a
    /// slot within their timeout. Default: 20.
    pub query_max_concurrency: usize,
    /// How far back an instant selector looks (Prometheus's `--query.lookback-delta`).
    /// Default: 5 minutes.
    pub query_lookback_delta: Duration,
    /// Largest request body accepted as sent (compressed or not), in bytes; larger ones get
    /// 413. Default: 32 MiB.
    pub max_body_bytes: usize,
    /// Largest write body once decompressed (snappy's declared length is checked before
    /// anything is allocated; gzip is read up to it), in bytes; larger ones get 413.
    /// Default: 32 MiB.
    pub max_decoded_bytes: usize,
    /// Write requests processed at once (their bodies are read only once they have a
    /// slot, so memory stays bounded). Default: 8.
    pub write_max_concurrency: usize,
    /// How long a write request waits for a slot before it is answered 503 with
    /// `Retry-After`. Default: 5 seconds.
    pub write_queue_timeout: Duration,
    /// The `Retry-After` of an overloaded write. Default: 1 second.
    pub retry_after: Duration,
    /// Longest any request may take before it is answered 503 (queries have their own,
    /// shorter timeout). Default: 5 minutes.
    pub request_timeout: Duration,
    /// Metric families whose metadata (type, help, unit) is kept for `/api/v1/metadata`.
    /// Default: 100,000.
    pub max_metadata_families: usize,
    /// Answer the admin endpoints (`/api/v1/admin/tsdb/delete_series` and `snapshot`), as
    /// Prometheus's `--web.enable-admin-api`; without it they answer 503 `unavailable`.
    /// Default: `false`.
    pub enable_admin_api: bool,
    /// Where `/api/v1/admin/tsdb/snapshot` writes snapshots (each in a directory of its
    /// own, named as Prometheus names them). Default: `None` (snapshots refused).
    pub snapshot_dir: Option<std::path::PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            query_timeout: Duration::from_secs(120),
            query_max_samples: 50_000_000,
            query_max_concurrency: 20,
            query_lookback_delta: Duration::from_secs(300),
            max_body_bytes: 32 << 20,
            max_decoded_bytes: 32 << 20,
            write_max_concurrency: 8,
            write_queue_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
            request_timeout: Duration::from_secs(300),
            max_metadata_families: 100_000,
            enable_admin_api: false,
            snapshot_dir: None,
        }
    }
}
