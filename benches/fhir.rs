//! HL7 v2 → FHIR R4 transaction Bundle: the conversion's speed over the Microsoft
//! FHIR-Converter sample messages in `../shared/testdata`.
//!
//! Run with `cargo bench --bench fhir`. Throughput is in messages ("elements"); the time per
//! message is the reciprocal. "ADT+ORU" keeps the ADT and ORU messages (the target's peer,
//! Microsoft's Liquid-template converter, is usually quoted on those); "all" is every sample.
//! Each iteration parses the message, builds the `Clinical` record, builds the Bundle and
//! serializes it to JSON bytes — what a route with `format = "fhir"` does per delivery.

mod common;

use aorta::convert::fhir::{to_bundle_json, FhirOptions};
use aorta::convert::v2::to_clinical;
use aorta::hl7::Message;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn convert_all(messages: &[Vec<u8>], options: &FhirOptions) -> usize {
    let mut bytes = 0;
    for raw in messages {
        let Ok(m) = Message::parse(raw) else { continue };
        bytes += to_bundle_json(&to_clinical(&m), options).len();
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let all: Vec<Vec<u8>> = common::sample_messages()
        .into_iter()
        .filter(|t| Message::parse(t.as_bytes()).is_ok())
        .map(String::into_bytes)
        .collect();
    let adt_oru: Vec<Vec<u8>> = all
        .iter()
        .filter(|raw| {
            Message::parse(raw)
                .is_ok_and(|m| matches!(m.message_code().as_deref(), Some("ADT") | Some("ORU")))
        })
        .cloned()
        .collect();
    let options = FhirOptions::default();
    let mut g = c.benchmark_group("v2-to-fhir");
    for (name, set) in [("ADT+ORU", &adt_oru), ("all", &all)] {
        g.throughput(Throughput::Elements(set.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(convert_all(set, &options))));
    }
    // Where the time goes: the record alone, and the Bundle with its bytes from the record.
    g.throughput(Throughput::Elements(all.len() as u64));
    g.bench_function("all: record only", |b| {
        b.iter(|| {
            for raw in &all {
                if let Ok(m) = Message::parse(raw) {
                    black_box(to_clinical(&m));
                }
            }
        })
    });
    let records: Vec<_> = all
        .iter()
        .filter_map(|raw| Message::parse(raw).ok().map(|m| to_clinical(&m)))
        .collect();
    g.bench_function("all: bundle and bytes", |b| {
        b.iter(|| {
            for r in &records {
                black_box(to_bundle_json(r, &options));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
