//! Plain data that flows between stages: the envelope of a received message.
//!
//! An [`Envelope`] is what a source knows about a message after reading just enough of it:
//! where and when it came in, the bytes exactly as received, and the header facts the journal
//! indexes (type, control id, sender, patient id). [`Clinical`] is the normalized content a
//! route reads; a [`Delivery`] is what a route hands to a destination's queue.

pub mod clinical;

pub use clinical::Clinical;

use crate::hl7::{Message, Path};

/// The input format of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// HL7 v2 in ER7 (pipe) encoding.
    Hl7v2,
    /// FHIR R4 JSON.
    FhirJson,
}

impl Format {
    /// The name stored in the journal.
    pub fn as_str(&self) -> &'static str {
        match self {
            Format::Hl7v2 => "hl7v2",
            Format::FhirJson => "fhir+json",
        }
    }
}

/// A received message and the facts about it that are cheap to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// UUIDv7: unique and ordered by time of receipt.
    pub id: uuid::Uuid,
    /// Receipt time, microseconds since the Unix epoch (UTC).
    pub received_at: i64,
    /// Name of the listener (source) it came in on.
    pub source: String,
    /// Input format.
    pub format: Format,
    /// The bytes exactly as received (MLLP framing removed).
    pub raw: Vec<u8>,
    /// Header facts read from MSH (all empty for bytes that are not a readable message).
    pub header: Header,
}

/// The MSH facts an operator searches by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// MSH-9-1, e.g. `ADT`.
    pub message_type: Option<String>,
    /// MSH-9-2, e.g. `A01`.
    pub trigger_event: Option<String>,
    /// MSH-10.
    pub control_id: Option<String>,
    /// MSH-3-1.
    pub sending_application: Option<String>,
    /// MSH-4-1.
    pub sending_facility: Option<String>,
    /// MSH-5-1.
    pub receiving_application: Option<String>,
    /// MSH-6-1.
    pub receiving_facility: Option<String>,
    /// MSH-12-1.
    pub version: Option<String>,
    /// MSH-18-1 (empty means the default, UTF-8).
    pub charset: Option<String>,
    /// PID-3-1 of the first PID, when the message has one.
    pub patient_id: Option<String>,
}

impl Header {
    /// Reads the header facts of a parsed message; empty values become `None`.
    pub fn of(msg: &Message<'_>) -> Header {
        let get = |p: &Path| msg.get(p).map(|v| v.into_owned()).filter(|v| !v.is_empty());
        let msh = |f| Path::new(*b"MSH", f);
        Header {
            message_type: get(&msh(9).with_component(1)),
            trigger_event: get(&msh(9).with_component(2)),
            control_id: get(&msh(10)),
            sending_application: get(&msh(3)),
            sending_facility: get(&msh(4)),
            receiving_application: get(&msh(5)),
            receiving_facility: get(&msh(6)),
            version: get(&msh(12)),
            charset: get(&msh(18)),
            patient_id: get(&Path::new(*b"PID", 3)),
        }
    }

    /// The duplicate-detection key: MSH-3 + MSH-4 + MSH-10 (`None` without a control id).
    pub fn dedupe_key(&self) -> Option<String> {
        let id = self.control_id.as_deref()?;
        Some(format!(
            "{}\u{1f}{}\u{1f}{}",
            self.sending_application.as_deref().unwrap_or(""),
            self.sending_facility.as_deref().unwrap_or(""),
            id
        ))
    }
}

/// The form a destination receives a message in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputFormat {
    /// The HL7 v2 message after the route's steps.
    Hl7v2,
    /// FHIR R4 JSON (filled in by the FHIR conversion).
    Fhir,
    /// The [`Clinical`] record as JSON.
    RecordJson,
}

impl OutputFormat {
    /// The name used in route files and the queue.
    pub fn as_str(&self) -> &'static str {
        match self {
            OutputFormat::Hl7v2 => "hl7v2",
            OutputFormat::Fhir => "fhir",
            OutputFormat::RecordJson => "record-json",
        }
    }

    /// The format with this name (`hl7v2`, `fhir`, `record-json`).
    pub fn from_name(name: &str) -> Option<OutputFormat> {
        match name {
            "hl7v2" => Some(OutputFormat::Hl7v2),
            "fhir" => Some(OutputFormat::Fhir),
            "record-json" => Some(OutputFormat::RecordJson),
            _ => None,
        }
    }

    /// The media type of a payload in this format.
    pub fn content_type(&self) -> &'static str {
        match self {
            OutputFormat::Hl7v2 => "x-application/hl7-v2+er7",
            OutputFormat::Fhir => "application/fhir+json",
            OutputFormat::RecordJson => "application/json",
        }
    }
}

/// One message on its way to one destination: what a route puts in a destination's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The journaled message it came from.
    pub message_id: uuid::Uuid,
    /// The route that produced it.
    pub route: String,
    /// The destination's name.
    pub destination: String,
    /// The payload's format.
    pub format: OutputFormat,
    /// The bytes to send.
    pub payload: Vec<u8>,
    /// The value of the destination's ordering key (e.g. PID-3-1), when it has one.
    pub order_key: Option<String>,
}

impl Delivery {
    /// The idempotency key receivers can use to drop a re-sent copy: record id + destination.
    pub fn idempotency_key(&self) -> String {
        format!("{}:{}", self.message_id, self.destination)
    }
}

/// The proleptic Gregorian date (year, month, day) of a day counted from 1970-01-01
/// (H. Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// The day, counted from 1970-01-01, of a proleptic Gregorian date (the inverse of
/// [`civil_from_days`]).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An HL7 timestamp (`YYYYMMDDHHMMSS+0000`, UTC) for microseconds since the Unix epoch.
pub fn hl7_timestamp(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return format!(
            "{year:04}{month:02}{day:02}{:02}{:02}{:02}+0000",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
    }
    // Every message's ACK carries one: plain digits instead of `format!`.
    let mut s = String::with_capacity(19);
    let mut digits = |v: i64, width: u32| {
        for p in (0..width).rev() {
            let d = (v / 10i64.pow(p)) % 10;
            s.push(char::from(b'0' + u8::try_from(d).unwrap_or(0)));
        }
    };
    digits(year, 4);
    digits(month, 2);
    digits(day, 2);
    digits(rem / 3600, 2);
    digits(rem % 3600 / 60, 2);
    digits(rem % 60, 2);
    s.push_str("+0000");
    s
}

/// A 20-character control id for a message Aorta sends (an ACK), unique per envelope id:
/// the UUIDv7's millisecond time and 32 of its random bits, in hex.
pub fn control_id_for(id: &uuid::Uuid) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let b = id.as_bytes();
    let mut s = String::with_capacity(20);
    for &x in b[..6].iter().chain(&b[12..16]) {
        s.push(char::from(HEX[usize::from(x >> 4)]));
        s.push(char::from(HEX[usize::from(x & 15)]));
    }
    s
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_and_control_ids() {
        assert_eq!(hl7_timestamp(0), "19700101000000+0000");
        assert_eq!(hl7_timestamp(1_709_251_199_000_000), "20240229235959+0000");
        // The digit writer against `format!` across the years and the day.
        for k in 0..2_000i64 {
            let micros = k * 7_777_777_777_777 + k * 3_599_999_999;
            let secs = micros.div_euclid(1_000_000);
            let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
            let (y, m, d) = civil_from_days(days);
            let want = format!(
                "{y:04}{m:02}{d:02}{:02}{:02}{:02}+0000",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60
            );
            assert_eq!(hl7_timestamp(micros), want, "{micros}");
        }
        let a = control_id_for(&uuid::Uuid::now_v7());
        assert_eq!(a.len(), 20);
        assert_ne!(a, control_id_for(&uuid::Uuid::now_v7()));
        let id = uuid::Uuid::from_bytes([
            0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0, 0, 0, 0, 0, 0, 0xCD, 0xEF, 0x0F, 0xF0,
        ]);
        assert_eq!(control_id_for(&id), "0123456789ABCDEF0FF0");
    }

    #[test]
    fn header_facts() {
        let m = Message::parse(b"MSH|^~\\&|LAB^1.2^ISO|HOSP|EMR|WARD|20240101||ORU^R01|C1|P|2.5.1\rPID|1||123^^^H^MR\r").unwrap();
        let h = Header::of(&m);
        assert_eq!(h.message_type.as_deref(), Some("ORU"));
        assert_eq!(h.sending_application.as_deref(), Some("LAB"));
        assert_eq!(h.patient_id.as_deref(), Some("123"));
        assert_eq!(h.charset, None);
        assert_eq!(h.dedupe_key().unwrap(), "LAB\u{1f}HOSP\u{1f}C1");
    }
}
