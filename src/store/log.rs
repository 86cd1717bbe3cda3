//! The journal's durability point: an append-only log in preallocated segment files.
//!
//! A group of records is written with one `pwrite` and made durable with one `fdatasync`.
//! Segments are preallocated (zero-filled, synced, then renamed into place) so that a write
//! overwrites blocks the filesystem already has: `fdatasync` then flushes data only, with no
//! filesystem-journal commit for a grown file size, which made it about 1.7× faster than an
//! append on this machine's ext4 (see docs/benchmarks.md). Segments whose records are indexed
//! and durable in SQLite are recycled as later segments, as PostgreSQL recycles WAL files.
//!
//! # Record framing
//! ```text
//! u32 LE  length of (seq + payload)      0 = end of the written part of a segment
//! u32 LE  CRC-32 of (seq + payload)
//! u64 LE  seq                            1, 2, 3, ... across segments, never reused
//! payload
//! ```
//! Reading a segment stops at the first frame that is zero, cut short, fails its CRC, or does
//! not carry the next sequence number. A crash can leave a torn frame only after the last
//! synced group (nothing after it was acknowledged), and a recycled segment holds stale frames
//! with older sequence numbers after the newly written ones: both end the read. Writing always
//! resumes in a fresh segment after an open, so stale or torn bytes are never continued.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Bytes in a frame before the payload.
const HEADER: usize = 16;

/// One record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload.
    pub payload: Vec<u8>,
}

/// A segment file being written or kept.
struct Segment {
    index: u64,
    file: File,
    capacity: u64,
    /// Where the next frame goes.
    pos: u64,
    /// The last sequence number written into it (0: none).
    last_seq: u64,
}

/// A segment closed for writing, kept until its records are indexed and durable elsewhere.
#[derive(Debug, Clone, Copy)]
struct Closed {
    index: u64,
    last_seq: u64,
}

/// The segment log: one writer (the journal's log thread) owns it.
pub struct SegmentLog {
    dir: PathBuf,
    segment_bytes: u64,
    /// The size of the next new segment: sizes double from 1 MiB up to `segment_bytes`, so a
    /// short-lived journal (a test, a trial run) does not zero-fill full segments.
    grow: u64,
    current: Segment,
    closed: Vec<Closed>,
    /// The next segment, being prepared on its own thread.
    spare: Option<JoinHandle<io::Result<Segment>>>,
    /// Released segment files kept for reuse, by index.
    recycled: Vec<u64>,
    next_index: u64,
    next_seq: u64,
    buf: Vec<u8>,
}

/// What opening found in the segments left by earlier runs.
pub struct Recovered {
    /// Every readable record, in order.
    pub records: Vec<LogRecord>,
    /// Segments whose read ended on a torn or corrupt frame rather than on clean zeros.
    pub torn: usize,
}

fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}.seg"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a zero-filled segment of `bytes`, durable (file and directory entry) before it is
/// used: a segment that vanished in a crash would take acknowledged records with it.
fn create_segment(dir: &Path, index: u64, bytes: u64) -> io::Result<Segment> {
    let tmp = dir.join(format!("{index:020}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < bytes {
        let n = usize::try_from((bytes - at).min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    let path = segment_path(dir, index);
    fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    Ok(Segment {
        index,
        file,
        capacity: bytes,
        pos: 0,
        last_seq: 0,
    })
}

/// Renames a released segment to a new index for reuse (its stale frames have older sequence
/// numbers, so a read stops at them).
fn reuse_segment(dir: &Path, old: u64, index: u64) -> io::Result<Segment> {
    let path = segment_path(dir, index);
    fs::rename(segment_path(dir, old), &path)?;
    sync_dir(dir)?;
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let capacity = file.metadata()?.len();
    Ok(Segment {
        index,
        file,
        capacity,
        pos: 0,
        last_seq: 0,
    })
}

/// Reads a segment's frames from `expected` on; returns them and whether the read ended on
/// something other than clean zeros or the segment's end.
fn read_segment(
    path: &Path,
    expected: &mut Option<u64>,
    indexed: u64,
) -> io::Result<(Vec<LogRecord>, bool)> {
    let data = fs::read(path)?;
    let mut records = Vec::new();
    let mut at = 0usize;
    let torn = loop {
        let Some(head) = data.get(at..at + HEADER) else {
            break data[at.min(data.len())..].iter().any(|b| *b != 0);
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if len == 0 {
            break data[at..].iter().take(HEADER).any(|b| *b != 0);
        }
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(body) = len
            .checked_sub(8)
            .and_then(|p| data.get(at + 8..at + HEADER + p))
        else {
            break true;
        };
        if crc32fast::hash(body) != crc {
            break true;
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&body[..8]);
        let seq = u64::from_le_bytes(seq_bytes);
        match *expected {
            // A recycled segment's stale frames carry older numbers: the written part ended.
            Some(e) if seq < e => break false,
            // Records up to `indexed` are in the index; their segments may be gone.
            Some(e) if seq > e && seq - 1 > indexed => {
                tracing::warn!(
                    segment = %path.display(),
                    expected = e.max(indexed + 1),
                    found = seq,
                    "journal log: records missing before this one (a segment was removed?)"
                );
            }
            None if seq - 1 > indexed => {
                tracing::warn!(
                    segment = %path.display(),
                    expected = indexed + 1,
                    found = seq,
                    "journal log: records missing before this one (a segment was removed?)"
                );
            }
            _ => {}
        }
        *expected = Some(seq + 1);
        if seq > indexed {
            records.push(LogRecord {
                seq,
                payload: body[8..].to_vec(),
            });
        }
        at += HEADER + (len - 8);
    };
    Ok((records, torn))
}

impl SegmentLog {
    /// Opens the log in `dir` (created when missing): reads the records earlier runs left after
    /// `indexed` (the last one the index holds) and starts a fresh segment for new writes.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        indexed: u64,
    ) -> io::Result<(SegmentLog, Recovered)> {
        fs::create_dir_all(dir)?;
        let mut indexes = Vec::new();
        for entry in fs::read_dir(dir)? {
            let path = entry?.path();
            match path.extension().and_then(|e| e.to_str()) {
                // A segment whose preparation a crash interrupted: never used.
                Some("tmp") => fs::remove_file(&path)?,
                Some("seg") => {
                    if let Some(i) = path
                        .file_stem()
                        .and_then(|s| s.to_str())
                        .and_then(|s| s.parse::<u64>().ok())
                    {
                        indexes.push(i);
                    }
                }
                _ => {}
            }
        }
        indexes.sort_unstable();
        let mut records = Vec::new();
        let mut closed = Vec::new();
        let mut torn = 0;
        let mut expected = None;
        for &index in &indexes {
            let before = expected;
            let (mut found, was_torn) =
                read_segment(&segment_path(dir, index), &mut expected, indexed)?;
            torn += usize::from(was_torn);
            let last_seq = match (expected, before) {
                (Some(e), b) if Some(e) != b => e - 1,
                _ => 0,
            };
            closed.push(Closed { index, last_seq });
            records.append(&mut found);
        }
        // Never reuse a number the index already holds, even if the segments are gone.
        let next_seq = expected.unwrap_or(1).max(indexed + 1);
        let next_index = indexes.last().map_or(1, |i| i + 1);
        let segment_bytes = segment_bytes.max(64 * 1024);
        let grow = segment_bytes.min(1 << 20);
        let current = create_segment(dir, next_index, grow)?;
        let mut log = SegmentLog {
            dir: dir.to_path_buf(),
            segment_bytes,
            grow: (grow * 2).min(segment_bytes),
            current,
            closed,
            spare: None,
            recycled: Vec::new(),
            next_index: next_index + 1,
            next_seq,
            buf: Vec::new(),
        };
        log.prepare_spare();
        Ok((log, Recovered { records, torn }))
    }

    /// The sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Waits until the next segment's preparation (a thread creating or renaming its file) is
    /// done, as `drop` does: a closed log must leave the directory still for whoever opens it
    /// next, in this process or another.
    pub fn settle(&mut self) {
        if let Some(h) = self.spare.take() {
            let _ = h.join();
        }
    }

    fn prepare_spare(&mut self) {
        if self.spare.is_some() {
            return;
        }
        let dir = self.dir.clone();
        let index = self.next_index;
        self.next_index += 1;
        let bytes = self.next_size();
        let reuse = self.recycled.pop();
        self.spare = Some(std::thread::spawn(move || match reuse {
            Some(old) => reuse_segment(&dir, old, index),
            None => create_segment(&dir, index, bytes),
        }));
    }

    /// Closes the current segment (syncing it) and moves to the spare, or to a segment made
    /// now for a record larger than a whole segment.
    fn next_segment(&mut self, need: u64) -> io::Result<()> {
        self.current.file.sync_data()?;
        let waited = std::time::Instant::now();
        let spare = match self.spare.take() {
            Some(h) => {
                let s = h
                    .join()
                    .map_err(|_| io::Error::other("the segment preparer panicked"))??;
                let ms = waited.elapsed().as_millis();
                if ms >= 5 {
                    // Appends wait meanwhile: a sign that segments are too small for the load.
                    tracing::info!(
                        waited_ms = ms,
                        "journal log: waited for the next segment to be prepared"
                    );
                }
                s
            }
            None => {
                let index = self.take_index();
                let bytes = self.next_size();
                create_segment(&self.dir, index, bytes)?
            }
        };
        let fresh = if spare.capacity >= need {
            spare
        } else {
            // Keep the spare for later; this record needs its own, larger segment.
            self.recycled.push(spare.index);
            let index = self.take_index();
            create_segment(&self.dir, index, need)?
        };
        let old = std::mem::replace(&mut self.current, fresh);
        self.closed.push(Closed {
            index: old.index,
            last_seq: old.last_seq,
        });
        self.prepare_spare();
        Ok(())
    }

    fn next_size(&mut self) -> u64 {
        let size = self.grow;
        self.grow = (self.grow * 2).min(self.segment_bytes);
        size
    }

    fn take_index(&mut self) -> u64 {
        let i = self.next_index;
        self.next_index += 1;
        i
    }

    /// Writes the payloads as consecutive records and makes them durable; returns the sequence
    /// number of the first. Nothing is acknowledged before this returns.
    pub fn append(&mut self, payloads: &[&[u8]]) -> io::Result<u64> {
        let first = self.next_seq;
        self.buf.clear();
        for payload in payloads {
            let frame = (HEADER + payload.len()) as u64;
            if self.current.pos + self.buf.len() as u64 + frame > self.current.capacity {
                self.flush_buf()?;
                // A frame must be followed by a zero header or the end, which a segment of
                // exactly the frame's size gives.
                self.next_segment(frame)?;
            }
            let len = u32::try_from(payload.len() + 8)
                .map_err(|_| io::Error::other("a journal record over 4 GiB"))?;
            let seq = self.next_seq.to_le_bytes();
            let mut h = crc32fast::Hasher::new();
            h.update(&seq);
            h.update(payload);
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf.extend_from_slice(&h.finalize().to_le_bytes());
            self.buf.extend_from_slice(&seq);
            self.buf.extend_from_slice(payload);
            self.current.last_seq = self.next_seq;
            self.next_seq += 1;
        }
        self.flush_buf()?;
        self.current.file.sync_data()?;
        Ok(first)
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.current
                .file
                .write_all_at(&self.buf, self.current.pos)?;
            self.current.pos += self.buf.len() as u64;
            self.buf.clear();
        }
        Ok(())
    }

    /// Gives up the closed segments whose records all have numbers up to `durable` (indexed
    /// and synced elsewhere): a few are kept for reuse, the rest deleted.
    pub fn release(&mut self, durable: u64) -> io::Result<()> {
        let mut kept = Vec::with_capacity(self.closed.len());
        for c in std::mem::take(&mut self.closed) {
            if c.last_seq <= durable {
                if self.recycled.len() < 2 {
                    self.recycled.push(c.index);
                } else {
                    fs::remove_file(segment_path(&self.dir, c.index))?;
                }
            } else {
                kept.push(c);
            }
        }
        self.closed = kept;
        Ok(())
    }

    /// The last sequence number of the oldest closed segment still kept, if any: releasing
    /// needs the index to be durable up to it.
    pub fn oldest_closed_last_seq(&self) -> Option<u64> {
        self.closed.first().map(|c| c.last_seq)
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        // A segment half made when the process goes on would race the next open's clean-up.
        if let Some(h) = self.spare.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aorta-log-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn payloads(recs: &[LogRecord]) -> Vec<Vec<u8>> {
        recs.iter().map(|r| r.payload.clone()).collect()
    }

    #[test]
    fn appends_reopens_and_rolls_segments() {
        let dir = temp_dir("roll");
        let (mut log, rec) = SegmentLog::open(&dir, 64 * 1024, 0).unwrap();
        assert!(rec.records.is_empty());
        let mut written = Vec::new();
        for i in 0..300u32 {
            let p = vec![u8::try_from(i % 251).unwrap(); 700 + (i as usize % 50)];
            let first = log.append(&[&p]).unwrap();
            assert_eq!(first, u64::from(i) + 1);
            written.push(p);
        }
        // A group spanning a segment boundary, and a record larger than a segment.
        let big = vec![7u8; 200 * 1024];
        log.append(&[&written[0], &big, &written[1]]).unwrap();
        written.extend([written[0].clone(), big, written[1].clone()]);
        drop(log);
        let (log, rec) = SegmentLog::open(&dir, 64 * 1024, 0).unwrap();
        assert_eq!(rec.torn, 0);
        assert_eq!(payloads(&rec.records), written);
        let seqs: Vec<u64> = rec.records.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, (1..=303).collect::<Vec<_>>());
        assert_eq!(log.next_seq(), 304);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_and_corrupt_tails_end_the_read() {
        let dir = temp_dir("torn");
        let (mut log, _) = SegmentLog::open(&dir, 64 * 1024, 0).unwrap();
        log.append(&[b"one", b"two", b"three"]).unwrap();
        let seg = segment_path(&dir, 1);
        drop(log);
        // Corrupt the third record's payload: its CRC fails, the first two stay.
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        let third = (HEADER + 3) * 2 + HEADER;
        f.write_all_at(b"X", third as u64).unwrap();
        // A torn frame header further on must not be read as anything.
        f.write_all_at(&[9, 9, 9], 4000).unwrap();
        drop(f);
        let (mut log, rec) = SegmentLog::open(&dir, 64 * 1024, 0).unwrap();
        assert_eq!(
            payloads(&rec.records),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        assert_eq!(rec.torn, 1);
        // Writing resumes after the last good record, in a new segment.
        assert_eq!(log.append(&[b"four"]).unwrap(), 3);
        drop(log);
        let (_, rec) = SegmentLog::open(&dir, 64 * 1024, 0).unwrap();
        let got: Vec<(u64, Vec<u8>)> = rec
            .records
            .into_iter()
            .map(|r| (r.seq, r.payload))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, b"one".to_vec()),
                (2, b"two".to_vec()),
                (3, b"four".to_vec())
            ]
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn released_segments_are_reused_and_stale_frames_ignored() {
        let dir = temp_dir("reuse");
        let (mut log, _) = SegmentLog::open(&dir, 64 * 1024, 0).unwrap();
        let p = vec![1u8; 10_000];
        for _ in 0..40 {
            log.append(&[&p]).unwrap();
        }
        // Everything so far is durable elsewhere: closed segments go to the reuse list.
        let upto = log.next_seq() - 1;
        log.release(upto).unwrap();
        assert!(log.oldest_closed_last_seq().is_none());
        // Write into reused segments (which still hold old, full frames), a few small records.
        for _ in 0..30 {
            log.append(&[&p]).unwrap();
        }
        log.append(&[b"last"]).unwrap();
        drop(log);
        let (_, rec) = SegmentLog::open(&dir, 64 * 1024, 0).unwrap();
        let seqs: Vec<u64> = rec.records.iter().map(|r| r.seq).collect();
        // The released records may or may not still be readable (kept segments); what follows
        // them is exactly what was written, in order, ending with "last".
        let tail: Vec<u64> = seqs.iter().copied().filter(|s| *s > upto).collect();
        assert_eq!(tail, ((upto + 1)..=(upto + 31)).collect::<Vec<_>>());
        assert_eq!(rec.records.last().unwrap().payload, b"last");
        let _ = fs::remove_dir_all(&dir);
    }
}
