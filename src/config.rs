//! Loading and validating `config/aorta.toml`.
//!
//! ```toml
//! [store]                      # the journal
//! path = "data/journal.db"
//!
//! [admin]                      # /metrics, /health/live, /health/ready
//! bind = "127.0.0.1:9090"
//! token = "env:AORTA_ADMIN_TOKEN"   # optional bearer token for /metrics and the API
//! # tls = { cert = "server.pem", key = "server.key" }   # optional HTTPS
//!
//! [logging]
//! level = "info"               # or a tracing filter such as "info,aorta::mllp=debug"
//! format = "text"              # or "json"
//!
//! [listeners.adt]              # one table per listener; the name appears in logs and metrics
//! kind = "mllp"
//! bind = "0.0.0.0:2575"
//!
//! [routes]                     # route files (see `route`) and the code tables they map through
//! dir = "routes"
//! tables = "config/tables"
//! watch = true                 # reload when a file changes (SIGHUP always reloads)
//!
//! [destinations.emr]           # one table per destination that routes may name
//! kind = "http"
//! ```
//!
//! Every key can be overridden from the environment as `AORTA__SECTION__KEY`, e.g.
//! `AORTA__LISTENERS__ADT__BIND=0.0.0.0:3000` (names in lower case). Secrets are never written in
//! the file: a secret value is a reference, `env:NAME` or `file:/path`.
//!
//! Validation is staged, and each stage reports every problem it finds, each naming the file
//! and the key: (1) shape — TOML syntax, unknown keys, wrong types; (2) values — addresses,
//! certificate files, secret references; (3) environment — can the ports be bound, can the
//! journal directory be written (skippable with `aorta validate --skip-env`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::mllp::listener::MllpListenerConfig;

/// One configuration problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The configuration file.
    pub file: String,
    /// Dotted key path, e.g. `listeners.adt.bind` (empty for file-level problems).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.key, self.message)
        }
    }
}

/// Every problem found, one per line when printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// Listeners by name.
    pub listeners: BTreeMap<String, ListenerConfig>,
    /// The journal.
    pub store: StoreConfig,
    /// The admin/metrics endpoint.
    pub admin: AdminConfig,
    /// Logging.
    pub logging: LoggingConfig,
    /// Where the routes and code tables are.
    pub routes: RoutesConfig,
    /// Destinations by name.
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// How HL7 v2 becomes FHIR (`[fhir]`).
    pub fhir: crate::convert::fhir::FhirOptions,
}

/// The routes' settings (`[routes]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoutesConfig {
    /// The directory of route files (`*.toml`, tests `*.test.toml`).
    #[serde(default = "default_routes_dir")]
    pub dir: PathBuf,
    /// The directory of code tables (`NAME.csv`).
    #[serde(default = "default_tables_dir")]
    pub tables: PathBuf,
    /// Reload routes, tables and this file when they change (SIGHUP always reloads).
    #[serde(default = "yes")]
    pub watch: bool,
    /// Heap limit of the script engine, MiB.
    #[serde(default = "default_script_mb")]
    pub script_memory_mb: usize,
    /// Longest run of one script call, milliseconds.
    #[serde(default = "default_script_ms")]
    pub script_time_ms: u64,
}

fn default_routes_dir() -> PathBuf {
    PathBuf::from("routes")
}
fn default_tables_dir() -> PathBuf {
    PathBuf::from("config/tables")
}
fn yes() -> bool {
    true
}
fn default_script_mb() -> usize {
    32
}
fn default_script_ms() -> u64 {
    200
}

impl Default for RoutesConfig {
    fn default() -> Self {
        RoutesConfig {
            dir: default_routes_dir(),
            tables: default_tables_dir(),
            watch: yes(),
            script_memory_mb: default_script_mb(),
            script_time_ms: default_script_ms(),
        }
    }
}

/// A destination (`[destinations.NAME]`): its kind, queue settings and the kind's own keys.
/// Routes queue deliveries for it by name.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationConfig {
    /// `http`, `file`, `mllp`, `rabbitmq` or `fhir`.
    pub kind: String,
    /// What it is (shown to operators).
    pub description: Option<String>,
    /// Retry, ordering and rate settings.
    pub queue: crate::destination::QueueConfig,
    /// The kind's own settings.
    pub settings: crate::destination::Settings,
}

const DESTINATION_KINDS: [&str; 5] = ["http", "fhir", "rabbitmq", "mllp", "file"];

impl Config {
    /// What route files are checked against: this file's listeners, destinations and tables.
    pub fn route_options(&self) -> crate::route::LoadOptions {
        crate::route::LoadOptions {
            tables_dir: self.routes.tables.clone(),
            sources: Some(self.listeners.keys().cloned().collect()),
            destinations: Some(self.destinations.keys().cloned().collect()),
            script_limits: crate::route::script::ScriptLimits {
                memory_bytes: self.routes.script_memory_mb.saturating_mul(1 << 20),
                time: std::time::Duration::from_millis(self.routes.script_time_ms),
            },
            fhir: std::sync::Arc::new(self.fhir.clone()),
        }
    }

    /// Compiles the route files (every error, each with file, line, route and key).
    pub fn load_routes(&self) -> Result<crate::route::RouteSet, Vec<crate::route::LoadError>> {
        crate::route::RouteSet::load(&self.routes.dir, &self.route_options())
    }
}

/// A listener of one of the supported kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerConfig {
    /// HL7 v2 over MLLP.
    Mllp(MllpListenerConfig),
    /// FHIR R4 over REST.
    Fhir(crate::fhir::endpoint::FhirListenerConfig),
}

impl ListenerConfig {
    /// The address it listens on.
    pub fn bind(&self) -> &str {
        match self {
            ListenerConfig::Mllp(m) => &m.bind,
            ListenerConfig::Fhir(f) => &f.bind,
        }
    }
}

/// The journal's settings (`[store]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite` (embedded; the only kind until the PostgreSQL store lands).
    #[serde(default = "sqlite")]
    pub kind: String,
    /// The SQLite database file, relative to the working directory.
    #[serde(default = "default_db")]
    pub path: PathBuf,
    /// Most appends in one group commit.
    #[serde(default = "default_batch")]
    pub max_batch: usize,
}

fn sqlite() -> String {
    "sqlite".into()
}
fn default_db() -> PathBuf {
    PathBuf::from("data/journal.db")
}
fn default_batch() -> usize {
    1024
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: sqlite(),
            path: default_db(),
            max_batch: default_batch(),
        }
    }
}

/// The admin endpoint's settings (`[admin]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address for `/metrics` and `/health/*`; empty disables the endpoint.
    #[serde(default = "default_admin")]
    pub bind: String,
    /// Bearer token required for `/metrics` (health checks stay open), as a secret reference.
    #[serde(default)]
    pub token: Option<Secret>,
    /// TLS for the admin endpoint (mutual TLS with `client_ca`); plain HTTP when absent.
    #[serde(default)]
    pub tls: Option<crate::tls::TlsConfig>,
}

fn default_admin() -> String {
    "127.0.0.1:9090".into()
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: default_admin(),
            token: None,
            tls: None,
        }
    }
}

/// Log settings (`[logging]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// A tracing filter: `info`, `debug`, `info,aorta::mllp=debug`. `RUST_LOG` wins when set.
    #[serde(default = "info")]
    pub level: String,
    /// `text` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

fn info() -> String {
    "info".into()
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: info(),
            format: LogFormat::Text,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A secret, referenced rather than written: `env:NAME` or `file:/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Read from an environment variable.
    Env(String),
    /// Read from a file (trailing newline removed).
    File(PathBuf),
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        let s = String::deserialize(d)?;
        Secret::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Secret {
    /// Reads a reference; a plain value is refused so that secrets never sit in files.
    pub fn parse(s: &str) -> Result<Secret, String> {
        if let Some(name) = s.strip_prefix("env:").filter(|n| !n.is_empty()) {
            Ok(Secret::Env(name.to_string()))
        } else if let Some(path) = s.strip_prefix("file:").filter(|p| !p.is_empty()) {
            Ok(Secret::File(PathBuf::from(path)))
        } else {
            Err("a secret must be a reference, \"env:NAME\" or \"file:/path\", never the value itself".into())
        }
    }

    /// The secret's value.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Secret::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_string())
                .map_err(|e| format!("{}: {e}", path.display())),
        }
    }
}

struct Collector {
    file: String,
    errors: Vec<ConfigError>,
}

impl Collector {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.clone(),
            key: key.into(),
            message: message.into(),
        });
    }

    /// Deserializes one section, recording the exact key of a failure.
    fn section<T: DeserializeOwned>(&mut self, prefix: &str, v: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                let inner = e.path().to_string();
                let key = match (prefix.is_empty(), inner.as_str()) {
                    (true, _) => inner.clone(),
                    (false, ".") => prefix.to_string(),
                    (false, p) => format!("{prefix}.{p}"),
                };
                self.push(key, e.into_inner().to_string());
                None
            }
        }
    }
}

impl Config {
    /// Reads the file and the `AORTA__*` environment, and checks shape and values.
    /// With `check_environment`, also checks that ports can be bound and the journal written.
    pub fn load(file: &Path, check_environment: bool) -> Result<Config, ConfigErrors> {
        let name = file.display().to_string();
        let mut c = Collector {
            file: name.clone(),
            errors: Vec::new(),
        };
        if !file.is_file() {
            c.push("", "no such file");
            return Err(ConfigErrors(c.errors));
        }
        let built = config::Config::builder()
            .add_source(config::File::from(file).format(config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("AORTA")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true),
            )
            .build();
        let tree: Value = match built.and_then(|b| b.try_deserialize::<Value>()) {
            Ok(v) => v,
            Err(e) => {
                c.push("", e.to_string());
                return Err(ConfigErrors(c.errors));
            }
        };
        let mut top = match tree {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        for key in top.keys() {
            if !matches!(
                key.as_str(),
                "listeners" | "store" | "admin" | "logging" | "routes" | "destinations" | "fhir"
            ) {
                c.push(
                    key.clone(),
                    "unknown section (expected listeners, store, admin, logging, routes, destinations, fhir)",
                );
            }
        }
        let mut section = |name: &str| {
            top.remove(name)
                .unwrap_or(Value::Object(Default::default()))
        };
        let store: Option<StoreConfig> = c.section("store", section("store"));
        let admin: Option<AdminConfig> = c.section("admin", section("admin"));
        let logging: Option<LoggingConfig> = c.section("logging", section("logging"));
        let routes: Option<RoutesConfig> = c.section("routes", section("routes"));
        let fhir: Option<crate::convert::fhir::FhirOptions> = c.section("fhir", section("fhir"));
        for (k, m) in fhir.as_ref().map(|f| f.check()).unwrap_or_default() {
            c.push(format!("fhir.{k}"), m);
        }
        let mut destinations = BTreeMap::new();
        match section("destinations") {
            Value::Object(map) => {
                for (dname, v) in map {
                    let key = format!("destinations.{dname}");
                    if let Some(d) = destination(&mut c, &key, v) {
                        destinations.insert(dname, d);
                    }
                }
            }
            _ => c.push("destinations", "must be a table of destinations"),
        }
        if let Some(r) = &routes {
            if r.script_memory_mb < 4 {
                c.push("routes.script_memory_mb", "must be at least 4");
            }
            if r.script_time_ms == 0 {
                c.push("routes.script_time_ms", "must be at least 1");
            }
        }
        let mut listeners = BTreeMap::new();
        match section("listeners") {
            Value::Object(map) => {
                for (lname, v) in map {
                    let key = format!("listeners.{lname}");
                    let Value::Object(mut table) = v else {
                        c.push(key, "must be a table");
                        continue;
                    };
                    let kind = table.remove("kind");
                    match kind.as_ref().and_then(Value::as_str) {
                        Some("mllp") => {
                            if let Some(l) =
                                c.section::<MllpListenerConfig>(&key, Value::Object(table))
                            {
                                for (k, m) in l.check() {
                                    c.push(format!("{key}.{k}"), m);
                                }
                                listeners.insert(lname, ListenerConfig::Mllp(l));
                            }
                        }
                        Some("fhir") => {
                            if let Some(l) = c.section::<crate::fhir::endpoint::FhirListenerConfig>(
                                &key,
                                Value::Object(table),
                            ) {
                                for (k, m) in l.check() {
                                    c.push(format!("{key}.{k}"), m);
                                }
                                listeners.insert(lname, ListenerConfig::Fhir(l));
                            }
                        }
                        Some(other) => c.push(
                            format!("{key}.kind"),
                            format!(
                                "unknown listener kind {other:?} (expected \"mllp\" or \"fhir\")"
                            ),
                        ),
                        None => c.push(
                            format!("{key}.kind"),
                            "missing (expected \"mllp\" or \"fhir\")",
                        ),
                    }
                }
            }
            _ => c.push("listeners", "must be a table of listeners"),
        }
        if let Some(s) = &store {
            if s.kind != "sqlite" {
                c.push(
                    "store.kind",
                    format!("unknown store kind {:?} (expected \"sqlite\")", s.kind),
                );
            }
            if s.max_batch == 0 {
                c.push("store.max_batch", "must be at least 1");
            }
        }
        if let Some(a) = &admin {
            if !a.bind.is_empty() && a.bind.parse::<std::net::SocketAddr>().is_err() {
                c.push(
                    "admin.bind",
                    format!("{:?} is not an address like 127.0.0.1:9090", a.bind),
                );
            }
            if let Some(Err(e)) = a.token.as_ref().map(Secret::resolve) {
                c.push("admin.token", e);
            }
            if let Some(Err(e)) = a.tls.as_ref().map(crate::tls::TlsConfig::server_config) {
                c.push("admin.tls", e);
            }
        }
        if let Some(l) = &logging {
            if tracing_subscriber::EnvFilter::try_new(&l.level).is_err() {
                c.push(
                    "logging.level",
                    format!("{:?} is not a log filter", l.level),
                );
            }
        }
        // Port 0 ("any free port", used by tests) never clashes.
        let fixed = |b: &str| {
            b.parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.port() != 0)
        };
        let mut binds: BTreeMap<&str, &str> = BTreeMap::new();
        for (lname, l) in &listeners {
            let bind = l.bind();
            if !fixed(bind) {
                continue;
            }
            if let Some(other) = binds.insert(bind, lname.as_str()) {
                c.push(
                    format!("listeners.{lname}.bind"),
                    format!("{bind} is also the address of listener {other}"),
                );
            }
        }
        if let Some(a) = &admin {
            if let Some(other) = binds.get(a.bind.as_str()) {
                c.push(
                    "admin.bind",
                    format!("{} is also the address of listener {other}", a.bind),
                );
            }
        }
        if c.errors.is_empty() && check_environment {
            for (lname, l) in &listeners {
                if let Err(e) = std::net::TcpListener::bind(l.bind()) {
                    c.push(
                        format!("listeners.{lname}.bind"),
                        format!("cannot listen on {}: {e}", l.bind()),
                    );
                }
            }
            if let Some(a) = admin.as_ref().filter(|a| !a.bind.is_empty()) {
                if let Err(e) = std::net::TcpListener::bind(&a.bind) {
                    c.push("admin.bind", format!("cannot listen on {}: {e}", a.bind));
                }
            }
            if let Some(s) = &store {
                let dir = s
                    .path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                if let Err(e) = check_writable(dir) {
                    c.push(
                        "store.path",
                        format!("cannot write the journal directory {}: {e}", dir.display()),
                    );
                }
            }
        }
        match (c.errors.is_empty(), store, admin, logging, routes, fhir) {
            (true, Some(store), Some(admin), Some(logging), Some(routes), Some(fhir)) => {
                Ok(Config {
                    file: file.to_path_buf(),
                    listeners,
                    store,
                    admin,
                    logging,
                    routes,
                    destinations,
                    fhir,
                })
            }
            _ => Err(ConfigErrors(c.errors)),
        }
    }
}

/// Reads one `[destinations.NAME]` table: kind, description, queue keys, the kind's keys.
fn destination(c: &mut Collector, key: &str, v: Value) -> Option<DestinationConfig> {
    use crate::destination::{QueueConfig, Settings, QUEUE_KEYS};
    let Value::Object(mut table) = v else {
        c.push(key, "must be a table");
        return None;
    };
    let kind = match table.remove("kind") {
        Some(Value::String(k)) => k,
        Some(_) => {
            c.push(format!("{key}.kind"), "must be a string");
            return None;
        }
        None => {
            c.push(
                format!("{key}.kind"),
                format!("missing (expected {})", DESTINATION_KINDS.join(", ")),
            );
            return None;
        }
    };
    let description = match table.remove("description") {
        Some(Value::String(d)) => Some(d),
        None => None,
        Some(_) => {
            c.push(format!("{key}.description"), "must be a string");
            None
        }
    };
    let mut queue_keys = serde_json::Map::new();
    for k in QUEUE_KEYS {
        if let Some(v) = table.remove(k) {
            queue_keys.insert(k.to_string(), v);
        }
    }
    let queue: Option<QueueConfig> = c.section(key, Value::Object(queue_keys));
    if let Some(q) = &queue {
        for (k, m) in q.check() {
            c.push(format!("{key}.{k}"), m);
        }
    }
    let rest = Value::Object(table);
    let settings = match kind.as_str() {
        "http" => c.section(key, rest).map(Settings::Http),
        "file" => c.section(key, rest).map(Settings::File),
        "mllp" => c.section(key, rest).map(Settings::Mllp),
        "rabbitmq" => c.section(key, rest).map(Settings::Rabbitmq),
        "fhir" => c.section(key, rest).map(Settings::Fhir),
        other => {
            c.push(
                format!("{key}.kind"),
                format!(
                    "unknown destination kind {other:?} (expected {})",
                    DESTINATION_KINDS.join(", ")
                ),
            );
            None
        }
    };
    if let Some(problem) = settings.as_ref().and_then(Settings::check) {
        c.push(key, problem);
    }
    Some(DestinationConfig {
        kind,
        description,
        queue: queue?,
        settings: settings?,
    })
}

fn check_writable(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(format!(".aorta-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aorta-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn example_config_is_valid() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/aorta.toml");
        let c = Config::load(&p, false).unwrap();
        assert!(c.listeners.contains_key("adt"));
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let p = write(
            "bad.toml",
            r#"
[store]
path = "x.db"
colour = "blue"

[admin]
bind = "nowhere"
token = "hunter2"

[listeners.adt]
kind = "mllp"
bind = "127.0.0.1:2575"
max_frame_bytes = "big"

[listeners.lab]
kind = "mllp"
bind = "127.0.0.1:2575"
tls = { cert = "/no/cert.pem", key = "/no/key.pem" }

[listeners.fhir]
kind = "carrier-pigeon"

[listeners.rest]
kind = "fhir"
bind = "127.0.0.1:2575"
tokens = ["plain-text-token"]
max_body_bytes = 10
base = "/r4"

[extra]
x = 1
"#,
        );
        let errs = Config::load(&p, false).unwrap_err();
        let text = errs.to_string();
        for want in [
            "extra: unknown section",
            "store.colour: unknown field `colour`",
            "admin.token: a secret must be a reference",
            "listeners.adt.max_frame_bytes: invalid type",
            "listeners.lab.tls: /no/cert.pem",
            "listeners.fhir.kind: unknown listener kind \"carrier-pigeon\"",
            "listeners.rest.base: unknown field `base`",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(
            text.lines().all(|l| l.starts_with(p.to_str().unwrap())),
            "{text}"
        );
    }

    #[test]
    fn fhir_listener_values_are_checked() {
        let p = write(
            "fhir.toml",
            r#"
[listeners.rest]
kind = "fhir"
bind = "nowhere"
tokens = ["env:AORTA_TEST_UNSET_TOKEN_VARIABLE"]
max_body_bytes = 10

[fhir]
default_offset = "CET"
code_systems = { "99X" = "not a uri" }
"#,
        );
        let text = Config::load(&p, false).unwrap_err().to_string();
        for want in [
            "listeners.rest.bind: \"nowhere\" is not an address",
            "listeners.rest.max_body_bytes: must be at least 1024",
            "listeners.rest.tokens[0]: ",
            "fhir.default_offset: \"CET\": expected Z or +HH:MM",
            "fhir.code_systems.99X: \"not a uri\" is not a URI",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
    }

    #[test]
    fn duplicate_addresses_and_bad_values() {
        let p = write(
            "dup.toml",
            r#"
[admin]
bind = "127.0.0.1:2575"
[listeners.a]
kind = "mllp"
bind = "127.0.0.1:2575"
[listeners.b]
kind = "mllp"
bind = "127.0.0.1:2575"
framing = { start = 28 }
"#,
        );
        let text = Config::load(&p, false).unwrap_err().to_string();
        assert!(
            text.contains("listeners.b.bind: 127.0.0.1:2575 is also the address of listener a"),
            "{text}"
        );
        assert!(
            text.contains("admin.bind: 127.0.0.1:2575 is also the address of listener"),
            "{text}"
        );
        assert!(
            text.contains("listeners.b.framing: start, end and trailer bytes must differ, and start and end must not be 0"),
            "{text}"
        );
    }

    #[test]
    fn secrets() {
        assert_eq!(Secret::parse("env:X").unwrap(), Secret::Env("X".into()));
        assert!(Secret::parse("plain").is_err());
        let f = write("secret.txt", "s3cret\n");
        let s = Secret::parse(&format!("file:{}", f.display())).unwrap();
        assert_eq!(s.resolve().unwrap(), "s3cret");
        assert!(Secret::Env("AORTA_TEST_NOT_SET_ANYWHERE".into())
            .resolve()
            .is_err());
    }

    #[test]
    fn missing_file_and_bad_toml() {
        let e = Config::load(Path::new("/no/such/aorta.toml"), false).unwrap_err();
        assert!(e.to_string().contains("no such file"));
        let p = write("syntax.toml", "[store\npath = 1");
        let e = Config::load(&p, false).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
    }
}
