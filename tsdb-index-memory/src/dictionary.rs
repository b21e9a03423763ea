//! The values of one label name: each text stored once, found by hash, listed in order.
//!
//! Sized for a label with a million distinct values (an `instance`, a request id): a value
//! costs its bytes plus about 25 (one arena, one 16-byte entry, one slot in a hash table of
//! indexes and one in the sorted order), where a B-tree of owned strings and postings sets
//! took over 100.

use std::cmp::Ordering;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

use crate::postings::{Lists, Ordinal, Postings};

/// The position of a value in its dictionary, stable until the catalog is rebuilt.
pub(crate) type ValueIndex = u32;

/// One value: where its text starts in the arena, how many live series have it, and which.
#[derive(Clone, Copy, Debug)]
struct Entry {
    start: u32,
    /// Live series with this value; 0 once they are all dropped (the entry stays until the
    /// catalog is rebuilt, and is invisible meanwhile).
    live: u32,
    postings: Postings,
}

/// Every value of one label name (see the module doc).
#[derive(Debug)]
pub(crate) struct Dictionary {
    /// Each value's text once, after its length as a LEB128 varint.
    arena: Vec<u8>,
    /// By [`ValueIndex`], in the order the values first came.
    entries: Vec<Entry>,
    lists: Lists,
    /// Value indexes, by the hash of their text (keyed at random: label values come from
    /// outside, and must not be able to pile up in one bucket).
    lookup: HashTable<ValueIndex>,
    hasher: RandomState,
    /// The first `sorted.len()` value indexes in text order; those after arrived since and
    /// are merged in once they are more than an eighth of the sorted ones.
    sorted: Vec<ValueIndex>,
}

impl Default for Dictionary {
    fn default() -> Self {
        Dictionary {
            arena: Vec::new(),
            entries: Vec::new(),
            lists: Lists::default(),
            lookup: HashTable::new(),
            hasher: RandomState::new(),
            sorted: Vec::new(),
        }
    }
}

/// Why a value could not be added: the arena's offsets are 32-bit.
#[derive(Debug)]
pub(crate) struct ArenaFull;

impl Dictionary {
    /// The text of value `i`.
    pub(crate) fn text(&self, i: ValueIndex) -> &str {
        text_at(&self.arena, self.entries[i as usize].start)
    }

    /// The value whose text is `text`, live or not.
    fn find(&self, text: &str) -> Option<ValueIndex> {
        let hash = self.hasher.hash_one(text);
        self.lookup.find(hash, |&i| self.text(i) == text).copied()
    }

    /// The live value whose text is `text`.
    pub(crate) fn get(&self, text: &str) -> Option<ValueIndex> {
        self.find(text).filter(|&i| self.is_live(i))
    }

    /// Whether a live series has value `i`.
    pub(crate) fn is_live(&self, i: ValueIndex) -> bool {
        self.entries[i as usize].live > 0
    }

    /// The ordinals of the series with value `i`, ascending (dropped ones included).
    pub(crate) fn postings(&self, i: ValueIndex) -> &[Ordinal] {
        self.lists.get(&self.entries[i as usize].postings)
    }

    /// Whether `text` can be added (the arena's offsets are 32-bit).
    pub(crate) fn fits(&self, text: &str) -> bool {
        self.find(text).is_some()
            || (self.arena.len() + text.len() + 10 <= u32::MAX as usize
                && self.entries.len() < u32::MAX as usize)
    }

    /// Records that series `ordinal` (larger than every ordinal added before) has value
    /// `text`; returns the value's index.
    pub(crate) fn insert(&mut self, text: &str, ordinal: Ordinal) -> Result<ValueIndex, ArenaFull> {
        if let Some(i) = self.find(text) {
            let e = &mut self.entries[i as usize];
            e.live += 1;
            self.lists.push(&mut e.postings, ordinal);
            return Ok(i);
        }
        let start = u32::try_from(self.arena.len()).map_err(|_| ArenaFull)?;
        let i = ValueIndex::try_from(self.entries.len()).map_err(|_| ArenaFull)?;
        if self.arena.len() + text.len() + 10 > u32::MAX as usize {
            return Err(ArenaFull);
        }
        write_varint(&mut self.arena, text.len());
        self.arena.extend_from_slice(text.as_bytes());
        self.entries.push(Entry {
            start,
            live: 1,
            postings: Postings::One(ordinal),
        });
        let hash = self.hasher.hash_one(text);
        let (arena, entries, hasher) = (&self.arena, &self.entries, &self.hasher);
        self.lookup.insert_unique(hash, i, |&j| {
            hasher.hash_one(text_at(arena, entries[j as usize].start))
        });
        if self.entries.len() - self.sorted.len() > (self.sorted.len() / 8).max(32) {
            self.merge_new();
        }
        Ok(i)
    }

    /// Records that one series with value `i` was dropped.
    pub(crate) fn release(&mut self, i: ValueIndex) {
        let e = &mut self.entries[i as usize];
        e.live = e.live.saturating_sub(1);
    }

    /// Merges the values that arrived since the last merge into the sorted order.
    fn merge_new(&mut self) {
        let mut new: Vec<ValueIndex> =
            (self.sorted.len() as u32..self.entries.len() as u32).collect();
        new.sort_unstable_by(|&a, &b| self.text(a).cmp(self.text(b)));
        let mut merged = Vec::with_capacity(self.entries.len());
        let (mut a, mut b) = (0, 0);
        while a < self.sorted.len() && b < new.len() {
            if self.text(self.sorted[a]) <= self.text(new[b]) {
                merged.push(self.sorted[a]);
                a += 1;
            } else {
                merged.push(new[b]);
                b += 1;
            }
        }
        merged.extend_from_slice(&self.sorted[a..]);
        merged.extend_from_slice(&new[b..]);
        self.sorted = merged;
    }

    /// The values that arrived since the last merge, in text order.
    fn new_sorted(&self) -> Vec<ValueIndex> {
        let mut new: Vec<ValueIndex> =
            (self.sorted.len() as u32..self.entries.len() as u32).collect();
        new.sort_unstable_by(|&a, &b| self.text(a).cmp(self.text(b)));
        new
    }

    /// Every live value, in text (byte) order.
    pub(crate) fn ordered(&self) -> impl Iterator<Item = ValueIndex> + '_ {
        let new = self.new_sorted();
        Merge {
            dict: self,
            a: self.sorted.iter().copied().peekable(),
            b: new.into_iter().peekable(),
        }
        .filter(|&i| self.is_live(i))
    }

    /// Every live value, in no particular order.
    pub(crate) fn all(&self) -> impl Iterator<Item = ValueIndex> + '_ {
        (0..self.entries.len() as u32).filter(|&i| self.is_live(i))
    }

    /// The live values starting with `prefix`, in no particular order.
    pub(crate) fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = ValueIndex> + 'a {
        let from = self.sorted.partition_point(|&i| self.text(i) < prefix);
        let sorted = self.sorted[from..]
            .iter()
            .copied()
            .take_while(move |&i| self.text(i).starts_with(prefix));
        let new = (self.sorted.len() as u32..self.entries.len() as u32)
            .filter(move |&i| self.text(i).starts_with(prefix));
        sorted.chain(new).filter(|&i| self.is_live(i))
    }
}

/// The text stored at `start` of `arena`.
fn text_at(arena: &[u8], start: u32) -> &str {
    let start = start as usize;
    let (len, skip) = read_varint(&arena[start..]);
    // Always valid: the bytes were copied from a `str` in `insert`.
    std::str::from_utf8(&arena[start + skip..start + skip + len]).unwrap_or_default()
}

/// Two ascending runs of value indexes merged by text.
struct Merge<'a, A: Iterator<Item = ValueIndex>, B: Iterator<Item = ValueIndex>> {
    dict: &'a Dictionary,
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<A: Iterator<Item = ValueIndex>, B: Iterator<Item = ValueIndex>> Iterator for Merge<'_, A, B> {
    type Item = ValueIndex;

    fn next(&mut self) -> Option<ValueIndex> {
        match (self.a.peek(), self.b.peek()) {
            (Some(&x), Some(&y)) => match self.dict.text(x).cmp(self.dict.text(y)) {
                Ordering::Greater => self.b.next(),
                _ => self.a.next(),
            },
            (Some(_), None) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

fn write_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// The number at the start of `bytes` and how many bytes it took.
fn read_varint(bytes: &[u8]) -> (usize, usize) {
    let mut n = 0usize;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        n |= usize::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return (n, i + 1);
        }
    }
    (n, bytes.len().min(5))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_as_a_sorted_map_of_values_to_ordinals() {
        let mut rng = tsdb_core::testkit::data::SplitMix64(11);
        let mut d = Dictionary::default();
        let mut model: BTreeMap<String, (u32, Vec<Ordinal>)> = BTreeMap::new();
        let long = "x".repeat(300);
        for ordinal in 0..3_000u32 {
            let text = match rng.below(4) {
                0 => format!("v{}", rng.below(50)),
                1 => format!("{long}{}", rng.below(5)),
                2 => String::new(),
                _ => format!("u{ordinal}é"),
            };
            let i = d.insert(&text, ordinal).expect("room");
            assert_eq!(d.text(i), text);
            let m = model.entry(text.clone()).or_default();
            m.0 += 1;
            m.1.push(ordinal);
            if rng.below(5) == 0 {
                d.release(i);
                m.0 -= 1;
            }
            if ordinal % 97 == 0 {
                let live: Vec<&str> = model
                    .iter()
                    .filter(|(_, (n, _))| *n > 0)
                    .map(|(k, _)| k.as_str())
                    .collect();
                let got: Vec<&str> = d.ordered().map(|i| d.text(i)).collect();
                assert_eq!(got, live, "ordered at {ordinal}");
                let mut prefixed: Vec<&str> = d.with_prefix("v1").map(|i| d.text(i)).collect();
                prefixed.sort_unstable();
                let want: Vec<&str> = live
                    .iter()
                    .copied()
                    .filter(|t| t.starts_with("v1"))
                    .collect();
                assert_eq!(prefixed, want);
                assert_eq!(d.all().count(), live.len());
            }
        }
        for (text, (live, ordinals)) in &model {
            let i = d.find(text).expect("every value is found");
            assert_eq!(d.postings(i), ordinals.as_slice(), "{text}");
            assert_eq!(d.get(text).is_some(), *live > 0);
        }
        assert_eq!(d.get("absent"), None);
    }

    #[test]
    fn varints_round_trip() {
        for n in [
            0usize,
            1,
            127,
            128,
            300,
            16_383,
            16_384,
            1 << 20,
            u32::MAX as usize,
        ] {
            let mut out = Vec::new();
            write_varint(&mut out, n);
            assert_eq!(read_varint(&out), (n, out.len()));
        }
    }
}
