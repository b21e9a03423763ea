//! Series labels, label postings and Prometheus-style matcher resolution.
//!
//! Each series gets an [`Ordinal`], dense from 0 in registration order. Its labels are kept as
//! `(name, value)` index pairs into per-name [`Dictionary`]s (each text once), postings are
//! ascending ordinal lists that only grow at their end, and the id of each ordinal sits in one
//! vector, found back through a hash table of ordinals. About 100 bytes a series with four
//! labels, one of them unique; a catalog of `HashMap`s and `BTreeMap`s took 250.
//!
//! Dropping a series marks its ordinal dead and decrements its values' live counts; postings
//! keep dead ordinals (a list of a million would otherwise be shifted for every drop) and
//! reads skip them. Once dead ordinals outnumber live ones, the catalog is rebuilt from the
//! live series, which reclaims everything.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use tsdb_core::{Error, LabelMatcher, Labels, MatchOp, Result, SeriesId};

use crate::dictionary::{Dictionary, ValueIndex};
use crate::postings::{Ordinal, union};

/// The catalog is rebuilt when more than this many ordinals are dead, and more than live.
const REBUILD_MIN_DEAD: usize = 4096;

/// One label name and its values.
#[derive(Debug, Default)]
struct Name {
    text: Box<str>,
    values: Dictionary,
    /// Live series with this label.
    live: usize,
}

/// Every series' labels and the postings that find them (see the module doc).
#[derive(Debug)]
pub(crate) struct Catalog {
    /// The series id of each ordinal.
    ids: Vec<SeriesId>,
    /// One bit per ordinal: set once the series is dropped.
    dead: Vec<u64>,
    dead_count: usize,
    /// The live ordinals, by the (keyed) hash of their series id.
    by_id: HashTable<Ordinal>,
    hasher: RandomState,
    /// Ordinal `o`'s labels are `pairs[starts[o]..starts[o + 1]]`, sorted by name text.
    pairs: Vec<(u32, ValueIndex)>,
    starts: Vec<u32>,
    names: Vec<Name>,
    /// Name text to its index in `names`, in byte order.
    name_index: BTreeMap<Box<str>, u32>,
    /// [`REBUILD_MIN_DEAD`], smaller in tests.
    rebuild_min_dead: usize,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            ids: Vec::new(),
            dead: Vec::new(),
            dead_count: 0,
            by_id: HashTable::new(),
            hasher: RandomState::new(),
            pairs: Vec::new(),
            starts: vec![0],
            names: Vec::new(),
            name_index: BTreeMap::new(),
            rebuild_min_dead: REBUILD_MIN_DEAD,
        }
    }
}

/// What one matcher selects: the union of some postings, or every series except it.
struct Selection<'a> {
    lists: Vec<&'a [Ordinal]>,
    exclude: bool,
}

impl Selection<'_> {
    fn len(&self) -> usize {
        self.lists.iter().map(|l| l.len()).sum()
    }
}

/// A set probed by membership: a few postings lists probed one by one, or their merged union.
enum Probe<'a> {
    Sets(&'a [&'a [Ordinal]]),
    Sorted(Vec<Ordinal>),
}

impl<'a> Probe<'a> {
    /// Probes `lists` for `candidates` ordinals: merges them first only when that is cheaper
    /// than looking each candidate up in every list.
    fn new(lists: &'a [&'a [Ordinal]], candidates: usize) -> Probe<'a> {
        let total: usize = lists.iter().map(|l| l.len()).sum();
        if lists.len() <= 1 || lists.len().saturating_mul(candidates) <= total {
            Probe::Sets(lists)
        } else {
            Probe::Sorted(union(lists))
        }
    }

    fn contains(&self, o: &Ordinal) -> bool {
        match self {
            Probe::Sets(sets) => sets.iter().any(|s| s.binary_search(o).is_ok()),
            Probe::Sorted(ids) => ids.binary_search(o).is_ok(),
        }
    }
}

/// [`Error::LimitExceeded`] for one of the index's 32-bit counts.
fn full(what: &'static str) -> Error {
    Error::LimitExceeded {
        what,
        requested: u64::from(u32::MAX) + 1,
        limit: u64::from(u32::MAX),
    }
}

/// The byte between names and values in [`Labels::canonical_bytes`].
const SEPARATOR: u8 = 0xff;

impl Catalog {
    /// Ordinals given since the last rebuild, dead ones included.
    #[cfg(test)]
    pub(crate) fn ordinals(&self) -> usize {
        self.ids.len()
    }

    /// An empty catalog rebuilt after `n` drops (rather than [`REBUILD_MIN_DEAD`]).
    #[cfg(test)]
    pub(crate) fn with_rebuild_min_dead(n: usize) -> Catalog {
        Catalog {
            rebuild_min_dead: n,
            ..Catalog::default()
        }
    }

    /// The ordinal of `series`, when it is registered.
    pub(crate) fn ordinal(&self, series: SeriesId) -> Option<Ordinal> {
        let hash = self.hasher.hash_one(series.0);
        self.by_id
            .find(hash, |&o| self.ids[o as usize] == series)
            .copied()
    }

    fn is_dead(&self, o: Ordinal) -> bool {
        self.dead[o as usize / 64] & (1 << (o % 64)) != 0
    }

    /// Number of live series.
    fn live(&self) -> usize {
        self.ids.len() - self.dead_count
    }

    /// The canonical bytes ([`Labels::canonical_bytes`]) of ordinal `o`'s labels.
    fn canonical(&self, o: Ordinal) -> Vec<u8> {
        let pairs =
            &self.pairs[self.starts[o as usize] as usize..self.starts[o as usize + 1] as usize];
        let mut out = Vec::new();
        for &(n, v) in pairs {
            let name = &self.names[n as usize];
            out.extend_from_slice(name.text.as_bytes());
            out.push(SEPARATOR);
            out.extend_from_slice(name.values.text(v).as_bytes());
            out.push(SEPARATOR);
        }
        out
    }

    fn decode(&self, series: SeriesId, o: Ordinal) -> Result<Labels> {
        Labels::from_canonical_bytes(&self.canonical(o)).map_err(|e| {
            Error::corrupt(format_args!("memory index labels of series {series}"), 0, e)
        })
    }

    /// Registers `series`; a collision with other labels changes nothing.
    pub(crate) fn register(&mut self, series: SeriesId, labels: &Labels) -> Result<bool> {
        if let Some(o) = self.ordinal(series) {
            let canonical = labels.canonical_bytes();
            if self.canonical(o) == canonical {
                return Ok(false);
            }
            return Err(Error::SeriesIdCollision {
                series,
                existing: self.decode(series, o)?.to_string(),
                new: labels.to_string(),
            });
        }
        let o = Ordinal::try_from(self.ids.len()).map_err(|_| full("memory index series"))?;
        let pairs_end = self.pairs.len() + labels.len();
        let end = u32::try_from(pairs_end).map_err(|_| full("memory index label pairs"))?;
        // Check every value fits before changing anything.
        for l in labels.iter() {
            if let Some(&n) = self.name_index.get(l.name.as_str())
                && !self.names[n as usize].values.fits(&l.value)
            {
                return Err(full("memory index bytes of one label's values"));
            }
        }
        for l in labels.iter() {
            let n = match self.name_index.get(l.name.as_str()) {
                Some(&n) => n,
                None => {
                    let n = u32::try_from(self.names.len())
                        .map_err(|_| full("memory index label names"))?;
                    self.names.push(Name {
                        text: l.name.as_str().into(),
                        ..Name::default()
                    });
                    self.name_index.insert(l.name.as_str().into(), n);
                    n
                }
            };
            let name = &mut self.names[n as usize];
            let v = name
                .values
                .insert(&l.value, o)
                .map_err(|_| full("memory index bytes of one label's values"))?;
            name.live += 1;
            self.pairs.push((n, v));
        }
        self.starts.push(end);
        self.ids.push(series);
        if self.dead.len() * 64 < self.ids.len() {
            self.dead.push(0);
        }
        let hash = self.hasher.hash_one(series.0);
        let (ids, hasher) = (&self.ids, &self.hasher);
        self.by_id
            .insert_unique(hash, o, |&x| hasher.hash_one(ids[x as usize].0));
        Ok(true)
    }

    /// Forgets `series`: its ordinal, now dead; `None` when it was not registered. Call
    /// [`Catalog::rebuild_if_due`] next.
    pub(crate) fn drop_series(&mut self, series: SeriesId) -> Option<Ordinal> {
        let hash = self.hasher.hash_one(series.0);
        let entry = self
            .by_id
            .find_entry(hash, |&o| self.ids[o as usize] == series)
            .ok()?;
        let (o, _) = entry.remove();
        self.dead[o as usize / 64] |= 1 << (o % 64);
        self.dead_count += 1;
        let (from, to) = (
            self.starts[o as usize] as usize,
            self.starts[o as usize + 1] as usize,
        );
        for &(n, v) in &self.pairs[from..to] {
            let name = &mut self.names[n as usize];
            name.values.release(v);
            name.live = name.live.saturating_sub(1);
        }
        Some(o)
    }

    /// Rebuilds the catalog from its live series once the dead outnumber them. Returns, when
    /// it did, the old ordinal of each new one (new ordinal `i` was `renumbered[i]`): the
    /// live series keep their order.
    pub(crate) fn rebuild_if_due(&mut self) -> Result<Option<Vec<Ordinal>>> {
        if self.dead_count <= self.rebuild_min_dead || self.dead_count <= self.live() {
            return Ok(None);
        }
        let mut fresh = Catalog {
            rebuild_min_dead: self.rebuild_min_dead,
            ..Catalog::default()
        };
        let mut renumbered = Vec::with_capacity(self.live());
        for o in 0..self.ids.len() as Ordinal {
            if self.is_dead(o) {
                continue;
            }
            let series = self.ids[o as usize];
            fresh.register(series, &self.decode(series, o)?)?;
            renumbered.push(o);
        }
        *self = fresh;
        Ok(Some(renumbered))
    }

    pub(crate) fn labels(&self, series: SeriesId) -> Result<Option<Labels>> {
        self.ordinal(series)
            .map(|o| self.decode(series, o))
            .transpose()
    }

    pub(crate) fn label_names(&self) -> Vec<String> {
        self.name_index
            .iter()
            .filter(|(_, n)| self.names[**n as usize].live > 0)
            .map(|(text, _)| text.to_string())
            .collect()
    }

    pub(crate) fn label_values(&self, name: &str) -> Vec<String> {
        self.name(name)
            .map(|n| {
                n.values
                    .ordered()
                    .map(|v| n.values.text(v).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn name(&self, text: &str) -> Option<&Name> {
        self.name_index.get(text).map(|&n| &self.names[n as usize])
    }

    /// What one matcher selects, resolved over the label's value dictionary.
    fn select(&self, m: &LabelMatcher) -> Selection<'_> {
        let values = self.name(m.name()).map(|n| &n.values);
        // `=` and `!=` with a non-empty value are single lookups.
        match m.op() {
            MatchOp::Equal | MatchOp::NotEqual if !m.value().is_empty() => {
                return Selection {
                    lists: values
                        .and_then(|d| d.get(m.value()).map(|v| d.postings(v)))
                        .into_iter()
                        .collect(),
                    exclude: m.op() == MatchOp::NotEqual,
                };
            }
            _ => {}
        }
        // Prometheus: a matcher accepting "" selects everything except the series whose value
        // it rejects; otherwise it selects the series whose value it accepts.
        let exclude = m.matches_empty();
        let lists = match values {
            None => Vec::new(),
            Some(d) => candidate_values(m, d)
                .into_iter()
                .filter(|&v| m.matches(Some(d.text(v))) != exclude)
                .map(|v| d.postings(v))
                .collect(),
        };
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
        let candidates = driver.map_or(self.ids.len(), |i| selections[i].len());
        let probes: Vec<(Probe<'_>, bool)> = selections
            .iter()
            .enumerate()
            .filter(|(i, s)| Some(*i) != driver && !(s.exclude && s.lists.is_empty()))
            .map(|(_, s)| (Probe::new(&s.lists, candidates), s.exclude))
            .collect();
        let any_dead = self.dead_count > 0;
        let keep = |o: &Ordinal| {
            !(any_dead && self.is_dead(*o))
                && probes.iter().all(|(p, exclude)| p.contains(o) != *exclude)
        };
        let ordinals: Vec<Ordinal> = match driver.map(|i| selections[i].lists.as_slice()) {
            Some([one]) => one.iter().copied().filter(keep).collect(),
            Some(many) => {
                let mut ordinals = union(many);
                ordinals.retain(keep);
                ordinals
            }
            None => (0..self.ids.len() as Ordinal).filter(keep).collect(),
        };
        let mut ids: Vec<SeriesId> = ordinals.iter().map(|&o| self.ids[o as usize]).collect();
        ids.sort_unstable();
        ids
    }
}

/// The live values of one label that can possibly match `m`: all of them, only those under
/// the regex's literal prefix when it has one, or only its literals when it is an alternation
/// of literals.
fn candidate_values(m: &LabelMatcher, values: &Dictionary) -> Vec<ValueIndex> {
    // `a|b|c` without an empty branch: the values selected (`=~`) or excluded (`!~`) are
    // exactly those literals, looked up one by one.
    if let Some(literals) = m.regex_literals()
        && !literals.iter().any(String::is_empty)
    {
        let mut found: Vec<ValueIndex> = literals
            .iter()
            .filter_map(|l| values.get(l.as_str()))
            .collect();
        found.sort_unstable();
        found.dedup();
        return found;
    }
    // A regex with a literal prefix cannot match "", so the values selected (`=~`) or
    // excluded (`!~`) are those it matches, all under the prefix.
    let prefix = m.regex_literal_prefix();
    if prefix.is_empty() {
        values.all().collect()
    } else {
        values.with_prefix(prefix).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(i: usize) -> Labels {
        Labels::new(
            "m",
            [
                ("instance", format!("host-{}", i / 10)),
                ("job", "j".to_owned()),
                ("series", format!("s{i}")),
            ],
        )
        .expect("valid")
    }

    /// Drops `series` as the index does (rebuilding when due); whether it was registered.
    fn drop(c: &mut Catalog, series: SeriesId) -> bool {
        let dropped = c.drop_series(series).is_some();
        c.rebuild_if_due().expect("rebuilds");
        dropped
    }

    #[test]
    fn drops_rebuild_the_catalog_and_keep_every_answer() {
        let mut c = Catalog::default();
        let n = 3 * REBUILD_MIN_DEAD;
        for i in 0..n {
            assert!(
                c.register(labels(i).series_id(), &labels(i))
                    .expect("registers")
            );
        }
        // Drop two in three: the catalog rebuilds once the dead outnumber the live.
        for i in (0..n).filter(|i| i % 3 != 0) {
            assert!(drop(&mut c, labels(i).series_id()));
        }
        assert!(
            c.dead_count < REBUILD_MIN_DEAD,
            "rebuilt: {} dead",
            c.dead_count
        );
        let job = c.find(&[LabelMatcher::equal("job", "j")]);
        let mut want: Vec<SeriesId> = (0..n).step_by(3).map(|i| labels(i).series_id()).collect();
        want.sort_unstable();
        assert_eq!(job, want);
        assert_eq!(
            c.labels(labels(3).series_id()).expect("decodes"),
            Some(labels(3))
        );
        assert_eq!(c.labels(labels(4).series_id()).expect("decodes"), None);
        assert_eq!(c.label_values("series").len(), want.len());
        // A dropped series registers again, under a new ordinal.
        assert!(
            c.register(labels(4).series_id(), &labels(4))
                .expect("registers")
        );
        assert_eq!(
            c.find(&[LabelMatcher::equal("series", "s4")]),
            vec![labels(4).series_id()]
        );
    }

    #[test]
    fn matches_a_model_through_registers_drops_and_rebuilds() {
        use std::collections::BTreeSet;
        let mut rng = tsdb_core::testkit::data::SplitMix64(5);
        let mut c = Catalog {
            rebuild_min_dead: 8,
            ..Catalog::default()
        };
        let mut live: BTreeSet<usize> = BTreeSet::new();
        let matchers = [
            vec![LabelMatcher::equal("job", "j")],
            vec![LabelMatcher::new("instance", MatchOp::RegexMatch, "host-1.*").expect("regex")],
            vec![LabelMatcher::not_equal("instance", "host-2")],
            vec![LabelMatcher::new("series", MatchOp::RegexNoMatch, "s1.*|s2").expect("regex")],
            vec![LabelMatcher::new("series", MatchOp::RegexMatch, "s3|s33|s4").expect("regex")],
            vec![LabelMatcher::equal("absent", "")],
            vec![],
        ];
        for step in 0..4_000 {
            let i = rng.below(300) as usize;
            if rng.below(2) == 0 {
                assert_eq!(
                    c.register(labels(i).series_id(), &labels(i))
                        .expect("registers"),
                    live.insert(i)
                );
            } else {
                assert_eq!(drop(&mut c, labels(i).series_id()), live.remove(&i));
            }
            if step % 50 != 0 {
                continue;
            }
            for m in &matchers {
                let mut want: Vec<SeriesId> = live
                    .iter()
                    .filter(|&&j| m.iter().all(|m| m.matches(labels(j).get(m.name()))))
                    .map(|&j| labels(j).series_id())
                    .collect();
                want.sort_unstable();
                assert_eq!(c.find(m), want, "step {step}, {m:?}");
            }
            let values: BTreeSet<String> =
                live.iter().map(|&j| format!("host-{}", j / 10)).collect();
            assert_eq!(
                c.label_values("instance"),
                values.into_iter().collect::<Vec<_>>()
            );
            let names: Vec<String> = if live.is_empty() {
                vec![]
            } else {
                ["__name__", "instance", "job", "series"]
                    .map(String::from)
                    .to_vec()
            };
            assert_eq!(c.label_names(), names);
        }
    }
}
