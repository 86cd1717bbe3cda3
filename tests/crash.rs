//! Crash safety of the real binary: SIGKILL under load, restart, and prove that every message
//! that was acknowledged is in the journal exactly once (copies re-sent after the crash are
//! journaled as `duplicate`, never as a second original), and that routing neither skips nor
//! repeats a message across the crash: each original ends up `routed` with exactly one delivery
//! queued, and that delivery reaches the (file) destination — sent again after the restart when
//! the kill came between sending and marking it. Then SIGTERM: graceful exit 0. A second test
//! kills the engine while deliveries are in flight to an HTTP receiver.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{adt, field, read_frame, temp_dir};
use tokio::io::AsyncWriteExt;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_aorta"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start aorta")
}

async fn wait_ready(addr: SocketAddr) {
    let until = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            Instant::now() < until,
            "aorta did not start listening on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_messages_survive_sigkill() {
    let dir = temp_dir("crash");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let db = dir.join("journal.db");
    let config = dir.join("aorta.toml");
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    std::fs::write(
        dir.join("routes/all.toml"),
        "from = \"*\"\n[[steps]]\nset = \"MSH-5\"\nvalue = \"OUT\"\n[[to]]\ndestination = \"out\"\n",
    )
    .unwrap();
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[admin]\nbind = \"\"\n[logging]\nlevel = \"warn\"\n[routes]\ndir = \"{}\"\n[destinations.out]\nkind = \"file\"\ndirectory = \"{}\"\n[listeners.crash]\nkind = \"mllp\"\nbind = \"{addr}\"\n",
            db.display(),
            dir.join("routes").display(),
            dir.join("out").display()
        ),
    )
    .unwrap();

    let mut child = start(&config);
    wait_ready(addr).await;

    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let in_flight: Arc<Mutex<Vec<String>>> = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for conn in 0..8 {
        let (acked, in_flight, count, stop) = (
            acked.clone(),
            in_flight.clone(),
            count.clone(),
            stop.clone(),
        );
        clients.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            for seq in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let id = format!("K{conn}-{seq}");
                if s.write_all(&aorta::mllp::codec::frame(&adt(&id)))
                    .await
                    .is_err()
                {
                    in_flight.lock().unwrap().push(id);
                    return;
                }
                match read_frame(&mut s).await {
                    Some(ack) if field(&ack, "MSA-1") == "AA" && field(&ack, "MSA-2") == id => {
                        acked.lock().unwrap().insert(id);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        // No ACK: the sender does not know whether it was stored, and will resend.
                        in_flight.lock().unwrap().push(id);
                        return;
                    }
                }
            }
        }));
    }
    let until = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::Relaxed) < 400 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-load
    child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let acked: HashSet<String> = acked.lock().unwrap().clone();
    let in_flight: Vec<String> = in_flight.lock().unwrap().clone();
    assert!(
        acked.len() >= 400,
        "only {} acknowledged before the kill",
        acked.len()
    );

    // Restart on the same journal; senders resend what was not acknowledged, and a few
    // acknowledged messages are sent again too.
    let mut child = start(&config);
    wait_ready(addr).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let resend_acked: Vec<String> = acked.iter().take(5).cloned().collect();
    for id in in_flight.iter().chain(&resend_acked) {
        s.write_all(&aorta::mllp::codec::frame(&adt(id)))
            .await
            .unwrap();
        let ack = read_frame(&mut s).await.expect("ACK after restart");
        assert_eq!(field(&ack, "MSA-1"), "AA");
        assert_eq!(field(&ack, "MSA-2"), *id);
    }
    drop(s);
    // Let the route loop catch up with everything journaled before and after the crash.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let waiting: i64 = conn
            .query_row(
                "SELECT count(*) FROM messages WHERE status = 'received'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{waiting} messages were never routed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And the file destination catch up with every delivery, those in flight at the kill too.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let conn = rusqlite::Connection::open(&db).unwrap();
        let pending: i64 = conn
            .query_row(
                "SELECT count(*) FROM deliveries WHERE state <> 'sent'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < until,
            "{pending} deliveries were never sent"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: graceful shutdown, exit status 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");

    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn
        .prepare("SELECT control_id, status FROM messages")
        .unwrap();
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (id, status) = r.unwrap();
        rows.entry(id).or_default().push(status);
    }
    for id in &acked {
        let statuses = rows
            .get(id)
            .unwrap_or_else(|| panic!("{id} was acknowledged but is not in the journal"));
        assert_eq!(
            statuses.iter().filter(|s| *s == "routed").count(),
            1,
            "{id}: {statuses:?}"
        );
    }
    for id in &resend_acked {
        assert!(
            rows[id].contains(&"duplicate".to_string()),
            "{id}: {:?}",
            rows[id]
        );
    }
    for (id, statuses) in &rows {
        assert_eq!(
            statuses.iter().filter(|s| *s == "routed").count(),
            1,
            "{id}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| s == "routed" || s == "duplicate"),
            "{id}: {statuses:?}"
        );
    }
    // Exactly one delivery per original message: none skipped, none queued twice.
    let mut stmt = conn
        .prepare(
            "SELECT m.control_id, count(d.seq) FROM messages m LEFT JOIN deliveries d ON d.message_id = m.id \
             WHERE m.status = 'routed' GROUP BY m.id",
        )
        .unwrap();
    let counts: Vec<(String, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(counts.len(), rows.len());
    for (id, n) in counts {
        assert_eq!(n, 1, "{id} has {n} deliveries");
    }
    let payload: Vec<u8> = conn
        .query_row("SELECT payload FROM deliveries LIMIT 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(field(&payload, "MSH-5"), "OUT");
    // Every routed message is in the destination directory once: a delivery re-sent after the
    // crash wrote the same file (named by message id) again.
    let files: Vec<_> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    let routed: i64 = conn
        .query_row(
            "SELECT count(*) FROM messages WHERE status = 'routed'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(files.len() as i64, routed);
    for id in &in_flight {
        assert!(
            rows.contains_key(id),
            "{id} was resent after the restart but is missing"
        );
    }
}

/// SIGKILL while deliveries are in flight to an HTTP receiver: after the restart every routed
/// message reaches the receiver; a copy arrives only for deliveries sent but not yet marked when
/// the process died, and it carries the same idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_flight_survive_sigkill() {
    use axum::http::HeaderMap;
    let dir = temp_dir("crash-http");
    type Seen = Arc<Mutex<Vec<(String, String)>>>;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    // A slowish receiver, so that deliveries are in flight when the engine dies.
    let app = axum::Router::new().route(
        "/in",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(3)).await;
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                s.lock().unwrap().push((field(&body, "MSH-10"), key));
                "ok"
            }
        }),
    );
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = receiver.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(receiver, app).await.unwrap();
    });
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let db = dir.join("journal.db");
    std::fs::create_dir_all(dir.join("routes")).unwrap();
    std::fs::write(dir.join("routes/all.toml"), "from = \"*\"\nto = [\"rx\"]\n").unwrap();
    let config = dir.join("aorta.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[admin]\nbind = \"\"\n[logging]\nlevel = \"warn\"\n[routes]\ndir = \"{}\"\n[destinations.rx]\nkind = \"http\"\nurl = \"http://{receiver_addr}/in\"\nretry = {{ initial_ms = 20, max_ms = 200 }}\n[listeners.crash]\nkind = \"mllp\"\nbind = \"{addr}\"\n",
            db.display(),
            dir.join("routes").display()
        ),
    )
    .unwrap();
    let mut child = start(&config);
    wait_ready(addr).await;
    let total = 400;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    for i in 0..total {
        let id = format!("H{i}");
        s.write_all(&aorta::mllp::codec::frame(&adt(&id)))
            .await
            .unwrap();
        let ack = read_frame(&mut s).await.expect("ACK");
        assert_eq!(field(&ack, "MSA-1"), "AA");
    }
    drop(s);
    // Kill once the receiver is part-way through.
    let until = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < 100 {
        assert!(Instant::now() < until, "deliveries did not start");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = seen.lock().unwrap().len();
    assert!(
        before < total,
        "everything was delivered before the kill; the test proves nothing"
    );
    let mut child = start(&config);
    wait_ready(addr).await;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let got: std::collections::HashSet<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(i, _)| i.clone())
            .collect();
        if got.len() == total {
            break;
        }
        assert!(
            Instant::now() < until,
            "only {} of {total} arrived",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = seen.lock().unwrap().clone();
    let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (id, key) in log {
        by_id.entry(id).or_default().push(key);
    }
    let copies: usize = by_id.values().map(|k| k.len() - 1).sum();
    for (id, keys) in &by_id {
        assert!(
            keys.iter().all(|k| k == &keys[0] && k.ends_with(":rx")),
            "{id}: {keys:?}"
        );
    }
    // Copies only for what was sent and not yet marked: at most one worker batch.
    assert!(copies <= 64, "{copies} copies");
    eprintln!("{before} delivered before the kill; {copies} sent twice after the restart");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}
