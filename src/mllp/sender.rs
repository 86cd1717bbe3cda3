//! The MLLP client side: one persistent connection, send a message, wait for its ACK.
//!
//! The connection is opened on first use and kept; any error closes it, and the next send
//! opens a new one (the delivery worker's backoff paces reconnects). Before each send, bytes
//! already waiting on the socket — a late ACK for an earlier message that timed out — are read
//! and thrown away, and an answer is taken only when its MSA-2 names the control id just sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::Decoder;

use super::codec::{Framing, MllpCodec};
use crate::hl7::{Message, Path};

/// A connection that may or may not use TLS.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// What came back for a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// An HL7 acknowledgement: MSA-1 and the error text (ERR-8, else MSA-3), if any.
    Ack {
        /// MSA-1 (`AA`, `AE`, `AR`, `CA`, `CE`, `CR`).
        code: String,
        /// Why, when the receiver said.
        text: Option<String>,
    },
    /// MLLP release 2 commit acknowledgement: 0x06 (true) or 0x15 (false).
    Commit(bool),
}

/// Why no answer came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Could not connect (or the TLS handshake failed).
    Connect(String),
    /// The connection broke while sending or waiting.
    Connection(String),
    /// No answer for this message within the timeout.
    Timeout,
    /// The message to send has no MSH-10 to match an answer with.
    NoControlId,
}

/// A client for one MLLP receiver.
pub struct MllpSender {
    address: String,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    connect_timeout: Duration,
    ack_timeout: Duration,
    framing: Framing,
    conn: tokio::sync::Mutex<Option<Connection>>,
    opened: std::sync::atomic::AtomicU64,
}

/// An open connection with its read buffer and frame decoder.
type Connection = (Box<dyn Stream>, BytesMut, MllpCodec);

impl std::fmt::Debug for MllpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpSender")
            .field("address", &self.address)
            .finish()
    }
}

/// Largest answer accepted (ACKs are small; a huge one is a broken peer).
const MAX_ANSWER: usize = 1 << 20;

impl MllpSender {
    /// A sender for `address` (`host:port`); with TLS, `server_name` is checked against the
    /// receiver's certificate.
    pub fn new(
        address: &str,
        tls: Option<(Arc<rustls::ClientConfig>, String)>,
        connect_timeout: Duration,
        ack_timeout: Duration,
        framing: Framing,
    ) -> Result<MllpSender, String> {
        let tls = match tls {
            Some((config, name)) => {
                let server = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|_| format!("{name:?} is not a valid TLS server name"))?;
                Some((tokio_rustls::TlsConnector::from(config), server))
            }
            None => None,
        };
        Ok(MllpSender {
            address: address.to_string(),
            tls,
            connect_timeout,
            ack_timeout,
            framing,
            conn: tokio::sync::Mutex::new(None),
            opened: std::sync::atomic::AtomicU64::new(0),
        })
    }

    async fn connect(&self) -> Result<Box<dyn Stream>, SendError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(&self.address))
            .await
            .map_err(|_| {
                SendError::Connect(format!(
                    "no connection to {} within the timeout",
                    self.address
                ))
            })?
            .map_err(|e| SendError::Connect(format!("{}: {e}", self.address)))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, name)) => {
                let s = crate::net::tls_handshake(connector, name, tcp, self.connect_timeout)
                    .await
                    .map_err(SendError::Connect)?;
                Ok(Box::new(s))
            }
        }
    }

    /// Connections opened so far (the first, and each after a broken one).
    pub fn connections_opened(&self) -> u64 {
        self.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Sends one message and returns the answer that names its control id.
    pub async fn send(&self, message: &[u8]) -> Result<Answer, SendError> {
        let control_id = Message::parse(message)
            .ok()
            .and_then(|m| m.control_id().map(|c| c.into_owned()))
            .filter(|c| !c.is_empty())
            .ok_or(SendError::NoControlId)?;
        let mut guard = self.conn.lock().await;
        if guard.is_none() {
            let s = self.connect().await?;
            self.opened
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *guard = Some((s, BytesMut::new(), MllpCodec::new(self.framing, MAX_ANSWER)));
        }
        let result = match guard.as_mut() {
            Some((stream, buf, codec)) => {
                exchange(
                    stream,
                    buf,
                    codec,
                    self.framing,
                    message,
                    &control_id,
                    self.ack_timeout,
                )
                .await
            }
            None => Err(SendError::Connection("no connection".into())),
        };
        if result.is_err() {
            // Whatever state the connection is in, the next message gets a fresh one.
            *guard = None;
        }
        result
    }
}

async fn exchange(
    stream: &mut Box<dyn Stream>,
    buf: &mut BytesMut,
    codec: &mut MllpCodec,
    framing: Framing,
    message: &[u8],
    control_id: &str,
    ack_timeout: Duration,
) -> Result<Answer, SendError> {
    // Stale answers (for messages that timed out earlier) are read and dropped.
    let mut scratch = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::ZERO, stream.read(&mut scratch)).await {
            Ok(Ok(0)) => {
                return Err(SendError::Connection(
                    "the receiver closed the connection".into(),
                ))
            }
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => return Err(SendError::Connection(e.to_string())),
            Err(_) => break,
        }
    }
    buf.clear();
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(framing.start);
    out.extend_from_slice(message);
    out.push(framing.end);
    out.extend(framing.trailer);
    stream
        .write_all(&out)
        .await
        .map_err(|e| SendError::Connection(e.to_string()))?;
    stream
        .flush()
        .await
        .map_err(|e| SendError::Connection(e.to_string()))?;
    let deadline = tokio::time::Instant::now() + ack_timeout;
    loop {
        while let Some(frame) = codec
            .decode(buf)
            .map_err(|e| SendError::Connection(format!("bad answer: {e}")))?
        {
            if let Some(answer) = answer_for(&frame, control_id) {
                return Ok(answer);
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read_buf(buf))
            .await
            .map_err(|_| SendError::Timeout)?
            .map_err(|e| SendError::Connection(e.to_string()))?;
        if n == 0 {
            return Err(SendError::Connection(
                "the receiver closed the connection before answering".into(),
            ));
        }
    }
}

/// The answer in a frame if it is for `control_id` (commit bytes always are: release 2 has
/// one message in flight).
fn answer_for(frame: &[u8], control_id: &str) -> Option<Answer> {
    match frame {
        [0x06] => return Some(Answer::Commit(true)),
        [0x15] => return Some(Answer::Commit(false)),
        _ => {}
    }
    let m = Message::parse(frame).ok()?;
    let get = |p: &str| {
        Path::parse(p)
            .ok()
            .and_then(|p| m.get(&p).map(|v| v.into_owned()))
            .filter(|v| !v.is_empty())
    };
    if get("MSA-2")? != control_id {
        return None;
    }
    Some(Answer::Ack {
        code: get("MSA-1").unwrap_or_default().to_ascii_uppercase(),
        text: get("ERR-8").or_else(|| get("MSA-3")),
    })
}
