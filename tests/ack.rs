//! ACKs built by Aorta compared with the acknowledgement examples in the HAPI and python-hl7
//! test suites (`../shared/testdata`): same MSA, same header facts.

use std::path::PathBuf;

use aorta::hl7::{
    build_ack, AckCode, AckError, AckMode, AckSpec, ErrorCode, Message, Outcome, OwnedMessage, Path,
};

fn load(rel: &str) -> Option<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    if !dir.is_dir() {
        assert!(
            std::env::var_os("CI").is_none(),
            "shared test corpus missing"
        );
        return None;
    }
    Some(std::fs::read(dir.join(rel)).unwrap())
}

fn spec(code: AckCode, errors: Vec<AckError>) -> AckSpec {
    AckSpec {
        code,
        control_id: "b".into(),
        timestamp: "20240101000000".into(),
        text: None,
        errors,
    }
}

fn field(m: &OwnedMessage, p: &str) -> String {
    m.get(&Path::parse(p).unwrap())
        .unwrap_or_default()
        .into_owned()
}

fn expected_field(m: &Message<'_>, p: &str) -> String {
    m.get(&Path::parse(p).unwrap())
        .unwrap_or_default()
        .into_owned()
}

/// HAPI ApplicationRouterImplTest: ADT^A01 "a" is answered by `ACK|b|P|2.4` with `MSA|AA|a`.
#[test]
fn hapi_application_router_ack() {
    let Some(msg) = load("hapi-hl7v2/extracted_messages/ApplicationRouterImplTest__001.hl7") else {
        return;
    };
    let want = load("hapi-hl7v2/extracted_messages/ApplicationRouterImplTest__002.hl7").unwrap();
    let msg = Message::parse(&msg).unwrap();
    let want = Message::parse(&want).unwrap();
    let ours = build_ack(&msg, &spec(AckCode::AA, vec![])).unwrap();
    for p in [
        "MSH-3", "MSH-4", "MSH-5", "MSH-6", "MSH-9-1", "MSH-10", "MSH-11", "MSH-12", "MSA-1",
        "MSA-2",
    ] {
        assert_eq!(field(&ours, p), expected_field(&want, p), "{p}");
    }
    // HAPI leaves out the trigger; HL7 2.4 asks for ACK^A01^ACK, which Aorta writes.
    assert_eq!(field(&ours, "MSH-9-2"), "A01");
    assert_eq!(field(&ours, "MSH-9-3"), "ACK");
}

/// HAPI ProcessorImplTest: enhanced mode; MSH-15 AL gets CA, a reject CR, an error CE with text.
#[test]
fn hapi_processor_enhanced_mode() {
    let Some(al) = load("hapi-hl7v2/extracted_messages/ProcessorImplTest__002.hl7") else {
        return;
    };
    let al = Message::parse(&al).unwrap();
    let mode = AckMode::of(&al);
    assert!(matches!(mode, AckMode::Enhanced { .. }));
    for (outcome, expected_file) in [
        (Outcome::Accept, "ProcessorImplTest__003.hl7"),
        (Outcome::Reject, "ProcessorImplTest__004.hl7"),
    ] {
        let code = AckCode::for_outcome(&mode, outcome);
        let ours = build_ack(&al, &spec(code, vec![])).unwrap();
        let want = load(&format!("hapi-hl7v2/extracted_messages/{expected_file}")).unwrap();
        let want = Message::parse(&want).unwrap();
        assert_eq!(field(&ours, "MSA-1"), expected_field(&want, "MSA-1"));
        assert_eq!(field(&ours, "MSA-2"), expected_field(&want, "MSA-2"));
        // An accept acknowledgement asks for no acknowledgement of itself.
        assert_eq!(field(&ours, "MSH-15"), "NE");
    }
    let er = load("hapi-hl7v2/extracted_messages/ProcessorImplTest__005.hl7").unwrap();
    let er = Message::parse(&er).unwrap();
    let mode = AckMode::of(&er);
    assert!(
        !mode.wants_accept_ack(Outcome::Accept),
        "MSH-15 ER: no accept ACK on success"
    );
    assert!(mode.wants_accept_ack(Outcome::Error));
    let mut s = spec(AckCode::for_outcome(&mode, Outcome::Error), vec![]);
    s.text = Some("foo".into());
    let ours = build_ack(&er, &s).unwrap();
    let want = load("hapi-hl7v2/extracted_messages/ProcessorImplTest__006.hl7").unwrap();
    let want = Message::parse(&want).unwrap();
    for p in ["MSA-1", "MSA-2", "MSA-3"] {
        assert_eq!(field(&ours, p), expected_field(&want, p), "{p}");
    }
    let ne = load("hapi-hl7v2/extracted_messages/ProcessorImplTest__001.hl7").unwrap();
    assert!(!AckMode::of(&Message::parse(&ne).unwrap()).wants_accept_ack(Outcome::Accept));
}

/// python-hl7's MLLP test answers LABADT/DH's message with an `ACK^A01^ACK` in version 2.3.
#[test]
fn python_hl7_ack_shape() {
    let Some(want) = load("pypi-hl7-0.4.5/extracted_messages/test_mllp__001.hl7") else {
        return;
    };
    let want = Message::parse(&want).unwrap();
    let original = Message::parse(
        b"MSH|^~\\&|EPICADT|DH|LABADT|DH|201301011226||ADT^A01|HL7MSG00001|P|2.3\rPID|1\r",
    )
    .unwrap();
    let ours = build_ack(&original, &spec(AckCode::AA, vec![])).unwrap();
    for p in [
        "MSH-3", "MSH-4", "MSH-5", "MSH-6", "MSH-9-1", "MSH-9-2", "MSH-11",
    ] {
        assert_eq!(field(&ours, p), expected_field(&want, p), "{p}");
    }
    assert_eq!(field(&ours, "MSA-2"), "HL7MSG00001");
}

/// ACKs of every message in the corpus: parseable, addressed back, never an ACK of an ACK.
#[test]
fn acks_for_the_whole_corpus_parse() {
    let Some(_) = load("pypi-hl7-0.4.5/extracted_messages/samples__001.hl7") else {
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/microsoft-fhir-converter/data/SampleData/Hl7v2");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let raw = std::fs::read(e.unwrap().path()).unwrap();
        let Ok(m) = Message::parse(&raw) else {
            continue;
        };
        let err = AckError::new(ErrorCode::INTERNAL_ERROR, "downstream | unavailable");
        let ack = build_ack(&m, &spec(AckCode::AE, vec![err])).unwrap();
        let encoded = ack.encode();
        let back = Message::parse(&encoded).unwrap();
        assert_eq!(back.get(&Path::parse("MSA-2").unwrap()), m.control_id());
        assert_eq!(
            back.get_raw(&Path::parse("MSH-5").unwrap()),
            m.get_raw(&Path::parse("MSH-3").unwrap())
        );
        let err_text = back.segment("ERR", 0).unwrap();
        assert!(String::from_utf8_lossy(err_text.raw()).contains("207"));
        assert!(matches!(
            build_ack(&back, &spec(AckCode::AA, vec![])),
            Err(aorta::hl7::Error::AckOfAck { .. })
        ));
        n += 1;
    }
    assert!(n > 100, "{n}");
}
