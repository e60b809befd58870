//! The command line: `run` the daemon, `check` a configuration, `verify` the
//! exactly-once audit. A program with custom transform steps calls
//! [`main_with`] with its own [`Registry`]; `src/main.rs` passes the built-in one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::Settings;
use crate::shutdown::Shutdown;
use crate::transform::Registry;
use crate::verify::{self, Until, VerifyOptions};
use crate::{app, telemetry};

/// Exit code for a configuration or usage error (nothing touched Kafka).
const EXIT_CONFIG: u8 = 2;

#[derive(Parser)]
#[command(
    name = "exactly",
    version,
    about = "Consume, transform and produce Kafka records exactly once"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon until SIGTERM/SIGINT.
    Run {
        /// The TOML configuration; `EXACTLY__SECTION__KEY` variables override it.
        #[arg(short, long, env = "EXACTLY_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration and print the effective settings (secrets masked).
    Check {
        /// The TOML configuration to check.
        #[arg(short, long, env = "EXACTLY_CONFIG")]
        config: PathBuf,
    },
    /// Audit exactly-once from the lineage headers: every input's outputs
    /// present once and in order. Exit 0 clean, 1 violations, 2 error.
    Verify(VerifyArgs),
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Take brokers, topics, group and client properties from this daemon
    /// configuration; the options below override it.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Brokers to read from.
    #[arg(long)]
    bootstrap_servers: Option<String>,
    /// Input topic (repeat for several).
    #[arg(long = "input")]
    inputs: Vec<String>,
    /// Output topic (repeat for several; dead-letter topics count as outputs).
    #[arg(long = "output")]
    outputs: Vec<String>,
    /// The daemon's consumer group.
    #[arg(long)]
    group: Option<String>,
    /// Audit inputs up to the group's committed offsets (default with a
    /// group) or up to the end of each partition.
    #[arg(long, value_enum)]
    until: Option<Until>,
    /// Inputs without any output are not violations (filtering chains).
    #[arg(long)]
    allow_missing: bool,
    /// Outputs without lineage headers are not violations (another writer
    /// shares an output topic). Without it they are: a duplicate among them
    /// could not be seen.
    #[arg(long)]
    allow_unstamped: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for transactions still open in the outputs' snapshot.
    #[arg(long, default_value_t = 120)]
    wait_secs: u64,
    /// Extra librdkafka client property, `key=value` (repeatable). A value
    /// may be a reference, `${file:PATH}` or `${env:NAME}`, so that no secret
    /// needs to be on the command line.
    #[arg(long = "property", value_parser = key_value)]
    properties: Vec<(String, String)>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

fn verify_options(args: &VerifyArgs) -> Result<VerifyOptions, String> {
    let settings = match &args.config {
        Some(path) => Some(Settings::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let bootstrap_servers = args
        .bootstrap_servers
        .clone()
        .or_else(|| settings.as_ref().map(|s| s.kafka.bootstrap_servers.clone()))
        .ok_or("name the brokers with --bootstrap-servers or --config")?;
    let inputs = if args.inputs.is_empty() {
        settings
            .as_ref()
            .map(|s| s.input.topics.clone())
            .unwrap_or_default()
    } else {
        args.inputs.clone()
    };
    let outputs = if args.outputs.is_empty() {
        settings
            .as_ref()
            .map(|s| {
                // Dead letters count as outputs of the input they came from.
                let mut t = vec![s.output.topic.clone()];
                t.extend(s.dead_letter.topic.clone());
                t
            })
            .unwrap_or_default()
    } else {
        args.outputs.clone()
    };
    if inputs.is_empty() || outputs.is_empty() {
        return Err("name the topics with --input and --output, or --config".into());
    }
    let mut hints = Vec::new();
    if let (Some(s), true) = (&settings, args.outputs.is_empty()) {
        for (i, step) in s.transform.iter().enumerate() {
            if step.get("type").and_then(|t| t.as_str()) == Some("route") {
                hints.push(format!(
                    "transform {} is a route step: the topics it writes to are not known from the configuration, \
                     and inputs routed there show as incomplete; name every output topic with --output \
                     (--output {} --output <each routed topic>{})",
                    i + 1,
                    s.output.topic,
                    s.dead_letter
                        .topic
                        .as_ref()
                        .map(|t| format!(" --output {t}"))
                        .unwrap_or_default()
                ));
            }
        }
    }
    let group = args
        .group
        .clone()
        .or_else(|| settings.as_ref().map(|s| s.kafka.group_id.clone()));
    let until = args.until.unwrap_or(if group.is_some() {
        Until::Committed
    } else {
        Until::End
    });
    // The configuration's client properties (its security settings) with
    // their references read, then --property, whose values may be
    // references too.
    let mut properties: BTreeMap<String, String> = settings
        .as_ref()
        .map(|s| {
            let mut p = s.kafka.resolved.client.clone();
            p.extend(
                s.kafka
                    .resolved
                    .consumer
                    .iter()
                    .filter(|(k, _)| {
                        k.starts_with("security.")
                            || k.starts_with("sasl.")
                            || k.starts_with("ssl.")
                    })
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            p
        })
        .unwrap_or_default();
    for (key, raw) in &args.properties {
        let r = crate::secrets::resolve(key, raw).map_err(|e| format!("--property {key}: {e}"))?;
        if r.secret {
            crate::secrets::register(&r.value);
        }
        properties.insert(key.clone(), r.value);
    }
    Ok(VerifyOptions {
        bootstrap_servers,
        inputs,
        outputs,
        group,
        until,
        wait: Duration::from_secs(args.wait_secs),
        properties,
        progress: !args.json,
        hints,
    })
}

fn run_verify(args: &VerifyArgs) -> ExitCode {
    let opts = match verify_options(args) {
        Ok(o) => o,
        Err(e) => {
            crate::secrets::eprint_line(&format!("error: {e}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let allow = verify::Allow {
        missing: args.allow_missing,
        unstamped: args.allow_unstamped,
    };
    match verify::verify(&opts) {
        Ok(outcome) => {
            if args.json {
                println!("{}", verify::render::json(&outcome, allow));
            } else {
                print!("{}", verify::render::text(&outcome, allow));
            }
            if outcome.report.has_violations(allow) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            crate::secrets::eprint_line(&format!("error: {e:#}"));
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Loads and validates a configuration, including its transform chain.
fn load(path: &std::path::Path, registry: &Registry) -> Result<Settings, ExitCode> {
    let fail = |e: String| {
        crate::secrets::eprint_line(&format!("error: {e}"));
        ExitCode::from(EXIT_CONFIG)
    };
    let settings = Settings::load(path).map_err(|e| fail(e.to_string()))?;
    registry
        .build(
            &settings.transform,
            settings.input.format,
            settings.output.format,
        )
        .map_err(|e| fail(format!("invalid configuration at {e}")))?;
    Ok(settings)
}

/// `exactly --version`: this crate's version, and the librdkafka it is built
/// with and that library's features (TLS, SASL mechanisms, codecs).
fn version() -> String {
    let (version, features) = crate::kafka::library();
    format!(
        "{} (librdkafka {version}; features: {features})",
        env!("CARGO_PKG_VERSION")
    )
}

/// Runs the command line with the step types of `registry`.
pub fn main_with(registry: Registry) -> ExitCode {
    let command = Cli::command().version(&*Box::leak(version().into_boxed_str()));
    let parsed = command
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Verify(args) => run_verify(&args),
        Command::Check { config } => match load(&config, &registry) {
            Ok(settings) => {
                println!("# {} is valid; effective settings:", config.display());
                print!("{}", settings.to_masked_toml());
                print!("{}", crate::kafka::describe_clients(&settings));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            // The runtime and the stop signals first: a SIGTERM that comes
            // while the configuration loads is a graceful stop too.
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    crate::secrets::eprint_line(&format!("error: cannot start the runtime: {e}"));
                    return ExitCode::FAILURE;
                }
            };
            let shutdown = Shutdown::new();
            runtime.block_on(async { app::install_signal_handlers(shutdown.clone()) });
            let settings = match load(&config, &registry) {
                Ok(s) => s,
                Err(code) => return code,
            };
            telemetry::init_logging(&settings.log);
            let result = runtime.block_on(app::run(settings, registry, shutdown));
            let code: u8 = match result {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "exactly stopped with an error");
                    crate::secrets::eprint_line(&format!("error: {e:#}"));
                    1
                }
            };
            if !crate::engine::exit_handlers_are_safe() {
                app::exit_now(i32::from(code));
            }
            ExitCode::from(code)
        }
    }
}
