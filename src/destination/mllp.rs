//! The MLLP destination: HL7 v2 to another interface engine or system, waiting for its ACK.
//!
//! ```toml
//! [destinations.lis]
//! kind = "mllp"
//! address = "lis.example.org:2575"
//! ack_timeout_secs = 30
//! connect_timeout_secs = 10
//! application_error = "retry"     # what AE/CE means: retry (default) or reject
//! tls = { ca = "/etc/aorta/tls/lis-ca.pem", server_name = "lis.example.org" }   # optional
//! framing = { start = 11, end = 28, trailer = 13 }   # 0x0B … 0x1C 0x0D; trailer = 0: none
//! ```
//!
//! One persistent connection ([`MllpSender`]); AA/CA (or a 0x06 commit byte) → delivered;
//! AE/CE → retry or reject as configured; AR/CR (or 0x15... which release 2 uses for any
//! refusal, so it is retried) → rejected; no answer in time, or a broken connection → retry.

use std::time::Duration;

use serde::Deserialize;

use super::{Outcome, Outgoing};
use crate::mllp::sender::{Answer, MllpSender, SendError};

/// `[destinations.NAME]` with `kind = "mllp"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MllpConfig {
    /// `host:port` of the receiver.
    pub address: String,
    /// Seconds to wait for the ACK.
    #[serde(default = "thirty")]
    pub ack_timeout_secs: u64,
    /// Seconds to wait for a connection.
    #[serde(default = "ten")]
    pub connect_timeout_secs: u64,
    /// What an application error (AE/CE) means: `retry` or `reject`.
    #[serde(default)]
    pub application_error: ApplicationError,
    /// TLS to the receiver.
    #[serde(default)]
    pub tls: Option<super::http::ClientTls>,
    /// Framing bytes, for the messages sent and the answers read (a receiver that ends its
    /// frames with 0x1C alone needs `trailer = 0`).
    #[serde(default)]
    pub framing: crate::mllp::listener::FramingConfig,
}

fn thirty() -> u64 {
    30
}
fn ten() -> u64 {
    10
}

/// What an AE/CE answer means for the delivery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplicationError {
    /// Try again later (the receiver may recover).
    #[default]
    Retry,
    /// Dead-letter it.
    Reject,
}

/// A built MLLP destination.
#[derive(Debug)]
pub struct MllpDestination {
    sender: MllpSender,
    application_error: ApplicationError,
    ack_timeout: u64,
}

impl MllpDestination {
    /// Connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.sender.connections_opened()
    }

    /// Checks the address and reads TLS files; connects on first send.
    pub fn build(config: &MllpConfig) -> Result<MllpDestination, String> {
        let host = config
            .address
            .rsplit_once(':')
            .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
            .ok_or_else(|| format!("address: {:?} is not host:port", config.address))?;
        if let Some(why) = config.framing.problem() {
            return Err(format!("framing: {why}"));
        }
        let tls = match &config.tls {
            Some(t) => Some((
                std::sync::Arc::new(t.client_config()?),
                t.server_name.clone().unwrap_or(host),
            )),
            None => None,
        };
        let sender = MllpSender::new(
            &config.address,
            tls,
            Duration::from_secs(config.connect_timeout_secs.max(1)),
            Duration::from_secs(config.ack_timeout_secs.max(1)),
            config.framing.framing(),
        )?;
        Ok(MllpDestination {
            sender,
            application_error: config.application_error,
            ack_timeout: config.ack_timeout_secs,
        })
    }

    /// Sends the message and classifies the ACK.
    pub async fn send(&self, d: &Outgoing<'_>) -> Outcome {
        if d.format != "hl7v2" {
            return Outcome::Reject(format!(
                "an MLLP destination sends HL7 v2; the route gave it {}",
                d.format
            ));
        }
        let explain = |code: &str, text: Option<String>| match text {
            Some(t) => format!("{code}: {t}"),
            None => code.to_string(),
        };
        match self.sender.send(d.payload).await {
            Ok(Answer::Commit(true)) => Outcome::Delivered,
            Ok(Answer::Commit(false)) => Outcome::retry("commit NAK (0x15)"),
            Ok(Answer::Ack { code, text }) => match code.as_str() {
                "AA" | "CA" => Outcome::Delivered,
                "AE" | "CE" => match self.application_error {
                    ApplicationError::Retry => Outcome::retry(explain(&code, text)),
                    ApplicationError::Reject => Outcome::Reject(explain(&code, text)),
                },
                "AR" | "CR" => Outcome::Reject(explain(&code, text)),
                other => Outcome::retry(format!("unexpected MSA-1 {other:?}")),
            },
            Err(SendError::NoControlId) => {
                Outcome::Reject("the message has no MSH-10 to match an ACK with".into())
            }
            Err(SendError::Timeout) => {
                Outcome::retry(format!("no ACK within {} s", self.ack_timeout))
            }
            Err(SendError::Connect(e)) => Outcome::retry(format!("cannot connect: {e}")),
            Err(SendError::Connection(e)) => Outcome::retry(format!("connection: {e}")),
        }
    }
}
