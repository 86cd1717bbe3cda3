//! The file destination: each delivery becomes one file, written atomically.
//!
//! ```toml
//! [destinations.archive]
//! kind = "file"
//! directory = "data/out/archive"
//! filename = "${MSH-9-1}_${MSH-10}_${message_id}.hl7"   # default: ${message_id}.hl7 / .json
//! ```
//!
//! The file is written under a temporary name in the same directory, synced, then renamed, and
//! the directory synced: a reader never sees half a file, and a file that exists is complete
//! and on disk. Sending the same delivery again (after a crash between writing and marking it
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
}

/// A built file destination.
#[derive(Debug)]
pub struct FileDestination {
    directory: PathBuf,
    filename: Option<OutTemplate>,
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
        })
    }

    /// Writes the delivery's file.
    pub async fn send(&self, d: &Outgoing<'_>) -> Outcome {
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
            return Outcome::Reject("the file name template gave an empty name".into());
        }
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
        })
        .unwrap();
        assert_eq!(plain.send(&json).await, Outcome::Delivered);
        assert!(dir.join(format!("{}.json", uuid::Uuid::nil())).is_file());
        assert_eq!(safe(".hidden"), "_hidden");
    }
}
