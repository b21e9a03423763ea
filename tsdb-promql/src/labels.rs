//! Label sets of query results, which (unlike [`tsdb_core::Labels`]) may lack a metric name.

use std::fmt;

use serde::{Serialize, Serializer};

/// The label that holds the metric name.
pub(crate) const NAME: &str = "__name__";

/// A set of `name="value"` pairs sorted by name, with no empty values; `__name__` is optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    /// The set of the given pairs; later duplicates replace earlier ones, empty values are dropped.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut set = LabelSet::default();
        for (k, v) in pairs {
            set.set(&k.into(), &v.into());
        }
        set
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => value.clone_into(&mut self.0[i].1),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_owned(), value.to_owned())),
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            self.0.remove(i);
        }
    }

    /// The metric name, if any.
    pub fn metric(&self) -> Option<&str> {
        self.get(NAME)
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels, `__name__` included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no label at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Keeps only the labels for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        self.0.retain(|(k, _)| keep(k));
    }

    /// This set without `__name__`.
    pub fn without_name(mut self) -> Self {
        self.remove(NAME);
        self
    }
}

impl From<&tsdb_core::Labels> for LabelSet {
    fn from(labels: &tsdb_core::Labels) -> Self {
        LabelSet(
            labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect(),
        )
    }
}

impl fmt::Display for LabelSet {
    /// Prometheus notation: `metric{name="value",...}`, `{}` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = self.metric() {
            f.write_str(m)?;
        }
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != NAME) {
            f.write_str(if first { "{" } else { ", " })?;
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        if !first {
            f.write_str("}")?;
        } else if self.metric().is_none() {
            f.write_str("{}")?;
        }
        Ok(())
    }
}

impl Serialize for LabelSet {
    /// As a JSON object `{"name": "value", ...}`, like Prometheus's HTTP API.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}
