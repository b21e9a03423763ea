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
    /// Evaluation would hold more in memory than a budget of
    /// [`EngineOptions`](crate::EngineOptions) allows (samples, series, label bytes), or would
    /// make a label name or value longer than allowed. Nothing is returned.
    #[error("{}", resource_message(*resource, *requested, *limit, context))]
    ResourceLimit {
        /// Which budget.
        resource: Resource,
        /// How much the query needed (at least).
        requested: usize,
        /// The configured limit.
        limit: usize,
        /// Where a label limit was hit (e.g. `label_replace() destination "dst"`); empty for
        /// the memory budgets.
        context: String,
    },
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
    /// The series source failed; the error it returned is kept (see
    /// [`PromqlError::source_error`]), so that its kind survives: a storage outage seen
    /// through PromQL is still [`PromqlError::is_retryable`].
    #[error("series source: {0}")]
    Source(#[source] SourceError),
}

/// The error a [`crate::SeriesSource`] returned, shared so that [`PromqlError`] stays `Clone`.
#[derive(Debug, Clone)]
pub struct SourceError(pub std::sync::Arc<tsdb_core::Error>);

impl SourceError {
    /// A source error from a message (for sources that have no `tsdb_core::Error`).
    pub fn message(msg: impl std::fmt::Display) -> Self {
        SourceError(std::sync::Arc::new(tsdb_core::Error::invalid_input(msg)))
    }
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl PartialEq for SourceError {
    /// Equal when they say the same (the underlying error is not comparable).
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

/// A budget of a query's memory, named by [`PromqlError::ResourceLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// Samples held in memory at once ([`EngineOptions::max_samples`](crate::EngineOptions)).
    Samples,
    /// Series held in memory ([`EngineOptions::max_series`](crate::EngineOptions)).
    Series,
    /// Bytes of label names and values held in memory
    /// ([`EngineOptions::max_label_bytes`](crate::EngineOptions)).
    LabelBytes,
    /// Bytes of one label value a function makes
    /// ([`EngineOptions::max_label_value_bytes`](crate::EngineOptions)).
    LabelValueBytes,
    /// Bytes of one label name a function makes
    /// ([`EngineOptions::max_label_name_bytes`](crate::EngineOptions)).
    LabelNameBytes,
}

impl Resource {
    /// What is counted, as a phrase (also the `what` of the [`tsdb_core::Error::LimitExceeded`]
    /// this converts to).
    pub fn what(self) -> &'static str {
        match self {
            Resource::Samples => "samples loaded into memory in query execution",
            Resource::Series => "series held in memory in query execution",
            Resource::LabelBytes => "label bytes held in memory in query execution",
            Resource::LabelValueBytes => "bytes of a label value made by the query",
            Resource::LabelNameBytes => "bytes of a label name made by the query",
        }
    }
}

fn resource_message(resource: Resource, requested: usize, limit: usize, context: &str) -> String {
    let at = if context.is_empty() {
        String::new()
    } else {
        format!(" in {context}")
    };
    match resource {
        // Prometheus's wording for --query.max-samples.
        Resource::Samples => format!(
            "query processing would load too many samples into memory in query execution \
             ({requested} samples at once, the limit is {limit})"
        ),
        Resource::Series => format!(
            "query processing would hold too many series in memory in query execution \
             ({requested} series, the limit is {limit})"
        ),
        Resource::LabelBytes => format!(
            "query processing would hold too many label bytes in memory in query execution \
             ({requested} bytes of label names and values, the limit is {limit})"
        ),
        Resource::LabelValueBytes => {
            format!("label value too long{at}: {requested} bytes, the limit is {limit} bytes")
        }
        Resource::LabelNameBytes => {
            format!("label name too long{at}: {requested} bytes, the limit is {limit} bytes")
        }
    }
}

impl PromqlError {
    pub(crate) fn exec(msg: impl Into<String>) -> Self {
        PromqlError::Execution(msg.into())
    }

    pub(crate) fn resource(resource: Resource, requested: usize, limit: usize) -> Self {
        PromqlError::ResourceLimit {
            resource,
            requested,
            limit,
            context: String::new(),
        }
    }

    /// The series source's own error, when the query failed because of it.
    pub fn source_error(&self) -> Option<&tsdb_core::Error> {
        match self {
            PromqlError::Source(e) => Some(&e.0),
            _ => None,
        }
    }

    /// True when retrying the query unchanged may succeed: the source's backend was
    /// unavailable or is being restored ([`tsdb_core::Error::is_retryable`]).
    pub fn is_retryable(&self) -> bool {
        self.source_error()
            .is_some_and(tsdb_core::Error::is_retryable)
    }

    /// True for the errors of a configured limit: [`PromqlError::ResourceLimit`],
    /// [`PromqlError::LimitExceeded`] and [`PromqlError::TooComplex`].
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            PromqlError::ResourceLimit { .. }
                | PromqlError::LimitExceeded { .. }
                | PromqlError::TooComplex { .. }
        )
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
            PromqlError::ResourceLimit {
                resource,
                requested,
                limit,
                ..
            } => tsdb_core::Error::LimitExceeded {
                what: resource.what(),
                requested: requested as u64,
                limit: limit as u64,
            },
            // The source's own error comes back as it was, kind and all.
            PromqlError::Source(SourceError(e)) => {
                std::sync::Arc::try_unwrap(e).unwrap_or_else(|shared| tsdb_core::Error::Engine {
                    engine: "promql",
                    source: Box::new(SourceError(shared)),
                })
            }
            other => tsdb_core::Error::invalid_input(other),
        }
    }
}

impl From<tsdb_core::Error> for PromqlError {
    /// A limit of the source stays a [`PromqlError::LimitExceeded`]; other errors become
    /// [`PromqlError::Source`], keeping the error itself.
    fn from(e: tsdb_core::Error) -> Self {
        match e {
            tsdb_core::Error::LimitExceeded {
                what,
                requested,
                limit,
            } => PromqlError::LimitExceeded {
                what,
                requested: usize::try_from(requested).unwrap_or(usize::MAX),
                limit: usize::try_from(limit).unwrap_or(usize::MAX),
            },
            other => PromqlError::Source(SourceError(std::sync::Arc::new(other))),
        }
    }
}

/// Result of PromQL operations.
pub type Result<T, E = PromqlError> = std::result::Result<T, E>;
