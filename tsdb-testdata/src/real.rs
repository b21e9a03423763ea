//! The real recordings of the shared data directory, and the rule for when it is absent.
//!
//! The directory is `$TSDB_SHARED_DATA` when that variable is set, else `../shared/data`
//! next to the workspace root. It holds `nab/<group>/*.csv` (header `timestamp,value`,
//! timestamps `YYYY-MM-DD HH:MM:SS` UTC) and `alp/*.csv` (one value a line, no timestamps).

use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;
use tsdb_core::{Error, Result};

use crate::Dataset;

/// Environment variable that overrides the shared data directory.
pub const SHARED_DATA_ENV: &str = "TSDB_SHARED_DATA";

/// Timestamp of the first point of every ALP column (2024-01-01T00:00:00Z, in ms).
pub const ALP_START_MS: i64 = 1_704_067_200_000;

/// Spacing of the grid ALP columns are paired with: 1 s in ms.
pub const ALP_STEP_MS: i64 = 1_000;

/// Where the shared data directory should be (whether or not it exists).
pub fn shared_data_path() -> PathBuf {
    match std::env::var_os(SHARED_DATA_ENV) {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"),
    }
}

/// The shared data directory, applying the project's rule when it is absent: print a loud
/// notice naming `what` was skipped and return `None`, or **panic** when the environment
/// variable `CI` is `true` (CI must never skip silently).
pub fn shared_data_dir(what: &str) -> Option<PathBuf> {
    let path = shared_data_path();
    if path.is_dir() {
        return Some(path);
    }
    let msg = format!(
        "shared data directory {} is absent (set {SHARED_DATA_ENV} to override)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}; CI=true forbids skipping {what}");
    }
    eprintln!("\n!!!!! SKIPPED: {what}: {msg} !!!!!\n");
    None
}

fn corrupt(path: &Path, offset: usize, reason: impl std::fmt::Display) -> Error {
    Error::corrupt(path.display(), offset as u64, reason)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path.display(), e))
}

/// Iterates over the non-empty lines of `text` with their byte offsets.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').filter_map(move |raw| {
        let at = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        (!line.is_empty()).then_some((at, line))
    })
}

fn parse_value(path: &Path, at: usize, s: &str) -> Result<f64> {
    s.trim()
        .parse::<f64>()
        .map_err(|e| corrupt(path, at, format_args!("value {s:?}: {e}")))
}

/// Parses a NAB CSV file (header `timestamp,value`; `YYYY-MM-DD HH:MM:SS` UTC timestamps
/// become milliseconds since the epoch). Errors name the file and the byte offset of the line.
pub fn parse_nab(path: &Path, text: &str) -> Result<Vec<(i64, f64)>> {
    let mut it = lines(text);
    match it.next() {
        Some((_, header)) if header.trim() == "timestamp,value" => {}
        other => {
            return Err(corrupt(
                path,
                0,
                format_args!(
                    "expected the header \"timestamp,value\", found {:?}",
                    other.map(|l| l.1)
                ),
            ));
        }
    }
    it.map(|(at, line)| {
        let (t, v) = line
            .split_once(',')
            .ok_or_else(|| corrupt(path, at, format_args!("no comma in line {line:?}")))?;
        let t = NaiveDateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S")
            .map_err(|e| corrupt(path, at, format_args!("timestamp {t:?}: {e}")))?;
        Ok((t.and_utc().timestamp_millis(), parse_value(path, at, v)?))
    })
    .collect()
}

/// Parses an ALP column (one value a line) and pairs value `i` with the timestamp
/// `ALP_START_MS + i * ALP_STEP_MS`.
pub fn parse_alp(path: &Path, text: &str) -> Result<Vec<(i64, f64)>> {
    lines(text)
        .enumerate()
        .map(|(i, (at, line))| {
            Ok((
                ALP_START_MS + i as i64 * ALP_STEP_MS,
                parse_value(path, at, line)?,
            ))
        })
        .collect()
}

fn csv_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))? {
        let path = entry.map_err(|e| Error::io(dir.display(), e))?.path();
        if path.extension().is_some_and(|e| e == "csv") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))? {
        let path = entry.map_err(|e| Error::io(dir.display(), e))?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    dirs.sort();
    Ok(dirs)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Loads every `nab/<group>/*.csv` under `data_dir`, as datasets of group `nab/<group>`,
/// sorted by path.
pub fn load_nab(data_dir: &Path) -> Result<Vec<Dataset>> {
    let mut out = Vec::new();
    for group in subdirs(&data_dir.join("nab"))? {
        for file in csv_files(&group)? {
            out.push(Dataset {
                group: format!("nab/{}", stem(&group)),
                name: stem(&file),
                points: parse_nab(&file, &read(&file)?)?,
            });
        }
    }
    Ok(out)
}

/// Loads every `alp/*.csv` under `data_dir`, as datasets of group `alp`, sorted by path.
pub fn load_alp(data_dir: &Path) -> Result<Vec<Dataset>> {
    csv_files(&data_dir.join("alp"))?
        .into_iter()
        .map(|file| {
            Ok(Dataset {
                group: "alp".to_owned(),
                name: stem(&file),
                points: parse_alp(&file, &read(&file)?)?,
            })
        })
        .collect()
}

/// Every real recording (NAB, then ALP), or `None` when the shared data directory is absent
/// (see [`shared_data_dir`] for the skip/fail rule; `what` names the caller in the notice).
pub fn datasets(what: &str) -> Result<Option<Vec<Dataset>>> {
    let Some(dir) = shared_data_dir(what) else {
        return Ok(None);
    };
    let mut all = load_nab(&dir)?;
    all.extend(load_alp(&dir)?);
    Ok(Some(all))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nab_lines_into_milliseconds() {
        let text = "timestamp,value\n2014-02-14 14:30:00,0.132\r\n2014-02-14 14:35:00,-1e3\n\n";
        let pts = parse_nab(Path::new("x.csv"), text).expect("valid");
        assert_eq!(
            pts,
            [(1_392_388_200_000, 0.132), (1_392_388_500_000, -1000.0)]
        );
    }

    #[test]
    fn nab_errors_name_file_and_offset() {
        let text = "timestamp,value\n2014-02-14 14:30:00,0.1\n2014-02-30 14:35:00,1\n";
        match parse_nab(Path::new("bad.csv"), text) {
            Err(Error::Corrupt {
                source_name,
                offset,
                ..
            }) => {
                assert_eq!((source_name.as_str(), offset), ("bad.csv", 40));
            }
            other => panic!("want Corrupt, got {other:?}"),
        }
        assert!(parse_nab(Path::new("h.csv"), "time,value\n").is_err());
        assert!(
            parse_nab(
                Path::new("v.csv"),
                "timestamp,value\n2014-02-14 14:30:00,x\n"
            )
            .is_err()
        );
    }

    #[test]
    fn parses_alp_on_a_one_second_grid() {
        let pts = parse_alp(Path::new("a.csv"), "1.5\n-0.0\n3\n").expect("valid");
        assert_eq!(pts.len(), 3);
        assert_eq!(pts[2], (ALP_START_MS + 2_000, 3.0));
        assert_eq!(pts[1].1.to_bits(), (-0.0f64).to_bits());
    }

    #[test]
    fn loads_the_shared_recordings() {
        let Some(all) = datasets("tsdb-testdata loads_the_shared_recordings").expect("loads")
        else {
            return;
        };
        let nab: usize = all
            .iter()
            .filter(|d| d.group.starts_with("nab/"))
            .map(|d| d.points.len())
            .sum();
        let alp = all.iter().filter(|d| d.group == "alp").count();
        assert_eq!(alp, 31, "ALP columns");
        assert!(nab > 140_000, "only {nab} NAB points");
        assert!(all.iter().any(|d| d.group == "nab/realKnownCause"));
    }
}
