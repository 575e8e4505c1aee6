//! `custodian quality …`: run the data quality checks, show the report,
//! list the quarantine, replay it after a mapping fix.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use std::collections::HashMap;
use std::path::PathBuf;

use super::import::{cli_actor, mapped_outcome, open_vault, record_run};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::Db;
use crate::import::mapped::MappedImport;
use crate::import::mapping::Mapping;
use crate::import::quality::{self, QualityConfig};
use crate::import::quarantine;
use crate::import::NoProgress;

#[derive(Args, Debug)]
pub struct QualityCommand {
    #[command(subcommand)]
    pub command: QualitySub,
}

#[derive(Subcommand, Debug)]
pub enum QualitySub {
    /// Run every check on every source, store the results, print the report.
    Check(CheckArgs),
    /// Print the report of the latest run without running the checks.
    Report {
        #[arg(long)]
        json: bool,
    },
    /// List quarantine entries (reasons only; `--show-rows` decrypts them,
    /// which is audited).
    Quarantine(QuarantineArgs),
    /// Feed a source's open quarantine through its (fixed) mapping, or an
    /// event stream's through the current event schema, again.
    Replay(ReplayArgs),
}

/// Which verdicts make `check` exit non-zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Any check with verdict `fail` (error severity).
    Error,
    /// Any check that did not pass.
    Warn,
    /// Never (report only).
    Never,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[arg(long)]
    pub json: bool,
    #[arg(long, value_enum, default_value_t = FailOn::Error)]
    pub fail_on: FailOn,
}

#[derive(Args, Debug)]
pub struct QuarantineArgs {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// `open` (default), `replayed`, or `all`.
    #[arg(long, default_value = "open", value_parser = ["open", "replayed", "all"])]
    pub status: String,
    /// Most entries to list.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Print each open row decrypted (personal data: the read is audited).
    #[arg(long)]
    pub show_rows: bool,
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The mapping of the source to replay (its source and entity select
    /// the quarantine entries).
    #[arg(long, required_unless_present = "events", conflicts_with = "events")]
    pub mapping: Option<PathBuf>,
    /// Replay an event stream's quarantine instead (the `--source` it was
    /// imported with), against the current event schema.
    #[arg(long, value_name = "SOURCE")]
    pub events: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: Config, cmd: QualityCommand) -> anyhow::Result<()> {
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    match cmd.command {
        QualitySub::Check(args) => check(&config, &db, args).await,
        QualitySub::Report { json } => {
            let qc = QualityConfig::load(&config.policy_dir)?;
            let report = quality::report(&db, &qc).await?;
            print_json_or(&report, json)
        }
        QualitySub::Quarantine(args) => list(&config, &db, args).await,
        QualitySub::Replay(args) => replay(&config, &db, args).await,
    }
}

fn print_json_or<T: serde::Serialize + std::fmt::Display>(v: &T, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{v}");
    }
    Ok(())
}

async fn check(config: &Config, db: &Db, args: CheckArgs) -> anyhow::Result<()> {
    let qc = QualityConfig::load(&config.policy_dir)?;
    let report = quality::run_checks(db, &qc, &cli_actor(), SystemClock.now_micros()).await?;
    print_json_or(&report, args.json)?;
    let bad = match args.fail_on {
        FailOn::Error => report.failed,
        FailOn::Warn => report.failed + report.warned,
        FailOn::Never => 0,
    };
    if bad > 0 {
        anyhow::bail!(
            "quality check: {bad} checks did not pass (--fail-on {:?})",
            args.fail_on
        );
    }
    Ok(())
}

async fn list(config: &Config, db: &Db, args: QuarantineArgs) -> anyhow::Result<()> {
    let status = (args.status != "all").then_some(args.status.as_str());
    let entries = quarantine::list(
        db,
        args.source.as_deref(),
        status,
        0,
        i64::from(args.limit.clamp(1, 10_000)),
    )
    .await?;
    if !args.show_rows {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    // Decrypting is a read of personal data: audited first, fail closed.
    let vault = open_vault(config, db).await?;
    let keyring = vault.keyring();
    let actor = cli_actor();
    audit_read(config, db, &actor, entries.len() as u64).await?;
    let mut keys = HashMap::new();
    for e in &entries {
        let rows =
            quarantine::open_rows(db, &keyring, &mut keys, &e.source, &e.entity, e.id - 1, 1)
                .await?;
        let row = rows
            .first()
            .filter(|r| r.id == e.id)
            .map(|r| String::from_utf8_lossy(&r.row).into_owned());
        let out = serde_json::json!({
            "id": e.id, "source": e.source, "entity": e.entity, "line_no": e.line_no,
            "reasons": e.reasons, "status": e.status, "row": row,
        });
        println!("{out}");
    }
    Ok(())
}

async fn audit_read(config: &Config, db: &Db, actor: &str, n: u64) -> anyhow::Result<()> {
    use crate::audit::{Action, AuditEvent, AuditWriter, Reason, Signer, WriterOptions};
    let clock: crate::clock::SharedClock = std::sync::Arc::new(SystemClock);
    let mut options = WriterOptions::from_config(config);
    options.instance = format!("{}.cli", options.instance);
    let writer =
        AuditWriter::start(db.clone(), clock, Signer::from_config(config)?, options).await?;
    let event = AuditEvent::system(actor, Action::QuarantineRead, "quarantine")
        .request_id(uuid::Uuid::new_v4().to_string())
        .records(n)
        .allow(Reason::Admin("operator".into()), 200)
        .build();
    let receipt = writer.record(event).await;
    writer.shutdown().await;
    receipt
        .context("the audit event of the quarantine read could not be recorded; nothing shown")?;
    Ok(())
}

async fn replay(config: &Config, db: &Db, args: ReplayArgs) -> anyhow::Result<()> {
    let vault = open_vault(config, db).await?;
    let actor = cli_actor();
    let now = SystemClock.now_micros();
    let (result, source) = match (&args.mapping, &args.events) {
        (Some(path), _) => {
            let mapping = Mapping::load(path)?;
            let job = MappedImport {
                db,
                vault: &vault,
                mapping: &mapping,
                actor: &actor,
                now,
            };
            (job.replay(&NoProgress).await, mapping.source.clone())
        }
        (None, Some(source)) => {
            let schema = crate::import::event_schema::EventSchema::load(&config.policy_dir)?;
            let job = crate::import::events::EventImport {
                db,
                vault: &vault,
                schema: &schema,
                source,
                actor: &actor,
                now,
            };
            (job.replay(&NoProgress).await, source.clone())
        }
        (None, None) => anyhow::bail!("replay: --mapping or --events"),
    };
    let recorded = if crate::import::mapped::NothingWritten::in_result(&result) {
        Ok(())
    } else {
        let resource = format!("quarantine/{source}");
        record_run(config, db, &actor, &resource, mapped_outcome(&result)).await
    };
    let summary = result.context("replay failed")?;
    recorded?;
    print_json_or(&summary, args.json)
}
