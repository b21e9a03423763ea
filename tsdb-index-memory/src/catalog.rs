//! Series labels, label postings and Prometheus-style matcher resolution.

use std::collections::{BTreeMap, HashMap};

use tsdb_core::{Error, LabelMatcher, Labels, MatchOp, Result, SeriesId};

use crate::postings::Postings;
use crate::value::Value;

/// Every series' labels and the postings that find them.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    /// Each series' [`Labels::canonical_bytes`]: about half the memory of a `Labels`.
    labels: HashMap<SeriesId, Box<[u8]>>,
    all: Postings,
    /// label name -> value -> series having that pair.
    postings: BTreeMap<String, BTreeMap<Value, Postings>>,
}

/// What one matcher selects: the union of some postings, or every series except it.
struct Selection<'a> {
    lists: Vec<&'a Postings>,
    exclude: bool,
}

impl Selection<'_> {
    fn len(&self) -> usize {
        self.lists.iter().map(|l| l.len()).sum()
    }
}

/// A set probed by membership: a few postings sets probed one by one, or their merged union.
enum Probe<'a> {
    Sets(&'a [&'a Postings]),
    Sorted(Vec<SeriesId>),
}

impl<'a> Probe<'a> {
    /// Probes `lists` for `candidates` ids: merges them first only when that is cheaper than
    /// looking each candidate up in every list.
    fn new(lists: &'a [&'a Postings], candidates: usize) -> Probe<'a> {
        let total: usize = lists.iter().map(|l| l.len()).sum();
        if lists.len() <= 1 || lists.len().saturating_mul(candidates) <= total {
            Probe::Sets(lists)
        } else {
            Probe::Sorted(union(lists))
        }
    }

    fn contains(&self, id: &SeriesId) -> bool {
        match self {
            Probe::Sets(sets) => sets.iter().any(|s| s.contains(id)),
            Probe::Sorted(ids) => ids.binary_search(id).is_ok(),
        }
    }
}

/// Decodes stored labels (written by [`Catalog::register`], so an error means a bug).
fn decode(series: SeriesId, bytes: &[u8]) -> Result<Labels> {
    Labels::from_canonical_bytes(bytes)
        .map_err(|e| Error::corrupt(format_args!("memory index labels of series {series}"), 0, e))
}

/// The ascending union of several postings sets.
fn union(lists: &[&Postings]) -> Vec<SeriesId> {
    let mut out: Vec<SeriesId> = Vec::with_capacity(lists.iter().map(|l| l.len()).sum());
    for l in lists {
        l.extend_into(&mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl Catalog {
    /// Registers `series`; a collision with other labels changes nothing.
    pub(crate) fn register(&mut self, series: SeriesId, labels: &Labels) -> Result<bool> {
        let canonical = labels.canonical_bytes();
        if let Some(existing) = self.labels.get(&series) {
            if **existing == *canonical {
                return Ok(false);
            }
            return Err(Error::SeriesIdCollision {
                series,
                existing: decode(series, existing)?.to_string(),
                new: labels.to_string(),
            });
        }
        for l in labels.iter() {
            self.postings
                .entry(l.name.clone())
                .or_default()
                .entry(Value::new(&l.value))
                .or_default()
                .insert(series);
        }
        self.all.insert(series);
        self.labels.insert(series, canonical.into_boxed_slice());
        Ok(true)
    }

    /// Forgets `series`; false when it was not registered.
    pub(crate) fn drop_series(&mut self, series: SeriesId) -> Result<bool> {
        let Some(canonical) = self.labels.remove(&series) else {
            return Ok(false);
        };
        let labels = decode(series, &canonical)?;
        self.all.remove(&series);
        for l in labels.iter() {
            let Some(values) = self.postings.get_mut(&l.name) else {
                continue;
            };
            if let Some(ids) = values.get_mut(l.value.as_str()) {
                ids.remove(&series);
                if ids.is_empty() {
                    values.remove(l.value.as_str());
                }
            }
            if values.is_empty() {
                self.postings.remove(&l.name);
            }
        }
        Ok(true)
    }

    pub(crate) fn labels(&self, series: SeriesId) -> Result<Option<Labels>> {
        self.labels
            .get(&series)
            .map(|bytes| decode(series, bytes))
            .transpose()
    }

    pub(crate) fn label_names(&self) -> Vec<String> {
        self.postings.keys().cloned().collect()
    }

    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        self.postings
            .get(name)
            .map(|values| values.keys().map(|v| v.as_str().to_owned()).collect())
            .unwrap_or_default()
    }

    /// What one matcher selects, resolved over the label's value dictionary.
    fn select(&self, m: &LabelMatcher) -> Selection<'_> {
        let values = self.postings.get(m.name());
        // `=` and `!=` with a non-empty value are single lookups.
        match m.op() {
            MatchOp::Equal if !m.value().is_empty() => {
                return Selection {
                    lists: values.and_then(|v| v.get(m.value())).into_iter().collect(),
                    exclude: false,
                };
            }
            MatchOp::NotEqual if !m.value().is_empty() => {
                return Selection {
                    lists: values.and_then(|v| v.get(m.value())).into_iter().collect(),
                    exclude: true,
                };
            }
            _ => {}
        }
        // Prometheus: a matcher accepting "" selects everything except the series whose value
        // it rejects; otherwise it selects the series whose value it accepts.
        let exclude = m.matches_empty();
        let lists = values
            .into_iter()
            .flat_map(|v| candidate_values(m, v))
            .filter(|(value, _)| m.matches(Some(value.as_str())) != exclude)
            .map(|(_, ids)| ids)
            .collect();
        Selection { lists, exclude }
    }

    /// Series matched by every matcher, ascending.
    pub(crate) fn find(&self, matchers: &[LabelMatcher]) -> Vec<SeriesId> {
        let selections: Vec<Selection<'_>> = matchers.iter().map(|m| self.select(m)).collect();
        // Drive from the smallest positive selection (or from every series when none is).
        let driver = selections
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.exclude)
            .min_by_key(|(_, s)| s.len())
            .map(|(i, _)| i);
        if driver.is_some_and(|i| selections[i].lists.is_empty()) {
            return Vec::new();
        }
        let candidates = driver.map_or(self.all.len(), |i| selections[i].len());
        let probes: Vec<(Probe<'_>, bool)> = selections
            .iter()
            .enumerate()
            .filter(|(i, s)| Some(*i) != driver && !(s.exclude && s.lists.is_empty()))
            .map(|(_, s)| (Probe::new(&s.lists, candidates), s.exclude))
            .collect();
        let keep = |id: &SeriesId| probes.iter().all(|(p, exclude)| p.contains(id) != *exclude);
        match driver.map(|i| selections[i].lists.as_slice()) {
            Some([one]) => one.iter().filter(keep).collect(),
            Some(many) => {
                let mut ids = union(many);
                ids.retain(keep);
                ids
            }
            None => self.all.iter().filter(keep).collect(),
        }
    }
}

/// The `(value, postings)` pairs of one label that can possibly match `m`: all of them, only
/// those under the regex's literal prefix when it has one, or only its literals when it is
/// an alternation of literals.
fn candidate_values<'a>(
    m: &LabelMatcher,
    values: &'a BTreeMap<Value, Postings>,
) -> Box<dyn Iterator<Item = (&'a Value, &'a Postings)> + 'a> {
    // `a|b|c` without an empty branch: the values selected (`=~`) or excluded (`!~`) are
    // exactly those literals, looked up one by one.
    if let Some(literals) = m.regex_literals()
        && !literals.iter().any(String::is_empty)
    {
        let unique: std::collections::BTreeSet<&String> = literals.iter().collect();
        let found: Vec<(&'a Value, &'a Postings)> = unique
            .into_iter()
            .filter_map(|l| values.get_key_value(l.as_str()))
            .collect();
        return Box::new(found.into_iter());
    }
    let prefix = m.regex_literal_prefix().to_owned();
    // A regex with a literal prefix cannot match "", so the values selected (`=~`) or
    // excluded (`!~`) are those it matches, all under the prefix.
    if prefix.is_empty() {
        return Box::new(values.iter());
    }
    let from = Value::new(&prefix);
    Box::new(
        values
            .range(from..)
            .take_while(move |(v, _)| v.as_str().starts_with(&prefix)),
    )
}
