//! Arbitrary bytes as Prometheus text exposition: decoding must never panic, every sample
//! must carry valid labels and come from a line of the input, and each line's verdict (its
//! sample, or its rejection) must be the one it gets alone: no neighbour changes it. The
//! scanner's series text must determine the labels (what the importer's cache relies on).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_formats::prometheus_text::{Options, Scanned, decode, scan_line};
use tsdb_formats::{Item, lines};

/// What decoding said about each line: `(line, verdict)`, metadata left out (a `# HELP`
/// pairs with its `# TYPE` by design).
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
    let opts = Options {
        default_timestamp: Some(0),
        extra_labels: vec![("job".to_owned(), "fuzz".to_owned())],
        ..Options::default()
    };
    let all = verdicts(data, &opts);
    let count = lines(data).count();
    for (n, v) in &all {
        assert!(*n >= 1 && *n <= count.max(1));
        assert!(!v.is_empty());
    }
    for (n, line) in lines(data) {
        let here: Vec<&String> = all
            .iter()
            .filter(|(m, _)| *m == n)
            .map(|(_, v)| v)
            .collect();
        let alone = verdicts(line, &opts);
        let alone: Vec<&String> = alone.iter().map(|(_, v)| v).collect();
        assert_eq!(here, alone, "line {n} depends on its neighbours");
        // The series text alone gives the same labels.
        if let Ok(Scanned::Sample(s)) = scan_line(line, &opts) {
            let again = format!("{} 0 0", s.series);
            let Ok(Scanned::Sample(t)) = scan_line(again.as_bytes(), &opts) else {
                panic!("{again:?} does not scan as a sample");
            };
            assert_eq!(t.series, s.series);
            match (s.labels(&opts), t.labels(&opts)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a, b);
                    assert_eq!(a.get("job"), Some("fuzz"));
                    assert!(!a.metric().is_empty());
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("{a:?} vs {b:?}"),
            }
        }
    }
});
