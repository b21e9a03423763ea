//! A set of series ids, ascending: one id inline, a sorted vector while small, a B-tree once
//! large.

use std::collections::BTreeSet;

use tsdb_core::SeriesId;

/// Above this many ids a postings list becomes a B-tree (inserts stay `O(log n)`); below it a
/// sorted vector is smaller and faster to scan. Most label pairs (one per `instance`, say)
/// hold a handful of series.
const SMALL: usize = 64;

/// Ascending series ids without duplicates.
#[derive(Debug, Clone)]
pub(crate) enum Postings {
    /// A label value only one series has (an `instance`, a `series` id): most of them, at
    /// high cardinality, so no allocation for it.
    One(SeriesId),
    Small(Vec<SeriesId>),
    Large(BTreeSet<SeriesId>),
}

impl Default for Postings {
    fn default() -> Self {
        Postings::Small(Vec::new())
    }
}

impl Postings {
    pub(crate) fn insert(&mut self, id: SeriesId) {
        match self {
            Postings::Small(v) if v.is_empty() => *self = Postings::One(id),
            Postings::One(x) if *x == id => {}
            Postings::One(x) => {
                let (a, b) = if *x < id { (*x, id) } else { (id, *x) };
                *self = Postings::Small(vec![a, b]);
            }
            Postings::Small(v) => {
                if let Err(at) = v.binary_search(&id) {
                    if v.len() < SMALL {
                        v.insert(at, id);
                    } else {
                        let mut set: BTreeSet<SeriesId> = v.drain(..).collect();
                        set.insert(id);
                        *self = Postings::Large(set);
                    }
                }
            }
            Postings::Large(s) => {
                s.insert(id);
            }
        }
    }

    pub(crate) fn remove(&mut self, id: &SeriesId) {
        match self {
            Postings::One(x) if x == id => *self = Postings::Small(Vec::new()),
            Postings::One(_) => {}
            Postings::Small(v) => {
                if let Ok(at) = v.binary_search(id) {
                    v.remove(at);
                }
            }
            Postings::Large(s) => {
                s.remove(id);
                if s.len() < SMALL / 2 {
                    *self = Postings::Small(s.iter().copied().collect());
                }
            }
        }
    }

    pub(crate) fn contains(&self, id: &SeriesId) -> bool {
        match self {
            Postings::One(x) => x == id,
            Postings::Small(v) => v.binary_search(id).is_ok(),
            Postings::Large(s) => s.contains(id),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Postings::One(_) => 1,
            Postings::Small(v) => v.len(),
            Postings::Large(s) => s.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids, ascending.
    pub(crate) fn iter(&self) -> Box<dyn Iterator<Item = SeriesId> + '_> {
        match self {
            Postings::One(x) => Box::new(std::iter::once(*x)),
            Postings::Small(v) => Box::new(v.iter().copied()),
            Postings::Large(s) => Box::new(s.iter().copied()),
        }
    }

    /// Appends the ids to `out`.
    pub(crate) fn extend_into(&self, out: &mut Vec<SeriesId>) {
        match self {
            Postings::One(x) => out.push(*x),
            Postings::Small(v) => out.extend_from_slice(v),
            Postings::Large(s) => out.extend(s.iter().copied()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_a_set_across_both_representations() {
        let mut rng = tsdb_core::testkit::data::SplitMix64(3);
        let mut p = Postings::default();
        let mut model = BTreeSet::new();
        for step in 0..5_000 {
            let id = SeriesId(rng.below(200));
            if rng.below(3) == 0 {
                p.remove(&id);
                model.remove(&id);
            } else {
                p.insert(id);
                model.insert(id);
            }
            assert_eq!(p.len(), model.len(), "step {step}");
            assert!(p.iter().eq(model.iter().copied()), "step {step}");
            let probe = SeriesId(rng.below(200));
            assert_eq!(p.contains(&probe), model.contains(&probe));
        }
        let mut out = Vec::new();
        p.extend_into(&mut out);
        assert!(out.iter().copied().eq(model.iter().copied()));
    }
}
