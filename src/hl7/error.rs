//! The one error type of the `hl7` module.
//!
//! Every variant says *where* the problem is (byte offset, segment, field) so that a NAK's ERR
//! segment and an operator's log line can point at it without re-reading the message.

use std::fmt;

/// Where in a message a problem was found.
///
/// Offsets are bytes from the start of the message as received; `segment` is the segment id
/// (`PID`), `sequence` its 1-based position among segments of that id, `field` its 1-based field
/// number when the problem lies in one field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// Byte offset from the start of the input.
    pub offset: usize,
    /// Segment id, when known.
    pub segment: Option<String>,
    /// 1-based occurrence of that segment id, when known.
    pub sequence: Option<usize>,
    /// 1-based field number, when the problem is inside one field.
    pub field: Option<usize>,
}

impl Location {
    /// A location known only by its byte offset.
    pub fn at(offset: usize) -> Self {
        Location {
            offset,
            ..Location::default()
        }
    }
}

/// Everything that can go wrong while reading, changing or writing an HL7 v2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The input holds no bytes (or only segment terminators and blanks).
    Empty,
    /// The message does not start with an `MSH` (or `FHS`/`BHS` for batches) header.
    MissingHeader {
        /// What the input starts with instead (at most a few bytes, lossily decoded).
        found: String,
    },
    /// MSH-1 or MSH-2 do not give usable delimiters.
    BadDelimiters {
        /// Why they cannot be used.
        reason: String,
        /// Where they are.
        at: Location,
    },
    /// A segment id is not three upper-case letters or digits.
    BadSegmentId {
        /// The id as found (lossily decoded, at most 16 bytes).
        found: String,
        /// Where the segment starts.
        at: Location,
    },
    /// MSH-18 names a character set Aorta cannot decode.
    UnsupportedCharset {
        /// The MSH-18 value as written.
        value: String,
    },
    /// Bytes that are not valid in the message's character set.
    InvalidText {
        /// The character set the bytes were read as.
        charset: &'static str,
        /// Where the first invalid byte is.
        at: Location,
    },
    /// A character that the message's character set cannot hold.
    Unrepresentable {
        /// The character.
        ch: char,
        /// The message's character set.
        charset: &'static str,
    },
    /// A path string that does not follow the path grammar.
    BadPath {
        /// The path as written.
        path: String,
        /// 0-based character position of the problem in the path.
        column: usize,
        /// What was expected there.
        reason: String,
    },
    /// A path that cannot be used for the requested operation (e.g. writing MSH-1).
    PathNotWritable {
        /// The path as written.
        path: String,
        /// Why.
        reason: String,
    },
    /// The path names a segment the message does not have.
    NoSuchSegment {
        /// The path as written.
        path: String,
    },
    /// An ACK was requested for a message that is itself an acknowledgement.
    AckOfAck {
        /// The control id of the acknowledgement.
        control_id: String,
    },
    /// Batch structure errors: a header without trailer, a trailer count that does not match.
    Batch {
        /// What is wrong.
        reason: String,
        /// Where.
        at: Location,
    },
}

impl Error {
    /// A short name of the kind of problem, free of message content (safe for logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Empty => "empty input",
            Error::MissingHeader { .. } => "missing MSH",
            Error::BadDelimiters { .. } => "bad delimiters",
            Error::BadSegmentId { .. } => "bad segment id",
            Error::UnsupportedCharset { .. } => "unsupported character set",
            Error::InvalidText { .. } => "invalid text",
            Error::Unrepresentable { .. } => "unrepresentable character",
            Error::BadPath { .. } => "bad path",
            Error::PathNotWritable { .. } => "path not writable",
            Error::NoSuchSegment { .. } => "no such segment",
            Error::AckOfAck { .. } => "acknowledgement of an acknowledgement",
            Error::Batch { .. } => "batch structure",
        }
    }

    /// The location of the problem in the message, when the error has one.
    pub fn location(&self) -> Option<&Location> {
        match self {
            Error::BadDelimiters { at, .. }
            | Error::BadSegmentId { at, .. }
            | Error::InvalidText { at, .. }
            | Error::Batch { at, .. } => Some(at),
            _ => None,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Empty => write!(f, "empty input: no HL7 segments found"),
            Error::MissingHeader { found } => {
                write!(f, "message does not start with MSH (found {found:?})")?;
                if found.starts_with("FHS") || found.starts_with("BHS") {
                    // The usual cause: a sender framing a whole batch file as one message.
                    write!(
                        f,
                        ": an FHS/BHS batch, not a message; send each of its messages in its own frame"
                    )?;
                }
                Ok(())
            }
            Error::BadDelimiters { reason, at } => {
                write!(f, "bad delimiters in MSH-1/MSH-2 at byte {}: {reason}", at.offset)
            }
            Error::BadSegmentId { found, at } => write!(
                f,
                "bad segment id {found:?} at byte {} (segment ids are three letters or digits)",
                at.offset
            ),
            Error::UnsupportedCharset { value } => {
                write!(f, "unsupported character set in MSH-18: {value:?}")
            }
            Error::InvalidText { charset, at } => {
                write!(f, "invalid {charset} text at byte {}", at.offset)?;
                if let (Some(seg), Some(field)) = (&at.segment, at.field) {
                    write!(f, " ({seg}-{field})")?;
                }
                Ok(())
            }
            Error::Unrepresentable { ch, charset } => {
                write!(f, "character {ch:?} cannot be written in {charset}")
            }
            Error::BadPath {
                path,
                column,
                reason,
            } => write!(f, "bad path {path:?} at column {}: {reason}", column + 1),
            Error::PathNotWritable { path, reason } => {
                write!(f, "cannot write path {path:?}: {reason}")
            }
            Error::NoSuchSegment { path } => write!(f, "no segment for path {path:?}"),
            Error::AckOfAck { control_id } => write!(
                f,
                "message {control_id:?} is an acknowledgement; acknowledgements are never acknowledged"
            ),
            Error::Batch { reason, at } => write!(f, "batch error at byte {}: {reason}", at.offset),
        }
    }
}

impl std::error::Error for Error {}
