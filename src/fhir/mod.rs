//! FHIR on the wire: the REST intake ([`endpoint`]) and structural validation against HL7's R4
//! schema ([`validate`]). Conversions between FHIR and the record live in `convert::fhir`; the
//! FHIR server destination in `destination::fhir`.

pub mod endpoint;
pub mod validate;
