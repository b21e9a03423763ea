//! The checkpoint mark: the WAL position before which every record is already in durable
//! chunks, so that replay can skip it.
//!
//! File `<data_dir>/CHECKPOINT`: `lsn: u64 LE | crc32(lsn): u32 LE`, replaced atomically
//! (write a temporary file, fsync, rename, fsync the directory). A missing or damaged mark
//! reads as 0: replay then reads the whole WAL, which is slower but loses nothing (replayed
//! points already in chunks are recognised and skipped).

use std::io::Write;
use std::path::Path;

use tsdb_core::{Error, Result};

const FILE: &str = "CHECKPOINT";

/// The recorded mark, or 0 when there is none or it is damaged.
pub(crate) fn read(dir: &Path) -> u64 {
    let path = dir.join(FILE);
    let Ok(bytes) = std::fs::read(&path) else {
        return 0;
    };
    let (Some(lsn), Some(crc)) = (bytes.get(..8), bytes.get(8..12)) else {
        tracing::warn!(
            "{}: checkpoint mark cut short; replaying the whole WAL",
            path.display()
        );
        return 0;
    };
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if bytes.len() != 12 || crc32fast::hash(lsn) != crc {
        tracing::warn!(
            "{}: checkpoint mark damaged; replaying the whole WAL",
            path.display()
        );
        return 0;
    }
    u64::from_le_bytes([
        lsn[0], lsn[1], lsn[2], lsn[3], lsn[4], lsn[5], lsn[6], lsn[7],
    ])
}

/// Durably records `lsn` as the mark.
pub(crate) fn write(dir: &Path, lsn: u64) -> Result<()> {
    let tmp = dir.join("CHECKPOINT.tmp");
    let io = |e| Error::io(tmp.display(), e);
    let mut bytes = lsn.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&lsn.to_le_bytes()).to_le_bytes());
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&bytes).map_err(io)?;
    f.sync_data().map_err(io)?;
    std::fs::rename(&tmp, dir.join(FILE)).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_round_trips_and_damage_reads_as_zero() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()), 0);
        write(dir.path(), 12_345).expect("write");
        assert_eq!(read(dir.path()), 12_345);
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        for i in 0..bytes.len() * 8 {
            bytes[i / 8] ^= 1 << (i % 8);
            std::fs::write(&path, &bytes).expect("write damaged");
            assert_eq!(read(dir.path()), 0, "bit {i} flipped");
            bytes[i / 8] ^= 1 << (i % 8);
        }
        std::fs::write(&path, &bytes[..7]).expect("write cut");
        assert_eq!(read(dir.path()), 0);
    }
}
