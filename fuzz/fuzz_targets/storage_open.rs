//! Opens a `LocalDiskEngine` store whose segment files and deletion log hold arbitrary bytes
//! (valid records mixed with garbage, cuts and bit flips), then lists, reads, probes, writes
//! and reopens. Never a panic, and never wrong data: every chunk read back is exactly what a
//! checksum-verified record at that place in the original bytes holds.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tsdb_core::{Bytes, ChunkLocation, CodecId, CompressedBlock, SeriesId, StorageEngine};
use tsdb_storage_disk::{Durability, LocalDiskConfig, LocalDiskEngine};

#[derive(Arbitrary, Debug)]
enum Piece {
    /// A well-formed record written at the current end of the segment.
    Record {
        codec: u16,
        series: u64,
        start: i64,
        end: i64,
        points: u32,
        payload: Vec<u8>,
    },
    /// A well-formed record claiming another segment or offset.
    Misplaced {
        segment_delta: u8,
        offset_delta: u16,
        payload: Vec<u8>,
    },
    /// Arbitrary bytes.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Segment {
    id: u8,
    pieces: Vec<Piece>,
    /// Bit flips, as bit indices modulo the segment's size in bits.
    flips: Vec<u32>,
    /// Keep only this many bytes (modulo length + 1), when set.
    cut: Option<u32>,
}

#[derive(Arbitrary, Debug)]
enum DeletionPiece {
    /// Deletes the n-th record (modulo the number of records) of the store.
    Entry(u16),
    /// An entry for an arbitrary location.
    Location(u64, u64, u64),
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    segments: Vec<Segment>,
    deletions: Option<Vec<DeletionPiece>>,
    probes: Vec<(u8, u16, u16)>,
    write: Option<Vec<u8>>,
}

/// CRC-32 (IEEE, reflected, polynomial 0xEDB88320), bit by bit: an implementation
/// independent of the engine's.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Record encoder written from the README's table, independent of the crate's own.
fn encode(out: &mut Vec<u8>, segment: u64, offset: u64, b: &CompressedBlock) {
    let start = out.len();
    out.extend_from_slice(b"GTSC");
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&b.codec.0.to_le_bytes());
    out.extend_from_slice(&segment.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&b.series_id.0.to_le_bytes());
    out.extend_from_slice(&b.start_time.to_le_bytes());
    out.extend_from_slice(&b.end_time.to_le_bytes());
    out.extend_from_slice(&b.point_count.to_le_bytes());
    out.extend_from_slice(&(b.data.len() as u32).to_le_bytes());
    let h = crc32(&out[start..]);
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&b.data);
    let r = crc32(&out[start..]);
    out.extend_from_slice(&r.to_le_bytes());
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// The block that the original bytes hold at `loc`, if a checksum-verified record is there.
fn expected(files: &BTreeMap<u64, Vec<u8>>, loc: &ChunkLocation) -> Option<CompressedBlock> {
    let seg = files.get(&loc.segment)?;
    let start = usize::try_from(loc.offset).ok()?;
    let len = usize::try_from(loc.length).ok()?;
    let rec = seg.get(start..start.checked_add(len)?)?;
    if len < 64 || &rec[..4] != b"GTSC" || le16(rec, 4) != 1 {
        return None;
    }
    if le32(rec, 56) != crc32(&rec[..56])
        || le32(rec, len - 4) != crc32(&rec[..len - 4])
        || le64(rec, 8) != loc.segment
        || le64(rec, 16) != loc.offset
        || le32(rec, 52) as usize + 64 != len
    {
        return None;
    }
    Some(CompressedBlock {
        codec: CodecId(le16(rec, 6)),
        series_id: SeriesId(le64(rec, 24)),
        start_time: le64(rec, 32) as i64,
        end_time: le64(rec, 40) as i64,
        point_count: le32(rec, 48),
        data: Bytes::copy_from_slice(&rec[60..len - 4]),
    })
}

fn check(files: &BTreeMap<u64, Vec<u8>>, loc: &ChunkLocation, got: &CompressedBlock) {
    match expected(files, loc) {
        Some(want) => assert_eq!(*got, want, "read at {loc} differs from the record's bytes"),
        None => panic!("read at {loc} returned a block where no valid record is"),
    }
}

fn build(input: &Input) -> (BTreeMap<u64, Vec<u8>>, Vec<ChunkLocation>) {
    let mut files: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut records = Vec::new();
    for s in input.segments.iter().take(6) {
        let id = u64::from(s.id % 8);
        let mut bytes = files.remove(&id).unwrap_or_default();
        for p in s.pieces.iter().take(32) {
            let at = bytes.len() as u64;
            match p {
                Piece::Record {
                    codec,
                    series,
                    start,
                    end,
                    points,
                    payload,
                } => {
                    let b = CompressedBlock {
                        codec: CodecId(*codec),
                        series_id: SeriesId(*series),
                        start_time: *start,
                        end_time: *end,
                        point_count: *points,
                        data: Bytes::copy_from_slice(payload),
                    };
                    encode(&mut bytes, id, at, &b);
                    records.push(ChunkLocation {
                        segment: id,
                        offset: at,
                        length: bytes.len() as u64 - at,
                    });
                }
                Piece::Misplaced {
                    segment_delta,
                    offset_delta,
                    payload,
                } => {
                    let b = CompressedBlock {
                        codec: CodecId(1),
                        series_id: SeriesId(7),
                        start_time: 0,
                        end_time: 1,
                        point_count: 1,
                        data: Bytes::copy_from_slice(payload),
                    };
                    let seg = id.wrapping_add(u64::from(*segment_delta));
                    let off = at.wrapping_add(u64::from(*offset_delta));
                    encode(&mut bytes, seg, off, &b);
                }
                Piece::Raw(raw) => bytes.extend_from_slice(raw),
            }
        }
        if !bytes.is_empty() {
            let bits = bytes.len() * 8;
            for f in s.flips.iter().take(8) {
                let bit = *f as usize % bits;
                bytes[bit / 8] ^= 1 << (bit % 8);
            }
        }
        if let Some(cut) = s.cut {
            bytes.truncate(cut as usize % (bytes.len() + 1));
        }
        files.insert(id, bytes);
    }
    (files, records)
}

fn deletion_log(input: &Input, records: &[ChunkLocation]) -> Option<Vec<u8>> {
    let pieces = input.deletions.as_ref()?;
    let mut out = Vec::new();
    for p in pieces.iter().take(32) {
        let entry = |out: &mut Vec<u8>, s: u64, o: u64, l: u64| {
            let start = out.len();
            out.extend_from_slice(b"GDEL");
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&o.to_le_bytes());
            out.extend_from_slice(&l.to_le_bytes());
            let c = crc32(&out[start..]);
            out.extend_from_slice(&c.to_le_bytes());
        };
        match p {
            DeletionPiece::Entry(n) if !records.is_empty() => {
                let r = records[*n as usize % records.len()];
                entry(&mut out, r.segment, r.offset, r.length);
            }
            DeletionPiece::Entry(_) => {}
            DeletionPiece::Location(s, o, l) => entry(&mut out, *s, *o, *l),
            DeletionPiece::Raw(raw) => out.extend_from_slice(raw),
        }
    }
    Some(out)
}

fn config() -> LocalDiskConfig {
    // No fsync on the write path: fuzzing needs speed, not power-loss safety.
    LocalDiskConfig::default().durability(Durability::Interval(Duration::from_secs(3600)))
}

fuzz_target!(|input: Input| {
    let (files, records) = build(&input);
    let log = deletion_log(&input, &records);
    let dir = tempfile::tempdir().expect("temp dir");
    for (id, bytes) in &files {
        std::fs::write(dir.path().join(format!("{id:020}.seg")), bytes).expect("write segment");
    }
    if let Some(log) = &log {
        std::fs::write(dir.path().join("deletions.log"), log).expect("write log");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let engine = LocalDiskEngine::open_with(dir.path(), config())
            .await
            .expect("damaged contents must never stop a store from opening");
        let listed = engine.list_chunks().await.expect("list");
        let mut good = Vec::new();
        for r in &listed {
            let want = expected(&files, &r.location)
                .unwrap_or_else(|| panic!("listed {} is not a valid record", r.location));
            assert_eq!(*r, tsdb_core::ChunkReference::new(&want, r.location));
            let got = engine
                .read_chunk(&r.location)
                .await
                .unwrap_or_else(|e| panic!("listed {} fails to read: {e}", r.location));
            check(&files, &r.location, &got);
            good.push((r.location, got));
        }
        // Locations near real records, and arbitrary ones.
        for (i, (seg, off, len)) in input.probes.iter().take(16).enumerate() {
            let base = records.get(i).copied().unwrap_or(ChunkLocation {
                segment: 0,
                offset: 0,
                length: 64,
            });
            let loc = ChunkLocation {
                segment: base.segment.wrapping_add(u64::from(*seg % 2)),
                offset: base.offset.wrapping_add(u64::from(*off)) % 4096,
                length: if *len == 0 {
                    base.length
                } else {
                    u64::from(*len)
                },
            };
            if let Ok(got) = engine.read_chunk(&loc).await {
                check(&files, &loc, &got);
                assert!(
                    listed.iter().any(|r| r.location == loc),
                    "read at {loc} succeeded but the chunk is not listed"
                );
            }
        }
        // The recovered store takes a write, and a reopen keeps everything that was good.
        if let Some(payload) = &input.write {
            let block = CompressedBlock {
                codec: CodecId(1),
                series_id: SeriesId(99),
                start_time: -1,
                end_time: 1,
                point_count: 3,
                data: Bytes::copy_from_slice(payload),
            };
            let loc = engine
                .write_chunk(&block)
                .await
                .expect("write after recovery");
            assert_eq!(engine.read_chunk(&loc).await.expect("read new"), block);
            drop(engine);
            let engine = LocalDiskEngine::open_with(dir.path(), config())
                .await
                .expect("reopen");
            assert_eq!(
                engine
                    .read_chunk(&loc)
                    .await
                    .expect("read new after reopen"),
                block
            );
            for (l, b) in &good {
                let got = engine
                    .read_chunk(l)
                    .await
                    .unwrap_or_else(|e| panic!("{l} was good before the reopen: {e}"));
                assert_eq!(got, *b, "{l} changed across a reopen");
            }
        }
    });
});
