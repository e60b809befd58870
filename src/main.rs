//! The `exactly` command line: `run` the daemon, or `check` a configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use exactly::config::Settings;
use exactly::shutdown::Shutdown;
use exactly::{app, telemetry};

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
}

fn load(path: &std::path::Path) -> Result<Settings, ExitCode> {
    Settings::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_CONFIG } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(settings) => {
                println!("# {} is valid; effective settings:", config.display());
                print!("{}", settings.to_masked_toml());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Run { config } => {
            let settings = match load(&config) {
                Ok(s) => s,
                Err(code) => return code,
            };
            telemetry::init_logging(&settings.log);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let shutdown = Shutdown::new();
            let result = runtime.block_on(async {
                app::install_signal_handlers(shutdown.clone());
                app::run(settings, shutdown).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "exactly stopped with an error");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
