//! FHIR R4 → `Clinical`: Patient, Encounter, ServiceRequest, DiagnosticReport, Observation and
//! Immunization (with the Practitioners, Organizations and Locations they reference), from a
//! Bundle of any type or a single resource.
//!
//! The inverse of the v2 → FHIR direction where that one is lossless: FHIR codes that replaced a
//! v2 table code go back to the v2 code (`male` → `M`, `final` → `F`, `IMP` → `I`), coding
//! system URIs go back to their v2 names (`http://loinc.org` → `LN`, `.../v2-0203` → `HL70203`,
//! Aorta's own `urn:aorta:cs:NAME` → `NAME`; others stay URIs), identifier systems go back to
//! assigning authorities (`urn:oid:X` → universal id `X`/`ISO`, `urn:aorta:id:NS` → namespace
//! `NS`, other URIs → universal id of type `URI`). References are followed inside the Bundle
//! (by `fullUrl` or `Type/id`) and to contained resources.

use std::collections::HashMap;

use serde_json::Value;

use super::vocab;
use crate::record::clinical::*;

/// The resource types [`to_clinical`] reads; others in a Bundle are named in the warnings.
pub const READS: [&str; 16] = [
    "Patient",
    "RelatedPerson",
    "Coverage",
    "Procedure",
    "Encounter",
    "ServiceRequest",
    "DiagnosticReport",
    "Observation",
    "Immunization",
    "AllergyIntolerance",
    "Condition",
    "Practitioner",
    "PractitionerRole",
    "Organization",
    "Location",
    "ChargeItem",
];

/// The record of a FHIR document (a Bundle or one resource).
pub fn to_clinical(doc: &Value) -> Result<Clinical, String> {
    let kind = str_at(doc, "resourceType").ok_or("not a FHIR resource: no resourceType")?;
    let mut resources: Vec<(Option<&str>, &Value)> = Vec::new();
    if kind == "Bundle" {
        for e in array(doc, "entry") {
            if let Some(r) = e.get("resource").filter(|r| r.is_object()) {
                resources.push((str_at(e, "fullUrl"), r));
            }
        }
    } else {
        resources.push((None, doc));
    }
    let r = Reader::new(&resources);
    let mut c = Clinical::default();
    let mut types: Vec<String> = Vec::new();
    for (_, res) in &resources {
        if let Some(t) = str_at(res, "resourceType") {
            if !types.iter().any(|x| x == t) {
                types.push(t.to_string());
            }
            if !READS.contains(&t) && t != "MessageHeader" && t != "Provenance" {
                c.warnings
                    .push(format!("{t} resources are not read into the record"));
            }
        }
    }
    c.message.r#type = Some(kind.to_string());
    c.message.resource_types = types;
    c.message.control_id = doc
        .pointer("/identifier/value")
        .and_then(Value::as_str)
        .map(str::to_string);
    c.message.sent_at = str_at(doc, "timestamp")
        .or_else(|| doc.pointer("/meta/lastUpdated").and_then(Value::as_str))
        .map(str::to_string);
    fn of<'a>(
        resources: &'a [(Option<&'a str>, &'a Value)],
        t: &'static str,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        resources
            .iter()
            .filter(move |(_, r)| str_at(r, "resourceType") == Some(t))
            .map(|(_, r)| *r)
    }
    let of = |t: &'static str| of(&resources, t);
    if let Some(h) = of("MessageHeader").next() {
        c.message.event = h
            .pointer("/eventCoding/code")
            .and_then(Value::as_str)
            .map(str::to_string);
        c.message.sending_application = h
            .pointer("/source/name")
            .or_else(|| h.pointer("/source/endpoint"))
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    // The patient the message is about: the active one when a merge sent two.
    c.patient = of("Patient")
        .find(|p| p.get("active") != Some(&Value::Bool(false)))
        .or_else(|| of("Patient").next())
        .map(|p| r.patient(p));
    c.visit = of("Encounter").next().map(|e| r.visit(e));
    // Next of kin: the patient's contacts (NK1[Patient]); else the RelatedPersons.
    c.next_of_kin = of("Patient")
        .find(|p| p.get("active") != Some(&Value::Bool(false)))
        .map(|p| array(p, "contact").map(|k| r.contact(k)).collect())
        .unwrap_or_default();
    if c.next_of_kin.is_empty() {
        c.next_of_kin = of("RelatedPerson").map(|k| r.contact(k)).collect();
    }
    // Orders: each ServiceRequest, and each DiagnosticReport joined to the request it is based
    // on (or an order of its own); their results hang under them.
    let mut order_of: HashMap<*const Value, usize> = HashMap::new();
    for sr in of("ServiceRequest") {
        order_of.insert(sr as *const Value, c.orders.len());
        c.orders.push(r.request(sr));
    }
    let mut result_order: HashMap<*const Value, usize> = HashMap::new();
    for dr in of("DiagnosticReport") {
        let based = array(dr, "basedOn")
            .filter_map(|b| r.resolve(b))
            .find_map(|sr| order_of.get(&(sr as *const Value)).copied());
        let index = match based {
            Some(i) => i,
            None => {
                c.orders.push(Order::default());
                c.orders.len() - 1
            }
        };
        r.report(dr, &mut c.orders[index]);
        for o in array(dr, "result").filter_map(|x| r.resolve(x)) {
            result_order.insert(o as *const Value, index);
        }
    }
    for o in of("Observation") {
        let mut obs = r.observation(o);
        obs.order = result_order.get(&(o as *const Value)).copied();
        c.observations.push(obs);
    }
    for i in of("Immunization") {
        c.immunizations.push(r.immunization(i));
    }
    for a in of("AllergyIntolerance") {
        c.allergies.push(r.allergy(a));
    }
    // DG1-6 and DG1-15 live on the visit's `diagnosis` entry that points at the Condition.
    let mut roles: HashMap<*const Value, (Option<String>, Option<String>)> = HashMap::new();
    for e in of("Encounter").take(1) {
        for d in array(e, "diagnosis") {
            let Some(cond) = d.get("condition").and_then(|x| r.resolve(x)) else {
                continue;
            };
            let codings: Vec<&Value> = d
                .get("use")
                .into_iter()
                .flat_map(|u| array(u, "coding"))
                .collect();
            let code_in = |system: &str| {
                codings
                    .iter()
                    .find(|c| str_at(c, "system") == Some(system))
                    .and_then(|c| string(c, "code"))
            };
            let r#type = code_in("http://terminology.hl7.org/CodeSystem/v2-0052").or_else(|| {
                code_in("http://terminology.hl7.org/CodeSystem/diagnosis-role")
                    .filter(|c| c == "AD")
                    .map(|_| "A".to_string())
            });
            let rank = d.get("rank").and_then(Value::as_u64).map(|n| n.to_string());
            roles.insert(cond as *const Value, (r#type, rank));
        }
    }
    for p in of("Procedure") {
        c.procedures.push(r.procedure(p));
    }
    for cov in of("Coverage") {
        c.insurance.push(r.coverage(cov));
    }
    for ch in of("ChargeItem") {
        c.charges.push(r.charge(ch));
    }
    for d in of("Condition") {
        // A problem-list entry is a problem (PRB), any other Condition a diagnosis (DG1).
        let problem = array(d, "category")
            .flat_map(|c| array(c, "coding"))
            .any(|c| str_at(c, "code") == Some("problem-list-item"));
        if problem {
            c.problems.push(r.problem(d));
            continue;
        }
        let mut dx = r.diagnosis(d);
        if let Some((t, rank)) = roles.remove(&(d as *const Value)) {
            dx.r#type = t;
            dx.priority = rank;
        }
        c.diagnoses.push(dx);
    }
    Ok(c)
}

/// A ServiceRequest's quantity and `occurrenceTiming` as TQ1 reads them.
fn timing(sr: &Value) -> Option<Timing> {
    let q = sr.get("quantityQuantity");
    let t = sr.get("occurrenceTiming");
    let repeat = t.and_then(|t| t.get("repeat"));
    let at = |path: &str| {
        repeat
            .and_then(|r| r.pointer(path))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let timing = Timing {
        quantity: q.and_then(|q| number(q.get("value"))),
        quantity_units: q.and_then(|q| {
            let c = Code {
                code: string(q, "code"),
                display: string(q, "unit"),
                system: str_at(q, "system").map(system_name),
                ..Code::default()
            };
            (c != Code::default()).then_some(c)
        }),
        repeat: t.and_then(|t| t.get("code")).and_then(|c| {
            array(c, "coding")
                .find(|c| {
                    str_at(c, "system") == Some("http://terminology.hl7.org/CodeSystem/v2-0335")
                })
                .or_else(|| array(c, "coding").next())
                .and_then(|c| string(c, "code"))
        }),
        times: repeat
            .into_iter()
            .flat_map(|r| array(r, "timeOfDay"))
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect(),
        start: at("/boundsPeriod/start"),
        end: at("/boundsPeriod/end"),
        duration: repeat.and_then(|r| number(r.get("duration"))),
        duration_unit: repeat.and_then(|r| string(r, "durationUnit")),
        occurrences: repeat
            .and_then(|r| r.get("count"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok()),
    };
    (timing != Timing::default()).then_some(timing)
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// An Annotation as a note: its text, time, and an author given as a string (a referenced
/// author needs the Bundle; the text is what v2 carries anyway).
fn note(n: &Value) -> Option<Note> {
    Some(Note {
        text: string(n, "text")?,
        at: string(n, "time"),
        author: string(n, "authorString").map(|text| Person {
            id: None,
            name: Some(Name {
                text: Some(text),
                ..Name::default()
            }),
        }),
    })
}

fn string(v: &Value, key: &str) -> Option<String> {
    str_at(v, key).map(str::to_string)
}

fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

/// The v2 code whose FHIR translation is `value` (the first of `codes` that `map` sends there).
fn reverse<'c>(
    codes: &[&'c str],
    value: &str,
    map: impl Fn(&str) -> Option<&'static str>,
) -> Option<&'c str> {
    codes.iter().copied().find(|c| map(c) == Some(value))
}

const V2_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-";
const SYSTEM_NAMES: [&str; 17] = [
    "LN", "SCT", "I10", "I10C", "I10P", "I9C", "CVX", "MVX", "NDC", "RXNORM", "UCUM", "CPT",
    "HCPCS", "CDCREC", "NUCC", "NPI", "DCM",
];

/// The v2 name of a coding system URI, or the URI.
pub fn system_name(uri: &str) -> String {
    if let Some(table) = uri.strip_prefix(V2_CODE_SYSTEM) {
        return format!("HL7{table}");
    }
    if let Some(name) = uri.strip_prefix("urn:aorta:cs:") {
        return decode(name);
    }
    SYSTEM_NAMES
        .iter()
        .find(|n| vocab::system_uri(n).as_deref() == Some(uri))
        .map_or_else(|| uri.to_string(), |n| n.to_string())
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn coding(c: &Value) -> Code {
    Code {
        code: string(c, "code"),
        display: string(c, "display"),
        system: str_at(c, "system").map(system_name),
        version: string(c, "version"),
        ..Code::default()
    }
}

fn concept(v: Option<&Value>) -> Option<Code> {
    let v = v?;
    let mut codings = array(v, "coding").map(coding);
    let mut code = codings.next().unwrap_or_default();
    code.alternates = codings.collect();
    code.text = string(v, "text");
    (!code.is_empty()).then_some(code)
}

/// A concept whose first coding in `system` is a FHIR code standing for a v2 table code.
fn table_code(
    v: Option<&Value>,
    back: impl Fn(&str) -> Option<String>,
    table: &str,
) -> Option<Code> {
    let v = v?;
    let fhir = array(v, "coding").find_map(|c| str_at(c, "code").and_then(&back));
    match fhir {
        Some(code) => Some(Code {
            display: array(v, "coding").find_map(|c| string(c, "display")),
            text: string(v, "text"),
            ..Code::table(table, code)
        }),
        None => concept(Some(v)),
    }
}

fn identifier(v: &Value) -> Identifier {
    let mut id = Identifier {
        value: string(v, "value"),
        r#type: v
            .get("type")
            .and_then(|t| array(t, "coding").find_map(|c| string(c, "code"))),
        start: v
            .pointer("/period/start")
            .and_then(Value::as_str)
            .map(str::to_string),
        end: v
            .pointer("/period/end")
            .and_then(Value::as_str)
            .map(str::to_string),
        ..Identifier::default()
    };
    match str_at(v, "system") {
        Some(s) if s.starts_with("urn:oid:") => {
            id.authority_id = Some(s["urn:oid:".len()..].to_string());
            id.authority_id_type = Some("ISO".into());
        }
        Some(s) if s.starts_with("urn:aorta:id:") => {
            id.authority = Some(decode(&s["urn:aorta:id:".len()..]));
        }
        Some("http://hl7.org/fhir/sid/us-ssn") => {
            id.r#type.get_or_insert_with(|| "SS".into());
        }
        Some(s) => {
            id.authority_id = Some(s.to_string());
            id.authority_id_type = Some("URI".into());
        }
        None => {}
    }
    if id.authority.is_none() {
        id.authority = v
            .pointer("/assigner/display")
            .and_then(Value::as_str)
            .map(str::to_string);
    }
    id
}

fn name(v: &Value) -> Name {
    Name {
        family: string(v, "family"),
        given: array(v, "given")
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        prefix: array(v, "prefix").find_map(|p| p.as_str().map(str::to_string)),
        suffix: array(v, "suffix")
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect(),
        r#use: str_at(v, "use")
            .and_then(|u| {
                reverse(
                    &["L", "D", "M", "N", "MSK", "BAD", "TEMP"],
                    u,
                    vocab::name_use,
                )
            })
            .map(str::to_string),
        text: string(v, "text"),
        start: period(v, "start"),
        end: period(v, "end"),
    }
}

fn period(v: &Value, which: &str) -> Option<String> {
    v.get("period")
        .and_then(|p| p.get(which))
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn address(v: &Value) -> Address {
    Address {
        lines: array(v, "line")
            .filter_map(|l| l.as_str().map(str::to_string))
            .collect(),
        city: string(v, "city"),
        state: string(v, "state"),
        postal_code: string(v, "postalCode"),
        country: string(v, "country"),
        district: string(v, "district"),
        r#type: str_at(v, "use")
            .and_then(|u| reverse(&["H", "B", "C", "BA", "BI"], u, vocab::address_use))
            .map(str::to_string),
        start: period(v, "start"),
        end: period(v, "end"),
    }
}

fn telecom(v: &Value) -> Telecom {
    let system = str_at(v, "system");
    let use_ = str_at(v, "use");
    Telecom {
        value: string(v, "value"),
        r#use: match (system, use_) {
            (Some("email" | "url"), _) => Some("NET".into()),
            (_, Some("mobile")) => Some("PRS".into()),
            (_, Some(u)) => reverse(&["PRN", "WPN"], u, vocab::telecom_use).map(str::to_string),
            _ => None,
        },
        equipment: match (system, use_) {
            (Some("phone"), Some("mobile")) => Some("CP".into()),
            (Some("email"), _) => Some("Internet".into()),
            (Some(s), _) => {
                reverse(&["PH", "FX", "BP"], s, vocab::telecom_system).map(str::to_string)
            }
            _ => None,
        },
        start: period(v, "start"),
        end: period(v, "end"),
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// References resolved inside the document.
struct Reader<'a> {
    by_ref: HashMap<String, &'a Value>,
}

impl<'a> Reader<'a> {
    fn new(resources: &[(Option<&'a str>, &'a Value)]) -> Reader<'a> {
        let mut by_ref = HashMap::new();
        for (full, r) in resources {
            if let Some(f) = full {
                by_ref.insert(f.to_string(), *r);
            }
            if let (Some(t), Some(id)) = (str_at(r, "resourceType"), str_at(r, "id")) {
                by_ref.insert(format!("{t}/{id}"), *r);
            }
            for c in array(r, "contained") {
                if let Some(id) = str_at(c, "id") {
                    by_ref.insert(format!("#{id}"), c);
                }
            }
        }
        Reader { by_ref }
    }

    /// The resource a Reference points at, when the document holds it.
    fn resolve(&self, reference: &Value) -> Option<&'a Value> {
        let r = str_at(reference, "reference")?;
        self.by_ref.get(r).copied().or_else(|| {
            // An absolute URL ending in Type/id.
            let mut parts = r.rsplit('/');
            let id = parts.next()?;
            let t = parts.next()?;
            self.by_ref.get(&format!("{t}/{id}")).copied()
        })
    }

    /// A person from a Reference to a Practitioner or a PractitionerRole (or its display).
    fn person(&self, reference: &Value) -> Person {
        let target = self.resolve(reference).and_then(|r| {
            if str_at(r, "resourceType") == Some("PractitionerRole") {
                r.get("practitioner").and_then(|p| self.resolve(p))
            } else {
                Some(r)
            }
        });
        match target {
            Some(p) => Person {
                id: array(p, "identifier").next().map(identifier),
                name: array(p, "name").next().map(name),
            },
            None => Person {
                id: None,
                name: str_at(reference, "display").map(|d| Name {
                    text: Some(d.to_string()),
                    ..Name::default()
                }),
            },
        }
    }

    fn display_of(&self, reference: &Value) -> Option<String> {
        self.resolve(reference)
            .and_then(|o| string(o, "name"))
            .or_else(|| string(reference, "display"))
    }

    fn patient(&self, p: &Value) -> Patient {
        let mut out = Patient {
            identifiers: array(p, "identifier").map(identifier).collect(),
            names: array(p, "name").map(name).collect(),
            birth_date: string(p, "birthDate"),
            sex: str_at(p, "gender")
                .and_then(|g| reverse(&["M", "F", "O", "U"], g, vocab::gender))
                .map(str::to_string),
            addresses: array(p, "address").map(address).collect(),
            telecoms: array(p, "telecom").map(telecom).collect(),
            marital_status: table_code(
                p.get("maritalStatus"),
                |c| {
                    [
                        "A", "D", "M", "S", "W", "C", "P", "N", "I", "B", "U", "O", "T",
                    ]
                    .into_iter()
                    .find(|v2| vocab::marital_status(v2).map(|(_, f)| f) == Some(c))
                    .map(str::to_string)
                },
                "0002",
            ),
            language: array(p, "communication")
                .next()
                .and_then(|c| concept(c.get("language"))),
            deceased: p.get("deceasedBoolean").and_then(Value::as_bool),
            deceased_at: string(p, "deceasedDateTime"),
            multiple_birth: p.get("multipleBirthBoolean").and_then(Value::as_bool),
            birth_order: p.get("multipleBirthInteger").and_then(Value::as_i64),
            primary_care: array(p, "generalPractitioner")
                .map(|g| self.person(g))
                .collect(),
            ..Patient::default()
        };
        if out.deceased_at.is_some() {
            out.deceased = Some(true);
        }
        if out.birth_order.is_some() {
            out.multiple_birth = Some(true);
        }
        for ext in array(p, "extension") {
            let url = str_at(ext, "url").unwrap_or_default();
            let omb = |e: &Value| {
                array(e, "extension")
                    .filter(|x| matches!(str_at(x, "url"), Some("ombCategory" | "detailed")))
                    .filter_map(|x| x.get("valueCoding").map(coding))
                    .collect::<Vec<_>>()
            };
            match url {
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race" => {
                    out.race = omb(ext)
                }
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity" => {
                    out.ethnicity = omb(ext)
                }
                "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName" => {
                    out.mothers_maiden_name = string(ext, "valueString")
                }
                "http://hl7.org/fhir/StructureDefinition/patient-religion" => {
                    out.religion = concept(ext.get("valueCodeableConcept"))
                }
                "http://hl7.org/fhir/StructureDefinition/patient-birthPlace" => {
                    out.birth_place = ext
                        .get("valueAddress")
                        .and_then(|a| string(a, "text").or_else(|| string(a, "city")))
                }
                _ => {}
            }
        }
        out
    }

    /// A Patient.contact or a RelatedPerson as NK1 reads it: the first relationship is NK1-3
    /// (back to table 0063 where the guide's map has it), one in v2-0131 is the role NK1-7.
    fn contact(&self, k: &Value) -> Contact {
        const ROLE: &str = "http://terminology.hl7.org/CodeSystem/v2-0131";
        let mut relationship = None;
        let mut role = None;
        for r in array(k, "relationship") {
            let back = |code: &str| {
                vocab::RELATIONSHIP_CODES
                    .iter()
                    .find(|v2| vocab::relationship(v2).map(|(_, c, _)| c) == Some(code))
                    .map(|v2| v2.to_string())
            };
            let in_role = array(r, "coding").any(|c| str_at(c, "system") == Some(ROLE));
            if relationship.is_none() && !(in_role && role.is_none()) {
                relationship = table_code(Some(r), back, "0063");
            } else if role.is_none() {
                role = concept(Some(r));
            }
        }
        // Patient.contact has one name and address; a RelatedPerson lists them.
        let names = match k.get("name") {
            Some(Value::Array(a)) => a.iter().map(name).collect(),
            Some(n) => vec![name(n)],
            None => Vec::new(),
        };
        let addresses = match k.get("address") {
            Some(Value::Array(a)) => a.iter().map(address).collect(),
            Some(a) => vec![address(a)],
            None => Vec::new(),
        };
        Contact {
            names,
            relationship,
            role,
            addresses,
            telecoms: array(k, "telecom").map(telecom).collect(),
            start: period(k, "start"),
            end: period(k, "end"),
            organization: k.get("organization").and_then(|o| self.display_of(o)),
            organization_id: k
                .get("organization")
                .and_then(|o| self.resolve(o))
                .and_then(|o| array(o, "identifier").next())
                .map(identifier),
            sex: str_at(k, "gender")
                .and_then(|g| reverse(&["M", "F", "O", "U"], g, vocab::gender))
                .map(str::to_string),
            birth_date: string(k, "birthDate"),
            identifiers: array(k, "identifier").map(identifier).collect(),
            language: array(k, "communication")
                .next()
                .and_then(|c| concept(c.get("language"))),
        }
    }

    /// A Procedure as PR1 reads it (the inverse of PR1[Procedure]).
    fn procedure(&self, p: &Value) -> Procedure {
        let mut out = Procedure {
            code: concept(p.get("code")),
            description: p.get("code").and_then(|c| string(c, "text")),
            performed_at: string(p, "performedDateTime")
                .or_else(|| p.get("performedPeriod").and_then(|x| string(x, "start"))),
            functional_type: concept(p.get("category")),
            identifier: array(p, "identifier").next().map(identifier),
            reason: array(p, "reasonCode").next().and_then(|c| concept(Some(c))),
            location: p.get("location").map(|l| self.location(l)),
            ..Procedure::default()
        };
        for performer in array(p, "performer") {
            let Some(actor) = performer.get("actor") else {
                continue;
            };
            let person = self.person(actor);
            let function = performer
                .get("function")
                .and_then(|f| string(f, "text"))
                .unwrap_or_default();
            match function.as_str() {
                "anesthesiologist" => out.anesthesiologists.push(person),
                "surgeon" => out.surgeons.push(person),
                _ => out.performers.push(person),
            }
        }
        out
    }

    /// A Coverage as IN1 reads it: plan and group classes, payor, period, type, policy number,
    /// relationship, and the insured when a RelatedPerson is the subscriber.
    /// A ChargeItem as the FT1 it was made of (the map in `build`'s `charges`, read back).
    fn charge(&self, ch: &Value) -> Charge {
        let organization = |key: &str| {
            let reference = ch.get(key)?;
            let org = self.resolve(reference);
            Some(Organization {
                name: self.display_of(reference),
                identifier: org.and_then(|o| array(o, "identifier").next().map(identifier)),
            })
        };
        let money = ch.get("priceOverride").and_then(|m| {
            Some(Money {
                value: number(m.get("value"))?,
                currency: string(m, "currency"),
            })
        });
        Charge {
            id: array(ch, "identifier")
                .next()
                .and_then(|i| string(i, "value")),
            start: string(ch, "occurrenceDateTime")
                .or_else(|| ch.get("occurrencePeriod").and_then(|p| string(p, "start"))),
            end: ch.get("occurrencePeriod").and_then(|p| string(p, "end")),
            posted: string(ch, "enteredDate"),
            r#type: (str_at(ch, "status") == Some("billable")).then(|| Code::table("0017", "CG")),
            code: concept(ch.get("code")),
            quantity: number(ch.pointer("/quantity/value")),
            amount: money,
            department: organization("costCenter").map(|o| Code {
                code: o.identifier.and_then(|i| i.value),
                display: o.name,
                ..Code::default()
            }),
            diagnoses: array(ch, "reason")
                .filter_map(|r| concept(Some(r)))
                .collect(),
            performers: array(ch, "performer")
                .filter_map(|p| p.get("actor"))
                .map(|a| self.person(a))
                .filter(|p| p.id.is_some() || p.name.is_some())
                .collect(),
            entered_by: ch.get("enterer").map(|e| self.person(e)),
            drug: concept(ch.get("productCodeableConcept")),
            performing_facility: organization("performingOrganization"),
            ordering_facility: organization("requestingOrganization"),
            ..Charge::default()
        }
    }

    fn coverage(&self, c: &Value) -> Insurance {
        let class = |kind: &str| {
            array(c, "class").find(|k| {
                k.get("type")
                    .is_some_and(|t| array(t, "coding").any(|x| str_at(x, "code") == Some(kind)))
            })
        };
        let payor = array(c, "payor").next();
        let payor_org = payor.and_then(|p| self.resolve(p));
        let holder = c.get("policyHolder").and_then(|h| self.resolve(h));
        let subscriber = c
            .get("subscriber")
            .and_then(|s| self.resolve(s))
            .filter(|s| str_at(s, "resourceType") == Some("RelatedPerson"));
        let mut out = Insurance {
            plan: class("plan").map(|k| Code {
                code: string(k, "value"),
                display: string(k, "name"),
                ..Code::default()
            }),
            company_ids: payor_org
                .map(|o| array(o, "identifier").map(identifier).collect())
                .unwrap_or_default(),
            company_name: payor.and_then(|p| self.display_of(p)),
            group_number: class("group").and_then(|k| string(k, "value")),
            group_name: class("group").and_then(|k| string(k, "name")),
            start: period(c, "start"),
            end: period(c, "end"),
            plan_type: concept(c.get("type")),
            policy_number: array(c, "identifier")
                .find(|i| {
                    i.get("type").is_some_and(|t| {
                        array(t, "coding").any(|x| str_at(x, "code") == Some("MB"))
                    })
                })
                .and_then(|i| string(i, "value")),
            relationship: c.get("relationship").and_then(|r| {
                table_code(
                    Some(r),
                    |code| {
                        Some(
                            match code {
                                "self" => "SEL",
                                "spouse" => "SPO",
                                "child" => "CHD",
                                "parent" => "PAR",
                                _ => return None,
                            }
                            .to_string(),
                        )
                    },
                    "0063",
                )
            }),
            insured_ids: string(c, "subscriberId")
                .map(|v| Identifier {
                    value: Some(v),
                    ..Identifier::default()
                })
                .into_iter()
                .collect(),
            policy_holder: holder
                .filter(|h| str_at(h, "resourceType") == Some("Organization"))
                .and_then(|h| string(h, "name")),
            policy_holder_ids: holder
                .filter(|h| str_at(h, "resourceType") == Some("Organization"))
                .map(|h| array(h, "identifier").map(identifier).collect())
                .unwrap_or_default(),
            ..Insurance::default()
        };
        if let Some(s) = subscriber {
            out.insured_name = array(s, "name").next().map(name);
            out.insured_birth_date = string(s, "birthDate");
            out.insured_sex = str_at(s, "gender")
                .and_then(|g| reverse(&["M", "F", "O", "U"], g, vocab::gender))
                .map(str::to_string);
            out.insured_address = array(s, "address").next().map(address);
            if out.insured_ids.is_empty() {
                out.insured_ids = array(s, "identifier").map(identifier).collect();
            }
        }
        out
    }

    fn visit(&self, e: &Value) -> Visit {
        let mut v = Visit {
            class: e.get("class").map(|c| {
                let code = str_at(c, "code").unwrap_or_default();
                let v2 = ["E", "I", "O", "P"]
                    .into_iter()
                    .find(|x| vocab::encounter_class(x).1 == code)
                    .unwrap_or(code);
                Code {
                    display: string(c, "display"),
                    ..Code::table("0004", v2)
                }
            }),
            visit_number: array(e, "identifier").next().map(identifier),
            admitted_at: e
                .pointer("/period/start")
                .and_then(Value::as_str)
                .map(str::to_string),
            discharged_at: e
                .pointer("/period/end")
                .and_then(Value::as_str)
                .map(str::to_string),
            hospital_service: concept(e.get("serviceType")),
            admit_source: e
                .get("hospitalization")
                .and_then(|h| concept(h.get("admitSource"))),
            discharge_disposition: e
                .get("hospitalization")
                .and_then(|h| concept(h.get("dischargeDisposition"))),
            discharged_to: e
                .pointer("/hospitalization/destination")
                .and_then(|d| self.resolve(d))
                .and_then(|l| {
                    concept(array(l, "type").next()).or_else(|| {
                        string(l, "name").map(|n| Code {
                            code: Some(n),
                            ..Code::default()
                        })
                    })
                }),
            admit_reason: array(e, "reasonCode").next().and_then(|r| concept(Some(r))),
            location: array(e, "location")
                .next()
                .and_then(|l| l.get("location"))
                .map(|l| self.location(l)),
            ..Visit::default()
        };
        for p in array(e, "participant") {
            let kind = array(p, "type")
                .flat_map(|t| array(t, "coding"))
                .find_map(|c| str_at(c, "code"))
                .unwrap_or_default();
            let Some(who) = p.get("individual") else {
                continue;
            };
            let person = self.person(who);
            match kind {
                "ATND" => v.attending.push(person),
                "REF" => v.referring.push(person),
                "CON" => v.consulting.push(person),
                "ADM" => v.admitting.push(person),
                _ => {}
            }
        }
        v
    }

    /// A PL from a Location and the ones it is part of (bed → room → point of care → ...).
    fn location(&self, reference: &Value) -> Location {
        let mut out = Location::default();
        let mut next = self.resolve(reference);
        let mut seen = 0;
        if next.is_none() {
            out.point_of_care = string(reference, "display");
        }
        while let Some(l) = next {
            seen += 1;
            let kind = l
                .get("physicalType")
                .and_then(|t| array(t, "coding").find_map(|c| str_at(c, "code")));
            let name = string(l, "name");
            match kind {
                Some("bd") => out.bed = name,
                Some("ro") => out.room = name,
                Some("lvl") => out.floor = name,
                Some("bu") => out.building = name,
                Some("si") => out.facility = name,
                _ if out.point_of_care.is_none() => out.point_of_care = name,
                _ => {}
            }
            next = l
                .get("partOf")
                .and_then(|p| self.resolve(p))
                .filter(|_| seen < 8);
        }
        out
    }

    fn request(&self, sr: &Value) -> Order {
        let typed = |t: &str| {
            array(sr, "identifier")
                .find(|i| {
                    i.get("type")
                        .is_some_and(|ty| array(ty, "coding").any(|c| str_at(c, "code") == Some(t)))
                })
                .map(identifier)
        };
        let placer = typed("PLAC").or_else(|| array(sr, "identifier").next().map(identifier));
        Order {
            control: Some("NW".into()),
            placer_id: placer,
            filler_id: typed("FILL"),
            group_id: sr.get("requisition").map(identifier),
            status: str_at(sr, "status").and_then(|s| {
                ["IP", "CM", "CA", "HD", "ER"]
                    .into_iter()
                    .find(|v2| vocab::request_status(Some(v2), None) == s)
                    .map(str::to_string)
            }),
            code: concept(sr.get("code")),
            priority: str_at(sr, "priority")
                .and_then(|p| match p {
                    "urgent" => Some("A"),
                    other => reverse(&["S", "A", "R"], other, vocab::request_priority),
                })
                .map(str::to_string),
            ordered_at: string(sr, "authoredOn"),
            ordering_provider: sr
                .get("requester")
                .map(|r| self.person(r))
                .into_iter()
                .collect(),
            reasons: array(sr, "reasonCode")
                .filter_map(|r| concept(Some(r)))
                .collect(),
            notes: array(sr, "note").filter_map(note).collect(),
            observed_at: string(sr, "occurrenceDateTime").or_else(|| {
                sr.pointer("/occurrencePeriod/start")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            }),
            timing: timing(sr),
            ..Order::default()
        }
    }

    fn report(&self, dr: &Value, order: &mut Order) {
        if order.code.is_none() {
            order.code = concept(dr.get("code"));
        }
        if order.placer_id.is_none() && order.filler_id.is_none() {
            let typed = |t: &str| {
                array(dr, "identifier")
                    .find(|i| {
                        i.get("type").is_some_and(|ty| {
                            array(ty, "coding").any(|c| str_at(c, "code") == Some(t))
                        })
                    })
                    .map(identifier)
            };
            order.placer_id = typed("PLAC");
            order.filler_id = typed("FILL").or_else(|| {
                order
                    .placer_id
                    .is_none()
                    .then(|| array(dr, "identifier").next().map(identifier))
                    .flatten()
            });
        }
        order.result_status = str_at(dr, "status").and_then(|s| {
            ["F", "P", "C", "R", "X", "I"]
                .into_iter()
                .find(|v2| vocab::report_status(Some(v2)) == s)
                .map(str::to_string)
        });
        order.observed_at = string(dr, "effectiveDateTime")
            .or_else(|| {
                dr.pointer("/effectivePeriod/start")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .or(order.observed_at.take());
        order.observed_end = dr
            .pointer("/effectivePeriod/end")
            .and_then(Value::as_str)
            .map(str::to_string);
        order.reported_at = string(dr, "issued");
        order.service_section = array(dr, "category")
            .flat_map(|c| array(c, "coding"))
            .find_map(|c| string(c, "code"));
        if order.ordering_provider.is_empty() {
            order.ordering_provider = array(dr, "performer").map(|p| self.person(p)).collect();
        }
        order.notes.extend(string(dr, "conclusion").map(Note::from));
    }

    fn observation(&self, o: &Value) -> Observation {
        let mut obs = Observation {
            code: concept(o.get("code")),
            interpretation: array(o, "interpretation")
                .filter_map(|i| array(i, "coding").find_map(|c| string(c, "code")))
                .map(|c| Code::table("0078", c))
                .collect(),
            status: str_at(o, "status").and_then(|s| {
                ["F", "P", "C", "A", "X", "W", "I"]
                    .into_iter()
                    .find(|v2| vocab::observation_status(Some(v2)) == s)
                    .map(str::to_string)
            }),
            observed_at: string(o, "effectiveDateTime")
                .or_else(|| string(o, "effectiveInstant"))
                .or_else(|| {
                    o.pointer("/effectivePeriod/start")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                }),
            method: concept(o.get("method")),
            body_site: concept(o.get("bodySite")),
            notes: array(o, "note").filter_map(note).collect(),
            reference_range: array(o, "referenceRange").next().and_then(|r| {
                string(r, "text").or_else(|| {
                    let low = number(r.pointer("/low/value"));
                    let high = number(r.pointer("/high/value"));
                    match (low, high) {
                        (None, None) => None,
                        (l, h) => Some(format!(
                            "{}-{}",
                            l.map(fmt_number).unwrap_or_default(),
                            h.map(fmt_number).unwrap_or_default()
                        )),
                    }
                })
            }),
            ..Observation::default()
        };
        for p in array(o, "performer") {
            let target = self.resolve(p);
            let role = target
                .filter(|r| str_at(r, "resourceType") == Some("PractitionerRole"))
                .and_then(|r| {
                    array(r, "code")
                        .flat_map(|c| array(c, "coding"))
                        .find_map(|c| str_at(c, "code"))
                });
            match target.and_then(|r| str_at(r, "resourceType")) {
                Some("Organization") => obs.performing_organization = self.display_of(p),
                _ if role == Some("MDIR") => obs.directors.push(self.person(p)),
                _ => obs.performers.push(self.person(p)),
            }
        }
        obs.identifier = array(o, "identifier").next().map(identifier);
        if let Some((value_type, value, units)) = observation_value(o) {
            obs.value_type = Some(value_type.into());
            obs.value = Some(value);
            obs.units = units;
        } else {
            // No value of its own: components coded like the Observation are the repeated
            // OBX-5 values of one OBX (the guide's OBX[Observation-Component] map).
            let same: Vec<&Value> = array(o, "component")
                .filter(|c| obs.code.is_some() && concept(c.get("code")) == obs.code)
                .collect();
            let mut values = same.iter().filter_map(|c| observation_value(c));
            if let Some((value_type, value, units)) = values.next() {
                obs.value_type = Some(value_type.into());
                obs.value = Some(value);
                obs.units = units;
                obs.more_values = values.map(|(_, v, _)| v).collect();
                // Text values are one text with a line per repetition in the record.
                if let Some(Value_::Text(first)) = &mut obs.value {
                    for more in std::mem::take(&mut obs.more_values) {
                        if let Value_::Text(t) = more {
                            first.push('\n');
                            first.push_str(&t);
                        } else {
                            obs.more_values.push(more);
                        }
                    }
                }
                if obs.reference_range.is_none() {
                    obs.reference_range = same
                        .first()
                        .and_then(|c| array(c, "referenceRange").next())
                        .and_then(|r| string(r, "text"));
                }
            }
        }
        obs
    }

    fn allergy(&self, a: &Value) -> Allergy {
        // AllergyIntolerance.category → AL1-2 (table 0127), criticality → AL1-4 (table 0128).
        let category = array(a, "category").find_map(|c| c.as_str());
        let kind = match category {
            Some("medication") => Some("DA"),
            Some("food") => Some("FA"),
            Some("environment") => Some("EA"),
            Some("biologic") => Some("AA"),
            _ => None,
        };
        let severity = match str_at(a, "criticality") {
            Some("high") => Some("SV"),
            Some("low") => Some("MI"),
            Some("unable-to-assess") => Some("U"),
            _ => None,
        };
        Allergy {
            r#type: kind.map(|k| Code::table("0127", k)),
            allergen: concept(a.get("code")),
            severity: severity.map(|s| Code::table("0128", s)),
            reactions: array(a, "reaction")
                .flat_map(|r| array(r, "manifestation"))
                .filter_map(|m| {
                    string(m, "text").or_else(|| {
                        array(m, "coding")
                            .find_map(|c| string(c, "display").or_else(|| string(c, "code")))
                    })
                })
                .collect(),
            identified_at: string(a, "onsetDateTime").or_else(|| string(a, "recordedDate")),
            notes: array(a, "note").filter_map(note).collect(),
            identifier: array(a, "identifier").next().map(identifier),
            ..Allergy::default()
        }
    }

    fn problem(&self, d: &Value) -> Problem {
        let status = |key: &str| {
            d.get(key)
                .and_then(|s| array(s, "coding").find_map(|c| string(c, "code")))
        };
        let verification = status("verificationStatus");
        Problem {
            action: (verification.as_deref() == Some("entered-in-error")).then(|| "DE".into()),
            code: concept(d.get("code")),
            identifier: array(d, "identifier").next().map(identifier),
            established_at: string(d, "recordedDate"),
            resolved_at: string(d, "abatementDateTime"),
            life_cycle: status("clinicalStatus").map(|c| Code {
                code: Some(c),
                ..Code::default()
            }),
            confirmation: verification
                .filter(|v| v != "entered-in-error")
                .map(|c| Code {
                    code: Some(c),
                    ..Code::default()
                }),
            onset_at: string(d, "onsetDateTime"),
            onset_text: string(d, "onsetString"),
            notes: array(d, "note").filter_map(note).collect(),
            ..Problem::default()
        }
    }

    fn diagnosis(&self, d: &Value) -> Diagnosis {
        Diagnosis {
            code: concept(d.get("code")),
            diagnosed_at: string(d, "onsetDateTime").or_else(|| string(d, "recordedDate")),
            clinicians: d
                .get("asserter")
                .map(|p| self.person(p))
                .into_iter()
                .collect(),
            identifier: array(d, "identifier").next().map(identifier),
            ..Diagnosis::default()
        }
    }

    fn immunization(&self, i: &Value) -> Immunization {
        let status = str_at(i, "status").unwrap_or_default();
        Immunization {
            identifiers: array(i, "identifier").map(identifier).collect(),
            administered_at: string(i, "occurrenceDateTime"),
            vaccine: concept(i.get("vaccineCode")),
            amount: number(i.pointer("/doseQuantity/value")),
            units: i.get("doseQuantity").and_then(|q| {
                Some(Code {
                    code: Some(string(q, "code").or_else(|| string(q, "unit"))?),
                    display: string(q, "unit"),
                    system: str_at(q, "system").map(system_name),
                    ..Code::default()
                })
            }),
            lot_numbers: string(i, "lotNumber").into_iter().collect(),
            expires: string(i, "expirationDate"),
            manufacturer: i.get("manufacturer").and_then(|m| {
                let org = self.resolve(m);
                let id = org
                    .and_then(|o| array(o, "identifier").next())
                    .and_then(|x| string(x, "value"));
                let display = self.display_of(m);
                (id.is_some() || display.is_some()).then(|| Code {
                    code: id,
                    display,
                    system: Some("MVX".into()),
                    ..Code::default()
                })
            }),
            refusal_reasons: array(i, "statusReason")
                .chain(i.get("statusReason"))
                .filter_map(|r| concept(Some(r)))
                .collect(),
            completion_status: match status {
                "completed" => Some("CP".into()),
                "not-done" => Some("RE".into()),
                _ => None,
            },
            action: (status == "entered-in-error").then(|| "D".into()),
            route: concept(i.get("route")),
            site: concept(i.get("site")),
            performers: array(i, "performer")
                .filter_map(|p| p.get("actor"))
                .map(|a| self.person(a))
                .collect(),
            ..Immunization::default()
        }
    }
}

/// The units of a FHIR Quantity as a v2 code (OBX-6).
fn quantity_units(q: &Value) -> Option<Code> {
    let code = string(q, "code").or_else(|| string(q, "unit"))?;
    Some(Code {
        code: Some(code),
        display: string(q, "unit"),
        system: str_at(q, "system").map(system_name),
        ..Code::default()
    })
}

/// An Observation's (or component's) `value[x]` as OBX-2, OBX-5 and OBX-6.
fn observation_value(o: &Value) -> Option<(&'static str, Value_, Option<Code>)> {
    if let Some(q) = o.get("valueQuantity") {
        let n = number(q.get("value"));
        let units = quantity_units(q);
        return match str_at(q, "comparator") {
            Some(cmp) => Some((
                "SN",
                Value_::Structured(StructuredNumeric {
                    comparator: Some(cmp.to_string()),
                    number: n,
                    ..StructuredNumeric::default()
                }),
                units,
            )),
            None => n.map(|n| ("NM", Value_::Number(n), units)),
        };
    }
    if let Some(c) = o.get("valueCodeableConcept") {
        return concept(Some(c)).map(|c| ("CWE", Value_::Coded(c), None));
    }
    if let Some(t) = str_at(o, "valueString") {
        let kind = if t.len() > 200 { "TX" } else { "ST" };
        return Some((kind, Value_::Text(t.to_string()), None));
    }
    if let Some(n) = o.get("valueInteger").and_then(Value::as_f64) {
        return Some(("NM", Value_::Number(n), None));
    }
    if let Some(b) = o.get("valueBoolean").and_then(Value::as_bool) {
        return Some(("ST", Value_::Text(b.to_string()), None));
    }
    if let Some(d) = str_at(o, "valueDateTime") {
        return Some(("DTM", Value_::Text(d.to_string()), None));
    }
    if let Some(r) = o.get("valueRange") {
        let units = r
            .get("low")
            .or_else(|| r.get("high"))
            .and_then(quantity_units);
        let sn = StructuredNumeric {
            number: number(r.pointer("/low/value")),
            separator: Some("-".into()),
            number2: number(r.pointer("/high/value")),
            ..StructuredNumeric::default()
        };
        return Some(("SN", Value_::Structured(sn), units));
    }
    if let Some(r) = o.get("valueRatio") {
        let sn = StructuredNumeric {
            number: number(r.pointer("/numerator/value")),
            separator: Some(":".into()),
            number2: number(r.pointer("/denominator/value")),
            ..StructuredNumeric::default()
        };
        return Some(("SN", Value_::Structured(sn), None));
    }
    None
}

/// A number as v2 writes it: no trailing `.0`.
pub fn fmt_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

use crate::record::clinical::Value as Value_;
