#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod aggregate;
mod engine;
mod error;
mod functions;
mod labels;
pub mod notation;
pub mod rollup;
mod source;
pub mod testscript;
mod value;

pub use engine::{Engine, EngineOptions, Query, convert_matcher, parse};
pub use error::{PromqlError, Resource, Result, SourceError};
pub use functions::RangeFunction;
pub use labels::LabelSet;
pub use source::{
    MemorySource, RolledSeries, RollupKind, RollupRequest, STALE_NAN_BITS, SelectLimits,
    SeriesData, SeriesSource, is_stale,
};
pub use value::{Sample, Series, Value, format_float};
