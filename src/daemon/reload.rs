//! Hot reload of routes: on SIGHUP, or when a file under the routes or tables directory (or the
//! configuration file) changes.
//!
//! A reload reads the configuration file again and compiles every route. Only if all of it is
//! valid does the route loop switch, atomically, between two batches: messages in flight finish
//! under the routes they started with. If anything is invalid the running routes stay, and every
//! error is logged. Listener, store, admin and destination settings take effect at the next
//! restart: a destination added by a reload is known to the routes at once, and its deliveries
//! wait in its queue until a restart starts its workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::route::RouteSet;

/// How often files are checked for changes.
const POLL: Duration = Duration::from_secs(2);

/// What the watched files looked like: names, sizes, modification times.
pub type Snapshot = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The files a configuration's routes are read from, as they are now. Take it *before* loading
/// the routes, so a change made while they load is seen as a change.
pub fn snapshot(config: &Config) -> Snapshot {
    fingerprint(&config.file, &config.routes.dir, &config.routes.tables)
}

/// SIGHUP, registered before the engine reports itself started (an unhandled SIGHUP would
/// end the process).
#[cfg(unix)]
pub type Hangup = Option<tokio::signal::unix::Signal>;
/// No SIGHUP off Unix.
#[cfg(not(unix))]
pub type Hangup = Option<()>;

/// Registers the SIGHUP handler.
pub fn hangup() -> Hangup {
    #[cfg(unix)]
    {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Watches for reload triggers until `shutdown`; `seen` is the [`snapshot`] taken before the
/// running routes were loaded.
pub async fn run(
    config: Config,
    seen: Snapshot,
    #[cfg_attr(not(unix), allow(unused_mut, unused_variables))] mut hangup: Hangup,
    routes: watch::Sender<Arc<RouteSet>>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let config_file = config.file.clone();
    let watch_files = config.routes.watch;
    let mut dirs = (config.routes.dir.clone(), config.routes.tables.clone());
    let running = config;
    let mut seen = seen;
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        let signalled = tokio::select! {
            _ = hup => true,
            _ = tokio::time::sleep(POLL) => false,
            _ = shutdown.changed() => return,
        };
        if !signalled {
            if !watch_files {
                continue;
            }
            let now = fingerprint(&config_file, &dirs.0, &dirs.1);
            if now == seen {
                continue;
            }
            seen = now;
        }
        let why = if signalled {
            "SIGHUP"
        } else {
            "a file changed"
        };
        if let Some(new_dirs) = reload(&running, &routes, &metrics, why) {
            dirs = new_dirs;
            seen = fingerprint(&config_file, &dirs.0, &dirs.1);
        }
    }
}

/// Loads and swaps; returns the (possibly moved) routes and tables directories when it did.
fn reload(
    running: &Config,
    routes: &watch::Sender<Arc<RouteSet>>,
    metrics: &Metrics,
    why: &str,
) -> Option<(PathBuf, PathBuf)> {
    let config = match Config::load(&running.file, false) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "reload refused: configuration error");
            }
            metrics.route_reloads.with_label_values(&["invalid"]).inc();
            return None;
        }
    };
    if config.destinations != running.destinations {
        tracing::warn!("destination changes take effect at the next restart; until then deliveries to a new destination wait in its queue");
    }
    if config.listeners != running.listeners
        || config.store != running.store
        || config.admin != running.admin
        || config.logging != running.logging
    {
        tracing::warn!("listener, store, admin and logging changes take effect at the next restart; routes and tables now");
    }
    match config.load_routes() {
        Ok(set) => {
            let n = set.routes.len();
            routes.send_replace(Arc::new(set));
            metrics.route_reloads.with_label_values(&["ok"]).inc();
            tracing::info!(trigger = why, routes = n, "routes reloaded");
            Some((config.routes.dir, config.routes.tables))
        }
        Err(errors) => {
            for e in &errors {
                tracing::error!(error = %e, "reload refused: route error; the running routes stay");
            }
            metrics.route_reloads.with_label_values(&["invalid"]).inc();
            None
        }
    }
}

/// Names, sizes and modification times of every file that a reload would read.
fn fingerprint(config: &Path, routes: &Path, tables: &Path) -> Snapshot {
    let mut out = Vec::new();
    let mut add = |p: &Path| {
        if let Ok(m) = std::fs::metadata(p) {
            out.push((p.to_path_buf(), m.len(), m.modified().ok()));
        }
    };
    add(config);
    for dir in [routes, tables] {
        walk(dir, 0, &mut add);
    }
    out.sort();
    out
}

fn walk(dir: &Path, depth: usize, add: &mut dyn FnMut(&Path)) {
    // Route scripts sit one or two levels down; fixtures do not matter but are cheap to stat.
    if depth > 3 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, depth + 1, add);
        } else {
            add(&p);
        }
    }
}
