//! HL7 v2 messages: parse, read, change, encode, acknowledge, batch. Pure: no I/O, no clock.
//!
//! ```text
//!  bytes ──parse──> Message<'a> (borrowed view: segments and field offsets, zero-copy)
//!                      │  get(&Path) -> decoded text        raw()/encode() -> same bytes
//!                      └─ to_owned_message()
//!                           └─> OwnedMessage (segments as bytes; set/clear/delete splice them)
//!                                  encode() -> bytes, untouched parts exactly as received
//! ```
//!
//! - [`delimiters`]: MSH-1/MSH-2, never assumed.
//! - [`escape`]: `\F\ \S\ \T\ \R\ \E\ \P\ \Xhh\ \.br\ ...` decoding and minimal encoding.
//! - [`charset`]: MSH-18 character sets.
//! - [`path`]: the `Path` grammar (HAPI Terser and dotted Mirth style).
//! - [`parse`] / [`owned`]: the two message forms.
//! - [`ack`]: ACK/NAK with ERR segments, original and enhanced mode.
//! - [`batch`]: FHS/BHS/BTS/FTS files, and files of plain concatenated messages.
//! - [`json`]: a JSON picture of a message.
//!
//! Why not the `hl7-parser` crate: see `docs/hl7-parser.md`.
//!
//! ```
//! use aorta::hl7::{Message, Path};
//!
//! let raw = b"MSH|^~\\&|LAB|HOSP|EMR|WARD|20240101||ORU^R01|C1|P|2.5\rPID|1||123^^^H^MR||DOE^JOHN\r";
//! let msg = Message::parse(raw)?;
//! let family = Path::parse("PID-5-1")?;
//! assert_eq!(msg.get(&family).as_deref(), Some("DOE"));
//! assert_eq!(msg.control_id().as_deref(), Some("C1"));
//!
//! let mut owned = msg.to_owned_message();
//! owned.set(&family, "O'BRIEN & SON")?;              // escaped as needed: O'BRIEN \T\ SON
//! owned.set(&Path::parse("PID.8")?, "M")?;           // missing fields are created
//! assert_eq!(
//!     owned.encode(),
//!     b"MSH|^~\\&|LAB|HOSP|EMR|WARD|20240101||ORU^R01|C1|P|2.5\rPID|1||123^^^H^MR||O'BRIEN \\T\\ SON^JOHN|||M\r"
//! );
//! # Ok::<(), aorta::hl7::Error>(())
//! ```

pub mod ack;
pub mod batch;
pub mod charset;
pub mod delimiters;
pub mod error;
pub mod escape;
pub mod json;
mod nav;
pub mod owned;
pub mod parse;
pub mod path;

pub use ack::{
    build_ack, build_nak_for_unparseable, AckCode, AckError, AckMode, AckSpec, ErrorCode, Outcome,
};
pub use charset::Charset;
pub use delimiters::Delimiters;
pub use error::{Error, Location};
pub use owned::OwnedMessage;
pub use parse::{Element, Level, Message, Parts, Segment};
pub use path::Path;
