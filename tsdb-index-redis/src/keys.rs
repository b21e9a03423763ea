//! Key names and the exact, order-preserving encoding of chunk entries.
//!
//! Layout under prefix `P` (series id `S` as 16 lowercase hex digits):
//!
//! | key | type | holds |
//! | --- | --- | --- |
//! | `{P}:epoch` | string | the epoch token (see [`crate::epoch`]) |
//! | `{P}:series` | sorted set, scores 0 | every series id, 8 bytes big-endian |
//! | `{P}:names` | sorted set, scores 0 | every label name in use |
//! | `{P}:values:<name>` | sorted set, scores 0 | every value of label `<name>` in use |
//! | `{P}:postings:<name>\xFF<value>` | sorted set, scores 0 | ids of the series with that pair |
//! | `{P:S}:labels` | string | the series' [`Labels::canonical_bytes`](tsdb_core::Labels::canonical_bytes) |
//! | `{P:S}:chunks` | sorted set, scores 0 | one [`ChunkEntry`] member per chunk |
//! | `{P:S}:locations` | hash | 24-byte location -> its chunk member (duplicates, removal) |
//! | `{P:S}:maxdur` | sorted set, scores 0 | one member: the largest `end - start` seen, 8 bytes |
//!
//! All members of a sorted set have score 0, so Redis orders them by bytes (`memcmp`), and
//! range reads use `ZRANGEBYLEX`: no timestamp ever goes through an `f64` score.

use tsdb_core::{ChunkLocation, ChunkReference, CodecId, Error, Result, SeriesId};

/// Bytes of an encoded chunk entry.
pub(crate) const ENTRY_LEN: usize = 8 + 8 + 24 + 4 + 2;

/// Key names of one index (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    fn global(&self, rest: &[u8]) -> Vec<u8> {
        let mut k = format!("{{{}}}:", self.prefix).into_bytes();
        k.extend_from_slice(rest);
        k
    }

    pub(crate) fn epoch(&self) -> Vec<u8> {
        self.global(b"epoch")
    }

    pub(crate) fn all_series(&self) -> Vec<u8> {
        self.global(b"series")
    }

    pub(crate) fn names(&self) -> Vec<u8> {
        self.global(b"names")
    }

    pub(crate) fn values(&self, name: &str) -> Vec<u8> {
        self.global(format!("values:{name}").as_bytes())
    }

    pub(crate) fn postings(&self, name: &str, value: &str) -> Vec<u8> {
        let mut rest = format!("postings:{name}").into_bytes();
        rest.push(0xFF);
        rest.extend_from_slice(value.as_bytes());
        self.global(&rest)
    }

    fn series(&self, series: SeriesId, what: &str) -> String {
        format!("{{{}:{series}}}:{what}", self.prefix)
    }

    pub(crate) fn labels(&self, series: SeriesId) -> String {
        self.series(series, "labels")
    }

    pub(crate) fn chunks(&self, series: SeriesId) -> String {
        self.series(series, "chunks")
    }

    pub(crate) fn locations(&self, series: SeriesId) -> String {
        self.series(series, "locations")
    }

    pub(crate) fn max_duration(&self, series: SeriesId) -> String {
        self.series(series, "maxdur")
    }
}

/// A series id as a sorted-set member: 8 bytes big-endian, so byte order is numeric order.
pub(crate) fn id_bytes(series: SeriesId) -> [u8; 8] {
    series.0.to_be_bytes()
}

/// Decodes [`id_bytes`].
pub(crate) fn decode_id(bytes: &[u8], key: &[u8]) -> Result<SeriesId> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| {
        Error::corrupt(
            String::from_utf8_lossy(key),
            0,
            format_args!("series id member of {} bytes, expected 8", bytes.len()),
        )
    })?;
    Ok(SeriesId(u64::from_be_bytes(arr)))
}

/// A time as 8 bytes whose byte order is the numeric order: offset binary, big-endian.
pub(crate) fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn time_from(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// A location as 24 bytes big-endian (segment, offset, length).
pub(crate) fn location_bytes(l: &ChunkLocation) -> [u8; 24] {
    let mut out = [0u8; 24];
    out[..8].copy_from_slice(&l.segment.to_be_bytes());
    out[8..16].copy_from_slice(&l.offset.to_be_bytes());
    out[16..].copy_from_slice(&l.length.to_be_bytes());
    out
}

/// A chunk as a sorted-set member: start, end (offset binary), location, point count and
/// codec, all big-endian, so byte order is the contract's order (start, end, location).
pub(crate) fn encode_entry(c: &ChunkReference) -> [u8; ENTRY_LEN] {
    let mut out = [0u8; ENTRY_LEN];
    out[..8].copy_from_slice(&time_bytes(c.start_time));
    out[8..16].copy_from_slice(&time_bytes(c.end_time));
    out[16..40].copy_from_slice(&location_bytes(&c.location));
    out[40..44].copy_from_slice(&c.point_count.to_be_bytes());
    out[44..].copy_from_slice(&c.codec.0.to_be_bytes());
    out
}

/// Decodes [`encode_entry`]; `key` names the sorted set in errors.
pub(crate) fn decode_entry(series: SeriesId, bytes: &[u8], key: &str) -> Result<ChunkReference> {
    let b: &[u8; ENTRY_LEN] = bytes.try_into().map_err(|_| {
        Error::corrupt(
            key,
            0,
            format_args!("chunk entry of {} bytes, expected {ENTRY_LEN}", bytes.len()),
        )
    })?;
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[i..i + 8]);
        a
    };
    let start_time = time_from(u64_at(0));
    let end_time = time_from(u64_at(8));
    if start_time > end_time {
        return Err(Error::corrupt(
            key,
            0,
            format_args!("chunk entry starts at {start_time} after its end {end_time}"),
        ));
    }
    Ok(ChunkReference {
        series_id: series,
        location: ChunkLocation {
            segment: u64::from_be_bytes(u64_at(16)),
            offset: u64::from_be_bytes(u64_at(24)),
            length: u64::from_be_bytes(u64_at(32)),
        },
        start_time,
        end_time,
        point_count: u32::from_be_bytes([b[40], b[41], b[42], b[43]]),
        codec: CodecId(u16::from_be_bytes([b[44], b[45]])),
    })
}

/// The end time in an encoded entry (no validation: the caller decodes the entry after).
pub(crate) fn entry_end(bytes: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
    Some(time_from(arr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb(seed: &mut tsdb_core::testkit::data::SplitMix64) -> ChunkReference {
        let mut pick = |v: &[i64]| v[seed.below(v.len() as u64) as usize];
        let edges = [
            i64::MIN,
            i64::MIN + 1,
            -(1 << 53) - 1,
            -1,
            0,
            1,
            1 << 53,
            (1 << 53) + 1,
            i64::MAX - 1,
            i64::MAX,
        ];
        let a = pick(&edges);
        let b = pick(&edges);
        let (start, end) = if a <= b { (a, b) } else { (b, a) };
        ChunkReference {
            series_id: SeriesId(7),
            location: ChunkLocation {
                segment: seed.next_u64() % 3,
                offset: seed.next_u64(),
                length: seed.next_u64(),
            },
            start_time: start,
            end_time: end,
            point_count: seed.next_u64() as u32,
            codec: CodecId(seed.next_u64() as u16),
        }
    }

    #[test]
    fn entries_round_trip_and_sort_in_contract_order() {
        let mut rng = tsdb_core::testkit::data::SplitMix64(5);
        let mut all: Vec<ChunkReference> = (0..2000).map(|_| arb(&mut rng)).collect();
        for c in &all {
            let e = encode_entry(c);
            assert_eq!(decode_entry(c.series_id, &e, "k").expect("decodes"), *c);
            assert_eq!(entry_end(&e), Some(c.end_time));
        }
        let mut by_bytes = all.clone();
        by_bytes.sort_by_key(encode_entry);
        all.sort_by_key(|c| (c.start_time, c.end_time, c.location));
        assert_eq!(
            by_bytes, all,
            "byte order of entries must be (start, end, location) order"
        );
    }

    fn chunk_strategy() -> impl Strategy<Value = ChunkReference> {
        let time = prop_oneof![
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
            (-(1i64 << 54)..(1i64 << 54)),
        ];
        (
            time.clone(),
            time,
            0u64..3,
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u16>(),
        )
            .prop_map(|(a, b, segment, offset, length, point_count, codec)| {
                ChunkReference {
                    series_id: SeriesId(7),
                    location: ChunkLocation {
                        segment,
                        offset,
                        length,
                    },
                    start_time: a.min(b),
                    end_time: a.max(b),
                    point_count,
                    codec: CodecId(codec),
                }
            })
    }

    proptest! {
        #[test]
        fn entries_round_trip(c in chunk_strategy()) {
            let e = encode_entry(&c);
            prop_assert_eq!(decode_entry(c.series_id, &e, "k").expect("decodes"), c);
            prop_assert_eq!(entry_end(&e), Some(c.end_time));
        }

        #[test]
        fn entry_bytes_order_is_contract_order(a in chunk_strategy(), b in chunk_strategy()) {
            let by_bytes = encode_entry(&a).cmp(&encode_entry(&b));
            let by_fields = (a.start_time, a.end_time, a.location).cmp(&(b.start_time, b.end_time, b.location));
            // Equal keys may differ in count and codec; otherwise the orders agree.
            if by_fields != std::cmp::Ordering::Equal {
                prop_assert_eq!(by_bytes, by_fields);
            }
        }

        #[test]
        fn time_bytes_order_is_numeric_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(time_bytes(a).cmp(&time_bytes(b)), a.cmp(&b));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..60)) {
            let _ = decode_entry(SeriesId(1), &bytes, "k");
            let _ = decode_id(&bytes, b"k");
        }

        #[test]
        fn ids_round_trip_in_order(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(decode_id(&id_bytes(SeriesId(a)), b"k").expect("decodes"), SeriesId(a));
            prop_assert_eq!(id_bytes(SeriesId(a)).cmp(&id_bytes(SeriesId(b))), a.cmp(&b));
        }
    }

    #[test]
    fn time_bytes_preserve_order() {
        let times = [
            i64::MIN,
            i64::MIN + 1,
            -(1 << 53) - 1,
            -(1 << 53),
            -1,
            0,
            1,
            1 << 53,
            (1 << 53) + 1,
            i64::MAX,
        ];
        for w in times.windows(2) {
            assert!(time_bytes(w[0]) < time_bytes(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn corrupt_entries_are_errors() {
        assert!(matches!(
            decode_entry(SeriesId(1), &[0; 10], "k"),
            Err(Error::Corrupt { .. })
        ));
        let mut c = arb(&mut tsdb_core::testkit::data::SplitMix64(1));
        c.start_time = 5;
        c.end_time = 5;
        let mut e = encode_entry(&c);
        e[..8].copy_from_slice(&time_bytes(6));
        assert!(matches!(
            decode_entry(SeriesId(1), &e, "k"),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(
            decode_id(&[1, 2, 3], b"k"),
            Err(Error::Corrupt { .. })
        ));
    }
}
