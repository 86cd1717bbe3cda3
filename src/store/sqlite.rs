//! The embedded journal: a segment log as the durability point ([`super::log`], written by
//! the log thread in `store::logwriter`), indexed into SQLite (WAL mode) by one writer thread
//! that also owns routing results and the destination queues; reader connections for queries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot, watch};

use super::log::SegmentLog;
use super::logwriter::{self, LogWriter, Logged, Shared};
use super::{
    order_hash, Appended, Attempt, HeadOfLine, JournalEntry, Lease, Leased, Mark, Partition,
    QueueStats, Routable, RoutingOutcome, Status, Store, StoreError, StoredDelivery, StoredMessage,
};
use crate::metrics::Metrics;

/// Settings of the embedded journal.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file (created with its directory when missing).
    pub path: PathBuf,
    /// Most appends in one commit.
    pub max_batch: usize,
    /// The segment log's directory (default: the database path with `-log` appended).
    pub log_dir: PathBuf,
    /// The largest segment file (new segments grow from 1 MiB up to it).
    pub segment_bytes: u64,
    /// The longest duplicate window of any listener (µs): how far back the dedupe keys
    /// kept in memory reach (longer windows are answered by SQLite).
    pub dedupe_horizon_micros: i64,
}

impl SqliteOptions {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        let path: PathBuf = path.into();
        let mut log_dir = path.clone().into_os_string();
        log_dir.push("-log");
        SqliteOptions {
            path,
            max_batch: 1024,
            log_dir: log_dir.into(),
            segment_bytes: 64 << 20,
            dedupe_horizon_micros: 86_400_000_000,
        }
    }
}

/// A write waiting for its commit, with where to send the outcome.
pub(super) enum Pending {
    /// Entries durable in the log, to be indexed (nobody waits for this commit).
    Index(Vec<Logged>),
    Route(Vec<RoutingOutcome>, oneshot::Sender<Result<(), StoreError>>),
    Queue(QueueOp, oneshot::Sender<Result<Option<Lease>, StoreError>>),
}

/// A change to a destination queue.
pub(super) enum QueueOp {
    Lease {
        destination: String,
        partition: Partition,
        policy: HeadOfLine,
        lease_micros: i64,
        max: usize,
        after: i64,
    },
    Marks(Vec<(i64, u32, Mark)>),
    Pause {
        destination: String,
        paused: bool,
    },
}

/// What one write produced, in batch order.
enum Done {
    Indexed,
    Routed,
    Queue(Option<Lease>),
}

pub(super) enum Request {
    Write(Pending),
    Close(oneshot::Sender<()>),
}

/// The SQLite journal. Cheap to clone; all clones share the writer.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::UnboundedSender<Request>,
    log: Arc<LogWriter>,
    shared: Arc<Shared>,
    /// The last log sequence number indexed in SQLite (reads wait for their caller's appends).
    indexed: watch::Receiver<u64>,
    path: PathBuf,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    checkpointer: Arc<Mutex<Option<Checkpointer>>>,
    /// Reader connections kept for reuse (opening one costs more than most reads).
    readers: Arc<Mutex<Vec<Connection>>>,
    appended: Arc<tokio::sync::Notify>,
    /// Paused destinations (the `paused` table, kept in memory too: workers ask often).
    paused: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// The checkpoint thread and the channel that stops it.
type Checkpointer = (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    listener TEXT NOT NULL,
    format TEXT NOT NULL,
    status TEXT NOT NULL,
    message_type TEXT,
    trigger_event TEXT,
    control_id TEXT,
    sending_application TEXT,
    sending_facility TEXT,
    receiving_application TEXT,
    receiving_facility TEXT,
    version TEXT,
    charset TEXT,
    patient_id TEXT,
    error TEXT,
    dedupe_key TEXT,
    duplicate_of TEXT,
    -- Large values last: reading any other column never walks a BLOB's overflow pages.
    ack BLOB,
    raw BLOB NOT NULL
) STRICT;
-- Serves lookups by control id and, covering, the duplicate check (oldest original first).
CREATE INDEX IF NOT EXISTS messages_control_id ON messages(control_id, dedupe_key, received_at);
CREATE INDEX IF NOT EXISTS messages_patient_id ON messages(patient_id);
CREATE INDEX IF NOT EXISTS messages_type ON messages(message_type, trigger_event);
-- One durable FIFO per destination: seq is the queue order.
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    route TEXT NOT NULL,
    format TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    leased_until INTEGER,
    order_key TEXT,
    order_hash INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT NOT NULL,
    last_error TEXT,
    sent_at INTEGER,
    payload BLOB NOT NULL
) STRICT;
-- Only what is still to be sent: sent and dead rows leave the index, so a lease walks the
-- pending part of one destination's queue in order, however long its history.
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(destination, seq)
    WHERE state IN ('queued', 'leased');
CREATE INDEX IF NOT EXISTS deliveries_message ON deliveries(message_id);
CREATE TABLE IF NOT EXISTS delivery_attempts (
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT,
    PRIMARY KEY (seq, attempt)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS paused (destination TEXT PRIMARY KEY) STRICT;
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) STRICT;
";

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // WAL lets readers run beside the writer. NORMAL: a commit is not synced by itself (the
    // segment log is the durability point for messages; see the module `store`); the WAL is
    // synced before every checkpoint, and the writer asks for FULL when a log segment is to
    // be released.
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// Indexes log records into SQLite in chunks (at open, the records a crash left unindexed).
fn replay(conn: &mut Connection, records: Vec<super::log::LogRecord>) -> Result<u64, StoreError> {
    let mut replayed = 0u64;
    let mut chunk = Vec::new();
    let total = records.len();
    for rec in records {
        match logwriter::decode(rec.seq, &rec.payload) {
            Ok(l) => chunk.push(l),
            // A record with a valid checksum that cannot be read is a bug, not a torn write;
            // say which one so it can be recovered from the segment by hand.
            Err(e) => {
                tracing::error!(seq = rec.seq, error = %e, "journal log: unreadable record skipped")
            }
        }
        if chunk.len() >= 1000 {
            replayed += chunk.len() as u64;
            commit(conn, &[Pending::Index(std::mem::take(&mut chunk))], true)?;
        }
    }
    replayed += chunk.len() as u64;
    commit(conn, &[Pending::Index(chunk)], true)?;
    if total > 0 {
        tracing::info!(
            records = replayed,
            "journal log: indexed records left by the last run"
        );
    }
    Ok(replayed)
}

fn log_position(conn: &Connection) -> Result<u64, StoreError> {
    let p: Option<i64> = conn
        .query_row("SELECT position FROM cursors WHERE name = 'log'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(p.and_then(|p| u64::try_from(p).ok()).unwrap_or(0))
}

impl SqliteStore {
    /// Opens (or creates) the journal and starts its writer thread.
    pub fn open(options: SqliteOptions, metrics: Metrics) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("creating {}: {e}", dir.display())))?;
        }
        let mut conn = open_connection(&options.path)?;
        conn.execute_batch(SCHEMA)?;
        // Checkpoints (copying the WAL into the database file and syncing it) run on their own
        // thread, so a commit never waits for one; the writer's own auto-checkpoint stays as a
        // safety net at 64 MiB of WAL.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        let checkpoint_conn = open_connection(&options.path)?;
        let (stop_checkpoints, stopped) = std::sync::mpsc::channel::<()>();
        let checkpointer = std::thread::Builder::new()
            .name("aorta-checkpoint".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(std::time::Duration::from_millis(200))
                {
                    if let Err(e) =
                        checkpoint_conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "journal checkpoint failed");
                    }
                }
            })
            .map_err(|e| StoreError::Database(format!("starting the journal checkpointer: {e}")))?;
        // Leases belong to workers of the process that made them; that process is gone.
        conn.execute(
            "UPDATE deliveries SET state = 'queued', leased_until = NULL WHERE state = 'leased'",
            [],
        )?;
        let paused: std::collections::HashSet<String> = conn
            .prepare("SELECT destination FROM paused")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        // What the last run logged but had not indexed (a crash) goes into SQLite first; that
        // commit is synced, so the segments holding it can be released.
        let indexed = log_position(&conn)?;
        let log_error = |e: std::io::Error| {
            StoreError::Database(format!("journal log {}: {e}", options.log_dir.display()))
        };
        let (mut log, recovered) =
            SegmentLog::open(&options.log_dir, options.segment_bytes, indexed)
                .map_err(log_error)?;
        if recovered.torn > 0 {
            tracing::info!(
                segments = recovered.torn,
                "journal log: a segment ended in an unfinished write (never acknowledged); cut there"
            );
        }
        replay(&mut conn, recovered.records)?;
        let indexed = log_position(&conn)?.max(log.next_seq() - 1);
        log.release(indexed).map_err(log_error)?;
        let rows: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
        metrics.journal_rows.set(rows);
        let shared = Arc::new(Shared::default());
        shared
            .logged
            .store(indexed, std::sync::atomic::Ordering::Release);
        shared
            .durable
            .store(indexed, std::sync::atomic::Ordering::Release);
        let (indexed_tx, indexed_rx) = watch::channel(indexed);
        // Unbounded: appends are held back by the index lag (see `logwriter`), and routing and
        // queue requests each wait for their answer.
        let (tx, rx) = mpsc::unbounded_channel();
        let max_batch = options.max_batch.max(1);
        let appended = Arc::new(tokio::sync::Notify::new());
        let notify = appended.clone();
        let writer_shared = shared.clone();
        let writer_metrics = metrics.clone();
        let writer = std::thread::Builder::new()
            .name("aorta-journal".into())
            .spawn(move || {
                writer_loop(
                    conn,
                    rx,
                    max_batch,
                    writer_metrics,
                    notify,
                    writer_shared,
                    indexed_tx,
                )
            })
            .map_err(|e| StoreError::Database(format!("starting the journal writer: {e}")))?;
        let reader = open_connection(&options.path)?;
        let recent = logwriter::Recent::load(&reader, options.dedupe_horizon_micros)?;
        let log = Arc::new(LogWriter::new(
            log,
            tx.clone(),
            indexed_rx.clone(),
            reader,
            recent,
            shared.clone(),
            metrics,
        ));
        Ok(SqliteStore {
            tx,
            log,
            shared,
            indexed: indexed_rx,
            path: options.path,
            writer: Arc::new(Mutex::new(Some(writer))),
            checkpointer: Arc::new(Mutex::new(Some((stop_checkpoints, checkpointer)))),
            readers: Arc::new(Mutex::new(Vec::new())),
            appended,
            paused: Arc::new(Mutex::new(paused)),
        })
    }

    async fn queue(&self, op: QueueOp) -> Result<Option<Lease>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Write(Pending::Queue(op, reply)))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs a query once every append that returned before the call is indexed: a caller
    /// reads its own writes although SQLite lags the log by a commit.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let target = self
            .shared
            .logged
            .load(std::sync::atomic::Ordering::Acquire);
        if *self.indexed.borrow() < target {
            let mut indexed = self.indexed.clone();
            // Bounded: a stuck index (a full disk) must not hang the admin API.
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                indexed.wait_for(|v| *v >= target),
            )
            .await;
        }
        self.read_now(f).await
    }

    /// Runs a query on what is indexed now.
    async fn read_now<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = readers.lock().ok().and_then(|mut r| r.pop());
            let conn = match pooled {
                Some(c) => c,
                None => open_connection(&path)?,
            };
            let out = f(&conn);
            if let Ok(mut r) = readers.lock() {
                if r.len() < 4 {
                    r.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| StoreError::Database(format!("reader task failed: {e}")))?
    }
}

/// An index commit of at least this many rows is synced (and the log's release point moves):
/// under heavy load the WAL then reaches the disk in steady pieces instead of in bursts at
/// each checkpoint, which stalled the log's fdatasync for 10–50 ms (p99 ACK ~30 ms at 64
/// connections); a lone sender's small commits stay unsynced and off the disk's queue.
const SYNC_ROWS: usize = 64;

/// The least time between two commits that only index log records.
const INDEX_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Request>,
    max_batch: usize,
    metrics: Metrics,
    appended: Arc<tokio::sync::Notify>,
    shared: Arc<Shared>,
    indexed_tx: watch::Sender<u64>,
) {
    use std::sync::atomic::Ordering;
    let mut batch: Vec<Pending> = Vec::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    let mut indexed = *indexed_tx.borrow();
    // Index batches whose commit failed, tried again with the next commit: they are durable
    // in the log, and the route loop must see them in log order.
    let mut backlog: Vec<Logged> = Vec::new();
    let mut last_commit = Instant::now();
    while let Some(first) = rx.blocking_recv() {
        match first {
            Request::Write(p) => batch.push(p),
            Request::Close(done) => closing = Some(done),
        }
        // Everything already waiting joins this commit: that is the group commit.
        while batch.len() < max_batch && closing.is_none() {
            match rx.try_recv() {
                Ok(Request::Write(p)) => batch.push(p),
                Ok(Request::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        // Indexing alone waits for more: each SQLite commit writes whole pages of the table
        // and its indexes, so one commit per message (one connection) wrote ~50 times the
        // message's size and slowed the log's fdatasync; a commit every few milliseconds
        // writes them once per group. Routing and queue work is answered at once.
        let index_only = batch.iter().all(|p| matches!(p, Pending::Index(_)));
        if index_only && closing.is_none() {
            let since = last_commit.elapsed();
            if since < INDEX_PAUSE {
                std::thread::sleep(INDEX_PAUSE - since);
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(Request::Write(p)) => batch.push(p),
                        Ok(Request::Close(done)) => {
                            closing = Some(done);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
        if !backlog.is_empty() {
            batch.insert(0, Pending::Index(std::mem::take(&mut backlog)));
        }
        if !batch.is_empty() {
            let started = Instant::now();
            let n = batch.len();
            let mut rows = 0usize;
            let mut top = indexed;
            for p in &batch {
                if let Pending::Index(l) = p {
                    rows += l.len();
                    top = l.iter().map(|l| l.seq).fold(top, u64::max);
                }
            }
            // Synced only when the log wants to give up a segment whose records this commit
            // completes (or at close); otherwise the next checkpoint syncs it.
            let wanted = shared.sync_wanted.load(Ordering::Acquire);
            let full = closing.is_some()
                || rows >= SYNC_ROWS
                || (wanted > shared.durable.load(Ordering::Acquire) && top >= wanted);
            let committed = commit(&mut conn, &batch, full);
            last_commit = Instant::now();
            match committed {
                Ok(outcomes) => {
                    metrics
                        .journal_index_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics.journal_rows.add(rows as i64);
                    indexed = top;
                    if full {
                        shared.durable.store(indexed, Ordering::Release);
                    }
                    for (p, done) in batch.drain(..).zip(outcomes) {
                        match (p, done) {
                            (Pending::Index(logged), _) => shared.indexed(&logged),
                            (Pending::Route(_, reply), _) => {
                                let _ = reply.send(Ok(()));
                            }
                            (Pending::Queue(_, reply), Done::Queue(l)) => {
                                let _ = reply.send(Ok(l));
                            }
                            (Pending::Queue(_, reply), _) => {
                                let _ = reply.send(Ok(None));
                            }
                        }
                    }
                    indexed_tx.send_replace(indexed);
                    if rows > 0 {
                        appended.notify_one();
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, batch = n, "journal commit failed");
                    for p in batch.drain(..) {
                        let err = StoreError::Database(e.to_string());
                        match p {
                            Pending::Index(mut logged) => backlog.append(&mut logged),
                            Pending::Route(_, reply) => {
                                let _ = reply.send(Err(err));
                            }
                            Pending::Queue(_, reply) => {
                                let _ = reply.send(Err(err));
                            }
                        }
                    }
                    // Do not spin on a full or failing disk.
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
        if let Some(done) = closing.take() {
            // Refuse what comes later; the receiver closing makes every later write fail.
            rx.close();
            while let Ok(req) = rx.try_recv() {
                match req {
                    Request::Write(Pending::Index(_)) => {}
                    Request::Write(Pending::Route(_, reply)) => {
                        let _ = reply.send(Err(StoreError::Closed));
                    }
                    Request::Write(Pending::Queue(_, reply)) => {
                        let _ = reply.send(Err(StoreError::Closed));
                    }
                    Request::Close(done) => {
                        let _ = done.send(());
                    }
                }
            }
            if !backlog.is_empty() {
                tracing::warn!(
                    records = backlog.len(),
                    "journal: records not indexed at shutdown; they are indexed from the log at the next start"
                );
            }
            let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
            let _ = done.send(());
            return;
        }
    }
}

fn commit(
    conn: &mut Connection,
    batch: &[Pending],
    full: bool,
) -> Result<Vec<Done>, rusqlite::Error> {
    if full {
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    let result = commit_batch(conn, batch, full);
    if full {
        if let Err(e) = conn.pragma_update(None, "synchronous", "NORMAL") {
            tracing::warn!(error = %e, "cannot set synchronous=NORMAL on the journal");
        }
    }
    result
}

fn commit_batch(
    conn: &mut Connection,
    batch: &[Pending],
    full: bool,
) -> Result<Vec<Done>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut done = Vec::with_capacity(batch.len());
    {
        let mut set_status =
            tx.prepare_cached("UPDATE messages SET status = ?2, error = ?3 WHERE id = ?1")?;
        let mut queue = tx.prepare_cached(
            "INSERT INTO deliveries (message_id, destination, route, format, state, attempts, created_at, \
             next_attempt_at, order_key, order_hash, idempotency_key, payload) \
             VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut cursor = tx.prepare_cached(
            "INSERT INTO cursors (name, position) VALUES ('route', ?1) \
             ON CONFLICT(name) DO UPDATE SET position = max(position, excluded.position)",
        )?;
        // Row order is log order (the route loop follows rowids). A record already indexed
        // (replayed twice) is left as it is.
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (id, received_at, listener, format, status, raw, message_type, trigger_event, \
             control_id, sending_application, sending_facility, receiving_application, receiving_facility, \
             version, charset, patient_id, error, ack, dedupe_key, duplicate_of) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) \
             ON CONFLICT(id) DO NOTHING",
        )?;
        let mut log_cursor = tx.prepare_cached(
            "INSERT INTO cursors (name, position) VALUES ('log', ?1) \
             ON CONFLICT(name) DO UPDATE SET position = max(position, excluded.position)",
        )?;
        let mut top = None;
        for pending in batch {
            let logged = match pending {
                Pending::Index(logged) => logged,
                Pending::Route(outcomes, _) => {
                    let now = crate::record::now_micros();
                    for o in outcomes {
                        set_status.execute(params![
                            o.message_id.to_string(),
                            o.status.as_str(),
                            o.error
                        ])?;
                        let message_id = o.message_id.to_string();
                        for d in &o.deliveries {
                            queue.execute(params![
                                d.message_id.to_string(),
                                d.destination,
                                d.route,
                                d.format.as_str(),
                                now,
                                d.order_key,
                                // Without an order key, deliveries spread over the
                                // workers by message: no order among them is promised.
                                i64::from(order_hash(Some(
                                    d.order_key.as_deref().unwrap_or(&message_id)
                                ))),
                                d.idempotency_key(),
                                d.payload,
                            ])?;
                        }
                    }
                    if let Some(last) = outcomes.iter().map(|o| o.seq).max() {
                        cursor.execute([last])?;
                    }
                    done.push(Done::Routed);
                    continue;
                }
                Pending::Queue(op, _) => {
                    done.push(Done::Queue(queue_op(&tx, op)?));
                    continue;
                }
            };
            for l in logged {
                let entry = &l.entry;
                let e = &entry.envelope;
                let h = &e.header;
                insert.execute(params![
                    e.id.to_string(),
                    e.received_at,
                    e.source,
                    e.format.as_str(),
                    entry.status.as_str(),
                    e.raw,
                    h.message_type,
                    h.trigger_event,
                    h.control_id,
                    h.sending_application,
                    h.sending_facility,
                    h.receiving_application,
                    h.receiving_facility,
                    h.version,
                    h.charset,
                    h.patient_id,
                    entry.error,
                    entry.ack,
                    entry.dedupe.as_ref().map(|d| &d.key),
                    l.duplicate_of.map(|u| u.to_string()),
                ])?;
                top = top.max(Some(l.seq));
            }
            done.push(Done::Indexed);
        }
        // A synced commit always writes the cursor, so that it has something to sync.
        if let Some(seq) = top.or(full.then_some(0)) {
            log_cursor.execute([i64::try_from(seq).unwrap_or(i64::MAX)])?;
        }
    }
    tx.commit()?;
    Ok(done)
}

/// Records one attempt's outcome (or gives a delivery back to its queue untried).
fn mark_one(
    tx: &rusqlite::Transaction<'_>,
    now: i64,
    seq: i64,
    attempt: u32,
    mark: &Mark,
) -> Result<(), rusqlite::Error> {
    let (outcome, detail) = match mark {
        Mark::Release => {
            tx.prepare_cached(
                "UPDATE deliveries SET state = 'queued', leased_until = NULL WHERE seq = ?1 AND state = 'leased'",
            )?
            .execute([seq])?;
            return Ok(());
        }
        Mark::Sent => {
            // The row itself records the successful attempt (its number, time and outcome);
            // `attempts()` lists it from there.
            tx.prepare_cached(
                "UPDATE deliveries SET state = 'sent', attempts = ?2, sent_at = ?3, leased_until = NULL, \
                 last_error = NULL WHERE seq = ?1",
            )?
            .execute(params![seq, attempt, now])?;
            return Ok(());
        }
        Mark::Retry { at, reason } => {
            tx.prepare_cached(
                "UPDATE deliveries SET state = 'queued', attempts = ?2, next_attempt_at = ?3, \
                         leased_until = NULL, last_error = ?4 WHERE seq = ?1",
            )?
            .execute(params![seq, attempt, at, reason])?;
            ("retry", Some(reason.as_str()))
        }
        Mark::Dead { reason } => {
            tx.prepare_cached(
                        "UPDATE deliveries SET state = 'dead', attempts = ?2, leased_until = NULL, last_error = ?3 \
                         WHERE seq = ?1",
                    )?
                    .execute(params![seq, attempt, reason])?;
            ("dead", Some(reason.as_str()))
        }
    };
    tx.prepare_cached(
                "INSERT OR REPLACE INTO delivery_attempts (seq, attempt, at, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![seq, attempt, now, outcome, detail])?;
    Ok(())
}

/// A pending delivery as a lease reads it.
struct PendingRow {
    seq: i64,
    state: String,
    leased_until: Option<i64>,
    next_at: i64,
    leased: Leased,
}

/// Applies one queue change inside the writer's transaction; a lease returns what it found.
fn queue_op(
    tx: &rusqlite::Transaction<'_>,
    op: &QueueOp,
) -> Result<Option<Lease>, rusqlite::Error> {
    let now = crate::record::now_micros();
    match op {
        QueueOp::Lease {
            destination,
            partition,
            policy,
            lease_micros,
            max,
            after,
        } => {
            let of = i64::from(partition.of.max(1));
            let index = i64::from(partition.index);
            // The pending part of this partition of the queue, in order (partial index).
            let mut stmt = tx.prepare_cached(
                "SELECT seq, state, leased_until, next_attempt_at, message_id, format, attempts, \
                 created_at, idempotency_key, payload FROM deliveries \
                 WHERE destination = ?1 AND state IN ('queued', 'leased') AND order_hash % ?2 = ?3 \
                 AND (?4 = 0 OR (next_attempt_at <= ?5 AND (state = 'queued' OR leased_until <= ?5))) \
                 AND seq > ?7 ORDER BY seq LIMIT ?6",
            )?;
            let skip = i64::from(*policy == HeadOfLine::Skip);
            let limit = i64::try_from((*max).max(1)).unwrap_or(1);
            let rows = stmt.query_map(
                params![destination, of, index, skip, now, limit, after],
                |r| {
                    Ok(PendingRow {
                        seq: r.get(0)?,
                        state: r.get(1)?,
                        leased_until: r.get(2)?,
                        next_at: r.get(3)?,
                        leased: Leased {
                            seq: r.get(0)?,
                            message_id: uuid::Uuid::parse_str(&r.get::<_, String>(4)?)
                                .unwrap_or_default(),
                            destination: destination.clone(),
                            format: r.get(5)?,
                            attempts: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
                            created_at: r.get(7)?,
                            idempotency_key: r.get(8)?,
                            payload: r.get(9)?,
                        },
                    })
                },
            )?;
            let mut taken = Vec::new();
            let mut wait = None;
            for row in rows {
                let row = row?;
                let in_flight = row.state == "leased" && row.leased_until.is_some_and(|u| u > now);
                let due = row.next_at <= now;
                if in_flight || !due {
                    // Under `block` nothing passes the first delivery that cannot go now.
                    if taken.is_empty() {
                        wait = Some(if in_flight {
                            row.leased_until
                        } else {
                            Some(row.next_at)
                        });
                    }
                    break;
                }
                taken.push(row);
            }
            if taken.is_empty() {
                if let Some(w) = wait {
                    return Ok(Some(Lease::Wait(w)));
                }
                if skip == 1 {
                    let (n, earliest): (i64, Option<i64>) = tx.query_row(
                        "SELECT count(*), min(CASE WHEN state = 'queued' THEN next_attempt_at ELSE leased_until END) \
                         FROM deliveries WHERE destination = ?1 AND state IN ('queued', 'leased') AND order_hash % ?2 = ?3",
                        params![destination, of, index],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    if n > 0 {
                        return Ok(Some(Lease::Wait(earliest)));
                    }
                }
                return Ok(Some(Lease::Empty));
            }
            let mut update = tx.prepare_cached(
                "UPDATE deliveries SET state = 'leased', leased_until = ?2 WHERE seq = ?1",
            )?;
            for row in &taken {
                update.execute(params![row.seq, now.saturating_add(*lease_micros)])?;
            }
            Ok(Some(Lease::Leased(
                taken.into_iter().map(|r| r.leased).collect(),
            )))
        }
        QueueOp::Marks(marks) => {
            for (seq, attempt, mark) in marks {
                mark_one(tx, now, *seq, *attempt, mark)?;
            }
            Ok(None)
        }
        QueueOp::Pause {
            destination,
            paused,
        } => {
            if *paused {
                tx.execute(
                    "INSERT OR IGNORE INTO paused (destination) VALUES (?1)",
                    [destination],
                )?;
            } else {
                tx.execute("DELETE FROM paused WHERE destination = ?1", [destination])?;
            }
            Ok(None)
        }
    }
}

impl Store for SqliteStore {
    async fn append(&self, entry: JournalEntry) -> Result<Appended, StoreError> {
        self.log.append(entry).await
    }

    async fn find_by_control_id(&self, control_id: &str) -> Result<Vec<StoredMessage>, StoreError> {
        let control_id = control_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, received_at, listener, status, raw, control_id, ack, error, duplicate_of \
                 FROM messages WHERE control_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([control_id], |r| {
                let id: String = r.get(0)?;
                let status: String = r.get(3)?;
                let dup: Option<String> = r.get(8)?;
                Ok(StoredMessage {
                    id: uuid::Uuid::parse_str(&id).unwrap_or_default(),
                    received_at: r.get(1)?,
                    listener: r.get(2)?,
                    status: Status::parse(&status).unwrap_or(Status::Rejected),
                    raw: r.get(4)?,
                    control_id: r.get(5)?,
                    ack: r.get(6)?,
                    error: r.get(7)?,
                    duplicate_of: dup.and_then(|d| uuid::Uuid::parse_str(&d).ok()),
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn count(&self, status: Status) -> Result<u64, StoreError> {
        self.read(move |conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM messages WHERE status = ?1",
                [status.as_str()],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    async fn status(&self, id: uuid::Uuid) -> Result<Option<(Status, Option<String>)>, StoreError> {
        self.read(move |conn| {
            let row: Option<(String, Option<String>)> = conn
                .query_row(
                    "SELECT status, error FROM messages WHERE id = ?1",
                    [id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok(row.and_then(|(s, e)| Status::parse(&s).map(|s| (s, e))))
        })
        .await
    }

    async fn route_cursor(&self) -> Result<i64, StoreError> {
        self.read(|conn| {
            let p: Option<i64> = conn
                .query_row(
                    "SELECT position FROM cursors WHERE name = 'route'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(p.unwrap_or(0))
        })
        .await
    }

    async fn pending_routing(&self, after: i64, limit: usize) -> Result<Vec<Routable>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT rowid, id, listener, raw, format, trigger_event FROM messages \
                 WHERE rowid > ?1 AND status = 'received' ORDER BY rowid LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| {
                let id: String = r.get(1)?;
                Ok(Routable {
                    seq: r.get(0)?,
                    id: uuid::Uuid::parse_str(&id).unwrap_or_default(),
                    listener: r.get(2)?,
                    raw: r.get(3)?,
                    format: r.get(4)?,
                    event: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn record_routing(&self, outcomes: Vec<RoutingOutcome>) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Write(Pending::Route(outcomes, reply)))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    async fn deliveries_for(
        &self,
        message_id: uuid::Uuid,
    ) -> Result<Vec<StoredDelivery>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, message_id, destination, route, format, state, idempotency_key, payload \
                 , attempts, last_error FROM deliveries WHERE message_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([message_id.to_string()], |r| {
                let id: String = r.get(1)?;
                Ok(StoredDelivery {
                    seq: r.get(0)?,
                    message_id: uuid::Uuid::parse_str(&id).unwrap_or_default(),
                    destination: r.get(2)?,
                    route: r.get(3)?,
                    format: r.get(4)?,
                    state: r.get(5)?,
                    idempotency_key: r.get(6)?,
                    payload: r.get(7)?,
                    attempts: u32::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
                    last_error: r.get(9)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn queue_depth(&self, destination: &str) -> Result<u64, StoreError> {
        let destination = destination.to_string();
        self.read(move |conn| {
            let n: i64 = conn.query_row(
                "SELECT count(*) FROM deliveries WHERE destination = ?1 AND state IN ('queued', 'leased')",
                [destination],
                |r| r.get(0),
            )?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    fn appended(&self) -> Arc<tokio::sync::Notify> {
        self.appended.clone()
    }

    async fn lease_after(
        &self,
        destination: &str,
        partition: Partition,
        policy: HeadOfLine,
        lease_micros: i64,
        max: usize,
        after: i64,
    ) -> Result<Lease, StoreError> {
        let op = QueueOp::Lease {
            destination: destination.to_string(),
            partition,
            policy,
            lease_micros,
            max,
            after,
        };
        Ok(self.queue(op).await?.unwrap_or(Lease::Empty))
    }

    async fn mark(&self, marks: Vec<(i64, u32, Mark)>) -> Result<(), StoreError> {
        self.queue(QueueOp::Marks(marks)).await.map(|_| ())
    }

    fn mark_detached(&self, marks: Vec<(i64, u32, Mark)>) -> Result<(), Vec<(i64, u32, Mark)>> {
        // Nobody waits for the answer; a failed commit means the leases run out and the
        // deliveries are sent again (at least once).
        let (reply, _) = oneshot::channel();
        self.tx
            .send(Request::Write(Pending::Queue(QueueOp::Marks(marks), reply)))
            .map_err(|e| match e.0 {
                Request::Write(Pending::Queue(QueueOp::Marks(m), _)) => m,
                _ => Vec::new(),
            })
    }

    async fn set_paused(&self, destination: &str, paused: bool) -> Result<(), StoreError> {
        let op = QueueOp::Pause {
            destination: destination.to_string(),
            paused,
        };
        self.queue(op).await?;
        if let Ok(mut p) = self.paused.lock() {
            if paused {
                p.insert(destination.to_string());
            } else {
                p.remove(destination);
            }
        }
        Ok(())
    }

    async fn is_paused(&self, destination: &str) -> Result<bool, StoreError> {
        self.paused
            .lock()
            .map(|p| p.contains(destination))
            .map_err(|_| StoreError::Database("the paused set is poisoned".into()))
    }

    async fn queue_stats(&self, destination: &str) -> Result<QueueStats, StoreError> {
        let destination = destination.to_string();
        self.read(move |conn| {
            let (depth, oldest): (i64, Option<i64>) = conn.query_row(
                "SELECT count(*), min(created_at) FROM deliveries \
                 WHERE destination = ?1 AND state IN ('queued', 'leased')",
                [destination],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(QueueStats {
                depth: u64::try_from(depth).unwrap_or(0),
                oldest,
            })
        })
        .await
    }

    async fn attempts(&self, seq: i64) -> Result<Vec<Attempt>, StoreError> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                // UNION, not UNION ALL: journals written before the sent attempt moved into
                // the delivery's row hold it in both places, with the same values.
                "SELECT attempt, at, outcome, detail FROM delivery_attempts WHERE seq = ?1 \
                 UNION SELECT attempts, sent_at, 'sent', NULL FROM deliveries WHERE seq = ?1 AND state = 'sent' \
                 ORDER BY 1",
            )?;
            let rows = stmt.query_map([seq], |r| {
                Ok(Attempt {
                    attempt: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    at: r.get(1)?,
                    outcome: r.get(2)?,
                    detail: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn close(&self) -> Result<(), StoreError> {
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some((stop, handle)) = checkpointer {
            let _ = stop.send(());
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        // Queued appends are written, later ones refused, the last records handed to the
        // writer, and then the writer closed; `done` fires when it has indexed them and stopped.
        let (done, rx) = oneshot::channel();
        self.log.close(done).await;
        let _ = rx.await;
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hl7::Message;
    use crate::record::{Envelope, Format, Header};
    use crate::store::Dedupe;

    fn entry(raw: &[u8], ack: &[u8]) -> JournalEntry {
        let m = Message::parse(raw).unwrap();
        let header = Header::of(&m);
        JournalEntry {
            dedupe: header.dedupe_key().map(|key| Dedupe {
                key,
                window_micros: 86_400_000_000,
            }),
            envelope: Envelope {
                id: uuid::Uuid::now_v7(),
                received_at: crate::record::now_micros(),
                source: "test".into(),
                format: Format::Hl7v2,
                raw: raw.to_vec(),
                header,
            },
            status: Status::Received,
            error: None,
            ack: Some(ack.to_vec()),
        }
    }

    fn temp_db(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aorta-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("journal.db")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_dedupes_and_reopens() {
        let path = temp_db("basic");
        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        let a = b"MSH|^~\\&|LAB|H|||||ORU^R01|C1|P|2.5\rPID|1||42\r";
        assert_eq!(
            store.append(entry(a, b"ACK-1")).await.unwrap(),
            Appended::New
        );
        match store.append(entry(a, b"ACK-2")).await.unwrap() {
            Appended::Duplicate { original_ack, .. } => {
                assert_eq!(original_ack.as_deref(), Some(&b"ACK-1"[..]))
            }
            other => panic!("{other:?}"),
        }
        let other_sender = b"MSH|^~\\&|LAB2|H|||||ORU^R01|C1|P|2.5\r";
        assert_eq!(
            store.append(entry(other_sender, b"x")).await.unwrap(),
            Appended::New
        );
        // Many concurrent appends share commits.
        let mut tasks = Vec::new();
        for i in 0..200 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let raw = format!("MSH|^~\\&|LAB|H|||||ORU^R01|N{i}|P|2.5\r");
                s.append(entry(raw.as_bytes(), b"A")).await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), Appended::New);
        }
        store.close().await.unwrap();
        assert!(matches!(
            store.append(entry(a, b"late")).await,
            Err(StoreError::Closed)
        ));

        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        assert_eq!(store.count(Status::Received).await.unwrap(), 202);
        assert_eq!(store.count(Status::Duplicate).await.unwrap(), 1);
        let found = store.find_by_control_id("C1").await.unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(found[1].status, Status::Duplicate);
        assert_eq!(found[1].duplicate_of, Some(found[0].id));
        // Still a duplicate after a restart.
        assert!(matches!(
            store.append(entry(a, b"ACK-3")).await.unwrap(),
            Appended::Duplicate { .. }
        ));
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_appends_do_not_stall_the_log() {
        // Callers can go away mid-append (an HTTP client closes its request): whoever was
        // leading or waiting, the others must still be answered and the log keep going.
        let path = temp_db("dropped");
        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        let mut kept = Vec::new();
        for i in 0..300 {
            let s = store.clone();
            let task = tokio::spawn(async move {
                let raw = format!("MSH|^~\\&|LAB|H|||||ORU^R01|D{i}|P|2.5\r");
                s.append(entry(raw.as_bytes(), b"A")).await
            });
            if i % 3 == 0 {
                task.abort();
            } else {
                kept.push(task);
            }
        }
        for t in kept {
            let done = tokio::time::timeout(std::time::Duration::from_secs(20), t).await;
            assert_eq!(
                done.expect("an append stalled").unwrap().unwrap(),
                Appended::New
            );
        }
        let last = entry(b"MSH|^~\\&|LAB|H|||||ORU^R01|LAST|P|2.5\r", b"A");
        assert_eq!(store.append(last).await.unwrap(), Appended::New);
        let received = store.count(Status::Received).await.unwrap();
        assert!((201..=301).contains(&received), "{received}");
        store.close().await.unwrap();
        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        assert_eq!(store.count(Status::Received).await.unwrap(), received);
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replays_records_the_index_missed() {
        let path = temp_db("replay");
        let options = SqliteOptions::new(&path);
        let store = SqliteStore::open(options.clone(), Metrics::new()).unwrap();
        let first = entry(b"MSH|^~\\&|LAB|H|||||ORU^R01|P1|P|2.5\r", b"ACK-P1");
        let first_id = first.envelope.id;
        store.append(first).await.unwrap();
        store.close().await.unwrap();
        // A crash after the log's fdatasync and before the index commit: records in the log
        // that SQLite has not seen (written here without the store).
        let indexed = log_position(&open_connection(&path).unwrap()).unwrap();
        assert_eq!(indexed, 1);
        let (mut log, rec) =
            SegmentLog::open(&options.log_dir, options.segment_bytes, indexed).unwrap();
        assert!(rec.records.is_empty());
        let lost = entry(b"MSH|^~\\&|LAB|H|||||ORU^R01|P2|P|2.5\r", b"ACK-P2");
        let lost_id = lost.envelope.id;
        let mut payload = Vec::new();
        logwriter::encode(&lost, None, &mut payload);
        assert_eq!(log.append(&[&payload]).unwrap(), 2);
        drop(log);

        let store = SqliteStore::open(options, Metrics::new()).unwrap();
        let found = store.find_by_control_id("P2").await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, lost_id);
        assert_eq!(found[0].ack.as_deref(), Some(&b"ACK-P2"[..]));
        // Routed in log order, and its copies are duplicates of it.
        let pending = store.pending_routing(0, 10).await.unwrap();
        let ids: Vec<_> = pending.iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![first_id, lost_id]);
        match store
            .append(entry(b"MSH|^~\\&|LAB|H|||||ORU^R01|P2|P|2.5\r", b"x"))
            .await
            .unwrap()
        {
            Appended::Duplicate {
                original,
                original_ack,
            } => {
                assert_eq!(original, lost_id);
                assert_eq!(original_ack.as_deref(), Some(&b"ACK-P2"[..]));
            }
            other => panic!("{other:?}"),
        }
        store.close().await.unwrap();
        // Nothing is indexed twice by a second open.
        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        assert_eq!(store.count(Status::Received).await.unwrap(), 2);
        assert_eq!(store.count(Status::Duplicate).await.unwrap(), 1);
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn routing_is_one_transaction_and_restart_safe() {
        use crate::record::{Delivery, OutputFormat};
        let path = temp_db("routing");
        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        let mut ids = Vec::new();
        for i in 0..3 {
            let raw = format!("MSH|^~\\&|LAB|H|||||ORU^R01|R{i}|P|2.5\r");
            let e = entry(raw.as_bytes(), b"A");
            ids.push(e.envelope.id);
            store.append(e).await.unwrap();
        }
        assert_eq!(store.route_cursor().await.unwrap(), 0);
        let pending = store.pending_routing(0, 10).await.unwrap();
        assert_eq!(pending.iter().map(|p| p.id).collect::<Vec<_>>(), ids);
        let delivery = |id: uuid::Uuid, dest: &str| Delivery {
            message_id: id,
            route: "r".into(),
            destination: dest.into(),
            format: OutputFormat::Hl7v2,
            payload: b"payload".to_vec(),
            order_key: None,
        };
        store
            .record_routing(vec![
                RoutingOutcome {
                    seq: pending[0].seq,
                    message_id: ids[0],
                    status: Status::Routed,
                    error: None,
                    deliveries: vec![delivery(ids[0], "emr"), delivery(ids[0], "archive")],
                },
                RoutingOutcome {
                    seq: pending[1].seq,
                    message_id: ids[1],
                    status: Status::Errored,
                    error: Some("route r: step 1: boom".into()),
                    deliveries: vec![],
                },
            ])
            .await
            .unwrap();
        assert_eq!(store.route_cursor().await.unwrap(), pending[1].seq);
        let rest = store.pending_routing(pending[1].seq, 10).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].id, ids[2]);
        assert_eq!(store.queue_depth("emr").await.unwrap(), 1);
        let d = store.deliveries_for(ids[0]).await.unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].idempotency_key, format!("{}:emr", ids[0]));
        assert_eq!(
            store.status(ids[1]).await.unwrap(),
            Some((Status::Errored, Some("route r: step 1: boom".into())))
        );
        // A routed original still catches its duplicates.
        let again = entry(b"MSH|^~\\&|LAB|H|||||ORU^R01|R0|P|2.5\r", b"B");
        assert!(matches!(
            store.append(again).await.unwrap(),
            Appended::Duplicate { .. }
        ));
        store.close().await.unwrap();
        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        assert_eq!(store.route_cursor().await.unwrap(), pending[1].seq);
        assert_eq!(store.count(Status::Routed).await.unwrap(), 1);
        store.close().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queues_lease_retry_and_keep_order() {
        use crate::record::{Delivery, OutputFormat};
        use crate::store::{HeadOfLine, Lease, Mark, Partition};
        let path = temp_db("queue");
        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        let one = Partition { index: 0, of: 1 };
        let hour = 3_600_000_000;
        let e = entry(b"MSH|^~\\&|LAB|H|||||ORU^R01|Q1|P|2.5\r", b"A");
        let id = e.envelope.id;
        store.append(e).await.unwrap();
        let pending = store.pending_routing(0, 10).await.unwrap();
        let d = |n: u8, key: &str| Delivery {
            message_id: id,
            route: "r".into(),
            destination: "emr".into(),
            format: OutputFormat::Hl7v2,
            payload: vec![n],
            order_key: Some(key.into()),
        };
        store
            .record_routing(vec![RoutingOutcome {
                seq: pending[0].seq,
                message_id: id,
                status: Status::Routed,
                error: None,
                deliveries: vec![d(1, "A"), d(2, "B"), d(3, "A")],
            }])
            .await
            .unwrap();
        let lease = |policy| store.lease("emr", one, policy, hour, 1);
        let Lease::Leased(mut first) = lease(HeadOfLine::Block).await.unwrap() else {
            panic!()
        };
        let first = first.remove(0);
        assert_eq!(first.payload, vec![1]);
        // The head is in flight: block waits, skip takes the next one.
        assert!(matches!(
            lease(HeadOfLine::Block).await.unwrap(),
            Lease::Wait(Some(_))
        ));
        // The worker holding the head (published, confirm pending) may take what follows it,
        // in order, without releasing it.
        match store
            .lease_after("emr", one, HeadOfLine::Block, 1, 5, first.seq)
            .await
            .unwrap()
        {
            Lease::Leased(next) => {
                let got: Vec<u8> = next.iter().map(|l| l.payload[0]).collect();
                assert_eq!(got, vec![2, 3]);
                // Given back untried (leases of 1 µs would also lapse by themselves).
                let back = next.iter().map(|l| (l.seq, 0, Mark::Release)).collect();
                store.mark(back).await.unwrap();
            }
            other => panic!("{other:?}"),
        }
        let Lease::Leased(mut second) = lease(HeadOfLine::Skip).await.unwrap() else {
            panic!()
        };
        let second = second.remove(0);
        assert_eq!(second.payload, vec![2]);
        let later = crate::record::now_micros() + hour;
        store
            .mark(vec![(
                first.seq,
                1,
                Mark::Retry {
                    at: later,
                    reason: "503 Service Unavailable".into(),
                },
            )])
            .await
            .unwrap();
        // A retrying head blocks under `block` ...
        assert_eq!(
            lease(HeadOfLine::Block).await.unwrap(),
            Lease::Wait(Some(later))
        );
        // ... and is passed under `skip`.
        let Lease::Leased(mut third) = lease(HeadOfLine::Skip).await.unwrap() else {
            panic!()
        };
        let third = third.remove(0);
        assert_eq!(third.payload, vec![3]);
        store.mark(vec![(second.seq, 1, Mark::Sent)]).await.unwrap();
        store
            .mark(vec![(
                third.seq,
                1,
                Mark::Dead {
                    reason: "400 Bad Request".into(),
                },
            )])
            .await
            .unwrap();
        assert!(
            matches!(lease(HeadOfLine::Skip).await.unwrap(), Lease::Wait(Some(t)) if t == later)
        );
        assert_eq!(store.queue_stats("emr").await.unwrap().depth, 1);
        let attempts = store.attempts(first.seq).await.unwrap();
        assert_eq!(attempts[0].outcome, "retry");
        assert_eq!(
            attempts[0].detail.as_deref(),
            Some("503 Service Unavailable")
        );
        let all = store.deliveries_for(id).await.unwrap();
        assert_eq!(
            all.iter().map(|d| d.state.as_str()).collect::<Vec<_>>(),
            ["queued", "sent", "dead"]
        );
        assert_eq!(
            all[0].last_error.as_deref(),
            Some("503 Service Unavailable")
        );
        // Partitions by order key: A and B land in fixed partitions of two.
        let pa = crate::store::order_hash(Some("A")) % 2;
        let other = Partition {
            index: 1 - pa,
            of: 2,
        };
        store
            .mark(vec![(
                first.seq,
                2,
                Mark::Retry {
                    at: 0,
                    reason: "again".into(),
                },
            )])
            .await
            .unwrap();
        assert_eq!(
            store
                .lease("emr", other, HeadOfLine::Block, hour, 1)
                .await
                .unwrap(),
            Lease::Empty
        );
        assert!(matches!(
            store.lease("emr", Partition { index: pa, of: 2 }, HeadOfLine::Block, hour, 1).await.unwrap(),
            Lease::Leased(l) if l[0].payload == vec![1] && l[0].attempts == 2
        ));
        // Pause and resume.
        store.set_paused("emr", true).await.unwrap();
        assert!(store.is_paused("emr").await.unwrap());
        store.set_paused("emr", false).await.unwrap();
        assert!(!store.is_paused("emr").await.unwrap());
        store.close().await.unwrap();
        // A lease held when the process stopped is void after a restart.
        let store = SqliteStore::open(SqliteOptions::new(&path), Metrics::new()).unwrap();
        assert!(matches!(
            store.lease("emr", one, HeadOfLine::Block, hour, 1).await.unwrap(),
            Lease::Leased(l) if l[0].payload == vec![1]
        ));
        store.close().await.unwrap();
    }
}
