//! The journal's append path: decides duplicates, writes each group of appends to the
//! segment log with one `fdatasync`, answers the callers, and hands the group to the SQLite
//! writer thread to index.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};

use super::log::SegmentLog;
use super::sqlite::{Pending, Request};
use super::{Appended, JournalEntry, Status, StoreError};
use crate::metrics::Metrics;
use crate::record::{Envelope, Format, Header};

/// An entry that is durable in the log, with its final status, waiting to be indexed.
#[derive(Debug)]
pub(super) struct Logged {
    /// Its log sequence number.
    pub seq: u64,
    /// What was appended (status final: a detected duplicate is `Duplicate`).
    pub entry: JournalEntry,
    /// For a duplicate, the original's id.
    pub duplicate_of: Option<uuid::Uuid>,
}

/// An original logged but not yet indexed, for duplicate checks that SQLite cannot answer yet.
#[derive(Debug, Clone)]
pub(super) struct Original {
    id: uuid::Uuid,
    received_at: i64,
    ack: Option<Vec<u8>>,
}

/// State the log thread and the SQLite thread share.
#[derive(Default)]
pub(super) struct Shared {
    /// Originals by dedupe key, from their log write until their index commit.
    pub unindexed: Mutex<HashMap<String, Original>>,
    /// The last sequence number durable in the log.
    pub logged: AtomicU64,
    /// The last sequence number indexed and synced in SQLite: segments up to it can go.
    pub durable: AtomicU64,
    /// Asks the SQLite thread for a synced commit once it has indexed this far.
    pub sync_wanted: AtomicU64,
}

impl Shared {
    /// Forgets the originals of an index commit (SQLite answers for them from now on).
    pub fn indexed(&self, logged: &[Logged]) {
        if let Ok(mut map) = self.unindexed.lock() {
            for l in logged {
                if let Some(d) = &l.entry.dedupe {
                    if map.get(&d.key).is_some_and(|o| o.id == l.entry.envelope.id) {
                        map.remove(&d.key);
                    }
                }
            }
        }
    }
}

/// The dedupe keys of recent originals, as 64-bit hashes with their newest receipt time: a
/// key not here was not received since `covers_from`, so most messages (the new ones) are
/// decided without a lookup in SQLite, whose reads on the log thread cost a third of an fsync
/// (page reads and lock calls after every index commit). About 20 bytes per message kept.
pub(super) struct Recent {
    hashes: HashMap<u64, i64>,
    state: RandomState,
    /// Originals received before this time (µs) were not loaded: older windows ask SQLite.
    covers_from: i64,
    /// How long a hash is kept (the longest duplicate window).
    horizon: i64,
    last_prune: Instant,
}

impl Recent {
    /// Loads the originals received within `horizon` µs before now from the index.
    pub fn load(conn: &Connection, horizon: i64) -> Result<Recent, rusqlite::Error> {
        let now = crate::record::now_micros();
        let covers_from = now.saturating_sub(horizon);
        let mut recent = Recent {
            hashes: HashMap::new(),
            state: RandomState::new(),
            covers_from,
            horizon,
            last_prune: Instant::now(),
        };
        // Ids are UUIDv7, whose text sorts by time: the primary key serves the time range.
        let mut stmt = conn.prepare(
            "SELECT dedupe_key, received_at FROM messages WHERE id >= ?1 \
             AND dedupe_key IS NOT NULL AND status NOT IN ('rejected', 'duplicate')",
        )?;
        let rows = stmt.query_map([uuid_v7_floor(covers_from)], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?;
        for row in rows {
            let (key, at) = row?;
            recent.insert(&key, at);
        }
        Ok(recent)
    }

    fn hash(&self, key: &str) -> u64 {
        self.state.hash_one(key)
    }

    /// Whether an original with this key may have been received since `since`.
    fn maybe_seen(&self, key: &str, since: i64) -> bool {
        since < self.covers_from
            || self
                .hashes
                .get(&self.hash(key))
                .is_some_and(|at| *at >= since)
    }

    fn insert(&mut self, key: &str, at: i64) {
        let h = self.hash(key);
        let e = self.hashes.entry(h).or_insert(at);
        *e = (*e).max(at);
    }

    /// Forgets hashes older than the horizon, once a minute.
    fn prune(&mut self) {
        if self.last_prune.elapsed() < Duration::from_secs(60) {
            return;
        }
        self.last_prune = Instant::now();
        let oldest = crate::record::now_micros().saturating_sub(self.horizon);
        self.hashes.retain(|_, at| *at >= oldest);
        self.covers_from = self.covers_from.max(oldest);
    }
}

/// The smallest UUIDv7 text of an instant (µs): every id made at or after it sorts after it.
fn uuid_v7_floor(micros: i64) -> String {
    let ms = u64::try_from(micros.max(0) / 1000).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let mut b = [0u8; 16];
    b[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    b[6] = 0x70;
    b[8] = 0x80;
    uuid::Uuid::from_bytes(b).to_string()
}

/// Appends go through here: each caller enqueues its record, then either waits for the
/// fdatasync that covers it or, when no write is under way, becomes the leader and writes
/// everything queued with one `pwrite` + `fdatasync` on its own thread (group commit without
/// a hand-off to a writer thread: at one connection the hand-off and the wake-up back cost
/// more than half an fsync here). A lone record's write blocks its tokio worker for one
/// fdatasync; a group's runs on a blocking thread.
pub(super) struct LogWriter {
    state: Mutex<State>,
    /// Signalled when the queue reaches the size a gathering leader waits for.
    grown: std::sync::Condvar,
    /// Only the leader (`State::flushing`) touches the log.
    log: Mutex<SegmentLog>,
    index: mpsc::UnboundedSender<Request>,
    /// The last sequence number indexed: appends wait while the index lags too far behind.
    indexed: watch::Receiver<u64>,
    shared: Arc<Shared>,
    metrics: Metrics,
}

/// The longest a leader waits to gather records (seconds), however slow the disk.
const MAX_GATHER: f64 = 0.002;

/// Most records logged but not yet indexed before appends wait (backpressure: listeners stop
/// reading when SQLite cannot keep up, instead of the backlog growing in memory).
const MAX_INDEX_LAG: u64 = 65_536;

struct State {
    next_seq: u64,
    payloads: Vec<Vec<u8>>,
    logged: Vec<Logged>,
    flushing: bool,
    /// The last sequence number durable in the log.
    durable: u64,
    /// Appends waiting for a sync (and a closing store). A sync wakes those it covers and, when
    /// records are left queued, the first of the others to lead the next write: one wake-up
    /// per waiter instead of all of them (256 connections made that a fifth of a core).
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
    /// After a failed write or sync the state of the file is unknown (a failed fdatasync may
    /// have dropped the dirty pages): every later append is refused until a restart re-reads it.
    failed: Option<String>,
    closed: bool,
    recent: Recent,
    reader: Connection,
    /// Records the next write waits for (briefly): those queued when the last write ended
    /// plus those it covered, whose senders — stop-and-wait MLLP clients — send their next
    /// one as soon as they have the ACK. See [`LogWriter::gather`].
    gather_target: usize,
    /// Running average of a write + fdatasync, in seconds (bounds the gathering wait).
    sync_seconds: f64,
}

impl LogWriter {
    /// A writer over `log`, handing what it wrote to the SQLite writer through `index`.
    pub fn new(
        log: SegmentLog,
        index: mpsc::UnboundedSender<Request>,
        indexed: watch::Receiver<u64>,
        reader: Connection,
        recent: Recent,
        shared: Arc<Shared>,
        metrics: Metrics,
    ) -> LogWriter {
        let next_seq = log.next_seq();
        LogWriter {
            state: Mutex::new(State {
                next_seq,
                payloads: Vec::new(),
                logged: Vec::new(),
                flushing: false,
                durable: next_seq - 1,
                waiters: VecDeque::new(),
                failed: None,
                closed: false,
                recent,
                reader,
                gather_target: 1,
                sync_seconds: 0.0,
            }),
            grown: std::sync::Condvar::new(),
            log: Mutex::new(log),
            index,
            indexed,
            shared,
            metrics,
        }
    }

    fn state(&self) -> Result<std::sync::MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Database("the journal log state is poisoned".into()))
    }

    /// Appends durably; resolves once the record is synced in the log.
    pub async fn append(self: &Arc<Self>, mut entry: JournalEntry) -> Result<Appended, StoreError> {
        let logged = self.shared.logged.load(Ordering::Acquire);
        if logged.saturating_sub(*self.indexed.borrow()) > MAX_INDEX_LAG {
            let mut indexed = self.indexed.clone();
            let floor = logged - MAX_INDEX_LAG / 2;
            indexed
                .wait_for(|i| *i >= floor)
                .await
                .map_err(|_| StoreError::Closed)?;
        }
        let (seq, outcome) = {
            let mut st = self.state()?;
            if st.closed {
                return Err(StoreError::Closed);
            }
            if let Some(why) = &st.failed {
                return Err(StoreError::Database(why.clone()));
            }
            st.recent.prune();
            let (outcome, duplicate_of) = self.decide(&mut st, &mut entry);
            let mut payload = Vec::with_capacity(entry.envelope.raw.len() + 256);
            encode(&entry, duplicate_of.as_ref(), &mut payload);
            let seq = st.next_seq;
            st.next_seq += 1;
            st.payloads.push(payload);
            st.logged.push(Logged {
                seq,
                entry,
                duplicate_of,
            });
            if st.flushing && st.payloads.len() == st.gather_target {
                self.grown.notify_one();
            }
            (seq, outcome)
        };
        loop {
            match self.lead(Some(seq)).await? {
                Lead::Covered => return Ok(outcome),
                Lead::Wrote => {}
                // Woken when a sync covers it or when it is to lead the next write.
                Lead::Wait(woken) => {
                    let _ = woken.await;
                }
            }
        }
    }

    /// Duplicate detection, in log order: the state lock serializes it with the enqueue.
    fn decide(&self, st: &mut State, entry: &mut JournalEntry) -> (Appended, Option<uuid::Uuid>) {
        let (Some(d), Status::Received) = (&entry.dedupe, entry.status) else {
            return (Appended::New, None);
        };
        let since = entry.envelope.received_at.saturating_sub(d.window_micros);
        let found = if st.recent.maybe_seen(&d.key, since) {
            match unindexed_original(&self.shared, &d.key).filter(|o| o.received_at >= since) {
                Some(o) => Some(o),
                // Looked up after the in-memory map: an original missing there was indexed
                // before the lookup began, so SQLite has it.
                None => indexed_original(&st.reader, entry, &d.key, since),
            }
        } else {
            None
        };
        match found {
            Some(o) => {
                entry.status = Status::Duplicate;
                (
                    Appended::Duplicate {
                        original: o.id,
                        original_ack: o.ack,
                    },
                    Some(o.id),
                )
            }
            None => {
                let key = d.key.clone();
                st.recent.insert(&key, entry.envelope.received_at);
                if let Ok(mut map) = self.shared.unindexed.lock() {
                    map.insert(
                        key,
                        Original {
                            id: entry.envelope.id,
                            received_at: entry.envelope.received_at,
                            ack: entry.ack.clone(),
                        },
                    );
                }
                (Appended::New, None)
            }
        }
    }

    /// Writes what is queued if no write is under way; else, for an append (`seq`), queues
    /// it to be woken.
    async fn lead(self: &Arc<Self>, seq: Option<u64>) -> Result<Lead, StoreError> {
        let taken = {
            let mut st = self.state()?;
            if let Some(why) = &st.failed {
                return Err(StoreError::Database(why.clone()));
            }
            if seq.is_some_and(|s| st.durable >= s) {
                return Ok(Lead::Covered);
            }
            if st.flushing {
                let (tx, rx) = oneshot::channel();
                st.waiters.push_back((seq.unwrap_or(u64::MAX), tx));
                return Ok(Lead::Wait(rx));
            }
            if st.payloads.is_empty() {
                return Ok(Lead::Wrote);
            }
            st.flushing = true;
            if st.payloads.len() < st.gather_target && !st.closed {
                None
            } else {
                Some((
                    std::mem::take(&mut st.payloads),
                    std::mem::take(&mut st.logged),
                ))
            }
        };
        let Some((payloads, logged)) = taken else {
            // The senders of the last group are about to send again: gather them into this
            // write (on a blocking thread, like any group).
            let me = Arc::clone(self);
            let gathered = tokio::task::spawn_blocking(move || {
                let (payloads, logged) = me.gather();
                me.flush(payloads, logged)
            })
            .await;
            if let Err(e) = gathered {
                self.flush_panicked(e)?;
            }
            return Ok(Lead::Wrote);
        };
        // A lone record is written on this thread: the hand-off to a blocking thread and the
        // wake-up back cost more than the write at one connection. A group goes to a blocking
        // thread, so this worker keeps serving the other connections during the sync (with
        // many connections, the leader writes most of the time). Either way the whole flush is
        // synchronous: a caller that goes away (a closed HTTP request) cannot leave it half done.
        if payloads.len() == 1 {
            self.flush(payloads, logged);
        } else {
            let me = Arc::clone(self);
            if let Err(e) = tokio::task::spawn_blocking(move || me.flush(payloads, logged)).await {
                self.flush_panicked(e)?;
            }
        }
        Ok(Lead::Wrote)
    }

    /// Only a panic in the flush (a bug) gets here; `flushing` may be stuck on.
    fn flush_panicked(&self, e: tokio::task::JoinError) -> Result<(), StoreError> {
        let mut st = self.state()?;
        st.flushing = false;
        st.failed = Some(format!("journal log writer failed: {e}"));
        for (_, w) in st.waiters.drain(..) {
            let _ = w.send(());
        }
        Ok(())
    }

    /// Waits (as the leader, `flushing` set) until the queue holds `gather_target` records or
    /// half a sync has passed, then takes it.
    ///
    /// Without it, N stop-and-wait senders split into two halves that alternate: while one
    /// half's write is syncing, the other half queues and is written next, and the first half's
    /// next records arrive just after that write began — groups of N/2 per fsync (measured: 8
    /// connections at 4 records per sync). Waiting a fraction of a sync for the senders that
    /// were just answered lets each write carry all of them. One sender never waits (its target
    /// is 1); a sender that stops costs one wait, after which the target shrinks to what came.
    fn gather(&self) -> (Vec<Vec<u8>>, Vec<Logged>) {
        let Ok(mut st) = self.state.lock() else {
            return (Vec::new(), Vec::new());
        };
        let wait = Duration::from_secs_f64((st.sync_seconds / 2.0).min(MAX_GATHER));
        let deadline = Instant::now() + wait;
        while st.payloads.len() < st.gather_target && !st.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = match self.grown.wait_timeout(st, deadline - now) {
                Ok((guard, _)) => guard,
                Err(_) => return (Vec::new(), Vec::new()),
            };
        }
        (
            std::mem::take(&mut st.payloads),
            std::mem::take(&mut st.logged),
        )
    }

    /// Writes and syncs a group, hands it to the index, wakes its appends; continues with what
    /// was queued meanwhile when no waiter is left to lead it.
    fn flush(&self, mut payloads: Vec<Vec<u8>>, mut logged: Vec<Logged>) {
        if payloads.is_empty() {
            // Nothing was gathered (only a poisoned lock does that): give the lead back.
            if let Ok(mut st) = self.state.lock() {
                st.flushing = false;
                for (_, w) in st.waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            return;
        }
        loop {
            let started = Instant::now();
            let written = self.write(&payloads);
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            match written {
                Ok(last) => {
                    let took = started.elapsed().as_secs_f64();
                    let group = logged.len();
                    self.metrics.journal_batch_size.observe(group as f64);
                    self.metrics.journal_commit_seconds.observe(took);
                    st.sync_seconds = if st.sync_seconds == 0.0 {
                        took
                    } else {
                        0.9 * st.sync_seconds + 0.1 * took
                    };
                    st.gather_target = (st.payloads.len() + group).max(1);
                    self.shared.logged.store(last, Ordering::Release);
                    // Handed over before the next leader may write: the index sees log order.
                    if self
                        .index
                        .send(Request::Write(Pending::Index(logged)))
                        .is_err()
                    {
                        st.failed = Some("the journal index has stopped".into());
                    }
                    st.durable = last;
                    st.flushing = false;
                    if st.failed.is_some() {
                        // Every waiter collects the failure (or its record, already durable).
                        for (_, w) in st.waiters.drain(..) {
                            let _ = w.send(());
                        }
                        return;
                    }
                    if st.wake(last) || st.payloads.is_empty() {
                        return;
                    }
                    st.flushing = true;
                    payloads = std::mem::take(&mut st.payloads);
                    logged = std::mem::take(&mut st.logged);
                }
                Err(why) => {
                    tracing::error!(error = %why, "journal log write failed; refusing appends until restart");
                    st.flushing = false;
                    st.failed = Some(why);
                    // Every waiter collects the failure.
                    for (_, w) in st.waiters.drain(..) {
                        let _ = w.send(());
                    }
                    return;
                }
            }
        }
    }

    /// Writes and syncs; gives up released segments. Returns the last sequence number.
    fn write(&self, payloads: &[Vec<u8>]) -> Result<u64, String> {
        let mut log = self
            .log
            .lock()
            .map_err(|_| "the journal log is poisoned".to_string())?;
        let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
        let first = log
            .append(&refs)
            .map_err(|e| format!("journal log write failed: {e}"))?;
        if let Some(oldest) = log.oldest_closed_last_seq() {
            let durable = self.shared.durable.load(Ordering::Acquire);
            if durable >= oldest {
                if let Err(e) = log.release(durable) {
                    tracing::warn!(error = %e, "journal log: releasing old segments failed");
                }
            }
            if let Some(next) = log.oldest_closed_last_seq() {
                // An idle SQLite writer would not commit again by itself: an empty batch
                // makes it, and that commit is synced.
                if self.shared.sync_wanted.fetch_max(next, Ordering::AcqRel) < next {
                    let _ = self.index.send(Request::Write(Pending::Index(Vec::new())));
                }
            }
        }
        Ok(first + payloads.len() as u64 - 1)
    }

    /// Writes what is queued, refuses later appends, and hands the SQLite writer its close.
    pub async fn close(self: &Arc<Self>, done: oneshot::Sender<()>) {
        if let Ok(mut st) = self.state() {
            st.closed = true;
        }
        // Until nothing is queued or being written (a leader hands its records to the index
        // before it clears `flushing`).
        loop {
            let idle = match self.state() {
                Ok(st) => !st.flushing && (st.payloads.is_empty() || st.failed.is_some()),
                Err(_) => true,
            };
            if idle {
                break;
            }
            match self.lead(None).await {
                Ok(Lead::Wait(woken)) => {
                    let _ = woken.await;
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // Nothing is written after this: let the segment preparer finish its file now, not
        // when the last handle is dropped (a reopen in this process would race it).
        if let Ok(mut log) = self.log.lock() {
            log.settle();
        }
        let _ = self.index.send(Request::Close(done));
    }
}

/// What [`LogWriter::lead`] did.
enum Lead {
    /// The record is durable.
    Covered,
    /// It wrote (or found nothing to write): look again.
    Wrote,
    /// Another caller is writing: wait to be woken.
    Wait(oneshot::Receiver<()>),
}

impl State {
    /// Wakes the appends a sync up to `last` covered and, if records are left queued, the
    /// first waiter after them (to lead the next write); without queued records, the rest
    /// (a closing store). `true` when a waiter took the lead.
    fn wake(&mut self, last: u64) -> bool {
        // Waiters register in the order they found a write under way, not strictly in
        // sequence order: look at all of them.
        let mut rest = VecDeque::with_capacity(self.waiters.len());
        for (s, w) in self.waiters.drain(..) {
            if s <= last {
                let _ = w.send(());
            } else {
                rest.push_back((s, w));
            }
        }
        self.waiters = rest;
        if self.payloads.is_empty() {
            for (_, w) in self.waiters.drain(..) {
                let _ = w.send(());
            }
            return false;
        }
        // A waiter that went away (its request was dropped) cannot lead: try the next.
        while let Some((_, w)) = self.waiters.pop_front() {
            if w.send(()).is_ok() {
                return true;
            }
        }
        false
    }
}

fn unindexed_original(shared: &Shared, key: &str) -> Option<Original> {
    shared
        .unindexed
        .lock()
        .ok()
        .and_then(|m| m.get(key).cloned())
}

fn indexed_original(
    reader: &Connection,
    entry: &JournalEntry,
    key: &str,
    since: i64,
) -> Option<Original> {
    let found = reader
        .prepare_cached(
            "SELECT id, received_at, ack FROM messages WHERE control_id = ?1 AND dedupe_key = ?2 \
             AND received_at >= ?3 AND status NOT IN ('rejected', 'duplicate') \
             ORDER BY received_at LIMIT 1",
        )
        .and_then(|mut stmt| {
            stmt.query_row(params![entry.envelope.header.control_id, key, since], |r| {
                let id: String = r.get(0)?;
                Ok(Original {
                    id: uuid::Uuid::parse_str(&id).unwrap_or_default(),
                    received_at: r.get(1)?,
                    ack: r.get(2)?,
                })
            })
            .optional()
        });
    match found {
        Ok(o) => o,
        Err(e) => {
            // A failed lookup must not refuse the message: it is kept as new, and an operator
            // sees the warning.
            tracing::warn!(error = %e, "duplicate check failed; message kept as new");
            None
        }
    }
}

// Record payload: a version byte, then the fields in a fixed order; strings and byte strings
// as u32 length + bytes, u32::MAX for absent.
const VERSION: u8 = 1;
const ABSENT: u32 = u32::MAX;

fn put(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(b) => {
            // Lengths are bounded by the listeners' frame limits, far below 4 GiB.
            out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(ABSENT - 1).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

fn put_str(out: &mut Vec<u8>, v: Option<&str>) {
    put(out, v.map(str::as_bytes));
}

/// Encodes an entry and its final status as a log record payload.
pub(super) fn encode(entry: &JournalEntry, duplicate_of: Option<&uuid::Uuid>, out: &mut Vec<u8>) {
    let e = &entry.envelope;
    let h = &e.header;
    out.push(VERSION);
    out.extend_from_slice(e.id.as_bytes());
    out.extend_from_slice(&e.received_at.to_le_bytes());
    put_str(out, Some(&e.source));
    put_str(out, Some(e.format.as_str()));
    put_str(out, Some(entry.status.as_str()));
    put(out, Some(&e.raw));
    for v in [
        &h.message_type,
        &h.trigger_event,
        &h.control_id,
        &h.sending_application,
        &h.sending_facility,
        &h.receiving_application,
        &h.receiving_facility,
        &h.version,
        &h.charset,
        &h.patient_id,
    ] {
        put_str(out, v.as_deref());
    }
    put_str(out, entry.error.as_deref());
    put(out, entry.ack.as_deref());
    put_str(out, entry.dedupe.as_ref().map(|d| d.key.as_str()));
    put(out, duplicate_of.map(|u| &u.as_bytes()[..]));
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("record cut short".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, String> {
        let mut len = [0u8; 4];
        len.copy_from_slice(self.take(4)?);
        match u32::from_le_bytes(len) {
            ABSENT => Ok(None),
            n => self.take(n as usize).map(Some),
        }
    }
    fn string(&mut self) -> Result<Option<String>, String> {
        self.bytes()?
            .map(|b| {
                String::from_utf8(b.to_vec()).map_err(|_| "a text field is not UTF-8".to_string())
            })
            .transpose()
    }
    fn required(&mut self, what: &str) -> Result<String, String> {
        self.string()?
            .ok_or_else(|| format!("record without {what}"))
    }
}

/// Decodes a log record payload back into what was appended.
pub(super) fn decode(seq: u64, payload: &[u8]) -> Result<Logged, String> {
    let mut r = Reader(payload);
    if r.take(1)? != [VERSION] {
        return Err("unknown record version".into());
    }
    let id = uuid::Uuid::from_slice(r.take(16)?).map_err(|e| e.to_string())?;
    let mut at = [0u8; 8];
    at.copy_from_slice(r.take(8)?);
    let received_at = i64::from_le_bytes(at);
    let source = r.required("listener")?;
    let format = match r.required("format")?.as_str() {
        "fhir+json" => Format::FhirJson,
        _ => Format::Hl7v2,
    };
    let status = Status::parse(&r.required("status")?).ok_or("unknown status")?;
    let raw = r.bytes()?.ok_or("record without bytes")?.to_vec();
    let header = Header {
        message_type: r.string()?,
        trigger_event: r.string()?,
        control_id: r.string()?,
        sending_application: r.string()?,
        sending_facility: r.string()?,
        receiving_application: r.string()?,
        receiving_facility: r.string()?,
        version: r.string()?,
        charset: r.string()?,
        patient_id: r.string()?,
    };
    let error = r.string()?;
    let ack = r.bytes()?.map(<[u8]>::to_vec);
    let dedupe = r.string()?.map(|key| super::Dedupe {
        key,
        window_micros: 0,
    });
    let duplicate_of = r
        .bytes()?
        .map(|b| uuid::Uuid::from_slice(b).map_err(|e| e.to_string()))
        .transpose()?;
    Ok(Logged {
        seq,
        entry: JournalEntry {
            envelope: Envelope {
                id,
                received_at,
                source,
                format,
                raw,
                header,
            },
            status,
            error,
            ack,
            dedupe,
        },
        duplicate_of,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Dedupe;

    #[test]
    fn records_round_trip() {
        let entry = JournalEntry {
            envelope: Envelope {
                id: uuid::Uuid::now_v7(),
                received_at: 1_700_000_000_123_456,
                source: "adt".into(),
                format: Format::Hl7v2,
                raw: b"MSH|^~\\&|A|B\rPID|1||42\r".to_vec(),
                header: Header {
                    message_type: Some("ADT".into()),
                    control_id: Some("C1".into()),
                    patient_id: Some("42".into()),
                    ..Header::default()
                },
            },
            status: Status::Duplicate,
            error: None,
            ack: Some(b"MSH|...\rMSA|AA|C1\r".to_vec()),
            dedupe: Some(Dedupe {
                key: "A|B|C1".into(),
                window_micros: 5,
            }),
        };
        let original = uuid::Uuid::now_v7();
        let mut out = Vec::new();
        encode(&entry, Some(&original), &mut out);
        let back = decode(9, &out).unwrap();
        assert_eq!(back.seq, 9);
        assert_eq!(back.entry.envelope, entry.envelope);
        assert_eq!(back.entry.status, Status::Duplicate);
        assert_eq!(back.entry.ack, entry.ack);
        assert_eq!(back.entry.error, None);
        assert_eq!(back.entry.dedupe.unwrap().key, "A|B|C1");
        assert_eq!(back.duplicate_of, Some(original));
        // Every cut-short payload is an error, never a panic.
        for n in 0..out.len() {
            assert!(decode(1, &out[..n]).is_err());
        }
    }
}
