//! The `aorta` command line.
//!
//! `aorta hl7 ...` works on message files: every FILE may hold one message, several messages one
//! after another (each starting with `MSH` at the beginning of a line) or an FHS/BHS batch; `-`
//! reads standard input. Bad input ends with a one-line error on stderr and a non-zero exit.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
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
    /// Start the engine with a configuration and run until SIGTERM/SIGINT.
    Run {
        /// The configuration file.
        #[arg(long, short, default_value = "config/aorta.toml")]
        config: PathBuf,
    },
    /// Check a configuration without starting anything; prints every problem found.
    Validate {
        /// The configuration file.
        #[arg(long, short, default_value = "config/aorta.toml")]
        config: PathBuf,
        /// Skip the checks that touch the machine (binding ports, writing the journal directory).
        #[arg(long)]
        skip_env: bool,
    },
    /// Run the route tests (`*.test.toml` beside each route) and report each case.
    Test {
        /// The routes directory (default: the configuration's `routes.dir`).
        dir: Option<PathBuf>,
        /// The configuration whose listeners, destinations and tables the routes are checked
        /// against; when the file does not exist the routes are tested on their own, with
        /// tables from `config/tables`.
        #[arg(long, short, default_value = "config/aorta.toml")]
        config: PathBuf,
    },
    /// Show what the routes do with messages from a file, without starting anything: which
    /// routes match, what each destination would receive.
    Route {
        /// Message file (one or more messages, or a batch), or - for stdin.
        file: String,
        /// The listener the messages are taken to come from.
        #[arg(long, short, default_value = "adt")]
        source: String,
        /// The configuration (routes directory, tables, listeners, destinations).
        #[arg(long, short, default_value = "config/aorta.toml")]
        config: PathBuf,
        /// Print each delivery's payload too.
        #[arg(long)]
        show: bool,
    },
    /// Convert message files between formats: HL7 v2 to a FHIR R4 transaction Bundle (one
    /// JSON document per message, one per line unless --pretty) or to the record JSON; FHIR
    /// JSON (a Bundle or resource, or several, one after another) to HL7 v2 (ADT or ORU).
    Convert {
        /// Message file (HL7 v2 messages or a batch; or FHIR JSON documents), or - for stdin.
        file: String,
        /// Target format: fhir, fhir-resources (one resource per line), record-json or hl7v2.
        #[arg(long, default_value = "fhir")]
        to: String,
        /// The ADT event for --to hl7v2 when the input holds no results (default A08).
        #[arg(long)]
        event: Option<String>,
        /// Indent the JSON.
        #[arg(long)]
        pretty: bool,
        /// UTC offset for times that carry none (FHIR requires one), e.g. +01:00.
        #[arg(long, default_value = "Z")]
        offset: String,
    },
    /// Read, convert and acknowledge HL7 v2 message files.
    #[command(subcommand)]
    Hl7(Hl7Command),
    /// Load generators.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// `aorta bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// An HTTP receiver that answers 200 to everything, for benchmarking the HTTP destination.
    HttpSink {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        bind: String,
        /// Speak HTTP/2 without TLS (prior knowledge, h2c) instead of HTTP/1.1.
        #[arg(long)]
        http2: bool,
        /// Milliseconds each answer takes (a receiver that does work per message).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// The broker's raw rate for persistent, confirmed publishing (what the RabbitMQ
    /// destination is measured against), without Aorta.
    Amqp {
        /// Broker URL.
        #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
        url: String,
        /// Messages to publish.
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// Most unconfirmed messages at a time (1 = await each confirm).
        #[arg(long, default_value_t = 1000)]
        outstanding: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 600)]
        size: usize,
        /// Keep the (emptied) queue `aorta.bench.raw`, bound to `aorta.bench` with `raw.#`, for
        /// an end-to-end run through Aorta.
        #[arg(long)]
        keep: bool,
        /// Queue the writes of up to 500 publishes before awaiting them (as the RabbitMQ
        /// destination does) instead of awaiting each publish's write.
        #[arg(long)]
        queue_writes: bool,
        /// Publish this HL7 v2 message with the properties the RabbitMQ destination gives
        /// it (message id, content type, headers) instead of `--size` bytes.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Send messages over MLLP, stop-and-wait on each connection, and report msgs/s and ACK latency.
    Mllp {
        /// Listener address.
        #[arg(long, default_value = "127.0.0.1:2575")]
        addr: SocketAddr,
        /// Concurrent connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// Messages in total.
        #[arg(long, default_value_t = 10_000)]
        messages: usize,
        /// Message files to cycle through (default: the messages under routes/fixtures/, or a
        /// built-in ADT^A01 when there are none). Each gets a fresh MSH-10.
        #[arg(long = "file")]
        files: Vec<PathBuf>,
        /// CA certificate (PEM) to trust: connect with TLS.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
        /// Server name to verify with TLS.
        #[arg(long, default_value = "localhost")]
        tls_name: String,
        /// Client certificate and key (PEM) for mutual TLS.
        #[arg(long, num_args = 2, value_names = ["CERT", "KEY"])]
        client_cert: Vec<PathBuf>,
        /// Also measure the disk's fsync rate (2 KiB append + fdatasync) in this directory.
        #[arg(long)]
        fsync_dir: Option<PathBuf>,
        /// Seconds to wait for one ACK.
        #[arg(long, default_value_t = 30)]
        ack_timeout: u64,
        /// Messages per second to offer over all connections (default: as fast as the ACKs
        /// return). A paced run measures what the engine sustains, with latencies not
        /// inflated by a backlog.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Spread the messages over this many patients (PID-3-1 set per message; default: the
        /// messages' own), for destinations that keep order per patient (`order_key`).
        #[arg(long, default_value_t = 0)]
        patients: usize,
    },
}

/// `aorta hl7 ...`
#[derive(Debug, Subcommand)]
pub enum Hl7Command {
    /// Print the decoded value at each path, one per line (an empty line when absent).
    ///
    /// Paths: PID-5-1, PID-3(1)-1, OBX(2)-5 (Terser, 0-based indexes) or PID.5.1, OBX\[2\].5
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
        Command::Validate { config, skip_env } => {
            let c = crate::config::Config::load(&config, !skip_env).map_err(|e| anyhow!("{e}"))?;
            let routes = c.load_routes().map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                anyhow!("{}", lines.join("\n"))
            })?;
            let plural = |n: usize| if n == 1 { "" } else { "s" };
            println!(
                "{}: valid ({} listener{}, {} destination{}, {} route{} in {})",
                config.display(),
                c.listeners.len(),
                plural(c.listeners.len()),
                c.destinations.len(),
                plural(c.destinations.len()),
                routes.routes.len(),
                plural(routes.routes.len()),
                c.routes.dir.display()
            );
            Ok(())
        }
        Command::Test { dir, config } => route_tests(dir, &config),
        Command::Route {
            file,
            source,
            config,
            show,
        } => route_file(&file, &source, &config, show),
        Command::Convert {
            file,
            to,
            event,
            pretty,
            offset,
        } => convert_file(&file, &to, event, pretty, &offset),
        Command::Run { config } => {
            let c = crate::config::Config::load(&config, false).map_err(|e| anyhow!("{e}"))?;
            init_logging(&c.logging)?;
            tracing::info!(config = %config.display(), version = env!("CARGO_PKG_VERSION"), "starting aorta");
            runtime()?.block_on(crate::daemon::run(&c))
        }
        Command::Bench(BenchCommand::HttpSink {
            bind,
            http2,
            delay_ms,
        }) => runtime()?.block_on(crate::loadgen::http_sink(
            &bind,
            http2,
            std::time::Duration::from_millis(delay_ms),
        )),
        Command::Bench(BenchCommand::Amqp {
            url,
            messages,
            outstanding,
            size,
            keep,
            queue_writes,
            file,
        }) => {
            let like = match &file {
                Some(f) => {
                    let raw =
                        std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                    let b = batch::split(&raw).map_err(|e| anyhow!("{}: {e}", f.display()))?;
                    let first = b.messages().next().map(|m| m.raw.to_vec());
                    Some(first.ok_or_else(|| anyhow!("{}: no HL7 v2 message", f.display()))?)
                }
                None => None,
            };
            let size = like.as_ref().map_or(size, Vec::len);
            let with = if like.is_some() {
                " with the destination's properties"
            } else {
                ""
            };
            let rate = runtime()?.block_on(crate::loadgen::amqp_publish_rate(
                &url,
                messages,
                outstanding,
                size,
                keep,
                queue_writes,
                like,
            ))?;
            let how = if queue_writes { ", writes queued" } else { "" };
            println!("amqp: {messages} persistent {size}-byte messages{with}, {outstanding} unconfirmed at most{how}: {rate:.0} msgs/s");
            Ok(())
        }
        Command::Bench(BenchCommand::Mllp {
            addr,
            connections,
            messages,
            files,
            tls_ca,
            tls_name,
            client_cert,
            fsync_dir,
            ack_timeout,
            rate,
            patients,
        }) => {
            let mut payloads = Vec::new();
            for f in &files {
                let raw = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                let b = batch::split(&raw).map_err(|e| anyhow!("{}: {e}", f.display()))?;
                payloads.extend(b.messages().map(|m| m.raw.to_vec()));
            }
            if files.is_empty() {
                payloads.extend(fixture_messages(std::path::Path::new("routes/fixtures")));
            }
            if payloads.is_empty() {
                payloads.push(crate::loadgen::SAMPLE_ADT.to_vec());
            }
            let tls = match &tls_ca {
                Some(ca) => {
                    let client = match client_cert.as_slice() {
                        [c, k] => Some((c.as_path(), k.as_path())),
                        _ => None,
                    };
                    Some((
                        crate::tls::client_config(ca, client).map_err(|e| anyhow!(e))?,
                        tls_name,
                    ))
                }
                None => None,
            };
            if let Some(dir) = &fsync_dir {
                let rate = crate::loadgen::fsync_rate(dir, 3.0)?;
                println!(
                    "disk: {rate:.0} fsyncs/s (2 KiB append + fdatasync in {})",
                    dir.display()
                );
            }
            let options = crate::loadgen::LoadOptions {
                addr,
                connections,
                messages,
                payloads,
                tls,
                ack_timeout: Duration::from_secs(ack_timeout),
                rate,
                patients,
            };
            // One thread is plenty for a stop-and-wait client and leaves the cores to the engine
            // being measured.
            let report = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(crate::loadgen::run(options))?;
            println!("{connections} connections: {report}");
            if report.naks > 0 || report.mismatches > 0 {
                return Err(anyhow!(
                    "{} NAKs and {} MSA-2 mismatches",
                    report.naks,
                    report.mismatches
                ));
            }
            Ok(())
        }
    }
}

/// The messages of every `*.hl7` file in `dir` (none when it is missing).
fn fixture_messages(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        if let Ok(raw) = std::fs::read(&f) {
            if let Ok(b) = batch::split(&raw) {
                out.extend(b.messages().map(|m| m.raw.to_vec()));
            }
        }
    }
    out
}

/// `aorta route`: each message's routing, route by route.
fn route_file(file: &str, source: &str, config: &std::path::Path, show: bool) -> Result<()> {
    use crate::route::{Disposition, Input, RouteResult};
    let c = crate::config::Config::load(config, false).map_err(|e| anyhow!("{e}"))?;
    let routes = c.load_routes().map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow!("the routes do not load:\n{}", lines.join("\n"))
    })?;
    let raw = read_input(file)?;
    let b = batch::split(&raw).map_err(|e| anyhow!("{file}: {e}"))?;
    let mut out = io::stdout().lock();
    for (i, m) in b.messages().enumerate() {
        let parsed =
            Message::parse(m.raw).map_err(|e| anyhow!("{file}: message {}: {e}", i + 1))?;
        writeln!(
            out,
            "message {} ({}^{} {}) from {source}:",
            i + 1,
            parsed.message_code().unwrap_or_default(),
            parsed.trigger_event().unwrap_or_default(),
            parsed.control_id().unwrap_or_default()
        )?;
        let input = Input {
            id: uuid::Uuid::nil(),
            source,
            raw: m.raw,
            fhir: None,
        };
        let (disposition, results) = routes.evaluate(&input);
        for (name, r) in &results {
            match r {
                RouteResult::NotMatched => writeln!(out, "  route {name}: not matched")?,
                RouteResult::Filtered => writeln!(out, "  route {name}: filtered by its script")?,
                RouteResult::Errored(e) => writeln!(out, "  route {name}: ERROR {e}")?,
                RouteResult::Delivered(ds) => {
                    for d in ds {
                        writeln!(
                            out,
                            "  route {name}: to {} ({}, {} bytes)",
                            d.destination,
                            d.format.as_str(),
                            d.payload.len()
                        )?;
                        if show {
                            let text = String::from_utf8_lossy(&d.payload);
                            for line in text.split('\r').filter(|l| !l.is_empty()) {
                                writeln!(out, "      {line}")?;
                            }
                        }
                    }
                }
            }
        }
        let summary = match disposition {
            Disposition::Routed(d) => format!(
                "routed: {} deliver{}",
                d.len(),
                if d.len() == 1 { "y" } else { "ies" }
            ),
            Disposition::Filtered => "filtered: no route delivers it".into(),
            Disposition::Errored(_) => "errored: nothing would be queued".into(),
        };
        writeln!(out, "  => {summary}")?;
    }
    Ok(())
}

/// `aorta test`: prints one line per case, the failures under it, and a summary.
fn route_tests(dir: Option<PathBuf>, config: &std::path::Path) -> Result<()> {
    let (dir, options) = if config.is_file() {
        let c = crate::config::Config::load(config, false).map_err(|e| anyhow!("{e}"))?;
        (
            dir.unwrap_or_else(|| c.routes.dir.clone()),
            c.route_options(),
        )
    } else {
        (
            dir.unwrap_or_else(|| PathBuf::from("routes")),
            crate::route::LoadOptions {
                tables_dir: PathBuf::from("config/tables"),
                ..Default::default()
            },
        )
    };
    let reports = crate::route::test::run_dir(&dir, &options).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        anyhow!("the routes do not load:\n{}", lines.join("\n"))
    })?;
    let mut out = io::stdout().lock();
    let mut file = "";
    let (mut passed, mut failed) = (0, 0);
    for r in &reports {
        if r.file != file {
            file = &r.file;
            writeln!(out, "{file}")?;
        }
        if r.passed() {
            passed += 1;
            writeln!(out, "  ok    {}", r.case)?;
        } else {
            failed += 1;
            writeln!(out, "  FAIL  {}", r.case)?;
            for f in &r.failures {
                writeln!(out, "        {f}")?;
            }
        }
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    if reports.is_empty() {
        return Err(anyhow!("no route tests found in {}", dir.display()));
    }
    if failed > 0 {
        return Err(anyhow!(
            "{failed} route test case{} failed",
            if failed == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Logs go to stderr; `RUST_LOG` overrides the configured level.
fn init_logging(cfg: &crate::config::LoggingConfig) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.level))
        .map_err(|e| anyhow!("logging.level: {e}"))?
        // lapin logs a returned (unroutable) message whole at WARN, payload included: patient
        // data. Aorta reports returns itself, without content.
        .add_directive(
            "lapin::returned_messages=error"
                .parse()
                .map_err(|e| anyhow!("logging: {e}"))?,
        );
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal());
    let result = match cfg.format {
        crate::config::LogFormat::Json => builder.json().try_init(),
        crate::config::LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow!("starting logging: {e}"))
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

/// `aorta convert`: each message of a file in another format.
fn convert_file(
    file: &str,
    to: &str,
    event: Option<String>,
    pretty: bool,
    offset: &str,
) -> Result<()> {
    use crate::convert::fhir::{self, FhirOptions};
    use crate::convert::to_v2::{to_v2, V2Options};
    if !["fhir", "fhir-resources", "record-json", "hl7v2"].contains(&to) {
        bail!("--to {to}: expected fhir, fhir-resources, record-json or hl7v2");
    }
    if !fhir::valid_offset(offset) {
        bail!("--offset {offset}: expected Z or +HH:MM / -HH:MM");
    }
    let options = FhirOptions {
        default_offset: offset.to_string(),
        ..FhirOptions::default()
    };
    let raw = read_input(file)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let write = |out: &mut dyn Write, v: &serde_json::Value| -> Result<()> {
        if pretty {
            serde_json::to_writer_pretty(&mut *out, v)?;
        } else {
            serde_json::to_writer(&mut *out, v)?;
        }
        writeln!(out)?;
        Ok(())
    };
    let v2_options = V2Options {
        event,
        ..V2Options::default()
    };
    let emit = |record: &crate::record::Clinical, out: &mut dyn Write| -> Result<()> {
        match to {
            "fhir" => {
                fhir::write_bundle(record, &options, &mut *out, pretty)?;
                writeln!(out)?;
                Ok(())
            }
            "fhir-resources" => fhir::to_resources(record, &options)
                .iter()
                .try_for_each(|r| write(out, r)),
            "hl7v2" => {
                // Messages one after another, each ending in CR, then a newline for readability.
                out.write_all(&to_v2(record, &v2_options))?;
                writeln!(out)?;
                Ok(())
            }
            _ => write(out, &serde_json::to_value(record)?),
        }
    };
    let text_start = raw
        .iter()
        .find(|b| !b.is_ascii_whitespace() && **b != 0xEF && **b != 0xBB && **b != 0xBF);
    let result = if text_start == Some(&b'{') {
        // FHIR JSON: one or more documents, one after another.
        let docs = serde_json::Deserializer::from_slice(
            raw.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(&raw),
        )
        .into_iter::<serde_json::Value>();
        let mut result = Ok(());
        for (i, doc) in docs.enumerate() {
            let n = i + 1;
            let step = doc
                .map_err(|e| anyhow!("document {n}: not JSON: {e}"))
                .and_then(|d| fhir::to_clinical(&d).map_err(|e| anyhow!("document {n}: {e}")))
                .and_then(|record| emit(&record, &mut out));
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        result
    } else {
        for_each_message(&raw, &mut out, |m, out| {
            emit(&crate::convert::v2::to_clinical(m), out)
        })
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
    let mut t = crate::record::hl7_timestamp(crate::record::now_micros());
    t.truncate(14);
    t
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
