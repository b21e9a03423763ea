#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

// What every decoder yields: samples, metadata and rejected lines.
mod item;
// Why a line or field was refused.
mod reject;
// Lines of bytes, numbered.
mod lines;
// Floats and integers in text.
mod number;
// Units of numeric timestamps.
mod precision;
// Metric and label names from outside into Prometheus's rules.
mod names;
// Keys for caches of series by their labels' bytes.
pub mod series_key;
// The decoders, one per format.
pub mod csv;
pub mod influx;
pub mod prometheus_text;
pub mod remote_write;

pub use item::{Item, Line, MetricMetadata, MetricType, Sample};
pub use lines::{Lines, lines};
pub use names::{sanitize_label_name, sanitize_metric_name};
pub use number::{NumberError, parse_float};
pub use precision::Precision;
pub use reject::{Reject, RejectKind};
