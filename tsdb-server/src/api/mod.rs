//! The Prometheus 2.42 HTTP API (`/api/v1/...`), answered as Prometheus answers: the same
//! parameters, the same JSON byte for byte, the same error types and status codes.

// The envelope of answers and the error types.
pub(crate) mod response;
// JSON written as Prometheus writes it.
pub(crate) mod json;
// Parameters read as Prometheus reads them.
pub(crate) mod params;
// query, query_range, query_exemplars.
pub(crate) mod query;
// series, labels, label values.
pub(crate) mod series;
// buildinfo, metadata, health, readiness, self-metrics.
pub(crate) mod status;
// delete_series and snapshot, behind `enable_admin_api`.
pub(crate) mod admin;
