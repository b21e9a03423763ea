//! `gorilla-tsdb series`, `labels` and `label-values NAME`: what the database holds, as
//! Prometheus's `/api/v1/series`, `/api/v1/labels` and `/api/v1/label/<name>/values` answer
//! it, one item a line or (`-o json`) in those endpoints' JSON.
//!
//! Series are selected by PromQL selectors (`up{job="node"}`; a series matching any of them
//! is taken), every series without one. With `--start`/`--end`, only series with a sample in
//! the range are taken (the database counts them near the data); label names and values
//! are then those of these series (the server answers those from the index, for all time).

use std::collections::BTreeSet;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use gorilla_tsdb::promql::{
    EngineOptions, RangeFunction, RollupKind, RollupRequest, SelectLimits, SeriesSource,
    convert_matcher, parse,
};
use gorilla_tsdb::{Error, LabelMatcher, Labels, TimeRange, TimeSeriesDB};
use promql_parser::parser::Expr;

use crate::query::parse_matcher;
use crate::time::{now_ms, parse_time};

/// The earliest time Prometheus's API accepts (its `minTime`), ms: `--start`'s default.
const MIN_TIME_MS: i64 = -9_223_309_901_257_974_000;
/// The latest time Prometheus's API accepts (its `maxTime`), ms: `--end`'s default.
const MAX_TIME_MS: i64 = 9_223_309_901_257_974_999;

/// The selection every command of this module takes.
#[derive(Debug, Args)]
pub(crate) struct Selection {
    /// PromQL series selectors, e.g. `up{job="node"}` or `{__name__=~"http_.*"}`; a series
    /// matching any of them is taken. `name=value` (and `!=`, `=~`, `!~`) stands for
    /// `{name="value"}`. Default: every series.
    #[arg(value_name = "SELECTOR")]
    selectors: Vec<String>,

    /// A selector, as the positional ones (repeatable).
    #[arg(long = "match", short = 'm', value_name = "SELECTOR")]
    matches: Vec<String>,

    /// Only series with a sample at or after this time: `now-1h`, RFC 3339,
    /// `YYYY-MM-DD HH:MM:SS` (UTC), seconds since the epoch or `<n>ms`. Default: any time.
    #[arg(long)]
    start: Option<String>,

    /// Only series with a sample at or before this time (same forms). Default: any time.
    #[arg(long)]
    end: Option<String>,

    /// Output: one item a line (series in PromQL notation), or the JSON of the Prometheus
    /// HTTP API's endpoint.
    #[arg(long, short = 'o', value_enum, default_value_t = ListOutput::Text)]
    output: ListOutput,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ListOutput {
    /// One item a line.
    Text,
    /// `{"status":"success","data":[...]}`.
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct SeriesArgs {
    #[command(flatten)]
    selection: Selection,
}

#[derive(Debug, Args)]
pub(crate) struct LabelsArgs {
    #[command(flatten)]
    selection: Selection,
}

#[derive(Debug, Args)]
pub(crate) struct LabelValuesArgs {
    /// The label name, e.g. `job` or `__name__` (the metric names).
    #[arg(value_name = "NAME")]
    name: String,

    #[command(flatten)]
    selection: Selection,
}

/// A PromQL series selector as its label matchers. `name=value`, `name!=value`,
/// `name=~re` and `name!~re` (as `query --match` takes them) are one-matcher selectors.
pub(crate) fn parse_selector(text: &str) -> Result<Vec<LabelMatcher>, Error> {
    let parsed = parse(text, &EngineOptions::default()).map_err(Error::from);
    let selector = parsed.and_then(|query| match query.expr() {
        Expr::VectorSelector(vs)
            if vs.offset.is_none() && vs.at.is_none() && vs.matchers.or_matchers.is_empty() =>
        {
            let mut matchers = Vec::with_capacity(vs.matchers.matchers.len() + 1);
            if let Some(name) = &vs.name {
                matchers.push(LabelMatcher::metric(name.clone()));
            }
            for m in &vs.matchers.matchers {
                matchers.push(convert_matcher(m)?);
            }
            Ok(matchers)
        }
        _ => Err(Error::invalid_input(format_args!(
            "{text:?} is not a series selector such as up{{job=\"node\"}}"
        ))),
    });
    match selector {
        Ok(m) => Ok(m),
        Err(e) if text.contains('{') => Err(e),
        Err(e) => parse_matcher(text).map(|m| vec![m]).map_err(|_| e),
    }
}

impl Selection {
    /// The matcher sets of the selectors; `None` without any.
    fn matcher_sets(&self) -> Result<Option<Vec<Vec<LabelMatcher>>>, Error> {
        let texts: Vec<&String> = self.selectors.iter().chain(&self.matches).collect();
        if texts.is_empty() {
            return Ok(None);
        }
        texts
            .into_iter()
            .map(|t| parse_selector(t))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The time range, `None` when neither end is given.
    fn range(&self) -> Result<Option<(i64, i64)>, Error> {
        if self.start.is_none() && self.end.is_none() {
            return Ok(None);
        }
        let now = now_ms();
        let start = self
            .start
            .as_deref()
            .map_or(Ok(MIN_TIME_MS), |t| parse_time(t, now))?;
        let end = self
            .end
            .as_deref()
            .map_or(Ok(MAX_TIME_MS), |t| parse_time(t, now))?;
        if end < start {
            return Err(Error::invalid_input(format_args!(
                "--start {start} is after --end {end}"
            )));
        }
        Ok(Some((start, end)))
    }

    /// Whether anything narrows the selection (else the index answers for all series).
    fn narrows(&self) -> bool {
        !self.selectors.is_empty()
            || !self.matches.is_empty()
            || self.start.is_some()
            || self.end.is_some()
    }

    /// The label sets of the selected series, sorted.
    async fn select(&self, db: &TimeSeriesDB) -> Result<BTreeSet<Labels>, Error> {
        let sets = self.matcher_sets()?.unwrap_or_else(|| vec![Vec::new()]);
        let range = self.range()?;
        let mut all = BTreeSet::new();
        for set in &sets {
            all.extend(select(db, set, range).await?);
        }
        Ok(all)
    }
}

/// The label sets of the series `matchers` select (all series when empty), with a sample
/// in `range` when given, as the server's `/api/v1/series` selects them.
async fn select(
    db: &TimeSeriesDB,
    matchers: &[LabelMatcher],
    range: Option<(i64, i64)>,
) -> Result<Vec<Labels>, Error> {
    let Some((start, end)) = range else {
        let found = db.find_series(matchers).await?;
        return Ok(found.into_iter().map(|(_, labels)| labels).collect());
    };
    let request = RollupRequest {
        matchers: matchers.to_vec(),
        times: vec![end],
        kind: RollupKind::Range {
            function: RangeFunction::CountOverTime,
            range_ms: end.saturating_sub(start),
        },
    };
    let limits = SelectLimits::new(EngineOptions::default().max_samples, usize::MAX);
    match db.select_rollup(&request, limits).await? {
        Some(series) => Ok(series.into_iter().map(|s| s.labels).collect()),
        None => {
            let found = db
                .query(matchers.to_vec(), TimeRange { start, end })
                .await?;
            Ok(found.into_iter().map(|s| s.labels).collect())
        }
    }
}

/// Prints `lines`, or their JSON: `{"status":"success","data":<json>}`.
fn print(
    output: ListOutput,
    lines: impl Iterator<Item = String>,
    json: String,
) -> Result<(), Error> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written = match output {
        ListOutput::Text => lines.into_iter().try_for_each(|l| writeln!(out, "{l}")),
        ListOutput::Json => writeln!(out, "{}", tsdb_render::json::success_body(&json, &[])),
    };
    written
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("stdout", e))
}

/// The pairs of a label set.
fn pairs(labels: &Labels) -> impl Iterator<Item = (&str, &str)> {
    labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))
}

/// `gorilla-tsdb series`.
pub(crate) async fn series(data_dir: &Path, args: SeriesArgs) -> Result<ExitCode, Error> {
    let sel = &args.selection;
    sel.matcher_sets()?;
    sel.range()?;
    let db = crate::open_read_only(data_dir).await?;
    let found = sel.select(&db).await;
    let found = crate::finish(db, found).await?;
    let mut json = String::from("[");
    if sel.output == ListOutput::Json {
        for (i, labels) in found.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            tsdb_render::json::push_label_pairs(&mut json, pairs(labels));
        }
    }
    json.push(']');
    let lines = found
        .iter()
        .map(|labels| tsdb_render::notation::selector(pairs(labels)));
    print(sel.output, lines, json)?;
    Ok(ExitCode::SUCCESS)
}

/// `gorilla-tsdb labels`.
pub(crate) async fn labels(data_dir: &Path, args: LabelsArgs) -> Result<ExitCode, Error> {
    let sel = &args.selection;
    sel.matcher_sets()?;
    sel.range()?;
    let db = crate::open_read_only(data_dir).await?;
    let found = async {
        if sel.narrows() {
            let series = sel.select(&db).await?;
            Ok(series
                .iter()
                .flat_map(|l| l.iter().map(|label| label.name.clone()))
                .collect::<BTreeSet<String>>())
        } else {
            Ok(db.index().label_names().await?.into_iter().collect())
        }
    }
    .await;
    let names = crate::finish(db, found).await?;
    print_strings(sel.output, &names)
}

/// `gorilla-tsdb label-values NAME`.
pub(crate) async fn label_values(
    data_dir: &Path,
    args: LabelValuesArgs,
) -> Result<ExitCode, Error> {
    let sel = &args.selection;
    let name = args.name.as_str();
    if !valid_label_name(name) {
        return Err(Error::invalid_input(format_args!(
            "invalid label name: {name:?}"
        )));
    }
    sel.matcher_sets()?;
    sel.range()?;
    let db = crate::open_read_only(data_dir).await?;
    let found = async {
        if sel.narrows() {
            let series = sel.select(&db).await?;
            Ok(series
                .iter()
                .filter_map(|l| l.get(name).map(str::to_owned))
                .collect::<BTreeSet<String>>())
        } else {
            Ok(db
                .index()
                .label_values(name)
                .await?
                .into_iter()
                .filter(|v| !v.is_empty())
                .collect())
        }
    }
    .await;
    let values = crate::finish(db, found).await?;
    print_strings(sel.output, &values)
}

fn print_strings(output: ListOutput, items: &BTreeSet<String>) -> Result<ExitCode, Error> {
    let mut json = String::new();
    tsdb_render::json::push_str_array(&mut json, items.iter().map(String::as_str));
    print(output, items.iter().cloned(), json)?;
    Ok(ExitCode::SUCCESS)
}

/// Prometheus's `model.LabelNameRE`: `^[a-zA-Z_][a-zA-Z0-9_]*$`.
fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use gorilla_tsdb::MatchOp;

    #[test]
    fn selectors_parse_as_promql_and_matchers_as_query_takes_them() {
        let m = parse_selector(r#"up{job="node", path=~"/a.*"}"#).expect("selector");
        let got: Vec<(&str, MatchOp, &str)> =
            m.iter().map(|m| (m.name(), m.op(), m.value())).collect();
        assert_eq!(
            got,
            [
                ("__name__", MatchOp::Equal, "up"),
                ("job", MatchOp::Equal, "node"),
                ("path", MatchOp::RegexMatch, "/a.*")
            ]
        );
        let m = parse_selector("host!=a").expect("matcher");
        assert_eq!(
            (m[0].name(), m[0].op(), m[0].value()),
            ("host", MatchOp::NotEqual, "a")
        );
        let m = parse_selector("host=~web.*").expect("matcher");
        assert_eq!(m[0].op(), MatchOp::RegexMatch);
        assert!(parse_selector("rate(up[5m])").is_err());
        assert!(parse_selector("up{job=").is_err());
        assert!(parse_selector("up offset 5m").is_err());
        assert!(valid_label_name("job") && !valid_label_name("1x") && !valid_label_name("a-b"));
    }
}
