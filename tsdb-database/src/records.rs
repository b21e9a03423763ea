//! Encoding of the records the database writes to its logs: point batches in the WAL and
//! series registrations in the series catalog.
//!
//! Both logs checksum every record; these decoders still validate every length and never trust
//! a count, so a record that passes its checksum but was written by a buggy build gives a typed
//! error, not a panic.
//!
//! Point batch (WAL): `version: u8 = 1`, then sections until the end of the record:
//! - `tag = 1 | series_id: u64 LE | block_len: u32 LE | block`: the points of one series, where
//!   `block` is a Gorilla block (see the `tsdb-gorilla` README) in the order written;
//! - `tag = 2 | count: u32 LE | count x series_id: u64 LE | block_len: u32 LE | block`: one point
//!   each of `count` series (the usual shape of a scrape), the `i`-th point of the Gorilla
//!   `block` belonging to the `i`-th series. Timestamps of one scrape are close and values of
//!   similar series alike, so the block compresses them well.
//!
//! Series registration (catalog): `version: u8 = 1 | series_id: u64 LE | labels`, where
//! `labels` is `Labels::canonical_bytes`.

use tsdb_core::{Error, Labels, Result, SeriesId};

const VERSION: u8 = 1;
const TAG_SERIES: u8 = 1;
const TAG_SINGLES: u8 = 2;

/// One series' points of a batch, in the order written.
pub(crate) type SeriesPoints = (SeriesId, Vec<(i64, f64)>);

/// Encodes a point batch: groups of distinct series, each with its points in order.
pub(crate) fn encode_points(groups: &[(SeriesId, &[(i64, f64)])]) -> Vec<u8> {
    let total: usize = groups.iter().map(|g| g.1.len()).sum();
    let mut record = Vec::with_capacity(1 + total * 3 + groups.len() * 13);
    record.push(VERSION);
    let mut singles_ids = Vec::new();
    let mut singles = Vec::new();
    for &(series, points) in groups {
        if let [point] = points {
            singles_ids.push(series);
            singles.push(*point);
            continue;
        }
        let block = tsdb_gorilla::encode(points);
        record.push(TAG_SERIES);
        record.extend_from_slice(&series.0.to_le_bytes());
        record.extend_from_slice(&(block.len() as u32).to_le_bytes());
        record.extend_from_slice(&block);
    }
    if !singles.is_empty() {
        record.push(TAG_SINGLES);
        record.extend_from_slice(&(singles.len() as u32).to_le_bytes());
        for id in &singles_ids {
            record.extend_from_slice(&id.0.to_le_bytes());
        }
        let block = tsdb_gorilla::encode(&singles);
        record.extend_from_slice(&(block.len() as u32).to_le_bytes());
        record.extend_from_slice(&block);
    }
    record
}

/// Decodes a point-batch record into `(series, points)` groups.
pub(crate) fn decode_points(record: &[u8]) -> Result<Vec<SeriesPoints>> {
    let corrupt =
        |offset: usize, reason: &str| Error::corrupt("WAL point record", offset as u64, reason);
    let take = |at: usize, n: usize, what: &str| {
        record
            .get(at..at.saturating_add(n))
            .ok_or_else(|| corrupt(at, &format!("{what} cut short")))
    };
    let u64_at = |at: usize, what: &str| -> Result<u64> {
        let b = take(at, 8, what)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    };
    let u32_at = |at: usize, what: &str| -> Result<usize> {
        let b = take(at, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    match record.first() {
        Some(&VERSION) => {}
        Some(v) => return Err(corrupt(0, &format!("unknown record version {v}"))),
        None => return Err(corrupt(0, "empty record")),
    }
    let mut groups = Vec::new();
    let mut at = 1;
    while at < record.len() {
        match record[at] {
            TAG_SERIES => {
                let series = u64_at(at + 1, "series id")?;
                let len = u32_at(at + 9, "block length")?;
                let block = take(at + 13, len, "block")?;
                let points =
                    tsdb_gorilla::decode(block).map_err(|e| corrupt(at + 13, &e.to_string()))?;
                groups.push((SeriesId(series), points));
                at += 13 + len;
            }
            TAG_SINGLES => {
                let count = u32_at(at + 1, "series count")?;
                let ids_at = at + 5;
                let ids = take(ids_at, count.saturating_mul(8), "series ids")?;
                let len_at = ids_at + ids.len();
                let len = u32_at(len_at, "block length")?;
                let block = take(len_at + 4, len, "block")?;
                let points =
                    tsdb_gorilla::decode(block).map_err(|e| corrupt(len_at + 4, &e.to_string()))?;
                if points.len() != count {
                    return Err(corrupt(
                        len_at + 4,
                        "point count differs from the series count",
                    ));
                }
                for (id, point) in ids.chunks_exact(8).zip(points) {
                    let id = u64::from_le_bytes([
                        id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7],
                    ]);
                    groups.push((SeriesId(id), vec![point]));
                }
                at = len_at + 4 + len;
            }
            tag => return Err(corrupt(at, &format!("unknown section tag {tag}"))),
        }
    }
    Ok(groups)
}

/// Encodes a series registration.
pub(crate) fn encode_series(series: SeriesId, labels: &Labels) -> Vec<u8> {
    let canonical = labels.canonical_bytes();
    let mut record = Vec::with_capacity(9 + canonical.len());
    record.push(VERSION);
    record.extend_from_slice(&series.0.to_le_bytes());
    record.extend_from_slice(&canonical);
    record
}

/// Decodes a series registration.
pub(crate) fn decode_series(record: &[u8]) -> Result<(SeriesId, Labels)> {
    if record.first() != Some(&VERSION) {
        return Err(Error::corrupt(
            "series catalog record",
            0,
            "unknown version or empty record",
        ));
    }
    let id = record
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| Error::corrupt("series catalog record", 1, "series id cut short"))?;
    let labels = Labels::from_canonical_bytes(&record[9..])?;
    Ok((SeriesId(id), labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn point_records_round_trip(groups in proptest::collection::vec(
            (any::<u64>(), proptest::collection::vec((any::<i64>(), any::<u64>()), 0..40)), 0..8)
        ) {
            let floats: Vec<(SeriesId, Vec<(i64, f64)>)> = groups
                .iter()
                .map(|(s, pts)| (SeriesId(*s), pts.iter().map(|&(t, b)| (t, f64::from_bits(b))).collect()))
                .collect();
            let refs: Vec<(SeriesId, &[(i64, f64)])> = floats.iter().map(|(s, p)| (*s, p.as_slice())).collect();
            let record = encode_points(&refs);
            let mut back = decode_points(&record).expect("decodes");
            prop_assert_eq!(back.len(), groups.len());
            // Single-point groups move to the end of the record; compare as sets of groups.
            let mut want: Vec<(SeriesId, Vec<(i64, u64)>)> = groups
                .iter()
                .map(|(s, pts)| (SeriesId(*s), pts.clone()))
                .collect();
            let mut got: Vec<(SeriesId, Vec<(i64, u64)>)> = back
                .drain(..)
                .map(|(s, pts)| (s, pts.iter().map(|&(t, v)| (t, v.to_bits())).collect()))
                .collect();
            want.sort();
            got.sort();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_point_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_points(&bytes);
        }

        #[test]
        fn arbitrary_series_records_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode_series(&bytes);
        }
    }

    #[test]
    fn series_records_round_trip() {
        let labels = Labels::new("cpu", [("host", "a")]).expect("valid");
        let rec = encode_series(labels.series_id(), &labels);
        assert_eq!(
            decode_series(&rec).expect("decodes"),
            (labels.series_id(), labels)
        );
    }

    /// The WAL checksums whole records; still, a cut record decodes to an error or, when cut
    /// exactly between sections, to the sections before the cut, never to altered points.
    #[test]
    fn cut_records_are_corrupt_or_a_prefix() {
        let record = encode_points(&[
            (SeriesId(1), &[(1, 1.0), (2, 2.0)][..]),
            (SeriesId(2), &[(5, 5.0)][..]),
            (SeriesId(3), &[(6, 6.0)][..]),
        ]);
        let full = decode_points(&record).expect("decodes");
        assert_eq!(full.len(), 3);
        let mut prefixes = 0;
        for len in 0..record.len() {
            match decode_points(&record[..len]) {
                Err(Error::Corrupt { .. }) => {}
                Ok(groups) => {
                    assert_eq!(groups, full[..groups.len()], "len {len}");
                    prefixes += 1;
                }
                Err(other) => panic!("len {len}: {other:?}"),
            }
        }
        assert_eq!(
            prefixes, 2,
            "only the bare version byte and the first section end decode"
        );
    }
}
