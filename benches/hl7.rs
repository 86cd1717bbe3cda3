//! HL7 v2 parsing speed: Aorta's `hl7` module against the `hl7-parser` crate (0.3) over the
//! Microsoft FHIR-Converter sample messages in `../shared/testdata`.
//!
//! Run with `cargo bench --bench hl7`. Throughput is reported in bytes; divide by the corpus
//! size printed at the start to get messages per second.

mod common;

use aorta::hl7::{Message, Path};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

/// The sample messages both parsers accept, as UTF-8 text with CR segment terminators.
fn corpus() -> Vec<String> {
    common::sample_messages()
        .into_iter()
        .filter(|t| Message::parse(t.as_bytes()).is_ok() && hl7_parser::parse_message(t).is_ok())
        .collect()
}

const PATHS: [&str; 6] = [
    "MSH-9-2", "MSH-10", "PID-3-1", "PID-5-1", "PID-5-2", "PID-7",
];
const DOTTED: [&str; 6] = [
    "MSH.9.2", "MSH.10", "PID.3.1", "PID.5.1", "PID.5.2", "PID.7",
];

fn benches(c: &mut Criterion) {
    let msgs = corpus();
    let bytes: usize = msgs.iter().map(String::len).sum();
    eprintln!(
        "corpus: {} messages, {} bytes, {} bytes/message on average",
        msgs.len(),
        bytes,
        bytes / msgs.len().max(1)
    );

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("aorta", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(Message::parse(black_box(m.as_bytes())).unwrap());
            }
        })
    });
    g.bench_function("hl7-parser", |b| {
        b.iter(|| {
            for m in &msgs {
                black_box(hl7_parser::parse_message(black_box(m)).unwrap());
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse+encode");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("aorta", |b| {
        let mut out = Vec::with_capacity(bytes);
        b.iter(|| {
            out.clear();
            for m in &msgs {
                Message::parse(black_box(m.as_bytes()))
                    .unwrap()
                    .encode_into(&mut out);
            }
            black_box(&out);
        })
    });
    g.bench_function("aorta owned", |b| {
        b.iter(|| {
            for m in &msgs {
                let owned = Message::parse(black_box(m.as_bytes()))
                    .unwrap()
                    .to_owned_message();
                black_box(owned.encode());
            }
        })
    });
    // hl7-parser has no encoder (a parsed message cannot be changed); the nearest is copying
    // each segment's source text.
    g.bench_function("hl7-parser (copy segments)", |b| {
        let mut out = String::with_capacity(bytes);
        b.iter(|| {
            out.clear();
            for m in &msgs {
                let parsed = hl7_parser::parse_message(black_box(m)).unwrap();
                for seg in parsed.segments() {
                    out.push_str(seg.raw_value());
                    out.push('\r');
                }
            }
            black_box(&out);
        })
    });
    g.finish();

    let paths: Vec<Path> = PATHS.iter().map(|p| Path::parse(p).unwrap()).collect();
    let parsed: Vec<Message<'_>> = msgs
        .iter()
        .map(|m| Message::parse(m.as_bytes()).unwrap())
        .collect();
    let theirs: Vec<_> = msgs
        .iter()
        .map(|m| hl7_parser::parse_message(m).unwrap())
        .collect();
    let mut g = c.benchmark_group("path get (6 paths per message)");
    g.throughput(Throughput::Elements((msgs.len() * paths.len()) as u64));
    g.bench_function("aorta", |b| {
        b.iter(|| {
            for m in &parsed {
                for p in &paths {
                    black_box(m.get(p));
                }
            }
        })
    });
    g.bench_function("hl7-parser", |b| {
        b.iter(|| {
            for m in &theirs {
                for p in DOTTED {
                    black_box(m.query(p).map(|r| r.raw_value()));
                }
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse+get (6 paths)");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("aorta", |b| {
        b.iter(|| {
            for m in &msgs {
                let m = Message::parse(black_box(m.as_bytes())).unwrap();
                for p in &paths {
                    black_box(m.get(p));
                }
            }
        })
    });
    g.finish();
}

criterion_group!(hl7, benches);
criterion_main!(hl7);
