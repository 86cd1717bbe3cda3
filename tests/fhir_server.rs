//! The FHIR server destination against a real FHIR R4 server on loopback (Medplum's FHIR
//! router with its in-memory repository and R4 validation, `tests/fhir/server.mjs`).

mod common;

use std::time::{Duration, Instant};

use aorta::destination::fhir::{FhirConfig, FhirDestination, FhirMode};
use aorta::destination::{Outcome, Outgoing};
use aorta::store::Store;
use common::{connect, engine_with, exchange, field, settle, FhirServer};
use serde_json::{json, Value};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("routes/fixtures")
            .join(name),
    )
    .unwrap()
}

fn token_file(token: &str) -> std::path::PathBuf {
    let f = std::env::temp_dir().join(format!("aorta-fhir-token-{}", std::process::id()));
    std::fs::write(&f, token).unwrap();
    f
}

/// The resources of a searchset Bundle.
fn found(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .map(|e| e.iter().map(|x| x["resource"].clone()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_feeds_reach_a_fhir_server_once_through_outages() {
    let server = FhirServer::start(Some("s3cret"));
    // The server is down for the first two attempts.
    server.fail(503, 2).await;
    let dest = format!(
        "[destinations.fhir]\nkind = \"fhir\"\nbase_url = \"{}\"\nauth = {{ bearer = \"file:{}\" }}\nretry = {{ initial_ms = 20, max_ms = 100 }}\n",
        server.base(),
        token_file("s3cret").display()
    );
    let route = "from = \"test\"\n[[to]]\ndestination = \"fhir\"\nformat = \"fhir\"\n";
    let (e, _dir) = engine_with("fhir-dest", "", &[("fhir.toml", route)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let adt = fixture("adt-a01.hl7");
    let oru = fixture("oru-r01-bmp.hl7");
    // The same admission again, as a new message (an update): it must not make a second patient.
    let again = String::from_utf8(adt.clone())
        .unwrap()
        .replace("|ADT000123|", "|ADT000124|")
        .into_bytes();
    for m in [&adt, &oru, &again] {
        assert_eq!(field(&exchange(&mut c, m).await, "MSA-1"), "AA");
    }
    settle(&e.store).await;
    let until = Instant::now() + Duration::from_secs(30);
    for id in ["ADT000123", "LAB556710", "ADT000124"] {
        let m = e.store.find_by_control_id(id).await.unwrap();
        loop {
            let d = e.store.deliveries_for(m[0].id).await.unwrap();
            if d[0].state == "sent" {
                break;
            }
            assert!(d[0].state != "dead", "{id}: {:?}", d[0]);
            assert!(Instant::now() < until, "{id} not delivered: {:?}", d[0]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let t = Some("s3cret");
    let patients = found(
        &server
            .get("/fhir/Patient?identifier=urn:aorta:id:GENHOSP|MRN10045", t)
            .await,
    );
    assert_eq!(
        patients.len(),
        1,
        "one patient after two admissions and a result"
    );
    let patient = &patients[0];
    assert_eq!(patient["name"][0]["family"], "MARTINEZ");
    let pid = patient["id"].as_str().unwrap();
    // Conditional updates: the server chose the id, and the references follow it.
    let reports = found(&server.get("/fhir/DiagnosticReport", t).await);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["subject"]["reference"], format!("Patient/{pid}"));
    let observations = found(&server.get("/fhir/Observation?_count=100", t).await);
    let glucose: Vec<&Value> = observations
        .iter()
        .filter(|o| o["code"]["coding"][0]["code"] == "GLU")
        .collect();
    assert_eq!(glucose.len(), 1);
    assert_eq!(glucose[0]["valueQuantity"]["value"], json!(112));
    assert_eq!(glucose[0]["subject"]["reference"], format!("Patient/{pid}"));
    let encounters = found(&server.get("/fhir/Encounter", t).await);
    assert_eq!(
        encounters.len(),
        1,
        "the re-sent admission updated its encounter"
    );
    // Two refusals (503), then every message was accepted; each request carried its key.
    let log = server.get("/__log", None).await;
    let log: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["method"] == "POST")
        .collect();
    let statuses: Vec<u64> = log.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [503, 503, 200, 200, 200]);
    assert!(log
        .iter()
        .all(|r| r["idempotencyKey"].as_str().unwrap().ends_with(":fhir")));
    let metrics = e.metrics.render();
    assert!(metrics.contains("destination=\"fhir\""), "{metrics}");
    e.stop().await.unwrap();
}

fn destination(server: &FhirServer, mode: FhirMode, token: Option<&str>) -> FhirDestination {
    let mut config: FhirConfig =
        toml::from_str(&format!("base_url = \"{}\"", server.base())).unwrap();
    config.mode = mode;
    if let Some(t) = token {
        config.auth =
            toml::from_str(&format!("bearer = \"file:{}\"", token_file(t).display())).ok();
    }
    FhirDestination::build(&config, 1).unwrap()
}

fn delivery<'a>(payload: &'a [u8], format: &'a str) -> Outgoing<'a> {
    Outgoing {
        seq: 1,
        message_id: uuid::Uuid::nil(),
        idempotency_key: "k:fhir",
        format,
        payload,
        attempt: 1,
    }
}

fn bundle_of(raw: &[u8]) -> Vec<u8> {
    let m = aorta::hl7::Message::parse(raw).unwrap();
    let clinical = aorta::convert::v2::to_clinical(&m);
    serde_json::to_vec(&aorta::convert::fhir::to_bundle(
        &clinical,
        &aorta::convert::fhir::FhirOptions::default(),
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_classified_and_every_mode_stores_the_same_resources() {
    let server = FhirServer::start(None);
    let oru = bundle_of(&fixture("oru-r01-bmp.hl7"));
    // One request per entry: referenced entries first, references rewritten to the server's ids.
    let d = destination(&server, FhirMode::Resources, None);
    assert_eq!(d.send(&delivery(&oru, "fhir")).await, Outcome::Delivered);
    let patients = found(&server.get("/fhir/Patient", None).await);
    assert_eq!(patients.len(), 1);
    let pid = patients[0]["id"].as_str().unwrap();
    let observations = found(&server.get("/fhir/Observation?_count=100", None).await);
    assert!(!observations.is_empty());
    for o in &observations {
        assert_eq!(o["subject"]["reference"], format!("Patient/{pid}"));
    }
    // The same Bundle as a batch, then as a transaction: nothing is duplicated.
    for mode in [FhirMode::Batch, FhirMode::Transaction] {
        let d = destination(&server, mode, None);
        assert_eq!(d.send(&delivery(&oru, "fhir")).await, Outcome::Delivered);
    }
    assert_eq!(found(&server.get("/fhir/Patient", None).await).len(), 1);
    let again = found(&server.get("/fhir/Observation?_count=100", None).await);
    assert_eq!(again.len(), observations.len());

    let d = destination(&server, FhirMode::Transaction, None);
    // An invalid resource is refused; the reason names the element.
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:0b7c1d9e-4c1a-4a8e-9a53-1f1f5bb2f0aa",
        "resource": {"resourceType": "Patient", "birthDate": "1972-13-45", "shoeSize": 44},
        "request": {"method": "POST", "url": "Patient"}}]});
    let bad = serde_json::to_vec(&bad).unwrap();
    match d.send(&delivery(&bad, "fhir")).await {
        Outcome::Reject(why) => {
            assert!(why.starts_with("HTTP 400"), "{why}");
            assert!(
                why.contains("Bundle.entry[0].resource.Patient.shoeSize"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Down: retried, with the server's wait.
    server.fail(503, 1).await;
    match d.send(&delivery(&oru, "fhir")).await {
        Outcome::Retry { reason, after } => {
            assert!(reason.starts_with("HTTP 503"), "{reason}");
            assert_eq!(after, Some(Duration::ZERO));
        }
        other => panic!("{other:?}"),
    }
    server.fail(429, 1).await;
    assert!(matches!(
        d.send(&delivery(&oru, "fhir")).await,
        Outcome::Retry { .. }
    ));
    // Not FHIR: refused before anything is sent.
    assert!(matches!(
        d.send(&delivery(b"MSH|^~\\&|", "hl7v2")).await,
        Outcome::Reject(_)
    ));
    assert!(matches!(
        d.send(&delivery(b"{not json", "fhir")).await,
        Outcome::Reject(_)
    ));
    // A single resource: PUT by id.
    let one = br#"{"resourceType":"Organization","id":"lab-1","name":"General Lab"}"#;
    assert_eq!(d.send(&delivery(one, "fhir")).await, Outcome::Delivered);
    assert_eq!(
        server.get("/fhir/Organization/lab-1", None).await["name"],
        "General Lab"
    );
    // Nobody answering: retried.
    let mut gone: FhirConfig =
        toml::from_str("base_url = \"http://127.0.0.1:9/fhir\"\ntimeout_secs = 2").unwrap();
    gone.mode = FhirMode::Transaction;
    let gone = FhirDestination::build(&gone, 1).unwrap();
    assert!(matches!(
        gone.send(&delivery(&oru, "fhir")).await,
        Outcome::Retry { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_with_the_servers_reason() {
    let server = FhirServer::start(Some("right"));
    let oru = bundle_of(&fixture("oru-r01-bmp.hl7"));
    match destination(&server, FhirMode::Transaction, Some("wrong"))
        .send(&delivery(&oru, "fhir"))
        .await
    {
        Outcome::Reject(why) => {
            assert!(why.contains("401") && why.contains("bearer token"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        destination(&server, FhirMode::Transaction, Some("right"))
            .send(&delivery(&oru, "fhir"))
            .await,
        Outcome::Delivered
    );
}
