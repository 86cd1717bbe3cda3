//! The MLLP load generator behind `aorta bench mllp`.
//!
//! N connections each send their share of M messages stop-and-wait, as MLLP requires: the next
//! message leaves only after the ACK of the previous one. Every message gets a fresh MSH-10 so
//! that duplicate detection does not short-cut the journal, and every ACK's MSA-2 is checked
//! against it. The report gives messages per second and ACK latency percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use crate::hl7::{Message, OwnedMessage, Path};
use crate::mllp::codec::{frame, Framing, MllpCodec};

/// What to send and how.
#[derive(Clone)]
pub struct LoadOptions {
    /// Listener address (loopback only for load tests).
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Messages in total.
    pub messages: usize,
    /// The messages to cycle through.
    pub payloads: Vec<Vec<u8>>,
    /// TLS client configuration and server name, when the listener uses TLS.
    pub tls: Option<(Arc<rustls::ClientConfig>, String)>,
    /// How long to wait for one ACK.
    pub ack_timeout: Duration,
    /// Messages per second offered over all connections (0: as fast as the ACKs come back).
    /// Each connection sends on its own schedule, staggered against the others; a connection
    /// behind schedule (its ACK came late) sends the next at once, without a catch-up burst.
    pub rate: f64,
    /// Patients to spread the messages over (PID-3-1 set to one of `patients` ids, message by
    /// message), so that a destination keeping order per patient has keys to spread; 0 keeps
    /// the messages' own.
    pub patients: usize,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Messages sent and answered.
    pub sent: usize,
    /// Answers with MSA-1 AA or CA.
    pub accepted: usize,
    /// Answers with another code.
    pub naks: usize,
    /// Answers whose MSA-2 did not match the sent MSH-10.
    pub mismatches: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Every ACK latency, sorted.
    pub latencies: Vec<Duration>,
}

impl LoadReport {
    /// Messages per second over the run.
    pub fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The latency at quantile `q` (0.0–1.0).
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[i.min(self.latencies.len() - 1)]
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "{} messages in {:.2} s: {:.0} msgs/s; ACK latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} accepted, {} NAK, {} MSA-2 mismatches",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.rate(),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.9)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0)),
            self.accepted,
            self.naks,
            self.mismatches
        )
    }
}

/// A built-in ADT^A01 for when no files are given.
pub const SAMPLE_ADT: &[u8] = b"MSH|^~\\&|AORTA-BENCH|BENCH|RECEIVER|HOSP|20240101120000||ADT^A01^ADT_A01|0|P|2.5.1\r\
EVN|A01|20240101120000\r\
PID|1||100001^^^HOSP^MR||DOE^JANE^Q||19800101|F|||1 MAIN ST^^SPRINGFIELD^IL^62701||(217)555-0100\r\
PV1|1|I|WARD1^101^A|||||1234^WELBY^MARCUS|||MED||||1|||1234^WELBY^MARCUS|IN||||||||||||||||||||||||||20240101120000\r";

/// Runs the load and gathers the report.
pub async fn run(options: LoadOptions) -> Result<LoadReport> {
    if options.payloads.is_empty() {
        return Err(anyhow!("no messages to send"));
    }
    let templates: Arc<Vec<OwnedMessage>> = Arc::new(
        options
            .payloads
            .iter()
            .map(|p| Message::parse(p).map(|m| m.to_owned_message()))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow!("a message to send does not parse: {e}"))?,
    );
    let run_id = format!("{:08X}", crate::record::now_micros() as u64 & 0xFFFF_FFFF);
    let connections = options.connections.max(1);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let share =
            options.messages / connections + usize::from(c < options.messages % connections);
        // Connection c sends at started + offset + i × period: together, `rate` a second.
        let pace = (options.rate > 0.0).then(|| {
            let secs = |x: f64| Duration::try_from_secs_f64(x).unwrap_or(Duration::MAX);
            let period = secs(connections as f64 / options.rate);
            let offset = secs(c as f64 / options.rate);
            (started.checked_add(offset).unwrap_or(started), period)
        });
        let opts = options.clone();
        let templates = templates.clone();
        let run_id = run_id.clone();
        tasks.spawn(async move {
            let stream = TcpStream::connect(opts.addr)
                .await
                .with_context(|| format!("connecting to {}", opts.addr))?;
            stream.set_nodelay(true)?;
            match &opts.tls {
                Some((config, name)) => {
                    let name = rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|e| anyhow!("TLS server name: {e}"))?;
                    let tls = tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, stream)
                        .await
                        .context("TLS handshake")?;
                    connection(tls, c, share, &templates, &run_id, &opts, pace).await
                }
                None => connection(stream, c, share, &templates, &run_id, &opts, pace).await,
            }
        });
    }
    let mut report = LoadReport::default();
    while let Some(r) = tasks.join_next().await {
        let part = r.map_err(|e| anyhow!("connection task failed: {e}"))??;
        report.sent += part.sent;
        report.accepted += part.accepted;
        report.naks += part.naks;
        report.mismatches += part.mismatches;
        report.latencies.extend(part.latencies);
    }
    report.elapsed = started.elapsed();
    report.latencies.sort_unstable();
    Ok(report)
}

async fn connection<IO: AsyncRead + AsyncWrite + Unpin>(
    mut io: IO,
    conn: usize,
    count: usize,
    templates: &[OwnedMessage],
    run_id: &str,
    opts: &LoadOptions,
    pace: Option<(Instant, Duration)>,
) -> Result<LoadReport> {
    let ack_timeout = opts.ack_timeout;
    let pid3 = Path::new(*b"PID", 3).with_component(1);
    let mut report = LoadReport::default();
    let mut codec = MllpCodec::new(Framing::default(), 16 * 1024 * 1024);
    let mut buf = BytesMut::with_capacity(4096);
    let msh10 = Path::new(*b"MSH", 10);
    let msa1 = Path::new(*b"MSA", 1);
    let msa2 = Path::new(*b"MSA", 2);
    for i in 0..count {
        let mut msg = templates[i % templates.len()].clone();
        let control_id = format!("{run_id}{conn:04X}{i:07X}");
        msg.set(&msh10, &control_id).map_err(|e| anyhow!("{e}"))?;
        if opts.patients > 0 && msg.find_segment(b"PID", 0).is_some() {
            // Consecutive messages of a connection go to different patients.
            let patient = (i.wrapping_mul(7919).wrapping_add(conn)) % opts.patients;
            msg.set(&pid3, &format!("LG{patient:07}"))
                .map_err(|e| anyhow!("{e}"))?;
        }
        let bytes = frame(&msg.encode());
        if let Some((first, period)) = pace {
            let due = period.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            if let Some(at) = first.checked_add(due) {
                tokio::time::sleep_until(at.into()).await;
            }
        }
        let sent_at = Instant::now();
        io.write_all(&bytes).await?;
        io.flush().await?;
        let ack = loop {
            if let Some(f) = codec.decode(&mut buf).map_err(|e| anyhow!("{e}"))? {
                break f;
            }
            let n = tokio::time::timeout(ack_timeout, io.read_buf(&mut buf))
                .await
                .map_err(|_| anyhow!("no ACK within {:?} for {control_id}", ack_timeout))??;
            if n == 0 {
                return Err(anyhow!(
                    "connection closed while waiting for the ACK of {control_id}"
                ));
            }
        };
        report.latencies.push(sent_at.elapsed());
        report.sent += 1;
        match Message::parse(&ack) {
            Ok(a) => {
                if a.get(&msa2).as_deref() != Some(control_id.as_str()) {
                    report.mismatches += 1;
                }
                match a.get(&msa1).as_deref() {
                    Some("AA") | Some("CA") => report.accepted += 1,
                    _ => report.naks += 1,
                }
            }
            Err(_) => report.naks += 1,
        }
    }
    let _ = io.shutdown().await;
    Ok(report)
}

/// The disk's own rate of small durable appends in `dir`: 2 KiB write + fdatasync, for `secs`.
pub fn fsync_rate(dir: &std::path::Path, secs: f64) -> Result<f64> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".aorta-fsync-probe-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let block = [b'x'; 2048];
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed().as_secs_f64() < secs {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(path);
    Ok(rate)
}

/// The broker's own rate for what the RabbitMQ destination does, without Aorta: persistent
/// messages to a durable queue through a topic exchange, with publisher confirms, at most
/// `outstanding` unconfirmed at a time. Declares the exchange `aorta.bench` and the queue
/// `aorta.bench.raw` (bound with `raw.#`), and deletes the queue after unless `keep`.
/// Each publish's write is awaited before the next, as lapin's examples do, unless
/// `queue_writes`: then up to 500 publishes are queued with lapin's I/O thread first and their
/// writes awaited after, as the destination publishes a batch. With `like`, that HL7 v2 message
/// is the payload, published with the properties the destination gives it (message id,
/// content type, headers), instead of `size` bytes with only `delivery_mode`.
pub async fn amqp_publish_rate(
    url: &str,
    messages: usize,
    outstanding: usize,
    size: usize,
    keep: bool,
    queue_writes: bool,
    like: Option<Vec<u8>>,
) -> Result<f64> {
    use lapin::options::*;
    use lapin::types::FieldTable;
    use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
    let props = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    let conn = Connection::connect(url, props).await?;
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.exchange_declare(
        "aorta.bench",
        ExchangeKind::Topic,
        durable,
        FieldTable::default(),
    )
    .await?;
    let queue = "aorta.bench.raw".to_string();
    let q = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(queue.as_str(), q, FieldTable::default())
        .await?;
    ch.queue_bind(
        queue.as_str(),
        "aorta.bench",
        "raw.#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    let (payload, properties) = match like {
        Some(message) => {
            let id = uuid::Uuid::now_v7();
            let key = format!("{id}:q");
            let p = crate::destination::rabbitmq::hl7_properties(id, &key, &message);
            (message, p)
        }
        None => (
            vec![b'x'; size],
            BasicProperties::default().with_delivery_mode(2),
        ),
    };
    let started = std::time::Instant::now();
    let mut pending = std::collections::VecDeque::new();
    let mut sent = 0;
    while sent < messages {
        let n = if queue_writes {
            (messages - sent).min(500)
        } else {
            1
        };
        let mut writes = Vec::with_capacity(n);
        for _ in 0..n {
            while pending.len() + writes.len() >= outstanding.max(1) {
                match pending.pop_front() {
                    Some(c) => c.await?,
                    None => break,
                };
            }
            let mut publish = Box::pin(ch.basic_publish(
                "aorta.bench",
                "raw.bench",
                BasicPublishOptions::default(),
                &payload,
                properties.clone(),
            ));
            // One poll queues the frames; a publish can be written (ready) already.
            let polled = std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(publish.as_mut(), cx))
            })
            .await;
            writes.push((publish, polled));
        }
        for (publish, polled) in writes {
            let confirm = match polled {
                std::task::Poll::Ready(confirm) => confirm?,
                std::task::Poll::Pending => publish.await?,
            };
            pending.push_back(confirm);
        }
        sent += n;
    }
    for c in pending {
        c.await?;
    }
    let rate = messages as f64 / started.elapsed().as_secs_f64();
    if keep {
        ch.queue_purge(queue.as_str(), QueuePurgeOptions::default())
            .await?;
    } else {
        ch.queue_delete(queue.as_str(), QueueDeleteOptions::default())
            .await?;
    }
    let _ = conn.close(0, "done").await;
    Ok(rate)
}

/// A receiver for benchmarks: answers every request on `bind` with 200 and counts them
/// (printed every second while they arrive); HTTP/1.1, or HTTP/2 without TLS (`http2`); each
/// answer after `delay` (a receiver doing work per message).
pub async fn http_sink(bind: &str, http2: bool, delay: std::time::Duration) -> Result<()> {
    use std::sync::atomic::{AtomicU64, Ordering};
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let c = count.clone();
    let app = axum::Router::new().fallback(move || {
        let c = c.clone();
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            c.fetch_add(1, Ordering::Relaxed);
            "ok"
        }
    });
    let socket = tokio::net::TcpListener::bind(bind).await?;
    println!("sink: listening on {}", socket.local_addr()?);
    tokio::spawn(async move {
        let mut last = 0;
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let now = count.load(Ordering::Relaxed);
            if now != last {
                println!("sink: {now} requests ({} in the last second)", now - last);
                last = now;
            }
        }
    });
    if !http2 {
        axum::serve(socket, app).await?;
        return Ok(());
    }
    loop {
        let (stream, _) = socket.accept().await?;
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::ack::{build_ack, AckCode, AckSpec};

    /// A receiver answering every frame with AA, so that the load generator's own behaviour
    /// is tested over a real socket. It keeps each message's PID-3-1.
    async fn acker() -> (SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let patients: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let seen = patients.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut codec = MllpCodec::new(Framing::default(), 1 << 20);
                    let mut buf = BytesMut::new();
                    loop {
                        while let Ok(Some(f)) = codec.decode(&mut buf) {
                            let m = Message::parse(&f).unwrap();
                            let pid = m.get(&Path::parse("PID-3-1").unwrap()).unwrap_or_default();
                            seen.lock().unwrap().push(pid.to_string());
                            let spec = AckSpec {
                                code: AckCode::AA,
                                control_id: "A1".into(),
                                timestamp: "20260101000000".into(),
                                text: None,
                                errors: Vec::new(),
                            };
                            let ack = build_ack(&m, &spec).unwrap();
                            s.write_all(&frame(&ack.encode())).await.unwrap();
                        }
                        match s.read_buf(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                    }
                });
            }
        });
        (addr, patients)
    }

    fn options(addr: SocketAddr, messages: usize, rate: f64) -> LoadOptions {
        LoadOptions {
            addr,
            connections: 4,
            messages,
            payloads: vec![SAMPLE_ADT.to_vec()],
            tls: None,
            ack_timeout: Duration::from_secs(10),
            rate,
            patients: 0,
        }
    }

    #[tokio::test]
    async fn every_message_is_answered_and_checked() {
        let (addr, patients) = acker().await;
        let r = run(options(addr, 50, 0.0)).await.unwrap();
        assert_eq!((r.sent, r.accepted, r.naks, r.mismatches), (50, 50, 0, 0));
        assert_eq!(r.latencies.len(), 50);
        // The messages' own patient, unchanged.
        let p = patients.lock().unwrap();
        assert!(p.len() == 50 && p.iter().all(|id| id == "100001"), "{p:?}");
    }

    #[tokio::test]
    async fn messages_can_be_spread_over_patients() {
        let (addr, patients) = acker().await;
        let r = run(LoadOptions {
            patients: 10,
            ..options(addr, 200, 0.0)
        })
        .await
        .unwrap();
        assert_eq!(r.accepted, 200);
        let p = patients.lock().unwrap();
        let distinct: std::collections::BTreeSet<&String> = p.iter().collect();
        assert_eq!(distinct.len(), 10, "{distinct:?}");
        assert!(distinct.iter().all(|id| id.starts_with("LG")));
    }

    #[tokio::test]
    async fn a_paced_run_keeps_to_its_schedule() {
        let (addr, _) = acker().await;
        // 40 messages at 200/s: the last is due 39/200 s after the start, never sooner.
        let r = run(options(addr, 40, 200.0)).await.unwrap();
        assert_eq!((r.sent, r.accepted), (40, 40));
        assert!(r.elapsed >= Duration::from_millis(195), "{:?}", r.elapsed);
    }
}
