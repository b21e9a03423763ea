//! Why a line, or one field of it, was refused: a [`RejectKind`] to count by and a message
//! that names what was wrong.

use std::fmt;

/// The reason a line or a field was refused, to count rejections by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RejectKind {
    /// Not the format's syntax (a missing `=`, an unterminated quote, trailing garbage...).
    Syntax,
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A value that is not a number.
    BadValue,
    /// A number beyond what a 64-bit float holds (`1e400`; `+Inf` spelled out is valid).
    ValueOutOfRange,
    /// A timestamp that is neither a number nor a date.
    BadTimestamp,
    /// A timestamp beyond what 64-bit milliseconds since the epoch hold.
    TimestampOutOfRange,
    /// No timestamp, and no default given for such lines.
    NoTimestamp,
    /// A label set the database refuses (a reserved or invalid name, a label given twice,
    /// a value over the size limits).
    InvalidLabels,
    /// An Influx string field (only numbers are stored).
    StringField,
    /// An Influx boolean field, refused by [`crate::influx::Booleans::Reject`].
    BooleanField,
    /// An Influx integer that a 64-bit float does not hold exactly, refused by
    /// [`crate::influx::Integers::Exact`].
    InexactInteger,
    /// A line longer than the reader's limit.
    LineTooLong,
    /// A CSV record without the timestamp or value column.
    MissingColumn,
}

impl RejectKind {
    /// Every kind, in the order of [`RejectKind::index`].
    pub const ALL: [RejectKind; 13] = [
        RejectKind::Syntax,
        RejectKind::InvalidUtf8,
        RejectKind::BadValue,
        RejectKind::ValueOutOfRange,
        RejectKind::BadTimestamp,
        RejectKind::TimestampOutOfRange,
        RejectKind::NoTimestamp,
        RejectKind::InvalidLabels,
        RejectKind::StringField,
        RejectKind::BooleanField,
        RejectKind::InexactInteger,
        RejectKind::LineTooLong,
        RejectKind::MissingColumn,
    ];

    /// The kind's name in counts and metrics (`snake_case`).
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::Syntax => "syntax",
            RejectKind::InvalidUtf8 => "invalid_utf8",
            RejectKind::BadValue => "bad_value",
            RejectKind::ValueOutOfRange => "value_out_of_range",
            RejectKind::BadTimestamp => "bad_timestamp",
            RejectKind::TimestampOutOfRange => "timestamp_out_of_range",
            RejectKind::NoTimestamp => "no_timestamp",
            RejectKind::InvalidLabels => "invalid_labels",
            RejectKind::StringField => "string_field",
            RejectKind::BooleanField => "boolean_field",
            RejectKind::InexactInteger => "inexact_integer",
            RejectKind::LineTooLong => "line_too_long",
            RejectKind::MissingColumn => "missing_column",
        }
    }

    /// The kind's position in [`RejectKind::ALL`], to count in an array.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused line or field: the kind, and a message naming what was wrong with which part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// What kind of problem.
    pub kind: RejectKind,
    /// What was wrong, naming the field, label or token (`field "usage": value "oops" is not
    /// a number`).
    pub message: String,
}

impl Reject {
    /// A rejection of `kind` saying `message`.
    pub fn new(kind: RejectKind, message: impl Into<String>) -> Reject {
        Reject {
            kind,
            message: message.into(),
        }
    }

    /// The rejection for a line that is not UTF-8 (`valid_up_to` bytes are).
    pub(crate) fn utf8(valid_up_to: usize) -> Reject {
        Reject::new(
            RejectKind::InvalidUtf8,
            format!(
                "not UTF-8 text (an invalid byte at column {})",
                valid_up_to + 1
            ),
        )
    }

    /// The same rejection with `prefix: ` before the message.
    pub fn within(self, prefix: impl fmt::Display) -> Reject {
        Reject {
            kind: self.kind,
            message: format!("{prefix}: {}", self.message),
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Reject {}

/// Text for a message: `token` quoted, cut to 64 characters.
pub(crate) fn shown(token: &str) -> String {
    const MAX: usize = 64;
    match token.char_indices().nth(MAX) {
        None => format!("{token:?}"),
        Some((cut, _)) => format!("{:?}...", &token[..cut]),
    }
}
