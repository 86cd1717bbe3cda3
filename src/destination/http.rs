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
//! tls = { ca = "/etc/aorta/tls/emr-ca.pem", cert = "client.pem", key = "client.key" }   # all optional
//! ```
//!
//! How answers are classified: 2xx → delivered; 408, 429 and 5xx → retry (honouring a
//! `Retry-After` in seconds or as an HTTP date); any other status → rejected, dead-lettered with the status and
//! the start of the body; no answer (connection refused or reset, timeout) → retry. Every
//! request carries `Idempotency-Key` (message id + destination) and `Content-Type` by format.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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
    /// The name the receiver's certificate must carry (MLLP; default: the address's host).
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
    url: OutTemplate,
    method: reqwest::Method,
    content_type: Option<String>,
}

/// An HTTP client with its fixed headers and credentials (shared by the HTTP and FHIR
/// destinations).
#[derive(Debug)]
pub struct Client {
    inner: reqwest::Client,
    headers: reqwest::header::HeaderMap,
    basic: Option<(String, String)>,
}

impl Client {
    /// Builds a client for `url` (its scheme decides TLS): resolves the secrets, reads TLS files.
    pub fn build(
        url: &str,
        extra_headers: &BTreeMap<String, String>,
        auth: Option<&HttpAuth>,
        timeout_secs: u64,
        tls: Option<&ClientTls>,
        connections: usize,
    ) -> Result<Client, String> {
        use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION};
        let mut headers = reqwest::header::HeaderMap::new();
        let mut basic = None;
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
                let mut v = HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| "auth.bearer: not a valid header value".to_string())?;
                v.set_sensitive(true);
                headers.insert(AUTHORIZATION, v);
            }
            Some(HttpAuth::Basic { user, password }) => {
                let password = password
                    .resolve()
                    .map_err(|e| format!("auth.basic.password: {e}"))?;
                basic = Some((user.clone(), password));
            }
            Some(HttpAuth::ApiKey { header, value }) => {
                let name = HeaderName::from_bytes(header.as_bytes())
                    .map_err(|_| format!("auth.api_key.header: {header:?} is not a header name"))?;
                let key = value
                    .resolve()
                    .map_err(|e| format!("auth.api_key.value: {e}"))?;
                let mut v = HeaderValue::from_str(&key)
                    .map_err(|_| "auth.api_key.value: not a valid header value".to_string())?;
                v.set_sensitive(true);
                headers.insert(name, v);
            }
            None => {}
        }
        // reqwest wants a process-wide rustls provider even for plain http; Aorta uses ring
        // everywhere (installing twice is refused, which is fine).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(timeout_secs.max(1)))
            .connect_timeout(Duration::from_secs(timeout_secs.clamp(1, 10)))
            .pool_max_idle_per_host(connections.max(1));
        let builder = if url.starts_with("https://") || tls.is_some() {
            let mut rustls = match tls {
                Some(t) => t.client_config()?,
                None => crate::tls::outgoing_config(None, None).map_err(|e| format!("tls: {e}"))?,
            };
            rustls.alpn_protocols = vec![b"http/1.1".to_vec()];
            builder.tls_backend_preconfigured(rustls)
        } else {
            builder
        };
        let inner = builder
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Client {
            inner,
            headers,
            basic,
        })
    }

    /// A request with the fixed headers and credentials in place.
    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut request = self.inner.request(method, url);
        if let Some((user, password)) = &self.basic {
            request = request.basic_auth(user, Some(password));
        }
        request.headers(self.headers.clone())
    }
}

impl HttpDestination {
    /// Builds the client: resolves secrets, reads TLS files, checks the URL template.
    pub fn build(config: &HttpConfig, connections: usize) -> Result<HttpDestination, String> {
        let url = OutTemplate::parse(&config.url).map_err(|e| format!("url: {e}"))?;
        if !(config.url.starts_with("http://") || config.url.starts_with("https://")) {
            return Err(format!(
                "url: {:?} must start with http:// or https://",
                config.url
            ));
        }
        let method = reqwest::Method::from_bytes(config.method.as_bytes())
            .map_err(|_| format!("method: {:?} is not an HTTP method", config.method))?;
        let client = Client::build(
            &config.url,
            &config.headers,
            config.auth.as_ref(),
            config.timeout_secs,
            config.tls.as_ref(),
            connections,
        )?;
        Ok(HttpDestination {
            client,
            url,
            method,
            content_type: config.content_type.clone(),
        })
    }

    /// Sends the delivery and classifies the answer.
    pub async fn send(&self, d: &Outgoing<'_>) -> Outcome {
        let url = self.url.render(d, &url_encode);
        let content_type = self.content_type.as_deref().unwrap_or(d.content_type());
        let request = self
            .client
            .request(self.method.clone(), &url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header("Idempotency-Key", d.idempotency_key)
            .body(d.payload.to_vec());
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return unanswered(&e),
        };
        let status = response.status();
        if status.is_success() {
            drain(response).await;
            return Outcome::Delivered;
        }
        let retry_after = retry_after_header(&response);
        let body = response.text().await.unwrap_or_default();
        let snippet: String = body.chars().take(200).collect();
        let reason = format!("HTTP {status}: {}", snippet.trim());
        match status.as_u16() {
            408 | 429 | 500..=599 => Outcome::Retry {
                reason,
                after: retry_after,
            },
            _ => Outcome::Reject(reason),
        }
    }
}

/// The most of a successful answer's body read (and dropped) so that its connection is kept.
const DRAIN_BYTES: usize = 64 * 1024;

/// Reads a delivered request's answer to its end: the client puts a connection back in its
/// pool only once the body is read, so a receiver that sends its acknowledgement after the
/// headers (chunked, or in a later packet) cost a new connection — and a TLS handshake — per
/// delivery. A body longer than [`DRAIN_BYTES`] is left: the delivery stands either way, and
/// that connection closes.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while read <= DRAIN_BYTES {
        match response.chunk().await {
            Ok(Some(c)) => read += c.len(),
            Ok(None) | Err(_) => return,
        }
    }
}

/// The outcome when a request got no answer: always a retry, saying why without the URL.
pub(super) fn unanswered(e: &reqwest::Error) -> Outcome {
    let what = if e.is_timeout() {
        "no answer within the timeout"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "the request failed"
    };
    Outcome::retry(format!("{what}: {}", without_url(e)))
}

/// The response's `Retry-After`, as a wait from now.
pub(super) fn retry_after_header(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
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

/// A reqwest error without the URL, which may hold message values.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<url>");
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
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
