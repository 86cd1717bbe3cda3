//! The open-file limit: raised to the hard limit at start and compared with what the
//! configuration can hold open at once.
//!
//! Every MLLP connection is a descriptor, and a file destination holds a whole group of
//! files open until one sync has put them all on disk (up to 500 per worker). Service
//! managers commonly start daemons with a soft limit of 1,024 (systemd's default is
//! 1024:524288), which a busy listener alone can exhaust: accepts then fail and file groups
//! are cut short. Raising the soft limit up to the hard one needs no privilege; going past
//! the hard limit is the operator's call (`LimitNOFILE=` in the unit, `ulimit -Hn`).

use crate::config::{Config, ListenerConfig};
use crate::destination::Settings;

/// Descriptors the engine holds besides connections and destination files: the journal's
/// segments and SQLite files, runtime internals, a few outgoing sockets.
const BASE: u64 = 64;

/// Open files the configuration can need at once, at its limits.
pub fn files_needed(config: &Config) -> u64 {
    let listeners: u64 = config
        .listeners
        .values()
        .map(|l| match l {
            ListenerConfig::Mllp(m) => m.max_connections as u64,
            ListenerConfig::Fhir(f) => f.max_connections as u64,
        })
        .sum();
    let destinations: u64 = config
        .destinations
        .values()
        .map(|d| {
            let workers = d.queue.concurrency.max(1) as u64;
            let per_worker = match &d.settings {
                // A group of one file per delivery is held open until it is synced; a rate
                // limit or an FHS batch file writes one at a time.
                Settings::File(f) if f.batch.is_none() && d.queue.rate_limit <= 0.0 => {
                    super::delivery::PIPELINED_BATCH as u64
                }
                _ => 2,
            };
            workers * per_worker
        })
        .sum();
    let admin = if config.admin.bind.is_empty() {
        0
    } else {
        crate::admin::ADMIN_MAX_CONNECTIONS as u64
    };
    BASE + admin + listeners + destinations
}

/// The soft limit before and after, `None` meaning unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit the process started with.
    pub before: Option<u64>,
    /// The soft limit now.
    pub after: Option<u64>,
}

/// Linux refuses a soft limit above `fs.nr_open` (1,048,576 by default) even when the hard
/// limit is "unlimited".
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft limit of open files to the hard limit.
#[cfg(unix)]
pub fn raise_open_files() -> std::io::Result<Raised> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let target = now.maximum.unwrap_or(UNLIMITED_TARGET);
    if now.current.is_none_or(|c| c >= target) {
        return Ok(Raised {
            before: now.current,
            after: now.current,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: now.maximum,
        },
    )?;
    Ok(Raised {
        before: now.current,
        after: getrlimit(Resource::Nofile).current,
    })
}

/// Raises the limit and says so; warns when it stays below what `config` can need.
pub fn prepare(config: &Config) {
    #[cfg(unix)]
    {
        let needed = files_needed(config);
        match raise_open_files() {
            Ok(r) => {
                if r.before != r.after {
                    tracing::info!(before = ?r.before, after = ?r.after, "open files limit raised to the hard limit");
                }
                if let Some(limit) = r.after.filter(|&l| l < needed) {
                    tracing::warn!(
                        limit,
                        needed,
                        "open files limit is below what the listeners' connection limits and the destinations' file groups can use; raise the hard limit (LimitNOFILE= in the systemd unit, ulimit -Hn)"
                    );
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, needed, "could not raise the open files limit");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = config;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `name` again in a child process with `AORTA_TEST_CHILD` set: the test changes a
    /// process-wide limit, which must not reach tests running beside it in this process.
    pub(crate) fn in_child(name: &str) -> bool {
        if std::env::var_os("AORTA_TEST_CHILD").is_some() {
            return true;
        }
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env("AORTA_TEST_CHILD", "1")
            .status()
            .unwrap();
        assert!(status.success(), "the child test {name} failed");
        false
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        if !in_child("daemon::limits::tests::the_soft_limit_is_raised_to_the_hard_limit") {
            return;
        }
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let start = getrlimit(Resource::Nofile);
        let hard = start.maximum.unwrap_or(UNLIMITED_TARGET);
        assert!(hard > 100, "a hard limit of {hard} leaves nothing to test");
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(100),
                maximum: start.maximum,
            },
        )
        .unwrap();
        let r = raise_open_files().unwrap();
        assert_eq!(r.before, Some(100));
        assert_eq!(r.after, Some(hard));
        assert_eq!(getrlimit(Resource::Nofile).current, Some(hard));
        // Already at the hard limit: nothing to do.
        let again = raise_open_files().unwrap();
        assert_eq!(again.before, again.after);
    }

    #[test]
    fn what_a_configuration_can_hold_open() {
        let dir = std::env::temp_dir().join(format!("aorta-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("aorta.toml");
        std::fs::write(
            &file,
            format!(
                r#"
[store]
path = "{d}/journal.db"
[routes]
dir = "{d}"
[listeners.a]
kind = "mllp"
bind = "127.0.0.1:0"
max_connections = 300
[listeners.f]
kind = "fhir"
bind = "127.0.0.1:0"
[destinations.out]
kind = "file"
directory = "{d}/out"
concurrency = 2
[destinations.slow]
kind = "file"
directory = "{d}/slow"
rate_limit = 10.0
[destinations.web]
kind = "http"
url = "http://127.0.0.1:1/"
"#,
                d = dir.display()
            ),
        )
        .unwrap();
        let config = Config::load(&file, false).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        // 64 + admin + 300 MLLP + 1,024 FHIR (its default) + 2 × 500 grouped files + 2
        // (rate-limited files) + 2 (HTTP).
        assert_eq!(files_needed(&config), 64 + 256 + 300 + 1024 + 1000 + 2 + 2);
    }
}
