//! The FHIR R4 REST intake: clinical systems POST and PUT resources and Bundles to Aorta.
//!
//! ```toml
//! [listeners.fhir]
//! kind = "fhir"
//! bind = "0.0.0.0:8443"
//! tokens = ["env:FHIR_INTAKE_TOKEN"]       # bearer tokens accepted (none: no authentication)
//! max_body_bytes = 16777216
//! max_connections = 1024                 # at the limit, new clients wait until one closes
//! tls = { cert = "server.pem", key = "server.key", client_ca = "clients-ca.pem" }   # optional; client_ca = mutual TLS
//! ```
//!
//! Interactions, under `/fhir`:
//! - `GET /fhir/metadata` — the CapabilityStatement (no token needed).
//! - `POST /fhir/{type}` — create: `201 Created`, `Location: /fhir/{type}/{id}/_history/1`; the
//!   id is the journal's message id.
//! - `PUT /fhir/{type}/{id}` — update: the body's `id` must equal the URL's; `200 OK`.
//! - `POST /fhir` with a `transaction` Bundle — all entries or none: any invalid entry refuses
//!   the whole Bundle; accepted, it is journaled as one message (one record: the patient, the
//!   encounter and the results together) and answered with a `transaction-response`.
//! - `POST /fhir` with a `batch` Bundle — each entry on its own: valid ones are journaled as
//!   messages of their own (their bytes exactly as sent), invalid ones get a 400 entry response
//!   with an OperationOutcome; answered with a `batch-response`.
//!
//! Everything is checked before it is accepted: the bearer token (401 with an OperationOutcome),
//! the media type (`application/fhir+json`, `application/json` or DSTU2's `application/json+fhir`,
//! else 415), the size (413),
//! JSON syntax, the resource type against the URL, and the structure against HL7's R4 schema
//! ([`super::validate`]; 400 with one issue per problem, each with its FHIRPath location). What
//! is refused for its content is still journaled as `rejected` with the reasons, for an operator
//! to see. Nothing is answered 2xx before it is durably journaled (the same group commit as MLLP).
//! `Prefer: return=minimal` gives an empty body, `return=representation` the resource as
//! accepted (with its id), the default an OperationOutcome naming the message id. Answers are
//! JSON: a request whose `_format` (or, without it, `Accept`) admits no JSON gets 406; a method a
//! path does not take (a read: Aorta does not serve resources) 405 with `Allow`; both with an
//! OperationOutcome.
//!
//! Journaled FHIR is routed like HL7 v2: FHIR → record → HL7 v2 (a create becomes ADT^A04, an
//! update ADT^A08, results ORU^R01), so the same routes, conditions and HL7 paths apply; record
//! paths read the record made from the FHIR directly (`message.type` is the resource type,
//! `message.resource_types` every type in a Bundle).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::validate::{self, Issue};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::record::{now_micros, Envelope, Format, Header};
use crate::store::{JournalEntry, SqliteStore, Status, Store};
use crate::tls::TlsConfig;

/// `[listeners.NAME]` with `kind = "fhir"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirListenerConfig {
    /// Address to listen on.
    pub bind: String,
    /// HTTPS (and, with `client_ca`, mutual TLS).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Bearer tokens accepted, as secret references; none means no authentication.
    #[serde(default)]
    pub tokens: Vec<Secret>,
    /// Largest request body accepted.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most connections open at once; at the limit new ones wait until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_body() -> usize {
    16 * 1024 * 1024
}

fn default_max_connections() -> usize {
    1024
}

impl FhirListenerConfig {
    /// Checks values that serde cannot; every problem as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if self.bind.parse::<SocketAddr>().is_err() {
            e.push((
                "bind".into(),
                format!("{:?} is not an address such as 0.0.0.0:8080", self.bind),
            ));
        }
        if self.max_body_bytes < 1024 {
            e.push(("max_body_bytes".into(), "must be at least 1024".into()));
        }
        if self.max_connections == 0 {
            e.push(("max_connections".into(), "must be at least 1".into()));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if let Err(err) = t.resolve() {
                e.push((format!("tokens[{i}]"), err));
            }
        }
        if let Some(t) = &self.tls {
            if let Err(err) = t.server_config() {
                e.push(("tls".into(), err));
            }
        }
        e
    }
}

/// A running intake's shared state.
#[derive(Clone)]
pub struct Intake {
    name: Arc<str>,
    store: SqliteStore,
    metrics: Metrics,
    tokens: Arc<Vec<String>>,
    max_body: usize,
}

impl Intake {
    /// Resolves the tokens and compiles the schema.
    pub fn build(
        name: &str,
        config: &FhirListenerConfig,
        store: SqliteStore,
        metrics: Metrics,
    ) -> Result<Intake, String> {
        let tokens = config
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| t.resolve().map_err(|e| format!("tokens[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        validate::warm_up()?;
        Ok(Intake {
            name: name.into(),
            store,
            metrics,
            tokens: Arc::new(tokens),
            max_body: config.max_body_bytes,
        })
    }

    /// The routes under `/fhir`.
    pub fn router(self) -> Router {
        Router::new()
            .route(
                "/fhir/metadata",
                get(metadata).fallback(|| refused_method("GET")),
            )
            .route("/fhir", post(bundle).fallback(|| refused_method("POST")))
            .route("/fhir/", post(bundle).fallback(|| refused_method("POST")))
            .route("/fhir/{kind}", post(create).fallback(type_level))
            .route(
                "/fhir/{kind}/{id}",
                put(update).fallback(|| refused_method("PUT")),
            )
            .fallback(not_found)
            .layer(axum::middleware::from_fn(negotiate))
            .with_state(self)
    }

    fn count(&self, interaction: &str, status: StatusCode) {
        self.metrics
            .fhir_requests
            .with_label_values(&[&self.name, interaction, status.as_str()])
            .inc();
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.tokens.is_empty() {
            return true;
        }
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, token)| token.trim());
        // Constant time per token: a token must not leak through response timing.
        self.tokens.iter().fold(false, |ok, t| {
            ok | (given.len() == t.len()
                && given
                    .bytes()
                    .zip(t.bytes())
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0)
        })
    }

    /// Checks the token, media type and size, and parses the JSON; the refusal otherwise.
    async fn read(
        &self,
        interaction: &str,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Bytes, Value), Response> {
        if !self.authorized(headers) {
            self.count(interaction, StatusCode::UNAUTHORIZED);
            let mut r = fail(
                StatusCode::UNAUTHORIZED,
                "login",
                "a valid bearer token is required",
                None,
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Err(r);
        }
        let media = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if !json_media(&media) {
            self.count(interaction, StatusCode::UNSUPPORTED_MEDIA_TYPE);
            return Err(fail(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                "send application/fhir+json (or application/json)",
                None,
            ));
        }
        let bytes = match axum::body::to_bytes(body, self.max_body).await {
            Ok(b) => b,
            Err(_) => {
                self.count(interaction, StatusCode::PAYLOAD_TOO_LARGE);
                return Err(fail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-costly",
                    &format!(
                        "the body is larger than {} bytes (or was cut off)",
                        self.max_body
                    ),
                    None,
                ));
            }
        };
        self.metrics
            .messages_received
            .with_label_values(&[&self.name])
            .inc();
        self.metrics
            .bytes_received
            .with_label_values(&[&self.name])
            .inc_by(bytes.len() as u64);
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok((bytes, v)),
            Ok(_) => Err(self
                .refuse(
                    interaction,
                    bytes,
                    None,
                    vec![problem("", "the body is not a JSON object")],
                )
                .await),
            Err(e) => {
                let why = format!("the body is not JSON: {e}");
                Err(self
                    .refuse(interaction, bytes, None, vec![problem("", &why)])
                    .await)
            }
        }
    }

    /// Journals refused content as `rejected` (so an operator sees it) and answers 400.
    async fn refuse(
        &self,
        interaction: &str,
        raw: Bytes,
        doc: Option<&Value>,
        issues: Vec<Issue>,
    ) -> Response {
        let reasons: Vec<String> = issues
            .iter()
            .map(|i| {
                if i.expression.is_empty() {
                    i.message.clone()
                } else {
                    format!("{}: {}", i.expression, i.message)
                }
            })
            .collect();
        let entry = self.entry(
            raw.to_vec(),
            doc,
            interaction,
            Status::Rejected,
            Some(reasons.join("; ")),
        );
        let id = entry.envelope.id;
        let size = raw.len();
        match self.store.append(entry).await {
            Ok(_) => {
                tracing::info!(listener = %self.name, %interaction, message_id = %id, size, issues = issues.len(), "FHIR request refused; journaled as rejected")
            }
            Err(e) => {
                tracing::error!(listener = %self.name, %interaction, error = %e, "could not journal a refused FHIR request")
            }
        }
        self.count(interaction, StatusCode::BAD_REQUEST);
        respond(StatusCode::BAD_REQUEST, outcome_of(&issues), &[])
    }

    fn entry(
        &self,
        raw: Vec<u8>,
        doc: Option<&Value>,
        interaction: &str,
        status: Status,
        error: Option<String>,
    ) -> JournalEntry {
        let kind = doc
            .and_then(|d| d.get("resourceType"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let control_id = doc.and_then(|d| {
            d.get("id")
                .or_else(|| d.pointer("/identifier/value"))
                .and_then(Value::as_str)
                .map(str::to_string)
        });
        JournalEntry {
            envelope: Envelope {
                id: uuid::Uuid::now_v7(),
                received_at: now_micros(),
                source: self.name.to_string(),
                format: Format::FhirJson,
                raw,
                header: Header {
                    message_type: kind,
                    trigger_event: Some(interaction.to_string()),
                    control_id,
                    version: Some("4.0.1".into()),
                    charset: Some("UTF-8".into()),
                    patient_id: doc.and_then(patient_id),
                    ..Header::default()
                },
            },
            status,
            error,
            ack: None,
            dedupe: None,
        }
    }

    /// Journals accepted content; the message id, or the 500 to answer.
    async fn accept(
        &self,
        interaction: &str,
        raw: Vec<u8>,
        doc: &Value,
    ) -> Result<uuid::Uuid, Response> {
        let entry = self.entry(raw, Some(doc), interaction, Status::Received, None);
        let id = entry.envelope.id;
        let size = entry.envelope.raw.len();
        match self.store.append(entry).await {
            Ok(_) => {
                let resource_type = doc
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                tracing::info!(listener = %self.name, %interaction, message_id = %id, resource_type, size, "FHIR request journaled");
                Ok(id)
            }
            Err(e) => {
                tracing::error!(listener = %self.name, %interaction, error = %e, "journal append failed; answering 500");
                self.count(interaction, StatusCode::INTERNAL_SERVER_ERROR);
                Err(fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    "the message could not be journaled; nothing was accepted, send it again",
                    None,
                ))
            }
        }
    }
}

/// The first identifier value of the (first) Patient: what an operator searches by.
fn patient_id(doc: &Value) -> Option<String> {
    let patient = match doc.get("resourceType").and_then(Value::as_str) {
        Some("Patient") => Some(doc),
        Some("Bundle") => doc
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("resource"))
            .find(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient")),
        _ => None,
    }?;
    patient
        .pointer("/identifier/0/value")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn problem(expression: &str, message: &str) -> Issue {
    Issue {
        expression: expression.into(),
        message: message.into(),
    }
}

/// An OperationOutcome with one issue.
pub fn outcome(severity: &str, code: &str, text: &str, expression: Option<&str>) -> Value {
    let mut issue = json!({"severity": severity, "code": code, "diagnostics": text});
    if let Some(x) = expression.filter(|x| !x.is_empty()) {
        issue["expression"] = json!([x]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

/// An OperationOutcome with one `error`/`invalid` issue per problem.
fn outcome_of(issues: &[Issue]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|i| {
            let mut v = json!({"severity": "error", "code": if i.message.contains("Additional properties") { "structure" } else { "invalid" }, "diagnostics": i.message});
            if !i.expression.is_empty() {
                v["expression"] = json!([i.expression]);
            }
            v
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

fn respond(status: StatusCode, body: Value, headers: &[(header::HeaderName, String)]) -> Response {
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    for (k, v) in headers {
        if let Ok(v) = HeaderValue::from_str(v) {
            r.headers_mut().insert(k.clone(), v);
        }
    }
    r
}

fn fail(status: StatusCode, code: &str, text: &str, expression: Option<&str>) -> Response {
    respond(status, outcome("error", code, text, expression), &[])
}

/// What `Prefer: return=...` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Return {
    Minimal,
    Representation,
    Outcome,
}

fn prefer(headers: &HeaderMap) -> Return {
    let p = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    if p.contains("return=minimal") {
        Return::Minimal
    } else if p.contains("return=representation") {
        Return::Representation
    } else {
        Return::Outcome
    }
}

/// Resource types are capitalised letters only (`Patient`, `DiagnosticReport`).
fn is_type(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

async fn create(
    State(intake): State<Intake>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    single(intake, kind, None, headers, body).await
}

async fn update(
    State(intake): State<Intake>,
    Path((kind, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    single(intake, kind, Some(id), headers, body).await
}

async fn single(
    intake: Intake,
    kind: String,
    id: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let interaction = if id.is_some() { "update" } else { "create" };
    if !is_type(&kind) {
        intake.count(interaction, StatusCode::NOT_FOUND);
        return fail(
            StatusCode::NOT_FOUND,
            "not-supported",
            &format!("{kind:?} is not a resource type"),
            None,
        );
    }
    let (bytes, mut doc) = match intake.read(interaction, &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let body_type = doc
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut issues = Vec::new();
    if body_type != kind {
        issues.push(problem(
            &body_type,
            &format!("the body is a {body_type:?} but the URL says {kind}"),
        ));
    }
    if let Some(id) = &id {
        let body_id = doc.get("id").and_then(Value::as_str);
        if body_id != Some(id.as_str()) {
            issues.push(problem(
                &format!("{kind}.id"),
                &format!(
                    "an update needs the id {id:?} of the URL in the body (found {body_id:?})"
                ),
            ));
        }
    }
    issues.extend(validate::validate(&doc));
    if !issues.is_empty() {
        return intake.refuse(interaction, bytes, Some(&doc), issues).await;
    }
    let message = match intake.accept(interaction, bytes.to_vec(), &doc).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let (status, rid) = match id {
        Some(id) => (StatusCode::OK, id),
        None => (StatusCode::CREATED, message.to_string()),
    };
    intake.count(interaction, status);
    let location = format!("/fhir/{kind}/{rid}/_history/1");
    let head = [
        (header::LOCATION, location.clone()),
        (header::ETAG, "W/\"1\"".to_string()),
    ];
    match prefer(&headers) {
        Return::Minimal => {
            let mut r = respond(status, Value::Null, &head);
            *r.body_mut() = Body::empty();
            r.headers_mut().remove(header::CONTENT_TYPE);
            r
        }
        Return::Representation => {
            doc["id"] = Value::from(rid);
            respond(status, doc, &head)
        }
        Return::Outcome => respond(
            status,
            outcome(
                "information",
                "informational",
                &format!("accepted and journaled as message {message}"),
                None,
            ),
            &head,
        ),
    }
}

/// The raw bytes of each entry's resource, as sent.
#[derive(Deserialize)]
struct RawBundle<'a> {
    #[serde(borrow, default)]
    entry: Vec<RawEntry<'a>>,
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
}

async fn bundle(State(intake): State<Intake>, headers: HeaderMap, body: Body) -> Response {
    let (bytes, doc) = match intake.read("bundle", &headers, body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let kind = doc.get("type").and_then(Value::as_str).unwrap_or("");
    let interaction = match kind {
        "transaction" => "transaction",
        "batch" => "batch",
        _ => "bundle",
    };
    if doc.get("resourceType").and_then(Value::as_str) != Some("Bundle") || interaction == "bundle"
    {
        return intake
            .refuse(
                interaction,
                bytes,
                Some(&doc),
                vec![problem(
                    "Bundle.type",
                    "POST to the base takes a Bundle of type transaction or batch",
                )],
            )
            .await;
    }
    let entries: Vec<Value> = doc
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Each entry's own problems: the request and the resource's structure.
    let mut per_entry: Vec<Vec<Issue>> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| entry_problems(i, e))
        .collect();
    // The Bundle without its entries (those were checked one by one, with better locations).
    let shell: serde_json::Map<String, Value> = doc
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "entry")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let envelope_issues = validate::validate(&Value::Object(shell));
    if interaction == "transaction" {
        let mut all: Vec<Issue> = envelope_issues;
        all.extend(per_entry.drain(..).flatten());
        if !all.is_empty() {
            return intake.refuse(interaction, bytes, Some(&doc), all).await;
        }
        let message = match intake.accept(interaction, bytes.to_vec(), &doc).await {
            Ok(m) => m,
            Err(r) => return r,
        };
        let responses: Vec<Value> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| entry_response(message, i, e))
            .collect();
        intake.count(interaction, StatusCode::OK);
        return respond(
            StatusCode::OK,
            json!({"resourceType": "Bundle", "type": "transaction-response", "entry": responses}),
            &[],
        );
    }
    if !envelope_issues.is_empty() {
        return intake
            .refuse(interaction, bytes, Some(&doc), envelope_issues)
            .await;
    }
    // A batch: each valid entry is a message of its own, journaled from the bytes it was sent as.
    let raw: RawBundle<'_> = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return intake
                .refuse(
                    interaction,
                    bytes.clone(),
                    Some(&doc),
                    vec![problem("Bundle.entry", &e.to_string())],
                )
                .await
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for (i, e) in entries.iter().enumerate() {
        if !per_entry[i].is_empty() {
            continue;
        }
        let Some(resource) = e.get("resource").cloned() else {
            continue;
        };
        let bytes = raw
            .entry
            .get(i)
            .and_then(|r| r.resource)
            .map(|r| r.get().as_bytes().to_vec())
            .unwrap_or_else(|| resource.to_string().into_bytes());
        let method = e
            .pointer("/request/method")
            .and_then(Value::as_str)
            .unwrap_or("POST");
        let kind = if method == "PUT" { "update" } else { "create" };
        let intake = intake.clone();
        // Appends run at once so the batch shares group commits.
        tasks.spawn(async move { (i, intake.accept(kind, bytes, &resource).await.ok()) });
    }
    let mut journaled = vec![None; entries.len()];
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, id)) = done {
            journaled[i] = id;
        }
    }
    let responses: Vec<Value> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            if !per_entry[i].is_empty() {
                json!({"response": {"status": "400 Bad Request", "outcome": outcome_of(&per_entry[i])}})
            } else {
                match journaled[i] {
                    Some(id) => entry_response(id, i, e),
                    None => json!({"response": {"status": "500 Internal Server Error",
                        "outcome": outcome("error", "exception", "not journaled; send it again", None)}}),
                }
            }
        })
        .collect();
    let refused = per_entry.iter().filter(|p| !p.is_empty()).count();
    if refused > 0 {
        tracing::info!(listener = %intake.name, refused, entries = entries.len(), "batch entries refused");
    }
    intake.count(interaction, StatusCode::OK);
    respond(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "batch-response", "entry": responses}),
        &[],
    )
}

/// Problems of one entry: a resource and a POST/PUT request, and the resource's structure.
fn entry_problems(i: usize, e: &Value) -> Vec<Issue> {
    let at = format!("Bundle.entry[{i}]");
    let mut issues = Vec::new();
    let Some(resource) = e.get("resource") else {
        issues.push(problem(&at, "an entry needs a resource"));
        return issues;
    };
    let method = e.pointer("/request/method").and_then(Value::as_str);
    let url = e
        .pointer("/request/url")
        .and_then(Value::as_str)
        .unwrap_or("");
    match method {
        Some("POST" | "PUT") if !url.is_empty() => {}
        Some(m @ ("POST" | "PUT")) => issues.push(problem(
            &format!("{at}.request.url"),
            &format!("a {m} needs a url"),
        )),
        Some(m) => issues.push(problem(
            &format!("{at}.request.method"),
            &format!("{m} is not accepted here (POST and PUT are)"),
        )),
        None => issues.push(problem(
            &format!("{at}.request"),
            "an entry needs a request (method and url)",
        )),
    }
    for mut issue in validate::validate(resource) {
        issue.expression = format!("{at}.resource.{}", issue.expression);
        issues.push(issue);
    }
    issues
}

/// The response entry for an accepted entry.
fn entry_response(message: uuid::Uuid, i: usize, e: &Value) -> Value {
    let kind = e
        .pointer("/resource/resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource");
    let put = e.pointer("/request/method").and_then(Value::as_str) == Some("PUT");
    let id = e
        .pointer("/resource/id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v5(&message, i.to_string().as_bytes()).to_string());
    json!({"response": {
        "status": if put { "200 OK" } else { "201 Created" },
        "location": format!("{kind}/{id}/_history/1"),
        "etag": "W/\"1\"",
    }})
}

async fn metadata(State(intake): State<Intake>) -> Response {
    intake.count("capabilities", StatusCode::OK);
    let resources: Vec<Value> = crate::convert::fhir::read::READS
        .iter()
        .map(|t| {
            json!({"type": t, "interaction": [{"code": "create"}, {"code": "update"}],
                   "updateCreate": true})
        })
        .collect();
    respond(
        StatusCode::OK,
        json!({
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2026-11-23",
            "kind": "instance",
            "software": {"name": "Aorta", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {"description": "Aorta FHIR intake: resources are validated, journaled and routed"},
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "application/json"],
            "rest": [{
                "mode": "server",
                "documentation": "Any R4 resource is accepted and journaled; the types listed are read into Aorta's record for routing and conversion to HL7 v2.",
                "security": {"description": "Bearer tokens when configured; mutual TLS optional"},
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }],
        }),
        &[],
    )
}

/// An interaction this path does not offer: 405 with the method it does (`Allow`).
async fn refused_method(allowed: &'static str) -> Response {
    not_allowed(
        allowed,
        &format!("this path takes {allowed} only: Aorta's FHIR intake accepts resources, it does not serve them"),
    )
}

/// 405 with `Allow` and an OperationOutcome saying `why`.
fn not_allowed(allowed: &'static str, why: &str) -> Response {
    let mut r = fail(StatusCode::METHOD_NOT_ALLOWED, "not-supported", why, None);
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allowed));
    r
}

/// Other methods on `/fhir/{type}`: a conditional update (`PUT Type?search`) is named as such,
/// with what to send instead.
async fn type_level(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    if method == axum::http::Method::PUT && uri.query().is_some() {
        return not_allowed(
            "POST",
            "a conditional update (PUT [type]?[search]) is not taken on its own: send PUT [type]/[id], \
             or a transaction Bundle whose entry has request.method PUT and request.url [type]?[search] \
             (forwarded to FHIR servers as it is)",
        );
    }
    refused_method("POST").await
}

/// Answers 406 when the client asks (`_format`, else `Accept`) only for formats Aorta does
/// not write: every answer is JSON.
async fn negotiate(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let format = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .ok()
        .and_then(|q| q.0.into_iter().find(|(k, _)| k == "_format"))
        .map(|(_, v)| v);
    let wanted = match &format {
        // `_format` overrides `Accept` (R4 http.html).
        Some(f) => json_format(f).then_some(()).ok_or(f.clone()),
        None => match request
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
        {
            Some(accept) if !accept.trim().is_empty() && !accepts_json(accept) => {
                Err(accept.to_string())
            }
            _ => Ok(()),
        },
    };
    match wanted {
        Ok(()) => next.run(request).await,
        Err(asked) => fail(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            &format!("Aorta answers in JSON only (application/fhir+json), not {asked:?}"),
            None,
        ),
    }
}

/// A media type (lowercase, without parameters) that is FHIR JSON. `application/json+fhir` is
/// DSTU2's name for it; R4 encourages servers to accept it.
fn json_media(media: &str) -> bool {
    matches!(
        media,
        "application/fhir+json" | "application/json" | "application/json+fhir"
    )
}

/// A `_format` value meaning JSON.
fn json_format(f: &str) -> bool {
    // An unescaped `+` arrives as a space after query decoding.
    let f = f
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .replace(' ', "+")
        .to_ascii_lowercase();
    f == "json" || json_media(&f)
}

/// True when an `Accept` header admits JSON (a JSON type or a wildcard, at a quality above 0).
fn accepts_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && (media == "*/*" || media == "application/*" || json_media(&media))
    })
}

async fn not_found() -> Response {
    fail(
        StatusCode::NOT_FOUND,
        "not-supported",
        "not an interaction Aorta's FHIR intake offers (POST /fhir/{type}, PUT /fhir/{type}/{id}, POST /fhir, GET /fhir/metadata)",
        None,
    )
}
