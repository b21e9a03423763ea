//! CSV of points: a header line naming a `timestamp` and a `value` column (any case, any
//! position, other columns ignored), then one record per line.
//!
//! Fields are separated by commas and trimmed; a field may be double-quoted (`""` inside
//! is a quote), and must then close on its own line: a record is a line, so an unterminated
//! quote costs that line, not the rest of the file. Timestamps are RFC 3339,
//! `YYYY-MM-DD HH:MM:SS[.fff]` (or with a `T`), `YYYY-MM-DD` (UTC), or numbers in
//! [`Options::precision`] (fractions allowed); a number beyond 64-bit milliseconds
//! (`1e30`, `99999999999999999999`) is refused as out of range. Values are Go floats
//! (`NaN` and `+Inf` spelled out are values, `1e400` is out of range).
//!
//! ```
//! use tsdb_formats::csv::{Header, Options};
//! let header = Header::parse(b"time,Value,timestamp")?;
//! assert_eq!(header.scan(b"x, 1.5, 2024-01-01", &Options::default())?, Some((1_704_067_200_000, 1.5)));
//! assert!(header.scan(b"x, 1.5, 1e30", &Options::default()).is_err());
//! # Ok::<(), tsdb_formats::Reject>(())
//! ```

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

use crate::lines::{trim, utf8};
use crate::number::{NumberError, parse_float, parse_i64};
use crate::precision::Precision;
use crate::reject::{Reject, RejectKind, shown};

/// How records are read.
#[derive(Clone, Debug)]
pub struct Options {
    /// Unit of numeric timestamps. Default: milliseconds.
    pub precision: Precision,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            precision: Precision::Milliseconds,
        }
    }
}

/// Where the columns are, from the header line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    timestamp: usize,
    value: usize,
    columns: usize,
}

impl Header {
    /// The header line (a UTF-8 byte order mark before it is skipped).
    pub fn parse(line: &[u8]) -> Result<Header, Reject> {
        let line = utf8(line)?;
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        let mut names = Vec::new();
        for field in Fields::new(line) {
            names.push(field.map_err(|r| r.within("CSV header"))?.into_owned());
        }
        let column = |name: &str| {
            names
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    Reject::new(
                        RejectKind::MissingColumn,
                        format!("the CSV header has no {name:?} column (found {names:?})"),
                    )
                })
        };
        Ok(Header {
            timestamp: column("timestamp")?,
            value: column("value")?,
            columns: names.len(),
        })
    }

    /// Columns the header names.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// One record: `(ms, value)`, or `None` for a blank line. Allocates only to reject (or
    /// for a quoted field with `""` in it).
    pub fn scan(&self, line: &[u8], opts: &Options) -> Result<Option<(i64, f64)>, Reject> {
        let line = utf8(trim(line))?;
        if line.is_empty() {
            return Ok(None);
        }
        let (mut t, mut v) = (None, None);
        let mut found = 0;
        for (i, field) in Fields::new(line).enumerate() {
            let field = field?;
            if i == self.timestamp {
                t = Some(field);
            } else if i == self.value {
                v = Some(field);
            }
            found = i + 1;
        }
        let (Some(t), Some(v)) = (t, v) else {
            return Err(Reject::new(
                RejectKind::MissingColumn,
                format!("expected {} columns, found {found}", self.columns),
            ));
        };
        let t = parse_timestamp(&t, opts.precision)?;
        let v = parse_float(&v).map_err(|e| match e {
            NumberError::Syntax => Reject::new(
                RejectKind::BadValue,
                format!("value {} is not a number", shown(&v)),
            ),
            NumberError::OutOfRange => Reject::new(
                RejectKind::ValueOutOfRange,
                format!("value {} is out of range for a 64-bit float", shown(&v)),
            ),
        })?;
        Ok(Some((t, v)))
    }
}

/// The fields of a record, unquoted and trimmed.
struct Fields<'a> {
    rest: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str) -> Fields<'a> {
        Fields { rest: Some(line) }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Cow<'a, str>, Reject>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest?.trim_start_matches([' ', '\t']);
        let Some(quoted) = s.strip_prefix('"') else {
            let (field, rest) = match s.split_once(',') {
                Some((f, r)) => (f, Some(r)),
                None => (s, None),
            };
            self.rest = rest;
            return Some(Ok(Cow::Borrowed(field.trim_end_matches([' ', '\t']))));
        };
        self.rest = None;
        let b = quoted.as_bytes();
        let mut i = 0;
        let mut doubled = false;
        let end = loop {
            match memchr::memchr(b'"', &b[i..]) {
                None => {
                    return Some(Err(Reject::new(
                        RejectKind::Syntax,
                        "unterminated quote (a quoted field must close on its line)",
                    )));
                }
                Some(j) if b.get(i + j + 1) == Some(&b'"') => {
                    doubled = true;
                    i += j + 2;
                }
                Some(j) => break i + j,
            }
        };
        let field = &quoted[..end];
        let after = quoted[end + 1..].trim_start_matches([' ', '\t']);
        if let Some(rest) = after.strip_prefix(',') {
            self.rest = Some(rest);
        } else if !after.is_empty() {
            return Some(Err(Reject::new(
                RejectKind::Syntax,
                format!("unexpected {} after a quoted field", shown(after)),
            )));
        }
        Some(Ok(if doubled {
            Cow::Owned(field.replace("\"\"", "\""))
        } else {
            Cow::Borrowed(field)
        }))
    }
}

/// A timestamp: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (or with a `T`), `YYYY-MM-DD` (UTC),
/// or a number in `unit` (fractions allowed; finer units than milliseconds are rounded
/// down, coarser ones to the nearest). Returns milliseconds since the epoch.
pub fn parse_timestamp(text: &str, unit: Precision) -> Result<i64, Reject> {
    let s = text.trim();
    let out_of_range = || {
        Reject::new(
            RejectKind::TimestampOutOfRange,
            format!(
                "timestamp {} is out of range (64-bit milliseconds since the epoch)",
                shown(s)
            ),
        )
    };
    match parse_i64(s.as_bytes()) {
        Ok(n) => return unit.checked_to_millis(n).ok_or_else(out_of_range),
        Err(NumberError::OutOfRange) => return Err(out_of_range()),
        Err(NumberError::Syntax) => {}
    }
    let looks_numeric = s
        .bytes()
        .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E'));
    if looks_numeric {
        match parse_float(s) {
            Ok(x) => {
                let ms = x * unit.millis_per_unit();
                // Below 2^63 (the bound is exact as a float).
                if ms.is_nan() || ms.abs() >= 9_223_372_036_854_775_808.0 {
                    return Err(out_of_range());
                }
                let ms = if unit.millis_per_unit() < 1.0 {
                    ms.floor()
                } else {
                    ms.round()
                };
                return Ok(ms as i64);
            }
            Err(NumberError::OutOfRange) => return Err(out_of_range()),
            Err(NumberError::Syntax) => {}
        }
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc().timestamp_millis());
    }
    Err(Reject::new(
        RejectKind::BadTimestamp,
        format!(
            "timestamp {} is neither a number nor a date (RFC 3339 or YYYY-MM-DD HH:MM:SS)",
            shown(s)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header::parse(b"timestamp,value").expect("header")
    }

    fn scan(line: &[u8]) -> Result<Option<(i64, f64)>, Reject> {
        header().scan(line, &Options::default())
    }

    fn kind(line: &[u8]) -> RejectKind {
        match scan(line) {
            Err(r) => r.kind,
            Ok(v) => panic!("{:?} accepted: {v:?}", String::from_utf8_lossy(line)),
        }
    }

    #[test]
    fn headers_find_their_columns() {
        let h = Header::parse(b"\xef\xbb\xbf\"Value\" , x, TimeStamp").expect("header");
        assert_eq!((h.value, h.timestamp, h.columns()), (0, 2, 3));
        let r = Header::parse(b"time,value").expect_err("no timestamp");
        assert_eq!(r.kind, RejectKind::MissingColumn);
        assert!(r.message.contains("\"timestamp\""), "{r}");
        assert_eq!(
            Header::parse(b"timestamp,\"value").map_err(|r| r.kind),
            Err(RejectKind::Syntax)
        );
    }

    #[test]
    fn records_and_their_timestamps() {
        assert_eq!(scan(b" 1000 , 1.5 "), Ok(Some((1000, 1.5))));
        assert_eq!(scan(b"  "), Ok(None));
        assert_eq!(
            scan(b"\"1000\",\"2\"\"\""),
            Err(Reject::new(
                RejectKind::BadValue,
                "value \"2\\\"\" is not a number"
            ))
        );
        assert_eq!(
            scan(b"2024-01-01T00:00:01Z,1"),
            Ok(Some((1_704_067_201_000, 1.0)))
        );
        assert_eq!(
            scan(b"2024-01-01 00:00:01.5,1"),
            Ok(Some((1_704_067_201_500, 1.0)))
        );
        assert_eq!(scan(b"1.5e3,NaN").map(|r| r.map(|p| p.0)), Ok(Some(1500)));
        assert_eq!(scan(b"-5,+Inf"), Ok(Some((-5, f64::INFINITY))));
        let seconds = Options {
            precision: Precision::Seconds,
        };
        assert_eq!(header().scan(b"1.0005,1", &seconds), Ok(Some((1001, 1.0))));
        let nanos = Options {
            precision: Precision::Nanoseconds,
        };
        assert_eq!(header().scan(b"1999999.9,1", &nanos), Ok(Some((1, 1.0))));
        assert_eq!(
            header()
                .scan(b"9223372036854775807,1", &seconds)
                .map_err(|r| r.kind),
            Err(RejectKind::TimestampOutOfRange)
        );
    }

    #[test]
    fn each_listed_case_is_a_named_reject_of_its_line() {
        assert_eq!(kind(b"1e30,1"), RejectKind::TimestampOutOfRange);
        assert_eq!(
            kind(b"99999999999999999999,1"),
            RejectKind::TimestampOutOfRange
        );
        assert_eq!(
            kind(b"-99999999999999999999,1"),
            RejectKind::TimestampOutOfRange
        );
        assert_eq!(kind(b"1e400,1"), RejectKind::TimestampOutOfRange);
        assert_eq!(kind(b"inf,1"), RejectKind::BadTimestamp);
        assert_eq!(kind(b"1000,1e400"), RejectKind::ValueOutOfRange);
        assert_eq!(kind(b"1000,\"1"), RejectKind::Syntax);
        assert_eq!(kind(b"1000,\"1\"x"), RejectKind::Syntax);
        assert_eq!(kind(b"1000,\xff"), RejectKind::InvalidUtf8);
        assert_eq!(kind(b"1000"), RejectKind::MissingColumn);
        assert_eq!(kind(b"yesterday,1"), RejectKind::BadTimestamp);
        assert_eq!(kind(b"1000,abc"), RejectKind::BadValue);
        let r = scan(b"1000").expect_err("one column");
        assert_eq!(r.message, "expected 2 columns, found 1");
    }
}
