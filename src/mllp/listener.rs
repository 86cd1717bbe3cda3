//! The MLLP listener: accepts connections, reads frames, journals each message, answers.
//!
//! One message at a time per connection, as MLLP requires: the next frame is read only after the
//! previous one was answered, so a slow journal slows the senders (backpressure) instead of
//! filling memory. With the default ACK policy the answer is written only after the journal
//! commit that holds the message. Malformed input is answered with a NAK (AR + ERR) and still
//! journaled as `rejected`; acknowledgements are journaled but never acknowledged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_util::codec::{Decoder, Encoder};

use super::codec::{CodecError, Framing, MllpCodec};
use crate::hl7::{
    build_ack, build_nak_for_unparseable, AckCode, AckError, AckMode, AckSpec, ErrorCode, Message,
    Outcome,
};
use crate::metrics::Metrics;
use crate::record::{control_id_for, hl7_timestamp, now_micros, Envelope, Format, Header};
use crate::store::{Appended, Dedupe, JournalEntry, Status, Store};
use crate::tls::TlsConfig;

/// When the ACK is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckPolicy {
    /// After the journal commit that holds the message (MLLP "commit" meaning). The default.
    #[default]
    AfterJournal,
    /// Before the journal commit. Faster, but a crash can lose messages that were acknowledged.
    Immediate,
    /// After the routes have run on the message: `AA`/`CA` when it was routed, `AE` when no route
    /// delivered it, a route failed, or routing did not finish within `route_timeout_secs`.
    AfterRoute,
}

/// How routing ended for a message, told to a listener waiting to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// Deliveries are queued.
    Delivered,
    /// No route delivers it.
    Filtered,
    /// A route failed.
    Errored,
}

/// The messages whose acknowledgement waits for routing (`ack = "after-route"`): the listener
/// registers before journaling, the route loop resolves after its commit.
#[derive(Clone, Default)]
pub struct RoutingWaits(
    Arc<std::sync::Mutex<std::collections::HashMap<uuid::Uuid, oneshot::Sender<Routed>>>>,
);

impl RoutingWaits {
    /// Starts waiting for message `id`.
    pub fn register(&self, id: uuid::Uuid) -> oneshot::Receiver<Routed> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.0.lock() {
            m.insert(id, tx);
        }
        rx
    }

    /// Stops waiting (the message was a duplicate, or the wait timed out).
    pub fn cancel(&self, id: &uuid::Uuid) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(id);
        }
    }

    /// Tells the waiter of `id`, if any, how routing ended.
    pub fn finish(&self, id: &uuid::Uuid, outcome: Routed) {
        let waiter = self.0.lock().ok().and_then(|mut m| m.remove(id));
        if let Some(tx) = waiter {
            let _ = tx.send(outcome);
        }
    }
}

/// What an acknowledgement looks like on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckStyle {
    /// An HL7 ACK message (MSA, ERR).
    #[default]
    Hl7,
    /// MLLP release 2 commit acknowledgement: a single 0x06 (ACK) or 0x15 (NAK) byte in a frame.
    CommitBytes,
}

/// Duplicate detection on MSH-3 + MSH-4 + MSH-10.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DuplicatesConfig {
    /// Whether to detect duplicates at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How far back an original counts, in seconds (default 24 h).
    #[serde(default = "day")]
    pub window_secs: u64,
}

impl Default for DuplicatesConfig {
    fn default() -> Self {
        DuplicatesConfig {
            enabled: true,
            window_secs: day(),
        }
    }
}

fn yes() -> bool {
    true
}
fn day() -> u64 {
    86_400
}
fn default_route_timeout() -> u64 {
    30
}
fn default_max_frame() -> usize {
    16 * 1024 * 1024
}
fn default_idle() -> u64 {
    600
}
fn default_keepalive() -> u64 {
    60
}
fn default_max_connections() -> usize {
    1024
}

/// Framing bytes, as numbers in the configuration.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FramingConfig {
    /// Start block (default 11 = 0x0B).
    #[serde(default = "sb")]
    pub start: u8,
    /// End block (default 28 = 0x1C).
    #[serde(default = "eb")]
    pub end: u8,
    /// Byte after the end block (default 13 = CR; 0 = none: the frame ends at the end block,
    /// for senders that leave the CR out).
    #[serde(default = "cr")]
    pub trailer: u8,
}

fn sb() -> u8 {
    0x0B
}
fn eb() -> u8 {
    0x1C
}
fn cr() -> u8 {
    0x0D
}

impl FramingConfig {
    /// The codec's framing (a trailer of 0: none).
    pub fn framing(&self) -> Framing {
        Framing {
            start: self.start,
            end: self.end,
            trailer: (self.trailer != 0).then_some(self.trailer),
        }
    }

    /// Why these bytes cannot frame messages, if they cannot.
    pub fn problem(&self) -> Option<&'static str> {
        let f = self;
        (f.start == f.end
            || f.start == f.trailer
            || f.end == f.trailer
            || f.start == 0
            || f.end == 0)
            .then_some("start, end and trailer bytes must differ, and start and end must not be 0")
    }
}

impl Default for FramingConfig {
    fn default() -> Self {
        FramingConfig {
            start: sb(),
            end: eb(),
            trailer: cr(),
        }
    }
}

/// Configuration of one MLLP listener (`[listeners.NAME]` with `kind = "mllp"`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MllpListenerConfig {
    /// Address to listen on, e.g. `0.0.0.0:2575`.
    pub bind: String,
    /// TLS; plain TCP when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// When to acknowledge: `after-journal` (default), `immediate` or `after-route`.
    #[serde(default)]
    pub ack: AckPolicy,
    /// With `ack = "after-route"`: how long to wait for routing before answering `AE`.
    #[serde(default = "default_route_timeout")]
    pub route_timeout_secs: u64,
    /// `hl7` ACK messages (default) or MLLP release 2 `commit-bytes`.
    #[serde(default)]
    pub ack_style: AckStyle,
    /// Largest accepted frame in bytes; a larger one is NAKed and the connection closed.
    #[serde(default = "default_max_frame")]
    pub max_frame_bytes: usize,
    /// Close a connection idle this long (seconds; 0 = never).
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// TCP keepalive interval in seconds (0 = off).
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u64,
    /// Most connections at once; more are accepted and closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Framing bytes.
    #[serde(default)]
    pub framing: FramingConfig,
    /// Duplicate detection.
    #[serde(default)]
    pub duplicates: DuplicatesConfig,
    /// What to do with an FHS/BHS batch sent as one frame.
    #[serde(default)]
    pub batches: BatchPolicy,
}

/// What a listener does with a batch (FHS/BHS … BTS/FTS) sent in one frame.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum BatchPolicy {
    /// Refuse it (`AR`, saying it is a batch): each message must come in its own frame.
    #[default]
    Reject,
    /// Journal each message of the batch, in order, as if it had come in its own frame, and
    /// answer with their acknowledgements, batch for batch.
    Split,
}

impl MllpListenerConfig {
    /// A plain listener on `bind` with every default (for tests and tools).
    pub fn on(bind: &str) -> MllpListenerConfig {
        MllpListenerConfig {
            bind: bind.to_string(),
            tls: None,
            ack: AckPolicy::default(),
            route_timeout_secs: default_route_timeout(),
            ack_style: AckStyle::default(),
            max_frame_bytes: default_max_frame(),
            idle_timeout_secs: default_idle(),
            keepalive_secs: default_keepalive(),
            max_connections: default_max_connections(),
            framing: FramingConfig::default(),
            duplicates: DuplicatesConfig::default(),
            batches: BatchPolicy::default(),
        }
    }

    /// Checks values that serde cannot; returns every problem as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        if self.bind.parse::<SocketAddr>().is_err() {
            errs.push((
                "bind".into(),
                format!("{:?} is not an address like 0.0.0.0:2575", self.bind),
            ));
        }
        if self.max_frame_bytes < 64 {
            errs.push(("max_frame_bytes".into(), "must be at least 64".into()));
        }
        if self.max_connections == 0 {
            errs.push(("max_connections".into(), "must be at least 1".into()));
        }
        if let Some(why) = self.framing.problem() {
            errs.push(("framing".into(), why.into()));
        }
        if let Some(tls) = &self.tls {
            if let Err(e) = tls.server_config() {
                errs.push(("tls".into(), e));
            }
        }
        errs
    }
}

/// True when a frame starts (after blank lines) with an FHS or BHS segment.
fn is_batch(frame: &[u8]) -> bool {
    let start = frame
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(frame.len());
    frame[start..].starts_with(b"FHS") || frame[start..].starts_with(b"BHS")
}

/// Field `n` (FHS-n/BHS-n, n ≥ 3) of a batch header segment, unescaped.
fn header_field(segment: &[u8], n: usize) -> String {
    let Ok((d, _)) = crate::hl7::Delimiters::from_header(segment, 0) else {
        return String::new();
    };
    let segment = segment
        .split(|b| *b == b'\r' || *b == b'\n')
        .next()
        .unwrap_or_default();
    segment
        .split(|b| *b == d.field)
        .nth(n - 1)
        .map(|v| String::from_utf8_lossy(&crate::hl7::escape::decode(v, &d)).into_owned())
        .unwrap_or_default()
}

/// A built listener, ready to serve.
pub struct MllpListener<S: Store> {
    name: Arc<str>,
    config: MllpListenerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    store: S,
    metrics: Metrics,
    /// This listener's metric series, looked up once instead of per message.
    counters: Counters,
    slots: Arc<Semaphore>,
    waits: RoutingWaits,
}

struct Counters {
    received: prometheus::IntCounter,
    bytes: prometheus::IntCounter,
    junk: prometheus::IntCounter,
    duplicates: prometheus::IntCounter,
    latency: prometheus::Histogram,
}

/// What to write back for one frame.
enum Reply {
    /// Bytes to frame and send.
    Send(Vec<u8>),
    /// Nothing (an ACK received, or MSH-15 says no accept acknowledgement).
    Nothing,
    /// Send the bytes (if any), then journal the entry (`ack = "immediate"`).
    ThenJournal(Option<Vec<u8>>, Box<JournalEntry>),
}

impl<S: Store + Clone> MllpListener<S> {
    /// Builds the listener (reads TLS files); the error says what is wrong.
    pub fn build(
        name: &str,
        config: MllpListenerConfig,
        store: S,
        metrics: Metrics,
    ) -> Result<Self, String> {
        let tls = match &config.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(t.server_config()?)),
            None => None,
        };
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let counters = Counters {
            received: metrics.messages_received.with_label_values(&[name]),
            bytes: metrics.bytes_received.with_label_values(&[name]),
            junk: metrics.junk_bytes.with_label_values(&[name]),
            duplicates: metrics.duplicates.with_label_values(&[name]),
            latency: metrics.ack_latency.with_label_values(&[name]),
        };
        Ok(MllpListener {
            counters,
            name: name.into(),
            config,
            tls,
            store,
            metrics,
            slots,
            waits: RoutingWaits::default(),
        })
    }

    /// Shares the route loop's waits (needed for `ack = "after-route"`).
    pub fn with_routing_waits(mut self, waits: RoutingWaits) -> Self {
        self.waits = waits;
        self
    }

    /// Binds the configured address (with a deep accept backlog: [`crate::net`]).
    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        crate::net::listen(&self.config.bind).await
    }

    /// Accepts connections until `shutdown` turns true, then waits for every connection to
    /// finish the message it is handling.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                            self.metrics.connections_refused.with_label_values(&[&self.name]).inc();
                            tracing::warn!(listener = %self.name, %peer, "connection limit reached; closing new connection");
                            drop(stream);
                            continue;
                        };
                        let me = self.clone();
                        let sd = shutdown.clone();
                        conns.spawn(async move {
                            me.connection(stream, peer, sd).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(listener = %self.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                _ = shutdown.changed() => break,
            }
        }
        drop(listener);
        while conns.join_next().await.is_some() {}
    }

    async fn connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        if self.config.keepalive_secs > 0 {
            let ka = socket2::TcpKeepalive::new()
                .with_time(Duration::from_secs(self.config.keepalive_secs));
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka);
        }
        let open = self
            .metrics
            .connections_open
            .with_label_values(&[&self.name]);
        self.metrics
            .connections_accepted
            .with_label_values(&[&self.name])
            .inc();
        open.inc();
        tracing::debug!(listener = %self.name, %peer, "connection opened");
        match &self.tls {
            Some(acceptor) => {
                match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => self.converse(tls, peer, shutdown).await,
                    Ok(Err(e)) => {
                        tracing::warn!(listener = %self.name, %peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::warn!(listener = %self.name, %peer, "TLS handshake timed out")
                    }
                }
            }
            None => self.converse(stream, peer, shutdown).await,
        }
        open.dec();
        tracing::debug!(listener = %self.name, %peer, "connection closed");
    }

    async fn converse<IO: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut io: IO,
        peer: SocketAddr,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut codec = MllpCodec::new(self.config.framing.framing(), self.config.max_frame_bytes);
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut out = BytesMut::with_capacity(1024);
        let idle = match self.config.idle_timeout_secs {
            0 => Duration::from_secs(u64::from(u32::MAX)),
            s => Duration::from_secs(s),
        };
        loop {
            loop {
                let decoded = codec.decode(&mut buf);
                let junk = codec.take_junk();
                if junk > 0 {
                    self.counters.junk.inc_by(junk);
                }
                match decoded {
                    Ok(Some(frame)) => {
                        let started = Instant::now();
                        let (answer, later) = match self.handle(frame).await {
                            Reply::Send(bytes) => (Some(bytes), None),
                            Reply::Nothing => (None, None),
                            Reply::ThenJournal(bytes, entry) => (bytes, Some(entry)),
                        };
                        if let Some(bytes) = answer {
                            out.clear();
                            let _ = codec.encode(&bytes[..], &mut out);
                            if io.write_all(&out).await.is_err() || io.flush().await.is_err() {
                                return;
                            }
                        }
                        if let Some(entry) = later {
                            if let Err(e) = self.store.append(*entry).await {
                                tracing::error!(listener = %self.name, error = %e, "journal append failed after an immediate ACK");
                            }
                        }
                        self.counters
                            .latency
                            .observe(started.elapsed().as_secs_f64());
                    }
                    Ok(None) => break,
                    Err(CodecError::TooLarge { partial, max }) => {
                        let reason = format!("MLLP frame larger than the {max}-byte limit");
                        tracing::warn!(listener = %self.name, %peer, max, "over-size frame; closing connection");
                        let reply = self
                            .reject_unparseable(partial, &reason, ErrorCode::SEGMENT_SEQUENCE)
                            .await;
                        if let Reply::Send(bytes) = reply {
                            out.clear();
                            let _ = codec.encode(&bytes[..], &mut out);
                            let _ = io.write_all(&out).await;
                            let _ = io.flush().await;
                        }
                        let _ = io.shutdown().await;
                        return;
                    }
                    Err(CodecError::Io(_)) => return,
                }
            }
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                read = tokio::time::timeout(idle, io.read_buf(&mut buf)) => match read {
                    Ok(Ok(0)) => {
                        if codec.in_frame() {
                            tracing::info!(listener = %self.name, %peer, "peer closed the connection in the middle of a frame");
                        }
                        return;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(listener = %self.name, %peer, error = %e, "read failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(listener = %self.name, %peer, "idle timeout; closing connection");
                        break;
                    }
                },
                _ = shutdown.changed() => break,
            }
        }
        let _ = io.shutdown().await;
    }

    fn spec(
        &self,
        code: AckCode,
        id: &uuid::Uuid,
        received_at: i64,
        errors: Vec<AckError>,
    ) -> AckSpec {
        AckSpec {
            code,
            control_id: control_id_for(id),
            timestamp: hl7_timestamp(received_at),
            text: None,
            errors,
        }
    }

    fn envelope(&self, id: uuid::Uuid, received_at: i64, raw: Vec<u8>, header: Header) -> Envelope {
        Envelope {
            id,
            received_at,
            source: self.name.to_string(),
            format: Format::Hl7v2,
            raw,
            header,
        }
    }

    fn commit_byte(&self, accepted: bool) -> Vec<u8> {
        vec![if accepted { 0x06 } else { 0x15 }]
    }

    /// Answers one frame: a message, or with `batches = "split"` a batch of them.
    async fn handle(&self, frame: Bytes) -> Reply {
        if self.config.batches == BatchPolicy::Split && is_batch(&frame) {
            return self.handle_batch(frame).await;
        }
        self.handle_message(frame, false).await
    }

    /// Journals each message of a batch in order (each as its own frame would be: duplicate
    /// checks, rejects, ACK policy), then answers with their acknowledgements, batch for batch.
    async fn handle_batch(&self, frame: Bytes) -> Reply {
        let split = match crate::hl7::batch::split(&frame) {
            Ok(b) if b.message_count() > 0 => Ok(b),
            Ok(_) => Err("the batch holds no messages".to_string()),
            Err(e) => Err(format!("the batch cannot be read: {e}")),
        };
        let batch = match split {
            Ok(b) => b,
            Err(why) => {
                self.counters.received.inc();
                self.counters.bytes.inc_by(frame.len() as u64);
                let err = AckError::new(ErrorCode::SEGMENT_SEQUENCE, &why);
                return self
                    .reject_parsed_error(frame.clone(), err, "batch", why)
                    .await;
            }
        };
        for problem in &batch.problems {
            tracing::warn!(listener = %self.name, %problem, "batch structure; its messages are taken one by one");
        }
        // One after the other: the journal keeps the batch's order (a patient's A01 before its
        // A08), which concurrent appends would not promise under backpressure.
        // The ACKs of each batch of the file, answered batch for batch.
        let mut acks: Vec<Vec<Vec<u8>>> = vec![Vec::new(); batch.batches.len()];
        let mut refused = false;
        for m in batch.messages() {
            let answer = match self.handle_message(frame.slice_ref(m.raw), true).await {
                Reply::Send(bytes) => Some(bytes),
                Reply::Nothing => None,
                // Not made in a batch (the message is journaled first); kept whole anyway.
                Reply::ThenJournal(answer, entry) => {
                    if let Err(e) = self.store.append(*entry).await {
                        tracing::error!(listener = %self.name, error = %e, "journal append failed in a batch");
                    }
                    answer
                }
            };
            if let Some(bytes) = answer {
                refused |= bytes == [0x15];
                if let Some(group) = acks.get_mut(m.batch) {
                    group.push(bytes);
                }
            }
        }
        if self.config.ack_style == AckStyle::CommitBytes {
            return Reply::Send(self.commit_byte(!refused));
        }
        // The answer mirrors what came: each header's sender becomes the receiver, BHS-12 names
        // the batch answered and FHS-12 the file.
        let swapped = |h: Option<&[u8]>, reference: Option<&[u8]>| {
            let field = |n: usize| h.map(|h| header_field(h, n)).unwrap_or_default();
            crate::hl7::batch::BatchHeader {
                sending_application: field(5),
                sending_facility: field(6),
                receiving_application: field(3),
                receiving_facility: field(4),
                timestamp: hl7_timestamp(now_micros()),
                control_id: control_id_for(&uuid::Uuid::now_v7()),
                reference_control_id: reference.map(|r| header_field(r, 11)).unwrap_or_default(),
                ..Default::default()
            }
        };
        let answers: Vec<(crate::hl7::batch::BatchHeader, Vec<&[u8]>)> = batch
            .batches
            .iter()
            .zip(&acks)
            .map(|(g, a)| {
                (
                    swapped(g.header.or(batch.file_header), g.header),
                    a.iter().map(|a| &a[..]).collect(),
                )
            })
            .collect();
        let built = match batch.file_header {
            Some(fhs) => {
                let file = crate::hl7::batch::BatchHeader {
                    file_reference_control_id: header_field(fhs, 11),
                    ..swapped(Some(fhs), None)
                };
                crate::hl7::batch::build_file(&file, &answers)
            }
            None => answers
                .iter()
                .map(|(header, a)| crate::hl7::batch::build(a, header))
                .collect::<Result<Vec<_>, _>>()
                .map(|parts| parts.concat()),
        };
        match built {
            Ok(bytes) => Reply::Send(bytes),
            Err(e) => {
                tracing::error!(listener = %self.name, error = %e, "could not build the batch acknowledgement");
                Reply::Nothing
            }
        }
    }

    /// Answers one message: journal, then ACK (or NAK). In a batch (`in_batch`) the message is
    /// journaled before any answer, whatever the ACK policy: the batch's answer comes last.
    async fn handle_message(&self, frame: Bytes, in_batch: bool) -> Reply {
        self.counters.received.inc();
        self.counters.bytes.inc_by(frame.len() as u64);
        let msg = match Message::parse(&frame) {
            Ok(m) => m,
            Err(e) => {
                let ack_error = AckError::from_error(&e);
                return self
                    .reject_parsed_error(frame.clone(), ack_error, e.kind(), e.to_string())
                    .await;
            }
        };
        let header = Header::of(&msg);
        let id = uuid::Uuid::now_v7();
        let received_at = now_micros();
        let mode = AckMode::of(&msg);

        if msg
            .message_code()
            .is_some_and(|c| c.eq_ignore_ascii_case("ACK"))
        {
            // Never acknowledge an acknowledgement; keep it for the operator.
            let entry = JournalEntry {
                envelope: self.envelope(id, received_at, frame.to_vec(), header),
                status: Status::Rejected,
                error: Some("an acknowledgement was sent to a listener; acknowledgements are not acknowledged".into()),
                ack: None,
                dedupe: None,
            };
            if let Err(e) = self.store.append(entry).await {
                tracing::error!(listener = %self.name, error = %e, "journal append failed");
            }
            return Reply::Nothing;
        }

        if let Err(e) = msg.charset() {
            let err = AckError::from_error(&e);
            let code = AckCode::for_outcome(&mode, Outcome::Reject);
            return self
                .reject(
                    &msg,
                    header,
                    frame.to_vec(),
                    id,
                    received_at,
                    code,
                    err,
                    e.to_string(),
                    mode,
                )
                .await;
        }

        let code = AckCode::for_outcome(&mode, Outcome::Accept);
        let ack = match build_ack(&msg, &self.spec(code, &id, received_at, vec![])) {
            Ok(a) => a.encode(),
            Err(e) => {
                tracing::error!(listener = %self.name, error = %e, "could not build an ACK");
                return Reply::Nothing;
            }
        };
        let control_id = header.control_id.clone().unwrap_or_default();
        let message_type = format!(
            "{}^{}",
            header.message_type.as_deref().unwrap_or(""),
            header.trigger_event.as_deref().unwrap_or("")
        );
        let dedupe = if self.config.duplicates.enabled {
            header.dedupe_key().map(|key| Dedupe {
                key,
                window_micros: i64::try_from(
                    self.config.duplicates.window_secs.saturating_mul(1_000_000),
                )
                .unwrap_or(i64::MAX),
            })
        } else {
            None
        };
        let entry = JournalEntry {
            envelope: self.envelope(id, received_at, frame.to_vec(), header),
            status: Status::Received,
            error: None,
            ack: Some(ack.clone()),
            dedupe,
        };
        let size = frame.len();
        drop(msg);

        if self.config.ack == AckPolicy::Immediate && !in_batch {
            // Answer first, journal right after on the same connection, so the journal keeps
            // the connection's order; not waiting for the commit is what "immediate" means.
            let answer = match self.accepted(code, ack, mode) {
                Reply::Send(bytes) => Some(bytes),
                _ => None,
            };
            return Reply::ThenJournal(answer, Box::new(entry));
        }

        let after_route = self.config.ack == AckPolicy::AfterRoute;
        let routed = after_route.then(|| self.waits.register(id));
        match self.store.append(entry).await {
            Ok(Appended::New) => {
                tracing::debug!(listener = %self.name, control_id = %control_id, message_type = %message_type, size, "message journaled");
                match routed {
                    Some(rx) => {
                        let wait = Duration::from_secs(self.config.route_timeout_secs.max(1));
                        let outcome = tokio::time::timeout(wait, rx).await;
                        if outcome.is_err() {
                            self.waits.cancel(&id);
                        }
                        match outcome {
                            Ok(Ok(Routed::Delivered)) => self.accepted(code, ack, mode),
                            Ok(Ok(Routed::Filtered)) => self.route_nak(&frame, id, received_at, mode, "no route accepted the message; it is kept as filtered"),
                            Ok(Ok(Routed::Errored)) => self.route_nak(&frame, id, received_at, mode, "a route failed on the message; it is kept as errored for an operator to fix and replay"),
                            _ => self.route_nak(&frame, id, received_at, mode, "routing did not finish in time; the message is journaled and will be routed"),
                        }
                    }
                    None => self.accepted(code, ack, mode),
                }
            }
            Ok(Appended::Duplicate {
                original_ack,
                original,
            }) => {
                self.waits.cancel(&id);
                self.counters.duplicates.inc();
                tracing::info!(listener = %self.name, control_id = %control_id, message_type = %message_type, "duplicate message; answering with the original ACK");
                if after_route {
                    let status = self.store.status(original).await.ok().flatten();
                    if let Some((Status::Filtered | Status::Errored, _)) = status {
                        return self.route_nak(
                            &frame,
                            id,
                            received_at,
                            mode,
                            "a copy of this message was received before and was not routed",
                        );
                    }
                }
                self.accepted(code, original_ack.unwrap_or(ack), mode)
            }
            Err(e) => {
                self.waits.cancel(&id);
                tracing::error!(listener = %self.name, control_id = %control_id, error = %e, "journal append failed; answering AE");
                let code = AckCode::for_outcome(&mode, Outcome::Error);
                self.metrics
                    .naks_sent
                    .with_label_values(&[&self.name, "journal"])
                    .inc();
                if self.config.ack_style == AckStyle::CommitBytes {
                    return Reply::Send(self.commit_byte(false));
                }
                let err = AckError::new(
                    ErrorCode::INTERNAL_ERROR,
                    "message could not be stored; send it again",
                );
                match Message::parse(&frame)
                    .and_then(|m| build_ack(&m, &self.spec(code, &id, received_at, vec![err])))
                {
                    Ok(nak) => Reply::Send(nak.encode()),
                    Err(_) => Reply::Nothing,
                }
            }
        }
    }

    /// The `AE`/`CE` of the after-route policy.
    fn route_nak(
        &self,
        frame: &[u8],
        id: uuid::Uuid,
        received_at: i64,
        mode: AckMode,
        why: &str,
    ) -> Reply {
        let code = AckCode::for_outcome(&mode, Outcome::Error);
        self.metrics
            .naks_sent
            .with_label_values(&[&self.name, "route"])
            .inc();
        let nak = Message::parse(frame).and_then(|m| {
            build_ack(
                &m,
                &self.spec(
                    code,
                    &id,
                    received_at,
                    vec![AckError::new(ErrorCode::INTERNAL_ERROR, why)],
                ),
            )
        });
        let bytes = nak.ok().map(|n| n.encode());
        self.answer(code, Outcome::Error, mode, bytes)
    }

    fn accepted(&self, code: AckCode, ack: Vec<u8>, mode: AckMode) -> Reply {
        self.answer(code, Outcome::Accept, mode, Some(ack))
    }

    /// The reply for an outcome: nothing when MSH-15 does not want it, else the ACK/NAK message
    /// or, in release 2 style, the commit byte.
    fn answer(
        &self,
        code: AckCode,
        outcome: Outcome,
        mode: AckMode,
        ack: Option<Vec<u8>>,
    ) -> Reply {
        if !mode.wants_accept_ack(outcome) {
            return Reply::Nothing;
        }
        self.metrics
            .acks_sent
            .with_label_values(&[&self.name, code.as_str()])
            .inc();
        if self.config.ack_style == AckStyle::CommitBytes {
            return Reply::Send(self.commit_byte(outcome == Outcome::Accept));
        }
        match ack {
            Some(a) => Reply::Send(a),
            None => Reply::Nothing,
        }
    }

    /// Journals a rejected message for the operator; the NAK goes out whether or not that worked.
    async fn keep_rejected(&self, entry: JournalEntry, why: &'static str) {
        if let Err(e) = self.store.append(entry).await {
            tracing::error!(listener = %self.name, error = %e, "journal append of a rejected message failed");
        }
        self.metrics
            .naks_sent
            .with_label_values(&[&self.name, why])
            .inc();
    }

    /// NAK for a message that parsed but cannot be accepted; journaled as rejected.
    #[allow(clippy::too_many_arguments)]
    async fn reject(
        &self,
        msg: &Message<'_>,
        header: Header,
        raw: Vec<u8>,
        id: uuid::Uuid,
        received_at: i64,
        code: AckCode,
        err: AckError,
        reason: String,
        mode: AckMode,
    ) -> Reply {
        let nak = build_ack(msg, &self.spec(code, &id, received_at, vec![err]))
            .map(|n| n.encode())
            .ok();
        let entry = JournalEntry {
            envelope: self.envelope(id, received_at, raw, header),
            status: Status::Rejected,
            error: Some(reason),
            ack: nak.clone(),
            dedupe: None,
        };
        self.keep_rejected(entry, "invalid").await;
        self.answer(code, Outcome::Reject, mode, nak)
    }

    /// `kind` is logged; `reason` (which may quote bytes of the message) is only journaled.
    async fn reject_parsed_error(
        &self,
        raw: Bytes,
        err: AckError,
        kind: &str,
        reason: String,
    ) -> Reply {
        let id = uuid::Uuid::now_v7();
        let received_at = now_micros();
        let nak =
            build_nak_for_unparseable(&raw, &self.spec(AckCode::AR, &id, received_at, vec![err]))
                .encode();
        let entry = JournalEntry {
            envelope: self.envelope(id, received_at, raw.to_vec(), Header::default()),
            status: Status::Rejected,
            error: Some(reason.clone()),
            ack: Some(nak.clone()),
            dedupe: None,
        };
        tracing::info!(listener = %self.name, size = raw.len(), problem = kind, "malformed message rejected");
        self.keep_rejected(entry, "malformed").await;
        self.answer(AckCode::AR, Outcome::Reject, AckMode::Original, Some(nak))
    }

    async fn reject_unparseable(&self, raw: Bytes, reason: &str, code: ErrorCode) -> Reply {
        self.reject_parsed_error(
            raw,
            AckError::new(code, reason),
            "over-size frame",
            reason.to_string(),
        )
        .await
    }
}
