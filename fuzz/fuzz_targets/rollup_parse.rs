//! The rollup tiers' parsers of on-disk bytes: the container of a tier's chunk and the
//! `ROLLUPS` state file. Arbitrary bytes give an error or a value, never a panic; whatever
//! parses writes back as it was read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_database::fuzzing;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0, rest)) => {
            fuzzing::rollup_container(rest);
        }
        Some((_, rest)) => {
            fuzzing::rollup_state(rest);
        }
        None => {}
    }
});
