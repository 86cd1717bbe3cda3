//! The HTTP destination: POST (or PUT, ...) each delivery to a URL.
//!
//! ```toml
//! [destinations.emr]
//! kind = "http"
//! url = "https://emr.example.org/hl7/${MSH-9-1}"        # values are URL-encoded
//! method = "POST"
//! headers = { "X-Source" = "aorta" }
//! auth = { bearer = "env:EMR_TOKEN" }                   # or { basic = { user = "aorta", password = "env:P" } }
//!                                                       # or { api_key = { header = "X-API-Key", value = "file:/etc/aorta/key" } }
//! timeout_secs = 30
//! tls = { ca = "/etc/aorta/tls/emr-ca.pem", cert = "client.pem", key = "client.key" }   # all optional;
//!                                                       # server_name = "emr.example.org" when the URL has an address
//! http2 = false                                         # true: one HTTP/2 connection (below)
//! ```
//!
//! How answers are classified: 2xx → delivered; 407 (a proxy wants other credentials: the
//! message is not at fault), 408, 429 and 5xx → retry (honouring a
//! `Retry-After` in seconds or as an HTTP date); any other status → rejected, dead-lettered with the status and
//! the start of the body; no answer (connection refused or reset, timeout) → retry. Every
//! request carries `Idempotency-Key` (message id + destination) and `Content-Type` by format.
//!
//! Connections: HTTP/1.1, at most the destination's `concurrency` at once (default one), kept
//! open between deliveries and replaced when the receiver closes one ([`super::link`]). The URL's
//! placeholders may stand in the path and query only: a destination talks to one origin.
//! `http2 = true` sends over one HTTP/2 connection instead, up to `concurrency` requests on it
//! at once (without TLS by prior knowledge, h2c; over TLS only when the receiver agrees `h2`
//! by ALPN): a receiver that accepts one session still gets the parallel workers.
//! Requests go straight to the receiver unless a proxy is configured (`HTTP_PROXY` and the like
//! are not read: what a destination connects to is in its configuration):
//!
//! ```toml
//! proxy = { url = "http://proxy.hospital.local:3128" }            # https:// URLs tunnel (CONNECT)
//! proxy = { url = "http://proxy:3128", user = "aorta", password = "env:PROXY_PASSWORD" }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use serde::Deserialize;

use super::link::{Answer, Link, LinkError, Origin, Proxy};
use super::{OutTemplate, Outcome, Outgoing};
use crate::config::Secret;

/// `[destinations.NAME]` with `kind = "http"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The URL, a template (see [`OutTemplate`]).
    pub url: String,
    /// HTTP method (default POST).
    #[serde(default = "post")]
    pub method: String,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Authentication, from a referenced secret.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    /// Seconds to wait for the whole exchange.
    #[serde(default = "thirty")]
    pub timeout_secs: u64,
    /// `Content-Type` instead of the one for the format.
    #[serde(default)]
    pub content_type: Option<String>,
    /// TLS options.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// An HTTP proxy to go through.
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    /// HTTP/2 on one connection, `concurrency` requests on it at once (see [`super::link`]).
    #[serde(default)]
    pub http2: bool,
}

/// An HTTP proxy for a destination's connections (`proxy = { url = "http://proxy:3128" }`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The proxy's address, `http://host:port`.
    pub url: String,
    /// A user name, when the proxy asks for credentials (Basic).
    #[serde(default)]
    pub user: Option<String>,
    /// Its password, a secret reference.
    #[serde(default)]
    pub password: Option<Secret>,
}

impl ProxyConfig {
    /// The proxy's address and credentials, secrets resolved.
    fn resolve(&self) -> Result<Proxy, String> {
        let (at, rest) = Origin::split(&self.url).map_err(|e| format!("proxy.url: {e}"))?;
        if !(rest.is_empty() || rest == "/") {
            return Err(format!(
                "proxy.url: {:?} must be just http://host:port",
                self.url
            ));
        }
        let authorization = match (&self.user, &self.password) {
            (None, None) => None,
            (Some(user), password) => {
                let password = match password {
                    Some(p) => p.resolve().map_err(|e| format!("proxy.password: {e}"))?,
                    None => String::new(),
                };
                Some(basic(user, &password, "proxy")?)
            }
            (None, Some(_)) => return Err("proxy: a password needs a user".into()),
        };
        Ok(Proxy { at, authorization })
    }
}

fn post() -> String {
    "POST".into()
}
fn thirty() -> u64 {
    30
}

/// How to authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HttpAuth {
    /// `Authorization: Bearer <token>`.
    Bearer(Secret),
    /// `Authorization: Basic ...`.
    Basic {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// A key in a header of its own.
    ApiKey {
        /// Header name, e.g. `X-API-Key`.
        header: String,
        /// The key.
        value: Secret,
    },
}

/// TLS for outgoing connections (HTTP and MLLP destinations).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// CA certificates (PEM) to trust instead of the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// Its key (PEM).
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// The name the receiver's certificate must carry (default: the address's or URL's host).
    #[serde(default)]
    pub server_name: Option<String>,
}

impl ClientTls {
    /// The rustls configuration these settings describe.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        let client = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => return Err("tls: give both cert and key for a client certificate".into()),
        };
        crate::tls::outgoing_config(self.ca.as_deref(), client).map_err(|e| format!("tls: {e}"))
    }
}

/// A built HTTP destination.
#[derive(Debug)]
pub struct HttpDestination {
    client: Client,
    /// The path and query after the origin, a template.
    path: OutTemplate,
    method: http::Method,
    content_type: Option<String>,
}

/// How a [`Client`] connects: at most `max` HTTP/1.1 connections, or with `http2` one HTTP/2
/// connection carrying at most `max` requests at once.
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    /// The cap (connections, or requests on the HTTP/2 connection).
    pub max: usize,
    /// HTTP/2 instead of HTTP/1.1.
    pub http2: bool,
}

/// An HTTP client for one origin with its fixed headers and credentials (shared by the HTTP
/// and FHIR destinations); its connections are a [`Link`], capped at the destination's
/// `concurrency`.
#[derive(Debug)]
pub struct Client {
    link: Link,
    headers: HeaderMap,
}

impl Client {
    /// Builds a client for the origin of `url` (its scheme decides TLS): resolves the
    /// secrets, reads TLS files; connects as `connections` says.
    pub fn build(
        url: &str,
        extra_headers: &BTreeMap<String, String>,
        auth: Option<&HttpAuth>,
        timeout_secs: u64,
        tls: Option<&ClientTls>,
        proxy: Option<&ProxyConfig>,
        connections: Connections,
    ) -> Result<Client, String> {
        use http::header::{HeaderName, AUTHORIZATION, USER_AGENT};
        let (origin, _) = Origin::split(url).map_err(|e| format!("url: {e}"))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("aorta/", env!("CARGO_PKG_VERSION"))),
        );
        for (k, v) in extra_headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("headers: {k:?} is not a header name"))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("headers.{k}: not a valid header value"))?;
            headers.insert(name, value);
        }
        match auth {
            Some(HttpAuth::Bearer(s)) => {
                let token = s.resolve().map_err(|e| format!("auth.bearer: {e}"))?;
                headers.insert(
                    AUTHORIZATION,
                    secret(format!("Bearer {token}"), "auth.bearer")?,
                );
            }
            Some(HttpAuth::Basic { user, password }) => {
                let password = password
                    .resolve()
                    .map_err(|e| format!("auth.basic.password: {e}"))?;
                headers.insert(AUTHORIZATION, basic(user, &password, "auth.basic")?);
            }
            Some(HttpAuth::ApiKey { header, value }) => {
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("auth.api_key.header: {header:?} is not a header name"))?;
                let key = value
                    .resolve()
                    .map_err(|e| format!("auth.api_key.value: {e}"))?;
                headers.insert(name, secret(key, "auth.api_key.value")?);
            }
            None => {}
        }
        let rustls = if origin.https {
            Some(match tls {
                Some(t) => (t.client_config()?, t.server_name.clone()),
                None => (
                    crate::tls::outgoing_config(None, None).map_err(|e| format!("tls: {e}"))?,
                    None,
                ),
            })
        } else {
            if tls.is_some() {
                return Err("tls: given for an http:// URL; use https://".into());
            }
            None
        };
        let proxy = proxy.map(ProxyConfig::resolve).transpose()?;
        let link = Link::new(
            origin,
            rustls,
            proxy,
            connections.max,
            connections.http2,
            Duration::from_secs(timeout_secs.clamp(1, 10)),
            Duration::from_secs(timeout_secs.max(1)),
        )?;
        Ok(Client { link, headers })
    }

    /// Connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.link.opened()
    }

    /// The fixed headers and credentials, to add a request's own to.
    pub fn headers(&self) -> HeaderMap {
        self.headers.clone()
    }

    /// Sends one request (`path`: path and query, origin-form) and reads up to `body_limit`
    /// bytes of the answer.
    pub async fn exchange(
        &self,
        method: http::Method,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
        body_limit: usize,
    ) -> Result<Answer, LinkError> {
        self.link
            .exchange(method, path, headers, body, body_limit)
            .await
    }
}

/// A header value holding a secret: marked sensitive, so it is never printed.
fn secret(v: String, what: &str) -> Result<HeaderValue, String> {
    let mut v =
        HeaderValue::from_str(&v).map_err(|_| format!("{what}: not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// `Basic` credentials (RFC 7617) as a header value, encoded once at build.
fn basic(user: &str, password: &str, what: &str) -> Result<HeaderValue, String> {
    use base64::Engine as _;
    let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    secret(format!("Basic {pair}"), what)
}

/// The path and query part of a URL template: what follows the origin, with `/` for none.
/// Placeholders may not stand in the origin: a destination's connections go to one place.
pub(super) fn path_template(url: &str) -> Result<OutTemplate, String> {
    let (_, rest) = Origin::split(url)?;
    let origin = &url[..url.len() - rest.len()];
    if origin.contains("${") {
        return Err(format!(
            "{url:?}: placeholders may stand in the path and query, not in the host or port"
        ));
    }
    let path = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    OutTemplate::parse(&path)
}

impl HttpDestination {
    /// Builds the client: resolves secrets, reads TLS files, checks the URL template.
    pub fn build(config: &HttpConfig, connections: usize) -> Result<HttpDestination, String> {
        let path = path_template(&config.url).map_err(|e| format!("url: {e}"))?;
        let method = http::Method::from_bytes(config.method.as_bytes())
            .map_err(|_| format!("method: {:?} is not an HTTP method", config.method))?;
        let client = Client::build(
            &config.url,
            &config.headers,
            config.auth.as_ref(),
            config.timeout_secs,
            config.tls.as_ref(),
            config.proxy.as_ref(),
            Connections {
                max: connections,
                http2: config.http2,
            },
        )?;
        Ok(HttpDestination {
            client,
            path,
            method,
            content_type: config.content_type.clone(),
        })
    }

    /// Connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.client.connections_opened()
    }

    /// Sends the delivery and classifies the answer.
    pub async fn send(&self, d: &Outgoing<'_>) -> Outcome {
        let path = self.path.render(d, &url_encode);
        let content_type = self.content_type.as_deref().unwrap_or(d.content_type());
        let mut headers = self.client.headers();
        let (Ok(ct), Ok(key)) = (
            HeaderValue::from_str(content_type),
            HeaderValue::from_str(d.idempotency_key),
        ) else {
            return Outcome::Reject("content type or idempotency key is not a header value".into());
        };
        headers.insert(http::header::CONTENT_TYPE, ct);
        headers.insert("idempotency-key", key);
        let body = Bytes::copy_from_slice(d.payload);
        // A delivered request's answer is read (to DRAIN_BYTES) so its connection is kept;
        // a refusal's start is its reason.
        let answer = match self
            .client
            .exchange(self.method.clone(), &path, headers, body, DRAIN_BYTES)
            .await
        {
            Ok(a) => a,
            Err(e) => return unanswered(&e),
        };
        let status = answer.status;
        if status.is_success() {
            return Outcome::Delivered;
        }
        let retry_after = retry_after_header(&answer.headers);
        let body = String::from_utf8_lossy(&answer.body);
        let snippet: String = body.chars().take(200).collect();
        let reason = format!("HTTP {status}: {}", snippet.trim());
        match status.as_u16() {
            407 | 408 | 429 | 500..=599 => Outcome::Retry {
                reason,
                after: retry_after,
            },
            _ => Outcome::Reject(reason),
        }
    }
}

/// The most of an answer's body read. A longer one is cut: the delivery's outcome stands, and
/// that connection is closed rather than reused.
const DRAIN_BYTES: usize = 64 * 1024;

/// The outcome when a request got no answer: always a retry, saying why (errors name the
/// host and port, never the path, which may hold message values).
pub(super) fn unanswered(e: &LinkError) -> Outcome {
    Outcome::retry(e.to_string())
}

/// The answer's `Retry-After`, as a wait from now.
pub(super) fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry_after(v, std::time::SystemTime::now()))
}

/// A `Retry-After` value: seconds, or an HTTP date (RFC 9110 §10.2.3), as a wait from `now`.
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub(super) fn url_encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(retry_after(&later, now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn encodings() {
        assert_eq!(url_encode("A01/x y"), "A01%2Fx%20y");
    }
}
