#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// What every decoder yields: samples, metadata and rejected lines.
mod item;
// Units of numeric timestamps.
mod precision;
// Metric and label names from outside into Prometheus's rules.
mod names;
// The decoders, one per format.
pub mod influx;
pub mod prometheus_text;
pub mod remote_write;

pub use item::{Item, Line, MetricMetadata, MetricType, Sample};
pub use names::{sanitize_label_name, sanitize_metric_name};
pub use precision::Precision;
