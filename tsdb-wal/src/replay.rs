//! Reading back the records validated by [`crate::Wal::open`].

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::PathBuf;

use tsdb_core::{Error, Result};

use crate::Lsn;
use crate::format::{self, RECORD_HEADER_LEN};
use crate::scan::{ScannedSegment, Span, WalDamage};

/// Read buffer of one segment being replayed.
const READ_BUFFER: usize = 256 * 1024;

#[derive(Debug)]
struct Part {
    path: PathBuf,
    file: File,
    span: Span,
}

/// The records present when the WAL was opened, in append (= LSN) order.
///
/// An [`Iterator`] of `Result<(Lsn, Vec<u8>)>`: it reads one segment at a time through a
/// buffer, never the whole log, and checks each record's checksum and LSN again as it reads
/// (an `Err` means a segment changed on disk since [`crate::Wal::open`] validated it; the
/// iterator ends after it). Its reads are blocking file I/O: drive it from
/// `tokio::task::spawn_blocking` if the runtime must not stall, or accept the stall at startup.
///
/// It holds open handles to the segments, so records stay readable even if
/// [`crate::Wal::truncate_before`] deletes their files meanwhile. Records appended after
/// open are not part of it.
#[derive(Debug)]
pub struct Replay {
    parts: std::vec::IntoIter<Part>,
    current: Option<(BufReader<File>, PathBuf, u64, u64, Lsn)>,
    records: u64,
    done: bool,
    damage: Vec<WalDamage>,
}

impl Replay {
    pub(crate) fn new(segments: &mut [ScannedSegment], damage: Vec<WalDamage>) -> Result<Replay> {
        let mut parts = Vec::with_capacity(segments.len());
        let mut records = 0;
        for s in segments.iter() {
            for span in &s.spans {
                records += span.next_lsn.get() - span.first_lsn.get();
                let file = s
                    .file
                    .try_clone()
                    .map_err(|e| Error::io(s.path.display(), e))?;
                parts.push(Part {
                    path: s.path.clone(),
                    file,
                    span: *span,
                });
            }
        }
        Ok(Replay {
            parts: parts.into_iter(),
            current: None,
            records,
            done: false,
            damage,
        })
    }

    /// Damage open found and the recovery policy let it skip (with
    /// [`crate::WalRecovery::SkipDamaged`]), and damage in records no longer needed: what
    /// was lost, and where. Empty for an undamaged log.
    pub fn damage(&self) -> &[WalDamage] {
        &self.damage
    }

    /// How many records the replay yields in total (counted when the WAL was opened).
    pub fn record_count(&self) -> u64 {
        self.records
    }

    fn next_record(&mut self) -> Result<Option<(Lsn, Vec<u8>)>> {
        loop {
            if self.current.is_none() {
                let Some(part) = self.parts.next() else {
                    return Ok(None);
                };
                let mut file = part.file;
                file.seek(SeekFrom::Start(part.span.start))
                    .map_err(|e| Error::io(part.path.display(), e))?;
                self.current = Some((
                    BufReader::with_capacity(READ_BUFFER, file),
                    part.path,
                    part.span.start,
                    part.span.end,
                    part.span.first_lsn,
                ));
            }
            let Some((reader, path, pos, end, next)) = self.current.as_mut() else {
                continue;
            };
            if *pos >= *end {
                self.current = None;
                continue;
            }
            let mut h = [0u8; RECORD_HEADER_LEN];
            reader
                .read_exact(&mut h)
                .map_err(|e| Error::io(path.display(), e))?;
            let len = format::header_len_field(&h) as usize;
            let lsn = Lsn(format::header_lsn_field(&h));
            let record_end = *pos + (RECORD_HEADER_LEN + len) as u64;
            if lsn != *next || record_end > *end {
                return Err(Error::corrupt(
                    path.display(),
                    *pos,
                    "record changed on disk since the WAL was opened",
                ));
            }
            let mut payload = vec![0u8; len];
            reader
                .read_exact(&mut payload)
                .map_err(|e| Error::io(path.display(), e))?;
            if format::record_checksum(lsn, &payload) != Some(format::header_crc_field(&h)) {
                return Err(Error::corrupt(
                    path.display(),
                    *pos,
                    "record checksum mismatch on replay (the file changed since the WAL was opened)",
                ));
            }
            *pos = record_end;
            *next = Lsn(next.get().wrapping_add(1));
            return Ok(Some((lsn, payload)));
        }
    }
}

impl Iterator for Replay {
    type Item = Result<(Lsn, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
