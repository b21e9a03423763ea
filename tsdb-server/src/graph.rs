//! The graph page at `/` (and `/graph`), for a user without Grafana: a query box, a time
//! range, a step, the instant answer as a table and the range answer as a chart drawn on
//! the server as SVG (`tsdb-render`'s chart, which `gorilla-tsdb plot` draws too). Plain
//! HTML forms, no JavaScript. `/graph/chart.svg`
//! serves the chart alone.
//!
//! Queries go through the same path as `/api/v1/query(_range)`: the same engine, limits,
//! concurrency slots and timeout.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use gorilla_tsdb::promql::{LabelSet, Series, Value, format_float};
use tsdb_render::chart::{ChartOptions, MAX_DRAWN, RGBColor, color};

use crate::api::params::{Params, parse_duration_ns, parse_time};
use crate::api::query::{Evaluation, evaluate_with, now_ms};
use crate::api::response::ApiError;
use crate::state::AppState;

/// Rows of the table at most.
const MAX_ROWS: usize = 1000;
/// Chart size, pixels.
const SIZE: (u32, u32) = (1000, 420);

/// What the form asks.
struct Form {
    query: String,
    range_text: String,
    end_text: String,
    step_text: String,
    start: i64,
    end: i64,
    step: i64,
}

fn form(params: &Params) -> Result<Form, String> {
    let query = params.get("query").unwrap_or_default().to_owned();
    let range_text = params.get("range").unwrap_or("1h").to_owned();
    let end_text = params.get("end").unwrap_or_default().to_owned();
    let step_text = params.get("step").unwrap_or_default().to_owned();
    let range_ns = parse_duration_ns(&range_text).map_err(|e| format!("range: {e}"))?;
    let range = i64::try_from(range_ns / 1_000_000)
        .ok()
        .filter(|r| *r > 0)
        .ok_or("range: must be positive")?;
    let end = if end_text.is_empty() {
        now_ms()
    } else {
        parse_time(&end_text).map_err(|e| format!("end: {e}"))?
    };
    let step = if step_text.is_empty() {
        // About 250 points across the chart, at least a second, in whole seconds.
        ((range / 250).max(1_000) / 1_000) * 1_000
    } else {
        let ns = parse_duration_ns(&step_text).map_err(|e| format!("step: {e}"))?;
        i64::try_from(ns / 1_000_000)
            .ok()
            .filter(|s| *s > 0)
            .ok_or("step: must be at least a millisecond")?
    };
    if range / step > 11_000 {
        return Err("step: more than 11,000 points over the range; take a larger step".into());
    }
    Ok(Form {
        query,
        range_text,
        end_text,
        step_text,
        start: end.saturating_sub(range),
        end,
        step,
    })
}

/// `GET /` and `GET /graph`.
pub(crate) async fn page(State(state): State<AppState>, params: Params) -> Response {
    let mut html = String::with_capacity(16 * 1024);
    html.push_str(HEAD);
    let form = form(&params);
    let (query, range, end, step) = match &form {
        Ok(f) => (
            f.query.as_str(),
            f.range_text.as_str(),
            f.end_text.as_str(),
            f.step_text.as_str(),
        ),
        Err(_) => (params.get("query").unwrap_or_default(), "1h", "", ""),
    };
    let _ = write!(
        html,
        r#"<form method="get" action="/graph">
<textarea name="query" rows="3" placeholder="PromQL, e.g. rate(http_requests_total[5m])">{}</textarea>
<div class="row"><label>range <input name="range" value="{}" size="6"></label>
<label>end <input name="end" value="{}" placeholder="now" size="24"></label>
<label>step <input name="step" value="{}" placeholder="auto" size="6"></label>
<button type="submit">Execute</button></div>
</form>
"#,
        escape(query),
        escape(range),
        escape(end),
        escape(step)
    );
    match form {
        Err(e) => {
            let _ = write!(html, "<p class=\"error\">{}</p>", escape(&e));
        }
        Ok(f) if f.query.trim().is_empty() => {
            html.push_str("<p class=\"hint\">Enter a PromQL expression.</p>");
        }
        Ok(f) => results(&state, &f, &mut html).await,
    }
    html.push_str("</body></html>\n");
    Html(html).into_response()
}

/// The table (instant query at the end) and the chart (range query) of a query.
async fn results(state: &AppState, f: &Form, html: &mut String) {
    let timeout = state.inner.options.query_timeout;
    let instant = evaluate_with(
        state,
        f.query.clone(),
        Evaluation::Instant { time: f.end },
        timeout,
        |v| v,
    )
    .await;
    html.push_str("<h2>Table</h2>");
    match instant {
        Ok(value) => table(&value, html),
        Err(e) => error(&e, html),
    }
    html.push_str("<h2>Graph</h2>");
    let range = Evaluation::Range {
        start: f.start,
        end: f.end,
        step: f.step,
    };
    let (start, end, step) = (f.start, f.end, f.step);
    let drawn = evaluate_with(state, f.query.clone(), range, timeout, move |v| match v {
        Value::Matrix(series) => chart(&series, start, end, step).map(|svg| (svg, series)),
        _ => Err("the expression is not an instant vector or scalar".to_owned()),
    })
    .await;
    match drawn {
        Ok(Ok((svg, series))) => {
            html.push_str("<div class=\"chart\">");
            html.push_str(&svg);
            html.push_str("</div>");
            legend(&series, html);
        }
        Ok(Err(e)) => {
            let _ = write!(html, "<p class=\"error\">{}</p>", escape(&e));
        }
        Err(e) => error(&e, html),
    }
}

fn error(e: &ApiError, html: &mut String) {
    let _ = write!(html, "<p class=\"error\">{}</p>", escape(&e.message));
}

fn table(value: &Value, html: &mut String) {
    html.push_str("<table><tr><th>series</th><th>value</th></tr>");
    let mut row = |labels: &str, value: &str| {
        let _ = write!(
            html,
            "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
            escape(labels),
            escape(value)
        );
    };
    match value {
        Value::Scalar { value, .. } => row("scalar", &format_float(*value)),
        Value::String { value, .. } => row("string", value),
        Value::Vector(samples) => {
            if samples.is_empty() {
                row("(no data)", "");
            }
            for s in samples.iter().take(MAX_ROWS) {
                row(&s.metric.to_string(), &format_float(s.value));
            }
        }
        Value::Matrix(series) => {
            for s in series.iter().take(MAX_ROWS) {
                let points: Vec<String> = s
                    .points
                    .iter()
                    .map(|(t, v)| format!("{} @{}", format_float(*v), *t as f64 / 1000.0))
                    .collect();
                row(&s.metric.to_string(), &points.join("\n"));
            }
        }
    }
    html.push_str("</table>");
    let n = match value {
        Value::Vector(s) => s.len(),
        Value::Matrix(s) => s.len(),
        _ => 0,
    };
    if n > MAX_ROWS {
        let _ = write!(
            html,
            "<p class=\"hint\">{MAX_ROWS} of {n} series shown.</p>"
        );
    }
}

fn legend(series: &[Series], html: &mut String) {
    html.push_str("<table class=\"legend\">");
    for (i, s) in series.iter().take(MAX_DRAWN).enumerate() {
        let RGBColor(r, g, b) = color(i);
        let _ = write!(
            html,
            "<tr><td><span class=\"swatch\" style=\"background:#{r:02x}{g:02x}{b:02x}\"></span>{}</td></tr>",
            escape(&label_text(&s.metric))
        );
    }
    html.push_str("</table>");
    if series.len() > MAX_DRAWN {
        let _ = write!(
            html,
            "<p class=\"hint\">{MAX_DRAWN} of {} series drawn.</p>",
            series.len()
        );
    }
    if series.is_empty() {
        html.push_str("<p class=\"hint\">No data in the range.</p>");
    }
}

fn label_text(labels: &LabelSet) -> String {
    let text = labels.to_string();
    if text.is_empty() {
        "{}".to_owned()
    } else {
        text
    }
}

/// The chart of a range query's series, as an SVG document (the legend is the page's).
pub(crate) fn chart(series: &[Series], start: i64, end: i64, step: i64) -> Result<String, String> {
    let opts = ChartOptions {
        width: SIZE.0,
        height: SIZE.1,
        ..ChartOptions::default()
    };
    tsdb_render::chart::svg(series, start, end, step, &opts).map_err(|e| e.to_string())
}

/// `GET /graph/chart.svg?query=...&range=...&end=...&step=...`: the chart alone.
pub(crate) async fn chart_svg(State(state): State<AppState>, params: Params) -> Response {
    let f = match form(&params) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let range = Evaluation::Range {
        start: f.start,
        end: f.end,
        step: f.step,
    };
    let (start, end, step) = (f.start, f.end, f.step);
    let svg = evaluate_with(
        &state,
        f.query,
        range,
        state.inner.options.query_timeout,
        move |v| match v {
            Value::Matrix(series) => chart(&series, start, end, step),
            _ => Err("the expression is not an instant vector or scalar".to_owned()),
        },
    )
    .await;
    match svg {
        Ok(Ok(svg)) => {
            let mut r = svg.into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("image/svg+xml"),
            );
            r
        }
        Ok(Err(e)) => (StatusCode::UNPROCESSABLE_ENTITY, e).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Text made safe inside HTML elements and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gorilla TSDB</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; max-width: 1060px; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
textarea { width: 100%; font-family: ui-monospace, monospace; font-size: 0.95rem; box-sizing: border-box; }
.row { margin-top: 0.5rem; display: flex; gap: 1rem; align-items: center; flex-wrap: wrap; }
table { border-collapse: collapse; width: 100%; font-family: ui-monospace, monospace; font-size: 0.85rem; }
td, th { border-bottom: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; white-space: pre-wrap; }
td.num { text-align: right; }
.legend td { border: none; padding: 0.1rem 0.5rem; }
.swatch { display: inline-block; width: 0.8rem; height: 0.8rem; margin-right: 0.5rem; vertical-align: middle; }
.error { color: #b00020; white-space: pre-wrap; font-family: ui-monospace, monospace; }
.hint { color: #666; }
nav a { margin-right: 1rem; }
</style></head><body>
<h1>Gorilla TSDB</h1>
<nav><a href="/graph">graph</a><a href="/metrics">metrics</a><a href="/api/v1/label/__name__/values">metric names</a><a href="/api/v1/status/buildinfo">build info</a></nav>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_an_svg_with_a_line_per_series() {
        let series = vec![
            Series {
                metric: LabelSet::from_pairs([("__name__", "m"), ("job", "a")]),
                points: (0..10).map(|i| (i * 1000, i as f64)).collect(),
            },
            Series {
                metric: LabelSet::from_pairs([("__name__", "m"), ("job", "b")]),
                points: (0..10).map(|i| (i * 1000, 10.0 - i as f64)).collect(),
            },
        ];
        let svg = chart(&series, 0, 9000, 1000).expect("drawn");
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for i in 0..2 {
            let RGBColor(r, g, b) = color(i);
            let stroke = format!("stroke=\"#{r:02X}{g:02X}{b:02X}\"");
            let lines = svg
                .lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(&stroke))
                .count();
            assert_eq!(lines, 1, "series {i} ({stroke}): {svg}");
        }
        assert!(
            chart(&[], 0, 1000, 10)
                .expect("empty chart")
                .starts_with("<svg")
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
