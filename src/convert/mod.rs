//! Pure mappings between formats and the [`Clinical`](crate::record::Clinical) record.
//!
//! - [`v2`]: HL7 v2 → `Clinical` (ADT, ORU, ORM/OML, VXU, SIU, MDM and anything built from the
//!   same segments).
//!
//! FHIR ⇄ `Clinical` and `Clinical` → HL7 v2 join with the FHIR issue.

pub mod v2;
