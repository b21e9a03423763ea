//! Arbitrary bytes as Influx line protocol, in several precisions and field rules: decoding
//! must never panic, every sample must carry valid labels and come from a line of the
//! input, and each line's verdicts (its points and rejected fields, or its rejection) must
//! be those it gets alone: no neighbour changes them.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_formats::influx::{Booleans, Integers, Options, decode, scan_line};
use tsdb_formats::{Item, Precision, lines};

fn verdicts(data: &[u8], opts: &Options) -> Vec<(usize, String)> {
    decode(data, opts)
        .filter_map(|line| match line.item {
            Item::Sample(s) => Some((
                line.number,
                format!("{} {} {:x}", s.labels, s.timestamp, s.value.to_bits()),
            )),
            Item::Rejected(r) => Some((line.number, format!("{:?}: {}", r.kind, r.message))),
            Item::Metadata(_) => None,
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let count = lines(data).count();
    for (precision, booleans, integers) in [
        (
            Precision::Nanoseconds,
            Booleans::AsNumber,
            Integers::AsFloat,
        ),
        (Precision::Seconds, Booleans::Reject, Integers::Exact),
        (Precision::Hours, Booleans::AsNumber, Integers::Exact),
    ] {
        let opts = Options {
            precision,
            default_timestamp: Some(0),
            extra_labels: vec![("job".to_owned(), "fuzz".to_owned())],
            booleans,
            integers,
        };
        for line in decode(data, &opts) {
            assert!(line.number >= 1 && line.number <= count.max(1));
            if let Item::Sample(s) = line.item {
                assert_eq!(s.labels.get("job"), Some("fuzz"));
                assert!(!s.labels.metric().is_empty());
            }
        }
        let all = verdicts(data, &opts);
        for (n, line) in lines(data) {
            let here: Vec<&String> = all
                .iter()
                .filter(|(m, _)| *m == n)
                .map(|(_, v)| v)
                .collect();
            let alone = verdicts(line, &opts);
            let alone: Vec<&String> = alone.iter().map(|(_, v)| v).collect();
            assert_eq!(here, alone, "line {n} depends on its neighbours");
            // Every field of a scanned line is visited, and the series text is stable.
            if let Ok(Some(l)) = scan_line(line, &opts) {
                assert!(l.fields(&opts).count() >= 1);
                let again = format!("{} v=1 0", l.series);
                if let Ok(Some(m)) = scan_line(again.as_bytes(), &opts) {
                    assert_eq!(m.series, l.series);
                    assert_eq!(m.tags(&opts), l.tags(&opts));
                }
            }
        }
    }
});
