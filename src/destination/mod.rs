//! Destinations: send one delivery and say how it went — `Delivered`, `Retry` or `Reject`.
//!
//! ```text
//!  queue(dest) ──lease──> worker ──send──> destination ──Outcome──> worker ──mark──> queue
//!                           ^ backoff, attempts, dead-letter (here, never in a destination)
//! ```
//!
//! A destination never sleeps, retries or touches the journal: it classifies. The worker
//! (`daemon::delivery`) owns the retry policy ([`RetryPolicy`]), ordering and rate limits.
//! One file per kind, each with its configuration, build and send: [`http`], [`fhir`],
//! [`file`](mod@file), [`mllp`], [`rabbitmq`].
//! Every delivery carries an idempotency key (message id + destination) that a destination
//! passes on where its protocol has a place for it (`Idempotency-Key` header, file name).

pub mod fhir;
pub mod file;
pub mod http;
pub mod link;
pub mod mllp;
pub mod rabbitmq;

use std::time::Duration;

use serde::Deserialize;

use crate::hl7::Message;
use crate::record::OutputFormat;
use crate::route::target::{EvalContext, RecordPath, RecordView, Target};

/// One delivery as a destination sees it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// Queue position.
    pub seq: i64,
    /// The journaled message it came from.
    pub message_id: uuid::Uuid,
    /// Message id + destination: lets a receiver drop a copy it already has.
    pub idempotency_key: &'a str,
    /// `hl7v2`, `record-json` or `fhir`.
    pub format: &'a str,
    /// The bytes.
    pub payload: &'a [u8],
    /// This attempt's number (1 for the first).
    pub attempt: u32,
}

impl Outgoing<'_> {
    /// The media type of the payload.
    pub fn content_type(&self) -> &'static str {
        OutputFormat::from_name(self.format)
            .unwrap_or(OutputFormat::RecordJson)
            .content_type()
    }
}

/// How an attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver has it.
    Delivered,
    /// Try again later (the receiver is down, busy, or said so), no sooner than `after`.
    Retry {
        /// Why.
        reason: String,
        /// The receiver's own wait (HTTP `Retry-After`).
        after: Option<Duration>,
    },
    /// The receiver refused it; sending it again would not help: dead-letter it.
    Reject(String),
}

impl Outcome {
    /// A retry without a wait of the receiver's.
    pub fn retry(reason: impl Into<String>) -> Outcome {
        Outcome::Retry {
            reason: reason.into(),
            after: None,
        }
    }
}

/// The queue settings every destination has (`[destinations.NAME]`, beside its kind's keys).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Backoff and giving up.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// `block` (strict order; a failing delivery holds the rest back) or `skip` (later
    /// deliveries pass a retrying one, which is dead-lettered after its attempts run out).
    #[serde(default)]
    pub head_of_line: HeadOfLineConfig,
    /// Workers sending at once (and so connections); with more than one, order is kept per
    /// `order_key` value only (and, without an order key, not at all).
    #[serde(default = "one")]
    pub concurrency: u32,
    /// An HL7 path whose value keeps order among concurrent workers, e.g. `PID-3-1`.
    #[serde(default)]
    pub order_key: Option<String>,
    /// Most deliveries per second (0: no limit).
    #[serde(default)]
    pub rate_limit: f64,
    /// How long a worker may hold a delivery before another may take it, seconds; longer than
    /// any send can take.
    #[serde(default = "five_minutes")]
    pub lease_secs: u64,
}

fn one() -> u32 {
    1
}
fn five_minutes() -> u64 {
    300
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            retry: RetryPolicy::default(),
            head_of_line: HeadOfLineConfig::default(),
            concurrency: one(),
            order_key: None,
            rate_limit: 0.0,
            lease_secs: five_minutes(),
        }
    }
}

/// The keys of [`QueueConfig`], told apart from a kind's own keys when a table is read.
pub const QUEUE_KEYS: [&str; 6] = [
    "retry",
    "head_of_line",
    "concurrency",
    "order_key",
    "rate_limit",
    "lease_secs",
];

impl QueueConfig {
    /// Checks the values; every problem as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut e = self.retry.check();
        if self.concurrency == 0 || self.concurrency > 256 {
            e.push(("concurrency".into(), "must be between 1 and 256".into()));
        }
        if let Some(k) = &self.order_key {
            if let Err(err) = crate::route::target::Hl7Target::parse(k) {
                e.push(("order_key".into(), err));
            }
        }
        if !(self.rate_limit >= 0.0 && self.rate_limit.is_finite()) {
            e.push(("rate_limit".into(), "must be 0 (no limit) or more".into()));
        }
        if self.lease_secs < 5 {
            e.push(("lease_secs".into(), "must be at least 5".into()));
        }
        e
    }
}

/// Head-of-line policy as written in the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadOfLineConfig {
    /// Strict order.
    #[default]
    Block,
    /// Let later deliveries pass a retrying one.
    Skip,
}

/// What each kind needs to be built.
#[derive(Debug, Clone, PartialEq)]
pub enum Settings {
    /// HTTP.
    Http(http::HttpConfig),
    /// Files.
    File(file::FileConfig),
    /// MLLP.
    Mllp(mllp::MllpConfig),
    /// RabbitMQ.
    Rabbitmq(rabbitmq::RabbitConfig),
    /// A FHIR server.
    Fhir(fhir::FhirConfig),
}

impl Settings {
    /// Checks what building would check (templates, secrets, TLS files, addresses) without
    /// connecting or creating anything; the problem, if any.
    pub fn check(&self) -> Option<String> {
        match self {
            Settings::Http(c) => http::HttpDestination::build(c, 1).err(),
            Settings::Mllp(c) => mllp::MllpDestination::build(c).err(),
            Settings::Rabbitmq(c) => rabbitmq::RabbitDestination::build(c).err(),
            Settings::File(c) => c
                .filename
                .as_deref()
                .and_then(|f| OutTemplate::parse(f).err())
                .map(|e| format!("filename: {e}")),
            Settings::Fhir(c) => fhir::FhirDestination::build(c, 1).err(),
        }
    }
}

/// A built destination.
#[derive(Debug)]
pub enum Destination {
    /// HTTP.
    Http(http::HttpDestination),
    /// A FHIR server.
    Fhir(fhir::FhirDestination),
    /// Files.
    File(file::FileDestination),
    /// MLLP.
    Mllp(mllp::MllpDestination),
    /// RabbitMQ (boxed: it is much larger than the others).
    Rabbitmq(Box<rabbitmq::RabbitDestination>),
}

impl Destination {
    /// Builds a destination from its settings.
    pub fn build(settings: &Settings, queue: &QueueConfig) -> Result<Destination, String> {
        let connections = queue.concurrency as usize;
        Ok(match settings {
            Settings::Http(c) => Destination::Http(http::HttpDestination::build(c, connections)?),
            Settings::File(c) => Destination::File(file::FileDestination::build(c)?),
            Settings::Mllp(c) => Destination::Mllp(mllp::MllpDestination::build(c)?),
            Settings::Rabbitmq(c) => {
                Destination::Rabbitmq(Box::new(rabbitmq::RabbitDestination::build(c)?))
            }
            Settings::Fhir(c) => Destination::Fhir(fhir::FhirDestination::build(c, connections)?),
        })
    }

    /// Connections to the receiver opened so far (0 for files): steady while connections are
    /// kept, rising with every reconnection.
    pub fn connections_opened(&self) -> u64 {
        match self {
            Destination::Http(h) => h.connections_opened(),
            Destination::Fhir(f) => f.connections_opened(),
            Destination::Mllp(m) => m.connections_opened(),
            Destination::Rabbitmq(r) => r.connections_opened(),
            Destination::File(_) => 0,
        }
    }

    /// Sends one delivery.
    pub async fn send(&self, d: &Outgoing<'_>) -> Outcome {
        match self {
            Destination::Http(h) => h.send(d).await,
            Destination::Fhir(f) => f.send(d).await,
            Destination::File(f) => f.send(d).await,
            Destination::Mllp(m) => m.send(d).await,
            Destination::Rabbitmq(r) => r
                .send_batch(std::slice::from_ref(d))
                .await
                .pop()
                .unwrap_or_else(|| Outcome::retry("no outcome")),
        }
    }

    /// Sends a leased batch as a group where that beats one delivery after the other (files:
    /// one sync for the group); `None` for destinations that send one at a time. Outcomes in
    /// order; `None` for a delivery not tried.
    pub async fn send_group(&self, batch: &[Outgoing<'_>]) -> Option<Vec<Option<Outcome>>> {
        match self {
            Destination::File(f) if self.groups() => Some(f.send_group(batch).await),
            _ => None,
        }
    }

    /// Whether [`Destination::send_group`] takes leased batches whole.
    pub fn groups(&self) -> bool {
        matches!(self, Destination::File(f) if !f.batches())
    }

    /// Whether a whole batch is sent at once ([`Destination::send_batch`]) instead of one
    /// delivery after the other.
    pub fn pipelines(&self) -> bool {
        match self {
            Destination::Rabbitmq(_) => true,
            Destination::File(f) => f.batches(),
            _ => false,
        }
    }

    /// Starts a batch: RabbitMQ publishes it and returns before the confirms (so the worker
    /// can publish the next batch meanwhile); the others send it whole. Outcomes come from
    /// [`Destination::settle`].
    /// `outstanding`: [`InFlight::link`] of the batch before, if its outcomes are pending.
    pub async fn publish_batch(
        &self,
        batch: &[Outgoing<'_>],
        outstanding: Option<u64>,
    ) -> InFlight {
        match self {
            Destination::Rabbitmq(r) => InFlight::Rabbitmq(r.publish(batch, outstanding).await),
            _ => InFlight::Done(self.send_batch(batch).await),
        }
    }

    /// The outcomes of a batch started with [`Destination::publish_batch`], in order.
    pub async fn settle(&self, batch: InFlight) -> Vec<Outcome> {
        match (self, batch) {
            (_, InFlight::Done(outcomes)) => outcomes,
            (Destination::Rabbitmq(r), InFlight::Rabbitmq(p)) => r.settle(p).await,
            (_, InFlight::Rabbitmq(p)) => (0..p.len())
                .map(|_| Outcome::retry("published by another destination"))
                .collect(),
        }
    }

    /// Sends a batch at once; one outcome per delivery, in order.
    pub async fn send_batch(&self, batch: &[Outgoing<'_>]) -> Vec<Outcome> {
        match self {
            Destination::Rabbitmq(r) => r.send_batch(batch).await,
            Destination::File(f) if f.batches() => f.send_batch(batch).await,
            _ => {
                let mut out = Vec::with_capacity(batch.len());
                for d in batch {
                    out.push(self.send(d).await);
                }
                out
            }
        }
    }
}

/// When to try again and when to give up (`[destinations.NAME.retry]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Wait before the second attempt, milliseconds.
    pub initial_ms: u64,
    /// Longest wait between attempts, milliseconds.
    pub max_ms: u64,
    /// Each wait is the previous one times this.
    pub multiplier: f64,
    /// Each wait varies by up to this fraction either way, so that retries spread out.
    pub jitter: f64,
    /// Dead-letter after this many attempts (0: no limit).
    pub max_attempts: u32,
    /// Dead-letter when a retry would come later than this long after queueing (0: no limit).
    pub max_age_secs: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_ms: 1_000,
            max_ms: 300_000,
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: 0,
            max_age_secs: 0,
        }
    }
}

impl RetryPolicy {
    /// Checks the values; every problem as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if self.initial_ms == 0 || self.max_ms < self.initial_ms {
            e.push(("retry".into(), "need 0 < initial_ms <= max_ms".into()));
        }
        if !(self.multiplier >= 1.0 && self.multiplier <= 100.0) {
            e.push((
                "retry.multiplier".into(),
                "must be between 1 and 100".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            e.push(("retry.jitter".into(), "must be between 0 and 1".into()));
        }
        e
    }

    /// The wait after failed attempt number `attempt` (1-based), with jitter from `seed`.
    pub fn backoff(&self, attempt: u32, seed: u64) -> Duration {
        let exp = f64::from(attempt.saturating_sub(1).min(64));
        let base = (self.initial_ms as f64 * self.multiplier.powf(exp)).min(self.max_ms as f64);
        // A cheap, well-spread number in [-1, 1) from the seed (splitmix64).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let ms = (base * (1.0 + self.jitter * unit)).clamp(1.0, self.max_ms as f64);
        Duration::from_millis(ms as u64)
    }
}

/// A value with `${...}` placeholders for file names, URLs and routing keys: `${message_id}`,
/// `${idempotency_key}`, `${seq}`, an HL7 path read from an `hl7v2` payload (`${MSH-9-1}`), or a
/// record path read from a JSON payload (`${patient.sex}`). Absent values are empty.
#[derive(Debug, Clone)]
pub struct OutTemplate {
    parts: Vec<OutPart>,
}

#[derive(Debug, Clone)]
enum OutPart {
    Text(String),
    MessageId,
    IdempotencyKey,
    Seq,
    Hl7(Target),
    Json(RecordPath),
}

impl OutTemplate {
    /// Parses a template; every placeholder is checked.
    pub fn parse(text: &str) -> Result<OutTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            if i > 0 {
                parts.push(OutPart::Text(rest[..i].to_string()));
            }
            let end = rest[i..]
                .find('}')
                .ok_or_else(|| format!("`{text}`: `${{` without a closing `}}`"))?;
            let inner = rest[i + 2..i + end].trim();
            parts.push(match inner {
                "message_id" => OutPart::MessageId,
                "idempotency_key" => OutPart::IdempotencyKey,
                "seq" => OutPart::Seq,
                _ => match Target::parse(inner)? {
                    t @ Target::Hl7(_) => OutPart::Hl7(t),
                    Target::Record(_) => OutPart::Json(RecordPath::parse(inner)?),
                },
            });
            rest = &rest[i + end + 1..];
        }
        if !rest.is_empty() {
            parts.push(OutPart::Text(rest.to_string()));
        }
        Ok(OutTemplate { parts })
    }

    /// Whether a placeholder reads the HL7 payload (so a caller can parse it once).
    pub fn reads_hl7(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, OutPart::Hl7(_)))
    }

    /// The text for a delivery; each value goes through `escape` (e.g. URL encoding). The
    /// payload is parsed only when a placeholder reads it.
    pub fn render(&self, d: &Outgoing<'_>, escape: &dyn Fn(&str) -> String) -> String {
        let hl7 = (d.format == "hl7v2" && self.reads_hl7())
            .then(|| Message::parse(d.payload).ok())
            .flatten();
        self.render_with(d, hl7.as_ref(), escape)
    }

    /// [`OutTemplate::render`] with the HL7 payload already parsed by the caller.
    pub fn render_with(
        &self,
        d: &Outgoing<'_>,
        hl7: Option<&Message<'_>>,
        escape: &dyn Fn(&str) -> String,
    ) -> String {
        let reads_json = self.parts.iter().any(|p| matches!(p, OutPart::Json(_)));
        let json = (d.format != "hl7v2" && reads_json)
            .then(|| serde_json::from_slice::<serde_json::Value>(d.payload).ok())
            .flatten();
        let mut out = String::new();
        for p in &self.parts {
            let value = match p {
                OutPart::Text(t) => {
                    out.push_str(t);
                    continue;
                }
                OutPart::MessageId => d.message_id.to_string(),
                OutPart::IdempotencyKey => d.idempotency_key.to_string(),
                OutPart::Seq => d.seq.to_string(),
                OutPart::Hl7(t) => match hl7 {
                    Some(m) => {
                        let record = RecordView::new(m);
                        let cx = EvalContext {
                            message: m,
                            record: &record,
                            scope: None,
                        };
                        t.first(&cx).map(|v| v.into_owned()).unwrap_or_default()
                    }
                    None => String::new(),
                },
                OutPart::Json(path) => json
                    .as_ref()
                    .and_then(|j| path.resolve(j).into_iter().next())
                    .and_then(crate::route::target::json_text)
                    .unwrap_or_default(),
            };
            out.push_str(&escape(&value));
        }
        out
    }
}

/// A batch started by a pipelining destination, its outcomes pending.
pub enum InFlight {
    /// Sent; these are the outcomes.
    Done(Vec<Outcome>),
    /// Published to RabbitMQ; the confirms are outstanding.
    Rabbitmq(rabbitmq::Published),
}

impl InFlight {
    /// The connection a published batch went out on (0 for a batch already done).
    pub fn link(&self) -> u64 {
        match self {
            InFlight::Done(_) => 0,
            InFlight::Rabbitmq(p) => p.link(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_bounded_jitter() {
        let p = RetryPolicy::default();
        for seed in 0..200 {
            let first = p.backoff(1, seed).as_millis();
            assert!((800..=1200).contains(&first), "{first}");
            let tenth = p.backoff(10, seed).as_millis();
            assert!((240_000..=300_000).contains(&tenth), "{tenth}");
        }
        let spread: std::collections::BTreeSet<u128> =
            (0..50).map(|s| p.backoff(3, s).as_millis()).collect();
        assert!(spread.len() > 20, "jitter spreads retries");
        assert!(
            RetryPolicy {
                jitter: 2.0,
                ..p.clone()
            }
            .check()
            .len()
                == 1
        );
    }

    #[test]
    fn templates_read_the_payload() {
        let id = uuid::Uuid::nil();
        let hl7 = Outgoing {
            seq: 7,
            message_id: id,
            idempotency_key: "k",
            format: "hl7v2",
            payload: b"MSH|^~\\&|A|B|||2024||ORU^R01|C/1|P|2.5\r",
            attempt: 1,
        };
        let t = OutTemplate::parse("${MSH-9-1}-${MSH-10}-${seq}-${message_id}.hl7").unwrap();
        let safe = |v: &str| v.replace('/', "_");
        assert_eq!(t.render(&hl7, &safe), format!("ORU-C_1-7-{id}.hl7"));
        let json = Outgoing {
            format: "record-json",
            payload: br#"{"patient":{"sex":"F"}}"#,
            ..hl7
        };
        let t = OutTemplate::parse("p/${patient.sex}/${MSH-10}").unwrap();
        assert_eq!(t.render(&json, &|v| v.to_string()), "p/F/");
        assert!(OutTemplate::parse("${MSH-x}").is_err());
    }
}
