//! The resource builders (see the module documentation for ids and requests).

use std::cell::RefCell;
use std::collections::HashMap;

use super::fj::fj;
use super::tree::{Map, Value};
use base64::Engine as _;
use uuid::Uuid;

use super::{prune, vocab, FhirOptions};
use crate::record::clinical::{
    Address, Booked, Code, Contact, Identifier, Location, Name, Note, Observation, Order, Person,
    ReferralProvider, Role, Specimen, Telecom, Timing, Value as ObxValue,
};
use crate::record::Clinical;

/// Namespace of Aorta's resource ids (UUIDv5).
const NAMESPACE: Uuid = Uuid::from_u128(0x5a0e_7f2c_41d3_4b8e_9c65_3f1d_2a7b_8e90);

/// The UUIDv5 of `parts` joined with `|` in [`NAMESPACE`]: `Uuid::new_v5`'s value.
///
/// A Bundle derives about fifty ids; `uuid` hashes with the portable `sha1_smol`, while the
/// `sha1` crate (already built for lapin's TLS) uses the CPU's SHA instructions where it has
/// them, and the parts go into the hash without being joined into a new string first.
fn v5(parts: &[&str]) -> Uuid {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(NAMESPACE.as_bytes());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"|");
        }
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
const DIAGNOSIS_ROLE: &str = "http://terminology.hl7.org/CodeSystem/diagnosis-role";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const PHYSICAL_TYPE: &str = "http://terminology.hl7.org/CodeSystem/location-physical-type";
const ROLE: &str = "http://terminology.hl7.org/CodeSystem/practitioner-role";
const V2_0912: &str = "http://terminology.hl7.org/CodeSystem/v2-0912";
const V2_0136: &str = "http://terminology.hl7.org/CodeSystem/v2-0136";
const LOINC: &str = "http://loinc.org";
/// Aorta's codes for v2 fields that no standard terminology names: the code is the field
/// (`ACC-5`), the display its name in the v2 standard.
const V2_FIELD: &str = "urn:aorta:cs:v2-field";

/// The resources of a record, each with its deterministic `id`, in dependency order.
pub fn to_resources(c: &Clinical, options: &FhirOptions) -> Vec<serde_json::Value> {
    let mut b = Builder::new(c, options);
    b.run();
    b.entries
        .into_iter()
        .map(|e| {
            let mut r = e.resource;
            if let Value::Object(o) = &mut r {
                o.insert_at(1, "id", Value::String(e.id.to_string()));
            }
            r.into_json()
        })
        .collect()
}

/// A `transaction` (or `batch`) Bundle of the record's resources with idempotent requests.
pub fn to_bundle(c: &Clinical, options: &FhirOptions) -> serde_json::Value {
    bundle(c, options).into_json()
}

/// The Bundle of [`to_bundle`] as JSON bytes, written straight from the builders' tree (what a
/// route with `format = "fhir"` sends; members in the order the builders write them).
pub fn to_bundle_json(c: &Clinical, options: &FhirOptions) -> Vec<u8> {
    // Bundles of rich messages run to tens of KB (35 KB on average over the Microsoft
    // samples): starting small cost a copy of the bytes written so far at each doubling.
    let mut out = Vec::with_capacity(64 * 1024);
    bundle(c, options).write_compact(&mut out);
    out
}

/// Writes the Bundle of [`to_bundle`] as JSON (indented with `pretty`), members in the order
/// the builders write them (`resourceType` and `id` first).
pub fn write_bundle<W: std::io::Write>(
    c: &Clinical,
    options: &FhirOptions,
    out: W,
    pretty: bool,
) -> serde_json::Result<()> {
    let b = bundle(c, options);
    if pretty {
        serde_json::to_writer_pretty(out, &b)
    } else {
        serde_json::to_writer(out, &b)
    }
}

fn bundle(c: &Clinical, options: &FhirOptions) -> Value {
    let mut b = Builder::new(c, options);
    b.run();
    let bundle_id = b.uuid(&["Bundle", &b.message_key()]);
    let entries: Vec<Value> = b
        .entries
        .into_iter()
        .map(|e| {
            let full_url = urn(e.id);
            let mut resource = e.resource;
            let request = match e.request {
                Request::Update => {
                    if let Value::Object(o) = &mut resource {
                        // After resourceType, where a reader looks for it.
                        o.insert_at(1, "id", Value::String(e.id.to_string()));
                    }
                    let mut buf = Uuid::encode_buffer();
                    let id = e.id.hyphenated().encode_lower(&mut buf);
                    fj!({"method": "PUT", "url": cat(&[e.kind, "/", id])})
                }
                Request::ConditionalUpdate(query) => {
                    fj!({"method": "PUT", "url": cat(&[e.kind, "?", &query])})
                }
                Request::ConditionalCreate(query) => {
                    fj!({"method": "POST", "url": e.kind, "ifNoneExist": query})
                }
            };
            let mut entry = Map::new();
            entry.push_new("fullUrl", Value::String(full_url));
            entry.push_new("resource", resource);
            entry.push_new("request", request);
            Value::Object(entry)
        })
        .collect();
    let mut bundle = Map::new();
    bundle.push_new("resourceType", fj!("Bundle"));
    bundle.push_new("id", Value::String(bundle_id.to_string()));
    let kind = if options.batch {
        "batch"
    } else {
        "transaction"
    };
    bundle.push_new("type", fj!(kind));
    bundle.push_new("entry", Value::Array(entries));
    Value::Object(bundle)
}

enum Request {
    /// `PUT Type/id`.
    Update,
    /// `PUT Type?query`.
    ConditionalUpdate(String),
    /// `POST Type` with `ifNoneExist: query`.
    ConditionalCreate(String),
}

struct Entry {
    kind: &'static str,
    id: Uuid,
    resource: Value,
    request: Request,
}

struct Builder<'a> {
    c: &'a Clinical,
    o: &'a FhirOptions,
    entries: Vec<Entry>,
    /// Shared resources already emitted (practitioners, organizations, locations), by key.
    shared: HashMap<String, Uuid>,
    patient: Option<Uuid>,
    encounter: Option<Uuid>,
    /// Assigning authorities met while building identifiers (HD → Organization), emitted at
    /// the end: building an identifier only reads the builder.
    authorities: RefCell<Vec<(String, Uuid, Value)>>,
    /// The ServiceRequest of each order (by index), once built.
    service_requests: Vec<Option<Uuid>>,
    /// The Specimens of each order (by index), for its Observations.
    order_specimens: HashMap<usize, Vec<Uuid>>,
    /// The Coverages built, for the referrals they pay for.
    coverages: Vec<Uuid>,
}

/// The parts joined: `format!` for plain concatenation without its formatting machinery,
/// which cost ~1,000 instructions per call for the thousands of keys and URLs a Bundle needs.
fn cat(parts: &[&str]) -> String {
    let mut s = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        s.push_str(p);
    }
    s
}

/// `urn:uuid:` and the id: a Bundle entry's full URL. Written without `format!`, which is
/// measurably slower for the thousands of references a Bundle carries.
fn urn(id: Uuid) -> String {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let mut s = String::with_capacity(9 + buf.len());
    s.push_str("urn:uuid:");
    s.push_str(id.hyphenated().encode_lower(&mut buf));
    s
}

/// A reference to an entry of the Bundle.
fn reference(id: Uuid) -> Value {
    fj!({"reference": urn(id)})
}

/// An HD universal id (HD-2, type HD-3) as an Identifier: an OID as a URI, else as it is.
fn universal_id(uid: &str, kind: &str) -> Value {
    match kind.to_ascii_uppercase().as_str() {
        "ISO" => fj!({"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{uid}")}),
        _ => fj!({"value": uid}),
    }
}

fn opt_ref(id: Option<Uuid>) -> Value {
    id.map_or(Value::Null, reference)
}

impl<'a> Builder<'a> {
    fn new(c: &'a Clinical, o: &'a FhirOptions) -> Builder<'a> {
        Builder {
            c,
            o,
            entries: Vec::new(),
            shared: HashMap::new(),
            patient: None,
            encounter: None,
            authorities: RefCell::new(Vec::new()),
            service_requests: Vec::new(),
            order_specimens: HashMap::new(),
            coverages: Vec::new(),
        }
    }

    fn uuid(&self, parts: &[&str]) -> Uuid {
        v5(parts)
    }

    /// What identifies the message: sender and control id (a re-send has the same).
    fn message_key(&self) -> String {
        let m = &self.c.message;
        cat(&[
            m.sending_application.as_deref().unwrap_or_default(),
            "|",
            m.sending_facility.as_deref().unwrap_or_default(),
            "|",
            m.control_id.as_deref().unwrap_or_default(),
        ])
    }

    fn push(&mut self, kind: &'static str, id: Uuid, mut resource: Value, request: Request) {
        prune(&mut resource);
        if let Value::Object(o) = &mut resource {
            o.insert_first("resourceType", Value::String(kind.into()));
        }
        // The same thing twice in one message (a repeated AL1, two OBR under one placer
        // number): one entry, completed by the later one — bdl-7 forbids two with one fullUrl.
        if let Some(e) = self.entries.iter_mut().find(|e| e.id == id) {
            fill(&mut e.resource, resource);
            return;
        }
        self.entries.push(Entry {
            kind,
            id,
            resource,
            request,
        });
    }

    /// The request for a resource identified by `identifiers`: conditional on the first that
    /// has a system and a value, else a plain update by id.
    fn keyed_request(&self, identifiers: &[Value], create_only: bool) -> (Request, Option<String>) {
        for i in identifiers {
            let (Some(system), Some(value)) = (
                i.get("system").and_then(Value::as_str),
                i.get("value").and_then(Value::as_str),
            ) else {
                continue;
            };
            let query = cat(&["identifier=", &encode(system), "|", &encode(value)]);
            let key = cat(&[system, "|", value]);
            return (
                if create_only {
                    Request::ConditionalCreate(query)
                } else {
                    Request::ConditionalUpdate(query)
                },
                Some(key),
            );
        }
        (Request::Update, None)
    }

    fn run(&mut self) {
        self.patient_resources();
        self.encounter_resource();
        self.related_people();
        self.guarantors();
        let order_refs = self.orders();
        self.loose_observations(&order_refs);
        self.allergies();
        self.conditions();
        self.problems();
        self.procedures();
        self.immunizations();
        self.coverages();
        self.charges();
        self.referrals();
        self.accident();
        self.death();
        self.appointment();
        self.document();
        self.message_header();
        self.provenance();
        self.source_provenance();
        let authorities = std::mem::take(&mut *self.authorities.borrow_mut());
        for (key, id, resource) in authorities {
            if self.shared.contains_key(&key) {
                continue;
            }
            self.shared.insert(key, id);
            let ids: Vec<Value> = resource["identifier"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let (request, _) = self.keyed_request(&ids, true);
            self.push("Organization", id, resource, request);
        }
    }

    /// The Organization of an assigning authority or facility (HD: namespace id, universal id
    /// and its type), as the v2-to-FHIR guide's HD[Organization]; returns a reference to it.
    fn authority(&self, namespace: Option<&str>, uid: Option<(&str, &str)>) -> Value {
        let mut ids = Vec::new();
        if let Some(ns) = namespace {
            ids.push(fj!({"value": ns}));
        }
        if let Some((uid, kind)) = uid {
            let (system, value) = match kind.to_ascii_uppercase().as_str() {
                "ISO" => (Some("urn:ietf:rfc:3986"), cat(&["urn:oid:", uid])),
                "UUID" | "GUID" => (
                    Some("urn:ietf:rfc:3986"),
                    format!("urn:uuid:{}", uid.to_ascii_lowercase()),
                ),
                _ => (None, uid.to_string()),
            };
            ids.push(fj!({
                "system": system,
                "value": value,
                "type": (!kind.is_empty()).then(|| fj!({"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0301", "code": kind
                }]})),
            }));
        }
        if ids.is_empty() {
            return Value::Null;
        }
        let key = cat(&[
            "Organization|hd|",
            namespace.unwrap_or_default(),
            "|",
            uid.map(|u| u.0).unwrap_or_default(),
        ]);
        let mut list = self.authorities.borrow_mut();
        let id = match list.iter().find(|(k, _, _)| *k == key) {
            Some((_, id, _)) => *id,
            None => {
                let id = self.uuid(&[&key]);
                list.push((key, id, fj!({"identifier": ids, "name": namespace})));
                id
            }
        };
        fj!({"reference": urn(id), "display": namespace})
    }

    // ----- data types -----

    fn dt(&self, s: &Option<String>) -> Value {
        s.as_deref().map_or(Value::Null, |s| fj!(self.datetime(s)))
    }

    /// A FHIR dateTime: a time without a zone gets the default offset.
    fn datetime(&self, s: &str) -> String {
        if s.contains('T') && !has_offset(s) {
            cat(&[s, &self.o.default_offset])
        } else {
            s.to_string()
        }
    }

    /// A FHIR instant (full seconds and a zone), when the value is precise enough.
    fn instant(&self, s: &Option<String>) -> Value {
        let Some(s) = s.as_deref() else {
            return Value::Null;
        };
        if s.len() >= 19 && s.contains('T') {
            fj!(self.datetime(s))
        } else {
            Value::Null
        }
    }

    fn code_system(&self, name: &str) -> Option<String> {
        let name = name.trim();
        if name.is_empty() {
            return None;
        }
        if let Some(uri) = self.o.code_systems.get(name) {
            return Some(uri.clone());
        }
        if let Some(uri) = vocab::system_uri(name) {
            return Some(uri);
        }
        if name.starts_with("urn:") || name.starts_with("http://") || name.starts_with("https://") {
            return Some(name.to_string());
        }
        Some(cat(&[&self.o.local_base, "cs:", &encode(name)]))
    }

    fn coding(&self, c: &Code) -> Value {
        fj!({
            "system": c.system.as_deref().and_then(|s| self.code_system(s)),
            "version": &c.version,
            "code": c.code.as_deref().map(fhir_code),
            "display": &c.display,
        })
    }

    fn concept(&self, c: &Option<Code>) -> Value {
        c.as_ref().map_or(Value::Null, |c| self.concept_of(c))
    }

    fn concept_of(&self, c: &Code) -> Value {
        let mut codings = Vec::new();
        if c.code.is_some() {
            codings.push(self.coding(c));
        }
        codings.extend(
            c.alternates
                .iter()
                .filter(|a| a.code.is_some())
                .map(|a| self.coding(a)),
        );
        let text = c
            .text
            .clone()
            .or_else(|| c.code.is_none().then(|| c.display.clone()).flatten());
        fj!({"coding": codings, "text": text})
    }

    /// A concept whose v2 table codes FHIR replaces (`map` gives system and code).
    fn mapped_concept(
        &self,
        c: &Option<Code>,
        map: impl Fn(&str) -> Option<(String, String)>,
    ) -> Value {
        let Some(c) = c else {
            return Value::Null;
        };
        let mut v = self.concept_of(c);
        if let Some((system, code)) = c.code.as_deref().and_then(map) {
            if let Some(Value::Array(codings)) = v.get_mut("coding") {
                codings.insert(0, fj!({"system": system, "code": code}));
            } else {
                v = fj!({"coding": [{"system": system, "code": code}], "text": &c.text});
            }
        }
        v
    }

    /// A language (PID-15): the v2 code plus its BCP 47 tag where one is known.
    fn language(&self, c: &Code) -> Value {
        let mut v = self.concept_of(c);
        let mut tags = Vec::new();
        for code in std::iter::once(c)
            .chain(c.alternates.iter())
            .filter_map(|c| c.code.as_deref())
        {
            if let Some(tag) = vocab::bcp47(code) {
                tags.push(fj!({"system": "urn:ietf:bcp:47", "code": tag}));
            }
        }
        if let Some(Value::Array(codings)) = v.get_mut("coding") {
            codings.extend(tags);
        }
        v
    }

    fn identifier_system(&self, i: &Identifier) -> Option<String> {
        let kind = i.authority_id_type.as_deref().unwrap_or_default();
        if let Some(uid) = i.authority_id.as_deref() {
            match kind.to_ascii_uppercase().as_str() {
                "ISO" => return Some(cat(&["urn:oid:", uid])),
                "UUID" | "GUID" => return Some(format!("urn:uuid:{}", uid.to_ascii_lowercase())),
                "URI" | "URL" if uid.contains(':') => return Some(uid.to_string()),
                _ => {}
            }
        }
        // (An `MC` Medicare number gets no system by its type alone: Australia's is `MC` too.)
        if i.authority.is_none() && i.r#type.as_deref() == Some("SS") {
            return Some("http://hl7.org/fhir/sid/us-ssn".into());
        }
        let ns = i.authority.as_deref()?.trim();
        if ns.is_empty() {
            return None;
        }
        if let Some(uri) = self.o.identifier_systems.get(ns) {
            return Some(uri.clone());
        }
        Some(cat(&[&self.o.local_base, "id:", &encode(ns)]))
    }

    fn identifier(&self, i: &Identifier) -> Value {
        fj!({
            "use": (i.r#type.as_deref() == Some("MR")).then_some("usual"),
            "type": i.r#type.as_ref().map(|t| fj!({"coding": [{"system": V2_0203, "code": t}]})),
            "system": self.identifier_system(i),
            "value": &i.value,
            "period": {"start": self.dt(&i.start), "end": self.dt(&i.end)},
            "assigner": self.authority(
                i.authority.as_deref(),
                i.authority_id.as_deref().map(|u| (u, i.authority_id_type.as_deref().unwrap_or_default())),
            ),
        })
    }

    fn typed_identifier(&self, i: &Option<Identifier>, code: &str) -> Value {
        let Some(i) = i else {
            return Value::Null;
        };
        let mut v = self.identifier(i);
        if let Value::Object(o) = &mut v {
            o.insert("type", fj!({"coding": [{"system": V2_0203, "code": code}]}));
            o.remove("use");
        }
        v
    }

    /// The placer (`PLAC`) and filler (`FILL`) numbers of an order or appointment.
    fn placer_filler(
        &self,
        placer: &Option<Identifier>,
        filler: &Option<Identifier>,
    ) -> Vec<Value> {
        [
            self.typed_identifier(placer, "PLAC"),
            self.typed_identifier(filler, "FILL"),
        ]
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
    }

    fn name(&self, n: &Name) -> Value {
        let mut prefix = Vec::new();
        prefix.extend(n.prefix.clone());
        fj!({
            "use": n.r#use.as_deref().and_then(vocab::name_use),
            "text": &n.text,
            "family": &n.family,
            "given": &n.given,
            "prefix": prefix,
            "suffix": &n.suffix,
            "period": {"start": self.dt(&n.start), "end": self.dt(&n.end)},
        })
    }

    fn address(&self, a: &Address) -> Value {
        fj!({
            "use": a.r#type.as_deref().and_then(vocab::address_use),
            "line": &a.lines,
            "city": &a.city,
            "district": &a.district,
            "state": &a.state,
            "postalCode": &a.postal_code,
            "country": &a.country,
            "period": {"start": self.dt(&a.start), "end": self.dt(&a.end)},
        })
    }

    fn telecom(&self, t: &Telecom) -> Value {
        let system = t
            .equipment
            .as_deref()
            .and_then(vocab::telecom_system)
            .or_else(|| {
                t.value
                    .as_deref()
                    .map(|v| if v.contains('@') { "email" } else { "phone" })
            });
        let usage = match t.equipment.as_deref() {
            Some("CP") => Some("mobile"),
            _ => t.r#use.as_deref().and_then(vocab::telecom_use),
        };
        fj!({
            "system": system,
            "value": &t.value,
            "use": usage,
            "period": {"start": self.dt(&t.start), "end": self.dt(&t.end)},
        })
    }

    // ----- shared resources -----

    /// A resource shared within the Bundle (a practitioner, an organization, a device, ...),
    /// made once per `key`; its id is a UUIDv5 of the key.
    fn shared_resource(
        &mut self,
        kind: &'static str,
        key: String,
        request: Request,
        resource: impl FnOnce() -> Value,
    ) -> Uuid {
        if let Some(id) = self.shared.get(&key) {
            return *id;
        }
        let id = self.uuid(&[&key]);
        self.shared.insert(key, id);
        self.push(kind, id, resource(), request);
        id
    }

    fn practitioner(&mut self, p: &Person) -> Option<Uuid> {
        let ids: Vec<Value> = p.id.iter().map(|i| self.identifier(i)).collect();
        let name = p.name.as_ref().map(|n| self.name(n));
        if ids.is_empty() && name.is_none() {
            return None;
        }
        let (request, key) = self.keyed_request(&ids, true);
        // Without an identifier the name is the key: from the record's parts, so the id does
        // not change with how the name is rendered as FHIR.
        let key = key.unwrap_or_else(|| {
            p.name.as_ref().map_or_else(String::new, |n| {
                cat(&[
                    "name|",
                    n.family.as_deref().unwrap_or_default(),
                    "|",
                    &n.given.join(" "),
                    "|",
                    n.prefix.as_deref().unwrap_or_default(),
                    "|",
                    &n.suffix.join(" "),
                    "|",
                    n.text.as_deref().unwrap_or_default(),
                ])
            })
        });
        Some(self.shared_resource(
            "Practitioner",
            cat(&["Practitioner|", &key]),
            request,
            || fj!({"identifier": ids, "name": name.map(|n| vec![n])}),
        ))
    }

    fn practitioners(&mut self, people: &[Person]) -> Vec<Uuid> {
        people.iter().filter_map(|p| self.practitioner(p)).collect()
    }

    fn organization(&mut self, name: Option<&str>, identifiers: Vec<Value>) -> Option<Uuid> {
        if name.is_none() && identifiers.is_empty() {
            return None;
        }
        let (request, key) = self.keyed_request(&identifiers, true);
        let key = cat(&[
            "Organization|",
            &key.unwrap_or_else(|| cat(&["name|", name.unwrap_or_default()])),
        ]);
        Some(self.shared_resource(
            "Organization",
            key,
            request,
            || fj!({"identifier": identifiers, "name": name}),
        ))
    }

    /// A location as the hierarchy of the v2-to-FHIR guide (PL → Location): facility,
    /// building, floor, point of care, room, bed, each `partOf` the one before; the most
    /// specific is returned.
    fn location(&mut self, l: &Location) -> Option<Uuid> {
        let levels: [(&Option<String>, &str); 6] = [
            (&l.facility, "si"),
            (&l.building, "bu"),
            (&l.floor, "lvl"),
            (&l.point_of_care, "wa"),
            (&l.room, "ro"),
            (&l.bed, "bd"),
        ];
        // The most specific level given carries PL-10.
        let last = levels.iter().rposition(|(n, _)| n.is_some());
        let mut parent: Option<Uuid> = None;
        let mut path = String::from("Location");
        for (n, (name, kind)) in levels.into_iter().enumerate() {
            let Some(name) = name.as_deref() else {
                continue;
            };
            // HD[Identifier]: a level's universal id (an OID as a URI).
            let level = match kind {
                "si" => "facility",
                "wa" => "poc",
                "ro" => "room",
                "bd" => "bed",
                _ => "",
            };
            let mut ids: Vec<Value> = l
                .universal_ids
                .iter()
                .filter(|(lv, _, _)| lv == level)
                .map(|(_, uid, kind)| universal_id(uid, kind))
                .collect();
            if Some(n) == last {
                ids.extend(l.identifier.as_ref().map(|i| self.identifier(i)));
            }
            path.push('|');
            path.push_str(kind);
            path.push('=');
            path.push_str(name);
            if let Some(id) = self.shared.get(&path) {
                parent = Some(*id);
                continue;
            }
            let id = self.uuid(&[&path]);
            self.shared.insert(path.clone(), id);
            let resource = fj!({
                "identifier": ids,
                "status": "active",
                "name": name,
                "description": (kind == "bd" || kind == "ro").then(|| l.description.clone()).flatten(),
                "mode": "instance",
                // The guide gives the point of care no physical type (only an extension).
                "physicalType": (kind != "wa").then(|| fj!({"coding": [{"system": PHYSICAL_TYPE, "code": kind}]})),
                "operationalStatus": (kind == "bd").then(|| l.status.as_ref().map(|s| fj!({
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0116", "code": s
                }))).flatten(),
                "partOf": opt_ref(parent),
            });
            self.push("Location", id, resource, Request::Update);
            parent = Some(id);
        }
        parent
    }

    // ----- Patient, merges, RelatedPerson -----

    fn patient_resources(&mut self) {
        let Some(p) = self.c.patient.as_ref() else {
            return;
        };
        let mut ids: Vec<Value> = p.identifiers.iter().map(|i| self.identifier(i)).collect();
        let (request, key) = self.keyed_request(&ids, false);
        let id = self.uuid(&[
            "Patient",
            &key.unwrap_or_else(|| format!("message|{}", self.message_key())),
        ]);
        self.patient = Some(id);
        // DB1-3 of the patient's own disability (DB1-2 PT) identifies the patient too; it is
        // added after PID's so the conditional update keeps PID's key.
        for d in &self.c.disabilities {
            if matches!(d.person.as_deref(), Some("PT") | None) {
                for i in &d.identifiers {
                    let v = self.identifier(i);
                    if !ids.contains(&v) {
                        ids.push(v);
                    }
                }
            }
        }
        // PD1-3 (primary facility, an Organization) and PD1-4 (primary care providers).
        let gps: Vec<Value> = {
            let people = p.primary_care.clone();
            let facility = p.primary_facility.clone();
            let facility_ids: Vec<Value> = p
                .primary_facility_id
                .iter()
                .map(|i| self.identifier(i))
                .collect();
            let c = self.c;
            // ROL after PID/PD1 with role PP (table 0443): ROL[Patient-GeneralPractitioner].
            let roles: Vec<Uuid> = c
                .patient
                .iter()
                .flat_map(|p| &p.roles)
                .filter(|r| is_primary_care(r))
                .filter_map(|r| self.role(r))
                .collect();
            self.organization(facility.as_deref(), facility_ids)
                .into_iter()
                .chain(self.practitioners(&people))
                .chain(roles)
                .map(reference)
                .collect()
        };
        let deceased = match (&p.deceased_at, p.deceased) {
            (Some(at), _) => fj!({"deceasedDateTime": self.datetime(at)}),
            (None, Some(b)) => fj!({"deceasedBoolean": b}),
            _ => fj!({}),
        };
        let multiple = match (p.birth_order, p.multiple_birth) {
            (Some(n), _) if n > 0 => fj!({"multipleBirthInteger": n}),
            (_, Some(b)) => fj!({"multipleBirthBoolean": b}),
            _ => fj!({}),
        };
        let mut links = Vec::new();
        let mut merged_away = Vec::new();
        for (n, m) in self.c.merges.iter().enumerate() {
            let prior: Vec<Value> = m
                .prior_identifiers
                .iter()
                .map(|i| self.identifier(i))
                .collect();
            if prior.is_empty() {
                continue;
            }
            let (req, key) = self.keyed_request(&prior, false);
            let old = self.uuid(&[
                "Patient",
                &key.unwrap_or_else(|| format!("merge|{}|{n}", self.message_key())),
            ]);
            if old == id {
                continue;
            }
            links.push(fj!({"other": reference(old), "type": "replaces"}));
            merged_away.push((old, prior, req, m.prior_name.as_ref().map(|n| self.name(n))));
        }
        let mut resource = fj!({
            "identifier": ids,
            "active": true,
            "name": p.names.iter().map(|n| self.name(n)).collect::<Vec<_>>(),
            "telecom": p.telecoms.iter().map(|t| self.telecom(t)).collect::<Vec<_>>(),
            "gender": p.sex.as_deref().and_then(vocab::gender),
            "birthDate": p.birth_date.as_deref().map(|d| d.get(..10).unwrap_or(d)),
            "address": p.addresses.iter().map(|a| self.address(a)).collect::<Vec<_>>(),
            "maritalStatus": self.mapped_concept(&p.marital_status, |c| {
                vocab::marital_status(c).map(|(s, c)| (s.to_string(), c.to_string()))
            }),
            "communication": p.language.as_ref().map(|l| vec![fj!({"language": self.language(l)})]),
            "generalPractitioner": gps,
            "link": links,
            "extension": self.patient_extensions(p),
        });
        merge_into(&mut resource, deceased);
        merge_into(&mut resource, multiple);
        self.push("Patient", id, resource, request);
        for (old, prior, req, name) in merged_away {
            let resource = fj!({
                "identifier": prior,
                "active": false,
                "name": name.map(|n| vec![n]),
                "link": [{"other": reference(id), "type": "replaced-by"}],
            });
            self.push("Patient", old, resource, req);
        }
    }

    fn patient_extensions(&self, p: &crate::record::clinical::Patient) -> Value {
        let mut ext = Vec::new();
        if let Some(m) = &p.mothers_maiden_name {
            ext.push(fj!({
                "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                "valueString": m,
            }));
        }
        if let Some(r) = &p.religion {
            ext.push(fj!({
                "url": "http://hl7.org/fhir/StructureDefinition/patient-religion",
                "valueCodeableConcept": self.concept_of(r),
            }));
        }
        if let Some(b) = &p.birth_place {
            ext.push(fj!({
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                "valueAddress": {"text": b},
            }));
        }
        // PID-26 and PID-39 (tribal citizenship) are citizenships alike in PID[Patient].
        for c in p.citizenship.iter().chain(&p.tribal_citizenship) {
            ext.push(fj!({
                "url": "http://hl7.org/fhir/StructureDefinition/patient-citizenship",
                "extension": [{"url": "code", "valueCodeableConcept": self.concept_of(c)}],
            }));
        }
        if let Some(n) = &p.nationality {
            ext.push(fj!({
                "url": "http://hl7.org/fhir/StructureDefinition/patient-nationality",
                "extension": [{"url": "code", "valueCodeableConcept": self.concept_of(n)}],
            }));
        }
        if p.species.is_some() || p.breed.is_some() {
            ext.push(fj!({
                "url": "http://hl7.org/fhir/StructureDefinition/patient-animal",
                "extension": [
                    p.species.as_ref().map(|c| fj!({"url": "species", "valueCodeableConcept": self.concept_of(c)})),
                    p.breed.as_ref().map(|c| fj!({"url": "breed", "valueCodeableConcept": self.concept_of(c)})),
                ].into_iter().flatten().collect::<Vec<_>>(),
            }));
        }
        for (url, codes) in [
            (
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                &p.race,
            ),
            (
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
                &p.ethnicity,
            ),
        ] {
            let codings: Vec<Value> = codes
                .iter()
                .filter(|c| c.code.is_some())
                .map(|c| {
                    let mut v = self.coding(c);
                    // CDC race and ethnicity codes come as v2 tables 0005 / 0189.
                    if matches!(c.system.as_deref(), Some("HL70005" | "HL70189" | "CDCREC")) {
                        v["system"] = fj!("urn:oid:2.16.840.1.113883.6.238");
                    }
                    v
                })
                .collect();
            let text = codes
                .iter()
                .filter_map(|c| c.display.clone().or_else(|| c.text.clone()))
                .collect::<Vec<_>>()
                .join(", ");
            let mut parts: Vec<Value> = codings
                .into_iter()
                .map(|c| fj!({"url": "ombCategory", "valueCoding": c}))
                .collect();
            if parts.is_empty() {
                continue;
            }
            parts.push(fj!({"url": "text", "valueString": if text.is_empty() { "unknown".to_string() } else { text }}));
            ext.push(fj!({"url": url, "extension": parts}));
        }
        Value::Array(ext)
    }

    fn related_people(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        // PID-21: the mother, known by her identifiers (CX[RelatedPerson-Mother]).
        let mother = self
            .c
            .patient
            .as_ref()
            .map(|p| p.mothers_identifiers.clone())
            .unwrap_or_default();
        if !mother.is_empty() {
            let ids: Vec<Value> = mother.iter().map(|i| self.identifier(i)).collect();
            let id = self.uuid(&["RelatedPerson", &patient.to_string(), "mother"]);
            let resource = fj!({
                "identifier": ids,
                "active": true,
                "patient": reference(patient),
                "relationship": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH", "display": "mother"
                }]}],
            });
            self.push("RelatedPerson", id, resource, Request::Update);
        }
        let mut contacts = Vec::new();
        for (n, k) in self.c.next_of_kin.iter().enumerate() {
            contacts.extend(self.patient_contact(k));
            // The guide's message maps: an employer, agency or insurer (NK1-3 EMR, E, F, I,
            // S) is only a contact of the patient, not a RelatedPerson.
            let organisational = k
                .relationship
                .as_ref()
                .and_then(|r| r.code.as_deref())
                .is_some_and(|c| {
                    matches!(
                        c.to_ascii_uppercase().as_str(),
                        "EMR" | "E" | "F" | "I" | "S"
                    )
                });
            if organisational {
                continue;
            }
            let id = self.uuid(&["RelatedPerson", &patient.to_string(), &n.to_string()]);
            let resource = self.related_person(patient, k);
            self.push("RelatedPerson", id, resource, Request::Update);
        }
        if contacts.is_empty() {
            return;
        }
        if let Some(o) = self.resource_mut(patient) {
            o.insert("contact", Value::Array(contacts));
        }
    }

    /// An NK1 as Patient.contact (NK1[Patient]): name, relationship NK1-3 and role NK1-7,
    /// address, telecom, gender, period, organization NK1-13. None when it names nobody and no
    /// organization (pat-1).
    fn patient_contact(&mut self, k: &Contact) -> Option<Value> {
        let ids: Vec<Value> = k
            .organization_id
            .iter()
            .map(|i| self.identifier(i))
            .collect();
        let organization = self.organization(k.organization.as_deref(), ids);
        if k.names.is_empty()
            && k.telecoms.is_empty()
            && k.addresses.is_empty()
            && organization.is_none()
        {
            return None;
        }
        let relationship = self.contact_relationship(k);
        Some(fj!({
            "relationship": relationship,
            "name": k.names.first().map(|n| self.name(n)),
            "telecom": k.telecoms.iter().map(|t| self.telecom(t)).collect::<Vec<_>>(),
            "address": k.addresses.first().map(|a| self.address(a)),
            "gender": k.sex.as_deref().and_then(vocab::gender),
            "organization": organization.map(reference),
            "period": {"start": self.dt(&k.start), "end": self.dt(&k.end)},
        }))
    }

    /// A contact's relationship through the guide's Relationship map (v3 RoleCode), then its
    /// role (NK1-7).
    fn contact_relationship(&self, k: &Contact) -> Vec<Value> {
        let mut relationship = vec![self.mapped_concept(&k.relationship, |c| {
            vocab::relationship(c).map(|(s, c, _)| (s.to_string(), c.to_string()))
        })];
        relationship.extend(k.role.as_ref().map(|c| self.concept_of(c)));
        relationship
    }

    /// A contact of the patient (NK1, GT1) as a RelatedPerson.
    fn related_person(&self, patient: Uuid, k: &Contact) -> Value {
        let ids: Vec<Value> = k.identifiers.iter().map(|i| self.identifier(i)).collect();
        let relationship = self.contact_relationship(k);
        fj!({
            "identifier": ids,
            "active": true,
            "patient": reference(patient),
            "relationship": relationship,
            "name": k.names.iter().map(|n| self.name(n)).collect::<Vec<_>>(),
            "telecom": k.telecoms.iter().map(|t| self.telecom(t)).collect::<Vec<_>>(),
            "gender": k.sex.as_deref().and_then(vocab::gender),
            "birthDate": k.birth_date.as_deref().map(|d| d.get(..10).unwrap_or(d)),
            "address": k.addresses.iter().map(|a| self.address(a)).collect::<Vec<_>>(),
            "period": {"start": self.dt(&k.start), "end": self.dt(&k.end)},
            "communication": k.language.as_ref().map(|l| vec![fj!({"language": self.language(l)})]),
        })
    }

    /// Guarantors (GT1) as `Account.guarantor`: the patient itself (GT1-11 `SEL`), a
    /// RelatedPerson, or an Organization (GT1-21), with the period and billing hold. The
    /// account is PID-18's; without one, the patient's guarantor Account. The guide has no GT1
    /// map yet; fields follow their meaning in the v2 standard (chapter 6).
    fn guarantors(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        let mut parties = Vec::new();
        for (n, g) in self.c.guarantors.iter().enumerate() {
            let is_self = g
                .person
                .relationship
                .as_ref()
                .and_then(|r| r.code.as_deref())
                .is_some_and(|c| c.eq_ignore_ascii_case("SEL"));
            let party = if is_self {
                Some(patient)
            } else if !g.person.names.is_empty() || !g.person.identifiers.is_empty() {
                let id = self.uuid(&[
                    "RelatedPerson",
                    &patient.to_string(),
                    "guarantor",
                    &n.to_string(),
                ]);
                let mut resource = self.related_person(patient, &g.person);
                if let Some(language) = &g.language {
                    let language = self.language(language);
                    merge_into(
                        &mut resource,
                        fj!({"communication": [{"language": language, "preferred": true}]}),
                    );
                }
                self.push("RelatedPerson", id, resource, Request::Update);
                Some(id)
            } else {
                g.organization.as_ref().and_then(|o| {
                    let ids = o.identifier.iter().map(|i| self.identifier(i)).collect();
                    self.organization(o.name.as_deref(), ids)
                })
            };
            let Some(party) = party else {
                continue;
            };
            parties.push((
                g.priority.unwrap_or(i64::MAX),
                fj!({
                    "party": reference(party),
                    "onHold": g.billing_hold,
                    "period": {"start": self.dt(&g.person.start), "end": self.dt(&g.person.end)},
                }),
            ));
        }
        if parties.is_empty() {
            return;
        }
        // GT1-15 orders them; Account.guarantor is read in order.
        parties.sort_by_key(|(priority, _)| *priority);
        let guarantor: Vec<Value> = parties.into_iter().map(|(_, g)| g).collect();
        let account = self.account().unwrap_or_else(|| {
            self.shared_resource(
                "Account",
                format!("Account|{patient}|guarantors"),
                Request::Update,
                || fj!({"status": "active", "subject": [reference(patient)]}),
            )
        });
        if let Some(o) = self.resource_mut(account) {
            o.insert("guarantor", Value::Array(guarantor));
        }
    }

    /// An identifier that is only a value (no authority, no type).
    fn plain_identifier(&self, value: &str) -> Value {
        self.identifier(&Identifier {
            value: Some(value.to_string()),
            ..Identifier::default()
        })
    }

    // ----- ChargeItem (FT1; Aorta's own map: the guide has no FT1 sheet) -----

    /// Each FT1 as a ChargeItem of the patient and the visit: code FT1-7 (else the FT1-25
    /// procedure), identifier FT1-2, status `billable` for a charge (FT1-6 `CG`, or none given;
    /// credits, payments and adjustments `unknown`), occurrence FT1-4, enteredDate FT1-5,
    /// quantity FT1-10, priceOverride FT1-11, costCenter the FT1-13 department as an
    /// Organization, reason FT1-19, performers FT1-20, enterer FT1-24, product FT1-29,
    /// performing and requesting organizations FT1-32/33, and the patient's Account. A
    /// transaction with no code at all stays in the record only (R4 requires one).
    fn charges(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        if self.c.charges.is_empty() {
            return;
        }
        let account = self.account();
        let message = self.message_key();
        for (n, ch) in self.c.charges.iter().enumerate() {
            let code = self.concept(if ch.code.is_some() {
                &ch.code
            } else {
                &ch.procedure
            });
            if code.is_null() {
                continue;
            }
            let ids: Vec<Value> = ch.id.iter().map(|v| self.plain_identifier(v)).collect();
            let key = match &ch.id {
                Some(t) => cat(&[&patient.to_string(), "|", t]),
                None => cat(&[&message, "|", &n.to_string()]),
            };
            let id = self.uuid(&["ChargeItem", &key]);
            let charge = ch
                .r#type
                .as_ref()
                .and_then(|t| t.code.as_deref())
                .is_none_or(|t| t.eq_ignore_ascii_case("CG"));
            let occurrence = match (&ch.start, &ch.end) {
                (Some(_), Some(end)) if Some(end) != ch.start.as_ref() => {
                    fj!({"occurrencePeriod": {"start": self.dt(&ch.start), "end": self.dt(&ch.end)}})
                }
                _ => fj!({"occurrenceDateTime": self.dt(&ch.start)}),
            };
            let performers: Vec<Value> = self
                .practitioners(&ch.performers)
                .into_iter()
                .map(|p| fj!({"actor": reference(p)}))
                .collect();
            let enterer = ch.entered_by.as_ref().and_then(|p| self.practitioner(p));
            let department = ch.department.as_ref().and_then(|d| {
                let ids: Vec<Value> = d.code.iter().map(|v| self.plain_identifier(v)).collect();
                self.organization(d.display.as_deref(), ids)
            });
            let facility = |b: &mut Self, o: &Option<crate::record::clinical::Organization>| {
                o.as_ref().and_then(|o| {
                    let ids = o.identifier.iter().map(|i| b.identifier(i)).collect();
                    b.organization(o.name.as_deref(), ids)
                })
            };
            let performing = facility(self, &ch.performing_facility);
            let requesting = facility(self, &ch.ordering_facility);
            let money = |m: &Option<crate::record::clinical::Money>| {
                m.as_ref().map_or(
                    Value::Null,
                    |m| fj!({"value": m.value, "currency": &m.currency}),
                )
            };
            let reason: Vec<Value> = ch.diagnoses.iter().map(|d| self.concept_of(d)).collect();
            let mut resource = fj!({
                "resourceType": "ChargeItem",
                "identifier": ids,
                "status": if charge { "billable" } else { "unknown" },
                "code": code,
                "subject": reference(patient),
                "context": opt_ref(self.encounter),
                "performer": performers,
                "performingOrganization": opt_ref(performing),
                "requestingOrganization": opt_ref(requesting),
                "costCenter": opt_ref(department),
                "quantity": ch.quantity.map(|q| fj!({"value": q})),
                "priceOverride": money(&ch.amount),
                "enterer": opt_ref(enterer),
                "enteredDate": self.dt(&ch.posted),
                "reason": reason,
                "productCodeableConcept": self.concept(&ch.drug),
                "account": account.map(|a| vec![reference(a)]),
            });
            merge_into(&mut resource, occurrence);
            self.push("ChargeItem", id, resource, Request::Update);
        }
    }

    // ----- Encounter -----

    fn encounter_resource(&mut self) {
        let Some(v) = self.c.visit.as_ref() else {
            return;
        };
        let ids: Vec<Value> = v
            .visit_number
            .iter()
            .map(|i| self.typed_identifier(&Some(i.clone()), "VN"))
            .chain(v.alternate_visit_id.iter().map(|i| self.identifier(i)))
            .collect();
        let (request, key) = self.keyed_request(&ids, false);
        let id = self.uuid(&[
            "Encounter",
            &key.unwrap_or_else(|| {
                format!(
                    "{}|{}",
                    self.patient
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| self.message_key()),
                    v.admitted_at.as_deref().unwrap_or_default()
                )
            }),
        ]);
        self.encounter = Some(id);
        let mut participants = Vec::new();
        for (people, code, display) in [
            (&v.attending, "ATND", "attender"),
            (&v.referring, "REF", "referrer"),
            (&v.consulting, "CON", "consultant"),
            (&v.admitting, "ADM", "admitter"),
            (&v.other_providers, "PART", "Participation"),
        ] {
            for p in self.practitioners(people) {
                participants.push(fj!({
                    "type": [{"coding": [{"system": PARTICIPATION, "code": code, "display": display}]}],
                    "individual": reference(p),
                }));
            }
        }
        // ROL after PV1/PV2: ROL[Encounter-PractitionerRole].
        let c = self.c;
        for r in c.visit.iter().flat_map(|v| &v.roles) {
            if let Some(role) = self.role(r) {
                participants.push(fj!({
                    "type": r.role.as_ref().map(|c| vec![self.concept_of(c)]),
                    "individual": reference(role),
                    "period": {"start": self.dt(&r.start), "end": self.dt(&r.end)},
                }));
            }
        }
        let mut locations = Vec::new();
        for (l, status) in [
            (&v.location, "active"),
            (&v.temporary_location, "active"),
            (&v.prior_location, "completed"),
            (&v.pending_location, "planned"),
            // PV2-1, "planned" as PV2[Encounter] says.
            (&v.prior_pending_location, "planned"),
        ] {
            if let Some(l) = l {
                if let Some(loc) = self.location(l) {
                    locations.push(fj!({"location": reference(loc), "status": status}));
                }
            }
        }
        let class = v
            .class
            .as_ref()
            .and_then(|c| c.code.as_deref())
            .map(vocab::encounter_class)
            .map(|(s, c, d)| fj!({"system": s, "code": c, "display": d}))
            // Encounter.class is required; an absent patient class is "unknown" (v2 table 0004).
            .unwrap_or_else(|| {
                fj!({"system": "http://terminology.hl7.org/CodeSystem/v2-0004", "code": "U", "display": "Unknown"})
            });
        // PID-18 → Account (PID[Account]); PV1-53/54 → EpisodeOfCare.
        let account = self.account();
        // EpisodeOfCare.patient is required: only with a patient.
        let episode = v.episode_id.as_ref().filter(|_| self.patient.is_some()).map(|e| {
            let ids = vec![self.identifier(e)];
            let (request, key) = self.keyed_request(&ids, false);
            let id = self.uuid(&["EpisodeOfCare", &key.unwrap_or_else(|| format!("message|{}", self.message_key()))]);
            let resource = fj!({
                "identifier": ids,
                "status": if v.discharged_at.is_some() { "finished" } else { "active" },
                "patient": opt_ref(self.patient),
                "extension": v.episode_description.as_ref().map(|d| vec![fj!({
                    "url": "http://hl7.org/fhir/StructureDefinition/resource-instance-description",
                    "valueString": d,
                })]),
            });
            self.push("EpisodeOfCare", id, resource, request);
            id
        });
        // PV1-37 (DLD[Location-Discharge]): where the patient was discharged to, a Location
        // whose type is DLD-1.
        let destination = v.discharged_to.as_ref().map(|to| {
            let key = format!(
                "Location|discharge|{}|{}|{}",
                to.system.as_deref().unwrap_or_default(),
                to.code.as_deref().unwrap_or_default(),
                to.display.as_deref().unwrap_or_default()
            );
            let resource = fj!({
                "name": to.display.clone().or_else(|| to.code.clone()),
                "mode": "instance",
                "type": [self.concept_of(to)],
            });
            self.shared_resource("Location", key, Request::Update, || resource)
        });
        let discharged = v.discharged_at.is_some();
        let status = vocab::encounter_status(
            self.c.message.event.as_deref(),
            v.class.as_ref().and_then(|c| c.code.as_deref()),
            discharged,
        );
        let resource = fj!({
            "identifier": ids,
            "status": status,
            "class": class,
            "type": [self.concept(&v.admission_type), self.concept(&v.patient_type)],
            "serviceType": self.concept(&v.hospital_service),
            "priority": self.mapped_concept(&v.priority, |c| {
                let code = match c.trim() {
                    "1" => "EM",
                    "2" => "UR",
                    "3" => "EL",
                    _ => return None,
                };
                Some(("http://terminology.hl7.org/CodeSystem/v3-ActPriority".to_string(), code.to_string()))
            }),
            "length": v.length_of_stay.map(|d| fj!({
                "value": d, "unit": "days", "system": "http://unitsofmeasure.org", "code": "d"
            })),
            "subject": opt_ref(self.patient),
            "participant": participants,
            "period": {"start": self.dt(&v.admitted_at), "end": self.dt(&v.discharged_at)},
            "reasonCode": [self.concept(&v.admit_reason)],
            "hospitalization": {
                "preAdmissionIdentifier": v.preadmit_number.as_ref().map(|i| self.identifier(i)),
                "admitSource": self.concept(&v.admit_source),
                "reAdmission": self.concept(&v.readmission),
                "specialArrangement": v.ambulatory_status.iter().map(|c| self.concept_of(c)).collect::<Vec<_>>(),
                "specialCourtesy": [self.concept(&v.vip)],
                "dietPreference": [self.concept(&v.diet)],
                "dischargeDisposition": self.concept(&v.discharge_disposition),
                "destination": destination.map(reference),
            },
            "location": locations,
            "account": account.map(|a| vec![reference(a)]),
            "episodeOfCare": episode.map(|e| vec![reference(e)]),
            "text": v.description.as_ref().map(|d| fj!({"status": "generated", "div": xhtml(d)})),
            // PV2-8/9 (R5's planned dates, as cross-version extensions) and PV2-38.
            "extension": [
                v.expected_admit_at.as_ref().map(|_| fj!({
                    "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedStartDate",
                    "valueDateTime": self.dt(&v.expected_admit_at),
                })),
                v.expected_discharge_at.as_ref().map(|_| fj!({
                    "url": "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter.plannedEndDate",
                    "valueDateTime": self.dt(&v.expected_discharge_at),
                })),
                v.arrival_mode.as_ref().map(|c| fj!({
                    "url": "http://hl7.org/fhir/StructureDefinition/encounter-modeOfArrival",
                    "valueCoding": self.coding(c),
                })),
            ].into_iter().flatten().collect::<Vec<_>>(),
        });
        self.push("Encounter", id, resource, request);
    }

    // ----- orders, reports, observations, specimens -----

    /// ServiceRequests (and DiagnosticReports for results) per order; returns, per order, the
    /// report's id (if any), to which its observations belong.
    fn orders(&mut self) -> Vec<Option<Uuid>> {
        self.service_requests = vec![None; self.c.orders.len()];
        let results_message = matches!(self.c.message.r#type.as_deref(), Some("ORU" | "OUL"));
        let mut reports = Vec::new();
        let orders: Vec<&Order> = self.c.orders.iter().collect();
        for (n, order) in orders.into_iter().enumerate() {
            let mut ids = self.placer_filler(&order.placer_id, &order.filler_id);
            let (request, key) = self.keyed_request(&ids, false);
            let key = key.unwrap_or_else(|| format!("message|{}|{n}", self.message_key()));
            let sr = self.uuid(&["ServiceRequest", &key]);
            // OBR-53 / ORC-33 after the order numbers (not part of the key).
            ids.extend(order.alternate_ids.iter().map(|i| self.identifier(i)));
            // ORC-12 as the guide says: requester(PractitionerRole.practitioner), in the ORC-21
            // ordering facility (with ORC-22/23), the practitioner with the ORC-24 address.
            let facility = order.ordering_facility.as_ref().and_then(|o| {
                let ids = o.identifier.iter().map(|i| self.identifier(i)).collect();
                self.organization(o.name.as_deref(), ids)
            });
            if let Some(f) = facility {
                let address = order
                    .ordering_facility_address
                    .as_ref()
                    .map(|a| self.address(a));
                let telecom: Vec<Value> = order
                    .ordering_facility_phones
                    .iter()
                    .map(|t| self.telecom(t))
                    .collect();
                if let Some(o) = self.resource_mut(f) {
                    if let Some(a) = address {
                        o.entry("address").or_insert_with(|| Value::Array(vec![a]));
                    }
                    if !telecom.is_empty() {
                        o.entry("telecom").or_insert_with(|| Value::Array(telecom));
                    }
                }
            }
            let requesters: Vec<Uuid> = order
                .ordering_provider
                .iter()
                .filter_map(|p| self.practitioner_role(p, None, facility))
                .collect();
            if let (Some(a), Some(p)) = (
                &order.ordering_provider_address,
                order
                    .ordering_provider
                    .first()
                    .and_then(|p| self.practitioner(p)),
            ) {
                let address = self.address(a);
                if let Some(o) = self.resource_mut(p) {
                    o.entry("address")
                        .or_insert_with(|| Value::Array(vec![address]));
                }
            }
            let specimen_ids = self.specimens(n, sr);
            let notes = self.annotations(&order.notes);
            let code = order.code.clone();
            let is_result = results_message
                || order.result_status.is_some()
                || self.c.observations.iter().any(|o| o.order == Some(n));
            let timing = order
                .timing
                .as_ref()
                .map(|t| self.timing(t))
                .filter(|t| !super::fj::is_empty(t));
            let resource = fj!({
                "identifier": ids,
                "requisition": self.typed_identifier(&order.group_id, "PGN"),
                "status": vocab::request_status(order.status.as_deref(), order.control.as_deref()),
                // OBR-11 `G`: an order the filler generated (a reflex test).
                "intent": if order.specimen_action.as_deref() == Some("G") { "reflex-order" } else { "order" },
                "priority": order.priority.as_deref().and_then(vocab::request_priority),
                // prr-1: orderDetail only with a code.
                "orderDetail": if code.is_some() { order.details.iter().map(|c| self.concept_of(c)).collect::<Vec<_>>() } else { Vec::new() },
                "locationCode": order.order_type.as_ref().map(|c| vec![self.concept_of(c)]),
                // OBR-17/ORC-14 and, without an order status, ORC-16 (ORC[ServiceRequest]).
                "extension": order.callback_phones.iter().map(|t| fj!({
                    "url": "http://hl7.org/fhir/StructureDefinition/servicerequest-order-callback-phone-number",
                    "valueContactPoint": self.telecom(t),
                })).chain(order.control_reason.as_ref().filter(|_| order.status.is_none()).map(|c| fj!({
                    "url": "http://hl7.org/fhir/StructureDefinition/request-statusReason",
                    "valueCodeableConcept": self.concept_of(c),
                }))).collect::<Vec<_>>(),
                "meta": {"security": order.confidentiality.as_ref().map(|c| {
                    let coding = c.code.as_deref().and_then(vocab::confidentiality).map_or_else(
                        || self.coding(c),
                        |(system, code, display)| fj!({"system": system, "code": code, "display": display}),
                    );
                    vec![coding]
                })},
                // ServiceRequest.code is optional, but an order without one says little.
                "code": self.concept(&code),
                "subject": opt_ref(self.patient),
                "encounter": opt_ref(self.encounter),
                "quantityQuantity": order.timing.as_ref().and_then(|t| Some(self.quantity(t.quantity?, &t.quantity_units))),
                // occurrence[x] is one choice: TQ1's timing, else OBR-7 for an order.
                "occurrenceDateTime": if is_result || timing.is_some() { Value::Null } else { self.dt(&order.observed_at) },
                "occurrenceTiming": timing,
                "authoredOn": self.dt(&order.ordered_at),
                "requester": requesters.first().copied().map(reference),
                "reasonCode": order.reasons.iter().map(|c| self.concept_of(c)).collect::<Vec<_>>(),
                "specimen": specimen_ids.iter().copied().map(reference).collect::<Vec<_>>(),
                "note": notes,
            });
            if self.patient.is_none() {
                // ServiceRequest.subject is required: an order without a patient stays out.
                reports.push(None);
                continue;
            }
            self.push("ServiceRequest", sr, resource, request);
            if let Some(slot) = self.service_requests.get_mut(n) {
                *slot = Some(sr);
            }
            if !is_result {
                reports.push(None);
                continue;
            }
            let dr = self.uuid(&["DiagnosticReport", &key]);
            // OBR-32 → resultsInterpreter(PractitionerRole), NDL[PractitionerRole].
            let interpreters: Vec<Uuid> = order
                .interpreters
                .iter()
                .filter_map(|r| self.role(r))
                .collect();
            let report_performers: Vec<Uuid> = order
                .report_performers
                .iter()
                .filter_map(|r| self.role(r))
                .collect();
            let effective = match (&order.observed_at, &order.observed_end) {
                (Some(_), Some(_)) => fj!({"effectivePeriod": {
                    "start": self.dt(&order.observed_at), "end": self.dt(&order.observed_end)
                }}),
                (Some(_), None) => fj!({"effectiveDateTime": self.dt(&order.observed_at)}),
                _ => fj!({}),
            };
            let ids = self.placer_filler(&order.placer_id, &order.filler_id);
            let (dr_request, _) = self.keyed_request(&ids, false);
            let mut resource = fj!({
                "identifier": ids,
                "basedOn": [reference(sr)],
                "status": vocab::report_status(order.result_status.as_deref()),
                "category": order.service_section.as_ref().map(|s| vec![fj!({"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": s
                }]})]),
                // DiagnosticReport.code is required.
                "code": if code.is_some() { self.concept(&code) } else { fj!({"text": "unknown"}) },
                "subject": opt_ref(self.patient),
                "encounter": opt_ref(self.encounter),
                "issued": self.instant(&order.reported_at),
                "resultsInterpreter": interpreters.into_iter().map(reference).collect::<Vec<_>>(),
                "performer": report_performers.into_iter().map(reference).collect::<Vec<_>>(),
                "specimen": specimen_ids.iter().copied().map(reference).collect::<Vec<_>>(),
            });
            merge_into(&mut resource, effective);
            // Results are filled in after the observations exist (below).
            self.push("DiagnosticReport", dr, resource, dr_request);
            reports.push(Some(dr));
        }
        reports
    }

    fn specimens(&mut self, order: usize, request: Uuid) -> Vec<Uuid> {
        let mut out = Vec::new();
        let specimens: Vec<_> = self
            .c
            .specimens
            .iter()
            .enumerate()
            .filter(|(_, s)| s.order == Some(order))
            .collect();
        for (i, s) in specimens {
            let (id, ids, req) = self.specimen_id(i, s);
            let parent = self.parent_specimen(i, &s.parents);
            let collected = match &s.collected_end {
                Some(_) => {
                    fj!({"collectedPeriod": {"start": self.dt(&s.collected_at), "end": self.dt(&s.collected_end)}})
                }
                None => fj!({"collectedDateTime": self.dt(&s.collected_at)}),
            };
            let mut collection = fj!({
                "method": self.concept(&s.collection_method),
                "bodySite": self.concept(&s.body_site),
                "quantity": s.amount.map(|a| self.quantity(a, &s.amount_units)),
            });
            if let (Value::Object(c), Value::Object(at)) = (&mut collection, collected) {
                c.extend(at);
            }
            let resource = fj!({
                "identifier": ids,
                "accessionIdentifier": s.accession.as_ref().map(|a| self.identifier(a)),
                // SPM-20 through the guide's Yes/NoIndicator[AvailabilityStatus] map.
                "status": s.available.map(|a| if a { "available" } else { "unavailable" }),
                "type": self.concept(&s.r#type),
                "subject": opt_ref(self.patient),
                "receivedTime": self.dt(&s.received_at),
                "parent": parent.map(|p| vec![reference(p)]),
                "request": [reference(request)],
                "collection": collection,
                "container": [{
                    "type": self.concept(&s.container_type),
                    "additiveCodeableConcept": self.concept(&s.additive),
                }],
                "condition": s.conditions.iter().map(|c| self.concept_of(c)).collect::<Vec<_>>(),
                "note": s.description.as_ref().map(|d| vec![fj!({"text": d})]),
            });
            self.push("Specimen", id, resource, req);
            out.push(id);
        }
        // Without an SPM, the OBR's specimen data is the order's specimen (OBR-15), and a result
        // order always has one (the guide's ORU_R01: "the OBR specimen data yields one Specimen
        // resource that all Observations generated for it reference"; OBR[Specimen]).
        let index = order;
        if out.is_empty() {
            if let Some(order) = self.c.orders.get(order) {
                let results = order.result_status.is_some()
                    || self.c.observations.iter().any(|o| o.order == Some(index));
                if results
                    || order.specimen_source.is_some()
                    || order.specimen_received_at.is_some()
                {
                    let id = self.uuid(&["Specimen", &request.to_string()]);
                    let collected = match &order.observed_end {
                        Some(_) => fj!({"collectedPeriod": {
                            "start": self.dt(&order.observed_at), "end": self.dt(&order.observed_end),
                        }}),
                        None => fj!({"collectedDateTime": self.dt(&order.observed_at)}),
                    };
                    let resource = fj!({
                        "accessionIdentifier": self.typed_identifier(&order.placer_id, "ACSN"),
                        "type": self.concept(&order.specimen_source),
                        "subject": opt_ref(self.patient),
                        "receivedTime": self.dt(&order.specimen_received_at),
                        "request": [reference(request)],
                        "collection": collected,
                    });
                    self.push("Specimen", id, resource, Request::Update);
                    out.push(id);
                }
            }
        }
        self.order_specimens.insert(index, out.clone());
        out
    }

    /// The id of the record's specimen `i`, its identifiers and its request.
    fn specimen_id(&self, i: usize, s: &Specimen) -> (Uuid, Vec<Value>, Request) {
        let ids: Vec<Value> = s.identifiers.iter().map(|i| self.identifier(i)).collect();
        let (req, key) = self.keyed_request(&ids, false);
        let id = self.uuid(&[
            "Specimen",
            &key.unwrap_or_else(|| format!("message|{}|{i}", self.message_key())),
        ]);
        (id, ids, req)
    }

    /// The parent of specimen `child` (SPM-3): another SPM of the message that carries one of
    /// those ids, else a Specimen known only by them (made once).
    fn parent_specimen(&mut self, child: usize, parents: &[Identifier]) -> Option<Uuid> {
        if parents.is_empty() {
            return None;
        }
        let same = |a: &Identifier, b: &Identifier| {
            a.value.is_some() && a.value == b.value && a.r#type == b.r#type
        };
        let in_message = self.c.specimens.iter().enumerate().find(|(j, s)| {
            *j != child
                && s.identifiers
                    .iter()
                    .any(|i| parents.iter().any(|p| same(i, p)))
        });
        if let Some((j, s)) = in_message {
            return Some(self.specimen_id(j, s).0);
        }
        let ids: Vec<Value> = parents.iter().map(|i| self.identifier(i)).collect();
        let (request, key) = self.keyed_request(&ids, false);
        let key = key.unwrap_or_else(|| {
            let values: Vec<&str> = parents.iter().filter_map(|i| i.value.as_deref()).collect();
            format!("message|{}|parent|{}", self.message_key(), values.join("|"))
        });
        let subject = self.patient;
        Some(self.shared_resource(
            "Specimen",
            format!("Specimen|{key}"),
            request,
            || fj!({"identifier": ids, "subject": opt_ref(subject)}),
        ))
    }

    fn loose_observations(&mut self, reports: &[Option<Uuid>]) {
        if self.patient.is_none() {
            return;
        }
        let mut results: HashMap<Uuid, Vec<Value>> = HashMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let c = self.c;
        for (n, o) in c.observations.iter().enumerate() {
            let report = o.order.and_then(|i| reports.get(i).copied().flatten());
            let order = o.order.and_then(|i| self.c.orders.get(i));
            // Stable across corrections: the order's id, the test code and the sub-id.
            let base = match order.and_then(|ord| ord.filler_id.as_ref().or(ord.placer_id.as_ref()))
            {
                Some(i) => format!(
                    "order|{}|{}|{}|{}",
                    i.value.as_deref().unwrap_or_default(),
                    i.authority.as_deref().unwrap_or_default(),
                    o.code
                        .as_ref()
                        .and_then(|c| c.code.as_deref())
                        .unwrap_or_default(),
                    o.sub_id.as_deref().unwrap_or_default()
                ),
                None => format!("message|{}|{n}", self.message_key()),
            };
            let count = seen.entry(base.clone()).or_insert(0);
            *count += 1;
            let key = if *count > 1 {
                format!("{base}|{count}")
            } else {
                base
            };
            let id = self.uuid(&["Observation", &key]);
            // OBX-23/24: the performing organization with its identifier and address.
            let org_ids: Vec<Value> = o
                .performing_organization_id
                .iter()
                .map(|i| self.identifier(i))
                .collect();
            let org = self.organization(o.performing_organization.as_deref(), org_ids);
            if let (Some(org), Some(a)) = (org, &o.performing_organization_address) {
                let address = self.address(a);
                if let Some(m) = self.resource_mut(org) {
                    m.entry("address")
                        .or_insert_with(|| Value::Array(vec![address]));
                }
            }
            // OBX-16 responsible observers and OBX-25 directors (in their organization) as
            // PractitionerRoles, as the guide's OBX[Observation] says.
            let mut performers = Vec::new();
            for p in &o.performers {
                if let Some(role) =
                    self.practitioner_role(p, Some((ROLE, "responsibleObserver")), None)
                {
                    performers.push(role);
                }
            }
            for p in &o.directors {
                if let Some(role) = self.practitioner_role(p, Some((V2_0912, "MDIR")), org) {
                    performers.push(role);
                }
            }
            let devices: Vec<Uuid> = o.equipment.iter().map(|e| self.device(e)).collect();
            let notes = self.annotations(&o.notes);
            let effective = o
                .observed_at
                .as_ref()
                .or_else(|| order.and_then(|ord| ord.observed_at.as_ref()));
            let mut resource = fj!({
                "status": vocab::observation_status(o.status.as_deref()),
                "category": self.observation_category(order),
                // Observation.code is required.
                "code": if o.code.is_some() { self.concept(&o.code) } else { fj!({"text": "unknown"}) },
                "subject": opt_ref(self.patient),
                "encounter": opt_ref(self.encounter),
                "effectiveDateTime": self.dt(&effective.cloned()),
                "issued": self.instant(&order.and_then(|ord| ord.reported_at.clone())),
                "identifier": [self.typed_identifier(&o.identifier, "FILL")],
                "performer": performers.into_iter().chain(org).map(reference).collect::<Vec<_>>(),
                "device": devices.first().copied().map(reference),
                "interpretation": o.interpretation.iter().map(|c| self.interpretation(c)).collect::<Vec<_>>(),
                "method": self.concept(&o.method),
                "bodySite": self.concept(&o.body_site),
                // With components the range is theirs (OBX[Observation-Component]).
                "referenceRange": o.reference_range.as_ref().filter(|_| o.more_values.is_empty()).map(|r| vec![self.reference_range(r, o)]),
                "note": notes,
                // An OBX after RXA: the order the immunization fulfils.
                "basedOn": order.and(o.order)
                    .or_else(|| o.immunization.and_then(|i| self.c.immunizations.get(i)?.order))
                    .and_then(|i| self.service_request_of(i)).map(|r| vec![reference(r)]),
                // VXU's ORDER.OBSERVATION: partOf the Immunization (the guide's VXU_V04 map).
                "partOf": o.immunization.zip(self.patient).and_then(|(i, p)| self.immunization_key(i, p)).map(|(im, _, _)| vec![reference(im)]),
                "specimen": o.order.and_then(|i| self.order_specimens.get(&i)).and_then(|s| s.first().copied()).map(reference),
            });
            merge_into(&mut resource, self.observation_value(o));
            self.push("Observation", id, resource, Request::Update);
            if let Some(r) = report {
                results.entry(r).or_default().push(reference(id));
            }
        }
        for e in &mut self.entries {
            if let Some(refs) = results.remove(&e.id) {
                if let Value::Object(o) = &mut e.resource {
                    o.insert("result", Value::Array(refs));
                }
            }
        }
    }

    /// The patient's account (PID-18) as an Account, once per message.
    fn account(&mut self) -> Option<Uuid> {
        let number = self.c.patient.as_ref()?.account_number.clone()?;
        let patient = self.patient?;
        let ids = vec![self.identifier(&number)];
        let (request, key) = self.keyed_request(&ids, false);
        let key = format!(
            "Account|{}",
            key.unwrap_or_else(|| format!(
                "{patient}|{}",
                number.value.as_deref().unwrap_or_default()
            ))
        );
        Some(self.shared_resource(
            "Account",
            key,
            request,
            || fj!({"identifier": ids, "status": "active", "subject": [reference(patient)]}),
        ))
    }

    /// A PractitionerRole: the practitioner in a role (and organization).
    fn practitioner_role(
        &mut self,
        p: &Person,
        role: Option<(&str, &str)>,
        org: Option<Uuid>,
    ) -> Option<Uuid> {
        let practitioner = self.practitioner(p)?;
        let key = format!(
            "PractitionerRole|{practitioner}|{}|{}",
            role.map(|r| r.1).unwrap_or_default(),
            org.map(|o| o.to_string()).unwrap_or_default()
        );
        Some(self.shared_resource("PractitionerRole", key, Request::Update, || {
            fj!({
                "practitioner": reference(practitioner),
                "organization": org.map(reference),
                "code": role.map(|(system, code)| vec![fj!({"coding": [{"system": system, "code": code}]})]),
            })
        }))
    }

    /// The PractitionerRole of a ROL segment: the practitioner (ROL-4) in the role (ROL-3) for
    /// an organization (ROL-14) at a location (ROL-13), with ROL-1 as its identifier.
    fn role(&mut self, r: &Role) -> Option<Uuid> {
        let practitioner = r.person.as_ref().and_then(|p| self.practitioner(p));
        let organization = r.organization.as_ref().and_then(|o| {
            let ids = o.identifier.iter().map(|i| self.identifier(i)).collect();
            self.organization(o.name.as_deref(), ids)
        });
        if practitioner.is_none() && organization.is_none() {
            return None;
        }
        let location = r.location.as_ref().and_then(|l| self.location(l));
        let ids: Vec<Value> = r.identifier.iter().map(|i| self.identifier(i)).collect();
        let (request, key) = self.keyed_request(&ids, false);
        let code = r
            .role
            .as_ref()
            .and_then(|c| c.code.as_deref())
            .unwrap_or_default();
        let key = format!(
            "PractitionerRole|{}",
            key.unwrap_or_else(|| format!(
                "rol|{}|{code}|{}|{}|{}",
                practitioner.map(|p| p.to_string()).unwrap_or_default(),
                organization.map(|o| o.to_string()).unwrap_or_default(),
                r.start.as_deref().unwrap_or_default(),
                r.end.as_deref().unwrap_or_default(),
            ))
        );
        let telecom: Vec<Value> = r.telecoms.iter().map(|t| self.telecom(t)).collect();
        let period = fj!({"start": self.dt(&r.start), "end": self.dt(&r.end)});
        let role_code = r.role.as_ref().map(|c| vec![self.concept_of(c)]);
        Some(self.shared_resource("PractitionerRole", key, request, || {
            fj!({
                "identifier": ids,
                "practitioner": practitioner.map(reference),
                "organization": organization.map(reference),
                "location": location.map(|l| vec![reference(l)]),
                "code": role_code,
                "period": period,
                "telecom": telecom,
            })
        }))
    }

    /// A Device known by its instance identifier (OBX-18, EI).
    fn device(&mut self, e: &Identifier) -> Uuid {
        let ident = self.identifier(e);
        let key = format!(
            "Device|{}|{}",
            e.value.as_deref().unwrap_or_default(),
            e.authority
                .as_deref()
                .or(e.authority_id.as_deref())
                .unwrap_or_default()
        );
        self.shared_resource(
            "Device",
            key,
            Request::Update,
            || fj!({"identifier": [ident]}),
        )
    }

    fn service_request_of(&self, order: usize) -> Option<Uuid> {
        self.service_requests.get(order).copied().flatten()
    }

    fn observation_category(&self, order: Option<&Order>) -> Value {
        let lab =
            matches!(self.c.message.r#type.as_deref(), Some("ORU" | "OUL")) && order.is_some();
        if lab {
            fj!([{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory",
            }]}])
        } else {
            Value::Null
        }
    }

    fn interpretation(&self, c: &Code) -> Value {
        // Table 0078's codes are those of v3 ObservationInterpretation.
        let v3 = matches!(
            c.system.as_deref(),
            None | Some("HL70078") | Some("HL7nnnn")
        );
        if v3 && c.code.is_some() {
            fj!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                "code": &c.code,
                "display": &c.display,
            }], "text": &c.text})
        } else {
            self.concept_of(c)
        }
    }

    /// TQ1 as a Timing (the guide's TQ1[ServiceRequest] and RPT[Timing]). Timing's
    /// invariants hold: a duration only with its unit, and the total as `count`.
    fn timing(&self, t: &Timing) -> Value {
        let (duration, unit) = match (t.duration, &t.duration_unit) {
            (Some(d), Some(u)) if d >= 0.0 => (Some(d), Some(u.clone())),
            _ => (None, None),
        };
        fj!({
            "repeat": {
                "boundsPeriod": {"start": self.dt(&t.start), "end": self.dt(&t.end)},
                "count": t.occurrences,
                "duration": duration,
                "durationUnit": unit,
                "timeOfDay": &t.times,
            },
            "code": t.repeat.as_deref().map(|r| {
                let mut codings = vec![fj!({"system": "http://terminology.hl7.org/CodeSystem/v2-0335", "code": r})];
                if let Some(gts) = vocab::gts_abbreviation(r) {
                    codings.push(fj!({"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation", "code": gts}));
                }
                fj!({"coding": codings})
            }),
        })
    }

    fn quantity(&self, value: f64, units: &Option<Code>) -> Value {
        let system = units
            .as_ref()
            .and_then(|u| u.system.as_deref())
            .and_then(|s| self.code_system(s));
        fj!({
            "value": value,
            "unit": units.as_ref().and_then(|u| u.display.clone().or_else(|| u.code.clone())),
            "system": units.as_ref().and(system),
            "code": units.as_ref().and_then(|u| u.code.clone()),
        })
    }

    fn reference_range(&self, text: &str, o: &Observation) -> Value {
        // `3.5-5.1` becomes low/high too; anything else stays text.
        let mut v = fj!({"text": text});
        let t = text.trim();
        let split = t
            .char_indices()
            .skip(1)
            .find(|(_, ch)| *ch == '-')
            .map(|(i, _)| (t[..i].trim(), t[i + 1..].trim()));
        if let Some((lo, hi)) = split {
            if let (Ok(lo), Ok(hi)) = (lo.parse::<f64>(), hi.parse::<f64>()) {
                if lo.is_finite() && hi.is_finite() {
                    v["low"] = self.quantity(lo, &o.units);
                    v["high"] = self.quantity(hi, &o.units);
                }
            }
        }
        v
    }

    /// Observation.value[x], or one `component` per value when OBX-5 repeated whole values
    /// (the guide's OBX[Observation-Component] map: each with OBX-3 as its code and OBX-7
    /// as its reference range, and no value on the Observation itself).
    fn observation_value(&self, o: &Observation) -> Value {
        let Some(value) = &o.value else {
            return fj!({"dataAbsentReason": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                "code": "unknown",
            }]}});
        };
        if o.more_values.is_empty() {
            return self.value_x(value, o);
        }
        let code = if o.code.is_some() {
            self.concept(&o.code)
        } else {
            fj!({"text": "unknown"})
        };
        let components: Vec<Value> = std::iter::once(value)
            .chain(&o.more_values)
            .map(|v| {
                let mut c = fj!({
                    "code": code.clone(),
                    "referenceRange": o.reference_range.as_ref().map(|r| vec![self.reference_range(r, o)]),
                });
                merge_into(&mut c, self.value_x(v, o));
                c
            })
            .collect();
        fj!({"component": components})
    }

    /// One OBX-5 value as the `value[x]` element that fits its type.
    fn value_x(&self, value: &ObxValue, o: &Observation) -> Value {
        match value {
            ObxValue::Number(n) if n.is_finite() => {
                fj!({"valueQuantity": self.quantity(*n, &o.units)})
            }
            ObxValue::Number(_) => fj!({}),
            ObxValue::Coded(c) => fj!({"valueCodeableConcept": self.concept_of(c)}),
            ObxValue::Structured(s) => {
                let n1 = s.number.filter(|n| n.is_finite());
                let n2 = s.number2.filter(|n| n.is_finite());
                match (s.separator.as_deref(), n1, n2) {
                    (Some(":") | Some("/"), Some(a), Some(b)) => fj!({"valueRatio": {
                        "numerator": {"value": a}, "denominator": {"value": b}
                    }}),
                    (Some("-"), Some(a), Some(b)) => fj!({"valueRange": {
                        "low": self.quantity(a, &o.units), "high": self.quantity(b, &o.units)
                    }}),
                    (_, Some(a), _) => {
                        let mut q = self.quantity(a, &o.units);
                        if let Some(cmp) = s
                            .comparator
                            .as_deref()
                            .filter(|c| ["<", "<=", ">", ">="].contains(c))
                        {
                            q["comparator"] = fj!(cmp);
                        }
                        fj!({"valueQuantity": q})
                    }
                    _ => fj!({}),
                }
            }
            ObxValue::Text(t) => match o.value_type.as_deref() {
                Some("DT") | Some("DTM") | Some("TS") if t.len() >= 4 => {
                    fj!({"valueDateTime": self.datetime(t)})
                }
                Some("TM") => fj!({"valueTime": t}),
                _ => fj!({"valueString": t}),
            },
        }
    }

    // ----- other clinical resources -----

    fn allergies(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        for (n, a) in self.c.allergies.iter().enumerate() {
            // IAM-7 identifies the allergy record; AL1 has only its allergen.
            let key = match (&a.identifier, &a.allergen) {
                (Some(i), _) if i.value.is_some() => format!(
                    "id|{}|{}|{}",
                    i.authority.as_deref().unwrap_or_default(),
                    i.authority_id.as_deref().unwrap_or_default(),
                    i.value.as_deref().unwrap_or_default()
                ),
                (_, Some(c)) => format!(
                    "{}|{}|{}",
                    c.system.as_deref().unwrap_or_default(),
                    c.code.as_deref().unwrap_or_default(),
                    c.display.as_deref().unwrap_or_default()
                ),
                _ => n.to_string(),
            };
            let id = self.uuid(&["AllergyIntolerance", &patient.to_string(), &key]);
            let type_code = a.r#type.as_ref().and_then(|t| t.code.as_deref());
            let severity = a.severity.as_ref().and_then(|s| s.code.as_deref());
            let (clinical, verification) = vocab::allergy_status(
                a.action.as_deref(),
                a.status.as_ref().and_then(|s| s.code.as_deref()),
            );
            let mut reactions = Vec::new();
            if !a.reactions.is_empty() {
                reactions.push(fj!({
                    "manifestation": a.reactions.iter().map(|r| fj!({"text": r})).collect::<Vec<_>>(),
                    "severity": severity.and_then(vocab::reaction_severity),
                }));
            }
            for r in &a.reaction_details {
                let manifestation = match (&r.code, &r.description) {
                    (Some(_), _) => self.concept(&r.code),
                    (None, Some(d)) => fj!({"text": d}),
                    (None, None) => continue,
                };
                reactions.push(fj!({
                    "manifestation": [manifestation],
                    "severity": r.severity.as_ref().and_then(|s| s.code.as_deref()).and_then(vocab::reaction_severity),
                    "description": &r.description,
                }));
            }
            let onset = self.dt(&a.identified_at);
            let recorder = self.allergy_reporter(a, patient);
            let notes = self.annotations(&a.notes);
            let resource = fj!({
                "identifier": a.identifier.as_ref().map(|i| vec![self.identifier(i)]),
                "clinicalStatus": clinical.map(|c| fj!({"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": c,
                }]})),
                "verificationStatus": verification.map(|v| fj!({"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": v,
                }]})),
                "type": type_code.and_then(vocab::allergy_category).map(|_| "allergy"),
                "category": type_code.and_then(vocab::allergy_category).map(|c| vec![c]),
                "criticality": severity.and_then(vocab::allergy_criticality),
                "code": self.concept(&a.allergen),
                "patient": reference(patient),
                "encounter": opt_ref(self.encounter),
                "onsetString": if onset.is_null() { a.onset_text.as_deref() } else { None },
                "onsetDateTime": onset,
                "recordedDate": self.dt(&a.reported_at),
                "recorder": recorder.map(reference),
                "reaction": reactions,
                "note": notes,
            });
            self.push("AllergyIntolerance", id, resource, Request::Update);
        }
    }

    fn conditions(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        let mut diagnoses = Vec::new();
        for (n, d) in self.c.diagnoses.iter().enumerate() {
            let ids: Vec<Value> = d.identifier.iter().map(|i| self.identifier(i)).collect();
            let (request, key) = self.keyed_request(&ids, false);
            let key = key.unwrap_or_else(|| {
                format!(
                    "{patient}|{}|{}|{n}",
                    self.encounter.map(|e| e.to_string()).unwrap_or_default(),
                    d.code
                        .as_ref()
                        .and_then(|c| c.code.as_deref())
                        .unwrap_or_default()
                )
            });
            let id = self.uuid(&["Condition", &key]);
            let asserter = self.practitioners(&d.clinicians).first().copied();
            let resource = fj!({
                "identifier": ids,
                "category": [{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                    "code": "encounter-diagnosis",
                }]}],
                "code": self.concept(&d.code),
                "subject": reference(patient),
                "encounter": opt_ref(self.encounter),
                "onsetDateTime": self.dt(&d.diagnosed_at),
                "recordedDate": self.dt(&d.attested_at),
                // DG1-21 `D`: the diagnosis was recorded in error (no clinicalStatus then, con-5).
                "verificationStatus": d.action.as_deref().filter(|a| a.eq_ignore_ascii_case("D")).map(|_| fj!({"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": "entered-in-error",
                }]})),
                "asserter": opt_ref(asserter),
            });
            self.push("Condition", id, resource, request);
            diagnoses.push(fj!({
                "condition": reference(id),
                "use": d.r#type.as_deref().map(|t| {
                    let mut codings = Vec::new();
                    if let Some(role) = vocab::diagnosis_role(t) {
                        codings.push(fj!({"system": DIAGNOSIS_ROLE, "code": role}));
                    }
                    codings.push(fj!({"system": "http://terminology.hl7.org/CodeSystem/v2-0052", "code": t}));
                    fj!({"coding": codings})
                }),
                "rank": d.priority.as_deref().and_then(|p| p.trim().parse::<u32>().ok()).filter(|r| *r > 0),
            }));
        }
        // DG1[Encounter]: the visit lists its diagnoses, built after it (a Condition's id may
        // depend on the Encounter's).
        let Some(encounter) = self.encounter else {
            return;
        };
        if diagnoses.is_empty() {
            return;
        }
        if let Some(o) = self.resource_mut(encounter) {
            o.insert("diagnosis", Value::Array(diagnoses));
        }
    }

    fn procedures(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        // Ids first, so PR1-25 can point at a procedure later in the message.
        let keyed: Vec<(Uuid, Vec<Value>, Request)> = self
            .c
            .procedures
            .iter()
            .enumerate()
            .map(|(n, p)| {
                let ids: Vec<Value> = p.identifier.iter().map(|i| self.identifier(i)).collect();
                let (request, key) = self.keyed_request(&ids, false);
                let key = key.unwrap_or_else(|| {
                    format!(
                        "{patient}|{}|{}|{n}",
                        p.code
                            .as_ref()
                            .and_then(|c| c.code.as_deref())
                            .unwrap_or_default(),
                        p.performed_at.as_deref().unwrap_or_default(),
                    )
                });
                (self.uuid(&["Procedure", &key]), ids, request)
            })
            .collect();
        let proc_ids: Vec<Uuid> = keyed.iter().map(|k| k.0).collect();
        for (p, (id, ids, request)) in self.c.procedures.iter().zip(keyed) {
            // PR1[Procedure]: performers by function, the anesthesiologist first.
            let mut performers = Vec::new();
            for (people, function) in [
                (&p.anesthesiologists, Some("anesthesiologist")),
                (&p.surgeons, Some("surgeon")),
                (&p.performers, None),
            ] {
                for r in self.practitioners(people) {
                    performers.push(fj!({
                        "actor": reference(r),
                        "function": function.map(|f| fj!({"text": f})),
                    }));
                }
            }
            let mut code = self.concept(&p.code);
            if let (Some(text), Value::Object(o)) = (&p.description, &mut code) {
                o.entry("text")
                    .or_insert_with(|| Value::String(text.clone()));
            }
            let code = if code.is_null() {
                p.description
                    .as_ref()
                    .map_or(Value::Null, |t| fj!({"text": t}))
            } else {
                code
            };
            // PR1-7 minutes make the time a period.
            let end = match (&p.performed_at, p.minutes) {
                (Some(start), Some(m)) => seconds_of(m, None).and_then(|s| add_seconds(start, s)),
                _ => None,
            };
            let performed = if end.is_some() {
                fj!({"performedPeriod": {"start": self.dt(&p.performed_at), "end": self.dt(&end)}})
            } else {
                fj!({"performedDateTime": self.dt(&p.performed_at)})
            };
            let location = p.location.as_ref().and_then(|l| self.location(l));
            let parent = p.parent.as_ref().and_then(|parent| {
                self.c
                    .procedures
                    .iter()
                    .position(|q| {
                        q.identifier.as_ref().is_some_and(|i| {
                            i.value == parent.value && i.authority == parent.authority
                        })
                    })
                    .map(|k| proc_ids[k])
            });
            let mut resource = fj!({
                "identifier": ids,
                "status": "completed",
                "category": self.concept(&p.functional_type),
                "code": code,
                "subject": reference(patient),
                "encounter": opt_ref(self.encounter),
                "performer": performers,
                "location": location.map(reference),
                "reasonCode": p.reason.as_ref().map(|c| vec![self.concept_of(c)]),
                "partOf": parent.map(|r| vec![reference(r)]),
            });
            merge_into(&mut resource, performed);
            self.push("Procedure", id, resource, request);
        }
    }

    /// The id, identifiers and request of immunization `n` (also what its Observations'
    /// `partOf` points at, built before it).
    fn immunization_key(&self, n: usize, patient: Uuid) -> Option<(Uuid, Vec<Value>, Request)> {
        let im = self.c.immunizations.get(n)?;
        let ids: Vec<Value> = im.identifiers.iter().map(|i| self.identifier(i)).collect();
        let (request, key) = self.keyed_request(&ids, false);
        let id = self.uuid(&[
            "Immunization",
            &key.unwrap_or_else(|| {
                format!(
                    "{patient}|{}|{}|{n}",
                    im.vaccine
                        .as_ref()
                        .and_then(|c| c.code.as_deref())
                        .unwrap_or_default(),
                    im.administered_at.as_deref().unwrap_or_default()
                )
            }),
        ]);
        Some((id, ids, request))
    }

    fn immunizations(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        for (n, im) in self.c.immunizations.iter().enumerate() {
            let Some((id, ids, request)) = self.immunization_key(n, patient) else {
                continue;
            };
            let manufacturer = im.manufacturer.clone().and_then(|m| {
                let ids = m
                    .code
                    .iter()
                    .map(|c| fj!({"system": m.system.as_deref().and_then(|s| self.code_system(s)), "value": c}))
                    .collect();
                self.organization(m.display.as_deref().or(m.code.as_deref()), ids)
            });
            let administering = self.practitioners(&im.performers);
            let ordering = self.practitioners(&im.ordering_provider);
            let mut performers: Vec<Value> = administering
                .into_iter()
                .map(|p| fj!({"function": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "AP"}]}, "actor": reference(p)}))
                .collect();
            performers.extend(ordering.into_iter().map(|p| fj!({"function": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0443", "code": "OP"}]}, "actor": reference(p)})));
            let status =
                vocab::immunization_status(im.completion_status.as_deref(), im.action.as_deref());
            // RXA-9 (NIP001, as the CDC's immunization guide reads it, which RXA[Immunization]
            // defers to): `00` a new record from the one who gave it; any other code a
            // historical record from another source — not the primary source, and its origin.
            let origin = im.notes.iter().find(|c| {
                c.system
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("NIP001"))
            });
            let primary = origin.is_none_or(|c| c.code.as_deref() == Some("00"));
            // VXU's ORDER.OBSERVATION: the funding program eligibility (LOINC 64994-7) and
            // the funding source (30963-3) are the Immunization's own elements too, as the
            // VXU_V04 map's note says.
            let about = |loinc: &'static str| {
                self.c
                    .observations
                    .iter()
                    .filter(move |o| {
                        o.immunization == Some(n)
                            && o.code.as_ref().is_some_and(|c| {
                                c.code.as_deref() == Some(loinc)
                                    && c.system
                                        .as_deref()
                                        .is_some_and(|s| s.eq_ignore_ascii_case("LN"))
                            })
                    })
                    .filter_map(|o| match &o.value {
                        Some(ObxValue::Coded(c)) => Some(c),
                        _ => None,
                    })
            };
            let eligibility: Vec<Value> = about("64994-7").map(|c| self.concept_of(c)).collect();
            let funding = about("30963-3").next().map(|c| self.concept_of(c));
            // RXA-27 with the RXA-28 address.
            let location = im.location.as_ref().and_then(|l| self.location(l));
            if let (Some(loc), Some(a)) = (location, &im.location_address) {
                let address = self.address(a);
                if let Some(o) = self.resource_mut(loc) {
                    o.entry("address").or_insert(address);
                }
            }
            let resource = fj!({
                "identifier": ids,
                "status": status,
                "statusReason": if status == "not-done" { im.refusal_reasons.first().map(|c| self.concept_of(c)) } else { None },
                // Immunization.vaccineCode is required.
                "vaccineCode": if im.vaccine.is_some() { self.concept(&im.vaccine) } else { fj!({"text": "unknown"}) },
                "patient": reference(patient),
                "encounter": opt_ref(self.encounter),
                // Immunization.occurrence[x] is required.
                "occurrenceDateTime": im.administered_at.as_deref().map(|t| self.datetime(t)),
                "occurrenceString": if im.administered_at.is_none() { Some("unknown") } else { None },
                "primarySource": primary,
                "reportOrigin": origin.filter(|_| !primary).map(|c| self.concept_of(c)),
                "manufacturer": opt_ref(manufacturer),
                "lotNumber": im.lot_numbers.first(),
                "expirationDate": im.expires.as_deref().map(|d| d.get(..10).unwrap_or(d)),
                "site": self.concept(&im.site),
                "route": self.concept(&im.route),
                "doseQuantity": im.amount.filter(|a| a.is_finite() && *a != 999.0).map(|a| self.quantity(a, &im.units)),
                "performer": performers,
                "reasonCode": im.indications.iter().map(|c| self.concept_of(c)).collect::<Vec<_>>(),
                "programEligibility": eligibility,
                "fundingSource": funding,
                // RXA-22 when the record is an addition (RXA-21 `A`), as RXA[Immunization] says.
                "recorded": if im.action.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("A")) { self.dt(&im.entered_at) } else { Value::Null },
                "location": location.map(reference),
                "note": im.notes.iter().filter_map(|c| c.display.clone().or_else(|| c.text.clone()).or_else(|| c.code.clone())).map(|t| fj!({"text": t})).collect::<Vec<_>>(),
            });
            self.push("Immunization", id, resource, request);
        }
    }

    /// IAM-14/15, as IAM[AllergyIntolerance] says: the patient (IAM-15 `SEL`), a
    /// RelatedPerson (another relationship), or a Practitioner known by name (none).
    fn allergy_reporter(
        &mut self,
        a: &crate::record::clinical::Allergy,
        patient: Uuid,
    ) -> Option<Uuid> {
        let name = a.reported_by.as_ref()?;
        let relationship = a
            .reporter_relationship
            .as_ref()
            .and_then(|r| r.code.as_deref());
        match relationship {
            Some(r) if r.eq_ignore_ascii_case("SEL") => Some(patient),
            Some(_) => {
                let contact = Contact {
                    names: vec![name.clone()],
                    relationship: a.reporter_relationship.clone(),
                    ..Contact::default()
                };
                let key = format!(
                    "{patient}|reporter|{}|{}",
                    name.family.as_deref().unwrap_or_default(),
                    name.given.join(" ")
                );
                let resource = self.related_person(patient, &contact);
                Some(self.shared_resource("RelatedPerson", key, Request::Update, || resource))
            }
            None => self.practitioner(&Person {
                id: None,
                name: Some(name.clone()),
            }),
        }
    }

    fn coverages(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        for (n, ins) in self.c.insurance.iter().enumerate() {
            let company_ids: Vec<Value> =
                ins.company_ids.iter().map(|i| self.identifier(i)).collect();
            let payor = self.organization(ins.company_name.as_deref(), company_ids);
            // IN1-2 (CWE[Identifier]), the policy number, IN2-61 the member number.
            let mut ids: Vec<Value> = ins
                .plan
                .iter()
                .filter_map(|p| {
                    let value = p.code.as_ref()?;
                    Some(fj!({"value": value, "system": p.system.as_deref().and_then(|s| self.code_system(s))}))
                })
                .collect();
            ids.extend(ins.policy_number.iter().map(
                |p| fj!({"value": p, "type": {"coding": [{"system": V2_0203, "code": "MB"}]}}),
            ));
            ids.extend(ins.member_number.iter().map(|m| self.identifier(m)));
            let id = self.uuid(&[
                "Coverage",
                &patient.to_string(),
                ins.plan
                    .as_ref()
                    .and_then(|p| p.code.as_deref())
                    .unwrap_or_default(),
                ins.policy_number.as_deref().unwrap_or_default(),
                &n.to_string(),
            ]);
            let mut classes = Vec::new();
            if let Some(plan) = ins.plan.as_ref().and_then(|p| p.code.clone()) {
                classes.push(fj!({
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "plan"}]},
                    "value": plan,
                    "name": ins.plan.as_ref().and_then(|p| p.display.clone()),
                }));
            }
            if let Some(group) = &ins.group_number {
                classes.push(fj!({
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class", "code": "group"}]},
                    "value": group,
                    "name": &ins.group_name,
                }));
            }
            // The insured, when not the patient (IN1-17 other than SEL): a RelatedPerson.
            let own = ins
                .relationship
                .as_ref()
                .and_then(|r| r.code.as_deref())
                .is_none_or(|c| c.eq_ignore_ascii_case("SEL") || c == "01");
            // IN2's program numbers are the patient's; its other ids the insured's.
            let mut patient_ids: Vec<Value> =
                ins.patient_ids.iter().map(|i| self.identifier(i)).collect();
            if own {
                patient_ids.extend(ins.insured_more_ids.iter().map(|i| self.identifier(i)));
            }
            self.add_identifiers(patient, patient_ids);
            let subscriber = if own {
                Some(patient)
            } else {
                let rid = self.uuid(&["RelatedPerson", &id.to_string(), "insured"]);
                let insured_ids: Vec<Value> = ins
                    .insured_ids
                    .iter()
                    .chain(&ins.insured_more_ids)
                    .map(|i| self.identifier(i))
                    .collect();
                let resource = fj!({
                    "identifier": insured_ids,
                    "active": true,
                    "patient": reference(patient),
                    "relationship": [self.mapped_concept(&ins.relationship, |c| {
                        vocab::relationship(c).map(|(s, c, _)| (s.to_string(), c.to_string()))
                    })],
                    "name": ins.insured_name.as_ref().map(|n| vec![self.name(n)]),
                    "birthDate": ins.insured_birth_date.as_deref().map(|d| d.get(..10).unwrap_or(d)),
                    "gender": ins.insured_sex.as_deref().and_then(vocab::gender),
                    "address": ins.insured_address.as_ref().map(|a| vec![self.address(a)]),
                });
                self.push("RelatedPerson", rid, resource, Request::Update);
                Some(rid)
            };
            let holder_ids: Vec<Value> = ins
                .policy_holder_ids
                .iter()
                .map(|i| self.identifier(i))
                .collect();
            let holder = self.organization(ins.policy_holder.as_deref(), holder_ids);
            let resource = fj!({
                "identifier": ids,
                "status": "active",
                "policyHolder": opt_ref(holder),
                "subscriber": opt_ref(subscriber),
                                // IN1-15 by CWE[CodeableConcept]: table 0086 is user-defined, so a code
                // without CWE-3 gets no system.
                "type": self.concept(&ins.plan_type),
                "subscriberId": ins.insured_ids.first().and_then(|i| i.value.clone()),
                "beneficiary": reference(patient),
                "relationship": self.mapped_concept(&ins.relationship, |c| {
                    vocab::subscriber_relationship(c).map(|r| {
                        ("http://terminology.hl7.org/CodeSystem/subscriber-relationship".to_string(), r.to_string())
                    })
                }),
                "period": {"start": self.dt(&ins.start), "end": self.dt(&ins.end)},
                // Coverage.payor is required: without a company the patient is named.
                "payor": [payor.map_or_else(|| reference(patient), reference)],
                "class": classes,
            });
            self.push("Coverage", id, resource, Request::Update);
            self.coverages.push(id);
        }
    }

    /// Notes as Annotations (NTE[…]: NTE-3 text, NTE-5 authorReference, NTE-6 time).
    fn annotations(&mut self, notes: &[Note]) -> Vec<Value> {
        notes
            .iter()
            .map(|n| {
                let author = n.author.as_ref().and_then(|p| self.practitioner(p));
                fj!({"text": &n.text, "authorReference": author.map(reference), "time": self.dt(&n.at)})
            })
            .collect()
    }

    /// The members of a resource already in the Bundle, to complete it.
    fn resource_mut(&mut self, id: Uuid) -> Option<&mut Map> {
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(Entry {
                resource: Value::Object(o),
                ..
            }) => Some(o),
            _ => None,
        }
    }

    /// Adds identifiers to a resource already built, leaving out values it already has.
    fn add_identifiers(&mut self, id: Uuid, more: Vec<Value>) {
        let Some(o) = self.resource_mut(id) else {
            return;
        };
        let Value::Array(ids) = o
            .entry("identifier")
            .or_insert_with(|| Value::Array(Vec::new()))
        else {
            return;
        };
        for m in more {
            if !ids.iter().any(|i| i["value"] == m["value"]) {
                ids.push(m);
            }
        }
    }

    /// Referrals (RF1) as ServiceRequests in the category SNOMED CT 3457005 "Patient referral",
    /// with their PRD providers as PractitionerRoles: the referring one (RP) requests, the
    /// referred-to ones (RT) perform. The guide has no RF1 or PRD map yet; fields follow their
    /// meaning in the v2 standard (chapter 11).
    fn referrals(&mut self) {
        if self.patient.is_none() {
            return;
        }
        for (n, rf) in self.c.referrals.iter().enumerate() {
            let mut ids = vec![self.typed_identifier(&rf.originating_id, "PLAC")];
            ids.extend(rf.external_ids.iter().map(|i| self.identifier(i)));
            ids.retain(|v| !v.is_null());
            let (request, key) = self.keyed_request(&ids, false);
            let id = self.uuid(&[
                "ServiceRequest",
                &key.unwrap_or_else(|| format!("message|{}|referral|{n}", self.message_key())),
            ]);
            let mut requester = None;
            let mut performers = Vec::new();
            for p in &rf.providers {
                let Some(role) = self.referral_provider(p) else {
                    continue;
                };
                let has = |code: &str| {
                    p.roles.iter().any(|r| {
                        r.code
                            .as_deref()
                            .is_some_and(|c| c.eq_ignore_ascii_case(code))
                    })
                };
                if has("RP") && requester.is_none() {
                    requester = Some(role);
                } else if has("RT") {
                    performers.push(role);
                }
            }
            if let Some(o) = &rf.authorized_provider {
                let ids = o.identifier.iter().map(|i| self.identifier(i)).collect();
                performers.extend(self.organization(o.name.as_deref(), ids));
            }
            if let Some(p) = &rf.authorized_professional {
                performers.extend(self.practitioner(p));
            }
            let mut reasons: Vec<Value> = rf.reasons.iter().map(|c| self.concept_of(c)).collect();
            if let Some(text) = &rf.reason_text {
                match reasons.first_mut().and_then(Value::as_object_mut) {
                    Some(first) if !first.contains_key("text") => {
                        first.insert("text", Value::String(text.clone()));
                    }
                    _ => reasons.push(fj!({"text": text})),
                }
            }
            let mut notes: Vec<Value> = rf.comment.iter().map(|t| fj!({"text": t})).collect();
            notes.extend(self.annotations(&rf.notes));
            let referral = || {
                fj!({"coding": [{
                    "system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"
                }]})
            };
            // What is requested: the referral type (RF1-3), else a referral as such — a code
            // is needed anyway for orderDetail (prr-1).
            let code = rf
                .r#type
                .as_ref()
                .map_or_else(referral, |c| self.concept_of(c));
            let resource = fj!({
                "identifier": ids,
                "status": vocab::referral_status(rf.status.as_ref().and_then(|s| s.code.as_deref())),
                "intent": "order",
                "category": [referral()],
                "code": code,
                "priority": rf.priority.as_ref().and_then(|p| p.code.as_deref()).and_then(vocab::request_priority),
                "orderDetail": rf.disposition.iter().map(|c| self.concept_of(c)).collect::<Vec<_>>(),
                "quantityQuantity": rf.authorized_units.map(|v| fj!({"value": v})),
                "subject": opt_ref(self.patient),
                "encounter": opt_ref(self.encounter),
                "occurrencePeriod": {"start": self.dt(&rf.effective), "end": self.dt(&rf.expires)},
                "authoredOn": self.dt(&rf.processed_at),
                "requester": requester.map(reference),
                "performer": performers.into_iter().map(reference).collect::<Vec<_>>(),
                "locationCode": rf.category.as_ref().map(|c| vec![self.concept_of(c)]),
                "reasonCode": reasons,
                "insurance": self.coverages.iter().copied().map(reference).collect::<Vec<_>>(),
                "note": notes,
            });
            self.push("ServiceRequest", id, resource, request);
        }
    }

    /// A PRD provider: its Practitioner (PRD-2 name, PRD-7 ids, PRD-3 address) in a
    /// PractitionerRole with the PRD-1 roles for the PRD-10 organization at the PRD-4 location.
    fn referral_provider(&mut self, p: &ReferralProvider) -> Option<Uuid> {
        let person = Person {
            id: p.identifiers.first().cloned(),
            name: p.name.clone(),
        };
        let practitioner = self.practitioner(&person)?;
        let more_ids: Vec<Value> = p
            .identifiers
            .iter()
            .skip(1)
            .map(|i| self.identifier(i))
            .collect();
        let addresses: Vec<Value> = p.addresses.iter().map(|a| self.address(a)).collect();
        // Completes the Practitioner made (or met) above with what only PRD gives.
        self.push(
            "Practitioner",
            practitioner,
            fj!({"address": addresses}),
            Request::Update,
        );
        self.add_identifiers(practitioner, more_ids);
        let organization = p.organization.as_ref().and_then(|o| {
            let ids = o.identifier.iter().map(|i| self.identifier(i)).collect();
            self.organization(o.name.as_deref(), ids)
        });
        let location = p.location.as_ref().and_then(|l| self.location(l));
        let codes: Vec<Value> = p
            .roles
            .iter()
            .map(|c| {
                let mut v = self.concept_of(c);
                if let Some((system, code, display)) =
                    c.code.as_deref().and_then(vocab::provider_role)
                {
                    if let Some(Value::Array(codings)) = v.get_mut("coding") {
                        codings
                            .insert(0, fj!({"system": system, "code": code, "display": display}));
                    }
                }
                v
            })
            .collect();
        let role_key: Vec<&str> = p.roles.iter().filter_map(|c| c.code.as_deref()).collect();
        let key = format!(
            "PractitionerRole|prd|{practitioner}|{}|{}|{}",
            role_key.join(","),
            organization.map(|o| o.to_string()).unwrap_or_default(),
            location.map(|l| l.to_string()).unwrap_or_default(),
        );
        let telecom: Vec<Value> = p.telecoms.iter().map(|t| self.telecom(t)).collect();
        let period = fj!({"start": self.dt(&p.start), "end": self.dt(&p.end)});
        Some(
            self.shared_resource("PractitionerRole", key, Request::Update, || {
                fj!({
                    "practitioner": reference(practitioner),
                    "organization": organization.map(reference),
                    "location": location.map(|l| vec![reference(l)]),
                    "code": codes,
                    "period": period,
                    "telecom": telecom,
                })
            }),
        )
    }

    fn appointment(&mut self) {
        let Some(a) = self.c.appointment.as_ref() else {
            return;
        };
        let ids = self.placer_filler(&a.placer_id, &a.filler_id);
        let (request, key) = self.keyed_request(&ids, false);
        let id = self.uuid(&[
            "Appointment",
            &key.unwrap_or_else(|| format!("message|{}", self.message_key())),
        ]);
        let mut participants = Vec::new();
        if let Some(p) = self.patient {
            participants.push(fj!({"actor": reference(p), "status": "accepted"}));
        }
        // AIP, AIL, AIG: each with its type, period and status.
        // Who and where are booked also perform the booked services (below).
        let mut performers = Vec::new();
        let mut places = Vec::new();
        for b in &a.personnel {
            if let Some(p) = self.practitioner(&b.what) {
                participants.push(self.booked_participant(p, b));
                performers.push(p);
            }
        }
        // AIL-4 says what kind of place it is (table 0305: clinic, department, home, …): the
        // Location's type, not a role in the appointment.
        for b in &a.locations {
            if let Some(loc) = self.location(&b.what) {
                if let Some(kind) = b.r#type.as_ref().map(|t| self.concept_of(t)) {
                    if let Some(o) = self.resource_mut(loc) {
                        o.entry("type").or_insert_with(|| Value::Array(vec![kind]));
                    }
                }
                let mut participant = self.booked_participant(loc, b);
                if let Value::Object(o) = &mut participant {
                    o.remove("type");
                }
                participants.push(participant);
                places.push(loc);
            }
        }
        // An AIG resource (equipment, mostly) as a Device known by AIG-3. The guide points
        // AIG-3 at a Location's identifier; a Device is what a general resource is.
        for b in &a.resources {
            let Some(code) = b.what.code.as_deref() else {
                continue;
            };
            let ident = Identifier {
                value: Some(code.to_string()),
                authority: b.what.system.clone(),
                ..Identifier::default()
            };
            let device = self.device(&ident);
            if let (Some(name), Some(o)) = (b.what.display.as_ref(), self.resource_mut(device)) {
                o.entry("deviceName")
                    .or_insert_with(|| fj!([{"name": name, "type": "user-friendly-name"}]));
            }
            participants.push(self.booked_participant(device, b));
            performers.push(device);
        }
        // SCH-12/16/20: the placer's and filler's contacts and who entered it.
        for p in self.practitioners(&a.contacts) {
            participants.push(fj!({"actor": reference(p), "status": "accepted"}));
        }
        if participants.is_empty() {
            // Appointment.participant is required; with nobody named, the need stays.
            participants.push(fj!({"status": "needs-action", "type": [{"text": "unknown"}]}));
        }
        let start = self.instant(&a.start);
        let end = self.instant(&a.end);
        let mut status = vocab::appointment_status(
            a.status.as_ref().and_then(|s| s.code.as_deref()),
            self.c.message.event.as_deref(),
        );
        // app-3: only proposed, cancelled or waitlisted appointments may lack start and end.
        let (start, end) = if start.is_null() || end.is_null() {
            if !matches!(status, "proposed" | "cancelled" | "waitlist") {
                status = "proposed";
            }
            (Value::Null, Value::Null)
        } else {
            (start, end)
        };
        let minutes = match (
            &a.duration,
            a.duration_units.as_ref().and_then(|u| u.code.as_deref()),
        ) {
            (Some(d), None | Some("min") | Some("MIN") | Some("m"))
                if *d > 0.0 && d.fract() == 0.0 =>
            {
                fj!(*d as i64)
            }
            _ => Value::Null,
        };
        // SCH[ServiceRequest] and AIS[ServiceRequest]: what was booked, as ServiceRequests.
        let based_on = self.scheduled_orders(a, id, &performers, &places);
        let resource = fj!({
            "identifier": ids,
            "status": status,
            "basedOn": based_on.into_iter().map(reference).collect::<Vec<_>>(),
            "cancelationReason": if status == "cancelled" { self.concept(&a.event_reason) } else { Value::Null },
            "serviceType": a.services.iter().map(|s| self.concept_of(&s.what)).collect::<Vec<_>>(),
            "appointmentType": self.concept(&a.r#type),
            "reasonCode": [self.concept(&a.reason)],
            "start": start,
            "end": end,
            "minutesDuration": minutes,
            "comment": if a.notes.is_empty() { None } else { Some(a.notes.iter().map(|n| n.text.as_str()).collect::<Vec<_>>().join("\n")) },
            "participant": participants,
        });
        self.push("Appointment", id, resource, request);
    }

    /// A participant booked by AIG/AIL/AIP: its type, period (start, start + duration) and
    /// status (table 0278 → participationstatus).
    fn booked_participant<T>(&self, actor: Uuid, b: &Booked<T>) -> Value {
        let end = match (&b.start, b.duration) {
            (Some(start), Some(d)) => {
                let unit = b.duration_units.as_ref().and_then(|u| u.code.as_deref());
                seconds_of(d, unit).and_then(|s| add_seconds(start, s))
            }
            _ => None,
        };
        let status = match b
            .status
            .as_ref()
            .and_then(|s| s.code.as_deref())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("cancelled" | "deleted" | "noshow" | "blocked") => "declined",
            Some("pending" | "waitlist" | "overbook") => "tentative",
            _ => "accepted",
        };
        fj!({
            "actor": reference(actor),
            "type": b.r#type.as_ref().map(|t| vec![self.concept_of(t)]),
            "period": {"start": self.dt(&b.start), "end": self.dt(&end)},
            "status": status,
        })
    }

    /// The ServiceRequests an appointment books (the SIU message map: SCH[ServiceRequest] for
    /// each, AIS[ServiceRequest] one per AIS): SCH-26/27 order numbers, the status from SCH-25,
    /// the service AIS-3 as the code (the guide also lists it as an identifier; it names the
    /// test, not the order), AIS-4 start and AIS-7/8 duration, else the appointment's times.
    /// The first carries the order numbers and is keyed by them; further AIS are keyed by the
    /// appointment and their place, so two services never claim one order number. The booked
    /// personnel and equipment (AIP, AIG) are their desired performers and the booked
    /// locations (AIL) their requested locations.
    fn scheduled_orders(
        &mut self,
        a: &crate::record::clinical::Appointment,
        appointment: Uuid,
        performers: &[Uuid],
        places: &[Uuid],
    ) -> Vec<Uuid> {
        let Some(patient) = self.patient else {
            return Vec::new();
        };
        let ids = self.placer_filler(&a.placer_order, &a.filler_order);
        if a.services.is_empty() && ids.is_empty() {
            return Vec::new();
        }
        let status = match a
            .status
            .as_ref()
            .and_then(|s| s.code.as_deref())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("complete") => "completed",
            Some("cancelled" | "discontinued") => "revoked",
            Some("deleted") => "entered-in-error",
            _ => "active",
        };
        let none = crate::record::clinical::Booked::<Code>::default();
        let services: Vec<&crate::record::clinical::Booked<Code>> = if a.services.is_empty() {
            vec![&none]
        } else {
            a.services.iter().collect()
        };
        let mut out = Vec::new();
        for (n, s) in services.into_iter().enumerate() {
            let (request, key) = if n == 0 {
                self.keyed_request(&ids, false)
            } else {
                (Request::Update, None)
            };
            let id = self.uuid(&[
                "ServiceRequest",
                &key.unwrap_or_else(|| format!("appointment|{appointment}|{n}")),
            ]);
            let (start, end) = match &s.start {
                Some(start) => {
                    let unit = s.duration_units.as_ref().and_then(|u| u.code.as_deref());
                    let end = s
                        .duration
                        .and_then(|d| seconds_of(d, unit))
                        .and_then(|secs| add_seconds(start, secs));
                    (Some(start.clone()), end)
                }
                None => (a.start.clone(), a.end.clone()),
            };
            let resource = fj!({
                "identifier": if n == 0 { ids.clone() } else { Vec::new() },
                "status": status,
                "intent": "order",
                "code": s.what.code.as_ref().or(s.what.display.as_ref()).map(|_| self.concept_of(&s.what)),
                "subject": reference(patient),
                "encounter": opt_ref(self.encounter),
                "occurrencePeriod": {"start": self.dt(&start), "end": self.dt(&end)},
                "performer": performers.iter().copied().map(reference).collect::<Vec<_>>(),
                "locationReference": places.iter().copied().map(reference).collect::<Vec<_>>(),
            });
            self.push("ServiceRequest", id, resource, request);
            out.push(id);
        }
        out
    }

    fn document(&mut self) {
        let Some(d) = self.c.document.as_ref() else {
            return;
        };
        let master = self.typed_identifier(&d.identifier, "FILL");
        let mut ids: Vec<Value> = d.placer_ids.iter().map(|i| self.identifier(i)).collect();
        // TXA-16 as ST[Identifier].
        ids.extend(d.file_name.iter().map(|f| fj!({"value": f})));
        let mut keyed = vec![master.clone()];
        keyed.extend(ids.iter().cloned());
        let (request, key) = self.keyed_request(&keyed, false);
        let id = self.uuid(&[
            "DocumentReference",
            &key.unwrap_or_else(|| format!("message|{}", self.message_key())),
        ]);
        let authors = self.practitioners(&d.authors);
        let authenticator = self.practitioners(&d.authenticators).into_iter().next();
        // TXA's order (MDM's COMMON_ORDER) is the document's context.related.
        let related: Vec<Value> = self
            .service_requests
            .iter()
            .flatten()
            .copied()
            .map(reference)
            .collect();
        let mut content = Vec::new();
        for att in &d.attachments {
            let content_type = match (att.r#type.as_deref(), att.subtype.as_deref()) {
                (Some(t), Some(s)) => Some(format!(
                    "{}/{}",
                    t.to_ascii_lowercase(),
                    s.to_ascii_lowercase()
                )),
                _ => None,
            };
            let data = att.data.as_deref().map(|data| {
                if att
                    .encoding
                    .as_deref()
                    .is_some_and(|e| e.eq_ignore_ascii_case("Base64"))
                {
                    data.chars()
                        .filter(|c| !c.is_whitespace())
                        .collect::<String>()
                } else {
                    base64::engine::general_purpose::STANDARD.encode(data.as_bytes())
                }
            });
            content.push(fj!({"attachment": {"contentType": content_type, "data": data}}));
        }
        if let Some(text) = &d.text {
            content.push(fj!({"attachment": {
                "contentType": "text/plain",
                "data": base64::engine::general_purpose::STANDARD.encode(text.as_bytes()),
            }}));
        }
        if content.is_empty() {
            // DocumentReference.content is required: the document is named, not included.
            content.push(fj!({"attachment": {"title": d.file_name.clone().unwrap_or_else(|| "document".into())}}));
        }
        let doc_status = match d.completion_status.as_deref() {
            Some("AU") | Some("LA") => Some("final"),
            Some("IP") | Some("IN") | Some("PA") | Some("DI") | Some("DO") => Some("preliminary"),
            _ => None,
        };
        let resource = fj!({
            "masterIdentifier": if master.is_null() { Value::Null } else { master },
            "identifier": ids,
            "status": if d.availability.as_deref() == Some("OB") || d.completion_status.as_deref() == Some("OB") { "superseded" } else { "current" },
            "docStatus": doc_status,
            "type": self.concept(&d.r#type),
            "subject": opt_ref(self.patient),
            // TXA-6 as the guide says, else the activity time TXA-4.
            "date": self.instant(if d.originated_at.is_some() { &d.originated_at } else { &d.activity_at }),
            "author": authors.into_iter().map(reference).collect::<Vec<_>>(),
            "authenticator": authenticator.map(reference),
            "description": &d.title,
            "securityLabel": d.confidentiality.as_ref().map(|c| vec![fj!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0272", "code": c
            }]})]),
            "content": content,
            "context": {"encounter": self.encounter.map(|e| vec![reference(e)]), "related": related},
        });
        self.push("DocumentReference", id, resource, request);
    }

    /// EVN as the guide's EVN[Provenance]: who (EVN-5) recorded what (the message's focus),
    /// when (EVN-2, else MSH-7), why (EVN-4), where (EVN-7); only with an operator, since an
    /// agent is required.
    fn provenance(&mut self) {
        let m = &self.c.message;
        if m.operators.is_empty() {
            return;
        }
        let recorded = match self.instant(&m.event_at) {
            Value::Null => self.instant(&m.sent_at),
            v => v,
        };
        let targets: Vec<Value> = self
            .entries
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    "Patient"
                        | "Encounter"
                        | "DiagnosticReport"
                        | "ServiceRequest"
                        | "Immunization"
                )
            })
            .map(|e| reference(e.id))
            .collect();
        if recorded.is_null() || targets.is_empty() {
            return;
        }
        let agents: Vec<Value> = self
            .practitioners(&m.operators)
            .into_iter()
            .map(|id| fj!({"who": reference(id)}))
            .collect();
        if agents.is_empty() {
            return;
        }
        let location = m.event_facility.as_ref().map(|f| self.facility_location(f));
        let id = self.uuid(&["Provenance", &self.message_key()]);
        let resource = fj!({
            "target": targets,
            "recorded": recorded,
            "occurredDateTime": self.dt(&m.event_occurred_at),
            "activity": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0003",
                "code": &m.event,
                "display": m.r#type.as_ref().map(|t| format!("event - {t}^{}", m.event.as_deref().unwrap_or_default())),
            }]},
            "reason": m.event_reason.as_ref().map(|c| vec![self.concept_of(c)]),
            "agent": agents,
            "location": location.map(reference),
        });
        self.push("Provenance", id, resource, Request::Update);
    }

    /// The guide's MSH[Provenance-Source], made when the message names its software (SFT):
    /// the MessageHeader as target, MSH-7 as recorded and occurred, the sending facility
    /// (MSH-4) or responsible organization (MSH-22) as author, and each SFT as a Device entity
    /// (SFT[Device]) — the first the original source, the rest derivations, as the message
    /// maps say. Entity[1] (the v2 message itself as a DocumentReference) is left out: the
    /// journal keeps the message, and a copy would double every Bundle.
    fn source_provenance(&mut self) {
        let m = &self.c.message;
        if m.software.is_empty() {
            return;
        }
        let Some(header) = self
            .entries
            .iter()
            .find(|e| e.kind == "MessageHeader")
            .map(|e| e.id)
        else {
            return;
        };
        let author = |who: Value| {
            fj!({"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "author",
            }]}, "who": who})
        };
        let mut agents = Vec::new();
        let sender = self.authority(
            m.sending_facility.as_deref(),
            m.sending_facility_id
                .as_ref()
                .map(|(u, k)| (u.as_str(), k.as_str())),
        );
        if m.sending_organization.is_none() && !sender.is_null() {
            agents.push(author(sender));
        }
        if let Some(org) = m
            .sending_organization
            .as_deref()
            .and_then(|n| self.organization(Some(n), Vec::new()))
        {
            agents.push(author(reference(org)));
        }
        let recorded = self.instant(&m.sent_at);
        if agents.is_empty() || recorded.is_null() {
            return;
        }
        let mut entities = Vec::new();
        for (n, s) in m.software.iter().enumerate() {
            let key = format!(
                "Device|software|{}|{}|{}|{}",
                s.vendor.as_deref().unwrap_or_default(),
                s.product.as_deref().unwrap_or_default(),
                s.version.as_deref().unwrap_or_default(),
                s.binary_id.as_deref().unwrap_or_default()
            );
            let resource = fj!({
                "manufacturer": &s.vendor,
                "deviceName": s.product.as_ref().map(|p| vec![fj!({"name": p, "type": "manufacturer-name"})]),
                "modelNumber": &s.binary_id,
                "version": s.version.as_ref().map(|v| vec![fj!({"value": v})]),
                "note": s.information.as_ref().map(|t| vec![fj!({"text": t})]),
            });
            let device = self.shared_resource("Device", key, Request::Update, || resource);
            entities.push(fj!({
                "role": if n == 0 { "source" } else { "derivation" },
                "what": reference(device),
            }));
        }
        let id = self.uuid(&["Provenance", "source", &self.message_key()]);
        let resource = fj!({
            "target": [reference(header)],
            "recorded": recorded,
            "occurredDateTime": self.dt(&m.sent_at),
            "activity": {"coding": [{
                "display": format!(
                    "message - {}^{}^{}",
                    m.r#type.as_deref().unwrap_or_default(),
                    m.event.as_deref().unwrap_or_default(),
                    m.structure.as_deref().unwrap_or_default()
                ),
            }]},
            "agent": agents,
            "entity": entities,
        });
        self.push("Provenance", id, resource, Request::Update);
    }

    /// PRB (problem messages, PPR^PC1/PC2/PC3) as problem-list Conditions. The guide has no PRB
    /// map; fields follow the v2 standard (chapter 12). A problem is keyed by its instance id
    /// (PRB-4), so an update or delete reaches the Condition the add made.
    fn problems(&mut self) {
        let Some(patient) = self.patient else {
            return;
        };
        for (n, pr) in self.c.problems.iter().enumerate() {
            let key = match &pr.identifier {
                Some(i) if i.value.is_some() => format!(
                    "instance|{}|{}|{}",
                    i.authority.as_deref().unwrap_or_default(),
                    i.authority_id.as_deref().unwrap_or_default(),
                    i.value.as_deref().unwrap_or_default()
                ),
                _ => format!(
                    "code|{}|{}|{n}",
                    pr.code
                        .as_ref()
                        .and_then(|c| c.system.as_deref())
                        .unwrap_or_default(),
                    pr.code
                        .as_ref()
                        .and_then(|c| c.code.as_deref())
                        .unwrap_or_default()
                ),
            };
            let id = self.uuid(&["Condition", &patient.to_string(), "problem", &key]);
            let code_of = |c: &Option<Code>| {
                c.as_ref()
                    .and_then(|c| c.code.clone().or_else(|| c.display.clone()))
            };
            let (clinical, verification) = vocab::problem_status(
                pr.action.as_deref(),
                code_of(&pr.life_cycle).as_deref(),
                code_of(&pr.confirmation).as_deref(),
                pr.resolved_at.is_some(),
            );
            let onset = self.dt(&pr.onset_at);
            let notes = self.annotations(&pr.notes);
            let mut categories = vec![fj!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                "code": "problem-list-item",
            }]})];
            if let Some(c) = &pr.classification {
                categories.push(self.concept_of(c));
            }
            let resource = fj!({
                "identifier": pr.identifier.as_ref().map(|i| vec![self.identifier(i)]),
                "clinicalStatus": clinical.map(|c| fj!({"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": c,
                }]})),
                "verificationStatus": verification.map(|v| fj!({"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": v,
                }]})),
                "category": categories,
                "code": self.concept(&pr.code),
                "subject": reference(patient),
                "encounter": opt_ref(self.encounter),
                "onsetDateTime": onset.clone(),
                "onsetString": if onset.is_null() { pr.onset_text.as_deref() } else { None },
                // A deleted problem keeps no abatement: entered-in-error has no clinical status.
                "abatementDateTime": if clinical.is_some() { self.dt(&pr.resolved_at) } else { Value::Null },
                "recordedDate": self.dt(&pr.established_at),
                "note": notes,
            });
            self.push("Condition", id, resource, Request::Update);
        }
    }

    /// ACC as an injury-incident Observation. The guide maps no ACC field (its message maps
    /// list the segment without a target); the shape follows the US VRDR Injury Incident
    /// profile: LOINC 11374-6, ACC-8 as the value, ACC-1 as the time, and the indicators as
    /// components coded by their v2 field.
    fn accident(&mut self) {
        let (Some(patient), Some(a)) = (self.patient, &self.c.accident) else {
            return;
        };
        let key = match a.identifier.as_ref().and_then(|i| i.value.as_deref()) {
            Some(v) => format!("id|{v}"),
            None => format!("at|{}", a.at.as_deref().unwrap_or_default()),
        };
        let id = self.uuid(&["Observation", &patient.to_string(), "accident", &key]);
        let mut components = Vec::new();
        let coded = |field: &str, name: &str, value: Value| fj!({"code": {"coding": [{"system": V2_FIELD, "code": field, "display": name}]}, "valueCodeableConcept": value});
        let value = match (&a.description, &a.code) {
            (Some(d), code) => {
                if let Some(c) = code {
                    components.push(coded("ACC-2", "Accident Code", self.concept_of(c)));
                }
                fj!({"valueString": d})
            }
            (None, Some(c)) => fj!({"valueCodeableConcept": self.concept_of(c)}),
            (None, None) => fj!({}),
        };
        if let Some(s) = &a.auto_state {
            components.push(coded("ACC-4", "Auto Accident State", self.concept_of(s)));
        }
        for (field, name, flag) in [
            ("ACC-5", "Accident Job Related Indicator", a.job_related),
            ("ACC-6", "Accident Death Indicator", a.death),
            ("ACC-10", "Police Notified Indicator", a.police_notified),
        ] {
            if let Some(b) = flag {
                components.push(coded(field, name, yes_no(b)));
            }
        }
        if let Some(by) = &a.brought_in_by {
            components.push(fj!({
                "code": {"coding": [{"system": V2_FIELD, "code": "ACC-9", "display": "Brought In By"}]},
                "valueString": by,
            }));
        }
        // Where: a Location (ACC-3 as its name, ACC-11 its address), by the core
        // event-location extension (Observation has no location element in R4).
        let place = (a.location.is_some() || a.address.is_some()).then(|| {
            let lid = self.uuid(&["Location", &patient.to_string(), "accident", &key]);
            let resource = fj!({
                "name": &a.location,
                "address": a.address.as_ref().map(|x| self.address(x)),
                "mode": "instance",
            });
            self.push("Location", lid, resource, Request::Update);
            lid
        });
        let performer = a.entered_by.as_ref().and_then(|p| self.practitioner(p));
        let mut resource = fj!({
            "extension": place.map(|l| vec![fj!({
                "url": "http://hl7.org/fhir/StructureDefinition/event-location",
                "valueReference": reference(l),
            })]),
            "identifier": a.identifier.as_ref().map(|i| vec![self.identifier(i)]),
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "11374-6", "display": "Injury incident description Narrative"}]},
            "subject": reference(patient),
            "encounter": opt_ref(self.encounter),
            "effectiveDateTime": self.dt(&a.at),
            "performer": performer.map(|p| vec![reference(p)]),
            "component": components,
        });
        merge_into(&mut resource, value);
        self.push("Observation", id, resource, Request::Update);
    }

    /// PDA as Observations shaped like the US VRDR profiles: PDA-6 autopsy (LOINC 85699-7,
    /// PDA-7 its period, PDA-8 who performed it), PDA-9 coroner or medical examiner (LOINC
    /// 74497-9), PDA-3 certification (PDA-4 signed, PDA-5 by whom) and each PDA-1 cause,
    /// coded by their v2 field. One of each per patient, so a resend updates them. PDA-2 (the
    /// place of death) has no R4 element and stays in the record only.
    fn death(&mut self) {
        let (Some(patient), Some(d)) = (self.patient, &self.c.death) else {
            return;
        };
        let p = patient.to_string();
        let encounter = opt_ref(self.encounter);
        let mut out: Vec<(String, Value)> = Vec::new();
        if let Some(b) = d.autopsy {
            let by = d.autopsy_by.as_ref().and_then(|x| self.practitioner(x));
            out.push(("PDA-6".into(), fj!({
                "code": {"coding": [{"system": LOINC, "code": "85699-7", "display": "Autopsy was performed"}]},
                "valueCodeableConcept": yes_no(b),
                "effectivePeriod": {"start": self.dt(&d.autopsy_start), "end": self.dt(&d.autopsy_end)},
                "performer": by.map(|x| vec![reference(x)]),
            })));
        }
        if let Some(b) = d.coroner {
            out.push(("PDA-9".into(), fj!({
                "code": {"coding": [{"system": LOINC, "code": "74497-9", "display": "Medical examiner or coroner was contacted"}]},
                "valueCodeableConcept": yes_no(b),
            })));
        }
        if d.certified.is_some() || d.certificate_signed_at.is_some() || d.certified_by.is_some() {
            let by = d.certified_by.as_ref().and_then(|x| self.practitioner(x));
            out.push(("PDA-3".into(), fj!({
                "code": {"coding": [{"system": V2_FIELD, "code": "PDA-3", "display": "Death Certified Indicator"}]},
                "valueCodeableConcept": d.certified.map(yes_no),
                "effectiveDateTime": self.dt(&d.certificate_signed_at),
                "performer": by.map(|x| vec![reference(x)]),
            })));
        }
        for (n, cause) in d.causes.iter().enumerate() {
            out.push((format!("PDA-1|{n}"), fj!({
                "code": {"coding": [{"system": V2_FIELD, "code": "PDA-1", "display": "Death Cause Code"}]},
                "valueCodeableConcept": self.concept_of(cause),
            })));
        }
        for (key, mut resource) in out {
            let id = self.uuid(&["Observation", &p, "death", &key]);
            merge_into(
                &mut resource,
                fj!({"status": "final", "subject": reference(patient), "encounter": encounter.clone()}),
            );
            self.push("Observation", id, resource, Request::Update);
        }
    }

    /// A facility (HD) as a Location of physical type site, as the guide's HD[Location].
    fn facility_location(&mut self, hd: &Identifier) -> Uuid {
        let key = format!(
            "Location|hd|{}|{}",
            hd.authority.as_deref().unwrap_or_default(),
            hd.authority_id.as_deref().unwrap_or_default()
        );
        let uid = hd
            .authority_id
            .as_deref()
            .map(|u| universal_id(u, hd.authority_id_type.as_deref().unwrap_or_default()));
        self.shared_resource("Location", key, Request::Update, || {
            fj!({
                "name": &hd.authority,
                "identifier": uid.map(|u| vec![u]),
                "mode": "instance",
                "physicalType": {"coding": [{"system": PHYSICAL_TYPE, "code": "si"}]},
            })
        })
    }

    fn message_header(&mut self) {
        let m = &self.c.message;
        let focus: Vec<Value> = self
            .entries
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    "Patient"
                        | "Encounter"
                        | "DiagnosticReport"
                        | "ServiceRequest"
                        | "Immunization"
                        | "Appointment"
                        | "DocumentReference"
                )
            })
            .map(|e| reference(e.id))
            .collect();
        let sender = self.authority(
            m.sending_facility.as_deref(),
            m.sending_facility_id
                .as_ref()
                .map(|(u, k)| (u.as_str(), k.as_str())),
        );
        let receiver = self.authority(
            m.receiving_facility.as_deref(),
            m.receiving_facility_id
                .as_ref()
                .map(|(u, k)| (u.as_str(), k.as_str())),
        );
        // MSH-22 → responsible; MSH-23, when valued, is the receiver instead of MSH-6.
        let responsible = m
            .sending_organization
            .as_deref()
            .and_then(|n| self.organization(Some(n), Vec::new()))
            .map(reference);
        let receiver = match m
            .receiving_organization
            .as_deref()
            .and_then(|n| self.organization(Some(n), Vec::new()))
        {
            Some(org) => reference(org),
            None => receiver,
        };
        let endpoint = |app: &Option<String>| {
            format!(
                "{}app:{}",
                self.o.local_base,
                encode(app.as_deref().unwrap_or("unknown"))
            )
        };
        let id = self.uuid(&["MessageHeader", &self.message_key()]);
        let resource = fj!({
            "eventCoding": {
                "system": "http://terminology.hl7.org/CodeSystem/v2-0003",
                "code": m.event.clone().unwrap_or_else(|| "unknown".into()),
                "display": m.r#type.as_ref().map(|t| format!("{t}^{}", m.event.as_deref().unwrap_or_default())),
            },
            "destination": [{
                "name": &m.receiving_application,
                "endpoint": endpoint(&m.receiving_application),
                "receiver": receiver,
            }],
            "sender": sender,
            "responsible": responsible,
            // SFT[MessageHeader]: the last SFT is the software that sent this message.
            "source": {
                "name": &m.sending_application,
                "software": m.software.last().and_then(|s| s.product.clone()),
                "version": m.software.last().and_then(|s| s.version.clone()),
                "endpoint": endpoint(&m.sending_application),
            },
            "reason": m.event_reason.as_ref().map(|c| self.concept_of(c)),
            "focus": focus,
            // MSH-19 as the resource's language, where it has a BCP 47 tag.
            "language": m.language.as_ref().and_then(|l| {
                std::iter::once(l)
                    .chain(l.alternates.iter())
                    .find_map(|c| c.code.as_deref().and_then(language_tag))
            }),
            "meta": {"tag": m.processing_id.as_ref().map(|p| vec![fj!({
                "system": "http://terminology.hl7.org/CodeSystem/v2-0103", "code": p
            })])},
        });
        self.push("MessageHeader", id, resource, Request::Update);
    }
}

/// Adds to `into` the members of `more` it lacks.
fn fill(into: &mut Value, more: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, more) {
        for (k, v) in b {
            a.entry(k).or_insert(v);
        }
    }
}

/// Adds the members of `extra` (an object) to `into`.
fn merge_into(into: &mut Value, extra: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, extra) {
        let b: Map = b;
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

/// A language code as a BCP 47 tag: an ISO 639 code Aorta knows, or a code already shaped
/// like a tag (`en`, `en-US`, `haw`).
fn language_tag(code: &str) -> Option<String> {
    if let Some(tag) = vocab::bcp47(code) {
        return Some(tag.to_string());
    }
    let code = code.trim();
    let mut parts = code.split('-');
    let primary = parts.next()?;
    let shaped = (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    shaped.then(|| code.to_string())
}

/// A duration in seconds, from its value and ISO+/UCUM unit (minutes when none is given).
fn seconds_of(value: f64, unit: Option<&str>) -> Option<i64> {
    let per = match unit.map(str::to_ascii_lowercase).as_deref() {
        None | Some("min" | "m" | "mn") => 60.0,
        Some("s" | "sec") => 1.0,
        Some("h" | "hr" | "hour") => 3600.0,
        Some("d" | "day") => 86_400.0,
        Some("wk" | "w") => 604_800.0,
        _ => return None,
    };
    let s = value * per;
    (0.0..1e10).contains(&s).then_some(s.round() as i64)
}

/// An ISO date-time (`YYYY-MM-DDThh:mm[:ss[.f]][zone]`, as `hl7_datetime` writes them) moved
/// forward by `seconds`, keeping its zone; None for a date without a time.
fn add_seconds(iso: &str, seconds: i64) -> Option<String> {
    let (date, rest) = iso.split_once('T')?;
    let zone_at = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let num = |s: &str| s.parse::<i64>().ok();
    let mut d = date.splitn(3, '-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let mut t = time.splitn(3, ':');
    let (h, mi) = (num(t.next()?)?, num(t.next()?)?);
    let sec = t.next().map(|s| s.split('.').next().unwrap_or(s));
    let sec = match sec {
        Some(s) => num(s)?,
        None => 0,
    };
    use crate::record::{civil_from_days, days_from_civil};
    let total = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + sec + seconds;
    let (days, secs) = (total.div_euclid(86_400), total.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}{zone}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

fn has_offset(s: &str) -> bool {
    let time = s.split_once('T').map_or("", |(_, t)| t);
    time.ends_with('Z') || time.contains('+') || time.contains('-')
}

/// Percent-encodes what may not stand in a URL query value (keeps `:` and `/` readable).
fn encode(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
    const SET: &AsciiSet = &CONTROLS
        .add(b' ')
        .add(b'"')
        .add(b'#')
        .add(b'%')
        .add(b'&')
        .add(b'+')
        .add(b'<')
        .add(b'>')
        .add(b'?')
        .add(b'|')
        .add(b',')
        .add(b'$')
        .add(b'\\')
        .add(b'^')
        .add(b'`')
        .add(b'{')
        .add(b'}');
    utf8_percent_encode(s, SET).to_string()
}

/// A minimal XHTML narrative for free text (escaped).
fn xhtml(text: &str) -> String {
    let mut s = String::from("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    for ch in text.chars() {
        match ch {
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '&' => s.push_str("&amp;"),
            c => s.push(c),
        }
    }
    s.push_str("</div>");
    s
}

/// A ROL naming the primary care provider (`PP`, table 0443), as the guide's message maps
/// select ROL for Patient.generalPractitioner.
fn is_primary_care(r: &Role) -> bool {
    r.role.as_ref().is_some_and(|c| {
        c.code.as_deref().is_some_and(|code| code.trim() == "PP")
            && c.system.as_deref().is_none_or(|s| {
                let s = s.trim().to_ascii_uppercase();
                s == "HL70443" || s.ends_with("V2-0443")
            })
    })
}

/// A v2 code as FHIR's `code` type allows it: no leading or trailing whitespace and single
/// spaces inside (v2 senders pad and double-space free-text codes such as `lung  new issue`).
fn fhir_code(code: &str) -> String {
    let t = code.trim();
    if !t.contains(|c: char| c.is_whitespace() && c != ' ') && !t.contains("  ") {
        return t.to_string();
    }
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A v2 Y/N indicator (table 0136) as a CodeableConcept.
fn yes_no(b: bool) -> Value {
    let (code, display) = if b { ("Y", "Yes") } else { ("N", "No") };
    fj!({"coding": [{"system": V2_0136, "code": code, "display": display}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_the_uuid_crates_v5_of_the_joined_parts() {
        for parts in [
            &[][..],
            &[""][..],
            &["Patient", "urn:oid:2.16.840.1.113883.19", "12345"][..],
            &["Location", "Müller|Station 3", "", "bed"][..],
        ] {
            assert_eq!(
                v5(parts),
                Uuid::new_v5(&NAMESPACE, parts.join("|").as_bytes())
            );
        }
    }

    #[test]
    fn codes_lose_the_whitespace_fhir_forbids() {
        assert_eq!(fhir_code("I21"), "I21");
        assert_eq!(fhir_code(" lung  new issue "), "lung new issue");
        assert_eq!(fhir_code("a\tb"), "a b");
    }

    #[test]
    fn durations_move_times_across_days_months_and_years() {
        let add = |s: &str, secs: i64| add_seconds(s, secs);
        assert_eq!(
            add("2024-02-28T23:30:00+01:00", 3600).as_deref(),
            Some("2024-02-29T00:30:00+01:00"),
            "2024 is a leap year"
        );
        assert_eq!(
            add("2023-02-28T23:30:00Z", 3600).as_deref(),
            Some("2023-03-01T00:30:00Z")
        );
        assert_eq!(
            add("2024-12-31T23:59:30.25-05:00", 45).as_deref(),
            Some("2025-01-01T00:00:15-05:00")
        );
        assert_eq!(
            add("2024-06-01T10:00", 90).as_deref(),
            Some("2024-06-01T10:01:30")
        );
        assert_eq!(add("2024-06-01", 60), None, "a date has no time to move");
        assert_eq!(add("garbage", 60), None);
        assert_eq!(seconds_of(2.0, Some("h")), Some(7200));
        assert_eq!(seconds_of(30.0, None), Some(1800));
        assert_eq!(seconds_of(1.0, Some("furlong")), None);
        assert_eq!(seconds_of(f64::NAN, None), None);
    }
}
