//! Tombstones: what `delete_series` deleted, kept durably and applied by every read until
//! compaction rewrites the chunks without the points.
//!
//! A tombstone hides the points of one series inside a time range that are stored in chunks
//! at or before a location (the newest chunk of the series when it was written): everything
//! written before the deletion. Points written later land in newer chunks and stay visible.
//!
//! File `<data_dir>/TOMBSTONES`, one tombstone a line, appended and fsynced; each line ends with
//! the CRC-32 of the rest of it:
//!
//! `1 \t series \t start \t end \t segment \t offset \t length \t crc32(hex)`
//!
//! A last line without its line break is a deletion that was never acknowledged (the process
//! died while writing it) and is dropped. Any other line that fails its check makes opening
//! fail with [`Error::Corrupt`]: reading on could bring deleted points back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

use tsdb_core::{ChunkLocation, ChunkReference, Error, Result, SeriesId, TimeRange};

const FILE: &str = "TOMBSTONES";

/// One deletion of one series' points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub(crate) series: SeriesId,
    pub(crate) range: TimeRange,
    /// Chunks at or before it are concerned.
    pub(crate) upto: ChunkLocation,
}

impl Tombstone {
    fn encode(&self) -> String {
        let body = format!(
            "1\t{}\t{}\t{}\t{}\t{}\t{}",
            self.series.0,
            self.range.start,
            self.range.end,
            self.upto.segment,
            self.upto.offset,
            self.upto.length
        );
        let crc = crc32fast::hash(body.as_bytes());
        format!("{body}\t{crc:08x}\n")
    }

    fn decode(line: &str) -> Option<Tombstone> {
        let (body, crc) = line.rsplit_once('\t')?;
        if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
            return None;
        }
        let f: Vec<&str> = body.split('\t').collect();
        let ["1", series, start, end, segment, offset, length] = f[..] else {
            return None;
        };
        Some(Tombstone {
            series: SeriesId(series.parse().ok()?),
            range: TimeRange {
                start: start.parse().ok()?,
                end: end.parse().ok()?,
            },
            upto: ChunkLocation {
                segment: segment.parse().ok()?,
                offset: offset.parse().ok()?,
                length: length.parse().ok()?,
            },
        })
    }
}

/// The durable list of tombstones (see the module docs).
#[derive(Debug)]
pub(crate) struct Tombstones {
    path: PathBuf,
    read_only: bool,
    /// Read by every chunk read (shared), written by deletions.
    entries: RwLock<Vec<Tombstone>>,
}

impl Tombstones {
    /// Loads `<dir>/TOMBSTONES` (absent: nothing deleted).
    pub(crate) fn load(dir: &Path, read_only: bool) -> Result<Tombstones> {
        let path = dir.join(FILE);
        let mut entries = Vec::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut at = 0u64;
                for raw in bytes.split_inclusive(|&b| b == b'\n') {
                    let complete = raw.ends_with(b"\n");
                    let line = std::str::from_utf8(raw)
                        .ok()
                        .map(|l| l.trim_end_matches('\n'));
                    match line.and_then(Tombstone::decode) {
                        Some(t) if complete => entries.push(t),
                        _ if !complete => {
                            tracing::warn!(file = %path.display(), offset = at, "dropping a torn last tombstone (a deletion that was never acknowledged)");
                        }
                        _ if raw.iter().all(u8::is_ascii_whitespace) => {}
                        _ => {
                            return Err(Error::corrupt(
                                path.display(),
                                at,
                                "a tombstone fails its check: the points it deleted would come back",
                            ));
                        }
                    }
                    at += raw.len() as u64;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path.display(), e)),
        }
        Ok(Tombstones {
            path,
            read_only,
            entries: RwLock::new(entries),
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Tombstone>> {
        self.entries.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Durably adds `new` (one fsync for all of them).
    pub(crate) fn add(&self, new: &[Tombstone]) -> Result<()> {
        if new.is_empty() {
            return Ok(());
        }
        if self.read_only {
            return Err(Error::ReadOnly {
                engine: "database",
                operation: "delete_series",
            });
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let io = |e| Error::io(self.path.display(), e);
        let existed = self.path.exists();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let text: String = new.iter().map(Tombstone::encode).collect();
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        if !existed && let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(dir.display(), e))?;
        }
        entries.extend_from_slice(new);
        Ok(())
    }

    /// Whether a tombstone of `series` covers part of `range`.
    pub(crate) fn touching(&self, series: SeriesId, range: TimeRange) -> bool {
        self.read()
            .iter()
            .any(|t| t.series == series && t.range.overlaps(&range))
    }

    /// The ranges of `chunk` that tombstones hide (empty in the common case).
    pub(crate) fn hiding(&self, chunk: &ChunkReference) -> Vec<TimeRange> {
        let entries = self.read();
        if entries.is_empty() {
            return Vec::new();
        }
        entries
            .iter()
            .filter(|t| {
                t.series == chunk.series_id
                    && chunk.location <= t.upto
                    && t.range.start <= chunk.end_time
                    && chunk.start_time <= t.range.end
            })
            .map(|t| t.range)
            .collect()
    }
}

/// Removes from the columns, from index `from` on, the points inside any of `hidden`.
pub(crate) fn remove_hidden(
    ts: &mut Vec<i64>,
    vs: &mut Vec<f64>,
    from: usize,
    hidden: &[TimeRange],
) {
    if hidden.is_empty() {
        return;
    }
    let mut keep = from;
    for i in from..ts.len().min(vs.len()) {
        let t = ts[i];
        if !hidden.iter().any(|r| r.start <= t && t <= r.end) {
            ts[keep] = t;
            vs[keep] = vs[i];
            keep += 1;
        }
    }
    ts.truncate(keep);
    vs.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(series: u64, start: i64) -> Tombstone {
        Tombstone {
            series: SeriesId(series),
            range: TimeRange {
                start,
                end: start + 100,
            },
            upto: ChunkLocation {
                segment: 3,
                offset: 4096,
                length: 77,
            },
        }
    }

    #[test]
    fn tombstones_survive_a_reload_a_torn_tail_is_dropped_and_damage_refuses_to_open() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = Tombstones::load(dir.path(), false).expect("empty");
        log.add(&[sample(1, 0), sample(2, -50)]).expect("add");
        log.add(&[sample(1, 1_000)]).expect("add");
        let again = Tombstones::load(dir.path(), false).expect("reload");
        assert_eq!(
            *again.read(),
            vec![sample(1, 0), sample(2, -50), sample(1, 1_000)]
        );

        // A torn last line: the deletion was never acknowledged.
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        let intact = bytes.len();
        bytes.extend_from_slice(&sample(9, 9).encode().as_bytes()[..10]);
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(
            Tombstones::load(dir.path(), false)
                .expect("torn")
                .read()
                .len(),
            3
        );

        // A flipped bit in a complete line: opening refuses, naming file and offset.
        bytes.truncate(intact);
        let second_line = bytes.iter().position(|&b| b == b'\n').expect("a line") + 1;
        bytes[second_line + 3] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        match Tombstones::load(dir.path(), false) {
            Err(Error::Corrupt { offset, .. }) => assert_eq!(offset, second_line as u64),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn hidden_points_are_removed_from_the_given_index_on() {
        let mut ts = vec![1, 2, 3, 4, 5, 6];
        let mut vs = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let hidden = [
            TimeRange { start: 2, end: 3 },
            TimeRange { start: 6, end: 9 },
        ];
        remove_hidden(&mut ts, &mut vs, 2, &hidden);
        assert_eq!(ts, vec![1, 2, 4, 5]);
        assert_eq!(vs, vec![1.0, 2.0, 4.0, 5.0]);
    }
}
