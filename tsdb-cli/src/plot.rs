//! `gorilla-tsdb plot`: a PromQL range query drawn as a line chart, SVG or PNG by the
//! output file's extension (`tsdb-render`'s chart, the one of the server's graph page): a
//! time axis in UTC, a value axis, a line per series, the query as the title and a legend
//! of the series' labels in PromQL notation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use gorilla_tsdb::Error;
use gorilla_tsdb::promql::{EngineOptions, Value};
use tsdb_render::chart::{ChartOptions, MAX_DRAWN};

use crate::query::{Evaluation, default_step, evaluate};
use crate::time::{now_ms, parse_duration, parse_time};

#[derive(Debug, Args)]
pub(crate) struct PlotArgs {
    /// A PromQL expression giving an instant vector or a scalar, e.g.
    /// `sum by (job) (rate(http_requests_total[5m]))`, evaluated as a range query.
    #[arg(value_name = "PROMQL")]
    promql: String,

    /// The image to write: `.svg` or `.png`.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: PathBuf,

    /// First step: `now-1h`, RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC), seconds since the epoch or `<n>ms`.
    #[arg(long, default_value = "now-1h")]
    start: String,

    /// Last step (same forms as --start).
    #[arg(long, default_value = "now")]
    end: String,

    /// Distance between steps, e.g. `60s`. Default: about 250 steps over the range.
    #[arg(long)]
    step: Option<String>,

    /// The title above the chart. Default: the query.
    #[arg(long)]
    title: Option<String>,

    /// Width of the image, pixels.
    #[arg(long, default_value_t = 1000)]
    width: u32,

    /// Height of the chart, pixels (the legend adds a row per series below it).
    #[arg(long, default_value_t = 420)]
    height: u32,

    /// Most samples the query may hold in memory at once (Prometheus's --query.max-samples).
    #[arg(long, default_value_t = EngineOptions::default().max_samples)]
    max_samples: usize,
}

/// The image formats, by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Svg,
    Png,
}

fn format_of(path: &Path) -> Result<Format, Error> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("svg") => Ok(Format::Svg),
        Some("png") => Ok(Format::Png),
        _ => Err(Error::invalid_input(format_args!(
            "{}: the output file must end in .svg or .png",
            path.display()
        ))),
    }
}

/// `gorilla-tsdb plot`.
pub(crate) async fn run(data_dir: &Path, args: PlotArgs) -> Result<ExitCode, Error> {
    let format = format_of(&args.output)?;
    let now = now_ms();
    let start = parse_time(&args.start, now)?;
    let end = parse_time(&args.end, now)?;
    if end < start {
        return Err(Error::invalid_input(format_args!(
            "--start {start} is after --end {end}"
        )));
    }
    let step = match &args.step {
        Some(s) => parse_duration(s)?,
        None => default_step(start, end),
    };
    if step <= 0 {
        return Err(Error::invalid_input("--step must be positive"));
    }
    let opts = EngineOptions::default().with_max_samples(args.max_samples);
    let value = evaluate(
        data_dir,
        &args.promql,
        Evaluation::Range { start, end, step },
        opts,
    )
    .await?;
    let Value::Matrix(series) = value else {
        return Err(Error::invalid_input(
            "the expression is not an instant vector or a scalar",
        ));
    };
    let chart = ChartOptions {
        width: args.width,
        height: args.height,
        title: Some(args.title.clone().unwrap_or_else(|| args.promql.clone())),
        legend: true,
    };
    let drawn = |e: tsdb_render::chart::ChartError| Error::invalid_input(e.to_string());
    let bytes = match format {
        Format::Svg => tsdb_render::chart::svg(&series, start, end, step, &chart)
            .map_err(drawn)?
            .into_bytes(),
        Format::Png => tsdb_render::chart::png(&series, start, end, step, &chart).map_err(drawn)?,
    };
    std::fs::write(&args.output, bytes).map_err(|e| Error::io(args.output.display(), e))?;
    let (w, h) = tsdb_render::chart::image_size(&series, &chart);
    println!(
        "wrote {} ({w}×{h}): {} series{}",
        args.output.display(),
        series.len().min(MAX_DRAWN),
        if series.len() > MAX_DRAWN {
            format!(" of {} (the first {MAX_DRAWN} are drawn)", series.len())
        } else {
            String::new()
        }
    );
    if series.is_empty() {
        eprintln!("note: the query returned no data in the range");
        for (flag, text) in [("--start", &args.start), ("--end", &args.end)] {
            if let Some(hint) = crate::time::milliseconds_hint(flag, text) {
                eprintln!("{hint}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_comes_from_the_extension() {
        assert_eq!(format_of(Path::new("a.svg")).ok(), Some(Format::Svg));
        assert_eq!(format_of(Path::new("a.PNG")).ok(), Some(Format::Png));
        assert!(format_of(Path::new("a.jpg")).is_err());
        assert!(format_of(Path::new("chart")).is_err());
    }
}
