#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod catalog;
mod chunks;
mod dictionary;
mod index;
mod postings;

pub use index::MemoryTimeIndex;
