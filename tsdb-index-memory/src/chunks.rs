//! The chunk references of one series, sorted for interval queries.

use std::collections::HashSet;

use tsdb_core::{ChunkLocation, ChunkReference, CodecId, SeriesId, TimeRange};

/// One chunk reference without its series id (the series owns the list), with the largest
/// end among the chunks up to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    start: i64,
    end: i64,
    /// The largest `end` of this entry and every one before it: chunks before the first
    /// entry with `max_end >= t` all end before `t`.
    max_end: i64,
    location: ChunkLocation,
    point_count: u32,
    codec: CodecId,
}

impl Entry {
    fn key(&self) -> (i64, i64, ChunkLocation) {
        (self.start, self.end, self.location)
    }

    /// `c` as the only entry so far (its own end the largest).
    fn of(c: &ChunkReference) -> Self {
        Entry {
            start: c.start_time,
            end: c.end_time,
            max_end: c.end_time,
            location: c.location,
            point_count: c.point_count,
            codec: c.codec,
        }
    }

    fn reference(&self, series: SeriesId) -> ChunkReference {
        ChunkReference {
            series_id: series,
            location: self.location,
            start_time: self.start,
            end_time: self.end,
            point_count: self.point_count,
            codec: self.codec,
        }
    }
}

/// The chunks of a series, in its slot of the index (a million series of one chunk each,
/// as a one-off import or a target scraped once leaves them, are 40 MB of slots): none; its
/// only chunk, inline, when its segment number and length fit 32 bits (as every engine's
/// here do); or, from the second chunk on (or a first one that does not fit), a box of
/// them sorted.
#[derive(Debug, Default)]
pub(crate) enum SeriesChunks {
    #[default]
    None,
    /// The series' only chunk: an [`Entry`] without `max_end` (its own end), and with its
    /// segment and length in 32 bits.
    One {
        start: i64,
        end: i64,
        offset: u64,
        segment: u32,
        length: u32,
        point_count: u32,
        codec: CodecId,
    },
    Many(Box<Sorted>),
}

impl SeriesChunks {
    /// `c` as a lone chunk, when its location fits.
    fn one(c: &ChunkReference) -> Option<SeriesChunks> {
        Some(SeriesChunks::One {
            start: c.start_time,
            end: c.end_time,
            offset: c.location.offset,
            segment: u32::try_from(c.location.segment).ok()?,
            length: u32::try_from(c.location.length).ok()?,
            point_count: c.point_count,
            codec: c.codec,
        })
    }

    /// The lone chunk, as an entry of a list.
    fn lone(&self) -> Option<Entry> {
        match *self {
            SeriesChunks::One {
                start,
                end,
                offset,
                segment,
                length,
                point_count,
                codec,
            } => Some(Entry {
                start,
                end,
                max_end: end,
                location: ChunkLocation {
                    segment: u64::from(segment),
                    offset,
                    length: u64::from(length),
                },
                point_count,
                codec,
            }),
            _ => None,
        }
    }

    /// Adds a chunk; false (and no change) when its location is already present.
    pub(crate) fn add(&mut self, c: &ChunkReference) -> bool {
        if let SeriesChunks::Many(sorted) = self {
            return sorted.add(Entry::of(c));
        }
        let mut sorted = Box::<Sorted>::default();
        if let Some(first) = self.lone() {
            if first.location == c.location {
                return false;
            }
            sorted.add(first);
        } else if let Some(one) = Self::one(c) {
            *self = one;
            return true;
        }
        sorted.add(Entry::of(c));
        *self = SeriesChunks::Many(sorted);
        true
    }

    /// The chunks overlapping `range` (`range.start <= range.end`), in order.
    pub(crate) fn query(&self, series: SeriesId, range: TimeRange) -> Vec<ChunkReference> {
        match self {
            SeriesChunks::None => Vec::new(),
            SeriesChunks::One { start, end, .. } => {
                if *start <= range.end && *end >= range.start {
                    self.lone()
                        .map(|e| e.reference(series))
                        .into_iter()
                        .collect()
                } else {
                    Vec::new()
                }
            }
            SeriesChunks::Many(sorted) => sorted.query(series, range),
        }
    }

    /// Removes the chunks at `locations`; absent ones are ignored.
    pub(crate) fn remove(&mut self, locations: &[ChunkLocation]) {
        let empty = match self {
            SeriesChunks::None => false,
            SeriesChunks::One { .. } => {
                self.lone().is_some_and(|e| locations.contains(&e.location))
            }
            SeriesChunks::Many(sorted) => {
                sorted.remove(locations);
                sorted.entries.is_empty()
            }
        };
        if empty {
            *self = SeriesChunks::None;
        }
    }

    /// The entries, in order.
    #[cfg(test)]
    fn entries(&self) -> Vec<Entry> {
        match self {
            SeriesChunks::None => Vec::new(),
            SeriesChunks::One { .. } => self.lone().into_iter().collect(),
            SeriesChunks::Many(sorted) => sorted.entries.clone(),
        }
    }

    /// Number of chunks.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }
}

/// Up to this many chunks a series' locations are checked by a scan; beyond it a hash set
/// finds duplicates.
const SCAN: usize = 32;

/// Chunks sorted by `(start, end, location)`; the set of their locations once there are more
/// than [`SCAN`].
#[derive(Debug, Default)]
pub(crate) struct Sorted {
    entries: Vec<Entry>,
    // Boxed: 8 bytes in every series' list instead of 48, and most lists never have the set.
    #[allow(clippy::box_collection)]
    locations: Option<Box<HashSet<ChunkLocation>>>,
}

impl Sorted {
    fn contains(&self, location: &ChunkLocation) -> bool {
        match &self.locations {
            Some(set) => set.contains(location),
            None => self.entries.iter().any(|e| e.location == *location),
        }
    }

    /// Adds an entry; false (and no change) when its location is already present.
    fn add(&mut self, e: Entry) -> bool {
        if self.contains(&e.location) {
            return false;
        }
        // Most series have a chunk or two: no room reserved for more until there are more.
        if self.entries.len() < 4 {
            self.entries.reserve_exact(1);
        }
        match self.entries.last() {
            // The common case: chunks arrive in time order.
            Some(last) if last.key() > e.key() => {
                let at = self.entries.partition_point(|x| x.key() < e.key());
                self.entries.insert(at, e);
                self.recompute_max_end(at);
            }
            last => {
                let prev = last.map_or(i64::MIN, |l| l.max_end);
                self.entries.push(Entry {
                    max_end: prev.max(e.end),
                    ..e
                });
            }
        }
        match &mut self.locations {
            Some(set) => {
                set.insert(e.location);
            }
            None if self.entries.len() > SCAN => {
                self.locations = Some(Box::new(self.entries.iter().map(|e| e.location).collect()));
            }
            None => {}
        }
        true
    }

    fn recompute_max_end(&mut self, from: usize) {
        let mut running = if from == 0 {
            i64::MIN
        } else {
            self.entries[from - 1].max_end
        };
        for e in &mut self.entries[from..] {
            running = running.max(e.end);
            e.max_end = running;
        }
    }

    fn query(&self, series: SeriesId, range: TimeRange) -> Vec<ChunkReference> {
        let hi = self.entries.partition_point(|e| e.start <= range.end);
        let lo = self.entries[..hi].partition_point(|e| e.max_end < range.start);
        self.entries[lo..hi]
            .iter()
            .filter(|e| e.end >= range.start)
            .map(|e| e.reference(series))
            .collect()
    }

    fn remove(&mut self, locations: &[ChunkLocation]) {
        let gone: HashSet<ChunkLocation> = locations
            .iter()
            .filter(|l| self.contains(l))
            .copied()
            .collect();
        if gone.is_empty() {
            return;
        }
        if let Some(set) = &mut self.locations {
            set.retain(|l| !gone.contains(l));
        }
        let first = self
            .entries
            .iter()
            .position(|e| gone.contains(&e.location))
            .unwrap_or(self.entries.len());
        self.entries.retain(|e| !gone.contains(&e.location));
        self.recompute_max_end(first.min(self.entries.len()));
        if self.entries.len() <= SCAN / 2 {
            self.locations = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(start: i64, end: i64, off: u64) -> ChunkReference {
        ChunkReference {
            series_id: SeriesId(1),
            location: ChunkLocation {
                segment: 0,
                offset: off,
                length: 1,
            },
            start_time: start,
            end_time: end,
            point_count: 1,
            codec: CodecId::GORILLA,
        }
    }

    fn brute(all: &[ChunkReference], range: TimeRange) -> Vec<ChunkReference> {
        let mut v: Vec<ChunkReference> = all
            .iter()
            .filter(|c| c.time_range().overlaps(&range))
            .copied()
            .collect();
        v.sort_by_key(|c| (c.start_time, c.end_time, c.location));
        v
    }

    #[test]
    fn a_lone_chunk_answers_like_a_list() {
        let mut s = SeriesChunks::default();
        let a = chunk(10, 20, 1);
        assert!(s.add(&a));
        assert!(matches!(s, SeriesChunks::One { .. }));
        assert!(!s.add(&ChunkReference { start_time: 0, ..a }));
        for (start, end) in [(0, 9), (0, 10), (20, 30), (21, 30), (12, 13), (0, 100)] {
            let range = TimeRange { start, end };
            assert_eq!(s.query(SeriesId(1), range), brute(&[a], range), "{range:?}");
        }
        s.remove(&[chunk(0, 0, 2).location]);
        assert_eq!(s.len(), 1);
        s.remove(&[a.location]);
        assert_eq!(s.len(), 0);
        assert!(matches!(s, SeriesChunks::None));
        // A second chunk makes a list, earlier ones first.
        let b = chunk(0, 5, 3);
        assert!(s.add(&a) && s.add(&b));
        let all = TimeRange { start: 0, end: 100 };
        assert_eq!(s.query(SeriesId(1), all), vec![b, a]);
        assert!(matches!(s, SeriesChunks::Many(_)));
        assert_eq!(std::mem::size_of::<SeriesChunks>(), 40);
        s.remove(&[a.location, b.location]);
        assert!(matches!(s, SeriesChunks::None));
    }

    #[test]
    fn a_first_chunk_whose_location_does_not_fit_32_bits_starts_a_list() {
        for location in [
            ChunkLocation {
                segment: 1 << 32,
                offset: 5,
                length: 1,
            },
            ChunkLocation {
                segment: 3,
                offset: 1 << 50,
                length: u64::from(u32::MAX) + 1,
            },
        ] {
            let mut s = SeriesChunks::default();
            let a = ChunkReference {
                location,
                ..chunk(10, 20, 0)
            };
            assert!(s.add(&a));
            assert!(matches!(s, SeriesChunks::Many(_)));
            assert!(!s.add(&a));
            let all = TimeRange { start: 0, end: 100 };
            assert_eq!(s.query(SeriesId(1), all), vec![a]);
            let b = chunk(0, 5, 3);
            assert!(s.add(&b));
            assert_eq!(s.query(SeriesId(1), all), vec![b, a]);
            s.remove(&[location, b.location]);
            assert!(matches!(s, SeriesChunks::None));
        }
        // One that fits keeps every field.
        let mut s = SeriesChunks::default();
        let c = ChunkReference {
            location: ChunkLocation {
                segment: u64::from(u32::MAX),
                offset: u64::MAX,
                length: u64::from(u32::MAX),
            },
            point_count: u32::MAX,
            codec: CodecId(9),
            ..chunk(i64::MIN, i64::MAX, 0)
        };
        assert!(s.add(&c));
        assert!(matches!(s, SeriesChunks::One { .. }));
        let all = TimeRange {
            start: i64::MIN,
            end: i64::MAX,
        };
        assert_eq!(s.query(SeriesId(1), all), vec![c]);
    }

    #[test]
    fn max_end_stays_consistent_through_inserts_and_removals() {
        let mut rng = tsdb_core::testkit::data::SplitMix64(9);
        let mut s = SeriesChunks::default();
        let mut all: Vec<ChunkReference> = Vec::new();
        for i in 0..400u64 {
            let start = rng.below(1000) as i64;
            let c = chunk(start, start + rng.below(80) as i64, i);
            assert!(s.add(&c));
            all.push(c);
            // A location already present is a no-op, whatever the other fields say.
            let again = all[rng.below(all.len() as u64) as usize];
            assert!(!s.add(&ChunkReference {
                start_time: again.start_time - 5,
                ..again
            }));
            if i % 7 == 0 {
                let victim = all.remove(rng.below(all.len() as u64) as usize);
                s.remove(&[victim.location]);
            }
            let a = rng.below(1100) as i64;
            let range = TimeRange {
                start: a,
                end: a + rng.below(50) as i64,
            };
            assert_eq!(s.query(SeriesId(1), range), brute(&all, range), "step {i}");
            let mut running = i64::MIN;
            for e in s.entries() {
                running = running.max(e.end);
                assert_eq!(e.max_end, running, "max_end must be the running maximum");
            }
        }
        assert_eq!(s.len(), all.len());
    }
}
