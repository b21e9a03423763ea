//! One series' head buffer: the newest points, kept Gorilla-compressed until sealed.

use tsdb_core::{Result, SeriesId};
use tsdb_gorilla::Encoder;

/// Points of one series not yet in a chunk.
///
/// Points newer than the last one go into a streaming Gorilla encoder (about a byte per point
/// for regular metrics). A point at or before the last timestamp (late, or a duplicate) goes
/// to a small side list; sealing merges the two, later writes winning on equal timestamps.
#[derive(Debug)]
pub(crate) struct Head {
    encoded: Encoder,
    /// The late points in arrival order; boxed, as almost every head has none (8 bytes per
    /// head instead of an empty `Vec`'s 24).
    #[allow(clippy::box_collection)]
    late: Option<Box<Vec<(i64, f64)>>>,
    /// Smallest WAL position of any point held: the WAL must be kept from there on.
    pub(crate) first_lsn: u64,
    /// When the first point arrived, for age-based sealing: nanoseconds on the clock of the
    /// [`super::Heads`] holding the head.
    pub(crate) opened: u64,
}

impl Head {
    /// An empty head for points from WAL position `lsn` on, opened at `opened` (see
    /// [`Head::opened`]).
    pub(crate) fn new(lsn: u64, opened: u64) -> Self {
        Head {
            // No buffer until a second point comes (a head of one point is common: the
            // first scrape of a target, an import of the latest values).
            encoded: Encoder::new(),
            late: None,
            first_lsn: lsn,
            opened,
        }
    }

    pub(crate) fn push(&mut self, lsn: u64, timestamp: i64, value: f64) {
        self.first_lsn = self.first_lsn.min(lsn);
        match self.encoded.last() {
            Some((last, _)) if timestamp <= last => self
                .late
                .get_or_insert_with(Box::default)
                .push((timestamp, value)),
            _ => self.encoded.append(timestamp, value),
        }
    }

    /// The late points, in arrival order.
    fn late(&self) -> &[(i64, f64)] {
        self.late.as_deref().map_or(&[], Vec::as_slice)
    }

    /// Points held, late ones included (a duplicate counts until sealing merges it away).
    pub(crate) fn len(&self) -> usize {
        self.encoded.point_count() as usize + self.late().len()
    }

    /// Approximate heap bytes used (besides the head itself).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.encoded.capacity()
            + self.late.as_ref().map_or(0, |late| {
                std::mem::size_of::<Vec<(i64, f64)>>()
                    + late.capacity() * std::mem::size_of::<(i64, f64)>()
            })
    }

    /// The points in time order, one per timestamp (the last written wins).
    pub(crate) fn points(&self) -> Result<(Vec<i64>, Vec<f64>)> {
        let (mut ts, mut vs) = tsdb_gorilla::decode_to_vecs(&self.encoded.snapshot())?;
        if !self.late().is_empty() {
            merge_late(&mut ts, &mut vs, self.late());
        }
        Ok((ts, vs))
    }

    /// The point of a head holding exactly one (no late point).
    pub(crate) fn only_point(&self) -> Option<(i64, f64)> {
        if self.encoded.point_count() == 1 && self.late.is_none() {
            self.encoded.last()
        } else {
            None
        }
    }

    /// The first point's timestamp (the smallest of the in-order points).
    pub(crate) fn first_timestamp(&self) -> Option<i64> {
        self.encoded.time_range().map(|(first, _)| first)
    }

    /// Smallest and largest timestamp of the in-order points (all points when there are no
    /// late ones).
    pub(crate) fn time_range(&self) -> Option<(i64, i64)> {
        self.encoded.time_range()
    }

    /// Smallest timestamp of every point held, late ones included.
    pub(crate) fn oldest(&self) -> Option<i64> {
        let late = self.late().iter().map(|p| p.0).min();
        match (self.encoded.time_range().map(|r| r.0), late) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The Gorilla block of the head when it needs no merging (no late points), else `None`.
    pub(crate) fn clean_block(&self) -> Option<Vec<u8>> {
        self.late().is_empty().then(|| self.encoded.snapshot())
    }
}

/// Merges `late` (in arrival order) into the sorted columns; on equal timestamps the later
/// write wins, and late points are later than every encoded point.
fn merge_late(ts: &mut Vec<i64>, vs: &mut Vec<f64>, late: &[(i64, f64)]) {
    let mut all: Vec<(i64, usize, f64)> = ts
        .iter()
        .zip(vs.iter())
        .chain(late.iter().map(|(t, v)| (t, v)))
        .enumerate()
        .map(|(order, (&t, &v))| (t, order, v))
        .collect();
    all.sort_unstable_by_key(|&(t, order, _)| (t, order));
    ts.clear();
    vs.clear();
    for (i, &(t, _, v)) in all.iter().enumerate() {
        if all.get(i + 1).is_some_and(|next| next.0 == t) {
            continue; // a later write of the same timestamp follows
        }
        ts.push(t);
        vs.push(v);
    }
}

/// A head taken out of its series to be written as a chunk; queries still see it until the
/// chunk is in the index.
#[derive(Debug)]
pub(crate) struct Sealed {
    pub(crate) series: SeriesId,
    pub(crate) head: Head,
    /// Where storage put the chunk, once it did: a retry after the index failed indexes it
    /// instead of storing it again.
    pub(crate) stored: std::sync::Mutex<Option<tsdb_core::ChunkLocation>>,
}

impl Sealed {
    pub(crate) fn new(series: SeriesId, head: Head) -> Self {
        Sealed {
            series,
            head,
            stored: std::sync::Mutex::new(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_points_merge_with_last_write_winning() {
        let mut h = Head::new(5, 0);
        h.push(5, 10, 1.0);
        h.push(6, 20, 2.0);
        h.push(7, 30, 3.0);
        h.push(8, 20, 22.0); // duplicate: overwrite
        h.push(9, 15, 1.5); // late
        h.push(10, 15, 1.75); // late duplicate of a late point
        h.push(3, 40, 4.0); // in order, replayed from an older LSN
        assert_eq!(h.first_lsn, 3);
        assert_eq!(h.len(), 7);
        let (ts, vs) = h.points().expect("decodes");
        assert_eq!(ts, vec![10, 15, 20, 30, 40]);
        assert_eq!(vs, vec![1.0, 1.75, 22.0, 3.0, 4.0]);
        assert!(h.clean_block().is_none());
    }

    #[test]
    fn in_order_head_is_one_clean_block() {
        let mut h = Head::new(1, 0);
        for i in 0..100 {
            h.push(1, i * 10, i as f64);
        }
        let block = h.clean_block().expect("no late points");
        assert_eq!(tsdb_gorilla::decode(&block).expect("decodes").len(), 100);
    }
}
