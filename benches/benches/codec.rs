//! Gorilla codec vs `tsz` 0.1.4, side by side in one run: encode and decode time per point
//! on the real recordings (one block per file, grouped as in `../shared/data/`) and on the
//! synthetic series of `tsdb-testdata`; bytes per point are printed as a table first.
//!
//! Gorilla is timed on each of its paths: `gorilla` (a whole series: `encode`, and
//! `Decoder::decode_into` columns), `gorilla-append` (one `Encoder::append` a point),
//! `gorilla-compressor` (`GorillaCompressor`: `DataPoint`s in and out, as through the
//! `Compressor` trait) and `gorilla-iter` (the decoding iterator).
//!
//! ```text
//! cargo bench -p tsdb-benches --bench codec
//! ```
//!
//! tsz stores `u64` timestamps, a 14-bit first delta and 32-bit delta-of-deltas, so it is fed
//! its own first timestamp as the block start (first delta 0) and every block is checked to
//! round-trip through it before it is timed; a dataset tsz cannot represent is reported and
//! benchmarked for Gorilla alone.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tsdb_core::DataPoint;
use tsdb_gorilla::{Decoder, Encoder, GorillaCompressor};
use tsdb_testdata::Dataset;
use tsz::stream::{BufferedReader, BufferedWriter};
use tsz::{Decode, Encode, StdDecoder, StdEncoder};

/// Points per synthetic series (a multiple of the mixed series' segment).
const SYNTHETIC_POINTS: usize = 16 * 1024;

/// A group of series timed together: every series is one block.
struct Group {
    name: String,
    series: Vec<Vec<(i64, f64)>>,
}

impl Group {
    fn points(&self) -> usize {
        self.series.iter().map(Vec::len).sum()
    }
}

fn groups() -> Vec<Group> {
    let mut out: Vec<Group> = Vec::new();
    if let Some(real) = tsdb_testdata::real::datasets("benches/codec on real recordings")
        .expect("the shared recordings load")
    {
        for Dataset { group, points, .. } in real {
            match out.iter_mut().find(|g| g.name == group) {
                Some(g) => g.series.push(points),
                None => out.push(Group {
                    name: group,
                    series: vec![points],
                }),
            }
        }
    }
    for d in tsdb_testdata::synthetic::all(SYNTHETIC_POINTS, 42) {
        out.push(Group {
            name: d.name,
            series: vec![d.points],
        });
    }
    out
}

/// A whole series into one block: the bulk path (`Encoder::extend_from_slice`), the one
/// `GorillaCompressor` and chunk flushes use.
fn gorilla_encode(points: &[(i64, f64)]) -> Vec<u8> {
    tsdb_gorilla::encode(points)
}

/// The same, one `Encoder::append` call a point: the path of a live head buffer.
fn gorilla_append(points: &[(i64, f64)]) -> Vec<u8> {
    let mut enc = Encoder::with_capacity(points.len());
    for &(t, v) in points {
        enc.append(t, v);
    }
    enc.finish()
}

fn gorilla_decode(block: &[u8], ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> usize {
    let mut dec = Decoder::new(block).expect("own block decodes");
    let n = dec.point_count() as usize;
    ts.resize(n, 0);
    vs.resize(n, 0.0);
    dec.decode_into(ts, vs).expect("own block decodes")
}

fn pco_encode(points: &[(i64, f64)]) -> Vec<u8> {
    let ts: Vec<i64> = points.iter().map(|p| p.0).collect();
    let vs: Vec<f64> = points.iter().map(|p| p.1).collect();
    tsdb_pco::PcoCompressor::new()
        .encode_columns(&ts, &vs)
        .expect("pco encodes")
}

fn pco_decode(block: &[u8], ts: &mut Vec<i64>, vs: &mut Vec<f64>) -> usize {
    ts.clear();
    vs.clear();
    tsdb_pco::PcoCompressor::new()
        .decode_columns(block, ts, vs)
        .expect("own block")
}

fn tsz_encode(points: &[(i64, f64)]) -> Box<[u8]> {
    let start = points.first().map_or(0, |p| p.0 as u64);
    let mut enc = StdEncoder::new(start, BufferedWriter::new());
    for &(t, v) in points {
        enc.encode(tsz::DataPoint::new(t as u64, v));
    }
    enc.close()
}

fn tsz_decode(block: &[u8], out: &mut Vec<(u64, f64)>) -> usize {
    out.clear();
    let mut dec = StdDecoder::new(BufferedReader::new(block.into()));
    while let Ok(p) = dec.next() {
        out.push((p.get_time(), p.get_value()));
    }
    out.len()
}

/// True when tsz gives back every point bit for bit.
fn tsz_round_trips(points: &[(i64, f64)]) -> bool {
    let mut out = Vec::new();
    tsz_decode(&tsz_encode(points), &mut out);
    out.len() == points.len()
        && out
            .iter()
            .zip(points)
            .all(|(a, b)| a.0 as i64 == b.0 && a.1.to_bits() == b.1.to_bits())
}

fn print_sizes(groups: &[Group]) -> Vec<bool> {
    eprintln!(
        "\n{:<24} {:>8} {:>12} {:>12} {:>8} {:>12}  tsz round trip",
        "dataset", "points", "gorilla B/pt", "tsz B/pt", "ratio", "pco B/pt"
    );
    groups
        .iter()
        .map(|g| {
            let ours: usize = g.series.iter().map(|s| gorilla_encode(s).len()).sum();
            let theirs: usize = g.series.iter().map(|s| tsz_encode(s).len()).sum();
            let cold: usize = g.series.iter().map(|s| pco_encode(s).len()).sum();
            let ok = g.series.iter().all(|s| tsz_round_trips(s));
            let n = g.points() as f64;
            eprintln!(
                "{:<24} {:>8} {:>12.3} {:>12.3} {:>8.3} {:>12.3}  {}",
                g.name,
                g.points(),
                ours as f64 / n,
                theirs as f64 / n,
                ours as f64 / theirs as f64,
                cold as f64 / n,
                if ok { "ok" } else { "FAILS (not timed)" }
            );
            ok
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let groups = groups();
    let tsz_ok = print_sizes(&groups);
    for (g, tsz_ok) in groups.iter().zip(tsz_ok) {
        let n = g.points() as u64;

        let mut enc = c.benchmark_group(format!("encode/{}", g.name));
        enc.throughput(Throughput::Elements(n));
        enc.bench_function(BenchmarkId::from_parameter("gorilla"), |b| {
            b.iter(|| {
                for s in &g.series {
                    black_box(gorilla_encode(black_box(s)));
                }
            })
        });
        enc.bench_function(BenchmarkId::from_parameter("gorilla-append"), |b| {
            b.iter(|| {
                for s in &g.series {
                    black_box(gorilla_append(black_box(s)));
                }
            })
        });
        // Through the `Compressor` trait's types (the sync twin of `compress`): points in,
        // a `CompressedBlock` out.
        let compressor = GorillaCompressor::new();
        let as_points: Vec<Vec<DataPoint>> = g
            .series
            .iter()
            .map(|s| s.iter().map(|&(t, v)| DataPoint::new(1u64, t, v)).collect())
            .collect();
        enc.bench_function(BenchmarkId::from_parameter("gorilla-compressor"), |b| {
            b.iter(|| {
                for s in &as_points {
                    black_box(compressor.compress_sync(black_box(s)).expect("one series"));
                }
            })
        });
        if tsz_ok {
            enc.bench_function(BenchmarkId::from_parameter("tsz"), |b| {
                b.iter(|| {
                    for s in &g.series {
                        black_box(tsz_encode(black_box(s)));
                    }
                })
            });
        }
        enc.finish();

        let ours: Vec<Vec<u8>> = g.series.iter().map(|s| gorilla_encode(s)).collect();
        let theirs: Vec<Box<[u8]>> = g.series.iter().map(|s| tsz_encode(s)).collect();
        let mut dec = c.benchmark_group(format!("decode/{}", g.name));
        dec.throughput(Throughput::Elements(n));
        let (mut ts, mut vs) = (Vec::new(), Vec::new());
        dec.bench_function(BenchmarkId::from_parameter("gorilla"), |b| {
            b.iter(|| {
                for block in &ours {
                    black_box(gorilla_decode(black_box(block), &mut ts, &mut vs));
                }
            })
        });
        let cold: Vec<Vec<u8>> = g.series.iter().map(|s| pco_encode(s)).collect();
        dec.bench_function(BenchmarkId::from_parameter("pco"), |b| {
            b.iter(|| {
                for block in &cold {
                    black_box(pco_decode(black_box(block), &mut ts, &mut vs));
                }
            })
        });
        let blocks: Vec<_> = as_points
            .iter()
            .map(|s| compressor.compress_sync(s).expect("one series"))
            .collect();
        dec.bench_function(BenchmarkId::from_parameter("gorilla-compressor"), |b| {
            b.iter(|| {
                for block in &blocks {
                    black_box(
                        compressor
                            .decompress_sync(black_box(block))
                            .expect("own block"),
                    );
                }
            })
        });
        let mut pairs = Vec::new();
        dec.bench_function(BenchmarkId::from_parameter("gorilla-iter"), |b| {
            b.iter(|| {
                for block in &ours {
                    pairs.clear();
                    for p in Decoder::new(black_box(block)).expect("own block") {
                        pairs.push(p.expect("own block"));
                    }
                    black_box(pairs.len());
                }
            })
        });
        if tsz_ok {
            let mut out = Vec::new();
            dec.bench_function(BenchmarkId::from_parameter("tsz"), |b| {
                b.iter(|| {
                    for block in &theirs {
                        black_box(tsz_decode(black_box(block), &mut out));
                    }
                })
            });
        }
        dec.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500));
    targets = codec
}
criterion_main!(benches);
