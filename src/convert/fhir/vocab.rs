//! Vocabulary for the v2 → FHIR conversion: coding-system names to URIs, and the v2 tables whose
//! codes FHIR replaces with its own (from the ConceptMaps of HL7's v2-to-FHIR implementation
//! guide: AdministrativeSex, MaritalStatus, PatientClass\[EncounterClass\], ResultStatus,
//! ObservationResultStatusCodesInterpretation, OrderControlCode[ServiceRequest.status],
//! OrderStatus, AllergenType, AllergySeverity, CompletionStatus, FillerStatusCodes\[Appointment\],
//! TelecommunicationUseCode, TelecommunicationEquipmentType, AddressType\[Use\], NameType).

/// The FHIR URI of a v2 coding system name (HL7 table 0396), when it has a well-known one.
pub fn system_uri(name: &str) -> Option<String> {
    let n = name.trim();
    let upper = n.to_ascii_uppercase();
    // v2 tables: HL70001, HL7-0001, HL7nnnn.
    if let Some(rest) = upper.strip_prefix("HL7") {
        let digits = rest.trim_start_matches('-');
        if digits.len() == 4 && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Some(format!("http://terminology.hl7.org/CodeSystem/v2-{digits}"));
        }
    }
    let uri = match upper.as_str() {
        "LN" | "LOINC" => "http://loinc.org",
        "SCT" | "SNM" | "SNOMED" | "SNOMEDCT" | "SNOMED-CT" | "SCT2" => "http://snomed.info/sct",
        "I10" | "ICD10" | "ICD-10" => "http://hl7.org/fhir/sid/icd-10",
        "I10C" | "ICD10CM" | "ICD-10-CM" => "http://hl7.org/fhir/sid/icd-10-cm",
        "I10P" | "ICD10PCS" => "http://www.cms.gov/Medicare/Coding/ICD10",
        "I9" | "I9C" | "I9CDX" | "ICD9" | "ICD9CM" | "ICD-9-CM" => {
            "http://hl7.org/fhir/sid/icd-9-cm"
        }
        "CVX" => "http://hl7.org/fhir/sid/cvx",
        "MVX" => "http://hl7.org/fhir/sid/mvx",
        "NDC" => "http://hl7.org/fhir/sid/ndc",
        "RXNORM" | "RXN" => "http://www.nlm.nih.gov/research/umls/rxnorm",
        "UCUM" | "ISO+" | "ANS+" => "http://unitsofmeasure.org",
        "C4" | "C5" | "CPT" | "CPT4" | "CPT-4" => "http://www.ama-assn.org/go/cpt",
        "HCPCS" | "HCPC" => "urn:oid:2.16.840.1.113883.6.285",
        "CDCREC" => "urn:oid:2.16.840.1.113883.6.238",
        "NUCC" => "http://nucc.org/provider-taxonomy",
        "NPI" => "http://hl7.org/fhir/sid/us-npi",
        "ICDO" | "ICD-O" => "http://terminology.hl7.org/CodeSystem/icd-o",
        "ISO3166" | "ISO3166_1" | "ISO3166-1" => "urn:iso:std:iso:3166",
        "ISO639" | "ISO639-1" | "ISO6391" => "urn:ietf:bcp:47",
        "PHINQUESTION" => "urn:oid:2.16.840.1.114222.4.5.232",
        "NCIT" => "http://ncimeta.nci.nih.gov",
        "FDDC" => "urn:oid:2.16.840.1.113883.6.63",
        "DCM" => "http://dicom.nema.org/resources/ontology/DCM",
        "HSLOC" => "https://www.cdc.gov/nhsn/cdaportal/terminology/codesystem/hsloc.html",
        _ => return None,
    };
    Some(uri.to_string())
}

/// The v2 relationship codes (table 0063) [`relationship`] maps, for reading FHIR back.
pub const RELATIONSHIP_CODES: [&str; 32] = [
    "SEL", "SPO", "DOM", "CHD", "GCH", "NCH", "SCH", "FCH", "DEP", "WRD", "PAR", "MTH", "FTH",
    "CGV", "GRD", "GRP", "EXF", "SIB", "BRO", "SIS", "FND", "OAD", "EME", "EMR", "ASC", "EMC",
    "OWN", "TRA", "MGR", "NON", "UNK", "OTH",
];

/// The FHIR coding (system, code, display) of a v2 relationship (table 0063), from the guide's
/// Relationship ConceptMap: mostly v3 RoleCode, some v2-0131 contact roles.
pub fn relationship(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "SEL" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "ONESELF",
            "self",
        ),
        "SPO" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "SPS",
            "spouse",
        ),
        "DOM" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "SIGOTHR",
            "significant other",
        ),
        "CHD" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "CHILD",
            "child",
        ),
        "GCH" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "GRNDCHILD",
            "grandchild",
        ),
        "NCH" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "NCHILD",
            "natural child",
        ),
        "SCH" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "STPCHLD",
            "step child",
        ),
        "FCH" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "CHLDFOST",
            "foster child",
        ),
        "DEP" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "DEP",
            "Handicapped dependent",
        ),
        "WRD" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "WRD",
            "Ward of court",
        ),
        "PAR" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "PRN",
            "parent",
        ),
        "MTH" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "MTH",
            "mother",
        ),
        "FTH" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "FTH",
            "father",
        ),
        "CGV" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "CGV",
            "Care giver",
        ),
        "GRD" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "GRD",
            "Guardian",
        ),
        "GRP" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "GRPRN",
            "grandparent",
        ),
        "EXF" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "EXT",
            "extended family member",
        ),
        "SIB" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "SIB",
            "sibling",
        ),
        "BRO" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "BRO",
            "brother",
        ),
        "SIS" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "SIS",
            "sister",
        ),
        "FND" => (
            "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
            "FRND",
            "unrelated friend",
        ),
        "OAD" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "OAD",
            "Other adult",
        ),
        "EME" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "EME",
            "Employee",
        ),
        "EMR" => (
            "http://terminology.hl7.org/CodeSystem/v2-0131",
            "E",
            "Employer",
        ),
        "ASC" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "ASC",
            "Associate",
        ),
        "EMC" => (
            "http://terminology.hl7.org/CodeSystem/v2-0131",
            "C",
            "Emergency Contact",
        ),
        "OWN" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "OWN",
            "Owner",
        ),
        "TRA" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "TRA",
            "Trainer",
        ),
        "MGR" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "MGR",
            "Manager",
        ),
        "NON" => (
            "http://terminology.hl7.org/CodeSystem/v2-0063",
            "NON",
            "None",
        ),
        "UNK" => (
            "http://terminology.hl7.org/CodeSystem/v2-0131",
            "U",
            "Unknown",
        ),
        "OTH" => (
            "http://terminology.hl7.org/CodeSystem/v2-0131",
            "O",
            "Other",
        ),
        _ => return None,
    })
}

/// The `subscriber-relationship` code (Coverage.relationship) for a v2 relationship (table
/// 0063); other relationships are `other`.
pub fn subscriber_relationship(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "SEL" => "self",
        "SPO" => "spouse",
        "DOM" => "common",
        "CHD" | "NCH" | "SCH" | "FCH" | "GCH" => "child",
        "PAR" | "MTH" | "FTH" => "parent",
        "" => return None,
        _ => "other",
    })
}

/// `administrative-gender` for a v2 sex code (table 0001).
pub fn gender(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "F" => "female",
        "M" => "male",
        "O" | "A" | "N" => "other",
        "U" => "unknown",
        _ => return None,
    })
}

/// `v3-MaritalStatus` (or a null flavor) for a v2 marital status (table 0002).
pub fn marital_status(code: &str) -> Option<(&'static str, &'static str)> {
    const V3: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
    const NULL: &str = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor";
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "A" | "E" => (V3, "L"),
        "D" => (V3, "D"),
        "M" => (V3, "M"),
        "S" => (V3, "S"),
        "W" => (V3, "W"),
        "C" => (V3, "C"),
        "G" | "P" | "R" => (V3, "T"),
        "N" => (V3, "A"),
        "I" => (V3, "I"),
        "B" => (V3, "U"),
        "U" => (NULL, "UNK"),
        "O" => (NULL, "OTH"),
        "T" => (NULL, "NAVU"),
        _ => return None,
    })
}

/// Encounter.class for a v2 patient class (table 0004): system, code, display.
pub fn encounter_class(code: &str) -> (&'static str, String, Option<&'static str>) {
    const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    const V2: &str = "http://terminology.hl7.org/CodeSystem/v2-0004";
    match code.trim().to_ascii_uppercase().as_str() {
        "E" => (ACT, "EMER".into(), Some("emergency")),
        "I" => (ACT, "IMP".into(), Some("inpatient encounter")),
        "O" => (ACT, "AMB".into(), Some("ambulatory")),
        "P" => (ACT, "PRENC".into(), Some("pre-admission")),
        other => (V2, other.to_string(), None),
    }
}

/// Encounter.status from the event, the patient class (PV1-2) and the visit's dates.
pub fn encounter_status(
    event: Option<&str>,
    class: Option<&str>,
    discharged: bool,
) -> &'static str {
    // As the guide's message maps say: ADT_A11 takes MSH[Encounter] (Event[EncounterStatus]:
    // cancelled; A27/A38 cancel too); otherwise PV1[Encounter] — a discharge time (PV1-45)
    // finishes the visit, else PV1-2 through PatientClass[EncounterStatus] (P planned, U
    // unknown, the other classes in progress). Only without a known class does the event
    // decide: the Event[EncounterStatus] map (A01/A02/A13 in progress, A03 finished, A04/A05
    // planned, A08 unknown — it does not say —), then Aorta's reading of the events it
    // leaves out.
    let event = event.unwrap_or_default();
    if matches!(event, "A11" | "A27" | "A38") {
        return "cancelled";
    }
    if discharged {
        return "finished";
    }
    match class
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "P" => return "planned",
        "U" => return "unknown",
        "E" | "I" | "O" | "R" | "B" | "C" | "N" => return "in-progress",
        _ => {}
    }
    match event {
        "A03" | "A07" => "finished",
        "A04" | "A05" | "A14" => "planned",
        "A08" | "" => "unknown",
        "A10" => "arrived",
        "A09" => "onleave",
        _ => "in-progress",
    }
}

/// DiagnosticReport.status for a result status (OBR-25, table 0123).
pub fn report_status(code: Option<&str>) -> &'static str {
    match code
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "O" | "I" | "S" => "registered",
        "P" => "preliminary",
        "C" => "corrected",
        "R" => "partial",
        "F" => "final",
        "X" => "cancelled",
        "A" => "partial",
        _ => "unknown",
    }
}

/// Observation.status for an observation result status (OBX-11, table 0085).
pub fn observation_status(code: Option<&str>) -> &'static str {
    match code
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "A" => "amended",
        "C" => "corrected",
        "D" | "W" => "entered-in-error",
        "F" => "final",
        "P" | "R" | "S" => "preliminary",
        "X" => "cancelled",
        "I" | "O" => "registered",
        _ => "unknown",
    }
}

/// ServiceRequest.status from the order status (ORC-5) or else the order control (ORC-1).
pub fn request_status(order_status: Option<&str>, control: Option<&str>) -> &'static str {
    let by_status = match order_status
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "CA" | "DC" | "RP" => Some("revoked"),
        "CM" => Some("completed"),
        "ER" => Some("entered-in-error"),
        "HD" => Some("on-hold"),
        "IP" | "SC" | "A" => Some("active"),
        _ => None,
    };
    if let Some(s) = by_status {
        return s;
    }
    match control
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "NW" | "AF" | "CA" | "HD" | "OK" | "PR" | "PY" | "RL" | "RO" | "RQ" | "SC" | "SN" => {
            "active"
        }
        "CR" | "DC" | "DF" | "DR" | "OC" | "OD" => "revoked",
        "FU" | "RE" => "completed",
        "HR" | "OH" => "on-hold",
        _ => "unknown",
    }
}

/// AllergyIntolerance.category for an allergen type (AL1-2, table 0127).
pub fn allergy_category(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "DA" | "MA" => "medication",
        "FA" => "food",
        "EA" | "PA" | "LA" => "environment",
        "AA" => "biologic",
        _ => return None,
    })
}

/// AllergyIntolerance.criticality for an allergy severity (AL1-4, table 0128).
pub fn allergy_criticality(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "SV" => "high",
        "MI" | "MO" => "low",
        "U" => "unable-to-assess",
        _ => return None,
    })
}

/// AllergyIntolerance.reaction.severity for an allergy severity (table 0128).
pub fn reaction_severity(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "SV" => "severe",
        "MO" => "moderate",
        "MI" => "mild",
        _ => return None,
    })
}

/// AllergyIntolerance clinical and verification status for an IAM action (table 0206) and
/// allergy clinical status (table 0438). A deleted or erroneous record is
/// `entered-in-error`, which FHIR allows only without a clinical status (ait-2).
pub fn allergy_status(
    action: Option<&str>,
    status: Option<&str>,
) -> (Option<&'static str>, Option<&'static str>) {
    let status = status.map(|s| s.trim().to_ascii_uppercase());
    if action.is_some_and(|a| a.trim().eq_ignore_ascii_case("D")) || status.as_deref() == Some("E")
    {
        return (None, Some("entered-in-error"));
    }
    match status.as_deref() {
        Some("C") => (Some("active"), Some("confirmed")),
        Some("I") => (Some("inactive"), Some("confirmed")),
        Some("U") | Some("P") | Some("S") | Some("D") => (Some("active"), Some("unconfirmed")),
        _ => (Some("active"), None),
    }
}

/// Immunization.status for a completion status (RXA-20, table 0322).
pub fn immunization_status(code: Option<&str>, action: Option<&str>) -> &'static str {
    if action.is_some_and(|a| a.eq_ignore_ascii_case("D")) {
        return "entered-in-error";
    }
    match code
        .unwrap_or_default()
        .trim()
        .to_ascii_uppercase()
        .as_str()
    {
        "RE" | "NA" => "not-done",
        _ => "completed",
    }
}

/// Appointment.status for a filler status (SCH-25, table 0278).
pub fn appointment_status(code: Option<&str>, event: Option<&str>) -> &'static str {
    let by_code = match code
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "pending" => Some("pending"),
        "waitlist" => Some("waitlist"),
        "booked" => Some("booked"),
        "started" => Some("checked-in"),
        "complete" => Some("fulfilled"),
        "cancelled" => Some("cancelled"),
        "deleted" => Some("entered-in-error"),
        "noshow" => Some("noshow"),
        _ => None,
    };
    if let Some(s) = by_code {
        return s;
    }
    match event.unwrap_or_default() {
        "S15" => "cancelled",
        "S17" => "entered-in-error",
        "S26" => "noshow",
        _ => "booked",
    }
}

/// ContactPoint.use for a telecom use code (XTN-2, table 0201).
pub fn telecom_use(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "PRN" | "ORN" | "VHN" => "home",
        "WPN" => "work",
        "PRS" => "mobile",
        _ => return None,
    })
}

/// ContactPoint.system for a telecom equipment type (XTN-3, table 0202).
pub fn telecom_system(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "PH" | "CP" => "phone",
        "FX" => "fax",
        "BP" => "pager",
        "INTERNET" | "X.400" => "email",
        "MD" | "SAT" | "TDD" | "TTY" => "other",
        _ => return None,
    })
}

/// Address.use for an address type (XAD-7, table 0190).
pub fn address_use(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "BA" => "old",
        "BI" => "billing",
        "C" => "temp",
        "B" | "O" => "work",
        "H" => "home",
        _ => return None,
    })
}

/// HumanName.use for a name type (XPN-7, table 0200).
pub fn name_use(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "BAD" => "old",
        "D" => "usual",
        "L" | "R" => "official",
        "M" => "maiden",
        "MSK" => "anonymous",
        "N" => "nickname",
        "NAV" | "TEMP" => "temp",
        _ => return None,
    })
}

/// The v3 GTSAbbreviation code for a repeat pattern (TQ1-3, table 0335), where the guide's
/// RepeatPattern ConceptMap gives one (the v2 code is kept beside it either way).
pub fn gts_abbreviation(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "Q1H" => "Q1H",
        "Q2H" => "Q2H",
        "Q3H" => "Q3H",
        "Q4H" => "Q4H",
        "Q6H" => "Q6H",
        "Q8H" => "Q8H",
        "Q1D" | "QD" => "QD",
        "Q1W" => "WK",
        "Q1L" => "MO",
        "BID" => "BID",
        "TID" => "TID",
        "QID" => "QID",
        "QOD" => "QOD",
        "QAM" => "AM",
        "QPM" => "PM",
        "QHS" => "BED",
        _ => return None,
    })
}

/// Encounter.diagnosis.use (diagnosis-role) for a DG1-6 diagnosis type (table 0052), by the
/// guide's DiagnosisType ConceptMap: only admitting has an equivalent.
pub fn diagnosis_role(code: &str) -> Option<&'static str> {
    match code.trim().to_ascii_uppercase().as_str() {
        "A" => Some("AD"),
        _ => None,
    }
}

/// A security label (meta.security) for a confidentiality code (ORC-28, table 0177), from the
/// guide's ConfidentialityCode map: (system, code, display).
pub fn confidentiality(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    const CONF: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
    const ACT: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
    const V2: &str = "http://terminology.hl7.org/CodeSystem/v2-0177";
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "V" => (CONF, "V", "very restricted"),
        "R" => (CONF, "R", "restricted"),
        "U" => (V2, "U", "Usual control"),
        "EMP" => (ACT, "EMP", "employee information sensitivity"),
        "UWM" => (V2, "UWM", "Unwed mother"),
        "VIP" => (V2, "VIP", "Very important person or celebrity"),
        "PSY" => (CONF, "PSY", "psychiatry relate"),
        "AID" | "HIV" => (CONF, "HIV", "HIV related"),
        "ETH" => (ACT, "ETHUD", "alcohol use disorder information sensitivity"),
        _ => return None,
    })
}

/// ServiceRequest.status of a referral (RF1-1, table 0283). The guide has no map for it:
/// pending is read as awaiting authorization (REF^I12 travels with AUT segments), so the request
/// may not be acted on yet (`on-hold`); an expired referral's authorization has ended
/// (`revoked`).
pub fn referral_status(code: Option<&str>) -> &'static str {
    match code.map(|c| c.trim().to_ascii_uppercase()).as_deref() {
        Some("A") => "active",
        Some("P") => "on-hold",
        Some("R") | Some("E") => "revoked",
        _ => "unknown",
    }
}

/// The FHIR coding (system, code, display) of a provider role (tables 0286 and 0443), from the
/// guide's ProviderRole ConceptMap; roles it leaves unmapped keep only their v2 code.
pub fn provider_role(code: &str) -> Option<(&'static str, &'static str, &'static str)> {
    const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "AD" => (PARTICIPATION, "ADM", "admitter"),
        "AT" => (PARTICIPATION, "ATND", "attender"),
        "CP" => (PARTICIPATION, "CON", "consultant"),
        "RP" => (PARTICIPATION, "REF", "referrer"),
        "PP" => (
            "http://snomed.info/sct",
            "446050000",
            "PCP - Primary care physician",
        ),
        "PI" => ("http://snomed.info/sct", "40570005", "Interpreter"),
        _ => return None,
    })
}

/// ServiceRequest.priority for a v2 priority (TQ1-9 / OBR-5 / ORC-7, table 0485).
pub fn request_priority(code: &str) -> Option<&'static str> {
    Some(match code.trim().to_ascii_uppercase().as_str() {
        "S" => "stat",
        "A" | "P" | "C" => "asap",
        "R" | "T" => "routine",
        _ => return None,
    })
}

/// The BCP 47 tag of an ISO 639 language code (two letters, or the common three-letter ones).
pub fn bcp47(code: &str) -> Option<&'static str> {
    const PAIRS: [(&str, &str); 40] = [
        ("ara", "ar"),
        ("ben", "bn"),
        ("bul", "bg"),
        ("chi", "zh"),
        ("zho", "zh"),
        ("ces", "cs"),
        ("cze", "cs"),
        ("dan", "da"),
        ("deu", "de"),
        ("ger", "de"),
        ("ell", "el"),
        ("gre", "el"),
        ("eng", "en"),
        ("spa", "es"),
        ("fas", "fa"),
        ("per", "fa"),
        ("fin", "fi"),
        ("fra", "fr"),
        ("fre", "fr"),
        ("heb", "he"),
        ("hin", "hi"),
        ("hun", "hu"),
        ("ita", "it"),
        ("jpn", "ja"),
        ("kor", "ko"),
        ("nld", "nl"),
        ("dut", "nl"),
        ("nor", "no"),
        ("pol", "pl"),
        ("por", "pt"),
        ("ron", "ro"),
        ("rum", "ro"),
        ("rus", "ru"),
        ("swe", "sv"),
        ("tha", "th"),
        ("tur", "tr"),
        ("ukr", "uk"),
        ("urd", "ur"),
        ("vie", "vi"),
        ("tgl", "tl"),
    ];
    let lower = code.trim().to_ascii_lowercase();
    if let Some((_, tag)) = PAIRS.iter().find(|(three, _)| *three == lower) {
        return Some(tag);
    }
    PAIRS
        .iter()
        .find(|(_, two)| *two == lower)
        .map(|(_, two)| *two)
}

/// Condition clinical and verification status of a problem (PRB-14 life cycle, PRB-13
/// confirmation, PRB-1 action, PRB-9 resolved): FHIR's own codes are taken as they are; a
/// deleted problem (`DE`) is `entered-in-error` without a clinical status (con-5); a resolved
/// one is at least `resolved` (con-4 allows only inactive, resolved or remission then).
pub fn problem_status(
    action: Option<&str>,
    life_cycle: Option<&str>,
    confirmation: Option<&str>,
    resolved: bool,
) -> (Option<&'static str>, Option<&'static str>) {
    if action.is_some_and(|a| a.trim().eq_ignore_ascii_case("DE")) {
        return (None, Some("entered-in-error"));
    }
    let clinical = life_cycle.and_then(|s| {
        [
            "active",
            "recurrence",
            "relapse",
            "inactive",
            "remission",
            "resolved",
        ]
        .into_iter()
        .find(|c| c.eq_ignore_ascii_case(s.trim()))
    });
    let clinical = match clinical {
        Some(c @ ("inactive" | "remission" | "resolved")) => Some(c),
        _ if resolved => Some("resolved"),
        c => c,
    };
    let verification = confirmation.and_then(|s| {
        [
            "unconfirmed",
            "provisional",
            "differential",
            "confirmed",
            "refuted",
            "entered-in-error",
        ]
        .into_iter()
        .find(|c| c.eq_ignore_ascii_case(s.trim()))
    });
    if verification == Some("entered-in-error") {
        return (None, verification);
    }
    (clinical, verification)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systems() {
        assert_eq!(system_uri("LN").as_deref(), Some("http://loinc.org"));
        assert_eq!(
            system_uri("HL70203").as_deref(),
            Some("http://terminology.hl7.org/CodeSystem/v2-0203")
        );
        assert_eq!(
            system_uri("HL7-0136").as_deref(),
            Some("http://terminology.hl7.org/CodeSystem/v2-0136")
        );
        assert_eq!(system_uri("99LOCAL"), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(report_status(Some("F")), "final");
        assert_eq!(observation_status(Some("C")), "corrected");
        assert_eq!(request_status(None, Some("NW")), "active");
        assert_eq!(request_status(Some("CM"), Some("NW")), "completed");
        // Without a class, the event.
        assert_eq!(encounter_status(Some("A03"), None, false), "finished");
        assert_eq!(encounter_status(Some("A04"), None, false), "planned");
        assert_eq!(encounter_status(Some("A08"), None, false), "unknown");
        assert_eq!(encounter_status(Some("A08"), None, true), "finished");
        assert_eq!(encounter_status(Some("A13"), None, false), "in-progress");
        assert_eq!(encounter_status(Some("A11"), Some("I"), true), "cancelled");
        // PV1-2 through PatientClass[EncounterStatus], unless PV1-45 ends the visit.
        assert_eq!(
            encounter_status(Some("A08"), Some("I"), false),
            "in-progress"
        );
        assert_eq!(
            encounter_status(Some("A04"), Some("O"), false),
            "in-progress"
        );
        assert_eq!(encounter_status(Some("A01"), Some("P"), false), "planned");
        assert_eq!(encounter_status(Some("A01"), Some("U"), false), "unknown");
        assert_eq!(encounter_status(Some("A03"), Some("I"), true), "finished");
        assert_eq!(gender("m"), Some("male"));
    }
}
