//! Arbitrary bytes as the importer's CSV: the first line as the header, every other line a
//! record. Scanning must never panic, and each record's verdict must be the one it gets
//! alone under the same header (a record is one line: an unterminated quote costs that line,
//! not the ones after it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_formats::csv::{Header, Options, parse_timestamp};
use tsdb_formats::{Precision, lines};

fuzz_target!(|data: &[u8]| {
    let mut all = lines(data);
    let Some((_, first)) = all.next() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(first) {
        for unit in [Precision::Nanoseconds, Precision::Seconds, Precision::Hours] {
            let _ = parse_timestamp(text, unit);
        }
    }
    let Ok(header) = Header::parse(first) else {
        return;
    };
    let opts = Options::default();
    let verdicts: Vec<String> = all
        .clone()
        .map(|(_, line)| {
            format!(
                "{:?}",
                header
                    .scan(line, &opts)
                    .map(|p| p.map(|(t, v)| (t, v.to_bits())))
            )
        })
        .collect();
    // The same records, each alone after the header.
    for ((_, line), before) in all.zip(&verdicts) {
        let mut alone = first.to_vec();
        alone.push(b'\n');
        alone.extend_from_slice(line);
        let mut again = lines(&alone);
        let header_again = Header::parse(again.next().expect("header").1).expect("header parses");
        let (_, record) = again.next().unwrap_or((2, &b""[..]));
        let verdict = format!(
            "{:?}",
            header_again
                .scan(record, &opts)
                .map(|p| p.map(|(t, v)| (t, v.to_bits())))
        );
        assert_eq!(&verdict, before);
    }
});
