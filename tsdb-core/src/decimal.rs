//! Decimal columns: values that are the doubles nearest to `k / 10^d` for integers `k`, as
//! printed numbers (`57.34`, `0.5`, `12`) are. Codecs store such a column as the integers
//! and the digit count, and decode `k as f64 / 10^d`, which gives the same bits back.

/// Most decimal digits [`decimal_digits`] tries.
pub const MAX_DECIMAL_DIGITS: u8 = 9;

/// Largest integer magnitude a decimal column holds: every integer up to it is an exact
/// `f64`, so `k as f64 / 10^digits` is one correctly rounded division.
const MAX_EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

/// `10^d` for `d` in `0..=MAX_DECIMAL_DIGITS`: what a decoder divides the integers by.
pub const POWERS_OF_TEN: [f64; MAX_DECIMAL_DIGITS as usize + 1] =
    [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// The fewest decimal digits `d` (at most [`MAX_DECIMAL_DIGITS`]) such that every value is
/// exactly `k as f64 / 10^d` for an integer `k`, with those integers: the values as they were
/// printed. `None` when some value is not such a decimal (NaN, an infinity, `-0.0`, or more
/// digits than that), or when `values` is empty.
///
/// ```
/// use tsdb_core::decimal::decimal_digits;
///
/// assert_eq!(decimal_digits(&[0.5, 12.0, 57.34]), Some((2, vec![50, 1200, 5734])));
/// assert_eq!(decimal_digits(&[1.0 / 3.0]), None);
/// ```
pub fn decimal_digits(values: &[f64]) -> Option<(u8, Vec<i64>)> {
    // Checked the way decoding computes it, through the integer (so `-0.0` fails).
    let exact = |v: f64, scale: f64| {
        let k = (v * scale).round();
        if !k.is_finite() || k.abs() > MAX_EXACT_INTEGER {
            return None;
        }
        let k = k as i64;
        ((k as f64 / scale).to_bits() == v.to_bits()).then_some(k)
    };
    let first = *values.first()?;
    for (digits, &scale) in POWERS_OF_TEN.iter().enumerate() {
        // Most candidates fail on the first value; the whole column is tried only then.
        if exact(first, scale).is_none() {
            continue;
        }
        let mut ks = Vec::with_capacity(values.len());
        for &v in values {
            match exact(v, scale) {
                Some(k) => ks.push(k),
                None => break,
            }
        }
        if ks.len() == values.len() {
            return Some((digits as u8, ks));
        }
    }
    None
}
