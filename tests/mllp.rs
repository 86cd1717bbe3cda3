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

/// A file of one batch: FHS/BHS, the messages, BTS/FTS.
fn batch_of(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut b = b"FHS|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||||FILE-7\rBHS|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||||BATCH-7\r".to_vec();
    for m in messages {
        b.extend_from_slice(m);
    }
    b.extend_from_slice(format!("BTS|{}\rFTS|1\r", messages.len()).as_bytes());
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_one_frame() {
    // An unknown MSH-18 character set: refused with AR and an ERR segment.
    let bad =
        b"MSH|^~\\&|SEND|FAC|RECV|RFAC|20240101120000||ADT^A01|B-BAD|P|2.5.1||||||KLINGON\rPID|1\r"
            .to_vec();
    let batch = batch_of(&[adt("B-1"), bad.clone(), adt("B-2"), adt("B-1")]);

    // Refused by default, with the reason; kept as rejected.
    let (e, _dir) = engine("batch-reject", "").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let nak = exchange(&mut c, &batch).await;
    assert_eq!(field(&nak, "MSA-1"), "AR");
    assert!(
        field(&nak, "ERR-8").contains("an FHS/BHS batch"),
        "{}",
        String::from_utf8_lossy(&nak)
    );
    assert!(e.store.find_by_control_id("B-1").await.unwrap().is_empty());
    e.stop().await.unwrap();

    // Split: each message journaled in order as if framed alone; one batch of ACKs back.
    let (e, _dir) = engine("batch-split", "batches = \"split\"").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let answer = exchange(&mut c, &batch).await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    let segments: Vec<&str> = text.split('\r').filter(|s| !s.is_empty()).collect();
    let ids: Vec<&str> = segments.iter().map(|s| &s[..3]).collect();
    assert_eq!(
        ids,
        [
            "FHS", "BHS", "MSH", "MSA", "MSH", "MSA", "ERR", "MSH", "MSA", "MSH", "MSA", "BTS",
            "FTS"
        ],
        "{text}"
    );
    // The answer's sender is the batch's receiver; FHS-12 and BHS-12 name what it answers.
    let fhs: Vec<&str> = segments[0].split('|').collect();
    assert_eq!(
        (fhs[2], fhs[3], fhs[4], fhs[5]),
        ("RECV", "RFAC", "SEND", "FAC")
    );
    assert_eq!(fhs[11], "FILE-7");
    assert_eq!(segments[1].split('|').nth(11), Some("BATCH-7"));
    assert_eq!(segments[11], "BTS|4");
    let msa: Vec<(&str, &str)> = segments
        .iter()
        .filter(|s| s.starts_with("MSA"))
        .map(|s| {
            let f: Vec<&str> = s.split('|').collect();
            (f[1], f[2])
        })
        .collect();
    assert_eq!(
        msa,
        [("AA", "B-1"), ("AR", "B-BAD"), ("AA", "B-2"), ("AA", "B-1")]
    );
    // The duplicate's ACK is the original's, byte for byte.
    let acks: Vec<&str> = text.split("MSH|").skip(1).collect();
    assert_eq!(
        acks[0].split("BTS").next().unwrap().trim_end_matches('\r'),
        acks[3].split("BTS").next().unwrap().trim_end_matches('\r')
    );
    let b1 = e.store.find_by_control_id("B-1").await.unwrap();
    assert_eq!(b1.len(), 2);
    assert_eq!(
        b1[0].raw,
        adt("B-1"),
        "each message journaled with its own bytes"
    );
    assert!(matches!(b1[0].status, Status::Received | Status::Filtered));
    assert_eq!(b1[1].status, Status::Duplicate);
    let bad_stored = e.store.find_by_control_id("B-BAD").await.unwrap();
    assert_eq!(bad_stored[0].status, Status::Rejected);
    let b2 = e.store.find_by_control_id("B-2").await.unwrap();
    assert!(
        b1[0].id < bad_stored[0].id && bad_stored[0].id < b2[0].id,
        "batch order kept"
    );
    // A file of two batches is answered batch for batch, each BHS-12 naming its batch.
    let mut file = b"FHS|^~\\&|SEND|FAC|RECV|RFAC|20240101||||FILE-8\r".to_vec();
    for (b, ids) in [("B-ONE", ["M-1", "M-2"]), ("B-TWO", ["M-3", "M-4"])] {
        file.extend(format!("BHS|^~\\&|SEND|FAC|RECV|RFAC|20240101||||{b}\r").as_bytes());
        for id in ids {
            file.extend(adt(id));
        }
        file.extend(b"BTS|2\r");
    }
    file.extend(b"FTS|2\r");
    let answer = String::from_utf8(exchange(&mut c, &file).await).unwrap();
    let outline: Vec<String> = answer
        .split('\r')
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let f: Vec<&str> = s.split('|').collect();
            match f[0] {
                "FHS" | "BHS" => Some(format!("{} {}", f[0], f.get(11).unwrap_or(&""))),
                "MSA" => Some(format!("MSA {}", f[2])),
                "BTS" | "FTS" => Some(s.to_string()),
                _ => None,
            }
        })
        .collect();
    assert_eq!(
        outline,
        [
            "FHS FILE-8",
            "BHS B-ONE",
            "MSA M-1",
            "MSA M-2",
            "BTS|2",
            "BHS B-TWO",
            "MSA M-3",
            "MSA M-4",
            "BTS|2",
            "FTS|2"
        ],
        "{answer}"
    );
    e.stop().await.unwrap();

    // Release 2 style: one commit byte for the batch, a NAK when any message was refused.
    let (e, _dir) = engine(
        "batch-r2",
        "batches = \"split\"\nack_style = \"commit-bytes\"",
    )
    .await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    assert_eq!(
        exchange(&mut c, &batch_of(&[adt("R-1"), adt("R-2")])).await,
        vec![0x06]
    );
    assert_eq!(
        exchange(&mut c, &batch_of(&[adt("R-3"), bad])).await,
        vec![0x15]
    );
    assert_eq!(e.store.find_by_control_id("R-3").await.unwrap().len(), 1);
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
    let total = journaled(&e.store).await;
    assert_eq!(total, sent, "{answered} answered, {silent} without answer");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corpus_batches_split() {
    // The real batch files of the shared corpus (python-hl7's samples: FHS/BHS files, some with
    // wrong counts or missing trailers), each framed whole to a splitting listener: every one is
    // answered with a batch of ACKs, one per message that wants one, and every message is
    // journaled.
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/testdata/pypi-hl7-0.4.5/extracted_messages");
    if !dir.is_dir() {
        assert!(std::env::var_os("CI").is_none(), "shared corpus missing");
        return;
    }
    let (e, _dir) = engine("corpus-batches", "batches = \"split\"").await;
    let mut c = connect(e.listener_addr("test").unwrap()).await;
    let (mut batches, mut messages) = (0, 0);
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    for f in names {
        let raw = std::fs::read(&f).unwrap();
        let text = String::from_utf8_lossy(&raw);
        if !(text.starts_with("FHS") || text.starts_with("BHS")) {
            continue;
        }
        let split = aorta::hl7::batch::split(&raw).unwrap();
        let answer = exchange(&mut c, &raw).await;
        batches += 1;
        if split.message_count() == 0 {
            // Headers and segments but no MSH: refused whole, kept as rejected.
            assert_eq!(field(&answer, "MSA-1"), "AR", "{}", f.display());
            messages += 1;
            continue;
        }
        let answer = String::from_utf8_lossy(&answer).into_owned();
        assert!(
            answer.starts_with("FHS") || answer.starts_with("BHS"),
            "{}: {answer}",
            f.display()
        );
        // MSH-15 `NE` (never acknowledge) leaves a message out of the answer, as on its own.
        let wanted = split
            .messages()
            .filter(|m| {
                aorta::hl7::Message::parse(m.raw).is_ok_and(|m| {
                    aorta::hl7::AckMode::of(&m).wants_accept_ack(aorta::hl7::Outcome::Accept)
                })
            })
            .count();
        let acks = answer.matches("\rMSA|").count();
        assert_eq!(acks, wanted, "{}: {answer}", f.display());
        assert!(answer.contains(&format!("\rBTS|{acks}\r")), "{answer}");
        messages += split.message_count();
    }
    assert!(batches >= 9, "{batches}");
    assert_eq!(journaled(&e.store).await, messages);
    e.stop().await.unwrap();
}

/// Rows in the journal once routing has settled, whatever their status.
async fn journaled(store: &aorta::store::SqliteStore) -> usize {
    common::settle(store).await;
    let mut total = 0;
    for status in [
        Status::Received,
        Status::Rejected,
        Status::Duplicate,
        Status::Filtered,
        Status::Routed,
        Status::Errored,
    ] {
        total += store.count(status).await.unwrap();
    }
    usize::try_from(total).unwrap()
}
