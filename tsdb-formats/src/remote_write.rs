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
    let declared = declared_len(body)?;
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

/// The length a snappy-compressed body says it decompresses to (its leading varint), read
/// without decompressing.
pub fn declared_len(body: &[u8]) -> Result<usize, DecodeError> {
    Ok(snap::raw::decompress_len(body)?)
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
            .map(MetricMetadata::from)
            .collect();
        out
    }
}

/// A `WriteRequest` read in place, without a copy of its strings: the label fields of every
/// series as sent (the key of a series cache: equal bytes are the same series) and every
/// sample. [`scan`] checks the structure of the whole message first; a series' labels are
/// only decoded (and checked) by [`ScannedSeries::labels`], so that a receiver that already
/// knows those bytes skips that work.
#[derive(Debug, Default)]
pub struct Scanned<'a> {
    /// The series, in the order sent.
    pub series: Vec<ScannedSeries<'a>>,
    /// The samples of every series, `(timestamp ms, value)`, one series after the other
    /// (see [`ScannedSeries::samples`]).
    pub samples: Vec<(i64, f64)>,
    /// Native histogram samples (refused by this database).
    pub histograms: u64,
    /// Metric metadata sent with the request.
    pub metadata: Vec<MetricMetadata>,
}

/// One series of a [`Scanned`] request.
#[derive(Debug)]
pub struct ScannedSeries<'a> {
    /// The series' `Label` fields, each as its field key, length and `Label` message bytes,
    /// in the order sent. Borrowed when they are contiguous in the request (as every sender
    /// writes them), else gathered.
    pub label_fields: std::borrow::Cow<'a, [u8]>,
    /// Its samples: a range of [`Scanned::samples`].
    pub samples: std::ops::Range<usize>,
}

impl ScannedSeries<'_> {
    /// Decodes the labels: invalid UTF-8, a malformed `Label` or labels that break the rules of
    /// [`Labels`] give the reason in words.
    pub fn labels(&self) -> Result<Labels, String> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut r = Reader::new(&self.label_fields);
        while !r.is_empty() {
            let (field, wire) = r.key().map_err(|e| e.to_string())?;
            let body = match (field, wire) {
                (1, WIRE_LEN) => r.len_delimited().map_err(|e| e.to_string())?,
                _ => return Err(format!("unexpected field {field} among the labels")),
            };
            let (mut name, mut value) = ("", "");
            let mut l = Reader::new(body);
            while !l.is_empty() {
                match l.key().map_err(|e| e.to_string())? {
                    (1, WIRE_LEN) => name = utf8(l.len_delimited().map_err(|e| e.to_string())?)?,
                    (2, WIRE_LEN) => value = utf8(l.len_delimited().map_err(|e| e.to_string())?)?,
                    (1 | 2, _) => return Err("a label field of the wrong wire type".to_owned()),
                    (_, wire) => l.skip(wire).map_err(|e| e.to_string())?,
                }
            }
            pairs.push((name.to_owned(), value.to_owned()));
        }
        Labels::from_pairs(pairs).map_err(|e| e.to_string())
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|e| format!("a label is not UTF-8: {e}"))
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_START_GROUP: u8 = 3;
const WIRE_END_GROUP: u8 = 4;
const WIRE_I32: u8 = 5;

/// A malformed protobuf message: what and at which byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protobuf: {what} at byte {at}")]
pub struct ScanError {
    what: &'static str,
    at: usize,
}

/// Reads protobuf wire format from a slice.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn fail(&self, what: &'static str) -> ScanError {
        ScanError { what, at: self.pos }
    }

    fn varint(&mut self) -> Result<u64, ScanError> {
        let mut v = 0u64;
        for k in 0..10 {
            let Some(&b) = self.data.get(self.pos) else {
                return Err(self.fail("input ends inside a varint"));
            };
            self.pos += 1;
            if k == 9 && b > 1 {
                return Err(self.fail("varint overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << (7 * k);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.fail("varint longer than 10 bytes"))
    }

    /// A field key: `(field number, wire type)`.
    fn key(&mut self) -> Result<(u64, u8), ScanError> {
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(self.fail("field number 0"));
        }
        Ok((field, (key & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ScanError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.fail("a field runs past the end of its message"))?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn len_delimited(&mut self) -> Result<&'a [u8], ScanError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.fail("length overflows"))?;
        self.take(n)
    }

    fn fixed64(&mut self) -> Result<u64, ScanError> {
        let b = self.take(8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }

    /// Skips a field's value of wire type `wire`.
    fn skip(&mut self, wire: u8) -> Result<(), ScanError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_I64 => self.take(8).map(drop),
            WIRE_LEN => self.len_delimited().map(drop),
            WIRE_I32 => self.take(4).map(drop),
            WIRE_START_GROUP => self.skip_group(0),
            _ => Err(self.fail("an unknown wire type, or a group's end without its start")),
        }
    }

    /// Skips a (deprecated, but valid) group up to its end key, nested ones included.
    fn skip_group(&mut self, depth: u32) -> Result<(), ScanError> {
        if depth > 64 {
            return Err(self.fail("groups nested too deep"));
        }
        loop {
            if self.is_empty() {
                return Err(self.fail("input ends inside a group"));
            }
            match self.key()? {
                (_, WIRE_END_GROUP) => return Ok(()),
                (_, WIRE_START_GROUP) => self.skip_group(depth + 1)?,
                (_, wire) => self.skip(wire)?,
            }
        }
    }
}

/// Reads a decompressed `WriteRequest` in place (see [`Scanned`]). Every message's structure
/// is checked (field keys, lengths, wire types of the known fields); the labels' content is
/// left to [`ScannedSeries::labels`].
pub fn scan(raw: &[u8]) -> Result<Scanned<'_>, ScanError> {
    let mut out = Scanned::default();
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, WIRE_LEN) => {
                let at = r.pos;
                let body = r.len_delimited()?;
                scan_series(body, &mut out).map_err(|e| ScanError {
                    what: e.what,
                    at: at + e.at,
                })?;
            }
            (3, WIRE_LEN) => {
                let body = r.len_delimited()?;
                let m = <Metadata as prost::Message>::decode(body)
                    .map_err(|_| r.fail("malformed metric metadata"))?;
                if !m.metric_family_name.is_empty() {
                    out.metadata.push(MetricMetadata::from(m));
                }
            }
            (1 | 3, _) => return Err(r.fail("a request field of the wrong wire type")),
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(out)
}

fn scan_series<'a>(body: &'a [u8], out: &mut Scanned<'a>) -> Result<(), ScanError> {
    let mut r = Reader::new(body);
    let first_sample = out.samples.len();
    // The label fields: one contiguous run `[start, end)` of `body`, or gathered bytes.
    let (mut start, mut end) = (0usize, 0usize);
    let mut gathered: Option<Vec<u8>> = None;
    while !r.is_empty() {
        let field_start = r.pos;
        match r.key()? {
            (1, WIRE_LEN) => {
                r.len_delimited()?;
                if let Some(g) = gathered.as_mut() {
                    g.extend_from_slice(&body[field_start..r.pos]);
                } else if end == start || end == field_start {
                    if end == start {
                        start = field_start;
                    }
                    end = r.pos;
                } else {
                    let mut g = body[start..end].to_vec();
                    g.extend_from_slice(&body[field_start..r.pos]);
                    gathered = Some(g);
                }
            }
            (2, WIRE_LEN) => {
                let sample = r.len_delimited()?;
                let (mut value, mut timestamp) = (0u64, 0i64);
                let mut s = Reader::new(sample);
                while !s.is_empty() {
                    match s.key()? {
                        (1, WIRE_I64) => value = s.fixed64()?,
                        (2, WIRE_VARINT) => timestamp = s.varint()? as i64,
                        (1 | 2, _) => return Err(s.fail("a sample field of the wrong wire type")),
                        (_, wire) => s.skip(wire)?,
                    }
                }
                out.samples.push((timestamp, f64::from_bits(value)));
            }
            (4, WIRE_LEN) => {
                r.len_delimited()?;
                out.histograms += 1;
            }
            (1..=4, _) => return Err(r.fail("a series field of the wrong wire type")),
            (_, wire) => r.skip(wire)?,
        }
    }
    let label_fields = match gathered {
        Some(g) => std::borrow::Cow::Owned(g),
        None => std::borrow::Cow::Borrowed(&body[start..end]),
    };
    out.series.push(ScannedSeries {
        label_fields,
        samples: first_sample..out.samples.len(),
    });
    Ok(())
}

impl From<Metadata> for MetricMetadata {
    fn from(m: Metadata) -> Self {
        MetricMetadata {
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
        }
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

    /// Each series' labels (or that they are invalid) and samples as `(timestamp, bits)`.
    type Read = Vec<(Result<Labels, ()>, Vec<(i64, u64)>)>;

    /// What `prost` makes of a request, in the scanner's terms.
    fn by_prost(raw: &[u8]) -> Read {
        let request = WriteRequest::decode(raw).expect("prost decodes");
        request
            .timeseries
            .iter()
            .map(|t| {
                let labels =
                    Labels::from_pairs(t.labels.iter().map(|l| (l.name.clone(), l.value.clone())))
                        .map_err(drop);
                let samples = t
                    .samples
                    .iter()
                    .map(|s| (s.timestamp, s.value.to_bits()))
                    .collect();
                (labels, samples)
            })
            .collect()
    }

    fn by_scan(raw: &[u8]) -> Read {
        let scanned = scan(raw).expect("scans");
        scanned
            .series
            .iter()
            .map(|s| {
                let samples = scanned.samples[s.samples.clone()]
                    .iter()
                    .map(|&(t, v)| (t, v.to_bits()))
                    .collect();
                (s.labels().map_err(drop), samples)
            })
            .collect()
    }

    #[test]
    fn labels_split_by_samples_are_gathered_in_order() {
        // A series whose label fields are not contiguous: label, sample, label.
        let label_a = Label {
            name: "__name__".into(),
            value: "up".into(),
        }
        .encode_to_vec();
        let label_b = Label {
            name: "job".into(),
            value: "a".into(),
        }
        .encode_to_vec();
        let sample = Sample {
            value: 2.5,
            timestamp: 7,
        }
        .encode_to_vec();
        let mut series = Vec::new();
        for (field, body) in [(1u8, &label_a), (2, &sample), (1, &label_b)] {
            series.push(field << 3 | 2);
            series.push(body.len() as u8);
            series.extend_from_slice(body);
        }
        let mut raw = vec![1 << 3 | 2, series.len() as u8];
        raw.extend_from_slice(&series);
        let scanned = scan(&raw).expect("scans");
        assert!(matches!(
            scanned.series[0].label_fields,
            std::borrow::Cow::Owned(_)
        ));
        assert_eq!(
            scanned.series[0].labels().expect("valid").to_string(),
            r#"up{job="a"}"#
        );
        assert_eq!(by_scan(&raw), by_prost(&raw));
        // The usual layout borrows.
        let usual = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![label("__name__", "up")],
                samples: vec![Sample {
                    value: 1.0,
                    timestamp: 1,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec();
        assert!(matches!(
            scan(&usual).expect("scans").series[0].label_fields,
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn malformed_messages_are_refused_with_the_byte() {
        for bad in [
            &[0x0a, 0x05, 0x0a][..],       // a series longer than the request
            &[0x0a][..],                   // a length missing
            &[0x08, 0x01][..],             // the series field as a varint
            &[0x0a, 0x02, 0x12, 0x05][..], // a sample longer than its series
            &[0x0b][..],                   // a group that never ends
            &[0x0c][..],                   // a group's end alone
            &[0x00][..],                   // field number 0
        ] {
            let e = scan(bad).expect_err("malformed");
            assert!(e.to_string().contains("at byte"), "{e}");
            assert!(WriteRequest::decode(bad).is_err(), "prost accepts {bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_scanner_reads_what_prost_reads(
            series in proptest::collection::vec(
                (
                    proptest::collection::vec(("[a-z_]{1,6}|__name__|1x|", "[a-zé]{0,5}"), 0..5),
                    proptest::collection::vec((proptest::num::u64::ANY, proptest::num::i64::ANY), 0..6),
                    0usize..2,
                ),
                0..6,
            ),
        ) {
            let request = WriteRequest {
                timeseries: series
                    .iter()
                    .map(|(labels, samples, histograms)| TimeSeries {
                        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
                        samples: samples
                            .iter()
                            .map(|&(bits, timestamp)| Sample { value: f64::from_bits(bits), timestamp })
                            .collect(),
                        histograms: vec![vec![8, 1]; *histograms],
                        ..Default::default()
                    })
                    .collect(),
                metadata: vec![Metadata { r#type: 2, metric_family_name: "m".into(), help: "h".into(), unit: String::new() }],
            };
            let raw = request.encode_to_vec();
            proptest::prop_assert_eq!(by_scan(&raw), by_prost(&raw));
            let scanned = scan(&raw).expect("scans");
            let histograms: usize = series.iter().map(|s| s.2).sum();
            proptest::prop_assert_eq!(scanned.histograms, histograms as u64);
            proptest::prop_assert_eq!(scanned.metadata.len(), 1);
        }
    }
}
