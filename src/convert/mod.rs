//! Pure mappings between formats and the [`Clinical`](crate::record::Clinical) record.
//!
//! - [`v2`]: HL7 v2 → `Clinical` (ADT, ORU, ORM/OML, VXU, SIU, MDM and anything built from the
//!   same segments).
//!
//! - [`fhir`]: `Clinical` → FHIR R4 resources and transaction Bundles.

pub mod fhir;
pub mod v2;
