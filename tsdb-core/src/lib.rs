#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod codec;
mod compressor;
pub mod decimal;
pub mod dense_map;
mod dir_lock;
mod error;
pub mod group_commit;
mod index;
mod labels;
pub mod marker;
mod matcher;
mod storage;
mod types;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use async_trait::async_trait;
pub use bytes::Bytes;

pub use compressor::{Compressor, DynCompressor};
pub use dir_lock::DirLock;
pub use error::{Error, Result};
pub use index::{DynTimeIndex, TimeIndex};
pub use labels::{Label, Labels, METRIC_NAME_LABEL};
pub use matcher::{LabelMatcher, MatchOp};
pub use storage::{DynStorageEngine, StorageDamage, StorageEngine};
pub use types::{
    ChunkLocation, ChunkReference, CodecId, CompressedBlock, DataPoint, SeriesId, TimeRange,
};
