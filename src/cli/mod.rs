//! The `custodian` command line: one subcommand per operator task. Each
//! subcommand loads the same layered configuration as the server.

pub mod audit;
pub mod dsr;
pub mod keys;
pub mod policy;
pub mod recs;
pub mod token;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

use crate::config::{Config, LogFormat};
use crate::db::Db;
use crate::startup::Application;

pub mod import;
pub mod quality;

#[derive(Parser, Debug)]
#[command(
    name = "custodian",
    version,
    about = "Privacy-compliant data governance gateway"
)]
pub struct Cli {
    /// TOML configuration file (settings: see README).
    #[arg(long, global = true, env = "CUSTODIAN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format: human or json (overrides log.format).
    #[arg(long, global = true, value_parser = ["human", "json"])]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the gateway with a synthetic demo shop loaded (same as `serve --demo`).
    Demo(ServeArgs),
    /// Apply database migrations and exit.
    Migrate,
    /// Import a data set (see `custodian import --help`).
    Import(import::ImportArgs),
    /// Data quality: checks, report, quarantine, replay.
    Quality(quality::QualityCommand),
    /// Audit trail: public key, verify, tail, prune.
    Audit(audit::AuditCommand),
    /// Keys: status, rotate (resumable).
    Keys(keys::KeysCommand),
    /// Access policy: import, export, check a decision, who can.
    Policy(policy::PolicyCommand),
    /// Mint a development token (dev HS256 secret only).
    Token(token::TokenArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) for `custodian`.
    Man,
    /// Data subject requests: verify an erasure certificate, list due requests.
    Dsr(dsr::DsrCommand),
    /// Recommendations: build the models, evaluate them offline.
    Recs(recs::RecsCommand),
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Fill the store with the deterministic synthetic demo shop first.
    #[arg(long)]
    pub demo: bool,
    /// Listen address (overrides server.listen).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
}

/// The audit actor of a CLI command that changes data: a system actor
/// naming the command and the operating-system user who ran it
/// (`cli:policy@alice`), so a change made on the database host is as
/// attributable in the trail as one made over HTTP.
pub fn cli_actor(command: &str) -> String {
    format!("cli:{command}@{}", os_user())
}

/// The operating-system user: `$USER`, else `$LOGNAME`, else the numeric
/// uid from `/proc/self/status`, else `unknown`. Only `A-Za-z0-9._-` is
/// kept, so the value cannot forge structure in the actor.
pub fn os_user() -> String {
    let from_env = ["USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()));
    let raw = from_env
        .or_else(|| {
            std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("Uid:"))
                        .and_then(|rest| {
                            rest.split_whitespace()
                                .next()
                                .map(|uid| format!("uid{uid}"))
                        })
                })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let clean: String = raw
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    if clean.is_empty() {
        "unknown".to_owned()
    } else {
        clean
    }
}

/// Parses arguments, runs the command, and returns the process exit code.
pub async fn run() -> i32 {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(()) => 0,
        Err(e) => {
            // One line, the whole cause chain; no backtrace.
            eprintln!("error: {e:#}");
            1
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    // Setup helpers need no configuration: they work on any machine.
    match &cli.command {
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "custodian", &mut std::io::stdout());
            return Ok(());
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
            return Ok(());
        }
        _ => {}
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(format) = &cli.log_format {
        config.log.format = if format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Human
        };
    }
    crate::telemetry::init(&config.log)?;
    match cli.command {
        Command::Serve(args) => serve(config, args).await,
        Command::Demo(args) => serve(config, ServeArgs { demo: true, ..args }).await,
        Command::Import(args) => import::run(config, args).await,
        Command::Quality(cmd) => quality::run(config, cmd).await,
        Command::Migrate => {
            let db = Db::connect(&config).await?;
            db.migrate().await?;
            println!(
                "migrations applied ({}, {})",
                db.backend.name(),
                db.display_url()
            );
            Ok(())
        }
        Command::Audit(cmd) => audit::run(config, cmd).await,
        Command::Keys(cmd) => keys::run(config, cmd).await,
        Command::Policy(cmd) => policy::run(config, cmd).await,
        Command::Token(args) => token::run(&config, &args).await,
        Command::Completions { .. } | Command::Man => Ok(()),
        Command::Dsr(cmd) => dsr::run(config, cmd).await,
        Command::Recs(cmd) => recs::run(config, cmd).await,
    }
}

async fn serve(mut config: Config, args: ServeArgs) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    let app = Application::build(config).await?;
    if args.demo {
        import::load_demo_shop(app.state()).await?;
    }
    tracing::info!(addr = %app.addr(), backend = app.state().db.backend.name(), "custodian listening");
    app.run_until_stopped()
        .await
        .context("server stopped with an error")
}
