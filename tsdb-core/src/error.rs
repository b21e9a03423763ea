//! The one error type every engine returns.

use std::fmt;

use crate::types::{ChunkLocation, CodecId, SeriesId};

/// Convenience alias used across the workspace.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Gorilla TSDB, with enough context to say what and where.
///
/// Engines keep private error enums for their own details and convert them into one of these
/// variants. The enum is `#[non_exhaustive]`: match the variants you care about and keep a
/// catch-all arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The series is not known to the engine that was asked.
    #[error("series {series} is not registered")]
    SeriesNotFound {
        /// The series that was asked for.
        series: SeriesId,
    },

    /// No chunk is stored at this location (never written, deleted, or beyond the end).
    #[error("{engine}: no chunk at {location}")]
    ChunkNotFound {
        /// The engine that was asked.
        engine: &'static str,
        /// The location that was asked for.
        location: ChunkLocation,
    },

    /// Bytes failed validation: a checksum, a header, a length, or an impossible encoding.
    ///
    /// `source` names the file, block or key the bytes came from; `offset` is the byte offset
    /// inside it where the problem was found.
    #[error("corrupt data in {source_name} at offset {offset}: {reason}")]
    Corrupt {
        /// What held the bytes, e.g. a segment file path or `"gorilla block"`.
        source_name: String,
        /// Byte offset of the problem inside `source_name`.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// A block was handed to a codec that did not write it.
    #[error("{engine} cannot decode blocks written by codec {codec}")]
    UnsupportedCodec {
        /// The codec that was asked to decode.
        engine: &'static str,
        /// The codec id found in the block.
        codec: CodecId,
    },

    /// A batch that must hold one series held points of another.
    #[error("points of series {found} at index {index} in a batch of series {expected}")]
    MixedSeries {
        /// The series of the first point.
        expected: SeriesId,
        /// The series of the offending point.
        found: SeriesId,
        /// Index of the offending point in the batch.
        index: usize,
    },

    /// A point is older than the database accepts: outside the out-of-order window behind its
    /// series' newest point, or older than the retention.
    #[error(
        "point at {timestamp} for series {series} is older than the database accepts (oldest accepted: {oldest_accepted}, by the out-of-order window behind the series' newest point or by the retention)"
    )]
    OutOfOrder {
        /// The series written to.
        series: SeriesId,
        /// The rejected point's timestamp.
        timestamp: i64,
        /// The oldest timestamp the series accepted at that moment.
        oldest_accepted: i64,
    },

    /// A point is further ahead of the wall clock than the database accepts (a timestamp in
    /// seconds or nanoseconds where milliseconds are expected often is).
    #[error(
        "point at {timestamp} for series {series} is too far in the future (latest accepted: {latest_accepted}, the clock plus the future tolerance); timestamps are milliseconds since the Unix epoch"
    )]
    InTheFuture {
        /// The series written to.
        series: SeriesId,
        /// The rejected point's timestamp.
        timestamp: i64,
        /// The latest timestamp accepted at that moment.
        latest_accepted: i64,
    },

    /// Two different label sets hash to the same series id.
    #[error("series id {series} collides: already registered as {existing}, now asked for {new}")]
    SeriesIdCollision {
        /// The colliding id.
        series: SeriesId,
        /// The labels registered first, as text.
        existing: String,
        /// The labels that collided, as text.
        new: String,
    },

    /// Label names or values that break the rules (see [`crate::Labels`]).
    #[error("invalid labels: {reason}")]
    InvalidLabels {
        /// What was wrong.
        reason: String,
    },

    /// A regular-expression matcher that does not compile.
    #[error("invalid matcher for label {label:?}: {reason}")]
    InvalidMatcher {
        /// The label the matcher applies to.
        label: String,
        /// Why it was rejected.
        reason: String,
    },

    /// An argument that breaks a documented precondition (inverted range, zero step, empty
    /// block where one is required, ...).
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What was wrong.
        reason: String,
    },

    /// A configured limit was hit; nothing was done.
    #[error("limit exceeded: {what} would be {requested}, the limit is {limit}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// How many the request needed (or a lower bound).
        requested: u64,
        /// The configured limit.
        limit: u64,
    },

    /// The engine does not support this operation.
    #[error("{engine} does not implement {operation}")]
    NotImplemented {
        /// The operation asked for.
        operation: &'static str,
        /// The engine asked.
        engine: &'static str,
    },

    /// An outside service (e.g. Redis) could not be reached or did not answer in time. The
    /// operation did not take effect, or took effect in full; retrying it is safe.
    #[error("{engine} is unavailable: {reason}")]
    Unavailable {
        /// The engine whose backend failed.
        engine: &'static str,
        /// What happened.
        reason: String,
    },

    /// The backend lost state the engine had written to it (for example Redis restarted
    /// without its data, or was flushed): answers would be incomplete, so none are given.
    /// The owner of the engine restores the state (the database re-registers its series and
    /// chunks from the catalog and storage, then calls [`crate::TimeIndex::mark_rebuilt`]);
    /// until then calls that read fail with this error. Retrying later is safe.
    #[error("{engine} lost its state: {reason}")]
    StateLost {
        /// The engine whose backend lost state.
        engine: &'static str,
        /// What was noticed.
        reason: String,
    },

    /// A directory is held by another process or open handle (see [`crate::DirLock`]).
    #[error("{path} is in use by another process or open handle ({holder} lock held)")]
    InUse {
        /// The locked directory.
        path: String,
        /// What kind of store the lock protects, e.g. `"database"`.
        holder: &'static str,
    },

    /// An earlier write or fsync failed in a way that leaves durability unknown (after a failed
    /// fsync the kernel may have dropped the dirty pages), so the engine refuses every later
    /// write until it is reopened, which recovers from what is on disk.
    #[error("{engine} refuses writes after an earlier failure ({reason}); reopen it to recover")]
    Poisoned {
        /// The engine.
        engine: &'static str,
        /// The failure that poisoned it.
        reason: String,
    },

    /// A task the operation ran on (a blocking file task, a query slice) panicked or was
    /// cancelled; the operation did not complete.
    #[error("{task} task failed: {reason}")]
    TaskFailed {
        /// What the task was doing.
        task: &'static str,
        /// The panic message or cancellation.
        reason: String,
    },

    /// The engine was opened read-only and refuses writes.
    #[error("{engine} was opened read-only: {operation} is refused")]
    ReadOnly {
        /// The engine.
        engine: &'static str,
        /// The refused operation.
        operation: &'static str,
    },

    /// The engine was closed and takes no more requests.
    #[error("{engine} is closed")]
    Closed {
        /// The engine.
        engine: &'static str,
    },

    /// An I/O error, with the path or object it concerned.
    #[error("I/O error on {context}: {source}")]
    Io {
        /// The path or object, e.g. a file name.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Any other failure of an engine's backend, with its source kept for inspection.
    #[error("{engine}: {source}")]
    Engine {
        /// The engine.
        engine: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// Builds [`Error::Corrupt`].
    pub fn corrupt(source_name: impl fmt::Display, offset: u64, reason: impl fmt::Display) -> Self {
        Error::Corrupt {
            source_name: source_name.to_string(),
            offset,
            reason: reason.to_string(),
        }
    }

    /// Builds [`Error::InvalidInput`].
    pub fn invalid_input(reason: impl fmt::Display) -> Self {
        Error::InvalidInput {
            reason: reason.to_string(),
        }
    }

    /// Builds [`Error::TaskFailed`] from a task's join error (a panic or a cancellation).
    pub fn task_failed(task: &'static str, reason: impl fmt::Display) -> Self {
        Error::TaskFailed {
            task,
            reason: reason.to_string(),
        }
    }

    /// Builds [`Error::Io`] from an I/O error and the path or object it concerned.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            context: context.to_string(),
            source,
        }
    }

    /// True when the operation may succeed if retried unchanged (the backend was unavailable,
    /// or lost state that is being restored).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::StateLost { .. })
    }

    /// True when the error is about the points or series of a write (out of order, in the
    /// future, unknown series, invalid input or labels, an id collision), not about the
    /// database: a writer refuses those points and writes the others.
    pub fn is_about_the_points(&self) -> bool {
        matches!(
            self,
            Error::OutOfOrder { .. }
                | Error::InTheFuture { .. }
                | Error::SeriesNotFound { .. }
                | Error::InvalidInput { .. }
                | Error::InvalidLabels { .. }
                | Error::SeriesIdCollision { .. }
        )
    }

    /// A short name for why points were refused, for counts by reason (`out_of_order`,
    /// `in_the_future`, `unknown_series`, `invalid_labels`, `series_id_collision`); `None`
    /// for any other error.
    pub fn refusal_reason(&self) -> Option<&'static str> {
        match self {
            Error::OutOfOrder { .. } => Some("out_of_order"),
            Error::InTheFuture { .. } => Some("in_the_future"),
            Error::SeriesNotFound { .. } => Some("unknown_series"),
            Error::InvalidLabels { .. } => Some("invalid_labels"),
            Error::SeriesIdCollision { .. } => Some("series_id_collision"),
            _ => None,
        }
    }
}
