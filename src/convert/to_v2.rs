//! `Clinical` → HL7 v2.5.1: the messages a FHIR input becomes for v2 systems.
//!
//! - Orders or observations → `ORU^R01^ORU_R01`: PID, PV1 (when there is a visit), then per
//!   order ORC + OBR + its OBX (+ NTE); observations under no order get an OBR each, coded like
//!   the observation (vital signs and other standalone results).
//! - Otherwise → `ADT^A08^ADT_A01` (update patient information), or the event given
//!   ([`V2Options::event`]: `A04` for a registration, `A01`, `A31`, ...): EVN, PID, PV1, AL1
//!   (allergies), DG1 (diagnoses).
//!
//! Values are escaped (`\F\`, `\S\`, ...); ISO 8601 dates and times become v2 DTM keeping their
//! precision and zone (`2024-03-12T08:45:00+01:00` → `20240312084500+0100`).

use crate::hl7::escape;
use crate::hl7::Delimiters;
use crate::record::clinical::{
    Address, Clinical, Code, Identifier, Location, Name, Observation, Order, Person, Telecom,
    Timing, Value,
};

use super::fhir::read::fmt_number;

/// What the record does not say about the message to build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct V2Options {
    /// The ADT trigger event (default `A08`); ignored for results.
    pub event: Option<String>,
    /// MSH-10 (default: the record's control id, else a new unique one).
    pub control_id: Option<String>,
    /// MSH-3 (default `AORTA`).
    pub sending_application: Option<String>,
    /// MSH-4.
    pub sending_facility: Option<String>,
    /// MSH-5.
    pub receiving_application: Option<String>,
    /// MSH-6.
    pub receiving_facility: Option<String>,
    /// MSH-7 as v2 DTM (default: now, UTC).
    pub timestamp: Option<String>,
}

/// The HL7 v2 message for a record (segments end with CR).
pub fn to_v2(c: &Clinical, o: &V2Options) -> Vec<u8> {
    let results = !c.orders.is_empty() || !c.observations.is_empty();
    let now = o.timestamp.clone().unwrap_or_else(now_dtm);
    let (kind, event, structure) = if results {
        ("ORU", "R01".to_string(), "ORU_R01")
    } else {
        let e = o
            .event
            .clone()
            .or_else(|| c.message.event.clone().filter(|e| e.starts_with('A')))
            .unwrap_or_else(|| "A08".into());
        ("ADT", e, "ADT_A01")
    };
    let mut w = Writer::default();
    let control = o
        .control_id
        .clone()
        .or_else(|| c.message.control_id.clone())
        // Unique and within the 20 characters older receivers allow.
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string()[..20].to_string());
    w.segment(
        "MSH",
        vec![
            // MSH-1 and MSH-2 are written by `segment` for MSH.
            text(
                o.sending_application
                    .as_deref()
                    .or(c.message.sending_application.as_deref())
                    .or(Some("AORTA")),
            ),
            text(
                o.sending_facility
                    .as_deref()
                    .or(c.message.sending_facility.as_deref()),
            ),
            text(
                o.receiving_application
                    .as_deref()
                    .or(c.message.receiving_application.as_deref()),
            ),
            text(
                o.receiving_facility
                    .as_deref()
                    .or(c.message.receiving_facility.as_deref()),
            ),
            now.clone(),
            String::new(),
            format!("{kind}^{}^{structure}", esc(&event)),
            esc(&control),
            "P".into(),
            "2.5.1".into(),
        ],
    );
    if kind == "ADT" {
        w.segment(
            "EVN",
            vec![
                esc(&event),
                c.message
                    .event_at
                    .as_deref()
                    .map(dtm)
                    .unwrap_or_else(|| now.clone()),
            ],
        );
    }
    w.segment("PID", pid(c));
    if kind == "ADT" {
        for (n, k) in c.next_of_kin.iter().enumerate() {
            w.segment("NK1", nk1(k, n + 1));
        }
    }
    if let Some(v) = &c.visit {
        w.segment("PV1", pv1(v));
    } else if kind == "ADT" {
        w.segment("PV1", vec!["1".into(), "N".into()]);
    }
    if kind == "ADT" {
        for (n, a) in c.allergies.iter().enumerate() {
            w.segment(
                "AL1",
                vec![
                    (n + 1).to_string(),
                    a.r#type.as_ref().map(cwe).unwrap_or_default(),
                    a.allergen.as_ref().map(cwe).unwrap_or_default(),
                    a.severity.as_ref().map(cwe).unwrap_or_default(),
                    repeat(a.reactions.iter().map(|r| esc(r))),
                    a.identified_at.as_deref().map(dtm).unwrap_or_default(),
                ],
            );
        }
        for (n, d) in c.diagnoses.iter().enumerate() {
            let mut f = vec![String::new(); 20];
            f[0] = (n + 1).to_string();
            f[2] = d.code.as_ref().map(cwe).unwrap_or_default();
            f[4] = d.diagnosed_at.as_deref().map(dtm).unwrap_or_default();
            // DG1-6 is required: without a type from the source, a working diagnosis.
            f[5] = d.r#type.as_deref().map(esc).unwrap_or_else(|| "W".into());
            f[14] = d.priority.as_deref().map(esc).unwrap_or_default();
            f[15] = repeat(d.clinicians.iter().map(xcn));
            f[19] = d.identifier.as_ref().map(ei).unwrap_or_default();
            w.segment("DG1", f);
        }
        for (n, p) in c.procedures.iter().enumerate() {
            w.segment("PR1", pr1(p, n + 1));
        }
        for (n, ins) in c.insurance.iter().enumerate() {
            w.segment("IN1", in1(ins, n + 1));
        }
    }
    if results {
        let mut obr_n = 0;
        for (i, order) in c.orders.iter().enumerate() {
            obr_n += 1;
            let result = Order {
                control: Some("RE".into()),
                ..order.clone()
            };
            w.segment("ORC", orc(&result));
            w.segment("OBR", obr(order, obr_n));
            for note in &order.notes {
                w.segment("NTE", vec!["1".into(), "L".into(), esc(&note.text)]);
            }
            if let Some(t) = &order.timing {
                w.segment("TQ1", tq1(t));
            }
            let mut n = 0;
            for obs in c.observations.iter().filter(|o| o.order == Some(i)) {
                n += 1;
                w.observation(obs, n);
            }
        }
        for obs in c
            .observations
            .iter()
            .filter(|o| o.order.is_none_or(|i| i >= c.orders.len()))
        {
            obr_n += 1;
            let order = Order {
                control: Some("RE".into()),
                code: obs.code.clone(),
                observed_at: obs.observed_at.clone(),
                result_status: obs.status.clone(),
                ..Order::default()
            };
            w.segment("ORC", orc(&order));
            w.segment("OBR", obr(&order, obr_n));
            w.observation(obs, 1);
        }
    }
    w.out
}

#[derive(Default)]
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// A segment from its fields (already encoded), empty trailing fields dropped.
    fn segment(&mut self, id: &str, mut fields: Vec<String>) {
        while fields.last().is_some_and(|f| f.is_empty()) {
            fields.pop();
        }
        self.out.extend_from_slice(id.as_bytes());
        if id == "MSH" {
            self.out.extend_from_slice(b"|^~\\&");
        }
        for f in fields {
            self.out.push(b'|');
            self.out.extend_from_slice(f.as_bytes());
        }
        self.out.push(b'\r');
    }

    fn observation(&mut self, o: &Observation, n: usize) {
        // Repeated values go back out as OBX-5 repetitions.
        let value = o
            .value
            .iter()
            .chain(&o.more_values)
            .map(obx5)
            .collect::<Vec<_>>()
            .join("~");
        let value_type = o.value_type.clone().unwrap_or_else(|| {
            match &o.value {
                Some(Value::Number(_)) => "NM",
                Some(Value::Coded(_)) => "CWE",
                Some(Value::Structured(_)) => "SN",
                _ => "ST",
            }
            .into()
        });
        self.segment(
            "OBX",
            vec![
                n.to_string(),
                esc(&value_type),
                o.code.as_ref().map(cwe).unwrap_or_default(),
                o.sub_id.as_deref().map(esc).unwrap_or_default(),
                value,
                o.units.as_ref().map(cwe).unwrap_or_default(),
                o.reference_range.as_deref().map(esc).unwrap_or_default(),
                repeat(o.interpretation.iter().map(cwe)),
                String::new(),
                String::new(),
                o.status.as_deref().map(esc).unwrap_or_else(|| "F".into()),
                String::new(),
                String::new(),
                o.observed_at.as_deref().map(dtm).unwrap_or_default(),
                o.producer.as_ref().map(cwe).unwrap_or_default(),
                repeat(o.performers.iter().map(xcn)),
                o.method.as_ref().map(cwe).unwrap_or_default(),
                String::new(),
                o.analysed_at.as_deref().map(dtm).unwrap_or_default(),
                o.body_site.as_ref().map(cwe).unwrap_or_default(),
                String::new(),
                String::new(),
                xon(&o.performing_organization, &o.performing_organization_id),
            ],
        );
        for note in &o.notes {
            self.segment("NTE", vec!["1".into(), "L".into(), esc(&note.text)]);
        }
    }
}

fn pid(c: &Clinical) -> Vec<String> {
    let Some(p) = &c.patient else {
        return vec!["1".into()];
    };
    let phones = |business: bool| phones(&p.telecoms, business);
    vec![
        "1".into(),
        String::new(),
        repeat(
            p.identifiers
                .iter()
                .filter(|i| i.r#type.as_deref() != Some("SS"))
                .map(cx),
        ),
        String::new(),
        repeat(p.names.iter().map(xpn)),
        p.mothers_maiden_name
            .as_deref()
            .map(esc)
            .unwrap_or_default(),
        p.birth_date
            .as_deref()
            .or(p.birth_time.as_deref())
            .map(dtm)
            .unwrap_or_default(),
        p.sex.as_deref().map(esc).unwrap_or_default(),
        String::new(),
        repeat(p.race.iter().map(cwe)),
        repeat(p.addresses.iter().map(xad)),
        String::new(),
        phones(false),
        phones(true),
        p.language.as_ref().map(cwe).unwrap_or_default(),
        p.marital_status.as_ref().map(cwe).unwrap_or_default(),
        p.religion.as_ref().map(cwe).unwrap_or_default(),
        p.account_number.as_ref().map(cx).unwrap_or_default(),
        p.identifiers
            .iter()
            .find(|i| i.r#type.as_deref() == Some("SS"))
            .and_then(|i| i.value.as_deref())
            .map(esc)
            .unwrap_or_default(),
        String::new(),
        repeat(p.mothers_identifiers.iter().map(cx)),
        repeat(p.ethnicity.iter().map(cwe)),
        p.birth_place.as_deref().map(esc).unwrap_or_default(),
        p.multiple_birth.map(yes_no).unwrap_or_default(),
        p.birth_order.map(|n| n.to_string()).unwrap_or_default(),
        repeat(p.citizenship.iter().map(cwe)),
        String::new(),
        String::new(),
        p.deceased_at.as_deref().map(dtm).unwrap_or_default(),
        p.deceased.map(yes_no).unwrap_or_default(),
    ]
}

/// PR1 from a procedure: code, description, time, functional type, minutes, anesthesiologist,
/// surgeon, other practitioners, associated diagnosis, identifier.
fn pr1(p: &crate::record::clinical::Procedure, n: usize) -> Vec<String> {
    let people = |p: &[Person]| repeat(p.iter().map(xcn));
    let mut f = vec![String::new(); 19];
    f[0] = n.to_string();
    f[2] = p.code.as_ref().map(cwe).unwrap_or_default();
    f[3] = opt(&p.description);
    f[4] = ts(&p.performed_at);
    f[5] = p.functional_type.as_ref().map(cwe).unwrap_or_default();
    f[6] = p
        .minutes
        .map(crate::convert::fhir::read::fmt_number)
        .unwrap_or_default();
    f[7] = people(&p.anesthesiologists);
    f[10] = people(&p.surgeons);
    f[11] = people(&p.performers);
    f[14] = p.reason.as_ref().map(cwe).unwrap_or_default();
    f[18] = p.identifier.as_ref().map(ei).unwrap_or_default();
    f
}

/// IN1 from an insurance: plan, company, group, policy holder, period, plan type, insured,
/// relationship, policy number.
fn in1(i: &crate::record::clinical::Insurance, n: usize) -> Vec<String> {
    let mut f = vec![String::new(); 49];
    f[0] = n.to_string();
    f[1] = i.plan.as_ref().map(cwe).unwrap_or_default();
    f[2] = repeat(i.company_ids.iter().map(cx));
    f[3] = opt(&i.company_name);
    f[7] = opt(&i.group_number);
    f[8] = opt(&i.group_name);
    f[9] = repeat(i.policy_holder_ids.iter().map(cx));
    f[10] = opt(&i.policy_holder);
    f[11] = ts(&i.start);
    f[12] = ts(&i.end);
    f[14] = i.plan_type.as_ref().map(cwe).unwrap_or_default();
    f[15] = i.insured_name.as_ref().map(xpn).unwrap_or_default();
    f[16] = i.relationship.as_ref().map(cwe).unwrap_or_default();
    f[17] = ts(&i.insured_birth_date);
    f[18] = i.insured_address.as_ref().map(xad).unwrap_or_default();
    f[35] = opt(&i.policy_number);
    f[42] = opt(&i.insured_sex);
    f[48] = repeat(i.insured_ids.iter().map(cx));
    f
}

/// The home (`business` false) or business (`WPN`) numbers of a list, as one repeating XTN field.
fn phones(telecoms: &[Telecom], business: bool) -> String {
    repeat(
        telecoms
            .iter()
            .filter(|t| (t.r#use.as_deref() == Some("WPN")) == business)
            .map(xtn),
    )
}

/// NK1 from a contact: name, relationship, address, home and business phones, role, period,
/// organization, sex, birth date.
fn nk1(k: &crate::record::clinical::Contact, n: usize) -> Vec<String> {
    let phones = |business: bool| phones(&k.telecoms, business);
    let mut f = vec![String::new(); 16];
    f[0] = n.to_string();
    f[1] = repeat(k.names.iter().map(xpn));
    f[2] = k.relationship.as_ref().map(cwe).unwrap_or_default();
    f[3] = repeat(k.addresses.iter().map(xad));
    f[4] = phones(false);
    f[5] = phones(true);
    f[6] = k.role.as_ref().map(cwe).unwrap_or_default();
    f[7] = ts(&k.start);
    f[8] = ts(&k.end);
    f[12] = xon(&k.organization, &k.organization_id);
    f[14] = opt(&k.sex);
    f[15] = ts(&k.birth_date);
    if let Some(l) = &k.language {
        f.resize(20, String::new());
        f[19] = cwe(l);
    }
    f
}

fn pv1(v: &crate::record::clinical::Visit) -> Vec<String> {
    let code = |c: &Option<Code>| c.as_ref().map(cwe).unwrap_or_default();
    let people = |p: &[Person]| repeat(p.iter().map(xcn));
    let mut f = vec![String::new(); 45];
    f[0] = "1".into();
    f[1] = v
        .class
        .as_ref()
        .and_then(|c| c.code.as_deref())
        .map(esc)
        .unwrap_or_else(|| "U".into());
    f[2] = v.location.as_ref().map(pl).unwrap_or_default();
    f[3] = code(&v.admission_type);
    f[4] = v.preadmit_number.as_ref().map(cx).unwrap_or_default();
    f[5] = v.prior_location.as_ref().map(pl).unwrap_or_default();
    f[6] = people(&v.attending);
    f[7] = people(&v.referring);
    f[8] = people(&v.consulting);
    f[9] = v
        .hospital_service
        .as_ref()
        .and_then(|c| c.code.as_deref())
        .map(esc)
        .unwrap_or_default();
    f[10] = v.temporary_location.as_ref().map(pl).unwrap_or_default();
    f[12] = code(&v.readmission);
    f[13] = v
        .admit_source
        .as_ref()
        .and_then(|c| c.code.as_deref())
        .map(esc)
        .unwrap_or_default();
    f[15] = code(&v.vip);
    f[16] = people(&v.admitting);
    f[17] = code(&v.patient_type);
    f[18] = v.visit_number.as_ref().map(cx).unwrap_or_default();
    f[19] = code(&v.financial_class);
    f[35] = v
        .discharge_disposition
        .as_ref()
        .and_then(|c| c.code.as_deref())
        .map(esc)
        .unwrap_or_default();
    f[36] = v
        .discharged_to
        .as_ref()
        .map(|c| comps(&[opt(&c.code), opt(&c.display), opt(&c.system)], '&'))
        .unwrap_or_default();
    f[42] = v.pending_location.as_ref().map(pl).unwrap_or_default();
    f[43] = v.admitted_at.as_deref().map(dtm).unwrap_or_default();
    f[44] = v.discharged_at.as_deref().map(dtm).unwrap_or_default();
    f
}

fn orc(o: &Order) -> Vec<String> {
    let mut f = vec![String::new(); 12];
    f[0] = o.control.as_deref().map(esc).unwrap_or_else(|| "RE".into());
    f[1] = o.placer_id.as_ref().map(ei).unwrap_or_default();
    f[2] = o.filler_id.as_ref().map(ei).unwrap_or_default();
    f[3] = o.group_id.as_ref().map(ei).unwrap_or_default();
    f[4] = o.status.as_deref().map(esc).unwrap_or_default();
    f[8] = o.ordered_at.as_deref().map(dtm).unwrap_or_default();
    f[9] = repeat(o.entered_by.iter().map(xcn));
    f[11] = repeat(o.ordering_provider.iter().map(xcn));
    f
}

fn obr(o: &Order, n: usize) -> Vec<String> {
    let mut f = vec![String::new(); 31];
    f[0] = n.to_string();
    f[1] = o.placer_id.as_ref().map(ei).unwrap_or_default();
    f[2] = o.filler_id.as_ref().map(ei).unwrap_or_default();
    f[3] = o.code.as_ref().map(cwe).unwrap_or_default();
    f[4] = o.priority.as_deref().map(esc).unwrap_or_default();
    f[5] = o.ordered_at.as_deref().map(dtm).unwrap_or_default();
    f[6] = o.observed_at.as_deref().map(dtm).unwrap_or_default();
    f[7] = o.observed_end.as_deref().map(dtm).unwrap_or_default();
    f[13] = o
        .specimen_received_at
        .as_deref()
        .map(dtm)
        .unwrap_or_default();
    f[14] = o.specimen_source.as_ref().map(cwe).unwrap_or_default();
    f[15] = repeat(o.ordering_provider.iter().map(xcn));
    f[21] = o.reported_at.as_deref().map(dtm).unwrap_or_default();
    f[23] = o.service_section.as_deref().map(esc).unwrap_or_default();
    f[24] = o.result_status.as_deref().map(esc).unwrap_or_default();
    f[30] = repeat(o.reasons.iter().map(cwe));
    f
}

/// TQ1 (timing/quantity) from an order's timing.
fn tq1(t: &Timing) -> Vec<String> {
    let mut f = vec![String::new(); 14];
    f[0] = "1".into();
    let units = t
        .quantity_units
        .as_ref()
        .map(|u| comps(&[opt(&u.code), opt(&u.display), opt(&u.system)], '&'));
    f[1] = comps(
        &[
            t.quantity.map(fmt_number).unwrap_or_default(),
            units.unwrap_or_default(),
        ],
        '^',
    );
    f[2] = opt(&t.repeat);
    f[3] = repeat(t.times.iter().map(|h| h.replace(':', "")));
    f[6] = t.start.as_deref().map(dtm).unwrap_or_default();
    f[7] = t.end.as_deref().map(dtm).unwrap_or_default();
    f[12] = comps(
        &[
            t.duration.map(fmt_number).unwrap_or_default(),
            opt(&t.duration_unit),
        ],
        '^',
    );
    f[13] = t.occurrences.map(|n| n.to_string()).unwrap_or_default();
    f
}

fn yes_no(b: bool) -> String {
    if b { "Y" } else { "N" }.into()
}

/// Escaped text, for a field or component.
fn esc(s: &str) -> String {
    let d = Delimiters::default();
    // Control characters other than tab and line breaks cannot be written in ER7; drop them.
    let clean: String = s
        .chars()
        .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
        .collect();
    let clean = clean.replace("\r\n", "\n").replace('\r', "\n");
    match escape::encode(clean.as_bytes(), &d) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => clean.replace(['|', '^', '~', '\\', '&', '\n'], " "),
    }
}

fn text(s: Option<&str>) -> String {
    s.map(esc).unwrap_or_default()
}

/// Components joined with `sep`, empty trailing ones dropped.
fn comps(parts: &[String], sep: char) -> String {
    let mut end = parts.len();
    while end > 0 && parts[end - 1].is_empty() {
        end -= 1;
    }
    parts[..end].join(&sep.to_string())
}

fn repeat(items: impl Iterator<Item = String>) -> String {
    items
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("~")
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(esc).unwrap_or_default()
}

fn cwe(c: &Code) -> String {
    let alt = c.alternates.first();
    comps(
        &[
            opt(&c.code),
            opt(&c.display),
            opt(&c.system),
            alt.map(|a| opt(&a.code)).unwrap_or_default(),
            alt.map(|a| opt(&a.display)).unwrap_or_default(),
            alt.map(|a| opt(&a.system)).unwrap_or_default(),
            opt(&c.version),
            String::new(),
            opt(&c.text),
        ],
        '^',
    )
}

fn hd_sub(i: &Identifier) -> String {
    comps(
        &[
            opt(&i.authority),
            opt(&i.authority_id),
            opt(&i.authority_id_type),
        ],
        '&',
    )
}

/// An organization as XON: name (XON-1), assigning authority (XON-6), type (XON-7) and
/// identifier (XON-10).
fn xon(name: &Option<String>, id: &Option<Identifier>) -> String {
    let id = id.as_ref();
    comps(
        &[
            opt(name),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            id.map(hd_sub).unwrap_or_default(),
            id.map(|i| opt(&i.r#type)).unwrap_or_default(),
            String::new(),
            String::new(),
            id.map(|i| opt(&i.value)).unwrap_or_default(),
        ],
        '^',
    )
}

fn cx(i: &Identifier) -> String {
    comps(
        &[
            opt(&i.value),
            String::new(),
            String::new(),
            hd_sub(i),
            opt(&i.r#type),
            opt(&i.facility),
            ts(&i.start),
            ts(&i.end),
        ],
        '^',
    )
}

fn ei(i: &Identifier) -> String {
    comps(
        &[
            opt(&i.value),
            opt(&i.authority),
            opt(&i.authority_id),
            opt(&i.authority_id_type),
        ],
        '^',
    )
}

/// Components given by position (1-based), the gaps empty, empty trailing ones dropped.
fn placed(parts: &[(usize, String)], sep: char) -> String {
    let len = parts.iter().map(|(at, _)| *at).max().unwrap_or(0);
    let mut all = vec![String::new(); len];
    for (at, v) in parts {
        all[at - 1] = v.clone();
    }
    comps(&all, sep)
}

/// An ISO time as DTM, empty when absent.
fn ts(t: &Option<String>) -> String {
    t.as_deref().map(dtm).unwrap_or_default()
}

/// Family name and given names, the part XPN and XCN share (from `first` on).
fn name_parts(n: &Name, first: usize) -> Vec<(usize, String)> {
    let family = n.family.clone().or_else(|| n.text.clone());
    vec![
        (first, opt(&family)),
        (
            first + 1,
            n.given.first().map(|g| esc(g)).unwrap_or_default(),
        ),
        (
            first + 2,
            n.given
                .get(1..)
                .map(|g| esc(&g.join(" ")))
                .unwrap_or_default(),
        ),
        (
            first + 3,
            n.suffix.first().map(|s| esc(s)).unwrap_or_default(),
        ),
        (first + 4, opt(&n.prefix)),
    ]
}

fn xpn(n: &Name) -> String {
    let mut parts = name_parts(n, 1);
    parts.extend([
        (6, n.suffix.get(1).map(|s| esc(s)).unwrap_or_default()),
        (7, opt(&n.r#use)),
        (12, ts(&n.start)),
        (13, ts(&n.end)),
    ]);
    placed(&parts, '^')
}

fn xcn(p: &Person) -> String {
    let id = p.id.clone().unwrap_or_default();
    let n = p.name.clone().unwrap_or_default();
    let mut parts = name_parts(&n, 2);
    parts.extend([(1, opt(&id.value)), (9, hd_sub(&id)), (13, opt(&id.r#type))]);
    placed(&parts, '^')
}

fn xad(a: &Address) -> String {
    placed(
        &[
            (1, a.lines.first().map(|l| esc(l)).unwrap_or_default()),
            (
                2,
                a.lines
                    .get(1..)
                    .map(|l| esc(&l.join(", ")))
                    .unwrap_or_default(),
            ),
            (3, opt(&a.city)),
            (4, opt(&a.state)),
            (5, opt(&a.postal_code)),
            (6, opt(&a.country)),
            (7, opt(&a.r#type)),
            (9, opt(&a.district)),
            (13, ts(&a.start)),
            (14, ts(&a.end)),
        ],
        '^',
    )
}

fn xtn(t: &Telecom) -> String {
    let email = t.equipment.as_deref() == Some("Internet") || t.r#use.as_deref() == Some("NET");
    // XTN-1 holds a number, XTN-4 an e-mail address.
    let (number, address) = if email {
        (String::new(), opt(&t.value))
    } else {
        (opt(&t.value), String::new())
    };
    placed(
        &[
            (1, number),
            (2, opt(&t.r#use)),
            (3, opt(&t.equipment)),
            (4, address),
            (13, ts(&t.start)),
            (14, ts(&t.end)),
        ],
        '^',
    )
}

fn pl(l: &Location) -> String {
    comps(
        &[
            opt(&l.point_of_care),
            opt(&l.room),
            opt(&l.bed),
            opt(&l.facility),
            opt(&l.status),
            String::new(),
            opt(&l.building),
            opt(&l.floor),
            opt(&l.description),
        ],
        '^',
    )
}

/// ISO 8601 date/time → v2 DTM: `2024-03-12T08:45:00.5+01:00` → `20240312084500.5+0100`.
pub fn dtm(iso: &str) -> String {
    let iso = iso.trim();
    let (date_time, zone) = match iso.find('T') {
        Some(t) => {
            let rest = &iso[t..];
            match rest.rfind(['+', '-', 'Z']) {
                Some(z) => (&iso[..t + z], &iso[t + z..]),
                None => (iso, ""),
            }
        }
        None => (iso, ""),
    };
    let mut out: String = date_time
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    match zone {
        "" => {}
        "Z" => out.push_str("+0000"),
        z => out.push_str(&z.replace(':', "")),
    }
    out
}

fn now_dtm() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    crate::record::hl7_timestamp(micros)
}

/// One OBX-5 value in its v2 form.
fn obx5(value: &Value) -> String {
    match value {
        Value::Number(x) => fmt_number(*x),
        Value::Coded(c) => cwe(c),
        Value::Text(t) => esc(t),
        Value::Structured(s) => [
            s.comparator.as_deref().map(esc).unwrap_or_default(),
            s.number.map(fmt_number).unwrap_or_default(),
            s.separator.as_deref().map(esc).unwrap_or_default(),
            s.number2.map(fmt_number).unwrap_or_default(),
        ]
        .join("^")
        .trim_end_matches('^')
        .to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_become_dtm() {
        assert_eq!(dtm("2024-03-12"), "20240312");
        assert_eq!(dtm("2024-03"), "202403");
        assert_eq!(dtm("2024-03-12T08:45:00+01:00"), "20240312084500+0100");
        assert_eq!(dtm("2024-03-12T08:45:00.25Z"), "20240312084500.25+0000");
        assert_eq!(dtm("2024-03-12T08:45:00-05:00"), "20240312084500-0500");
        assert_eq!(now_dtm().len(), 19);
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(esc("A|B^C&D~E\\F"), "A\\F\\B\\S\\C\\T\\D\\R\\E\\E\\F");
        assert_eq!(
            cwe(&Code {
                code: Some("GLU".into()),
                display: Some("Glucose".into()),
                system: Some("L".into()),
                ..Code::default()
            }),
            "GLU^Glucose^L"
        );
    }
}
