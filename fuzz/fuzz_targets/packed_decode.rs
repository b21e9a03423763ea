//! Arbitrary bytes fed to the bit-packed decoder: it must never panic, and whatever it
//! accepts must encode again to a block that decodes to the same points, bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_packed::PackedCompressor;

fuzz_target!(|data: &[u8]| {
    let c = PackedCompressor::new();
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    if let Ok(n) = c.decode_columns(data, &mut ts, &mut vs) {
        assert_eq!((ts.len(), vs.len()), (n, n));
        let again = c.encode_columns(&ts, &vs).expect("decoded columns encode");
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        c.decode_columns(&again, &mut t2, &mut v2)
            .expect("a re-encoded block decodes");
        assert_eq!(t2, ts);
        assert!(v2.iter().zip(&vs).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
});
