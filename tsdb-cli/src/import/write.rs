//! Parsed chunks into the database, in input order, in two stages that overlap: the
//! chunk's new series registered in one batch (one catalog write for all of them), then its
//! points in one batch; points the database refuses are taken out by the error's own terms,
//! counted and reported with their line, and the rest written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use gorilla_tsdb::{DataPoint, Error, Labels, SeriesId, TimeSeriesDB};
use indicatif::ProgressBar;
use rustc_hash::FxHashSet;
use tsdb_formats::{Reject, RejectKind};

use super::parse::{KindCounts, Parsed};
use super::read::{Done, InFlightBudget};

/// Rejections printed one by one; the rest are only counted.
pub(super) const SHOWN_REJECTS: usize = 20;

/// Whole-batch attempts before a batch is written series by series.
const BATCH_ATTEMPTS: usize = 8;

/// What the import came to.
#[derive(Debug, Default)]
pub(super) struct Totals {
    pub(super) points: u64,
    pub(super) lines: u64,
    /// Lines imported at the default timestamp, having none of their own.
    pub(super) defaulted_lines: u64,
    pub(super) bytes: u64,
    pub(super) series: u64,
    /// Whole lines refused, by reason.
    pub(super) lines_rejected: BTreeMap<&'static str, u64>,
    /// Points refused (by the parser while the rest of their line was taken, or by the
    /// database), by reason.
    pub(super) points_rejected: BTreeMap<&'static str, u64>,
    /// Rejections printed.
    pub(super) shown: usize,
}

impl Totals {
    pub(super) fn rejected_lines(&self) -> u64 {
        self.lines_rejected.values().sum()
    }

    pub(super) fn rejected_points(&self) -> u64 {
        self.points_rejected.values().sum()
    }

    fn add(map: &mut BTreeMap<&'static str, u64>, counts: &KindCounts) {
        for (kind, &n) in RejectKind::ALL.iter().zip(&counts.0) {
            if n > 0 {
                *map.entry(kind.as_str()).or_default() += n;
            }
        }
    }
}

/// Adds to a parser's rejection message the flag that changes the rule.
fn with_hint(reject: &Reject) -> String {
    match reject.kind {
        RejectKind::NoTimestamp => format!(
            "{} (--default-timestamp none refuses such lines; now, or another time, imports them)",
            reject.message
        ),
        RejectKind::BooleanField => format!(
            "{} (--influx-bool as-number imports them as 1 and 0)",
            reject.message
        ),
        RejectKind::InexactInteger => {
            format!(
                "{} (--influx-int as-float imports the nearest float)",
                reject.message
            )
        }
        _ => reject.message.clone(),
    }
}

/// The writer's state.
pub(super) struct Writer<'a> {
    pub(super) db: &'a TimeSeriesDB,
    pub(super) bar: ProgressBar,
    pub(super) budget: Arc<InFlightBudget>,
    pub(super) started: Instant,
    pub(super) totals: Totals,
    /// The series seen, kept only when the database held series before the import: into
    /// an empty one (the CLI holds its lock), the series it holds at the end are the ones
    /// imported, and a million-series import does not keep a second set of them.
    series: Option<FxHashSet<SeriesId>>,
    /// Series the database refused to register, with why.
    refused_series: HashMap<SeriesId, Error>,
    /// Lines of the current input before the next chunk.
    line_base: u64,
    input: usize,
    /// The current chunk's refused points: `(line, why)`.
    refused: Vec<(u64, Why)>,
}

/// Why the database refused a point.
enum Why {
    /// Its own error about the point.
    Database(Error),
    /// The point's series could not be registered.
    Registration(String),
}

impl<'a> Writer<'a> {
    pub(super) fn new(
        db: &'a TimeSeriesDB,
        bar: ProgressBar,
        budget: Arc<InFlightBudget>,
    ) -> Writer<'a> {
        Writer {
            db,
            bar,
            budget,
            started: Instant::now(),
            totals: Totals::default(),
            series: (db.stats().series > 0).then(FxHashSet::default),
            refused_series: HashMap::new(),
            line_base: 0,
            input: usize::MAX,
            refused: Vec::new(),
        }
    }

    /// Writes the chunks, which come in order from [`register_in_order`].
    pub(super) async fn run(
        &mut self,
        mut registered: tokio::sync::mpsc::UnboundedReceiver<Parsed>,
    ) -> Result<(), Error> {
        while let Some(p) = registered.recv().await {
            let weight = p.weight;
            let result = self.apply(p).await;
            self.budget.give_back(weight);
            result?;
        }
        Ok(())
    }

    /// The totals, once the import is over.
    pub(super) fn totals(&mut self) -> Totals {
        let mut totals = std::mem::take(&mut self.totals);
        totals.series = match &self.series {
            Some(seen) => seen.len() as u64,
            None => self.db.stats().series,
        };
        totals
    }

    fn show(&mut self, input: &str, line: u64, message: &str) {
        self.totals.shown += 1;
        if self.totals.shown <= SHOWN_REJECTS {
            self.bar
                .suspend(|| eprintln!("rejected {input}:{line}: {message}"));
        }
    }

    async fn apply(&mut self, mut p: Parsed) -> Result<(), Error> {
        if p.input.index != self.input {
            self.input = p.input.index;
            self.line_base = 0;
        }
        let base = self.line_base + p.skipped_lines;
        self.line_base = base + p.lines;
        if let Some(e) = p.failure.take() {
            return Err(e);
        }
        let name = p.input.name.clone();
        for s in std::mem::take(&mut p.shown) {
            let message = with_hint(&s.reject);
            self.show(&name, base + s.line, &message);
        }
        Totals::add(&mut self.totals.lines_rejected, &p.lines_rejected);
        Totals::add(&mut self.totals.points_rejected, &p.points_rejected);
        self.totals.lines += p.data_lines;
        self.totals.defaulted_lines += p.defaulted_lines;
        self.refused_series.extend(std::mem::take(&mut p.refused));
        if let Some(seen) = &mut self.series {
            seen.extend(p.seen.iter().copied());
        }
        let mut points = std::mem::take(&mut p.points);
        let mut origins = std::mem::take(&mut p.origins);
        if !self.refused_series.is_empty() {
            let mut kept = 0;
            for i in 0..points.len() {
                match self.refused_series.get(&points[i].series_id) {
                    Some(e) => {
                        let why = Why::Registration(e.to_string());
                        self.refuse(base + u64::from(origins[i]), "invalid_labels", why);
                    }
                    None => {
                        points[kept] = points[i];
                        origins[kept] = origins[i];
                        kept += 1;
                    }
                }
            }
            points.truncate(kept);
            origins.truncate(kept);
        }
        let inserted = self.insert(base, points, origins).await;
        self.show_refused(&name);
        inserted?;
        self.totals.bytes += p.input_bytes;
        self.bar.inc(p.input_bytes);
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rejected = self.totals.rejected_lines() + self.totals.rejected_points();
        self.bar.set_message(format!(
            "{} points, {:.0} points/s, {rejected} rejected",
            self.totals.points,
            self.totals.points as f64 / secs
        ));
        Ok(())
    }

    /// Counts a refused point; its message waits for the chunk's others, to be shown in
    /// line order.
    fn refuse(&mut self, line: u64, reason: &'static str, why: Why) {
        *self.totals.points_rejected.entry(reason).or_default() += 1;
        self.refused.push((line, why));
    }

    /// Shows the chunk's first refused points, in line order.
    fn show_refused(&mut self, input: &str) {
        let mut refused = std::mem::take(&mut self.refused);
        refused.sort_by_key(|r| r.0);
        for (line, why) in refused {
            if self.totals.shown >= SHOWN_REJECTS {
                self.totals.shown += 1;
                continue;
            }
            let message = match why {
                Why::Database(e) => point_error_reason(&e),
                Why::Registration(m) => m,
            };
            self.show(input, line, &message);
        }
    }

    /// Writes the points; the database takes a batch whole or not at all, so the points an
    /// error names are taken out (and reported) and the rest written again.
    async fn insert(
        &mut self,
        base: u64,
        mut points: Vec<DataPoint>,
        mut origins: Vec<u32>,
    ) -> Result<(), Error> {
        for _ in 0..BATCH_ATTEMPTS {
            if points.is_empty() {
                return Ok(());
            }
            match self.db.insert_batch(&points).await {
                Ok(()) => {
                    self.totals.points += points.len() as u64;
                    return Ok(());
                }
                Err(e) if e.is_about_the_points() => {
                    if self.take_out(base, &mut points, &mut origins, &e) == 0 {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // Many series refused: series by series, then point by point.
        let mut by_series: BTreeMap<SeriesId, (Vec<DataPoint>, Vec<u32>)> = BTreeMap::new();
        for (p, o) in points.into_iter().zip(origins) {
            let entry = by_series.entry(p.series_id).or_default();
            entry.0.push(p);
            entry.1.push(o);
        }
        for (_, (mut points, mut origins)) in by_series {
            let mut done = false;
            for _ in 0..BATCH_ATTEMPTS {
                if points.is_empty() {
                    done = true;
                    break;
                }
                match self.db.insert_batch(&points).await {
                    Ok(()) => {
                        self.totals.points += points.len() as u64;
                        done = true;
                        break;
                    }
                    Err(e) if e.is_about_the_points() => {
                        if self.take_out(base, &mut points, &mut origins, &e) == 0 {
                            break;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if done {
                continue;
            }
            for (p, o) in points.iter().zip(&origins) {
                match self.db.insert_batch(std::slice::from_ref(p)).await {
                    Ok(()) => self.totals.points += 1,
                    Err(e) if e.is_about_the_points() => {
                        self.refuse(base + u64::from(*o), reason_of(&e), Why::Database(e));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Takes out of the batch the points the error is about, reporting each; returns how
    /// many.
    fn take_out(
        &mut self,
        base: u64,
        points: &mut Vec<DataPoint>,
        origins: &mut Vec<u32>,
        e: &Error,
    ) -> usize {
        let refused = |p: &DataPoint| match *e {
            Error::OutOfOrder {
                series,
                oldest_accepted,
                ..
            } => p.series_id == series && p.timestamp < oldest_accepted,
            Error::InTheFuture {
                series,
                latest_accepted,
                ..
            } => p.series_id == series && p.timestamp > latest_accepted,
            Error::SeriesNotFound { series } => p.series_id == series,
            _ => false,
        };
        let reason = reason_of(e);
        let mut kept = 0;
        let mut removed = 0;
        for i in 0..points.len() {
            if refused(&points[i]) {
                removed += 1;
                let why = Why::Database(error_for(e, &points[i]));
                self.refuse(base + u64::from(origins[i]), reason, why);
            } else {
                points[kept] = points[i];
                origins[kept] = origins[i];
                kept += 1;
            }
        }
        points.truncate(kept);
        origins.truncate(kept);
        removed
    }
}

/// The first stage of writing, a task of its own so that registering the new series of
/// the next chunks (the index's work, most of a first import of many series) overlaps
/// with writing the points of this one: puts the parsed chunks back in input order,
/// registers each chunk's new series in one batch, and hands the chunk on. A chunk whose
/// registration failed goes on with the failure, and is the last.
///
/// Fails when a chunk is missing at the end (a parsing thread died): nothing is lost
/// without saying so.
pub(super) async fn register_in_order(
    db: Arc<TimeSeriesDB>,
    mut parsed: tokio::sync::mpsc::UnboundedReceiver<Parsed>,
    registered: tokio::sync::mpsc::UnboundedSender<Parsed>,
    done: Arc<Done>,
) -> Result<(), Error> {
    let (dropper, garbage) = std::sync::mpsc::channel::<Vec<Labels>>();
    // Frees the chunks' new labels (millions of small strings for a million series) off
    // the pipeline's narrowest stage. Ends when this task does.
    let _ = std::thread::Builder::new()
        .name("import-free".to_owned())
        .spawn(move || garbage.into_iter().for_each(drop));
    let mut waiting: BTreeMap<u64, Parsed> = BTreeMap::new();
    let mut next = 0u64;
    while let Some(p) = parsed.recv().await {
        waiting.insert(p.seq, p);
        while let Some(mut p) = waiting.remove(&next) {
            next += 1;
            if p.failure.is_none()
                && let Err(e) = register(&db, &mut p).await
            {
                p.failure = Some(e);
            }
            if !p.new_series.is_empty()
                && let Err(back) = dropper.send(std::mem::take(&mut p.new_series))
            {
                drop(back.0);
            }
            let last = p.failure.is_some();
            if registered.send(p).is_err() || last {
                return Ok(());
            }
        }
    }
    let all_read = done.all_read.load(Ordering::SeqCst);
    if !waiting.is_empty() || (all_read && next != done.chunks.load(Ordering::SeqCst)) {
        return Err(Error::invalid_input(format_args!(
            "the import stopped early: a parsing thread failed before chunk {next} of the input"
        )));
    }
    if !all_read {
        return Err(Error::invalid_input(
            "the import stopped early: the reading thread failed",
        ));
    }
    Ok(())
}

/// Registers the chunk's new series, all in one batch; the ones the database refuses (a
/// series id collision) go into the chunk's `refused`.
async fn register(db: &TimeSeriesDB, p: &mut Parsed) -> Result<(), Error> {
    if p.new_series.is_empty() {
        return Ok(());
    }
    match db.register_series_batch(&p.new_series).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_about_the_points() => {
            // One of them is refused: one by one, to know which.
            for labels in &p.new_series {
                if let Err(e) = db.register_series(labels).await {
                    if !e.is_about_the_points() {
                        return Err(e);
                    }
                    p.refused.push((labels.series_id(), e));
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The error as it concerns point `p` (its own timestamp).
fn error_for(e: &Error, p: &DataPoint) -> Error {
    match *e {
        Error::OutOfOrder {
            series,
            oldest_accepted,
            ..
        } => Error::OutOfOrder {
            series,
            timestamp: p.timestamp,
            oldest_accepted,
        },
        Error::InTheFuture {
            series,
            latest_accepted,
            ..
        } => Error::InTheFuture {
            series,
            timestamp: p.timestamp,
            latest_accepted,
        },
        Error::SeriesNotFound { series } => Error::SeriesNotFound { series },
        _ => Error::invalid_input(e.to_string()),
    }
}

fn reason_of(e: &Error) -> &'static str {
    e.refusal_reason().unwrap_or("refused")
}

/// Why a point was rejected, with a hint where the cause is usually the input's unit.
fn point_error_reason(e: &Error) -> String {
    match e {
        Error::InTheFuture { .. } => format!(
            "{e} (a timestamp in the wrong unit? see --precision; --future-tolerance none accepts any)"
        ),
        _ => e.to_string(),
    }
}
