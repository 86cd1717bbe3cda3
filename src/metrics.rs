//! Named events counted for Prometheus (`GET /metrics` on the admin address).
//!
//! Names follow `aorta_<noun>_<verb>_total` for counters and `_seconds` for histograms. Labels have
//! few values (listener name, ACK code, outcome) — never a control id or a patient id.

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric Aorta exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Open connections per listener.
    pub connections_open: IntGaugeVec,
    /// Connections accepted per listener.
    pub connections_accepted: IntCounterVec,
    /// Connections refused because the listener was at its connection limit.
    pub connections_refused: IntCounterVec,
    /// Messages (frames) received per listener.
    pub messages_received: IntCounterVec,
    /// Bytes received in frames per listener.
    pub bytes_received: IntCounterVec,
    /// Acknowledgements sent per listener and MSA-1 code (`AA`, `AE`, `AR`, `CA`, ...).
    pub acks_sent: IntCounterVec,
    /// Messages answered with a NAK (AE/AR/CE/CR) per listener and reason.
    pub naks_sent: IntCounterVec,
    /// FHIR intake requests per listener, interaction and HTTP status.
    pub fhir_requests: IntCounterVec,
    /// Duplicates detected per listener.
    pub duplicates: IntCounterVec,
    /// Bytes discarded between frames per listener.
    pub junk_bytes: IntCounterVec,
    /// Time from a complete frame to its ACK written, per listener.
    pub ack_latency: HistogramVec,
    /// Appends per group commit.
    pub journal_batch_size: Histogram,
    /// Duration of one group commit (log write and fdatasync; what an ACK waits for).
    pub journal_commit_seconds: Histogram,
    /// Duration of one SQLite commit of the writer thread (indexing, routing, queues).
    pub journal_index_seconds: Histogram,
    /// Rows in the journal (approximate: counted by this process since start plus at open).
    pub journal_rows: IntGauge,
    /// Messages a route matched and delivered, per route.
    pub route_matched: IntCounterVec,
    /// Messages a route's script filtered, per route.
    pub route_filtered: IntCounterVec,
    /// Messages a route failed on, per route.
    pub route_errors: IntCounterVec,
    /// Script errors, per route (a subset of `route_errors`).
    pub script_errors: IntCounterVec,
    /// Time one route took for one message (conditions and steps), per route.
    pub route_seconds: HistogramVec,
    /// Messages routed, per outcome (`routed`, `filtered`, `errored`).
    pub messages_routed: IntCounterVec,
    /// Deliveries queued per destination.
    pub deliveries_queued: IntCounterVec,
    /// Route reloads, per outcome (`ok`, `invalid`).
    pub route_reloads: IntCounterVec,
    /// Deliveries the receiver has, per destination.
    pub deliveries_sent: IntCounterVec,
    /// Failed attempts that will be tried again, per destination.
    pub deliveries_retried: IntCounterVec,
    /// Deliveries the receiver refused, per destination.
    pub deliveries_rejected: IntCounterVec,
    /// Deliveries dead-lettered (refused, or out of attempts or time), per destination.
    pub deliveries_dead: IntCounterVec,
    /// Sends under way, per destination.
    pub deliveries_in_flight: IntGaugeVec,
    /// Time one send took, per destination.
    pub delivery_seconds: HistogramVec,
    /// Deliveries waiting (queued or being sent), per destination.
    pub queue_depth: IntGaugeVec,
    /// Age of the oldest waiting delivery, per destination.
    pub queue_oldest_seconds: GaugeVec,
    /// Connections a destination opened to its receiver (reconnections show as a rising count).
    pub destination_connections: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// The `expect`s below can fail only on a programming error in these fixed definitions
    /// (an invalid name or a name registered twice), which the unit test catches.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let buckets = |start: f64, count: usize| {
            prometheus::exponential_buckets(start, 2.0, count).expect("valid buckets")
        };
        let connections_open = register(
            &registry,
            IntGaugeVec::new(
                Opts::new("aorta_connections_open", "Open connections"),
                &["listener"],
            ),
        );
        let ack_latency = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "aorta_ack_latency_seconds",
                    "Time from a complete frame to its acknowledgement written",
                )
                .buckets(buckets(0.000_1, 16)),
                &["listener"],
            ),
        );
        let journal_batch_size = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new("aorta_journal_batch_size", "Appends per group commit")
                    .buckets(buckets(1.0, 11)),
            ),
        );
        let journal_commit_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "aorta_journal_commit_seconds",
                    "Duration of one group commit (log write and fdatasync)",
                )
                .buckets(buckets(0.000_05, 16)),
            ),
        );
        let journal_index_seconds = register(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "aorta_journal_index_seconds",
                    "Duration of one SQLite commit (indexing, routing results, queue changes)",
                )
                .buckets(buckets(0.000_05, 16)),
            ),
        );
        let route_seconds = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "aorta_route_seconds",
                    "Time one route took for one message (conditions and steps)",
                )
                .buckets(buckets(0.000_001, 20)),
                &["route"],
            ),
        );
        let delivery_seconds = register(
            &registry,
            HistogramVec::new(
                HistogramOpts::new("aorta_delivery_seconds", "Time one send took")
                    .buckets(buckets(0.000_1, 18)),
                &["destination"],
            ),
        );
        let gauge = |name: &str, help: &str| {
            register(
                &registry,
                IntGaugeVec::new(Opts::new(name, help), &["destination"]),
            )
        };
        let deliveries_in_flight = gauge("aorta_deliveries_in_flight", "Sends under way");
        let queue_depth = gauge(
            "aorta_queue_depth",
            "Deliveries waiting (queued or being sent)",
        );
        let queue_oldest_seconds = register(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "aorta_queue_oldest_seconds",
                    "Age of the oldest waiting delivery",
                ),
                &["destination"],
            ),
        );
        let journal_rows = register(
            &registry,
            IntGauge::new("aorta_journal_rows", "Rows in the journal"),
        );
        Metrics {
            connections_accepted: counter(
                "aorta_connections_accepted_total",
                "Connections accepted",
                &["listener"],
            ),
            connections_refused: counter(
                "aorta_connections_refused_total",
                "Connections refused at the connection limit",
                &["listener"],
            ),
            messages_received: counter(
                "aorta_messages_received_total",
                "Messages received",
                &["listener"],
            ),
            bytes_received: counter(
                "aorta_bytes_received_total",
                "Bytes received in frames",
                &["listener"],
            ),
            acks_sent: counter(
                "aorta_acks_sent_total",
                "Acknowledgements sent",
                &["listener", "code"],
            ),
            naks_sent: counter(
                "aorta_naks_sent_total",
                "Negative acknowledgements sent",
                &["listener", "reason"],
            ),
            fhir_requests: counter(
                "aorta_fhir_requests_total",
                "FHIR intake requests by interaction and HTTP status",
                &["listener", "interaction", "status"],
            ),
            duplicates: counter(
                "aorta_duplicates_detected_total",
                "Duplicate messages",
                &["listener"],
            ),
            junk_bytes: counter(
                "aorta_junk_bytes_discarded_total",
                "Bytes discarded between frames",
                &["listener"],
            ),
            route_matched: counter(
                "aorta_route_matched_total",
                "Messages a route matched and delivered",
                &["route"],
            ),
            route_filtered: counter(
                "aorta_route_filtered_total",
                "Messages a route's script filtered",
                &["route"],
            ),
            route_errors: counter(
                "aorta_route_errors_total",
                "Messages a route failed on",
                &["route"],
            ),
            script_errors: counter("aorta_script_errors_total", "Script errors", &["route"]),
            messages_routed: counter(
                "aorta_messages_routed_total",
                "Messages routed, by outcome",
                &["outcome"],
            ),
            deliveries_queued: counter(
                "aorta_deliveries_queued_total",
                "Deliveries queued",
                &["destination"],
            ),
            route_reloads: counter(
                "aorta_route_reloads_total",
                "Route reloads, by outcome",
                &["outcome"],
            ),
            deliveries_sent: counter(
                "aorta_deliveries_sent_total",
                "Deliveries the receiver has",
                &["destination"],
            ),
            deliveries_retried: counter(
                "aorta_deliveries_retried_total",
                "Failed attempts that will be tried again",
                &["destination"],
            ),
            deliveries_rejected: counter(
                "aorta_deliveries_rejected_total",
                "Deliveries the receiver refused",
                &["destination"],
            ),
            deliveries_dead: counter(
                "aorta_deliveries_dead_lettered_total",
                "Deliveries dead-lettered",
                &["destination"],
            ),
            deliveries_in_flight,
            delivery_seconds,
            queue_depth,
            queue_oldest_seconds,
            destination_connections: counter(
                "aorta_destination_connections_opened_total",
                "Connections a destination opened to its receiver",
                &["destination"],
            ),
            route_seconds,
            connections_open,
            ack_latency,
            journal_batch_size,
            journal_commit_seconds,
            journal_index_seconds,
            journal_rows,
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

/// Registers a freshly defined metric and returns a handle to it.
fn register<C: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<C>,
) -> C {
    let metric = metric.expect("valid metric definition");
    registry
        .register(Box::new(metric.clone()))
        .expect("metric registered once");
    metric
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_named_events() {
        let m = Metrics::new();
        m.messages_received.with_label_values(&["adt"]).inc();
        m.acks_sent.with_label_values(&["adt", "AA"]).inc();
        let text = m.render();
        assert!(
            text.contains("aorta_messages_received_total{listener=\"adt\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("aorta_acks_sent_total{code=\"AA\",listener=\"adt\"} 1"),
            "{text}"
        );
    }
}
