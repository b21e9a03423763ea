//! Marker files: small files that record one fact (a number, a watermark, a checkpoint),
//! replaced atomically and checked when read. One mechanism for every engine that keeps them,
//! with the durable replacement ([`replace`]) and directory fsync ([`sync_dir`]) beneath it.
//!
//! Layout: the body, then the CRC-32 (IEEE, little-endian) of the body. A write goes to
//! `<name>.tmp`, is fsynced, renamed over `<name>`, and the directory is fsynced: after a
//! crash the file holds the old body or the new one, never a mix.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Durably replaces `dir/name` with `body` (and its checksum).
///
/// ```
/// # let tmp = tempfile::tempdir().expect("temp dir");
/// use tsdb_core::marker;
/// marker::write(tmp.path(), "next-id", &7u64.to_le_bytes())?;
/// assert_eq!(marker::read(tmp.path(), "next-id")?, Some(7u64.to_le_bytes().to_vec()));
/// assert_eq!(marker::read(tmp.path(), "absent")?, None);
/// # Ok::<(), tsdb_core::Error>(())
/// ```
pub fn write(dir: &Path, name: &str, body: &[u8]) -> Result<()> {
    let mut bytes = Vec::with_capacity(body.len() + 4);
    bytes.extend_from_slice(body);
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    replace(&dir.join(name), &bytes)
}

/// Durably replaces the file at `path` with `bytes`, as is (the layer under [`write()`], for a
/// file that carries checksums of its own): written to `<path>.tmp`, fsynced, renamed over
/// `path`, then the directory is fsynced. After a crash the file holds the old bytes or the new
/// ones, never a mix.
pub fn replace(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let io = |e| Error::io(tmp.display(), e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)?;
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
        _ => sync_dir(Path::new(".")),
    }
}

/// Fsyncs the directory `dir`, so that the files created, renamed or removed in it stay so
/// after a power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format_args!("fsync of directory {}", dir.display()), e))
}

/// The body of `dir/name`: `Ok(None)` when the file does not exist, [`Error::Corrupt`] when
/// it fails its checksum.
pub fn read(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let mut bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path.display(), e)),
    };
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err(Error::corrupt(path.display(), 0, "marker file cut short"));
    };
    let stored = u32::from_le_bytes([
        bytes[split],
        bytes[split + 1],
        bytes[split + 2],
        bytes[split + 3],
    ]);
    bytes.truncate(split);
    if crc32fast::hash(&bytes) != stored {
        return Err(Error::corrupt(
            path.display(),
            split as u64,
            "marker file fails its checksum",
        ));
    }
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flip_and_cut_is_caught() {
        let dir = tempfile::tempdir().expect("temp dir");
        write(dir.path(), "m", b"a watermark").expect("write");
        let path = dir.path().join("m");
        let good = std::fs::read(&path).expect("read");
        for bit in 0..good.len() * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            std::fs::write(&path, &b).expect("write");
            assert!(read(dir.path(), "m").is_err(), "bit {bit}");
        }
        for cut in 0..good.len() {
            std::fs::write(&path, &good[..cut]).expect("write");
            assert!(read(dir.path(), "m").is_err(), "cut {cut}");
        }
    }
}
