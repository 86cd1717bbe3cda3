//! The `aorta hl7` commands, run as a user runs them: the real binary, files and stdin.

use std::io::Write;
use std::process::{Command, Output, Stdio};

const ADT: &str = "MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1\n\
PID|1||123^^^HOSP^MR~456^^^SSA^SS||DOE^JOHN^Q||19800101|M\n\
NTE|1||Line one\\.br\\Line two \\T\\ more\n";

fn aorta(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aorta"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("run aorta");
    if let Some(input) = stdin {
        // The command may exit before reading (a bad path is refused first): a broken pipe here
        // is expected, not a failure.
        let _ = child.stdin.take().unwrap().write_all(input);
    }
    child.wait_with_output().unwrap()
}

fn temp_file(name: &str, content: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("aorta-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn get_prints_one_line_per_path() {
    let f = temp_file("adt.hl7", ADT.as_bytes());
    let o = aorta(
        &[
            "hl7",
            "get",
            f.to_str().unwrap(),
            "PID-5-1",
            "PID-3(1)-1",
            "PID.5.2",
            "MSH-9",
            "PID-30",
            "NTE-3",
        ],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        "DOE\n456\nJOHN\nADT\n\nLine one\nLine two & more\n"
    );
}

#[test]
fn get_reads_stdin_and_several_messages() {
    let two = format!("{ADT}\n{}", ADT.replace("CTRL1", "CTRL2"));
    let o = aorta(&["hl7", "get", "-", "MSH-10"], Some(two.as_bytes()));
    assert!(o.status.success());
    assert_eq!(stdout(&o), "CTRL1\nCTRL2\n");
}

#[test]
fn bad_path_is_a_one_line_error() {
    let o = aorta(&["hl7", "get", "-", "PID-0"], Some(ADT.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad path \"PID-0\""), "{err}");
}

#[test]
fn json_shape() {
    let o = aorta(&["hl7", "json", "-"], Some(ADT.as_bytes()));
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["segments"][0]["id"], "MSH");
    assert_eq!(
        v["segments"][0]["fields"][8],
        serde_json::json!(["ADT", "A01", "ADT_A01"])
    );
    assert_eq!(
        v["segments"][1]["fields"][2][1],
        serde_json::json!(["456", "", "", "SSA", "SS"])
    );
}

#[test]
fn normalize_uses_cr_and_keeps_bytes() {
    let o = aorta(&["hl7", "normalize", "-"], Some(ADT.as_bytes()));
    assert!(o.status.success());
    assert_eq!(stdout(&o), ADT.replace('\n', "\r"));
}

#[test]
fn normalize_keeps_batch_envelope() {
    let batch = "FHS|^~\\&|A\rBHS|^~\\&|A\rMSH|^~\\&|A|||||||1|P|2.5\nPID|1\nBTS|1\nFTS|1\n";
    let o = aorta(&["hl7", "normalize", "-"], Some(batch.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), batch.replace('\n', "\r"));
    let wrong = batch.replace("BTS|1", "BTS|4");
    let o = aorta(&["hl7", "normalize", "-"], Some(wrong.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("BTS-1 says 4 messages in the batch, found 1")
    );
}

#[test]
fn ack_codes_and_errors() {
    let o = aorta(&["hl7", "ack", "-"], Some(ADT.as_bytes()));
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.starts_with("MSH|^~\\&|RECV|RFAC|SEND|FAC|"), "{out}");
    assert!(out.contains("||ACK^A01^ACK|"), "{out}");
    assert!(out.ends_with("|P|2.5.1\rMSA|AA|CTRL1\r"), "{out}");

    let o = aorta(
        &["hl7", "ack", "-", "--error", "database down"],
        Some(ADT.as_bytes()),
    );
    let out = stdout(&o);
    assert!(out.contains("\rMSA|AE|CTRL1|database down\rERR|||207^Application internal error^HL70357|E||||database down\r"), "{out}");

    let o = aorta(&["hl7", "ack", "-", "--code", "AR"], Some(ADT.as_bytes()));
    assert!(stdout(&o).contains("\rMSA|AR|CTRL1"));
}

#[test]
fn ack_of_unparseable_input_is_a_nak_and_an_error() {
    let bad = "MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101||ADT^A01|C9|P|2.5\rP?D|1\r";
    let o = aorta(&["hl7", "ack", "-"], Some(bad.as_bytes()));
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(out.contains("\rMSA|AR|C9|"), "{out}");
    assert!(out.contains("100^Segment sequence error^HL70357"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("bad segment id \"P?D\""));
}

#[test]
fn garbage_input_fails_cleanly() {
    for input in [&b""[..], b"\x00\x01\x02 not hl7", b"MSH", b"MSH|"] {
        let o = aorta(&["hl7", "normalize", "-"], Some(input));
        assert_eq!(o.status.code(), Some(1), "{input:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("aorta: "), "{err}");
    }
    let o = aorta(&["hl7", "normalize", "/nonexistent/file.hl7"], None);
    assert_eq!(o.status.code(), Some(1));
}

fn aorta_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aorta"));
    cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[test]
fn validate_the_example_config() {
    let o = aorta_env(&["validate", "--skip-env"], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        "config/aorta.toml: valid (3 listeners, 4 destinations, 3 routes in routes)\n"
    );
}

#[test]
fn the_example_routes_pass_their_tests() {
    let o = aorta_env(&["test"], &[]);
    assert!(
        o.status.success(),
        "{}{}",
        stdout(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    let out = stdout(&o);
    assert!(
        out.contains("routes/adt-to-emr.test.toml\n  ok    "),
        "{out}"
    );
    assert!(out.ends_with(" passed, 0 failed\n"), "{out}");
}

#[test]
fn failing_route_tests_and_bad_routes_fail_the_command() {
    let dir = std::env::temp_dir().join(format!("aorta-cli-routes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("r.toml"),
        "from = \"*\"\nwhen = { \"MSH-9-1\" = \"ADT\" }\nto = [\"x\"]\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("r.test.toml"),
        "[[case]]\nname = \"an ORU is routed\"\nmessage = \"MSH|^~\\\\&|A|B|||2024||ORU^R01|1|P|2.5\"\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let o = aorta_env(&["test", d, "--config", "/nonexistent.toml"], &[]);
    assert!(!o.status.success());
    let out = stdout(&o);
    assert!(out.contains("  FAIL  an ORU is routed\n        expected routed, got filtered (the route's from/when did not match)\n"), "{out}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");

    std::fs::write(
        dir.join("r.toml"),
        "from = \"*\"\nwhen = { \"MSH-9-1\" = { like = \"A\" } }\nto = [\"x\"]\n",
    )
    .unwrap();
    let o = aorta_env(&["test", d, "--config", "/nonexistent.toml"], &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("r.toml:2: route r: when.MSH-9-1: unknown operator `like`"),
        "{err}"
    );
}

#[test]
fn environment_overrides_are_validated_too() {
    let o = aorta_env(
        &["validate", "--skip-env"],
        &[
            ("AORTA__LISTENERS__ADT__BIND", "nowhere"),
            ("AORTA__STORE__MAX_BATCH", "0"),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("config/aorta.toml: listeners.adt.bind: \"nowhere\" is not an address"),
        "{err}"
    );
    assert!(
        err.contains("config/aorta.toml: store.max_batch: must be at least 1"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_bad_config_before_starting() {
    let f = temp_file(
        "bad.toml",
        b"[listeners.x]\nkind = \"mllp\"\nbind = \"127.0.0.1:1\"\ncolour = 1\n",
    );
    let o = aorta_env(&["run", "--config", f.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("listeners.x.colour: unknown field `colour`")
    );
}

#[test]
fn route_shows_what_each_route_does() {
    let o = aorta_env(
        &["route", "routes/fixtures/adt-a04-unknown-service.hl7"],
        &[],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        "message 1 (ADT^A04 ADT000140) from adt:\n  \
         route adt-to-emr: ERROR step 3: map PV1-10: the code `NEURO` is not in table config/tables/hospital-service.csv\n  \
         route archive: to archive (hl7v2, 200 bytes)\n  \
         route lab-results: not matched\n  \
         => errored: nothing would be queued\n"
    );
    let o = aorta_env(
        &[
            "route",
            "--source",
            "lab",
            "--show",
            "routes/fixtures/oru-r01-bmp.hl7",
        ],
        &[],
    );
    let out = stdout(&o);
    assert!(
        out.contains("  route lab-results: to lab-results (record-json, "),
        "{out}"
    );
    assert!(out.contains("\"code\":\"2345-7\""), "{out}");
    assert!(out.ends_with("  => routed: 2 deliveries\n"), "{out}");
}

#[test]
fn convert_prints_a_fhir_bundle_per_message() {
    let adt = b"MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A01^ADT_A01|C-1|P|2.5.1\rPID|1||123^^^H&1.2.3&ISO^MR||DOE^JOHN||19700101|M\rPV1|1|I|W1^101^A\r";
    let out = aorta(&["convert", "-"], Some(adt));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(bundle["type"], "transaction");
    let entries = bundle["entry"].as_array().unwrap();
    let patient = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap();
    assert_eq!(
        patient["request"]["url"],
        "Patient?identifier=urn:oid:1.2.3|123"
    );
    assert_eq!(patient["resource"]["gender"], "male");
    assert!(entries
        .iter()
        .any(|e| e["resource"]["resourceType"] == "Encounter"));
    // The same message again gives the same ids: re-sending is idempotent.
    let again: serde_json::Value =
        serde_json::from_slice(&aorta(&["convert", "-"], Some(adt)).stdout).unwrap();
    assert_eq!(bundle, again);

    let resources = aorta(&["convert", "-", "--to", "fhir-resources"], Some(adt));
    let lines = String::from_utf8(resources.stdout).unwrap();
    assert_eq!(lines.lines().count(), entries.len());

    let bad = aorta(&["convert", "-", "--to", "xml"], Some(adt));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--to xml"));
}

#[test]
fn convert_turns_fhir_json_into_hl7_v2() {
    let patient = br#"{"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": "123",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
        "name": [{"family": "O'Brien|Smith", "given": ["Ann", "Marie"]}], "gender": "female", "birthDate": "1980-02-29"}"#;
    let out = aorta(
        &["convert", "-", "--to", "hl7v2", "--event", "A04"],
        Some(patient),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2 = stdout(&out);
    let segments: Vec<&str> = v2.trim_end().split('\r').collect();
    assert!(segments[0].starts_with("MSH|^~\\&|AORTA|"), "{v2}");
    assert!(segments[0].contains("|ADT^A04^ADT_A01|"), "{v2}");
    assert_eq!(segments[1].split('|').nth(1), Some("A04"));
    assert_eq!(
        segments[2],
        "PID|1||123^^^&1.2.3&ISO^MR||O'Brien\\F\\Smith^Ann^Marie||19800229|F"
    );
    // A result: ORU^R01 with the observation under its own OBR.
    let obs = br#"{"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6f1c9f5e-0b5e-4f43-9d84-3c2b1f0f0a01", "resource": {"resourceType": "Patient", "identifier": [{"value": "9"}]}},
        {"resource": {"resourceType": "Observation", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
         "subject": {"reference": "urn:uuid:6f1c9f5e-0b5e-4f43-9d84-3c2b1f0f0a01"},
         "effectiveDateTime": "2024-05-01T10:00:00+02:00",
         "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}}]}"#;
    let out = aorta(&["convert", "-", "--to", "hl7v2"], Some(obs));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v2 = stdout(&out);
    assert!(v2.contains("|ORU^R01^ORU_R01|"), "{v2}");
    assert!(
        v2.contains(
            "\rOBX|1|NM|8867-4^Heart rate^LN||72|/min^/min^UCUM|||||F|||20240501100000+0200\r"
        ),
        "{v2}"
    );
    let bad = aorta(&["convert", "-", "--to", "hl7v2"], Some(b"{\"no\": 1}"));
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no resourceType"));
}
