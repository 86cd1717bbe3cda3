//! Conformance over the shared corpus of real HL7 v2 messages (`../shared/testdata`).
//!
//! Every file: splits and parses without panic; parse → encode gives back the input bytes with
//! segment terminators normalised to CR; the owned form encodes identically; every field can be
//! read through a `Path`. Files that are malformed on purpose (or by their extraction) are listed
//! with the error they must produce. Then field values asserted by hand for over 30 messages.

use std::path::{Path as FsPath, PathBuf};

use aorta::hl7::{batch, json, Message, OwnedMessage, Path};

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("AORTA_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"));
    if dir.is_dir() {
        Some(dir)
    } else if std::env::var_os("CI").is_some() {
        panic!("the shared test corpus is missing at {}", dir.display());
    } else {
        eprintln!("skipped: no shared test corpus at {}", dir.display());
        None
    }
}

fn message_files(dir: &FsPath) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "hl7")
                || [
                    "omd_o03.txt",
                    "omd_o03_rep.txt",
                    "adt_a03.txt",
                    "ADT_A01.txt",
                ]
                .iter()
                .any(|n| p.file_name().is_some_and(|f| f == *n))
            {
                out.push(p);
            }
        }
    }
    out
}

/// Files that must fail, with why (upstream test purpose) and the error text they must give.
const MALFORMED: &[(&str, &str)] = &[
    // HAPI testReadBadMsh2: a non-ASCII byte sequence inside MSH-2.
    (
        "ExtendedMinLowerLayerProtocolTest__001.hl7",
        "MSH-2 has 6 characters",
    ),
    // HAPI testInvalidMessageFails: a line break inside OBX-3 leaves "String||..." as a segment.
    ("NewPipeParserTest__015.hl7", "bad segment id \"String\""),
    // HAPI testInvalidSegmentName: segment "I".
    ("NewPipeParserTest__045.hl7", "bad segment id \"I\""),
    // HAPI EncodingCharactersTest: MSH-2 with three characters.
    ("EncodingCharactersTest__001.hl7", "MSH-2 has 3 characters"),
    // hl7apy: duplicated encoding characters.
    ("test_parser__009.hl7", "delimiter '&' is used twice"),
    ("test_parser__010.hl7", "MSH-2 has 6 characters"),
    // hl7apy: a letter as repetition separator.
    ("test_to_string__002.hl7", "is a letter or digit"),
];

/// python-hl7's deliberately broken batch files: they split, with these problems reported.
const BAD_BATCHES: &[(&str, &str)] = &[
    ("samples__006.hl7", "batch has no BTS trailer"),
    ("samples__008.hl7", "segment outside any message"),
    ("samples__009.hl7", "BHS before the previous batch's BTS"),
    (
        "samples__010.hl7",
        "FHS is not the first segment of the file",
    ),
    ("samples__011.hl7", "segment outside any message"),
];

/// The input as an HL7 encoder should write it: no BOM or leading blank lines, every segment
/// ended by one CR, no blank lines.
fn normalise(raw: &[u8]) -> Vec<u8> {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    let mut out = Vec::with_capacity(raw.len() + 1);
    for line in raw.split(|&b| b == b'\r' || b == b'\n') {
        if line.iter().all(|b| b.is_ascii_whitespace() || *b == 0x1A) {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\r');
    }
    out
}

#[test]
fn every_corpus_message_parses_and_round_trips() {
    let Some(dir) = corpus() else { return };
    let files = message_files(&dir);
    assert!(
        files.len() >= 700,
        "expected the whole corpus, found {} files",
        files.len()
    );
    let (mut messages, mut fields, mut malformed_seen) = (0, 0, 0);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let raw = std::fs::read(file).unwrap();
        let split = batch::split(&raw);
        let expected_failure = MALFORMED.iter().find(|(n, _)| *n == name);
        let mut failure = None;
        match &split {
            Err(e) => failure = Some(e.to_string()),
            Ok(b) => {
                match BAD_BATCHES.iter().find(|(n, _)| *n == name) {
                    Some((_, want)) => {
                        let all: Vec<String> = b.problems.iter().map(|p| p.to_string()).collect();
                        assert!(all.iter().any(|p| p.contains(want)), "{name}: {all:?}");
                    }
                    None => assert!(b.problems.is_empty(), "{name}: {:?}", b.problems),
                }
                for bm in b.messages() {
                    let m = match Message::parse(bm.raw) {
                        Ok(m) => m,
                        Err(e) => {
                            failure = Some(e.to_string());
                            break;
                        }
                    };
                    messages += 1;
                    assert_eq!(m.encode(), normalise(bm.raw), "{name}: round trip");
                    assert_eq!(
                        m.to_owned_message().encode(),
                        m.encode(),
                        "{name}: owned round trip"
                    );
                    let _ = json::to_json(&m);
                    for (si, seg) in m.segments().enumerate() {
                        let occurrence =
                            m.segments().take(si).filter(|s| s.id() == seg.id()).count();
                        for n in 1..=seg.field_count() {
                            let text = format!("{}({occurrence})-{n}", seg.id());
                            let path = Path::parse(&text).unwrap();
                            let via_path =
                                m.get_raw(&path).unwrap_or_else(|| panic!("{name}: {text}"));
                            assert_eq!(via_path, seg.field(n).unwrap().raw(), "{name}: {text}");
                            let _ = m.get(&path);
                            fields += 1;
                        }
                    }
                }
            }
        }
        match (expected_failure, failure) {
            (Some((_, want)), Some(got)) => {
                assert!(got.contains(want), "{name}: expected {want:?}, got {got:?}");
                malformed_seen += 1;
            }
            (Some((_, want)), None) => panic!("{name}: expected the error {want:?}, parsed fine"),
            (None, Some(got)) => panic!("{name}: {got}"),
            (None, None) => {}
        }
    }
    assert_eq!(malformed_seen, MALFORMED.len());
    eprintln!(
        "{} files, {messages} messages, {fields} fields checked",
        files.len()
    );
}

fn load(rel: &str) -> Option<Vec<u8>> {
    let dir = corpus()?;
    Some(std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}")))
}

/// (file, message index in the file, path, expected decoded value)
const VALUES: &[(&str, usize, &str, &str)] = &[
    // crates.io hl7-parser samples
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a01.hl7", 0, "PID-5-1", "DUCK"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a01.hl7", 0, "PID.5.2", "DONALD"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a01.hl7", 0, "PID-3-5", "MRN"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a01.hl7", 0, "PID-11-3", "FOWL"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a01.hl7", 0, "MSH-10", "599102"),
    // The NK1 of this sample sits on the PID line (a missing terminator): it is PID-30 onwards.
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a01.hl7", 0, "PID-30", "NO NK1"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a01_encoded.hl7", 0, "MSH-5", "Isaac^2"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a02.hl7", 0, "MSH-9-2", "A02"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a02.hl7", 0, "PV1-6-1", "PREOP"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a03.hl7", 0, "PV1-45", "20050112152000"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a04.hl7", 0, "PID-14(1)", "(919)277-3114"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a04.hl7", 0, "NK1(1)-2-2", "MICHAEL"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a04.hl7", 0, "NK1[2].2.2", "MICHAEL"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a04.hl7", 0, "EVN-1", "A01-"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_adt_a08.hl7", 0, "GT1-16", "#Cartoon Ducks Inc"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_oru_r01_generic.hl7", 0, "PID-3-4-2", "1.2.840.114398.1.100"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_oru_r01_generic.hl7", 0, "OBX-3-4", "6690-2"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_oru_r01_lab.hl7", 0, "OBR-4-5", "CBC & Auto Differential"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_oru_r01_lab.hl7", 0, "OBX-6", "10^9/L"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_oru_r01_lab.hl7", 0, "OBX(1)-5", "3.2"),
    ("crates-hl7-parser-0.3.0/test_assets/sample_oru_r01_lab.hl7", 0, "OBX-10(1)", "S"),
    // python-hl7
    ("pypi-hl7-0.4.5/extracted_messages/samples__001.hl7", 0, "PID-5", "EVERYWOMAN"),
    ("pypi-hl7-0.4.5/extracted_messages/samples__001.hl7", 0, "OBX(1)-2", "FN"),
    ("pypi-hl7-0.4.5/extracted_messages/samples__001.hl7", 0, "OBX-5-2", "182"),
    ("pypi-hl7-0.4.5/extracted_messages/samples__002.hl7", 0, "PID-4(1)", "Repeat2"),
    ("pypi-hl7-0.4.5/extracted_messages/samples__002.hl7", 0, "PID-3-2-2", "Sub-Component2"),
    ("pypi-hl7-0.4.5/extracted_messages/test_parse__001.hl7", 0, "PID-5-2", "EVE"),
    ("pypi-hl7-0.4.5/extracted_messages/test_parse__001.hl7", 0, "MSH-3", "GHH LAB"),
    ("pypi-hl7-0.4.5/extracted_messages/test_parse__001.hl7", 0, "MSH-1", "$"),
    ("pypi-hl7-0.4.5/extracted_messages/samples__012.hl7", 0, "PID-4(1)-5", "DONOR "),
    ("pypi-hl7-0.4.5/extracted_messages/samples__012.hl7", 0, "PV1-9", "\"\""),
    ("pypi-hl7-0.4.5/extracted_messages/samples__003.hl7", 0, "MSH-10", "12334456778890"),
    ("pypi-hl7-0.4.5/extracted_messages/samples__003.hl7", 0, "MSH-18", "ASCII"),
    // hl7apy
    ("pypi-hl7apy-1.3.5/extracted_messages/test_parser__005.hl7", 0, "PID-3-4-2", "1.3.6.1.4.1.21367.2011.2.5.17"),
    ("pypi-hl7apy-1.3.5/extracted_messages/test_parser__005.hl7", 0, "PID-11(1)-7", "L"),
    ("pypi-hl7apy-1.3.5/extracted_messages/test_parser__006.hl7", 0, "MSH-16", "AL"),
    // HAPI
    ("hapi-hl7v2/extracted_messages/TerserTest__001.hl7", 0, "ORC-8-1-2", "OE"),
    ("hapi-hl7v2/extracted_messages/TerserTest__001.hl7", 0, "RXE-2-2", "DIGOXIN (LANOXIN) -- 0.25 mg"),
    ("hapi-hl7v2/extracted_messages/TerserTest__002.hl7", 0, "QPD-3-4", "57f31a9b-8eff-4736-84c4-6fafd6f25039"),
    ("hapi-hl7v2/extracted_messages/NewPipeParserTest__001.hl7", 0, "ORC-10(1)-13", "Personnel Primary Identifier"),
    ("hapi-hl7v2/extracted_messages/NewPipeParserTest__030.hl7", 0, "NTE-3", "test"),
    ("hapi-hl7v2/extracted_messages/NewPipeParserTest__030.hl7", 0, "ORC(1)-1", ""),
    ("hapi-hl7v2/extracted_messages/MessageQueryTest__001.hl7", 0, "OBX-5(2)", "37.2"),
    ("hapi-hl7v2/extracted_messages/MessageQueryTest__001.hl7", 0, "PID-3[3]", "T3"),
    // HAPI: custom delimiters (field ^, component ~, repetition |)
    ("hapi-hl7v2/repo/hapi-test/src/test/resources/ca/uhn/hl7v2/util/segmentfinder_a24.hl7", 0, "MSH-9-2", "A24"),
    ("hapi-hl7v2/repo/hapi-test/src/test/resources/ca/uhn/hl7v2/util/segmentfinder_a24.hl7", 0, "EVN-1", "A24"),
    // Microsoft FHIR-Converter samples (BOM, trailing spaces, v2.8, subcomponents)
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/ADT01-23.hl7", 0, "MSH-7", "20050110045504+0700"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/ADT01-23.hl7", 0, "PID-3-5", "MR"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/VXU-V04-01.hl7", 0, "MSH-4-2", "2.16.840.1.122848.1.30"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/VXU-V04-01.hl7", 0, "PID-5-1-1", "EVERYMAN"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/VXU-V04-01.hl7", 0, "PID-5-1-5", "Aniston"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/VXU-V04-01.hl7", 0, "PID-3(1)-4", "USSSA"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/LRI_2.0-NG_CBC_Typ_Message.hl7", 0, "OBX-5", "4.41"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/LRI_2.0-NG_CBC_Typ_Message.hl7", 0, "OBX(1)-6-1", "g/mL"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/LRI_2.0-NG_CBC_Typ_Message.hl7", 0, "MSH-21(1)-1", "LRI_NG_Component"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/ADT-A40-01.hl7", 0, "MRG-1-1", "56789"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/ADT-A40-01.hl7", 0, "EVN-5-2", "Berry"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/SIU-S12-01.hl7", 0, "SCH-7", "EMERGENCY"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/SIU-S12-01.hl7", 0, "NTE-3", "Appointment booked for emergency procedure"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/MDM-T02-01.hl7", 0, "PV1-8-3", "JACK"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/OML-O21-01.hl7", 0, "PV1-6-2-2", "2.16.840.1.113883.4.642.1.1108"),
    ("microsoft-fhir-converter/data/SampleData/Hl7v2/ADT-A01-01.hl7", 0, "EVN-4-2", "Patient request"),
    // LinuxForHealth
    ("linuxforhealth-hl7v2-fhir-converter/extracted_messages/Hl7ImmunizationFHIRConversionTest__001.hl7", 0, "RXA-5-2", "HIB PRP-T"),
    ("linuxforhealth-hl7v2-fhir-converter/extracted_messages/Hl7ImmunizationFHIRConversionTest__001.hl7", 0, "RXA-17-2", "sanofi"),
    ("linuxforhealth-hl7v2-fhir-converter/extracted_messages/Hl7ImmunizationFHIRConversionTest__003.hl7", 0, "RXA-20", "RE"),
    ("linuxforhealth-hl7v2-fhir-converter/repo/src/test/resources/sample_unix.hl7", 0, "PID-3(1)-4", "USA"),
];

#[test]
fn hand_checked_values() {
    if corpus().is_none() {
        return;
    }
    let mut files = std::collections::BTreeSet::new();
    for (file, index, path, want) in VALUES {
        let raw = load(file).unwrap();
        let b = batch::split(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        let bm = b
            .messages()
            .nth(*index)
            .unwrap_or_else(|| panic!("{file}: no message {index}"));
        let m = Message::parse(bm.raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        let p = Path::parse(path).unwrap();
        assert_eq!(m.get(&p).as_deref(), Some(*want), "{file} {path}");
        // The owned form reads the same.
        assert_eq!(
            m.to_owned_message().get(&p).as_deref(),
            Some(*want),
            "{file} {path} (owned)"
        );
        files.insert(*file);
    }
    assert!(files.len() >= 30, "{} files", files.len());
}

#[test]
fn formatted_text_and_escapes() {
    let Some(raw) = load("hapi-hl7v2/extracted_messages/EscapeTest__002.hl7") else {
        return;
    };
    let m = Message::parse(&raw).unwrap();
    let text = m.get(&Path::parse("OBX-5").unwrap()).unwrap();
    assert!(
        text.starts_with(
            "Biochemistry (Whole Blood Sample) - Type Venous\n\n Analysis Date : 16/06/2011\n"
        ),
        "{text}"
    );
    assert!(text.contains(" pH :  7.28 (7.38-7.43) *\n"), "{text}");
    let raw = load("hapi-hl7v2/extracted_messages/EscapeTest__001.hl7").unwrap();
    let m = Message::parse(&raw).unwrap();
    let text = m.get(&Path::parse("NTE-3").unwrap()).unwrap();
    assert!(text.contains("|  Risk   |"), "{text}");
    assert!(!text.contains("\\F\\"));
}

#[test]
fn several_messages_and_batches() {
    let Some(raw) = load("pypi-hl7-0.4.5/extracted_messages/samples__005.hl7") else {
        return;
    };
    let b = batch::split(&raw).unwrap();
    assert!(b.file_header.is_some());
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    // FHS, two messages, FTS: one batch without BHS.
    assert_eq!(b.message_count(), 2);
    for bm in b.messages() {
        assert!(bm.batch_header.is_none());
        assert!(bm.file_header.is_some());
        Message::parse(bm.raw).unwrap();
    }
    let raw = load("pypi-hl7-0.4.5/extracted_messages/samples__003.hl7").unwrap();
    let b = batch::split(&raw).unwrap();
    assert!(b.problems.is_empty(), "{:?}", b.problems);
    assert!(b.batches[0].header.is_some() && b.batches[0].trailer.is_some());
    for bm in b.messages() {
        assert!(bm
            .batch_header
            .is_some_and(|h| h.starts_with(b"BHS|^~\\&||ABCHS")));
    }
}

#[test]
fn edits_on_real_messages_keep_the_rest() {
    let Some(raw) = load("microsoft-fhir-converter/data/SampleData/Hl7v2/VXU-V04-01.hl7") else {
        return;
    };
    let m = Message::parse(&raw).unwrap();
    let before = m.encode();
    let mut o: OwnedMessage = m.to_owned_message();
    let p = Path::parse("PID-5-1-1").unwrap();
    o.set(&p, "O'BRIEN & SONS").unwrap();
    assert_eq!(o.get(&p).as_deref(), Some("O'BRIEN & SONS"));
    let after = o.encode();
    // Only the PID line changed, and only in that subcomponent.
    let changed: Vec<(&[u8], &[u8])> = before
        .split(|&b| b == b'\r')
        .zip(after.split(|&b| b == b'\r'))
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1);
    let new_pid = String::from_utf8_lossy(changed[0].1);
    assert!(
        new_pid.contains("|O'BRIEN \\T\\ SONS&&&&Aniston^ADAM^"),
        "{new_pid}"
    );
}

/// Every message of the corpus converts to a Clinical record without panicking, the record
/// serializes, and the main facts present in the message are present in the record.
#[test]
fn every_corpus_message_converts_to_a_record() {
    let Some(dir) = corpus() else { return };
    let (mut converted, mut with_patient, mut observations, mut warnings) = (0, 0, 0, 0);
    for file in message_files(&dir) {
        let raw = std::fs::read(&file).unwrap();
        let Ok(b) = batch::split(&raw) else { continue };
        for bm in b.messages() {
            let Ok(m) = Message::parse(bm.raw) else {
                continue;
            };
            let c = aorta::convert::v2::to_clinical(&m);
            let json = serde_json::to_value(&c).unwrap();
            let back: aorta::record::Clinical = serde_json::from_value(json).unwrap();
            assert_eq!(back.message, c.message, "{}", file.display());
            converted += 1;
            warnings += c.warnings.len();
            let pid3 = m.get(&Path::parse("PID-3-1").unwrap()).unwrap_or_default();
            if !pid3.trim().is_empty() {
                let p = c
                    .patient
                    .as_ref()
                    .unwrap_or_else(|| panic!("{}: no patient", file.display()));
                assert!(
                    p.identifiers
                        .iter()
                        .any(|i| i.value.as_deref() == Some(pid3.trim())),
                    "{}: PID-3-1 is not among the identifiers",
                    file.display()
                );
                with_patient += 1;
            }
            let obx_count = m.segments().filter(|s| s.id() == "OBX").count();
            let in_document = m.segments().any(|s| s.id() == "TXA");
            if !in_document {
                assert_eq!(c.observations.len(), obx_count, "{}", file.display());
            }
            observations += c.observations.len();
            // Warnings name places, never values.
            for w in &c.warnings {
                let place = w.split(':').next().unwrap_or("");
                assert!(
                    place.len() >= 5 && place.as_bytes()[3] == b'-',
                    "{}: {w}",
                    file.display()
                );
            }
        }
    }
    assert!(converted >= 700, "{converted}");
    eprintln!("{converted} messages converted: {with_patient} with a patient, {observations} observations, {warnings} warnings");
}
