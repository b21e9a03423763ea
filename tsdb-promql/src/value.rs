//! Query results.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::labels::LabelSet;

/// One sample of an instant vector: a series' labels and its value at the evaluation time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// The series.
    pub metric: LabelSet,
    /// Evaluation time, milliseconds since the epoch.
    pub timestamp: i64,
    /// The value.
    #[serde(serialize_with = "float_text")]
    pub value: f64,
}

/// One series of a range vector (matrix): its labels and ascending `(timestamp ms, value)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    /// The series.
    pub metric: LabelSet,
    /// The points, ascending by time.
    #[serde(serialize_with = "points_text")]
    pub points: Vec<(i64, f64)>,
}

/// The result of a query.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
pub enum Value {
    /// A single number at a time.
    Scalar {
        /// Evaluation time, ms.
        timestamp: i64,
        /// The number.
        #[serde(serialize_with = "float_text")]
        value: f64,
    },
    /// A string literal at a time.
    String {
        /// Evaluation time, ms.
        timestamp: i64,
        /// The text.
        value: String,
    },
    /// An instant vector.
    Vector(Vec<Sample>),
    /// A range vector.
    Matrix(Vec<Series>),
}

/// Formats a float the way Prometheus's API does (`NaN`, `+Inf`, `-Inf`, shortest round-trip).
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn float_text<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_float(*v))
}

fn points_text<S: Serializer>(p: &[(i64, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(p.iter().map(|(t, v)| (*t, format_float(*v))))
}

impl fmt::Display for Value {
    /// One line per sample or series: `labels => value @ time` as in Prometheus's test output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Scalar { timestamp, value } => {
                write!(f, "scalar: {} @[{timestamp}]", format_float(*value))
            }
            Value::String { timestamp, value } => write!(f, "string: {value:?} @[{timestamp}]"),
            Value::Vector(samples) => {
                for (i, s) in samples.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(
                        f,
                        "{} => {} @[{}]",
                        s.metric,
                        format_float(s.value),
                        s.timestamp
                    )?;
                }
                Ok(())
            }
            Value::Matrix(series) => {
                for (i, s) in series.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{} =>", s.metric)?;
                    for (t, v) in &s.points {
                        write!(f, "\n{} @[{t}]", format_float(*v))?;
                    }
                }
                Ok(())
            }
        }
    }
}
