#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// Configuration: the server's limits, and the TOML file of `gorilla-tsdb serve`.
pub mod config;
mod options;
// What every handler shares.
mod state;
// The routes and the layers around them; serving until a signal.
mod router;
mod serve;
// Request ids, spans and HTTP metrics.
mod observe;
// The Prometheus 2.42 HTTP API.
mod api;
// Writes: remote write, Influx line protocol, Prometheus text.
mod ingest;
// Self-monitoring at /metrics.
mod metrics;
// Metric families' type, help and unit, for /api/v1/metadata.
mod metadata;
// The graph page at /.
mod graph;

pub use config::ConfigFile;
pub use options::ServerOptions;
pub use router::router;
pub use serve::{serve, shutdown_signal};
pub use state::AppState;
