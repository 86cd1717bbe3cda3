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
pub use parse::{Element, Level, Message, Segment};
pub use path::Path;
