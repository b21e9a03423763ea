//! The Prometheus text exposition format (0.0.4): `metric{label="value",...} 1.5 [ms]`,
//! with `# HELP` and `# TYPE` lines.
//!
//! Metric names follow `[a-zA-Z_:][a-zA-Z0-9_:]*`, label values are double-quoted with the
//! escapes `\\`, `\"` and `\n` (commas and braces inside values are values), values are Go
//! floats (`NaN`, `+Inf`, `-Inf` included) and timestamps integers (milliseconds unless
//! [`Options::precision`] says otherwise).
//!
//! ```
//! use tsdb_formats::prometheus_text::{Options, decode};
//! use tsdb_formats::Item;
//! let text = "# TYPE up gauge\nup{job=\"a,b\"} 1 1700000000000\n";
//! let lines: Vec<_> = decode(text, &Options::default()).collect();
//! assert!(matches!(&lines[0].item, Item::Metadata(m) if m.metric == "up"));
//! let Item::Sample(s) = &lines[1].item else { panic!() };
//! assert_eq!(s.labels.get("job"), Some("a,b"));
//! ```

use std::collections::HashMap;

use tsdb_core::Labels;

use crate::item::{Item, Line, MetricMetadata, MetricType, numbered_lines};
use crate::precision::Precision;

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

/// The samples and metadata of `text`, line by line, and a rejected [`Line`] for each line
/// that is not valid exposition text. Other comments and blank lines yield nothing.
///
/// Metadata comes from `# TYPE` lines, with the help text of a `# HELP` line of the same
/// family before it; a `# HELP` line after the `# TYPE` yields the metadata again with it.
pub fn decode<'a>(text: &'a str, opts: &'a Options) -> impl Iterator<Item = Line> + 'a {
    let mut families: HashMap<&'a str, (MetricType, Option<String>)> = HashMap::new();
    numbered_lines(text).filter_map(move |(number, line)| {
        let item = if let Some(comment) = line.strip_prefix('#') {
            comment_item(comment, &mut families)?
        } else {
            match sample(line, opts) {
                Ok(s) => s,
                Err(reason) => Item::Rejected(reason),
            }
        };
        Some(Line { number, item })
    })
}

/// `# HELP name text` and `# TYPE name type` as metadata; other comments are ignored.
fn comment_item<'a>(
    comment: &'a str,
    families: &mut HashMap<&'a str, (MetricType, Option<String>)>,
) -> Option<Item> {
    let mut words = comment.trim_start().splitn(2, [' ', '\t']);
    let keyword = words.next()?;
    let rest = words.next()?.trim_start();
    let (name, text) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if name.is_empty() || !valid_metric_name(name) {
        return None;
    }
    let metadata = |kind: MetricType, help: &Option<String>| {
        Item::Metadata(MetricMetadata {
            metric: name.to_owned(),
            kind,
            help: help.clone().unwrap_or_default(),
            unit: String::new(),
        })
    };
    match keyword {
        "HELP" => {
            let help = unescape_help(text.trim_start());
            let entry = families.entry(name).or_insert((MetricType::Unknown, None));
            entry.1 = Some(help);
            // Before the TYPE line: the TYPE line yields it.
            (entry.0 != MetricType::Unknown).then(|| metadata(entry.0, &entry.1))
        }
        "TYPE" => {
            let kind = MetricType::from_name(text.trim());
            let entry = families.entry(name).or_insert((MetricType::Unknown, None));
            entry.0 = kind;
            Some(metadata(kind, &entry.1))
        }
        _ => None,
    }
}

fn unescape_help(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

fn valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// One sample line.
fn sample(line: &str, opts: &Options) -> Result<Item, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || !valid_metric_name(name) {
        return Err("not a sample line: expected metric{labels} value [timestamp]".to_owned());
    }
    let mut rest = &line[name_end..];
    let mut pairs = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = labels(after, &mut pairs)?;
    }
    if !rest.starts_with([' ', '\t']) {
        return Err(format!("metric {name}: expected a space and the value"));
    }
    let mut fields = rest.split_ascii_whitespace();
    let value_text = fields
        .next()
        .ok_or_else(|| format!("metric {name}: no value"))?;
    let value =
        parse_float(value_text).ok_or_else(|| format!("value {value_text:?} is not a number"))?;
    let timestamp = match (fields.next(), opts.default_timestamp) {
        (Some(ts), _) => {
            let raw: i64 = ts
                .parse()
                .map_err(|_| format!("timestamp {ts:?} is not an integer"))?;
            opts.precision.to_millis(raw)
        }
        (None, Some(t)) => t,
        (None, None) => return Err("no timestamp".to_owned()),
    };
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected {extra:?} after the timestamp"));
    }
    pairs.retain(|(k, _)| !opts.extra_labels.iter().any(|(e, _)| e == k));
    pairs.extend(opts.extra_labels.iter().cloned());
    let labels = Labels::new(name, pairs.iter().map(|(k, v)| (k, v))).map_err(|e| e.to_string())?;
    Ok(Item::Sample(crate::item::Sample {
        labels,
        timestamp,
        value,
    }))
}

/// The label list after `{`, up to and including `}`; returns what follows it.
fn labels<'a>(mut s: &'a str, out: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated label list")?;
        let name = &s[..name_end];
        if name.is_empty() {
            return Err(format!("label list: expected a label name at {s:?}"));
        }
        s = s[name_end..].trim_start();
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("label {name:?}: expected ="))?
            .trim_start();
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("label {name:?}: the value must be in double quotes"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("label {name:?}: unterminated value")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("label {name:?}: unterminated value")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        out.push((name.to_owned(), value));
        s = s[end + 1..].trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("label list: expected , or }} after label {name:?}"));
        }
    }
}

/// A Go float: decimal or exponent notation, `NaN`, `Inf`, `+Inf`, `-Inf` (any case).
pub fn parse_float(s: &str) -> Option<f64> {
    s.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(text: &str, opts: &Options) -> Vec<(usize, Item)> {
        decode(text, opts).map(|l| (l.number, l.item)).collect()
    }

    #[test]
    fn samples_follow_the_quoting_rules() {
        let text = r#"m{a="x,y",b="q\"uote}", c="" , d="new\nline",} 1.5 1000
m2 NaN 2000
m3{} +Inf 3000
job:rate:sum -Inf 4000
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
    }

    #[test]
    fn bad_lines_are_rejected_with_a_reason() {
        let text = "m{a=x} 1 1\nm{a=\"x} 1 1\nm 1 1 extra\nm one 1\nm 1\n1m 1 1\nm{a=\"b\"}1 1\n";
        let items = decoded(text, &Options::default());
        assert_eq!(items.len(), 7);
        for (n, item) in &items {
            assert!(matches!(item, Item::Rejected(_)), "line {n}: {item:?}");
        }
        assert!(matches!(&items[4].1, Item::Rejected(r) if r == "no timestamp"));
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
