#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
// This crate maps files: `unsafe` is denied everywhere but in the one mapping function, whose
// block carries a `// SAFETY:` comment.
#![deny(unsafe_code)]
#![cfg(unix)]

mod config;
mod engine;
mod format;
mod segment;

pub use config::{Durability, LocalDiskConfig};
pub use engine::LocalDiskEngine;
