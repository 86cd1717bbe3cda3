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

pub mod read;
pub mod vocab;

mod build;
pub(crate) mod fj;
pub(crate) mod tree;

use std::collections::HashMap;

pub use build::{to_bundle, to_bundle_json, to_resources, write_bundle};
pub use read::to_clinical;

/// How the conversion fills what a message does not say (`[fhir]` in the configuration).
///
/// ```toml
/// [fhir]
/// default_offset = "+01:00"        # zone for HL7 v2 times that carry none
/// local_base = "urn:aorta:"        # prefix of made-up system URIs
/// batch = false                    # true: batch instead of transaction Bundles
/// code_systems = { "99LAB" = "http://lab.example.org/codes" }
/// identifier_systems = { "GENHOSP" = "urn:oid:2.16.840.1.113883.3.1" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
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

impl FhirOptions {
    /// Checks the values; every problem as (key, message).
    pub fn check(&self) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if !valid_offset(&self.default_offset) {
            e.push((
                "default_offset".into(),
                format!("{:?}: expected Z or +HH:MM / -HH:MM", self.default_offset),
            ));
        }
        let uri = |v: &str| v.contains(':') && !v.contains(char::is_whitespace);
        if !uri(&self.local_base) {
            e.push((
                "local_base".into(),
                "must be a URI prefix such as urn:aorta:".into(),
            ));
        }
        for (table, map) in [
            ("code_systems", &self.code_systems),
            ("identifier_systems", &self.identifier_systems),
        ] {
            for (k, v) in map {
                if !uri(v) {
                    e.push((format!("{table}.{k}"), format!("{v:?} is not a URI")));
                }
            }
        }
        e
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
/// built from parts that may be empty (`fj!` leaves out only the empties it sees), and FHIR
/// forbids empty elements.
pub(crate) fn prune(v: &mut tree::Value) -> bool {
    use tree::Value;
    match v {
        Value::Null => false,
        // Stops at the first non-blank character (nearly always the first), where `trim`
        // would scan from both ends.
        Value::String(s) => !s.chars().all(char::is_whitespace),
        Value::Array(a) => {
            // Most elements are already clean (`fj!` leaves empty ones out): removing is
            // left to the rare array that needs it, instead of rebuilding every one.
            if !prune_all(a.iter_mut()) {
                a.retain(|v| !fj::is_empty(v));
            }
            !a.is_empty()
        }
        Value::Object(o) => {
            // Likewise: only an object that has an empty member pays for `retain`.
            if !prune_all(o.values_mut()) {
                o.retain(|_, v| !fj::is_empty(v));
            }
            !o.is_empty()
        }
        _ => true,
    }
}

/// Prunes every value (all of them: not short-circuiting); true when none became empty.
fn prune_all<'a>(values: impl Iterator<Item = &'a mut tree::Value>) -> bool {
    let mut clean = true;
    for v in values {
        clean &= prune(v);
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Message;
    use serde_json::Value;

    fn bundle(raw: &[u8]) -> Value {
        let m = Message::parse(raw).unwrap();
        to_bundle(
            &crate::convert::v2::to_clinical(&m),
            &FhirOptions::default(),
        )
    }

    fn of_type<'a>(b: &'a Value, t: &str) -> Vec<&'a Value> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["resource"]["resourceType"] == t)
            .collect()
    }

    #[test]
    fn a_merge_links_the_surviving_and_the_merged_patient() {
        let b = bundle(b"MSH|^~\\&|A|F|B|G|20240101||ADT^A40^ADT_A39|M1|P|2.5\rEVN|A40|20240101\rPID|1||111^^^H^MR||DOE^JANE\rMRG|222^^^H^MR\r");
        let patients = of_type(&b, "Patient");
        assert_eq!(patients.len(), 2);
        let (kept, gone) = (&patients[0], &patients[1]);
        assert_eq!(kept["resource"]["link"][0]["type"], "replaces");
        assert_eq!(
            kept["resource"]["link"][0]["other"]["reference"],
            gone["fullUrl"]
        );
        assert_eq!(gone["resource"]["active"], false);
        assert_eq!(gone["resource"]["link"][0]["type"], "replaced-by");
        assert_eq!(
            gone["request"]["url"],
            "Patient?identifier=urn:aorta:id:H|222"
        );
    }

    #[test]
    fn charges_become_charge_items() {
        let b = bundle(b"MSH|^~\\&|BILL|F|FIN|G|20240101||DFT^P03|C1|P|2.5\rEVN|P03|20240101\rPID|1||7^^^H^MR||DOE^JANE|||||||||||||ACC-1^^^H^AN\rPV1|1|O\rFT1|1|T-100||20240101^20240102|20240103|CG|71045^Xray chest^C4|||2|100&USD|50&USD|RAD^Radiology^L||||||29857009^Chest pain^SCT|42^Smith^Adam^^^^^^NPI&2.16.840.1.113883.4.6&ISO||||7^Jones^Ann|||||0182-1061-05^ASPIRIN^NDC|||Good Health^L^4544\rFT1|2|||20240101||PY\r");
        let items = of_type(&b, "ChargeItem");
        // The second FT1 names nothing charged: R4 requires a code, so it stays in the record.
        assert_eq!(items.len(), 1);
        let c = &items[0]["resource"];
        assert_eq!(c["status"], "billable");
        assert_eq!(c["identifier"][0]["value"], "T-100");
        assert_eq!(c["code"]["coding"][0]["code"], "71045");
        assert_eq!(c["occurrencePeriod"]["start"], "2024-01-01");
        assert_eq!(c["occurrencePeriod"]["end"], "2024-01-02");
        assert_eq!(c["enteredDate"], "2024-01-03");
        assert_eq!(c["quantity"]["value"], 2.0);
        assert_eq!(c["priceOverride"]["value"], 100.0);
        assert_eq!(c["priceOverride"]["currency"], "USD");
        assert_eq!(c["reason"][0]["coding"][0]["code"], "29857009");
        assert_eq!(
            c["productCodeableConcept"]["coding"][0]["code"],
            "0182-1061-05"
        );
        let resource = |r: &Value| {
            let url = r["reference"].as_str().unwrap();
            b["entry"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["fullUrl"] == url)
                .map(|e| e["resource"].clone())
                .unwrap()
        };
        assert_eq!(
            resource(&c["performer"][0]["actor"])["name"][0]["family"],
            "Smith"
        );
        assert_eq!(resource(&c["enterer"])["name"][0]["family"], "Jones");
        assert_eq!(resource(&c["costCenter"])["name"], "Radiology");
        assert_eq!(
            resource(&c["performingOrganization"])["name"],
            "Good Health"
        );
        assert_eq!(resource(&c["subject"])["resourceType"], "Patient");
        assert_eq!(resource(&c["account"][0])["resourceType"], "Account");
        assert_eq!(resource(&c["context"])["resourceType"], "Encounter");
        // Read back, the ChargeItem is the record's charge again (FHIR input feeds routes).
        let back = read::to_clinical(&b).unwrap();
        let ch = &back.charges[0];
        assert_eq!(ch.id.as_deref(), Some("T-100"));
        assert_eq!(
            ch.code.as_ref().and_then(|c| c.code.as_deref()),
            Some("71045")
        );
        assert_eq!(
            (ch.start.as_deref(), ch.end.as_deref()),
            (Some("2024-01-01"), Some("2024-01-02"))
        );
        assert_eq!(ch.posted.as_deref(), Some("2024-01-03"));
        assert_eq!(
            ch.r#type.as_ref().and_then(|t| t.code.as_deref()),
            Some("CG")
        );
        assert_eq!(ch.quantity, Some(2.0));
        assert_eq!(
            ch.amount.as_ref().map(|m| (m.value, m.currency.as_deref())),
            Some((100.0, Some("USD")))
        );
        assert_eq!(
            ch.department.as_ref().and_then(|d| d.code.as_deref()),
            Some("RAD")
        );
        assert_eq!(ch.diagnoses[0].code.as_deref(), Some("29857009"));
        let family =
            |p: &crate::record::clinical::Person| p.name.as_ref().and_then(|n| n.family.clone());
        assert_eq!(family(&ch.performers[0]).as_deref(), Some("Smith"));
        assert_eq!(
            ch.entered_by.as_ref().and_then(family).as_deref(),
            Some("Jones")
        );
        assert_eq!(
            ch.drug.as_ref().and_then(|d| d.code.as_deref()),
            Some("0182-1061-05")
        );
        assert_eq!(
            ch.performing_facility
                .as_ref()
                .and_then(|o| o.name.as_deref()),
            Some("Good Health")
        );
        // A re-sent transaction is the same ChargeItem (keyed by the patient and FT1-2).
        let again = bundle(b"MSH|^~\\&|BILL|F|FIN|G|20240105||DFT^P03|C2|P|2.5\rPID|1||7^^^H^MR\rFT1|1|T-100||20240101|20240103|CG|71045^Xray chest^C4\r");
        assert_eq!(
            of_type(&again, "ChargeItem")[0]["fullUrl"],
            items[0]["fullUrl"]
        );
    }

    #[test]
    fn immunization_observations_are_part_of_the_immunization() {
        let b = bundle(b"MSH|^~\\&|IIS|F|EHR|G|20240101||VXU^V04^VXU_V04|V1|P|2.5.1\rPID|1||7^^^H^MR||DOE^JANE\rOBX|1|CWE|30945-0^Vaccination contraindication^LN||1^none^L||||||F\rORC|RE||IZ-1^IIS\rRXA|0|1|20240101||08^HepB^CVX|0.5|mL^mL^UCUM\rOBX|2|CWE|64994-7^Funding eligibility^LN||V02^VFC^HL70064||||||F\r");
        let im = of_type(&b, "Immunization");
        let obs = of_type(&b, "Observation");
        assert_eq!(obs.len(), 2);
        // The person's observation stands alone; the one in the ORDER group is partOf it.
        assert!(obs[0]["resource"].get("partOf").is_none());
        assert_eq!(
            obs[1]["resource"]["partOf"][0]["reference"],
            im[0]["fullUrl"]
        );
        // The ORC is also the order that led to it (VXU_V04's ORC[ServiceRequest]), which
        // that observation is based on; no DiagnosticReport is made of it.
        let sr = of_type(&b, "ServiceRequest");
        assert_eq!(sr.len(), 1);
        assert_eq!(sr[0]["resource"]["identifier"][0]["value"], "IZ-1");
        assert_eq!(
            sr[0]["resource"]["subject"]["reference"],
            of_type(&b, "Patient")[0]["fullUrl"]
        );
        assert_eq!(
            obs[1]["resource"]["basedOn"][0]["reference"],
            sr[0]["fullUrl"]
        );
        assert!(obs[0]["resource"].get("basedOn").is_none());
        assert!(of_type(&b, "DiagnosticReport").is_empty());
        // The immunization keeps the order's numbers, typed.
        assert_eq!(im[0]["resource"]["identifier"][0]["value"], "IZ-1");
        // The eligibility OBX is the Immunization's programEligibility too; no RXA-9 here,
        // so the record is the giver's own.
        let iz = &im[0]["resource"];
        assert_eq!(iz["programEligibility"][0]["coding"][0]["code"], "V02");
        assert!(iz.get("fundingSource").is_none());
        assert_eq!(iz["primarySource"], true);
        assert!(iz.get("reportOrigin").is_none());

        // A historical record (RXA-9 `01`, NIP001) is not from the primary source; funding
        // source OBX 30963-3.
        let b = bundle(b"MSH|^~\\&|IIS|F|EHR|G|20240101||VXU^V04^VXU_V04|V2|P|2.5.1\rPID|1||7^^^H^MR||DOE^JANE\rORC|RE||IZ-2^IIS\rRXA|0|1|20140101||88^flu^CVX|999|||01^Historical Administration^NIP001\rOBX|1|CWE|30963-3^Vaccine funding source^LN||PHC70^Private^CDCPHINVS||||||F\r");
        let iz = &of_type(&b, "Immunization")[0]["resource"];
        assert_eq!(iz["primarySource"], false);
        assert_eq!(iz["reportOrigin"]["coding"][0]["code"], "01");
        assert_eq!(iz["fundingSource"]["coding"][0]["code"], "PHC70");
        // 999 is "unknown" in the CDC guide, not a dose.
        assert!(iz.get("doseQuantity").is_none());
    }

    #[test]
    fn the_result_interpreter_is_a_practitioner_role_at_its_place() {
        let b = bundle(b"MSH|^~\\&|LAB|F|EHR|G|20240101||ORU^R01|R1|P|2.5.1\rPID|1||7^^^H^MR\rOBR|1|P1|F1|718-7^Hemoglobin^LN|||||||||||||||||||||F|||||||55&ROBIN&ANN^20240101^^LAB1^Room01^^GHH\rOBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL^g/dL^UCUM||||F\r");
        let report = &of_type(&b, "DiagnosticReport")[0]["resource"];
        let url = report["resultsInterpreter"][0]["reference"]
            .as_str()
            .unwrap();
        let entries = b["entry"].as_array().unwrap();
        let find =
            |u: &str| entries.iter().find(|e| e["fullUrl"] == u).unwrap()["resource"].clone();
        let role = find(url);
        assert_eq!(role["resourceType"], "PractitionerRole");
        assert_eq!(role["period"]["start"], "2024-01-01");
        let who = find(role["practitioner"]["reference"].as_str().unwrap());
        assert_eq!(who["name"][0]["family"], "ROBIN");
        let room = find(role["location"][0]["reference"].as_str().unwrap());
        assert_eq!(room["name"], "Room01");
    }

    #[test]
    fn results_become_a_report_with_its_observations() {
        let b = bundle(b"MSH|^~\\&|LAB|F|EHR|G|20240101||ORU^R01|R1|P|2.5.1\rPID|1||7^^^H^MR\rOBR|1|P1^EHR|F1^LAB|718-7^Hemoglobin^LN|||20240101080000+0100|||||||||||||||20240101090000+0100|||F\rOBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL^g/dL^UCUM|12-16|N|||F|||20240101080000+0100\rOBX|2|SN|2345-7^Glucose^LN||>^200|mg/dL^^UCUM||H|||F\r");
        let report = of_type(&b, "DiagnosticReport");
        assert_eq!(report.len(), 1);
        let r = &report[0]["resource"];
        assert_eq!(r["status"], "final");
        assert_eq!(r["result"].as_array().unwrap().len(), 2);
        assert_eq!(r["issued"], "2024-01-01T09:00:00+01:00");
        let obs = of_type(&b, "Observation");
        let hb = &obs[0]["resource"];
        assert_eq!(hb["valueQuantity"]["value"], 13.2);
        assert_eq!(hb["valueQuantity"]["system"], "http://unitsofmeasure.org");
        assert_eq!(hb["code"]["coding"][0]["system"], "http://loinc.org");
        assert_eq!(hb["referenceRange"][0]["low"]["value"], 12.0);
        assert_eq!(hb["interpretation"][0]["coding"][0]["code"], "N");
        let glucose = &obs[1]["resource"];
        assert_eq!(glucose["valueQuantity"]["comparator"], ">");
        // Keyed by the order and the test: a corrected result updates the same Observation.
        let again = bundle(b"MSH|^~\\&|LAB|F|EHR|G|20240102||ORU^R01|R2|P|2.5.1\rPID|1||7^^^H^MR\rOBR|1|P1^EHR|F1^LAB|718-7^Hemoglobin^LN||||||||||||||||||||C\rOBX|1|NM|718-7^Hemoglobin^LN||13.4|g/dL^g/dL^UCUM||||C\r");
        assert_eq!(
            of_type(&again, "Observation")[0]["fullUrl"],
            obs[0]["fullUrl"]
        );
    }

    #[test]
    fn repeated_values_become_components_coded_like_the_observation() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPV1|1|I\rOBX|1|NM|8867-4^heartrate^LN||60~120|/min^^UCUM|70-80|||||F\rOBX|2|TX|8251-1^Note^LN||line one~line two||||||F\r";
        let b = bundle(raw);
        let obs = of_type(&b, "Observation");
        let hr = &obs[0]["resource"];
        // No value or range of its own: each repetition is a component (obs-7).
        assert!(hr.get("valueQuantity").is_none());
        assert!(hr.get("referenceRange").is_none());
        assert!(hr.get("dataAbsentReason").is_none());
        let parts = hr["component"].as_array().unwrap();
        assert_eq!(parts.len(), 2);
        for (part, value) in parts.iter().zip([60.0, 120.0]) {
            assert_eq!(part["code"], hr["code"]);
            assert_eq!(part["valueQuantity"]["value"], value);
            assert_eq!(part["valueQuantity"]["code"], "/min");
            assert_eq!(part["referenceRange"][0]["text"], "70-80");
        }
        // TX repetitions are line breaks in one text (v2 chapter 2A).
        let note = &obs[1]["resource"];
        assert_eq!(note["valueString"], "line one\nline two");
        assert!(note.get("component").is_none());
        // And back: the components are the OBX's repeated values again.
        let back = super::to_clinical(&b).unwrap();
        let hr = back
            .observations
            .iter()
            .find(|o| o.code.as_ref().and_then(|c| c.code.as_deref()) == Some("8867-4"))
            .unwrap();
        assert_eq!(hr.value, Some(crate::record::clinical::Value::Number(60.0)));
        assert_eq!(
            hr.more_values,
            vec![crate::record::clinical::Value::Number(120.0)]
        );
        assert_eq!(hr.reference_range.as_deref(), Some("70-80"));
        let v2 = crate::convert::to_v2::to_v2(&back, &crate::convert::to_v2::V2Options::default());
        let text = String::from_utf8_lossy(&v2);
        assert!(text.contains("|60~120|"), "{text}");
    }

    #[test]
    fn the_primary_facility_is_a_general_practitioner_organization_with_its_id() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A04|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPD1|||Lakeside Clinic^^C818~Other^^X1|88^Hippo^Harold\r";
        let b = bundle(raw);
        let patient = &of_type(&b, "Patient")[0]["resource"];
        let gps = patient["generalPractitioner"].as_array().unwrap();
        assert_eq!(gps.len(), 2);
        let org = by_url(&b, &gps[0]["reference"]);
        assert_eq!(org["resourceType"], "Organization");
        assert_eq!(org["name"], "Lakeside Clinic");
        // XON-3 when XON-10 is empty (XON[Organization]).
        assert_eq!(org["identifier"][0]["value"], "C818");
        assert_eq!(
            by_url(&b, &gps[1]["reference"])["resourceType"],
            "Practitioner"
        );
    }

    #[test]
    fn the_plan_type_is_a_concept_without_an_implied_table_system() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A04|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rIN1|1|BAV^Blue Advantage^L||Blue Cross|||||||||||HMO^Health maintenance organization\rIN1|2|MCR^Medicare^L||CMS|||||||||||MA^Medicare Part A^99PLN\r";
        let b = bundle(raw);
        let cov = of_type(&b, "Coverage");
        let t = &cov[0]["resource"]["type"]["coding"][0];
        assert_eq!(t["code"], "HMO");
        assert_eq!(t["display"], "Health maintenance organization");
        assert!(t.get("system").is_none(), "{t}");
        let t = &cov[1]["resource"]["type"]["coding"][0];
        assert_eq!(t["code"], "MA");
        assert!(t["system"].as_str().unwrap().ends_with("99PLN"), "{t}");
    }

    fn coded<'a>(obs: &[&'a Value], system: &str, code: &str) -> &'a Value {
        &obs.iter()
            .find(|o| {
                o["resource"]["code"]["coding"][0]["system"] == system
                    && o["resource"]["code"]["coding"][0]["code"] == code
            })
            .unwrap_or_else(|| panic!("no {code}"))["resource"]
    }

    #[test]
    fn an_accident_is_an_injury_incident_observation() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPV1|1|E\rACC|20240101083000+0100|MVA^Motor vehicle accident^L|Route 50 intersection|VA^Virginia^L|N|N|10535^GOLD^LUDWIG|Car hit a tree|AMBULANCE|Y|1 Main St^^Fairfax^VA^20324||ACC77\r";
        let c = crate::convert::v2::to_clinical(&Message::parse(raw).unwrap());
        let a = c.accident.as_ref().unwrap();
        assert_eq!(a.at.as_deref(), Some("2024-01-01T08:30:00+01:00"));
        assert_eq!(a.job_related, Some(false));
        assert_eq!(a.police_notified, Some(true));
        assert_eq!(
            a.identifier.as_ref().unwrap().value.as_deref(),
            Some("ACC77")
        );
        let b = bundle(raw);
        let obs = of_type(&b, "Observation");
        let o = coded(&obs, "http://loinc.org", "11374-6");
        assert_eq!(o["status"], "final");
        assert_eq!(o["valueString"], "Car hit a tree");
        assert_eq!(o["effectiveDateTime"], "2024-01-01T08:30:00+01:00");
        assert_eq!(o["identifier"][0]["value"], "ACC77");
        assert_eq!(
            by_url(&b, &o["performer"][0]["reference"])["name"][0]["family"],
            "GOLD"
        );
        let part = |field: &str| {
            o["component"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["code"]["coding"][0]["code"] == field)
                .unwrap_or_else(|| panic!("no {field}"))
                .clone()
        };
        assert_eq!(
            part("ACC-2")["valueCodeableConcept"]["coding"][0]["code"],
            "MVA"
        );
        assert_eq!(
            part("ACC-5")["valueCodeableConcept"]["coding"][0]["code"],
            "N"
        );
        assert_eq!(
            part("ACC-10")["valueCodeableConcept"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v2-0136"
        );
        assert_eq!(part("ACC-9")["valueString"], "AMBULANCE");
        let ext = &o["extension"][0];
        assert_eq!(
            ext["url"],
            "http://hl7.org/fhir/StructureDefinition/event-location"
        );
        let place = by_url(&b, &ext["valueReference"]["reference"]);
        assert_eq!(place["name"], "Route 50 intersection");
        assert_eq!(place["address"]["city"], "Fairfax");
        // The same accident sent again is the same Observation.
        let again = bundle(raw);
        assert_eq!(
            coded(
                &of_type(&again, "Observation"),
                "http://loinc.org",
                "11374-6"
            )["id"],
            o["id"]
        );
    }

    #[test]
    fn death_and_autopsy_are_observations_of_the_patient() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A03|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPV1|1|I\rPDA|I21^Acute myocardial infarction^I10~J96^Respiratory failure^I10|ICU^1^2^GHH|Y|20240102123000+0100|55^CERT^ROBIN|Y|20240103103000+0100^20240103113000+0100|66^CUTTER^JOHN|maybe\r";
        let c = crate::convert::v2::to_clinical(&Message::parse(raw).unwrap());
        let d = c.death.as_ref().unwrap();
        assert_eq!(d.causes.len(), 2);
        assert_eq!(d.autopsy, Some(true));
        assert_eq!(d.coroner, None);
        assert!(
            c.warnings.iter().any(|w| w == "PDA-9: not Y or N"),
            "{:?}",
            c.warnings
        );
        let b = bundle(raw);
        let obs = of_type(&b, "Observation");
        let autopsy = coded(&obs, "http://loinc.org", "85699-7");
        assert_eq!(autopsy["valueCodeableConcept"]["coding"][0]["code"], "Y");
        assert_eq!(
            autopsy["effectivePeriod"]["end"],
            "2024-01-03T11:30:00+01:00"
        );
        assert_eq!(
            by_url(&b, &autopsy["performer"][0]["reference"])["name"][0]["family"],
            "CUTTER"
        );
        // PDA-9 unreadable: no coroner Observation rather than a guessed value.
        assert!(obs
            .iter()
            .all(|o| o["resource"]["code"]["coding"][0]["code"] != "74497-9"));
        let certified = coded(&obs, "urn:aorta:cs:v2-field", "PDA-3");
        assert_eq!(certified["effectiveDateTime"], "2024-01-02T12:30:00+01:00");
        let causes: Vec<&Value> = obs
            .iter()
            .filter(|o| o["resource"]["code"]["coding"][0]["code"] == "PDA-1")
            .map(|o| &o["resource"]["valueCodeableConcept"]["coding"][0]["code"])
            .collect();
        assert_eq!(causes, vec!["I21", "J96"]);
    }

    #[test]
    fn the_patients_disability_id_is_one_of_its_identifiers() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rDB1|1|PT|DB123^^^SSA^DI|Y|20210830|20210930\rDB1|2|GT|DB999^^^SSA^DI|Y\r";
        let c = crate::convert::v2::to_clinical(&Message::parse(raw).unwrap());
        assert_eq!(c.disabilities.len(), 2);
        assert_eq!(c.disabilities[0].disabled, Some(true));
        assert_eq!(c.disabilities[0].start.as_deref(), Some("2021-08-30"));
        let b = bundle(raw);
        let entry = of_type(&b, "Patient")[0];
        let ids: Vec<&Value> = entry["resource"]["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| &i["value"])
            .collect();
        // The guarantor's disability id is not the patient's; PID-3 stays the key.
        assert_eq!(ids, vec!["7", "DB123"]);
        assert_eq!(
            entry["request"]["url"],
            "Patient?identifier=urn:aorta:id:H|7"
        );
    }

    #[test]
    fn problems_are_problem_list_conditions_keyed_by_their_instance() {
        let add = b"MSH|^~\\&|A|F|B|G|20240101||PPR^PC1|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPRB|AD|20240101|G47.31^Primary central sleep apnea^I10|P77^EHR|||||||||confirmed|active||20231201\rNTE|1||Uses CPAP\r";
        let b = bundle(add);
        let c = &of_type(&b, "Condition")[0]["resource"];
        assert_eq!(c["category"][0]["coding"][0]["code"], "problem-list-item");
        assert_eq!(c["code"]["coding"][0]["code"], "G47.31");
        assert_eq!(c["identifier"][0]["value"], "P77");
        assert_eq!(c["clinicalStatus"]["coding"][0]["code"], "active");
        assert_eq!(c["verificationStatus"]["coding"][0]["code"], "confirmed");
        assert_eq!(c["onsetDateTime"], "2023-12-01");
        assert_eq!(c["note"][0]["text"], "Uses CPAP");
        // Resolved later: the same Condition, resolved with its date (con-4).
        let update = b"MSH|^~\\&|A|F|B|G|20240301||PPR^PC2|M2|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPRB|UP|20240301|G47.31^Primary central sleep apnea^I10|P77^EHR|||||20240301|||||active\r";
        let u = bundle(update);
        let d = &of_type(&u, "Condition")[0]["resource"];
        assert_eq!(d["id"], c["id"]);
        assert_eq!(d["clinicalStatus"]["coding"][0]["code"], "resolved");
        assert_eq!(d["abatementDateTime"], "2024-03-01");
        // Deleted: entered in error, without a clinical status or abatement (con-5).
        let delete = b"MSH|^~\\&|A|F|B|G|20240401||PPR^PC3|M3|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPRB|DE|20240401|G47.31^Primary central sleep apnea^I10|P77^EHR||||||||||||\r";
        let x = bundle(delete);
        let e = &of_type(&x, "Condition")[0]["resource"];
        assert_eq!(e["id"], c["id"]);
        assert_eq!(
            e["verificationStatus"]["coding"][0]["code"],
            "entered-in-error"
        );
        assert!(e.get("clinicalStatus").is_none());
        for b in [&b, &u, &x] {
            assert!(crate::fhir::validate::validate(b).is_empty());
        }
        // FHIR input: a problem-list Condition is a problem of the record again, and the
        // same Condition when converted back.
        let back = super::to_clinical(&u).unwrap();
        assert!(back.diagnoses.is_empty());
        let p = &back.problems[0];
        assert_eq!(p.code.as_ref().unwrap().code.as_deref(), Some("G47.31"));
        assert_eq!(
            p.life_cycle.as_ref().unwrap().code.as_deref(),
            Some("resolved")
        );
        assert_eq!(p.resolved_at.as_deref(), Some("2024-03-01"));
        let again = to_bundle(&back, &FhirOptions::default());
        assert_eq!(of_type(&again, "Condition")[0]["resource"]["id"], c["id"]);
        let gone = super::to_clinical(&x).unwrap();
        assert_eq!(gone.problems[0].action.as_deref(), Some("DE"));
    }

    #[test]
    fn software_is_the_headers_source_and_the_provenances_devices() {
        let raw = b"MSH|^~\\&|LAB|GHH^2.16.840.1.1^ISO|EHR|X|20240101120000+0100||ORU^R01^ORU_R01|M1|P|2.5.1\rSFT|Acme Lab Systems|5.1.2|AcmeLIS|B42|Bundled|20230101\rSFT|Corepoint|7.0|Corepoint Engine|CP7\rPID|1||7^^^H^MR||DOE^JANE\r";
        let b = bundle(raw);
        let header = &of_type(&b, "MessageHeader")[0]["resource"];
        // The last SFT sent the message.
        assert_eq!(header["source"]["software"], "Corepoint Engine");
        assert_eq!(header["source"]["version"], "7.0");
        let prov = of_type(&b, "Provenance")
            .into_iter()
            .find(|p| p["resource"]["entity"].is_array())
            .unwrap();
        let p = &prov["resource"];
        assert_eq!(
            p["target"][0]["reference"],
            of_type(&b, "MessageHeader")[0]["fullUrl"]
        );
        assert_eq!(p["recorded"], "2024-01-01T12:00:00+01:00");
        assert_eq!(p["agent"][0]["type"]["coding"][0]["code"], "author");
        assert_eq!(
            by_url(&b, &p["agent"][0]["who"]["reference"])["resourceType"],
            "Organization"
        );
        let roles: Vec<&Value> = p["entity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["role"])
            .collect();
        assert_eq!(roles, vec!["source", "derivation"]);
        let first = by_url(&b, &p["entity"][0]["what"]["reference"]);
        assert_eq!(first["manufacturer"], "Acme Lab Systems");
        assert_eq!(first["deviceName"][0]["name"], "AcmeLIS");
        assert_eq!(first["version"][0]["value"], "5.1.2");
        assert_eq!(first["modelNumber"], "B42");
        assert!(crate::fhir::validate::validate(&b).is_empty());
    }

    fn by_url<'a>(b: &'a Value, url: &Value) -> &'a Value {
        &b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| &e["fullUrl"] == url)
            .unwrap()["resource"]
    }

    #[test]
    fn rol_segments_become_practitioner_roles_of_the_patient_and_the_visit() {
        let b = bundle(b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|M1|P|2.7\rPID|1||111^^^H^MR||DOE^JANE\rROL|R1|AD|PP^Primary Care Provider^HL70443|12^House^Greg|20220101|||||||^NET^Internet^g@x.org||Clinic^L^^^^CMS^XX^^A\rPV1|1|I\rROL|R2|AD|AT^Attending^HL70443|34^Grey^Meredith\rPR1|1||1^Biopsy\rROL|R3|AD|PP^Primary Care Provider^HL70443|56^Who^Doctor\r");
        let patient = &of_type(&b, "Patient")[0]["resource"];
        let gps = patient["generalPractitioner"].as_array().unwrap();
        assert_eq!(gps.len(), 1, "only the ROL after PID: {gps:?}");
        let gp = by_url(&b, &gps[0]["reference"]);
        assert_eq!(gp["resourceType"], "PractitionerRole");
        assert_eq!(gp["code"][0]["coding"][0]["code"], "PP");
        assert_eq!(gp["identifier"][0]["value"], "R1");
        assert_eq!(gp["telecom"][0]["value"], "g@x.org");
        assert_eq!(gp["period"]["start"], "2022-01-01");
        let doctor = by_url(&b, &gp["practitioner"]["reference"]);
        assert_eq!(doctor["name"][0]["family"], "House");
        let org = by_url(&b, &gp["organization"]["reference"]);
        assert_eq!(org["name"], "Clinic");
        assert_eq!(org["identifier"][0]["type"]["coding"][0]["code"], "XX");
        let encounter = &of_type(&b, "Encounter")[0]["resource"];
        let part = encounter["participant"].as_array().unwrap();
        assert_eq!(part.len(), 1, "the ROL after PR1 maps to nothing: {part:?}");
        assert_eq!(part[0]["type"][0]["coding"][0]["code"], "AT");
        let at = by_url(&b, &part[0]["individual"]["reference"]);
        assert_eq!(at["identifier"][0]["value"], "R2");
    }

    #[test]
    fn iam_allergies_carry_their_id_status_and_coded_reactions() {
        let b = bundle(b"MSH|^~\\&|A|F|B|G|20240101||ADT^A60|M1|P|2.7\rPID|1||111^^^H^MR\rIAM|1|FA^Food allergy^HL70127|12345^Peanut^L|MI^Mild|Hives|A|56789^App^1.2.3^ISO||||201805||20201005||||C^Confirmed^HL70438\rNTE|1||Seen at the fair.||9941^SMITH^ADAM^^^^^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI|202010101600+0200\rIAR|34567^Rash^L|SV^Severe||Itchy\rIAM|2|DA|99^Penicillin^L|||D|77^App^1.2.3^ISO\r");
        let all = of_type(&b, "AllergyIntolerance");
        assert_eq!(all.len(), 2);
        let a = &all[0]["resource"];
        assert_eq!(a["identifier"][0]["value"], "56789");
        assert_eq!(a["clinicalStatus"]["coding"][0]["code"], "active");
        assert_eq!(a["verificationStatus"]["coding"][0]["code"], "confirmed");
        assert_eq!(a["category"][0], "food");
        assert_eq!(a["criticality"], "low");
        assert_eq!(a["onsetDateTime"], "2018-05");
        assert_eq!(a["recordedDate"], "2020-10-05");
        let reactions = a["reaction"].as_array().unwrap();
        assert_eq!(reactions[0]["manifestation"][0]["text"], "Hives");
        assert_eq!(reactions[0]["severity"], "mild");
        assert_eq!(
            reactions[1]["manifestation"][0]["coding"][0]["code"],
            "34567"
        );
        assert_eq!(reactions[1]["severity"], "severe");
        assert_eq!(reactions[1]["description"], "Itchy");
        // ADT_A60: the NTE after an IAM is that allergy's, with its author.
        assert_eq!(a["note"][0]["text"], "Seen at the fair.");
        assert_eq!(a["note"][0]["time"], "2020-10-10T16:00:00+02:00");
        let author = by_url(&b, &a["note"][0]["authorReference"]["reference"]);
        assert_eq!(author["identifier"][0]["value"], "9941");
        assert!(all[1]["resource"].get("note").is_none());
        // IAM-6 D: the record is withdrawn; FHIR forbids a clinical status then (ait-2).
        let gone = &all[1]["resource"];
        assert_eq!(
            gone["verificationStatus"]["coding"][0]["code"],
            "entered-in-error"
        );
        assert!(gone.get("clinicalStatus").is_none());
    }

    #[test]
    fn the_visit_lists_its_diagnoses_with_use_and_rank() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPV1|1|I|W1^R1^B1||||||||||||||||V9^^^H^VN\rDG1|1||I63.9^Stroke^I10||20240101|A|||||||||1\rDG1|2||E11.9^Diabetes^I10||20231201|F|||||||||2\r";
        let b = bundle(raw);
        let enc = &of_type(&b, "Encounter")[0]["resource"];
        let dx = enc["diagnosis"].as_array().unwrap();
        assert_eq!(dx.len(), 2);
        let conditions = of_type(&b, "Condition");
        // Each entry points at its Condition in the Bundle.
        assert_eq!(dx[0]["condition"]["reference"], conditions[0]["fullUrl"]);
        assert_eq!(dx[1]["condition"]["reference"], conditions[1]["fullUrl"]);
        // Admitting has a diagnosis-role equivalent; final keeps its v2 code only.
        assert_eq!(dx[0]["use"]["coding"][0]["code"], "AD");
        assert_eq!(dx[0]["use"]["coding"][1]["code"], "A");
        assert_eq!(dx[1]["use"]["coding"].as_array().unwrap().len(), 1);
        assert_eq!(
            dx[1]["use"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v2-0052"
        );
        assert_eq!(dx[0]["rank"], 1);
        assert_eq!(dx[1]["rank"], 2);
        // And back: the record gets DG1-6 and DG1-15 again.
        let back = to_clinical(&b).unwrap();
        let types: Vec<_> = back.diagnoses.iter().map(|d| d.r#type.as_deref()).collect();
        let ranks: Vec<_> = back
            .diagnoses
            .iter()
            .map(|d| d.priority.as_deref())
            .collect();
        assert_eq!(types, [Some("A"), Some("F")]);
        assert_eq!(ranks, [Some("1"), Some("2")]);
    }

    #[test]
    fn the_discharge_destination_is_a_location_typed_by_dld_1() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A03|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPV1|1|I|W1||||||||||||||||V9^^^H^VN|||||||||||||||||01|22&Homes&HL70113\r";
        let b = bundle(raw);
        let enc = &of_type(&b, "Encounter")[0]["resource"];
        let dest = enc["hospitalization"]["destination"]["reference"].clone();
        let loc = of_type(&b, "Location")
            .into_iter()
            .find(|l| l["fullUrl"] == dest)
            .unwrap();
        let coding = &loc["resource"]["type"][0]["coding"][0];
        assert_eq!(coding["code"], "22");
        assert_eq!(coding["display"], "Homes");
        assert_eq!(
            coding["system"],
            "http://terminology.hl7.org/CodeSystem/v2-0113"
        );
        assert_eq!(loc["resource"]["name"], "Homes");
        let back = to_clinical(&b).unwrap();
        let to = back.visit.unwrap().discharged_to.unwrap();
        assert_eq!(to.code.as_deref(), Some("22"));
        assert_eq!(to.system.as_deref(), Some("HL70113"));
    }

    #[test]
    fn spm_maps_by_the_guide_with_its_parent_and_container() {
        let raw = b"MSH|^~\\&|LAB|F|EHR|G|20240101||OML^O21|M1|P|2.5.1\rPID|1||7^^^H^MR\rORC|NW|P1^EHR\rOBR|1|P1^EHR||57021-8^CBC^LN\rSPM|1|S1^F1||BLD\rSPM|2|S2^F2|S1^F1|SER|||BCAE|||||5^&mL||Hemolyzed a bit|||20240101080000+0100^20240101083000+0100|20240101090000+0100||N||||HEM^Hemolyzed^HL70493|||RTUBE^Red top^L|||ACC9^^^LAB|OTHER7^^^LAB^PI|SHIP1^LAB\r";
        let b = bundle(raw);
        let specimens = of_type(&b, "Specimen");
        assert_eq!(
            specimens.len(),
            2,
            "the parent is the first SPM, not a third resource"
        );
        let (first, second) = (&specimens[0], &specimens[1]["resource"]);
        let types: Vec<&str> = second["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"]["coding"][0]["code"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(types, ["PGN", "FGN", "PI", "SHIP"]);
        assert_eq!(second["identifier"][0]["value"], "S2");
        assert_eq!(second["parent"][0]["reference"], first["fullUrl"]);
        assert_eq!(second["accessionIdentifier"]["value"], "ACC9");
        assert_eq!(second["status"], "unavailable");
        assert_eq!(second["collection"]["quantity"]["value"], 5.0);
        assert_eq!(second["collection"]["quantity"]["unit"], "mL");
        assert_eq!(
            second["collection"]["collectedPeriod"]["end"],
            "2024-01-01T08:30:00+01:00"
        );
        assert_eq!(second["condition"][0]["coding"][0]["code"], "HEM");
        assert_eq!(second["container"][0]["type"]["coding"][0]["code"], "RTUBE");
        assert_eq!(second["note"][0]["text"], "Hemolyzed a bit");
    }

    /// A resource's extension with that URL.
    fn extension<'a>(resource: &'a Value, url: &str) -> &'a Value {
        resource["extension"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["url"] == url)
            .unwrap_or_else(|| panic!("no {url}"))
    }

    /// The entry a `urn:uuid:` reference points at.
    fn resolve<'a>(b: &'a Value, r: &Value) -> &'a Value {
        let url = r["reference"].as_str().unwrap();
        &b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["fullUrl"] == url)
            .unwrap_or_else(|| panic!("{url} is not in the Bundle"))["resource"]
    }

    #[test]
    fn a_referral_is_a_service_request_with_its_providers() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||REF^I12^REF_I12|M1|P|2.5\rRF1|P^Pending^HL70283|S^STAT^HL70280|Rad^Radiology^HL70281|WR^Send Written Report^HL70282|O^Outpatient^HL70284|R77^EHR|20240105|20240405|20240104|O^Provider Ordered^HL70336|X9^PAYER|||Knee pain after a fall|3||||Radiant Imaging|||||Please call first\rPRD|RP^Referring Provider^HL70286|POWELL^ROBERT^^^DR|1 MAIN ST^^ANN ARBOR^MI^48100||^WPN^PH^^^^^^^^^(555)555-1234||NPI1^NPI~LIC9^SL^MI^20300101|20200101||GOOD HEALTH HOSPITAL\rPRD|RT^Referred to Provider^HL70286|LEE^ANNA|||||NPI2^NPI\rPID|1||7^^^H^MR||DOE^JANE\rPV1|1|O\rNTE|||Bring the X-rays\r";
        let b = bundle(raw);
        let sr = &of_type(&b, "ServiceRequest")[0]["resource"];
        assert_eq!(sr["status"], "on-hold");
        assert_eq!(sr["priority"], "stat");
        assert_eq!(sr["category"][0]["coding"][0]["code"], "3457005");
        assert_eq!(sr["code"]["coding"][0]["code"], "Rad");
        assert_eq!(
            sr["code"]["coding"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v2-0281"
        );
        assert_eq!(sr["orderDetail"][0]["coding"][0]["code"], "WR");
        assert_eq!(sr["locationCode"][0]["coding"][0]["code"], "O");
        assert_eq!(sr["identifier"][0]["value"], "R77");
        assert_eq!(sr["identifier"][0]["type"]["coding"][0]["code"], "PLAC");
        assert_eq!(sr["identifier"][1]["value"], "X9");
        assert_eq!(sr["occurrencePeriod"]["start"], "2024-01-05");
        assert_eq!(sr["occurrencePeriod"]["end"], "2024-04-05");
        assert_eq!(sr["authoredOn"], "2024-01-04");
        assert_eq!(sr["reasonCode"][0]["coding"][0]["code"], "O");
        assert_eq!(sr["reasonCode"][0]["text"], "Knee pain after a fall");
        assert_eq!(sr["quantityQuantity"]["value"], 3.0);
        let notes: Vec<&str> = sr["note"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["text"].as_str().unwrap())
            .collect();
        assert_eq!(notes, ["Please call first", "Bring the X-rays"]);
        // The referring provider requests, in the referrer role, with all its PLN ids.
        let requester = resolve(&b, &sr["requester"]);
        assert_eq!(requester["resourceType"], "PractitionerRole");
        assert_eq!(requester["code"][0]["coding"][0]["code"], "REF");
        assert_eq!(requester["code"][0]["coding"][1]["code"], "RP");
        assert_eq!(requester["telecom"][0]["value"], "(555)555-1234");
        assert_eq!(
            resolve(&b, &requester["organization"])["name"],
            "GOOD HEALTH HOSPITAL"
        );
        let referrer = resolve(&b, &requester["practitioner"]);
        assert_eq!(referrer["name"][0]["family"], "POWELL");
        assert_eq!(referrer["identifier"][0]["value"], "NPI1");
        assert_eq!(referrer["identifier"][1]["value"], "LIC9");
        assert_eq!(referrer["identifier"][1]["type"]["coding"][0]["code"], "SL");
        assert_eq!(referrer["address"][0]["city"], "ANN ARBOR");
        // The referred-to provider and the authorized organization perform.
        let performers: Vec<&Value> = sr["performer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| resolve(&b, r))
            .collect();
        assert_eq!(performers.len(), 2);
        assert_eq!(
            resolve(&b, &performers[0]["practitioner"])["name"][0]["family"],
            "LEE"
        );
        assert_eq!(performers[1]["name"], "Radiant Imaging");
    }

    #[test]
    fn guarantors_are_the_accounts_in_their_order() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A04|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE|||||||||||||AC1^^^H^AN\rGT1|1|G55^^^H^GN|DOE^JOHN||9 ELM ST^^TOWN^MI^48000|(555)111-2222||19700101|M||SPO^Spouse^HL70063|123-45-6789|20240101||2||||E1|||N\rGT1|2||DOE^JANE||||||||SEL^Self^HL70063||||1\r";
        let b = bundle(raw);
        let accounts = of_type(&b, "Account");
        assert_eq!(accounts.len(), 1, "PID-18's account");
        let account = &accounts[0]["resource"];
        assert_eq!(account["identifier"][0]["value"], "AC1");
        let g = account["guarantor"].as_array().unwrap();
        assert_eq!(g.len(), 2);
        // GT1-15 orders them: the patient (SEL) first.
        assert_eq!(resolve(&b, &g[0]["party"])["resourceType"], "Patient");
        let spouse = resolve(&b, &g[1]["party"]);
        assert_eq!(spouse["resourceType"], "RelatedPerson");
        assert_eq!(g[1]["onHold"], false);
        assert_eq!(g[1]["period"]["start"], "2024-01-01");
        assert_eq!(spouse["relationship"][0]["coding"][0]["code"], "SPS");
        assert_eq!(spouse["identifier"][0]["value"], "G55");
        assert_eq!(spouse["identifier"][1]["value"], "E1");
        assert_eq!(spouse["identifier"][1]["type"]["coding"][0]["code"], "EI");
        assert_eq!(spouse["identifier"][2]["value"], "123-45-6789");
        assert_eq!(
            spouse["identifier"][2]["system"],
            "http://hl7.org/fhir/sid/us-ssn"
        );
        assert_eq!(spouse["birthDate"], "1970-01-01");
        assert_eq!(spouse["gender"], "male");
        assert_eq!(spouse["telecom"][0]["use"], "home");
        // Without PID-18 the patient still gets an Account for its guarantors.
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A04|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rGT1|1||DOE^JOHN||||||||SPO\r";
        let b = bundle(raw);
        let account = &of_type(&b, "Account")[0]["resource"];
        assert!(account.get("identifier").is_none());
        assert_eq!(
            resolve(&b, &account["guarantor"][0]["party"])["name"][0]["given"][0],
            "JOHN"
        );
    }

    #[test]
    fn in2_numbers_go_to_the_patient_the_insured_and_the_coverage() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A04|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rIN1|1|BAV^Blue Advantage^L||Blue Cross||||||||||||DOE^JOHN|SPO^Spouse^HL70063|||||||||||||||||||POL1\rIN2|E77^^^ACME|123-45-6789||||1EG4TE5MK73||MCD-8||MIL-1|||||||||||||||||||||||||||||||||||||||||||||||||||M55^^^BCBS\r";
        let b = bundle(raw);
        let typed = |r: &Value| -> Vec<(String, String)> {
            r["identifier"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| {
                    (
                        i["type"]["coding"][0]["code"]
                            .as_str()
                            .unwrap_or("-")
                            .to_string(),
                        i["value"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        };
        let patient = &of_type(&b, "Patient")[0]["resource"];
        let ids = typed(patient);
        for (t, v) in [("MC", "1EG4TE5MK73"), ("MA", "MCD-8"), ("MI", "MIL-1")] {
            assert!(ids.contains(&(t.into(), v.into())), "{t} in {ids:?}");
        }
        // The insured is the spouse: the employee id and SSN are theirs, not the patient's.
        assert!(!ids.iter().any(|(_, v)| v == "123-45-6789"));
        let coverage = &of_type(&b, "Coverage")[0]["resource"];
        let insured = resolve(&b, &coverage["subscriber"]);
        let insured_ids = typed(insured);
        assert!(insured_ids.contains(&("EI".into(), "E77".into())));
        assert!(insured_ids.contains(&("SS".into(), "123-45-6789".into())));
        // IN1-2 (CWE[Identifier]), the policy number and IN2-61.
        assert_eq!(coverage["identifier"][0]["value"], "BAV");
        assert_eq!(
            typed(coverage)[1..],
            [("MB".into(), "POL1".into()), ("MB".into(), "M55".into())]
        );
        // And back to an IN1.
        let back = to_clinical(&b).unwrap();
        let ins = &back.insurance[0];
        assert_eq!(ins.plan.as_ref().unwrap().code.as_deref(), Some("BAV"));
        assert_eq!(ins.company_name.as_deref(), Some("Blue Cross"));
        assert_eq!(ins.policy_number.as_deref(), Some("POL1"));
        assert_eq!(
            ins.relationship.as_ref().unwrap().code.as_deref(),
            Some("SPO")
        );
        let v2 = crate::convert::to_v2::to_v2(&back, &Default::default());
        let v2 = String::from_utf8(v2).unwrap();
        let in1 = v2.split('\r').find(|s| s.starts_with("IN1")).unwrap();
        let fields: Vec<&str> = in1.split('|').collect();
        assert_eq!(fields[2], "BAV^Blue Advantage");
        assert_eq!(fields[4], "Blue Cross");
        assert_eq!(fields[16], "DOE^JOHN");
        assert!(fields[17].starts_with("SPO"), "{in1}");
        assert_eq!(fields[36], "POL1");
    }

    #[test]
    fn next_of_kin_are_contacts_of_the_patient_and_related_people() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A04|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rNK1|1|DOE^JOHN|SPO^Spouse^HL70063||(555)111-2222||C^Emergency Contact^HL70131|20240101|||||||M|||||spa^Spanish^ISO6392\rNK1|2||EMR^Employer^HL70063||||||||||ACME CORP^^^^^CMS^XX^^^ORG77|||||||||||||||||ROE^RITA|(555)222-3333|9 Elm St^^Town^MI\r";
        let b = bundle(raw);
        let patient = &of_type(&b, "Patient")[0]["resource"];
        let contacts = patient["contact"].as_array().unwrap();
        assert_eq!(contacts.len(), 2);
        assert_eq!(contacts[0]["name"]["family"], "DOE");
        assert_eq!(contacts[0]["relationship"][0]["coding"][0]["code"], "SPS");
        assert_eq!(contacts[0]["relationship"][1]["coding"][0]["code"], "C");
        assert_eq!(contacts[0]["telecom"][0]["value"], "(555)111-2222");
        assert_eq!(contacts[0]["gender"], "male");
        assert_eq!(contacts[0]["period"]["start"], "2024-01-01");
        let employer = resolve(&b, &contacts[1]["organization"]);
        assert_eq!(employer["name"], "ACME CORP");
        assert_eq!(employer["identifier"][0]["value"], "ORG77");
        assert_eq!(employer["identifier"][0]["type"]["coding"][0]["code"], "XX");
        // The employer is a contact only; the spouse is a RelatedPerson too.
        let related = of_type(&b, "RelatedPerson");
        assert_eq!(related.len(), 1);
        assert_eq!(related[0]["resource"]["name"][0]["given"][0], "JOHN");
        // NK1-20 as the RelatedPerson's language (NK1[RelatedPerson]).
        let language = &related[0]["resource"]["communication"][0]["language"];
        assert_eq!(language["coding"][0]["code"], "spa");
        // NK1-30/31/32: the employer's contact person.
        assert_eq!(contacts[1]["name"]["family"], "ROE");
        assert_eq!(contacts[1]["telecom"][0]["value"], "(555)222-3333");
        assert_eq!(contacts[1]["address"]["city"], "Town");
        // And back: the contacts are the record's next of kin, and NK1 segments again.
        let back = to_clinical(&b).unwrap();
        assert_eq!(back.next_of_kin.len(), 2);
        let spouse = &back.next_of_kin[0];
        assert_eq!(
            spouse.relationship.as_ref().unwrap().code.as_deref(),
            Some("SPO")
        );
        assert_eq!(spouse.role.as_ref().unwrap().code.as_deref(), Some("C"));
        assert_eq!(
            back.next_of_kin[1].organization.as_deref(),
            Some("ACME CORP")
        );
        let v2 = crate::convert::to_v2::to_v2(&back, &Default::default());
        let v2 = String::from_utf8(v2).unwrap();
        let nk1: Vec<&str> = v2.split('\r').filter(|s| s.starts_with("NK1")).collect();
        assert_eq!(nk1.len(), 2);
        assert_eq!(
            nk1[0],
            "NK1|1|DOE^JOHN|SPO^Spouse^HL70063||(555)111-2222^PRN^PH||C^Emergency Contact^HL70131|20240101|||||||M"
        );
        assert!(
            nk1[1].ends_with("|ACME CORP^^^^^CMS^XX^^^ORG77"),
            "{}",
            nk1[1]
        );
    }

    #[test]
    fn notes_carry_who_entered_them_and_when() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ORU^R01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rOBR|1|P1^EHR||24331-1^Lipid panel^LN\rOBX|1|NM|2093-3^Chol^LN||180|mg/dL|||||F\rNTE|1|L|fasting|RE|9941^SMITH^ADAM^^^^^^NPI&2.16.840.1.113883.4.6&ISO^L^^^NPI|20240101083000+0100\rNTE|2|L|rechecked\r";
        let b = bundle(raw);
        let obs = &of_type(&b, "Observation")[0]["resource"];
        let note = &obs["note"][0];
        assert_eq!(note["text"], "fasting");
        assert_eq!(note["time"], "2024-01-01T08:30:00+01:00");
        let author = resolve(&b, &note["authorReference"]);
        assert_eq!(author["identifier"][0]["value"], "9941");
        assert_eq!(author["identifier"][0]["type"]["coding"][0]["code"], "NPI");
        assert_eq!(obs["note"][1], serde_json::json!({"text": "rechecked"}));
    }

    #[test]
    fn an_appointment_books_people_places_and_equipment_for_an_order() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||SIU^S12|M1|P|2.5\rSCH|A1^EHR|F1^SCHED||||NEW||ROUTINE^Routine^HL70277|30|min|^^30^20241231233000+0100^20250101000000+0100|77^PLACER^PAT||||88^FILLER^FRED||||99^ENTER^ERIN|||||Booked|ORD1^EHR\rPID|1||7^^^H^MR||DOE^JANE\rRGS|1\rAIS|1||76164006^Biopsy of colon^SCT|20241231233000+0100\rAIG|1||5001^Video colonoscope^L|101^Equipment^L||||20241231233000+0100|||45|min||Booked\rAIL|1||055^Room01^^GH Clinic|C^Clinic^HL70305||20241231233000+0100|||1|h||Cancelled\rAIP|1||1210^GE^ROBERT|010^Gastroenterologist^L||20241231233000+0100|||30\r";
        let b = bundle(raw);
        let a = &of_type(&b, "Appointment")[0]["resource"];
        let by_type = |t: &str| -> Vec<&Value> {
            a["participant"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| resolve(&b, &p["actor"])["resourceType"] == t)
                .collect()
        };
        let device = by_type("Device");
        assert_eq!(device.len(), 1);
        assert_eq!(device[0]["type"][0]["coding"][0]["code"], "101");
        // 45 minutes past 23:30 is the next year, in the same zone.
        assert_eq!(device[0]["period"]["end"], "2025-01-01T00:15:00+01:00");
        assert_eq!(device[0]["status"], "accepted");
        let dev = resolve(&b, &device[0]["actor"]);
        assert_eq!(dev["identifier"][0]["value"], "5001");
        assert_eq!(dev["deviceName"][0]["name"], "Video colonoscope");
        let room = by_type("Location");
        assert_eq!(
            room[room.len() - 1]["period"]["end"],
            "2025-01-01T00:30:00+01:00"
        );
        assert_eq!(room[room.len() - 1]["status"], "declined");
        // AIL-4 types the place, not the participation.
        assert!(room[room.len() - 1].get("type").is_none());
        let place = resolve(&b, &room[room.len() - 1]["actor"]);
        assert_eq!(place["type"][0]["coding"][0]["code"], "C");
        // AIP plus the SCH-12/16/20 contacts.
        let people = by_type("Practitioner");
        assert_eq!(people.len(), 4);
        assert_eq!(people[0]["type"][0]["coding"][0]["code"], "010");
        assert_eq!(people[0]["period"]["start"], "2024-12-31T23:30:00+01:00");
        assert_eq!(people[0]["period"]["end"], "2025-01-01T00:00:00+01:00");
        // SCH-26: the order it is for.
        let order = resolve(&b, &a["basedOn"][0]);
        assert_eq!(order["resourceType"], "ServiceRequest");
        assert_eq!(order["identifier"][0]["value"], "ORD1");
        assert_eq!(order["code"]["coding"][0]["code"], "76164006");
        assert_eq!(order["status"], "active");
        // Booked people and equipment perform it, in the booked room.
        let performers: Vec<&Value> = order["performer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| &resolve(&b, p)["resourceType"])
            .collect();
        assert_eq!(performers, vec!["Practitioner", "Device"]);
        assert_eq!(
            resolve(&b, &order["locationReference"][0])["resourceType"],
            "Location"
        );
    }

    #[test]
    fn each_booked_service_is_a_service_request_even_without_an_order_number() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||SIU^S15|M1|P|2.5\rSCH|A1^EHR|F1^SCHED||||CANCEL|||30|min|^^30^20240105090000+0100^20240105093000+0100||||||||||||||Cancelled\rPID|1||7^^^H^MR||DOE^JANE\rRGS|1\rAIS|1||CONSULT^Consultation^L|20240105090000+0100|||20|min\rAIS|2||ECG^Electrocardiogram^L|20240105092000+0100|||10|min\r";
        let b = bundle(raw);
        let a = &of_type(&b, "Appointment")[0]["resource"];
        let orders: Vec<&Value> = a["basedOn"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| resolve(&b, r))
            .collect();
        assert_eq!(orders.len(), 2);
        assert_eq!(orders[1]["code"]["coding"][0]["code"], "ECG");
        // AIS-4 plus AIS-7 minutes.
        assert_eq!(
            orders[1]["occurrencePeriod"]["end"],
            "2024-01-05T09:30:00+01:00"
        );
        // SCH-25 Cancelled: the booked service is revoked.
        assert_eq!(orders[0]["status"], "revoked");
        assert_ne!(orders[0]["id"], orders[1]["id"]);
        assert_eq!(
            bundle(raw)["entry"],
            b["entry"],
            "the same ids when sent again"
        );
    }

    #[test]
    fn procedures_map_by_the_guide_with_performers_period_and_parent() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A08|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPR1|1||76164006^Biopsy of colon^SCT|Colon biopsy during colonoscopy|20240101103000+0100|D^Diagnostic procedure^HL70230|45|11^ANES^ANNA|||22^CUTTER^CARL|33^HELPER^HAL|||K63.3^Ulcer of intestine^I10||||P1^OR||||ENDO^^^GHH||P0^OR\rPR1|2||73761001^Colonoscopy^SCT||20240101100000+0100||||||||||||||P0^OR\r";
        let b = bundle(raw);
        let procs = of_type(&b, "Procedure");
        assert_eq!(procs.len(), 2);
        let (biopsy, colonoscopy) = (&procs[0]["resource"], &procs[1]);
        assert_eq!(biopsy["identifier"][0]["value"], "P1");
        assert_eq!(biopsy["code"]["text"], "Colon biopsy during colonoscopy");
        assert_eq!(biopsy["category"]["coding"][0]["code"], "D");
        assert_eq!(
            biopsy["performedPeriod"]["start"],
            "2024-01-01T10:30:00+01:00"
        );
        assert_eq!(
            biopsy["performedPeriod"]["end"],
            "2024-01-01T11:15:00+01:00"
        );
        let functions: Vec<&str> = biopsy["performer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["function"]["text"].as_str().unwrap_or("-"))
            .collect();
        assert_eq!(functions, ["anesthesiologist", "surgeon", "-"]);
        assert_eq!(biopsy["reasonCode"][0]["coding"][0]["code"], "K63.3");
        assert_eq!(resolve(&b, &biopsy["location"])["name"], "ENDO");
        // PR1-25: the later PR1 in the message with that identifier.
        assert_eq!(biopsy["partOf"][0]["reference"], colonoscopy["fullUrl"]);
        assert_eq!(
            colonoscopy["resource"]["performedDateTime"],
            "2024-01-01T10:00:00+01:00"
        );
        // And back to PR1 segments.
        let back = to_clinical(&b).unwrap();
        assert_eq!(back.procedures.len(), 2);
        let p = &back.procedures[0];
        assert_eq!(
            p.surgeons[0].name.as_ref().unwrap().family.as_deref(),
            Some("CUTTER")
        );
        assert_eq!(p.anesthesiologists.len(), 1);
        assert_eq!(p.performers.len(), 1);
        let v2 = crate::convert::to_v2::to_v2(&back, &Default::default());
        let v2 = String::from_utf8(v2).unwrap();
        let pr1: Vec<&str> = v2.split('\r').filter(|s| s.starts_with("PR1")).collect();
        assert_eq!(pr1.len(), 2);
        let fields: Vec<&str> = pr1[0].split('|').collect();
        assert!(
            fields[3].starts_with("76164006^Biopsy of colon^SCT"),
            "{}",
            pr1[0]
        );
        assert_eq!(fields[4], "Colon biopsy during colonoscopy");
        assert_eq!(fields[5], "20240101103000+0100");
        assert!(fields[11].starts_with("22^CUTTER^CARL"), "{}", pr1[0]);
        assert!(fields[15].starts_with("K63.3"), "{}", pr1[0]);
        assert!(fields[19].starts_with("P1"), "{}", pr1[0]);
    }

    #[test]
    fn the_performing_lab_has_its_clia_number_and_address() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ORU^R01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rOBR|1|P1^EHR||24331-1^Lipid panel^LN\rOBX|1|NM|2093-3^Chol^LN||180|mg/dL|||||F||||||||||||Acme Lab^L^^^^CLIA&2.16.840.1.113883.4.7&ISO^XX^^^05D0123456|1 Lab Way^^Madison^WI^53703\r";
        let b = bundle(raw);
        let obs = &of_type(&b, "Observation")[0]["resource"];
        let lab = obs["performer"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| resolve(&b, r))
            .find(|r| r["resourceType"] == "Organization")
            .unwrap();
        assert_eq!(lab["name"], "Acme Lab");
        assert_eq!(lab["identifier"][0]["value"], "05D0123456");
        assert_eq!(lab["identifier"][0]["type"]["coding"][0]["code"], "XX");
        assert_eq!(
            lab["identifier"][0]["system"],
            "urn:oid:2.16.840.1.113883.4.7"
        );
        assert_eq!(lab["address"][0]["city"], "Madison");
    }

    #[test]
    fn pv2_gives_planned_dates_arrival_and_the_prior_pending_location() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rPV1|1|I|W1^R1^B1\rPV2|W9^R9^B9|||||||20240102080000+0100|20240105120000+0100|||||||||||||||||||||||||||||A^Ambulance^HL70430\r";
        let b = bundle(raw);
        let enc = &of_type(&b, "Encounter")[0]["resource"];
        let ext = |url: &str| extension(enc, url);
        assert_eq!(
            ext("http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate")
                ["valueDateTime"],
            "2024-01-02T08:00:00+01:00"
        );
        assert_eq!(
            ext("http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate")
                ["valueDateTime"],
            "2024-01-05T12:00:00+01:00"
        );
        let arrival = ext("http://hl7.org/fhir/StructureDefinition/encounter-modeOfArrival");
        assert_eq!(arrival["valueCoding"]["code"], "A");
        assert_eq!(
            arrival["valueCoding"]["system"],
            "http://terminology.hl7.org/CodeSystem/v2-0430"
        );
        let locations = enc["location"].as_array().unwrap();
        assert_eq!(locations.len(), 2);
        assert_eq!(locations[1]["status"], "planned");
        assert_eq!(resolve(&b, &locations[1]["location"])["name"], "B9");
    }

    #[test]
    fn prt_participants_land_where_they_follow() {
        let raw = b"MSH|^~\\&|LAB|F|EHR|G|20240101||ORU^R01^ORU_R01|M1|P|2.8\rPID|1||7^^^H^MR||DOE^JANE\rPRT|R1|||PP^Primary Care Provider^HL70443|111^GP^GARY\rPV1|1|O\rPRT||||AT^Attending^HL70443|222^ATT^ANN||||||20240101080000+0100\rORC|RE|P1^EHR\rPRT||||OP^Ordering Provider^HL70443|333^ORD^OLGA\rOBR|1|P1^EHR||24331-1^Lipid panel^LN|||20240101080000+0100||||||||||||||||F\rPRT||||TN^Technician^HL70443|444^TECH^TOM\rOBX|1|NM|2093-3^Chol^LN||180|mg/dL|||||F\rPRT||||EQUIP^Equipment^HL70443||||||ANALYZER-9^LAB\r";
        let b = bundle(raw);
        let family = |r: &Value| -> String {
            let role = resolve(&b, r);
            let p = if role["resourceType"] == "PractitionerRole" {
                resolve(&b, &role["practitioner"])
            } else {
                role
            };
            p["name"][0]["family"].as_str().unwrap_or("-").to_string()
        };
        let patient = &of_type(&b, "Patient")[0]["resource"];
        assert_eq!(family(&patient["generalPractitioner"][0]), "GP");
        let enc = &of_type(&b, "Encounter")[0]["resource"];
        let att = enc["participant"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"][0]["coding"][0]["code"] == "AT")
            .unwrap();
        assert_eq!(family(&att["individual"]), "ATT");
        let sr = &of_type(&b, "ServiceRequest")[0]["resource"];
        assert_eq!(family(&sr["requester"]), "ORD");
        let dr = &of_type(&b, "DiagnosticReport")[0]["resource"];
        assert_eq!(family(&dr["performer"][0]), "TECH");
        let obs = &of_type(&b, "Observation")[0]["resource"];
        assert_eq!(
            resolve(&b, &obs["device"])["identifier"][0]["value"],
            "ANALYZER-9"
        );
    }

    #[test]
    fn the_order_carries_its_facility_details_and_technician() {
        let raw = b"MSH|^~\\&|LAB|F|EHR|G|20240101||ORU^R01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rORC|RE|P1^EHR||||||||||333^ORD^OLGA||(555)222-3333||RR^Reflex rule^L|||||Main Clinic^^^^^^XX^^^C55|5 Main St^^Town^WI^53000|(555)000-1111|9 Doc Rd^^Town^WI^53000||||R^Restricted^HL70177|O^Outpatient^HL70482||||ALT-9^^^EHR^PLAC\rOBR|1|P1^EHR||24331-1^Lipid panel^LN|||20240101080000+0100||||G||||||||||||||F|||||||||44&TECH&TOM||||||||||||FAST^Fasting^L\rOBX|1|NM|2093-3^Chol^LN||180|mg/dL|||||F\rDG1|1||E78.5^Hyperlipidemia^I10||||||||||||||||20240102090000+0100\rDG1|2||I10^Hypertension^I10||||||||||||||||||D\r";
        let b = bundle(raw);
        let sr = &of_type(&b, "ServiceRequest")[0]["resource"];
        assert_eq!(sr["intent"], "reflex-order");
        assert_eq!(sr["identifier"][1]["value"], "ALT-9");
        assert_eq!(sr["orderDetail"][0]["coding"][0]["code"], "FAST");
        let callback = extension(
            sr,
            "http://hl7.org/fhir/StructureDefinition/servicerequest-order-callback-phone-number",
        );
        assert_eq!(callback["valueContactPoint"]["value"], "(555)222-3333");
        let reason = extension(
            sr,
            "http://hl7.org/fhir/StructureDefinition/request-statusReason",
        );
        assert_eq!(reason["valueCodeableConcept"]["coding"][0]["code"], "RR");
        assert_eq!(sr["meta"]["security"][0]["code"], "R");
        assert_eq!(
            sr["meta"]["security"][0]["system"],
            "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
        );
        assert_eq!(sr["locationCode"][0]["coding"][0]["code"], "O");
        let role = resolve(&b, &sr["requester"]);
        let facility = resolve(&b, &role["organization"]);
        assert_eq!(facility["name"], "Main Clinic");
        assert_eq!(facility["identifier"][0]["value"], "C55");
        assert_eq!(facility["address"][0]["line"][0], "5 Main St");
        assert_eq!(facility["telecom"][0]["value"], "(555)000-1111");
        let doctor = resolve(&b, &role["practitioner"]);
        assert_eq!(doctor["address"][0]["line"][0], "9 Doc Rd");
        let dr = &of_type(&b, "DiagnosticReport")[0]["resource"];
        let tech = resolve(&b, &dr["performer"][0]);
        assert_eq!(tech["code"][0]["coding"][0]["code"], "TN");
        assert_eq!(
            resolve(&b, &tech["practitioner"])["name"][0]["family"],
            "TECH"
        );
        let condition = &of_type(&b, "Condition")[0]["resource"];
        assert_eq!(condition["recordedDate"], "2024-01-02T09:00:00+01:00");
        let deleted = &of_type(&b, "Condition")[1]["resource"];
        assert_eq!(
            deleted["verificationStatus"]["coding"][0]["code"],
            "entered-in-error"
        );
        assert!(deleted.get("clinicalStatus").is_none());
    }

    #[test]
    fn pid_nationality_animal_tribe_and_the_message_language() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ADT^A04|M1|P|2.8|||||USA||en-US^English^IETF\rPID|1||7^^^H^MR||REX^DOG|||||||||||||||||||||||USA^United States^ISO3166|||||||448771007^Canis familiaris^SCT|132542003^Labrador^SCT|||170^Navajo Nation^HL70171\r";
        let b = bundle(raw);
        let patient = &of_type(&b, "Patient")[0]["resource"];
        let ext = |url: &str| extension(patient, url);
        let base = "http://hl7.org/fhir/StructureDefinition/";
        assert_eq!(
            ext(&format!("{base}patient-nationality"))["extension"][0]["valueCodeableConcept"]
                ["coding"][0]["code"],
            "USA"
        );
        let animal = ext(&format!("{base}patient-animal"));
        assert_eq!(animal["extension"][0]["url"], "species");
        assert_eq!(
            animal["extension"][1]["valueCodeableConcept"]["coding"][0]["code"],
            "132542003"
        );
        assert_eq!(
            ext(&format!("{base}patient-citizenship"))["extension"][0]["valueCodeableConcept"]
                ["coding"][0]["code"],
            "170"
        );
        let header = &of_type(&b, "MessageHeader")[0]["resource"];
        assert_eq!(header["language"], "en-US");
    }

    #[test]
    fn immunization_reason_place_and_allergy_reporters() {
        let b = bundle(b"MSH|^~\\&|A|F|B|G|20240101||VXU^V04|M1|P|2.5.1\rPID|1||7^^^H^MR||DOE^JANE\rORC|RE||IZ-1^IIS\rRXA|0|1|20240215||08^HepB^CVX|0.5|mL^mL^UCUM||||||||||||V03^Routine^NIP||A|20240215101500+0100|||||PEDS^^^CLINIC1|1 Clinic Rd^^Town^WI^53000\r");
        let iz = &of_type(&b, "Immunization")[0]["resource"];
        assert_eq!(iz["identifier"][0]["type"]["coding"][0]["code"], "FILL");
        assert_eq!(iz["reasonCode"][0]["coding"][0]["code"], "V03");
        assert_eq!(iz["recorded"], "2024-02-15T10:15:00+01:00");
        let place = resolve(&b, &iz["location"]);
        assert_eq!(place["name"], "PEDS");
        assert_eq!(place["address"]["line"][0], "1 Clinic Rd");
        let b = bundle(b"MSH|^~\\&|A|F|B|G|20240101||ADT^A60|M2|P|2.6\rPID|1||7^^^H^MR||DOE^JANE\rIAM|1||PEANUT^Peanut^L|||A|AL1^EHR|||||||DOE^JOHN|SPO^Spouse^HL70063\rIAM|2||LATEX^Latex^L|||A|AL2^EHR|||||||DOE^JANE|SEL\r");
        let allergies = of_type(&b, "AllergyIntolerance");
        let spouse = resolve(&b, &allergies[0]["resource"]["recorder"]);
        assert_eq!(spouse["resourceType"], "RelatedPerson");
        assert_eq!(spouse["relationship"][0]["coding"][0]["code"], "SPS");
        assert_eq!(spouse["name"][0]["given"][0], "JOHN");
        let herself = resolve(&b, &allergies[1]["resource"]["recorder"]);
        assert_eq!(herself["resourceType"], "Patient");
    }

    #[test]
    fn tq1_becomes_the_orders_quantity_and_timing_and_comes_back() {
        let raw = b"MSH|^~\\&|A|F|B|G|20240101||ORM^O01|M1|P|2.5\rPID|1||7^^^H^MR||DOE^JANE\rORC|NW|P1^EHR\rOBR|1|P1^EHR||24331-1^Lipid panel^LN\rTQ1|1|2^&tablets|Q4H|0800~2030|||20240102080000+0100|20240109080000+0100|R||Take with food||30^min|12\r";
        let b = bundle(raw);
        let sr = &of_type(&b, "ServiceRequest")[0]["resource"];
        assert_eq!(sr["quantityQuantity"]["value"], 2.0);
        assert_eq!(sr["quantityQuantity"]["unit"], "tablets");
        let t = &sr["occurrenceTiming"];
        assert_eq!(t["code"]["coding"][0]["code"], "Q4H");
        assert_eq!(t["code"]["coding"][1]["code"], "Q4H");
        assert_eq!(
            t["code"]["coding"][1]["system"],
            "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation"
        );
        assert_eq!(
            t["repeat"]["timeOfDay"],
            serde_json::json!(["08:00:00", "20:30:00"])
        );
        assert_eq!(
            t["repeat"]["boundsPeriod"]["start"],
            "2024-01-02T08:00:00+01:00"
        );
        assert_eq!(
            t["repeat"]["boundsPeriod"]["end"],
            "2024-01-09T08:00:00+01:00"
        );
        assert_eq!(t["repeat"]["duration"], 30.0);
        assert_eq!(t["repeat"]["durationUnit"], "min");
        assert_eq!(t["repeat"]["count"], 12);
        // occurrence[x] is one choice.
        assert!(sr.get("occurrenceDateTime").is_none());
        assert_eq!(sr["note"][0]["text"], "Take with food");
        // And back to the record and to a TQ1 again.
        let back = to_clinical(&b).unwrap();
        let timing = back.orders[0].timing.as_ref().unwrap();
        assert_eq!(timing.repeat.as_deref(), Some("Q4H"));
        assert_eq!(timing.times, ["08:00:00", "20:30:00"]);
        assert_eq!(timing.occurrences, Some(12));
        let v2 = crate::convert::to_v2::to_v2(&back, &Default::default());
        let v2 = String::from_utf8(v2).unwrap();
        let tq1 = v2.split('\r').find(|s| s.starts_with("TQ1")).unwrap();
        assert_eq!(
            tq1,
            "TQ1|1|2^&tablets|Q4H|080000~203000|||20240102080000+0100|20240109080000+0100|||||30^min|12"
        );
    }

    #[test]
    fn offsets() {
        assert!(valid_offset("Z") && valid_offset("+01:00") && valid_offset("-05:30"));
        assert!(!valid_offset("+1:00") && !valid_offset("0100") && !valid_offset("+15:00"));
    }
}
