//! Route tests as data: `routes/NAME.test.toml` beside `routes/NAME.toml`, run by `aorta test`.
//!
//! ```toml
//! [[case]]
//! name = "an A01 reaches the EMR with its sex code mapped"
//! input = "fixtures/adt-a01.hl7"      # relative to the test file; a list runs each input
//! # message = """MSH|^~\&|...\nPID|..."""   (inline instead of input; lines become segments)
//! source = "adt"                      # listener; default: the route's first `from`
//! expect = "routed"                   # routed (default) | filtered | errored
//! # error_contains = "not in table"   (with expect = "errored")
//!
//! [[case.deliveries]]
//! to = "emr"
//! path = "PID-8"                      # an HL7 path, or a record path for record-json output
//! equals = "male"                     # or: exists = false, matches = "regex"
//!
//! [[case.deliveries]]
//! to = "archive"
//! output = "fixtures/expected/adt-a01.json"   # the whole payload (JSON compared as JSON)
//!
//! [[case.deliveries]]
//! to = "archive"
//! unchanged = true                    # the payload is the input, byte for byte
//!
//! [[case.deliveries]]
//! to = "lab"
//! delivered = false                   # this destination must get nothing
//! ```
//!
//! A test file tests the route beside it, alone: routes are independent, so a case's outcome
//! is that route's own (a message its `when` does not match is `filtered` for it).

use std::path::{Path as FsPath, PathBuf};

use regex::Regex;
use serde::Deserialize;

use super::target::{EvalContext, RecordPath, RecordView, Target};
use super::{Input, LoadError, LoadOptions, RouteResult, RouteSet};
use crate::hl7::Message;
use crate::record::{Delivery, OutputFormat};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    input: Option<Inputs>,
    message: Option<String>,
    source: Option<String>,
    #[serde(default = "routed")]
    expect: String,
    error_contains: Option<String>,
    #[serde(default)]
    deliveries: Vec<Expectation>,
}

fn routed() -> String {
    "routed".into()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Inputs {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expectation {
    to: String,
    path: Option<String>,
    equals: Option<String>,
    exists: Option<bool>,
    matches: Option<String>,
    output: Option<String>,
    #[serde(default)]
    unchanged: bool,
    #[serde(default = "yes")]
    delivered: bool,
}

fn yes() -> bool {
    true
}

/// The result of one case (one input of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    /// The test file.
    pub file: String,
    /// The case's name (with the input file when the case has several).
    pub case: String,
    /// What did not hold; empty when the case passed.
    pub failures: Vec<String>,
}

impl CaseReport {
    /// True when every expectation held.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Loads the routes of `dir` and runs every `*.test.toml` in it.
pub fn run_dir(dir: &FsPath, options: &LoadOptions) -> Result<Vec<CaseReport>, Vec<LoadError>> {
    let set = RouteSet::load(dir, options)?;
    let mut tests: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".test.toml")))
                .collect()
        })
        .unwrap_or_default();
    tests.sort();
    let mut reports = Vec::new();
    for file in tests {
        reports.extend(run_file(&file, &set));
    }
    Ok(reports)
}

/// Runs one test file against its route.
pub fn run_file(file: &FsPath, set: &RouteSet) -> Vec<CaseReport> {
    let name = file.display().to_string();
    let fail = |msg: String| {
        vec![CaseReport {
            file: name.clone(),
            case: "(file)".into(),
            failures: vec![msg],
        }]
    };
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read: {e}")),
    };
    let parsed: TestFile = match toml::from_str(&text) {
        Ok(p) => p,
        Err(e) => return fail(e.to_string()),
    };
    let route_file = PathBuf::from(name.trim_end_matches(".test.toml").to_string() + ".toml");
    let Some(route) = set.routes.iter().find(|r| r.file == route_file) else {
        return fail(format!(
            "no enabled route is loaded from {} (a test file tests the route file beside it)",
            route_file.display()
        ));
    };
    if parsed.case.is_empty() {
        return fail("the file has no [[case]]".into());
    }
    let base = file.parent().unwrap_or(FsPath::new("."));
    let mut reports = Vec::new();
    for case in &parsed.case {
        let inputs: Vec<(String, Result<Vec<u8>, String>)> = match (&case.input, &case.message) {
            (Some(_), Some(_)) => vec![(
                String::new(),
                Err("give `input` or `message`, not both".into()),
            )],
            (None, None) => vec![(
                String::new(),
                Err("a case needs `input` or `message`".into()),
            )],
            (None, Some(m)) => vec![(String::new(), Ok(normalize(m.as_bytes())))],
            (Some(inputs), None) => {
                let list = match inputs {
                    Inputs::One(s) => vec![s.clone()],
                    Inputs::Many(v) => v.clone(),
                };
                let many = list.len() > 1;
                list.into_iter()
                    .map(|f| {
                        let read = std::fs::read(base.join(&f))
                            .map(|b| normalize(&b))
                            .map_err(|e| format!("cannot read {f}: {e}"));
                        (if many { f } else { String::new() }, read)
                    })
                    .collect()
            }
        };
        for (label, raw) in inputs {
            let case_name = if label.is_empty() {
                case.name.clone()
            } else {
                format!("{} [{label}]", case.name)
            };
            let failures = match raw {
                Err(e) => vec![e],
                Ok(raw) => {
                    let source = case
                        .source
                        .clone()
                        .or_else(|| route.from.first().cloned())
                        .unwrap_or_else(|| "test".into());
                    check_case(case, base, route, &source, &raw)
                }
            };
            reports.push(CaseReport {
                file: name.clone(),
                case: case_name,
                failures,
            });
        }
    }
    reports
}

/// One message per fixture, segments ending in `\r` whatever line ends the file used.
fn normalize(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for line in text.split(['\r', '\n']).filter(|l| !l.trim().is_empty()) {
        out.push_str(line);
        out.push('\r');
    }
    out.into_bytes()
}

fn check_case(
    case: &Case,
    base: &FsPath,
    route: &super::Route,
    source: &str,
    raw: &[u8],
) -> Vec<String> {
    let mut failures = Vec::new();
    let msg = match Message::parse(raw) {
        Ok(m) => m,
        Err(e) => return vec![format!("the input does not parse: {e}")],
    };
    let record = RecordView::new(&msg);
    let input = Input {
        id: uuid::Uuid::nil(),
        source,
        raw,
        fhir: None,
    };
    let result = route.evaluate(&input, &msg, &record);
    let outcome = match &result {
        RouteResult::NotMatched | RouteResult::Filtered => "filtered",
        RouteResult::Delivered(_) => "routed",
        RouteResult::Errored(_) => "errored",
    };
    if !["routed", "filtered", "errored"].contains(&case.expect.as_str()) {
        return vec![format!(
            "expect = `{}`: use routed, filtered or errored",
            case.expect
        )];
    }
    if outcome != case.expect {
        let detail = match &result {
            RouteResult::Errored(e) => format!(" ({e})"),
            RouteResult::NotMatched => " (the route's from/when did not match)".into(),
            RouteResult::Filtered => " (a script filtered it)".into(),
            RouteResult::Delivered(d) => format!(
                " (to {})",
                d.iter()
                    .map(|x| x.destination.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        failures.push(format!("expected {}, got {outcome}{detail}", case.expect));
        return failures;
    }
    if let (Some(want), RouteResult::Errored(e)) = (&case.error_contains, &result) {
        if !e.contains(want.as_str()) {
            failures.push(format!("the error does not contain `{want}`: {e}"));
        }
    }
    let deliveries: &[Delivery] = match &result {
        RouteResult::Delivered(d) => d,
        _ => &[],
    };
    for exp in &case.deliveries {
        let found = deliveries.iter().find(|d| d.destination == exp.to);
        match (found, exp.delivered) {
            (None, true) => {
                failures.push(format!("{}: nothing was delivered", exp.to));
                continue;
            }
            (Some(_), false) => {
                failures.push(format!("{}: a delivery was made, expected none", exp.to));
                continue;
            }
            (None, false) => continue,
            (Some(d), true) => {
                if exp.unchanged && d.payload != raw {
                    failures.push(format!(
                        "{}: the payload is not the input unchanged: {}",
                        exp.to,
                        compare_output(d.format, raw, &d.payload).unwrap_or_default()
                    ));
                }
                failures.extend(check_delivery(exp, base, d))
            }
        }
    }
    failures
}

fn check_delivery(exp: &Expectation, base: &FsPath, d: &Delivery) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(out) = &exp.output {
        match std::fs::read(base.join(out)) {
            Err(e) => failures.push(format!("{}: cannot read {out}: {e}", exp.to)),
            Ok(expected) => {
                if let Some(diff) = compare_output(d.format, &expected, &d.payload) {
                    failures.push(format!("{}: output differs from {out}: {diff}", exp.to));
                }
            }
        }
    }
    let Some(path) = &exp.path else {
        if exp.equals.is_some() || exp.exists.is_some() || exp.matches.is_some() {
            failures.push(format!("{}: equals/exists/matches need a `path`", exp.to));
        }
        return failures;
    };
    let values: Vec<String> = match d.format {
        OutputFormat::Hl7v2 => match (Target::parse(path), Message::parse(&d.payload)) {
            (Err(e), _) => return vec![format!("{}: {e}", exp.to)],
            (_, Err(e)) => {
                return vec![format!(
                    "{}: the delivered message does not parse: {e}",
                    exp.to
                )]
            }
            (Ok(t), Ok(m)) => {
                let record = RecordView::new(&m);
                let cx = EvalContext {
                    message: &m,
                    record: &record,
                    scope: None,
                };
                t.values(&cx).into_iter().map(|v| v.into_owned()).collect()
            }
        },
        _ => match (
            RecordPath::parse(path),
            serde_json::from_slice::<serde_json::Value>(&d.payload),
        ) {
            (Err(e), _) => return vec![format!("{}: {e}", exp.to)],
            (_, Err(e)) => {
                return vec![format!(
                    "{}: the delivered JSON does not parse: {e}",
                    exp.to
                )]
            }
            (Ok(p), Ok(json)) => p
                .resolve(&json)
                .into_iter()
                .map(|v| super::target::json_text(v).unwrap_or_else(|| v.to_string()))
                .collect(),
        },
    };
    let present: Vec<&String> = values.iter().filter(|v| !v.is_empty()).collect();
    if let Some(want) = &exp.equals {
        if !values.iter().any(|v| v == want) {
            failures.push(format!(
                "{} {path}: expected \"{want}\", got {}",
                exp.to,
                describe(&present)
            ));
        }
    }
    if let Some(want) = exp.exists {
        if want == present.is_empty() {
            failures.push(format!(
                "{} {path}: expected {}, got {}",
                exp.to,
                if want { "a value" } else { "no value" },
                describe(&present)
            ));
        }
    }
    if let Some(pattern) = &exp.matches {
        match Regex::new(pattern) {
            Err(e) => failures.push(format!("{} {path}: bad regex: {e}", exp.to)),
            Ok(re) => {
                if !values.iter().any(|v| re.is_match(v)) {
                    failures.push(format!(
                        "{} {path}: expected a match for /{pattern}/, got {}",
                        exp.to,
                        describe(&present)
                    ));
                }
            }
        }
    }
    failures
}

fn describe(values: &[&String]) -> String {
    match values {
        [] => "nothing".into(),
        [one] => format!("\"{one}\""),
        many => format!(
            "[{}]",
            many.iter()
                .map(|v| format!("\"{v}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `None` when equal; else a short description of the first difference.
fn compare_output(format: OutputFormat, expected: &[u8], got: &[u8]) -> Option<String> {
    match format {
        OutputFormat::Hl7v2 => {
            let (e, g) = (normalize(expected), normalize(got));
            if e == g {
                return None;
            }
            let es: Vec<&[u8]> = e.split(|&b| b == b'\r').collect();
            let gs: Vec<&[u8]> = g.split(|&b| b == b'\r').collect();
            for i in 0..es.len().max(gs.len()) {
                let (a, b) = (es.get(i), gs.get(i));
                if a != b {
                    let show = |s: Option<&&[u8]>| {
                        s.map_or("(none)".to_string(), |s| {
                            String::from_utf8_lossy(s).into_owned()
                        })
                    };
                    return Some(format!(
                        "segment {}: expected `{}`, got `{}`",
                        i + 1,
                        show(a),
                        show(b)
                    ));
                }
            }
            Some("they differ".into())
        }
        _ => {
            let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b);
            match (parse(expected), parse(got)) {
                (Ok(a), Ok(b)) if a == b => None,
                (Ok(a), Ok(b)) => Some(format!("expected {a}, got {b}")),
                (Err(e), _) => Some(format!("the expected file is not JSON: {e}")),
                (_, Err(e)) => Some(format!("the output is not JSON: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::script::ScriptLimits;

    #[test]
    fn cases_pass_and_fail_readably() {
        let dir = std::env::temp_dir().join(format!("aorta-route-tests-{}", std::process::id()));
        crate::route::tests::write_routes(
            &dir,
            &[
                ("tables/sex.csv", "from,to\nM,male\nF,female\n"),
                ("fixtures/a01.hl7", "MSH|^~\\&|ADT|H|||2024||ADT^A01|1|P|2.5\nPID|1||42^^^H^MR||DOE||1980|M\n"),
                ("fixtures/expected.hl7", "MSH|^~\\&|ADT|H|||2024||ADT^A01|1|P|2.5\r\nPID|1||42^^^H^MR||DOE||1980|male\r\n"),
                (
                    "emr.toml",
                    "from = \"adt\"\nwhen = { \"MSH-9-1\" = \"ADT\" }\n[[steps]]\nmap = \"PID-8\"\ntable = \"sex\"\nunmapped = \"error\"\n[[to]]\ndestination = \"emr\"\n[[to]]\ndestination = \"archive\"\nformat = \"record-json\"\n",
                ),
                (
                    "emr.test.toml",
                    r#"
[[case]]
name = "A01 mapped"
input = "fixtures/a01.hl7"
[[case.deliveries]]
to = "emr"
path = "PID-8"
equals = "male"
[[case.deliveries]]
to = "emr"
output = "fixtures/expected.hl7"
[[case.deliveries]]
to = "archive"
path = "patient.identifiers[type=MR].value"
equals = "42"

[[case]]
name = "ORU is not for this route"
message = "MSH|^~\\&|LAB|H|||2024||ORU^R01|2|P|2.5"
expect = "filtered"

[[case]]
name = "unknown sex code"
message = "MSH|^~\\&|ADT|H|||2024||ADT^A08|3|P|2.5\nPID|1||42||DOE||1980|Q"
expect = "errored"
error_contains = "`Q` is not in table"

[[case]]
name = "a wrong expectation"
input = "fixtures/a01.hl7"
[[case.deliveries]]
to = "emr"
path = "PID-8"
equals = "female"
[[case.deliveries]]
to = "lab"
"#,
                ),
            ],
        );
        let options = LoadOptions {
            tables_dir: dir.join("tables"),
            script_limits: ScriptLimits::default(),
            ..LoadOptions::default()
        };
        let reports = run_dir(&dir, &options).unwrap();
        assert_eq!(reports.len(), 4, "{reports:?}");
        for r in &reports[..3] {
            assert!(r.passed(), "{r:?}");
        }
        assert_eq!(
            reports[3].failures,
            vec![
                "emr PID-8: expected \"female\", got \"male\"".to_string(),
                "lab: nothing was delivered".to_string()
            ]
        );
    }
}
