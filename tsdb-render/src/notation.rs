//! Label sets in PromQL notation, as Prometheus prints them (`model.Metric.String`):
//! `metric{a="b", c="d"}`, `metric` alone without other labels, `{}` for the empty set, each
//! value quoted as Go's `strconv.Quote` quotes it.
//!
//! One difference, so that every text is a selector that PromQL accepts back: a metric name
//! that is not a valid PromQL metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) is written inside the
//! braces, as `{__name__="a-b", ...}`.

use tsdb_promql::LabelSet;

/// The name of the metric name label.
const NAME: &str = "__name__";

/// `labels` in PromQL notation.
pub fn label_set(labels: &LabelSet) -> String {
    selector(labels.iter())
}

/// `(name, value)` pairs (sorted by name, `__name__` among them or not) in PromQL notation.
pub fn selector<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    push_selector(&mut out, pairs);
    out
}

/// Appends `(name, value)` pairs in PromQL notation to `out`.
pub fn push_selector<'a>(out: &mut String, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let mut name: Option<&str> = None;
    let mut rest: Vec<(&str, &str)> = Vec::new();
    for (k, v) in pairs {
        if k == NAME {
            name = Some(v);
        } else {
            rest.push((k, v));
        }
    }
    let mut inside: Vec<(&str, &str)> = Vec::with_capacity(rest.len() + 1);
    match name {
        Some(n) if is_metric_name(n) => out.push_str(n),
        Some(n) => inside.push((NAME, n)),
        None => {}
    }
    inside.extend(rest);
    if inside.is_empty() {
        if name.is_none() {
            out.push_str("{}");
        }
        return;
    }
    out.push('{');
    for (i, (k, v)) in inside.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push('=');
        push_go_quoted(out, v);
    }
    out.push('}');
}

/// A valid PromQL metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Appends `s` quoted as Go's `strconv.Quote` quotes it: `"` and `\` escaped, printable
/// characters as they are, `\a \b \f \n \r \t \v`, other characters below U+0020 and U+007F
/// as `\xNN`, other non-printable ones as `\uNNNN` or `\UNNNNNNNN`.
///
/// "Printable" follows Go's `unicode.IsPrint` exactly up to U+00FF; beyond, every character is
/// printable except spaces other than U+0020, format characters, private use characters and
/// non-characters (Go also escapes code points unassigned in its Unicode tables, which this
/// leaves as they are).
pub fn push_go_quoted(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c => {
                let n = c as u32;
                let (prefix, digits) = if n < 0x20 || n == 0x7f {
                    ("\\x", 2)
                } else if n < 0x10000 {
                    ("\\u", 4)
                } else {
                    ("\\U", 8)
                };
                out.push_str(prefix);
                for i in (0..digits).rev() {
                    out.push(HEX[((n >> (4 * i)) & 0xf) as usize] as char);
                }
            }
        }
    }
    out.push('"');
}

/// Go's `strconv.IsPrint`, exact to U+00FF (see [`push_go_quoted`] beyond).
fn is_print(c: char) -> bool {
    let n = c as u32;
    if n <= 0xff {
        return (0x20..0x7f).contains(&n) || ((0xa1..=0xff).contains(&n) && n != 0xad);
    }
    if c.is_whitespace() || c.is_control() {
        return false;
    }
    let format = matches!(
        n,
        0x0600..=0x0605
            | 0x061c
            | 0x06dd
            | 0x070f
            | 0x0890..=0x0891
            | 0x08e2
            | 0x180e
            | 0x200b..=0x200f
            | 0x202a..=0x202e
            | 0x2060..=0x2064
            | 0x2066..=0x206f
            | 0xfeff
            | 0xfff9..=0xfffb
            | 0x110bd
            | 0x110cd
            | 0x13430..=0x1343f
            | 0x1bca0..=0x1bca3
            | 0x1d173..=0x1d17a
            | 0xe0001
            | 0xe0020..=0xe007f
    );
    let private = matches!(n, 0xe000..=0xf8ff | 0xf0000..=0x10ffff);
    let noncharacter = (0xfdd0..=0xfdef).contains(&n) || (n & 0xfffe) == 0xfffe;
    !(format || private || noncharacter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        push_go_quoted(&mut out, s);
        out
    }

    #[test]
    fn values_are_quoted_as_go_quotes_them() {
        // Expected strings are what Go's strconv.Quote returns.
        assert_eq!(quoted("plain"), r#""plain""#);
        assert_eq!(quoted("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quoted("l1\nl2\tx\r"), r#""l1\nl2\tx\r""#);
        assert_eq!(quoted("\u{7}\u{8}\u{c}\u{b}"), r#""\a\b\f\v""#);
        assert_eq!(quoted("\u{0}\u{1b}\u{7f}"), r#""\x00\x1b\x7f""#);
        assert_eq!(quoted("é ü 日本 ✓"), "\"é ü 日本 ✓\"");
        assert_eq!(quoted("\u{a0}\u{ad}\u{85}"), r#""\u00a0\u00ad\u0085""#);
        assert_eq!(
            quoted("\u{2028}\u{200b}\u{feff}"),
            r#""\u2028\u200b\ufeff""#
        );
        assert_eq!(quoted("\u{10ffff}"), r#""\U0010ffff""#);
        assert_eq!(quoted("<&>'"), r#""<&>'""#);
    }

    #[test]
    fn label_sets_are_written_as_prometheus_writes_them() {
        let l = LabelSet::from_pairs([("__name__", "up"), ("job", "node"), ("a", "x\"y")]);
        assert_eq!(label_set(&l), r#"up{a="x\"y", job="node"}"#);
        assert_eq!(label_set(&LabelSet::from_pairs([("__name__", "up")])), "up");
        assert_eq!(label_set(&LabelSet::default()), "{}");
        assert_eq!(
            label_set(&LabelSet::from_pairs([("job", "a")])),
            r#"{job="a"}"#
        );
        // Not a PromQL metric name: inside the braces, so that the text stays a selector.
        assert_eq!(
            selector([("__name__", "cpu-usage"), ("host", "a")]),
            r#"{__name__="cpu-usage", host="a"}"#
        );
        assert_eq!(selector([("__name__", "a:b_c")]), "a:b_c");
        assert!(!is_metric_name("") && !is_metric_name("1a") && is_metric_name("_a1:"));
    }
}
