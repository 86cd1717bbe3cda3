//! The admin endpoint: Prometheus metrics and health probes (the REST API and dashboard join
//! with their issue).
//!
//! - `GET /metrics` — Prometheus text; needs `Authorization: Bearer <token>` when a token is set.
//! - `GET /health/live` — 200 while the process runs.
//! - `GET /health/ready` — 200 once the journal is open and every listener is bound, 503 before
//!   and during shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    /// The metrics to export.
    pub metrics: Metrics,
    /// Set when the daemon is ready to take messages.
    pub ready: Arc<AtomicBool>,
    /// Bearer token for protected endpoints, when configured.
    pub token: Option<Arc<str>>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health/live", get(|| async { "live\n" }))
        .route("/health/ready", get(ready))
        .with_state(state)
}

fn authorized(state: &AdminState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.token else {
        return true;
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let given = given.strip_prefix("Bearer ").unwrap_or("");
    // Constant-time comparison: the token must not leak through response timing.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    if !authorized(&state, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn ready(State(state): State<AdminState>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

/// Connections the admin endpoint holds open at once (scrapers, dashboards, operators).
pub const ADMIN_MAX_CONNECTIONS: usize = 256;

/// Serves `router` on `socket` (over TLS when `tls` is given) with at most `max_connections`
/// open until `stopped`, then finishes the requests in flight.
pub async fn serve(
    socket: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    router: Router,
    stopped: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    match tls {
        Some(tls) => {
            axum::serve(TlsListener::new(socket, tls, max_connections), router)
                .with_graceful_shutdown(stopped)
                .await
        }
        None => {
            axum::serve(Limited::new(socket, max_connections), router)
                .with_graceful_shutdown(stopped)
                .await
        }
    }
}

/// A listener that holds at most so many connections open: at the limit it stops accepting
/// (new clients wait in the kernel's backlog, costing the engine no descriptor) until one
/// closes. Without it every client that connects holds a descriptor, and enough of them
/// exhaust the process's open files for the MLLP listeners and the journal too.
pub struct Limited<L> {
    inner: L,
    slots: Arc<tokio::sync::Semaphore>,
}

impl<L> Limited<L> {
    /// Wraps `inner`, allowing `max` connections (at least one).
    pub fn new(inner: L, max: usize) -> Limited<L> {
        Limited {
            inner,
            slots: Arc::new(tokio::sync::Semaphore::new(max.max(1))),
        }
    }
}

impl<L: axum::serve::Listener> axum::serve::Listener for Limited<L> {
    type Io = Counted<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match self.slots.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        };
        let (io, addr) = self.inner.accept().await;
        (Counted { io, _slot: permit }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection of a [`Limited`] listener; closing it frees its slot.
pub struct Counted<T> {
    io: T,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Counted<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A TLS connection with its slot of the listener's connection limit.
type TlsConnection = Counted<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>;

/// A TCP listener with TLS on top, for axum (the admin endpoint and the FHIR intake).
///
/// Handshakes run concurrently (at most 256 at once, 10 s each) in a task of their own, so a
/// slow or silent client holds up nobody else; finished ones queue for `accept`. A connection
/// takes its slot of the limit before it is accepted (so handshakes count too) and gives it
/// back when it closes. Dropping the listener stops that task and closes the socket.
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(TlsConnection, SocketAddr)>,
    local: std::io::Result<SocketAddr>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Wraps a bound listener, allowing `max_connections` open at once (at least one).
    pub fn new(
        tcp: tokio::net::TcpListener,
        config: Arc<rustls::ServerConfig>,
        max_connections: usize,
    ) -> TlsListener {
        let local = tcp.local_addr();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (tx, ready) = tokio::sync::mpsc::channel(64);
        let limit = Arc::new(tokio::sync::Semaphore::new(256));
        let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
        let task = tokio::spawn(async move {
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, addr) = match tcp.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx
                                .send((
                                    Counted {
                                        io: tls,
                                        _slot: slot,
                                    },
                                    addr,
                                ))
                                .await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener { ready, local, task }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsConnection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accepting task is gone (it only ends when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.local {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}
