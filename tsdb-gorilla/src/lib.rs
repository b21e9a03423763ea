#![doc = include_str!("../README.md")]
// One `unsafe` call: the bulk decoder's dispatch to a build for the CPU's instructions, after
// checking that the CPU has them (`Decoder::decode_into`).
#![deny(unsafe_code)]
#![deny(missing_docs)]

mod bits;
mod compressor;
mod decoder;
mod encoder;
mod format;

pub use compressor::GorillaCompressor;
pub use decoder::{Decoder, decode, decode_to_vecs};
pub use encoder::Encoder;

/// The format version this crate writes and reads (the first byte of every block).
pub const FORMAT_VERSION: u8 = format::FORMAT_VERSION;

/// Encodes `(timestamp, value)` pairs into one block.
pub fn encode(points: &[(i64, f64)]) -> Vec<u8> {
    let mut enc = Encoder::with_capacity(points.len());
    enc.extend_from_slice(points);
    enc.finish()
}

/// Encodes a timestamp column and a value column of equal length into one block.
///
/// Fails with [`tsdb_core::Error::InvalidInput`] when the lengths differ.
pub fn encode_columns(timestamps: &[i64], values: &[f64]) -> tsdb_core::Result<Vec<u8>> {
    if timestamps.len() != values.len() {
        return Err(tsdb_core::Error::invalid_input(format_args!(
            "{} timestamps but {} values",
            timestamps.len(),
            values.len()
        )));
    }
    let mut enc = Encoder::with_capacity(timestamps.len());
    enc.extend_from_columns(timestamps, values);
    Ok(enc.finish())
}
