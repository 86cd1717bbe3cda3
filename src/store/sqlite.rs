//! The embedded journal: SQLite in WAL mode with `synchronous=FULL`, one writer thread doing
//! group commit, and short-lived reader connections for queries.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::{Appended, JournalEntry, Status, Store, StoreError, StoredMessage};
use crate::metrics::Metrics;

/// Settings of the embedded journal.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file (created with its directory when missing).
    pub path: PathBuf,
    /// Most appends in one commit.
    pub max_batch: usize,
    /// Appends that may wait for the writer before `append` callers wait to enqueue
    /// (backpressure: listeners stop reading when the journal cannot keep up).
    pub queue_depth: usize,
}

impl SqliteOptions {
    /// Defaults for a database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            max_batch: 1024,
            queue_depth: 8192,
        }
    }
}

/// An append waiting for its commit, with where to send the outcome.
type Pending = (
    Box<JournalEntry>,
    oneshot::Sender<Result<Appended, StoreError>>,
);

enum Request {
    Append(
        Box<JournalEntry>,
        oneshot::Sender<Result<Appended, StoreError>>,
    ),
    Close(oneshot::Sender<()>),
}

/// The SQLite journal. Cheap to clone; all clones share the writer.
#[derive(Clone)]
pub struct SqliteStore {
    tx: mpsc::Sender<Request>,
    path: PathBuf,
    writer: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    checkpointer: Arc<Mutex<Option<Checkpointer>>>,
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
";

fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // WAL lets readers run beside the writer; FULL makes every commit durable (fsync of the WAL).
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the journal and starts its writer thread.
    pub fn open(options: SqliteOptions, metrics: Metrics) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = options.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Database(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = open_connection(&options.path)?;
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
        let rows: i64 = conn.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
        metrics.journal_rows.set(rows);
        let (tx, rx) = mpsc::channel(options.queue_depth.max(1));
        let max_batch = options.max_batch.max(1);
        let writer = std::thread::Builder::new()
            .name("aorta-journal".into())
            .spawn(move || writer_loop(conn, rx, max_batch, metrics))
            .map_err(|e| StoreError::Database(format!("starting the journal writer: {e}")))?;
        Ok(SqliteStore {
            tx,
            path: options.path,
            writer: Arc::new(Mutex::new(Some(writer))),
            checkpointer: Arc::new(Mutex::new(Some((stop_checkpoints, checkpointer)))),
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open_connection(&path)?;
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Database(format!("reader task failed: {e}")))?
    }
}

fn writer_loop(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
    metrics: Metrics,
) {
    let mut batch: Vec<Pending> = Vec::new();
    let mut closing: Option<oneshot::Sender<()>> = None;
    while let Some(first) = rx.blocking_recv() {
        match first {
            Request::Append(e, reply) => batch.push((e, reply)),
            Request::Close(done) => closing = Some(done),
        }
        // Everything already waiting joins this commit: that is the group commit.
        while batch.len() < max_batch && closing.is_none() {
            match rx.try_recv() {
                Ok(Request::Append(e, reply)) => batch.push((e, reply)),
                Ok(Request::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            let started = Instant::now();
            let n = batch.len();
            match commit(&mut conn, &batch) {
                Ok(outcomes) => {
                    metrics.journal_batch_size.observe(n as f64);
                    metrics
                        .journal_commit_seconds
                        .observe(started.elapsed().as_secs_f64());
                    metrics.journal_rows.add(n as i64);
                    for ((_, reply), outcome) in batch.drain(..).zip(outcomes) {
                        let _ = reply.send(Ok(outcome));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, batch = n, "journal commit failed");
                    for (_, reply) in batch.drain(..) {
                        let _ = reply.send(Err(StoreError::Database(e.to_string())));
                    }
                }
            }
        }
        if let Some(done) = closing.take() {
            // Refuse what comes later; the receiver closing makes every later append fail.
            rx.close();
            while let Ok(req) = rx.try_recv() {
                if let Request::Append(_, reply) = req {
                    let _ = reply.send(Err(StoreError::Closed));
                }
            }
            let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
            let _ = done.send(());
            return;
        }
    }
}

fn commit(conn: &mut Connection, batch: &[Pending]) -> Result<Vec<Appended>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut find_original = tx.prepare_cached(
            "SELECT id, ack FROM messages WHERE control_id = ?1 AND dedupe_key = ?2 AND received_at >= ?3 \
             AND status = 'received' ORDER BY received_at LIMIT 1",
        )?;
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (id, received_at, listener, format, status, raw, message_type, trigger_event, \
             control_id, sending_application, sending_facility, receiving_application, receiving_facility, \
             version, charset, patient_id, error, ack, dedupe_key, duplicate_of) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        )?;
        for (entry, _) in batch {
            let e = &entry.envelope;
            let mut status = entry.status;
            let mut outcome = Appended::New;
            let mut duplicate_of = None;
            if let (Some(d), Status::Received) = (&entry.dedupe, entry.status) {
                let since = e.received_at.saturating_sub(d.window_micros);
                let found: Option<(String, Option<Vec<u8>>)> = find_original
                    .query_row(params![e.header.control_id, d.key, since], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((id, ack)) = found {
                    status = Status::Duplicate;
                    duplicate_of = Some(id.clone());
                    outcome = Appended::Duplicate {
                        original: uuid::Uuid::parse_str(&id).unwrap_or_default(),
                        original_ack: ack,
                    };
                }
            }
            let h = &e.header;
            insert.execute(params![
                e.id.to_string(),
                e.received_at,
                e.source,
                e.format.as_str(),
                status.as_str(),
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
                duplicate_of,
            ])?;
            outcomes.push(outcome);
        }
    }
    tx.commit()?;
    Ok(outcomes)
}

impl Store for SqliteStore {
    async fn append(&self, entry: JournalEntry) -> Result<Appended, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Append(Box::new(entry), reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
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

    async fn close(&self) -> Result<(), StoreError> {
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut c| c.take());
        if let Some((stop, handle)) = checkpointer {
            let _ = stop.send(());
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        let (done, rx) = oneshot::channel();
        if self.tx.send(Request::Close(done)).await.is_ok() {
            let _ = rx.await;
        }
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
}
