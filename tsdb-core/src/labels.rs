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
    /// Labels of a series of `metric` with the given `(name, value)` pairs, in any order.
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
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Result<Self>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut sorted: Vec<Label> = pairs
            .into_iter()
            .map(|(name, value)| Label {
                name: name.into(),
                value: value.into(),
            })
            .filter(|l| !l.value.is_empty() || l.name == METRIC_NAME_LABEL)
            .collect();
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

    /// Decodes [`Labels::canonical_bytes`], validating it as [`Labels::from_pairs`] does.
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
        Self::from_pairs(pairs)
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
