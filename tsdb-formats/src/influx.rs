//! InfluxDB line protocol: `measurement,tag=v field=1.5,other=2i <timestamp>`.
//!
//! Each numeric field becomes a series of the metric `<measurement>_<field>` (or
//! `<measurement>` for a field named `value`), with the tags as labels; names are made valid
//! with [`sanitize_metric_name`] and [`sanitize_label_name`]. Integers and booleans (as 0/1)
//! are values; string fields are rejected. The parsing itself is the `influxdb-line-protocol`
//! crate's (InfluxDB IOx's parser).
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

use influxdb_line_protocol::FieldValue;
use tsdb_core::Labels;

use crate::item::{Line, numbered_lines};
use crate::names::{sanitize_label_name, sanitize_metric_name};
use crate::precision::Precision;

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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            precision: Precision::Nanoseconds,
            default_timestamp: None,
            extra_labels: Vec::new(),
        }
    }
}

/// The samples of `text`, line by line: one [`Line`] per numeric field, and a rejected
/// [`Line`] for each line or field that cannot be taken. Comments (`#`) and blank lines
/// yield nothing.
pub fn decode<'a>(text: &'a str, opts: &'a Options) -> impl Iterator<Item = Line> + 'a {
    numbered_lines(text)
        .filter(|(_, line)| !line.starts_with('#'))
        .flat_map(move |(number, line)| decode_line(number, line, opts))
}

fn decode_line(number: usize, line: &str, opts: &Options) -> Vec<Line> {
    let parsed = match influxdb_line_protocol::parse_lines(line).next() {
        Some(Ok(p)) => p,
        Some(Err(e)) => return vec![Line::rejected(number, format!("line protocol: {e}"))],
        None => return Vec::new(),
    };
    let t = match (parsed.timestamp, opts.default_timestamp) {
        (Some(ts), _) => opts.precision.to_millis(ts),
        (None, Some(t)) => t,
        (None, None) => return vec![Line::rejected(number, "no timestamp")],
    };
    let measurement = parsed.series.measurement.as_str();
    let mut tags: Vec<(String, String)> = parsed
        .series
        .tag_set
        .iter()
        .flatten()
        .map(|(k, v)| (sanitize_label_name(k.as_str()), v.as_str().to_owned()))
        .filter(|(k, _)| !opts.extra_labels.iter().any(|(e, _)| e == k))
        .collect();
    tags.extend(opts.extra_labels.iter().cloned());
    let mut out = Vec::with_capacity(parsed.field_set.len());
    for (field, value) in &parsed.field_set {
        let v = match value {
            FieldValue::F64(v) => *v,
            FieldValue::I64(v) => *v as f64,
            FieldValue::U64(v) => *v as f64,
            FieldValue::Boolean(b) => f64::from(u8::from(*b)),
            FieldValue::String(_) => {
                out.push(Line::rejected(
                    number,
                    format!("field {:?} is a string, not a number", field.as_str()),
                ));
                continue;
            }
        };
        let metric = if field.as_str() == "value" {
            sanitize_metric_name(measurement)
        } else {
            sanitize_metric_name(&format!("{measurement}_{}", field.as_str()))
        };
        match Labels::new(&metric, tags.iter().map(|(k, v)| (k, v))) {
            Ok(labels) => out.push(Line::sample(number, labels, t, v)),
            Err(e) => out.push(Line::rejected(number, e.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Item;

    /// `(series, t, v)` of every sample.
    type Samples = Vec<(String, i64, f64)>;

    /// The samples, and `(line, reason)` of every rejection.
    fn samples(text: &str, opts: &Options) -> (Samples, Vec<(usize, String)>) {
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
        assert!(bad[0].1.contains("string"), "{bad:?}");
        assert_eq!(bad[1].0, 4);
    }

    #[test]
    fn missing_timestamps_take_the_default_or_are_rejected() {
        let (ok, bad) = samples("m v=1\n", &Options::default());
        assert!(ok.is_empty());
        assert_eq!(bad, vec![(1, "no timestamp".to_owned())]);
        let opts = Options {
            default_timestamp: Some(42),
            extra_labels: vec![("job".to_owned(), "x".to_owned())],
            ..Options::default()
        };
        let (ok, _) = samples("m,job=y v=1\n", &opts);
        assert_eq!(ok, vec![(r#"m_v{job="x"}"#.to_owned(), 42, 1.0)]);
    }
}
