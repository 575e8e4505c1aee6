//! `custodian audit …`: the operator and auditor side of the audit trail:
//! print the public key, verify (the store, or an export offline), follow
//! new events, prune by retention.

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{
    self, store, Action, AuditEvent, AuditWriter, PublicKey, Reason, Signer, WriterOptions,
};
use crate::clock::{parse_rfc3339, rfc3339, SharedClock, SystemClock};
use crate::config::Config;
use crate::db::Db;

#[derive(Args, Debug)]
pub struct AuditCommand {
    #[command(subcommand)]
    pub command: AuditSub,
}

#[derive(Subcommand, Debug)]
pub enum AuditSub {
    /// Print the checkpoint public key for auditors (PEM SubjectPublicKeyInfo
    /// by default, or 64 hex digits) and its key id.
    PublicKey {
        #[arg(long, default_value = "pem", value_parser = ["pem", "hex"])]
        format: String,
    },
    /// Recompute every chain and checkpoint; exit non-zero on any problem.
    Verify(VerifyArgs),
    /// Print the latest signed checkpoint of every chain, one JSON line
    /// each: save it where the operator cannot change it, and pass it to
    /// `verify --since` later.
    Head,
    /// Follow new events, one line each (ids and codes only).
    Tail {
        #[arg(long, default_value_t = 500)]
        interval_ms: u64,
    },
    /// Remove events older than the cut-off (default: audit.retention_days),
    /// anchoring what remains with signed checkpoints.
    Prune {
        /// RFC 3339 cut-off, e.g. 2025-01-01T00:00:00Z.
        #[arg(long)]
        before: Option<String>,
    },
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// Verify an NDJSON export offline instead of the database.
    #[arg(long, requires = "public_key")]
    pub file: Option<PathBuf>,
    /// Public key(s) the checkpoints must be signed with (PEM or hex file).
    /// Default for the database: the configured signing key's public half.
    #[arg(long)]
    pub public_key: Vec<PathBuf>,
    /// A head saved earlier by `custodian audit head`: the trail must still
    /// contain it and extend it (a rollback or rewrite fails).
    #[arg(long, conflicts_with = "file")]
    pub since: Option<PathBuf>,
}

pub async fn run(config: Config, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd.command {
        AuditSub::PublicKey { format } => {
            let signer = Signer::from_config(&config)?;
            let key = signer.public_key();
            eprintln!("key_id: {}", key.key_id());
            if format == "hex" {
                println!("{}", key.to_hex());
            } else {
                print!("{}", key.to_pem());
            }
            Ok(())
        }
        AuditSub::Verify(args) => verify(config, args).await,
        AuditSub::Head => {
            let db = Db::connect(&config).await?;
            for cp in audit::heads(&db).await? {
                println!(
                    "{}",
                    serde_json::to_string(&audit::export::CheckpointLine::from_checkpoint(&cp))?
                );
            }
            Ok(())
        }
        AuditSub::Tail { interval_ms } => tail(config, interval_ms).await,
        AuditSub::Prune { before } => prune(config, before).await,
    }
}

fn load_keys(config: &Config, files: &[PathBuf]) -> anyhow::Result<Vec<PublicKey>> {
    if files.is_empty() {
        let has_key =
            config.audit.signing_key_file.is_some() || audit::key::dev_key_path(config).exists();
        anyhow::ensure!(
            has_key,
            "--public-key: no signing key configured; pass the auditor's public key"
        );
        return Ok(vec![*Signer::from_config(config)?.public_key()]);
    }
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("--public-key {}: cannot read", f.display()))?;
            PublicKey::parse(&text).with_context(|| format!("--public-key {}", f.display()))
        })
        .collect()
}

fn bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} verifying [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn verify(config: Config, args: VerifyArgs) -> anyhow::Result<()> {
    let keys = load_keys(&config, &args.public_key)?;
    let report = if let Some(path) = &args.file {
        let file = std::fs::File::open(path)
            .with_context(|| format!("--file {}: cannot open", path.display()))?;
        let bar = bar(0);
        let report = audit::verify_ndjson(std::io::BufReader::new(file), &keys, &|n| {
            bar.set_length(n);
            bar.set_position(n);
        })?;
        bar.finish_and_clear();
        report
    } else {
        let db = Db::connect(&config).await?;
        if let Some(path) = &args.since {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--since {}: cannot read", path.display()))?;
            let saved = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str::<audit::export::CheckpointLine>(l)
                        .map(audit::export::CheckpointLine::into_checkpoint)
                })
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--since {}: not a saved head", path.display()))?;
            if let Some(p) = audit::check_since(&db, &keys, &saved).await? {
                println!(
                    "FAILED: instance {} seq {}: {}: {}",
                    p.instance,
                    p.seq,
                    p.kind.as_str(),
                    p.detail
                );
                anyhow::bail!("the trail does not extend the saved head");
            }
            println!("the trail extends the saved head ({} chains)", saved.len());
        }
        let bar = bar(store::count_events(&db).await?);
        let report = audit::verify_store(&db, &keys, &|n| bar.set_position(n)).await?;
        bar.finish_and_clear();
        report
    };
    println!("{report}");
    anyhow::ensure!(report.is_consistent(), "audit trail verification failed");
    // An export that proves nothing about its completeness is not a pass.
    anyhow::ensure!(
        report.mode != audit::VerifyMode::Unverified,
        "audit export unverified: {}",
        report.unchecked.as_deref().unwrap_or("no signed manifest")
    );
    Ok(())
}

async fn tail(config: Config, interval_ms: u64) -> anyhow::Result<()> {
    let db = Db::connect(&config).await?;
    // Start at the current heads: only new events are printed.
    let mut seen: BTreeMap<String, i64> = store::chain_heads(&db).await?.into_iter().collect();
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms.max(50)));
    loop {
        tick.tick().await;
        for (instance, head) in store::chain_heads(&db).await? {
            let mut after = seen.get(&instance).copied().unwrap_or(0);
            while after < head {
                let rows = store::events_after(&db, &instance, after, 100).await?;
                let Some(last) = rows.last().map(store::ReadRow::seq) else {
                    break;
                };
                for row in rows {
                    match row {
                        store::ReadRow::Ok(e) => println!("{}", tail_line(&e)),
                        store::ReadRow::Bad { seq, .. } => {
                            println!("{instance}#{seq} <unreadable>")
                        }
                    }
                }
                after = last;
            }
            seen.insert(instance, after);
        }
    }
}

/// One line per event: ids and codes only (customer ids are counted, not listed).
fn tail_line(s: &audit::StoredEvent) -> String {
    let e = &s.event;
    format!(
        "{} {}#{} {} {} actor={} resource={} purpose={} status={} records={} customers={} reason={}",
        rfc3339(e.occurred_at),
        s.instance,
        s.seq,
        e.decision.as_str(),
        e.action.as_str(),
        e.actor,
        e.resource,
        e.purpose.as_deref().unwrap_or("-"),
        e.status,
        e.records,
        e.customers.len(),
        e.reason,
    )
}

async fn prune(config: Config, before: Option<String>) -> anyhow::Result<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let now = clock.now_micros();
    let cutoff = match &before {
        Some(s) => parse_rfc3339(s).context("--before: not an RFC 3339 timestamp")?,
        None => now - i64::from(config.audit.retention_days) * 86_400 * 1_000_000,
    };
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    let signer = Signer::from_config(&config)?;
    let report = audit::prune(&db, &signer, cutoff, now).await?;
    // The CLI appends to its own chain, so it never races a running server
    // of this host for the server's sequence numbers.
    let mut options = WriterOptions::from_config(&config);
    options.instance = format!("{}.cli", options.instance);
    let writer = AuditWriter::start(db.clone(), clock, signer, options).await?;
    let event = AuditEvent::system(
        &super::cli_actor("prune"),
        Action::AuditPrune,
        "audit_events",
    )
    .request_id(uuid::Uuid::new_v4().to_string())
    .records(report.removed)
    .allow(
        Reason::Admin(format!("retention before {}", rfc3339(cutoff))),
        200,
    )
    .build();
    let receipt = writer.record(event).await;
    writer.shutdown().await;
    receipt.context("pruned, but the audit event of the prune could not be recorded")?;
    println!(
        "pruned {} events before {} ({} chains anchored by signed checkpoints)",
        report.removed,
        rfc3339(cutoff),
        report.anchors.len()
    );
    Ok(())
}
