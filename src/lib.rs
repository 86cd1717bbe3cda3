//! Aorta: an HL7 v2 / FHIR integration engine.
//!
//! ```text
//!  MLLP / FHIR REST ──> journal ──> route ──> queue(dest) ──> destination (HTTP, FHIR, AMQP, MLLP, file)
//!  (sources)            (durable)   (pure)    (durable)       ACK after the journal commit
//! ```
//!
//! Modules, lowest layer first (a lower layer never imports a higher one; see `DESIGN.md`):
//! - [`hl7`] — parse, read, change and encode HL7 v2 messages; paths, escapes, charsets,
//!   ACK/NAK, batches. Pure: no I/O.
//! - [`cli`] — the `aorta` command.
//!
//! Later layers (record model, store, routes, MLLP, FHIR, destinations, admin, daemon) join as
//! their issues land.

pub mod cli;
pub mod hl7;
