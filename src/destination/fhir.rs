//! The FHIR server destination: sends each delivery's FHIR R4 JSON to a FHIR server's REST API.
//!
//! ```toml
//! [destinations.fhir_store]
//! kind = "fhir"
//! base_url = "https://fhir.example.org/r4"       # the server's base (no trailing /Type)
//! mode = "transaction"                           # transaction | batch | resources
//! keep_ids = false                               # see below
//! auth = { bearer = "env:FHIR_TOKEN" }           # or basic / api_key, as for `http`
//! headers = { "X-Tenant" = "north" }
//! timeout_secs = 30
//! tls = { ca = "/etc/aorta/tls/fhir-ca.pem" }     # all optional, as for `http`
//! proxy = { url = "http://proxy:3128" }          # optional, as for `http`
//! ```
//!
//! Connections as for `http`: at most `concurrency` (default one) HTTP/1.1 connections, kept;
//! or, with `http2 = true`, one HTTP/2 connection carrying up to `concurrency` requests.
//!
//! What a delivery becomes (its route output is `format = "fhir"`, a transaction Bundle):
//! - `transaction` (default): the Bundle is POSTed to the base URL as one transaction — the
//!   server applies all entries or none and resolves the `urn:uuid:` references between them.
//! - `batch`: the same entries as a `batch` Bundle (entries stand alone; for servers without
//!   transactions).
//! - `resources`: each entry is its own request (`PUT Patient?identifier=…`, `POST` with
//!   `If-None-Exist`, `PUT Type/id`), referenced entries first; `urn:uuid:` references are
//!   rewritten to the `Type/id` the server answered with.
//! - A single resource (not a Bundle) is `PUT Type/id` when it has an id, else `POST Type`.
//!
//! Conditional updates (`PUT Patient?identifier=…`) carry Aorta's deterministic id in the
//! resource. When nothing matches, FHIR lets a server either create the resource with that id
//! ("update as create") or refuse; many refuse (Medplum does). So by default the id is taken out
//! of those entries and the server picks one (the conditional URL still finds the resource next
//! time, so re-sending stays idempotent). `keep_ids = true` keeps them, for servers that allow
//! client ids (HAPI with client id strategy `ANY`).
//!
//! How answers are classified: a 2xx is delivered only if every entry of a batch or transaction
//! response has a 2xx status too (servers differ in how atomic a transaction is); an entry or a
//! request answered 407, 408, 429 or 5xx, no answer or a timeout → retry (honouring `Retry-After`);
//! any other 4xx → rejected, dead-lettered with the server's OperationOutcome text (issue
//! severity, code, diagnostics or details, and FHIRPath location) for an operator to read.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ::http::HeaderValue;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use super::http::{self, Client, ClientTls, HttpAuth, ProxyConfig};
use super::{Outcome, Outgoing};

/// `[destinations.NAME]` with `kind = "fhir"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirConfig {
    /// The server's base URL, e.g. `https://fhir.example.org/r4`.
    pub base_url: String,
    /// How a Bundle is sent.
    #[serde(default)]
    pub mode: FhirMode,
    /// Keep resource ids on conditional updates (the server must allow update-as-create).
    #[serde(default)]
    pub keep_ids: bool,
    /// Authentication, from a referenced secret.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    /// Extra headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds to wait for each exchange.
    #[serde(default = "thirty")]
    pub timeout_secs: u64,
    /// TLS options.
    #[serde(default)]
    pub tls: Option<ClientTls>,
    /// An HTTP proxy to go through (as for `http`).
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    /// HTTP/2 on one connection, as for `http`.
    #[serde(default)]
    pub http2: bool,
}

fn thirty() -> u64 {
    30
}

/// How a Bundle goes to the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FhirMode {
    /// One `transaction` Bundle.
    #[default]
    Transaction,
    /// One `batch` Bundle.
    Batch,
    /// One request per entry.
    Resources,
}

/// A built FHIR destination.
#[derive(Debug)]
pub struct FhirDestination {
    client: Client,
    /// The base URL's path (`/r4`, or empty for a base at the root).
    path: String,
    mode: FhirMode,
    keep_ids: bool,
}

/// The most of an answer read: a transaction response lists every entry's outcome.
const MAX_ANSWER: usize = 32 << 20;

/// One request to make: method, URL relative to the base, `If-None-Exist`, body.
#[derive(Debug, Clone)]
struct Request {
    method: ::http::Method,
    url: String,
    if_none_exist: Option<String>,
    body: Option<Value>,
}

impl FhirDestination {
    /// Builds the client: checks the base URL, resolves secrets, reads TLS files.
    pub fn build(config: &FhirConfig, connections: usize) -> Result<FhirDestination, String> {
        let base = config.base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) || base.contains('?') {
            return Err(format!(
                "base_url: {:?} must be an http:// or https:// URL without a query",
                config.base_url
            ));
        }
        let client = Client::build(
            &base,
            &config.headers,
            config.auth.as_ref(),
            config.timeout_secs,
            config.tls.as_ref(),
            config.proxy.as_ref(),
            super::http::Connections {
                max: connections,
                http2: config.http2,
            },
        )?;
        let (_, path) = super::link::Origin::split(&base).map_err(|e| format!("base_url: {e}"))?;
        let path = path.to_string();
        Ok(FhirDestination {
            client,
            path,
            mode: config.mode,
            keep_ids: config.keep_ids,
        })
    }

    /// Connections opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.client.connections_opened()
    }

    /// Sends the delivery and classifies the answer.
    pub async fn send(&self, d: &Outgoing<'_>) -> Outcome {
        if d.format != "fhir" {
            return Outcome::Reject(format!(
                "a fhir destination sends FHIR JSON, but this delivery is `{}` (route it with format = \"fhir\")",
                d.format
            ));
        }
        let doc: Value = match serde_json::from_slice(d.payload) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => return Outcome::Reject("the payload is not a FHIR resource".into()),
            Err(e) => return Outcome::Reject(format!("the payload is not JSON: {e}")),
        };
        let Some(kind) = doc
            .get("resourceType")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Outcome::Reject("the payload has no resourceType".into());
        };
        let bundle_type = doc.get("type").and_then(Value::as_str).unwrap_or("");
        if kind == "Bundle" && matches!(bundle_type, "transaction" | "batch") {
            let bundle = self.prepare(doc);
            match self.mode {
                FhirMode::Transaction | FhirMode::Batch => {
                    let request = Request {
                        method: ::http::Method::POST,
                        url: String::new(),
                        if_none_exist: None,
                        body: Some(bundle),
                    };
                    self.exchange(&request, d, true).await.0
                }
                FhirMode::Resources => self.send_entries(bundle, d).await,
            }
        } else {
            let id = doc.get("id").and_then(Value::as_str).map(str::to_string);
            let request = Request {
                method: if id.is_some() {
                    ::http::Method::PUT
                } else {
                    ::http::Method::POST
                },
                url: match id {
                    Some(id) => format!("{kind}/{id}"),
                    None => kind,
                },
                if_none_exist: None,
                body: Some(doc),
            };
            self.exchange(&request, d, false).await.0
        }
    }

    /// The Bundle as this destination sends it: its type set by the mode, ids taken out of
    /// conditional updates unless kept.
    fn prepare(&self, mut bundle: Value) -> Value {
        if let Some(t) = bundle.get_mut("type") {
            match self.mode {
                FhirMode::Transaction => *t = Value::from("transaction"),
                FhirMode::Batch => *t = Value::from("batch"),
                FhirMode::Resources => {}
            }
        }
        if !self.keep_ids {
            for entry in entries_mut(&mut bundle) {
                let conditional_put = entry.pointer("/request/method").and_then(Value::as_str)
                    == Some("PUT")
                    && entry
                        .pointer("/request/url")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u.contains('?'));
                if conditional_put {
                    if let Some(Value::Object(r)) = entry.get_mut("resource") {
                        r.remove("id");
                    }
                }
            }
        }
        bundle
    }

    /// `resources` mode: one request per entry, referenced entries first.
    async fn send_entries(&self, bundle: Value, d: &Outgoing<'_>) -> Outcome {
        let entries: Vec<Value> = match bundle.get("entry") {
            Some(Value::Array(e)) => e.clone(),
            _ => return Outcome::Delivered,
        };
        // Where each full URL points on the server: our id until the server says otherwise.
        let mut resolved: HashMap<String, String> = HashMap::new();
        for e in &entries {
            if let (Some(full), Some(kind)) = (
                e.get("fullUrl").and_then(Value::as_str),
                e.pointer("/resource/resourceType").and_then(Value::as_str),
            ) {
                if let Some(id) = full.strip_prefix("urn:uuid:") {
                    resolved.insert(full.to_string(), format!("{kind}/{id}"));
                }
            }
        }
        for i in dependency_order(&entries) {
            let entry = &entries[i];
            let Some(request) = entry_request(entry, &resolved) else {
                return Outcome::Reject(format!(
                    "entry {i} has no request (method and url) to send it with"
                ));
            };
            let (outcome, location) = self.exchange(&request, d, false).await;
            if outcome != Outcome::Delivered {
                return match outcome {
                    Outcome::Reject(why) => Outcome::Reject(format!(
                        "entry {i} ({} {}): {why}",
                        request.method, request.url
                    )),
                    other => other,
                };
            }
            if let (Some(full), Some(loc)) =
                (entry.get("fullUrl").and_then(Value::as_str), location)
            {
                resolved.insert(full.to_string(), loc);
            }
        }
        Outcome::Delivered
    }

    /// Makes one request and classifies the answer; on success also the `Type/id` the server
    /// gave the resource, when it said.
    async fn exchange(
        &self,
        r: &Request,
        d: &Outgoing<'_>,
        bundle: bool,
    ) -> (Outcome, Option<String>) {
        let path = if r.url.is_empty() {
            self.path.clone()
        } else {
            let mut p = String::with_capacity(self.path.len() + 1 + r.url.len());
            p.push_str(&self.path);
            p.push('/');
            p.push_str(&r.url);
            p
        };
        let mut headers = self.client.headers();
        headers.insert(
            ::http::header::ACCEPT,
            HeaderValue::from_static("application/fhir+json"),
        );
        match HeaderValue::from_str(d.idempotency_key) {
            Ok(v) => {
                headers.insert("idempotency-key", v);
            }
            Err(_) => {
                return (
                    Outcome::Reject("the idempotency key is not a header value".into()),
                    None,
                )
            }
        }
        if let Some(q) = &r.if_none_exist {
            match HeaderValue::from_str(q) {
                Ok(v) => {
                    headers.insert("if-none-exist", v);
                }
                Err(_) => {
                    return (
                        Outcome::Reject(format!("If-None-Exist {q:?} is not a header value")),
                        None,
                    )
                }
            }
        }
        let mut payload = Bytes::new();
        if let Some(body) = &r.body {
            match serde_json::to_vec(body) {
                Ok(bytes) => {
                    headers.insert(
                        ::http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/fhir+json"),
                    );
                    payload = Bytes::from(bytes);
                }
                Err(e) => return (Outcome::Reject(format!("cannot encode: {e}")), None),
            }
        }
        let answer = match self
            .client
            .exchange(r.method.clone(), &path, headers, payload, MAX_ANSWER)
            .await
        {
            Ok(a) => a,
            Err(e) => return (http::unanswered(&e), None),
        };
        let status = answer.status;
        let retry_after = http::retry_after_header(&answer.headers);
        let location = answer
            .headers
            .get(::http::header::LOCATION)
            .or_else(|| answer.headers.get("content-location"))
            .and_then(|v| v.to_str().ok())
            .and_then(type_and_id);
        if bundle && status.is_success() && !answer.whole {
            return (
                Outcome::Reject(format!(
                    "HTTP {status}: the response Bundle is larger than {} MiB; its entries' outcomes were not read",
                    MAX_ANSWER >> 20
                )),
                None,
            );
        }
        let body = answer.body;
        let json: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            if bundle {
                if let Some(answer) = &json {
                    return (entry_outcomes(answer, retry_after), None);
                }
            }
            let location = location.or_else(|| {
                let j = json.as_ref()?;
                Some(format!(
                    "{}/{}",
                    j.get("resourceType")?.as_str()?,
                    j.get("id")?.as_str()?
                ))
            });
            return (Outcome::Delivered, location);
        }
        let text = match json.as_ref().and_then(outcome_text) {
            Some(t) => t,
            None => String::from_utf8_lossy(&body).chars().take(200).collect(),
        };
        let reason = format!("HTTP {status}: {}", text.trim());
        let outcome = match status.as_u16() {
            407 | 408 | 429 | 500..=599 => Outcome::Retry {
                reason,
                after: retry_after,
            },
            _ => Outcome::Reject(reason),
        };
        (outcome, None)
    }
}

fn entries_mut(bundle: &mut Value) -> impl Iterator<Item = &mut Value> {
    bundle
        .get_mut("entry")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// The entry as a request of its own, its references rewritten to what the server answered.
fn entry_request(entry: &Value, resolved: &HashMap<String, String>) -> Option<Request> {
    let req = entry.get("request")?;
    let method = ::http::Method::from_bytes(req.get("method")?.as_str()?.as_bytes()).ok()?;
    let url = req
        .get("url")?
        .as_str()?
        .trim_start_matches('/')
        .to_string();
    let body = entry.get("resource").cloned().map(|mut r| {
        rewrite_references(&mut r, resolved);
        r
    });
    Some(Request {
        method,
        url,
        if_none_exist: req
            .get("ifNoneExist")
            .and_then(Value::as_str)
            .map(str::to_string),
        body,
    })
}

fn rewrite_references(v: &mut Value, resolved: &HashMap<String, String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "reference" {
                    if let Some(to) = x.as_str().and_then(|s| resolved.get(s)) {
                        *x = Value::from(to.as_str());
                        continue;
                    }
                }
                rewrite_references(x, resolved);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| rewrite_references(x, resolved)),
        _ => {}
    }
}

/// Entry positions so that an entry comes after the entries it references (by full URL);
/// otherwise in Bundle order. Cycles are broken in Bundle order.
fn dependency_order(entries: &[Value]) -> Vec<usize> {
    let index: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| Some((e.get("fullUrl")?.as_str()?, i)))
        .collect();
    let deps: Vec<Vec<usize>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut refs = Vec::new();
            if let Some(r) = e.get("resource") {
                collect_references(r, &mut refs);
            }
            let mut d: Vec<usize> = refs
                .iter()
                .filter_map(|r| index.get(r.as_str()).copied())
                .filter(|&j| j != i)
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    let mut done = vec![false; entries.len()];
    let mut order = Vec::with_capacity(entries.len());
    while order.len() < entries.len() {
        let next = (0..entries.len())
            .find(|&i| !done[i] && deps[i].iter().all(|&j| done[j]))
            .or_else(|| (0..entries.len()).find(|&i| !done[i]));
        let Some(i) = next else { break };
        done[i] = true;
        order.push(i);
    }
    order
}

fn collect_references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("reference", Value::String(s)) => out.push(s.clone()),
                    _ => collect_references(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_references(x, out)),
        _ => {}
    }
}

/// `Type/id` from a Location such as `https://x/fhir/Patient/123/_history/2`.
fn type_and_id(location: &str) -> Option<String> {
    let path = location.split(['?', '#']).next()?;
    let mut parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if let Some(i) = parts.iter().rposition(|p| *p == "_history") {
        parts.truncate(i);
    }
    let n = parts.len();
    if n < 2 {
        return None;
    }
    let (kind, id) = (parts[n - 2], parts[n - 1]);
    let is_type = kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && kind.chars().all(|c| c.is_ascii_alphanumeric());
    (is_type && !id.is_empty()).then(|| format!("{kind}/{id}"))
}

/// How a batch or transaction response went, entry by entry: every entry 2xx → delivered; any
/// refused entry → rejected (all refusals named); else any entry worth retrying → retry.
fn entry_outcomes(answer: &Value, after: Option<Duration>) -> Outcome {
    if answer.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Outcome::Delivered;
    }
    let mut refused = Vec::new();
    let mut retry = Vec::new();
    for (i, e) in answer
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(resp) = e.get("response") else {
            continue;
        };
        let status = resp.get("status").and_then(Value::as_str).unwrap_or("");
        let code: u16 = status
            .split_whitespace()
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if (200..300).contains(&code) {
            continue;
        }
        let text = resp
            .get("outcome")
            .and_then(outcome_text)
            .unwrap_or_default();
        let line = format!(
            "entry {i}: {status}{}{text}",
            if text.is_empty() { "" } else { ": " }
        );
        if matches!(code, 408 | 429 | 500..=599) {
            retry.push(line);
        } else {
            refused.push(line);
        }
    }
    if !refused.is_empty() {
        Outcome::Reject(refused.join("; "))
    } else if !retry.is_empty() {
        Outcome::Retry {
            reason: retry.join("; "),
            after,
        }
    } else {
        Outcome::Delivered
    }
}

/// An OperationOutcome's issues as one line: `error invalid Patient.gender: ...; ...`.
pub fn outcome_text(outcome: &Value) -> Option<String> {
    if outcome.get("resourceType").and_then(Value::as_str) != Some("OperationOutcome") {
        return None;
    }
    let issues: Vec<String> = outcome
        .get("issue")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|i| {
            let field = |k: &str| i.get(k).and_then(Value::as_str).unwrap_or("");
            let text = i
                .get("diagnostics")
                .and_then(Value::as_str)
                .or_else(|| i.pointer("/details/text").and_then(Value::as_str))
                .unwrap_or("");
            let at = i
                .get("expression")
                .or_else(|| i.get("location"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            let mut line = format!("{} {}", field("severity"), field("code"));
            if !at.is_empty() {
                line.push_str(&format!(" at {at}"));
            }
            if !text.is_empty() {
                line.push_str(&format!(": {text}"));
            }
            line
        })
        .collect();
    (!issues.is_empty()).then(|| issues.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn locations_and_outcomes() {
        assert_eq!(
            type_and_id("https://x/fhir/Patient/12/_history/3").as_deref(),
            Some("Patient/12")
        );
        assert_eq!(
            type_and_id("Observation/a-b").as_deref(),
            Some("Observation/a-b")
        );
        assert_eq!(type_and_id("https://x/"), None);
        let oo = json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "error", "code": "invalid", "expression": ["Patient.gender"],
             "details": {"text": "Value \"x\" not in value set"}}]});
        assert_eq!(
            outcome_text(&oo).unwrap(),
            "error invalid at Patient.gender: Value \"x\" not in value set"
        );
        let answer = json!({"resourceType": "Bundle", "type": "batch-response", "entry": [
            {"response": {"status": "201 Created"}},
            {"response": {"status": "503", "outcome": oo}},
        ]});
        assert!(matches!(
            entry_outcomes(&answer, None),
            Outcome::Retry { .. }
        ));
        let answer = json!({"resourceType": "Bundle", "entry": [
            {"response": {"status": "400", "outcome": oo}},
            {"response": {"status": "503"}},
        ]});
        match entry_outcomes(&answer, None) {
            Outcome::Reject(why) => {
                assert!(why.starts_with("entry 0: 400: error invalid"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn base_urls_are_checked() {
        let config = |url: &str| FhirConfig {
            base_url: url.into(),
            mode: FhirMode::default(),
            keep_ids: false,
            auth: None,
            headers: BTreeMap::new(),
            timeout_secs: 5,
            tls: None,
            proxy: None,
            http2: false,
        };
        assert!(FhirDestination::build(&config("ftp://x/fhir"), 1).is_err());
        assert!(FhirDestination::build(&config("http://x/fhir?a=1"), 1).is_err());
        let d = FhirDestination::build(&config("https://x/fhir/"), 1).unwrap();
        assert_eq!(d.path, "/fhir");
    }

    #[test]
    fn referenced_entries_go_first() {
        let e = |url: &str, refs: &[&str]| {
            json!({"fullUrl": url, "resource": {"resourceType": "Basic",
                "x": refs.iter().map(|r| json!({"reference": r})).collect::<Vec<_>>()}})
        };
        let entries = vec![
            e("urn:uuid:report", &["urn:uuid:obs", "urn:uuid:patient"]),
            e("urn:uuid:obs", &["urn:uuid:patient"]),
            e("urn:uuid:patient", &[]),
            e("urn:uuid:a", &["urn:uuid:b"]),
            e("urn:uuid:b", &["urn:uuid:a"]),
        ];
        assert_eq!(dependency_order(&entries), vec![2, 1, 0, 3, 4]);
        let mut resolved = HashMap::new();
        resolved.insert("urn:uuid:patient".to_string(), "Patient/7".to_string());
        let r = entry_request(
            &json!({"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:patient"}},
                    "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=a|1"}}),
            &resolved,
        )
        .unwrap();
        assert_eq!(r.body.unwrap()["subject"]["reference"], "Patient/7");
        assert_eq!(r.if_none_exist.as_deref(), Some("identifier=a|1"));
    }
}
