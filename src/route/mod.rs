//! Routes: which messages go where, and how they are reshaped on the way.
//!
//! ```text
//!  journal record ──> for each route:  from? ─> when? ─> steps (on a copy) ─> to (each: format)
//!                                          no/filtered                          └─> Delivery
//!  all routes' results ──> Routed(deliveries) | Filtered | Errored(why)
//! ```
//!
//! One route per file, `routes/NAME.toml`, compiled once at load ([`RouteSet::load`]): every
//! path, regex, code table and script is checked then, and every error is reported with its
//! file, line, route and key. Evaluation is pure — no I/O, no clock, no tokio — so a route can be
//! tested from data (`routes/NAME.test.toml`, see [`test`](mod@test)).
//!
//! ```toml
//! # routes/adt-to-emr.toml
//! name = "adt-to-emr"
//! description = "Admissions, transfers and updates to the EMR, sex codes mapped"
//! from = ["adt"]                                   # listener names, or "*"
//! when = { "MSH-9-1" = "ADT", "MSH-9-2" = ["A01", "A02", "A03", "A08"] }
//!
//! [[steps]]
//! map = "PID-8"
//! table = "sex"                                    # config/tables/sex.csv
//!
//! [[to]]
//! destination = "emr"
//! format = "hl7v2"                                 # hl7v2 | record-json | fhir
//! ```
//!
//! Semantics an operator can rely on:
//! - Several routes may match one message (fan-out); each works on its own copy.
//! - A message no route delivers is `filtered` (kept, counted, replayable), never lost.
//! - If any route fails (a step error, a script error), the message is `errored` and **no**
//!   deliveries are queued for it: fixing and replaying it then runs every route once, so no
//!   destination receives it twice.
//!
//! Conditions: [`condition`]; steps: [`step`]; paths: [`target`]; tables: [`table`]; scripts:
//! [`script`].

pub mod condition;
pub mod script;
pub mod step;
pub mod table;
pub mod target;
pub mod test;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::hl7::Message;
use crate::record::{Delivery, OutputFormat};
use condition::Condition;
use script::{Script, ScriptLimits};
use step::{Step, StepKind, StepResult, Template, Unmapped};
use table::CodeTable;
use target::{EvalContext, Hl7Target, RecordView, Target};

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name (unique).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// What it is for.
    pub description: Option<String>,
    /// Listener names it takes messages from; empty means every listener.
    pub from: Vec<String>,
    /// The condition a message must meet.
    pub when: Option<Condition>,
    /// The transforms, in order.
    pub steps: Vec<Step>,
    /// Where matching messages go.
    pub to: Vec<To>,
    /// How its `fhir` outputs are converted.
    pub fhir: Arc<crate::convert::fhir::FhirOptions>,
}

/// One destination of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct To {
    /// Destination name (a `[destinations.NAME]` of the config).
    pub destination: String,
    /// The form it receives.
    pub format: OutputFormat,
}

/// A message to route.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Its journal id.
    pub id: uuid::Uuid,
    /// The listener it came in on.
    pub source: &'a str,
    /// Its bytes (for FHIR input, the HL7 v2 made of it, which steps and HL7 paths work on).
    pub raw: &'a [u8],
    /// For FHIR input, the FHIR JSON as received: what a `fhir` output sends when no step
    /// changed the message.
    pub fhir: Option<&'a [u8]>,
}

/// What one route made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteResult {
    /// Its `from`/`when` did not match.
    NotMatched,
    /// It matched, and a script filtered the message.
    Filtered,
    /// It produced these deliveries.
    Delivered(Vec<Delivery>),
    /// A step failed.
    Errored(String),
}

/// How a failed script step names itself in a route error.
const SCRIPT_STEP: &str = " (script)";

impl RouteResult {
    /// True when a script step failed.
    pub fn is_script_error(&self) -> bool {
        matches!(self, RouteResult::Errored(e) if e.split(':').next().is_some_and(|p| p.ends_with(SCRIPT_STEP)))
    }
}

/// What happens to a message after all routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Queue these deliveries; the record becomes `routed`.
    Routed(Vec<Delivery>),
    /// No route delivers it; the record becomes `filtered`.
    Filtered,
    /// A route failed; the record becomes `errored` with this reason and nothing is queued.
    Errored(String),
}

impl Disposition {
    /// Combines the routes' results (see the module documentation for the rules).
    pub fn of(results: &[(&str, RouteResult)]) -> Disposition {
        let errors: Vec<String> = results
            .iter()
            .filter_map(|(name, r)| match r {
                RouteResult::Errored(e) => Some(format!("route {name}: {e}")),
                _ => None,
            })
            .collect();
        if !errors.is_empty() {
            return Disposition::Errored(errors.join("; "));
        }
        let deliveries: Vec<Delivery> = results
            .iter()
            .flat_map(|(_, r)| match r {
                RouteResult::Delivered(d) => d.clone(),
                _ => Vec::new(),
            })
            .collect();
        if deliveries.is_empty() {
            Disposition::Filtered
        } else {
            Disposition::Routed(deliveries)
        }
    }
}

impl Route {
    /// Whether the route takes messages from this listener.
    pub fn takes_from(&self, source: &str) -> bool {
        self.from.is_empty() || self.from.iter().any(|f| f == source)
    }

    /// Evaluates the route on a parsed message.
    pub fn evaluate(
        &self,
        input: &Input<'_>,
        msg: &Message<'_>,
        record: &RecordView<'_>,
    ) -> RouteResult {
        if !self.takes_from(input.source) {
            return RouteResult::NotMatched;
        }
        if let Some(when) = &self.when {
            let cx = EvalContext {
                message: msg,
                record,
                scope: None,
            };
            if !when.eval(&cx) {
                return RouteResult::NotMatched;
            }
        }
        let mut owned = None;
        let mut chosen: Option<Vec<String>> = None;
        if !self.steps.is_empty() {
            let mut m = msg.to_owned_message();
            let record_json =
                || serde_json::to_string(record.get()).unwrap_or_else(|_| "null".into());
            for (i, step) in self.steps.iter().enumerate() {
                match step.apply(&mut m, record, &record_json) {
                    Ok(StepResult::Continue) => {}
                    Ok(StepResult::Filter) => return RouteResult::Filtered,
                    Ok(StepResult::Destinations(names)) => {
                        if let Some(bad) = names
                            .iter()
                            .find(|n| !self.to.iter().any(|t| &t.destination == *n))
                        {
                            return RouteResult::Errored(format!(
                                "step {}: the script chose destination `{bad}`, which is not in this route's `to`",
                                i + 1
                            ));
                        }
                        chosen = Some(names);
                    }
                    Err(e) => {
                        let kind = if matches!(step.kind, StepKind::Script(_)) {
                            SCRIPT_STEP
                        } else {
                            ""
                        };
                        return RouteResult::Errored(format!("step {}{kind}: {e}", i + 1));
                    }
                }
            }
            owned = Some(m);
        }
        let hl7 = owned.as_ref().map(|m| m.encode());
        // The record of the transformed message, converted once for all its JSON outputs.
        let mut changed: Option<crate::record::Clinical> = None;
        let mut deliveries = Vec::new();
        for to in &self.to {
            if let Some(names) = &chosen {
                if !names.contains(&to.destination) {
                    continue;
                }
            }
            if to.format != OutputFormat::Hl7v2 && changed.is_none() {
                if let Some(bytes) = &hl7 {
                    changed = Some(match Message::parse(bytes) {
                        Ok(m) => crate::convert::v2::to_clinical(&m),
                        Err(e) => {
                            return RouteResult::Errored(format!(
                                "the transformed message no longer parses: {e}"
                            ))
                        }
                    });
                }
            }
            let clinical = || changed.as_ref().unwrap_or_else(|| record.clinical());
            let payload = match to.format {
                OutputFormat::Hl7v2 => hl7.clone().unwrap_or_else(|| input.raw.to_vec()),
                OutputFormat::RecordJson => serde_json::to_vec(clinical()).unwrap_or_default(),
                OutputFormat::Fhir => match input.fhir.filter(|_| hl7.is_none()) {
                    Some(original) => original.to_vec(),
                    None => crate::convert::fhir::to_bundle_json(clinical(), &self.fhir),
                },
            };
            deliveries.push(Delivery {
                message_id: input.id,
                route: self.name.clone(),
                destination: to.destination.clone(),
                format: to.format,
                payload,
                order_key: None,
            });
        }
        if deliveries.is_empty() {
            RouteResult::Filtered
        } else {
            RouteResult::Delivered(deliveries)
        }
    }
}

/// The compiled routes of a directory.
#[derive(Debug, Clone, Default)]
pub struct RouteSet {
    /// The routes, in file-name order.
    pub routes: Vec<Arc<Route>>,
}

/// A route-file problem: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub file: String,
    /// The line, when known.
    pub line: Option<usize>,
    /// The route's name, when known.
    pub route: Option<String>,
    /// The key, dotted (`steps[2].table`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(r) = &self.route {
            write!(f, ": route {r}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What a route set is checked against.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Where code tables live (`config/tables`).
    pub tables_dir: PathBuf,
    /// Known listener names (`None`: not checked).
    pub sources: Option<Vec<String>>,
    /// Known destination names (`None`: not checked).
    pub destinations: Option<Vec<String>>,
    /// Script limits.
    pub script_limits: ScriptLimits,
    /// How `fhir` outputs are converted.
    pub fhir: Arc<crate::convert::fhir::FhirOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    name: Option<String>,
    description: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
    from: OneOrMany,
    when: Option<toml::Table>,
    #[serde(default)]
    steps: Vec<StepFile>,
    to: Vec<toml::Value>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    set: Option<String>,
    value: Option<String>,
    raw: Option<bool>,
    copy: Option<String>,
    to: Option<String>,
    delete: Option<String>,
    map: Option<String>,
    table: Option<String>,
    column: Option<String>,
    unmapped: Option<String>,
    default: Option<String>,
    script: Option<String>,
    js: Option<String>,
    when: Option<toml::Table>,
}

/// Finds the 1-based line of `needle` in `source`, searching from line `from`.
fn line_of(source: &str, needle: &str, from: usize) -> Option<usize> {
    source
        .lines()
        .enumerate()
        .skip(from.saturating_sub(1))
        .find(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
}

/// The line of the `n`-th (0-based) `[[steps]]` header.
fn step_line(source: &str, n: usize) -> Option<usize> {
    source
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[steps]]"))
        .nth(n)
        .map(|(i, _)| i + 1)
}

struct Loader<'a> {
    options: &'a LoadOptions,
    tables: HashMap<String, Result<Arc<CodeTable>, String>>,
    errors: Vec<LoadError>,
}

impl RouteSet {
    /// Loads every `*.toml` under `dir` (not `*.test.toml`); all errors at once.
    pub fn load(dir: &FsPath, options: &LoadOptions) -> Result<RouteSet, Vec<LoadError>> {
        let mut loader = Loader {
            options,
            tables: HashMap::new(),
            errors: Vec::new(),
        };
        let files = match route_files(dir) {
            Ok(f) => f,
            Err(e) => {
                return Err(vec![LoadError {
                    file: dir.display().to_string(),
                    line: None,
                    route: None,
                    key: String::new(),
                    message: e,
                }])
            }
        };
        let mut routes = Vec::new();
        let mut names: HashMap<String, String> = HashMap::new();
        for file in files {
            let before = loader.errors.len();
            if let Some(route) = loader.load_file(&file) {
                if let Some(first) = names.insert(route.name.clone(), file.display().to_string()) {
                    loader.errors.push(LoadError {
                        file: file.display().to_string(),
                        line: None,
                        route: Some(route.name.clone()),
                        key: "name".into(),
                        message: format!("the name is already used by {first}"),
                    });
                } else if loader.errors.len() == before {
                    routes.push(Arc::new(route));
                }
            }
        }
        if loader.errors.is_empty() {
            Ok(RouteSet { routes })
        } else {
            Err(loader.errors)
        }
    }

    /// Evaluates every route (no timing; the daemon times each route itself).
    pub fn evaluate(&self, input: &Input<'_>) -> (Disposition, Vec<(String, RouteResult)>) {
        let msg = match Message::parse(input.raw) {
            Ok(m) => m,
            Err(e) => {
                return (
                    Disposition::Errored(format!("the message does not parse: {e}")),
                    Vec::new(),
                )
            }
        };
        let record = RecordView::new(&msg);
        let results: Vec<(String, RouteResult)> = self
            .routes
            .iter()
            .map(|r| (r.name.clone(), r.evaluate(input, &msg, &record)))
            .collect();
        let borrowed: Vec<(&str, RouteResult)> = results
            .iter()
            .map(|(n, r)| (n.as_str(), r.clone()))
            .collect();
        (Disposition::of(&borrowed), results)
    }

    /// Every destination name the routes use.
    pub fn destinations(&self) -> BTreeSet<String> {
        self.routes
            .iter()
            .flat_map(|r| r.to.iter().map(|t| t.destination.clone()))
            .collect()
    }

    /// A route by name.
    pub fn get(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| r.name == name)
    }
}

/// The route files of a directory, sorted (a missing directory has none).
pub fn route_files(dir: &FsPath) -> Result<Vec<PathBuf>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read the routes directory: {e}")),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.ends_with(".toml") && !name.ends_with(".test.toml") && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

impl Loader<'_> {
    fn error(
        &mut self,
        file: &FsPath,
        line: Option<usize>,
        route: Option<&str>,
        key: &str,
        message: impl Into<String>,
    ) {
        self.errors.push(LoadError {
            file: file.display().to_string(),
            line,
            route: route.map(str::to_string),
            key: key.to_string(),
            message: message.into(),
        });
    }

    fn table(&mut self, name: &str) -> Result<Arc<CodeTable>, String> {
        if let Some(t) = self.tables.get(name) {
            return t.clone();
        }
        let loaded = if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            Err(format!("`{name}` is not a table name (a file name under the tables directory, without .csv)"))
        } else {
            CodeTable::load(&self.options.tables_dir.join(format!("{name}.csv"))).map(Arc::new)
        };
        self.tables.insert(name.to_string(), loaded.clone());
        loaded
    }

    fn load_file(&mut self, file: &FsPath) -> Option<Route> {
        let source = match std::fs::read_to_string(file) {
            Ok(s) => s,
            Err(e) => {
                self.error(file, None, None, "", format!("cannot read: {e}"));
                return None;
            }
        };
        let parsed: RouteFile = match toml::from_str(&source) {
            Ok(p) => p,
            Err(e) => {
                let line = e
                    .span()
                    .map(|s| source[..s.start.min(source.len())].lines().count().max(1));
                self.error(file, line, None, "", e.message().to_string());
                return None;
            }
        };
        let stem = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .trim_end_matches(".toml")
            .to_string();
        let name = parsed.name.clone().unwrap_or(stem);
        if !parsed.enabled {
            return None;
        }
        let rn = Some(name.as_str());
        let from = match parsed.from {
            OneOrMany::One(s) if s == "*" => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if let Some(known) = &self.options.sources {
            for f in &from {
                if !known.contains(f) {
                    let line = line_of(&source, &format!("\"{f}\""), 1);
                    self.error(
                        file,
                        line,
                        rn,
                        "from",
                        format!(
                            "no listener is named `{f}` (listeners: {})",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        let when = parsed.when.as_ref().map(|t| {
            let mut errs = Vec::new();
            let c = Condition::compile(t, "when", &mut errs);
            for (key, message) in errs {
                let needle = key.rsplit('.').next().unwrap_or(&key).to_string();
                let line = line_of(&source, &needle, 1);
                self.error(file, line, rn, &key, message);
            }
            c
        });
        let mut steps = Vec::new();
        for (i, s) in parsed.steps.iter().enumerate() {
            let at = step_line(&source, i);
            if let Some(step) = self.step(file, &source, rn, i, at, s) {
                steps.push(step);
            }
        }
        let mut to = Vec::new();
        if parsed.to.is_empty() {
            self.error(
                file,
                line_of(&source, "to", 1),
                rn,
                "to",
                "a route needs at least one destination",
            );
        }
        for (i, t) in parsed.to.iter().enumerate() {
            let key = format!("to[{i}]");
            let parsed_to = match t {
                toml::Value::String(d) => Ok(To {
                    destination: d.clone(),
                    format: OutputFormat::Hl7v2,
                }),
                toml::Value::Table(tab) => parse_to(tab),
                _ => Err("expected a destination name or a table { destination = \"...\", format = \"...\" }".to_string()),
            };
            match parsed_to {
                Ok(to_item) => {
                    let line = line_of(&source, &format!("\"{}\"", to_item.destination), 1);
                    if let Some(known) = &self.options.destinations {
                        if !known.contains(&to_item.destination) {
                            self.error(
                                file,
                                line,
                                rn,
                                &key,
                                format!(
                                    "no destination is named `{}` (destinations: {})",
                                    to_item.destination,
                                    if known.is_empty() {
                                        "none configured".into()
                                    } else {
                                        known.join(", ")
                                    }
                                ),
                            );
                        }
                    }
                    if to.iter().any(|x: &To| x.destination == to_item.destination) {
                        self.error(
                            file,
                            line,
                            rn,
                            &key,
                            format!("`{}` is listed twice", to_item.destination),
                        );
                    }
                    to.push(to_item);
                }
                Err(e) => self.error(file, None, rn, &key, e),
            }
        }
        Some(Route {
            name,
            file: file.to_path_buf(),
            description: parsed.description,
            from,
            when,
            steps,
            to,
            fhir: self.options.fhir.clone(),
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        file: &FsPath,
        source: &str,
        route: Option<&str>,
        i: usize,
        at: Option<usize>,
        s: &StepFile,
    ) -> Option<Step> {
        let key = format!("steps[{i}]");
        let line_for = |k: &str| at.and_then(|a| line_of(source, k, a)).or(at);
        let kinds: Vec<&str> = [
            ("set", s.set.is_some()),
            ("copy", s.copy.is_some()),
            ("delete", s.delete.is_some()),
            ("map", s.map.is_some()),
            ("script", s.script.is_some()),
            ("js", s.js.is_some()),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(k, _)| *k)
        .collect();
        if kinds.len() != 1 {
            self.error(
                file,
                at,
                route,
                &key,
                format!(
                    "a step needs exactly one of set, copy, delete, map, script, js (found {})",
                    if kinds.is_empty() {
                        "none".into()
                    } else {
                        kinds.join(", ")
                    }
                ),
            );
            return None;
        }
        let kind = kinds[0];
        // Keys that belong to other kinds are mistakes worth naming.
        let allowed: &[&str] = match kind {
            "set" => &["value", "raw"],
            "copy" => &["to"],
            "map" => &["to", "table", "column", "unmapped", "default"],
            _ => &[],
        };
        for (k, present) in [
            ("value", s.value.is_some()),
            ("raw", s.raw.is_some()),
            ("to", s.to.is_some()),
            ("table", s.table.is_some()),
            ("column", s.column.is_some()),
            ("unmapped", s.unmapped.is_some()),
            ("default", s.default.is_some()),
        ] {
            if present && !allowed.contains(&k) {
                self.error(
                    file,
                    line_for(k),
                    route,
                    &format!("{key}.{k}"),
                    format!("`{k}` does not belong to a `{kind}` step"),
                );
            }
        }
        let hl7 = |this: &mut Self, k: &str, text: &str| -> Option<Hl7Target> {
            match Hl7Target::parse(text) {
                Ok(t) => Some(t),
                Err(e) => {
                    this.error(file, line_for(k), route, &format!("{key}.{k}"), e);
                    None
                }
            }
        };
        let when = s.when.as_ref().map(|t| {
            let mut errs = Vec::new();
            let c = Condition::compile(t, &format!("{key}.when"), &mut errs);
            for (k, message) in errs {
                self.error(file, line_for("when"), route, &k, message);
            }
            c
        });
        let step_kind = match kind {
            "set" => {
                let target = hl7(self, "set", s.set.as_deref().unwrap_or(""))?;
                let Some(v) = s.value.as_deref() else {
                    self.error(
                        file,
                        line_for("set"),
                        route,
                        &format!("{key}.value"),
                        "a set step needs a `value` (use \"\" to clear)",
                    );
                    return None;
                };
                let value = match Template::parse(v) {
                    Ok(t) => t,
                    Err(e) => {
                        self.error(file, line_for("value"), route, &format!("{key}.value"), e);
                        return None;
                    }
                };
                StepKind::Set {
                    target,
                    value,
                    raw: s.raw.unwrap_or(false),
                }
            }
            "copy" => {
                let from = match Target::parse(s.copy.as_deref().unwrap_or("")) {
                    Ok(t) => t,
                    Err(e) => {
                        self.error(file, line_for("copy"), route, &format!("{key}.copy"), e);
                        return None;
                    }
                };
                let Some(to) = s.to.as_deref() else {
                    self.error(
                        file,
                        line_for("copy"),
                        route,
                        &format!("{key}.to"),
                        "a copy step needs `to`",
                    );
                    return None;
                };
                StepKind::Copy {
                    from,
                    to: hl7(self, "to", to)?,
                }
            }
            "delete" => StepKind::Delete {
                target: hl7(self, "delete", s.delete.as_deref().unwrap_or(""))?,
            },
            "map" => {
                let from = hl7(self, "map", s.map.as_deref().unwrap_or(""))?;
                let to = match s.to.as_deref() {
                    Some(t) => hl7(self, "to", t)?,
                    None => from.clone(),
                };
                let Some(table_name) = s.table.as_deref() else {
                    self.error(
                        file,
                        line_for("map"),
                        route,
                        &format!("{key}.table"),
                        "a map step needs `table`",
                    );
                    return None;
                };
                let table = match self.table(table_name) {
                    Ok(t) => t,
                    Err(e) => {
                        self.error(file, line_for("table"), route, &format!("{key}.table"), e);
                        return None;
                    }
                };
                let column = match table.column(s.column.as_deref()) {
                    Ok(c) => c,
                    Err(e) => {
                        self.error(file, line_for("column"), route, &format!("{key}.column"), e);
                        return None;
                    }
                };
                let unmapped = match (s.unmapped.as_deref().unwrap_or("keep"), &s.default) {
                    ("keep", None) => Unmapped::Keep,
                    ("clear", None) => Unmapped::Clear,
                    ("error", None) => Unmapped::Error,
                    ("default", Some(d)) => Unmapped::Default(d.clone()),
                    ("default", None) => {
                        self.error(
                            file,
                            line_for("unmapped"),
                            route,
                            &format!("{key}.default"),
                            "unmapped = \"default\" needs `default`",
                        );
                        return None;
                    }
                    ("keep" | "clear" | "error", Some(_)) => {
                        self.error(
                            file,
                            line_for("default"),
                            route,
                            &format!("{key}.default"),
                            "`default` is used only with unmapped = \"default\"",
                        );
                        return None;
                    }
                    (other, _) => {
                        self.error(
                            file,
                            line_for("unmapped"),
                            route,
                            &format!("{key}.unmapped"),
                            format!("`{other}`: expected keep, clear, default or error"),
                        );
                        return None;
                    }
                };
                StepKind::Map {
                    from,
                    to,
                    table,
                    column,
                    unmapped,
                }
            }
            _ => {
                let (label, code) = if let Some(path) = &s.script {
                    let base = file.parent().unwrap_or(FsPath::new("."));
                    let full = base.join(path);
                    match std::fs::read_to_string(&full) {
                        Ok(code) => (full.display().to_string(), code),
                        Err(e) => {
                            self.error(
                                file,
                                line_for("script"),
                                route,
                                &format!("{key}.script"),
                                format!("cannot read {}: {e}", full.display()),
                            );
                            return None;
                        }
                    }
                } else {
                    (
                        format!("{}[{key}.js]", file.display()),
                        s.js.clone().unwrap_or_default(),
                    )
                };
                match Script::compile(&label, &code, self.options.script_limits) {
                    Ok(script) => StepKind::Script(script),
                    Err(e) => {
                        self.error(
                            file,
                            line_for(if s.js.is_some() { "js" } else { "script" }),
                            route,
                            &format!("{key}.{kind}"),
                            e.to_string(),
                        );
                        return None;
                    }
                }
            }
        };
        Some(Step {
            kind: step_kind,
            when,
        })
    }
}

fn parse_to(tab: &toml::Table) -> Result<To, String> {
    let mut destination = None;
    let mut format = OutputFormat::Hl7v2;
    for (k, v) in tab {
        match (k.as_str(), v) {
            ("destination", toml::Value::String(s)) => destination = Some(s.clone()),
            ("format", toml::Value::String(s)) => {
                format = OutputFormat::from_name(s)
                    .ok_or_else(|| format!("format `{s}`: expected hl7v2, fhir or record-json"))?
            }
            (other, _) => {
                return Err(format!(
                    "unknown key `{other}` (expected destination, format)"
                ))
            }
        }
    }
    Ok(To {
        destination: destination.ok_or("needs `destination`")?,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn write_routes(dir: &FsPath, files: &[(&str, &str)]) {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("tables")).unwrap();
        for (name, text) in files {
            let p = dir.join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
    }

    fn options(dir: &FsPath) -> LoadOptions {
        LoadOptions {
            tables_dir: dir.join("tables"),
            sources: Some(vec!["adt".into(), "lab".into()]),
            destinations: Some(vec!["emr".into(), "archive".into()]),
            script_limits: ScriptLimits::default(),
            fhir: Default::default(),
        }
    }

    const A01: &[u8] = b"MSH|^~\\&|ADT|HOSP|||20240301||ADT^A01|C1|P|2.5\rPID|1||42^^^H^MR||DOE^JO||19800101|M\rNTE|1||x\rNTE|2||y\r";

    #[test]
    fn routes_match_transform_and_fan_out() {
        let dir = std::env::temp_dir().join(format!("aorta-routes-{}-ok", std::process::id()));
        write_routes(
            &dir,
            &[
                ("tables/sex.csv", "from,to\nM,male\nF,female\n"),
                (
                    "a.toml",
                    r#"
name = "adt-to-emr"
from = ["adt"]
when = { "MSH-9-1" = "ADT", "MSH-9-2" = ["A01", "A04"] }
[[steps]]
map = "PID-8"
table = "sex"
[[steps]]
set = "MSH-5"
value = "EMR-${PID-3-1}"
[[steps]]
delete = "NTE(*)"
[[to]]
destination = "emr"
[[to]]
destination = "archive"
format = "record-json"
"#,
                ),
                (
                    "b.toml",
                    "name = \"all\"\nfrom = \"*\"\nto = [\"archive\"]\n",
                ),
                (
                    "c.toml",
                    "name = \"lab-only\"\nfrom = \"lab\"\nto = [\"emr\"]\n",
                ),
                (
                    "d.toml",
                    "name = \"off\"\nenabled = false\nfrom = \"nope\"\nto = [\"nowhere\"]\n",
                ),
                ("a.test.toml", "not a route"),
            ],
        );
        let set = RouteSet::load(&dir, &options(&dir)).unwrap();
        assert_eq!(set.routes.len(), 3);
        let input = Input {
            id: uuid::Uuid::now_v7(),
            source: "adt",
            raw: A01,
            fhir: None,
        };
        let (disposition, results) = set.evaluate(&input);
        assert_eq!(results[2].1, RouteResult::NotMatched);
        let Disposition::Routed(d) = disposition else {
            panic!("{disposition:?}")
        };
        assert_eq!(d.len(), 3);
        assert_eq!(
            d[0].payload,
            b"MSH|^~\\&|ADT|HOSP|EMR-42||20240301||ADT^A01|C1|P|2.5\rPID|1||42^^^H^MR||DOE^JO||19800101|male\r"
        );
        assert_eq!(d[0].route, "adt-to-emr");
        let json: serde_json::Value = serde_json::from_slice(&d[1].payload).unwrap();
        assert_eq!(json["patient"]["sex"], "male");
        assert_eq!(json["message"]["receiving_application"], "EMR-42");
        assert_eq!(d[2].route, "all");
        assert_eq!(d[2].payload, A01);
        let other = Input {
            source: "other",
            ..input
        };
        let (disposition, _) = set.evaluate(&other);
        assert!(matches!(disposition, Disposition::Routed(ref d) if d.len() == 1));
        let set_without_all = RouteSet {
            routes: set
                .routes
                .iter()
                .filter(|r| r.name != "all")
                .cloned()
                .collect(),
        };
        assert_eq!(set_without_all.evaluate(&other).0, Disposition::Filtered);
    }

    #[test]
    fn every_error_is_reported_with_file_line_route_and_key() {
        let dir = std::env::temp_dir().join(format!("aorta-routes-{}-bad", std::process::id()));
        write_routes(
            &dir,
            &[
                ("tables/sex.csv", "from,to\nM,male\n"),
                (
                    "a.toml",
                    "name = \"bad\"\nfrom = [\"adt\", \"pharmacy\"]\nwhen = { \"PID-x\" = \"1\" }\n\n[[steps]]\nmap = \"PID-8\"\ntable = \"nope\"\n\n[[steps]]\nset = \"PID-5\"\n\n[[steps]]\njs = \"let = ;\"\n\n[[to]]\ndestination = \"lis\"\nformat = \"fhir\"\n",
                ),
                ("b.toml", "name = \"syntax\"\nfrom = \"adt\"\nto = [\"emr\"\n"),
                ("c.toml", "name = \"unknown-key\"\nfrom = \"adt\"\nto = [\"emr\"]\nsteps = [ { set = \"PID-5\", value = \"x\", colour = 1 } ]\n"),
                ("d.toml", "name = \"bad\"\nfrom = \"adt\"\nto = [\"emr\"]\n"),
            ],
        );
        let errors = RouteSet::load(&dir, &options(&dir)).unwrap_err();
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let all = text.join("\n");
        assert!(
            all.contains("a.toml:2: route bad: from: no listener is named `pharmacy`"),
            "{all}"
        );
        assert!(all.contains("a.toml:3: route bad: when.PID-x:"), "{all}");
        assert!(
            all.contains("a.toml:7: route bad: steps[0].table:"),
            "{all}"
        );
        assert!(all.contains("nope.csv"), "{all}");
        assert!(
            all.contains("a.toml:10: route bad: steps[1].value: a set step needs a `value`"),
            "{all}"
        );
        assert!(all.contains("a.toml:13: route bad: steps[2].js:"), "{all}");
        assert!(
            all.contains("route bad: to[0]: no destination is named `lis`"),
            "{all}"
        );
        assert!(!all.contains(".format"), "{all}");
        assert!(all.contains("b.toml:"), "{all}");
        assert!(all.contains("c.toml:4:") && all.contains("colour"), "{all}");
        assert!(
            all.contains("d.toml: route bad: name: the name is already used by"),
            "{all}"
        );
    }
}
