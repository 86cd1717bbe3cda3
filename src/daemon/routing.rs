//! The route loop: journal → routes → destination queues.
//!
//! One loop, reading `received` messages in journal order after its cursor, so messages keep
//! their order (per patient and overall). Each batch is evaluated on a blocking thread (routes
//! are CPU work and scripts keep a per-thread engine), then written in one transaction —
//! deliveries, statuses and the cursor together — so a crash between the two repeats the batch,
//! never half of it. Listeners with `ack = "after-route"` hear the outcome after that commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::convert::to_v2::{to_v2, V2Options};
use crate::hl7::Message;
use crate::metrics::Metrics;
use crate::mllp::listener::{Routed, RoutingWaits};
use crate::record::Format;
use crate::route::target::{EvalContext, Hl7Target, RecordView};
use crate::route::{Disposition, Input, RouteResult, RouteSet};
use crate::store::{Routable, RoutingOutcome, Status, Store};

/// Messages read and routed per transaction, at most. Each round costs a read, a hop to a
/// blocking thread and a commit whatever its size; at 256 a round under steady load (14,000
/// msgs/s offered, routed to RabbitMQ) carried 256 messages and the destination's batches were
/// cut to that size (docs/benchmarks.md).
const BATCH: usize = 1024;

/// The route loop's parts.
pub struct RouteLoop<S: Store> {
    /// The journal and queues.
    pub store: S,
    /// The routes in force (replaced on reload).
    pub routes: watch::Receiver<Arc<RouteSet>>,
    /// Metrics.
    pub metrics: Metrics,
    /// Listeners waiting to acknowledge after routing.
    pub waits: RoutingWaits,
    /// Each destination's workers, woken when deliveries are queued for it.
    pub wakes: HashMap<String, Vec<Arc<tokio::sync::Notify>>>,
    /// Destinations with an ordering key: the path whose value keeps order among workers.
    pub order_keys: Arc<HashMap<String, Hl7Target>>,
}

impl<S: Store + Clone> RouteLoop<S> {
    /// Routes until `shutdown` turns true (finishing the batch in hand).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let notify = self.store.appended();
        let mut cursor = loop {
            match self.store.route_cursor().await {
                Ok(c) => break c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the route cursor; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        };
        loop {
            if *shutdown.borrow() {
                return;
            }
            let batch = match self.store.pending_routing(cursor, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read messages to route; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = notify.notified() => {}
                    // A safety net: appends by another process, or a missed wake-up.
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let routes = self.routes.borrow().clone();
            let metrics = self.metrics.clone();
            let keys = self.order_keys.clone();
            let evaluated = tokio::task::spawn_blocking(move || {
                evaluate_batch(&routes, batch, &metrics, &keys)
            })
            .await;
            let outcomes = match evaluated {
                Ok(o) => o,
                Err(e) => {
                    tracing::error!(error = %e, "route evaluation failed; retrying the batch");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let last = outcomes.last().map_or(cursor, |o| o.seq);
            let told: Vec<(uuid::Uuid, Routed)> = outcomes
                .iter()
                .map(|o| {
                    let r = match o.status {
                        Status::Routed => Routed::Delivered,
                        Status::Filtered => Routed::Filtered,
                        _ => Routed::Errored,
                    };
                    (o.message_id, r)
                })
                .collect();
            let counted: Vec<(Status, Vec<String>)> = outcomes
                .iter()
                .map(|o| {
                    (
                        o.status,
                        o.deliveries.iter().map(|d| d.destination.clone()).collect(),
                    )
                })
                .collect();
            match self.store.record_routing(outcomes).await {
                Ok(()) => {
                    cursor = last;
                    let mut woken: Vec<&str> = Vec::new();
                    for (_, destinations) in &counted {
                        for d in destinations {
                            if !woken.contains(&d.as_str()) {
                                woken.push(d);
                                for w in self.wakes.get(d).into_iter().flatten() {
                                    w.notify_one();
                                }
                            }
                        }
                    }
                    for (status, destinations) in counted {
                        self.metrics
                            .messages_routed
                            .with_label_values(&[status.as_str()])
                            .inc();
                        for d in destinations {
                            self.metrics
                                .deliveries_queued
                                .with_label_values(&[&d])
                                .inc();
                        }
                    }
                    for (id, r) in told {
                        self.waits.finish(&id, r);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "writing routing results failed; the batch will be routed again");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }
}

/// Routes a batch: pure work plus timing and counting.
pub fn evaluate_batch(
    routes: &RouteSet,
    batch: Vec<Routable>,
    metrics: &Metrics,
    order_keys: &HashMap<String, Hl7Target>,
) -> Vec<RoutingOutcome> {
    batch
        .into_iter()
        .map(|m| evaluate_one(routes, &m, metrics, order_keys))
        .collect()
}

fn evaluate_one(
    routes: &RouteSet,
    m: &Routable,
    metrics: &Metrics,
    order_keys: &HashMap<String, Hl7Target>,
) -> RoutingOutcome {
    let outcome = |status, error, deliveries| RoutingOutcome {
        seq: m.seq,
        message_id: m.id,
        status,
        error,
        deliveries,
    };
    // FHIR input is routed as the HL7 v2 made of its record, with the record made from the
    // FHIR itself for record paths.
    let fhir = m.format == Format::FhirJson.as_str();
    let mut from_fhir = None;
    let v2 = if fhir {
        let record = serde_json::from_slice::<serde_json::Value>(&m.raw)
            .map_err(|e| e.to_string())
            .and_then(|doc| crate::convert::fhir::to_clinical(&doc));
        match record {
            Ok(record) => {
                let options = V2Options {
                    event: match m.event.as_deref() {
                        Some("create") => Some("A04".into()),
                        _ => Some("A08".into()),
                    },
                    control_id: Some(m.id.simple().to_string()[..20].to_string()),
                    ..V2Options::default()
                };
                let bytes = to_v2(&record, &options);
                from_fhir = Some(record);
                bytes
            }
            Err(e) => {
                return outcome(
                    Status::Errored,
                    Some(format!("the FHIR cannot be read: {e}")),
                    Vec::new(),
                )
            }
        }
    } else {
        Vec::new()
    };
    let raw: &[u8] = if fhir { &v2 } else { &m.raw };
    let msg = match Message::parse(raw) {
        Ok(msg) => msg,
        Err(e) => {
            return outcome(
                Status::Errored,
                Some(format!("the message does not parse: {e}")),
                Vec::new(),
            )
        }
    };
    let control_id = msg.control_id().map(|c| c.into_owned()).unwrap_or_default();
    let record = match from_fhir {
        Some(c) => RecordView::with_clinical(&msg, c),
        None => RecordView::new(&msg),
    };
    let input = Input {
        id: m.id,
        source: &m.listener,
        raw,
        fhir: fhir.then_some(m.raw.as_slice()),
    };
    let mut results = Vec::with_capacity(routes.routes.len());
    for route in &routes.routes {
        let started = Instant::now();
        let result = route.evaluate(&input, &msg, &record);
        metrics
            .route_seconds
            .with_label_values(&[&route.name])
            .observe(started.elapsed().as_secs_f64());
        match &result {
            RouteResult::Delivered(_) => metrics
                .route_matched
                .with_label_values(&[&route.name])
                .inc(),
            RouteResult::Filtered => metrics
                .route_filtered
                .with_label_values(&[&route.name])
                .inc(),
            RouteResult::Errored(e) => {
                metrics.route_errors.with_label_values(&[&route.name]).inc();
                if result.is_script_error() {
                    metrics
                        .script_errors
                        .with_label_values(&[&route.name])
                        .inc();
                }
                // The error can quote message values; it is kept in the journal, and only
                // debug logs show it.
                tracing::warn!(route = %route.name, message_id = %m.id, control_id = %control_id, "route failed; the message is kept as errored");
                tracing::debug!(route = %route.name, message_id = %m.id, error = %e, "route error");
            }
            RouteResult::NotMatched => {}
        }
        results.push((route.name.as_str(), result));
    }
    match Disposition::of(&results) {
        Disposition::Routed(mut deliveries) => {
            for d in &mut deliveries {
                if let Some(key) = order_keys.get(&d.destination) {
                    let cx = EvalContext {
                        message: &msg,
                        record: &record,
                        scope: None,
                    };
                    d.order_key = key
                        .values_for(&cx)
                        .into_iter()
                        .next()
                        .filter(|v| !v.is_empty());
                }
            }
            outcome(Status::Routed, None, deliveries)
        }
        Disposition::Filtered => {
            tracing::debug!(message_id = %m.id, control_id = %control_id, "no route delivers the message; filtered");
            outcome(Status::Filtered, None, Vec::new())
        }
        Disposition::Errored(e) => outcome(Status::Errored, Some(e), Vec::new()),
    }
}
