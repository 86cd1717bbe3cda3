//! HL7 v2 over MLLP: framing ([`codec`]), the listener ([`listener`]) and the client side
//! ([`sender`]) that the MLLP destination uses.

pub mod codec;
pub mod listener;
pub mod sender;
