//! Prometheus remote write 1.0: a snappy-compressed (block format) protobuf
//! `prometheus.WriteRequest`.
//!
//! The messages are those of Prometheus's `prompb/remote.proto` and `prompb/types.proto`,
//! declared here with `prost`'s derive (no code generation step). Native histograms are
//! counted and refused (this database stores floats); exemplars are ignored.
//!
//! [`decompress`] reads snappy's declared decompressed length first and refuses a body that
//! says it is longer than the limit, so no buffer larger than the limit is ever allocated.
//!
//! ```
//! use prost::Message;
//! use tsdb_formats::remote_write::{Label, Sample, TimeSeries, WriteRequest, decode};
//! let request = WriteRequest {
//!     timeseries: vec![TimeSeries {
//!         labels: vec![Label { name: "__name__".into(), value: "up".into() }],
//!         samples: vec![Sample { value: 1.0, timestamp: 1_700_000_000_000 }],
//!         ..Default::default()
//!     }],
//!     ..Default::default()
//! };
//! let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
//! let decoded = decode(&body, 1 << 20)?.into_series();
//! assert_eq!(decoded.series[0].labels.to_string(), "up");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use tsdb_core::Labels;

use crate::item::{MetricMetadata, MetricType};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric families' type, help and unit.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<Metadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// The labels, `__name__` included, sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Exemplars (read and ignored).
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
    /// Native histograms, kept encoded: they are counted and refused.
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// The exemplar's labels (a trace id, usually).
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// The value.
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Metadata {
    /// `MetricType`: 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gaugehistogram, 5 summary,
    /// 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family's name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// Why a remote-write body could not be decoded: the sender should not retry it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Snappy's header declares more bytes than allowed.
    #[error("the body decompresses to {declared} bytes, more than the limit of {limit}")]
    TooLarge {
        /// What the snappy header declares.
        declared: usize,
        /// The limit.
        limit: usize,
    },
    /// Not snappy block-format data.
    #[error("snappy: {0}")]
    Snappy(#[from] snap::Error),
    /// Not a protobuf `WriteRequest`.
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
}

/// Decompresses a snappy block, refusing (before allocating) one that declares more than
/// `max_len` bytes.
pub fn decompress(body: &[u8], max_len: usize) -> Result<Vec<u8>, DecodeError> {
    let declared = snap::raw::decompress_len(body)?;
    if declared > max_len {
        return Err(DecodeError::TooLarge {
            declared,
            limit: max_len,
        });
    }
    let mut out = vec![0; declared];
    let n = snap::raw::Decoder::new().decompress(body, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// Decompresses (at most `max_len` bytes) and decodes a `WriteRequest`.
pub fn decode(body: &[u8], max_len: usize) -> Result<WriteRequest, DecodeError> {
    let raw = decompress(body, max_len)?;
    Ok(<WriteRequest as prost::Message>::decode(raw.as_slice())?)
}

/// The points of one series of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    /// The series.
    pub labels: Labels,
    /// `(timestamp ms, value)` in the order sent; NaN payloads (stale markers) kept.
    pub samples: Vec<(i64, f64)>,
}

/// Why samples of a request were refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The series' labels break the rules of [`Labels`].
    InvalidLabels,
    /// Native histogram samples.
    NativeHistogram,
}

impl RejectReason {
    /// A short name, for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::InvalidLabels => "invalid_labels",
            RejectReason::NativeHistogram => "native_histogram",
        }
    }
}

/// A request's content, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// Series with valid labels and their float samples.
    pub series: Vec<SeriesSamples>,
    /// Refused samples: how many, why, and the first reason in words.
    pub rejected: Vec<(RejectReason, u64, String)>,
    /// Metric metadata sent with the request.
    pub metadata: Vec<MetricMetadata>,
}

impl Decoded {
    fn reject(&mut self, reason: RejectReason, count: u64, text: impl FnOnce() -> String) {
        if count == 0 {
            return;
        }
        match self.rejected.iter_mut().find(|r| r.0 == reason) {
            Some(r) => r.1 += count,
            None => self.rejected.push((reason, count, text())),
        }
    }

    /// Samples accepted for writing.
    pub fn sample_count(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
}

impl WriteRequest {
    /// The series with valid labels and their samples; what cannot be taken is counted.
    pub fn into_series(self) -> Decoded {
        let mut out = Decoded::default();
        for ts in self.timeseries {
            let histograms = ts.histograms.len() as u64;
            out.reject(RejectReason::NativeHistogram, histograms, || {
                "native histograms are not supported".to_owned()
            });
            if ts.samples.is_empty() {
                continue;
            }
            match Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value))) {
                Ok(labels) => out.series.push(SeriesSamples {
                    labels,
                    samples: ts.samples.iter().map(|s| (s.timestamp, s.value)).collect(),
                }),
                Err(e) => out.reject(RejectReason::InvalidLabels, ts.samples.len() as u64, || {
                    e.to_string()
                }),
            }
        }
        out.metadata = self
            .metadata
            .into_iter()
            .filter(|m| !m.metric_family_name.is_empty())
            .map(|m| MetricMetadata {
                kind: match m.r#type {
                    1 => MetricType::Counter,
                    2 => MetricType::Gauge,
                    3 => MetricType::Histogram,
                    4 => MetricType::GaugeHistogram,
                    5 => MetricType::Summary,
                    6 => MetricType::Info,
                    7 => MetricType::StateSet,
                    _ => MetricType::Unknown,
                },
                metric: m.metric_family_name,
                help: m.help,
                unit: m.unit,
            })
            .collect();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn label(name: &str, value: &str) -> Label {
        Label {
            name: name.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn requests_round_trip_and_bad_series_are_counted() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let request = WriteRequest {
            timeseries: vec![
                TimeSeries {
                    labels: vec![label("__name__", "up"), label("job", "a")],
                    samples: vec![
                        Sample {
                            value: 1.0,
                            timestamp: 10,
                        },
                        Sample {
                            value: stale,
                            timestamp: 20,
                        },
                    ],
                    ..Default::default()
                },
                TimeSeries {
                    labels: vec![label("__name__", "bad-name")],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 10,
                    }],
                    histograms: vec![vec![8, 1]],
                    ..Default::default()
                },
            ],
            metadata: vec![Metadata {
                r#type: 1,
                metric_family_name: "up".to_owned(),
                help: "h".to_owned(),
                unit: String::new(),
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .expect("compress");
        let decoded = decode(&body, 1 << 20).expect("valid").into_series();
        assert_eq!(decoded.series.len(), 1);
        assert_eq!(decoded.series[0].labels.to_string(), r#"up{job="a"}"#);
        assert_eq!(decoded.series[0].samples[1].1.to_bits(), stale.to_bits());
        assert_eq!(decoded.rejected.len(), 2);
        assert!(
            decoded
                .rejected
                .iter()
                .any(|r| r.0 == RejectReason::InvalidLabels && r.1 == 1)
        );
        assert_eq!(decoded.metadata[0].kind, MetricType::Counter);
    }

    #[test]
    fn the_declared_length_is_checked_before_allocating() {
        // A snappy header (the varint length) claiming 256 MiB, followed by nothing.
        let body = [0x80, 0x80, 0x80, 0x80, 0x01];
        assert!(matches!(
            decompress(&body, 1 << 20),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress(b"not snappy at all", 1 << 20),
            Err(DecodeError::Snappy(_)) | Err(DecodeError::TooLarge { .. })
        ));
        let bad_proto = snap::raw::Encoder::new()
            .compress_vec(&[0xff, 0xff, 0xff])
            .expect("compress");
        assert!(matches!(
            decode(&bad_proto, 1 << 20),
            Err(DecodeError::Protobuf(_))
        ));
    }
}
