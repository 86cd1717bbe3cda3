//! No input may panic the `hl7` module, the HL7 v2 → record conversion or route evaluation:
//! random bytes, truncated real messages, random segments, random edits. And the properties
//! edits must keep: what is set is what is read back after re-parsing.

use aorta::hl7::{
    batch, build_ack, build_nak_for_unparseable, escape, json, AckCode, AckSpec, Delimiters,
    Message, OwnedMessage, Path,
};
use proptest::prelude::*;

fn spec() -> AckSpec {
    AckSpec {
        code: AckCode::AR,
        control_id: "X".into(),
        timestamp: "20240101".into(),
        text: None,
        errors: vec![],
    }
}

/// Everything a caller may do with untrusted bytes.
fn exercise(raw: &[u8]) {
    let _ = build_nak_for_unparseable(raw, &spec());
    if let Ok(b) = batch::split(raw) {
        for bm in b.messages() {
            let _ = Message::parse(bm.raw);
        }
    }
    if let Ok(m) = Message::parse(raw) {
        let _ = m.charset();
        let _ = m.validate_text();
        let _ = json::to_json(&m);
        let _ = build_ack(&m, &spec());
        let encoded = m.encode();
        let again = Message::parse(&encoded).expect("an encoded message parses again");
        assert_eq!(again.encode(), encoded);
        for p in [
            "MSH-9-2",
            "PID-3(1)-4-2",
            "OBX(2)-5",
            "MSH-2-3",
            "ZZZ-1",
            "MSH-18",
        ] {
            let p = Path::parse(p).unwrap();
            let _ = m.get(&p);
            let _ = m.get_raw(&p);
        }
        let record = aorta::convert::v2::to_clinical(&m);
        serde_json::to_string(&record).expect("a record serializes");
        let _ = routes().evaluate(&aorta::route::Input {
            id: uuid::Uuid::nil(),
            source: "test",
            raw,
            fhir: None,
        });
        let mut o = m.to_owned_message();
        let _ = o.set(&Path::parse("PID-5-2").unwrap(), "x|y");
        let _ = o.delete(&Path::parse("PID-3(0)").unwrap());
        let _ = o.set_delimiters(Delimiters::default());
        let _ = Message::parse(&o.encode());
    }
}

/// Routes that touch everything: wildcard conditions and steps, record paths, a table, a script.
fn routes() -> &'static aorta::route::RouteSet {
    static ROUTES: std::sync::OnceLock<aorta::route::RouteSet> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("aorta-robust-routes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("tables")).unwrap();
        std::fs::write(dir.join("tables/t.csv"), "from,to\nA,B\n0,1\n").unwrap();
        std::fs::write(
            dir.join("r.toml"),
            r#"
from = "*"
when = { any = [ { "OBX(*)-5" = { gt = 1 } }, { "patient.birth_date" = { lt = "2000" } }, { "PID-3(*)-1" = { matches = "A" } }, { not = { "MSH-9" = "X" } } ] }
[[steps]]
map = "OBX(*)-3-1"
to = "OBX(*)-3-2"
table = "t"
[[steps]]
copy = "OBX(*)-5"
to = "OBX(*)-6"
[[steps]]
set = "PID-3(*)-4"
value = "${PID-5-1}&${observations.value}"
raw = true
[[steps]]
delete = "NTE(*)"
[[steps]]
js = """
for (let i = 0; i < msg.count("OBX"); i++) msg.set(`OBX(${i})-8`, msg.get(`OBX(${i})-5`));
if (record.patient && record.patient.sex === "F") return false;
"""
[[to]]
destination = "a"
[[to]]
destination = "b"
format = "record-json"
"#,
        )
        .unwrap();
        aorta::route::RouteSet::load(
            &dir,
            &aorta::route::LoadOptions {
                tables_dir: dir.join("tables"),
                ..Default::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e:?}"))
    })
}

/// Messages of random segments that the converter reads, with random field contents.
fn segments() -> impl Strategy<Value = Vec<u8>> {
    let ids = prop::sample::select(vec![
        "PID", "PD1", "MRG", "NK1", "PV1", "PV2", "ORC", "OBR", "RXO", "TQ1", "OBX", "NTE", "SPM",
        "AL1", "DG1", "PR1", "RXA", "RXR", "IN1", "SCH", "AIS", "AIG", "AIL", "AIP", "TXA", "EVN",
    ]);
    let text = "[A-Z0-9|^~&\\\\+\\-.é\"]{0,60}";
    prop::collection::vec((ids, text), 0..12).prop_map(|segs| {
        let mut out = b"MSH|^~\\&|A|B|||20240101||ADT^A01|1|P|2.5".to_vec();
        for (id, body) in segs {
            out.push(b'\r');
            out.extend_from_slice(id.as_bytes());
            out.push(b'|');
            out.extend_from_slice(body.as_bytes());
        }
        out
    })
}

/// Bytes that look enough like HL7 to get past the header check.
fn hl7ish() -> impl Strategy<Value = Vec<u8>> {
    let alphabet = prop::sample::select(b"MSHPIDOBX|^~\\&#\r\nA0 .-XZF\"\xc3\xa9\xff".to_vec());
    prop::collection::vec(alphabet, 0..300).prop_map(|mut v| {
        let mut out = b"MSH|^~\\&|".to_vec();
        out.append(&mut v);
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_segments_never_panic(raw in segments()) {
        exercise(&raw);
    }

    #[test]
    fn random_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..400)) {
        exercise(&raw);
    }

    #[test]
    fn hl7_like_bytes_never_panic(raw in hl7ish()) {
        exercise(&raw);
    }

    #[test]
    fn escaping_round_trips(text in "[a-zA-Z0-9 |^~\\\\&#\\n.éü]{0,40}") {
        let d = Delimiters { truncation: Some(b'#'), ..Delimiters::default() };
        let enc = escape::encode(text.as_bytes(), &d).unwrap();
        prop_assert!(!enc.iter().any(|&b| matches!(b, b'|' | b'^' | b'~' | b'&' | b'#' | b'\r' | b'\n')));
        let dec = escape::decode(&enc, &d);
        prop_assert_eq!(&*dec, text.as_bytes());
    }

    #[test]
    fn set_then_get_after_reparse(
        seg in prop::sample::select(vec!["PID", "OBX", "ZPI", "PV1"]),
        occurrence in 0usize..2,
        field in 1usize..30,
        rep in 0usize..3,
        comp in 1usize..6,
        sub in 1usize..3,
        value in "[a-zA-Z0-9 |^~\\\\&é]{0,12}",
    ) {
        let mut m = OwnedMessage::parse(b"MSH|^~\\&|A|B|||||ADT^A01|1|P|2.5\rPID|1||123^^^H^MR||DOE^JOHN\rOBX|1|ST|x||a\r").unwrap();
        let path = Path { segment: seg.as_bytes().try_into().unwrap(), occurrence, field: Some(field), repetition: Some(rep), component: Some(comp), subcomponent: Some(sub) };
        let existing = m.find_segment(seg.as_bytes(), 0).is_some();
        let result = m.set(&path, &value);
        if occurrence == 0 || existing {
            result.unwrap();
            let encoded = m.encode();
            let back = Message::parse(&encoded).unwrap();
            let got = back.get(&path).unwrap_or_default();
            prop_assert_eq!(got.as_ref(), value.as_str());
            // Clearing removes it again and leaves no trailing delimiters behind.
            m.clear(&path).unwrap();
            let seg_raw = m.get_raw(&Path { field: None, repetition: None, component: None, subcomponent: None, ..path.clone() }).unwrap();
            prop_assert!(!seg_raw.ends_with(b"|") && !seg_raw.ends_with(b"^") && !seg_raw.ends_with(b"~") && !seg_raw.ends_with(b"&"));
        }
    }

    #[test]
    fn paths_print_and_parse_back(
        seg in "[A-Z][A-Z0-9]{2}",
        occurrence in 0usize..5,
        field in 1usize..100,
        rep in prop::option::of(0usize..5),
        comp in prop::option::of(1usize..20),
        sub in 1usize..5,
    ) {
        let p = Path {
            segment: seg.as_bytes().try_into().unwrap(),
            occurrence,
            field: Some(field),
            repetition: rep,
            component: comp,
            subcomponent: comp.map(|_| sub),
        };
        prop_assert_eq!(Path::parse(&p.to_string()).unwrap(), p);
    }
}

/// Every prefix of real messages: truncation anywhere is handled.
#[test]
fn truncated_real_messages() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    let files = [
        "hapi-hl7v2/extracted_messages/EscapeTest__002.hl7",
        "microsoft-fhir-converter/data/SampleData/Hl7v2/VXU-V04-01.hl7",
        "pypi-hl7-0.4.5/extracted_messages/samples__003.hl7",
        "hapi-hl7v2/repo/hapi-test/src/test/resources/ca/uhn/hl7v2/util/segmentfinder_a24.hl7",
    ];
    for f in files {
        let Ok(raw) = std::fs::read(dir.join(f)) else {
            assert!(std::env::var_os("CI").is_none(), "missing {f}");
            continue;
        };
        // Every prefix is independent: spread them over the cores, as this is the suite's
        // longest test in a debug build (the quadratic work of a 7.6 KB message).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|s| {
            for t in 0..threads {
                let raw = &raw;
                s.spawn(move || {
                    for end in (t..raw.len()).step_by(threads) {
                        exercise(&raw[..end]);
                    }
                });
            }
        });
    }
}
