//! HTTP/1.1 connections a destination owns, never more than its cap at once.
//!
//! The HTTP and FHIR destinations send through a [`Link`]: up to `connections` HTTP/1.1
//! connections to one origin, each carrying one request at a time. The cap is strict — some
//! receivers accept one session only — so a request waits for a connection to come free
//! (and for it to be ready for the next request) instead of opening another one. A pooled
//! client such as reqwest's cannot promise that: when a request starts before the previous
//! answer's connection is back in its pool, it opens a second connection, and it has no
//! limit on connections per host.
//!
//! A connection found closed when it is taken is replaced; a request that a reused
//! connection could not even start (the receiver closed it while idle) goes once more on a
//! new connection. An answer whose body is longer than the caller reads, an exchange cut by
//! the timeout, or a broken connection: that connection is dropped, never reused.
//!
//! With `http2 = true` the link keeps **one** HTTP/2 connection (prior knowledge for http://,
//! ALPN `h2` for https://) and sends up to `connections` requests on it at once, as streams:
//! a receiver that accepts one session only still gets a destination's parallel workers
//! (`concurrency` with `order_key`). A connection that closed or broke is replaced by one
//! new connection, never by several.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, HOST};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1::SendRequest, http2};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Where a link connects: scheme, host and port of a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// TLS or not.
    pub https: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// Port (the scheme's default when the URL has none).
    pub port: u16,
    /// The `Host` header: host, and the port when it is not the default.
    pub authority: String,
}

impl Origin {
    /// Splits an absolute `http(s)://` URL into its origin and the rest (path and query,
    /// `/` when empty). The rest is returned as written.
    pub fn split(url: &str) -> Result<(Origin, &str), String> {
        let (https, after) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!("{url:?} must start with http:// or https://"));
        };
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let (authority, rest) = after.split_at(end);
        if authority.contains('@') {
            return Err("the URL must not carry credentials; use `auth`".into());
        }
        if rest.contains('#') {
            return Err("the URL must not have a fragment (#...)".into());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(r) => {
                let (h, after) = r
                    .split_once(']')
                    .ok_or_else(|| format!("{authority:?}: `[` without `]`"))?;
                h.parse::<std::net::Ipv6Addr>()
                    .map_err(|_| format!("{h:?} is not an IPv6 address"))?;
                match after {
                    "" => (h, None),
                    p => (
                        h,
                        Some(
                            p.strip_prefix(':')
                                .ok_or_else(|| format!("{authority:?} is not a host and port"))?,
                        ),
                    ),
                }
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let name_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
        if host.is_empty() || !(authority.starts_with('[') || host.bytes().all(name_ok)) {
            return Err(format!("{authority:?} is not a host and port"));
        }
        let default = if https { 443 } else { 80 };
        let port = match port {
            None => default,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{p:?} is not a port"))?,
        };
        let shown = if authority.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_ascii_lowercase()
        };
        let authority = if port == default {
            shown
        } else {
            format!("{shown}:{port}")
        };
        let host = host.to_ascii_lowercase();
        Ok((
            Origin {
                https,
                host,
                port,
                authority,
            },
            rest,
        ))
    }
}

/// An HTTP proxy the connections go through: `CONNECT` tunnels for https origins, requests
/// in absolute form (`POST http://host/path`) for http ones.
#[derive(Debug, Clone)]
pub struct Proxy {
    /// Where the proxy listens (an `http://` URL's host and port).
    pub at: Origin,
    /// `Proxy-Authorization`, when the proxy wants credentials.
    pub authorization: Option<HeaderValue>,
}

/// Why an exchange got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// No connection (refused, unreachable, name not found, TLS handshake failed).
    Connect(String),
    /// No whole answer within the timeout.
    Timeout,
    /// The connection broke while sending or waiting.
    Failed(String),
}

impl std::fmt::Display for LinkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkError::Connect(e) => write!(f, "cannot connect: {e}"),
            LinkError::Timeout => f.write_str("no answer within the timeout"),
            LinkError::Failed(e) => write!(f, "the request failed: {e}"),
        }
    }
}

/// A receiver's answer: status, headers and the body read (up to the caller's limit).
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body, or its first bytes when it was longer than the limit.
    pub body: Bytes,
    /// The body is all there (not cut at the limit).
    pub whole: bool,
}

type Sender = SendRequest<Full<Bytes>>;
type Sender2 = http2::SendRequest<Full<Bytes>>;

/// Up to `connections` HTTP/1.1 connections to one origin, or one HTTP/2 connection carrying
/// up to `connections` requests (see the module doc).
pub struct Link {
    origin: Origin,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls::pki_types::ServerName<'static>,
    )>,
    slots: Semaphore,
    idle: Mutex<Vec<Sender>>,
    /// HTTP/2: the one connection (`None` before the first request, and after a connect failed).
    h2: Option<tokio::sync::Mutex<Option<Sender2>>>,
    connect_timeout: Duration,
    timeout: Duration,
    host: HeaderValue,
    proxy: Option<Proxy>,
    opened: AtomicU64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("origin", &self.origin)
            .field("connections", &self.slots.available_permits())
            .finish()
    }
}

impl Link {
    /// A link to `origin` with at most `connections` connections (with `http2`, one
    /// connection carrying at most `connections` requests at once); `tls` (configuration, and
    /// the name the certificate must carry when not the host) is required for an https
    /// origin. `timeout` bounds a whole exchange, connecting included.
    pub fn new(
        origin: Origin,
        tls: Option<(rustls::ClientConfig, Option<String>)>,
        proxy: Option<Proxy>,
        connections: usize,
        http2: bool,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Link, String> {
        if proxy.as_ref().is_some_and(|p| p.at.https) {
            return Err(
                "proxy: an https:// proxy is not supported; give its http:// address".into(),
            );
        }
        if http2 && proxy.is_some() && !origin.https {
            // A forwarding proxy takes HTTP/1.1 requests in absolute form; only a tunnel
            // (https://) carries HTTP/2 end to end.
            return Err("http2: through a proxy only for https:// URLs".into());
        }
        let tls = match (origin.https, tls) {
            (true, Some((mut config, server_name))) => {
                config.alpn_protocols = vec![if http2 {
                    b"h2".to_vec()
                } else {
                    b"http/1.1".to_vec()
                }];
                // The name the certificate must carry: the URL's host unless given.
                let name = server_name.unwrap_or_else(|| origin.host.clone());
                let name = rustls::pki_types::ServerName::try_from(name.clone())
                    .map_err(|_| format!("{name:?} is not a valid TLS server name"))?;
                Some((
                    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
                    name,
                ))
            }
            (true, None) => return Err("an https URL needs a TLS configuration".into()),
            (false, _) => None,
        };
        let host = HeaderValue::from_str(&origin.authority)
            .map_err(|_| format!("{:?} is not a valid Host header", origin.authority))?;
        Ok(Link {
            origin,
            tls,
            slots: Semaphore::new(connections.max(1)),
            idle: Mutex::new(Vec::new()),
            h2: http2.then(|| tokio::sync::Mutex::new(None)),
            connect_timeout,
            timeout,
            host,
            proxy,
            opened: AtomicU64::new(0),
        })
    }

    /// Connections opened so far.
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Sends `method path` (origin-form: path and query) with `headers` and `body`, and reads
    /// the answer's body up to `body_limit` bytes. `Host` is set here.
    pub async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        body_limit: usize,
    ) -> Result<Answer, LinkError> {
        let target = request_target(path);
        // Absolute form for HTTP/2, which takes :scheme and :authority from the URI, and for a
        // proxy forwarding plain HTTP, which learns the destination from the request line.
        let absolute = self.h2.is_some() || (self.proxy.is_some() && !self.origin.https);
        let uri: Uri = if absolute {
            let scheme = if self.origin.https {
                "https://"
            } else {
                "http://"
            };
            let mut absolute =
                String::with_capacity(scheme.len() + self.origin.authority.len() + target.len());
            absolute.push_str(scheme);
            absolute.push_str(&self.origin.authority);
            absolute.push_str(&target);
            absolute.parse()
        } else {
            target.parse()
        }
        .map_err(|_| LinkError::Failed("the request path is not a valid URI path".into()))?;
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        if self.h2.is_some() {
            *request.version_mut() = http::Version::HTTP_2;
        } else {
            request.headers_mut().insert(HOST, self.host.clone());
        }
        if let Some(Proxy {
            authorization: Some(auth),
            ..
        }) = &self.proxy
        {
            if !self.origin.https {
                request
                    .headers_mut()
                    .insert(http::header::PROXY_AUTHORIZATION, auth.clone());
            }
        }
        // The permit is what keeps the cap: it is held from taking a connection until the
        // connection is back among the idle ones (or dropped).
        let Ok(_permit) = self.slots.acquire().await else {
            return Err(LinkError::Failed("the destination is shutting down".into()));
        };
        let exchange = async {
            match &self.h2 {
                Some(conn) => self.send2(conn, request, body_limit).await,
                None => self.send(request, body_limit).await,
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::Timeout),
        }
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
        body_limit: usize,
    ) -> Result<Answer, LinkError> {
        let (mut sender, reused) = match self.take_idle().await {
            Some(s) => (s, true),
            None => (self.connect().await?, false),
        };
        let response = match sender.try_send_request(request).await {
            Ok(r) => r,
            Err(mut e) => match e.take_message() {
                // Not sent at all: a kept connection the receiver had closed. Once more, new.
                Some(request) if reused => {
                    sender = self.connect().await?;
                    sender
                        .send_request(request)
                        .await
                        .map_err(|e| LinkError::Failed(error_chain(&e)))?
                }
                _ => return Err(LinkError::Failed(error_chain(e.error()))),
            },
        };
        let answer = read_body(response, body_limit).await?;
        if answer.whole && !sender.is_closed() {
            if let Ok(mut idle) = self.idle.lock() {
                idle.push(sender);
            }
        }
        Ok(answer)
    }

    /// An exchange as one stream of the HTTP/2 connection, opening it first when there is
    /// none (or it has closed).
    async fn send2(
        &self,
        conn: &tokio::sync::Mutex<Option<Sender2>>,
        request: Request<Full<Bytes>>,
        body_limit: usize,
    ) -> Result<Answer, LinkError> {
        let (mut sender, fresh) = {
            // Held while connecting, so that requests arriving meanwhile wait for this
            // connection instead of opening their own.
            let mut slot = conn.lock().await;
            match slot.as_ref() {
                Some(s) if !s.is_closed() => (s.clone(), false),
                _ => {
                    *slot = None;
                    let s = self.connect2().await?;
                    *slot = Some(s.clone());
                    (s, true)
                }
            }
        };
        let failed = |e: hyper::Error| {
            let mut why = error_chain(&e);
            if fresh && !self.origin.https {
                // Without TLS nothing agrees the protocol first: an HTTP/1.1 server just
                // drops the HTTP/2 preface, and this is all the client sees of it.
                why.push_str(" (on a new connection: does the receiver speak HTTP/2 without TLS? it was asked to: http2 = true)");
            }
            LinkError::Failed(why)
        };
        // Ready once the receiver allows another stream (its SETTINGS_MAX_CONCURRENT_STREAMS).
        sender.ready().await.map_err(failed)?;
        let response = sender.send_request(request).await.map_err(failed)?;
        read_body(response, body_limit).await
    }

    /// Opens the HTTP/2 connection; it runs as a task of its own until every handle to it is
    /// dropped or the receiver closes it.
    async fn connect2(&self) -> Result<Sender2, LinkError> {
        let stream = self.open().await?;
        let (sender, connection) =
            http2::handshake(hyper_util::rt::TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| LinkError::Connect(format!("HTTP/2: {}", error_chain(&e))))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
        self.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(origin = %self.origin.authority, "HTTP/2 connection opened");
        Ok(sender)
    }

    /// An idle connection ready for a request, if one is left open.
    async fn take_idle(&self) -> Option<Sender> {
        loop {
            let mut sender = self.idle.lock().ok()?.pop()?;
            // Ready waits for the connection to finish with the answer before (the reason a
            // second connection is never needed); an error means it has closed.
            if sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    async fn connect(&self) -> Result<Sender, LinkError> {
        let sender = handshake(self.open().await?).await?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(origin = %self.origin.authority, "connection opened");
        Ok(sender)
    }

    /// A byte stream to the origin: TCP (through the proxy's tunnel, if any), then TLS for
    /// an https origin, its ALPN agreed.
    async fn open(&self) -> Result<Box<dyn Io>, LinkError> {
        let o = &self.origin;
        let first = self.proxy.as_ref().map_or(o, |p| &p.at);
        let mut tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((first.host.as_str(), first.port)),
        )
        .await
        .map_err(|_| LinkError::Connect(format!("no connection to {} in time", first.authority)))?
        .map_err(|e| LinkError::Connect(format!("{}: {e}", first.authority)))?;
        if let (Some(p), true) = (&self.proxy, o.https) {
            tokio::time::timeout(self.connect_timeout, tunnel(&mut tcp, o, p))
                .await
                .map_err(|_| {
                    LinkError::Connect(format!("proxy {}: no tunnel in time", p.at.authority))
                })??;
        }
        let _ = tcp.set_nodelay(true);
        Ok(match &self.tls {
            None => Box::new(tcp),
            Some((connector, name)) => {
                let tls = crate::net::tls_handshake(connector, name, tcp, self.connect_timeout)
                    .await
                    .map_err(LinkError::Connect)?;
                if self.h2.is_some() && tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(LinkError::Connect(format!(
                        "{}: the receiver does not offer HTTP/2 (ALPN h2); set http2 = false",
                        o.authority
                    )));
                }
                Box::new(tls)
            }
        })
    }
}

/// The byte stream under a connection: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Reads an answer's body up to `body_limit` bytes.
async fn read_body(
    response: http::Response<hyper::body::Incoming>,
    body_limit: usize,
) -> Result<Answer, LinkError> {
    let (parts, mut incoming) = response.into_parts();
    let mut body = Vec::new();
    let mut whole = true;
    loop {
        match incoming.frame().await {
            None => break,
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if body.len() + data.len() > body_limit {
                        body.extend_from_slice(&data[..body_limit - body.len()]);
                        whole = false;
                        break;
                    }
                    body.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(LinkError::Failed(error_chain(&e))),
        }
    }
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::from(body),
        whole,
    })
}

/// Asks the proxy for a tunnel to `origin` (`CONNECT host:port`) and reads its answer: a 2xx
/// opens the tunnel, anything else is why there is none.
async fn tunnel(tcp: &mut TcpStream, origin: &Origin, proxy: &Proxy) -> Result<(), LinkError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = format!("{}:{}", bracketed(&origin.host), origin.port);
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        head.push_str("Proxy-Authorization: ");
        head.push_str(auth.to_str().unwrap_or_default());
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let fail = |e: String| LinkError::Connect(format!("proxy {}: {e}", proxy.at.authority));
    tcp.write_all(head.as_bytes())
        .await
        .map_err(|e| fail(e.to_string()))?;
    // Byte by byte up to the blank line: what follows is the origin's, TLS from here on.
    let mut answer = Vec::with_capacity(256);
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= 16 * 1024 {
            return Err(fail("its answer to CONNECT has no end".into()));
        }
        let b = tcp.read_u8().await.map_err(|e| fail(e.to_string()))?;
        answer.push(b);
    }
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or_default();
    let code = status_line.split(' ').nth(1).unwrap_or_default();
    if code.len() == 3 && code.starts_with('2') {
        Ok(())
    } else {
        Err(fail(format!(
            "CONNECT {target} answered {:?}",
            status_line.trim()
        )))
    }
}

/// An IPv6 address in brackets, as it stands in a URL; a name as it is.
fn bracketed(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') {
        std::borrow::Cow::Owned(format!("[{host}]"))
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// Starts HTTP/1.1 on an open stream; the connection runs as a task of its own until the
/// sender is dropped or the receiver closes it.
async fn handshake(stream: Box<dyn Io>) -> Result<Sender, LinkError> {
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| LinkError::Connect(error_chain(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "connection ended");
        }
    });
    Ok(sender)
}

/// `path` as a request target: `/` when empty, and every byte RFC 3986 does not allow in a
/// path or query percent-encoded (a space, `|` in `identifier=system|value`, non-ASCII), as a
/// browser sends it; what is already encoded stays.
fn request_target(path: &str) -> std::borrow::Cow<'_, str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b);
    let start = if path.starts_with('/') { "" } else { "/" };
    if start.is_empty() && path.bytes().all(allowed) {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 8);
    out.push_str(start);
    for b in path.bytes() {
        if allowed(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// An error with its sources, one after the other.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets() {
        assert_eq!(request_target("/a/b?c=d%20e"), "/a/b?c=d%20e");
        assert_eq!(request_target(""), "/");
        assert_eq!(request_target("?x=1"), "/?x=1");
        assert_eq!(
            request_target("/Patient?identifier=urn:oid:1.2|12 3"),
            "/Patient?identifier=urn:oid:1.2%7C12%203"
        );
        assert_eq!(request_target("/é\\"), "/%C3%A9%5C");
        for t in ["/Patient?identifier=urn:oid:1.2|12 3", "/\"{}^`<>\\"] {
            assert!(request_target(t).parse::<Uri>().is_ok(), "{t}");
        }
    }

    #[test]
    fn origins() {
        let (o, rest) = Origin::split("https://emr.example.org/hl7/${MSH-9-1}?a=b").unwrap();
        assert_eq!(
            (o.https, o.host.as_str(), o.port, o.authority.as_str()),
            (true, "emr.example.org", 443, "emr.example.org")
        );
        assert_eq!(rest, "/hl7/${MSH-9-1}?a=b");
        let (o, rest) = Origin::split("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (o.port, o.authority.as_str(), rest),
            (8080, "127.0.0.1:8080", "")
        );
        let (o, _) = Origin::split("http://[::1]:9/x").unwrap();
        assert_eq!((o.host.as_str(), o.authority.as_str()), ("::1", "[::1]:9"));
        let (o, rest) = Origin::split("http://h?q=1").unwrap();
        assert_eq!((o.authority.as_str(), rest), ("h", "?q=1"));
        assert!(Origin::split("ftp://h/").is_err());
        assert!(Origin::split("http://user:pw@h/").is_err());
        assert!(Origin::split("http:///x").is_err());
        assert!(Origin::split("http://h:99999/").is_err());
        assert!(Origin::split("http://h/#frag").is_err());
        assert!(Origin::split("http://h#frag").is_err());
    }
}
