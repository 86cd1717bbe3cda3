//! Route evaluation speed: a route with a condition and five steps, with and without one small
//! script step, over the Microsoft FHIR-Converter sample messages in `../shared/testdata`.
//!
//! Run with `cargo bench --bench route`. Throughput is reported in messages ("elements"); the
//! time per message is the reciprocal. Each iteration evaluates the route — the condition, a
//! copy of the message, five steps (set, set, map through a code table, copy, delete every
//! NTE), then encoding the delivery — on every sample message; the "(with parse)" variants
//! include parsing the message, which the route loop does once for all routes.

mod common;

use std::path::Path as FsPath;

use aorta::route::target::RecordView;
use aorta::route::{Input, LoadOptions, RouteSet};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};

fn corpus() -> Vec<Vec<u8>> {
    common::sample_messages()
        .into_iter()
        .filter(|t| aorta::hl7::Message::parse(t.as_bytes()).is_ok())
        .map(String::into_bytes)
        .collect()
}

const STEPS: &str = r#"
from = "*"
when = { "MSH-9-1" = ["ADT", "ORU", "ORM", "OML", "VXU", "SIU", "MDM", "DFT", "RDE", "MFN", "BAR", "PPR", "REF", "OMG", "ORR", "RSP", "QBP", "ACK", "MDM", "DOC", "ADR"] }
[[steps]]
set = "MSH-5"
value = "EMR"
[[steps]]
set = "MSH-6"
value = "MAIN-${MSH-4}"
[[steps]]
map = "PID-8"
table = "sex"
[[steps]]
copy = "PID-3-1"
to = "PID-2-1"
[[steps]]
delete = "NTE(*)"
"#;

const SCRIPT: &str = r#"
[[steps]]
js = """
const family = msg.get("PID-5-1");
if (family && family.toUpperCase() === "TEST") return false;
msg.set("PID-5-1", family ? family.toUpperCase() : "");
"""
"#;

fn route_set(dir: &FsPath, with_script: bool) -> RouteSet {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir.join("tables")).unwrap();
    std::fs::write(
        dir.join("tables/sex.csv"),
        "from,to\nM,male\nF,female\nU,unknown\n",
    )
    .unwrap();
    let mut text = STEPS.to_string();
    if with_script {
        text.push_str(SCRIPT);
    }
    text.push_str("[[to]]\ndestination = \"emr\"\n");
    std::fs::write(dir.join("r.toml"), text).unwrap();
    RouteSet::load(
        dir,
        &LoadOptions {
            tables_dir: dir.join("tables"),
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e:?}"))
}

fn route_evaluation(c: &mut Criterion) {
    let msgs = corpus();
    eprintln!("corpus: {} messages", msgs.len());
    let base = std::env::temp_dir().join(format!("aorta-route-bench-{}", std::process::id()));
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(msgs.len() as u64));
    for (name, with_script) in [
        ("condition+5 steps", false),
        ("condition+5 steps+script", true),
    ] {
        let set = route_set(&base.join(name.replace('+', "-")), with_script);
        // Every message must really go through the route.
        let id = uuid::Uuid::now_v7();
        let routed = msgs
            .iter()
            .filter(|m| {
                matches!(
                    set.evaluate(&Input {
                        id,
                        source: "adt",
                        raw: m,
                        fhir: None,
                    })
                    .0,
                    aorta::route::Disposition::Routed(_)
                )
            })
            .count();
        eprintln!("{name}: {routed} of {} messages routed", msgs.len());
        g.bench_function(format!("{name} (with parse)"), |b| {
            b.iter(|| {
                for m in &msgs {
                    black_box(set.evaluate(&Input {
                        id,
                        source: "adt",
                        raw: m,
                        fhir: None,
                    }));
                }
            })
        });
        // The route alone: the route loop parses each message once for all routes.
        let parsed: Vec<aorta::hl7::Message> = msgs
            .iter()
            .map(|m| aorta::hl7::Message::parse(m).unwrap())
            .collect();
        let route = &set.routes[0];
        g.bench_function(name, |b| {
            b.iter(|| {
                for (m, raw) in parsed.iter().zip(&msgs) {
                    let record = RecordView::new(m);
                    let input = Input {
                        id,
                        source: "adt",
                        raw,
                        fhir: None,
                    };
                    black_box(route.evaluate(&input, m, &record));
                }
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_dir_all(&base);
}

criterion_group!(benches, route_evaluation);
criterion_main!(benches);
