//! Placeholder: the codec lands with issue 2.
