//! HL7 v2 over MLLP: framing ([`codec`]) and the listener ([`listener`]).

pub mod codec;
pub mod listener;
