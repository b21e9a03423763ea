//! Arbitrary bytes fed to the cold-tier (pco) decoder, whole and for a range of time: it must
//! never panic; whatever it accepts must encode again to a block that decodes to the same
//! points, bit for bit; and a range read of a block that decodes holds every point of the
//! block inside the range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_core::TimeRange;
use tsdb_pco::PcoCompressor;

fuzz_target!(|data: &[u8]| {
    let c = PcoCompressor::new();
    let (mut ts, mut vs) = (Vec::new(), Vec::new());
    let whole = c.decode_columns(data, &mut ts, &mut vs);
    // A range from the block's own first timestamp when it decodes, else a fixed one.
    let start = ts.first().copied().unwrap_or(1_700_000_000_000);
    let range = TimeRange {
        start,
        end: start.saturating_add(20_000_000),
    };
    let (mut t3, mut v3) = (Vec::new(), Vec::new());
    let partial = c.decode_columns_in(data, range, &mut t3, &mut v3);
    if let Ok(n) = whole {
        assert_eq!((ts.len(), vs.len()), (n, n));
        let again = c.encode_columns(&ts, &vs).expect("decoded columns encode");
        let (mut t2, mut v2) = (Vec::new(), Vec::new());
        c.decode_columns(&again, &mut t2, &mut v2)
            .expect("a re-encoded block decodes");
        assert_eq!(t2, ts);
        assert!(v2.iter().zip(&vs).all(|(a, b)| a.to_bits() == b.to_bits()));
        partial.expect("every page of a block that decodes decodes");
        let inside = |t: &i64| range.start <= *t && *t <= range.end;
        let want: Vec<(i64, u64)> = ts
            .iter()
            .zip(&vs)
            .filter(|(t, _)| inside(t))
            .map(|(t, v)| (*t, v.to_bits()))
            .collect();
        let got: Vec<(i64, u64)> = t3
            .iter()
            .zip(&v3)
            .filter(|(t, _)| inside(t))
            .map(|(t, v)| (*t, v.to_bits()))
            .collect();
        assert_eq!(got, want);
    }
});
