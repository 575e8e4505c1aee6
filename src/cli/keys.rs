//! `custodian keys …`: key metadata and KEK rotation from the operator's
//! shell. Rotation here runs in the foreground with a progress bar; serving
//! instances keep working throughout and learn the new version from the
//! store. The CLI records its own `key.rotate` audit event on a chain of its
//! own (`<instance>.cli`), as `audit prune` does.

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::Arc;

use crate::audit::{Action, AuditEvent, AuditWriter, Reason, Signer, WriterOptions};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::crypto::rotation::{self, RotationError, DEFAULT_BATCH};
use crate::crypto::Vault;
use crate::db::Db;
use crate::pipeline::purpose::PurposeCatalog;

#[derive(Args, Debug)]
pub struct KeysCommand {
    #[command(subcommand)]
    pub command: KeysSub,
}

#[derive(Subcommand, Debug)]
pub enum KeysSub {
    /// Key versions, data keys per version, rotation progress (no key material).
    Status,
    /// Add a KEK version and re-wrap every data key under it; resumes an
    /// interrupted rotation instead if there is one.
    Rotate {
        /// Only resume an interrupted rotation; never add a version.
        #[arg(long)]
        resume: bool,
        /// Data keys re-wrapped per transaction.
        #[arg(long, default_value_t = DEFAULT_BATCH)]
        batch_size: i64,
    },
}

pub async fn run(config: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    match cmd.command {
        KeysSub::Status => {
            let status = rotation::status(&db, clock.now_micros()).await?;
            if status.versions.is_empty() {
                println!("no key versions yet: the first `serve` records version 1");
                return Ok(());
            }
            println!(
                "{:>7}  {:<8}  {:>10}  {:<27}  {:<27}  created",
                "version", "status", "data_keys", "rotation_started", "rotation_finished"
            );
            for v in &status.versions {
                println!(
                    "{:>7}  {:<8}  {:>10}  {:<27}  {:<27}  {}",
                    v.version,
                    v.status,
                    v.data_keys,
                    v.rotation_started_at.as_deref().unwrap_or("-"),
                    v.rotation_finished_at.as_deref().unwrap_or("-"),
                    v.created_at
                );
            }
            println!(
                "rotation: {} (target version {}, {} data keys remaining)",
                status.rotation.state, status.rotation.target_version, status.rotation.remaining
            );
            Ok(())
        }
        KeysSub::Rotate { resume, batch_size } => {
            rotate(config, db, clock, resume, batch_size).await
        }
    }
}

async fn rotate(
    config: Config,
    db: Db,
    clock: SharedClock,
    resume: bool,
    batch_size: i64,
) -> anyhow::Result<()> {
    let purposes_path = config.policy_dir.join("purposes.toml");
    let purposes = PurposeCatalog::load(&purposes_path)
        .map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", purposes_path.display()))?;
    let ids: Vec<_> = purposes.all().iter().map(|p| p.id.clone()).collect();
    let vault = Vault::open(&config, &db, &ids).await?;
    let mut options = WriterOptions::from_config(&config);
    options.instance = format!("{}.cli", options.instance);
    let owner = rotation::owner_id(&options.instance);
    let job = match rotation::start(&vault, &db, owner, clock.now_micros(), resume).await {
        Ok(Some(job)) => job,
        Ok(None) => {
            println!("no interrupted rotation to resume");
            return Ok(());
        }
        Err(RotationError::InProgress) => {
            anyhow::bail!("a key rotation is already in progress (see `custodian keys status`)")
        }
        Err(RotationError::Other(e)) => return Err(e),
    };
    eprintln!(
        "{} key rotation to version {}",
        if job.resumed { "resuming" } else { "started" },
        job.version
    );
    let start_left = rotation::status(&db, clock.now_micros())
        .await?
        .rotation
        .remaining;
    let bar = ProgressBar::new(start_left);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} re-wrapping [{bar:40}] {pos}/{len} data keys ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    let result = rotation::run(&vault, &db, &clock, &job, batch_size, &|done, left| {
        bar.set_length(done + left);
        bar.set_position(done);
    })
    .await;
    bar.finish_and_clear();

    let signer = Signer::from_config(&config)?;
    let writer = AuditWriter::start(db.clone(), clock, signer, options).await?;
    let base = AuditEvent::system(&super::cli_actor("keys"), Action::KeyRotate, "keys")
        .request_id(uuid::Uuid::new_v4().to_string());
    let event = match &result {
        Ok(report) => base.records(report.rewrapped).allow(
            Reason::Admin(format!(
                "rotation to key version {} finished",
                report.version
            )),
            200,
        ),
        Err(_) => base.deny(Reason::Outcome("rotation_interrupted".to_owned()), 500),
    };
    let receipt = writer.record(event.build()).await;
    writer.shutdown().await;
    let report = result.context("key rotation stopped; run `custodian keys rotate --resume`")?;
    receipt.context("rotated, but the audit event of the rotation could not be recorded")?;
    println!(
        "key version {} active; {} data keys re-wrapped",
        report.version, report.rewrapped
    );
    Ok(())
}
