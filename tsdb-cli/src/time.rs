//! Parsing of the times and durations given on the command line (CSV timestamps are
//! `tsdb_formats::csv`'s).

use chrono::DateTime;
use gorilla_tsdb::Error;
use gorilla_tsdb::promql::notation;

/// A duration in the workspace's one notation ([`gorilla_tsdb::promql::notation`]: `500ms`,
/// `10s`, `1h30m`, `7d`, or a bare number of seconds). Returns milliseconds.
pub(crate) fn parse_duration(text: &str) -> Result<i64, Error> {
    notation::parse_duration_ms(text).map_err(|e| Error::invalid_input(e.to_string()))
}

/// A time in the workspace's one notation ([`gorilla_tsdb::promql::notation`]: `now`,
/// `now-1h`, RFC 3339, `YYYY-MM-DD [HH:MM:SS]`, seconds since the epoch, or `<n>ms`).
/// Returns milliseconds since the epoch.
pub(crate) fn parse_time(text: &str, now_ms: i64) -> Result<i64, Error> {
    notation::parse_time(text, now_ms).map_err(|e| Error::invalid_input(e.to_string()))
}

/// A hint for a time flag given as a bare number so large that, read as seconds (the
/// notation's rule, Prometheus's too), it lies after the year 5000: most likely milliseconds.
/// `None` for any other text.
pub(crate) fn milliseconds_hint(flag: &str, text: &str) -> Option<String> {
    let text = text.trim();
    let seconds: f64 = text.parse().ok()?;
    // 95,617,584,000 s after the epoch is 5000-01-01.
    (seconds.is_finite() && seconds >= 95_617_584_000.0).then(|| {
        format!(
            "note: {flag} {text} is read as seconds since the epoch (after the year 5000); for \
             milliseconds write {text}ms"
        )
    })
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
    fn a_time_in_milliseconds_given_as_seconds_gets_a_hint() {
        let hint = milliseconds_hint("--time", "1700000500000").expect("a hint");
        assert!(hint.contains("--time 1700000500000") && hint.contains("1700000500000ms"));
        for text in [
            "1700000500",
            "1700000500.5",
            "now",
            "2023-11-14",
            "1700000500000ms",
        ] {
            assert_eq!(milliseconds_hint("--time", text), None, "{text}");
        }
        // Milliseconds given as milliseconds parse to the same instant as the seconds.
        assert_eq!(
            parse_time("1700000500000ms", 0).expect("parses"),
            parse_time("1700000500", 0).expect("parses")
        );
    }

    #[test]
    fn the_command_line_reads_the_workspace_notation() {
        // Bare numbers are seconds, as in Prometheus's API; milliseconds say so.
        assert_eq!(parse_duration("250").expect("ok"), 250_000);
        assert_eq!(parse_duration("1h30m").expect("ok"), 5_400_000);
        assert!(parse_duration("5x").is_err());
        assert_eq!(parse_time("now-1h", 10_000_000).expect("ok"), 6_400_000);
        assert_eq!(parse_time("1234", 0).expect("ok"), 1_234_000);
        assert_eq!(parse_time("1234ms", 0).expect("ok"), 1234);
        assert!(parse_time("yesterday", 0).is_err());
        assert_eq!(format_time(1_704_067_200_000), "2024-01-01T00:00:00Z");
    }
}
