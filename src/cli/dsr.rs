//! `custodian dsr …`: what a data protection officer needs outside the API:
//! verify an erasure certificate offline, see which requests are due or
//! overdue (for a daily check), and the suppression list's totals.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::{Action, AuditEvent, AuditWriter, PublicKey, Reason, Signer, WriterOptions};
use crate::clock::{rfc3339, Clock, SystemClock};
use crate::config::Config;
use crate::db::Db;
use crate::dsr::requests::{self, ListFilter};
use crate::dsr::{certificate, suppression, Kind, Status, DAY_MICROS};

#[derive(Args, Debug)]
pub struct DsrCommand {
    #[command(subcommand)]
    pub command: DsrSub,
}

#[derive(Subcommand, Debug)]
pub enum DsrSub {
    /// Verify an erasure certificate offline against the audit public key;
    /// exit non-zero if it was changed, forged or signed by another key.
    VerifyCertificate {
        /// The certificate (JSON, as `GET /v1/dsr/{id}/certificate` returns it).
        file: PathBuf,
        /// The public key (PEM or 64 hex digits, as `custodian audit
        /// public-key` prints it). Default: the configured signing key's.
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
    /// List requests (oldest first), e.g. `--overdue` for a daily check.
    /// The read is audited.
    List {
        /// Only open requests past their due date.
        #[arg(long)]
        overdue: bool,
        /// Only open requests due within this many days.
        #[arg(long)]
        due_within_days: Option<u32>,
        /// received, in_progress, on_hold, completed or refused.
        #[arg(long)]
        status: Option<String>,
        /// access, portability, rectification or erasure.
        #[arg(long)]
        kind: Option<String>,
    },
    /// Entries on the suppression list and refusals counted.
    Suppression,
}

pub async fn run(config: Config, cmd: DsrCommand) -> anyhow::Result<()> {
    match cmd.command {
        DsrSub::VerifyCertificate { file, public_key } => {
            let key = match public_key {
                Some(path) => PublicKey::parse(
                    &std::fs::read_to_string(&path)
                        .with_context(|| format!("--public-key {}", path.display()))?,
                )?,
                None => *Signer::from_config(&config)?.public_key(),
            };
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("certificate {}", file.display()))?;
            let cert = certificate::verify(&text, &key)
                .map_err(|e| anyhow::anyhow!("certificate NOT valid: {e}"))?;
            let s = &cert.statement;
            println!("certificate valid (signed by key {})", s.key_id);
            println!("  request:        {}", s.request_id);
            println!("  tombstone:      {}", s.tombstone);
            println!("  destroyed key:  {}", s.destroyed_key_id);
            println!("  received at:    {}", s.received_at);
            println!("  erased at:      {}", s.erased_at);
            println!("  issued at:      {}", s.issued_at);
            for (what, n) in &s.removed {
                println!("  removed:        {n} {what}");
            }
            for a in &s.audit_events {
                println!("  audit event:    {}#{} ({})", a.instance, a.seq, a.step);
            }
            Ok(())
        }
        DsrSub::List {
            overdue,
            due_within_days,
            status,
            kind,
        } => list(config, overdue, due_within_days, status, kind).await,
        DsrSub::Suppression => {
            let db = Db::connect(&config).await?;
            db.migrate().await?;
            let t = suppression::totals(&db).await?;
            println!(
                "suppression list: {} entries, {} refusals",
                t.entries, t.refusals
            );
            Ok(())
        }
    }
}

async fn list(
    config: Config,
    overdue: bool,
    due_within_days: Option<u32>,
    status: Option<String>,
    kind: Option<String>,
) -> anyhow::Result<()> {
    let clock = Arc::new(SystemClock);
    let now = clock.now_micros();
    let filter = ListFilter {
        status: status
            .as_deref()
            .map(|s| Status::parse(s).context("--status: not a request status"))
            .transpose()?,
        kind: kind
            .as_deref()
            .map(|s| Kind::parse(s).context("--kind: not a request kind"))
            .transpose()?,
        overdue,
        due_before: due_within_days.map(|d| now.saturating_add(i64::from(d) * DAY_MICROS)),
        now,
        after_id: 0,
        limit: i64::MAX,
    };
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    let rows = requests::list(&db, &filter).await?;
    // The CLI appends to its own chain, like `custodian audit prune`.
    let signer = Signer::from_config(&config)?;
    let mut options = WriterOptions::from_config(&config);
    options.instance = format!("{}.cli", options.instance);
    let writer = AuditWriter::start(db.clone(), clock, signer, options).await?;
    let event = AuditEvent::system("cli:dsr", Action::DsrRead, "dsr")
        .request_id(uuid::Uuid::new_v4().to_string())
        .customers(rows.iter().map(|r| r.customer_id))
        .records(rows.len() as u64)
        .allow(Reason::Admin("operator".into()), 200)
        .build();
    let receipt = writer.record(event).await;
    writer.shutdown().await;
    receipt.context("the audit event of this read could not be recorded; nothing shown")?;
    println!(
        "{:<36}  {:<13}  {:<11}  {:<20}  {:<8}  customer",
        "request", "kind", "status", "due", "overdue"
    );
    for r in &rows {
        println!(
            "{:<36}  {:<13}  {:<11}  {:<20}  {:<8}  {}",
            r.uid,
            r.kind.as_str(),
            r.status.as_str(),
            rfc3339(r.due_at),
            if r.is_overdue(now) { "OVERDUE" } else { "" },
            r.customer_key
        );
    }
    eprintln!("{} requests", rows.len());
    Ok(())
}
