//! `Clinical` → FHIR R4 (4.0.1): resources and a `transaction` Bundle.
//!
//! Field meanings and vocabulary follow HL7's v2-to-FHIR implementation guide (its segment,
//! data type and ConceptMap tables); [`vocab`] holds the code translations. Resources are built
//! as `serde_json` values — the generated FHIR models of `fhir-sdk` cost some twenty minutes of
//! release build here, and Aorta emits a known, small set of shapes.
//!
//! Re-sending the same message must not create duplicates on the FHIR server, so:
//! - every resource gets a deterministic id: a UUIDv5 of what identifies it (system and value
//!   of its business identifier, or the message it came from and its place there);
//! - entries whose resource has a business identifier are conditional:
//!   `PUT Patient?identifier=system|value` (update, or create when none matches) for the things
//!   a message is the source of truth for, `POST` with `ifNoneExist` for shared things
//!   (practitioners, organizations, locations) so a feed never overwrites a richer record;
//! - the rest are `PUT Type/id` with the deterministic id (create-or-update, idempotent).
//!
//! References between entries use the `urn:uuid:` full URLs, which servers resolve inside the
//! transaction. An ADT^A40 merge becomes a second Patient (the one merged away, inactive) and a
//! `link` pair `replaces` / `replaced-by`.

pub mod vocab;

mod build;

use std::collections::HashMap;

use serde_json::Value;

pub use build::{to_bundle, to_resources};

/// How the conversion fills what a message does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirOptions {
    /// UTC offset for times that carry none (`+01:00`, `Z`). FHIR requires a zone on every
    /// time; HL7 v2 senders often leave it out, meaning their local time.
    pub default_offset: String,
    /// URIs for v2 coding system names beyond the well-known ones (`99LAB` → `http://...`).
    pub code_systems: HashMap<String, String>,
    /// URIs for identifier assigning authorities by namespace id (`MRN-HOSP` → `urn:oid:...`).
    pub identifier_systems: HashMap<String, String>,
    /// Prefix of the URIs made up for names found in neither table: `{base}cs:NAME` for code
    /// systems, `{base}id:NAME` for identifier authorities, `{base}app:NAME` for applications.
    pub local_base: String,
    /// Emit `batch` instead of `transaction` Bundles.
    pub batch: bool,
}

impl Default for FhirOptions {
    fn default() -> Self {
        FhirOptions {
            default_offset: "Z".into(),
            code_systems: HashMap::new(),
            identifier_systems: HashMap::new(),
            local_base: "urn:aorta:".into(),
            batch: false,
        }
    }
}

/// True for a UTC offset FHIR accepts: `Z` or `+HH:MM` / `-HH:MM`.
pub fn valid_offset(s: &str) -> bool {
    if s == "Z" {
        return true;
    }
    let b = s.as_bytes();
    b.len() == 6
        && (b[0] == b'+' || b[0] == b'-')
        && b[3] == b':'
        && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit())
        && s[1..3].parse::<u8>().is_ok_and(|h| h <= 14)
        && s[4..6].parse::<u8>().is_ok_and(|m| m <= 59)
}

/// Removes nulls, empty strings, empty arrays and empty objects, recursively: resources are
/// written with `json!` listing every element, and FHIR forbids empty ones.
pub(crate) fn prune(v: &mut Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => {
            a.retain_mut(prune);
            !a.is_empty()
        }
        Value::Object(o) => {
            o.retain(|_, v| prune(v));
            !o.is_empty()
        }
        _ => true,
    }
}
