//! Steps: the ordered transforms of a route, compiled once.
//!
//! ```toml
//! [[steps]]
//! set = "MSH-5"                 # write a value (a template: ${PID-3-1}, ${patient.sex})
//! value = "EMR"
//!
//! [[steps]]
//! set = "PID-3(0)-4"
//! value = "HOSP&1.2.3&ISO"
//! raw = true                    # the value is ER7 and may hold component/subcomponent separators
//!
//! [[steps]]
//! copy = "PID-3-1"              # a path or a record path
//! to = "PID-2-1"                # the target becomes the source's value (cleared when it has none)
//!
//! [[steps]]
//! delete = "NTE(*)"             # a segment (every occurrence), a repetition (PID-3(1)) or a field
//!
//! [[steps]]
//! map = "OBX(*)-3-1"            # look the value up in config/tables/loinc.csv ...
//! table = "loinc"
//! to = "OBX(*)-3-1"             # ... and write it here (default: back where it was read)
//! column = "code"               # value column (default: the second)
//! unmapped = "error"            # keep (default) | clear | default | error
//! default = "UNK"               # with unmapped = "default"
//!
//! [[steps]]
//! script = "scripts/adt.js"     # JavaScript, see `script`; or inline: js = """ ... """
//! when = { "PV1-2" = "I" }      # any step may have a condition
//! ```
//!
//! A path with `(*)` on its segment makes the step run once per occurrence of that segment;
//! inside that run, `(*)` on the same segment in the step's `when`, template or source means the
//! current occurrence (so `copy = "OBX(*)-3-2"`, `to = "OBX(*)-3-9"` copies within each OBX).

use std::sync::Arc;

use super::condition::Condition;
use super::script::{Script, ScriptOutcome};
use super::table::CodeTable;
use super::target::{EvalContext, Hl7Target, RecordView, Scope, Target};
use crate::hl7::{OwnedMessage, Path};

/// A compiled step.
#[derive(Debug, Clone)]
pub struct Step {
    /// What it does.
    pub kind: StepKind,
    /// Only when this holds (evaluated on the message as changed so far).
    pub when: Option<Condition>,
}

/// The step kinds.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// Write a value.
    Set {
        /// Where.
        target: Hl7Target,
        /// What.
        value: Template,
        /// The value is ER7-encoded (not escaped).
        raw: bool,
    },
    /// Copy a value.
    Copy {
        /// From (an HL7 or record path).
        from: Target,
        /// To.
        to: Hl7Target,
    },
    /// Remove a segment, repetition or field.
    Delete {
        /// What.
        target: Hl7Target,
    },
    /// Translate a code through a table.
    Map {
        /// Read from.
        from: Hl7Target,
        /// Write to.
        to: Hl7Target,
        /// The table.
        table: Arc<CodeTable>,
        /// Value column.
        column: usize,
        /// What an unlisted code does.
        unmapped: Unmapped,
    },
    /// Run JavaScript.
    Script(Script),
}

/// What a `map` step does with a code the table does not list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unmapped {
    /// Leave the value as it is.
    Keep,
    /// Clear it.
    Clear,
    /// Write this instead.
    Default(String),
    /// Fail the message for this route.
    Error,
}

/// A step's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// Go on.
    Continue,
    /// Filter the message (a script said so).
    Filter,
    /// Deliver only to these (a script said so).
    Destinations(Vec<String>),
}

/// A value with `${path}` placeholders (`$${` writes a literal `${`).
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Value(Target),
}

impl Template {
    /// Parses a template; every placeholder's path is checked.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(i) = rest.find("${") {
            if rest[..i].ends_with('$') {
                literal.push_str(&rest[..i - 1]);
                literal.push_str("${");
                rest = &rest[i + 2..];
                continue;
            }
            literal.push_str(&rest[..i]);
            let end = rest[i..]
                .find('}')
                .ok_or_else(|| format!("`{text}`: `${{` without a closing `}}`"))?;
            let inner = &rest[i + 2..i + end];
            let target = Target::parse(inner.trim())?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Value(target));
            rest = &rest[i + end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// The text with each placeholder replaced by its first value (empty when absent).
    pub fn render(&self, cx: &EvalContext<'_>) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Value(target) => {
                    if let Some(v) = target.first(cx) {
                        out.push_str(&v);
                    }
                }
            }
        }
        out
    }
}

impl Step {
    /// The target whose segment wildcard makes the step run per occurrence.
    fn driver(&self) -> Option<&Hl7Target> {
        match &self.kind {
            StepKind::Set { target, .. } | StepKind::Delete { target } => Some(target),
            StepKind::Copy { to, .. } => Some(to),
            StepKind::Map { from, .. } => Some(from),
            StepKind::Script(_) => None,
        }
    }

    /// Applies the step to `msg`.
    pub fn apply(
        &self,
        msg: &mut OwnedMessage,
        record: &RecordView<'_>,
        record_json: &dyn Fn() -> String,
    ) -> Result<StepResult, String> {
        let scopes: Vec<Option<Scope>> = match self.driver() {
            Some(t) if t.every_segment => {
                let n = msg
                    .segment_ids()
                    .filter(|s| s.as_bytes() == t.path.segment)
                    .count();
                // Deleting from the end keeps the earlier occurrences' numbers valid.
                (0..n)
                    .rev()
                    .map(|occurrence| {
                        Some(Scope {
                            segment: t.path.segment,
                            occurrence,
                        })
                    })
                    .collect()
            }
            _ => vec![None],
        };
        let per_occurrence = scopes.len() > 1 || scopes.first().is_some_and(Option::is_some);
        let mut ordered = scopes;
        if per_occurrence && !matches!(self.kind, StepKind::Delete { .. }) {
            ordered.reverse();
        }
        for scope in ordered {
            if let Some(when) = &self.when {
                let cx = EvalContext {
                    message: &*msg,
                    record,
                    scope,
                };
                if !when.eval(&cx) {
                    continue;
                }
            }
            let result = self.apply_once(msg, record, record_json, scope)?;
            if result != StepResult::Continue {
                return Ok(result);
            }
        }
        Ok(StepResult::Continue)
    }

    fn apply_once(
        &self,
        msg: &mut OwnedMessage,
        record: &RecordView<'_>,
        record_json: &dyn Fn() -> String,
        scope: Option<Scope>,
    ) -> Result<StepResult, String> {
        match &self.kind {
            StepKind::Set { target, value, raw } => {
                let text = value.render(&EvalContext {
                    message: &*msg,
                    record,
                    scope,
                });
                for p in target.expand(&*msg, scope) {
                    write(msg, &p, Some(&text), *raw)?;
                }
            }
            StepKind::Copy { from, to } => {
                let value = from
                    .first(&EvalContext {
                        message: &*msg,
                        record,
                        scope,
                    })
                    .map(|v| v.into_owned());
                for p in to.expand(&*msg, scope) {
                    write(msg, &p, value.as_deref(), false)?;
                }
            }
            StepKind::Delete { target } => {
                let mut paths = target.expand(&*msg, scope);
                paths.reverse();
                for p in paths {
                    msg.delete(&p)
                        .map_err(|e| format!("delete {}: {e}", target.as_str()))?;
                }
            }
            StepKind::Map {
                from,
                to,
                table,
                column,
                unmapped,
            } => {
                for (src, dst) in from
                    .expand(&*msg, scope)
                    .into_iter()
                    .zip(to.expand(&*msg, scope))
                {
                    let Some(code) = msg.get(&src).map(|v| v.into_owned()) else {
                        continue;
                    };
                    if code.is_empty() {
                        continue;
                    }
                    let mapped = match table.lookup(&code, *column) {
                        Some(v) => Some(v.to_string()),
                        None => match unmapped {
                            // The target keeps what it holds (with `to`, the source is not copied).
                            Unmapped::Keep => continue,
                            Unmapped::Clear => None,
                            Unmapped::Default(d) => Some(d.clone()),
                            Unmapped::Error => {
                                return Err(format!(
                                    "map {}: the code `{code}` is not in table {}",
                                    from.as_str(),
                                    table.file
                                ))
                            }
                        },
                    };
                    write(msg, &dst, mapped.as_deref(), false)?;
                }
            }
            StepKind::Script(script) => {
                return match script.run(msg, record_json).map_err(|e| e.to_string())? {
                    ScriptOutcome::Continue => Ok(StepResult::Continue),
                    ScriptOutcome::Filter => Ok(StepResult::Filter),
                    ScriptOutcome::Destinations(d) => Ok(StepResult::Destinations(d)),
                };
            }
        }
        Ok(StepResult::Continue)
    }
}

fn write(
    msg: &mut OwnedMessage,
    path: &Path,
    value: Option<&str>,
    raw: bool,
) -> Result<(), String> {
    let r = match (value, raw) {
        (None, _) | (Some(""), _) => msg.clear(path),
        (Some(v), false) => msg.set(path, v),
        (Some(v), true) => msg.set_raw(path, v.as_bytes()),
    };
    r.map_err(|e| format!("writing {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Message;

    #[test]
    fn templates() {
        let raw = b"MSH|^~\\&|A|B|||2024||ADT^A01|9|P|2.5\rPID|1||42^^^H^MR||DOE^JO\r";
        let msg = Message::parse(raw).unwrap();
        let record = RecordView::new(&msg);
        let cx = EvalContext {
            message: &msg,
            record: &record,
            scope: None,
        };
        let t = Template::parse("id=${PID-3-1}/${patient.names.family}/${ZZZ-1}/$${x}").unwrap();
        assert_eq!(t.render(&cx), "id=42/DOE//${x}");
        assert!(Template::parse("${PID-3").is_err());
        assert!(Template::parse("${nope!}").is_err());
    }
}
