//! A range query's series as a line chart: a time axis (UTC), a value axis, one line per
//! series (broken where the series has a gap of more than a step, or a value that is not
//! finite), and optionally a title and a legend of the series' labels in PromQL notation.
//!
//! SVG always; PNG with the `png` feature. Text is measured with (and in PNG drawn in) Hack,
//! a font bundled in the binary, so nothing depends on the fonts the machine has; an SVG
//! names the `monospace` family, which the viewer draws with its own font.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use tsdb_promql::Series;

pub use plotters::style::RGBColor;

/// Series drawn at most; the legend says how many were left out.
pub const MAX_DRAWN: usize = 50;

/// The font family of every text.
const FONT: &str = "monospace";

/// Height of a legend row, pixels.
const LEGEND_ROW: u32 = 18;

/// Room above and below the legend's rows, pixels.
const LEGEND_PAD: u32 = 8;

/// Left margin of the chart, pixels (its value axis labels are inside the chart).
const MARGIN: u32 = 12;

/// Width of the value axis labels' area, pixels.
const Y_LABELS: u32 = 70;

/// How a chart looks.
#[derive(Clone, Debug)]
pub struct ChartOptions {
    /// Width of the image, pixels.
    pub width: u32,
    /// Height of the chart, pixels; a legend adds its rows below.
    pub height: u32,
    /// A line of text above the chart (cut to fit the width).
    pub title: Option<String>,
    /// Whether a legend (a row per drawn series: its colour and labels) is drawn below.
    pub legend: bool,
}

impl Default for ChartOptions {
    /// 1000 × 420, no title, no legend.
    fn default() -> Self {
        ChartOptions {
            width: 1000,
            height: 420,
            title: None,
            legend: false,
        }
    }
}

/// Drawing a chart failed.
#[derive(Clone, Debug)]
pub struct ChartError(String);

impl std::fmt::Display for ChartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "drawing the chart failed: {}", self.0)
    }
}

impl std::error::Error for ChartError {}

fn fail(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// The first colours: Tableau's ten without its grey (which the grid has), dark enough on
/// white.
const FIRST_COLORS: [RGBColor; 9] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The colour of the `i`th series (the legend's too).
pub fn color(i: usize) -> RGBColor {
    match FIRST_COLORS.get(i) {
        Some(&c) => c,
        None => {
            let c = Palette99::pick(i - FIRST_COLORS.len()).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

/// The size of the image of `series` drawn with `opts`: the legend's rows are added to the
/// chart's height.
pub fn image_size(series: &[Series], opts: &ChartOptions) -> (u32, u32) {
    let rows = legend_rows(series, opts);
    let legend = if rows == 0 {
        0
    } else {
        rows * LEGEND_ROW + 2 * LEGEND_PAD
    };
    (opts.width.max(200), opts.height.max(120) + legend)
}

/// Rows of the legend: one per drawn series, one more when some were left out or none is
/// there.
fn legend_rows(series: &[Series], opts: &ChartOptions) -> u32 {
    if !opts.legend {
        return 0;
    }
    let drawn = series.len().min(MAX_DRAWN) as u32;
    drawn + u32::from(series.len() > MAX_DRAWN || series.is_empty())
}

/// Registers the bundled font under the family names plotters may ask for, once.
fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for name in [FONT, "sans-serif", "serif"] {
            // Only fails on a font file that does not parse; the drawing then says so.
            let _ = plotters::style::register_font(
                name,
                FontStyle::Normal,
                epaint_default_fonts::HACK_REGULAR,
            );
        }
    });
}

/// The chart of a range query's `series` from `start` to `end` (ms) every `step` ms, as an
/// SVG document.
pub fn svg(
    series: &[Series],
    start: i64,
    end: i64,
    step: i64,
    opts: &ChartOptions,
) -> Result<String, ChartError> {
    fonts();
    let size = image_size(series, opts);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root, series, start, end, step, opts)?;
        root.present().map_err(fail)?;
    }
    Ok(svg)
}

/// [`svg`]'s chart as a PNG image (8-bit RGB).
#[cfg(feature = "png")]
pub fn png(
    series: &[Series],
    start: i64,
    end: i64,
    step: i64,
    opts: &ChartOptions,
) -> Result<Vec<u8>, ChartError> {
    fonts();
    let (w, h) = image_size(series, opts);
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root, series, start, end, step, opts)?;
        root.present().map_err(fail)?;
    }
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, w, h);
    encoder.set_color(::png::ColorType::Rgb);
    encoder.set_depth(::png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(fail)?;
    writer.write_image_data(&rgb).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}

/// `text` cut to at most `max` characters, with `…` when cut.
fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Characters of Hack (0.6 em wide) at `size` that fit in `pixels`.
fn chars_in(pixels: u32, size: u32) -> usize {
    (f64::from(pixels) / (f64::from(size) * 0.6))
        .floor()
        .max(4.0) as usize
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[Series],
    start: i64,
    end: i64,
    step: i64,
    opts: &ChartOptions,
) -> Result<(), ChartError> {
    let drawn = &series[..series.len().min(MAX_DRAWN)];
    let (lo, hi) = value_range(drawn);
    let end = end.max(start + 1);
    let span = end - start;
    root.fill(&WHITE).map_err(fail)?;
    let (width, _) = root.dim_in_pixel();
    let (plot, legend) = if legend_rows(series, opts) > 0 {
        let (upper, lower) = root.split_vertically(opts.height.max(120));
        (upper, Some(lower))
    } else {
        (root.clone(), None)
    };
    let mut builder = ChartBuilder::on(&plot);
    builder
        .margin(MARGIN)
        // Room for the last time label, centred on the right edge.
        .margin_right(MARGIN + 36)
        .x_label_area_size(44)
        .y_label_area_size(Y_LABELS);
    if let Some(title) = &opts.title {
        builder.caption(fit(title, chars_in(width - 2 * MARGIN, 16)), (FONT, 16));
    }
    let mut chart = builder
        .build_cartesian_2d(start..end, lo..hi)
        .map_err(fail)?;
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|t| time_label(*t, span))
        .y_label_formatter(&|v| short_float(*v))
        .x_desc(time_description(start, end))
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(fail)?;
    for (i, s) in drawn.iter().enumerate() {
        let style = color(i).stroke_width(2);
        for segment in segments(&s.points, step) {
            if segment.len() == 1 {
                chart
                    .draw_series(segment.iter().map(|&p| Circle::new(p, 2, style.filled())))
                    .map_err(fail)?;
            } else {
                chart
                    .draw_series(LineSeries::new(segment, style))
                    .map_err(fail)?;
            }
        }
    }
    if let Some(area) = legend {
        draw_legend(&area, series, width)?;
    }
    Ok(())
}

/// A row per drawn series below the chart: a line of its colour and its labels.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
    width: u32,
) -> Result<(), ChartError> {
    let x0 = (MARGIN + Y_LABELS) as i32;
    let text_x = x0 + 32;
    let max = chars_in(width.saturating_sub(text_x as u32 + MARGIN), 13);
    let style = TextStyle::from((FONT, 13).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    let row_y = |i: usize| (LEGEND_PAD + i as u32 * LEGEND_ROW + LEGEND_ROW / 2) as i32;
    for (i, s) in series.iter().take(MAX_DRAWN).enumerate() {
        let y = row_y(i);
        area.draw(&PathElement::new(
            vec![(x0, y), (x0 + 24, y)],
            color(i).stroke_width(3),
        ))
        .map_err(fail)?;
        let text = fit(&crate::notation::label_set(&s.metric), max);
        area.draw(&Text::new(text, (text_x, y), style.clone()))
            .map_err(fail)?;
    }
    let note = if series.is_empty() {
        Some("no data in the range".to_owned())
    } else if series.len() > MAX_DRAWN {
        Some(format!("{MAX_DRAWN} of {} series drawn", series.len()))
    } else {
        None
    };
    if let Some(note) = note {
        let y = row_y(series.len().min(MAX_DRAWN));
        area.draw(&Text::new(
            note,
            (x0, y),
            style.color(&RGBColor(100, 100, 100)),
        ))
        .map_err(fail)?;
    }
    Ok(())
}

/// The value axis' range: the finite values with a margin, `0..1` without any.
fn value_range(series: &[Series]) -> (f64, f64) {
    let finite = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        (lo - pad, hi + pad)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    }
}

/// Runs of a series' points with no gap (more than a step apart) and finite values.
pub fn segments(points: &[(i64, f64)], step: i64) -> Vec<Vec<(i64, f64)>> {
    let mut out: Vec<Vec<(i64, f64)>> = Vec::new();
    let mut current: Vec<(i64, f64)> = Vec::new();
    for &(t, v) in points {
        let gap = current.last().is_some_and(|&(last, _)| t - last > step);
        if !v.is_finite() || gap {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            if !v.is_finite() {
                continue;
            }
        }
        current.push((t, v));
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A time axis label: the time of day over a day at most, else the date and the time.
fn time_label(ms: i64, span: i64) -> String {
    let format = if span <= 86_400_000 {
        "%H:%M:%S"
    } else {
        "%m-%d %H:%M"
    };
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(String::new, |t| t.format(format).to_string())
}

/// The time axis' description: the dates it covers, in UTC.
fn time_description(start: i64, end: i64) -> String {
    let date = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string())
    };
    let (a, b) = (date(start), date(end));
    if a == b {
        format!("{a} (UTC)")
    } else {
        format!("{a} to {b} (UTC)")
    }
}

/// A value axis label: three decimals at most, exponent form outside 1e-3..1e6.
fn short_float(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else {
        let text = format!("{v:.3}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsdb_promql::LabelSet;

    fn two_series() -> Vec<Series> {
        vec![
            Series {
                metric: LabelSet::from_pairs([("__name__", "m"), ("job", "a")]),
                points: (0..10).map(|i| (i * 1000, i as f64)).collect(),
            },
            Series {
                metric: LabelSet::from_pairs([("__name__", "m"), ("job", "b")]),
                points: (0..10).map(|i| (i * 1000, 10.0 - i as f64)).collect(),
            },
        ]
    }

    fn stroke(i: usize) -> String {
        let RGBColor(r, g, b) = color(i);
        format!("stroke=\"#{r:02X}{g:02X}{b:02X}\"")
    }

    #[test]
    fn gaps_and_non_finite_values_break_the_lines() {
        let points = [
            (0, 1.0),
            (10, 2.0),
            (30, 3.0),
            (40, f64::NAN),
            (50, 5.0),
            (60, 6.0),
        ];
        assert_eq!(
            segments(&points, 10),
            vec![
                vec![(0, 1.0), (10, 2.0)],
                vec![(30, 3.0)],
                vec![(50, 5.0), (60, 6.0)]
            ]
        );
    }

    #[test]
    fn a_chart_with_a_title_and_a_legend() {
        let series = two_series();
        let opts = ChartOptions {
            title: Some("m{job=~\"a|b\"}".into()),
            legend: true,
            ..ChartOptions::default()
        };
        let svg = svg(&series, 0, 9000, 1000, &opts).expect("drawn");
        assert!(svg.starts_with("<svg"));
        assert_eq!(image_size(&series, &opts), (1000, 420 + 2 * 18 + 16));
        for i in 0..2 {
            // The line and the legend's sample of its colour.
            let lines = svg
                .lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(&stroke(i)))
                .count();
            assert_eq!(lines, 2, "series {i}: {svg}");
        }
        assert!(svg.contains("m{job=&quot;a&quot;}"), "{svg}");
        assert!(svg.contains("m{job=&quot;b&quot;}"), "{svg}");
        assert!(svg.contains("m{job=~&quot;a|b&quot;}"), "the title: {svg}");
        assert!(svg.contains("1970-01-01 (UTC)"), "{svg}");
        let empty = super::svg(&[], 0, 1000, 10, &opts).expect("empty chart");
        assert!(empty.contains("no data in the range"), "{empty}");
    }

    #[test]
    fn without_a_legend_one_line_per_series() {
        let svg = svg(&two_series(), 0, 9000, 1000, &ChartOptions::default()).expect("drawn");
        for i in 0..2 {
            let lines = svg
                .lines()
                .filter(|l| l.starts_with("<polyline") && l.contains(&stroke(i)))
                .count();
            assert_eq!(lines, 1, "series {i}: {svg}");
        }
    }

    #[cfg(feature = "png")]
    #[test]
    fn a_png_has_the_size_and_the_colours() {
        let opts = ChartOptions {
            title: Some("m".into()),
            legend: true,
            ..ChartOptions::default()
        };
        let series = two_series();
        let bytes = png(&series, 0, 9000, 1000, &opts).expect("drawn");
        let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("a PNG");
        let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
        let info = reader.next_frame(&mut pixels).expect("a frame");
        assert_eq!((info.width, info.height), image_size(&series, &opts));
        let count = |c: RGBColor| {
            pixels[..info.buffer_size()]
                .chunks_exact(3)
                .filter(|p| (p[0], p[1], p[2]) == (c.0, c.1, c.2))
                .count()
        };
        assert!(count(color(0)) > 300 && count(color(1)) > 300);
        // The legend's text is drawn: dark pixels below the chart.
        let row = info.width as usize * 3;
        let dark = pixels[row * opts.height as usize..info.buffer_size()]
            .chunks_exact(3)
            .filter(|p| p.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 200, "{dark} dark pixels in the legend");
        if let Some(path) = std::env::var_os("TSDB_RENDER_PNG") {
            std::fs::write(path, png(&series, 0, 9000, 1000, &opts).expect("drawn"))
                .expect("write");
        }
    }

    #[test]
    fn labels_are_short() {
        assert_eq!(short_float(1.5), "1.5");
        assert_eq!(short_float(2.0), "2");
        assert_eq!(short_float(1e7), "1.000e7");
        assert_eq!(time_label(3_600_000, 60_000), "01:00:00");
        assert_eq!(time_label(3_600_000, 3 * 86_400_000), "01-01 01:00");
        assert_eq!(fit("abcdef", 4), "abc…");
    }
}
