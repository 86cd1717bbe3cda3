//! `Clinical`: the normalized content of a message, the same whichever format it came in.
//!
//! Like InterSystems' SDA, it sits between the formats: HL7 v2 → `Clinical` → FHIR, and FHIR →
//! `Clinical` → HL7 v2. Routes read it through record paths (`patient.identifiers[type=MR].value`)
//! and destinations can receive it as JSON, so its serde shape is part of Aorta's interface:
//! field names are `snake_case`, absent values and empty lists are left out, dates and times are
//! ISO 8601 text keeping the precision the source gave (`2024-03`, `2024-03-01T10:22:00+01:00`).
//!
//! Codes always keep their system, code and display ([`Code`]); systems are the names the
//! source used (a v2 coding system such as `LN` or a v2 table such as `HL70001`), so nothing is
//! lost before the FHIR conversion maps them to URIs.

use serde::{Deserialize, Serialize};

/// The normalized content of one message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Clinical {
    /// What kind of message this was and who sent it.
    pub message: MessageInfo,
    /// The patient the message is about (the first PID, or the FHIR Patient).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<Patient>,
    /// Merges: identifiers that the surviving patient replaces (ADT^A40 and friends).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merges: Vec<Merge>,
    /// Next of kin and other contacts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next_of_kin: Vec<Contact>,
    /// The visit (encounter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit: Option<Visit>,
    /// Orders (ORC/OBR, ORC/RXO, ...), in message order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub orders: Vec<Order>,
    /// Observations and results (OBX), in message order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    /// Specimens (SPM).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub specimens: Vec<Specimen>,
    /// Allergies (AL1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allergies: Vec<Allergy>,
    /// Diagnoses (DG1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnoses: Vec<Diagnosis>,
    /// Procedures (PR1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub procedures: Vec<Procedure>,
    /// Immunizations (RXA).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub immunizations: Vec<Immunization>,
    /// Insurance (IN1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub insurance: Vec<Insurance>,
    /// Who pays what insurance does not (GT1).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guarantors: Vec<Guarantor>,
    /// Financial transactions: charges, credits, payments (FT1 of DFT^P03/P11 and BAR).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub charges: Vec<Charge>,
    /// A scheduled appointment (SIU: SCH with AIS/AIG/AIL/AIP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appointment: Option<Appointment>,
    /// A clinical document (MDM: TXA with its OBX content).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<Document>,
    /// Referrals (RF1 with the PRD providers that follow it: REF^I12 and friends, and the
    /// referral group of ADT's insurance).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referrals: Vec<Referral>,
    /// The accident that brought the patient in (ACC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accident: Option<Accident>,
    /// Problems on the patient's problem list (PRB, PPR^PC1/PC2/PC3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
    /// Disabilities (DB1) of the patient and of others in the message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disabilities: Vec<Disability>,
    /// The patient's death and autopsy (PDA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub death: Option<Death>,
    /// What the conversion could not read (a field that was malformed, a segment it skipped).
    /// Never patient data: each warning names a place (`PID-7`) and a problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Facts about the message itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MessageInfo {
    /// Message type, e.g. `ADT` (MSH-9-1) or the FHIR resource type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Trigger event, e.g. `A01` (MSH-9-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Message structure, e.g. `ADT_A01` (MSH-9-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub structure: Option<String>,
    /// MSH-10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_id: Option<String>,
    /// MSH-7.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    /// EVN-2, or MSH-7 when there is no EVN.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_at: Option<String>,
    /// EVN-4 event reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_reason: Option<Code>,
    /// The software that made or passed on the message (SFT), in message order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub software: Vec<Software>,
    /// MSH-3-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_application: Option<String>,
    /// MSH-4-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_facility: Option<String>,
    /// MSH-5-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_application: Option<String>,
    /// MSH-6-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_facility: Option<String>,
    /// MSH-4-2 and MSH-4-3: the sending facility's universal id and its type (`ISO`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_facility_id: Option<(String, String)>,
    /// MSH-6-2 and MSH-6-3: the receiving facility's universal id and its type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_facility_id: Option<(String, String)>,
    /// MSH-11-1 (P production, T training, D debugging).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_id: Option<String>,
    /// MSH-12-1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// EVN-5: who caused the event (the operator).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub operators: Vec<Person>,
    /// EVN-6: when the event actually happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_occurred_at: Option<String>,
    /// EVN-7: where it happened (a facility: namespace id, universal id and its type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_facility: Option<Identifier>,
    /// MSH-22-1: the organization responsible for sending (v2.7+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sending_organization: Option<String>,
    /// MSH-23-1: the organization responsible for receiving (v2.7+).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receiving_organization: Option<String>,
    /// The message's principal language (MSH-19).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Code>,
    /// For FHIR input: the resource types it held, in order of first appearance.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_types: Vec<String>,
}

/// A coded value: code, system and display, plus the alternate coding a CWE can carry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Code {
    /// The code (CWE-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The display text (CWE-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// The coding system as the source named it (CWE-3, e.g. `LN`, or a table, e.g. `HL70001`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The version of the coding system (CWE-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The same concept in other systems (CWE-4..6, CWE-10..12).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternates: Vec<Code>,
    /// The original text (CWE-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

impl Code {
    /// A code from a v2 table (`HL7nnnn`), e.g. administrative sex.
    pub fn table(table: &str, code: impl Into<String>) -> Code {
        Code {
            code: Some(code.into()),
            system: Some(format!("HL7{table}")),
            ..Code::default()
        }
    }

    /// True when it holds no code and no text.
    pub fn is_empty(&self) -> bool {
        self.code.is_none() && self.display.is_none() && self.text.is_none()
    }
}

/// An identifier (CX / EI): a value and who assigned it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Identifier {
    /// The identifier itself (CX-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Identifier type (CX-5, table 0203: MR, PI, SS, VN, AN, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Assigning authority namespace (CX-4-1 / EI-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// Assigning authority universal id, e.g. an OID (CX-4-2 / EI-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_id: Option<String>,
    /// Type of that universal id, e.g. `ISO` (CX-4-3 / EI-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority_id_type: Option<String>,
    /// Assigning facility (CX-6-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// Valid from (CX-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Valid until (CX-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A person's name (XPN, or the name part of XCN).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Name {
    /// Family name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// Given names, first name first (XPN-2 then XPN-3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub given: Vec<String>,
    /// Prefix, e.g. `DR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Suffix, e.g. `JR` (and the degree, e.g. `MD`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub suffix: Vec<String>,
    /// Name type (table 0200: L legal, D display, M maiden, A alias, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#use: Option<String>,
    /// The whole name as text, when given that way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Valid from (XPN-12 or XPN-10.1; XCN-19 or XCN-17.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Valid until (XPN-13 or XPN-10.2; XCN-20 or XCN-17.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A postal address (XAD).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    /// Street lines.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lines: Vec<String>,
    /// City.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State or province.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Country.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// County or parish (XAD-9, PID-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district: Option<String>,
    /// Address type (table 0190: H home, B business, M mailing, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Valid from (XAD-13 or XAD-12.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Valid until (XAD-14 or XAD-12.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A phone number or other contact point (XTN).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Telecom {
    /// The number or address as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Use code (table 0201: PRN primary residence, WPN work, ORN other, NET network, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#use: Option<String>,
    /// Equipment type (table 0202: PH, FX, CP, Internet, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub equipment: Option<String>,
    /// In use from (XTN-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// In use until (XTN-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// A health-care worker (XCN), e.g. an attending doctor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Person {
    /// The person's id (XCN-1) with its authority (XCN-9) and type (XCN-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<Identifier>,
    /// The name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
}

/// An organization named in a field (XON).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Organization {
    /// Name (XON-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Identifier (XON-10, or XON-3 without it; authority XON-6, type XON-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
}

/// A person's role in the patient's care or in a visit (ROL), e.g. primary care provider.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Role {
    /// The role instance's id (ROL-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// The role (ROL-3, table 0443: PP primary care provider, AT attending, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Code>,
    /// Who (ROL-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<Person>,
    /// Since (ROL-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Until (ROL-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Phone numbers and e-mail in this role (ROL-12).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub telecoms: Vec<Telecom>,
    /// Where (ROL-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// For which organization (ROL-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
}

/// A place in a facility (PL): ward, room, bed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Location {
    /// Point of care, e.g. a ward (PL-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point_of_care: Option<String>,
    /// Room (PL-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Bed (PL-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bed: Option<String>,
    /// Facility (PL-4-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facility: Option<String>,
    /// Location status (PL-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Building (PL-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub building: Option<String>,
    /// Floor (PL-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    /// Free-text description (PL-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Universal ids of the levels given as HD (PL-1, PL-2, PL-3, PL-4 subcomponents 2 and 3):
    /// `(level, id, id type)` with level `poc`, `room`, `bed` or `facility`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub universal_ids: Vec<(String, String, String)>,
    /// PL-10: the comprehensive location identifier (of the most specific level).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
}

/// The patient.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Patient {
    /// Identifiers (PID-2, PID-3, PID-4; PID-19 as type `SS`, PID-20 as type `DL`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// Names (PID-5, then aliases from PID-9 with use `A`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<Name>,
    /// Mother's maiden name (PID-6-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mothers_maiden_name: Option<String>,
    /// The mother's identifiers (PID-21), e.g. on a newborn's record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mothers_identifiers: Vec<Identifier>,
    /// Birth date (`YYYY-MM-DD`, or less precise as given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Birth date and time when PID-7 gave a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_time: Option<String>,
    /// Administrative sex as sent (table 0001: F, M, O, U, A, N).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// Race (PID-10).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub race: Vec<Code>,
    /// Addresses (PID-11; PID-12 fills the first one's district when it has none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Phones and e-mail (PID-13 home, PID-14 business, PID-40).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub telecoms: Vec<Telecom>,
    /// Primary language (PID-15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Code>,
    /// Marital status (PID-16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marital_status: Option<Code>,
    /// Religion (PID-17).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub religion: Option<Code>,
    /// Patient account number (PID-18).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_number: Option<Identifier>,
    /// Ethnic group (PID-22).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ethnicity: Vec<Code>,
    /// Birth place (PID-23).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_place: Option<String>,
    /// Multiple birth indicator (PID-24).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiple_birth: Option<bool>,
    /// Birth order (PID-25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_order: Option<i64>,
    /// Citizenship (PID-26).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub citizenship: Vec<Code>,
    /// Nationality (PID-28).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nationality: Option<Code>,
    /// Species of a non-human patient (PID-35).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub species: Option<Code>,
    /// Breed (PID-36).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breed: Option<Code>,
    /// Tribal citizenship (PID-39).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tribal_citizenship: Vec<Code>,
    /// Death date and time (PID-29).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deceased_at: Option<String>,
    /// Death indicator (PID-30; true also when PID-29 is given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deceased: Option<bool>,
    /// Last update of the demographics (PID-33).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// Primary care providers (PD1-4).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub primary_care: Vec<Person>,
    /// Comments (NTE after PID).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// PD1-3-1: the patient's primary facility.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_facility: Option<String>,
    /// PD1-3's identifier (XON-10 or XON-3, assigning authority XON-6, type XON-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary_facility_id: Option<Identifier>,
    /// Roles in the patient's care (ROL after PID/PD1), e.g. the primary care provider.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
}

/// One merge: the patient identified by `identifiers` replaces the one `prior_identifiers` named.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Merge {
    /// The surviving patient's identifiers (the PID before the MRG).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// The identifiers being replaced (MRG-1, and MRG-4 as type `PI`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prior_identifiers: Vec<Identifier>,
    /// Prior account number (MRG-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_account: Option<Identifier>,
    /// Prior visit number (MRG-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_visit: Option<Identifier>,
    /// Prior name (MRG-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_name: Option<Name>,
}

/// A next of kin or other contact person (NK1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Contact {
    /// Names (NK1-2, then NK1-30: the contact person's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<Name>,
    /// Relationship to the patient (NK1-3, table 0063).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relationship: Option<Code>,
    /// Addresses (NK1-4, then NK1-32: the contact person's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Phones (NK1-5 home, NK1-6 business, NK1-40, then the contact person's NK1-31 and
    /// NK1-41).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub telecoms: Vec<Telecom>,
    /// Contact role (NK1-7, table 0131: C emergency contact, E employer, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Code>,
    /// From (NK1-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Until (NK1-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Organization name when the contact is an organization (NK1-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    /// Its identifier (NK1-13: XON-10 or XON-3, assigning authority XON-6, type XON-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<Identifier>,
    /// Sex (NK1-15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sex: Option<String>,
    /// Birth date (NK1-16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// Identifiers (NK1-33).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// Primary language (NK1-20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Code>,
}

/// The visit or encounter (PV1, PV2).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Visit {
    /// Patient class (PV1-2, table 0004: I inpatient, O outpatient, E emergency, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Code>,
    /// Assigned location (PV1-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Admission type (PV1-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admission_type: Option<Code>,
    /// Preadmit number (PV1-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preadmit_number: Option<Identifier>,
    /// Prior location (PV1-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_location: Option<Location>,
    /// Attending doctors (PV1-7).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attending: Vec<Person>,
    /// Referring doctors (PV1-8).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub referring: Vec<Person>,
    /// Consulting doctors (PV1-9).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub consulting: Vec<Person>,
    /// Hospital service (PV1-10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hospital_service: Option<Code>,
    /// Temporary location (PV1-11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temporary_location: Option<Location>,
    /// Re-admission indicator (PV1-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readmission: Option<Code>,
    /// Admit source (PV1-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admit_source: Option<Code>,
    /// VIP indicator (PV1-16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vip: Option<Code>,
    /// Admitting doctors (PV1-17).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub admitting: Vec<Person>,
    /// Patient type (PV1-18).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient_type: Option<Code>,
    /// Visit number (PV1-19).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit_number: Option<Identifier>,
    /// Financial class (PV1-20-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub financial_class: Option<Code>,
    /// Discharge disposition (PV1-36).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discharge_disposition: Option<Code>,
    /// Discharged to location (PV1-37-1, a code such as table 0113's; its parts are
    /// subcomponents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discharged_to: Option<Code>,
    /// Pending location (PV1-42).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_location: Option<Location>,
    /// Admit time (PV1-44).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted_at: Option<String>,
    /// Discharge time (PV1-45).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discharged_at: Option<String>,
    /// Alternate visit id (PV1-50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alternate_visit_id: Option<Identifier>,
    /// Visit indicator (PV1-51: A account, V visit, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visit_indicator: Option<String>,
    /// Admit reason (PV2-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admit_reason: Option<Code>,
    /// Expected admit time (PV2-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_admit_at: Option<String>,
    /// Expected discharge time (PV2-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_discharge_at: Option<String>,
    /// Visit description (PV2-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// PV1-15 ambulatory status (special arrangements).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambulatory_status: Vec<Code>,
    /// PV1-38 diet type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diet: Option<Code>,
    /// PV1-52 other healthcare providers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub other_providers: Vec<Person>,
    /// PV1-54: the service episode's identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub episode_id: Option<Identifier>,
    /// PV1-53: the service episode's description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub episode_description: Option<String>,
    /// PV2-11: the actual length of stay, days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length_of_stay: Option<f64>,
    /// PV2-25: the visit priority (table 0217: 1 emergency, 2 urgent, 3 elective).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Code>,
    /// PV2-1: the prior pending location.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prior_pending_location: Option<Location>,
    /// PV2-38: how the patient arrived (table 0430: ambulance, car, on foot, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival_mode: Option<Code>,
    /// People in roles for this visit (ROL after PV1/PV2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
}

/// An order (ORC with OBR, RXO or RXA, or OBR alone).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Order {
    /// Order control (ORC-1, table 0119: NW new, CA cancel, RE results, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
    /// Placer order number (ORC-2 or OBR-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placer_id: Option<Identifier>,
    /// Filler order number (ORC-3 or OBR-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filler_id: Option<Identifier>,
    /// Placer group number (ORC-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<Identifier>,
    /// Order status (ORC-5, table 0038).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// What is ordered (OBR-4, or ORC-16 order control reason is not this).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// Priority (OBR-5 or ORC-7/TQ1-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// When it was ordered (ORC-9 transaction time, or OBR-6 requested time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered_at: Option<String>,
    /// Who entered it (ORC-10).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entered_by: Vec<Person>,
    /// Who ordered it (ORC-12, OBR-16).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ordering_provider: Vec<Person>,
    /// Observation start (OBR-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    /// Observation end (OBR-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_end: Option<String>,
    /// Specimen received (OBR-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specimen_received_at: Option<String>,
    /// Specimen source (OBR-15-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specimen_source: Option<Code>,
    /// Results reported or status changed (OBR-22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<String>,
    /// Diagnostic service section (OBR-24, table 0074: LAB, RAD, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_section: Option<String>,
    /// Result status (OBR-25, table 0123: F final, P preliminary, C corrected, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_status: Option<String>,
    /// Parent result (OBR-26-1 code and OBR-29 parent order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<Identifier>,
    /// Reason for study (OBR-31).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Code>,
    /// Principal result interpreter (OBR-32: the person, with the NDL's period and place).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interpreters: Vec<Role>,
    /// Who else made the report: technicians (OBR-34), transcriptionists (OBR-35), and PRT
    /// after OBR with role `TN`, `TR` or `ARI`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub report_performers: Vec<Role>,
    /// Supplemental service information from placer and filler (OBR-46, OBR-47).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Code>,
    /// Alternate placer order numbers (OBR-53, else ORC-33).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alternate_ids: Vec<Identifier>,
    /// The ordering facility (ORC-21) with its address (ORC-22) and phones (ORC-23).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_facility: Option<Organization>,
    /// See `ordering_facility`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_facility_address: Option<Address>,
    /// See `ordering_facility`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ordering_facility_phones: Vec<Telecom>,
    /// The ordering provider's address (ORC-24).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_provider_address: Option<Address>,
    /// Order type (ORC-29, table 0482: I inpatient, O outpatient).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_type: Option<Code>,
    /// Specimen action (OBR-11, table 0065: A add to a specimen, G generated/reflex, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specimen_action: Option<String>,
    /// Phones to call back about the order (OBR-17, else ORC-14).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub callback_phones: Vec<Telecom>,
    /// Why the order control happened (ORC-16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_reason: Option<Code>,
    /// Confidentiality (ORC-28, table 0177).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidentiality: Option<Code>,
    /// Comments (NTE after ORC/OBR; TQ1-11 text instructions).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// When and how often it is to be done (TQ1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

/// When and how often an order is to be done (TQ1: quantity and timing).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Timing {
    /// Quantity per service (TQ1-2-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<f64>,
    /// Its units (TQ1-2-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity_units: Option<Code>,
    /// Repeat pattern (TQ1-3-1, table 0335: BID, Q4H, PRN, C, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat: Option<String>,
    /// Explicit times of day (TQ1-4), as `hh:mm:ss`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<String>,
    /// Start (TQ1-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End (TQ1-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// How long each occurrence lasts (TQ1-13-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Its unit of time as UCUM (`s`, `min`, `h`, `d`, `wk`, `mo`, `a`; from TQ1-13-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_unit: Option<String>,
    /// Total occurrences (TQ1-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurrences: Option<u32>,
}

/// One observation value (OBX-5), typed by OBX-2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// NM: a number.
    Number(f64),
    /// CE/CWE/CNE: a code.
    Coded(Code),
    /// SN: a structured numeric such as `>^100` or `1^:^128`.
    Structured(StructuredNumeric),
    /// Everything else as text: ST, TX, FT, dates as ISO text, ED as its data.
    Text(String),
}

/// A structured numeric (SN): comparator, number, separator, second number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StructuredNumeric {
    /// `>`, `<`, `>=`, `<=`, `=`, `<>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparator: Option<String>,
    /// The first number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<f64>,
    /// `-` (range), `+`, `/` or `:` (ratio), `.`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// The second number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number2: Option<f64>,
}

/// An observation or result (OBX).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Observation {
    /// Index of the order it belongs to in [`Clinical::orders`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<usize>,
    /// Index of the immunization it reports on in [`Clinical::immunizations`] (an OBX after
    /// RXA: VXU's ORDER.OBSERVATION group).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immunization: Option<usize>,
    /// Value type (OBX-2: NM, ST, CWE, SN, TX, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// What was observed (OBX-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// Sub-id grouping related observations (OBX-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_id: Option<String>,
    /// The value (OBX-5; repeated text values are joined with line breaks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Further repetitions of OBX-5 after [`Observation::value`] for types that repeat whole
    /// values (NM, CWE, SN, dates: `60~120`); FHIR carries them all as `component`s.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more_values: Vec<Value>,
    /// Units (OBX-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<Code>,
    /// Reference range as sent (OBX-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_range: Option<String>,
    /// Abnormal flags / interpretation (OBX-8, table 0078: H, L, A, N, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interpretation: Vec<Code>,
    /// Result status (OBX-11, table 0085: F, P, C, X, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// When observed (OBX-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<String>,
    /// Producer (OBX-15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<Code>,
    /// Responsible observers (OBX-16).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub performers: Vec<Person>,
    /// Method (OBX-17).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<Code>,
    /// When analysed (OBX-19).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysed_at: Option<String>,
    /// Body site (OBX-20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_site: Option<Code>,
    /// Performing organization name (OBX-23-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performing_organization: Option<String>,
    /// Its identifier (OBX-23: XON-10 or XON-3, assigning authority XON-6, type XON-7, e.g. a
    /// CLIA number typed `XX`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performing_organization_id: Option<Identifier>,
    /// Its address (OBX-24).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performing_organization_address: Option<Address>,
    /// Comments (NTE after OBX).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// OBX-21: the observation's own identifier (the filler's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// OBX-18: the equipment (device) instances that produced it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub equipment: Vec<Identifier>,
    /// OBX-25: the medical director responsible for the result.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub directors: Vec<Person>,
}

/// A specimen (SPM).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Specimen {
    /// Index of the order it belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order: Option<usize>,
    /// Specimen ids: SPM-2 placer/filler assigned (typed `PGN`/`FGN`), SPM-31 other ids,
    /// SPM-32 shipment id (typed `SHIP`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// Parent specimen ids (SPM-3, placer/filler assigned).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<Identifier>,
    /// Accession id (SPM-30).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accession: Option<Identifier>,
    /// Type (SPM-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Code>,
    /// Collection method (SPM-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collection_method: Option<Code>,
    /// Source site (SPM-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_site: Option<Code>,
    /// Collected at (SPM-17-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected_at: Option<String>,
    /// Received at (SPM-18).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at: Option<String>,
    /// End of the collection period (SPM-17-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub collected_end: Option<String>,
    /// Additive (SPM-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub additive: Option<Code>,
    /// Collected amount (SPM-12-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// Its units (SPM-12-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_units: Option<Code>,
    /// Description (SPM-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Available for testing (SPM-20, Y/N).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    /// Conditions (SPM-24, table 0493: CLOT, HEM, AUT, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Code>,
    /// Container type (SPM-27).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_type: Option<Code>,
}

/// An allergy (AL1, or IAM with its IAR reactions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Allergy {
    /// The sender's id for this allergy record (IAM-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// What the message does to the record (IAM-6, table 0206: A add, U update, D delete, X no
    /// change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Clinical status of the allergy record (IAM-17, table 0438: C confirmed, U unconfirmed,
    /// I inactive, E erroneous, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Code>,
    /// Onset as text, when there is no date (IAM-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_text: Option<String>,
    /// When reported (IAM-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<String>,
    /// Coded reactions with their severity (IAR).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reaction_details: Vec<Reaction>,
    /// Allergen type (AL1-2, table 0127: DA drug, FA food, EA environmental, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Code>,
    /// The allergen (AL1-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allergen: Option<Code>,
    /// Severity (AL1-4, table 0128: SV severe, MO moderate, MI mild, U unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Code>,
    /// Reactions (AL1-5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<String>,
    /// When identified (AL1-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identified_at: Option<String>,
    /// Who reported it (IAM-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<Name>,
    /// The reporter's relationship to the patient (IAM-15; `SEL` for the patient).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reporter_relationship: Option<Code>,
    /// Comments (NTE after IAM).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// One reaction to an allergen (IAR).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reaction {
    /// The reaction (IAR-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// Its severity (IAR-2, table 0128).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Code>,
    /// Free-text description (IAR-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A diagnosis (DG1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Diagnosis {
    /// The diagnosis (DG1-3; DG1-4 as its text when DG1-3 has none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// When diagnosed (DG1-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosed_at: Option<String>,
    /// Type (DG1-6, table 0052: A admitting, W working, F final).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Priority (DG1-15; 1 is the primary diagnosis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<String>,
    /// Diagnosing clinicians (DG1-16).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub clinicians: Vec<Person>,
    /// Identifier (DG1-20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// When it was attested (DG1-19).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attested_at: Option<String>,
    /// Action (DG1-21, table 0206: A add, D delete, U update, X no change).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// A procedure (PR1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Procedure {
    /// The procedure (PR1-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// Its description (PR1-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When performed (PR1-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performed_at: Option<String>,
    /// Functional type (PR1-6, table 0230: anesthesia, procedure for treatment, diagnostic…).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub functional_type: Option<Code>,
    /// How long it took, in minutes (PR1-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minutes: Option<f64>,
    /// Anesthesiologists (PR1-8).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anesthesiologists: Vec<Person>,
    /// Surgeons (PR1-11).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub surgeons: Vec<Person>,
    /// Other practitioners (PR1-12).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub performers: Vec<Person>,
    /// The diagnosis it was for (PR1-15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Code>,
    /// Identifier (PR1-19).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// Where: the treating unit (PR1-23).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// The procedure this one is part of (PR1-25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Identifier>,
}

/// An administered (or refused) vaccine (RXA with RXR and its ORC).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Immunization {
    /// Placer and filler order numbers (ORC-2/3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// When given (RXA-3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub administered_at: Option<String>,
    /// The vaccine (RXA-5; CVX usually).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vaccine: Option<Code>,
    /// Amount (RXA-6; 999 means unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<f64>,
    /// Units (RXA-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<Code>,
    /// Administration notes (RXA-9), e.g. NIP001 `00` new record, `01` historical.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Code>,
    /// Who gave it (RXA-10).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub performers: Vec<Person>,
    /// Lot numbers (RXA-15).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lot_numbers: Vec<String>,
    /// Expiration date (RXA-16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// Manufacturer (RXA-17, MVX).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<Code>,
    /// Why it was refused (RXA-18).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refusal_reasons: Vec<Code>,
    /// Completion status (RXA-20: CP complete, RE refused, NA not given, PA partial).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_status: Option<String>,
    /// Action code (RXA-21: A add, D delete, U update).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Route (RXR-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Code>,
    /// Site (RXR-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<Code>,
    /// Ordering provider (ORC-12).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ordering_provider: Vec<Person>,
    /// Why it was given (RXA-19).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub indications: Vec<Code>,
    /// When it was entered (RXA-22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entered_at: Option<String>,
    /// Where it was given (RXA-27) and that place's address (RXA-28).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// See `location`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_address: Option<Address>,
    /// The order (ORC) it fulfils: an index into the record's orders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<usize>,
}

/// A guarantor of the patient's bill (GT1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Guarantor {
    /// The person: numbers GT1-2, employee number GT1-19 and SSN GT1-12, names GT1-3, address GT1-5, home and business
    /// phones GT1-6/7, birth date GT1-8, sex GT1-9, relationship to the patient GT1-11, and the
    /// period GT1-13/14 in which they guarantee.
    pub person: Contact,
    /// An organization as guarantor (GT1-21).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
    /// Guarantor type (GT1-10, table 0068).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Code>,
    /// Order among several guarantors (GT1-15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    /// Billing on hold (GT1-22).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub billing_hold: Option<bool>,
    /// Primary language (GT1-36).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Code>,
}

/// A financial transaction (FT1): what was done for the patient, and what it costs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Charge {
    /// The transaction's id (FT1-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// When the service was given (FT1-4, a date range: start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// See `start` (FT1-4 end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// When the transaction was posted (FT1-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub posted: Option<String>,
    /// Transaction type (FT1-6, table 0017: CG charge, CD credit, PY payment, AJ adjustment).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Code>,
    /// What is charged (FT1-7, the transaction code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// How many (FT1-10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<f64>,
    /// The amount in all (FT1-11).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
    /// The amount of one (FT1-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_amount: Option<Money>,
    /// The department charging (FT1-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<Code>,
    /// The diagnoses it is for (FT1-19).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub diagnoses: Vec<Code>,
    /// Who performed it (FT1-20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub performers: Vec<Person>,
    /// Who ordered it (FT1-21).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordered_by: Option<Person>,
    /// Who entered the transaction (FT1-24).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entered_by: Option<Person>,
    /// The procedure (FT1-25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub procedure: Option<Code>,
    /// The drug (FT1-29, an NDC code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drug: Option<Code>,
    /// Where it was performed (FT1-32).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub performing_facility: Option<Organization>,
    /// Where it was ordered (FT1-33).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ordering_facility: Option<Organization>,
}

/// An amount of money (CP/MO: quantity and denomination).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Money {
    /// The amount.
    pub value: f64,
    /// ISO 4217 currency (MO-2), e.g. `USD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Insurance coverage (IN1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Insurance {
    /// Plan (IN1-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Code>,
    /// Insurance company ids (IN1-3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub company_ids: Vec<Identifier>,
    /// Insurance company name (IN1-4-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    /// Group number (IN1-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_number: Option<String>,
    /// Group name (IN1-9-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Effective from (IN1-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Until (IN1-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Plan type (IN1-15; table 0086 is user-defined, so no HL7 code system is implied).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan_type: Option<Code>,
    /// Name of the insured (IN1-16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insured_name: Option<Name>,
    /// Insured's relationship to the patient (IN1-17, table 0063).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relationship: Option<Code>,
    /// Policy number (IN1-36).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_number: Option<String>,
    /// Insured's id number (IN1-49).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub insured_ids: Vec<Identifier>,
    /// IN1-18: the insured's date of birth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insured_birth_date: Option<String>,
    /// IN1-19: the insured's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insured_address: Option<Address>,
    /// IN1-43: the insured's sex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insured_sex: Option<String>,
    /// IN1-11: the insured's group employer (the policy holder when an organization).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_holder: Option<String>,
    /// IN1-10: that employer's identifiers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_holder_ids: Vec<Identifier>,
    /// The patient's program numbers from IN2: Medicare (IN2-6, typed `MC`), Medicaid (IN2-8,
    /// `MA`), military id (IN2-10, `MI`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub patient_ids: Vec<Identifier>,
    /// More ids of the insured from IN2: employee id (IN2-1), SSN (IN2-2).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub insured_more_ids: Vec<Identifier>,
    /// The payer's member number for the patient (IN2-61).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_number: Option<Identifier>,
}

/// An appointment (SIU^S12–S26).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Appointment {
    /// Placer appointment id (SCH-1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placer_id: Option<Identifier>,
    /// Filler appointment id (SCH-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filler_id: Option<Identifier>,
    /// Event reason (SCH-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_reason: Option<Code>,
    /// Appointment reason (SCH-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Code>,
    /// Appointment type (SCH-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Code>,
    /// Duration (SCH-9) in the units of SCH-10.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Duration units (SCH-10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_units: Option<Code>,
    /// Start (SCH-11-4, TQ1-7 or the first AIS-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// End (SCH-11-5 or TQ1-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Filler status (SCH-25, table 0278: Booked, Cancelled, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Code>,
    /// Services (AIS-3, with AIS-4 start, AIS-7/8 duration and AIS-10 status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Booked<Code>>,
    /// Resources such as equipment (AIG-3, with AIG-4 type, AIG-8 start, AIG-11/12 duration,
    /// AIG-14 status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<Booked<Code>>,
    /// Locations (AIL-3, with AIL-4 type, AIL-6 start, AIL-9/10 duration, AIL-12 status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations: Vec<Booked<Location>>,
    /// Personnel (AIP-3, with AIP-4 type, AIP-6 start, AIP-9/10 duration, AIP-12 status).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub personnel: Vec<Booked<Person>>,
    /// Placer contact (SCH-12), filler contact (SCH-16), entered by (SCH-20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub contacts: Vec<Person>,
    /// The orders it is for (SCH-26 placer, SCH-27 filler order number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placer_order: Option<Identifier>,
    /// See `placer_order`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filler_order: Option<Identifier>,
    /// Comments (NTE).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// A comment (NTE): its text, and who entered it when (NTE-5, NTE-6).
///
/// In JSON a note with only text is that text, so plain notes read as strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Note {
    /// The comment (NTE-3, repetitions joined by line breaks).
    pub text: String,
    /// Who entered it (NTE-5).
    pub author: Option<Person>,
    /// When (NTE-6).
    pub at: Option<String>,
}

impl From<String> for Note {
    fn from(text: String) -> Note {
        Note {
            text,
            ..Note::default()
        }
    }
}

#[derive(Serialize, Deserialize)]
struct NoteFields {
    text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    author: Option<Person>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<String>,
}

impl Serialize for Note {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.author.is_none() && self.at.is_none() {
            return s.serialize_str(&self.text);
        }
        NoteFields {
            text: self.text.clone(),
            author: self.author.clone(),
            at: self.at.clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Note {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Note, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Fields(Box<NoteFields>),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Text(text) => Note::from(text),
            Repr::Fields(f) => Note {
                text: f.text,
                author: f.author,
                at: f.at,
            },
        })
    }
}

/// An accident (ACC): when, what, where, and what followed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Accident {
    /// ACC-1: when it happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// ACC-2: the accident code (user-defined table 0050).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// ACC-3: where, as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// ACC-4: the state of an auto accident (table 0347).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_state: Option<Code>,
    /// ACC-5: job related.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_related: Option<bool>,
    /// ACC-6: the accident caused a death.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub death: Option<bool>,
    /// ACC-7: who entered it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entered_by: Option<Person>,
    /// ACC-8: what happened.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// ACC-9: who brought the patient in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brought_in_by: Option<String>,
    /// ACC-10: the police were notified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub police_notified: Option<bool>,
    /// ACC-11: where, as an address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// ACC-13: the accident's identifier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
}

/// A piece of software that made or handled the message (SFT).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Software {
    /// SFT-1-1: the vendor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// SFT-2: certified version or release number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SFT-3: product name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// SFT-4: binary id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_id: Option<String>,
    /// SFT-5: product information.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub information: Option<String>,
    /// SFT-6: install date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<String>,
}

/// A problem-list entry (PRB).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Problem {
    /// PRB-1: what the message does (table 0287: AD add, UP update, CO correct, DE delete, UC
    /// unchanged, LI link, UN unlink).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// PRB-2: when that was done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action_at: Option<String>,
    /// PRB-3: the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// PRB-4: this problem's instance id, the same in every message about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// PRB-7: when the problem was established.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub established_at: Option<String>,
    /// PRB-9: when it was resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<String>,
    /// PRB-10: its classification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classification: Option<Code>,
    /// PRB-13: confirmation status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Code>,
    /// PRB-14: life cycle status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub life_cycle: Option<Code>,
    /// PRB-16: onset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_at: Option<String>,
    /// PRB-17: onset as text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub onset_text: Option<String>,
    /// Comments (NTE after PRB).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// A disability (DB1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Disability {
    /// DB1-2: whose (table 0334: PT patient, GT guarantor, IN insured, AP associated party).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person: Option<String>,
    /// DB1-3: the disabled person's identifiers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// DB1-4: disabled or not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// DB1-5: disability start date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// DB1-6: disability end date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// DB1-7: return to work date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub return_to_work: Option<String>,
    /// DB1-8: unable to work date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unable_to_work: Option<String>,
}

/// A patient's death and autopsy (PDA).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Death {
    /// PDA-1: causes of death.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Code>,
    /// PDA-2: where the patient died.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// PDA-3: the death was certified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certified: Option<bool>,
    /// PDA-4: when the death certificate was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_signed_at: Option<String>,
    /// PDA-5: who certified it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certified_by: Option<Person>,
    /// PDA-6: an autopsy was performed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autopsy: Option<bool>,
    /// PDA-7-1: when the autopsy started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autopsy_start: Option<String>,
    /// PDA-7-2: when it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autopsy_end: Option<String>,
    /// PDA-8: who performed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autopsy_by: Option<Person>,
    /// PDA-9: a coroner (medical examiner) was involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coroner: Option<bool>,
}

/// A referral of the patient to another provider (RF1) and the providers named with it (PRD).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Referral {
    /// Status (RF1-1, table 0283: Accepted, Pending, Rejected, Expired).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Code>,
    /// Priority (RF1-2, table 0280: STAT, ASAP, Routine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<Code>,
    /// Type (RF1-3, table 0281: Laboratory, Radiology, Medical, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Code>,
    /// What the referred-to provider is asked to do (RF1-4, table 0282: send a written report,
    /// return the patient, assume management, second opinion).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disposition: Vec<Code>,
    /// Setting (RF1-5, table 0284: Inpatient, Outpatient, Ambulatory, Emergency).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Code>,
    /// The referring side's id for it (RF1-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub originating_id: Option<Identifier>,
    /// Valid from (RF1-7).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective: Option<String>,
    /// Valid until (RF1-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    /// When it was processed (RF1-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_at: Option<String>,
    /// Reasons (RF1-10, table 0336).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Code>,
    /// Other systems' ids for it (RF1-11).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub external_ids: Vec<Identifier>,
    /// The reason in words (RF1-14).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_text: Option<String>,
    /// Number of treatments or units authorized (RF1-15).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_units: Option<f64>,
    /// The organization authorized to provide the service (RF1-19).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_provider: Option<Organization>,
    /// The professional authorized to provide the service (RF1-20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorized_professional: Option<Person>,
    /// Comment (RF1-24).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The providers named with it (PRD): referring, referred to, consulting, primary care.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ReferralProvider>,
    /// Notes (NTE of the message's referral).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

/// A provider named with a referral (PRD).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReferralProvider {
    /// Roles (PRD-1, table 0286: RP referring, RT referred to, CP consulting, PP primary care).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Code>,
    /// Name (PRD-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// Addresses (PRD-3).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Where the provider works (PRD-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Telephone and e-mail (PRD-5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub telecoms: Vec<Telecom>,
    /// Identifiers (PRD-7, PLN: number, type from table 0338 such as NPI or SL, expiry).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<Identifier>,
    /// In this role from (PRD-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// In this role until (PRD-9).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The organization the provider acts for (PRD-10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<Organization>,
}

/// Something booked for an appointment (AIG, AIL, AIP): what, as what, when, how long.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Booked<T> {
    /// The person, location or resource.
    pub what: T,
    /// Its role in the appointment (resource type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Code>,
    /// Start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Duration, in `duration_units` (minutes when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Units of `duration`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_units: Option<Code>,
    /// Filler status (table 0278).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Code>,
}

/// A clinical document (MDM: TXA and OBX content).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Document {
    /// Document type (TXA-2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<Code>,
    /// Content presentation (TXA-3, e.g. TX, FT, multipart).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presentation: Option<String>,
    /// Activity time (TXA-4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_at: Option<String>,
    /// When the document was made (TXA-6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub originated_at: Option<String>,
    /// Who authenticated it (TXA-10).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authenticators: Vec<Person>,
    /// Title (TXA-25).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Authors (TXA-5 primary activity provider, TXA-9 originator).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authors: Vec<Person>,
    /// Unique document number (TXA-12).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// Parent document (TXA-13).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Identifier>,
    /// Placer order numbers (TXA-14).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub placer_ids: Vec<Identifier>,
    /// File name (TXA-16).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Completion status (TXA-17, table 0271: AU authenticated, DI dictated, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_status: Option<String>,
    /// Confidentiality (TXA-18).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidentiality: Option<String>,
    /// Availability (TXA-19, table 0273: AV available, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub availability: Option<String>,
    /// The document's text (TX/FT/ST OBX values joined with line breaks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Embedded data (ED OBX-5): type, subtype, encoding, data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// Encapsulated data (ED): e.g. a base64 PDF.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attachment {
    /// Type of data (ED-2), e.g. `AP`, `TEXT`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Subtype (ED-3), e.g. `PDF`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    /// Encoding (ED-4), e.g. `Base64`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// The data as sent (ED-5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_parts_are_left_out_of_json() {
        let c = Clinical {
            patient: Some(Patient {
                sex: Some("F".into()),
                ..Patient::default()
            }),
            ..Clinical::default()
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"message":{},"patient":{"sex":"F"}}"#);
        let back: Clinical = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn a_plain_note_is_a_string_and_an_entered_one_an_object() {
        let notes = vec![
            Note::from("fasting".to_string()),
            Note {
                text: "rechecked".into(),
                at: Some("2024-01-01".into()),
                ..Note::default()
            },
        ];
        let json = serde_json::to_string(&notes).unwrap();
        assert_eq!(
            json,
            r#"["fasting",{"text":"rechecked","at":"2024-01-01"}]"#
        );
        let back: Vec<Note> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, notes);
    }

    #[test]
    fn values_keep_their_type_in_json() {
        let v = vec![
            Value::Number(7.5),
            Value::Text("positive".into()),
            Value::Coded(Code::table("0136", "Y")),
        ];
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"[7.5,"positive",{"code":"Y","system":"HL70136"}]"#);
    }
}
