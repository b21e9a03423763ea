//! The damage log: every loss the database found (damaged or missing chunk bytes, skipped WAL
//! records, series whose labels are gone), kept durably so that it is still known after a
//! reopen, and checked by every read so that an answer never silently lacks points.
//!
//! File `<data_dir>/DAMAGE`, one entry a line, appended and fsynced; each line ends with the
//! CRC-32 of the rest of it:
//!
//! `1 \t accepted(0|1) \t series(-|id) \t start(-|ms) \t end(-|ms) \t offset \t length \t source \t reason \t crc32(hex)`
//!
//! Tabs and line breaks inside `source` and `reason` are written as spaces. A line that fails
//! its check is itself recorded as damage of unknown scope (what it said is lost).

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use tsdb_core::{Error, Result, SeriesId, TimeRange};

const FILE: &str = "DAMAGE";

/// One loss the database found, as [`crate::TimeSeriesDB::damage`] lists it.
///
/// A read of a series and time range that an entry covers fails with [`Error::Corrupt`]
/// (naming `source` and `offset`) until the entry is accepted with
/// [`crate::TimeSeriesDB::accept_damage`], unless the caller asks for partial results
/// ([`crate::TimeSeriesDB::query_partial`]), which then name the entry. An entry whose
/// series is not known covers every series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    /// The file (or other store) that held the bytes.
    pub source: String,
    /// Byte offset in `source`.
    pub offset: u64,
    /// Bytes affected (0 when a range of records or a file is missing).
    pub length: u64,
    /// What was wrong and what was lost.
    pub reason: String,
    /// The series whose points were lost, when known.
    pub series: Option<SeriesId>,
    /// The time range of the lost points, when known.
    pub range: Option<TimeRange>,
    /// The loss was accepted (by the operator, or by opening with
    /// [`crate::WalRecovery::SkipDamaged`]): reads no longer fail because of it.
    pub accepted: bool,
}

impl Damage {
    /// Whether a read of `series` over `range` may miss points because of this damage.
    pub fn touches(&self, series: SeriesId, range: TimeRange) -> bool {
        self.series.is_none_or(|s| s == series)
            && self
                .range
                .is_none_or(|r| r.start <= range.end && range.start <= r.end)
    }

    /// The error a read touching this damage gets.
    pub(crate) fn to_error(&self, series: SeriesId) -> Error {
        Error::corrupt(
            &self.source,
            self.offset,
            format_args!(
                "{}; points of series {series} may be missing here (ask for partial results, or accept the damage, to read what is left)",
                self.reason
            ),
        )
    }
}

impl Damage {
    /// The error a read gets from damage of unknown series.
    pub(crate) fn to_error_unknown(&self) -> Error {
        Error::corrupt(
            &self.source,
            self.offset,
            format_args!(
                "{}; points of any series may be missing here (ask for partial results, or accept the damage, to read what is left)",
                self.reason
            ),
        )
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}", self.source, self.offset)?;
        if self.length > 0 {
            write!(f, " ({} bytes)", self.length)?;
        }
        match self.series {
            Some(s) => write!(f, ", series {s}")?,
            None => write!(f, ", series unknown")?,
        }
        if let Some(r) = self.range {
            write!(f, ", times {}..={}", r.start, r.end)?;
        }
        write!(f, ": {}", self.reason)?;
        if self.accepted {
            write!(f, " (accepted)")?;
        }
        Ok(())
    }
}

fn clean(s: &str) -> String {
    s.replace(['\t', '\n', '\r'], " ")
}

fn encode(d: &Damage) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let body = format!(
        "1\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        u8::from(d.accepted),
        opt(d.series.map(|s| s.0.to_string())),
        opt(d.range.map(|r| r.start.to_string())),
        opt(d.range.map(|r| r.end.to_string())),
        d.offset,
        d.length,
        clean(&d.source),
        clean(&d.reason),
    );
    let crc = crc32fast::hash(body.as_bytes());
    format!("{body}\t{crc:08x}\n")
}

fn decode(line: &str) -> Option<Damage> {
    let (body, crc) = line.rsplit_once('\t')?;
    if u32::from_str_radix(crc, 16).ok()? != crc32fast::hash(body.as_bytes()) {
        return None;
    }
    let f: Vec<&str> = body.split('\t').collect();
    let [
        version,
        accepted,
        series,
        start,
        end,
        offset,
        length,
        source,
        reason,
    ] = f[..]
    else {
        return None;
    };
    if version != "1" {
        return None;
    }
    let opt_i64 = |s: &str| -> Option<Option<i64>> {
        if s == "-" {
            Some(None)
        } else {
            s.parse().ok().map(Some)
        }
    };
    let series = if series == "-" {
        None
    } else {
        Some(SeriesId(series.parse().ok()?))
    };
    let range = match (opt_i64(start)?, opt_i64(end)?) {
        (Some(start), Some(end)) => Some(TimeRange { start, end }),
        _ => None,
    };
    Some(Damage {
        source: source.to_owned(),
        offset: offset.parse().ok()?,
        length: length.parse().ok()?,
        reason: reason.to_owned(),
        series,
        range,
        accepted: accepted == "1",
    })
}

/// The durable list of damage (see the module docs).
#[derive(Debug)]
pub(crate) struct DamageLog {
    path: PathBuf,
    read_only: bool,
    entries: Mutex<Vec<Damage>>,
}

impl DamageLog {
    /// Loads `<dir>/DAMAGE` (absent: no damage known).
    pub(crate) fn load(dir: &Path, read_only: bool) -> Result<DamageLog> {
        let path = dir.join(FILE);
        let mut entries = Vec::new();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut at = 0u64;
                for raw in bytes.split_inclusive(|&b| b == b'\n') {
                    let line = std::str::from_utf8(raw)
                        .ok()
                        .map(|l| l.trim_end_matches('\n'));
                    match line.and_then(decode) {
                        Some(d) => entries.push(d),
                        None if raw.iter().all(u8::is_ascii_whitespace) => {}
                        None => {
                            tracing::error!(file = %path.display(), offset = at, "a damage log entry fails its check: what it recorded is unknown now");
                            entries.push(Damage {
                                source: path.display().to_string(),
                                offset: at,
                                length: raw.len() as u64,
                                reason: "a damage log entry is unreadable: an earlier loss may be unaccounted for".to_owned(),
                                series: None,
                                range: None,
                                accepted: false,
                            });
                        }
                    }
                    at += raw.len() as u64;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path.display(), e)),
        }
        Ok(DamageLog {
            path,
            read_only,
            entries: Mutex::new(entries),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Damage>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every entry.
    pub(crate) fn all(&self) -> Vec<Damage> {
        self.lock().clone()
    }

    /// Whether nothing is recorded (the common case: reads then skip the checks).
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Records `found` unless an entry for the same place is there already; durable when it
    /// returns (in a read-only database, kept in memory only). Returns whether it was new.
    pub(crate) fn record(&self, found: Damage) -> Result<bool> {
        let mut entries = self.lock();
        if entries.iter().any(|d| {
            d.source == found.source && d.offset == found.offset && d.series == found.series
        }) {
            return Ok(false);
        }
        tracing::error!(damage = %found, "damage recorded");
        if !self.read_only {
            let line = encode(&found);
            let io = |e| Error::io(self.path.display(), e);
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io)?;
            f.write_all(line.as_bytes()).map_err(io)?;
            f.sync_data().map_err(io)?;
        }
        entries.push(found);
        Ok(true)
    }

    /// Marks every entry accepted (rewrites the file atomically); returns how many were not.
    pub(crate) fn accept_all(&self) -> Result<usize> {
        let mut entries = self.lock();
        let newly = entries.iter().filter(|d| !d.accepted).count();
        if newly == 0 {
            return Ok(0);
        }
        let mut updated = entries.clone();
        for d in &mut updated {
            d.accepted = true;
        }
        if self.read_only {
            return Err(Error::ReadOnly {
                engine: "database",
                operation: "accept_damage",
            });
        }
        let bytes: String = updated.iter().map(encode).collect();
        tsdb_core::marker::replace(&self.path, bytes.as_bytes())?;
        *entries = updated;
        Ok(newly)
    }

    /// The first unaccepted entry a read of `series` over `range` touches.
    pub(crate) fn blocking(&self, series: SeriesId, range: TimeRange) -> Option<Damage> {
        self.lock()
            .iter()
            .find(|d| !d.accepted && d.touches(series, range))
            .cloned()
    }

    /// The first unaccepted entry of unknown series whose times overlap `range`.
    pub(crate) fn blocking_unknown(&self, range: TimeRange) -> Option<Damage> {
        self.lock()
            .iter()
            .find(|d| !d.accepted && d.series.is_none() && d.touches(SeriesId(0), range))
            .cloned()
    }

    /// Every entry (accepted or not) a read of `series` over `range` touches.
    pub(crate) fn touching(&self, series: SeriesId, range: TimeRange) -> Vec<Damage> {
        self.lock()
            .iter()
            .filter(|d| d.touches(series, range))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(series: Option<u64>, accepted: bool) -> Damage {
        Damage {
            source: "/data/chunks/00000000000000000003.seg".to_owned(),
            offset: 4096,
            length: 1100,
            reason: "record checksum mismatch\twith a tab".to_owned(),
            series: series.map(SeriesId),
            range: series.map(|_| TimeRange { start: -5, end: 90 }),
            accepted,
        }
    }

    #[test]
    fn entries_survive_a_reload_and_a_damaged_line_is_itself_damage() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = DamageLog::load(dir.path(), false).expect("load");
        assert!(log.record(sample(Some(7), false)).expect("record"));
        assert!(
            !log.record(sample(Some(7), false)).expect("again"),
            "deduplicated"
        );
        assert!(log.record(sample(None, true)).expect("record"));
        let reloaded = DamageLog::load(dir.path(), false).expect("reload");
        let mut want = sample(Some(7), false);
        want.reason = want.reason.replace('\t', " ");
        assert_eq!(reloaded.all()[0], want);
        assert_eq!(reloaded.all().len(), 2);
        assert!(
            reloaded
                .blocking(
                    SeriesId(7),
                    TimeRange {
                        start: 90,
                        end: 100
                    }
                )
                .is_some()
        );
        assert!(
            reloaded
                .blocking(
                    SeriesId(7),
                    TimeRange {
                        start: 91,
                        end: 100
                    }
                )
                .is_none()
        );
        assert!(
            reloaded.blocking(SeriesId(8), TimeRange::ALL).is_none(),
            "accepted"
        );

        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[10] ^= 1;
        std::fs::write(&path, &bytes).expect("write");
        let damaged = DamageLog::load(dir.path(), false).expect("load damaged");
        let all = damaged.all();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].series, None, "unknown scope");
        assert!(!all[0].accepted);
        assert!(damaged.blocking(SeriesId(1234), TimeRange::ALL).is_some());

        assert_eq!(damaged.accept_all().expect("accept"), 1);
        assert!(
            DamageLog::load(dir.path(), false)
                .expect("reload")
                .blocking(SeriesId(1234), TimeRange::ALL)
                .is_none()
        );
    }
}
