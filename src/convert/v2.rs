//! HL7 v2 → [`Clinical`].
//!
//! One pass over the segments in order, keeping just enough context to know what a segment
//! belongs to: an OBX belongs to the order opened by the ORC/OBR before it, an NTE to the
//! segment it follows, an MRG to the PID before it, an RXA takes its ids from its ORC. Which
//! field means what follows HL7's v2-to-FHIR mapping tables (`mappings/segments/*.csv`).
//!
//! Nothing here fails: a field that cannot be read (a date that is not a date, a number that is
//! not a number) becomes an absent value and a warning naming the field, never its content.

use std::borrow::Cow;

use crate::hl7::{Element, Message, Parts, Segment};
use crate::record::clinical::*;

/// Converts a parsed message.
pub fn to_clinical(msg: &Message<'_>) -> Clinical {
    let mut c = Converter::default();
    for seg in msg.segments() {
        c.segment(&seg);
    }
    c.finish()
}

#[derive(Default)]
struct Converter {
    out: Clinical,
    /// An ORC waiting for the OBR/RXO/RXA that completes it.
    pending_orc: Option<Order>,
    /// The order OBX and SPM segments belong to now.
    current_order: Option<usize>,
    /// The immunization (RXA) the OBX segments after it report on (VXU's ORDER.OBSERVATION).
    current_immunization: Option<usize>,
    /// The PID identifiers an MRG's merge keeps.
    last_pid_ids: Vec<Identifier>,
    /// Where the next NTE goes.
    note_target: NoteTarget,
    /// Inside an MDM document: OBX are its content.
    in_document: bool,
    seen_pid: bool,
    /// Where the next ROL goes (the segment it follows).
    role_target: RoleTarget,
}

/// A CNN held in a component's subcomponents (id & family name & given name ...): the person,
/// or `None` when it names no one.
fn cnn_of(c: &Element<'_>) -> Option<Person> {
    let part = |n: usize| c.child(n - 1).and_then(|x| clean(x.text()));
    let id = part(1).map(|v| Identifier {
        value: Some(v),
        ..Identifier::default()
    });
    let name = Name {
        family: part(2),
        given: part(3).into_iter().collect(),
        ..Name::default()
    };
    let name = (name != Name::default()).then_some(name);
    (id.is_some() || name.is_some()).then_some(Person { id, name })
}

/// The fields AL1 and IAM share at the same positions: type (2), allergen (3), severity (4),
/// reactions (5).
fn allergy_fields(r: &Reader<'_, '_>) -> Allergy {
    Allergy {
        r#type: r.cwe(2),
        allergen: r.cwe(3),
        severity: r.cwe(4),
        reactions: r
            .reps(5)
            .iter()
            .filter_map(|e| clean(e.first_text()))
            .collect(),
        ..Allergy::default()
    }
}

/// What a ROL or PRT segment describes, by the segment it follows (the guide's message maps).
#[derive(Default, Clone, Copy, PartialEq)]
enum RoleTarget {
    #[default]
    None,
    Patient,
    Visit,
    /// An ORC not yet joined to its OBR/RXO/RXA.
    PendingOrder,
    Order(usize),
    Observation(usize),
}

#[derive(Default, Clone, Copy)]
enum NoteTarget {
    #[default]
    None,
    Patient,
    PendingOrder,
    Order(usize),
    Observation(usize),
    Appointment,
    Referral(usize),
    Allergy(usize),
    Problem(usize),
}

impl Converter {
    fn segment(&mut self, seg: &Segment<'_>) {
        let mut r = Reader {
            seg,
            warnings: Vec::new(),
        };
        match seg.id() {
            "MSH" => self.msh(&mut r),
            "EVN" => {
                self.out.message.event_at = r.dtm(2);
                self.out.message.event_reason = r.cwe(4);
                self.out.message.operators = r.xcns(5);
                self.out.message.event_occurred_at = r.dtm(6);
                let hd = |c: usize| r.text(7, c);
                if hd(1).is_some() || hd(2).is_some() {
                    self.out.message.event_facility = Some(Identifier {
                        authority: hd(1),
                        authority_id: hd(2),
                        authority_id_type: hd(3),
                        ..Identifier::default()
                    });
                }
            }
            "PID" => self.pid(&mut r),
            "PD1" => {
                if let Some(p) = self.out.patient.as_mut() {
                    p.primary_care = r.xcns(4);
                    let facility = r.xon(3);
                    p.primary_facility = facility.as_ref().and_then(|o| o.name.clone());
                    p.primary_facility_id = facility.and_then(|o| o.identifier);
                }
            }
            "MRG" => self.mrg(&mut r),
            "NK1" => self.nk1(&mut r),
            "PV1" => self.pv1(&mut r),
            "PV2" => self.pv2(&mut r),
            "ORC" => self.orc(&mut r),
            "OBR" => self.obr(&mut r),
            "RXO" | "RXE" => self.pharmacy_order(&mut r),
            "TQ1" => self.tq1(&mut r),
            "OBX" => self.obx(&mut r),
            "NTE" => self.nte(&mut r),
            "SPM" => self.spm(&mut r),
            "AL1" => self.al1(&mut r),
            "IAM" => self.iam(&mut r),
            "IAR" => {
                let reaction = Reaction {
                    code: r.cwe(1),
                    severity: r.cwe(2),
                    description: r.text(4, 1),
                };
                if let Some(a) = self.out.allergies.last_mut() {
                    a.reaction_details.push(reaction);
                }
            }
            "DG1" => self.dg1(&mut r),
            "FT1" => self.ft1(&mut r),
            "PR1" => self.pr1(&mut r),
            "RXA" => self.rxa(&mut r),
            "RXR" => self.rxr(&mut r),
            "IN1" => self.in1(&mut r),
            "IN2" => self.in2(&mut r),
            "GT1" => self.gt1(&mut r),
            "SCH" => self.sch(&mut r),
            "AIS" => self.ais(&mut r),
            // Resource, type, then start/duration/units/status at their places in each.
            "AIG" => {
                let res = r.cwe(3).map(|c| booked(&mut r, c, [4, 8, 11, 12, 14]));
                self.appointment().resources.extend(res);
            }
            "AIL" => {
                let loc = r.pl(3).map(|l| booked(&mut r, l, [4, 6, 9, 10, 12]));
                self.appointment().locations.extend(loc);
            }
            "AIP" => {
                let people: Vec<Booked<Person>> = r
                    .xcns(3)
                    .into_iter()
                    .map(|p| booked(&mut r, p, [4, 6, 9, 10, 12]))
                    .collect();
                self.appointment().personnel.extend(people);
            }
            "TXA" => self.txa(&mut r),
            "ROL" => self.rol(&mut r),
            "PRT" => self.prt(&mut r),
            "RF1" => self.rf1(&mut r),
            "ACC" => self.acc(&mut r),
            "SFT" => {
                let s = Software {
                    vendor: r.text(1, 1),
                    version: r.text(2, 1),
                    product: r.text(3, 1),
                    binary_id: r.text(4, 1),
                    information: r.text(5, 1),
                    installed_at: r.dtm(6),
                };
                if s != Software::default() {
                    self.out.message.software.push(s);
                }
            }
            "PRB" => {
                self.out.problems.push(Problem {
                    action: r.text(1, 1).map(|a| a.to_ascii_uppercase()),
                    action_at: r.dtm(2),
                    code: r.cwe(3),
                    identifier: r.ei(4),
                    established_at: r.dtm(7),
                    resolved_at: r.dtm(9),
                    classification: r.cwe(10),
                    confirmation: r.cwe(13),
                    life_cycle: r.cwe(14),
                    onset_at: r.dtm(16),
                    onset_text: r.text(17, 1),
                    notes: Vec::new(),
                });
                // PPR: PRB [{NTE}] — the notes that follow are the problem's.
                self.note_target = NoteTarget::Problem(self.out.problems.len() - 1);
            }
            "DB1" => {
                let d = Disability {
                    person: r.text(2, 1).map(|p| p.to_ascii_uppercase()),
                    identifiers: r.cxs(3),
                    disabled: r.yes_no(4),
                    start: r.dtm(5),
                    end: r.dtm(6),
                    return_to_work: r.dtm(7),
                    unable_to_work: r.dtm(8),
                };
                if d != Disability::default() {
                    self.out.disabilities.push(d);
                }
            }
            "PDA" => self.pda(&mut r),
            "PRD" => self.prd(&mut r),
            _ => {}
        }
        self.role_target = match seg.id() {
            "PID" | "PD1" => RoleTarget::Patient,
            "PV1" | "PV2" => RoleTarget::Visit,
            "ORC" if self.pending_orc.is_some() => RoleTarget::PendingOrder,
            "ORC" | "OBR" | "RXO" | "RXE" => self
                .current_order
                .map_or(RoleTarget::None, RoleTarget::Order),
            "OBX" if !self.in_document => self
                .out
                .observations
                .len()
                .checked_sub(1)
                .map_or(RoleTarget::None, RoleTarget::Observation),
            // ROL and PRT repeat, and ARV (access restrictions) may come between.
            "ROL" | "PRT" | "ARV" => self.role_target,
            _ => RoleTarget::None,
        };
        self.out.warnings.append(&mut r.warnings);
    }

    fn finish(mut self) -> Clinical {
        self.flush_orc();
        self.out
    }

    fn msh(&mut self, r: &mut Reader<'_, '_>) {
        let m = &mut self.out.message;
        m.r#type = r.text(9, 1);
        m.event = r.text(9, 2);
        m.structure = r.text(9, 3);
        m.control_id = r.text(10, 1);
        m.sending_application = r.text(3, 1);
        m.sending_facility = r.text(4, 1);
        m.receiving_application = r.text(5, 1);
        m.receiving_facility = r.text(6, 1);
        m.sending_facility_id = r
            .text(4, 2)
            .map(|id| (id, r.text(4, 3).unwrap_or_default()));
        m.receiving_facility_id = r
            .text(6, 2)
            .map(|id| (id, r.text(6, 3).unwrap_or_default()));
        m.processing_id = r.text(11, 1);
        m.version = r.text(12, 1);
        m.sending_organization = r.text(22, 1);
        m.receiving_organization = r.text(23, 1);
        m.language = r.cwe(19);
        let sent = r.dtm(7);
        self.out.message.sent_at = sent;
    }

    fn pid(&mut self, r: &mut Reader<'_, '_>) {
        let mut ids = Vec::new();
        ids.extend(r.cxs(2));
        ids.extend(r.cxs(3));
        ids.extend(r.cxs(4));
        if let Some(ssn) = r.text(19, 1) {
            ids.push(Identifier {
                value: Some(ssn),
                r#type: Some("SS".into()),
                ..Identifier::default()
            });
        }
        if let Some(dl) = r.text(20, 1) {
            ids.push(Identifier {
                value: Some(dl),
                r#type: Some("DL".into()),
                authority: r.text(20, 2),
                end: r.date_at(20, 3),
                ..Identifier::default()
            });
        }
        self.last_pid_ids = ids.clone();
        if self.seen_pid {
            // A later PID (a merge message's next patient group) only feeds its MRG.
            return;
        }
        self.seen_pid = true;
        self.note_target = NoteTarget::Patient;
        let mut names = r.xpns(5);
        for mut alias in r.xpns(9) {
            alias.r#use.get_or_insert_with(|| "A".into());
            names.push(alias);
        }
        let mut addresses = r.xads(11);
        if let Some(county) = r.text(12, 1) {
            if let Some(a) = addresses.first_mut() {
                a.district.get_or_insert(county);
            } else {
                addresses.push(Address {
                    district: Some(county),
                    ..Address::default()
                });
            }
        }
        let mut telecoms = r.xtns(13, "PRN");
        telecoms.extend(r.xtns(14, "WPN"));
        telecoms.extend(r.xtns(40, "PRN"));
        let (birth_date, birth_time) = match r.dtm(7) {
            Some(t) if t.len() > 10 => (Some(t[..10].to_string()), Some(t)),
            other => (other, None),
        };
        let deceased_at = r.dtm(29);
        let deceased = r.yes_no(30).or(deceased_at.as_ref().map(|_| true));
        self.out.patient = Some(Patient {
            identifiers: ids,
            names,
            mothers_maiden_name: r.text(6, 1),
            mothers_identifiers: r.cxs(21),
            birth_date,
            birth_time,
            sex: r.text(8, 1),
            race: r.cwes(10),
            addresses,
            telecoms,
            language: r.cwe(15),
            marital_status: r.cwe(16),
            religion: r.cwe(17),
            account_number: r.cx(18),
            ethnicity: r.cwes(22),
            birth_place: r.text(23, 1),
            multiple_birth: r.yes_no(24),
            birth_order: r.integer(25),
            citizenship: r.cwes(26),
            nationality: r.cwe(28),
            species: r.cwe(35),
            breed: r.cwe(36),
            tribal_citizenship: r.cwes(39),
            deceased_at,
            deceased,
            updated_at: r.dtm(33),
            primary_care: Vec::new(),
            notes: Vec::new(),
            primary_facility: None,
            primary_facility_id: None,
            roles: Vec::new(),
        });
    }

    fn mrg(&mut self, r: &mut Reader<'_, '_>) {
        let mut prior = r.cxs(1);
        if let Some(pi) = r.text(4, 1) {
            prior.push(Identifier {
                value: Some(pi),
                r#type: Some("PI".into()),
                ..Identifier::default()
            });
        }
        self.out.merges.push(Merge {
            identifiers: self.last_pid_ids.clone(),
            prior_identifiers: prior,
            prior_account: r.cx(3),
            prior_visit: r.cx(5),
            prior_name: r.xpns(7).into_iter().next(),
        });
    }

    fn nk1(&mut self, r: &mut Reader<'_, '_>) {
        let organization = r.xon(13);
        let mut telecoms = r.xtns(5, "PRN");
        telecoms.extend(r.xtns(6, "WPN"));
        telecoms.extend(r.xtns(40, "PRN"));
        telecoms.extend(r.xtns(31, "PRN"));
        telecoms.extend(r.xtns(41, "PRN"));
        let mut names = r.xpns(2);
        names.extend(r.xpns(30));
        let mut addresses = r.xads(4);
        addresses.extend(r.xads(32));
        self.out.next_of_kin.push(Contact {
            names,
            relationship: r.cwe(3),
            addresses,
            language: r.cwe(20),
            telecoms,
            role: r.cwe(7),
            start: r.dtm(8),
            end: r.dtm(9),
            organization: organization.as_ref().and_then(|o| o.name.clone()),
            organization_id: organization.and_then(|o| o.identifier),
            sex: r.text(15, 1),
            birth_date: r.dtm(16),
            // NK1-12 (employee number), NK1-33 (identifiers), NK1-37 (SSN).
            identifiers: r
                .cx(12)
                .into_iter()
                .chain(r.cxs(33))
                .chain(r.text(37, 1).map(|ssn| Identifier {
                    value: Some(ssn),
                    r#type: Some("SS".into()),
                    ..Identifier::default()
                }))
                .collect(),
        });
    }

    /// After the visit, a note is about the referral when the message carries one (REF^I12's
    /// closing NTE), else about nothing the visit came after.
    fn visit_notes(&mut self) {
        self.note_target = match self.out.referrals.len() {
            0 => NoteTarget::None,
            n => NoteTarget::Referral(n - 1),
        };
    }

    fn pv1(&mut self, r: &mut Reader<'_, '_>) {
        self.visit_notes();
        if self.out.visit.is_some() {
            return;
        }
        self.out.visit = Some(Visit {
            class: r.text(2, 1).map(|c| Code::table("0004", c)),
            location: r.pl(3),
            admission_type: r.cwe(4),
            preadmit_number: r.cx(5),
            prior_location: r.pl(6),
            attending: r.xcns(7),
            referring: r.xcns(8),
            consulting: r.xcns(9),
            hospital_service: r.cwe(10),
            temporary_location: r.pl(11),
            readmission: r.cwe(13),
            admit_source: r.cwe(14),
            vip: r.cwe(16),
            admitting: r.xcns(17),
            patient_type: r.cwe(18),
            visit_number: r.cx(19),
            financial_class: r.cwe(20),
            discharge_disposition: r.cwe(36),
            discharged_to: r.first(37).and_then(|d| {
                let c = Code {
                    code: sub_text(&d, 1, 1),
                    display: sub_text(&d, 1, 2),
                    system: sub_text(&d, 1, 3),
                    ..Code::default()
                };
                (!c.is_empty()).then_some(c)
            }),
            pending_location: r.pl(42),
            admitted_at: r.dtm(44),
            discharged_at: r.dtm(45),
            alternate_visit_id: r.cx(50),
            visit_indicator: r.text(51, 1),
            ambulatory_status: r.cwes(15),
            diet: r.cwe(38),
            other_providers: r.xcns(52),
            episode_description: r.text(53, 1),
            episode_id: r.cx(54),
            ..Visit::default()
        });
    }

    fn pv2(&mut self, r: &mut Reader<'_, '_>) {
        self.visit_notes();
        let v = self.out.visit.get_or_insert_with(Visit::default);
        v.admit_reason = r.cwe(3);
        v.expected_admit_at = r.dtm(8);
        v.expected_discharge_at = r.dtm(9);
        v.description = r.text(12, 1);
        v.length_of_stay = r.number(11);
        // PV2-13 referral source: a referrer too.
        v.referring.extend(r.xcns(13));
        v.priority = r.cwe(25);
        v.prior_pending_location = r.pl(1);
        v.arrival_mode = r.cwe(38);
    }

    fn flush_orc(&mut self) {
        if let Some(o) = self.pending_orc.take() {
            self.out.orders.push(o);
            let i = self.out.orders.len() - 1;
            self.current_order = Some(i);
            if matches!(self.note_target, NoteTarget::PendingOrder) {
                self.note_target = NoteTarget::Order(i);
            }
        }
    }

    fn orc(&mut self, r: &mut Reader<'_, '_>) {
        self.flush_orc();
        self.current_immunization = None;
        let priority = r.text(7, 6);
        self.pending_orc = Some(Order {
            control: r.text(1, 1),
            placer_id: r.ei(2),
            filler_id: r.ei(3),
            group_id: r.ei(4),
            status: r.text(5, 1),
            priority,
            ordered_at: r.dtm(9),
            entered_by: r.xcns(10),
            ordering_provider: r.xcns(12),
            ordering_facility: r.xon(21),
            ordering_facility_address: r.xads(22).into_iter().next(),
            ordering_facility_phones: r.xtns(23, "WPN"),
            ordering_provider_address: r.xads(24).into_iter().next(),
            order_type: r.cwe(29),
            alternate_ids: r.cxs(33),
            callback_phones: r.xtns(14, "WPN"),
            control_reason: r.cwe(16),
            confidentiality: r.cwe(28),
            ..Order::default()
        });
        self.note_target = NoteTarget::PendingOrder;
    }

    /// The ORC waiting for this segment, or a fresh order.
    fn take_order(&mut self) -> Order {
        self.pending_orc.take().unwrap_or_default()
    }

    fn push_order(&mut self, o: Order) -> usize {
        self.out.orders.push(o);
        let i = self.out.orders.len() - 1;
        self.current_order = Some(i);
        self.note_target = NoteTarget::Order(i);
        i
    }

    fn obr(&mut self, r: &mut Reader<'_, '_>) {
        self.current_immunization = None;
        let mut o = self.take_order();
        fill(&mut o.placer_id, r.ei(2));
        fill(&mut o.filler_id, r.ei(3));
        o.code = r.cwe(4);
        fill(&mut o.priority, r.text(5, 1));
        fill(&mut o.ordered_at, r.dtm(6));
        o.observed_at = r.dtm(7);
        o.observed_end = r.dtm(8);
        o.specimen_received_at = r.dtm(14);
        o.specimen_source = r.cwe(15);
        if o.ordering_provider.is_empty() {
            o.ordering_provider = r.xcns(16);
        }
        o.reported_at = r.dtm(22);
        o.service_section = r.text(24, 1);
        o.result_status = r.text(25, 1);
        o.parent_id = r.ei(29).or_else(|| r.ei(26));
        o.reasons = r.cwes(31);
        o.interpreters = r.ndl_roles(32, None);
        // OBR-34/35 (NDL): technicians and transcriptionists, as table 0443 names them.
        for (field, code, display) in [(34, "TN", "Technician"), (35, "TR", "Transcriptionist")] {
            let role = Code {
                display: Some(display.into()),
                ..Code::table("0443", code)
            };
            o.report_performers.extend(r.ndl_roles(field, Some(role)));
        }
        o.details = [46, 47].into_iter().flat_map(|f| r.cwes(f)).collect();
        let alternate = r.cxs(53);
        if !alternate.is_empty() {
            o.alternate_ids = alternate;
        }
        o.specimen_action = r.text(11, 1);
        let callback = r.xtns(17, "WPN");
        if !callback.is_empty() {
            o.callback_phones = callback;
        }
        self.push_order(o);
        self.in_document = false;
    }

    fn pharmacy_order(&mut self, r: &mut Reader<'_, '_>) {
        let mut o = self.take_order();
        // RXO-1 / RXE-2: the requested or given give code.
        o.code = if r.seg.id() == "RXO" {
            r.cwe(1)
        } else {
            r.cwe(2)
        };
        self.push_order(o);
    }

    fn tq1(&mut self, r: &mut Reader<'_, '_>) {
        let (start, end, priority) = (r.dtm(7), r.dtm(8), r.text(9, 1));
        let order = if self.pending_orc.is_some() {
            self.pending_orc.as_mut()
        } else if let Some(a) = self.out.appointment.as_mut() {
            fill(&mut a.start, start);
            fill(&mut a.end, end);
            return;
        } else {
            self.current_order.and_then(|i| self.out.orders.get_mut(i))
        };
        let Some(o) = order else {
            return;
        };
        fill(&mut o.priority, priority);
        o.notes.extend(
            r.reps(11)
                .iter()
                .filter_map(|e| clean(e.text()))
                .map(Note::from),
        );
        let quantity = r.first(2);
        let duration = r.first(13);
        let mut times = Vec::new();
        for t in r.reps(4).iter().filter_map(|e| comp_text(e, 1)) {
            match time_of_day(&t) {
                Some(t) => times.push(t),
                None => {
                    let p = r.place(4);
                    r.warnings.push(format!("{p}: not a valid HL7 time"));
                }
            }
        }
        let timing = Timing {
            quantity: quantity
                .as_ref()
                .and_then(|q| comp_text(q, 1))
                .and_then(|t| parse_number(&t)),
            quantity_units: quantity.as_ref().and_then(|q| {
                let c = Code {
                    code: sub_text(q, 2, 1),
                    display: sub_text(q, 2, 2),
                    system: sub_text(q, 2, 3),
                    ..Code::default()
                };
                (c != Code::default()).then_some(c)
            }),
            repeat: r.text(3, 1),
            times,
            start,
            end,
            duration: duration
                .as_ref()
                .and_then(|d| comp_text(d, 1))
                .and_then(|t| parse_number(&t)),
            duration_unit: duration
                .as_ref()
                .and_then(|d| ucum_time_unit(&sub_text(d, 2, 1).or_else(|| sub_text(d, 2, 2))?)),
            occurrences: r
                .text(14, 1)
                .and_then(|t| t.parse::<u32>().ok())
                .filter(|n| *n > 0),
        };
        if timing != Timing::default() {
            o.timing = Some(timing);
        }
    }

    fn obx(&mut self, r: &mut Reader<'_, '_>) {
        let value_type = r.text(2, 1).map(|t| t.to_ascii_uppercase());
        if self.in_document {
            self.document_content(r, value_type.as_deref());
            return;
        }
        if self.pending_orc.is_some() {
            self.flush_orc();
        }
        let (value, more_values) = r.obx_value(value_type.as_deref());
        let interpretation = r.cwes(8);
        let obs = Observation {
            order: self.current_order,
            immunization: self.current_immunization,
            value_type,
            code: r.cwe(3),
            sub_id: r.text(4, 1),
            value,
            more_values,
            units: r.cwe(6),
            reference_range: r.text(7, 1),
            interpretation,
            status: r.text(11, 1),
            observed_at: r.dtm(14),
            producer: r.cwe(15),
            performers: r.xcns(16),
            method: r.cwe(17),
            analysed_at: r.dtm(19),
            body_site: r.cwe(20),
            performing_organization: r.text(23, 1),
            performing_organization_id: r.xon(23).and_then(|o| o.identifier),
            performing_organization_address: r.xads(24).into_iter().next(),
            notes: Vec::new(),
            identifier: r.ei(21),
            equipment: r.reps(18).iter().filter_map(|e| ei_of(e, false)).collect(),
            directors: r.xcns(25),
        };
        self.out.observations.push(obs);
        self.note_target = NoteTarget::Observation(self.out.observations.len() - 1);
    }

    fn document_content(&mut self, r: &mut Reader<'_, '_>, value_type: Option<&str>) {
        let doc = self.out.document.get_or_insert_with(Document::default);
        if value_type == Some("ED") {
            for rep in r.reps(5) {
                doc.attachments.push(Attachment {
                    r#type: comp_text(&rep, 2),
                    subtype: comp_text(&rep, 3),
                    encoding: comp_text(&rep, 4),
                    data: comp_text(&rep, 5),
                });
            }
            return;
        }
        let lines: Vec<String> = r.reps(5).iter().map(|e| e.text().into_owned()).collect();
        let text = lines.join("\n");
        match &mut doc.text {
            Some(t) => {
                t.push('\n');
                t.push_str(&text);
            }
            None => doc.text = Some(text),
        }
    }

    fn nte(&mut self, r: &mut Reader<'_, '_>) {
        let text: Vec<String> = r.reps(3).iter().map(|e| e.text().into_owned()).collect();
        if text.is_empty() {
            return;
        }
        let text = Note {
            text: text.join("\n"),
            author: r.xcns(5).into_iter().next(),
            at: r.dtm(6),
        };
        match self.note_target {
            NoteTarget::Patient => {
                if let Some(p) = self.out.patient.as_mut() {
                    p.notes.push(text);
                }
            }
            NoteTarget::PendingOrder => {
                if let Some(o) = self.pending_orc.as_mut() {
                    o.notes.push(text);
                }
            }
            NoteTarget::Order(i) => self.out.orders[i].notes.push(text),
            NoteTarget::Observation(i) => self.out.observations[i].notes.push(text),
            NoteTarget::Appointment => self.appointment().notes.push(text),
            NoteTarget::Referral(i) => self.out.referrals[i].notes.push(text),
            NoteTarget::Allergy(i) => self.out.allergies[i].notes.push(text),
            NoteTarget::Problem(i) => self.out.problems[i].notes.push(text),
            NoteTarget::None => {}
        }
    }

    fn spm(&mut self, r: &mut Reader<'_, '_>) {
        let mut identifiers = r.eips(2);
        identifiers.extend(r.cxs(31));
        identifiers.extend(r.ei(32).map(|mut i| {
            i.r#type = Some("SHIP".into());
            i
        }));
        let amount = r.first(12);
        self.out.specimens.push(Specimen {
            order: self.current_order,
            identifiers,
            parents: r.eips(3),
            accession: r.cx(30),
            r#type: r.cwe(4),
            collection_method: r.cwe(7),
            body_site: r.cwe(8),
            collected_at: r.dtm_at(17, 1),
            collected_end: r.dtm_at(17, 2),
            received_at: r.dtm(18),
            additive: r.cwe(6),
            amount: amount
                .as_ref()
                .and_then(|a| comp_text(a, 1))
                .and_then(|t| parse_number(&t)),
            amount_units: amount.as_ref().and_then(|a| {
                let c = Code {
                    code: sub_text(a, 2, 1),
                    display: sub_text(a, 2, 2),
                    system: sub_text(a, 2, 3),
                    ..Code::default()
                };
                (!c.is_empty()).then_some(c)
            }),
            description: r.text(14, 1),
            available: r.yes_no(20),
            conditions: r.cwes(24),
            container_type: r.cwe(27),
        });
    }

    fn al1(&mut self, r: &mut Reader<'_, '_>) {
        self.out.allergies.push(Allergy {
            identified_at: r.dtm(6),
            ..allergy_fields(r)
        });
    }

    /// ROL after PID/PD1 (the patient's care) or PV1/PV2 (the visit); elsewhere (procedures,
    /// insurance) the guide maps none.
    fn rol(&mut self, r: &mut Reader<'_, '_>) {
        let role = Role {
            identifier: r.ei(1),
            role: r.cwe(3),
            person: r.xcns(4).into_iter().next(),
            start: r.dtm(5),
            end: r.dtm(6),
            telecoms: r.xtns(12, "WPN"),
            location: r.pl(13),
            organization: r.xon(14),
        };
        match self.role_target {
            RoleTarget::Patient => {
                if let Some(p) = self.out.patient.as_mut() {
                    p.roles.push(role);
                }
            }
            RoleTarget::Visit => {
                if let Some(v) = self.out.visit.as_mut() {
                    v.roles.push(role);
                }
            }
            // ROL after an order, a procedure or an insurance maps to nothing (the guide).
            _ => {}
        }
    }

    /// PRT (v2.7+ participation), by the segment it follows, as the guide's message maps say:
    /// after PID/PD1 a primary care provider (PRT-4 `PP`), after PV1/PV2 a visit participant,
    /// after ORC/OBR the ordering provider (`OP`) or the report's technician/transcriptionist/
    /// interpreter (`TN`, `TR`, `ARI`), after OBX the device (PRT-10).
    fn prt(&mut self, r: &mut Reader<'_, '_>) {
        let role = Role {
            identifier: r.ei(1),
            role: r.cwe(4),
            person: r.xcns(5).into_iter().next(),
            start: r.dtm(11),
            end: r.dtm(12),
            telecoms: r.xtns(15, "WPN"),
            location: r.pl(9),
            organization: r.xon(8),
        };
        let code = role
            .role
            .as_ref()
            .and_then(|c| c.code.as_deref())
            .map(str::to_ascii_uppercase)
            .unwrap_or_default();
        let order = match self.role_target {
            RoleTarget::Patient => {
                if let Some(p) = self.out.patient.as_mut() {
                    p.roles.push(role);
                }
                return;
            }
            RoleTarget::Visit => {
                if let Some(v) = self.out.visit.as_mut() {
                    v.roles.push(role);
                }
                return;
            }
            RoleTarget::Observation(i) => {
                if let (Some(device), Some(o)) = (r.ei(10), self.out.observations.get_mut(i)) {
                    o.equipment.push(device);
                }
                return;
            }
            RoleTarget::PendingOrder => self.pending_orc.as_mut(),
            RoleTarget::Order(i) => self.out.orders.get_mut(i),
            RoleTarget::None => None,
        };
        let Some(order) = order else {
            return;
        };
        match code.as_str() {
            "OP" => {
                if let Some(p) = role.person {
                    if !order.ordering_provider.contains(&p) {
                        order.ordering_provider.push(p);
                    }
                }
            }
            "TN" | "TR" | "ARI" => order.report_performers.push(role),
            _ => {}
        }
    }

    /// IAM: an allergy with its own record id, action and status (ADT^A60, v2.6+).
    fn iam(&mut self, r: &mut Reader<'_, '_>) {
        let base = allergy_fields(r);
        self.out.allergies.push(Allergy {
            identifier: r.ei(7),
            action: r.text(6, 1),
            status: r.cwe(17),
            onset_text: r.text(12, 1),
            reported_at: r.dtm(13),
            allergen: base.allergen.clone().or_else(|| r.cwe(27)),
            identified_at: r.dtm(11),
            reported_by: r.xpns(14).into_iter().next(),
            reporter_relationship: r.cwe(15),
            ..base
        });
        // ADT_A60: IAM [{NTE}] — the notes that follow are the allergy's.
        self.note_target = NoteTarget::Allergy(self.out.allergies.len() - 1);
    }

    fn dg1(&mut self, r: &mut Reader<'_, '_>) {
        let mut code = r.cwe(3);
        if let Some(desc) = r.text(4, 1) {
            let c = code.get_or_insert_with(Code::default);
            c.text.get_or_insert(desc);
        }
        self.out.diagnoses.push(Diagnosis {
            code,
            diagnosed_at: r.dtm(5),
            r#type: r.text(6, 1),
            priority: r.text(15, 1),
            clinicians: r.xcns(16),
            identifier: r.ei(20),
            attested_at: r.dtm(19),
            action: r.text(21, 1),
        });
    }

    fn pr1(&mut self, r: &mut Reader<'_, '_>) {
        self.out.procedures.push(Procedure {
            code: r.cwe(3),
            description: r.text(4, 1),
            performed_at: r.dtm(5),
            functional_type: r.cwe(6),
            minutes: r.number(7),
            anesthesiologists: r.xcns(8),
            surgeons: r.xcns(11),
            performers: r.xcns(12),
            reason: r.cwe(15),
            identifier: r.ei(19),
            location: r.pl(23),
            parent: r.ei(25),
        });
    }

    fn rxa(&mut self, r: &mut Reader<'_, '_>) {
        let orc = self.pending_orc.take();
        let mut identifiers = Vec::new();
        let mut ordering_provider = Vec::new();
        let mut order = None;
        if let Some(o) = orc {
            // ORC[Immunization]: typed PLAC and FILL.
            let typed = |id: &Option<Identifier>, kind: &str| {
                id.clone().map(|mut i| {
                    i.r#type = Some(kind.into());
                    i
                })
            };
            identifiers.extend(typed(&o.placer_id, "PLAC"));
            identifiers.extend(typed(&o.filler_id, "FILL"));
            ordering_provider = o.ordering_provider.clone();
            // The order itself as well (VXU_V04's ORC[ServiceRequest], "if the system wants
            // to know about the order that led to the immunization event"): routes see it
            // among the orders, and the OBX after the RXA are based on it.
            self.out.orders.push(o);
            order = Some(self.out.orders.len() - 1);
        }
        let lot_numbers = r
            .reps(15)
            .iter()
            .filter_map(|e| clean(e.first_text()))
            .collect();
        self.out.immunizations.push(Immunization {
            identifiers,
            administered_at: r.dtm(3),
            vaccine: r.cwe(5),
            amount: r.number(6),
            units: r.cwe(7),
            notes: r.cwes(9),
            performers: r.xcns(10),
            lot_numbers,
            expires: r.dtm(16),
            manufacturer: r.cwe(17),
            refusal_reasons: r.cwes(18),
            completion_status: r.text(20, 1),
            action: r.text(21, 1),
            route: None,
            site: None,
            ordering_provider,
            indications: r.cwes(19),
            entered_at: r.dtm(22),
            location: r.pl(27),
            location_address: r.xads(28).into_iter().next(),
            order,
        });
        self.current_immunization = Some(self.out.immunizations.len() - 1);
        self.note_target = NoteTarget::None;
    }

    fn rxr(&mut self, r: &mut Reader<'_, '_>) {
        let (route, site) = (r.cwe(1), r.cwe(2));
        if let Some(i) = self.out.immunizations.last_mut() {
            i.route = route;
            i.site = site;
        }
    }

    fn gt1(&mut self, r: &mut Reader<'_, '_>) {
        let mut telecoms = r.xtns(6, "PRN");
        telecoms.extend(r.xtns(7, "WPN"));
        let mut identifiers = r.cxs(2);
        // GT1-19, the guarantor's employee number, as NK1-12 is the contact's.
        identifiers.extend(r.cxs(19).into_iter().map(|mut i| {
            i.r#type.get_or_insert_with(|| "EI".into());
            i
        }));
        identifiers.extend(r.text(12, 1).map(|ssn| Identifier {
            value: Some(ssn),
            r#type: Some("SS".into()),
            ..Identifier::default()
        }));
        let person = Contact {
            names: r.xpns(3),
            relationship: r.cwe(11),
            addresses: r.xads(5),
            telecoms,
            start: r.dtm(13),
            end: r.dtm(14),
            sex: r.text(9, 1),
            birth_date: r.dtm(8),
            identifiers,
            ..Contact::default()
        };
        self.out.guarantors.push(Guarantor {
            person,
            organization: r.xon(21),
            r#type: r.cwe(10),
            priority: r.integer(15),
            billing_hold: r.yes_no(22),
            language: r.cwe(36),
        });
    }

    fn ft1(&mut self, r: &mut Reader<'_, '_>) {
        let charge = Charge {
            id: r.text(2, 1),
            start: r.dtm_at(4, 1),
            end: r.dtm_at(4, 2),
            posted: r.dtm(5),
            r#type: r.cwe(6),
            code: r.cwe(7),
            quantity: r.number(10),
            amount: r.money(11),
            unit_amount: r.money(12),
            department: r.cwe(13),
            diagnoses: r.cwes(19),
            performers: r.xcns(20),
            ordered_by: r.xcns(21).into_iter().next(),
            entered_by: r.xcns(24).into_iter().next(),
            procedure: r.cwe(25),
            drug: r.cwe(29),
            performing_facility: r.xon(32),
            ordering_facility: r.xon(33),
        };
        self.out.charges.push(charge);
    }

    fn in1(&mut self, r: &mut Reader<'_, '_>) {
        self.out.insurance.push(Insurance {
            plan: r.cwe(2),
            company_ids: r.cxs(3),
            company_name: r.text(4, 1),
            group_number: r.text(8, 1),
            group_name: r.text(9, 1),
            start: r.dtm(12),
            end: r.dtm(13),
            plan_type: r.cwe(15),
            insured_name: r.xpns(16).into_iter().next(),
            relationship: r.cwe(17),
            policy_number: r.text(36, 1),
            insured_ids: r.cxs(49),
            insured_birth_date: r.dtm(18),
            insured_address: r.xads(19).into_iter().next(),
            insured_sex: r.text(43, 1),
            policy_holder: r.text(11, 1),
            policy_holder_ids: r.cxs(10),
            ..Insurance::default()
        });
    }

    /// IN2 completes the IN1 before it; alone it is reported, not kept.
    fn in2(&mut self, r: &mut Reader<'_, '_>) {
        if self.out.insurance.is_empty() {
            r.warnings.push("IN2: no IN1 before it; skipped".into());
            return;
        }
        let typed = |value: Option<String>, kind: &str| {
            value.map(|v| Identifier {
                value: Some(v),
                r#type: Some(kind.into()),
                ..Identifier::default()
            })
        };
        let patient_ids: Vec<Identifier> = [
            typed(r.text(6, 1), "MC"),
            typed(r.text(8, 1), "MA"),
            typed(r.text(10, 1), "MI"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut insured = r.cxs(1);
        for i in &mut insured {
            i.r#type.get_or_insert_with(|| "EI".into());
        }
        insured.extend(typed(r.text(2, 1), "SS"));
        let mut member = r.cx(61);
        if let Some(m) = member.as_mut() {
            m.r#type.get_or_insert_with(|| "MB".into());
        }
        if let Some(ins) = self.out.insurance.last_mut() {
            ins.patient_ids = patient_ids;
            ins.insured_more_ids = insured;
            ins.member_number = member;
        }
    }

    fn appointment(&mut self) -> &mut Appointment {
        self.out
            .appointment
            .get_or_insert_with(Appointment::default)
    }

    fn sch(&mut self, r: &mut Reader<'_, '_>) {
        let a = Appointment {
            placer_id: r.ei(1),
            filler_id: r.ei(2),
            event_reason: r.cwe(6),
            reason: r.cwe(7),
            r#type: r.cwe(8),
            duration: r.number(9),
            duration_units: r.cwe(10),
            start: r.dtm_at(11, 4),
            end: r.dtm_at(11, 5),
            status: r.cwe(25),
            contacts: [12, 16, 20].into_iter().flat_map(|f| r.xcns(f)).collect(),
            placer_order: r.ei(26),
            filler_order: r.ei(27),
            ..Appointment::default()
        };
        self.out.appointment = Some(a);
        self.note_target = NoteTarget::Appointment;
    }

    fn ais(&mut self, r: &mut Reader<'_, '_>) {
        let service = r.cwe(3).map(|what| Booked {
            what,
            r#type: None,
            start: r.dtm(4),
            duration: r.number(7),
            duration_units: r.cwe(8),
            status: r.cwe(10),
        });
        let a = self.appointment();
        if let Some(s) = service {
            fill(&mut a.start, s.start.clone());
            a.services.push(s);
        }
    }

    fn acc(&mut self, r: &mut Reader<'_, '_>) {
        let a = Accident {
            at: r.dtm(1),
            code: r.cwe(2),
            location: r.text(3, 1),
            auto_state: r.cwe(4),
            job_related: r.yes_no(5),
            death: r.yes_no(6),
            entered_by: r.xcns(7).into_iter().next(),
            description: r.text(8, 1),
            brought_in_by: r.text(9, 1),
            police_notified: r.yes_no(10),
            address: r.xads(11).into_iter().next(),
            identifier: r.ei(13),
        };
        if a != Accident::default() {
            self.out.accident = Some(a);
        }
    }

    fn pda(&mut self, r: &mut Reader<'_, '_>) {
        let d = Death {
            causes: r.cwes(1),
            location: r.pl(2),
            certified: r.yes_no(3),
            certificate_signed_at: r.dtm(4),
            certified_by: r.xcns(5).into_iter().next(),
            autopsy: r.yes_no(6),
            autopsy_start: r.dtm_at(7, 1),
            autopsy_end: r.dtm_at(7, 2),
            autopsy_by: r.xcns(8).into_iter().next(),
            coroner: r.yes_no(9),
        };
        if d != Death::default() {
            self.out.death = Some(d);
        }
    }

    fn rf1(&mut self, r: &mut Reader<'_, '_>) {
        let referral = Referral {
            status: r.cwe(1),
            priority: r.cwe(2),
            r#type: r.cwe(3),
            disposition: r.cwes(4),
            category: r.cwe(5),
            originating_id: r.ei(6),
            effective: r.dtm(7),
            expires: r.dtm(8),
            processed_at: r.dtm(9),
            reasons: r.cwes(10),
            external_ids: r.reps(11).iter().filter_map(|e| ei_of(e, false)).collect(),
            reason_text: r.text(14, 1),
            authorized_units: r.number(15),
            authorized_provider: r.xon(19),
            authorized_professional: r.xcns(20).into_iter().next(),
            comment: r.text(24, 1),
            ..Referral::default()
        };
        self.out.referrals.push(referral);
        self.note_target = NoteTarget::Referral(self.out.referrals.len() - 1);
    }

    /// A provider of the referral before it; a PRD with no referral is reported, not kept.
    fn prd(&mut self, r: &mut Reader<'_, '_>) {
        if self.out.referrals.is_empty() {
            r.warnings.push("PRD: no RF1 before it; skipped".into());
            return;
        }
        // PRD-7 is a PLN: number ^ type (table 0338) ^ state ^ expiration date.
        let identifiers = r
            .reps(7)
            .iter()
            .filter_map(|rep| {
                Some(Identifier {
                    value: Some(comp_text(rep, 1)?),
                    r#type: comp_text(rep, 2),
                    end: comp_text(rep, 4).and_then(|t| hl7_datetime(&t)),
                    ..Identifier::default()
                })
            })
            .collect();
        let provider = ReferralProvider {
            roles: r.cwes(1),
            name: r.xpns(2).into_iter().next(),
            addresses: r.xads(3),
            location: r.pl(4),
            telecoms: r.xtns(5, "WPN"),
            identifiers,
            start: r.dtm(8),
            end: r.dtm(9),
            organization: r.xon(10),
        };
        if let Some(referral) = self.out.referrals.last_mut() {
            referral.providers.push(provider);
        }
    }

    fn txa(&mut self, r: &mut Reader<'_, '_>) {
        let mut authors = r.xcns(5);
        authors.extend(r.xcns(9));
        let doc = Document {
            r#type: r.cwe(2),
            presentation: r.text(3, 1),
            activity_at: r.dtm(4),
            originated_at: r.dtm(6),
            authenticators: r.xcns(10),
            title: r.text(25, 1),
            authors,
            identifier: r.ei(12),
            parent: r.ei(13),
            placer_ids: r.reps(14).iter().filter_map(|e| ei_of(e, false)).collect(),
            file_name: r.text(16, 1),
            completion_status: r.text(17, 1),
            confidentiality: r.text(18, 1),
            availability: r.text(19, 1),
            text: None,
            attachments: Vec::new(),
        };
        self.out.document = Some(doc);
        self.in_document = true;
    }
}

/// An AIG/AIL/AIP resource with its type, start, duration, units and status, read from the
/// given fields.
fn booked<T>(
    r: &mut Reader<'_, '_>,
    what: T,
    [kind, start, duration, units, status]: [usize; 5],
) -> Booked<T> {
    Booked {
        what,
        r#type: r.cwe(kind),
        start: r.dtm(start),
        duration: r.number(duration),
        duration_units: r.cwe(units),
        status: r.cwe(status),
    }
}

fn fill<T>(slot: &mut Option<T>, value: Option<T>) {
    if slot.is_none() {
        *slot = value;
    }
}

/// Trimmed text; empty and the HL7 null `""` are absent.
fn clean(text: Cow<'_, str>) -> Option<String> {
    let t = text.trim();
    (!t.is_empty() && t != "\"\"").then(|| t.to_string())
}

/// An HL7 time (TM: `HH[MM[SS[.S]]][+/-ZZZZ]`, or already `hh:mm[:ss]`) as FHIR's `time`.
fn time_of_day(t: &str) -> Option<String> {
    let t = t.trim();
    let digits: String = if t.contains(':') {
        t.split(':').collect()
    } else {
        t.chars()
            .take_while(|c| !matches!(c, '+' | '-' | '.'))
            .collect()
    };
    if !digits.chars().all(|c| c.is_ascii_digit()) || !matches!(digits.len(), 2 | 4 | 6) {
        return None;
    }
    let part = |i: usize| {
        digits
            .get(i..i + 2)
            .map_or(Some(0), |p| p.parse::<u32>().ok())
    };
    let (h, m, s) = (part(0)?, part(2)?, part(4)?);
    (h < 24 && m < 60 && s < 60).then(|| format!("{h:02}:{m:02}:{s:02}"))
}

/// A v2 unit of time (ISO+/ANSI or UCUM spellings) as the UCUM code FHIR's Timing requires.
fn ucum_time_unit(u: &str) -> Option<String> {
    let unit = match u.trim().to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" | "seconds" => "s",
        "min" | "minute" | "minutes" | "m" => "min",
        "h" | "hr" | "hour" | "hours" => "h",
        "d" | "day" | "days" => "d",
        "wk" | "w" | "week" | "weeks" => "wk",
        "mo" | "month" | "months" | "l" => "mo",
        "a" | "yr" | "y" | "year" | "years" => "a",
        _ => return None,
    };
    Some(unit.to_string())
}

/// What a value's components are read from: the element itself (each component found by a
/// scan from the start), or its [`Parts`] split once, for readers that take many.
trait Components<'m> {
    /// Component `i` (0-based).
    fn component(&self, i: usize) -> Option<Element<'m>>;
    /// How many components there are.
    fn count(&self) -> usize;
}

impl<'m> Components<'m> for Element<'m> {
    fn component(&self, i: usize) -> Option<Element<'m>> {
        self.child(i)
    }
    fn count(&self) -> usize {
        self.children().count()
    }
}

impl<'m> Components<'m> for Parts<'m> {
    fn component(&self, i: usize) -> Option<Element<'m>> {
        self.get(i)
    }
    fn count(&self) -> usize {
        Parts::count(self)
    }
}

/// The text of component `n` (1-based) of a repetition, read down to its first subcomponent.
// Inlined: called from every reader, and with more callers the compiler stopped inlining it
// (ADT+ORU conversion 7 % slower, measured).
#[inline]
fn comp_text<'m>(rep: &impl Components<'m>, n: usize) -> Option<String> {
    rep.component(n - 1)
        .and_then(|c| c.child(0))
        .and_then(|s| clean(s.text()))
}

/// Subcomponent `s` of component `n` (both 1-based).
fn sub_text<'m>(rep: &impl Components<'m>, n: usize, s: usize) -> Option<String> {
    rep.component(n - 1)
        .and_then(|c| c.child(s - 1))
        .and_then(|x| clean(x.text()))
}

/// An EI held in `e`: as components of a repetition, or as subcomponents of a component.
fn ei_of(e: &Element<'_>, in_component: bool) -> Option<Identifier> {
    let part = |n: usize| -> Option<String> {
        if in_component {
            e.child(n - 1).and_then(|x| clean(x.text()))
        } else {
            comp_text(e, n)
        }
    };
    let value = part(1);
    value.as_ref()?;
    Some(Identifier {
        value,
        authority: part(2),
        authority_id: part(3),
        authority_id_type: part(4),
        ..Identifier::default()
    })
}

/// Reads typed values out of one segment, collecting warnings that name the field.
struct Reader<'s, 'm> {
    seg: &'s Segment<'m>,
    warnings: Vec<String>,
}

impl<'m> Reader<'_, 'm> {
    fn place(&self, field: usize) -> String {
        format!("{}-{field}", self.seg.id())
    }

    /// The non-empty repetitions of a field.
    fn reps(&self, field: usize) -> Vec<Element<'m>> {
        match self.seg.field(field) {
            Some(f) => f
                .children()
                .filter(|r| !r.is_empty() && !r.is_null())
                .collect(),
            None => Vec::new(),
        }
    }

    fn first(&self, field: usize) -> Option<Element<'m>> {
        // Most reads want one value: no list of every repetition for that.
        self.seg
            .field(field)?
            .children()
            .find(|r| !r.is_empty() && !r.is_null())
    }

    /// Component `comp` of the first repetition, as text.
    fn text(&self, field: usize, comp: usize) -> Option<String> {
        comp_text(&self.first(field)?, comp)
    }

    fn yes_no(&mut self, field: usize) -> Option<bool> {
        // Y/N per the standard; YES/NO occur in real feeds and mean the same.
        match self.text(field, 1)?.to_ascii_uppercase().as_str() {
            "Y" | "YES" => Some(true),
            "N" | "NO" => Some(false),
            _ => {
                let p = self.place(field);
                self.warnings.push(format!("{p}: not Y or N"));
                None
            }
        }
    }

    fn number(&mut self, field: usize) -> Option<f64> {
        let t = self.text(field, 1)?;
        match parse_number(&t) {
            Some(n) => Some(n),
            None => {
                let p = self.place(field);
                self.warnings.push(format!("{p}: not a number"));
                None
            }
        }
    }

    fn integer(&mut self, field: usize) -> Option<i64> {
        let t = self.text(field, 1)?;
        match t.parse() {
            Ok(n) => Some(n),
            Err(_) => {
                let p = self.place(field);
                self.warnings.push(format!("{p}: not a whole number"));
                None
            }
        }
    }

    /// A date/time from component 1 of the field.
    fn dtm(&mut self, field: usize) -> Option<String> {
        self.dtm_at(field, 1)
    }

    /// A date/time from component `comp` of the field.
    fn dtm_at(&mut self, field: usize, comp: usize) -> Option<String> {
        let t = self.text(field, comp)?;
        match hl7_datetime(&t) {
            Some(iso) => Some(iso),
            None => {
                let p = self.place(field);
                self.warnings
                    .push(format!("{p}: not a valid HL7 date/time"));
                None
            }
        }
    }

    fn date_at(&mut self, field: usize, comp: usize) -> Option<String> {
        self.dtm_at(field, comp)
    }

    /// A CP's price (MO in component 1: quantity & denomination).
    fn money(&mut self, field: usize) -> Option<Money> {
        let rep = self.first(field)?;
        let amount = sub_text(&rep, 1, 1)?;
        let Some(value) = parse_number(&amount) else {
            let p = self.place(field);
            self.warnings.push(format!("{p}: not an amount"));
            return None;
        };
        Some(Money {
            value,
            currency: sub_text(&rep, 1, 2),
        })
    }

    fn cwe(&self, field: usize) -> Option<Code> {
        self.first(field).and_then(|e| cwe_of(&e))
    }

    fn cwes(&self, field: usize) -> Vec<Code> {
        self.reps(field).iter().filter_map(cwe_of).collect()
    }

    fn cx(&mut self, field: usize) -> Option<Identifier> {
        self.cxs(field).into_iter().next()
    }

    fn cxs(&mut self, field: usize) -> Vec<Identifier> {
        let mut out = Vec::new();
        for rep in self.reps(field) {
            let rep = rep.parts();
            let Some(value) = comp_text(&rep, 1) else {
                continue;
            };
            let start = comp_text(&rep, 7).and_then(|t| hl7_datetime(&t));
            let end = comp_text(&rep, 8).and_then(|t| hl7_datetime(&t));
            out.push(Identifier {
                value: Some(value),
                r#type: comp_text(&rep, 5),
                authority: sub_text(&rep, 4, 1),
                authority_id: sub_text(&rep, 4, 2),
                authority_id_type: sub_text(&rep, 4, 3),
                facility: sub_text(&rep, 6, 1),
                start,
                end,
            });
        }
        out
    }

    /// EIPs (placer id ^ filler id, each an EI in subcomponents) as identifiers typed by the
    /// guide's EIP maps: `PGN` for the placer's, `FGN` for the filler's.
    fn eips(&self, field: usize) -> Vec<Identifier> {
        let mut out = Vec::new();
        for rep in self.reps(field) {
            for (k, kind) in [(0, "PGN"), (1, "FGN")] {
                if let Some(mut id) = rep.child(k).and_then(|c| ei_of(&c, true)) {
                    id.r#type = Some(kind.into());
                    out.push(id);
                }
            }
        }
        out
    }

    fn ei(&self, field: usize) -> Option<Identifier> {
        self.first(field).and_then(|e| ei_of(&e, false))
    }

    fn xpns(&self, field: usize) -> Vec<Name> {
        self.reps(field)
            .iter()
            .filter_map(|rep| {
                let name = name_of(rep, 1);
                (name != Name::default()).then_some(name)
            })
            .collect()
    }

    fn xcns(&self, field: usize) -> Vec<Person> {
        self.reps(field).iter().filter_map(xcn_of).collect()
    }

    /// XCN held in component `comp` of each repetition as subcomponents (OBR-32 NDL style).
    fn xcns_at(&self, field: usize, comp: usize) -> Vec<Person> {
        self.reps(field)
            .iter()
            .filter_map(|rep| cnn_of(&rep.child(comp - 1)?))
            .collect()
    }

    /// An NDL field (OBR-32 to 35) as roles (NDL[PractitionerRole]): the person — the CNN in
    /// component 1's subcomponents, or, as senders also write it, an XCN laid out in
    /// components — and with the CNN layout the period NDL-2/3 and the place NDL-4 to 11
    /// (point of care, room, bed, facility, status, building, floor).
    fn ndl_roles(&mut self, field: usize, role: Option<Code>) -> Vec<Role> {
        let cnn = self.xcns_at(field, 1);
        let xcn: Vec<Person> = self.reps(field).iter().filter_map(xcn_of).collect();
        // The layout that yields names wins; with none, the CNN's ids.
        if !(cnn.iter().any(|p| p.name.is_some()) || xcn.iter().all(|p| p.name.is_none())) {
            return xcn
                .into_iter()
                .map(|p| Role {
                    role: role.clone(),
                    person: Some(p),
                    ..Role::default()
                })
                .collect();
        }
        let mut out = Vec::new();
        for rep in self.reps(field) {
            let rep = rep.parts();
            let Some(person) = rep.component(0).as_ref().and_then(cnn_of) else {
                continue;
            };
            let location = Location {
                point_of_care: comp_text(&rep, 4),
                room: comp_text(&rep, 5),
                bed: comp_text(&rep, 6),
                facility: comp_text(&rep, 7),
                status: comp_text(&rep, 8),
                building: comp_text(&rep, 10),
                floor: comp_text(&rep, 11),
                ..Location::default()
            };
            let at = |n: usize, this: &mut Self| {
                let t = comp_text(&rep, n)?;
                let iso = hl7_datetime(&t);
                if iso.is_none() {
                    let p = this.place(field);
                    this.warnings
                        .push(format!("{p}: not a valid HL7 date/time"));
                }
                iso
            };
            out.push(Role {
                role: role.clone(),
                person: Some(person),
                start: at(2, self),
                end: at(3, self),
                location: (location != Location::default()).then_some(location),
                ..Role::default()
            });
        }
        out
    }

    fn xads(&self, field: usize) -> Vec<Address> {
        self.reps(field)
            .iter()
            .filter_map(|rep| {
                let rep = &rep.parts();
                let a = Address {
                    lines: [sub_text(rep, 1, 1), comp_text(rep, 2)]
                        .into_iter()
                        .flatten()
                        .collect(),
                    city: comp_text(rep, 3),
                    state: comp_text(rep, 4),
                    postal_code: comp_text(rep, 5),
                    country: comp_text(rep, 6),
                    r#type: comp_text(rep, 7),
                    district: comp_text(rep, 9),
                    start: None,
                    end: None,
                };
                let mut a = a;
                if rep.count() >= 12 {
                    a.start = comp_text(rep, 13)
                        .or_else(|| sub_text(rep, 12, 1))
                        .and_then(|t| hl7_datetime(&t));
                    a.end = comp_text(rep, 14)
                        .or_else(|| sub_text(rep, 12, 2))
                        .and_then(|t| hl7_datetime(&t));
                }
                (a != Address::default()).then_some(a)
            })
            .collect()
    }

    /// Phones; `default_use` stands in for an empty XTN-2 (the field says whose phone it is).
    fn xtns(&self, field: usize, default_use: &str) -> Vec<Telecom> {
        self.reps(field)
            .iter()
            .filter_map(|rep| {
                let rep = &rep.parts();
                let email = comp_text(rep, 4);
                let number = comp_text(rep, 1).or_else(|| comp_text(rep, 12));
                let composed = || {
                    let local = comp_text(rep, 7)?;
                    let mut s = String::new();
                    if let Some(cc) = comp_text(rep, 5) {
                        s.push_str(&format!("+{cc} "));
                    }
                    if let Some(area) = comp_text(rep, 6) {
                        s.push_str(&format!("({area}) "));
                    }
                    s.push_str(&local);
                    if let Some(ext) = comp_text(rep, 8) {
                        s.push_str(&format!(" x{ext}"));
                    }
                    Some(s)
                };
                let equipment = comp_text(rep, 3);
                let long = rep.count() >= 13;
                let value = match equipment.as_deref() {
                    Some("Internet") | Some("X.400") => email.or(number),
                    _ => number.or_else(composed).or(email),
                }?;
                Some(Telecom {
                    value: Some(value),
                    r#use: comp_text(rep, 2).or_else(|| Some(default_use.to_string())),
                    equipment,
                    start: long
                        .then(|| comp_text(rep, 13))
                        .flatten()
                        .and_then(|t| hl7_datetime(&t)),
                    end: long
                        .then(|| comp_text(rep, 14))
                        .flatten()
                        .and_then(|t| hl7_datetime(&t)),
                })
            })
            .collect()
    }

    fn xon(&self, field: usize) -> Option<Organization> {
        let rep = self.first(field)?.parts();
        let value = comp_text(&rep, 10).or_else(|| comp_text(&rep, 3));
        let (authority, authority_id) = (sub_text(&rep, 6, 1), sub_text(&rep, 6, 2));
        let r#type = comp_text(&rep, 7);
        let identifier =
            (value.is_some() || r#type.is_some() || authority.is_some() || authority_id.is_some())
                .then(|| Identifier {
                    value,
                    r#type,
                    authority,
                    authority_id,
                    authority_id_type: sub_text(&rep, 6, 3),
                    ..Identifier::default()
                });
        let o = Organization {
            name: comp_text(&rep, 1),
            identifier,
        };
        (o != Organization::default()).then_some(o)
    }

    fn pl(&self, field: usize) -> Option<Location> {
        let rep = self.first(field)?.parts();
        let l = Location {
            point_of_care: comp_text(&rep, 1),
            room: comp_text(&rep, 2),
            bed: comp_text(&rep, 3),
            facility: sub_text(&rep, 4, 1),
            status: comp_text(&rep, 5),
            building: comp_text(&rep, 7),
            floor: comp_text(&rep, 8),
            description: comp_text(&rep, 9),
            universal_ids: [(1, "poc"), (2, "room"), (3, "bed"), (4, "facility")]
                .into_iter()
                .filter_map(|(c, level)| {
                    let uid = sub_text(&rep, c, 2)?;
                    Some((
                        level.to_string(),
                        uid,
                        sub_text(&rep, c, 3).unwrap_or_default(),
                    ))
                })
                .collect(),
            identifier: rep.get(9).and_then(|c| ei_of(&c, true)),
        };
        (l != Location::default()).then_some(l)
    }

    /// OBX-5 typed by OBX-2: the first value and any further repetitions.
    ///
    /// Text types (ST, TX, FT and unknown types) keep every repetition in the one value,
    /// a line each: HL7 v2 (chapter 2A, TX/FT) uses the repetition separator there for
    /// line breaks in one text. Other types repeat whole values (`60~120`), which the
    /// v2-to-FHIR guide's OBX[Observation-Component] map turns into one component each.
    fn obx_value(&mut self, value_type: Option<&str>) -> (Option<Value>, Vec<Value>) {
        let reps = self.reps(5);
        let kind = value_type.unwrap_or("ST");
        let repeats_whole = matches!(
            kind,
            "NM" | "CE" | "CWE" | "CNE" | "CF" | "SN" | "DT" | "DTM" | "TS" | "ED" | "RP"
        );
        if !repeats_whole {
            let lines: Vec<String> = reps.iter().map(|e| e.text().into_owned()).collect();
            return (
                clean(Cow::Owned(lines.join("\n"))).map(Value::Text),
                Vec::new(),
            );
        }
        let mut values = reps
            .iter()
            .filter_map(|rep| self.one_value(rep, kind))
            .collect::<Vec<_>>()
            .into_iter();
        (values.next(), values.collect())
    }

    /// One repetition of OBX-5 of a type that repeats whole values.
    fn one_value(&mut self, rep: &Element<'_>, kind: &str) -> Option<Value> {
        let place = self.place(5);
        match kind {
            "NM" => {
                let t = clean(rep.text())?;
                match parse_number(&t) {
                    Some(n) => Some(Value::Number(n)),
                    None => {
                        self.warnings
                            .push(format!("{place}: value type NM but not a number"));
                        Some(Value::Text(t))
                    }
                }
            }
            "CE" | "CWE" | "CNE" | "CF" => cwe_of(rep).map(Value::Coded),
            "SN" => {
                let num =
                    |n: usize| -> Option<f64> { comp_text(rep, n).and_then(|t| parse_number(&t)) };
                let sn = StructuredNumeric {
                    comparator: comp_text(rep, 1),
                    number: num(2),
                    separator: comp_text(rep, 3),
                    number2: num(4),
                };
                if sn.number.is_none() && comp_text(rep, 2).is_some() {
                    self.warnings
                        .push(format!("{place}: value type SN but not a number"));
                }
                Some(Value::Structured(sn))
            }
            "DT" | "DTM" | "TS" => {
                let t = clean(rep.first_text())?;
                match hl7_datetime(&t) {
                    Some(iso) => Some(Value::Text(iso)),
                    None => {
                        self.warnings.push(format!(
                            "{place}: value type {kind} but not a valid date/time"
                        ));
                        Some(Value::Text(t))
                    }
                }
            }
            // ED and RP: the data (ED-5) or the pointer (RP-1).
            _ => comp_text(rep, 5)
                .or_else(|| comp_text(rep, 1))
                .map(Value::Text),
        }
    }
}

fn cwe_of(rep: &Element<'_>) -> Option<Code> {
    let rep = &rep.parts();
    let alt = |c: usize, d: usize, s: usize| {
        let a = Code {
            code: comp_text(rep, c),
            display: comp_text(rep, d),
            system: comp_text(rep, s),
            ..Code::default()
        };
        (!a.is_empty()).then_some(a)
    };
    let code = Code {
        code: comp_text(rep, 1),
        display: comp_text(rep, 2),
        system: comp_text(rep, 3),
        version: comp_text(rep, 7),
        alternates: [alt(4, 5, 6), alt(10, 11, 12)]
            .into_iter()
            .flatten()
            .collect(),
        text: comp_text(rep, 9),
    };
    (!code.is_empty() || !code.alternates.is_empty()).then_some(code)
}

/// A name starting at component `start` (1 for XPN, 2 for the name part of XCN).
fn name_of<'m>(rep: &impl Components<'m>, start: usize) -> Name {
    let c = |k: usize| comp_text(rep, start + k);
    let mut given: Vec<String> = c(1).into_iter().collect();
    if let Some(middle) = c(2) {
        given.extend(middle.split_whitespace().map(str::to_string));
    }
    // Validity: XPN-12/13 (else the range XPN-10); XCN-19/20 (else the range XCN-17).
    let (at, from, until) = if start == 1 {
        (10, 12, 13)
    } else {
        (17, 19, 20)
    };
    // Most names stop long before: one count saves a failing scan per absent component.
    let long = rep.count() >= at;
    let when = |k: usize, part: usize| {
        if !long {
            return None;
        }
        comp_text(rep, k)
            .or_else(|| sub_text(rep, at, part))
            .and_then(|t| hl7_datetime(&t))
    };
    Name {
        // FN-1, the surname, is the first subcomponent of the family-name component.
        family: sub_text(rep, start, 1),
        given,
        prefix: c(4),
        suffix: [c(3), c(5)].into_iter().flatten().collect(),
        r#use: if start == 1 { c(6) } else { c(8) },
        text: None,
        start: when(from, 1),
        end: when(until, 2),
    }
}

fn xcn_of(rep: &Element<'_>) -> Option<Person> {
    let rep = &rep.parts();
    let id = comp_text(rep, 1).map(|value| Identifier {
        value: Some(value),
        r#type: comp_text(rep, 13),
        authority: sub_text(rep, 9, 1),
        authority_id: sub_text(rep, 9, 2),
        authority_id_type: sub_text(rep, 9, 3),
        ..Identifier::default()
    });
    let name = name_of(rep, 2);
    let name = (name != Name::default()).then_some(name);
    (id.is_some() || name.is_some()).then_some(Person { id, name })
}

fn parse_number(t: &str) -> Option<f64> {
    let t = t.trim();
    let t = t.strip_prefix('+').unwrap_or(t);
    // HL7 NM: optional sign, digits, optional decimal point; no exponent, no inf/nan.
    let ok = !t.is_empty()
        && t.bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || b == b'.' || (i == 0 && b == b'-'))
        && t.bytes().any(|b| b.is_ascii_digit());
    if !ok {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// An HL7 DT/DTM/TS (`YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]`) as ISO 8601 text with
/// the same precision for the date; a time is written `HH:MM:SS` (missing minutes and seconds
/// are zero), a fraction and a UTC offset are kept. `None` when it is not a valid date/time.
pub fn hl7_datetime(text: &str) -> Option<String> {
    let t = text.trim();
    let (main, offset) = match t.find(['+', '-']) {
        Some(i) => (&t[..i], Some(&t[i..])),
        None => (t, None),
    };
    let offset = match offset {
        Some(z) => {
            let zd = &z[1..];
            if zd.len() != 4 || !zd.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let (zh, zm): (u32, u32) = (zd[..2].parse().ok()?, zd[2..].parse().ok()?);
            if zh > 14 || zm > 59 {
                return None;
            }
            Some((&z[..1], &zd[..2], &zd[2..]))
        }
        None => None,
    };
    let (digits, fraction) = match main.find('.') {
        Some(i) => (&main[..i], Some(&main[i + 1..])),
        // Some senders append milliseconds without the point (`20110613122406637`).
        None if (15..=18).contains(&main.len()) && main.bytes().all(|b| b.is_ascii_digit()) => {
            (&main[..14], Some(&main[14..]))
        }
        None => (main, None),
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) || ![4, 6, 8, 10, 12, 14].contains(&digits.len())
    {
        return None;
    }
    // The digits are checked ASCII above: each part is copied as it stands (two digits each,
    // four for the year) rather than parsed and formatted again.
    let n = |r: std::ops::Range<usize>| -> u32 { digits[r].parse().unwrap_or(0) };
    let year = n(0..4);
    let mut out = String::with_capacity(40);
    out.push_str(&digits[0..4]);
    if digits.len() >= 6 {
        let month = n(4..6);
        if !(1..=12).contains(&month) {
            return None;
        }
        out.push('-');
        out.push_str(&digits[4..6]);
        if digits.len() >= 8 {
            let day = n(6..8);
            if day == 0 || day > days_in_month(year, month) {
                return None;
            }
            out.push('-');
            out.push_str(&digits[6..8]);
        }
    }
    if digits.len() >= 10 {
        if digits.len() < 8 {
            return None;
        }
        let hour = n(8..10);
        let minute = if digits.len() >= 12 { n(10..12) } else { 0 };
        let second = if digits.len() >= 14 { n(12..14) } else { 0 };
        if hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        out.push('T');
        out.push_str(&digits[8..10]);
        out.push(':');
        out.push_str(digits.get(10..12).unwrap_or("00"));
        out.push(':');
        out.push_str(digits.get(12..14).unwrap_or("00"));
        if let Some(f) = fraction {
            if f.is_empty()
                || f.len() > 4
                || !f.bytes().all(|b| b.is_ascii_digit())
                || digits.len() < 14
            {
                return None;
            }
            out.push('.');
            out.push_str(f);
        }
        // A UTC offset only means something with a time; FHIR dates cannot carry one.
        if let Some((sign, zh, zm)) = offset {
            out.push_str(sign);
            out.push_str(zh);
            out.push(':');
            out.push_str(zm);
        }
    } else if fraction.is_some() {
        return None;
    }
    Some(out)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(text: &str) -> Clinical {
        let raw = text.replace('\n', "\r");
        to_clinical(&Message::parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn datetimes() {
        assert_eq!(hl7_datetime("2024").as_deref(), Some("2024"));
        assert_eq!(hl7_datetime("202402").as_deref(), Some("2024-02"));
        assert_eq!(hl7_datetime("20240229").as_deref(), Some("2024-02-29"));
        assert_eq!(hl7_datetime("20230229"), None);
        assert_eq!(
            hl7_datetime("2024022913").as_deref(),
            Some("2024-02-29T13:00:00")
        );
        assert_eq!(
            hl7_datetime("20240229132501.25-0500").as_deref(),
            Some("2024-02-29T13:25:01.25-05:00")
        );
        assert_eq!(
            hl7_datetime("202402291325+0100").as_deref(),
            Some("2024-02-29T13:25:00+01:00")
        );
        assert_eq!(
            hl7_datetime("20110613122406637").as_deref(),
            Some("2011-06-13T12:24:06.637")
        );
        assert_eq!(hl7_datetime("2024010112000é"), None);
        for bad in [
            "",
            "24",
            "2024-02-29",
            "20241301",
            "2024022925",
            "20240229132501.",
            "202402291325+01",
        ] {
            assert_eq!(hl7_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("+7.25"), Some(7.25));
        assert_eq!(parse_number("-.5"), Some(-0.5));
        for bad in ["", "1e5", "inf", "NaN", "1,5", "-", "."] {
            assert_eq!(parse_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn adt_patient_and_visit() {
        let c = convert(
            "MSH|^~\\&|ADT|HOSP|EMR|WARD|20240301101500+0100||ADT^A01^ADT_A01|MSG1|P|2.5.1\n\
             EVN|A01|20240301101400\n\
             PID|1|ALT9|12345^^^HOSP&1.2.3&ISO^MR~999-99-9999^^^SSA^SS||DOE^JANE^Q^JR^DR^^L~SMITH^JANE^^^^^M||19800115|F|||1 MAIN ST^APT 2^SPRINGFIELD^IL^62701^USA^H^^SANGAMON||^PRN^PH^^1^217^5551234~^NET^Internet^jane@example.org|^WPN^PH^^^217^5559876^12||M^Married^HL70002||||||||||||||Y\n\
             NTE|1||speaks slowly\n\
             NK1|1|DOE^JOHN|SPO^Spouse^HL70063|1 MAIN ST^^SPRINGFIELD^IL|(217)555-1234||C^Emergency Contact^HL70131\n\
             PV1|1|I|ICU^101^A^HOSP||||1234^WELBY^MARCUS^^^DR|||MED||||7|||5678^KILDARE^JAMES||V100^^^HOSP^VN|||||||||||||||||||||||||20240301100000|\n\
             AL1|1|DA|PCN^Penicillin^L|SV|Hives~Rash|20200101\n\
             DG1|1||I10^Essential hypertension^I10|||A\n\
             IN1|1|PLAN1^Gold|INS1^^^^NIIP|ACME INSURANCE|||||GRP9|||20240101|20241231||||SEL^Self^HL70063",
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.message.r#type.as_deref(), Some("ADT"));
        assert_eq!(c.message.structure.as_deref(), Some("ADT_A01"));
        assert_eq!(
            c.message.sent_at.as_deref(),
            Some("2024-03-01T10:15:00+01:00")
        );
        assert_eq!(c.message.event_at.as_deref(), Some("2024-03-01T10:14:00"));
        let p = c.patient.as_ref().unwrap();
        assert_eq!(p.identifiers.len(), 3);
        assert_eq!(p.identifiers[0].value.as_deref(), Some("ALT9"));
        let mr = &p.identifiers[1];
        assert_eq!(mr.value.as_deref(), Some("12345"));
        assert_eq!(mr.r#type.as_deref(), Some("MR"));
        assert_eq!(mr.authority.as_deref(), Some("HOSP"));
        assert_eq!(mr.authority_id.as_deref(), Some("1.2.3"));
        assert_eq!(p.identifiers[2].r#type.as_deref(), Some("SS"));
        assert_eq!(p.names[0].family.as_deref(), Some("DOE"));
        assert_eq!(p.names[0].given, vec!["JANE", "Q"]);
        assert_eq!(p.names[0].suffix, vec!["JR"]);
        assert_eq!(p.names[0].prefix.as_deref(), Some("DR"));
        assert_eq!(p.names[1].r#use.as_deref(), Some("M"));
        assert_eq!(p.birth_date.as_deref(), Some("1980-01-15"));
        assert_eq!(p.sex.as_deref(), Some("F"));
        assert_eq!(p.addresses[0].lines, vec!["1 MAIN ST", "APT 2"]);
        assert_eq!(p.addresses[0].district.as_deref(), Some("SANGAMON"));
        assert_eq!(p.telecoms[0].value.as_deref(), Some("+1 (217) 5551234"));
        assert_eq!(p.telecoms[1].value.as_deref(), Some("jane@example.org"));
        assert_eq!(p.telecoms[2].value.as_deref(), Some("(217) 5559876 x12"));
        assert_eq!(p.telecoms[2].r#use.as_deref(), Some("WPN"));
        assert_eq!(
            p.marital_status.as_ref().unwrap().system.as_deref(),
            Some("HL70002")
        );
        assert_eq!(p.deceased, Some(true));
        assert_eq!(p.notes, vec![Note::from("speaks slowly".to_string())]);
        let nk = &c.next_of_kin[0];
        assert_eq!(
            nk.relationship.as_ref().unwrap().code.as_deref(),
            Some("SPO")
        );
        assert_eq!(nk.telecoms[0].r#use.as_deref(), Some("PRN"));
        let v = c.visit.as_ref().unwrap();
        assert_eq!(v.class.as_ref().unwrap().code.as_deref(), Some("I"));
        assert_eq!(v.location.as_ref().unwrap().bed.as_deref(), Some("A"));
        assert_eq!(
            v.attending[0].id.as_ref().unwrap().value.as_deref(),
            Some("1234")
        );
        assert_eq!(
            v.attending[0].name.as_ref().unwrap().family.as_deref(),
            Some("WELBY")
        );
        assert_eq!(
            v.admitting[0].name.as_ref().unwrap().family.as_deref(),
            Some("KILDARE")
        );
        assert_eq!(
            v.visit_number.as_ref().unwrap().value.as_deref(),
            Some("V100")
        );
        assert_eq!(v.admitted_at.as_deref(), Some("2024-03-01T10:00:00"));
        assert_eq!(c.allergies[0].reactions, vec!["Hives", "Rash"]);
        assert_eq!(
            c.allergies[0].severity.as_ref().unwrap().code.as_deref(),
            Some("SV")
        );
        assert_eq!(
            c.diagnoses[0].code.as_ref().unwrap().system.as_deref(),
            Some("I10")
        );
        assert_eq!(c.diagnoses[0].r#type.as_deref(), Some("A"));
        assert_eq!(
            c.insurance[0].company_name.as_deref(),
            Some("ACME INSURANCE")
        );
        assert_eq!(c.insurance[0].start.as_deref(), Some("2024-01-01"));
    }

    #[test]
    fn oru_orders_observations_and_notes() {
        let c = convert(
            "MSH|^~\\&|LAB|HOSP|||20240301||ORU^R01|M2|P|2.5.1\n\
             PID|1||42^^^HOSP^MR\n\
             ORC|RE|PO1|FO1||CM||||20240301080000|||77^HOUSE^GREG\n\
             OBR|1|PO1|FO1|24331-1^Lipid panel^LN|||20240301070000|||||||||||||||20240301090000||CH|F\n\
             OBX|1|NM|2093-3^Cholesterol^LN||196|mg/dL^mg/dL^UCUM|<200|N|||F|||20240301070000\n\
             NTE|1||fasting\n\
             OBX|2|SN|2085-9^HDL^LN||>^60|mg/dL|||||F\n\
             OBX|3|CWE|883-9^ABO group^LN||A^Group A^LN||||||F\n\
             OBX|4|TX|8251-1^Note^LN||line one~line two||||||F\n\
             OBX|5|NM|1234-5^Bad^LN||12,5||||||F\n\
             OBX|6|NM|8867-4^Heart rate^LN||60~~120|/min||||||F\n\
             OBX|7|CWE|8251-1^Finding^LN||A^One^L~B^Two^L||||||F\n\
             OBR|2||FO2|57021-8^CBC^LN|||20240301070000||||||||||||||||||F\n\
             OBX|1|NM|718-7^Hemoglobin^LN||13.2|g/dL|12-16|N|||F",
        );
        assert_eq!(c.orders.len(), 2);
        let o = &c.orders[0];
        assert_eq!(o.control.as_deref(), Some("RE"));
        assert_eq!(o.placer_id.as_ref().unwrap().value.as_deref(), Some("PO1"));
        assert_eq!(o.code.as_ref().unwrap().code.as_deref(), Some("24331-1"));
        assert_eq!(
            o.ordering_provider[0]
                .name
                .as_ref()
                .unwrap()
                .family
                .as_deref(),
            Some("HOUSE")
        );
        assert_eq!(o.result_status.as_deref(), Some("F"));
        assert_eq!(c.observations.len(), 8);
        let chol = &c.observations[0];
        assert_eq!(chol.order, Some(0));
        assert_eq!(chol.value, Some(Value::Number(196.0)));
        assert_eq!(chol.units.as_ref().unwrap().system.as_deref(), Some("UCUM"));
        assert_eq!(chol.reference_range.as_deref(), Some("<200"));
        assert_eq!(chol.notes, vec![Note::from("fasting".to_string())]);
        match &c.observations[1].value {
            Some(Value::Structured(sn)) => {
                assert_eq!(sn.comparator.as_deref(), Some(">"));
                assert_eq!(sn.number, Some(60.0));
            }
            other => panic!("{other:?}"),
        }
        match &c.observations[2].value {
            Some(Value::Coded(code)) => assert_eq!(code.code.as_deref(), Some("A")),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            c.observations[3].value,
            Some(Value::Text("line one\nline two".into()))
        );
        assert_eq!(c.observations[4].value, Some(Value::Text("12,5".into())));
        assert_eq!(c.warnings, vec!["OBX-5: value type NM but not a number"]);
        // Text repetitions are lines of one value; other types repeat whole values.
        assert!(c.observations[3].more_values.is_empty());
        let hr = &c.observations[5];
        assert_eq!(hr.value, Some(Value::Number(60.0)));
        assert_eq!(hr.more_values, vec![Value::Number(120.0)]);
        let coded = &c.observations[6];
        assert!(matches!(&coded.value, Some(Value::Coded(c)) if c.code.as_deref() == Some("A")));
        assert!(
            matches!(&coded.more_values[..], [Value::Coded(c)] if c.code.as_deref() == Some("B"))
        );
        assert_eq!(c.observations[7].order, Some(1));
    }

    #[test]
    fn merge_immunization_appointment_document() {
        let a40 = convert(
            "MSH|^~\\&|ADT|H|||20240301||ADT^A40^ADT_A39|M3|P|2.5\n\
             PID|1||NEW1^^^H^MR\nMRG|OLD1^^^H^MR\nPID|1||NEW2^^^H^MR\nMRG|OLD2^^^H^MR",
        );
        assert_eq!(a40.merges.len(), 2);
        assert_eq!(a40.merges[1].identifiers[0].value.as_deref(), Some("NEW2"));
        assert_eq!(
            a40.merges[1].prior_identifiers[0].value.as_deref(),
            Some("OLD2")
        );
        assert_eq!(
            a40.patient.unwrap().identifiers[0].value.as_deref(),
            Some("NEW1")
        );

        let vxu = convert(
            "MSH|^~\\&|IIS|H|||20240301||VXU^V04^VXU_V04|M4|P|2.5.1\nPID|1||7^^^H^MR\n\
             ORC|RE||IZ-1^IIS\n\
             RXA|0|1|20240215||08^HepB^CVX|0.5|mL^mL^UCUM||00^New^NIP001||||||LOT1||MSD^Merck^MVX|||CP|A\n\
             RXR|IM^Intramuscular^HL70162|LA^Left arm^HL70163",
        );
        let iz = &vxu.immunizations[0];
        assert_eq!(iz.identifiers[0].value.as_deref(), Some("IZ-1"));
        assert_eq!(iz.identifiers[0].r#type.as_deref(), Some("FILL"));
        assert_eq!(iz.vaccine.as_ref().unwrap().system.as_deref(), Some("CVX"));
        assert_eq!(iz.amount, Some(0.5));
        assert_eq!(iz.lot_numbers, vec!["LOT1"]);
        assert_eq!(iz.route.as_ref().unwrap().code.as_deref(), Some("IM"));
        // The ORC is the order the immunization fulfils, among the record's orders.
        assert_eq!(vxu.orders.len(), 1);
        assert_eq!(iz.order, Some(0));
        assert_eq!(
            vxu.orders[0].filler_id.as_ref().unwrap().value.as_deref(),
            Some("IZ-1")
        );

        let siu = convert(
            "MSH|^~\\&|SCHED|H|||20240301||SIU^S12|M5|P|2.5\n\
             SCH|A1^SCHED|F1^SCHED|||||ROUTINE^Routine|CHECKUP|30|min^minutes|^^^20240310090000^20240310093000||||||||||||||Booked\n\
             NTE|1||bring records\nPID|1||9^^^H^MR\nAIS|1||CONSULT^Consultation\nAIP|1||55^LEE^ANN",
        );
        let a = siu.appointment.as_ref().unwrap();
        assert_eq!(a.start.as_deref(), Some("2024-03-10T09:00:00"));
        assert_eq!(a.status.as_ref().unwrap().code.as_deref(), Some("Booked"));
        assert_eq!(a.services[0].what.code.as_deref(), Some("CONSULT"));
        assert_eq!(
            a.personnel[0].what.name.as_ref().unwrap().family.as_deref(),
            Some("LEE")
        );
        assert_eq!(a.notes, vec![Note::from("bring records".to_string())]);

        let mdm = convert(
            "MSH|^~\\&|DOC|H|||20240301||MDM^T02|M6|P|2.5\nPID|1||9^^^H^MR\nPV1|1|O\n\
             TXA|1|DS^Discharge summary|TX|20240301||||||||DOC-1|||||AU||AV\n\
             OBX|1|TX|DS||first line||||||F\nOBX|2|TX|DS||second line||||||F",
        );
        let d = mdm.document.as_ref().unwrap();
        assert_eq!(
            d.identifier.as_ref().unwrap().value.as_deref(),
            Some("DOC-1")
        );
        assert_eq!(d.text.as_deref(), Some("first line\nsecond line"));
        assert!(mdm.observations.is_empty());
    }

    #[test]
    fn bad_fields_become_warnings_not_values() {
        let c = convert("MSH|^~\\&|A|B|||2024||ADT^A08|M7|P|2.5\nPID|1||1^^^H^MR||X||19801345|M||||||||||||||||Q|zz");
        let p = c.patient.unwrap();
        assert_eq!(p.birth_date, None);
        assert_eq!(p.multiple_birth, None);
        assert_eq!(p.birth_order, None);
        assert_eq!(
            c.warnings,
            vec![
                "PID-7: not a valid HL7 date/time",
                "PID-24: not Y or N",
                "PID-25: not a whole number"
            ]
        );
    }
}
