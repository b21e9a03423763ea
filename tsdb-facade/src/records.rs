//! Encoding of the records the database writes to its logs: point batches in the WAL and
//! series registrations in the series catalog.
//!
//! Both logs checksum every record; these decoders still validate every length and never trust
//! a count, so a record that passes its checksum but was written by a buggy build gives a typed
//! error, not a panic.
//!
//! Point batch (WAL): `version: u8 = 1`, then groups until the end of the record, each
//! `series_id: u64 LE | block_len: u32 LE | block: [u8; block_len]` where `block` is a Gorilla
//! block (see the `tsdb-gorilla` README) of that series' points, in the order written. A group
//! of a single point (the common case of one scrape of many series) is written raw instead:
//! `block_len = 0`, then `timestamp: i64 LE | value bits: u64 LE`.
//!
//! Series registration (catalog): `version: u8 = 1 | series_id: u64 LE | labels`, where
//! `labels` is `Labels::canonical_bytes`.

use tsdb_core::{Error, Labels, Result, SeriesId};

const VERSION: u8 = 1;

/// One series' points of a batch, in the order written.
pub(crate) type SeriesPoints = (SeriesId, Vec<(i64, f64)>);

/// Appends a group of one series' points to a point-batch record (started with
/// [`begin_points`]).
pub(crate) fn push_group(record: &mut Vec<u8>, series: SeriesId, points: &[(i64, f64)]) {
    record.extend_from_slice(&series.0.to_le_bytes());
    if let [(t, v)] = points {
        record.extend_from_slice(&0u32.to_le_bytes());
        record.extend_from_slice(&t.to_le_bytes());
        record.extend_from_slice(&v.to_bits().to_le_bytes());
        return;
    }
    let block = tsdb_gorilla::encode(points);
    record.extend_from_slice(&(block.len() as u32).to_le_bytes());
    record.extend_from_slice(&block);
}

/// Starts a point-batch record.
pub(crate) fn begin_points(capacity: usize) -> Vec<u8> {
    let mut record = Vec::with_capacity(capacity + 1);
    record.push(VERSION);
    record
}

/// Decodes a point-batch record into `(series, points)` groups.
pub(crate) fn decode_points(record: &[u8]) -> Result<Vec<SeriesPoints>> {
    let corrupt =
        |offset: usize, reason: &str| Error::corrupt("WAL point record", offset as u64, reason);
    match record.first() {
        Some(&VERSION) => {}
        Some(v) => return Err(corrupt(0, &format!("unknown record version {v}"))),
        None => return Err(corrupt(0, "empty record")),
    }
    let mut groups = Vec::new();
    let mut at = 1;
    while at < record.len() {
        let header = record
            .get(at..at + 12)
            .ok_or_else(|| corrupt(at, "group header cut short"))?;
        let series = u64::from_le_bytes(
            header[..8]
                .try_into()
                .map_err(|_| corrupt(at, "series id"))?,
        );
        let len = u32::from_le_bytes(
            header[8..]
                .try_into()
                .map_err(|_| corrupt(at, "block length"))?,
        ) as usize;
        if len == 0 {
            let raw = record
                .get(at + 12..at + 28)
                .ok_or_else(|| corrupt(at + 12, "raw point cut short"))?;
            let (t, v) = raw.split_at(8);
            let t = i64::from_le_bytes(t.try_into().map_err(|_| corrupt(at + 12, "timestamp"))?);
            let v = u64::from_le_bytes(v.try_into().map_err(|_| corrupt(at + 20, "value"))?);
            groups.push((SeriesId(series), vec![(t, f64::from_bits(v))]));
            at += 28;
            continue;
        }
        let block = record
            .get(at + 12..at + 12 + len)
            .ok_or_else(|| corrupt(at, "block longer than the record"))?;
        let points = tsdb_gorilla::decode(block).map_err(|e| corrupt(at + 12, &e.to_string()))?;
        groups.push((SeriesId(series), points));
        at += 12 + len;
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
            let mut record = begin_points(0);
            for (s, pts) in &groups {
                let pts: Vec<(i64, f64)> = pts.iter().map(|&(t, b)| (t, f64::from_bits(b))).collect();
                push_group(&mut record, SeriesId(*s), &pts);
            }
            let back = decode_points(&record).expect("decodes");
            prop_assert_eq!(back.len(), groups.len());
            for ((s, pts), (bs, bpts)) in groups.iter().zip(&back) {
                prop_assert_eq!(SeriesId(*s), *bs);
                let bits: Vec<(i64, u64)> = bpts.iter().map(|&(t, v)| (t, v.to_bits())).collect();
                prop_assert_eq!(pts, &bits);
            }
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

    #[test]
    fn cut_records_are_corrupt() {
        let mut record = begin_points(0);
        push_group(&mut record, SeriesId(1), &[(1, 1.0), (2, 2.0)]);
        for len in 0..record.len() {
            if len == 1 {
                continue; // a bare version byte is a valid empty batch
            }
            assert!(
                matches!(decode_points(&record[..len]), Err(Error::Corrupt { .. })),
                "len {len}"
            );
        }
    }
}
