//! Building acknowledgements (ACK/NAK), HL7 v2 chapter 2 "Acknowledgment messages".
//!
//! An ACK answers one message: MSH with sender and receiver swapped, its own control id and
//! timestamp (passed in: this module has no clock), the original's processing id, version and
//! character set; MSA-1 the code, MSA-2 the original MSH-10; one ERR per problem with its
//! location and an HL7 table 0357 code. Original mode answers `AA/AE/AR`; enhanced mode (MSH-15
//! or MSH-16 valued) answers the accept acknowledgement `CA/CE/CR`. An acknowledgement is never
//! acknowledged. A message too broken to parse still gets a NAK built from whatever of its MSH
//! could be read.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use super::delimiters::Delimiters;
use super::error::Error;
use super::escape;
use super::owned::OwnedMessage;
use super::parse::{skip_preamble, Message};
use super::path::Path;

/// MSA-1: the acknowledgement code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// Original mode: application accept.
    AA,
    /// Original mode: application error.
    AE,
    /// Original mode: application reject.
    AR,
    /// Enhanced mode: commit accept.
    CA,
    /// Enhanced mode: commit error.
    CE,
    /// Enhanced mode: commit reject.
    CR,
}

impl AckCode {
    /// The code for an outcome in a given mode.
    pub fn for_outcome(mode: &AckMode, outcome: Outcome) -> AckCode {
        match (mode, outcome) {
            (AckMode::Original, Outcome::Accept) => AckCode::AA,
            (AckMode::Original, Outcome::Error) => AckCode::AE,
            (AckMode::Original, Outcome::Reject) => AckCode::AR,
            (AckMode::Enhanced { .. }, Outcome::Accept) => AckCode::CA,
            (AckMode::Enhanced { .. }, Outcome::Error) => AckCode::CE,
            (AckMode::Enhanced { .. }, Outcome::Reject) => AckCode::CR,
        }
    }

    /// The outcome this code reports.
    pub fn outcome(&self) -> Outcome {
        match self {
            AckCode::AA | AckCode::CA => Outcome::Accept,
            AckCode::AE | AckCode::CE => Outcome::Error,
            AckCode::AR | AckCode::CR => Outcome::Reject,
        }
    }

    /// The two-letter code.
    pub fn as_str(&self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AckCode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.trim().to_ascii_uppercase().as_str() {
            "AA" => AckCode::AA,
            "AE" => AckCode::AE,
            "AR" => AckCode::AR,
            "CA" => AckCode::CA,
            "CE" => AckCode::CE,
            "CR" => AckCode::CR,
            other => {
                return Err(format!(
                    "unknown acknowledgement code {other:?} (AA, AE, AR, CA, CE, CR)"
                ))
            }
        })
    }
}

/// What happened to a message, independent of the acknowledgement mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted.
    Accept,
    /// Could not be processed for a reason that may pass (retry may help).
    Error,
    /// Will never be accepted as it is (bad message, unsupported type).
    Reject,
}

/// MSH-15/MSH-16 values (HL7 table 0155): when the sender wants an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCondition {
    /// `AL`: always.
    Always,
    /// `NE`: never.
    Never,
    /// `ER`: only on error or reject.
    OnError,
    /// `SU`: only on success.
    OnSuccess,
}

impl AckCondition {
    /// Reads a table 0155 value; an empty or unknown value means "always", the safe reading.
    pub fn parse(value: &str) -> AckCondition {
        match value.trim() {
            "NE" => AckCondition::Never,
            "ER" => AckCondition::OnError,
            "SU" => AckCondition::OnSuccess,
            _ => AckCondition::Always,
        }
    }

    /// Whether an acknowledgement with this outcome is wanted.
    pub fn wants(&self, outcome: Outcome) -> bool {
        match self {
            AckCondition::Always => true,
            AckCondition::Never => false,
            AckCondition::OnError => outcome != Outcome::Accept,
            AckCondition::OnSuccess => outcome == Outcome::Accept,
        }
    }
}

/// Which acknowledgement rules a message asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// MSH-15 and MSH-16 empty: one application acknowledgement (`AA/AE/AR`).
    Original,
    /// MSH-15 or MSH-16 valued: an accept acknowledgement (`CA/CE/CR`) on MSH-15's condition,
    /// and later an application acknowledgement on MSH-16's.
    Enhanced {
        /// MSH-15: accept acknowledgement condition.
        accept: AckCondition,
        /// MSH-16: application acknowledgement condition.
        application: AckCondition,
    },
}

impl AckMode {
    /// Reads MSH-15 and MSH-16.
    pub fn of(msg: &Message<'_>) -> AckMode {
        let f15 = msg.msh(15).unwrap_or_default();
        let f16 = msg.msh(16).unwrap_or_default();
        if f15.trim().is_empty() && f16.trim().is_empty() {
            AckMode::Original
        } else {
            AckMode::Enhanced {
                accept: AckCondition::parse(&f15),
                application: AckCondition::parse(&f16),
            }
        }
    }

    /// Whether the receiver should send the (accept or original-mode) acknowledgement now.
    pub fn wants_accept_ack(&self, outcome: Outcome) -> bool {
        match self {
            AckMode::Original => true,
            AckMode::Enhanced { accept, .. } => accept.wants(outcome),
        }
    }
}

/// HL7 table 0357: message error condition codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// 0: message accepted.
    pub const ACCEPTED: ErrorCode = ErrorCode(0);
    /// 100: segment sequence error.
    pub const SEGMENT_SEQUENCE: ErrorCode = ErrorCode(100);
    /// 101: required field missing.
    pub const REQUIRED_FIELD_MISSING: ErrorCode = ErrorCode(101);
    /// 102: data type error.
    pub const DATA_TYPE: ErrorCode = ErrorCode(102);
    /// 103: table value not found.
    pub const TABLE_VALUE_NOT_FOUND: ErrorCode = ErrorCode(103);
    /// 104: value too long.
    pub const VALUE_TOO_LONG: ErrorCode = ErrorCode(104);
    /// 200: unsupported message type.
    pub const UNSUPPORTED_MESSAGE_TYPE: ErrorCode = ErrorCode(200);
    /// 201: unsupported event code.
    pub const UNSUPPORTED_EVENT: ErrorCode = ErrorCode(201);
    /// 202: unsupported processing id.
    pub const UNSUPPORTED_PROCESSING_ID: ErrorCode = ErrorCode(202);
    /// 203: unsupported version id.
    pub const UNSUPPORTED_VERSION: ErrorCode = ErrorCode(203);
    /// 204: unknown key identifier.
    pub const UNKNOWN_KEY: ErrorCode = ErrorCode(204);
    /// 205: duplicate key identifier.
    pub const DUPLICATE_KEY: ErrorCode = ErrorCode(205);
    /// 206: application record locked.
    pub const RECORD_LOCKED: ErrorCode = ErrorCode(206);
    /// 207: application internal error.
    pub const INTERNAL_ERROR: ErrorCode = ErrorCode(207);

    /// The table's text for the code.
    pub fn description(&self) -> &'static str {
        match self.0 {
            0 => "Message accepted",
            100 => "Segment sequence error",
            101 => "Required field missing",
            102 => "Data type error",
            103 => "Table value not found",
            104 => "Value too long",
            200 => "Unsupported message type",
            201 => "Unsupported event code",
            202 => "Unsupported processing id",
            203 => "Unsupported version id",
            204 => "Unknown key identifier",
            205 => "Duplicate key identifier",
            206 => "Application record locked",
            _ => "Application internal error",
        }
    }
}

/// ERR-4: how severe a reported problem is (HL7 table 0516).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// `E`: error, the message was not processed (or not fully).
    Error,
    /// `W`: warning, processed anyway.
    Warning,
    /// `I`: information.
    Information,
}

impl Severity {
    fn code(&self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Information => "I",
        }
    }
}

/// ERR-2 (ERL): where a problem is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorLocation {
    /// Segment id.
    pub segment: String,
    /// 1-based occurrence of the segment.
    pub sequence: usize,
    /// 1-based field number.
    pub field: Option<usize>,
    /// 1-based field repetition.
    pub repetition: Option<usize>,
    /// 1-based component.
    pub component: Option<usize>,
    /// 1-based subcomponent.
    pub subcomponent: Option<usize>,
}

/// One problem to report in an ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    /// Table 0357 code.
    pub code: ErrorCode,
    /// Severity.
    pub severity: Severity,
    /// Where, when known.
    pub location: Option<ErrorLocation>,
    /// Human-readable text for the sender's operators (must not carry patient data).
    pub text: String,
}

impl AckError {
    /// An error with code and text, no location.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> AckError {
        AckError {
            code,
            severity: Severity::Error,
            location: None,
            text: text.into(),
        }
    }

    /// The ERR for a parse or decoding error, with its location and the matching table 0357 code.
    pub fn from_error(e: &Error) -> AckError {
        let code = match e {
            Error::Empty
            | Error::MissingHeader { .. }
            | Error::BadSegmentId { .. }
            | Error::Batch { .. } => ErrorCode::SEGMENT_SEQUENCE,
            Error::BadDelimiters { .. }
            | Error::UnsupportedCharset { .. }
            | Error::InvalidText { .. } => ErrorCode::DATA_TYPE,
            _ => ErrorCode::INTERNAL_ERROR,
        };
        let location = match e {
            Error::UnsupportedCharset { .. } => Some(ErrorLocation {
                segment: "MSH".into(),
                sequence: 1,
                field: Some(18),
                ..ErrorLocation::default()
            }),
            _ => e.location().and_then(|l| {
                Some(ErrorLocation {
                    segment: l.segment.clone()?,
                    sequence: l.sequence.unwrap_or(1),
                    field: l.field,
                    ..ErrorLocation::default()
                })
            }),
        };
        AckError {
            code,
            severity: Severity::Error,
            location,
            text: e.to_string(),
        }
    }
}

/// What the acknowledgement should say, beyond what comes from the original message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckSpec {
    /// MSA-1.
    pub code: AckCode,
    /// MSH-10 of the acknowledgement itself.
    pub control_id: String,
    /// MSH-7 of the acknowledgement (`YYYYMMDDHHMMSS[.S][+/-ZZZZ]`).
    pub timestamp: String,
    /// MSA-3 text (written for versions before 2.7, where MSA-3 still exists).
    pub text: Option<String>,
    /// One ERR segment per problem.
    pub errors: Vec<AckError>,
}

/// A version as numbers, `2.5.1` → (2, 5, 1); unknown versions read as 2.5.
fn version_tuple(v: &str) -> (u32, u32, u32) {
    let mut it = v.trim().split('.').map(|p| p.trim().parse::<u32>().ok());
    match (
        it.next().flatten(),
        it.next().flatten(),
        it.next().flatten(),
    ) {
        (Some(a), Some(b), c) => (a, b, c.unwrap_or(0)),
        _ => (2, 5, 0),
    }
}

/// Builds the acknowledgement of `original`.
///
/// Fails with [`Error::AckOfAck`] when `original` is itself an acknowledgement.
pub fn build_ack(original: &Message<'_>, spec: &AckSpec) -> Result<OwnedMessage, Error> {
    let code = original.message_code().unwrap_or_default();
    if code.eq_ignore_ascii_case("ACK") {
        return Err(Error::AckOfAck {
            control_id: original.control_id().unwrap_or_default().into_owned(),
        });
    }
    let enhanced = matches!(AckMode::of(original), AckMode::Enhanced { .. });
    assemble(original.delimiters(), &ack_fields(original), spec, enhanced)
}

/// What an acknowledgement takes from the original's MSH.
fn ack_fields(original: &Message<'_>) -> HeaderFields {
    let raw = |f: usize| {
        original
            .get_raw(&Path::new(*b"MSH", f))
            .unwrap_or(b"")
            .to_vec()
    };
    HeaderFields {
        sending_app: raw(5),
        sending_facility: raw(6),
        receiving_app: raw(3),
        receiving_facility: raw(4),
        trigger: original.trigger_event().map(|t| t.into_owned()),
        control_id_acked: raw(10),
        processing_id: raw(11),
        version: raw(12),
        charset: raw(18),
    }
}

/// Builds a NAK for bytes that could not be parsed as a message, using whatever MSH fields
/// can be read (sender, receiver, control id, processing id, version).
pub fn build_nak_for_unparseable(raw: &[u8], spec: &AckSpec) -> OwnedMessage {
    let mut fields = HeaderFields::default();
    let mut d = Delimiters::default();
    let start = skip_preamble(raw);
    let rest = &raw[start..];
    if rest.starts_with(b"MSH") && rest.len() > 4 {
        let line_end = rest
            .iter()
            .position(|&b| b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let line = &rest[..line_end];
        let (fs, usable) = match Delimiters::from_header(line, 0) {
            Ok((found, _)) => {
                d = found;
                (found.field, true)
            }
            Err(_) => (rest[3], false),
        };
        let pieces: Vec<&[u8]> = line.split(|&b| b == fs).collect();
        // Without usable delimiters, keep only bytes that are plain text under the defaults.
        let take = |f: usize| -> Vec<u8> {
            let v = pieces.get(f - 1).copied().unwrap_or(b"");
            if usable {
                v.to_vec()
            } else {
                v.iter()
                    .copied()
                    .filter(|&b| b.is_ascii_graphic() && !d.is_special(b) || b == b' ')
                    .collect()
            }
        };
        fields = HeaderFields {
            sending_app: take(5),
            sending_facility: take(6),
            receiving_app: take(3),
            receiving_facility: take(4),
            trigger: None,
            control_id_acked: take(10),
            processing_id: take(11),
            version: take(12),
            charset: take(18),
        };
        if let Some(t) = pieces.get(8) {
            let comps: Vec<&[u8]> = t.split(|&b| b == d.component).collect();
            if usable {
                fields.trigger = comps
                    .get(1)
                    .filter(|c| c.iter().all(u8::is_ascii_alphanumeric))
                    .map(|c| String::from_utf8_lossy(c).into_owned());
            }
        }
    }
    match assemble(d, &fields, spec, false) {
        Ok(m) => m,
        // The header fields were taken with their own delimiters, so this cannot fail; should
        // it anyway, answer with an ACK that carries nothing of the original.
        Err(_) => assemble(Delimiters::default(), &HeaderFields::default(), spec, false)
            .unwrap_or_else(|_| OwnedMessage::new(Delimiters::default())),
    }
}

#[derive(Debug, Default, Clone)]
struct HeaderFields {
    sending_app: Vec<u8>,
    sending_facility: Vec<u8>,
    receiving_app: Vec<u8>,
    receiving_facility: Vec<u8>,
    trigger: Option<String>,
    control_id_acked: Vec<u8>,
    processing_id: Vec<u8>,
    version: Vec<u8>,
    charset: Vec<u8>,
}

fn assemble(
    d: Delimiters,
    h: &HeaderFields,
    spec: &AckSpec,
    enhanced: bool,
) -> Result<OwnedMessage, Error> {
    if let Some(ack) = assemble_plain(d, h, spec, enhanced) {
        return Ok(ack);
    }
    assemble_general(d, h, spec, enhanced)
}

/// The common acknowledgement — no ERR, no MSA-3, ASCII values — written straight into its two
/// segments. Byte for byte what [`assemble_general`] builds (the tests compare them over every
/// sample message); path by path, that took three times as long as parsing the message (a
/// seventh of the listener's time at 256 connections). `None` when the general path is needed.
fn assemble_plain(
    d: Delimiters,
    h: &HeaderFields,
    spec: &AckSpec,
    enhanced: bool,
) -> Option<OwnedMessage> {
    if !spec.errors.is_empty() || spec.text.is_some() || h.control_id_acked.is_empty() {
        return None;
    }
    let raws = [
        &h.sending_app,
        &h.sending_facility,
        &h.receiving_app,
        &h.receiving_facility,
        &h.control_id_acked,
        &h.processing_id,
        &h.version,
        &h.charset,
    ];
    if raws
        .iter()
        .any(|r| r.iter().any(|&b| b == b'\r' || b == b'\n'))
    {
        return None;
    }
    let trigger = h.trigger.as_deref().filter(|t| !t.is_empty());
    let texts = [
        spec.timestamp.as_str(),
        spec.control_id.as_str(),
        spec.code.as_str(),
        trigger.unwrap_or(""),
    ];
    // ASCII text is the same bytes in every character set MSH-18 can name.
    if !texts.iter().all(|t| t.is_ascii()) {
        return None;
    }
    let text = |t: &str| escape::encode(t.as_bytes(), &d).ok().map(Cow::into_owned);
    let version_text = String::from_utf8_lossy(&h.version);
    let version = version_tuple(version_text.split(d.component as char).next().unwrap_or(""));
    let f = d.field;
    let mut msh = Vec::with_capacity(128 + raws.iter().map(|r| r.len()).sum::<usize>());
    msh.extend_from_slice(b"MSH");
    msh.push(f);
    msh.extend_from_slice(&d.encoding_characters());
    for r in [
        &h.sending_app,
        &h.sending_facility,
        &h.receiving_app,
        &h.receiving_facility,
    ] {
        msh.push(f);
        msh.extend_from_slice(r);
    }
    msh.push(f);
    msh.extend_from_slice(&text(&spec.timestamp)?);
    msh.push(f); // MSH-8
    msh.push(f);
    msh.extend_from_slice(b"ACK");
    if let Some(t) = trigger {
        msh.push(d.component);
        msh.extend_from_slice(&text(t)?);
        if version >= (2, 3, 1) {
            msh.push(d.component);
            msh.extend_from_slice(b"ACK");
        }
    }
    msh.push(f);
    msh.extend_from_slice(&text(&spec.control_id)?);
    msh.push(f);
    if h.processing_id.is_empty() {
        msh.push(b'P');
    } else {
        msh.extend_from_slice(&h.processing_id);
    }
    msh.push(f);
    if h.version.is_empty() {
        msh.extend_from_slice(b"2.5.1");
    } else {
        msh.extend_from_slice(&h.version);
    }
    // MSH-13 to MSH-18, up to the last one written.
    let last = if !h.charset.is_empty() {
        18
    } else if enhanced {
        16
    } else {
        12
    };
    for field in 13..=last {
        msh.push(f);
        match field {
            15 | 16 if enhanced => msh.extend_from_slice(b"NE"),
            18 => msh.extend_from_slice(&h.charset),
            _ => {}
        }
    }
    let mut msa = Vec::with_capacity(8 + h.control_id_acked.len());
    msa.extend_from_slice(b"MSA");
    msa.push(f);
    msa.extend_from_slice(&text(spec.code.as_str())?);
    msa.push(f);
    msa.extend_from_slice(&h.control_id_acked);
    Some(OwnedMessage::from_parts(d, vec![msh, msa]))
}

/// Any acknowledgement, element by element through [`OwnedMessage`]'s paths.
fn assemble_general(
    d: Delimiters,
    h: &HeaderFields,
    spec: &AckSpec,
    enhanced: bool,
) -> Result<OwnedMessage, Error> {
    let mut ack = OwnedMessage::new(d);
    let msh = |f: usize| Path::new(*b"MSH", f);
    let version_text = String::from_utf8_lossy(&h.version).into_owned();
    let version_first = version_text
        .split(d.component as char)
        .next()
        .unwrap_or("")
        .to_string();
    let version = version_tuple(&version_first);
    ack.set_raw(&msh(3), &h.sending_app)?;
    ack.set_raw(&msh(4), &h.sending_facility)?;
    ack.set_raw(&msh(5), &h.receiving_app)?;
    ack.set_raw(&msh(6), &h.receiving_facility)?;
    ack.set(&msh(7), &spec.timestamp)?;
    ack.set(&msh(9).with_component(1), "ACK")?;
    if let Some(t) = h.trigger.as_deref().filter(|t| !t.is_empty()) {
        ack.set(&msh(9).with_component(2), t)?;
        if version >= (2, 3, 1) {
            ack.set(&msh(9).with_component(3), "ACK")?;
        }
    }
    ack.set(&msh(10), &spec.control_id)?;
    if h.processing_id.is_empty() {
        ack.set(&msh(11), "P")?;
    } else {
        ack.set_raw(&msh(11), &h.processing_id)?;
    }
    if h.version.is_empty() {
        ack.set(&msh(12), "2.5.1")?;
    } else {
        ack.set_raw(&msh(12), &h.version)?;
    }
    if enhanced {
        // The accept acknowledgement itself must not be acknowledged.
        ack.set(&msh(15), "NE")?;
        ack.set(&msh(16), "NE")?;
    }
    if !h.charset.is_empty() {
        ack.set_raw(&msh(18), &h.charset)?;
    }
    let msa = |f: usize| Path::new(*b"MSA", f);
    ack.set(&msa(1), spec.code.as_str())?;
    ack.set_raw(&msa(2), &h.control_id_acked)?;
    if version < (2, 7, 0) {
        let text = spec
            .text
            .clone()
            .or_else(|| spec.errors.first().map(|e| e.text.clone()));
        if let Some(text) = text {
            ack.set(&msa(3), &text)?;
        }
    }
    for (i, e) in spec.errors.iter().enumerate() {
        if version >= (2, 5, 0) {
            write_err_v25(&mut ack, i, e)?;
        } else {
            write_err_v2x(&mut ack, i, e)?;
        }
    }
    Ok(ack)
}

/// ERR for v2.5 and later: ERR-2 location (ERL), ERR-3 code (CWE), ERR-4 severity, ERR-8 text.
fn write_err_v25(ack: &mut OwnedMessage, n: usize, e: &AckError) -> Result<(), Error> {
    let err = |f: usize| Path::new(*b"ERR", f).with_occurrence(n);
    if let Some(l) = &e.location {
        ack.set(&err(2).with_component(1), &l.segment)?;
        ack.set(&err(2).with_component(2), &l.sequence.to_string())?;
        for (c, v) in [
            (3, l.field),
            (4, l.repetition),
            (5, l.component),
            (6, l.subcomponent),
        ] {
            if let Some(v) = v {
                ack.set(&err(2).with_component(c), &v.to_string())?;
            }
        }
    } else {
        // ERR-2 is optional but ERR must exist: writing ERR-3 creates it.
    }
    ack.set(&err(3).with_component(1), &e.code.0.to_string())?;
    ack.set(&err(3).with_component(2), e.code.description())?;
    ack.set(&err(3).with_component(3), "HL70357")?;
    ack.set(&err(4), e.severity.code())?;
    if !e.text.is_empty() {
        ack.set(&err(8), &e.text)?;
    }
    Ok(())
}

/// ERR for versions before 2.5: ERR-1 (ELD) = segment^sequence^field^code&text&HL70357.
fn write_err_v2x(ack: &mut OwnedMessage, n: usize, e: &AckError) -> Result<(), Error> {
    let eld = |c: usize| {
        Path::new(*b"ERR", 1)
            .with_occurrence(n)
            .with_repetition(0)
            .with_component(c)
    };
    if let Some(l) = &e.location {
        ack.set(&eld(1), &l.segment)?;
        ack.set(&eld(2), &l.sequence.to_string())?;
        if let Some(f) = l.field {
            ack.set(&eld(3), &f.to_string())?;
        }
    }
    ack.set(&eld(4).with_subcomponent(1), &e.code.0.to_string())?;
    ack.set(&eld(4).with_subcomponent(2), e.code.description())?;
    ack.set(&eld(4).with_subcomponent(3), "HL70357")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.hl7` file under `dir`, recursively.
    fn hl7_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                hl7_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "hl7") {
                out.push(p);
            }
        }
    }

    #[test]
    fn the_plain_ack_is_byte_for_byte_the_general_one() {
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata");
        let mut files = Vec::new();
        hl7_files(&root, &mut files);
        hl7_files(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("routes/fixtures"),
            &mut files,
        );
        let (mut compared, mut plain) = (0, 0);
        for f in &files {
            let raw = std::fs::read(f).unwrap();
            let Ok(m) = Message::parse(&raw) else {
                continue;
            };
            let fields = ack_fields(&m);
            let variants: [(&str, &str, Option<&str>); 4] = [
                ("20240101120000+0100", "ACK123", None),
                ("20240101120000", "A^B&C|D", Some("A^1")),
                ("2024", "x", Some("")),
                ("20240101120000é", "ACK1", None),
            ];
            for code in [
                AckCode::AA,
                AckCode::AE,
                AckCode::AR,
                AckCode::CA,
                AckCode::CE,
                AckCode::CR,
            ] {
                for (ts, id, trigger) in variants {
                    let mut h = fields.clone();
                    if let Some(t) = trigger {
                        h.trigger = Some(t.to_string());
                    }
                    let spec = AckSpec {
                        code,
                        control_id: id.into(),
                        timestamp: ts.into(),
                        text: None,
                        errors: vec![],
                    };
                    for enhanced in [false, true] {
                        let general = assemble_general(m.delimiters(), &h, &spec, enhanced);
                        compared += 1;
                        if let Some(fast) = assemble_plain(m.delimiters(), &h, &spec, enhanced) {
                            plain += 1;
                            let general = general.expect("the general path builds it too");
                            assert_eq!(
                                String::from_utf8_lossy(&fast.encode()),
                                String::from_utf8_lossy(&general.encode()),
                                "{} ({code:?}, {ts}, {id}, {trigger:?}, enhanced {enhanced})",
                                f.display()
                            );
                        }
                    }
                }
            }
        }
        if std::env::var_os("CI").is_some() {
            assert!(compared > 1000, "only {compared} acknowledgements compared");
        }
        // The non-ASCII timestamp variant (a quarter) goes the general way; most others not.
        assert!(
            plain * 2 > compared,
            "{plain} of {compared} took the plain path"
        );
    }

    fn spec(code: AckCode) -> AckSpec {
        AckSpec {
            code,
            control_id: "ACK1".into(),
            timestamp: "20240102030405".into(),
            text: None,
            errors: vec![],
        }
    }

    fn text(m: &OwnedMessage) -> String {
        String::from_utf8(m.encode()).unwrap().replace('\r', "\n")
    }

    #[test]
    fn original_mode_accept() {
        let msg = Message::parse(
            b"MSH|^~\\&|LAB^1.2.3^ISO|HOSP|EMR|WARD|20240101||ORU^R01^ORU_R01|C123|P|2.5.1\rPID|1\r",
        )
        .unwrap();
        assert_eq!(AckMode::of(&msg), AckMode::Original);
        let ack = build_ack(&msg, &spec(AckCode::AA)).unwrap();
        assert_eq!(
            text(&ack),
            "MSH|^~\\&|EMR|WARD|LAB^1.2.3^ISO|HOSP|20240102030405||ACK^R01^ACK|ACK1|P|2.5.1\nMSA|AA|C123\n"
        );
    }

    #[test]
    fn errors_by_version() {
        let mut s = spec(AckCode::AE);
        s.errors.push(AckError {
            code: ErrorCode::REQUIRED_FIELD_MISSING,
            severity: Severity::Error,
            location: Some(ErrorLocation {
                segment: "PID".into(),
                sequence: 1,
                field: Some(3),
                ..Default::default()
            }),
            text: "PID-3 is required".into(),
        });
        let v25 = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|2.5\r").unwrap();
        let ack = build_ack(&v25, &s).unwrap();
        assert_eq!(
            text(&ack),
            "MSH|^~\\&|C|D|A|B|20240102030405||ACK^A01^ACK|ACK1|P|2.5\nMSA|AE|X1|PID-3 is required\n\
ERR||PID^1^3|101^Required field missing^HL70357|E||||PID-3 is required\n"
        );
        let v23 = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|2.3\r").unwrap();
        let ack = build_ack(&v23, &s).unwrap();
        assert_eq!(
            text(&ack),
            "MSH|^~\\&|C|D|A|B|20240102030405||ACK^A01|ACK1|P|2.3\nMSA|AE|X1|PID-3 is required\n\
ERR|PID^1^3^101&Required field missing&HL70357\n"
        );
        let v27 = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|2.7\r").unwrap();
        let ack = build_ack(&v27, &s).unwrap();
        assert!(text(&ack).contains("\nMSA|AE|X1\nERR||PID^1^3|101^"));
    }

    #[test]
    fn enhanced_mode() {
        let msg = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|2.5|||AL|ER\r").unwrap();
        let mode = AckMode::of(&msg);
        assert_eq!(
            mode,
            AckMode::Enhanced {
                accept: AckCondition::Always,
                application: AckCondition::OnError
            }
        );
        assert_eq!(AckCode::for_outcome(&mode, Outcome::Accept), AckCode::CA);
        let ack = build_ack(&msg, &spec(AckCode::CA)).unwrap();
        assert!(text(&ack).starts_with(
            "MSH|^~\\&|C|D|A|B|20240102030405||ACK^A01^ACK|ACK1|P|2.5|||NE|NE\nMSA|CA|X1"
        ));
        let ne = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|2.5|||NE|AL\r").unwrap();
        assert!(!AckMode::of(&ne).wants_accept_ack(Outcome::Accept));
        let er = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X1|P|2.5|||ER|AL\r").unwrap();
        assert!(!AckMode::of(&er).wants_accept_ack(Outcome::Accept));
        assert!(AckMode::of(&er).wants_accept_ack(Outcome::Reject));
    }

    #[test]
    fn never_ack_an_ack() {
        let ack = Message::parse(b"MSH|^~\\&|A|B|C|D|||ACK^A01|X1|P|2.5\rMSA|AA|Z\r").unwrap();
        assert!(matches!(
            build_ack(&ack, &spec(AckCode::AA)),
            Err(Error::AckOfAck { .. })
        ));
    }

    #[test]
    fn custom_delimiters_and_charset_are_kept() {
        let msg = Message::parse(b"MSH$%~\\&$A%1$B$C$D$$$ADT%A01$X1$P$2.4$$$$$$8859/1\r").unwrap();
        let ack = build_ack(&msg, &spec(AckCode::AA)).unwrap();
        assert_eq!(
            text(&ack),
            "MSH$%~\\&$C$D$A%1$B$20240102030405$$ACK%A01%ACK$ACK1$P$2.4$$$$$$8859/1\nMSA$AA$X1\n"
        );
    }

    #[test]
    fn nak_for_unparseable_input() {
        let mut s = spec(AckCode::AR);
        let e = Message::parse(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X9|P|2.5\rP@D|1\r").unwrap_err();
        s.errors.push(AckError::from_error(&e));
        let nak = build_nak_for_unparseable(b"MSH|^~\\&|A|B|C|D|||ADT^A01|X9|P|2.5\rP@D|1\r", &s);
        let t = text(&nak);
        assert!(
            t.starts_with("MSH|^~\\&|C|D|A|B|20240102030405||ACK^A01^ACK|ACK1|P|2.5\nMSA|AR|X9|"),
            "{t}"
        );
        assert!(
            t.contains("ERR||^2|100^Segment sequence error^HL70357|E")
                || t.contains("|100^Segment sequence error^HL70357|E"),
            "{t}"
        );
        // Bad delimiters: fields are still read with the field separator MSH-1 gives.
        let nak = build_nak_for_unparseable(
            b"MSH|^^\\&|A|B|C|D|||ADT^A01|X9|P|2.4\r",
            &spec(AckCode::AR),
        );
        assert!(
            text(&nak).starts_with("MSH|^~\\&|C|D|A|B|20240102030405||ACK|ACK1|P|2.4\nMSA|AR|X9")
        );
        // Nothing usable at all.
        let nak = build_nak_for_unparseable(b"\x00\xff garbage", &spec(AckCode::AR));
        assert!(text(&nak).starts_with("MSH|^~\\&|||||20240102030405||ACK|ACK1|P|2.5.1\nMSA|AR\n"));
    }
}
