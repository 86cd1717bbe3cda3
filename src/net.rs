//! Listening sockets shared by every listener (MLLP, FHIR, admin).
//!
//! `tokio::net::TcpListener::bind` listens with a backlog of 128, as the standard library
//! does. When more senders than that connect at once — 256 load-generator connections here,
//! or every interface of a hospital reconnecting after the engine restarts — the kernel's
//! accept queue overflows and drops the handshakes it has no room for (`ListenOverflows` in
//! `nstat`); those clients retry only after the SYN retransmission timeout, one second and
//! then doubling. Measured here: of 256 connections opened at once, 62–126 waited that second
//! in most runs, and the engine sat idle meanwhile (docs/benchmarks.md).

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// The accept backlog asked for; the kernel caps it at `net.core.somaxconn` (4096 by default
/// on current Linux).
pub const BACKLOG: u32 = 4096;

/// Listens on `bind` (`host:port`; each address it resolves to is tried in turn) with
/// [`BACKLOG`] and `SO_REUSEADDR`, like `TcpListener::bind` otherwise.
pub async fn listen(bind: &str) -> io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(bind).await? {
        match listen_on(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{bind:?} resolves to no address"),
        )
    }))
}

fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As tokio and the standard library do: a restarted engine can bind at once although
    // connections of the previous process linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The TLS handshake of an outgoing connection, bounded by `timeout` (MLLP sender, HTTP
/// destinations); the error says which part failed, without the peer's address.
pub async fn tls_handshake(
    connector: &tokio_rustls::TlsConnector,
    name: &rustls::pki_types::ServerName<'static>,
    tcp: tokio::net::TcpStream,
    timeout: std::time::Duration,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    tokio::time::timeout(timeout, connector.connect(name.clone(), tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn more_connections_than_the_default_backlog_connect_at_once() {
        let listener = listen("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // The kernel's cap, where it can be read (older kernels default to 128).
        let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok())
            .unwrap_or(4096);
        let n = cap.min(300);
        // Nothing accepts while they connect: every handshake must fit in the accept queue.
        let mut streams = Vec::new();
        for _ in 0..n {
            let s = tokio::time::timeout(
                std::time::Duration::from_millis(500),
                tokio::net::TcpStream::connect(addr),
            )
            .await
            .expect("connect waited for a SYN retransmission: the accept queue overflowed")
            .unwrap();
            streams.push(s);
        }
        for _ in 0..n {
            listener.accept().await.unwrap();
        }
    }

    #[tokio::test]
    async fn names_and_bad_addresses() {
        let l = listen("localhost:0").await.unwrap();
        assert!(l.local_addr().unwrap().ip().is_loopback());
        assert!(listen("not an address").await.is_err());
    }
}
