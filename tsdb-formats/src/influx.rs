//! InfluxDB line protocol: `measurement,tag=v field=1.5,other=2i <timestamp>`.
//!
//! Each field becomes a point of the series `<measurement>_<field>` (`<measurement>` for a
//! field named `value`), with the tags as labels; names are made valid with
//! [`sanitize_metric_name`] and [`sanitize_label_name`]. Only numbers are stored, so:
//!
//! | field | becomes |
//! | --- | --- |
//! | float `1.5`, `-2e3` | the value; `1e400` is refused as out of range; line protocol has no `NaN` or `inf` |
//! | integer `12i`, unsigned `12u` | the nearest float ([`Integers::AsFloat`], exact up to 2^53), or refused beyond 2^53 ([`Integers::Exact`]) |
//! | boolean `t`, `true`, `F`, `FALSE`... | 1 or 0 ([`Booleans::AsNumber`]), or refused ([`Booleans::Reject`]) |
//! | string `"text"` | refused, by name |
//!
//! A field that is refused costs that field alone: the line's other fields are taken. A
//! bad measurement, tag or timestamp, an unterminated string, trailing garbage or a byte
//! that is not UTF-8 costs the line. Escapes: a backslash before a comma, a space, an `=`
//! or a backslash in a name makes it part of the name.
//!
//! Two ways in: [`scan_line`], the zero-copy scanner (the series text as written, the
//! fields, the timestamp; [`InfluxLine::tags`] parses the measurement and tags only when
//! asked, so that a caller caching by [`InfluxLine::series`] parses each series once), and
//! [`decode`], every point as a [`Line`] with its [`Labels`] (what the server uses).
//!
//! ```
//! use tsdb_formats::influx::{Options, decode};
//! use tsdb_formats::{Item, Precision};
//! let opts = Options { precision: Precision::Seconds, ..Options::default() };
//! let lines: Vec<_> = decode("cpu,host=a usage=0.5,value=1i 1700000000\n", &opts).collect();
//! let Item::Sample(s) = &lines[0].item else { panic!() };
//! assert_eq!(s.labels.to_string(), r#"cpu_usage{host="a"}"#);
//! assert_eq!(s.timestamp, 1_700_000_000_000);
//! ```

use std::borrow::Cow;

use tsdb_core::Labels;

use crate::item::Line;
use crate::lines::{lines, trim, utf8, words};
use crate::names::{sanitize_label_name, sanitize_metric_name};
use crate::number::{NumberError, parse_float, parse_i64, parse_u64};
use crate::precision::Precision;
use crate::reject::{Reject, RejectKind, shown};

/// How lines are read.
#[derive(Clone, Debug)]
pub struct Options {
    /// Unit of the timestamps. Default: nanoseconds, as InfluxDB.
    pub precision: Precision,
    /// Timestamp (ms) of lines that have none (a server gives the time of arrival); `None`
    /// rejects such lines. Default: `None`.
    pub default_timestamp: Option<i64>,
    /// Labels added to every series (they replace tags of the same name).
    pub extra_labels: Vec<(String, String)>,
    /// What boolean fields become. Default: [`Booleans::AsNumber`].
    pub booleans: Booleans,
    /// What integer fields become. Default: [`Integers::AsFloat`].
    pub integers: Integers,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            precision: Precision::Nanoseconds,
            default_timestamp: None,
            extra_labels: Vec::new(),
            booleans: Booleans::AsNumber,
            integers: Integers::AsFloat,
        }
    }
}

/// What boolean fields become.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Booleans {
    /// `true` is 1 and `false` 0.
    #[default]
    AsNumber,
    /// Refused ([`RejectKind::BooleanField`]).
    Reject,
}

/// What integer fields (`12i`, `12u`) become.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Integers {
    /// The nearest float (exact up to 2^53 in magnitude).
    #[default]
    AsFloat,
    /// The float when it is exact; refused beyond 2^53 ([`RejectKind::InexactInteger`]).
    Exact,
}

/// A line, scanned: its measurement, tags and fields are not parsed yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InfluxLine<'a> {
    /// The measurement and tags as written (`cpu,host=a`). The same text always names the
    /// same tags, so it can key (with a field's name) a cache of resolved series.
    pub series: &'a str,
    /// The field set as written.
    fields: &'a str,
    /// Milliseconds since the epoch: the line's own timestamp in [`Options::precision`], or
    /// [`Options::default_timestamp`].
    pub timestamp: i64,
    /// Whether the line had no timestamp of its own and took [`Options::default_timestamp`].
    pub defaulted: bool,
}

/// One field of a line.
#[derive(Clone, Debug, PartialEq)]
pub struct Field<'a> {
    /// The field's name as written (escapes included); see [`SeriesTags::labels`].
    pub key: &'a str,
    /// Its value, or why the field is refused.
    pub value: Result<f64, Reject>,
}

impl<'a> InfluxLine<'a> {
    /// The fields, in the order written, each with its value or its rejection.
    pub fn fields<'o>(&self, opts: &'o Options) -> Fields<'a, 'o> {
        Fields {
            rest: self.fields,
            opts,
        }
    }

    /// The measurement and tags, parsed and made into label names, with
    /// [`Options::extra_labels`]. Allocates; call it once per distinct
    /// [`InfluxLine::series`] (the answer depends on nothing else but the options).
    pub fn tags(&self, opts: &Options) -> Result<SeriesTags, Reject> {
        let b = self.series.as_bytes();
        let measurement_end = unescaped(b, 0, |c| c == b',');
        let measurement = unescape(&self.series[..measurement_end]).into_owned();
        let mut tags: Vec<(String, String)> = Vec::new();
        let mut i = measurement_end;
        while i < b.len() {
            // At a comma.
            let start = i + 1;
            let end = unescaped(b, start, |c| c == b',');
            let tag = &self.series[start..end];
            let eq = unescaped(tag.as_bytes(), 0, |c| c == b'=');
            let key = unescape(&tag[..eq]);
            if key.is_empty() {
                return Err(Reject::new(
                    RejectKind::Syntax,
                    format!("a tag has no name (at {})", shown(tag)),
                ));
            }
            if eq == tag.len() {
                return Err(Reject::new(
                    RejectKind::Syntax,
                    format!("tag {}: expected =value", shown(&key)),
                ));
            }
            let value = unescape(&tag[eq + 1..]);
            if value.is_empty() {
                return Err(Reject::new(
                    RejectKind::Syntax,
                    format!("tag {} has no value", shown(&key)),
                ));
            }
            let name = sanitize_label_name(&key);
            if !opts.extra_labels.iter().any(|(e, _)| *e == name) {
                tags.push((name, value.into_owned()));
            }
            i = end;
        }
        tags.extend(opts.extra_labels.iter().cloned());
        Ok(SeriesTags { measurement, tags })
    }
}

/// A line's measurement and tags, parsed: what [`SeriesTags::labels`] makes series of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesTags {
    measurement: String,
    tags: Vec<(String, String)>,
}

impl SeriesTags {
    /// The labels of the series of field `key` (as written, escapes included):
    /// `<measurement>_<field>`, or `<measurement>` for a field named `value`.
    pub fn labels(&self, key: &str) -> Result<Labels, Reject> {
        let field = unescape(key);
        let metric = if field == "value" {
            sanitize_metric_name(&self.measurement)
        } else {
            sanitize_metric_name(&format!("{}_{}", self.measurement, field))
        };
        Labels::new(&metric, self.tags.iter().map(|(k, v)| (k, v)))
            .map_err(|e| Reject::new(RejectKind::InvalidLabels, e.to_string()))
    }
}

/// The fields of a line: see [`InfluxLine::fields`].
#[derive(Clone, Debug)]
pub struct Fields<'a, 'o> {
    rest: &'a str,
    opts: &'o Options,
}

impl<'a> Iterator for Fields<'a, '_> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        if self.rest.is_empty() {
            return None;
        }
        let b = self.rest.as_bytes();
        let (key_end, end) = field_bounds(b, 0).ok()?;
        let key = &self.rest[..key_end];
        let value = if key.is_empty() {
            Err(Reject::new(
                RejectKind::Syntax,
                format!("a field has no name (at {})", shown(&self.rest[..end])),
            ))
        } else if key_end == end {
            Err(Reject::new(
                RejectKind::Syntax,
                format!("field {}: expected =value", shown(&unescape(key))),
            ))
        } else {
            field_value(key, &self.rest[key_end + 1..end], self.opts)
        };
        // At a comma or the end (the scanner checked the field set).
        self.rest = self.rest.get(end + 1..).unwrap_or_default();
        Some(Field { key, value })
    }
}

/// Scans one line (without its newline; spaces around it are allowed): `None` for a blank
/// line or a comment. Allocates only to reject.
pub fn scan_line<'a>(line: &'a [u8], opts: &Options) -> Result<Option<InfluxLine<'a>>, Reject> {
    let line = utf8(trim(line))?;
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let b = line.as_bytes();
    let series_end = unescaped(b, 0, |c| c == b' ');
    let series = &line[..series_end];
    if series.starts_with(',') {
        return Err(Reject::new(
            RejectKind::Syntax,
            "no measurement before the tags",
        ));
    }
    let mut i = series_end;
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    if i == b.len() {
        return Err(Reject::new(
            RejectKind::Syntax,
            format!("no fields: expected field=value after {}", shown(series)),
        ));
    }
    let fields_start = i;
    let mut field_count = 0;
    loop {
        let (key_end, end) = field_bounds(b, i).map_err(|start| {
            let key_end = unescaped(b, start, |c| c == b'=');
            Reject::new(
                RejectKind::Syntax,
                format!(
                    "field {}: unterminated string",
                    shown(&unescape(&line[start..key_end]))
                ),
            )
        })?;
        field_count += usize::from(key_end < end);
        i = end;
        if b.get(i) == Some(&b',') {
            i += 1;
            continue;
        }
        break;
    }
    let fields = &line[fields_start..i];
    if field_count == 0 {
        return Err(Reject::new(
            RejectKind::Syntax,
            format!("no fields: expected field=value, found {}", shown(fields)),
        ));
    }
    while i < b.len() && b[i] == b' ' {
        i += 1;
    }
    let rest = &line[i..];
    let (timestamp, defaulted) = crate::prometheus_text::final_timestamp(
        words(rest),
        opts.precision,
        opts.default_timestamp,
    )?;
    Ok(Some(InfluxLine {
        series,
        fields,
        timestamp,
        defaulted,
    }))
}

/// From `start`, the first byte that `stop` matches and no backslash escapes, or the end.
fn unescaped(b: &[u8], start: usize, stop: impl Fn(u8) -> bool) -> usize {
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            i += 2;
            continue;
        }
        if stop(c) {
            return i;
        }
        i += 1;
    }
    b.len()
}

/// One field from `start`: the end of its key (at `=`, or equal to the field's end when it
/// has none) and the end of the field (at a comma, a space or the end); `Err(start)` for an
/// unterminated string.
fn field_bounds(b: &[u8], start: usize) -> Result<(usize, usize), usize> {
    let key_end = unescaped(b, start, |c| c == b'=' || c == b',' || c == b' ');
    if b.get(key_end) != Some(&b'=') {
        return Ok((key_end, key_end));
    }
    let mut i = key_end + 1;
    if b.get(i) == Some(&b'"') {
        i += 1;
        loop {
            match b.get(i) {
                None => return Err(start),
                Some(b'\\') => i += 2,
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    let end = unescaped(b, i.min(b.len()), |c| c == b',' || c == b' ');
    Ok((key_end, end))
}

/// A name with its escapes taken out: a backslash before `,`, ` `, `=` or `\`.
fn unescape(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && matches!(next, ',' | ' ' | '=' | '\\')
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// The value of field `key` written as `raw`.
fn field_value(key: &str, raw: &str, opts: &Options) -> Result<f64, Reject> {
    let field = || shown(&unescape(key));
    let bad = |kind: RejectKind, what: &str| {
        Reject::new(
            kind,
            format!("field {}: value {} {what}", field(), shown(raw)),
        )
    };
    let as_bool = |v: bool| match opts.booleans {
        Booleans::AsNumber => Ok(f64::from(u8::from(v))),
        Booleans::Reject => Err(Reject::new(
            RejectKind::BooleanField,
            format!("field {} is a boolean; booleans are refused", field()),
        )),
    };
    // An integer of magnitude `m` as the float `v`.
    let exact = |v: f64, m: u64| {
        if opts.integers == Integers::Exact && m > 1 << 53 {
            return Err(bad(
                RejectKind::InexactInteger,
                "is beyond 2^53: a 64-bit float does not hold it exactly",
            ));
        }
        Ok(v)
    };
    let bytes = raw.as_bytes();
    match bytes {
        [] => Err(Reject::new(
            RejectKind::Syntax,
            format!("field {} has no value", field()),
        )),
        [b'"', ..] => {
            if bytes.len() >= 2 && closes_string(bytes) {
                Err(Reject::new(
                    RejectKind::StringField,
                    format!("field {} is a string; only numbers are imported", field()),
                ))
            } else {
                Err(bad(RejectKind::Syntax, "has text after its closing quote"))
            }
        }
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => as_bool(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => as_bool(false),
        [digits @ .., b'i'] => match parse_i64(digits) {
            Ok(v) => exact(v as f64, v.unsigned_abs()),
            Err(NumberError::OutOfRange) => Err(bad(
                RejectKind::ValueOutOfRange,
                "is out of range for a 64-bit integer",
            )),
            Err(NumberError::Syntax) => Err(bad(RejectKind::BadValue, "is not a number")),
        },
        [digits @ .., b'u'] => match parse_u64(digits) {
            Ok(v) => exact(v as f64, v),
            Err(NumberError::OutOfRange) => Err(bad(
                RejectKind::ValueOutOfRange,
                "is out of range for a 64-bit unsigned integer",
            )),
            Err(NumberError::Syntax) => Err(bad(RejectKind::BadValue, "is not a number")),
        },
        _ if !bytes
            .iter()
            .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.' | b'e' | b'E')) =>
        {
            Err(bad(RejectKind::BadValue, "is not a number"))
        }
        _ => match parse_float(raw) {
            Ok(v) => Ok(v),
            Err(NumberError::OutOfRange) => Err(bad(
                RejectKind::ValueOutOfRange,
                "is out of range for a 64-bit float",
            )),
            Err(NumberError::Syntax) => Err(bad(RejectKind::BadValue, "is not a number")),
        },
    }
}

/// Whether a value starting with `"` is one string: its first unescaped closing quote is
/// its last byte.
fn closes_string(b: &[u8]) -> bool {
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i == b.len() - 1,
            _ => i += 1,
        }
    }
    false
}

/// The samples of `text`, line by line: one [`Line`] per numeric field, and a rejected
/// [`Line`] for each line or field that cannot be taken. Comments (`#`) and blank lines
/// yield nothing.
pub fn decode<'a, T>(text: &'a T, opts: &'a Options) -> impl Iterator<Item = Line> + 'a
where
    T: AsRef<[u8]> + ?Sized,
{
    lines(text.as_ref()).flat_map(move |(number, line)| decode_line(number, line, opts))
}

fn decode_line(number: usize, line: &[u8], opts: &Options) -> Vec<Line> {
    let scanned = match scan_line(line, opts) {
        Ok(Some(l)) => l,
        Ok(None) => return Vec::new(),
        Err(r) => return vec![Line::rejected(number, r)],
    };
    let tags = match scanned.tags(opts) {
        Ok(t) => t,
        Err(r) => return vec![Line::rejected(number, r)],
    };
    scanned
        .fields(opts)
        .map(|field| {
            match field
                .value
                .and_then(|v| tags.labels(field.key).map(|l| (l, v)))
            {
                Ok((labels, v)) => Line::sample(number, labels, scanned.timestamp, v),
                Err(r) => Line::rejected(number, r),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Item;

    /// `(series, t, v)` of every sample.
    type Samples = Vec<(String, i64, f64)>;

    /// The samples, and `(line, reason)` of every rejection.
    fn samples(text: &str, opts: &Options) -> (Samples, Vec<(usize, Reject)>) {
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for line in decode(text, opts) {
            match line.item {
                Item::Sample(s) => ok.push((s.labels.to_string(), s.timestamp, s.value)),
                Item::Rejected(r) => bad.push((line.number, r)),
                Item::Metadata(_) => {}
            }
        }
        (ok, bad)
    }

    fn one(line: &str, opts: &Options) -> (Samples, Vec<Reject>) {
        let (ok, bad) = samples(line, opts);
        (ok, bad.into_iter().map(|(_, r)| r).collect())
    }

    fn kinds(line: &str) -> Vec<RejectKind> {
        one(line, &Options::default())
            .1
            .iter()
            .map(|r| r.kind)
            .collect()
    }

    #[test]
    fn fields_become_series_and_bad_lines_are_named() {
        let text = "# comment\n\
                    weather,city=Paris temp=12.5,humidity=80i 1700000000000000000\n\
                    weather,city=Oslo temp=\"cold\",wind=3u 1700000000000000000\n\
                    not line protocol\n\
                    disk,dev=sda value=t 1700000000000000000\n";
        let (ok, bad) = samples(text, &Options::default());
        assert_eq!(
            ok,
            vec![
                (
                    r#"weather_temp{city="Paris"}"#.to_owned(),
                    1_700_000_000_000,
                    12.5
                ),
                (
                    r#"weather_humidity{city="Paris"}"#.to_owned(),
                    1_700_000_000_000,
                    80.0
                ),
                (
                    r#"weather_wind{city="Oslo"}"#.to_owned(),
                    1_700_000_000_000,
                    3.0
                ),
                (r#"disk{dev="sda"}"#.to_owned(), 1_700_000_000_000, 1.0),
            ]
        );
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert_eq!(bad[0].0, 3);
        assert_eq!(bad[0].1.kind, RejectKind::StringField);
        assert!(
            bad[0].1.message.contains("field \"temp\" is a string"),
            "{bad:?}"
        );
        assert_eq!(bad[1].0, 4);
    }

    #[test]
    fn missing_timestamps_take_the_default_or_are_rejected() {
        let (ok, bad) = samples("m v=1\n", &Options::default());
        assert!(ok.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].0, bad[0].1.kind), (1, RejectKind::NoTimestamp));
        let opts = Options {
            default_timestamp: Some(42),
            extra_labels: vec![("job".to_owned(), "x".to_owned())],
            ..Options::default()
        };
        let (ok, _) = samples("m,job=y v=1\n", &opts);
        assert_eq!(ok, vec![(r#"m_v{job="x"}"#.to_owned(), 42, 1.0)]);
    }

    #[test]
    fn a_bad_field_costs_that_field_and_is_named() {
        let (ok, bad) = one(
            "cpu,host=a usage=oops,idle=98i,user=1e400,sys=2.5,name=\"x\" 1000000",
            &Options::default(),
        );
        assert_eq!(
            ok,
            vec![
                (r#"cpu_idle{host="a"}"#.to_owned(), 1, 98.0),
                (r#"cpu_sys{host="a"}"#.to_owned(), 1, 2.5)
            ]
        );
        let messages: Vec<(RejectKind, &str)> =
            bad.iter().map(|r| (r.kind, r.message.as_str())).collect();
        assert_eq!(
            messages,
            vec![
                (
                    RejectKind::BadValue,
                    "field \"usage\": value \"oops\" is not a number"
                ),
                (
                    RejectKind::ValueOutOfRange,
                    "field \"user\": value \"1e400\" is out of range for a 64-bit float"
                ),
                (
                    RejectKind::StringField,
                    "field \"name\" is a string; only numbers are imported"
                ),
            ]
        );
    }

    #[test]
    fn booleans_and_integers_follow_the_options() {
        let line = "m b=true,c=F,i=9007199254740993i,u=3u 0";
        let (ok, bad) = one(line, &Options::default());
        assert_eq!(ok.len(), 4, "{bad:?}");
        assert_eq!(ok[0].2, 1.0);
        assert_eq!(ok[1].2, 0.0);
        assert_eq!(ok[2].2, 9_007_199_254_740_992.0);
        let strict = Options {
            booleans: Booleans::Reject,
            integers: Integers::Exact,
            ..Options::default()
        };
        let (ok, bad) = one(line, &strict);
        assert_eq!(ok, vec![(r#"m_u"#.to_owned(), 0, 3.0)]);
        let refused: Vec<RejectKind> = bad.iter().map(|r| r.kind).collect();
        assert_eq!(
            refused,
            vec![
                RejectKind::BooleanField,
                RejectKind::BooleanField,
                RejectKind::InexactInteger
            ]
        );
        assert!(bad[0].message.contains("\"b\""), "{bad:?}");
        assert_eq!(
            kinds("m i=99999999999999999999i 0"),
            vec![RejectKind::ValueOutOfRange]
        );
        assert_eq!(kinds("m i=-1u 0"), vec![RejectKind::BadValue]);
        assert_eq!(kinds("m i=1.5i 0"), vec![RejectKind::BadValue]);
        assert_eq!(kinds("m i=inf 0"), vec![RejectKind::BadValue]);
        assert_eq!(kinds("m i=NaN 0"), vec![RejectKind::BadValue]);
    }

    #[test]
    fn each_listed_case_is_a_named_reject_of_its_line() {
        // Invalid UTF-8 costs its line only.
        let text = b"m v=1 1000000\nm,h=\xff v=2 2000000\nm v=3 3000000\n";
        let lines: Vec<Line> = decode(&text[..], &Options::default()).collect();
        assert_eq!(lines.len(), 3);
        assert!(matches!(&lines[1].item, Item::Rejected(r) if r.kind == RejectKind::InvalidUtf8));
        assert!(matches!(&lines[2].item, Item::Sample(s) if s.value == 3.0));
        // Timestamps out of range, and not integers.
        assert_eq!(
            kinds("m v=1 99999999999999999999"),
            vec![RejectKind::TimestampOutOfRange]
        );
        let hours = Options {
            precision: Precision::Hours,
            ..Options::default()
        };
        assert_eq!(
            one("m v=1 9000000000000000", &hours).1[0].kind,
            RejectKind::TimestampOutOfRange
        );
        assert_eq!(kinds("m v=1 1e30"), vec![RejectKind::BadTimestamp]);
        // Trailing garbage, structure.
        assert_eq!(kinds("m v=1 1000 garbage"), vec![RejectKind::Syntax]);
        assert_eq!(kinds("m v=\"open 1000"), vec![RejectKind::Syntax]);
        assert_eq!(kinds("m"), vec![RejectKind::Syntax]);
        assert_eq!(kinds("m 1000"), vec![RejectKind::Syntax]);
        assert_eq!(kinds(",t=a v=1 1000"), vec![RejectKind::Syntax]);
        assert_eq!(kinds("m,t v=1 1000"), vec![RejectKind::Syntax]);
        assert_eq!(kinds("m,t= v=1 1000"), vec![RejectKind::Syntax]);
        assert_eq!(kinds("m v= 1000"), vec![RejectKind::Syntax]);
        assert_eq!(kinds("m v=\"a\"b 1000"), vec![RejectKind::Syntax]);
        // A field without = is that field's problem.
        let (ok, bad) = one("m a,v=1 1000000", &Options::default());
        assert_eq!(ok.len(), 1);
        assert_eq!(bad[0].message, "field \"a\": expected =value");
        // Labels the database refuses.
        assert_eq!(kinds("m,__x=a v=1 1000"), vec![RejectKind::InvalidLabels]);
        assert_eq!(kinds("m,a=1,a=2 v=1 1000"), vec![RejectKind::InvalidLabels]);
    }

    #[test]
    fn escapes_and_strings_delimit_right() {
        let (ok, bad) = one(
            r#"my\ cpu,host\=x=a\,b\ c s="x, y=\"z\" ",v=2 1000000"#,
            &Options::default(),
        );
        assert_eq!(
            ok,
            vec![(r#"my_cpu_v{host_x="a,b c"}"#.to_owned(), 1, 2.0)],
            "{bad:?}"
        );
        assert_eq!(bad[0].kind, RejectKind::StringField);
    }
}
