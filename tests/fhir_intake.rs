//! The FHIR REST intake end to end: a real engine with a FHIR listener, HTTP requests from a
//! real client, the journal, routes, and destinations — HL7 v2 files for a v2 system and a real
//! FHIR server (Medplum's FHIR router on loopback) for FHIR passthrough.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aorta::store::{Status, Store};
use common::{settle, temp_dir, FhirServer};
use serde_json::{json, Value};

struct Engine {
    e: aorta::daemon::Running,
    dir: PathBuf,
    base: String,
}

/// An engine with FHIR listener `fhir` (token `s3cret`, `extra` TOML keys) routing everything
/// to HL7 v2 files (`out/v2`) and, when given, to a FHIR server.
async fn engine(name: &str, extra: &str, fhir_server: Option<&str>) -> Engine {
    let dir = temp_dir(name);
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    std::fs::write(dir.join("token"), "s3cret").unwrap();
    let mut route =
        "from = \"fhir\"\n[[to]]\ndestination = \"v2\"\nformat = \"hl7v2\"\n".to_string();
    let mut dests = format!(
        "[destinations.v2]\nkind = \"file\"\ndirectory = \"{}\"\nfilename = \"${{MSH-9-1}}-${{MSH-9-2}}-${{message_id}}.hl7\"\n",
        dir.join("out/v2").display()
    );
    if let Some(base) = fhir_server {
        route.push_str("[[to]]\ndestination = \"store\"\nformat = \"fhir\"\n");
        dests.push_str(&format!(
            "[destinations.store]\nkind = \"fhir\"\nbase_url = \"{base}\"\nretry = {{ initial_ms = 20, max_ms = 100 }}\n"
        ));
    }
    std::fs::write(dir.join("routes/all.toml"), route).unwrap();
    // Routes select on the FHIR content through record paths.
    std::fs::write(
        dir.join("routes/results.toml"),
        "from = \"fhir\"\nwhen = { \"message.resource_types\" = \"Observation\" }\n[[to]]\ndestination = \"results\"\nformat = \"record-json\"\n",
    )
    .unwrap();
    dests.push_str(&format!(
        "[destinations.results]\nkind = \"file\"\ndirectory = \"{}\"\n",
        dir.join("out/results").display()
    ));
    let toml = format!(
        "[store]\npath = \"{}\"\n[admin]\nbind = \"127.0.0.1:0\"\n[routes]\ndir = \"{}\"\nwatch = false\n{dests}[listeners.fhir]\nkind = \"fhir\"\nbind = \"127.0.0.1:0\"\ntokens = [\"file:{}\"]\nmax_body_bytes = 65536\n{extra}\n",
        dir.join("journal.db").display(),
        dir.join("routes").display(),
        dir.join("token").display(),
    );
    let file = dir.join("aorta.toml");
    std::fs::write(&file, toml).unwrap();
    let config = aorta::config::Config::load(&file, false).unwrap_or_else(|e| panic!("{e}"));
    let e = aorta::daemon::start(&config).await.unwrap();
    let addr = e.listener_addr("fhir").unwrap();
    Engine {
        e,
        dir,
        base: format!("http://{addr}/fhir"),
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A request with the token and FHIR JSON: (status, headers, body as JSON or Null).
async fn call(
    method: &str,
    url: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut r = client()
        .request(method.parse().unwrap(), url)
        .header("content-type", "application/fhir+json")
        .body(body.to_string());
    if !headers.iter().any(|(k, _)| *k == "authorization") {
        r = r.header("authorization", "Bearer s3cret");
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        h,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn patient(mrn: &str) -> Value {
    json!({"resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.1", "value": mrn,
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
        "name": [{"family": "Nakamura", "given": ["Yuki"]}], "gender": "female", "birthDate": "1990-07-14"})
}

/// The HL7 v2 files routed so far, by name.
fn v2_files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir.join("out/v2"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap(),
                    )
                })
                .filter(|(n, _)| n.ends_with(".hl7"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

async fn wait_for_files(dir: &Path, n: usize) -> Vec<(String, String)> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let files = v2_files(dir);
        if files.len() >= n {
            return files;
        }
        assert!(
            Instant::now() < until,
            "only {} files: {files:?}",
            files.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn issue_paths(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_checked_journaled_and_routed_as_hl7_v2() {
    let eng = engine("fhir-intake", "", None).await;
    let base = &eng.base;
    // The CapabilityStatement is open.
    let meta: Value = serde_json::from_slice(
        &client()
            .get(format!("{base}/metadata"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(meta["resourceType"], "CapabilityStatement");
    assert_eq!(meta["fhirVersion"], "4.0.1");

    // No token, a wrong token: 401 with an OperationOutcome.
    let r = client()
        .post(format!("{base}/Patient"))
        .header("content-type", "application/fhir+json")
        .body(patient("1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let (status, _, body) = call(
        "POST",
        &format!("{base}/Patient"),
        &patient("1"),
        &[("authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(
        (status, body["issue"][0]["code"].as_str()),
        (401, Some("login"))
    );

    // Not FHIR JSON, too large: 415, 413.
    let r = client()
        .post(format!("{base}/Patient"))
        .header("authorization", "Bearer s3cret")
        .header("content-type", "application/xml")
        .body("<Patient/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let mut big = patient("1");
    big["text"] = json!({"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(70_000))});
    assert_eq!(
        call("POST", &format!("{base}/Patient"), &big, &[]).await.0,
        413
    );

    // Invalid: 400, each problem at its FHIRPath; journaled as rejected.
    let mut bad = patient("2");
    bad["birthDate"] = json!("14.07.1990");
    bad["gender"] = json!("f");
    bad["shoeSize"] = json!(38);
    let (status, _, body) = call("POST", &format!("{base}/Patient"), &bad, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(
        issue_paths(&body),
        ["Patient", "Patient.birthDate", "Patient.gender"],
        "{body}"
    );
    assert!(body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("shoeSize"));
    let (status, _, body) = call("POST", &format!("{base}/Observation"), &patient("3"), &[]).await;
    assert_eq!(status, 400);
    assert!(body["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .contains("URL says Observation"));
    let (status, _) = client_raw(base, "{\"resourceType\": ").await;
    assert_eq!(status, 400);

    // Valid: journaled before 201, Location with the message id.
    let (status, headers, body) =
        call("POST", &format!("{base}/Patient"), &patient("MRN-77"), &[]).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    let location = headers["location"].to_str().unwrap().to_string();
    let id = location
        .strip_prefix("/fhir/Patient/")
        .and_then(|l| l.strip_suffix("/_history/1"))
        .unwrap();
    let message = uuid::Uuid::parse_str(id).unwrap();
    assert!(
        eng.e.store.status(message).await.unwrap().is_some(),
        "journaled"
    );

    // An update: the id must match; return=representation echoes the resource.
    let mut p = patient("MRN-77");
    p["id"] = json!("p-77");
    p["name"][0]["family"] = json!("Nakamura-Sato");
    let (status, _, body) = call(
        "PUT",
        &format!("{base}/Patient/p-77"),
        &p,
        &[("prefer", "return=representation")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "p-77");
    assert_eq!(
        call("PUT", &format!("{base}/Patient/other"), &p, &[])
            .await
            .0,
        400
    );

    // A transaction: patient and a result together; one message, answered entry by entry.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:3f6f8c1e-8a4b-4c53-9d0e-2a7d1c9b0f11", "resource": patient("MRN-77"),
         "request": {"method": "PUT", "url": "Patient?identifier=urn:oid:2.16.840.1.113883.3.1|MRN-77"}},
        {"resource": {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
            "subject": {"reference": "urn:uuid:3f6f8c1e-8a4b-4c53-9d0e-2a7d1c9b0f11"},
            "effectiveDateTime": "2026-11-20T08:15:00+01:00",
            "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    let (status, _, body) = call("POST", base, &tx, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "transaction-response");
    assert_eq!(body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(body["entry"][1]["response"]["status"], "201 Created");

    // A transaction with one bad entry is refused whole.
    let mut broken = tx.clone();
    broken["entry"][1]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    let (status, _, body) = call("POST", base, &broken, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        issue_paths(&body)
            .iter()
            .any(|p| p == "Bundle.entry[1].resource.Observation"),
        "{body}"
    );

    // A batch: the good entry is accepted, the bad one answered 400 on its own.
    let mut batch = broken.clone();
    batch["type"] = json!("batch");
    let (status, _, body) = call("POST", base, &batch, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["type"], "batch-response");
    assert_eq!(body["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(body["entry"][1]["response"]["status"], "400 Bad Request");

    // Routed as HL7 v2: the create as ADT^A04, the update and the batch's patient as ADT^A08,
    // the transaction as ORU^R01.
    settle(&eng.e.store).await;
    let files = wait_for_files(&eng.dir, 4).await;
    let names: Vec<&str> = files.iter().map(|(n, _)| &n[..7]).collect();
    let mut kinds = names.clone();
    kinds.sort();
    assert_eq!(
        kinds,
        ["ADT-A04", "ADT-A08", "ADT-A08", "ORU-R01"],
        "{files:?}"
    );
    let a04 = &files
        .iter()
        .find(|(n, _)| n.starts_with("ADT-A04"))
        .unwrap()
        .1;
    let segments: Vec<&str> = a04.split('\r').collect();
    assert!(
        segments[2].starts_with(
            "PID|1||MRN-77^^^&2.16.840.1.113883.3.1&ISO^MR||Nakamura^Yuki||19900714|F"
        ),
        "{a04}"
    );
    let oru = &files.iter().find(|(n, _)| n.starts_with("ORU")).unwrap().1;
    assert!(
        oru.contains(
            "\rOBX|1|NM|2339-0^Glucose^LN||5.4|mmol/L^mmol/L^UCUM|||||F|||20261120081500+0100"
        ),
        "{oru}"
    );
    // Only the transaction held an Observation: one record for the results route, read from
    // the FHIR itself.
    let list = || -> Vec<std::fs::DirEntry> {
        std::fs::read_dir(eng.dir.join("out/results"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    let until = Instant::now() + Duration::from_secs(20);
    while list().is_empty() {
        assert!(Instant::now() < until, "no results record");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let results = list();
    assert_eq!(results.len(), 1);
    let record: Value = serde_json::from_slice(&std::fs::read(results[0].path()).unwrap()).unwrap();
    assert_eq!(record["message"]["type"], "Bundle");
    assert_eq!(record["observations"][0]["value"], json!(5.4));
    // Refused content is kept for an operator: the bad patient, the wrong type, the broken
    // JSON, the update with another id, the broken transaction.
    assert_eq!(eng.e.store.count(Status::Rejected).await.unwrap(), 5);
    let m = eng.e.metrics.render();
    assert!(
        m.contains(
            "aorta_fhir_requests_total{interaction=\"create\",listener=\"fhir\",status=\"201\"} 1"
        ),
        "{m}"
    );
    eng.e.stop().await.unwrap();
}

/// Reads one whole HTTP/1.1 response (headers and a `Content-Length` body) from `stream`;
/// its status line.
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .expect("a Content-Length");
            while data.len() < end + 4 + length {
                let n = stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "the connection closed mid-response");
                data.extend_from_slice(&buf[..n]);
            }
            return head.lines().next().unwrap_or_default().to_string();
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before a response");
        data.extend_from_slice(&buf[..n]);
    }
}

/// Sends one keep-alive `GET /fhir/metadata` on `stream`.
async fn ask_metadata(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(
            b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n",
        )
        .await
        .unwrap();
}

/// Asks for the metadata on `stream`; the response's status line, or `None` after `wait`.
async fn metadata(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<String> {
    ask_metadata(stream).await;
    tokio::time::timeout(wait, read_response(stream)).await.ok()
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let e = engine("fhir-intake-limit", "max_connections = 2", None).await;
    let addr = e.e.listener_addr("fhir").unwrap();
    let ok = Some("HTTP/1.1 200 OK".to_string());
    let long = Duration::from_secs(10);
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(metadata(&mut first, long).await, ok);
    assert_eq!(metadata(&mut second, long).await, ok);
    // Both slots are held (keep-alive): a third client connects (the kernel's backlog) but is
    // not served...
    let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert_eq!(metadata(&mut third, Duration::from_millis(500)).await, None);
    // ...until one of the two closes; then its request, already sent, is answered.
    drop(first);
    let answered = tokio::time::timeout(long, read_response(&mut third)).await;
    assert_eq!(
        answered.ok(),
        ok,
        "the waiting client is served once a slot is free"
    );
    assert_eq!(metadata(&mut second, long).await, ok);
    e.e.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&e.dir);
}

async fn client_raw(base: &str, body: &str) -> (u16, Value) {
    let r = client()
        .post(format!("{base}/Patient"))
        .header("authorization", "Bearer s3cret")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (
        s,
        serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
    )
}

/// FHIR in, FHIR out: what a clinical system posts reaches a FHIR server unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_fhir_reaches_a_fhir_server() {
    let server = FhirServer::start(None);
    let eng = engine("fhir-through", "", Some(&server.base())).await;
    let mut p = patient("MRN-5");
    p["id"] = json!("mrn-5");
    let (status, _, _) = call("PUT", &format!("{}/Patient/mrn-5", eng.base), &p, &[]).await;
    assert_eq!(status, 200);
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let got = server.get("/fhir/Patient/mrn-5", None).await;
        if got["resourceType"] == "Patient" {
            assert_eq!(got["name"][0]["family"], "Nakamura");
            assert_eq!(got["birthDate"], "1990-07-14");
            break;
        }
        assert!(Instant::now() < until, "not delivered: {got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eng.e.stop().await.unwrap();
}

/// HTTPS with a client certificate required (mutual TLS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_over_mutual_tls() {
    let pki = common::make_pki(&temp_dir("fhir-pki"));
    let ca_pem = PathBuf::from(&pki.ca);
    let (ccert, ckey) = (
        PathBuf::from(&pki.client_cert),
        PathBuf::from(&pki.client_key),
    );
    let tls = format!(
        "tls = {{ cert = \"{}\", key = \"{}\", client_ca = \"{}\" }}",
        pki.server_cert, pki.server_key, pki.ca
    );
    let eng = engine("fhir-mtls", &tls, None).await;
    let port = eng.e.listener_addr("fhir").unwrap().port();
    let url = format!("https://localhost:{port}/fhir/Patient");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let with = |client: Option<(&Path, &Path)>| {
        let config = aorta::tls::outgoing_config(Some(&ca_pem), client).unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(config)
            .resolve("localhost", ([127, 0, 0, 1], port).into())
            .build()
            .unwrap()
    };
    let post = |c: reqwest::Client| {
        let url = url.clone();
        async move {
            c.post(url)
                .header("authorization", "Bearer s3cret")
                .header("content-type", "application/fhir+json")
                .body(patient("TLS-1").to_string())
                .send()
                .await
        }
    };
    let ok = post(with(Some((&ccert, &ckey)))).await.unwrap();
    assert_eq!(ok.status().as_u16(), 201);
    assert!(
        post(with(None)).await.is_err(),
        "no client certificate, no connection"
    );
    eng.e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn formats_and_methods_are_negotiated_with_operation_outcomes() {
    let eng = engine("fhir-negotiate", "", None).await;
    let base = &eng.base;
    let get = |url: String, accept: Option<&'static str>| async move {
        let mut r = client().get(url);
        if let Some(a) = accept {
            r = r.header("accept", a);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
        (status, body)
    };
    // Accept and _format that admit JSON are served; _format overrides Accept.
    for (query, accept) in [
        ("", None),
        ("", Some("application/fhir+json")),
        (
            "",
            Some("application/fhir+xml, application/fhir+json;q=0.5"),
        ),
        ("", Some("*/*")),
        (
            "",
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ),
        ("?_format=json", Some("application/fhir+xml")),
        ("?_format=application/fhir+json", None),
        ("?_format=application%2Ffhir%2Bjson", None),
    ] {
        let (status, body) = get(format!("{base}/metadata{query}"), accept).await;
        assert_eq!(
            (status, body["resourceType"].as_str()),
            (200, Some("CapabilityStatement")),
            "{query} {accept:?}"
        );
    }
    // Only formats Aorta does not write: 406 with an OperationOutcome.
    for (query, accept) in [
        ("", Some("application/fhir+xml")),
        ("", Some("application/xml, text/xml")),
        ("", Some("application/fhir+json;q=0, application/fhir+xml")),
        ("?_format=xml", None),
        (
            "?_format=application/fhir+xml",
            Some("application/fhir+json"),
        ),
    ] {
        let (status, body) = get(format!("{base}/metadata{query}"), accept).await;
        assert_eq!(
            (
                status,
                body["resourceType"].as_str(),
                body["issue"][0]["code"].as_str()
            ),
            (406, Some("OperationOutcome"), Some("not-supported")),
            "{query} {accept:?}"
        );
    }
    // DSTU2's media type for FHIR JSON is still accepted on requests.
    let r = client()
        .post(format!("{base}/Patient"))
        .header("authorization", "Bearer s3cret")
        .header("content-type", "application/json+fhir")
        .body(patient("NEG-1").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // A method a path does not take: 405, the one it does in Allow, an OperationOutcome.
    for (method, path, allowed) in [
        ("GET", "/Patient/NEG-1", "PUT"),
        ("DELETE", "/Patient/NEG-1", "PUT"),
        ("GET", "/Patient", "POST"),
        ("GET", "", "POST"),
        ("POST", "/metadata", "GET"),
    ] {
        let (status, headers, body) =
            call(method, &format!("{base}{path}"), &patient("NEG-2"), &[]).await;
        assert_eq!(
            (status, body["resourceType"].as_str()),
            (405, Some("OperationOutcome")),
            "{method} {path}"
        );
        assert_eq!(headers["allow"], allowed, "{method} {path}");
    }
    // A conditional update on its own is named, with what to send instead.
    let (status, _, body) = call(
        "PUT",
        &format!("{base}/Patient?identifier=urn:x|NEG-3"),
        &patient("NEG-3"),
        &[],
    )
    .await;
    assert_eq!(status, 405);
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| d.contains("conditional update") && d.contains("transaction Bundle")),
        "{body}"
    );
    eng.e.stop().await.unwrap();
}
