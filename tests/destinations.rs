//! Destinations against real receivers on loopback: an HTTP server that fails for a while and
//! then accepts, one that refuses, a file directory; strict order under `block`, passing under
//! `skip`, pause and resume.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aorta::store::Store;
use axum::http::{HeaderMap, StatusCode};
use common::{adt, connect, engine_with, exchange, field, settle};

/// What the test server saw: (MSH-10, Idempotency-Key, answered status).
type Seen = Arc<Mutex<Vec<(String, String, u16)>>>;

/// An HTTP receiver on 127.0.0.1:0 that answers with `answer(control id, nth request for it)`.
async fn receiver(
    answer: impl Fn(&str, usize) -> u16 + Send + Sync + 'static,
) -> (std::net::SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let answer = Arc::new(answer);
    let app = axum::Router::new().route(
        "/hl7/{kind}",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let (s, answer) = (s.clone(), answer.clone());
            async move {
                let id = field(&body, "MSH-10");
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                let mut seen = s.lock().unwrap();
                let nth = seen.iter().filter(|(i, _, _)| *i == id).count();
                let status = answer(&id, nth);
                seen.push((id, key, status));
                let mut h = HeaderMap::new();
                if status == 503 {
                    h.insert("retry-after", "0".parse().unwrap());
                }
                (StatusCode::from_u16(status).unwrap(), h, "busy or not")
            }
        }),
    );
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(socket, app).await.unwrap();
    });
    (addr, seen)
}

fn http_destination(addr: std::net::SocketAddr, extra: &str) -> String {
    format!(
        "[destinations.emr]\nkind = \"http\"\nurl = \"http://{addr}/hl7/${{MSH-9-1}}\"\ntimeout_secs = 5\nretry = {{ initial_ms = 20, max_ms = 100 }}\n{extra}\n"
    )
}

const TO_EMR: &str = "from = \"test\"\n[[to]]\ndestination = \"emr\"\n";

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_retries_until_delivered_in_order_and_dead_letters_refusals() {
    // Every message fails twice with 503, then is accepted; BAD-* is refused with 400.
    let (addr, seen) = receiver(|id, nth| {
        if id.starts_with("BAD") {
            400
        } else if nth < 2 {
            503
        } else {
            200
        }
    })
    .await;
    let dest = http_destination(addr, "head_of_line = \"block\"");
    let (e, _dir) = engine_with("http-retry", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let ids: Vec<String> = (0..10).map(|i| format!("H-{i}")).collect();
    for id in &ids {
        assert_eq!(field(&exchange(&mut c, &adt(id)).await, "MSA-1"), "AA");
    }
    exchange(&mut c, &adt("BAD-1")).await;
    settle(&e.store).await;
    let accepted = || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, _, s)| *s == 200)
            .map(|(i, _, _)| i.clone())
            .collect::<Vec<_>>()
    };
    wait_for("every delivery", || accepted().len() == 10).await;
    // Strict order: each message was accepted before the next was even tried.
    assert_eq!(accepted(), ids);
    let log = seen.lock().unwrap().clone();
    let order: Vec<&str> = log.iter().map(|(i, _, _)| i.as_str()).collect();
    let mut expected = Vec::new();
    for id in &ids {
        expected.extend([id.as_str(); 3]);
    }
    assert_eq!(&order[..30], &expected[..]);
    // One idempotency key per message, the same on every attempt.
    for id in &ids {
        let keys: std::collections::BTreeSet<&String> = log
            .iter()
            .filter(|(i, _, _)| i == id)
            .map(|(_, k, _)| k)
            .collect();
        assert_eq!(keys.len(), 1);
        assert!(keys.iter().next().unwrap().ends_with(":emr"));
    }
    // The refused one is dead-lettered with the reason, after one attempt.
    let bad = e.store.find_by_control_id("BAD-1").await.unwrap();
    wait_for("the dead letter", || {
        seen.lock().unwrap().iter().any(|(i, _, _)| i == "BAD-1")
    })
    .await;
    let until = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let d = e.store.deliveries_for(bad[0].id).await.unwrap();
        if d[0].state == "dead" || Instant::now() > until {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(d[0].state, "dead");
    assert!(
        d[0].last_error
            .as_deref()
            .unwrap()
            .starts_with("HTTP 400 Bad Request"),
        "{:?}",
        d[0].last_error
    );
    let attempts = e.store.attempts(d[0].seq).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "dead");
    let first = e.store.find_by_control_id("H-0").await.unwrap();
    let a = e
        .store
        .attempts(e.store.deliveries_for(first[0].id).await.unwrap()[0].seq)
        .await
        .unwrap();
    assert_eq!(
        a.iter().map(|x| x.outcome.as_str()).collect::<Vec<_>>(),
        ["retry", "retry", "sent"]
    );
    assert_eq!(
        a[0].detail.as_deref().map(|d| d.starts_with("HTTP 503")),
        Some(true)
    );
    let m = e.metrics.render();
    assert!(
        m.contains("aorta_deliveries_sent_total{destination=\"emr\"} 10"),
        "{m}"
    );
    assert!(
        m.contains("aorta_deliveries_retried_total{destination=\"emr\"} 20"),
        "{m}"
    );
    assert!(
        m.contains("aorta_deliveries_dead_lettered_total{destination=\"emr\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("aorta_deliveries_rejected_total{destination=\"emr\"} 1"),
        "{m}"
    );
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_lets_later_deliveries_pass_and_gives_up_after_max_attempts() {
    // SLOW-1 always fails with 503; the others are accepted at once.
    let (addr, seen) = receiver(|id, _| if id == "SLOW-1" { 503 } else { 200 }).await;
    let dest = http_destination(
        addr,
        "head_of_line = \"skip\"\n[destinations.emr.retry]\ninitial_ms = 20\nmax_ms = 40\nmax_attempts = 4",
    )
    .replace("retry = { initial_ms = 20, max_ms = 100 }\n", "");
    let (e, _dir) = engine_with("http-skip", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for id in ["SLOW-1", "FAST-1", "FAST-2"] {
        exchange(&mut c, &adt(id)).await;
    }
    let count = |id: &str, status: u16| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(i, _, s)| i == id && *s == status)
            .count()
    };
    wait_for("the fast ones", || {
        count("FAST-1", 200) == 1 && count("FAST-2", 200) == 1
    })
    .await;
    wait_for("four attempts", || count("SLOW-1", 503) == 4).await;
    let slow = e.store.find_by_control_id("SLOW-1").await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let d = e.store.deliveries_for(slow[0].id).await.unwrap();
        if d[0].state == "dead" {
            assert!(d[0]
                .last_error
                .as_deref()
                .unwrap()
                .starts_with("gave up after 4 attempts; last: HTTP 503"));
            break;
        }
        assert!(Instant::now() < until, "not dead-lettered: {:?}", d[0]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(count("SLOW-1", 503), 4, "no fifth attempt");
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_arrive_whole_and_paused_destinations_wait() {
    let route = "from = \"test\"\n[[to]]\ndestination = \"archive\"\n";
    let (e, dir) = engine_with("file-dest", "", &[("a.toml", route)], &["archive"]).await;
    e.store.set_paused("archive", true).await.unwrap();
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for i in 0..5 {
        exchange(&mut c, &adt(&format!("F-{i}"))).await;
    }
    settle(&e.store).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = dir.join("out/archive");
    let files = || -> Vec<std::path::PathBuf> {
        // Files being written have hidden temporary names until they are complete.
        std::fs::read_dir(&out)
            .map(|r| {
                r.map(|e| e.unwrap().path())
                    .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(files().is_empty(), "a paused destination sends nothing");
    assert_eq!(e.store.queue_stats("archive").await.unwrap().depth, 5);
    e.store.set_paused("archive", false).await.unwrap();
    wait_for("five files", || files().len() == 5).await;
    for f in files() {
        let body = std::fs::read(&f).unwrap();
        let id = field(&body, "MSH-10");
        let m = e.store.find_by_control_id(&id).await.unwrap();
        assert_eq!(
            f.file_name().unwrap().to_string_lossy(),
            format!("{}.hl7", m[0].id)
        );
        assert_eq!(body, adt(&id));
    }
    let until = Instant::now() + Duration::from_secs(10);
    while e.store.queue_stats("archive").await.unwrap().depth > 0 {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.stop().await.unwrap();
}

/// Under `block`, a file group that fails part-way holds back everything behind the failed
/// file — the rest of its group and the batch the worker leased ahead while writing it — and
/// once the obstacle is gone every file arrives once, with no temporary file left behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_file_group_holds_back_the_batch_leased_ahead() {
    let out = std::env::temp_dir().join(format!("aorta-test-{}-held-out", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let dest = format!(
        "[destinations.archive]\nkind = \"file\"\ndirectory = \"{}\"\nfilename = \"${{MSH-10}}.hl7\"\nretry = {{ initial_ms = 20, max_ms = 100 }}\n",
        out.display()
    );
    let route = "from = \"test\"\n[[to]]\ndestination = \"archive\"\n";
    let (e, _dir) = engine_with("file-held", "", &[("a.toml", route)], &[&dest]).await;
    e.store.set_paused("archive", true).await.unwrap();
    // More than one leased batch (500), so that the worker leases the next while writing.
    let n = 700;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for i in 0..n {
        exchange(&mut c, &adt(&format!("H-{i:04}"))).await;
    }
    settle(&e.store).await;
    // A directory where the third file must go: its link/rename fails until it is removed.
    let obstacle = out.join("H-0002.hl7");
    std::fs::create_dir_all(obstacle.join("x")).unwrap();
    let names = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    e.store.set_paused("archive", false).await.unwrap();
    wait_for("the first two files", || names().len() >= 3).await;
    // Several retries of the third; nothing behind it may pass.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(names(), vec!["H-0000.hl7", "H-0001.hl7", "H-0002.hl7"]);
    assert!(obstacle.is_dir());
    std::fs::remove_dir_all(&obstacle).unwrap();
    wait_for("every file", || names().len() == n).await;
    let all = names();
    assert!(all
        .iter()
        .all(|f| f.starts_with("H-") && f.ends_with(".hl7")));
    assert_eq!(
        std::fs::read(out.join("H-0699.hl7")).unwrap(),
        adt("H-0699")
    );
    let until = Instant::now() + Duration::from_secs(10);
    while e.store.queue_stats("archive").await.unwrap().depth > 0 {
        assert!(Instant::now() < until);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_end_to_end_into_a_second_engine() {
    let (peer, _pdir) = common::engine("mllp-peer", "").await;
    let dest = format!(
        "[destinations.peer]\nkind = \"mllp\"\naddress = \"{}\"\nack_timeout_secs = 5\nretry = {{ initial_ms = 20, max_ms = 100 }}\n",
        peer.listener_addr("test").unwrap()
    );
    let route = "from = \"test\"\n[[steps]]\nset = \"MSH-5\"\nvalue = \"PEER\"\n[[to]]\ndestination = \"peer\"\n";
    let (e, _dir) = engine_with("mllp-src", "", &[("p.toml", route)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for i in 0..20 {
        exchange(&mut c, &adt(&format!("M-{i}"))).await;
    }
    let until = Instant::now() + Duration::from_secs(20);
    for i in 0..20 {
        loop {
            let got = peer
                .store
                .find_by_control_id(&format!("M-{i}"))
                .await
                .unwrap();
            if let Some(m) = got.first() {
                assert_eq!(field(&m.raw, "MSH-5"), "PEER");
                assert_eq!(got.len(), 1, "received once");
                break;
            }
            assert!(Instant::now() < until, "M-{i} never reached the peer");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    e.stop().await.unwrap();
    peer.stop().await.unwrap();
}

/// An MLLP receiver that answers by control id: `AE-*` gets AE twice then AA, `AR-*` gets AR,
/// `LATE-*` is answered only after 1.5 s the first time (the sender times out at 1 s and must
/// ignore that late ACK), anything else AA. It also sends a stray ACK for another control id
/// before each real answer.
async fn cue_receiver() -> (std::net::SocketAddr, Seen) {
    use aorta::hl7::{build_ack, AckCode, AckSpec, Message};
    use aorta::mllp::codec::{frame, Framing, MllpCodec};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::codec::Decoder;
    let seen: Seen = Arc::default();
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = socket.accept().await else {
                return;
            };
            let s = s.clone();
            tokio::spawn(async move {
                let mut codec = MllpCodec::new(Framing::default(), 1 << 20);
                let mut buf = bytes::BytesMut::new();
                loop {
                    while let Ok(Some(f)) = codec.decode(&mut buf) {
                        let m = Message::parse(&f).unwrap();
                        let id = m.control_id().unwrap().into_owned();
                        let nth = s
                            .lock()
                            .unwrap()
                            .iter()
                            .filter(|(i, _, _)| *i == id)
                            .count();
                        let code = if id.starts_with("AE-") && nth < 2 {
                            AckCode::AE
                        } else if id.starts_with("AR-") {
                            AckCode::AR
                        } else {
                            AckCode::AA
                        };
                        s.lock().unwrap().push((id.clone(), String::new(), 0));
                        if id.starts_with("LATE-") && nth == 0 {
                            tokio::time::sleep(Duration::from_millis(1500)).await;
                        }
                        let spec = |code| AckSpec {
                            code,
                            control_id: "ACK1".into(),
                            timestamp: "20240101".into(),
                            text: Some("on cue".into()),
                            errors: vec![],
                        };
                        let stray = b"MSH|^~\\&|X|Y|||2024||ORU^R01|SOMETHING-ELSE|P|2.5\r";
                        let stray =
                            build_ack(&Message::parse(stray).unwrap(), &spec(AckCode::AA)).unwrap();
                        let ack = build_ack(&m, &spec(code)).unwrap();
                        if conn.write_all(&frame(&stray.encode())).await.is_err()
                            || conn.write_all(&frame(&ack.encode())).await.is_err()
                        {
                            return;
                        }
                    }
                    match conn.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_acks_decide_delivered_retry_or_reject() {
    let (addr, seen) = cue_receiver().await;
    let dest = format!(
        "[destinations.lis]\nkind = \"mllp\"\naddress = \"{addr}\"\nack_timeout_secs = 1\nhead_of_line = \"skip\"\nretry = {{ initial_ms = 20, max_ms = 100 }}\n"
    );
    let route = "from = \"test\"\n[[to]]\ndestination = \"lis\"\n";
    let (e, _dir) = engine_with("mllp-cue", "", &[("l.toml", route)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for id in ["OK-1", "AE-1", "AR-1", "LATE-1", "OK-2"] {
        exchange(&mut c, &adt(id)).await;
    }
    settle(&e.store).await;
    let state = |id: &'static str| {
        let store = e.store.clone();
        async move {
            let m = store.find_by_control_id(id).await.unwrap();
            let d = store.deliveries_for(m[0].id).await.unwrap();
            (d[0].state.clone(), d[0].attempts, d[0].last_error.clone())
        }
    };
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let all = [
            state("OK-1").await,
            state("AE-1").await,
            state("AR-1").await,
            state("LATE-1").await,
            state("OK-2").await,
        ];
        if all.iter().all(|(s, _, _)| s == "sent" || s == "dead") {
            assert_eq!(all[0].0, "sent");
            assert_eq!(
                (all[1].0.as_str(), all[1].1),
                ("sent", 3),
                "AE twice, then AA"
            );
            assert_eq!(all[2].0, "dead");
            assert_eq!(all[2].2.as_deref(), Some("AR: on cue"));
            assert_eq!(
                (all[3].0.as_str(), all[3].1),
                ("sent", 2),
                "timed out once, then AA"
            );
            assert_eq!(all[4].0, "sent");
            break;
        }
        assert!(Instant::now() < until, "{all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = e.store.find_by_control_id("LATE-1").await.unwrap();
    let seq = e.store.deliveries_for(late[0].id).await.unwrap()[0].seq;
    let a = e.store.attempts(seq).await.unwrap();
    assert_eq!(a[0].detail.as_deref(), Some("no ACK within 1 s"));
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(i, _, _)| i == "AR-1")
            .count()
            == 1
    );
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_workers_keep_order_per_patient() {
    // Every third message fails once, so workers hold and retry; per patient, order must stay.
    let (addr, seen) = receiver(|id, nth| {
        let n: usize = id.rsplit('-').next().unwrap().parse().unwrap();
        if n % 3 == 0 && nth == 0 {
            503
        } else {
            200
        }
    })
    .await;
    let dest = http_destination(addr, "concurrency = 4\norder_key = \"PID-3-1\"");
    let (e, _dir) = engine_with("http-order", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let patients = ["P1", "P2", "P3", "P4", "P5", "P6"];
    for n in 0..60 {
        let p = patients[n % patients.len()];
        let msg = format!("MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A08^ADT_A01|{p}-{n}|P|2.5.1\rPID|1||{p}^^^H^MR||DOE^JOHN\r");
        exchange(&mut c, msg.as_bytes()).await;
    }
    wait_for("every delivery", || {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(_, _, s)| *s == 200)
            .count()
            == 60
    })
    .await;
    let log = seen.lock().unwrap().clone();
    for p in patients {
        let accepted: Vec<usize> = log
            .iter()
            .filter(|(i, _, s)| *s == 200 && i.starts_with(&format!("{p}-")))
            .map(|(i, _, _)| i.rsplit('-').next().unwrap().parse().unwrap())
            .collect();
        let mut sorted = accepted.clone();
        sorted.sort_unstable();
        assert_eq!(accepted, sorted, "{p} out of order");
        assert_eq!(accepted.len(), 10);
    }
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_sends_auth_headers_and_keeps_the_rate_limit() {
    std::env::set_var("AORTA_TEST_HTTP_TOKEN", "t0ken");
    let headers: Arc<Mutex<Vec<(String, String, Instant)>>> = Arc::default();
    let h = headers.clone();
    let app = axum::Router::new().fallback(move |hm: HeaderMap| {
        let h = h.clone();
        async move {
            let get = |k: &str| {
                hm.get(k)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            h.lock()
                .unwrap()
                .push((get("authorization"), get("x-source"), Instant::now()));
            "ok"
        }
    });
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(socket, app).await.unwrap();
    });
    let dest = format!(
        "[destinations.emr]\nkind = \"http\"\nurl = \"http://{addr}/x\"\nauth = {{ bearer = \"env:AORTA_TEST_HTTP_TOKEN\" }}\nheaders = {{ \"X-Source\" = \"aorta\" }}\nrate_limit = 20.0\n"
    );
    let (e, _dir) = engine_with("http-auth", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for i in 0..10 {
        exchange(&mut c, &adt(&format!("A-{i}"))).await;
    }
    wait_for("ten requests", || headers.lock().unwrap().len() == 10).await;
    let got = headers.lock().unwrap().clone();
    for (auth, source, _) in &got {
        assert_eq!(auth, "Bearer t0ken");
        assert_eq!(source, "aorta");
    }
    // 20 per second: ten requests span at least 9 gaps of 50 ms.
    let span = got[9].2 - got[0].2;
    assert!(span >= Duration::from_millis(400), "{span:?}");
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_destination_to_a_receiver_without_the_cr_trailer() {
    // A receiver that reads frames ended by 0x1C alone and answers the same way: with
    // `framing = { trailer = 0 }` the destination frames its messages so and reads such ACKs.
    use aorta::hl7::{build_ack, AckCode, AckSpec, Message};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let r = received.clone();
    tokio::spawn(async move {
        let Ok((mut conn, _)) = socket.accept().await else {
            return;
        };
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            while let Some(end) = buf.iter().position(|b| *b == 0x1c) {
                let frame: Vec<u8> = buf.drain(..=end).collect();
                assert_eq!(frame[0], 0x0b, "{frame:?}");
                let payload = &frame[1..frame.len() - 1];
                let m = Message::parse(payload).unwrap();
                let ack = build_ack(
                    &m,
                    &AckSpec {
                        code: AckCode::AA,
                        control_id: "ACK1".into(),
                        timestamp: "20240101".into(),
                        text: None,
                        errors: vec![],
                    },
                )
                .unwrap();
                r.lock().unwrap().push(payload.to_vec());
                let mut out = vec![0x0b];
                out.extend(ack.encode());
                out.push(0x1c);
                if conn.write_all(&out).await.is_err() {
                    return;
                }
            }
            match conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    let dest = format!(
        "[destinations.lis]\nkind = \"mllp\"\naddress = \"{addr}\"\nack_timeout_secs = 2\nframing = {{ trailer = 0 }}\nretry = {{ initial_ms = 20, max_ms = 100 }}\n"
    );
    let route = "from = \"test\"\n[[to]]\ndestination = \"lis\"\n";
    let (e, _dir) = engine_with("mllp-no-cr", "", &[("l.toml", route)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for id in ["NOCR-1", "NOCR-2", "NOCR-3"] {
        exchange(&mut c, &adt(id)).await;
    }
    let until = Instant::now() + Duration::from_secs(20);
    for id in ["NOCR-1", "NOCR-2", "NOCR-3"] {
        loop {
            let m = e.store.find_by_control_id(id).await.unwrap();
            let d = e.store.deliveries_for(m[0].id).await.unwrap();
            if d.first().is_some_and(|d| d.state == "sent") {
                assert_eq!(d[0].attempts, 1, "{id}: answered the first time");
                break;
            }
            assert!(Instant::now() < until, "{id}: {d:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let got = received.lock().unwrap().clone();
    assert_eq!(got, vec![adt("NOCR-1"), adt("NOCR-2"), adt("NOCR-3")]);
    e.stop().await.unwrap();
}

/// What a raw HTTP/1.1 receiver counted: connections accepted, the most open at once,
/// requests answered.
#[derive(Default)]
struct Sessions {
    opened: std::sync::atomic::AtomicUsize,
    open: std::sync::atomic::AtomicUsize,
    most_open: std::sync::atomic::AtomicUsize,
    requests: std::sync::atomic::AtomicUsize,
}

/// How a [`session_receiver`] ends its sessions.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    /// Keeps them open.
    Never,
    /// After every answer, saying so (`Connection: close`).
    EachAnswer,
    /// Silently, after 50 ms without a request (a server's keep-alive timeout).
    WhenIdle,
    /// Never, and it never answers either (a hung receiver).
    NeverAnswers,
}

/// A raw HTTP/1.1 receiver on loopback: each 200 carries a chunked body finished 20 ms after
/// the headers (as a server streaming its acknowledgement does); sessions end as `ending` says.
async fn session_receiver(ending: Ending) -> (std::net::SocketAddr, Arc<Sessions>) {
    let close = ending == Ending::EachAnswer;
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let counts = Arc::new(Sessions::default());
    let c = counts.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = socket.accept().await else {
                return;
            };
            c.opened.fetch_add(1, Ordering::SeqCst);
            let now = c.open.fetch_add(1, Ordering::SeqCst) + 1;
            c.most_open.fetch_max(now, Ordering::SeqCst);
            let c = c.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                'session: loop {
                    // One request: headers, then Content-Length bytes of body.
                    let end = loop {
                        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break p + 4;
                        }
                        let mut chunk = [0u8; 4096];
                        let read = s.read(&mut chunk);
                        let read = if ending == Ending::WhenIdle {
                            match tokio::time::timeout(Duration::from_millis(50), read).await {
                                Ok(r) => r,
                                Err(_) => break 'session,
                            }
                        } else {
                            read.await
                        };
                        match read {
                            Ok(0) | Err(_) => break 'session,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + length {
                        let mut chunk = [0u8; 4096];
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => break 'session,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + length);
                    c.requests.fetch_add(1, Ordering::SeqCst);
                    if ending == Ending::NeverAnswers {
                        continue;
                    }
                    let head: &[u8] = if close {
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n"
                    } else {
                        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n"
                    };
                    if s.write_all(head).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if s.write_all(b"0\r\n\r\n").await.is_err() || close {
                        break;
                    }
                }
                // Counted as closed before the socket is: the sender sees the close after.
                c.open.fetch_sub(1, Ordering::SeqCst);
                drop(s);
            });
        }
    });
    (addr, counts)
}

/// Waits until the destination's queue is empty.
async fn drained(e: &aorta::daemon::Running, destination: &str) {
    settle(&e.store).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.store.queue_stats(destination).await.unwrap().depth > 0 {
        assert!(Instant::now() < deadline, "deliveries not all marked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_keeps_one_connection_when_the_receiver_answers_with_a_body() {
    use std::sync::atomic::Ordering;
    let (addr, seen) = session_receiver(Ending::Never).await;
    let dest = http_destination(addr, "");
    let (e, _dir) = engine_with("http-body", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    // One at a time, as a quiet feed sends: each answer is read whole before the next
    // message arrives.
    for i in 0..5 {
        exchange(&mut c, &adt(&format!("B-{i}"))).await;
        wait_for("the request", || {
            seen.requests.load(Ordering::SeqCst) == i + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then a burst: every next request is ready before the answer before it has ended, the
    // moment a pooled client opens a second connection.
    for i in 0..40 {
        exchange(&mut c, &adt(&format!("C-{i}"))).await;
    }
    drained(&e, "emr").await;
    assert_eq!(seen.requests.load(Ordering::SeqCst), 45);
    // Reading the body lets the connection be reused, and the next request waits for it.
    assert_eq!(seen.opened.load(Ordering::SeqCst), 1);
    assert_eq!(seen.most_open.load(Ordering::SeqCst), 1);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connection_cap_holds_when_the_receiver_closes_each_session() {
    use std::sync::atomic::Ordering;
    let (addr, seen) = session_receiver(Ending::EachAnswer).await;
    // Two workers (order per patient), so at most two connections, and never a third while a
    // closed one is being replaced.
    let dest = http_destination(addr, "concurrency = 2\norder_key = \"PID-3-1\"");
    let (e, _dir) = engine_with("http-close", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for i in 0..30 {
        exchange(&mut c, &adt(&format!("D-{i}"))).await;
    }
    drained(&e, "emr").await;
    // Each sent once: a closed connection is replaced before the next request, never found
    // broken by one.
    assert_eq!(seen.requests.load(Ordering::SeqCst), 30);
    // One session per request, as the receiver wants, and never more than two at once.
    assert_eq!(seen.opened.load(Ordering::SeqCst), 30);
    assert!(seen.most_open.load(Ordering::SeqCst) <= 2);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_replaces_a_connection_the_receiver_closed_while_idle() {
    use std::sync::atomic::Ordering;
    let (addr, seen) = session_receiver(Ending::WhenIdle).await;
    let dest = http_destination(addr, "");
    let (e, _dir) = engine_with("http-idle", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    // Each message after the receiver has dropped the connection kept from the one before.
    for i in 0..5 {
        exchange(&mut c, &adt(&format!("E-{i}"))).await;
        wait_for("the request", || {
            seen.requests.load(Ordering::SeqCst) == i + 1
        })
        .await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    drained(&e, "emr").await;
    // Every delivery went once, on a new connection, with no failed attempt in between.
    assert_eq!(seen.requests.load(Ordering::SeqCst), 5);
    assert_eq!(seen.opened.load(Ordering::SeqCst), 5);
    // Operations see the reconnections (the queue watcher counts them every 2 s).
    wait_for("the connection count", || {
        e.metrics
            .render()
            .contains("aorta_destination_connections_opened_total{destination=\"emr\"} 5")
    })
    .await;
    for seq in 1..=5 {
        let attempts = e.store.attempts(seq).await.unwrap();
        assert!(
            attempts.len() == 1 && attempts[0].outcome == "sent",
            "delivery {seq}: {attempts:?}"
        );
    }
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_goes_through_a_configured_proxy_with_its_credentials() {
    use base64::Engine as _;
    let (addr, seen) = receiver(|_, _| 200).await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("aorta:s3cret")
    );
    let (proxy, log) = common::forward_proxy(Some(&basic)).await;
    let (wrong, refused) = common::forward_proxy(Some("Basic bm9ib2R5Og==")).await;
    let dest = http_destination(
        addr,
        &format!("proxy = {{ url = \"http://{proxy}\", user = \"aorta\", password = \"env:AORTA_TEST_PROXY_PW\" }}"),
    );
    let refused_dest = format!(
        "[destinations.other]\nkind = \"http\"\nurl = \"http://{addr}/hl7/x\"\ntimeout_secs = 5\nretry = {{ initial_ms = 50, max_ms = 200 }}\nproxy = {{ url = \"http://{wrong}\" }}\n"
    );
    std::env::set_var("AORTA_TEST_PROXY_PW", "s3cret");
    let routes =
        "from = \"test\"\n[[to]]\ndestination = \"emr\"\n[[to]]\ndestination = \"other\"\n";
    let (e, _dir) = engine_with(
        "http-proxy",
        "",
        &[("emr.toml", routes)],
        &[&dest, &refused_dest],
    )
    .await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for i in 0..3 {
        exchange(&mut c, &adt(&format!("P-{i}"))).await;
    }
    wait_for("the deliveries through the proxy", || {
        seen.lock().unwrap().len() == 3
    })
    .await;
    // One connection through the proxy, the request in absolute form, with the credentials.
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].0, format!("POST http://{addr}/hl7/ADT HTTP/1.1"));
    assert_eq!(log[0].1.as_deref(), Some(basic.as_str()));
    // A proxy that refuses: retried with the proxy's answer as the reason, nothing sent.
    let m = e.store.find_by_control_id("P-0").await.unwrap();
    wait_for("the refusal recorded", || {
        !refused.lock().unwrap().is_empty()
    })
    .await;
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let d = e.store.deliveries_for(m[0].id).await.unwrap();
        let other = d.iter().find(|x| x.destination == "other").unwrap();
        let attempts = e.store.attempts(other.seq).await.unwrap();
        if let Some(a) = attempts.first() {
            assert_eq!(a.outcome, "retry");
            let why = a.detail.clone().unwrap_or_default();
            assert!(why.contains("407"), "{why}");
            break;
        }
        assert!(Instant::now() < until, "no attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gives_up_on_a_receiver_that_never_answers_and_closes_its_connection() {
    use std::sync::atomic::Ordering;
    let (addr, seen) = session_receiver(Ending::NeverAnswers).await;
    let dest = format!(
        "[destinations.emr]\nkind = \"http\"\nurl = \"http://{addr}/hl7/x\"\ntimeout_secs = 1\nretry = {{ initial_ms = 300, max_ms = 300 }}\n"
    );
    let (e, _dir) = engine_with("http-hang", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    exchange(&mut c, &adt("H-1")).await;
    let m = e.store.find_by_control_id("H-1").await.unwrap();
    wait_for("two attempts", || seen.opened.load(Ordering::SeqCst) >= 2).await;
    let d = e.store.deliveries_for(m[0].id).await.unwrap();
    let attempts = common::attempts_for(&e.store, d[0].seq, 1).await;
    let first = attempts.first().expect("an attempt recorded");
    assert_eq!(first.outcome, "retry");
    let why = first.detail.clone().unwrap_or_default();
    assert!(why.contains("no answer within the timeout"), "{why}");
    // The timed-out connection was closed before the next attempt opened one.
    assert_eq!(seen.most_open.load(Ordering::SeqCst), 1);
    e.stop().await.unwrap();
}

/// What an HTTP/2 receiver saw: connections accepted, requests in flight now and at most,
/// and each request's (MSH-10, HTTP version).
#[derive(Default)]
struct H2Seen {
    opened: std::sync::atomic::AtomicUsize,
    in_flight: std::sync::atomic::AtomicUsize,
    most_in_flight: std::sync::atomic::AtomicUsize,
    got: Mutex<Vec<(String, axum::http::Version)>>,
}

/// An HTTP/2 receiver without TLS (prior knowledge) on loopback: each answer takes 50 ms, so
/// that requests sent at once overlap.
async fn h2_receiver() -> (std::net::SocketAddr, Arc<H2Seen>) {
    use http_body_util::BodyExt;
    use std::sync::atomic::Ordering;
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let seen = Arc::new(H2Seen::default());
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = socket.accept().await else {
                return;
            };
            s.opened.fetch_add(1, Ordering::SeqCst);
            let s = s.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        s.most_in_flight.fetch_max(now, Ordering::SeqCst);
                        let version = req.version();
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        s.got
                            .lock()
                            .unwrap()
                            .push((field(&body, "MSH-10"), version));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        s.in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                        ))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_workers_share_one_connection_and_keep_order_per_patient() {
    use std::sync::atomic::Ordering;
    let (addr, seen) = h2_receiver().await;
    let dest = http_destination(
        addr,
        "concurrency = 4\norder_key = \"PID-3-1\"\nhttp2 = true",
    );
    let (e, _dir) = engine_with("http2", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let patients = ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"];
    for n in 0..48 {
        let p = patients[n % patients.len()];
        let msg = format!("MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A08^ADT_A01|{p}-{n}|P|2.5.1\rPID|1||{p}^^^H^MR||DOE^JOHN\r");
        exchange(&mut c, msg.as_bytes()).await;
    }
    drained(&e, "emr").await;
    let got = seen.got.lock().unwrap().clone();
    assert_eq!(got.len(), 48, "each delivery once");
    assert!(got.iter().all(|(_, v)| *v == axum::http::Version::HTTP_2));
    // One session, the workers' requests on it at once (as streams), never more than four.
    assert_eq!(seen.opened.load(Ordering::SeqCst), 1);
    let most = seen.most_in_flight.load(Ordering::SeqCst);
    assert!((2..=4).contains(&most), "{most} requests in flight at most");
    for p in patients {
        let order: Vec<usize> = got
            .iter()
            .filter(|(i, _)| i.starts_with(&format!("{p}-")))
            .map(|(i, _)| i.rsplit('-').next().unwrap().parse().unwrap())
            .collect();
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(order, sorted, "{p} out of order");
        assert_eq!(order.len(), 6);
    }
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_to_a_receiver_speaking_only_http1_retries_and_sends_nothing() {
    let (addr, seen) = receiver(|_, _| 200).await;
    let dest = http_destination(addr, "http2 = true");
    let (e, _dir) = engine_with("http2-h1", "", &[("emr.toml", TO_EMR)], &[&dest]).await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    exchange(&mut c, &adt("H2-1")).await;
    settle(&e.store).await;
    let m = e.store.find_by_control_id("H2-1").await.unwrap();
    let d = e.store.deliveries_for(m[0].id).await.unwrap();
    let attempts = common::attempts_for(&e.store, d[0].seq, 2).await;
    assert!(attempts.len() >= 2, "{attempts:?}");
    assert!(
        attempts.iter().all(|a| a.outcome == "retry"),
        "{attempts:?}"
    );
    let why = attempts[0].detail.clone().unwrap_or_default();
    assert!(why.contains("does the receiver speak HTTP/2"), "{why}");
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing got through as HTTP/1.1"
    );
    e.stop().await.unwrap();
}

#[test]
fn http2_through_a_forwarding_proxy_is_refused_at_build() {
    let config: aorta::destination::http::HttpConfig = toml::from_str(
        "url = \"http://emr.local/in\"\nhttp2 = true\nproxy = { url = \"http://proxy:3128\" }\n",
    )
    .unwrap();
    let e = aorta::destination::http::HttpDestination::build(&config, 1).unwrap_err();
    assert!(e.contains("http2"), "{e}");
}
