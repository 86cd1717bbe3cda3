//! Delivery workers: lease from a destination's queue, send, mark.
//!
//! Each destination gets `concurrency` workers; worker `p` serves partition `p` of its queue
//! (deliveries whose order key hashes to `p`), so order is kept per key — or strictly, with one
//! worker. Deliveries are leased in batches (up to 64, sent one after the other in queue
//! order; or up to 500 at once — RabbitMQ publishes them back to back and collects their
//! confirms while the next batch is leased and published, a batching file destination writes
//! them into one file, a file destination without a rate limit writes one file each with one
//! sync for the batch, while the next batch is leased) so that
//! the queue costs two writes per batch, not per delivery. A worker owns the
//! retry decision: a destination only says `Retry(reason)`, and the
//! worker turns that into the next attempt's time (exponential backoff with jitter, at least the
//! receiver's `Retry-After`) or, past `max_attempts`/`max_age_secs`, a dead letter. Marks are
//! written after the send: a crash between the two means the delivery is sent again, with the
//! same idempotency key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::destination::InFlight;
use crate::destination::{Destination, HeadOfLineConfig, Outcome, Outgoing, QueueConfig};
use crate::metrics::Metrics;
use crate::store::{HeadOfLine, Lease, Leased, Mark, Partition, Store};

/// A pipelined batch out at the destination, its outcomes pending.
struct Pending {
    batch: Vec<Leased>,
    flight: InFlight,
    started: Instant,
}

/// One destination's metric handles.
struct Counters {
    delivered: prometheus::IntCounter,
    retried: prometheus::IntCounter,
    rejected: prometheus::IntCounter,
    dead: prometheus::IntCounter,
    in_flight: prometheus::IntGauge,
    latency: prometheus::Histogram,
}

/// One worker of one destination.
pub struct Worker<S: Store> {
    /// The journal and queues.
    pub store: S,
    /// Destination name.
    pub name: String,
    /// How to send.
    pub destination: Arc<Destination>,
    /// Retry, order and rate settings.
    pub queue: QueueConfig,
    /// The part of the queue this worker serves.
    pub partition: Partition,
    /// Woken when deliveries are queued for this destination.
    pub wake: Arc<Notify>,
    /// Metrics.
    pub metrics: Metrics,
}

/// The longest a worker sleeps without looking at its queue again.
const IDLE: Duration = Duration::from_secs(5);

/// Deliveries leased at once: one lease and one mark per batch instead of per delivery.
const BATCH: usize = 64;

/// The batch for destinations that pipeline (RabbitMQ: more confirms in flight at once) or
/// write a group with one sync (files: fewer syncs).
pub(crate) const PIPELINED_BATCH: usize = 500;

impl<S: Store> Worker<S> {
    /// Sends until `shutdown` turns true (finishing the delivery in hand).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let policy = match self.queue.head_of_line {
            HeadOfLineConfig::Block => HeadOfLine::Block,
            HeadOfLineConfig::Skip => HeadOfLine::Skip,
        };
        let lease_micros =
            i64::try_from(self.queue.lease_secs.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
        let gap = (self.queue.rate_limit > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / self.queue.rate_limit));
        let mut next_send = Instant::now();
        let batch_size =
            if self.destination.pipelines() || (gap.is_none() && self.destination.groups()) {
                PIPELINED_BATCH
            } else {
                BATCH
            };
        let name = self.name.as_str();
        let counters = Counters {
            delivered: self.metrics.deliveries_sent.with_label_values(&[name]),
            retried: self.metrics.deliveries_retried.with_label_values(&[name]),
            rejected: self.metrics.deliveries_rejected.with_label_values(&[name]),
            dead: self.metrics.deliveries_dead.with_label_values(&[name]),
            in_flight: self.metrics.deliveries_in_flight.with_label_values(&[name]),
            latency: self.metrics.delivery_seconds.with_label_values(&[name]),
        };
        // A pipelining destination's batch whose outcomes are pending while the next one is
        // leased and published: the broker confirms one batch while the next goes out.
        let mut pending: Option<Pending> = None;
        // A grouping destination's next batch, leased while the one before was written.
        let mut ahead: Option<Vec<Leased>> = None;
        loop {
            if *shutdown.borrow() {
                if let Some(p) = pending.take() {
                    self.settle(p, &counters).await;
                }
                self.release(ahead.take()).await;
                return;
            }
            if self.store.is_paused(name).await.unwrap_or(false) {
                if let Some(p) = pending.take() {
                    self.settle(p, &counters).await;
                }
                self.release(ahead.take()).await;
                self.sleep(Duration::from_millis(250), &mut shutdown).await;
                continue;
            }
            let after = pending
                .as_ref()
                .and_then(|p| p.batch.last())
                .map_or(0, |d| d.seq);
            let lease = match ahead.take() {
                Some(batch) => Ok(Lease::Leased(batch)),
                None => {
                    self.store
                        .lease_after(
                            name,
                            self.partition,
                            policy,
                            lease_micros,
                            batch_size,
                            after,
                        )
                        .await
                }
            };
            let lease = match lease {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(destination = %name, error = %e, "cannot lease from the queue; retrying");
                    // Settled now, before its leases can lapse and it is leased again.
                    if let Some(p) = pending.take() {
                        self.settle(p, &counters).await;
                    }
                    self.sleep(Duration::from_secs(1), &mut shutdown).await;
                    continue;
                }
            };
            let batch = match lease {
                Lease::Leased(batch) => batch,
                // Nothing more to publish now: settle what is out before waiting.
                _ if pending.is_some() => {
                    if let Some(p) = pending.take() {
                        self.settle(p, &counters).await;
                    }
                    continue;
                }
                Lease::Wait(at) => {
                    let wait = at.map_or(Duration::from_millis(200), |at| {
                        let micros = at.saturating_sub(crate::record::now_micros()).max(1_000);
                        Duration::from_micros(u64::try_from(micros).unwrap_or(1_000))
                    });
                    self.sleep(wait.min(IDLE), &mut shutdown).await;
                    continue;
                }
                Lease::Empty => {
                    self.sleep(IDLE, &mut shutdown).await;
                    continue;
                }
            };
            let outs: Vec<Outgoing<'_>> = batch
                .iter()
                .map(|d| Outgoing {
                    seq: d.seq,
                    message_id: d.message_id,
                    idempotency_key: &d.idempotency_key,
                    format: &d.format,
                    payload: &d.payload,
                    attempt: d.attempts.saturating_add(1),
                })
                .collect();
            if self.destination.pipelines() {
                counters.in_flight.add(outs.len() as i64);
                let started = Instant::now();
                let flight = self
                    .destination
                    .publish_batch(&outs, pending.as_ref().map(|p| p.flight.link()))
                    .await;
                drop(outs);
                if let Some(p) = pending.take() {
                    self.settle(p, &counters).await;
                }
                pending = Some(Pending {
                    batch,
                    flight,
                    started,
                });
                if let Some(gap) = gap {
                    let n = pending.as_ref().map_or(0, |p| p.batch.len());
                    tokio::time::sleep(gap * u32::try_from(n).unwrap_or(u32::MAX)).await;
                }
                continue;
            }
            // Without a rate limit, a destination that gains from it takes the batch at once.
            if gap.is_none() && self.destination.groups() {
                let n = outs.len();
                counters.in_flight.add(n as i64);
                let started = Instant::now();
                // The next batch is leased while this one is written (the lease waits its
                // turn in the journal's writer, behind the messages coming in); it goes out
                // only if this one went whole, so order holds.
                let last = batch.last().map_or(0, |d| d.seq);
                let (grouped, next) = tokio::join!(
                    self.destination.send_group(&outs),
                    self.store.lease_after(
                        name,
                        self.partition,
                        policy,
                        lease_micros,
                        batch_size,
                        last
                    )
                );
                counters.in_flight.sub(n as i64);
                let next = match next {
                    Ok(Lease::Leased(next)) => Some(next),
                    _ => None,
                };
                if let Some(outcomes) = grouped {
                    let each = started.elapsed().as_secs_f64() / n.max(1) as f64;
                    for _ in 0..n {
                        counters.latency.observe(each);
                    }
                    drop(outs);
                    let whole = outcomes
                        .iter()
                        .all(|o| matches!(o, Some(Outcome::Delivered | Outcome::Reject(_))));
                    self.record(&batch, outcomes, &counters, &mut shutdown)
                        .await;
                    if whole && !*shutdown.borrow() {
                        ahead = next;
                    } else {
                        self.release(next).await;
                    }
                    continue;
                }
                self.release(next).await;
            }
            // One outcome per delivery; `None`: not tried (held back, or shutting down).
            let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
            // Under `block`, a delivery that will be retried holds back the rest.
            let mut held = false;
            for out in &outs {
                if held || *shutdown.borrow() {
                    outcomes.push(None);
                    continue;
                }
                if let Some(gap) = gap {
                    let now = Instant::now();
                    if next_send > now {
                        tokio::time::sleep(next_send - now).await;
                    }
                    next_send = next_send.max(now) + gap;
                }
                counters.in_flight.inc();
                let started = Instant::now();
                let outcome = self.destination.send(out).await;
                counters.latency.observe(started.elapsed().as_secs_f64());
                counters.in_flight.dec();
                held = policy == HeadOfLine::Block && matches!(outcome, Outcome::Retry { .. });
                outcomes.push(Some(outcome));
            }
            drop(outs);
            self.record(&batch, outcomes, &counters, &mut shutdown)
                .await;
        }
    }

    /// Gives leased deliveries back to the queue untried.
    async fn release(&self, batch: Option<Vec<Leased>>) {
        let Some(batch) = batch else { return };
        let marks: Vec<_> = batch
            .iter()
            .map(|d| (d.seq, d.attempts, Mark::Release))
            .collect();
        if let Err(marks) = self.store.mark_detached(marks) {
            // Were this to fail too, the leases lapse and the deliveries go out later.
            let _ = self.store.mark(marks).await;
        }
    }

    /// Collects a pipelined batch's outcomes and records them.
    async fn settle(&self, p: Pending, counters: &Counters) {
        let outcomes = self.destination.settle(p.flight).await;
        let each = p.started.elapsed().as_secs_f64() / p.batch.len().max(1) as f64;
        for _ in &p.batch {
            counters.latency.observe(each);
        }
        counters.in_flight.sub(p.batch.len() as i64);
        let mut outcomes: Vec<Option<Outcome>> = outcomes.into_iter().map(Some).collect();
        outcomes.resize_with(p.batch.len(), || Some(Outcome::retry("no outcome")));
        // Marks are queued without waiting; a shutdown in between only means a resend.
        let (_, mut never) = watch::channel(false);
        self.record(&p.batch, outcomes, counters, &mut never).await;
    }

    /// Turns outcomes into marks (retry times, dead letters) and queues them.
    async fn record(
        &self,
        batch: &[Leased],
        outcomes: Vec<Option<Outcome>>,
        counters: &Counters,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let name = self.name.as_str();
        let Counters {
            delivered,
            retried,
            rejected,
            dead,
            ..
        } = counters;
        let mut marks = Vec::with_capacity(batch.len());
        for (d, outcome) in batch.iter().zip(outcomes) {
            let attempt = d.attempts.saturating_add(1);
            let Some(outcome) = outcome else {
                marks.push((d.seq, d.attempts, Mark::Release));
                continue;
            };
            let mark = match outcome {
                Outcome::Delivered => {
                    delivered.inc();
                    tracing::debug!(destination = %name, seq = d.seq, message_id = %d.message_id, attempt, "delivered");
                    Mark::Sent
                }
                Outcome::Retry { reason, after } => {
                    let seed = (d.seq as u64) ^ u64::from(attempt).rotate_left(32);
                    let wait = self
                        .queue
                        .retry
                        .backoff(attempt, seed)
                        .max(after.unwrap_or_default());
                    let at = crate::record::now_micros()
                        .saturating_add(i64::try_from(wait.as_micros()).unwrap_or(i64::MAX));
                    let r = &self.queue.retry;
                    let too_many = r.max_attempts > 0 && attempt >= r.max_attempts;
                    let too_old = r.max_age_secs > 0
                        && at.saturating_sub(d.created_at)
                            > i64::try_from(r.max_age_secs.saturating_mul(1_000_000))
                                .unwrap_or(i64::MAX);
                    if too_many || too_old {
                        dead.inc();
                        tracing::warn!(destination = %name, seq = d.seq, message_id = %d.message_id, attempt, "giving up; delivery dead-lettered");
                        tracing::debug!(destination = %name, seq = d.seq, reason = %reason, "last failure");
                        let why = if too_many {
                            format!("gave up after {attempt} attempts; last: {reason}")
                        } else {
                            format!("gave up: older than {} s; last: {reason}", r.max_age_secs)
                        };
                        Mark::Dead { reason: why }
                    } else {
                        retried.inc();
                        tracing::warn!(destination = %name, seq = d.seq, message_id = %d.message_id, attempt, retry_in_ms = wait.as_millis() as u64, "delivery failed; will retry");
                        tracing::debug!(destination = %name, seq = d.seq, reason = %reason, "failure");
                        Mark::Retry { at, reason }
                    }
                }
                Outcome::Reject(reason) => {
                    rejected.inc();
                    dead.inc();
                    tracing::warn!(destination = %name, seq = d.seq, message_id = %d.message_id, attempt, "delivery rejected by the receiver; dead-lettered");
                    tracing::debug!(destination = %name, seq = d.seq, reason = %reason, "rejection");
                    Mark::Dead { reason }
                }
            };
            marks.push((d.seq, attempt, mark));
        }
        // The marks go to the journal's writer ahead of the next lease, which therefore sees
        // them; waiting for their commit would only leave the pipe empty meanwhile.
        let marks = match self.store.mark_detached(marks) {
            Ok(()) => return,
            Err(marks) => marks,
        };
        if let Err(e) = self.store.mark(marks).await {
            // The leases run out and the deliveries are sent again: at least once.
            tracing::error!(destination = %name, error = %e, "cannot record the deliveries' outcomes");
            self.sleep(Duration::from_secs(1), shutdown).await;
        }
    }

    async fn sleep(&self, d: Duration, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Keeps the queue-depth and oldest-age gauges of the destinations current.
pub async fn watch_queues<S: Store>(
    store: S,
    destinations: Vec<(String, Arc<Destination>)>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    // The connection counts last seen: the counter moves by what each destination added.
    let mut opened = vec![0u64; destinations.len()];
    loop {
        for ((name, destination), seen) in destinations.iter().zip(opened.iter_mut()) {
            let now = destination.connections_opened();
            if now > *seen {
                metrics
                    .destination_connections
                    .with_label_values(&[name])
                    .inc_by(now - *seen);
                *seen = now;
            }
            if let Ok(stats) = store.queue_stats(name).await {
                metrics
                    .queue_depth
                    .with_label_values(&[name])
                    .set(i64::try_from(stats.depth).unwrap_or(i64::MAX));
                let age = stats.oldest.map_or(0.0, |t| {
                    (crate::record::now_micros().saturating_sub(t)) as f64 / 1e6
                });
                metrics
                    .queue_oldest_seconds
                    .with_label_values(&[name])
                    .set(age);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => return,
        }
    }
}
