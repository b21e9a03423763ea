//! What the text decoders yield, line by line.

use tsdb_core::Labels;

use crate::reject::Reject;

/// One point of one series, decoded.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series.
    pub labels: Labels,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// The value (NaN payloads, such as Prometheus's stale marker, are kept bit for bit).
    pub value: f64,
}

/// The kind of a metric family, as Prometheus names it in `# TYPE` lines and remote write
/// metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`.
    Histogram,
    /// `gaugehistogram`.
    GaugeHistogram,
    /// `summary`.
    Summary,
    /// `info`.
    Info,
    /// `stateset`.
    StateSet,
    /// `unknown` (also what `untyped` means).
    Unknown,
}

impl MetricType {
    /// The type named `text` (`untyped` and unknown names are [`MetricType::Unknown`]).
    pub fn from_name(text: &str) -> MetricType {
        match text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            _ => MetricType::Unknown,
        }
    }

    /// The name Prometheus's `/api/v1/metadata` gives the type.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// What is known about a metric family: its type, help text and unit.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricMetadata {
    /// The family's name (`http_requests_total`, or `rpc_duration_seconds` for the
    /// `_bucket`, `_sum` and `_count` series of a histogram).
    pub metric: String,
    /// Its type.
    pub kind: MetricType,
    /// Its help text (may be empty).
    pub help: String,
    /// Its unit (may be empty).
    pub unit: String,
}

/// What one line of text held.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A point.
    Sample(Sample),
    /// Type or help text of a metric family.
    Metadata(MetricMetadata),
    /// A line, or a part of one (an Influx field), that could not be taken, and why.
    Rejected(Reject),
}

/// An [`Item`] with the 1-based number of the line it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Line number, from 1.
    pub number: usize,
    /// What the line held.
    pub item: Item,
}

impl Line {
    pub(crate) fn sample(number: usize, labels: Labels, timestamp: i64, value: f64) -> Line {
        Line {
            number,
            item: Item::Sample(Sample {
                labels,
                timestamp,
                value,
            }),
        }
    }

    pub(crate) fn rejected(number: usize, reject: Reject) -> Line {
        Line {
            number,
            item: Item::Rejected(reject),
        }
    }
}
