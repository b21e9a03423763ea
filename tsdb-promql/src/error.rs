//! Errors of parsing and evaluating PromQL.

use thiserror::Error;

/// A PromQL query that could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum PromqlError {
    /// The query text is not valid PromQL.
    #[error("parse error{}: {message}", position.map(|p| format!(" at byte {p}")).unwrap_or_default())]
    Parse {
        /// Byte offset in the query text where the problem was found, when known.
        position: Option<usize>,
        /// What was wrong and, where the grammar tells, what was expected instead.
        message: String,
    },
    /// The query is too large or too deeply nested to be accepted.
    #[error("query rejected: {what} is {actual}, the limit is {limit}")]
    TooComplex {
        /// What was measured.
        what: &'static str,
        /// Its size.
        actual: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The query is valid PromQL but failed during evaluation, as it would in Prometheus
    /// (many-to-many matching, a bad label name, a range query of a range vector, ...).
    #[error("execution error: {0}")]
    Execution(String),
    /// Evaluation would touch more samples or steps than allowed.
    #[error("limit exceeded: {what} would be {requested}, the limit is {limit}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// How many were asked for (at least).
        requested: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The query uses a feature this engine does not implement.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// The series source failed.
    #[error("series source: {0}")]
    Source(String),
}

impl PromqlError {
    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        PromqlError::Execution(msg.into())
    }
}

impl From<PromqlError> for tsdb_core::Error {
    fn from(e: PromqlError) -> Self {
        match e {
            PromqlError::LimitExceeded {
                what,
                requested,
                limit,
            } => tsdb_core::Error::LimitExceeded {
                what,
                requested: requested as u64,
                limit: limit as u64,
            },
            other => tsdb_core::Error::invalid_input(other),
        }
    }
}

impl From<tsdb_core::Error> for PromqlError {
    fn from(e: tsdb_core::Error) -> Self {
        PromqlError::Source(e.to_string())
    }
}

/// Result of PromQL operations.
pub type Result<T, E = PromqlError> = std::result::Result<T, E>;
