//! Series labels and the stable derivation of a [`SeriesId`] from them.

use std::fmt;

use crate::error::{Error, Result};
use crate::types::SeriesId;

/// The label that holds the metric name.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// Separator in the canonical encoding. `0xFF` never occurs in UTF-8 text, so the encoding is
/// unambiguous and can be decoded.
const SEPARATOR: u8 = 0xFF;

/// One `name="value"` pair.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value (never empty inside a [`Labels`]).
    pub value: String,
}

/// The identity of a series: a metric name plus label pairs, kept sorted by name.
///
/// Rules (those of Prometheus): the metric name matches `[a-zA-Z_:][a-zA-Z0-9_:]*`; label names
/// match `[a-zA-Z_][a-zA-Z0-9_]*`, are unique, and do not start with `__` (reserved, except
/// `__name__`, which holds the metric name); a label with an empty value is the same as no
/// label and is dropped.
///
/// # Series id derivation
/// [`Labels::series_id`] is `xxh3_64` (seed 0) of [`Labels::canonical_bytes`]: for every label in
/// name order, `__name__` included, the name's UTF-8 bytes, a `0xFF` byte, the value's bytes and
/// another `0xFF`. This derivation is part of the on-disk contract and never changes.
///
/// # Size limits
/// So that one series cannot take unbounded memory (in the index, in every query that touches
/// it), [`Labels::new`] and [`Labels::from_pairs`] refuse, with [`Error::InvalidLabels`]
/// naming the label and its size:
///
/// - a label name longer than [`Labels::MAX_NAME_BYTES`] (1 KiB);
/// - a label value, the metric name included, longer than [`Labels::MAX_VALUE_BYTES`]
///   (16 KiB);
/// - more than [`Labels::MAX_LABELS`] labels (128, `__name__` included);
/// - a label set whose canonical encoding is longer than [`Labels::MAX_BYTES`] (64 KiB).
///
/// These are far above what real series carry (VictoriaMetrics refuses values over 4 KiB
/// and more than 30 labels by default; Prometheus sets no limit) while refusing the
/// megabyte-sized values that only mistakes or abuse produce. Decoding with
/// [`Labels::from_canonical_bytes`] does not apply them, so that series stored before the
/// limits existed stay readable.
///
/// ```
/// use tsdb_core::Labels;
/// let labels = Labels::new("cpu_seconds_total", [("mode", "idle"), ("host", "a")])?;
/// assert_eq!(labels.to_string(), r#"cpu_seconds_total{host="a",mode="idle"}"#);
/// assert_eq!(labels.series_id(), Labels::new("cpu_seconds_total", [("host", "a"), ("mode", "idle")])?.series_id());
/// # Ok::<(), tsdb_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels {
    sorted: Vec<Label>,
}

impl Labels {
    /// Longest accepted label name, in bytes: 1 KiB. See [size limits](Labels#size-limits).
    pub const MAX_NAME_BYTES: usize = 1024;

    /// Longest accepted label value (the metric name included), in bytes: 16 KiB. See
    /// [size limits](Labels#size-limits).
    pub const MAX_VALUE_BYTES: usize = 16 * 1024;

    /// Most labels of one series, `__name__` included: 128. See
    /// [size limits](Labels#size-limits).
    pub const MAX_LABELS: usize = 128;

    /// Longest accepted [canonical encoding](Labels::canonical_bytes) of one label set (every
    /// name and value plus two separator bytes per label), in bytes: 64 KiB. See
    /// [size limits](Labels#size-limits).
    pub const MAX_BYTES: usize = 64 * 1024;

    /// Labels of a series of `metric` with the given `(name, value)` pairs, in any order.
    ///
    /// Fails with [`Error::InvalidLabels`] when a rule or a [size limit](Labels#size-limits)
    /// is broken.
    pub fn new<K, V>(metric: &str, pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut all: Vec<(String, String)> =
            vec![(METRIC_NAME_LABEL.to_owned(), metric.to_owned())];
        for (k, v) in pairs {
            let k = k.as_ref();
            if k == METRIC_NAME_LABEL {
                return Err(invalid(
                    "the metric name is given apart, not as a __name__ label",
                ));
            }
            all.push((k.to_owned(), v.as_ref().to_owned()));
        }
        Self::from_pairs(all)
    }

    /// Labels from pairs that include the metric name as `__name__`, in any order.
    ///
    /// Fails with [`Error::InvalidLabels`] when a rule or a [size limit](Labels#size-limits)
    /// is broken.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self::build(pairs, true)
    }

    /// [`Labels::from_pairs`], with the size limits checked or not.
    fn build<K, V>(pairs: impl IntoIterator<Item = (K, V)>, bounded: bool) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut sorted: Vec<Label> = Vec::new();
        let mut total = 0usize;
        for (name, value) in pairs {
            let label = Label {
                name: name.into(),
                value: value.into(),
            };
            if label.value.is_empty() && label.name != METRIC_NAME_LABEL {
                continue;
            }
            if bounded {
                check_size(&label, sorted.len(), &mut total)?;
            }
            sorted.push(label);
        }
        sorted.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for pair in sorted.windows(2) {
            if pair[0].name == pair[1].name {
                return Err(invalid(format_args!(
                    "label {:?} given twice",
                    pair[0].name
                )));
            }
        }
        let labels = Labels { sorted };
        match labels.get(METRIC_NAME_LABEL) {
            Some(metric) if valid_metric_name(metric) => {}
            Some(metric) => {
                return Err(invalid(format_args!(
                    "metric name {metric:?} does not match [a-zA-Z_:][a-zA-Z0-9_:]*"
                )));
            }
            None => return Err(invalid("the metric name (__name__) is missing")),
        }
        for label in &labels.sorted {
            if label.name != METRIC_NAME_LABEL {
                if !valid_label_name(&label.name) {
                    return Err(invalid(format_args!(
                        "label name {:?} does not match [a-zA-Z_][a-zA-Z0-9_]*",
                        label.name
                    )));
                }
                if label.name.starts_with("__") {
                    return Err(invalid(format_args!(
                        "label name {:?} starts with the reserved prefix __",
                        label.name
                    )));
                }
            }
        }
        Ok(labels)
    }

    /// The metric name.
    pub fn metric(&self) -> &str {
        self.get(METRIC_NAME_LABEL).unwrap_or_default()
    }

    /// The value of label `name` (`"__name__"` gives the metric name), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.sorted
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.sorted[i].value.as_str())
    }

    /// All labels, `__name__` included, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Label> + '_ {
        self.sorted.iter()
    }

    /// Number of labels, `__name__` included.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Always false: a metric name is required. Present for API completeness.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The canonical encoding described on [`Labels`]; also a compact way to persist labels.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let len = self
            .sorted
            .iter()
            .map(|l| l.name.len() + l.value.len() + 2)
            .sum();
        let mut out = Vec::with_capacity(len);
        for l in &self.sorted {
            out.extend_from_slice(l.name.as_bytes());
            out.push(SEPARATOR);
            out.extend_from_slice(l.value.as_bytes());
            out.push(SEPARATOR);
        }
        out
    }

    /// Decodes [`Labels::canonical_bytes`], validating it as [`Labels::from_pairs`] does except
    /// for the [size limits](Labels#size-limits): a label set stored before they existed
    /// still decodes (its size is bounded by the bytes given anyway).
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Self> {
        let mut fields = bytes.split(|&b| b == SEPARATOR);
        let mut pairs = Vec::new();
        let mut offset = 0u64;
        while let Some(name) = fields.next() {
            if name.is_empty() && offset as usize == bytes.len() {
                break; // the split after the final separator
            }
            let Some(value) = fields.next() else {
                return Err(Error::corrupt(
                    "label set",
                    offset,
                    "label name without a value",
                ));
            };
            let text = |part: &[u8]| {
                std::str::from_utf8(part)
                    .map(str::to_owned)
                    .map_err(|e| Error::corrupt("label set", offset, e))
            };
            pairs.push((text(name)?, text(value)?));
            offset += (name.len() + value.len() + 2) as u64;
        }
        if bytes.last().is_some_and(|&b| b != SEPARATOR) {
            return Err(Error::corrupt(
                "label set",
                bytes.len() as u64,
                "missing final separator",
            ));
        }
        Self::build(pairs, false)
    }

    /// The stable id of this series (see [`Labels`] for the derivation).
    pub fn series_id(&self) -> SeriesId {
        SeriesId(xxhash_rust::xxh3::xxh3_64(&self.canonical_bytes()))
    }
}

impl fmt::Display for Labels {
    /// Prometheus notation: `metric{name="value",...}` with `\\`, `"` and newlines escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.metric())?;
        let mut first = true;
        for l in self.sorted.iter().filter(|l| l.name != METRIC_NAME_LABEL) {
            f.write_str(if first { "{" } else { "," })?;
            first = false;
            write!(f, "{}=\"", l.name)?;
            for c in l.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        if !first {
            f.write_str("}")?;
        }
        Ok(())
    }
}

/// Checks one more label against the size limits; `count` labels were accepted before it and
/// their canonical encoding takes `total` bytes (updated).
fn check_size(label: &Label, count: usize, total: &mut usize) -> Result<()> {
    let (name, value) = (&label.name, &label.value);
    if name.len() > Labels::MAX_NAME_BYTES {
        return Err(invalid(format_args!(
            "label name {} is {} bytes long, the limit is {} bytes",
            preview(name),
            name.len(),
            Labels::MAX_NAME_BYTES
        )));
    }
    if value.len() > Labels::MAX_VALUE_BYTES {
        let what = if name == METRIC_NAME_LABEL {
            "the metric name".to_owned()
        } else {
            format!("the value of label {name:?}")
        };
        return Err(invalid(format_args!(
            "{what} is {} bytes long, the limit is {} bytes",
            value.len(),
            Labels::MAX_VALUE_BYTES
        )));
    }
    if count >= Labels::MAX_LABELS {
        return Err(invalid(format_args!(
            "label {} would be label number {}, the limit is {} labels (__name__ included)",
            preview(name),
            count + 1,
            Labels::MAX_LABELS
        )));
    }
    *total += name.len() + value.len() + 2;
    if *total > Labels::MAX_BYTES {
        return Err(invalid(format_args!(
            "with label {} the label set takes at least {} bytes, the limit is {} bytes",
            preview(name),
            *total,
            Labels::MAX_BYTES
        )));
    }
    Ok(())
}

/// A label name for an error message, quoted, cut after 64 characters.
fn preview(name: &str) -> String {
    const KEEP: usize = 64;
    match name.char_indices().nth(KEEP) {
        Some((at, _)) => format!("{:?}...", &name[..at]),
        None => format!("{name:?}"),
    }
}

fn invalid(reason: impl fmt::Display) -> Error {
    Error::InvalidLabels {
        reason: reason.to_string(),
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn series_id_derivation_is_pinned() {
        // The derivation is an on-disk contract: this value must never change.
        let labels = Labels::new("up", [("job", "node")]).expect("valid labels");
        let expected = xxhash_rust::xxh3::xxh3_64(b"__name__\xFFup\xFFjob\xFFnode\xFF");
        assert_eq!(
            labels.canonical_bytes(),
            b"__name__\xFFup\xFFjob\xFFnode\xFF"
        );
        assert_eq!(labels.series_id(), SeriesId(expected));
    }

    #[test]
    fn empty_values_are_dropped_and_order_does_not_matter() {
        let a = Labels::new("m", [("b", "2"), ("a", "1"), ("c", "")]).expect("valid");
        let b = Labels::new("m", [("a", "1"), ("b", "2")]).expect("valid");
        assert_eq!(a, b);
        assert_eq!(a.series_id(), b.series_id());
        assert_eq!(a.get("c"), None);
        assert_eq!(a.metric(), "m");
    }

    #[test]
    fn invalid_labels_are_rejected_with_a_reason() {
        for bad in [
            Labels::new("1metric", [("a", "b")]),
            Labels::new("m", [("bad-name", "b")]),
            Labels::new("m", [("__reserved", "b")]),
            Labels::new("m", [("a", "1"), ("a", "2")]),
            Labels::new("", Vec::<(&str, &str)>::new()),
            Labels::from_pairs([("a", "b")]),
        ] {
            assert!(matches!(bad, Err(Error::InvalidLabels { .. })), "{bad:?}");
        }
    }

    fn reason(result: Result<Labels>) -> String {
        match result {
            Err(Error::InvalidLabels { reason }) => reason,
            other => panic!("expected InvalidLabels, got {other:?}"),
        }
    }

    #[test]
    fn oversized_label_values_are_refused_naming_the_label_and_size() {
        let at_limit = "v".repeat(Labels::MAX_VALUE_BYTES);
        Labels::new("m", [("path", at_limit.as_str())]).expect("a value at the limit is fine");
        let ten_mb = "v".repeat(10 * 1024 * 1024);
        let r = reason(Labels::new("m", [("path", ten_mb.as_str())]));
        assert!(
            r.contains("\"path\"") && r.contains("10485760 bytes") && r.contains("16384"),
            "{r}"
        );
        let over = "v".repeat(Labels::MAX_VALUE_BYTES + 1);
        let r = reason(Labels::from_pairs([
            ("__name__", "m"),
            ("a", over.as_str()),
        ]));
        assert!(r.contains("16385 bytes"), "{r}");
        let r = reason(Labels::new(&over, Vec::<(&str, &str)>::new()));
        assert!(
            r.contains("metric name") && r.contains("16385 bytes"),
            "{r}"
        );
    }

    #[test]
    fn oversized_label_names_are_refused() {
        let at_limit = "n".repeat(Labels::MAX_NAME_BYTES);
        Labels::new("m", [(at_limit.as_str(), "v")]).expect("a name at the limit is fine");
        let over = "n".repeat(Labels::MAX_NAME_BYTES + 1);
        let r = reason(Labels::new("m", [(over.as_str(), "v")]));
        assert!(r.contains("1025 bytes") && r.contains("1024"), "{r}");
        // The name is cut in the message.
        assert!(r.len() < 300, "{r}");
    }

    #[test]
    fn too_many_labels_are_refused() {
        let pairs = |n: usize| -> Vec<(String, String)> {
            (0..n).map(|i| (format!("l{i}"), "v".to_owned())).collect()
        };
        Labels::new("m", pairs(Labels::MAX_LABELS - 1)).expect("128 labels with __name__");
        let r = reason(Labels::new("m", pairs(Labels::MAX_LABELS)));
        assert!(r.contains("label number 129") && r.contains("128"), "{r}");
        // Empty values are no labels and do not count.
        let mut with_empty = pairs(Labels::MAX_LABELS - 1);
        with_empty.push(("empty".into(), String::new()));
        Labels::new("m", with_empty).expect("empty values are dropped first");
    }

    #[test]
    fn label_sets_over_the_total_size_are_refused() {
        let big = "v".repeat(Labels::MAX_VALUE_BYTES);
        let pairs: Vec<(String, &str)> = (0..4).map(|i| (format!("l{i}"), big.as_str())).collect();
        let r = reason(Labels::new("m", pairs));
        assert!(r.contains("65536"), "{r}");
        let pairs: Vec<(String, &str)> = (0..3).map(|i| (format!("l{i}"), big.as_str())).collect();
        Labels::new("m", pairs).expect("three values at the limit fit in 64 KiB");
    }

    #[test]
    fn decoding_does_not_apply_the_size_limits() {
        // A label set stored before the limits existed stays readable.
        let mut bytes = b"__name__\xFFm\xFFpath\xFF".to_vec();
        bytes.extend(std::iter::repeat_n(b'v', Labels::MAX_VALUE_BYTES + 1));
        bytes.push(SEPARATOR);
        let labels = Labels::from_canonical_bytes(&bytes).expect("old oversized label decodes");
        assert_eq!(
            labels.get("path").map(str::len),
            Some(Labels::MAX_VALUE_BYTES + 1)
        );
        assert_eq!(labels.canonical_bytes(), bytes);
        // The other rules still hold.
        assert!(Labels::from_canonical_bytes(b"__name__\xFF1m\xFF").is_err());
    }

    #[test]
    fn display_escapes_values() {
        let l = Labels::new("m", [("path", "a\"b\\c\nd")]).expect("valid");
        assert_eq!(l.to_string(), r#"m{path="a\"b\\c\nd"}"#);
        assert_eq!(
            Labels::new("m", Vec::<(&str, &str)>::new())
                .expect("valid")
                .to_string(),
            "m"
        );
    }

    #[test]
    fn corrupt_canonical_bytes_are_errors() {
        for bad in [
            &b"__name__"[..],
            b"__name__\xFFm",
            b"__name__\xFF\xC3\xFF",
            b"\xFF\xFF\xFF",
        ] {
            assert!(Labels::from_canonical_bytes(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn canonical_bytes_round_trip(
            metric in "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
            pairs in proptest::collection::btree_map("[a-zA-Z][a-zA-Z0-9_]{0,8}", ".{0,12}", 0..6),
        ) {
            let labels = Labels::new(&metric, &pairs).expect("generated labels are valid");
            let decoded = Labels::from_canonical_bytes(&labels.canonical_bytes()).expect("decodes");
            prop_assert_eq!(&decoded, &labels);
            prop_assert_eq!(decoded.series_id(), labels.series_id());
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Labels::from_canonical_bytes(&bytes);
        }
    }
}
