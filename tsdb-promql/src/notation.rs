//! The notations people type, one parser each for the whole workspace (the command line,
//! the server's flags, configuration file and HTTP parameters, and the PromQL test scripts):
//!
//! - a **duration** is Prometheus's: `500ms`, `10s`, `5m`, `1h30m`, `7d`, `2w`, `1y` (365
//!   days), or a bare number of **seconds** (`1.5`), as Prometheus's HTTP API reads `step`
//!   and `timeout`;
//! - a **time** is `now`, `now-1h` or `now+5m`, RFC 3339 (`2024-01-01T00:00:00Z`),
//!   `YYYY-MM-DD HH:MM:SS[.fff]` or `YYYY-MM-DD` (UTC), or a number of **seconds** since the
//!   epoch (`1700000000.5`, as the HTTP API reads `time`, `start` and `end`), or of
//!   milliseconds when it says so (`1700000000000ms`).
//!
//! ```
//! use tsdb_promql::notation::{parse_duration, parse_time};
//! use std::time::Duration;
//! assert_eq!(parse_duration("1h30m")?, Duration::from_secs(5400));
//! assert_eq!(parse_duration("1.5")?, Duration::from_millis(1500));
//! let now = 1_700_000_000_000;
//! assert_eq!(parse_time("now-1m", now)?, now - 60_000);
//! assert_eq!(parse_time("1700000000", now)?, 1_700_000_000_000);
//! assert_eq!(parse_time("1700000000123ms", now)?, 1_700_000_000_123);
//! assert_eq!(parse_time("2023-11-14T22:13:20Z", now)?, 1_700_000_000_000);
//! # Ok::<(), tsdb_promql::notation::NotationError>(())
//! ```

use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime};

/// Text that is not a duration or a time: what was given and what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not {expected}")]
pub struct NotationError {
    text: String,
    expected: &'static str,
}

impl NotationError {
    fn new(text: &str, expected: &'static str) -> Self {
        NotationError {
            text: text.to_owned(),
            expected,
        }
    }
}

const DURATION: &str = "a duration (e.g. 500ms, 10s, 5m, 1h30m, 7d, or a number of seconds)";
const TIME: &str = "a time (now, now-1h, RFC 3339, YYYY-MM-DD [HH:MM:SS], seconds since the \
                    epoch, or milliseconds written as 1700000000000ms)";

/// A number of seconds as Go's `strconv.ParseFloat` reads the forms people send (no
/// hexadecimal floats, no underscores, no surrounding spaces); `None` for anything else.
pub fn parse_seconds(text: &str) -> Option<f64> {
    // Rust also reads "inf"/"nan" in any case, as Go does.
    text.parse::<f64>().ok()
}

/// A Prometheus duration (`1h30m`, `5m`, `0`) or a bare number of seconds. Negative and
/// non-finite durations are refused.
pub fn parse_duration(text: &str) -> Result<Duration, NotationError> {
    let t = text.trim();
    if let Some(secs) = parse_seconds(t) {
        return Duration::try_from_secs_f64(secs).map_err(|_| NotationError::new(text, DURATION));
    }
    prometheus_duration(t)
        .map(Duration::from_millis)
        .ok_or_else(|| NotationError::new(text, DURATION))
}

/// Prometheus's duration grammar, in milliseconds: units from the largest down (`y`, `w`,
/// `d`, `h`, `m`, `s`, `ms`), each at most once, or `0`.
fn prometheus_duration(t: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if t == "0" {
        return Some(0);
    }
    let (mut rest, mut total, mut next_unit, mut any) = (t, 0u64, 0usize, false);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let at = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == &rest[..unit_len])?
            + next_unit;
        total = n
            .checked_mul(UNITS[at].1)
            .and_then(|v| total.checked_add(v))?;
        rest = &rest[unit_len..];
        next_unit = at + 1;
        any = true;
    }
    any.then_some(total)
}

/// [`parse_duration`] in whole milliseconds (saturating at `i64::MAX`).
pub fn parse_duration_ms(text: &str) -> Result<i64, NotationError> {
    parse_duration(text).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Seconds since the epoch as milliseconds, rounded to the millisecond as Prometheus rounds
/// them; `None` when out of its range (±9.2e15 s).
pub fn seconds_to_ms(secs: f64) -> Option<i64> {
    if !secs.is_finite() || secs.abs() >= 9.2e15 {
        return None;
    }
    let (whole, frac) = (secs.trunc(), (secs.fract() * 1000.0).round() / 1000.0);
    let (mut sec, mut nsec) = (whole as i64, (frac * 1e9) as i64);
    if nsec < 0 {
        sec -= 1;
        nsec += 1_000_000_000;
    }
    Some(sec * 1000 + nsec / 1_000_000)
}

/// A time (see the module doc) as milliseconds since the epoch; `now_ms` is what `now` means.
pub fn parse_time(text: &str, now_ms: i64) -> Result<i64, NotationError> {
    let bad = || NotationError::new(text, TIME);
    let t = text.trim();
    if let Some(rest) = t.strip_prefix("now") {
        let rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(now_ms);
        }
        let (sign, dur) = match (rest.strip_prefix('-'), rest.strip_prefix('+')) {
            (Some(d), _) => (-1, d),
            (_, Some(d)) => (1, d),
            _ => return Err(bad()),
        };
        let ms = parse_duration_ms(dur.trim()).map_err(|_| bad())?;
        return Ok(now_ms.saturating_add(sign * ms));
    }
    if let Some(ms) = t.strip_suffix("ms") {
        return ms.trim().parse::<i64>().map_err(|_| bad());
    }
    if let Some(secs) = parse_seconds(t.strip_suffix('s').unwrap_or(t)) {
        return seconds_to_ms(secs).ok_or_else(bad);
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Ok(dt.timestamp_millis());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Ok(dt.and_utc().timestamp_millis());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(dt) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(dt.and_utc().timestamp_millis());
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn durations_are_prometheus_durations_or_seconds() {
        let ms = |t: &str| parse_duration_ms(t);
        assert_eq!(ms("500ms"), Ok(500));
        assert_eq!(ms("10s"), Ok(10_000));
        assert_eq!(ms("1h30m"), Ok(5_400_000));
        assert_eq!(ms("7d"), Ok(604_800_000));
        assert_eq!(ms("2w"), Ok(1_209_600_000));
        assert_eq!(ms("1y"), Ok(31_536_000_000));
        assert_eq!(ms("0"), Ok(0));
        assert_eq!(ms("15"), Ok(15_000));
        assert_eq!(ms("0.25"), Ok(250));
        assert_eq!(ms("0s"), Ok(0));
        assert_eq!(ms("18574200001ms"), Ok(18_574_200_001));
        assert_eq!(
            ms("1y2w3d4h5m6s7ms"),
            Ok(((((365 + 14 + 3) * 24 + 4) * 60 + 5) * 60 + 6) * 1000 + 7)
        );
        for bad in [
            "",
            "-1",
            "-5m",
            "5 minutes",
            "1h-30m",
            "inf",
            "NaN",
            "m",
            "0x",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        let why = parse_duration("5 minutes").map_or_else(|e| e.to_string(), |_| String::new());
        assert!(why.contains("a duration"), "{why}");
    }

    #[test]
    fn times_take_every_documented_form() {
        let now = 1_700_000_000_000;
        let t = |s: &str| parse_time(s, now);
        assert_eq!(t("now"), Ok(now));
        assert_eq!(t("now-1h"), Ok(now - 3_600_000));
        assert_eq!(t("now+90s"), Ok(now + 90_000));
        assert_eq!(t("1700000000"), Ok(1_700_000_000_000));
        assert_eq!(t("1435781451.7816"), Ok(1_435_781_451_782));
        assert_eq!(t("-1.5"), Ok(-1_500));
        assert_eq!(t("1700000000s"), Ok(1_700_000_000_000));
        assert_eq!(t("1700000000123ms"), Ok(1_700_000_000_123));
        assert_eq!(t("2024-01-01T00:00:00Z"), Ok(1_704_067_200_000));
        assert_eq!(t("2024-01-01T01:00:00+01:00"), Ok(1_704_067_200_000));
        assert_eq!(t("2024-01-01 00:00:01.5"), Ok(1_704_067_201_500));
        assert_eq!(t("2024-01-01"), Ok(1_704_067_200_000));
        for bad in [
            "",
            "yesterday",
            "now-",
            "now*2",
            "2024-13-01",
            "1e400",
            "12ms3",
        ] {
            assert!(t(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn a_time_written_in_any_form_reads_back(ms in -62_000_000_000_000i64..253_000_000_000_000) {
            let now = 0;
            prop_assert_eq!(parse_time(&format!("{ms}ms"), now), Ok(ms));
            let dt = DateTime::from_timestamp_millis(ms).expect("in chrono's range");
            prop_assert_eq!(parse_time(&dt.to_rfc3339(), now), Ok(ms));
            let (sign, abs) = (if ms < 0 { "-" } else { "" }, ms.unsigned_abs());
            let secs = format!("{sign}{}.{:03}", abs / 1000, abs % 1000);
            prop_assert_eq!(parse_time(&secs, now), Ok(ms));
        }

        #[test]
        fn a_duration_in_units_reads_back(h in 0u64..1000, m in 0u64..60, s in 0u64..60, milli in 0u64..1000) {
            let mut text = String::new();
            for (n, unit) in [(h, "h"), (m, "m"), (s, "s"), (milli, "ms")] {
                if n > 0 {
                    text.push_str(&format!("{n}{unit}"));
                }
            }
            let want = ((h * 60 + m) * 60 + s) * 1000 + milli;
            if text.is_empty() {
                text.push('0');
            }
            prop_assert_eq!(parse_duration_ms(&text), Ok(want as i64));
        }
    }
}
