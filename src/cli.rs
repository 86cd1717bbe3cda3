//! The `aorta` command line.
//!
//! `aorta hl7 ...` works on message files: every FILE may hold one message, several messages one
//! after another (each starting with `MSH` at the beginning of a line) or an FHS/BHS batch; `-`
//! reads standard input. Bad input ends with a one-line error on stderr and a non-zero exit.

use std::io::{self, Read, Write};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};

use crate::hl7::{
    self, batch, AckCode, AckError, AckMode, AckSpec, ErrorCode, Message, Outcome, Path,
};

/// Aorta, an HL7 v2 / FHIR integration engine.
#[derive(Debug, Parser)]
#[command(name = "aorta", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read, convert and acknowledge HL7 v2 message files.
    #[command(subcommand)]
    Hl7(Hl7Command),
}

/// `aorta hl7 ...`
#[derive(Debug, Subcommand)]
pub enum Hl7Command {
    /// Print the decoded value at each path, one per line (an empty line when absent).
    ///
    /// Paths: PID-5-1, PID-3(1)-1, OBX(2)-5 (Terser, 0-based indexes) or PID.5.1, OBX[2].5
    /// (dotted, 1-based indexes).
    Get {
        /// Message file, or - for stdin.
        file: String,
        /// One or more paths.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Print each message as JSON, one document per line.
    Json(FileArg),
    /// Parse and re-encode with CR segment terminators.
    Normalize(FileArg),
    /// Print the acknowledgement of each message.
    Ack {
        /// Message file, or - for stdin.
        file: String,
        /// MSA-1 code; default AA (CA for enhanced mode), or AE when --error is given.
        #[arg(long)]
        code: Option<AckCode>,
        /// Error text for an ERR segment (table 0357 code 207, application internal error).
        #[arg(long)]
        error: Option<String>,
    },
}

/// A FILE argument.
#[derive(Debug, Args)]
pub struct FileArg {
    /// Message file, or - for stdin.
    pub file: String,
}

/// Runs the command line and maps errors to a one-line message and exit status 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Broken pipes (`aorta hl7 json big.hl7 | head`) are not errors.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("aorta: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Hl7(cmd) => hl7_command(cmd),
    }
}

fn read_input(file: &str) -> Result<Vec<u8>> {
    if file == "-" {
        let mut buf = Vec::new();
        io::stdin().read_to_end(&mut buf).context("reading stdin")?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("reading {file}"))
    }
}

fn hl7_command(cmd: Hl7Command) -> Result<()> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = match cmd {
        Hl7Command::Get { file, paths } => {
            let paths = paths
                .iter()
                .map(|p| Path::parse(p).map_err(|e| anyhow!(e)))
                .collect::<Result<Vec<_>>>()?;
            let raw = read_input(&file)?;
            for_each_message(&raw, &mut out, |m, out| {
                for p in &paths {
                    writeln!(out, "{}", m.get(p).unwrap_or_default())?;
                }
                Ok(())
            })
        }
        Hl7Command::Json(FileArg { file }) => {
            let raw = read_input(&file)?;
            for_each_message(&raw, &mut out, |m, out| {
                serde_json::to_writer(&mut *out, &hl7::json::to_json(m))?;
                writeln!(out)?;
                Ok(())
            })
        }
        Hl7Command::Normalize(FileArg { file }) => {
            let raw = read_input(&file)?;
            normalize(&raw, &mut out)
        }
        Hl7Command::Ack { file, code, error } => {
            let raw = read_input(&file)?;
            ack(&raw, code, error, &mut out)
        }
    };
    out.flush()?;
    result
}

/// Splits `raw` into messages, parses each and hands it to `f`; the first bad message or batch
/// problem ends the run with an error naming the message and the problem.
fn for_each_message(
    raw: &[u8],
    out: &mut dyn Write,
    mut f: impl FnMut(&Message<'_>, &mut dyn Write) -> Result<()>,
) -> Result<()> {
    let file = batch::split(raw).map_err(|e| anyhow!(e))?;
    for (i, bm) in file.messages().enumerate() {
        let m = Message::parse(bm.raw).map_err(|e| anyhow!("message {}: {e}", i + 1))?;
        f(&m, out)?;
    }
    batch_problems(&file)
}

fn batch_problems(file: &batch::Batch<'_>) -> Result<()> {
    match file.problems.first() {
        None => Ok(()),
        Some(p) if file.problems.len() == 1 => Err(anyhow!("{p}")),
        Some(p) => Err(anyhow!(
            "{p} (and {} more batch problems)",
            file.problems.len() - 1
        )),
    }
}

fn normalize(raw: &[u8], out: &mut dyn Write) -> Result<()> {
    let file = batch::split(raw).map_err(|e| anyhow!(e))?;
    let line = |out: &mut dyn Write, seg: Option<&[u8]>| -> Result<()> {
        if let Some(s) = seg {
            out.write_all(s)?;
            out.write_all(b"\r")?;
        }
        Ok(())
    };
    line(out, file.file_header)?;
    let mut n = 0;
    for g in &file.batches {
        line(out, g.header)?;
        for m in &g.messages {
            n += 1;
            let msg = Message::parse(m).map_err(|e| anyhow!("message {n}: {e}"))?;
            out.write_all(&msg.encode())?;
        }
        line(out, g.trailer)?;
    }
    line(out, file.file_trailer)?;
    batch_problems(&file)
}

fn ack(
    raw: &[u8],
    code: Option<AckCode>,
    error: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let now = utc_timestamp();
    let file = match batch::split(raw) {
        Ok(f) => f,
        Err(e) => {
            let spec = spec_for(
                code.unwrap_or(AckCode::AR),
                &now,
                1,
                Some(AckError::from_error(&e)),
            );
            out.write_all(&hl7::build_nak_for_unparseable(raw, &spec).encode())?;
            return Err(anyhow!(e));
        }
    };
    let mut first_error = None;
    for (i, bm) in file.messages().enumerate() {
        match Message::parse(bm.raw) {
            Ok(m) => {
                let outcome = if error.is_some() {
                    Outcome::Error
                } else {
                    Outcome::Accept
                };
                let code = code.unwrap_or_else(|| AckCode::for_outcome(&AckMode::of(&m), outcome));
                let err = error
                    .as_ref()
                    .map(|t| AckError::new(ErrorCode::INTERNAL_ERROR, t.clone()));
                let spec = spec_for(code, &now, i + 1, err);
                let ack =
                    hl7::build_ack(&m, &spec).map_err(|e| anyhow!("message {}: {e}", i + 1))?;
                out.write_all(&ack.encode())?;
            }
            Err(e) => {
                let spec = spec_for(
                    code.unwrap_or(AckCode::AR),
                    &now,
                    i + 1,
                    Some(AckError::from_error(&e)),
                );
                out.write_all(&hl7::build_nak_for_unparseable(bm.raw, &spec).encode())?;
                first_error.get_or_insert_with(|| anyhow!("message {}: {e}", i + 1));
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => batch_problems(&file),
    }
}

fn spec_for(code: AckCode, now: &str, n: usize, error: Option<AckError>) -> AckSpec {
    AckSpec {
        code,
        control_id: format!("{now}{n:04}"),
        timestamp: now.to_string(),
        text: None,
        errors: error.into_iter().collect(),
    }
}

/// The current UTC time as an HL7 timestamp (`YYYYMMDDHHMMSS`).
fn utc_timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        let t = utc_timestamp();
        assert_eq!(t.len(), 14);
        assert!(t.starts_with("20"));
        assert!(t.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
