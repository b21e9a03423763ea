//! [`AppState`]: what every handler shares: the database, the PromQL engine, the limits and
//! their semaphores, the metrics and the metadata of metric families.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gorilla_tsdb::TimeSeriesDB;
use gorilla_tsdb::promql::{Engine, EngineOptions};
use tokio::sync::Semaphore;

use crate::ingest::series_cache::SeriesCache;
use crate::metadata::MetadataStore;
use crate::metrics::Metrics;
use crate::options::ServerOptions;

/// The shared state of a [`crate::router`]: cheap to clone (one `Arc`).
///
/// ```no_run
/// # async fn run(db: std::sync::Arc<gorilla_tsdb::TimeSeriesDB>) {
/// use tsdb_server::{AppState, ServerOptions, router};
/// let app = router(AppState::new(db, ServerOptions::default()));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9201").await.expect("bind");
/// axum::serve(listener, app).await.expect("serve");
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AppState {
    pub(crate) inner: Arc<Shared>,
}

/// Series the remote-write cache remembers at most (about 40 bytes each).
const SERIES_CACHE_CAPACITY: usize = 4 << 20;

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) db: Arc<TimeSeriesDB>,
    pub(crate) engine: Engine<Arc<TimeSeriesDB>>,
    pub(crate) options: ServerOptions,
    pub(crate) query_slots: Arc<Semaphore>,
    pub(crate) write_slots: Arc<Semaphore>,
    pub(crate) metrics: Metrics,
    pub(crate) metadata: MetadataStore,
    /// Remote-write series already registered, by the bytes of their labels.
    pub(crate) series_cache: SeriesCache,
    /// Set when shutdown begins: `/-/ready` answers 503 and writes are refused.
    pub(crate) stopping: AtomicBool,
}

impl AppState {
    /// State over an open database with these options.
    pub fn new(db: Arc<TimeSeriesDB>, options: ServerOptions) -> AppState {
        let lookback = i64::try_from(options.query_lookback_delta.as_millis()).unwrap_or(i64::MAX);
        let engine_options = EngineOptions::default()
            .with_max_samples(options.query_max_samples)
            .with_lookback_delta_ms(lookback)
            // Prometheus refuses more than 11,000 steps *between* start and end: 11,001 steps.
            .with_max_steps(11_001);
        AppState {
            inner: Arc::new(Shared {
                engine: Engine::new(db.clone(), engine_options),
                query_slots: Arc::new(Semaphore::new(options.query_max_concurrency.max(1))),
                write_slots: Arc::new(Semaphore::new(options.write_max_concurrency.max(1))),
                metrics: Metrics::new(db.clone()),
                metadata: MetadataStore::new(options.max_metadata_families),
                series_cache: SeriesCache::new(SERIES_CACHE_CAPACITY),
                stopping: AtomicBool::new(false),
                db,
                options,
            }),
        }
    }

    /// The database served.
    pub fn database(&self) -> &Arc<TimeSeriesDB> {
        &self.inner.db
    }

    /// The options in force.
    pub fn options(&self) -> &ServerOptions {
        &self.inner.options
    }

    /// Marks the server as shutting down: `/-/ready` answers 503 and new writes are refused
    /// with 503 and `Retry-After`, so that senders keep their data for another replica or
    /// for the restart. [`crate::serve`] calls it when its shutdown signal fires.
    pub fn begin_shutdown(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }
}
