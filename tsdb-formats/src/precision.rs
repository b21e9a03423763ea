//! [`Precision`]: the unit of numeric timestamps.

/// The unit of a format's integer timestamps (Influx's `precision` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (Influx's default).
    Nanoseconds,
    /// Microseconds.
    Microseconds,
    /// Milliseconds (Prometheus's unit).
    Milliseconds,
    /// Seconds.
    Seconds,
    /// Minutes (InfluxDB 1.x's `m`).
    Minutes,
    /// Hours (InfluxDB 1.x's `h`).
    Hours,
}

impl Precision {
    /// The precision named by an InfluxDB `precision` parameter: `ns`/`n`, `us`/`u`/`µ`,
    /// `ms`, `s`, `m`, `h` (InfluxDB 1.x and 2.x spellings).
    pub fn from_influx(text: &str) -> Option<Precision> {
        Some(match text {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" | "µ" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            _ => return None,
        })
    }

    /// `t` in this unit as milliseconds since the epoch (finer units rounded down;
    /// coarser ones saturate instead of overflowing).
    pub fn to_millis(self, t: i64) -> i64 {
        match self {
            Precision::Nanoseconds => t.div_euclid(1_000_000),
            Precision::Microseconds => t.div_euclid(1_000),
            Precision::Milliseconds => t,
            Precision::Seconds => t.saturating_mul(1_000),
            Precision::Minutes => t.saturating_mul(60_000),
            Precision::Hours => t.saturating_mul(3_600_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_convert_to_milliseconds_rounding_down() {
        assert_eq!(Precision::Nanoseconds.to_millis(1_999_999), 1);
        assert_eq!(Precision::Nanoseconds.to_millis(-1), -1);
        assert_eq!(Precision::Microseconds.to_millis(2_500), 2);
        assert_eq!(Precision::Seconds.to_millis(3), 3_000);
        assert_eq!(Precision::Hours.to_millis(i64::MAX), i64::MAX);
        assert_eq!(Precision::from_influx("u"), Some(Precision::Microseconds));
        assert_eq!(Precision::from_influx("x"), None);
    }
}
