//! The journal: an append-only, durable record of every message received.
//!
//! # Invariants
//! - `append` returns only after the entry is on disk: written to the segment log ([`log`])
//!   and synced with `fdatasync`. A listener acknowledges only after `append` returned.
//!   Nothing that was acknowledged can be lost by a crash.
//! - Appends from all connections share syncs (group commit): each caller queues its record;
//!   when no write is under way it becomes the leader and writes every queued record with one
//!   `pwrite` + `fdatasync`, else it waits for the sync that covers it. The group grows by
//!   itself when the disk is slow, so throughput rises with the number of connections.
//! - The log is the durability point; SQLite is the index behind it. The writer thread
//!   indexes logged records into SQLite in log order (so row order is log order), with
//!   `synchronous=NORMAL` (large index commits, under heavy load, are synced so the WAL reaches
//!   the disk steadily): a crash can lose the last index commits, never a record — at start
//!   every record after the index's `cursors('log')` position is indexed again from the log.
//!   A log segment is released (reused or deleted) only after a synced SQLite commit holds all
//!   its records. Queries wait until every append that returned before them is indexed (a
//!   caller reads its own writes).
//! - Duplicate detection (MSH-3 + MSH-4 + MSH-10 within a window) is decided at append time,
//!   in log order, so two copies arriving at once cannot both count as new: recent originals
//!   are known in memory (64-bit key hashes for the longest window; the originals not yet
//!   indexed with their ACKs); only a possible match is looked up in SQLite. A duplicate is
//!   journaled with status `duplicate` and the original's ACK bytes are returned.
//! - Routing is restart-safe: the route loop reads `received` messages after its cursor (the
//!   journal's row order), and one transaction writes a batch's deliveries into the
//!   destination queues, sets each message's status (`routed`, `filtered`, `errored` with the
//!   reason) and moves the cursor. After a crash, nothing is routed twice and nothing is
//!   skipped. These commits are not synced by themselves either: they are derived from the
//!   journal, a crash can lose them only together with the cursor move, and the route loop then
//!   routes the same messages again to the same deliveries (same idempotency keys); the WAL is
//!   synced at each checkpoint (every 200 ms) and whenever a log segment is released.
//!
//! Departure from the first design (SQLite with `synchronous=FULL` as the durability point):
//! measured here, one SQLite commit per message cost 2–3 raw fsyncs (a WAL frame per B-tree it
//! touches), and a lone sender reached under half the disk's fsync rate. See
//! docs/benchmarks.md.
//!
//! # On-disk layout (SQLite, [`sqlite`])
//! ```text
//! messages(id TEXT PK (UUIDv7), received_at INTEGER (µs), listener, format, status,
//!          message_type, trigger_event, control_id, sending_application, sending_facility,
//!          receiving_application, receiving_facility, version, charset, patient_id,
//!          error, dedupe_key, duplicate_of, ack BLOB, raw BLOB)
//! indexes: (control_id, dedupe_key, received_at), patient_id, (message_type, trigger_event)
//!
//! deliveries(seq INTEGER PK AUTOINCREMENT (queue order), message_id, destination, route, format,
//!            state ('queued' | 'leased' | 'sent' | 'dead'), attempts, created_at,
//!            next_attempt_at, leased_until, order_key, order_hash, idempotency_key,
//!            last_error, sent_at, payload BLOB)
//! indexes: (destination, seq) over queued and leased rows only, message_id
//! delivery_attempts(seq, attempt, at, outcome ('retry' | 'dead'; 'sent' before 2026-12), detail)
//! paused(destination PK)           -- destinations whose workers wait
//! cursors(name PK, position)       -- 'route': the last journal row the route loop has done
//! ```
//!
//! # Queues
//! One FIFO per destination: `seq` order. A worker **leases** the next delivery (its lease
//! expires if the worker dies, and leases left by a previous process are void at start), sends
//! it, then **marks** it `sent`, `retry` (back to `queued` with a time for the next attempt and
//! the reason) or `dead` — each mark recorded with the attempt number, time and outcome: a
//! retry or dead letter as a row of `delivery_attempts`, the last (successful) attempt in the
//! delivery's own row (`state = 'sent'`, `attempts`, `sent_at`), which the mark rewrites anyway:
//! one row fewer to write per message (the attempt list joins both). Head-of-line policy
//! `block` leases only a partition's oldest unsent delivery (strict order; a retrying head
//! holds the rest back); `skip` leases the oldest one that is due. With `concurrency = N`,
//! worker `p` takes the deliveries whose `order_hash % N = p`: order is kept per order key
//! (e.g. per patient) across N workers.
//! Queue changes, like routing results, do not wait for their own fsync: losing a lease only
//! voids it, and losing a `sent` mark in an OS crash means the delivery is sent again, with the
//! same idempotency key (at least once, as promised).
//!
//! # Segment log (`<store path>-log/`)
//! Preallocated, zero-filled segment files (growing from 1 MiB to 64 MiB) of CRC-framed,
//! numbered records; see [`log`]. A record holds the whole entry (envelope, status, ACK,
//! dedupe key, duplicate-of), so the index can be rebuilt from it.
//!
//! Every index on `messages` costs pages written per indexed group, so there are
//! only these three: ids are UUIDv7, whose text sorts by time, so the primary key serves time
//! ranges; the duplicate lookup goes through the control id index (the dedupe key contains the
//! control id). The `Store` trait is what callers see, so a PostgreSQL implementation can
//! follow.

pub mod log;
mod logwriter;
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
    /// Routed: its deliveries are in the destination queues.
    Routed,
    /// No route delivers it.
    Filtered,
    /// A route failed on it; the error says why.
    Errored,
}

impl Status {
    /// The name stored in the journal.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Rejected => "rejected",
            Status::Duplicate => "duplicate",
            Status::Routed => "routed",
            Status::Filtered => "filtered",
            Status::Errored => "errored",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "received" => Some(Status::Received),
            "rejected" => Some(Status::Rejected),
            "duplicate" => Some(Status::Duplicate),
            "routed" => Some(Status::Routed),
            "filtered" => Some(Status::Filtered),
            "errored" => Some(Status::Errored),
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

/// A journaled message waiting to be routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routable {
    /// Its position in the journal (the route cursor moves over these).
    pub seq: i64,
    /// Its id.
    pub id: uuid::Uuid,
    /// The listener it came in on.
    pub listener: String,
    /// Its bytes.
    pub raw: Vec<u8>,
    /// `hl7v2` or `fhir+json`.
    pub format: String,
    /// The trigger event (MSH-9-2), or for FHIR the interaction (`create`, `update`, ...).
    pub event: Option<String>,
}

/// What routing made of one message, to be written in one transaction with the others of its
/// batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingOutcome {
    /// The message's journal position.
    pub seq: i64,
    /// The message.
    pub message_id: uuid::Uuid,
    /// `Routed`, `Filtered` or `Errored`.
    pub status: Status,
    /// Why it errored.
    pub error: Option<String>,
    /// What to queue (empty unless routed).
    pub deliveries: Vec<crate::record::Delivery>,
}

/// A queued delivery as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    /// Queue position.
    pub seq: i64,
    /// The message it came from.
    pub message_id: uuid::Uuid,
    /// Destination.
    pub destination: String,
    /// Route.
    pub route: String,
    /// Payload format (`hl7v2`, `record-json`, `fhir`).
    pub format: String,
    /// Queue state.
    pub state: String,
    /// Idempotency key (message id + destination).
    pub idempotency_key: String,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The bytes to send.
    pub payload: Vec<u8>,
}

/// Which part of a destination's queue a worker serves: `order_hash % of == index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// This worker's partition.
    pub index: u32,
    /// Number of partitions (workers).
    pub of: u32,
}

/// What a worker may take from its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadOfLine {
    /// Only the oldest unsent delivery: strict order; a failing head holds the rest back.
    Block,
    /// The oldest delivery that is due: a retrying delivery lets later ones pass.
    Skip,
}

/// A delivery leased to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leased {
    /// Queue position.
    pub seq: i64,
    /// The message it came from.
    pub message_id: uuid::Uuid,
    /// Destination.
    pub destination: String,
    /// Payload format (`hl7v2`, `record-json`, `fhir`).
    pub format: String,
    /// Attempts made before this one.
    pub attempts: u32,
    /// When it was queued (µs since the epoch).
    pub created_at: i64,
    /// Idempotency key (message id + destination).
    pub idempotency_key: String,
    /// The bytes to send.
    pub payload: Vec<u8>,
}

/// What a lease found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// Deliveries to send now, in queue order.
    Leased(Vec<Leased>),
    /// Deliveries are waiting; the earliest may be tried at this time (µs), or (`None`) the
    /// head is in flight with another lease.
    Wait(Option<i64>),
    /// Nothing is queued.
    Empty,
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The destination has it.
    Sent,
    /// Try again at this time (µs since the epoch).
    Retry {
        /// When.
        at: i64,
        /// Why the attempt failed.
        reason: String,
    },
    /// Give up: dead-letter it.
    Dead {
        /// Why.
        reason: String,
    },
    /// Give it back to the queue untried (a batch stopped before it).
    Release,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1-based attempt number.
    pub attempt: u32,
    /// When it ended (µs since the epoch).
    pub at: i64,
    /// `sent`, `retry` or `dead`.
    pub outcome: String,
    /// The reason for a retry or dead-letter.
    pub detail: Option<String>,
}

/// A destination queue's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Deliveries not yet sent or dead (queued or leased).
    pub depth: u64,
    /// When the oldest of them was queued (µs), if any.
    pub oldest: Option<i64>,
}

/// The 32-bit FNV-1a hash of an ordering key: which partition its deliveries go to.
pub fn order_hash(key: Option<&str>) -> u32 {
    key.map_or(0, |k| {
        k.bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
    })
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
    /// Appends durably; resolves after the write that holds the entry is synced.
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

    /// A message's status and error.
    fn status(
        &self,
        id: uuid::Uuid,
    ) -> impl Future<Output = Result<Option<(Status, Option<String>)>, StoreError>> + Send;

    /// Where the route loop stopped (0 at first).
    fn route_cursor(&self) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Up to `limit` `received` messages after journal position `after`, oldest first.
    fn pending_routing(
        &self,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Routable>, StoreError>> + Send;

    /// Writes a batch's routing in one durable transaction: deliveries, statuses, cursor.
    fn record_routing(
        &self,
        outcomes: Vec<RoutingOutcome>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The deliveries queued for a message, in queue order.
    fn deliveries_for(
        &self,
        message_id: uuid::Uuid,
    ) -> impl Future<Output = Result<Vec<StoredDelivery>, StoreError>> + Send;

    /// How many deliveries wait in a destination's queue.
    fn queue_depth(
        &self,
        destination: &str,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Resolved after each commit that journaled new messages (the route loop's wake-up).
    fn appended(&self) -> std::sync::Arc<tokio::sync::Notify>;

    /// Leases up to `max` deliveries of a destination's partition for `lease_micros`: the
    /// oldest ones that are due, in order (under `Block`, none past one that is not due).
    fn lease(
        &self,
        destination: &str,
        partition: Partition,
        policy: HeadOfLine,
        lease_micros: i64,
        max: usize,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send {
        self.lease_after(destination, partition, policy, lease_micros, max, 0)
    }

    /// Like [`Store::lease`], for a worker that still holds the deliveries up to queue position
    /// `after` (published, outcomes pending): those are passed over, and under `Block` the head
    /// is the first delivery after them.
    fn lease_after(
        &self,
        destination: &str,
        partition: Partition,
        policy: HeadOfLine,
        lease_micros: i64,
        max: usize,
        after: i64,
    ) -> impl Future<Output = Result<Lease, StoreError>> + Send;

    /// Records attempt outcomes: `(seq, attempt number, mark)`, in one transaction.
    fn mark(
        &self,
        marks: Vec<(i64, u32, Mark)>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Queues marks behind every write already queued and returns without waiting for their
    /// commit (a lease asked for afterwards sees them). `Err` when they could not be queued at
    /// once; then use [`Store::mark`].
    fn mark_detached(&self, marks: Vec<(i64, u32, Mark)>) -> Result<(), Vec<(i64, u32, Mark)>>;

    /// Pauses (workers wait) or resumes a destination.
    fn set_paused(
        &self,
        destination: &str,
        paused: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether a destination is paused.
    fn is_paused(&self, destination: &str)
        -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A destination queue's depth and oldest entry.
    fn queue_stats(
        &self,
        destination: &str,
    ) -> impl Future<Output = Result<QueueStats, StoreError>> + Send;

    /// The attempts recorded for a delivery, oldest first.
    fn attempts(&self, seq: i64) -> impl Future<Output = Result<Vec<Attempt>, StoreError>> + Send;

    /// Commits what is queued and stops the writer; later appends fail with `Closed`.
    fn close(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}
