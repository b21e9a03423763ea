//! Numbers in text: floats as Go's `strconv.ParseFloat` reads them (what Prometheus and
//! InfluxDB use), integers with overflow told apart from bad syntax.

/// Why a token is not a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumberError {
    /// Not the syntax of a number.
    Syntax,
    /// A well-formed number beyond the type's range (`1e400` for a float,
    /// `99999999999999999999` for a 64-bit integer).
    OutOfRange,
}

/// Exact powers of ten as floats (10^22 is the largest a 64-bit float holds exactly).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// A float: decimal or exponent notation with an optional sign, `NaN`, `Inf`, `+Inf`,
/// `-Inf` and `Infinity` in any case. A number too large for a 64-bit float (`1e400`) is
/// [`NumberError::OutOfRange`], not infinity; one too small becomes zero, as in Go.
///
/// ```
/// use tsdb_formats::{NumberError, parse_float};
/// assert_eq!(parse_float("12.75"), Ok(12.75));
/// assert_eq!(parse_float("-Inf"), Ok(f64::NEG_INFINITY));
/// assert!(parse_float("NaN").is_ok_and(f64::is_nan));
/// assert_eq!(parse_float("1e400"), Err(NumberError::OutOfRange));
/// assert_eq!(parse_float("one"), Err(NumberError::Syntax));
/// ```
pub fn parse_float(text: &str) -> Result<f64, NumberError> {
    if let Some(v) = fast_decimal(text.as_bytes()) {
        return Ok(v);
    }
    let v: f64 = text.parse().map_err(|_| NumberError::Syntax)?;
    if v.is_infinite() {
        let unsigned = text.trim_start_matches(['+', '-']);
        if !unsigned.starts_with(['i', 'I']) {
            return Err(NumberError::OutOfRange);
        }
    }
    Ok(v)
}

/// `[+-]?digits[.digits]` with at most 19 digits, a mantissa below 2^53 and at most 22
/// decimals: an exact integer divided by an exact power of ten, which IEEE division rounds
/// correctly (Clinger's fast path). `None` for anything else.
fn fast_decimal(b: &[u8]) -> Option<f64> {
    let (negative, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let mut mantissa: u64 = 0;
    let mut count = 0usize;
    let mut decimals: Option<usize> = None;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                if count == 19 {
                    return None;
                }
                mantissa = mantissa * 10 + u64::from(c - b'0');
                count += 1;
                if let Some(d) = decimals.as_mut() {
                    *d += 1;
                }
            }
            b'.' if decimals.is_none() => decimals = Some(0),
            _ => return None,
        }
    }
    let decimals = decimals.unwrap_or(0);
    if count == 0 || mantissa > 1 << 53 || decimals >= POW10.len() {
        return None;
    }
    let v = mantissa as f64 / POW10[decimals];
    Some(if negative { -v } else { v })
}

/// A decimal integer with an optional sign.
pub(crate) fn parse_i64(b: &[u8]) -> Result<i64, NumberError> {
    let (negative, digits) = match b.first() {
        Some(b'-') => (true, &b[1..]),
        Some(b'+') => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() {
        return Err(NumberError::Syntax);
    }
    if digits.len() <= 18 {
        // Cannot overflow: one pass.
        let mut n: i64 = 0;
        for &c in digits {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return Err(NumberError::Syntax);
            }
            n = n * 10 + i64::from(d);
        }
        return Ok(if negative { -n } else { n });
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(NumberError::Syntax);
    }
    // Accumulated negatively, so that i64::MIN parses.
    let mut n: i64 = 0;
    for &c in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_sub(i64::from(c - b'0')))
            .ok_or(NumberError::OutOfRange)?;
    }
    if negative {
        Ok(n)
    } else {
        n.checked_neg().ok_or(NumberError::OutOfRange)
    }
}

/// A decimal integer without a sign.
pub(crate) fn parse_u64(b: &[u8]) -> Result<u64, NumberError> {
    let digits = b.strip_prefix(b"+").unwrap_or(b);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(NumberError::Syntax);
    }
    let mut n: u64 = 0;
    for &c in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(c - b'0')))
            .ok_or(NumberError::OutOfRange)?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_follow_go() {
        for (text, want) in [
            ("0", 0.0),
            ("-0", -0.0),
            ("12.34", 12.34),
            ("+12.34", 12.34),
            ("1.", 1.0),
            (".5", 0.5),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
            ("0.30000000000000004", 0.30000000000000004),
            ("9007199254740993", 9007199254740992.0),
            ("123456789012345678901234", 1.2345678901234568e23),
            ("+Inf", f64::INFINITY),
            ("-inf", f64::NEG_INFINITY),
            ("Infinity", f64::INFINITY),
            ("1e-400", 0.0),
        ] {
            let got = parse_float(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
            assert_eq!(got.to_bits(), want.to_bits(), "{text}");
        }
        assert!(parse_float("NaN").is_ok_and(f64::is_nan));
        assert!(parse_float("nan").is_ok_and(f64::is_nan));
        for bad in [
            "", "-", ".", "1.2.3", "1e", "0x10", "1_000", "12a", " 1", "--1",
        ] {
            assert_eq!(parse_float(bad), Err(NumberError::Syntax), "{bad:?}");
        }
        for big in ["1e400", "-1e400", "1e309"] {
            assert_eq!(parse_float(big), Err(NumberError::OutOfRange), "{big}");
        }
    }

    #[test]
    fn fast_path_agrees_with_the_standard_parser() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let digits = x % 10_000_000_000_000;
            let decimals = (x >> 50) as usize % 12;
            let mut text = digits.to_string();
            if decimals < text.len() {
                text.insert(text.len() - decimals, '.');
            }
            let fast = fast_decimal(text.as_bytes());
            let slow: f64 = text.parse().expect("valid");
            assert_eq!(fast.map(f64::to_bits), Some(slow.to_bits()), "{text}");
        }
    }

    #[test]
    fn integers_tell_overflow_apart() {
        assert_eq!(parse_i64(b"1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_i64(b"-42"), Ok(-42));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(
            parse_i64(b"9223372036854775808"),
            Err(NumberError::OutOfRange)
        );
        assert_eq!(
            parse_i64(b"99999999999999999999"),
            Err(NumberError::OutOfRange)
        );
        for bad in [&b""[..], b"-", b"1.5", b"1e3", b"12x"] {
            assert_eq!(parse_i64(bad), Err(NumberError::Syntax));
        }
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_u64(b"18446744073709551616"),
            Err(NumberError::OutOfRange)
        );
        assert_eq!(parse_u64(b"-1"), Err(NumberError::Syntax));
    }
}
