//! The journal: an append-only, durable record of every message received.
//!
//! # Invariants
//! - `append` returns only after the entry is on disk (the transaction holding it committed with
//!   `synchronous=FULL`); a listener acknowledges only after `append` returned. Nothing that was
//!   acknowledged can be lost by a crash.
//! - Appends from all connections go through one writer, which commits them in groups: every
//!   append waiting when a commit starts shares that commit's fsync (group commit). The group
//!   grows by itself when the disk is slow, so throughput rises with the number of connections.
//! - Duplicate detection (MSH-3 + MSH-4 + MSH-10 within a window) runs inside the writer, in the
//!   same transaction as the insert, so two copies arriving at once cannot both count as new.
//!   A duplicate is journaled with status `duplicate` and the original's ACK bytes are returned.
//!
//! # On-disk layout (SQLite, [`sqlite`])
//! ```text
//! messages(id TEXT PK (UUIDv7), received_at INTEGER (µs), listener, format, status,
//!          message_type, trigger_event, control_id, sending_application, sending_facility,
//!          receiving_application, receiving_facility, version, charset, patient_id,
//!          error, dedupe_key, duplicate_of, ack BLOB, raw BLOB)
//! indexes: (control_id, dedupe_key, received_at), patient_id, (message_type, trigger_event)
//! ```
//! Every index costs one more page written and synced per commit, so there are only these
//! three: ids are UUIDv7, whose text sorts by time, so the primary key serves time ranges; the
//! duplicate lookup goes through the control id index (the dedupe key contains the control id).
//! The `Store` trait is what callers see, so a PostgreSQL implementation can follow.

pub mod sqlite;

use std::fmt;
use std::future::Future;

use crate::record::Envelope;

pub use sqlite::{SqliteOptions, SqliteStore};

/// The status of a journaled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Accepted and waiting to be routed.
    Received,
    /// Not accepted (malformed, unsupported); kept for an operator to see.
    Rejected,
    /// A copy of a message received before (same MSH-3, MSH-4, MSH-10 within the window).
    Duplicate,
}

impl Status {
    /// The name stored in the journal.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Rejected => "rejected",
            Status::Duplicate => "duplicate",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "received" => Some(Status::Received),
            "rejected" => Some(Status::Rejected),
            "duplicate" => Some(Status::Duplicate),
            _ => None,
        }
    }
}

/// What to append.
#[derive(Debug, Clone)]
pub struct JournalEntry {
    /// The message and its header facts.
    pub envelope: Envelope,
    /// `Received` or `Rejected` (the writer turns a detected duplicate into `Duplicate`).
    pub status: Status,
    /// Why it was rejected.
    pub error: Option<String>,
    /// The acknowledgement that will be sent for it, stored so a duplicate can get the same bytes.
    pub ack: Option<Vec<u8>>,
    /// Duplicate detection for this entry, when enabled.
    pub dedupe: Option<Dedupe>,
}

/// Duplicate detection parameters for one append.
#[derive(Debug, Clone)]
pub struct Dedupe {
    /// MSH-3 + MSH-4 + MSH-10.
    pub key: String,
    /// Only an original received within this many microseconds counts.
    pub window_micros: i64,
}

/// The outcome of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Stored as a new message.
    New,
    /// Stored as a duplicate of `original`; answer with `original_ack` when there is one.
    Duplicate {
        /// Id of the first copy.
        original: uuid::Uuid,
        /// The ACK sent for the first copy.
        original_ack: Option<Vec<u8>>,
    },
}

/// A journaled message as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id.
    pub id: uuid::Uuid,
    /// Receipt time (µs since the epoch).
    pub received_at: i64,
    /// Listener name.
    pub listener: String,
    /// Status.
    pub status: Status,
    /// Bytes as received.
    pub raw: Vec<u8>,
    /// MSH-10.
    pub control_id: Option<String>,
    /// The ACK stored with it.
    pub ack: Option<Vec<u8>>,
    /// Why it was rejected.
    pub error: Option<String>,
    /// For duplicates, the original's id.
    pub duplicate_of: Option<uuid::Uuid>,
}

/// Journal failures. Callers NAK (or close) instead of acknowledging on any of them.
#[derive(Debug)]
pub enum StoreError {
    /// The database reported an error.
    Database(String),
    /// The writer has stopped (shutdown or a fatal error).
    Closed,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Database(e) => write!(f, "journal database error: {e}"),
            StoreError::Closed => write!(f, "journal is closed"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// The journal as the rest of Aorta sees it.
pub trait Store: Send + Sync + 'static {
    /// Appends durably; resolves after the commit that holds the entry.
    fn append(
        &self,
        entry: JournalEntry,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send;

    /// Reads messages by MSH-10 (oldest first).
    fn find_by_control_id(
        &self,
        control_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredMessage>, StoreError>> + Send;

    /// Counts journaled messages by status.
    fn count(&self, status: Status) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Commits what is queued and stops the writer; later appends fail with `Closed`.
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
