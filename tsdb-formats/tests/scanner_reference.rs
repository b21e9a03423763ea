//! The zero-copy scanners against a straightforward reference parse (character by
//! character, allocating as it goes) and against the model the lines were generated from,
//! on generated valid lines: spacing, escapes, quotes, unicode, every value spelling.

use proptest::prelude::*;
use tsdb_formats::{Item, influx, prometheus_text};

/// A label value or tag value: printable text with the characters that need care.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => Just('"'),
            1 => Just('\\'),
            1 => Just('\n'),
            1 => Just(','),
            1 => Just('}'),
            1 => Just('{'),
            1 => Just('='),
            1 => Just(' '),
            1 => Just('é'),
            1 => Just('雪'),
        ],
        1..12,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn label_names() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::btree_set("[a-z][a-z0-9_]{0,6}", 0..5)
        .prop_map(|names| names.into_iter().collect())
}

/// A value as written and as meant.
fn value() -> impl Strategy<Value = (String, f64)> {
    prop_oneof![
        (-1_000_000i64..1_000_000).prop_map(|c| {
            let v = c as f64 / 100.0;
            (format!("{v:.2}"), format!("{v:.2}").parse().unwrap_or(v))
        }),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| (format!("{v:e}"), v)),
        any::<f64>()
            .prop_filter("finite", |v| v.is_finite())
            .prop_map(|v| (format!("{v}"), v)),
        Just(("+Inf".to_owned(), f64::INFINITY)),
        Just(("-Inf".to_owned(), f64::NEG_INFINITY)),
        (-100i64..100).prop_map(|i| (i.to_string(), i as f64)),
    ]
}

fn blank() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(" "), Just("\t"), Just("  "), Just(" \t")]
}

/// A valid exposition line and what it means: `(line, metric, labels, value, timestamp)`.
type PromCase = (String, String, Vec<(String, String)>, (String, f64), i64);

fn prom_line() -> impl Strategy<Value = PromCase> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
        label_names(),
        proptest::collection::vec(text(), 5),
        value(),
        -1_000_000_000_000_000i64..1_000_000_000_000_000,
        (
            blank(),
            blank(),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(|(metric, names, values, value, ts, style)| {
            let (sep1, sep2, braces, trailing_comma, spaced) = style;
            let labels: Vec<(String, String)> = names.into_iter().zip(values).collect();
            let mut line = metric.clone();
            if braces || !labels.is_empty() {
                line.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        line.push(',');
                    }
                    if spaced {
                        line.push(' ');
                    }
                    line.push_str(k);
                    line.push_str(if spaced { " = \"" } else { "=\"" });
                    for c in v.chars() {
                        match c {
                            '\\' => line.push_str("\\\\"),
                            '"' => line.push_str("\\\""),
                            '\n' => line.push_str("\\n"),
                            c => line.push(c),
                        }
                    }
                    line.push('"');
                }
                if trailing_comma && !labels.is_empty() {
                    line.push(',');
                }
                line.push('}');
            }
            line.push_str(sep1);
            line.push_str(&value.0);
            line.push_str(sep2);
            line.push_str(&ts.to_string());
            (line, metric, labels, value, ts)
        })
}

/// Metric, sorted labels, value and timestamp of a sample line.
type PromSample = (String, Vec<(String, String)>, f64, i64);

/// The reference parse of an exposition sample line.
fn prom_reference(line: &str) -> Option<PromSample> {
    let mut chars = line.chars().peekable();
    let mut metric = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            metric.push(c);
            chars.next();
        } else {
            break;
        }
    }
    let mut labels = Vec::new();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            while chars
                .peek()
                .is_some_and(|c| *c == ' ' || *c == '\t' || *c == ',')
            {
                chars.next();
            }
            if chars.peek() == Some(&'}') {
                chars.next();
                break;
            }
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '=') {
                chars.next();
            }
            if chars.next()? != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        other => {
                            value.push('\\');
                            value.push(other);
                        }
                    },
                    c => value.push(c),
                }
            }
            labels.push((name, value));
        }
    }
    let rest: String = chars.collect();
    let mut words = rest.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    let ts: i64 = words.next()?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    labels.sort();
    Some((metric, labels, value, ts))
}

fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a == 0.0 && b == 0.0)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn prometheus_scanner_agrees_with_the_reference(case in prom_line()) {
        let (line, metric, labels, (_, value), ts) = case;
        let opts = prometheus_text::Options::default();
        let Ok(prometheus_text::Scanned::Sample(s)) = prometheus_text::scan_line(line.as_bytes(), &opts) else {
            panic!("{line:?} refused: {:?}", prometheus_text::scan_line(line.as_bytes(), &opts));
        };
        let got = s.labels(&opts).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let (ref_metric, ref_labels, ref_value, ref_ts) =
            prom_reference(&line).unwrap_or_else(|| panic!("the reference refuses {line:?}"));
        prop_assert_eq!(got.metric(), ref_metric.as_str());
        prop_assert_eq!(got.metric(), metric.as_str());
        let got_labels: Vec<(String, String)> = got
            .iter()
            .filter(|l| l.name != "__name__")
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        let mut model = labels.clone();
        model.sort();
        prop_assert_eq!(&got_labels, &ref_labels);
        prop_assert_eq!(&got_labels, &model);
        prop_assert!(same_value(s.value, ref_value), "{} vs {}", s.value, ref_value);
        prop_assert!(same_value(s.value, value), "{} vs {}", s.value, value);
        prop_assert_eq!(s.timestamp, ref_ts);
        prop_assert_eq!(s.timestamp, ts);
        // decode says the same.
        let items: Vec<Item> = prometheus_text::decode(&line, &opts).map(|l| l.item).collect();
        let [Item::Sample(d)] = &items[..] else { panic!("{items:?}") };
        prop_assert_eq!(&d.labels, &got);
    }
}

/// An Influx field as written and what it means (`None`: refused).
fn influx_field() -> impl Strategy<Value = (String, Option<f64>)> {
    prop_oneof![
        value()
            .prop_filter("line protocol has no infinities", |(_, v)| v.is_finite())
            .prop_map(|(t, v)| (t, Some(v))),
        any::<i64>().prop_map(|i| (format!("{i}i"), Some(i as f64))),
        any::<u64>().prop_map(|u| (format!("{u}u"), Some(u as f64))),
        prop_oneof![Just("t"), Just("true"), Just("TRUE"), Just("True")]
            .prop_map(|t| (t.to_owned(), Some(1.0))),
        prop_oneof![Just("f"), Just("false"), Just("FALSE"), Just("False")]
            .prop_map(|t| (t.to_owned(), Some(0.0))),
        text().prop_map(|s| {
            // Line protocol has no newlines inside a line.
            let escaped: String = s
                .replace('\n', "n")
                .chars()
                .flat_map(|c| match c {
                    '"' => vec!['\\', '"'],
                    '\\' => vec!['\\', '\\'],
                    c => vec![c],
                })
                .collect();
            (format!("\"{escaped}\""), None)
        }),
    ]
}

/// A name with line protocol's escapes (comma, space, equals sign, backslash).
fn escaped_name(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if matches!(c, ',' | ' ' | '=' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn influx_name() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            6 => proptest::char::range('a', 'z'),
            1 => Just(','),
            1 => Just(' '),
            1 => Just('='),
            1 => Just('.'),
            1 => Just('-'),
        ],
        1..8,
    )
    .prop_map(|c| c.into_iter().collect::<String>())
    .prop_filter("starts with a letter", |s| {
        s.starts_with(|c: char| c.is_ascii_lowercase())
    })
}

/// The reference split of a line protocol line: measurement, tags, fields (raw), timestamp.
#[allow(clippy::type_complexity)]
fn influx_reference(
    line: &str,
) -> Option<(
    String,
    Vec<(String, String)>,
    Vec<(String, String)>,
    Option<i64>,
)> {
    // Unescaped split on `sep`, with quoted strings kept whole when `quotes`.
    fn split(s: &str, sep: char, quotes: bool) -> Vec<String> {
        let mut parts = vec![String::new()];
        let mut chars = s.chars();
        let mut in_string = false;
        while let Some(c) = chars.next() {
            let part = parts.last_mut().expect("a part");
            match c {
                '\\' => {
                    part.push(c);
                    if let Some(n) = chars.next() {
                        part.push(n);
                    }
                }
                '"' if quotes && (in_string || part.ends_with('=')) => {
                    in_string = !in_string;
                    part.push(c);
                }
                c if c == sep && !in_string => parts.push(String::new()),
                c => part.push(c),
            }
        }
        parts
    }
    fn unescape(s: &str) -> String {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\'
                && chars
                    .peek()
                    .is_some_and(|n| matches!(n, ',' | ' ' | '=' | '\\'))
            {
                out.push(chars.next().expect("peeked"));
            } else {
                out.push(c);
            }
        }
        out
    }
    let sections = split(line, ' ', true);
    let (series, fields, ts) = match &sections[..] {
        [s, f] => (s, f, None),
        [s, f, t] => (s, f, Some(t.parse().ok()?)),
        _ => return None,
    };
    let mut series = split(series, ',', false).into_iter();
    let measurement = unescape(&series.next()?);
    let mut tags = Vec::new();
    for tag in series {
        let kv = split(&tag, '=', false);
        let [k, v] = &kv[..] else { return None };
        tags.push((unescape(k), unescape(v)));
    }
    let mut out = Vec::new();
    for field in split(fields, ',', true) {
        let eq = {
            let mut escaped = false;
            field
                .char_indices()
                .find(|&(_, c)| {
                    let stop = c == '=' && !escaped;
                    escaped = c == '\\' && !escaped;
                    stop
                })?
                .0
        };
        out.push((unescape(&field[..eq]), field[eq + 1..].to_owned()));
    }
    Some((measurement, tags, out, ts))
}

/// An Influx line and what it means: the line, measurement, tags, `(field, value)`, time.
type InfluxCase = (
    String,
    String,
    Vec<(String, String)>,
    Vec<(String, Option<f64>)>,
    Option<i64>,
);

fn influx_line() -> impl Strategy<Value = InfluxCase> {
    (
        influx_name(),
        proptest::collection::btree_map("[a-z][a-z0-9]{0,5}", influx_name(), 0..4),
        proptest::collection::btree_map(
            prop_oneof![3 => influx_name(), 1 => Just("value".to_owned())],
            influx_field(),
            1..5,
        ),
        proptest::option::of(-1_000_000_000_000_000_000i64..1_000_000_000_000_000_000),
    )
        .prop_map(|(measurement, tags, fields, ts)| {
            let mut line = escaped_name(&measurement);
            for (k, v) in &tags {
                line.push(',');
                line.push_str(&escaped_name(k));
                line.push('=');
                line.push_str(&escaped_name(v));
            }
            line.push(' ');
            let written: Vec<String> = fields
                .iter()
                .map(|(k, (text, _))| format!("{}={text}", escaped_name(k)))
                .collect();
            line.push_str(&written.join(","));
            if let Some(ts) = ts {
                line.push(' ');
                line.push_str(&ts.to_string());
            }
            let tags = tags.into_iter().collect();
            let fields = fields.into_iter().map(|(k, (_, v))| (k, v)).collect();
            (line, measurement, tags, fields, ts)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn influx_scanner_agrees_with_the_reference(case in influx_line()) {
        let (line, measurement, tags, fields, ts) = case;
        let opts = influx::Options { default_timestamp: Some(-7), ..influx::Options::default() };
        let scanned = influx::scan_line(line.as_bytes(), &opts)
            .unwrap_or_else(|e| panic!("{line:?} refused: {e}"))
            .unwrap_or_else(|| panic!("{line:?} is nothing"));
        let (ref_measurement, ref_tags, ref_fields, ref_ts) =
            influx_reference(&line).unwrap_or_else(|| panic!("the reference refuses {line:?}"));
        prop_assert_eq!(&ref_measurement, &measurement);
        prop_assert_eq!(&ref_tags, &tags);
        prop_assert_eq!(ref_ts, ts);
        let want_ts = ts.map_or(-7, |t| t.div_euclid(1_000_000));
        prop_assert_eq!(scanned.timestamp, want_ts);
        let series_tags = scanned.tags(&opts).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        let got: Vec<_> = scanned.fields(&opts).collect();
        prop_assert_eq!(got.len(), fields.len());
        prop_assert_eq!(ref_fields.len(), fields.len());
        for ((field, (name, want)), (ref_name, ref_raw)) in got.iter().zip(&fields).zip(&ref_fields) {
            prop_assert_eq!(name, ref_name);
            match (want, &field.value) {
                (Some(w), Ok(v)) => prop_assert!(same_value(*v, *w), "{name}: {v} vs {w} ({ref_raw})"),
                (None, Err(r)) => prop_assert_eq!(r.kind, tsdb_formats::RejectKind::StringField),
                (w, v) => panic!("{line:?} field {name}: {v:?}, wanted {w:?}"),
            }
            let labels = series_tags.labels(field.key).unwrap_or_else(|e| panic!("{line:?}: {e}"));
            let metric = if name == "value" {
                tsdb_formats::sanitize_metric_name(&measurement)
            } else {
                tsdb_formats::sanitize_metric_name(&format!("{measurement}_{name}"))
            };
            prop_assert_eq!(labels.metric(), metric.as_str());
            for (k, v) in &tags {
                prop_assert_eq!(labels.get(k), Some(v.as_str()));
            }
        }
    }
}
