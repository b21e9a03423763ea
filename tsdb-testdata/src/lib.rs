#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod real;
pub mod synthetic;

/// A named series: where it comes from and its points.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The group it belongs to, e.g. `"nab/realKnownCause"`, `"alp"` or `"synthetic"`.
    pub group: String,
    /// Its name inside the group, e.g. the file name without extension.
    pub name: String,
    /// `(timestamp in ms, value)` pairs in recorded order.
    pub points: Vec<(i64, f64)>,
}
