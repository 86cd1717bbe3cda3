//! The file destination: each delivery becomes one file, written atomically.
//!
//! ```toml
//! [destinations.archive]
//! kind = "file"
//! directory = "data/out/archive"
//! filename = "${MSH-9-1}_${MSH-10}_${message_id}.hl7"   # default: ${message_id}.hl7 / .json
//! batch = { max_messages = 500 }      # optional: many deliveries per file (FHS/BHS for HL7 v2)
//! ```
//!
//! With `batch`, the deliveries a worker takes at once (in queue order, up to `max_messages`)
//! go into one file: HL7 v2 as an FHS/BHS batch (`FHS … BHS … messages … BTS|n … FTS|1`),
//! JSON as JSON Lines. The file is named by the template applied to the batch's first delivery
//! (default `batch-${seq}.hl7` / `.jsonl`), so a batch written again after a crash replaces
//! itself; one durable file per batch instead of per delivery is what makes files fast.
//!
//! The file is written under a temporary name in the same directory, synced, then renamed, and
//! the directory synced: a reader never sees half a file, and a file that exists is complete
//! and on disk. One file per delivery is written a leased batch at a time (up to 500): all
//! files without a name (`O_TMPFILE` on Linux; temporary names elsewhere), one `syncfs`, the
//! names given in queue order (`linkat`, or renames), one directory sync — two flushes per
//! batch instead of two per file (a `rate_limit` makes the worker write one at a time). Sending the same delivery again (after a crash between writing and marking it
//! sent) writes the same name, so the copy replaces itself. Characters that are not safe in
//! file names (`/`, `\`, control characters, a leading dot) become `_`.

use std::io::Write;
use std::path::PathBuf;

use serde::Deserialize;

use super::{OutTemplate, Outcome, Outgoing};

/// `[destinations.NAME]` with `kind = "file"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where files go (created when missing).
    pub directory: PathBuf,
    /// File name template (see [`OutTemplate`]); default `${message_id}` plus `.hl7` or `.json`.
    #[serde(default)]
    pub filename: Option<String>,
    /// Write many deliveries per file.
    #[serde(default)]
    pub batch: Option<FileBatch>,
}

/// Batching for the file destination.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileBatch {
    /// Most deliveries in one file.
    #[serde(default = "five_hundred")]
    pub max_messages: usize,
}

fn five_hundred() -> usize {
    500
}

/// A built file destination.
#[derive(Debug)]
pub struct FileDestination {
    directory: PathBuf,
    filename: Option<OutTemplate>,
    batch: Option<usize>,
}

impl FileDestination {
    /// Checks the template and creates the directory.
    pub fn build(config: &FileConfig) -> Result<FileDestination, String> {
        let filename = match &config.filename {
            Some(t) => Some(OutTemplate::parse(t).map_err(|e| format!("filename: {e}"))?),
            None => None,
        };
        std::fs::create_dir_all(&config.directory)
            .map_err(|e| format!("directory {}: {e}", config.directory.display()))?;
        Ok(FileDestination {
            directory: config.directory.clone(),
            filename,
            batch: config
                .batch
                .as_ref()
                .map(|b| b.max_messages.clamp(1, 100_000)),
        })
    }

    /// Whether deliveries go many to a file.
    pub fn batches(&self) -> bool {
        self.batch.is_some()
    }

    /// Writes deliveries in batch files (one outcome per delivery).
    pub async fn send_batch(&self, all: &[Outgoing<'_>]) -> Vec<Outcome> {
        let Some(max) = self.batch else {
            let mut out = Vec::with_capacity(all.len());
            for d in all {
                out.push(self.send(d).await);
            }
            return out;
        };
        let mut outcomes = Vec::with_capacity(all.len());
        // One file per run of up to `max` deliveries of one format.
        let mut start = 0;
        while start < all.len() {
            let format = all[start].format;
            let mut end = start;
            while end < all.len() && end - start < max && all[end].format == format {
                end += 1;
            }
            let outcome = self.write_batch(&all[start..end]).await;
            outcomes.extend(std::iter::repeat_n(outcome, end - start));
            start = end;
        }
        outcomes
    }

    async fn write_batch(&self, run: &[Outgoing<'_>]) -> Outcome {
        let Some(first) = run.first() else {
            return Outcome::Delivered;
        };
        let hl7 = first.format == "hl7v2";
        let name = match &self.filename {
            Some(t) => t.render(first, &safe),
            None => format!("batch-{}.{}", first.seq, if hl7 { "hl7" } else { "jsonl" }),
        };
        let name = safe(&name);
        let payload = if hl7 {
            let messages: Vec<&[u8]> = run.iter().map(|d| d.payload).collect();
            let header = crate::hl7::batch::BatchHeader {
                sending_application: "AORTA".into(),
                timestamp: crate::record::hl7_timestamp(crate::record::now_micros()),
                name: name.clone(),
                control_id: first.seq.to_string(),
                file: true,
                ..Default::default()
            };
            match crate::hl7::batch::build(&messages, &header) {
                Ok(b) => b,
                Err(e) => return Outcome::Reject(format!("building the batch file: {e}")),
            }
        } else {
            let mut lines = Vec::new();
            for d in run {
                lines.extend_from_slice(d.payload);
                lines.push(b'\n');
            }
            lines
        };
        let dir = self.directory.clone();
        match tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &payload)).await {
            Ok(Ok(())) => Outcome::Delivered,
            Ok(Err(e)) => Outcome::retry(format!("writing the batch file: {e}")),
            Err(e) => Outcome::retry(format!("writing the batch file: {e}")),
        }
    }

    /// The file name of one delivery (not batched).
    fn name_of(&self, d: &Outgoing<'_>) -> Result<String, Outcome> {
        let name = match &self.filename {
            Some(t) => t.render(d, &safe),
            None => format!(
                "{}.{}",
                d.message_id,
                if d.format == "hl7v2" { "hl7" } else { "json" }
            ),
        };
        let name = safe(&name);
        if name.is_empty() {
            return Err(Outcome::Reject(
                "the file name template gave an empty name".into(),
            ));
        }
        Ok(name)
    }

    /// Writes each delivery of a leased batch into its own file, with one sync for the whole
    /// group instead of two per file (see `write_group`). Files appear in queue order; after
    /// a failure the rest are not tried (`None`), so an outage cannot reorder them.
    pub async fn send_group(&self, all: &[Outgoing<'_>]) -> Vec<Option<Outcome>> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; all.len()];
        let mut files = Vec::with_capacity(all.len());
        let mut slots = Vec::with_capacity(all.len());
        for (i, d) in all.iter().enumerate() {
            match self.name_of(d) {
                Ok(name) => {
                    files.push((name, d.payload.to_vec()));
                    slots.push(i);
                }
                Err(reject) => outcomes[i] = Some(reject),
            }
        }
        let dir = self.directory.clone();
        let written = match tokio::task::spawn_blocking(move || write_group(&dir, files)).await {
            Ok(w) => w,
            Err(e) => {
                let why = format!("writing the files: {e}");
                for &i in &slots {
                    outcomes[i] = Some(Outcome::retry(why.clone()));
                }
                return outcomes;
            }
        };
        for (&i, result) in slots.iter().zip(written) {
            outcomes[i] = match result {
                Some(Ok(())) => Some(Outcome::Delivered),
                // Full disks, permissions and missing mounts get fixed: retry.
                Some(Err(e)) => Some(Outcome::retry(format!("writing the file: {e}"))),
                None => None,
            };
        }
        outcomes
    }

    /// Writes the delivery's file.
    pub async fn send(&self, d: &Outgoing<'_>) -> Outcome {
        let name = match self.name_of(d) {
            Ok(name) => name,
            Err(reject) => return reject,
        };
        let dir = self.directory.clone();
        let payload = d.payload.to_vec();
        let written =
            tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &payload)).await;
        match written {
            Ok(Ok(())) => Outcome::Delivered,
            // Full disks, permissions and missing mounts get fixed: retry.
            Ok(Err(e)) => Outcome::retry(format!("writing the file: {e}")),
            Err(e) => Outcome::retry(format!("writing the file: {e}")),
        }
    }
}

fn write_atomically(dir: &std::path::Path, name: &str, payload: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(payload)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))?;
    // The rename is durable only once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

/// Writes files durably and in order, syncing once per group: every file goes under a
/// temporary name, then one `syncfs` puts all their data on disk, then they are renamed in
/// order and the directory is synced once. A file and its directory entry each synced
/// separately cost two flushes per file; here a group of 64 costs two. `syncfs` flushes the
/// whole filesystem the directory is on, which on a filesystem shared with heavy writers can
/// take longer than a file's own `fsync`, but never loses anything.
///
/// On Linux the files are written without a name first (`O_TMPFILE`) and given their name
/// with one `linkat` after the sync ([`unnamed::write_group`]); elsewhere, or where the
/// filesystem cannot, each goes under a temporary name and is renamed.
///
/// One result per file, in order: `None` for files not tried because one before them failed.
fn write_group(
    dir: &std::path::Path,
    files: Vec<(String, Vec<u8>)>,
) -> Vec<Option<std::io::Result<()>>> {
    #[cfg(target_os = "linux")]
    if let Some(results) = unnamed::write_group(dir, &files) {
        return results;
    }
    write_group_renamed(dir, files)
}

/// [`write_group`] with a temporary name per file, renamed after the sync.
fn write_group_renamed(
    dir: &std::path::Path,
    files: Vec<(String, Vec<u8>)>,
) -> Vec<Option<std::io::Result<()>>> {
    let mut results: Vec<Option<std::io::Result<()>>> = Vec::with_capacity(files.len());
    results.resize_with(files.len(), || None);
    let mut open = Vec::with_capacity(files.len());
    for (i, (name, payload)) in files.iter().enumerate() {
        let tmp = dir.join(format!(".{name}.tmp"));
        let made = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(payload)?;
            Ok(f)
        });
        match made {
            Ok(f) => open.push((i, tmp, f)),
            // As in the unnamed path: out of descriptors cuts the group short, untried.
            Err(e) if !open.is_empty() && out_of_descriptors(&e) => {
                tracing::debug!(
                    written = open.len(),
                    "file group cut short: open files limit"
                );
                break;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                results[i] = Some(Err(e));
                break;
            }
        }
    }
    let synced = sync_files(dir, open.iter().map(|(_, _, f)| f));
    if let Err(e) = synced {
        for (i, tmp, _) in &open {
            let _ = std::fs::remove_file(tmp);
            results[*i] = Some(Err(std::io::Error::new(e.kind(), e.to_string())));
        }
        return results;
    }
    let mut renamed = Vec::with_capacity(open.len());
    let mut failed = false;
    for (i, tmp, f) in open {
        drop(f);
        if failed {
            let _ = std::fs::remove_file(&tmp);
            continue;
        }
        match std::fs::rename(&tmp, dir.join(&files[i].0)) {
            Ok(()) => renamed.push(i),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                results[i] = Some(Err(e));
                failed = true;
            }
        }
    }
    // The renames are durable only once the directory is synced.
    let dir_synced = std::fs::File::open(dir).and_then(|d| d.sync_all());
    for i in renamed {
        results[i] = Some(match &dir_synced {
            Ok(()) => Ok(()),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        });
    }
    results
}

/// Whether opening failed for want of a descriptor (the process's or the system's limit).
fn out_of_descriptors(e: &std::io::Error) -> bool {
    e.raw_os_error().is_some_and(|code| {
        code == rustix::io::Errno::MFILE.raw_os_error()
            || code == rustix::io::Errno::NFILE.raw_os_error()
    })
}

/// Files written without a name and linked into the directory once their data is on disk.
///
/// A temporary name costs a directory insert, and the rename a lookup of both names, an insert
/// and a removal — in a directory holding tens of thousands of files, each is a scan of a
/// directory block. An `O_TMPFILE` file has no entry until `linkat` gives it its final one, so
/// a reader still never sees it before it is complete and synced. Paths are resolved against
/// one directory descriptor instead of from the root for every file.
#[cfg(target_os = "linux")]
mod unnamed {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::path::Path;

    use rustix::fs::{AtFlags, Mode, OFlags};
    use rustix::io::Errno;

    /// `None` when this filesystem (or a system without `/proc`) cannot do it before anything
    /// was written; the caller then writes the group with temporary names.
    pub(super) fn write_group(
        dir: &Path,
        files: &[(String, Vec<u8>)],
    ) -> Option<Vec<Option<std::io::Result<()>>>> {
        // `linkat` of an unnamed file goes through /proc/self/fd (AT_EMPTY_PATH would need
        // CAP_DAC_READ_SEARCH).
        if !Path::new("/proc/self/fd").is_dir() {
            return None;
        }
        let mut results: Vec<Option<std::io::Result<()>>> = Vec::with_capacity(files.len());
        results.resize_with(files.len(), || None);
        let d = match rustix::fs::open(
            dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => d,
            Err(e) => {
                if let Some(first) = results.first_mut() {
                    *first = Some(Err(e.into()));
                }
                return Some(results);
            }
        };
        let mut open = Vec::with_capacity(files.len());
        for (i, (_, payload)) in files.iter().enumerate() {
            let made = rustix::fs::openat(
                &d,
                ".",
                OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o666),
            );
            let f = match made {
                Ok(fd) => std::fs::File::from(fd),
                // Not supported here (EOPNOTSUPP, or EISDIR/EINVAL from older kernels).
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) if i == 0 => return None,
                // Out of descriptors with some files in hand: the group ends here and the
                // rest go untried (`None`), to be leased again at once, not as a failure.
                Err(Errno::MFILE | Errno::NFILE) if !open.is_empty() => {
                    tracing::debug!(
                        written = open.len(),
                        "file group cut short: open files limit"
                    );
                    break;
                }
                Err(e) => {
                    results[i] = Some(Err(e.into()));
                    break;
                }
            };
            let mut w = &f;
            if let Err(e) = w.write_all(payload) {
                results[i] = Some(Err(e));
                break;
            }
            open.push((i, f));
        }
        if let Err(e) = rustix::fs::syncfs(&d) {
            for (i, _) in &open {
                results[*i] = Some(Err(std::io::Error::from(e)));
            }
            return Some(results);
        }
        let mut linked = Vec::with_capacity(open.len());
        for (i, f) in open {
            match link(&d, &f, &files[i].0) {
                Ok(()) => linked.push(i),
                Err(e) => {
                    results[i] = Some(Err(e));
                    break;
                }
            }
        }
        // The new entries are durable only once the directory is synced.
        let dir_synced = rustix::fs::fsync(&d);
        for i in linked {
            results[i] = Some(dir_synced.map_err(std::io::Error::from));
        }
        Some(results)
    }

    /// Gives the unnamed file `f` the name `name` in `d`, replacing a file already there (the
    /// same delivery written before a crash) through a temporary name and a rename.
    fn link(d: &rustix::fd::OwnedFd, f: &std::fs::File, name: &str) -> std::io::Result<()> {
        let proc = format!("/proc/self/fd/{}", f.as_raw_fd());
        match rustix::fs::linkat(rustix::fs::CWD, &proc, d, name, AtFlags::SYMLINK_FOLLOW) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let tmp = format!(".{name}.tmp");
                let _ = rustix::fs::unlinkat(d, &tmp, AtFlags::empty());
                rustix::fs::linkat(rustix::fs::CWD, &proc, d, &tmp, AtFlags::SYMLINK_FOLLOW)?;
                rustix::fs::renameat(d, &tmp, d, name).map_err(|e| {
                    let _ = rustix::fs::unlinkat(d, &tmp, AtFlags::empty());
                    e.into()
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Puts the written files' data on disk: one `syncfs` on Linux, an `fsync` per file elsewhere.
fn sync_files<'a>(
    dir: &std::path::Path,
    mut files: impl Iterator<Item = &'a std::fs::File>,
) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // Any descriptor on the filesystem names it; one already open needs no new one (a
        // group cut short by the open files limit has none to spare).
        if let Some(f) = files.next() {
            return rustix::fs::syncfs(f).map_err(std::io::Error::from);
        }
        let d = std::fs::File::open(dir)?;
        rustix::fs::syncfs(&d).map_err(std::io::Error::from)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        for f in files {
            f.sync_all()?;
        }
        Ok(())
    }
}

/// A file name without path separators, control characters or a leading dot.
fn safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c.is_control() || c == ':' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if out.starts_with('.') {
        out.replace_range(..1, "_");
    }
    out.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_whole_files_and_rewrites_the_same_name() {
        let dir = std::env::temp_dir().join(format!("aorta-file-dest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dest = FileDestination::build(&FileConfig {
            directory: dir.clone(),
            filename: Some("${MSH-9-1}_${MSH-10}.hl7".into()),
            batch: None,
        })
        .unwrap();
        let d = Outgoing {
            seq: 1,
            message_id: uuid::Uuid::nil(),
            idempotency_key: "k",
            format: "hl7v2",
            payload: b"MSH|^~\\&|A|B|||2024||ADT^A01|../x/1|P|2.5\r",
            attempt: 1,
        };
        assert_eq!(dest.send(&d).await, Outcome::Delivered);
        assert_eq!(dest.send(&d).await, Outcome::Delivered);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["ADT__._x_1.hl7"]);
        assert_eq!(std::fs::read(dir.join(&names[0])).unwrap(), d.payload);
        let json = Outgoing {
            format: "record-json",
            payload: b"{}",
            ..d
        };
        let plain = FileDestination::build(&FileConfig {
            directory: dir.clone(),
            filename: None,
            batch: None,
        })
        .unwrap();
        assert_eq!(plain.send(&json).await, Outcome::Delivered);
        assert!(dir.join(format!("{}.json", uuid::Uuid::nil())).is_file());
        assert_eq!(safe(".hidden"), "_hidden");
    }

    #[test]
    fn out_of_descriptors_cuts_a_group_short_without_a_failure() {
        if !crate::daemon::limits::tests::in_child(
            "destination::file::tests::out_of_descriptors_cuts_a_group_short_without_a_failure",
        ) {
            return;
        }
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let dir = std::env::temp_dir().join(format!("aorta-file-emfile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let files: Vec<(String, Vec<u8>)> = (0..40)
            .map(|i| (format!("F{i:02}.hl7"), format!("MSH|{i}\r").into_bytes()))
            .collect();
        let start = getrlimit(Resource::Nofile);
        for (variant, sub) in [("unnamed", "a"), ("renamed", "b")] {
            let d = dir.join(sub);
            std::fs::create_dir_all(&d).unwrap();
            // Room for a few files of the group only.
            let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(open_now + 6),
                    maximum: start.maximum,
                },
            )
            .unwrap();
            let results = if variant == "unnamed" {
                write_group(&d, files.clone())
            } else {
                write_group_renamed(&d, files.clone())
            };
            setrlimit(Resource::Nofile, start).unwrap();
            let written = results
                .iter()
                .take_while(|r| matches!(r, Some(Ok(()))))
                .count();
            assert!(
                written > 0 && written < files.len(),
                "{variant}: {written} written"
            );
            assert!(
                results[written..].iter().all(Option::is_none),
                "{variant}: the rest are untried, not failed: {results:?}"
            );
            let mut names: Vec<String> = std::fs::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let expected: Vec<String> = files[..written].iter().map(|(n, _)| n.clone()).collect();
            assert_eq!(
                names, expected,
                "{variant}: only the written files, no temporaries"
            );
            // The rest go out when the group is written again.
            let rest = write_group(&d, files[written..].to_vec());
            assert!(rest.iter().all(|r| matches!(r, Some(Ok(())))));
            assert_eq!(std::fs::read_dir(&d).unwrap().count(), files.len());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_group_is_written_in_order_and_stops_at_the_first_failure() {
        let dir = std::env::temp_dir().join(format!("aorta-file-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dest = FileDestination::build(&FileConfig {
            directory: dir.clone(),
            filename: Some("${MSH-10}.hl7".into()),
            batch: None,
        })
        .unwrap();
        let payloads: Vec<Vec<u8>> = (0..4)
            .map(|i| format!("MSH|^~\\&|A|B|||2024||ADT^A01|C{i}|P|2.5\rPID|1||{i}\r").into_bytes())
            .collect();
        let outs: Vec<Outgoing> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Outgoing {
                seq: i as i64,
                message_id: uuid::Uuid::nil(),
                idempotency_key: "k",
                format: "hl7v2",
                payload: p,
                attempt: 1,
            })
            .collect();
        let all = dest.send_group(&outs).await;
        assert_eq!(all, vec![Some(Outcome::Delivered); 4]);
        for (i, p) in payloads.iter().enumerate() {
            assert_eq!(&std::fs::read(dir.join(format!("C{i}.hl7"))).unwrap(), p);
        }
        // Sent again (a crash before the marks): the same files, nothing else.
        assert_eq!(
            dest.send_group(&outs).await,
            vec![Some(Outcome::Delivered); 4]
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);

        // A directory where the third file must go: the rename fails, the fourth is not tried.
        let dir2 = dir.join("second");
        let dest = FileDestination::build(&FileConfig {
            directory: dir2.clone(),
            filename: Some("${MSH-10}.hl7".into()),
            batch: None,
        })
        .unwrap();
        std::fs::create_dir_all(dir2.join("C2.hl7").join("x")).unwrap();
        let all = dest.send_group(&outs).await;
        assert_eq!(
            &all[..2],
            &[Some(Outcome::Delivered), Some(Outcome::Delivered)]
        );
        assert!(
            matches!(&all[2], Some(Outcome::Retry { reason, .. }) if reason.contains("writing the file")),
            "{:?}",
            all[2]
        );
        assert_eq!(all[3], None);
        let mut names: Vec<String> = std::fs::read_dir(&dir2)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        // No temporary file is left behind.
        assert_eq!(names, vec!["C0.hl7", "C1.hl7", "C2.hl7"]);
        assert!(dir2.join("C2.hl7").is_dir());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The path for systems or filesystems without `O_TMPFILE`: temporary names, renamed.
    #[test]
    fn a_group_with_temporary_names_replaces_files_and_stops_at_a_failure() {
        let dir = std::env::temp_dir().join(format!("aorta-file-renamed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("c.hl7").join("x")).unwrap();
        std::fs::write(dir.join("a.hl7"), b"old").unwrap();
        let files: Vec<(String, Vec<u8>)> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| (format!("{n}.hl7"), n.as_bytes().to_vec()))
            .collect();
        let results = write_group_renamed(&dir, files);
        assert!(matches!(results[0], Some(Ok(()))));
        assert!(matches!(results[1], Some(Ok(()))));
        assert!(matches!(results[2], Some(Err(_))));
        assert!(results[3].is_none());
        assert_eq!(std::fs::read(dir.join("a.hl7")).unwrap(), b"a");
        assert_eq!(std::fs::read(dir.join("b.hl7")).unwrap(), b"b");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["a.hl7", "b.hl7", "c.hl7"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn batches_many_deliveries_into_one_fhs_file() {
        let dir = std::env::temp_dir().join(format!("aorta-file-batch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let dest = FileDestination::build(&FileConfig {
            directory: dir.clone(),
            filename: None,
            batch: Some(FileBatch { max_messages: 2 }),
        })
        .unwrap();
        let payloads: Vec<Vec<u8>> = (0..3)
            .map(|i| format!("MSH|^~\\&|A|B|||2024||ADT^A01|C{i}|P|2.5\rPID|1||{i}\r").into_bytes())
            .collect();
        let outs: Vec<Outgoing> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Outgoing {
                seq: 10 + i as i64,
                message_id: uuid::Uuid::nil(),
                idempotency_key: "k",
                format: "hl7v2",
                payload: p,
                attempt: 1,
            })
            .collect();
        let outcomes = dest.send_batch(&outs).await;
        assert_eq!(outcomes, vec![Outcome::Delivered; 3]);
        let first = std::fs::read(dir.join("batch-10.hl7")).unwrap();
        let b = crate::hl7::batch::split(&first).unwrap();
        assert!(b.problems.is_empty(), "{:?}", b.problems);
        assert_eq!(b.messages().count(), 2);
        let second = std::fs::read(dir.join("batch-12.hl7")).unwrap();
        assert_eq!(
            crate::hl7::batch::split(&second)
                .unwrap()
                .messages()
                .count(),
            1
        );
    }
}
