//! A JSON picture of a message, for people and scripts: `aorta hl7 json`.
//!
//! ```json
//! {"segments": [{"id": "PID", "fields": ["1", "", [["123", "", "", "HOSP", "MR"], "456"], ...]}]}
//! ```
//!
//! `fields[i]` is field `i + 1` (for MSH, `fields[0]` is MSH-1 and `fields[1]` MSH-2). Values
//! are decoded text. Each level is a plain string when it holds a single value and an array
//! otherwise: a field array lists repetitions, a repetition array lists components, a component
//! array lists subcomponents. The nesting level therefore always says what an array holds.

use serde_json::{json, Value};

use super::parse::{Element, Message};

/// The message as JSON (see the module documentation for the shape).
pub fn to_json(msg: &Message<'_>) -> Value {
    let segments: Vec<Value> = msg
        .segments()
        .map(|s| {
            let fields: Vec<Value> = s.fields().map(|f| element(&f)).collect();
            json!({ "id": s.id(), "fields": fields })
        })
        .collect();
    json!({ "segments": segments })
}

fn element(e: &Element<'_>) -> Value {
    let children: Vec<Element<'_>> = e.children().collect();
    if children.len() <= 1 {
        match children.first() {
            Some(only) if only.level() != e.level() => element(only),
            _ => Value::String(e.text().into_owned()),
        }
    } else {
        Value::Array(children.iter().map(element).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_shape() {
        let m = Message::parse(b"MSH|^~\\&|A\rPID|1||123^^^H&1.2&ISO^MR~456|x\\S\\y\r").unwrap();
        let v = to_json(&m);
        assert_eq!(v["segments"][0]["fields"][0], "|");
        assert_eq!(v["segments"][0]["fields"][1], "^~\\&");
        assert_eq!(v["segments"][0]["fields"][2], "A");
        let pid3 = &v["segments"][1]["fields"][2];
        assert_eq!(
            pid3,
            &json!([["123", "", "", ["H", "1.2", "ISO"], "MR"], "456"])
        );
        assert_eq!(v["segments"][1]["fields"][3], "x^y");
    }
}
