//! Label sets of query results, which (unlike [`tsdb_core::Labels`]) may lack a metric name.

use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

/// The label that holds the metric name.
pub(crate) const NAME: &str = "__name__";

/// A set of `name="value"` pairs sorted by name, with no empty values; `__name__` is optional.
///
/// Cloning is cheap (the pairs are shared, copied on the first change): evaluation hands the
/// same label set from step to step.
#[derive(Clone, Default)]
pub struct LabelSet {
    pairs: Arc<Vec<(String, String)>>,
    /// Sum of the names' and values' lengths, kept up to date for the memory budget.
    bytes: usize,
}

impl PartialEq for LabelSet {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl Eq for LabelSet {}

impl PartialOrd for LabelSet {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for LabelSet {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.pairs.cmp(&other.pairs)
    }
}

impl std::hash::Hash for LabelSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.pairs.hash(state);
    }
}

impl fmt::Debug for LabelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LabelSet").field(&self.pairs).finish()
    }
}

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

    /// Identifies the shared pairs: clones of one label set have the same identity (distinct
    /// sets may too only if one of them was dropped; callers keep the set alive).
    pub(crate) fn identity(&self) -> usize {
        Arc::as_ptr(&self.pairs) as usize
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.pairs[i].1.as_str())
    }

    /// Sets `name` to `value`; an empty value removes the label.
    pub fn set(&mut self, name: &str, value: &str) {
        match self.pairs.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                let (k, v) = Arc::make_mut(&mut self.pairs).remove(i);
                self.bytes -= k.len() + v.len();
            }
            Ok(i) if self.pairs[i].1 == value => {}
            Ok(i) => {
                let old = &mut Arc::make_mut(&mut self.pairs)[i].1;
                self.bytes = self.bytes - old.len() + value.len();
                value.clone_into(old);
            }
            Err(_) if value.is_empty() => {}
            Err(i) => {
                self.bytes += name.len() + value.len();
                Arc::make_mut(&mut self.pairs).insert(i, (name.to_owned(), value.to_owned()));
            }
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.pairs.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            let (k, v) = Arc::make_mut(&mut self.pairs).remove(i);
            self.bytes -= k.len() + v.len();
        }
    }

    /// Total length in bytes of the names and values: what the memory budget
    /// ([`EngineOptions::max_label_bytes`](crate::EngineOptions)) counts for this set.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The metric name, if any.
    pub fn metric(&self) -> Option<&str> {
        self.get(NAME)
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels, `__name__` included.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there is no label at all.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Keeps only the labels for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        if self.pairs.iter().all(|(k, _)| keep(k)) {
            return;
        }
        let mut dropped = 0;
        Arc::make_mut(&mut self.pairs).retain(|(k, v)| {
            let kept = keep(k);
            if !kept {
                dropped += k.len() + v.len();
            }
            kept
        });
        self.bytes -= dropped;
    }

    /// This set without `__name__`.
    pub fn without_name(mut self) -> Self {
        self.remove(NAME);
        self
    }
}

impl From<&tsdb_core::Labels> for LabelSet {
    fn from(labels: &tsdb_core::Labels) -> Self {
        let pairs: Vec<(String, String)> = labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let bytes = pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        LabelSet {
            pairs: Arc::new(pairs),
            bytes,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn recount(l: &LabelSet) -> usize {
        l.iter().map(|(k, v)| k.len() + v.len()).sum()
    }

    #[test]
    fn byte_count_follows_every_change() {
        let mut l = LabelSet::from_pairs([("__name__", "up"), ("job", "node")]);
        assert_eq!(l.bytes(), 8 + 2 + 3 + 4);
        l.set("job", "a-much-longer-value");
        assert_eq!(l.bytes(), recount(&l));
        l.set("instance", "x");
        assert_eq!(l.bytes(), recount(&l));
        l.set("instance", "");
        assert_eq!(l.bytes(), recount(&l));
        l.retain(|k| k != "job");
        assert_eq!(l.bytes(), recount(&l));
        l = l.without_name();
        assert_eq!((l.bytes(), l.len()), (0, 0));
        let core = tsdb_core::Labels::new("m", [("a", "b")]).expect("valid");
        assert_eq!(LabelSet::from(&core).bytes(), 8 + 1 + 1 + 1);
    }

    #[test]
    fn equality_and_order_ignore_the_cached_count() {
        let a = LabelSet::from_pairs([("a", "1"), ("b", "2")]);
        let mut b = LabelSet::from_pairs([("a", "1")]);
        b.set("b", "2");
        assert_eq!(a, b);
        assert_eq!(a.cmp(&b), std::cmp::Ordering::Equal);
        assert_eq!(format!("{a:?}"), r#"LabelSet([("a", "1"), ("b", "2")])"#);
    }
}
