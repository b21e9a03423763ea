//! Decoded points into the database: new series registered in one batch (one catalog write
//! and fsync for all of them), then one batch of every point; points the database
//! refuses are taken out and counted, and the rest written. Runs on a task of its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{StreamExt, stream};
use gorilla_tsdb::{DataPoint, Error, Labels, SeriesId};
use tokio::sync::OwnedSemaphorePermit;

use super::{Protocol, WriteError};
use crate::metrics::{ProtocolLabel, RejectLabels};
use crate::state::{AppState, Shared};

/// Registrations in flight at once.
const REGISTRATIONS_AT_ONCE: usize = 64;

/// Whole-batch attempts before the write goes series by series.
const BATCH_ATTEMPTS: usize = 8;

/// Points refused, by reason: how many and the first message.
#[derive(Debug, Default)]
pub(crate) struct Rejections {
    by_reason: Vec<(&'static str, u64, String)>,
}

impl Rejections {
    pub(crate) fn add(
        &mut self,
        reason: &'static str,
        count: u64,
        message: impl FnOnce() -> String,
    ) {
        if count == 0 {
            return;
        }
        match self.by_reason.iter_mut().find(|r| r.0 == reason) {
            Some(r) => r.1 += count,
            None => self.by_reason.push((reason, count, message())),
        }
    }

    pub(crate) fn total(&self) -> u64 {
        self.by_reason.iter().map(|r| r.1).sum()
    }

    /// `N samples rejected: 3 out_of_order (first: ...); ...`.
    pub(crate) fn describe(&self) -> String {
        let parts: Vec<String> = self
            .by_reason
            .iter()
            .map(|(reason, n, first)| format!("{n} {reason} (first: {first})"))
            .collect();
        format!("{} samples rejected: {}", self.total(), parts.join("; "))
    }
}

/// Points grouped by series, in the order series first appear.
#[derive(Debug, Default)]
pub(crate) struct Grouped {
    series: Vec<(Labels, Vec<(i64, f64)>)>,
    index: HashMap<Labels, usize>,
}

impl Grouped {
    pub(crate) fn push(&mut self, labels: Labels, t: i64, v: f64) {
        match self.index.get(&labels) {
            Some(&i) => self.series[i].1.push((t, v)),
            None => {
                self.index.insert(labels.clone(), self.series.len());
                self.series.push((labels, vec![(t, v)]));
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// Writes `points` on a task of its own (a dropped request does not cut the write in two,
/// nor free its write slot early) and counts what was ingested. Returns once every accepted
/// point is durable.
pub(crate) async fn write(
    state: &AppState,
    protocol: Protocol,
    points: Grouped,
    rejections: Rejections,
    slot: OwnedSemaphorePermit,
) -> Result<Rejections, WriteError> {
    on_own_task(
        state,
        protocol,
        rejections,
        slot,
        |shared, mut rejections| async move {
            let result = write_grouped(&shared, points.series, &mut rejections).await;
            (result, rejections)
        },
    )
    .await
}

/// Runs `work` on a task of its own that holds the write slot until it ends, records its
/// duration and ingested samples, and maps a database error to its answer.
async fn on_own_task<F, Fut>(
    state: &AppState,
    protocol: Protocol,
    rejections: Rejections,
    slot: OwnedSemaphorePermit,
    work: F,
) -> Result<Rejections, WriteError>
where
    F: FnOnce(Arc<Shared>, Rejections) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = (Result<u64, Error>, Rejections)> + Send,
{
    let shared = state.inner.clone();
    let task = tokio::spawn(async move {
        // The write slot is the task's: held until the write ends, whatever the request.
        let _slot = slot;
        let started = Instant::now();
        let (result, rejections) = work(shared.clone(), rejections).await;
        record(&shared, protocol, started, &result);
        result.map(|_| rejections)
    });
    match task.await {
        Ok(result) => result.map_err(|e| classify(&e, state)),
        Err(e) => Err(WriteError::Internal(format!("the write task failed: {e}"))),
    }
}

/// Counts a write's duration and its ingested samples.
fn record(shared: &Shared, protocol: Protocol, started: Instant, result: &Result<u64, Error>) {
    let label = ProtocolLabel {
        protocol: protocol.as_str(),
    };
    let metrics = &shared.metrics;
    metrics
        .write_duration
        .get_or_create(&label)
        .observe(started.elapsed().as_secs_f64());
    if let Ok(accepted) = result {
        metrics
            .samples_ingested
            .get_or_create(&label)
            .inc_by(*accepted);
    }
}

/// Counts the refused points and answers 400 when there are any (the others were written).
pub(crate) fn finish(
    state: &AppState,
    protocol: Protocol,
    rejections: &Rejections,
) -> Result<(), WriteError> {
    for (reason, n, _) in &rejections.by_reason {
        state
            .inner
            .metrics
            .samples_rejected
            .get_or_create(&RejectLabels {
                protocol: protocol.as_str(),
                reason,
            })
            .inc_by(*n);
    }
    if rejections.total() > 0 {
        return Err(WriteError::BadData(rejections.describe()));
    }
    Ok(())
}

/// The answer for a database error that is not about particular points.
fn classify(e: &Error, state: &AppState) -> WriteError {
    let retry = state.inner.options.retry_after;
    match e {
        _ if e.is_retryable() => WriteError::Unavailable(e.to_string(), retry),
        Error::Closed { .. } => WriteError::Unavailable(e.to_string(), retry),
        Error::LimitExceeded { .. } => WriteError::TooLarge(e.to_string()),
        _ => WriteError::Internal(e.to_string()),
    }
}

/// A registered series and its points.
type Group = (SeriesId, Vec<(i64, f64)>);

/// A series' registration and its points.
type Registered = (Result<SeriesId, Error>, Vec<(i64, f64)>);

/// What writing one series on its own came to.
struct SeriesOutcome {
    written: u64,
    refused: Vec<(Error, u64)>,
    failure: Option<Error>,
}

/// Registers the series and writes their points; returns how many points were written.
async fn write_grouped(
    shared: &Arc<Shared>,
    series: Vec<(Labels, Vec<(i64, f64)>)>,
    rejections: &mut Rejections,
) -> Result<u64, Error> {
    let registered = register(shared, series).await?;
    let groups = accept_registered(registered, rejections)?;
    let batch: Vec<DataPoint> = groups
        .iter()
        .flat_map(|(id, points)| points.iter().map(|&(t, v)| DataPoint::new(*id, t, v)))
        .collect();
    write_points(shared, batch, rejections).await
}

/// A series the cache did not know: its key, its labels (or why they are invalid), its points.
pub(crate) type Unknown = (
    tsdb_formats::series_key::SeriesKey,
    Result<Labels, String>,
    Vec<(i64, f64)>,
);

/// A request whose series were looked up in the series cache first (remote write).
#[derive(Debug, Default)]
pub(crate) struct Resolved {
    /// The points of the series the cache knew.
    pub(crate) known: Vec<DataPoint>,
    /// The others: their cache key, their labels (or why they are invalid) and their points.
    pub(crate) unknown: Vec<Unknown>,
}

impl Resolved {
    pub(crate) fn is_empty(&self) -> bool {
        self.known.is_empty() && self.unknown.is_empty()
    }
}

/// [`write`] for a [`Resolved`] request: the unknown series are registered (and remembered by
/// the cache), then every point is written in one batch.
pub(crate) async fn write_resolved(
    state: &AppState,
    protocol: Protocol,
    resolved: Resolved,
    rejections: Rejections,
    slot: OwnedSemaphorePermit,
) -> Result<Rejections, WriteError> {
    on_own_task(
        state,
        protocol,
        rejections,
        slot,
        |shared, mut rejections| async move {
            let result = write_resolved_inner(&shared, resolved, &mut rejections).await;
            (result, rejections)
        },
    )
    .await
}

async fn write_resolved_inner(
    shared: &Arc<Shared>,
    resolved: Resolved,
    rejections: &mut Rejections,
) -> Result<u64, Error> {
    let Resolved { mut known, unknown } = resolved;
    let mut keys = Vec::with_capacity(unknown.len());
    let mut series = Vec::with_capacity(unknown.len());
    for (key, labels, points) in unknown {
        match labels {
            Ok(labels) => {
                keys.push(key);
                series.push((labels, points));
            }
            Err(reason) => rejections.add("invalid_labels", points.len() as u64, || reason),
        }
    }
    let registered = register(shared, series).await?;
    for (key, (id, _)) in keys.iter().zip(&registered) {
        if let Ok(id) = id {
            shared.series_cache.insert(*key, *id);
        }
    }
    for (id, points) in accept_registered(registered, rejections)? {
        known.extend(points.iter().map(|&(t, v)| DataPoint::new(id, t, v)));
    }
    let result = write_points(shared, known, rejections).await;
    if rejections.by_reason.iter().any(|r| r.0 == "unknown_series") {
        // An id the cache gave is no longer the database's: start over from the index.
        shared.series_cache.clear();
    }
    result
}

/// Registers every series in one batch: the new ones share one catalog write and fsync.
/// When the database refuses one of them (a series id collision), one by one (concurrently,
/// so that their catalog appends share fsyncs), to know which.
async fn register(
    shared: &Arc<Shared>,
    series: Vec<(Labels, Vec<(i64, f64)>)>,
) -> Result<Vec<Registered>, Error> {
    let db = &shared.db;
    let (labels, points): (Vec<Labels>, Vec<Vec<(i64, f64)>>) = series.into_iter().unzip();
    match db.register_series_batch(&labels).await {
        Ok(ids) => return Ok(ids.into_iter().map(Ok).zip(points).collect()),
        Err(e) if !e.is_about_the_points() => return Err(e),
        Err(_) => {}
    }
    Ok(stream::iter(labels.into_iter().zip(points))
        .map(|(labels, points)| {
            let db = db.clone();
            async move { (db.register_series(&labels).await, points) }
        })
        .buffered(REGISTRATIONS_AT_ONCE)
        .collect()
        .await)
}

/// The registered series and their points; those refused are counted.
fn accept_registered(
    registered: Vec<Registered>,
    rejections: &mut Rejections,
) -> Result<Vec<Group>, Error> {
    let mut groups = Vec::with_capacity(registered.len());
    for (id, points) in registered {
        match id {
            Ok(id) => groups.push((id, points)),
            Err(e) if e.is_about_the_points() => {
                let reason = match e {
                    Error::SeriesIdCollision { .. } => "series_id_collision",
                    _ => "invalid_labels",
                };
                rejections.add(reason, points.len() as u64, || e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(groups)
}

/// Writes the points in one batch, taking out (and counting) those the database refuses;
/// returns how many were written.
async fn write_points(
    shared: &Arc<Shared>,
    mut batch: Vec<DataPoint>,
    rejections: &mut Rejections,
) -> Result<u64, Error> {
    let (db, metrics) = (&shared.db, &shared.metrics);
    for _ in 0..BATCH_ATTEMPTS {
        if batch.is_empty() {
            return Ok(0);
        }
        metrics.write_batches.inc();
        match db.insert_batch(&batch).await {
            Ok(()) => return Ok(batch.len() as u64),
            Err(e) if e.is_about_the_points() => {
                let before = batch.len();
                take_out(&mut batch, &e);
                let removed = (before - batch.len()) as u64;
                if removed == 0 {
                    break;
                }
                rejections.add(reason_of(&e), removed, || e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    // Many series refused: series by series, concurrently (their WAL appends share fsyncs).
    let mut by_series: HashMap<SeriesId, Vec<DataPoint>> = HashMap::new();
    for p in batch {
        by_series.entry(p.series_id).or_default().push(p);
    }
    let results: Vec<SeriesOutcome> = stream::iter(by_series.into_values())
        .map(|points| write_series(shared.clone(), points))
        .buffer_unordered(REGISTRATIONS_AT_ONCE)
        .collect()
        .await;
    let mut written = 0;
    let mut failure = None;
    for outcome in results {
        written += outcome.written;
        for (e, count) in outcome.refused {
            rejections.add(reason_of(&e), count, || e.to_string());
        }
        if failure.is_none() {
            failure = outcome.failure;
        }
    }
    match failure {
        // Some points were written and acknowledged by the database; the request as a whole
        // failed, so the sender retries it: rewriting the same points is harmless.
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// One series' points on their own.
async fn write_series(shared: Arc<Shared>, mut points: Vec<DataPoint>) -> SeriesOutcome {
    let (db, metrics) = (&shared.db, &shared.metrics);
    let mut refused = Vec::new();
    for _ in 0..BATCH_ATTEMPTS {
        if points.is_empty() {
            break;
        }
        metrics.write_batches.inc();
        match db.insert_batch(&points).await {
            Ok(()) => {
                return SeriesOutcome {
                    written: points.len() as u64,
                    refused,
                    failure: None,
                };
            }
            Err(e) if e.is_about_the_points() => {
                let before = points.len();
                take_out(&mut points, &e);
                if before == points.len() {
                    // Nothing to take out by the error's own terms: refuse the series.
                    refused.push((e, before as u64));
                    return SeriesOutcome {
                        written: 0,
                        refused,
                        failure: None,
                    };
                }
                refused.push((e, (before - points.len()) as u64));
            }
            Err(e) => {
                return SeriesOutcome {
                    written: 0,
                    refused,
                    failure: Some(e),
                };
            }
        }
    }
    let left = points.len() as u64;
    if left > 0 {
        refused.push((
            Error::invalid_input("the database kept refusing the series' points"),
            left,
        ));
    }
    SeriesOutcome {
        written: 0,
        refused,
        failure: None,
    }
}

fn reason_of(e: &Error) -> &'static str {
    e.refusal_reason().unwrap_or("invalid")
}

/// Takes out of `batch` the points the error is about: those of the series older or later
/// than what it accepts, or all of an unknown series'.
fn take_out(batch: &mut Vec<DataPoint>, e: &Error) {
    match *e {
        Error::OutOfOrder {
            series,
            oldest_accepted,
            ..
        } => batch.retain(|p| !(p.series_id == series && p.timestamp < oldest_accepted)),
        Error::InTheFuture {
            series,
            latest_accepted,
            ..
        } => batch.retain(|p| !(p.series_id == series && p.timestamp > latest_accepted)),
        Error::SeriesNotFound { series } => batch.retain(|p| p.series_id != series),
        _ => {}
    }
}
