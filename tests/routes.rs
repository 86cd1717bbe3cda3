//! Routes in the running engine, on the wire: messages sent over MLLP flow through the routes
//! into the destination queues; the after-route ACK policy answers by the routing outcome; a
//! reload switches routes only when the new ones are valid.

mod common;

use std::time::{Duration, Instant};

use aorta::store::{Status, Store};
use common::{adt, connect, engine_watching, engine_with, exchange, field, settle};

const TO_EMR: &str = r#"
from = "test"
when = { "MSH-9-1" = "ADT" }
[[steps]]
set = "MSH-5"
value = "EMR"
[[steps]]
map = "PID-8"
table = "sex"
unmapped = "error"
[[to]]
destination = "emr"
[[to]]
destination = "archive"
format = "record-json"
[[to]]
destination = "fhir"
format = "fhir"
"#;

const SEX: &str = "from,to\nM,male\nF,female\n";

fn with_sex(control_id: &str, sex: &str) -> Vec<u8> {
    format!("MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5.1\rPID|1||123^^^H^MR||DOE^JOHN||19700101|{sex}\r").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_flow_through_routes_into_queues() {
    let files = [("emr.toml", TO_EMR), ("tables/sex.csv", SEX)];
    // The [fhir] section shapes the FHIR output (here: the assigning authority's OID).
    let fhir =
        "[fhir]\ndefault_offset = \"+01:00\"\nidentifier_systems = { H = \"urn:oid:1.2.3\" }";
    let (e, _dir) = engine_with("flow", "", &files, &["emr", "archive", "fhir", fhir]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    assert_eq!(
        field(&exchange(&mut c, &with_sex("F-1", "M")).await, "MSA-1"),
        "AA"
    );
    assert_eq!(
        field(&exchange(&mut c, &with_sex("F-2", "Q")).await, "MSA-1"),
        "AA"
    );
    let oru = b"MSH|^~\\&|LAB|FAC|||20240101||ORU^R01|F-3|P|2.5\rPID|1||9\r";
    assert_eq!(field(&exchange(&mut c, oru).await, "MSA-1"), "AA");
    settle(&e.store).await;

    let routed = e.store.find_by_control_id("F-1").await.unwrap();
    assert_eq!(routed[0].status, Status::Routed);
    let d = e.store.deliveries_for(routed[0].id).await.unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d[0].destination, "emr");
    assert_eq!(field(&d[0].payload, "MSH-5"), "EMR");
    assert_eq!(field(&d[0].payload, "PID-8"), "male");
    let json: serde_json::Value = serde_json::from_slice(&d[1].payload).unwrap();
    assert_eq!(json["patient"]["sex"], "male");
    assert_eq!(d[1].idempotency_key, format!("{}:archive", routed[0].id));
    // The FHIR output: a transaction Bundle that updates the patient by identifier.
    let bundle: serde_json::Value = serde_json::from_slice(&d[2].payload).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction");
    let patient = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .unwrap();
    assert_eq!(patient["request"]["method"], "PUT");
    assert_eq!(
        patient["request"]["url"],
        "Patient?identifier=urn:oid:1.2.3|123"
    );
    assert_eq!(patient["resource"]["name"][0]["family"], "DOE");
    assert_eq!(d[2].format, "fhir");

    let errored = e.store.find_by_control_id("F-2").await.unwrap();
    let (status, error) = e.store.status(errored[0].id).await.unwrap().unwrap();
    assert_eq!(status, Status::Errored);
    assert!(error.unwrap().contains("the code `Q` is not in table"));
    assert!(e
        .store
        .deliveries_for(errored[0].id)
        .await
        .unwrap()
        .is_empty());

    let filtered = e.store.find_by_control_id("F-3").await.unwrap();
    assert_eq!(filtered[0].status, Status::Filtered);
    // One delivery was queued for emr (and the file destination may have sent it already).
    let m = e.metrics.render();
    assert!(
        m.contains("aorta_deliveries_queued_total{destination=\"emr\"} 1"),
        "{m}"
    );

    let metrics = e.metrics.render();
    assert!(
        metrics.contains("aorta_route_matched_total{route=\"emr\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aorta_route_errors_total{route=\"emr\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aorta_messages_routed_total{outcome=\"filtered\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aorta_deliveries_queued_total{destination=\"archive\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aorta_route_seconds_count{route=\"emr\"} 3"),
        "{metrics}"
    );
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_route_acks_tell_the_routing_outcome() {
    let script = r#"
from = "test"
[[steps]]
js = """
if (msg.get("PID-8") === "X") throw new Error("sex X is not accepted here");
if (msg.get("MSH-9-1") !== "ADT") return false;
"""
[[to]]
destination = "emr"
"#;
    let (e, _dir) = engine_with(
        "after-route",
        "ack = \"after-route\"",
        &[("r.toml", script)],
        &["emr"],
    )
    .await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;

    let ack = exchange(&mut c, &with_sex("R-1", "F")).await;
    assert_eq!(field(&ack, "MSA-1"), "AA");
    // After-route: the ACK came after the routing commit, so the delivery is already queued.
    let stored = e.store.find_by_control_id("R-1").await.unwrap();
    assert_eq!(stored[0].status, Status::Routed);
    assert_eq!(e.store.deliveries_for(stored[0].id).await.unwrap().len(), 1);

    let nak = exchange(&mut c, &with_sex("R-2", "X")).await;
    assert_eq!(field(&nak, "MSA-1"), "AE");
    assert_eq!(field(&nak, "MSA-2"), "R-2");
    assert_eq!(field(&nak, "ERR-3"), "207");
    assert!(
        field(&nak, "ERR-8").contains("a route failed"),
        "{}",
        String::from_utf8_lossy(&nak)
    );

    let oru = b"MSH|^~\\&|LAB|FAC|||20240101||ORU^R01|R-3|P|2.5\rPID|1||9\r";
    let nak = exchange(&mut c, oru).await;
    assert_eq!(field(&nak, "MSA-1"), "AE");
    assert!(field(&nak, "ERR-8").contains("no route accepted"));

    // A duplicate of a routed message gets the original AA; of a filtered one, AE again.
    assert_eq!(
        field(&exchange(&mut c, &with_sex("R-1", "F")).await, "MSA-1"),
        "AA"
    );
    assert_eq!(field(&exchange(&mut c, oru).await, "MSA-1"), "AE");
    // Enhanced mode: CE instead of AE.
    let enhanced = b"MSH|^~\\&|LAB|FAC|||20240101||ORU^R01|R-4|P|2.5|||AL|NE\rPID|1||9\r";
    assert_eq!(field(&exchange(&mut c, enhanced).await, "MSA-1"), "CE");
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_switch_only_to_valid_routes() {
    let first = "name = \"r\"\nfrom = \"test\"\n[[steps]]\nset = \"MSH-5\"\nvalue = \"V1\"\n[[to]]\ndestination = \"emr\"\n";
    let (e, dir) = engine_with("reload", "", &[("r.toml", first)], &["emr"]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let payload_of = |control_id: &'static str| {
        let store = e.store.clone();
        async move {
            settle(&store).await;
            let m = store.find_by_control_id(control_id).await.unwrap();
            let d = store.deliveries_for(m[0].id).await.unwrap();
            field(&d[0].payload, "MSH-5")
        }
    };
    exchange(&mut c, &adt("L-1")).await;
    assert_eq!(payload_of("L-1").await, "V1");

    // An invalid route file: refused, the running routes stay.
    std::fs::write(
        dir.join("routes/r.toml"),
        first.replace("set = \"MSH-5\"", "set = \"MSH-x\""),
    )
    .unwrap();
    assert!(reload(&e.metrics).await.contains("reload refused"));
    exchange(&mut c, &adt("L-2")).await;
    assert_eq!(payload_of("L-2").await, "V1");

    // A valid one: switched.
    std::fs::write(dir.join("routes/r.toml"), first.replace("V1", "V2")).unwrap();
    assert!(reload(&e.metrics).await.contains("routes reloaded"));
    exchange(&mut c, &adt("L-3")).await;
    assert_eq!(payload_of("L-3").await, "V2");
    let metrics = e.metrics.render();
    assert!(
        metrics.contains("aorta_route_reloads_total{outcome=\"invalid\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aorta_route_reloads_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_route_file_is_picked_up() {
    let first = "name = \"w\"\nfrom = \"test\"\n[[steps]]\nset = \"MSH-5\"\nvalue = \"W1\"\n[[to]]\ndestination = \"emr\"\n";
    let (e, dir) = engine_watching("watch", "", &[("w.toml", first)], &["emr"], true).await;
    let before = e.metrics.route_reloads.with_label_values(&["ok"]).get();
    // A different length, so the change shows even where modification times are coarse.
    std::fs::write(dir.join("routes/w.toml"), first.replace("W1", "W2-longer")).unwrap();
    let until = Instant::now() + Duration::from_secs(15);
    while e.metrics.route_reloads.with_label_values(&["ok"]).get() == before {
        assert!(Instant::now() < until, "the change was not picked up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    exchange(&mut c, &adt("W-1")).await;
    settle(&e.store).await;
    let m = e.store.find_by_control_id("W-1").await.unwrap();
    let d = e.store.deliveries_for(m[0].id).await.unwrap();
    assert_eq!(field(&d[0].payload, "MSH-5"), "W2-longer");
    e.stop().await.unwrap();
}

/// Sends this process (where the engine runs) a SIGHUP and says what the reload did, read from
/// the reload counters.
async fn reload(metrics: &aorta::metrics::Metrics) -> String {
    let counts = || {
        (
            metrics.route_reloads.with_label_values(&["invalid"]).get(),
            metrics.route_reloads.with_label_values(&["ok"]).get(),
        )
    };
    let before = counts();
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counts();
        if now != before {
            return if now.1 > before.1 {
                "routes reloaded".into()
            } else {
                "reload refused".into()
            };
        }
        assert!(Instant::now() < until, "no reload happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
