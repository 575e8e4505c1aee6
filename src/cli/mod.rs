//! The `custodian` command line: one subcommand per operator task. Each
//! subcommand loads the same layered configuration as the server.

pub mod audit;
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
    /// Audit trail: public key, verify, tail, prune.
    Audit(audit::AuditCommand),
    /// Keys: status, rotate (resumable).
    Keys(keys::KeysCommand),
    /// Access policy: import, export, check a decision, who can.
    Policy(policy::PolicyCommand),
    /// Mint a development token (dev HS256 secret only).
    Token(token::TokenArgs),
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
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(format) = &cli.log_format {
        config.log.format = if format == "json" {
            LogFormat::Json
        } else {
            LogFormat::Human
        };
    }
    crate::telemetry::init(&config.log);
    match cli.command {
        Command::Serve(args) => serve(config, args).await,
        Command::Demo(args) => serve(config, ServeArgs { demo: true, ..args }).await,
        Command::Import(args) => import::run(config, args).await,
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
        Command::Token(args) => token::run(&config, &args),
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
