//! Arbitrary bytes and block metadata fed to the Gorilla decoder: it must never panic, and
//! whatever it accepts must honour the block's metadata and decode the same way on every path.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tsdb_core::{Bytes, CodecId, CompressedBlock, SeriesId};
use tsdb_gorilla::{Decoder, Encoder, GorillaCompressor, decode, decode_to_vecs};

#[derive(Arbitrary, Debug)]
struct Input {
    point_count: u32,
    start_time: i64,
    end_time: i64,
    series: u64,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let plain = decode(&input.data);
    let bulk = decode_to_vecs(&input.data);
    match (&plain, &bulk) {
        (Ok(points), Ok((ts, vs))) => {
            assert_eq!(points.len(), ts.len());
            for (p, (t, v)) in points.iter().zip(ts.iter().zip(vs)) {
                assert_eq!((p.0, p.1.to_bits()), (*t, v.to_bits()));
            }
            // An accepted block can be resumed and re-encodes to the same points.
            let resumed = Encoder::resume(&input.data).expect("an accepted block resumes");
            assert_eq!(resumed.point_count(), points.len() as u64);
            let again = decode(&resumed.finish()).expect("re-encoded block decodes");
            assert_eq!(again.len(), points.len());
            for (a, b) in again.iter().zip(points) {
                assert_eq!((a.0, a.1.to_bits()), (b.0, b.1.to_bits()));
            }
        }
        (Err(_), Err(_)) => {}
        _ => panic!("decode and decode_to_vecs disagree: {plain:?} vs {bulk:?}"),
    }
    // The iterator agrees with the bulk decoder too.
    if let Ok(dec) = Decoder::new(&input.data) {
        let items: Result<Vec<_>, _> = dec.collect();
        assert_eq!(items.is_ok(), plain.is_ok());
    }

    let block = CompressedBlock {
        codec: CodecId::GORILLA,
        series_id: SeriesId(input.series),
        start_time: input.start_time,
        end_time: input.end_time,
        point_count: input.point_count,
        data: Bytes::from(input.data),
    };
    if let Ok(points) = GorillaCompressor::new().decompress_sync(&block) {
        assert_eq!(points.len(), block.point_count as usize);
        let min = points.iter().map(|p| p.timestamp).min().unwrap_or(0);
        let max = points.iter().map(|p| p.timestamp).max().unwrap_or(0);
        assert_eq!((min, max), (block.start_time, block.end_time));
        assert!(points.iter().all(|p| p.series_id == block.series_id));
    }
});
