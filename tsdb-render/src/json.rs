//! JSON written byte for byte as Prometheus 2.42 writes it (`web/api/v1/api.go`,
//! `util/jsonutil`, `promql/value.go`): Go's `encoding/json` string escaping (HTML
//! characters included), sample timestamps as `MarshalTimestamp` writes them, values as
//! `MarshalValue` writes them, scalars and strings as `promql.Scalar`/`promql.String` do,
//! and the `{"status":"success","data":...}` envelope of every answer.

use tsdb_promql::{LabelSet, Sample, Series, Value};

/// Appends `s` as a JSON string, escaped as Go's `encoding/json` (and jsoniter's standard
/// library configuration) escapes it: `"` and `\`, `\n`, `\r`, `\t`, other control
/// characters as `\u00XX`, `<`, `>`, `&` as `\u003c`, `\u003e`, `\u0026`, and U+2028/U+2029.
pub fn push_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 || c == '<' || c == '>' || c == '&' => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let b = c as u32 as u8;
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Go's `strconv.FormatFloat(v, fmt, -1, 64)` for `fmt` `'f'` or `'e'`: the shortest
/// digits that round-trip; `'e'` with a signed exponent of at least two digits.
fn go_format(out: &mut String, v: f64, exponent: bool) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if !exponent {
        // Rust's `Display` of a float: shortest round-trip digits, never an exponent.
        let _ = write!(out, "{v}");
    } else {
        let text = format!("{v:e}");
        let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        out.push_str(mantissa);
        out.push('e');
        out.push(sign);
        if digits.len() < 2 {
            out.push('0');
        }
        out.push_str(digits);
    }
}

/// `jsonutil.MarshalValue`: a quoted float, in exponent form below 1e-6 and from 1e21 on.
pub fn push_value(out: &mut String, v: f64) {
    out.push('"');
    push_value_text(out, v);
    out.push('"');
}

/// The text of a sample value inside its JSON quotes (`1`, `0.5`, `1e-07`, `NaN`, `+Inf`):
/// what Prometheus shows of a value.
pub fn push_value_text(out: &mut String, v: f64) {
    let abs = v.abs();
    go_format(out, v, abs != 0.0 && !(1e-6..1e21).contains(&abs));
}

/// [`push_value_text`] as a `String`.
pub fn value_text(v: f64) -> String {
    let mut s = String::new();
    push_value_text(&mut s, v);
    s
}

/// `jsonutil.MarshalTimestamp`: milliseconds as seconds, the fraction written as its three
/// digits when not zero (`1.500`, `2`, `-0.001`).
pub fn push_timestamp(out: &mut String, ms: i64) {
    use std::fmt::Write;
    let (negative, t) = (ms < 0, ms.unsigned_abs());
    if negative {
        out.push('-');
    }
    let _ = write!(out, "{}", t / 1000);
    let fraction = t % 1000;
    if fraction != 0 {
        let _ = write!(out, ".{fraction:03}");
    }
}

/// Go's `encoding/json` for a `float64`: `'f'` format, or `'e'` below 1e-6 and from 1e21 on
/// with a one-digit negative exponent left as it is (`1e-7`, `1e+21`).
pub fn push_go_number(out: &mut String, v: f64) {
    let abs = v.abs();
    let exponent = abs != 0.0 && !(1e-6..1e21).contains(&abs);
    let before = out.len();
    go_format(out, v, exponent);
    if exponent {
        // "e-07" becomes "e-7", as encoding/json cleans it up.
        let b = out.as_bytes();
        let n = b.len();
        if n - before >= 4 && b[n - 4] == b'e' && b[n - 3] == b'-' && b[n - 2] == b'0' {
            out.remove(n - 2);
        }
    }
}

/// A label set as a JSON object, keys in order (Go marshals the map sorted).
pub fn push_labels(out: &mut String, labels: &LabelSet) {
    push_label_pairs(out, labels.iter());
}

/// `(name, value)` pairs, sorted by name, as a JSON object.
pub fn push_label_pairs<'a>(out: &mut String, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    out.push('{');
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, k);
        out.push(':');
        push_str(out, v);
    }
    out.push('}');
}

/// `[<ts>,"<value>"]`.
fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    push_timestamp(out, t);
    out.push(',');
    push_value(out, v);
    out.push(']');
}

fn push_sample(out: &mut String, s: &Sample) {
    out.push_str("{\"metric\":");
    push_labels(out, &s.metric);
    out.push_str(",\"value\":");
    push_point(out, s.timestamp, s.value);
    out.push('}');
}

fn push_series(out: &mut String, s: &Series) {
    out.push_str("{\"metric\":");
    push_labels(out, &s.metric);
    if !s.points.is_empty() {
        out.push_str(",\"values\":[");
        for (i, &(t, v)) in s.points.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_point(out, t, v);
        }
        out.push(']');
    }
    out.push('}');
}

/// The `data` of a query answer: `{"resultType":...,"result":...}`.
pub fn push_query_data(out: &mut String, value: &Value) {
    let ok: std::io::Result<()> = query_data_into(out, value, |_| Ok(()));
    debug_assert!(ok.is_ok());
}

/// [`push_query_data`] written to `w` a piece at a time (a large answer is never held whole
/// as text): the same bytes.
pub fn write_query_data(w: &mut impl std::io::Write, value: &Value) -> std::io::Result<()> {
    const PIECE: usize = 64 * 1024;
    let mut buf = String::with_capacity(PIECE + 1024);
    query_data_into(&mut buf, value, |b| {
        if b.len() >= PIECE {
            w.write_all(b.as_bytes())?;
            b.clear();
        }
        Ok(())
    })?;
    w.write_all(buf.as_bytes())
}

/// `{"status":"success","data":<data>}`, `data` being JSON text already, with `warnings`
/// when there are any: the body of every successful `/api/v1` answer.
pub fn success_body(data: &str, warnings: &[String]) -> String {
    let mut body = String::with_capacity(32 + data.len());
    body.push_str(SUCCESS_START);
    body.push_str(data);
    if !warnings.is_empty() {
        body.push_str(",\"warnings\":");
        push_str_array(&mut body, warnings.iter().map(String::as_str));
    }
    body.push('}');
    body
}

/// What a successful answer starts with, before its `data`; it ends with `}`.
pub const SUCCESS_START: &str = "{\"status\":\"success\",\"data\":";

/// Writes the `data` of a query answer into `out`, calling `after_item` after each sample or
/// series (to take what is written so far).
fn query_data_into(
    out: &mut String,
    value: &Value,
    mut after_item: impl FnMut(&mut String) -> std::io::Result<()>,
) -> std::io::Result<()> {
    out.push_str("{\"resultType\":");
    match value {
        Value::Scalar { timestamp, value } => {
            out.push_str("\"scalar\",\"result\":[");
            push_go_number(out, *timestamp as f64 / 1000.0);
            out.push(',');
            let mut text = String::new();
            go_format(&mut text, *value, false);
            push_str(out, &text);
            out.push(']');
        }
        Value::String { timestamp, value } => {
            out.push_str("\"string\",\"result\":[");
            push_go_number(out, *timestamp as f64 / 1000.0);
            out.push(',');
            push_str(out, value);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push_str("\"vector\",\"result\":[");
            for (i, s) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_sample(out, s);
                after_item(out)?;
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push_str("\"matrix\",\"result\":[");
            for (i, s) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_series(out, s);
                after_item(out)?;
            }
            out.push(']');
        }
    }
    out.push('}');
    Ok(())
}

/// A JSON array of strings.
pub fn push_str_array<'a>(out: &mut String, items: impl IntoIterator<Item = &'a str>) {
    out.push('[');
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_str(out, s);
    }
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: f64) -> String {
        let mut s = String::new();
        push_value(&mut s, v);
        s
    }

    fn ts(ms: i64) -> String {
        let mut s = String::new();
        push_timestamp(&mut s, ms);
        s
    }

    fn go_number(v: f64) -> String {
        let mut s = String::new();
        push_go_number(&mut s, v);
        s
    }

    #[test]
    fn values_are_formatted_as_go_formats_them() {
        // Expected strings are what Go 1.19's strconv/encoding/json produce.
        assert_eq!(value(1.0), "\"1\"");
        assert_eq!(value(0.1), "\"0.1\"");
        assert_eq!(value(-0.0), "\"-0\"");
        assert_eq!(value(1e-6), "\"0.000001\"");
        assert_eq!(value(1e-7), "\"1e-07\"");
        assert_eq!(value(1.2345e-10), "\"1.2345e-10\"");
        assert_eq!(value(1e21), "\"1e+21\"");
        assert_eq!(value(1e20), "\"100000000000000000000\"");
        assert_eq!(value(1.5e300), "\"1.5e+300\"");
        assert_eq!(value(f64::NAN), "\"NaN\"");
        assert_eq!(value(f64::INFINITY), "\"+Inf\"");
        assert_eq!(value(f64::NEG_INFINITY), "\"-Inf\"");
        assert_eq!(value(123456.789), "\"123456.789\"");
        assert_eq!(value(5e-324), "\"5e-324\"");
        assert_eq!(go_number(1e-7), "1e-7");
        assert_eq!(go_number(1700000000.5), "1700000000.5");
        assert_eq!(go_number(1e21), "1e+21");
    }

    #[test]
    fn timestamps_are_formatted_as_marshal_timestamp_does() {
        assert_eq!(ts(1_435_781_451_781), "1435781451.781");
        assert_eq!(ts(1_500), "1.500");
        assert_eq!(ts(2_000), "2");
        assert_eq!(ts(5), "0.005");
        assert_eq!(ts(-1), "-0.001");
        assert_eq!(ts(-1_500), "-1.500");
        assert_eq!(ts(i64::MIN), "-9223372036854775.808");
    }

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\te\r<x>&\u{1}\u{8}\u{2028}é");
        assert_eq!(
            s,
            r#""a\"b\\c\nd\te\r\u003cx\u003e\u0026\u0001\u0008\u2028é""#
        );
    }

    #[test]
    fn streamed_query_data_is_the_same_bytes() {
        let value = Value::Matrix(
            (0..300)
                .map(|i| Series {
                    metric: LabelSet::from_pairs([("__name__", "m"), ("i", &*i.to_string())]),
                    points: (0..100).map(|t| (t * 15_000, t as f64 / 7.0)).collect(),
                })
                .collect(),
        );
        let mut whole = String::new();
        push_query_data(&mut whole, &value);
        let mut streamed = Vec::new();
        write_query_data(&mut streamed, &value).expect("written");
        assert!(whole.len() > 200_000);
        assert_eq!(String::from_utf8(streamed).expect("utf-8"), whole);
        assert_eq!(
            success_body("[]", &["w\"".to_owned()]),
            r#"{"status":"success","data":[],"warnings":["w\""]}"#
        );
        assert_eq!(value_text(1e-7), "1e-07");
        assert_eq!(value_text(2.5), "2.5");
    }

    #[test]
    fn query_data_has_prometheus_shape() {
        let mut s = String::new();
        push_query_data(
            &mut s,
            &Value::Scalar {
                timestamp: 1_500,
                value: 1e-7,
            },
        );
        assert_eq!(s, r#"{"resultType":"scalar","result":[1.5,"0.0000001"]}"#);
        let mut s = String::new();
        push_query_data(
            &mut s,
            &Value::Vector(vec![Sample {
                metric: LabelSet::from_pairs([("__name__", "up"), ("job", "a")]),
                timestamp: 1_000,
                value: 1.0,
            }]),
        );
        assert_eq!(
            s,
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a"},"value":[1,"1"]}]}"#
        );
        let mut s = String::new();
        push_query_data(
            &mut s,
            &Value::Matrix(vec![Series {
                metric: LabelSet::default(),
                points: vec![(0, 1.0), (15_000, f64::NAN)],
            }]),
        );
        assert_eq!(
            s,
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[0,"1"],[15,"NaN"]]}]}"#
        );
    }
}
