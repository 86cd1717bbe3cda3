//! What conditions, steps and templates point at: an HL7 path or a record path.
//!
//! - HL7 paths are [`hl7::Path`](crate::hl7::Path)s (`PID-3-1`, `OBX(2)-5`, `PID.5.1`), plus one
//!   route-level addition: `(*)` / `[*]` after the segment id means **every occurrence**
//!   (`OBX(*)-3-1`), after the field number **every repetition** (`PID-3(*)-5`). A condition is
//!   true when any of those values satisfies it; a step is applied to each.
//! - Record paths read the [`Clinical`](crate::record::Clinical) record as JSON:
//!   `patient.sex`, `patient.identifiers[type=MR].value`, `observations[0].code.code`,
//!   `observations[*].value` or just `observations.value` (a list without a selector means every
//!   element). A selector `[key=value]` keeps the elements whose `key` (itself a record path)
//!   equals `value`. A path that ends on a code object reads its `code`.
//!
//! The two are told apart by their first letters: HL7 segment ids are three upper-case letters
//! or digits, record fields are lower case.

use std::borrow::Cow;
use std::cell::OnceCell;

use crate::hl7::{Message, OwnedMessage, Path};

/// A parsed target.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A place in the HL7 message.
    Hl7(Hl7Target),
    /// A place in the Clinical record.
    Record(RecordPath),
}

/// An HL7 path with the route-level wildcards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hl7Target {
    /// The path (occurrence/repetition 0 where a wildcard stood).
    pub path: Path,
    /// `(*)` after the segment id.
    pub every_segment: bool,
    /// `(*)` after the field number.
    pub every_repetition: bool,
    text: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Hl7(t) => f.write_str(&t.text),
            Target::Record(r) => f.write_str(&r.text),
        }
    }
}

impl Target {
    /// Parses a target; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Target, String> {
        let t = text.trim();
        let first = t.trim_start_matches('/').bytes().next();
        match first {
            Some(b) if b.is_ascii_uppercase() || b.is_ascii_digit() => {
                Hl7Target::parse(t).map(Target::Hl7)
            }
            Some(b) if b.is_ascii_lowercase() || b == b'_' => {
                RecordPath::parse(t).map(Target::Record)
            }
            _ => Err(format!(
                "`{text}` is neither an HL7 path (like PID-3-1) nor a record path (like patient.sex)"
            )),
        }
    }

    /// All values at the target (decoded text), in message order.
    pub fn values<'a>(&self, cx: &'a EvalContext<'a>) -> Vec<Cow<'a, str>> {
        match self {
            Target::Hl7(t) => t.values(cx.message, cx.scope),
            Target::Record(r) => r
                .resolve(cx.record.get())
                .into_iter()
                .filter_map(json_text)
                .map(Cow::Owned)
                .collect(),
        }
    }

    /// The first value, if any.
    pub fn first<'a>(&self, cx: &'a EvalContext<'a>) -> Option<Cow<'a, str>> {
        self.values(cx).into_iter().next()
    }
}

impl Hl7Target {
    /// Parses an HL7 path with optional `(*)`/`[*]` wildcards.
    pub fn parse(text: &str) -> Result<Hl7Target, String> {
        let mut every_segment = false;
        let mut every_repetition = false;
        let mut cleaned = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find("(*)").or_else(|| rest.find("[*]")) {
            let before = &rest[..i];
            cleaned.push_str(before);
            let so_far = cleaned.trim_start_matches('/');
            if so_far.len() == 3 && !every_segment {
                every_segment = true;
            } else if so_far.len() > 3 && !every_repetition {
                every_repetition = true;
            } else {
                return Err(format!("`{text}`: a wildcard (*) can follow the segment id or the field number, once each"));
            }
            let bracket = rest[i..].starts_with('[');
            cleaned.push_str(if bracket { "[1]" } else { "(0)" });
            rest = &rest[i + 3..];
        }
        cleaned.push_str(rest);
        let path = Path::parse(&cleaned).map_err(|e| format!("`{text}`: {e}"))?;
        if every_repetition && path.field.is_none() {
            return Err(format!("`{text}`: a repetition wildcard needs a field"));
        }
        Ok(Hl7Target {
            path,
            every_segment,
            every_repetition,
            text: text.to_string(),
        })
    }

    /// The concrete paths this target names in `msg` (one per occurrence/repetition).
    pub fn expand(&self, msg: &dyn Hl7Read, scope: Option<Scope>) -> Vec<Path> {
        let occurrences: Vec<usize> = if self.every_segment {
            match scope {
                Some(s) if s.segment == self.path.segment => vec![s.occurrence],
                _ => (0..msg.occurrences(&self.path.segment)).collect(),
            }
        } else {
            vec![self.path.occurrence]
        };
        let mut out = Vec::new();
        for occ in occurrences {
            let p = self.path.clone().with_occurrence(occ);
            if self.every_repetition {
                let n = msg.repetitions(&p);
                out.extend((0..n).map(|r| p.clone().with_repetition(r)));
            } else {
                out.push(p);
            }
        }
        out
    }

    fn values<'a>(&self, msg: &'a dyn Hl7Read, scope: Option<Scope>) -> Vec<Cow<'a, str>> {
        if !self.every_segment && !self.every_repetition {
            return msg.get(&self.path).into_iter().collect();
        }
        self.expand(msg, scope)
            .iter()
            .filter_map(|p| msg.get(p))
            .collect()
    }

    /// The values at this target (every occurrence/repetition its wildcards name).
    pub fn values_for(&self, cx: &EvalContext<'_>) -> Vec<String> {
        self.values(cx.message, cx.scope)
            .into_iter()
            .map(|v| v.into_owned())
            .collect()
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// The segment occurrence a per-occurrence step is working on: `(*)` on that segment in its
/// templates and conditions means this occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// Segment id.
    pub segment: [u8; 3],
    /// 0-based occurrence.
    pub occurrence: usize,
}

/// Read access to a message in either form.
pub trait Hl7Read {
    /// Decoded text at a path (Terser reading).
    fn get(&self, path: &Path) -> Option<Cow<'_, str>>;
    /// How many segments have this id.
    fn occurrences(&self, segment: &[u8; 3]) -> usize;
    /// How many repetitions the field `path` names has (0 when absent or empty).
    fn repetitions(&self, path: &Path) -> usize;
}

impl Hl7Read for Message<'_> {
    fn get(&self, path: &Path) -> Option<Cow<'_, str>> {
        Message::get(self, path)
    }

    fn occurrences(&self, segment: &[u8; 3]) -> usize {
        self.segments()
            .filter(|s| s.id().as_bytes() == segment)
            .count()
    }

    fn repetitions(&self, path: &Path) -> usize {
        let id = std::str::from_utf8(&path.segment).unwrap_or("");
        self.segment(id, path.occurrence)
            .and_then(|s| s.field(path.field?))
            .filter(|f| !f.is_empty())
            .map_or(0, |f| f.children().count())
    }
}

impl Hl7Read for OwnedMessage {
    fn get(&self, path: &Path) -> Option<Cow<'_, str>> {
        OwnedMessage::get(self, path)
    }

    fn occurrences(&self, segment: &[u8; 3]) -> usize {
        self.segment_ids()
            .filter(|s| s.as_bytes() == segment)
            .count()
    }

    fn repetitions(&self, path: &Path) -> usize {
        let field = Path {
            repetition: None,
            component: None,
            subcomponent: None,
            ..path.clone()
        };
        match (self.get_raw(&field), self.delimiters().repetition) {
            (Some(b""), _) => 0,
            (Some(raw), Some(sep)) => raw.iter().filter(|&&b| b == sep).count() + 1,
            (Some(_), None) => 1,
            (None, _) => 0,
        }
    }
}

/// The Clinical record of the message being routed, as JSON, made on first use.
pub struct RecordView<'a> {
    message: &'a Message<'a>,
    clinical: OnceCell<crate::record::Clinical>,
    json: OnceCell<serde_json::Value>,
}

impl<'a> RecordView<'a> {
    /// A view that converts `message` when a record path is first read.
    pub fn new(message: &'a Message<'a>) -> RecordView<'a> {
        RecordView {
            message,
            clinical: OnceCell::new(),
            json: OnceCell::new(),
        }
    }

    /// A view whose record is already made (FHIR input: the record comes from the FHIR, and
    /// `message` is the HL7 v2 made of it).
    pub fn with_clinical(
        message: &'a Message<'a>,
        clinical: crate::record::Clinical,
    ) -> RecordView<'a> {
        RecordView {
            message,
            clinical: OnceCell::from(clinical),
            json: OnceCell::new(),
        }
    }

    /// The record.
    pub fn clinical(&self) -> &crate::record::Clinical {
        self.clinical
            .get_or_init(|| crate::convert::v2::to_clinical(self.message))
    }

    /// The record as JSON.
    pub fn get(&self) -> &serde_json::Value {
        self.json.get_or_init(|| {
            serde_json::to_value(self.clinical()).unwrap_or(serde_json::Value::Null)
        })
    }
}

/// What a condition or template is evaluated against.
pub struct EvalContext<'a> {
    /// The message (as received for `when`, as changed so far for steps).
    pub message: &'a dyn Hl7Read,
    /// The record of the received message.
    pub record: &'a RecordView<'a>,
    /// The occurrence a per-occurrence step is on.
    pub scope: Option<Scope>,
}

/// A parsed record path; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordPath {
    steps: Vec<(String, Vec<Selector>)>,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Selector {
    All,
    Index(usize),
    Where(RecordPath, String),
}

impl RecordPath {
    /// Parses `a.b[sel].c`.
    pub fn parse(text: &str) -> Result<RecordPath, String> {
        let mut steps = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        loop {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            if i == start {
                return Err(format!(
                    "`{text}`: expected a field name at column {}",
                    i + 1
                ));
            }
            let name = text[start..i].to_string();
            let mut selectors = Vec::new();
            while i < b.len() && b[i] == b'[' {
                let close = text[i..]
                    .find(']')
                    .map(|k| i + k)
                    .ok_or_else(|| format!("`{text}`: `[` at column {} is not closed", i + 1))?;
                let inner = text[i + 1..close].trim();
                let sel = if inner == "*" {
                    Selector::All
                } else if let Ok(n) = inner.parse::<usize>() {
                    Selector::Index(n)
                } else if let Some((k, v)) = inner.split_once('=') {
                    let key = RecordPath::parse(k.trim())
                        .map_err(|e| format!("`{text}`: in a selector: {e}"))?;
                    Selector::Where(key, v.trim().trim_matches('"').to_string())
                } else {
                    return Err(format!(
                        "`{text}`: `[{inner}]` should be an index, `*` or `key=value`"
                    ));
                };
                selectors.push(sel);
                i = close + 1;
            }
            steps.push((name, selectors));
            if i == b.len() {
                break;
            }
            if b[i] != b'.' {
                return Err(format!(
                    "`{text}`: unexpected `{}` at column {}",
                    b[i] as char,
                    i + 1
                ));
            }
            i += 1;
        }
        Ok(RecordPath {
            steps,
            text: text.to_string(),
        })
    }

    /// The values the path reaches.
    pub fn resolve<'v>(&self, root: &'v serde_json::Value) -> Vec<&'v serde_json::Value> {
        let mut current = vec![root];
        for (name, selectors) in &self.steps {
            let mut next = Vec::new();
            for v in current {
                if let Some(child) = v.get(name) {
                    next.push(child);
                }
            }
            for sel in selectors {
                next = apply_selector(next, sel);
            }
            // A list reached without a selector stands for all its elements.
            current = next
                .into_iter()
                .flat_map(|v| match v {
                    serde_json::Value::Array(items) => items.iter().collect(),
                    other => vec![other],
                })
                .collect();
        }
        current
    }
}

fn apply_selector<'v>(
    values: Vec<&'v serde_json::Value>,
    sel: &Selector,
) -> Vec<&'v serde_json::Value> {
    let items = values.into_iter().flat_map(|v| match v {
        serde_json::Value::Array(items) => items.iter().collect::<Vec<_>>(),
        other => vec![other],
    });
    match sel {
        Selector::All => items.collect(),
        Selector::Index(n) => items.skip(*n).take(1).collect(),
        Selector::Where(key, want) => items
            .filter(|item| {
                key.resolve(item)
                    .into_iter()
                    .filter_map(json_text)
                    .any(|t| &t == want)
            })
            .collect(),
    }
}

/// A JSON value as text for comparisons: strings as they are, whole numbers without `.0`,
/// a code object as its `code`.
pub(crate) fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        }),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Object(o) => o.get("code").and_then(json_text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORU: &[u8] = b"MSH|^~\\&|LAB|H|||20240301||ORU^R01|1|P|2.5\rPID|1||A1^^^H^MR~S1^^^SSA^SS||DOE^JO||19800101|F\rOBR|1||F1|CBC\rOBX|1|NM|718-7^Hgb^LN||13|g/dL\rOBX|2|NM|4544-3^Hct^LN||40|%\r";

    #[test]
    fn hl7_wildcards() {
        let msg = Message::parse(ORU).unwrap();
        let record = RecordView::new(&msg);
        let cx = EvalContext {
            message: &msg,
            record: &record,
            scope: None,
        };
        let t = Target::parse("OBX(*)-3-1").unwrap();
        assert_eq!(t.values(&cx), vec!["718-7", "4544-3"]);
        let t = Target::parse("PID-3[*].5").unwrap();
        assert_eq!(t.values(&cx), vec!["MR", "SS"]);
        let t = Target::parse("OBX[2].5").unwrap();
        assert_eq!(t.values(&cx), vec!["40"]);
        let scoped = EvalContext {
            scope: Some(Scope {
                segment: *b"OBX",
                occurrence: 1,
            }),
            ..cx
        };
        assert_eq!(
            Target::parse("OBX(*)-5").unwrap().values(&scoped),
            vec!["40"]
        );
        assert!(Target::parse("PID(*)-3(*)-1(*)").is_err());
        assert!(Target::parse("-3").is_err());
        assert!(Target::parse("PID-x").is_err());
    }

    #[test]
    fn record_paths() {
        let msg = Message::parse(ORU).unwrap();
        let record = RecordView::new(&msg);
        let cx = EvalContext {
            message: &msg,
            record: &record,
            scope: None,
        };
        let v = |p: &str| -> Vec<String> {
            Target::parse(p)
                .unwrap()
                .values(&cx)
                .into_iter()
                .map(|c| c.into_owned())
                .collect()
        };
        assert_eq!(v("patient.sex"), vec!["F"]);
        assert_eq!(v("patient.identifiers[type=SS].value"), vec!["S1"]);
        assert_eq!(v("observations.code"), vec!["718-7", "4544-3"]);
        assert_eq!(v("observations[1].value"), vec!["40"]);
        assert_eq!(v("observations[code.code=718-7].units.code"), vec!["g/dL"]);
        assert_eq!(v("patient.birth_date"), vec!["1980-01-01"]);
        assert!(v("visit.class").is_empty());
        assert!(RecordPath::parse("a..b").is_err());
        assert!(RecordPath::parse("a[x").is_err());
        assert!(RecordPath::parse("a[?]").is_err());
    }
}
