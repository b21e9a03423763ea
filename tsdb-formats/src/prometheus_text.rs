//! The Prometheus text exposition format (0.0.4): `metric{label="value",...} 1.5 [ms]`,
//! with `# HELP` and `# TYPE` lines.
//!
//! Metric names follow `[a-zA-Z_:][a-zA-Z0-9_:]*` and label names `[a-zA-Z_][a-zA-Z0-9_]*`;
//! label values are double-quoted with the escapes `\\`, `\"` and `\n` (another backslash
//! stays as written, as in Prometheus's scraper; commas and braces inside values are
//! values); `m{}` is `m`; a trailing comma in the label list is allowed. Values are Go
//! floats (`NaN`, `+Inf`, `-Inf` spelled out; `1e400` is out of range, not infinity) and
//! timestamps integers (milliseconds unless [`Options::precision`] says otherwise). Anything
//! after the timestamp is an error, so is a byte that is not UTF-8 (of that line only).
//!
//! Two ways in:
//!
//! - [`scan_line`], the zero-copy scanner: it checks a line and finds the series text
//!   (`metric{labels}` as written), the value and the timestamp without allocating;
//!   [`SampleLine::labels`] parses the label list only when asked. A caller that keys a
//!   cache by [`SampleLine::series`] parses each distinct series once: the same text always
//!   gives the same labels, or the same rejection.
//! - [`decode`]: every line as a [`Line`] with its [`Labels`] built (what the server uses).
//!
//! ```
//! use tsdb_formats::prometheus_text::{Options, Scanned, decode, scan_line};
//! use tsdb_formats::Item;
//! let text = "# TYPE up gauge\nup{job=\"a,b\"} 1 1700000000000\n";
//! let lines: Vec<_> = decode(text, &Options::default()).collect();
//! assert!(matches!(&lines[0].item, Item::Metadata(m) if m.metric == "up"));
//! let Item::Sample(s) = &lines[1].item else { panic!() };
//! assert_eq!(s.labels.get("job"), Some("a,b"));
//!
//! let Ok(Scanned::Sample(s)) = scan_line(b"up{job=\"a,b\"} 1 1700000000000", &Options::default()) else { panic!() };
//! assert_eq!((s.series, s.value, s.timestamp), ("up{job=\"a,b\"}", 1.0, 1_700_000_000_000));
//! ```

use std::borrow::Cow;
use std::collections::HashMap;

use tsdb_core::Labels;

use crate::item::{Item, Line, MetricMetadata, MetricType, Sample};
use crate::lines::{lines, trim, utf8, words};
use crate::number::{NumberError, parse_i64};
use crate::precision::Precision;
use crate::reject::{Reject, RejectKind, shown};

/// How exposition text is read.
#[derive(Clone, Debug)]
pub struct Options {
    /// Unit of the timestamps. Default: milliseconds.
    pub precision: Precision,
    /// Timestamp (ms) of samples that have none (a server gives the time of arrival);
    /// `None` rejects such lines. Default: `None`.
    pub default_timestamp: Option<i64>,
    /// Labels added to every series (they replace labels of the same name).
    pub extra_labels: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            precision: Precision::Milliseconds,
            default_timestamp: None,
            extra_labels: Vec::new(),
        }
    }
}

/// What one line is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scanned<'a> {
    /// A blank line, or a comment other than `# HELP` and `# TYPE`.
    Nothing,
    /// `# HELP metric text`: the help text as written (escaped; see [`unescape_help`]).
    Help {
        /// The family.
        metric: &'a str,
        /// The text, still escaped.
        text: &'a str,
    },
    /// `# TYPE metric type`.
    Type {
        /// The family.
        metric: &'a str,
        /// Its type (`untyped` and unknown names are [`MetricType::Unknown`]).
        kind: MetricType,
    },
    /// A sample.
    Sample(SampleLine<'a>),
}

/// A sample line, scanned: its label list is not parsed yet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SampleLine<'a> {
    /// The series as written: the metric name and the label list with its braces (`m`,
    /// `m{}`, `m{a="1", b="2"}`). The same text always names the same series, so it can key
    /// a cache of resolved series.
    pub series: &'a str,
    /// Length of the metric name at the start of `series`.
    name_len: usize,
    /// The value.
    pub value: f64,
    /// Milliseconds since the epoch: the line's own timestamp in [`Options::precision`], or
    /// [`Options::default_timestamp`].
    pub timestamp: i64,
    /// Whether the line had no timestamp of its own and took [`Options::default_timestamp`].
    pub defaulted: bool,
}

impl<'a> SampleLine<'a> {
    /// The metric name.
    pub fn metric(&self) -> &'a str {
        &self.series[..self.name_len]
    }

    /// The series' labels with [`Options::extra_labels`]: the label list parsed (its syntax
    /// checked) and [`Labels`]' rules applied. Allocates; call it once per distinct
    /// [`SampleLine::series`] (the answer depends on nothing else but the options).
    pub fn labels(&self, opts: &Options) -> Result<Labels, Reject> {
        let mut pairs: Vec<(&str, Cow<'_, str>)> = Vec::new();
        let list = self.series[self.name_len..].trim_start_matches([' ', '\t']);
        if let Some(inner) = list.strip_prefix('{') {
            // The scanner found the closing brace.
            let inner = inner.strip_suffix('}').unwrap_or(inner);
            parse_labels(inner, &mut pairs)?;
        }
        pairs.retain(|(k, _)| !opts.extra_labels.iter().any(|(e, _)| e == k));
        let extra = opts
            .extra_labels
            .iter()
            .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())));
        let all = pairs.into_iter().chain(extra);
        Labels::new(self.metric(), all)
            .map_err(|e| Reject::new(RejectKind::InvalidLabels, e.to_string()))
    }
}

/// Scans one line (without its newline; spaces around it are allowed). Allocates only to
/// reject.
pub fn scan_line<'a>(line: &'a [u8], opts: &Options) -> Result<Scanned<'a>, Reject> {
    let line = utf8(trim(line))?;
    if line.is_empty() {
        return Ok(Scanned::Nothing);
    }
    if let Some(comment) = line.strip_prefix('#') {
        return Ok(comment_line(comment));
    }
    sample_line(line, opts).map(Scanned::Sample)
}

/// `# HELP name text` and `# TYPE name type`; other comments are nothing.
fn comment_line(comment: &str) -> Scanned<'_> {
    let mut words = comment
        .trim_start_matches([' ', '\t'])
        .splitn(2, [' ', '\t']);
    let (Some(keyword), Some(rest)) = (words.next(), words.next()) else {
        return Scanned::Nothing;
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    let (name, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if !valid_metric_name(name) {
        return Scanned::Nothing;
    }
    match keyword {
        "HELP" => Scanned::Help {
            metric: name,
            text: text.trim_start_matches([' ', '\t']),
        },
        "TYPE" => Scanned::Type {
            metric: name,
            kind: MetricType::from_name(text.trim()),
        },
        _ => Scanned::Nothing,
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(is_name_byte)
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// A sample line, trimmed and not a comment.
fn sample_line<'a>(line: &'a str, opts: &Options) -> Result<SampleLine<'a>, Reject> {
    let b = line.as_bytes();
    let name_len = b.iter().position(|&c| !is_name_byte(c)).unwrap_or(b.len());
    if name_len == 0 || b[0].is_ascii_digit() {
        return Err(Reject::new(
            RejectKind::Syntax,
            format!(
                "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) at {}",
                shown(head(line))
            ),
        ));
    }
    let mut i = name_len;
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    let series_end = if b.get(i) == Some(&b'{') {
        label_list_end(b, i + 1).map_err(|kind| {
            Reject::new(
                RejectKind::Syntax,
                format!("metric {}: {kind}", &line[..name_len]),
            )
        })?
    } else {
        name_len
    };
    let series = &line[..series_end];
    let rest = &line[series_end..];
    if !rest.starts_with([' ', '\t']) {
        let what = if rest.is_empty() {
            "no value".to_owned()
        } else {
            format!("expected a space and the value at {}", shown(head(rest)))
        };
        return Err(Reject::new(
            RejectKind::Syntax,
            format!("metric {}: {what}", &line[..name_len]),
        ));
    }
    let mut tokens = words(rest);
    let value_text = tokens.next().unwrap_or_default();
    let value = crate::number::parse_float(value_text).map_err(|e| match e {
        NumberError::Syntax => Reject::new(
            RejectKind::BadValue,
            format!("value {} is not a number", shown(value_text)),
        ),
        NumberError::OutOfRange => Reject::new(
            RejectKind::ValueOutOfRange,
            format!(
                "value {} is out of range for a 64-bit float",
                shown(value_text)
            ),
        ),
    })?;
    let (timestamp, defaulted) = final_timestamp(tokens, opts.precision, opts.default_timestamp)?;
    Ok(SampleLine {
        series,
        name_len,
        value,
        timestamp,
        defaulted,
    })
}

/// The first word of `s`, for messages.
fn head(s: &str) -> &str {
    s.split([' ', '\t']).next().unwrap_or(s)
}

/// An integer timestamp in `unit`, as milliseconds.
/// The optional timestamp that ends a line (the line's last `tokens`): read in `unit`, or
/// `default` (and `true`) when there is none; anything after it is a syntax error.
pub(crate) fn final_timestamp<'a>(
    mut tokens: impl Iterator<Item = &'a str>,
    unit: Precision,
    default: Option<i64>,
) -> Result<(i64, bool), Reject> {
    let first = tokens.next();
    let timestamp = match first {
        Some(text) => timestamp(text, unit)?,
        None => default.ok_or_else(|| Reject::new(RejectKind::NoTimestamp, "no timestamp"))?,
    };
    if let Some(extra) = tokens.next() {
        return Err(Reject::new(
            RejectKind::Syntax,
            format!("unexpected {} after the timestamp", shown(extra)),
        ));
    }
    Ok((timestamp, first.is_none()))
}

pub(crate) fn timestamp(text: &str, unit: Precision) -> Result<i64, Reject> {
    let out_of_range = || {
        Reject::new(
            RejectKind::TimestampOutOfRange,
            format!(
                "timestamp {} is out of range (64-bit milliseconds since the epoch)",
                shown(text)
            ),
        )
    };
    match parse_i64(text.as_bytes()) {
        Ok(t) => unit.checked_to_millis(t).ok_or_else(out_of_range),
        Err(NumberError::OutOfRange) => Err(out_of_range()),
        Err(NumberError::Syntax) => Err(Reject::new(
            RejectKind::BadTimestamp,
            format!("timestamp {} is not an integer", shown(text)),
        )),
    }
}

/// From just after `{`: the position after the `}` that closes the label list, quotes and
/// escapes respected; or what is wrong.
fn label_list_end(b: &[u8], mut i: usize) -> Result<usize, &'static str> {
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'}' if !quoted => return Ok(i + 1),
            _ => {}
        }
        i += 1;
    }
    Err(if quoted {
        "unterminated label value"
    } else {
        "unterminated label list (no closing brace)"
    })
}

/// The label list between the braces.
fn parse_labels<'a>(mut s: &'a str, out: &mut Vec<(&'a str, Cow<'a, str>)>) -> Result<(), Reject> {
    let syntax = |message: String| Reject::new(RejectKind::Syntax, message);
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if s.is_empty() {
            return Ok(());
        }
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let name = &s[..name_end];
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            return Err(syntax(format!(
                "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at {}",
                shown(s)
            )));
        }
        s = s[name_end..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| syntax(format!("label {name:?}: expected = after the name")))?
            .trim_start_matches([' ', '\t']);
        s = s.strip_prefix('"').ok_or_else(|| {
            syntax(format!(
                "label {name:?}: the value must be in double quotes"
            ))
        })?;
        let (value, after) =
            quoted_value(s).ok_or_else(|| syntax(format!("label {name:?}: unterminated value")))?;
        out.push((name, value));
        s = after.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.is_empty() {
            return Err(syntax(format!(
                "label {name:?}: expected , or }} after the value, found {}",
                shown(s)
            )));
        }
    }
}

/// A label value after its opening quote: the value unescaped (`\\`, `\"`, `\n`; another
/// backslash stays as written), and what follows the closing quote.
fn quoted_value(s: &str) -> Option<(Cow<'_, str>, &str)> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut escaped = false;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                escaped = true;
                i += 2;
                continue;
            }
            b'"' => break,
            _ => i += 1,
        }
    }
    if i >= b.len() {
        return None;
    }
    let raw = &s[..i];
    let rest = &s[i + 1..];
    if !escaped {
        return Some((Cow::Borrowed(raw), rest));
    }
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            value.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => value.push('\n'),
            Some(c @ ('\\' | '"')) => value.push(c),
            Some(other) => {
                value.push('\\');
                value.push(other);
            }
            None => value.push('\\'),
        }
    }
    Some((Cow::Owned(value), rest))
}

/// A `# HELP` text unescaped: `\\` and `\n`.
pub fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The samples and metadata of `text`, line by line, and a rejected [`Line`] for each line
/// that is not valid exposition text. Other comments and blank lines yield nothing.
///
/// Metadata comes from `# TYPE` lines, with the help text of a `# HELP` line of the same
/// family before it; a `# HELP` line after the `# TYPE` yields the metadata again with it.
pub fn decode<'a, T>(text: &'a T, opts: &'a Options) -> impl Iterator<Item = Line> + 'a
where
    T: AsRef<[u8]> + ?Sized,
{
    let mut families: HashMap<&'a str, (MetricType, Option<String>)> = HashMap::new();
    lines(text.as_ref()).filter_map(move |(number, line)| {
        let item = match scan_line(line, opts) {
            Ok(Scanned::Nothing) => return None,
            Ok(Scanned::Help { metric, text }) => {
                let entry = families
                    .entry(metric)
                    .or_insert((MetricType::Unknown, None));
                entry.1 = Some(unescape_help(text));
                // Before the TYPE line: the TYPE line yields it.
                if entry.0 == MetricType::Unknown {
                    return None;
                }
                metadata(metric, entry.0, &entry.1)
            }
            Ok(Scanned::Type { metric, kind }) => {
                let entry = families
                    .entry(metric)
                    .or_insert((MetricType::Unknown, None));
                entry.0 = kind;
                metadata(metric, kind, &entry.1)
            }
            Ok(Scanned::Sample(s)) => match s.labels(opts) {
                Ok(labels) => Item::Sample(Sample {
                    labels,
                    timestamp: s.timestamp,
                    value: s.value,
                }),
                Err(r) => Item::Rejected(r),
            },
            Err(r) => Item::Rejected(r),
        };
        Some(Line { number, item })
    })
}

fn metadata(metric: &str, kind: MetricType, help: &Option<String>) -> Item {
    Item::Metadata(MetricMetadata {
        metric: metric.to_owned(),
        kind,
        help: help.clone().unwrap_or_default(),
        unit: String::new(),
    })
}

/// A Go float: decimal or exponent notation, `NaN`, `Inf`, `+Inf`, `-Inf` (any case);
/// `None` for anything else, `1e400` included (see [`crate::parse_float`]).
pub fn parse_float(s: &str) -> Option<f64> {
    crate::number::parse_float(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(text: &str, opts: &Options) -> Vec<(usize, Item)> {
        decode(text, opts).map(|l| (l.number, l.item)).collect()
    }

    /// The verdict on one line: the series and point, or the rejection.
    fn verdict(line: &[u8], opts: &Options) -> Result<(String, i64, f64), Reject> {
        match scan_line(line, opts)? {
            Scanned::Sample(s) => Ok((s.labels(opts)?.to_string(), s.timestamp, s.value)),
            other => panic!("not a sample: {other:?}"),
        }
    }

    fn kind(line: &[u8]) -> RejectKind {
        match verdict(line, &Options::default()) {
            Err(r) => r.kind,
            Ok(ok) => panic!("{:?} accepted: {ok:?}", String::from_utf8_lossy(line)),
        }
    }

    #[test]
    fn samples_follow_the_quoting_rules() {
        let text = r#"m{a="x,y",b="q\"uote}", c="" , d="new\nline",} 1.5 1000
m2 NaN 2000
m3{} +Inf 3000
job:rate:sum -Inf 4000
m4{a="back\\slash",b="tab\t"} 1 5000
"#;
        let items = decoded(text, &Options::default());
        let Item::Sample(s) = &items[0].1 else {
            panic!("{items:?}")
        };
        assert_eq!(s.labels.get("a"), Some("x,y"));
        assert_eq!(s.labels.get("b"), Some("q\"uote}"));
        assert_eq!(s.labels.get("c"), None);
        assert_eq!(s.labels.get("d"), Some("new\nline"));
        assert_eq!((s.timestamp, s.value), (1000, 1.5));
        assert!(matches!(&items[1].1, Item::Sample(s) if s.value.is_nan()));
        assert!(matches!(&items[2].1, Item::Sample(s) if s.value == f64::INFINITY));
        assert!(
            matches!(&items[3].1, Item::Sample(s) if s.value == f64::NEG_INFINITY && s.labels.metric() == "job:rate:sum")
        );
        let Item::Sample(s) = &items[4].1 else {
            panic!("{items:?}")
        };
        assert_eq!(s.labels.get("a"), Some("back\\slash"));
        assert_eq!(s.labels.get("b"), Some("tab\\t"), "unknown escapes stay");
    }

    #[test]
    fn bad_lines_are_rejected_with_a_reason() {
        let text = "m{a=x} 1 1\nm{a=\"x} 1 1\nm 1 1 extra\nm one 1\nm 1\n1m 1 1\nm{a=\"b\"}1 1\n";
        let items = decoded(text, &Options::default());
        assert_eq!(items.len(), 7);
        for (n, item) in &items {
            assert!(matches!(item, Item::Rejected(_)), "line {n}: {item:?}");
        }
        assert!(matches!(&items[4].1, Item::Rejected(r) if r.message == "no timestamp"));
    }

    #[test]
    fn each_listed_case_is_a_named_reject_of_its_line() {
        let opts = Options::default();
        // m{} is m, with or without a timestamp (given a default).
        assert_eq!(verdict(b"m{} 1 7", &opts), Ok(("m".to_owned(), 7, 1.0)));
        let with_default = Options {
            default_timestamp: Some(9),
            ..Options::default()
        };
        assert_eq!(
            verdict(b"m{} 1", &with_default),
            Ok(("m".to_owned(), 9, 1.0))
        );
        assert_eq!(kind(b"m{} 1"), RejectKind::NoTimestamp);
        // Out of range values and timestamps.
        let r = verdict(b"m 1e400 1", &opts).expect_err("1e400");
        assert_eq!(r.kind, RejectKind::ValueOutOfRange);
        assert!(r.message.contains("\"1e400\""), "{r}");
        assert_eq!(kind(b"m -1e400 1"), RejectKind::ValueOutOfRange);
        assert!(verdict(b"m +Inf 1", &opts).is_ok());
        assert!(verdict(b"m NaN 1", &opts).is_ok());
        let r = verdict(b"m 1 99999999999999999999", &opts).expect_err("overflow");
        assert_eq!(r.kind, RejectKind::TimestampOutOfRange);
        assert_eq!(kind(b"m 1 1e30"), RejectKind::BadTimestamp);
        let seconds = Options {
            precision: Precision::Seconds,
            ..Options::default()
        };
        assert_eq!(
            verdict(b"m 1 9223372036854775807", &seconds).map_err(|r| r.kind),
            Err(RejectKind::TimestampOutOfRange)
        );
        // Trailing garbage.
        let r = verdict(b"m{a=\"b\"} 1 1000 garbage", &opts).expect_err("garbage");
        assert_eq!(r.kind, RejectKind::Syntax);
        assert!(r.message.contains("\"garbage\""), "{r}");
        assert_eq!(kind(b"m 1 1000 # {trace_id=\"x\"} 1"), RejectKind::Syntax);
        assert_eq!(kind(b"m 1 1000x"), RejectKind::BadTimestamp);
        assert_eq!(kind(b"m 1x 1000"), RejectKind::BadValue);
        // Invalid UTF-8, in a label value and in the value.
        let r = verdict(b"m{a=\"\xff\"} 1 1", &opts).expect_err("utf-8");
        assert_eq!(r.kind, RejectKind::InvalidUtf8);
        assert!(r.message.contains("column 6"), "{r}");
        assert_eq!(kind(b"m 1\xc3 1"), RejectKind::InvalidUtf8);
        // Label syntax and rules.
        assert_eq!(kind(b"m{a=x} 1 1"), RejectKind::Syntax);
        assert_eq!(kind(b"m{a=\"x\" b=\"y\"} 1 1"), RejectKind::Syntax);
        assert_eq!(kind(b"m{a=\"x\",a=\"y\"} 1 1"), RejectKind::InvalidLabels);
        assert_eq!(kind(b"m{__name__=\"x\"} 1 1"), RejectKind::InvalidLabels);
        assert_eq!(kind(b"m{__a=\"x\"} 1 1"), RejectKind::InvalidLabels);
        assert_eq!(kind(b"m{a=\"x} 1 1"), RejectKind::Syntax);
        assert_eq!(kind(b"{a=\"x\"} 1 1"), RejectKind::Syntax);
    }

    #[test]
    fn help_and_type_make_metadata() {
        let text = "# HELP http_requests_total Requests \\\\ served.\\n\n\
                    # TYPE http_requests_total counter\n\
                    # a comment\n\
                    # TYPE lat histogram\n\
                    # HELP lat Latency.\n\
                    http_requests_total 3\n";
        let opts = Options {
            default_timestamp: Some(7),
            ..Options::default()
        };
        let items = decoded(text, &opts);
        let metadata: Vec<&MetricMetadata> = items
            .iter()
            .filter_map(|(_, i)| match i {
                Item::Metadata(m) => Some(m),
                _ => None,
            })
            .collect();
        assert_eq!(metadata.len(), 3);
        assert_eq!(metadata[0].metric, "http_requests_total");
        assert_eq!(metadata[0].kind, MetricType::Counter);
        assert_eq!(metadata[0].help, "Requests \\ served.\n");
        assert_eq!(
            (metadata[1].kind, metadata[1].help.as_str()),
            (MetricType::Histogram, "")
        );
        assert_eq!(metadata[2].help, "Latency.");
        assert!(matches!(items.last(), Some((6, Item::Sample(s))) if s.timestamp == 7));
    }
}
