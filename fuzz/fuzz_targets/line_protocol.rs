//! Arbitrary text as Influx line protocol, in every precision: decoding must never panic,
//! and every sample must carry valid labels and come from a line of the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_formats::influx::{Options, decode};
use tsdb_formats::{Item, Precision};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    for precision in [Precision::Nanoseconds, Precision::Seconds, Precision::Hours] {
        let opts = Options {
            precision,
            default_timestamp: Some(0),
            extra_labels: vec![("job".to_owned(), "fuzz".to_owned())],
        };
        for line in decode(text, &opts) {
            assert!(line.number >= 1 && line.number <= lines.max(1));
            if let Item::Sample(s) = line.item {
                assert_eq!(s.labels.get("job"), Some("fuzz"));
                assert!(!s.labels.metric().is_empty());
            }
        }
    }
});
