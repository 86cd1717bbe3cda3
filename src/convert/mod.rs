//! Pure mappings between formats and the [`Clinical`](crate::record::Clinical) record.
//!
//! - [`v2`]: HL7 v2 → `Clinical` (ADT, ORU, ORM/OML, VXU, SIU, MDM and anything built from the
//!   same segments).
//! - [`fhir`]: `Clinical` → FHIR R4 resources and transaction Bundles, and FHIR R4 → `Clinical`
//!   ([`fhir::read`]).
//! - [`to_v2`]: `Clinical` → HL7 v2 (ADT and ORU), so FHIR input can feed v2 systems.

pub mod fhir;
pub mod to_v2;
pub mod v2;
