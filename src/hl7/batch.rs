//! Files and batches of messages (HL7 v2 chapter 2, "Batch protocol").
//!
//! ```text
//! [FHS]                  file header (optional)
//!   { [BHS]              batch header (optional when there is only one batch)
//!       { MSH ... }      messages
//!     [BTS] }            batch trailer: BTS-1 = number of messages in the batch
//! [FTS]                  file trailer: FTS-1 = number of batches in the file
//! ```
//!
//! [`split`] accepts that layout and also a plain file of messages one after another (each
//! starting with `MSH` at the beginning of a line). Count mismatches and missing trailers do not
//! stop the split: they are listed in [`Batch::problems`] so the caller decides, and no message
//! is dropped for them.

use super::delimiters::Delimiters;
use super::error::{Error, Location};
use super::escape;
use super::parse::skip_preamble;

/// The result of splitting a file: its headers, its batches and any structural problems.
#[derive(Debug, Clone, Default)]
pub struct Batch<'a> {
    /// The FHS segment, when the file has one.
    pub file_header: Option<&'a [u8]>,
    /// The FTS segment, when the file has one.
    pub file_trailer: Option<&'a [u8]>,
    /// The batches in order; a file without BHS has one batch with no header.
    pub batches: Vec<BatchGroup<'a>>,
    /// Count mismatches, missing trailers, segments outside any message.
    pub problems: Vec<Error>,
}

/// One batch: its header and trailer segments and the messages between them.
#[derive(Debug, Clone, Default)]
pub struct BatchGroup<'a> {
    /// The BHS segment, if present.
    pub header: Option<&'a [u8]>,
    /// The BTS segment, if present.
    pub trailer: Option<&'a [u8]>,
    /// Each message's bytes, from its MSH to the end of its last segment's terminator.
    pub messages: Vec<&'a [u8]>,
}

/// One message of a file with the batch context it came in.
#[derive(Debug, Clone, Copy)]
pub struct BatchedMessage<'a> {
    /// The message bytes.
    pub raw: &'a [u8],
    /// 0-based index of its batch.
    pub batch: usize,
    /// The BHS of its batch, if any.
    pub batch_header: Option<&'a [u8]>,
    /// The FHS of the file, if any.
    pub file_header: Option<&'a [u8]>,
}

impl<'a> Batch<'a> {
    /// Every message in order with its batch context.
    pub fn messages(&self) -> impl Iterator<Item = BatchedMessage<'a>> + '_ {
        self.batches.iter().enumerate().flat_map(move |(i, g)| {
            g.messages.iter().map(move |raw| BatchedMessage {
                raw,
                batch: i,
                batch_header: g.header,
                file_header: self.file_header,
            })
        })
    }

    /// Total number of messages.
    pub fn message_count(&self) -> usize {
        self.batches.iter().map(|g| g.messages.len()).sum()
    }
}

/// Splits a file into messages; see the module documentation.
pub fn split(raw: &[u8]) -> Result<Batch<'_>, Error> {
    let mut batch = Batch::default();
    let mut current: Option<(usize, usize)> = None; // start, end of the open message
    let mut pos = skip_preamble(raw);
    let mut saw_any = false;
    let mut open_group = false;

    while pos < raw.len() {
        let line_end = memchr::memchr2(b'\r', b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i);
        let mut next = line_end;
        if next < raw.len() && raw[next] == b'\r' && raw.get(next + 1) == Some(&b'\n') {
            next += 2;
        } else if next < raw.len() {
            next += 1;
        }
        let line = &raw[pos..line_end];
        let id = &line[..line.len().min(3)];
        if line.iter().all(|b| b.is_ascii_whitespace() || *b == 0x1A) {
            pos = next;
            continue;
        }
        let at = Location {
            offset: pos,
            segment: Some(String::from_utf8_lossy(id).into_owned()),
            sequence: None,
            field: None,
        };
        match id {
            b"FHS" => {
                finish_message(&mut batch, raw, &mut current);
                if saw_any {
                    batch.problems.push(Error::Batch {
                        reason: "FHS is not the first segment of the file".into(),
                        at,
                    });
                }
                Delimiters::from_header(line, pos)?;
                batch.file_header = Some(line);
            }
            b"BHS" => {
                finish_message(&mut batch, raw, &mut current);
                if open_group {
                    batch.problems.push(Error::Batch {
                        reason: "BHS before the previous batch's BTS".into(),
                        at: at.clone(),
                    });
                }
                Delimiters::from_header(line, pos)?;
                batch.batches.push(BatchGroup {
                    header: Some(line),
                    ..BatchGroup::default()
                });
                open_group = true;
            }
            b"BTS" => {
                finish_message(&mut batch, raw, &mut current);
                if batch.batches.is_empty() {
                    batch.batches.push(BatchGroup::default());
                }
                let g = batch.batches.len() - 1;
                if batch.batches[g].trailer.is_some() {
                    batch.problems.push(Error::Batch {
                        reason: "BTS without a BHS".into(),
                        at: at.clone(),
                    });
                }
                batch.batches[g].trailer = Some(line);
                let have = batch.batches[g].messages.len();
                check_count(
                    line,
                    have,
                    "BTS-1",
                    "messages in the batch",
                    at,
                    &mut batch.problems,
                );
                open_group = false;
            }
            b"FTS" => {
                finish_message(&mut batch, raw, &mut current);
                batch.file_trailer = Some(line);
                let have = batch.batches.len();
                check_count(
                    line,
                    have,
                    "FTS-1",
                    "batches in the file",
                    at,
                    &mut batch.problems,
                );
            }
            b"MSH" => {
                finish_message(&mut batch, raw, &mut current);
                if open_group || batch.batches.last().is_none_or(|g| g.trailer.is_none()) {
                    // The message belongs to the open batch (or the implicit one).
                } else {
                    batch.batches.push(BatchGroup::default());
                }
                current = Some((pos, next));
            }
            _ => match current.as_mut() {
                Some((_, end)) => *end = next,
                None => {
                    if !saw_any {
                        return Err(Error::MissingHeader {
                            found: String::from_utf8_lossy(&line[..line.len().min(8)]).into_owned(),
                        });
                    }
                    batch.problems.push(Error::Batch {
                        reason: "segment outside any message".into(),
                        at,
                    });
                }
            },
        }
        saw_any = true;
        pos = next;
    }
    finish_message(&mut batch, raw, &mut current);
    if !saw_any {
        return Err(Error::Empty);
    }
    if open_group {
        batch.problems.push(Error::Batch {
            reason: "batch has no BTS trailer".into(),
            at: Location::at(raw.len()),
        });
    }
    if batch.file_header.is_some() && batch.file_trailer.is_none() {
        batch.problems.push(Error::Batch {
            reason: "file has an FHS header but no FTS trailer".into(),
            at: Location::at(raw.len()),
        });
    }
    Ok(batch)
}

fn finish_message<'a>(batch: &mut Batch<'a>, raw: &'a [u8], current: &mut Option<(usize, usize)>) {
    if let Some((s, e)) = current.take() {
        if batch.batches.is_empty() {
            batch.batches.push(BatchGroup::default());
        }
        if let Some(g) = batch.batches.last_mut() {
            g.messages.push(&raw[s..e]);
        }
    }
}

/// Compares a trailer's count field (field 1) with what was seen; an absent count is fine.
fn check_count(
    line: &[u8],
    have: usize,
    field: &str,
    what: &str,
    at: Location,
    problems: &mut Vec<Error>,
) {
    if line.len() <= 4 {
        return;
    }
    let fs = line[3];
    let value = line[4..].split(|&b| b == fs).next().unwrap_or(b"");
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    match text.parse::<usize>() {
        Ok(n) if n == have => {}
        Ok(n) => problems.push(Error::Batch {
            reason: format!("{field} says {n} {what}, found {have}"),
            at,
        }),
        Err(_) => problems.push(Error::Batch {
            reason: format!("{field} is not a number: {text:?}"),
            at,
        }),
    }
}

/// Header values for a batch built by [`build`].
#[derive(Debug, Clone, Default)]
pub struct BatchHeader {
    /// Delimiters for FHS/BHS/BTS/FTS (messages keep their own).
    pub delimiters: Option<Delimiters>,
    /// FHS-3/BHS-3.
    pub sending_application: String,
    /// FHS-4/BHS-4.
    pub sending_facility: String,
    /// FHS-5/BHS-5.
    pub receiving_application: String,
    /// FHS-6/BHS-6.
    pub receiving_facility: String,
    /// FHS-7/BHS-7 timestamp.
    pub timestamp: String,
    /// FHS-9 file name / BHS-9 batch name.
    pub name: String,
    /// FHS-11/BHS-11 control id.
    pub control_id: String,
    /// BHS-12: the control id of the batch this one answers.
    pub reference_control_id: String,
    /// FHS-12: the control id of the file this one answers.
    pub file_reference_control_id: String,
    /// Whether to wrap the batch in FHS/FTS too.
    pub file: bool,
}

/// Writes an FHS or BHS segment from `header`, with `reference` as field 12.
fn header_segment(
    id: &[u8],
    header: &BatchHeader,
    reference: &String,
    d: &Delimiters,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    out.extend_from_slice(id);
    out.push(d.field);
    out.extend_from_slice(&d.encoding_characters());
    let fields = [
        &header.sending_application,
        &header.sending_facility,
        &header.receiving_application,
        &header.receiving_facility,
        &header.timestamp,
        &String::new(),
        &header.name,
        &String::new(),
        &header.control_id,
        reference,
    ];
    let last = fields
        .iter()
        .rposition(|f| !f.is_empty())
        .map_or(0, |i| i + 1);
    for f in &fields[..last] {
        out.push(d.field);
        out.extend_from_slice(&escape::encode(f.as_bytes(), d)?);
    }
    out.push(b'\r');
    Ok(())
}

/// Builds a batch (BHS, the messages, BTS with the message count), inside FHS/FTS when asked.
/// Each message is written with CR segment terminators.
pub fn build(messages: &[&[u8]], header: &BatchHeader) -> Result<Vec<u8>, Error> {
    let d = header.delimiters.unwrap_or_default();
    let mut out = Vec::with_capacity(messages.iter().map(|m| m.len() + 1).sum::<usize>() + 256);
    if header.file {
        header_segment(
            b"FHS",
            header,
            &header.file_reference_control_id,
            &d,
            &mut out,
        )?;
    }
    header_segment(b"BHS", header, &header.reference_control_id, &d, &mut out)?;
    for m in messages {
        let start = skip_preamble(m);
        for seg in m[start..].split(|&b| b == b'\r' || b == b'\n') {
            if !seg.is_empty() {
                out.extend_from_slice(seg);
                out.push(b'\r');
            }
        }
    }
    out.extend_from_slice(format!("BTS{}{}\r", d.field as char, messages.len()).as_bytes());
    if header.file {
        out.extend_from_slice(format!("FTS{}1\r", d.field as char).as_bytes());
    }
    Ok(out)
}

/// Builds a file of several batches: the FHS from `file`, each batch as [`build`] writes it
/// (without a file of its own), and FTS with the number of batches.
pub fn build_file(
    file: &BatchHeader,
    batches: &[(BatchHeader, Vec<&[u8]>)],
) -> Result<Vec<u8>, Error> {
    let d = file.delimiters.unwrap_or_default();
    let mut out = Vec::new();
    header_segment(b"FHS", file, &file.file_reference_control_id, &d, &mut out)?;
    for (header, messages) in batches {
        let header = BatchHeader {
            file: false,
            ..header.clone()
        };
        out.extend(build(messages, &header)?);
    }
    out.extend_from_slice(format!("FTS{}{}\r", d.field as char, batches.len()).as_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Message;

    const FILE: &[u8] = b"FHS|^~\\&|APP|FAC\r\
BHS|^~\\&|APP|FAC\r\
MSH|^~\\&|A|B|||||ADT^A04|1|P|2.5\rPID|1\r\
MSH|^~\\&|A|B|||||ADT^A04|2|P|2.5\rPID|2\r\
BTS|2\r\
FTS|1\r";

    #[test]
    fn splits_file_with_context() {
        let b = split(FILE).unwrap();
        assert!(b.problems.is_empty(), "{:?}", b.problems);
        assert_eq!(b.message_count(), 2);
        let msgs: Vec<_> = b.messages().collect();
        assert_eq!(msgs[1].raw, b"MSH|^~\\&|A|B|||||ADT^A04|2|P|2.5\rPID|2\r");
        assert_eq!(msgs[0].batch_header, Some(&b"BHS|^~\\&|APP|FAC"[..]));
        assert_eq!(msgs[0].file_header, Some(&b"FHS|^~\\&|APP|FAC"[..]));
        assert_eq!(
            Message::parse(msgs[0].raw).unwrap().control_id().unwrap(),
            "1"
        );
    }

    #[test]
    fn reports_count_mismatches() {
        let bad = String::from_utf8_lossy(FILE)
            .replace("BTS|2", "BTS|3")
            .replace("FTS|1", "FTS|2");
        let b = split(bad.as_bytes()).unwrap();
        assert_eq!(b.message_count(), 2);
        let texts: Vec<String> = b.problems.iter().map(|e| e.to_string()).collect();
        assert_eq!(texts.len(), 2, "{texts:?}");
        assert!(texts[0].contains("BTS-1 says 3 messages in the batch, found 2"));
        assert!(texts[1].contains("FTS-1 says 2 batches in the file, found 1"));
        let b = split(b"BHS|^~\\&\rMSH|^~\\&|A\rPID|1\r").unwrap();
        assert!(b.problems[0].to_string().contains("no BTS"));
    }

    #[test]
    fn plain_concatenated_messages() {
        let b = split(b"MSH|^~\\&|A|||||||1\nPID|1\n\nMSH|^~\\&|A|||||||2\nPID|2\n").unwrap();
        assert_eq!(b.message_count(), 2);
        assert!(b.problems.is_empty());
        assert!(matches!(split(b"\n\n"), Err(Error::Empty)));
        assert!(matches!(
            split(b"hello\nMSH|^~\\&|A"),
            Err(Error::MissingHeader { .. })
        ));
    }

    #[test]
    fn several_batches() {
        let raw = b"BHS|^~\\&\rMSH|^~\\&|A\rBTS|1\rBHS|^~\\&\rMSH|^~\\&|B\rMSH|^~\\&|C\rBTS|2\r";
        let b = split(raw).unwrap();
        assert!(b.problems.is_empty(), "{:?}", b.problems);
        assert_eq!(b.batches.len(), 2);
        assert_eq!(b.batches[1].messages.len(), 2);
    }

    #[test]
    fn build_round_trips() {
        let msgs: [&[u8]; 2] = [
            b"MSH|^~\\&|A|||||||1\nPID|1\n",
            b"MSH|^~\\&|A|||||||2\rPID|2",
        ];
        let header = BatchHeader {
            sending_application: "AORTA".into(),
            timestamp: "20240101".into(),
            file: true,
            ..BatchHeader::default()
        };
        let out = build(&msgs, &header).unwrap();
        assert_eq!(
            out,
            b"FHS|^~\\&|AORTA||||20240101\rBHS|^~\\&|AORTA||||20240101\rMSH|^~\\&|A|||||||1\rPID|1\rMSH|^~\\&|A|||||||2\rPID|2\rBTS|2\rFTS|1\r".to_vec()
        );
        let b = split(&out).unwrap();
        assert!(b.problems.is_empty());
        assert_eq!(b.message_count(), 2);
    }
}
