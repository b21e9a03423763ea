//! The checkpoint mark: what the database knows of its logs, so that opening can tell a torn
//! tail from lost records and skip what is already in chunks.
//!
//! File `<data_dir>/CHECKPOINT`, a [`tsdb_core::marker`] file (replaced atomically, checked by
//! a CRC-32 after the body):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | `needed_from`: WAL records before this LSN are in durable chunks |
//! | 8 | 8 | `wal_written_before`: the WAL held every record before this LSN (durably) |
//! | 16 | 8 | `catalog_written_before`: the same for the series catalog |
//! | 24 | 8 | `wal_active`: first LSN of the WAL segment being appended to |
//! | 32 | 8 | `catalog_active`: the same for the series catalog |
//! | 40 | 1 | `clean`: 1 when written by a clean `close` (nothing appended after it) |
//! | 41 | 4 | CRC-32 of bytes 0..41 |
//!
//! The first version (12 bytes: `needed_from` and its CRC) is still read. A missing or
//! damaged mark reads as "nothing known": replay then reads the whole WAL, which is slower but
//! loses nothing (points already in chunks are recognised and skipped); the damage is logged.

use std::path::Path;

use tsdb_core::{Result, marker};

const FILE: &str = "CHECKPOINT";
/// Bytes of the body (the file is the body and its CRC-32, see [`tsdb_core::marker`]).
const BODY: usize = 41;

/// What the mark records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    pub(crate) needed_from: u64,
    pub(crate) wal_written_before: u64,
    pub(crate) catalog_written_before: u64,
    pub(crate) wal_active: u64,
    pub(crate) catalog_active: u64,
    pub(crate) clean: bool,
}

impl Default for Mark {
    fn default() -> Self {
        Mark {
            needed_from: 1,
            wal_written_before: 1,
            catalog_written_before: 1,
            wal_active: 0,
            catalog_active: 0,
            clean: false,
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The recorded mark; [`Mark::default`] when there is none or it is damaged.
pub(crate) fn read(dir: &Path) -> Mark {
    let body = match marker::read(dir, FILE) {
        Ok(Some(body)) => body,
        Ok(None) => return Mark::default(),
        Err(e) => {
            tracing::warn!("checkpoint mark unreadable ({e}); replaying the whole WAL");
            return Mark::default();
        }
    };
    match body.len() {
        BODY => Mark {
            needed_from: u64_at(&body, 0).max(1),
            wal_written_before: u64_at(&body, 8).max(1),
            catalog_written_before: u64_at(&body, 16).max(1),
            wal_active: u64_at(&body, 24),
            catalog_active: u64_at(&body, 32),
            clean: body[40] == 1,
        },
        8 => Mark {
            needed_from: u64_at(&body, 0).max(1),
            ..Mark::default()
        },
        n => {
            tracing::warn!(
                "checkpoint mark has {n} bytes, a size no version writes; replaying the whole WAL"
            );
            Mark::default()
        }
    }
}

/// Durably records `mark`.
pub(crate) fn write(dir: &Path, mark: Mark) -> Result<()> {
    let mut body = Vec::with_capacity(BODY);
    body.extend_from_slice(&mark.needed_from.to_le_bytes());
    body.extend_from_slice(&mark.wal_written_before.to_le_bytes());
    body.extend_from_slice(&mark.catalog_written_before.to_le_bytes());
    body.extend_from_slice(&mark.wal_active.to_le_bytes());
    body.extend_from_slice(&mark.catalog_active.to_le_bytes());
    body.push(u8::from(mark.clean));
    marker::write(dir, FILE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_round_trips_and_damage_reads_as_nothing_known() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()), Mark::default());
        let mark = Mark {
            needed_from: 12_345,
            wal_written_before: 12_400,
            catalog_written_before: 77,
            wal_active: 12_001,
            catalog_active: 1,
            clean: true,
        };
        write(dir.path(), mark).expect("write");
        assert_eq!(read(dir.path()), mark);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        for i in 0..bytes.len() * 8 {
            bytes[i / 8] ^= 1 << (i % 8);
            std::fs::write(&path, &bytes).expect("write damaged");
            assert_eq!(read(dir.path()), Mark::default(), "bit {i} flipped");
            bytes[i / 8] ^= 1 << (i % 8);
        }
        std::fs::write(&path, &bytes[..7]).expect("write cut");
        assert_eq!(read(dir.path()), Mark::default());
    }

    #[test]
    fn the_first_version_is_still_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut bytes = 99u64.to_le_bytes().to_vec();
        bytes.extend_from_slice(&crc32fast::hash(&99u64.to_le_bytes()).to_le_bytes());
        std::fs::write(dir.path().join(FILE), &bytes).expect("write");
        assert_eq!(read(dir.path()).needed_from, 99);
    }
}
