//! Request parameters as Prometheus 2.42 reads them (`r.FormValue`, `parseTime`,
//! `parseDuration`, `parseMatchersParam`): from the URL query and, for POST, a form body
//! (whose values come first).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use gorilla_tsdb::LabelMatcher;
use gorilla_tsdb::promql::{EngineOptions, convert_matcher, notation, parse};
use promql_parser::parser::Expr;

use super::response::ApiError;

/// The form values of a request, in Go's order: POST body values first, then the URL
/// query's.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let query = req.uri().query().map(str::to_owned);
        let form = req.method() == Method::POST
            && req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let mut pairs = Vec::new();
        if form {
            let body = Bytes::from_request(req, state)
                .await
                .map_err(IntoResponse::into_response)?;
            pairs.extend(form_urlencoded::parse(&body).into_owned());
        }
        if let Some(q) = query {
            pairs.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
        }
        Ok(Params { pairs })
    }
}

impl Params {
    /// Parameters from a query string alone.
    pub(crate) fn from_query(query: &str) -> Params {
        Params {
            pairs: form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect(),
        }
    }

    /// The first value of `name`, as Go's `FormValue`; `None` when absent or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name` (`match[]`).
    pub(crate) fn all(&self, name: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter, `default` when absent (Prometheus's `parseTimeParam`).
    pub(crate) fn time_or(&self, name: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(text) => parse_time(text).map_err(|e| {
                ApiError::invalid_param(name, format!("Invalid time value for '{name}': {e}"))
            }),
        }
    }

    /// A required time parameter (Prometheus's `parseTime` of `FormValue`).
    pub(crate) fn time(&self, name: &str) -> Result<i64, ApiError> {
        parse_time(self.get(name).unwrap_or_default()).map_err(|e| ApiError::invalid_param(name, e))
    }
}

/// Milliseconds of the earliest time Prometheus's API accepts (its `minTime`).
pub(crate) const MIN_TIME_MS: i64 = -9_223_309_901_257_974_000;
/// Milliseconds of the latest time Prometheus's API accepts (its `maxTime`).
pub(crate) const MAX_TIME_MS: i64 = 9_223_309_901_257_974_999;

/// Float seconds (rounded to the millisecond) or RFC 3339, as Prometheus's `parseTime`;
/// milliseconds since the epoch.
pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    let cannot = || format!("cannot parse {s:?} to a valid timestamp");
    if let Some(t) = go_float(s) {
        return notation::seconds_to_ms(t).ok_or_else(cannot);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match s {
        "-292273086-05-16T16:47:06Z" => Ok(MIN_TIME_MS),
        "292277025-08-18T07:12:54.999999999Z" => Ok(MAX_TIME_MS),
        _ => Err(cannot()),
    }
}

/// Go's `strconv.ParseFloat` for the forms people send (the workspace's one reading of a
/// number of seconds).
fn go_float(s: &str) -> Option<f64> {
    notation::parse_seconds(s)
}

/// Float seconds or a Prometheus duration (`5m`, `1h30m`), as Prometheus's
/// `parseDuration`; nanoseconds.
pub(crate) fn parse_duration_ns(s: &str) -> Result<i128, String> {
    if let Some(d) = go_float(s) {
        let ns = d * 1e9;
        if !ns.is_finite() || ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ns as i128);
    }
    if s == "0" {
        return Ok(0);
    }
    promql_parser::util::parse_duration(s)
        .ok()
        .and_then(|d| i128::try_from(d.as_nanos()).ok())
        .filter(|ns| *ns <= i128::from(i64::MAX))
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// Each `match[]` selector as its matchers (Prometheus's `parseMatchersParam`): every one
/// must be a plain series selector, and each must have a matcher that does not match the
/// empty string.
pub(crate) fn parse_match_sets(
    texts: &[&str],
    opts: &EngineOptions,
) -> Result<Vec<Vec<LabelMatcher>>, String> {
    let mut sets = Vec::with_capacity(texts.len());
    for text in texts {
        let query = parse(text, opts).map_err(|e| e.to_string())?;
        let Expr::VectorSelector(vs) = query.expr() else {
            return Err(format!("{text:?} is not a series selector"));
        };
        if vs.offset.is_some() || vs.at.is_some() || !vs.matchers.or_matchers.is_empty() {
            return Err(format!("{text:?} is not a plain series selector"));
        }
        let mut matchers = Vec::with_capacity(vs.matchers.matchers.len() + 1);
        if let Some(name) = &vs.name {
            matchers.push(LabelMatcher::metric(name.clone()));
        }
        for m in &vs.matchers.matchers {
            matchers.push(convert_matcher(m).map_err(|e| e.to_string())?);
        }
        sets.push(matchers);
    }
    if sets
        .iter()
        .any(|set| set.iter().all(LabelMatcher::matches_empty))
    {
        return Err("match[] must contain at least one non-empty matcher".to_owned());
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_prometheus_parses_them() {
        assert_eq!(parse_time("1435781451.781"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451.7814"), Ok(1_435_781_451_781));
        assert_eq!(parse_time("1435781451.7816"), Ok(1_435_781_451_782));
        assert_eq!(parse_time("-1.5"), Ok(-1_500));
        assert_eq!(parse_time("0"), Ok(0));
        assert_eq!(parse_time("1e3"), Ok(1_000_000));
        assert_eq!(
            parse_time("2015-07-01T20:10:51.781Z"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(
            parse_time("2015-07-01T22:10:51.7819+02:00"),
            Ok(1_435_781_451_781)
        );
        assert_eq!(parse_time("-292273086-05-16T16:47:06Z"), Ok(MIN_TIME_MS));
        assert_eq!(
            parse_time("292277025-08-18T07:12:54.999999999Z"),
            Ok(MAX_TIME_MS)
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("NaN").is_err());
        assert!(parse_time("").is_err());
    }

    #[test]
    fn durations_parse_as_prometheus_parses_them() {
        assert_eq!(parse_duration_ns("15"), Ok(15_000_000_000));
        assert_eq!(parse_duration_ns("0.5"), Ok(500_000_000));
        assert_eq!(parse_duration_ns("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration_ns("1d"), Ok(86_400_000_000_000));
        assert_eq!(parse_duration_ns("0"), Ok(0));
        assert_eq!(parse_duration_ns("-1"), Ok(-1_000_000_000));
        assert!(parse_duration_ns("1e30").is_err());
        assert!(parse_duration_ns("5 minutes").is_err());
        assert!(parse_duration_ns("").is_err());
    }

    #[test]
    fn match_sets_need_a_selector_with_a_non_empty_matcher() {
        let opts = EngineOptions::default();
        let sets = parse_match_sets(&["up", "{job=~\"a.*\"}"], &opts).expect("valid");
        assert_eq!(sets.len(), 2);
        assert!(parse_match_sets(&["{job=~\".*\"}"], &opts).is_err());
        assert!(parse_match_sets(&["rate(up[5m])"], &opts).is_err());
        assert!(parse_match_sets(&["up{"], &opts).is_err());
        assert!(parse_match_sets(&["up offset 5m"], &opts).is_err());
    }

    #[test]
    fn post_values_come_before_query_values() {
        let p = Params {
            pairs: vec![
                ("query".into(), "a".into()),
                ("query".into(), "b".into()),
                ("empty".into(), String::new()),
            ],
        };
        assert_eq!(p.get("query"), Some("a"));
        assert_eq!(p.all("query"), vec!["a", "b"]);
        assert_eq!(p.get("empty"), None);
        assert_eq!(
            Params::from_query("match%5B%5D=up&x=1").all("match[]"),
            vec!["up"]
        );
    }
}
