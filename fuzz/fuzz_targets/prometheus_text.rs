//! Arbitrary text as Prometheus text exposition: decoding must never panic, and every
//! sample must carry valid labels and come from a line of the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_formats::Item;
use tsdb_formats::prometheus_text::{Options, decode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    let opts = Options {
        default_timestamp: Some(0),
        ..Options::default()
    };
    for line in decode(text, &opts) {
        assert!(line.number >= 1 && line.number <= lines.max(1));
        if let Item::Sample(s) = line.item {
            assert!(!s.labels.metric().is_empty());
        }
    }
});
