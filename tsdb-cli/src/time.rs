//! Parsing of the times and durations given on the command line and in CSV files.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use gorilla_tsdb::Error;

/// A duration such as `500ms`, `10s`, `5m`, `1h`, `7d`, `1w`, or combined `1h30m`; a bare
/// number is milliseconds. Returns milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<i64, Error> {
    let bad = || {
        Error::invalid_input(format_args!(
            "bad duration {text:?}: expected e.g. 500ms, 10s, 5m, 1h, 7d or a number of ms"
        ))
    };
    let s = text.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let mut total: i64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "y" => 31_536_000_000,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    Ok(total)
}

/// A point in time: `now`, `now-1h`, `now+5m`, RFC 3339 (`2024-01-01T00:00:00Z`),
/// `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD` (UTC), or a number of milliseconds since the epoch.
/// Returns milliseconds since the epoch.
pub(crate) fn parse_time(text: &str, now_ms: i64) -> Result<i64, Error> {
    let s = text.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now_ms);
        }
        if let Some(d) = rest.strip_prefix('-') {
            return Ok(now_ms.saturating_sub(parse_duration(d)?));
        }
        if let Some(d) = rest.strip_prefix('+') {
            return Ok(now_ms.saturating_add(parse_duration(d)?));
        }
    }
    parse_timestamp(s, 1).map_err(|_| {
        Error::invalid_input(format_args!(
            "bad time {text:?}: expected now, now-1h, RFC 3339, \"YYYY-MM-DD HH:MM:SS\", \
             YYYY-MM-DD or milliseconds since the epoch"
        ))
    })
}

/// A timestamp in a file: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]`, `YYYY-MM-DD`, or an integer
/// in units of `unit_ms` milliseconds (fractions allowed). Returns milliseconds.
pub(crate) fn parse_timestamp(s: &str, unit_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i64>() {
        return n
            .checked_mul(unit_ms)
            .ok_or_else(|| format!("timestamp {s} overflows"));
    }
    if let Ok(x) = s.parse::<f64>()
        && x.is_finite()
    {
        return Ok((x * unit_ms as f64).round() as i64);
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
    Err(format!(
        "timestamp {s:?} is neither a number nor a date (RFC 3339 or YYYY-MM-DD HH:MM:SS)"
    ))
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds shown when not zero).
pub(crate) fn format_time(ms: i64) -> String {
    match DateTime::from_timestamp_millis(ms) {
        Some(t) if ms % 1000 == 0 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(t) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => ms.to_string(),
    }
}

/// Now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").expect("ok"), 300_000);
        assert_eq!(parse_duration("1h30m").expect("ok"), 5_400_000);
        assert_eq!(parse_duration("250").expect("ok"), 250);
        assert_eq!(parse_duration("10ms").expect("ok"), 10);
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("now-1h", 10_000_000).expect("ok"), 6_400_000);
        assert_eq!(
            parse_time("2024-01-01T00:00:00Z", 0).expect("ok"),
            1_704_067_200_000
        );
        assert_eq!(
            parse_time("2024-01-01 00:00:01", 0).expect("ok"),
            1_704_067_201_000
        );
        assert_eq!(parse_time("2024-01-01", 0).expect("ok"), 1_704_067_200_000);
        assert_eq!(parse_time("1234", 0).expect("ok"), 1234);
        assert!(parse_time("yesterday", 0).is_err());
        assert_eq!(format_time(1_704_067_200_000), "2024-01-01T00:00:00Z");
    }
}
