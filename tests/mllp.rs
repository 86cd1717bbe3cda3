//! The MLLP listener on the wire: raw bytes over real sockets on 127.0.0.1, asserting on the
//! ACK bytes and on what the journal holds.

mod common;

use std::time::Duration;

use aorta::store::{Status, Store};
use common::{adt, connect, engine, exchange, field, read_frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_after_journal() {
    let (e, _dir) = engine("ack", "").await;
    let addr = e.listener_addr("test").unwrap();
    let mut c = connect(addr).await;
    let ack = exchange(&mut c, &adt("C-1")).await;
    assert_eq!(field(&ack, "MSA-1"), "AA");
    assert_eq!(field(&ack, "MSA-2"), "C-1");
    assert_eq!(field(&ack, "MSH-3"), "RECV");
    assert_eq!(field(&ack, "MSH-5"), "SEND");
    assert_eq!(field(&ack, "MSH-9"), "ACK");
    assert_eq!(field(&ack, "MSH-9-2"), "A01");
    // The ACK was sent after the commit, so the message is already in the journal, with its ACK.
    let stored = e.store.find_by_control_id("C-1").await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(matches!(
        stored[0].status,
        Status::Received | Status::Filtered
    ));
    assert_eq!(stored[0].raw, adt("C-1"));
    assert_eq!(stored[0].ack.as_deref(), Some(&ack[..]));
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_coalesced_and_junk() {
    let (e, _dir) = engine("frames", "").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    // One frame dribbled a few bytes at a time (a slow client).
    let framed = aorta::mllp::codec::frame(&adt("S-1"));
    for chunk in framed.chunks(7) {
        c.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(field(&read_frame(&mut c).await.unwrap(), "MSA-2"), "S-1");
    // Three frames in one write, with junk between them: three ACKs in order.
    let mut bytes = b"\r\n junk".to_vec();
    for id in ["K-1", "K-2", "K-3"] {
        bytes.extend(aorta::mllp::codec::frame(&adt(id)));
        bytes.extend(b"\n");
    }
    c.write_all(&bytes).await.unwrap();
    for id in ["K-1", "K-2", "K-3"] {
        assert_eq!(field(&read_frame(&mut c).await.unwrap(), "MSA-2"), id);
    }
    // The trailing newline is discarded when the codec next reads, which can come just after
    // the last ACK went out: wait for the count instead of reading it once.
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = e.metrics.render();
        if metrics.contains("aorta_junk_bytes_discarded_total{listener=\"test\"} 10") {
            break;
        }
        assert!(std::time::Instant::now() < until, "{metrics}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_without_the_cr_trailer() {
    // Some senders end a frame with 0x1C alone. With the default framing the frame is not over
    // yet; with `trailer = 0` it is, and the ACK goes back framed the same way.
    let (e, _dir) = engine("no-cr", "framing = { trailer = 0 }").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for id in ["NC-1", "NC-2"] {
        let mut bytes = vec![0x0b];
        bytes.extend(adt(id));
        bytes.push(0x1c);
        c.write_all(&bytes).await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while got.last() != Some(&0x1c) {
            let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
                .await
                .expect("an ACK for a frame ended by 0x1C alone")
                .unwrap();
            assert!(n > 0, "closed");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got[0], 0x0b);
        let ack = &got[1..got.len() - 1];
        assert_eq!(field(ack, "MSA-1"), "AA");
        assert_eq!(field(ack, "MSA-2"), id);
        assert_eq!(
            e.store.find_by_control_id(id).await.unwrap()[0].raw,
            adt(id)
        );
    }
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_a_nak_and_are_kept() {
    let (e, _dir) = engine("malformed", "").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let bad = b"MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101||ADT^A01|BAD-1|P|2.5\rP?D|1\r";
    let nak = exchange(&mut c, bad).await;
    assert_eq!(field(&nak, "MSA-1"), "AR");
    assert_eq!(field(&nak, "MSA-2"), "BAD-1");
    assert_eq!(field(&nak, "ERR-3"), "100");
    assert!(
        field(&nak, "ERR-8").contains("bad segment id"),
        "{}",
        String::from_utf8_lossy(&nak)
    );
    // Not HL7 at all.
    let nak = exchange(&mut c, b"hello there").await;
    assert_eq!(field(&nak, "MSA-1"), "AR");
    // Unsupported character set: AR with ERR at MSH-18.
    let klingon =
        b"MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101||ADT^A01|CS-1|P|2.5||||||KLINGON\rPID|1\r";
    let nak = exchange(&mut c, klingon).await;
    assert_eq!(field(&nak, "MSA-1"), "AR");
    assert_eq!(field(&nak, "ERR-2"), "MSH");
    assert_eq!(field(&nak, "ERR-2-3"), "18");
    assert_eq!(field(&nak, "ERR-3"), "102");
    // The connection still works, and everything was journaled as rejected.
    assert_eq!(field(&exchange(&mut c, &adt("OK-1")).await, "MSA-1"), "AA");
    common::settle(&e.store).await;
    assert_eq!(e.store.count(Status::Rejected).await.unwrap(), 3);
    // No routes: the accepted message is kept as filtered.
    assert_eq!(e.store.count(Status::Filtered).await.unwrap(), 1);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_is_nakked_and_closed() {
    let (e, _dir) = engine("oversize", "max_frame_bytes = 200").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let mut big = adt("BIG-1");
    big.extend(std::iter::repeat_n(b'X', 500));
    c.write_all(&aorta::mllp::codec::frame(&big)).await.unwrap();
    let nak = read_frame(&mut c).await.unwrap();
    assert_eq!(field(&nak, "MSA-1"), "AR");
    assert_eq!(field(&nak, "MSA-2"), "BIG-1");
    assert!(field(&nak, "ERR-8").contains("200-byte limit"));
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection closed after the NAK");
    assert_eq!(e.store.count(Status::Rejected).await.unwrap(), 1);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_get_the_original_ack() {
    let (e, _dir) = engine("dupes", "").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let first = exchange(&mut c, &adt("D-1")).await;
    let again = exchange(&mut c, &adt("D-1")).await;
    assert_eq!(first, again, "byte-identical ACK for the duplicate");
    let rows = e.store.find_by_control_id("D-1").await.unwrap();
    // The original may already have been through the (empty) route set: filtered.
    assert!(
        matches!(rows[0].status, Status::Received | Status::Filtered),
        "{:?}",
        rows[0].status
    );
    assert_eq!(rows[1].status, Status::Duplicate);
    assert_eq!(rows[1].duplicate_of, Some(rows[0].id));
    assert!(e
        .metrics
        .render()
        .contains("aorta_duplicates_detected_total{listener=\"test\"} 1"));
    e.stop().await.unwrap();

    let (e, _dir) = engine("dupes-off", "duplicates = { enabled = false }").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    exchange(&mut c, &adt("D-1")).await;
    exchange(&mut c, &adt("D-1")).await;
    common::settle(&e.store).await;
    assert_eq!(e.store.count(Status::Filtered).await.unwrap(), 2);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_are_never_acked_and_enhanced_mode() {
    let (e, _dir) = engine("enhanced", "").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    // An ACK sent to the listener gets no answer; the next message does.
    c.write_all(&aorta::mllp::codec::frame(
        b"MSH|^~\\&|A|B|C|D|||ACK^A01|X|P|2.5\rMSA|AA|Y\r",
    ))
    .await
    .unwrap();
    let ack = exchange(&mut c, &adt("AFTER-ACK")).await;
    assert_eq!(field(&ack, "MSA-2"), "AFTER-ACK");
    // Enhanced mode: MSH-15 AL gets a commit accept CA; NE gets nothing.
    let al = b"MSH|^~\\&|S|F|R|RF|20240101||ADT^A01|EN-1|P|2.5|||AL|NE\r";
    let ack = exchange(&mut c, al).await;
    assert_eq!(field(&ack, "MSA-1"), "CA");
    assert_eq!(field(&ack, "MSH-15"), "NE");
    let ne = b"MSH|^~\\&|S|F|R|RF|20240101||ADT^A01|EN-2|P|2.5|||NE|AL\r";
    c.write_all(&aorta::mllp::codec::frame(ne)).await.unwrap();
    let ack = exchange(&mut c, &adt("AFTER-NE")).await;
    assert_eq!(
        field(&ack, "MSA-2"),
        "AFTER-NE",
        "no answer was sent for EN-2"
    );
    assert_eq!(e.store.find_by_control_id("EN-2").await.unwrap().len(), 1);
    assert_eq!(
        e.store.count(Status::Rejected).await.unwrap(),
        1,
        "the ACK is kept as rejected"
    );
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_release_2_commit_bytes() {
    let (e, _dir) = engine("r2", "ack_style = \"commit-bytes\"").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    assert_eq!(exchange(&mut c, &adt("R2-1")).await, vec![0x06]);
    assert_eq!(exchange(&mut c, b"garbage").await, vec![0x15]);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_idle_timeout_and_connection_limit() {
    let (e, _dir) = engine("conns", "idle_timeout_secs = 1\nmax_connections = 1").await;
    let addr = e.listener_addr("test").unwrap();
    {
        // Abrupt disconnect in the middle of a frame.
        let mut c = connect(addr).await;
        c.write_all(b"\x0bMSH|^~\\&|half a mess").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut c = connect(addr).await;
    assert_eq!(field(&exchange(&mut c, &adt("L-1")).await, "MSA-1"), "AA");
    // A second connection is over the limit: closed at once.
    let mut second = connect(addr).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The idle connection is closed after a second.
    let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(e
        .metrics
        .render()
        .contains("aorta_connections_refused_total{listener=\"test\"} 1"));
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_endpoints() {
    let (e, _dir) = engine("admin", "").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    exchange(&mut c, &adt("M-1")).await;
    let admin = e.admin.unwrap();
    let get = |path: &'static str| common::http_get(admin, path, "");
    let m = get("/metrics").await;
    assert!(m.starts_with("HTTP/1.1 200"), "{m}");
    for want in [
        "aorta_messages_received_total{listener=\"test\"} 1",
        "aorta_acks_sent_total{code=\"AA\",listener=\"test\"} 1",
        "aorta_connections_open{listener=\"test\"} 1",
        "aorta_journal_batch_size_count",
        "aorta_journal_commit_seconds_bucket",
    ] {
        assert!(m.contains(want), "missing {want}");
    }
    assert!(get("/health/live").await.starts_with("HTTP/1.1 200"));
    assert!(get("/health/ready").await.starts_with("HTTP/1.1 200"));
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_corpus_gets_acks_or_naks() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
    if !dir.is_dir() {
        assert!(std::env::var_os("CI").is_none(), "shared corpus missing");
        return;
    }
    let mut files = Vec::new();
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hl7") {
                files.push(p);
            }
        }
    }
    let (e, _dir) = engine("corpus", "").await;
    let addr = e.listener_addr("test").unwrap();
    let mut c = connect(addr).await;
    let (mut answered, mut silent, mut sent) = (0, 0, 0);
    for f in &files {
        let raw = std::fs::read(f).unwrap();
        // Each file is one frame, exactly as a sender would put it on the wire (batches too).
        let payload: Vec<u8> = raw
            .iter()
            .copied()
            .filter(|&b| b != 0x0b && b != 0x1c)
            .collect();
        sent += 1;
        c.write_all(&aorta::mllp::codec::frame(&payload))
            .await
            .unwrap();
        let is_ack = aorta::hl7::Message::parse(&payload)
            .ok()
            .and_then(|m| m.message_code().map(|c| c == "ACK"))
            .unwrap_or(false);
        let no_ack_wanted = aorta::hl7::Message::parse(&payload).is_ok_and(|m| {
            !aorta::hl7::AckMode::of(&m).wants_accept_ack(aorta::hl7::Outcome::Accept)
        });
        if is_ack || no_ack_wanted {
            silent += 1;
            continue;
        }
        let answer = read_frame(&mut c)
            .await
            .unwrap_or_else(|| panic!("no answer for {}", f.display()));
        let code = field(&answer, "MSA-1");
        assert!(
            ["AA", "AR", "CA", "CR"].contains(&code.as_str()),
            "{}: {code}",
            f.display()
        );
        answered += 1;
    }
    // Everything sent is in the journal, one row per frame.
    common::settle(&e.store).await;
    let mut total = 0;
    for status in [
        Status::Received,
        Status::Rejected,
        Status::Duplicate,
        Status::Filtered,
        Status::Routed,
        Status::Errored,
    ] {
        total += e.store.count(status).await.unwrap();
    }
    assert_eq!(
        total as usize, sent,
        "{answered} answered, {silent} without answer"
    );
    assert!(sent >= 700);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_the_token_when_one_is_set() {
    std::env::set_var("AORTA_TEST_ADMIN_TOKEN_7F3", "s3cret-token");
    let dir = common::temp_dir("token");
    let file = dir.join("aorta.toml");
    std::fs::write(
        &file,
        format!(
            "[store]\npath = \"{}\"\n[admin]\nbind = \"127.0.0.1:0\"\ntoken = \"env:AORTA_TEST_ADMIN_TOKEN_7F3\"\n[routes]\ndir = \"{}\"\n",
            dir.join("j.db").display(),
            dir.join("routes").display()
        ),
    )
    .unwrap();
    let config = aorta::config::Config::load(&file, false).unwrap();
    let e = aorta::daemon::start(&config).await.unwrap();
    let admin = e.admin.unwrap();
    let get = |path: &'static str, auth: &'static str| common::http_get(admin, path, auth);
    assert!(get("/metrics", "").await.starts_with("HTTP/1.1 401"));
    assert!(get("/metrics", "Authorization: Bearer wrong-token!\r\n")
        .await
        .starts_with("HTTP/1.1 401"));
    assert!(get("/metrics", "Authorization: Bearer s3cret-token\r\n")
        .await
        .starts_with("HTTP/1.1 200"));
    // Probes stay open for orchestrators.
    assert!(get("/health/ready", "").await.starts_with("HTTP/1.1 200"));
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_policy_still_journals_in_order() {
    let (e, _dir) = engine("immediate", "ack = \"immediate\"").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    for i in 0..20 {
        let ack = exchange(&mut c, &adt(&format!("IM-{i:02}"))).await;
        assert_eq!(field(&ack, "MSA-1"), "AA");
    }
    // One more exchange: by the time it is answered, the previous entries are committed.
    exchange(&mut c, &adt("IM-last")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..20 {
        let rows = e
            .store
            .find_by_control_id(&format!("IM-{i:02}"))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "IM-{i:02}");
    }
    // Insertion order (rowid) follows the connection's order.
    let conn = rusqlite::Connection::open(_dir.join("journal.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT control_id FROM messages ORDER BY rowid")
        .unwrap();
    let order: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let mut expected: Vec<String> = (0..20).map(|i| format!("IM-{i:02}")).collect();
    expected.push("IM-last".into());
    assert_eq!(order, expected);
    e.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_failure_is_an_ae_not_an_aa() {
    let (e, _dir) = engine("journal-down", "").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    assert_eq!(field(&exchange(&mut c, &adt("UP-1")).await, "MSA-1"), "AA");
    // The journal stops (as on a full or failed disk): nothing may be acknowledged as accepted.
    e.store.close().await.unwrap();
    let nak = exchange(&mut c, &adt("DOWN-1")).await;
    assert_eq!(field(&nak, "MSA-1"), "AE");
    assert_eq!(field(&nak, "MSA-2"), "DOWN-1");
    assert_eq!(field(&nak, "ERR-3"), "207");
    assert!(e
        .metrics
        .render()
        .contains("aorta_naks_sent_total{listener=\"test\",reason=\"journal\"} 1"));
    e.stop().await.unwrap();
}
