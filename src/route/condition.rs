//! `when`: conditions on HL7 paths and record paths, compiled once.
//!
//! ```toml
//! when = { "MSH-9-1" = "ADT", "MSH-9-2" = ["A01", "A04", "A08"] }
//!
//! [when]
//! "PID-3(*)-5" = { exists = true }
//! "OBX(*)-3-1" = { matches = "^(718-7|4544-3)$" }
//! "patient.birth_date" = { lt = "2006-01-01" }
//! any = [ { "MSH-4" = "LAB" }, { "MSH-4" = "LAB2" } ]
//! not = { "MSH-11" = "T" }
//! ```
//!
//! Every key of a table must hold (they are joined with AND). A key is a path (see
//! [`target`](super::target)) or one of `all`, `any` (lists of tables) and `not` (a table). A
//! path's value is a string, number or boolean (equals), a list (equals one of), or a table of
//! operators, all of which must hold:
//!
//! | operator | true when |
//! |---|---|
//! | `equals`, `in` | a value equals the operand (or one of the list) |
//! | `not_equals`, `not_in` | no value equals it (also when there is no value) |
//! | `exists` | `true`: a non-empty value is there; `false`: none is |
//! | `matches` | a value matches the regular expression (Rust `regex` syntax) |
//! | `starts_with`, `ends_with`, `contains` | a value does |
//! | `gt`, `ge`, `lt`, `le` | a value compares so: as numbers when both are numbers, as dates when both are dates (HL7 `YYYYMMDD...` or ISO), else as text |
//! | `ignore_case` | makes the text operators above ignore case |
//!
//! With a wildcard path (`OBX(*)-3-1`) or a record list, a condition holds when **any** value
//! satisfies it (`not_equals`/`not_in`/`exists = false`: when none does).

use std::cmp::Ordering;

use regex::Regex;

use super::target::{EvalContext, Target};
use crate::convert::v2::hl7_datetime;

/// A compiled condition.
#[derive(Debug, Clone)]
pub enum Condition {
    /// Every one holds (an empty list holds).
    All(Vec<Condition>),
    /// At least one holds.
    Any(Vec<Condition>),
    /// It does not hold.
    Not(Box<Condition>),
    /// A test of the values at one target.
    Test {
        /// Where the values come from.
        target: Target,
        /// What they must satisfy.
        op: Op,
    },
}

/// A test on values.
#[derive(Debug, Clone)]
pub enum Op {
    /// A value equals one of these.
    OneOf(Vec<Literal>, bool),
    /// No value equals any of these.
    NoneOf(Vec<Literal>, bool),
    /// A non-empty value is (true) or is not (false) there.
    Exists(bool),
    /// A value matches.
    Matches(Regex),
    /// A value starts with this.
    StartsWith(String, bool),
    /// A value ends with this.
    EndsWith(String, bool),
    /// A value contains this.
    Contains(String, bool),
    /// A value compares with the literal as one of these orderings.
    Compare(Vec<Ordering>, Literal),
}

/// A literal operand: its text, and its number when it is one.
#[derive(Debug, Clone)]
pub struct Literal {
    text: String,
    number: Option<f64>,
}

impl Literal {
    fn from_toml(v: &toml::Value) -> Result<Literal, String> {
        match v {
            toml::Value::String(s) => Ok(Literal {
                number: s.trim().parse().ok().filter(|n: &f64| n.is_finite()),
                text: s.clone(),
            }),
            toml::Value::Integer(i) => Ok(Literal {
                text: i.to_string(),
                number: Some(*i as f64),
            }),
            toml::Value::Float(f) => Ok(Literal {
                text: f.to_string(),
                number: Some(*f),
            }),
            toml::Value::Boolean(b) => Ok(Literal {
                text: b.to_string(),
                number: None,
            }),
            toml::Value::Datetime(d) => Ok(Literal {
                text: d.to_string(),
                number: None,
            }),
            other => Err(format!(
                "expected a string, number or boolean, found {}",
                other.type_str()
            )),
        }
    }

    fn equals(&self, value: &str, ignore_case: bool) -> bool {
        if let (Some(n), Ok(v)) = (self.number, value.trim().parse::<f64>()) {
            return n == v;
        }
        if ignore_case {
            self.text.eq_ignore_ascii_case(value)
                || self.text.to_lowercase() == value.to_lowercase()
        } else {
            self.text == value
        }
    }
}

/// A compile error: the key (dotted, from the top of `when`) and what is wrong.
pub type CompileError = (String, String);

impl Condition {
    /// Compiles a `when` table; `key` is where it sits (for error messages). Collects every error.
    pub fn compile(table: &toml::Table, key: &str, errors: &mut Vec<CompileError>) -> Condition {
        let mut parts = Vec::new();
        for (k, v) in table {
            let here = if key.is_empty() {
                k.clone()
            } else {
                format!("{key}.{k}")
            };
            match k.as_str() {
                "all" | "any" => {
                    let Some(list) = v.as_array() else {
                        errors.push((here, format!("`{k}` takes a list of condition tables")));
                        continue;
                    };
                    let mut items = Vec::new();
                    for (i, item) in list.iter().enumerate() {
                        match item.as_table() {
                            Some(t) => {
                                items.push(Condition::compile(t, &format!("{here}[{i}]"), errors))
                            }
                            None => errors.push((
                                format!("{here}[{i}]"),
                                "expected a condition table".into(),
                            )),
                        }
                    }
                    parts.push(if k == "all" {
                        Condition::All(items)
                    } else {
                        Condition::Any(items)
                    });
                }
                "not" => match v.as_table() {
                    Some(t) => parts.push(Condition::Not(Box::new(Condition::compile(
                        t, &here, errors,
                    )))),
                    None => errors.push((here, "`not` takes a condition table".into())),
                },
                _ => {
                    let target = match Target::parse(k) {
                        Ok(t) => t,
                        Err(e) => {
                            errors.push((here, e));
                            continue;
                        }
                    };
                    match compile_ops(v) {
                        Ok(ops) => parts.extend(ops.into_iter().map(|op| Condition::Test {
                            target: target.clone(),
                            op,
                        })),
                        Err(e) => errors.push((here, e)),
                    }
                }
            }
        }
        if parts.len() == 1 {
            parts.pop().unwrap_or(Condition::All(Vec::new()))
        } else {
            Condition::All(parts)
        }
    }

    /// Whether the condition holds.
    pub fn eval(&self, cx: &EvalContext<'_>) -> bool {
        match self {
            Condition::All(items) => items.iter().all(|c| c.eval(cx)),
            Condition::Any(items) => items.iter().any(|c| c.eval(cx)),
            Condition::Not(c) => !c.eval(cx),
            Condition::Test { target, op } => {
                let values = target.values(cx);
                op.holds(values.iter().map(|v| v.as_ref()))
            }
        }
    }
}

fn compile_ops(v: &toml::Value) -> Result<Vec<Op>, String> {
    match v {
        toml::Value::Array(items) => {
            let lits = items
                .iter()
                .map(Literal::from_toml)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(vec![Op::OneOf(lits, false)])
        }
        toml::Value::Table(t) => {
            let ignore_case = match t.get("ignore_case") {
                None => false,
                Some(toml::Value::Boolean(b)) => *b,
                Some(_) => return Err("`ignore_case` must be true or false".into()),
            };
            let mut ops = Vec::new();
            for (k, operand) in t {
                let text = || -> Result<String, String> {
                    operand
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("`{k}` takes a string"))
                };
                let list = || -> Result<Vec<Literal>, String> {
                    match operand {
                        toml::Value::Array(items) => items.iter().map(Literal::from_toml).collect(),
                        single => Ok(vec![Literal::from_toml(single)?]),
                    }
                };
                let op = match k.as_str() {
                    "ignore_case" => continue,
                    "equals" | "in" => Op::OneOf(list()?, ignore_case),
                    "not_equals" | "not_in" => Op::NoneOf(list()?, ignore_case),
                    "exists" => match operand {
                        toml::Value::Boolean(b) => Op::Exists(*b),
                        _ => return Err("`exists` must be true or false".into()),
                    },
                    "matches" => {
                        let pattern = text()?;
                        let pattern = if ignore_case {
                            format!("(?i){pattern}")
                        } else {
                            pattern
                        };
                        Op::Matches(Regex::new(&pattern).map_err(|e| format!("`matches`: {e}"))?)
                    }
                    "starts_with" => Op::StartsWith(text()?, ignore_case),
                    "ends_with" => Op::EndsWith(text()?, ignore_case),
                    "contains" => Op::Contains(text()?, ignore_case),
                    "gt" => Op::Compare(vec![Ordering::Greater], Literal::from_toml(operand)?),
                    "ge" => Op::Compare(
                        vec![Ordering::Greater, Ordering::Equal],
                        Literal::from_toml(operand)?,
                    ),
                    "lt" => Op::Compare(vec![Ordering::Less], Literal::from_toml(operand)?),
                    "le" => Op::Compare(
                        vec![Ordering::Less, Ordering::Equal],
                        Literal::from_toml(operand)?,
                    ),
                    other => {
                        return Err(format!(
                            "unknown operator `{other}` (expected equals, in, not_equals, not_in, exists, matches, starts_with, ends_with, contains, gt, ge, lt, le, ignore_case)"
                        ))
                    }
                };
                ops.push(op);
            }
            if ops.is_empty() {
                return Err("an operator table needs at least one operator".into());
            }
            Ok(ops)
        }
        single => Ok(vec![Op::OneOf(vec![Literal::from_toml(single)?], false)]),
    }
}

fn fold(s: &str, ignore_case: bool) -> std::borrow::Cow<'_, str> {
    if ignore_case {
        std::borrow::Cow::Owned(s.to_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

impl Op {
    /// Whether the values satisfy the test.
    pub fn holds<'v>(&self, mut values: impl Iterator<Item = &'v str>) -> bool {
        match self {
            Op::OneOf(lits, ic) => values.any(|v| lits.iter().any(|l| l.equals(v, *ic))),
            Op::NoneOf(lits, ic) => !values.any(|v| lits.iter().any(|l| l.equals(v, *ic))),
            Op::Exists(want) => values.any(|v| !v.is_empty()) == *want,
            Op::Matches(re) => values.any(|v| re.is_match(v)),
            Op::StartsWith(s, ic) => {
                values.any(|v| fold(v, *ic).starts_with(fold(s, *ic).as_ref()))
            }
            Op::EndsWith(s, ic) => values.any(|v| fold(v, *ic).ends_with(fold(s, *ic).as_ref())),
            Op::Contains(s, ic) => values.any(|v| fold(v, *ic).contains(fold(s, *ic).as_ref())),
            Op::Compare(wanted, lit) => {
                values.any(|v| compare(v, lit).is_some_and(|o| wanted.contains(&o)))
            }
        }
    }
}

/// Compares a value with a literal: as numbers, else as dates, else as text.
fn compare(value: &str, lit: &Literal) -> Option<Ordering> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if let (Some(n), Ok(v)) = (lit.number, value.parse::<f64>()) {
        // HL7 dates are all digits; compare those as dates, not numbers.
        if !(looks_like_hl7_date(value) && looks_like_hl7_date(&lit.text)) {
            return v.partial_cmp(&n);
        }
    }
    if let (Some(a), Some(b)) = (as_iso_date(value), as_iso_date(&lit.text)) {
        let n = a.len().min(b.len()).min(19);
        return Some(a[..n].cmp(&b[..n]));
    }
    Some(value.cmp(lit.text.as_str()))
}

fn looks_like_hl7_date(s: &str) -> bool {
    s.len() >= 8 && s.bytes().all(|b| b.is_ascii_digit()) && hl7_datetime(s).is_some()
}

/// An HL7 or ISO date/time as ISO text (`YYYY-MM-DDTHH:MM:SS...`).
fn as_iso_date(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' && b[..4].iter().all(u8::is_ascii_digit) {
        return Some(s.to_string());
    }
    if looks_like_hl7_date(s.split(['+', '-', '.']).next().unwrap_or("")) {
        return hl7_datetime(s);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Message;
    use crate::route::target::RecordView;

    const ADT: &[u8] = b"MSH|^~\\&|ADT|HOSP|||20240301||ADT^A01|1|P|2.5\rPID|1||A1^^^H^MR~S1^^^SSA^SS||DOE^JO||19800101|F\rPV1|1|I\rOBX|1|NM|8302-2^Height^LN||180|cm\r";

    fn check(when: &str) -> bool {
        let table: toml::Table = toml::from_str(when).unwrap();
        let mut errors = Vec::new();
        let c = Condition::compile(&table, "when", &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let msg = Message::parse(ADT).unwrap();
        let record = RecordView::new(&msg);
        c.eval(&EvalContext {
            message: &msg,
            record: &record,
            scope: None,
        })
    }

    fn errors(when: &str) -> Vec<CompileError> {
        let table: toml::Table = toml::from_str(when).unwrap();
        let mut errors = Vec::new();
        Condition::compile(&table, "when", &mut errors);
        errors
    }

    #[test]
    fn equals_and_one_of() {
        assert!(check(r#""MSH-9-1" = "ADT""#));
        assert!(check(
            r#""MSH-9-1" = "ADT"
"MSH-9-2" = ["A01", "A04", "A08"]"#
        ));
        assert!(!check(
            r#""MSH-9-1" = "ADT"
"MSH-9-2" = ["A04", "A08"]"#
        ));
        assert!(check(r#""OBX(*)-5" = 180"#));
        assert!(check(r#""OBX(*)-5" = 180.0"#));
        assert!(check(
            r#""MSH-4" = { equals = "hosp", ignore_case = true }"#
        ));
        assert!(!check(r#""MSH-4" = "hosp""#));
    }

    #[test]
    fn operators() {
        assert!(check(r#""PID-3(*)-5" = { in = ["SS"] }"#));
        assert!(!check(r#""PID-3-5" = { in = ["SS"] }"#));
        assert!(check(r#""PID-19" = { exists = false }"#));
        assert!(check(r#""PID-8" = { exists = true, not_in = ["M", "U"] }"#));
        assert!(check(r#""ZZZ-1" = { not_equals = "x" }"#));
        assert!(check(r#""PID-5-1" = { matches = "^D.E$" }"#));
        assert!(check(
            r#""PID-5-1" = { starts_with = "do", ignore_case = true }"#
        ));
        assert!(check(r#""OBX-5" = { gt = 100, le = "180" }"#));
        assert!(!check(r#""OBX-5" = { gt = 180 }"#));
        assert!(check(r#""PID-7" = { lt = "20060101" }"#));
        assert!(check(r#""PID-7" = { ge = "1980-01-01", lt = 1981-01-01 }"#));
        assert!(check(r#""patient.birth_date" = { lt = "1990" }"#));
        assert!(check(r#""visit.class" = "I""#));
        assert!(check(r#""patient.identifiers[type=MR].value" = "A1""#));
    }

    #[test]
    fn nesting() {
        assert!(check(
            r#"any = [ { "MSH-4" = "LAB" }, { "MSH-4" = "HOSP" } ]"#
        ));
        assert!(!check(
            r#"all = [ { "MSH-4" = "LAB" }, { "MSH-4" = "HOSP" } ]"#
        ));
        assert!(check(r#"not = { "MSH-11" = "T" }"#));
        assert!(check(
            r#"any = [ { not = { "PID-8" = "F" } }, { all = [ { "PV1-2" = "I" } ] } ]"#
        ));
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let e = errors(
            r#""PID-x" = "1"
"PID-8" = { matches = "(" }
"PID-9" = { between = 1 }
"PID-10" = { exists = "yes" }
any = "x"
not = { "patient..sex" = "F" }"#,
        );
        let keys: Vec<&str> = e.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            vec![
                "when.PID-10",
                "when.PID-8",
                "when.PID-9",
                "when.PID-x",
                "when.any",
                "when.not.patient..sex"
            ]
        );
        assert!(e[2].1.contains("unknown operator `between`"));
    }
}
