//! The RabbitMQ destination: AMQP 0-9-1 publishing with publisher confirms (`lapin`).
//!
//! ```toml
//! [destinations.lab-results]
//! kind = "rabbitmq"
//! url = "env:AMQP_URL"                        # a secret reference: amqp://user:password@host:5672/%2f
//! exchange = "results"
//! exchange_kind = "topic"                     # direct | topic | fanout | headers
//! declare = true                              # declare it (durable); false: it must exist
//! routing_key = "hl7.${MSH-9-1}.${MSH-9-2}"   # a template (see `OutTemplate`)
//! mandatory = true                            # an unroutable message comes back ...
//! unroutable = "retry"                        # ... and is retried (default) or rejected
//! nack = "retry"                              # what a broker nack means: retry (default) or reject
//! confirm_timeout_secs = 30
//! ```
//!
//! A delivery is sent only when the broker confirms it. Messages are persistent
//! (`delivery_mode = 2`), `message_id` is the idempotency key
//! (`<journal message id>:<destination>`), `content_type` the output format's media type, and
//! for HL7 v2 two headers carry the message type and control id (`x-hl7-message-type` =
//! `ADT^A01`, `x-hl7-control-id` = MSH-10).
//! A batch is published back to back and its confirms collected after (pipelined; awaiting
//! each confirm in turn is several times slower). lapin does not recover connections by
//! itself: any connection or channel error drops them, the deliveries not confirmed are
//! retried by the worker, and the next batch connects again and re-declares the exchange.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;

use super::{OutTemplate, Outcome, Outgoing};
use crate::config::Secret;
use crate::hl7::Message;

/// `[destinations.NAME]` with `kind = "rabbitmq"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitConfig {
    /// The AMQP URL, from a secret (it holds the password).
    pub url: Secret,
    /// Exchange to publish to (`""` is the default exchange).
    pub exchange: String,
    /// Its type when declared.
    #[serde(default = "topic")]
    pub exchange_kind: String,
    /// Declare the exchange (durable), or only check that it exists.
    #[serde(default = "yes")]
    pub declare: bool,
    /// Routing key template.
    pub routing_key: String,
    /// Ask the broker to return messages no queue takes.
    #[serde(default = "yes")]
    pub mandatory: bool,
    /// What a returned (unroutable) message means: `retry` or `reject`.
    #[serde(default = "retry")]
    pub unroutable: String,
    /// What a broker nack means: `retry` or `reject`.
    #[serde(default = "retry")]
    pub nack: String,
    /// Seconds to wait for a confirm.
    #[serde(default = "thirty")]
    pub confirm_timeout_secs: u64,
    /// Seconds to wait for a connection.
    #[serde(default = "ten")]
    pub connect_timeout_secs: u64,
}

fn topic() -> String {
    "topic".into()
}
fn yes() -> bool {
    true
}
fn retry() -> String {
    "retry".into()
}
fn thirty() -> u64 {
    30
}
fn ten() -> u64 {
    10
}

/// A built RabbitMQ destination.
pub struct RabbitDestination {
    url: String,
    exchange: String,
    kind: ExchangeKind,
    declare: bool,
    routing_key: OutTemplate,
    mandatory: bool,
    reject_unroutable: bool,
    reject_nack: bool,
    confirm_timeout: Duration,
    connect_timeout: Duration,
    /// The connection, its channel, and a number telling connections apart.
    link: tokio::sync::Mutex<Option<(Connection, Channel, u64)>>,
    generation: AtomicU64,
}

impl std::fmt::Debug for RabbitDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitDestination")
            .field("exchange", &self.exchange)
            .finish()
    }
}

impl RabbitDestination {
    /// Resolves the URL and checks the settings; connects on first send.
    pub fn build(config: &RabbitConfig) -> Result<RabbitDestination, String> {
        let url = config.url.resolve().map_err(|e| format!("url: {e}"))?;
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err("url: must be an amqp:// or amqps:// URL".into());
        }
        let kind = match config.exchange_kind.as_str() {
            "direct" => ExchangeKind::Direct,
            "topic" => ExchangeKind::Topic,
            "fanout" => ExchangeKind::Fanout,
            "headers" => ExchangeKind::Headers,
            other => {
                return Err(format!(
                    "exchange_kind: {other:?} (expected direct, topic, fanout, headers)"
                ))
            }
        };
        let choice = |key: &str, v: &str| match v {
            "retry" => Ok(false),
            "reject" => Ok(true),
            other => Err(format!("{key}: {other:?} (expected retry or reject)")),
        };
        Ok(RabbitDestination {
            url,
            exchange: config.exchange.clone(),
            kind,
            declare: config.declare,
            routing_key: OutTemplate::parse(&config.routing_key)
                .map_err(|e| format!("routing_key: {e}"))?,
            mandatory: config.mandatory,
            reject_unroutable: choice("unroutable", &config.unroutable)?,
            reject_nack: choice("nack", &config.nack)?,
            confirm_timeout: Duration::from_secs(config.confirm_timeout_secs.max(1)),
            connect_timeout: Duration::from_secs(config.connect_timeout_secs.max(1)),
            link: tokio::sync::Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// Broker connections opened so far (the first, and each reconnection).
    pub fn connections_opened(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    async fn connect(&self) -> Result<(Connection, Channel), String> {
        let props = ConnectionProperties::default()
            .with_connection_name("aorta".into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        let conn =
            tokio::time::timeout(self.connect_timeout, Connection::connect(&self.url, props))
                .await
                .map_err(|_| "no connection to the broker within the timeout".to_string())?
                .map_err(|e| format!("cannot connect to the broker: {e}"))?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| format!("opening a channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("enabling publisher confirms: {e}"))?;
        if !self.exchange.is_empty() {
            let options = ExchangeDeclareOptions {
                passive: !self.declare,
                durable: true,
                ..ExchangeDeclareOptions::default()
            };
            channel
                .exchange_declare(
                    self.exchange.as_str(),
                    self.kind.clone(),
                    options,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| format!("exchange {}: {e}", self.exchange))?;
        }
        Ok((conn, channel))
    }

    /// Publishes a batch back to back, then collects the confirms: one outcome per delivery.
    pub async fn send_batch(&self, batch: &[Outgoing<'_>]) -> Vec<Outcome> {
        let published = self.publish(batch, None).await;
        self.settle(published).await
    }

    /// Publishes a batch in order (reconnecting first when the link is down) and returns
    /// without waiting for the confirms, so the next batch can be leased and published while
    /// the broker confirms this one ([`RabbitDestination::settle`] collects them). With a batch
    /// still `outstanding`, nothing is published unless the link it went out on is still up:
    /// after a break, the earlier batch's failures must go first (order).
    /// (`outstanding`: [`Published::link`] of that batch.)
    pub async fn publish(&self, batch: &[Outgoing<'_>], outstanding: Option<u64>) -> Published {
        let mut link = self.link.lock().await;
        let usable = link
            .as_ref()
            .is_some_and(|(c, ch, _)| c.status().connected() && ch.status().connected());
        let same = |l: &Option<(Connection, Channel, u64)>| {
            outstanding.is_none_or(|g| l.as_ref().is_some_and(|x| x.2 == g))
        };
        if outstanding.is_some() && !(usable && same(&link)) {
            return Published {
                pending: batch
                    .iter()
                    .map(|_| {
                        Err(Outcome::retry(
                            "not published: the broker link broke while the batch before was out",
                        ))
                    })
                    .collect(),
                generation: 0,
            };
        }
        if !usable {
            *link = None;
            match self.connect().await {
                Ok((c, ch)) => {
                    let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
                    *link = Some((c, ch, generation));
                }
                Err(e) => {
                    return Published {
                        pending: batch
                            .iter()
                            .map(|_| Err(Outcome::retry(e.clone())))
                            .collect(),
                        generation: 0,
                    }
                }
            }
        }
        let Some((_, channel, generation)) = link.as_ref() else {
            return Published {
                pending: batch
                    .iter()
                    .map(|_| Err(Outcome::retry("no broker connection")))
                    .collect(),
                generation: 0,
            };
        };
        // Routing keys first: the publishes below borrow them until their frames are written.
        let (keys, props): (Vec<String>, Vec<BasicProperties>) = batch
            .iter()
            .map(|d| {
                // Parsed once for both the routing key and the headers.
                let parsed = (d.format == "hl7v2")
                    .then(|| Message::parse(d.payload).ok())
                    .flatten();
                let key = self
                    .routing_key
                    .render_with(d, parsed.as_ref(), &|v| v.to_string());
                (key, properties(d, parsed.as_ref()))
            })
            .unzip();
        let options = BasicPublishOptions {
            mandatory: self.mandatory,
            ..BasicPublishOptions::default()
        };
        // Each publish is polled once, which queues its frames with lapin's I/O thread (in
        // batch order: that order is the delivery tags' and the wire's), and only then are
        // the writes awaited. Awaiting each publish's write before queueing the next made
        // every message a round trip to that thread and back — two thread wake-ups per
        // message, a tenth of the engine's CPU end to end (docs/benchmarks.md).
        let mut writes = Vec::with_capacity(batch.len());
        let mut broken = None;
        for ((d, key), props) in batch.iter().zip(&keys).zip(props) {
            if broken.is_some() {
                writes.push(Write::NotPublished);
                continue;
            }
            let mut publish = Box::pin(channel.basic_publish(
                self.exchange.as_str(),
                key.as_str(),
                options,
                d.payload,
                props,
            ));
            match poll_once(publish.as_mut()).await {
                Poll::Ready(Ok(confirm)) => writes.push(Write::Done(Ok(confirm))),
                Poll::Ready(Err(e)) => {
                    broken = Some(e.to_string());
                    writes.push(Write::Done(Err(e)));
                }
                Poll::Pending => writes.push(Write::Queued(publish)),
            }
        }
        let mut pending = Vec::with_capacity(batch.len());
        for w in writes {
            let written = match w {
                Write::Done(r) => Some(r),
                Write::Queued(publish) => Some(publish.await),
                Write::NotPublished => None,
            };
            match written {
                Some(Ok(confirm)) => pending.push(Ok(confirm)),
                Some(Err(e)) => {
                    let e = e.to_string();
                    pending.push(Err(Outcome::retry(format!("publishing: {e}"))));
                    broken.get_or_insert(e);
                }
                None => pending.push(Err(Outcome::retry(format!(
                    "not published: {}",
                    broken.as_deref().unwrap_or("the link broke")
                )))),
            }
        }
        Published {
            pending,
            generation: *generation,
        }
    }

    /// Waits for a published batch's confirms; one outcome per delivery, in order. A broken
    /// link (no confirm, a timeout) is dropped, so the next batch starts on a fresh connection
    /// and declares the exchange again.
    pub async fn settle(&self, published: Published) -> Vec<Outcome> {
        let deadline = tokio::time::Instant::now() + self.confirm_timeout;
        let mut outcomes = Vec::with_capacity(published.pending.len());
        let mut broken: Option<String> = None;
        for p in published.pending {
            let outcome = match p {
                Err(o) => {
                    broken.get_or_insert_with(|| "not published".into());
                    o
                }
                Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(Confirmation::Ack(None))) | Ok(Ok(Confirmation::NotRequested)) => {
                        Outcome::Delivered
                    }
                    Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                        let why = format!(
                            "unroutable: the broker returned it ({} {})",
                            returned.reply_code, returned.reply_text
                        );
                        if self.reject_unroutable {
                            Outcome::Reject(why)
                        } else {
                            Outcome::retry(why)
                        }
                    }
                    Ok(Ok(Confirmation::Nack(_))) => {
                        if self.reject_nack {
                            Outcome::Reject("the broker nacked it".into())
                        } else {
                            Outcome::retry("the broker nacked it")
                        }
                    }
                    Ok(Err(e)) => {
                        broken.get_or_insert_with(|| e.to_string());
                        Outcome::retry(format!("no confirm: {e}"))
                    }
                    Err(_) => {
                        broken.get_or_insert_with(|| "confirm timeout".into());
                        Outcome::retry(format!(
                            "no confirm within {} s",
                            self.confirm_timeout.as_secs()
                        ))
                    }
                },
            };
            outcomes.push(outcome);
        }
        if broken.is_some() {
            let mut link = self.link.lock().await;
            // Only the connection this batch went out on: a later batch may have reconnected.
            if link.as_ref().is_some_and(|l| l.2 == published.generation) {
                if let Some((conn, _, _)) = link.take() {
                    let _ = conn.close(0, "aorta: reconnecting").await;
                }
            }
        }
        outcomes
    }
}

/// One publish of a batch: answered on its first poll, or its frames queued for writing.
enum Write<F> {
    Done(lapin::Result<lapin::publisher_confirm::PublisherConfirm>),
    Queued(Pin<Box<F>>),
    NotPublished,
}

/// Polls `f` once with the calling task's context (so a later `.await` on it is woken).
async fn poll_once<F: Future>(mut f: Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(f.as_mut().poll(cx))).await
}

/// A batch published and waiting for the broker's confirms.
pub struct Published {
    pending: Vec<Result<lapin::publisher_confirm::PublisherConfirm, Outcome>>,
    /// Which connection it went out on (0: none).
    generation: u64,
}

impl Published {
    /// The connection it went out on.
    pub fn link(&self) -> u64 {
        self.generation
    }

    /// Deliveries in the batch.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

/// The properties the destination publishes an HL7 v2 `payload` with (for `aorta bench amqp
/// --file`, so the broker's reference rate carries the same properties).
pub fn hl7_properties(
    message_id: uuid::Uuid,
    idempotency_key: &str,
    payload: &[u8],
) -> BasicProperties {
    let d = Outgoing {
        seq: 0,
        message_id,
        idempotency_key,
        format: "hl7v2",
        payload,
        attempt: 1,
    };
    let parsed = Message::parse(payload).ok();
    properties(&d, parsed.as_ref())
}

/// Persistent, with the idempotency key (which begins with the journal's message id) as
/// `message_id`, the media type as `content_type`, and for HL7 v2 the message type and control
/// id as headers. Nothing more: the broker decodes the header table of every publish, and
/// each entry costs it (docs/benchmarks.md: the two headers cost ~10 % of its publish rate).
fn properties(d: &Outgoing<'_>, parsed: Option<&Message<'_>>) -> BasicProperties {
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(d.idempotency_key.into())
        .with_content_type(d.content_type().into())
        .with_app_id("aorta".into());
    let Some(m) = parsed else {
        return props;
    };
    let mut headers = FieldTable::default();
    let code = m.message_code().unwrap_or_default();
    let event = m.trigger_event().unwrap_or_default();
    let mut kind = String::with_capacity(code.len() + event.len() + 1);
    kind.push_str(&code);
    kind.push('^');
    kind.push_str(&event);
    headers.insert(
        ShortString::from("x-hl7-message-type"),
        AMQPValue::LongString(kind.into()),
    );
    headers.insert(
        ShortString::from("x-hl7-control-id"),
        AMQPValue::LongString(m.control_id().unwrap_or_default().into_owned().into()),
    );
    props.with_headers(headers)
}
