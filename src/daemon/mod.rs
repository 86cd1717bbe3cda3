//! Wiring and lifecycle: compile the routes, open the journal, start the route loop, bind
//! listeners and the admin endpoint, run until SIGTERM/SIGINT, then shut down in order.
//!
//! ```text
//!  listeners ──append──> journal ──(notify)──> route loop ──one txn──> queues + statuses
//!      ^ ACK after the commit (or, with after-route, after the route loop's commit)
//! ```
//!
//! Shutdown order: readiness off → listeners stop accepting → each connection finishes the
//! message it is handling (so it gets its ACK) and closes → the route loop finishes its batch
//! → destination workers finish the send in hand → the journal commits what is queued and
//! checkpoints → the admin endpoint stops → exit 0.
//!
//! - [`routing`]: the route loop.
//! - [`reload`]: hot reload of routes on SIGHUP or file changes.
//! - [`delivery`]: destination workers (lease, send, mark; retry policy).

pub mod delivery;
pub mod limits;
pub mod reload;
pub mod routing;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{self, AdminState};
use crate::config::{Config, ListenerConfig};
use crate::destination::Destination;
use crate::metrics::Metrics;
use crate::mllp::listener::{MllpListener, RoutingWaits};
use crate::route::target::Hl7Target;
use crate::route::RouteSet;
use crate::store::Partition;
use crate::store::{SqliteOptions, SqliteStore, Store};
use std::collections::HashMap;
use tokio::sync::Notify;

/// A started engine.
pub struct Running {
    /// Each listener's name and bound address (useful when the configuration says port 0).
    pub listeners: Vec<(String, SocketAddr)>,
    /// The admin endpoint's address, when enabled.
    pub admin: Option<SocketAddr>,
    /// The journal.
    pub store: SqliteStore,
    /// The metrics registry.
    pub metrics: Metrics,
    /// The routes in force; sending a new set switches them (what a reload does).
    pub routes: watch::Sender<Arc<RouteSet>>,
    shutdown: watch::Sender<bool>,
    listener_tasks: JoinSet<()>,
    route_task: tokio::task::JoinHandle<()>,
    route_stop: watch::Sender<bool>,
    worker_tasks: JoinSet<()>,
    workers_stop: watch::Sender<bool>,
    reload_stop: watch::Sender<bool>,
    reload_task: tokio::task::JoinHandle<()>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
    admin_stop: watch::Sender<bool>,
    ready: Arc<AtomicBool>,
}

/// Opens the journal and binds everything; returns once the engine accepts messages.
pub async fn start(config: &Config) -> Result<Running> {
    limits::prepare(config);
    let metrics = Metrics::new();
    let watched = reload::snapshot(config);
    let route_set = config.load_routes().map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow::anyhow!("the routes are not valid:\n{}", lines.join("\n"))
    })?;
    tracing::info!(routes = route_set.routes.len(), dir = %config.routes.dir.display(), "routes loaded");
    let (routes, routes_rx) = watch::channel(Arc::new(route_set));
    let mut options = SqliteOptions::new(&config.store.path);
    options.max_batch = config.store.max_batch;
    let windows = config.listeners.values().filter_map(|l| match l {
        ListenerConfig::Mllp(m) if m.duplicates.enabled => Some(m.duplicates.window_secs),
        _ => None,
    });
    if let Some(longest) = windows.max() {
        options.dedupe_horizon_micros =
            i64::try_from(longest.saturating_mul(1_000_000)).unwrap_or(i64::MAX);
    }
    let store = SqliteStore::open(options, metrics.clone())
        .with_context(|| format!("opening the journal {}", config.store.path.display()))?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let waits = RoutingWaits::default();
    // Destination workers: `concurrency` per destination, each with its own wake-up.
    let (workers_stop, workers_stop_rx) = watch::channel(false);
    let mut worker_tasks = JoinSet::new();
    let mut wakes: HashMap<String, Vec<Arc<Notify>>> = HashMap::new();
    let mut order_keys = HashMap::new();
    let mut built_destinations = Vec::new();
    for (name, d) in &config.destinations {
        if let Some(k) = &d.queue.order_key {
            let target = Hl7Target::parse(k)
                .map_err(|e| anyhow::anyhow!("destinations.{name}.order_key: {e}"))?;
            order_keys.insert(name.clone(), target);
        }
        let built = Destination::build(&d.settings, &d.queue)
            .map_err(|e| anyhow::anyhow!("destination {name}: {e}"))?;
        let built = Arc::new(built);
        built_destinations.push((name.clone(), built.clone()));
        let n = d.queue.concurrency.max(1);
        for index in 0..n {
            let wake = Arc::new(Notify::new());
            wakes.entry(name.clone()).or_default().push(wake.clone());
            worker_tasks.spawn(
                delivery::Worker {
                    store: store.clone(),
                    name: name.clone(),
                    destination: built.clone(),
                    queue: d.queue.clone(),
                    partition: Partition { index, of: n },
                    wake,
                    metrics: metrics.clone(),
                }
                .run(workers_stop_rx.clone()),
            );
        }
        tracing::info!(destination = %name, kind = %d.kind, workers = n, "destination ready");
    }
    worker_tasks.spawn(delivery::watch_queues(
        store.clone(),
        built_destinations,
        metrics.clone(),
        workers_stop_rx,
    ));
    // The route loop stops after the listeners: a connection waiting to acknowledge after
    // routing must see its message routed, not time out.
    let (route_stop, route_stop_rx) = watch::channel(false);
    let route_task = tokio::spawn(
        routing::RouteLoop {
            store: store.clone(),
            routes: routes_rx,
            metrics: metrics.clone(),
            waits: waits.clone(),
            wakes,
            order_keys: Arc::new(order_keys),
        }
        .run(route_stop_rx),
    );
    let (reload_stop, reload_stop_rx) = watch::channel(false);
    let reload_task = tokio::spawn(reload::run(
        config.clone(),
        watched,
        reload::hangup(),
        routes.clone(),
        metrics.clone(),
        reload_stop_rx,
    ));
    let mut listener_tasks = JoinSet::new();
    let mut listeners = Vec::new();
    for (name, l) in &config.listeners {
        match l {
            ListenerConfig::Mllp(cfg) => {
                let listener =
                    MllpListener::build(name, cfg.clone(), store.clone(), metrics.clone())
                        .map_err(|e| anyhow::anyhow!("listener {name}: {e}"))?
                        .with_routing_waits(waits.clone());
                let socket = listener
                    .bind()
                    .await
                    .with_context(|| format!("listener {name}: cannot listen on {}", cfg.bind))?;
                let addr = socket.local_addr()?;
                tracing::info!(listener = %name, %addr, tls = cfg.tls.is_some(), "listening (MLLP)");
                listeners.push((name.clone(), addr));
                listener_tasks.spawn(Arc::new(listener).serve(socket, shutdown_rx.clone()));
            }
            ListenerConfig::Fhir(cfg) => {
                let intake =
                    crate::fhir::endpoint::Intake::build(name, cfg, store.clone(), metrics.clone())
                        .map_err(|e| anyhow::anyhow!("listener {name}: {e}"))?;
                let tls = match &cfg.tls {
                    Some(t) => Some(
                        t.server_config()
                            .map_err(|e| anyhow::anyhow!("listener {name}: tls: {e}"))?,
                    ),
                    None => None,
                };
                let socket = crate::net::listen(&cfg.bind)
                    .await
                    .with_context(|| format!("listener {name}: cannot listen on {}", cfg.bind))?;
                let addr = socket.local_addr()?;
                tracing::info!(listener = %name, %addr, tls = tls.is_some(), "listening (FHIR REST at /fhir)");
                listeners.push((name.clone(), addr));
                let mut stop = shutdown_rx.clone();
                let name = name.clone();
                let max_connections = cfg.max_connections;
                listener_tasks.spawn(async move {
                    // Graceful: stop accepting, answer the requests in flight, then return.
                    let stopped = async move {
                        let _ = stop.wait_for(|s| *s).await;
                    };
                    if let Err(e) =
                        admin::serve(socket, tls, max_connections, intake.router(), stopped).await
                    {
                        tracing::error!(listener = %name, error = %e, "FHIR listener failed");
                    }
                });
            }
        }
    }
    let ready = Arc::new(AtomicBool::new(false));
    let (admin_stop, mut admin_stop_rx) = watch::channel(false);
    let (admin, admin_task) = if config.admin.bind.is_empty() {
        (None, None)
    } else {
        let token = match &config.admin.token {
            Some(s) => Some(Arc::<str>::from(
                s.resolve()
                    .map_err(|e| anyhow::anyhow!("admin.token: {e}"))?,
            )),
            None => None,
        };
        let state = AdminState {
            metrics: metrics.clone(),
            ready: ready.clone(),
            token,
        };
        let socket = crate::net::listen(&config.admin.bind)
            .await
            .with_context(|| format!("admin: cannot listen on {}", config.admin.bind))?;
        let addr = socket.local_addr()?;
        let tls = match &config.admin.tls {
            Some(t) => Some(
                t.server_config()
                    .map_err(|e| anyhow::anyhow!("admin.tls: {e}"))?,
            ),
            None => None,
        };
        tracing::info!(%addr, tls = tls.is_some(), "admin endpoint listening (/metrics, /health/live, /health/ready)");
        let stopped = async move {
            let _ = admin_stop_rx.changed().await;
        };
        let task = tokio::spawn(async move {
            if let Err(e) = admin::serve(
                socket,
                tls,
                admin::ADMIN_MAX_CONNECTIONS,
                admin::router(state),
                stopped,
            )
            .await
            {
                tracing::error!(error = %e, "admin endpoint failed");
            }
        });
        (Some(addr), Some(task))
    };
    ready.store(true, Ordering::Release);
    Ok(Running {
        listeners,
        admin,
        store,
        metrics,
        routes,
        shutdown,
        listener_tasks,
        route_task,
        route_stop,
        worker_tasks,
        workers_stop,
        reload_stop,
        reload_task,
        admin_task,
        admin_stop,
        ready,
    })
}

impl Running {
    /// The bound address of listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Graceful shutdown (see the module documentation).
    pub async fn stop(mut self) -> Result<()> {
        self.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        while self.listener_tasks.join_next().await.is_some() {}
        let _ = self.reload_stop.send(true);
        let _ = (&mut self.reload_task).await;
        let _ = self.route_stop.send(true);
        let _ = (&mut self.route_task).await;
        // Workers finish the send in hand; what is still queued waits for the next start.
        let _ = self.workers_stop.send(true);
        while self.worker_tasks.join_next().await.is_some() {}
        self.store.close().await.context("closing the journal")?;
        let _ = self.admin_stop.send(true);
        if let Some(t) = self.admin_task.take() {
            let _ = t.await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(config: &Config) -> Result<()> {
    let running = start(config).await?;
    wait_for_signal().await;
    tracing::info!("shutting down: finishing in-flight messages");
    running.stop().await
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
