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

    /// `t` in this unit as milliseconds since the epoch (finer units rounded down), `None`
    /// when that is beyond what an `i64` of milliseconds holds.
    pub fn checked_to_millis(self, t: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds | Precision::Microseconds | Precision::Milliseconds => {
                Some(self.to_millis(t))
            }
            Precision::Seconds => t.checked_mul(1_000),
            Precision::Minutes => t.checked_mul(60_000),
            Precision::Hours => t.checked_mul(3_600_000),
        }
    }

    /// Milliseconds in one unit.
    pub(crate) fn millis_per_unit(self) -> f64 {
        match self {
            Precision::Nanoseconds => 1e-6,
            Precision::Microseconds => 1e-3,
            Precision::Milliseconds => 1.0,
            Precision::Seconds => 1e3,
            Precision::Minutes => 6e4,
            Precision::Hours => 3.6e6,
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
        assert_eq!(Precision::Hours.checked_to_millis(i64::MAX), None);
        assert_eq!(Precision::Seconds.checked_to_millis(-3), Some(-3_000));
        assert_eq!(
            Precision::Nanoseconds.checked_to_millis(i64::MIN),
            Some(i64::MIN / 1_000_000 - 1)
        );
        assert_eq!(Precision::from_influx("u"), Some(Precision::Microseconds));
        assert_eq!(Precision::from_influx("x"), None);
    }
}
