#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod catalog;
mod chunks;
mod index;
mod postings;
mod value;

pub use index::MemoryTimeIndex;
