//! `custodian import …`: bulk loads of public data sets, with a progress bar
//! on a terminal and a summary of every skipped or transformed row.

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::crypto::Vault;
use crate::db::customers::ProfileSealer;
use crate::db::Db;
use crate::import::mapped::{MappedImport, MappedSummary, NothingWritten};
use crate::import::mapping::Mapping;
use crate::import::{GuestPolicy, ImportOptions, ImportSummary, NoProgress, Progress};
use crate::pipeline::purpose::PurposeCatalog;

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(subcommand)]
    pub source: ImportSource,
}

#[derive(Subcommand, Debug)]
pub enum ImportSource {
    /// The UCI "Online Retail" CSV (InvoiceNo, StockCode, Description,
    /// Quantity, InvoiceDate, UnitPrice, CustomerID, Country).
    OnlineRetail(OnlineRetailArgs),
    /// The CDNOW purchase history CSV (customer_id, date, number_of_cds,
    /// dollar_value).
    Cdnow(CdnowArgs),
    /// Any system's customers or orders, CSV or NDJSON, through a TOML
    /// mapping onto the standard schema (see README, "Bringing in a new
    /// source"). Failed rows go to the quarantine.
    Mapped(MappedArgs),
    /// An event stream (web logs, app analytics) as NDJSON, one event per
    /// line in the shape of POST /v1/events, checked against the event
    /// schema; events that do not match are quarantined.
    Events(EventsArgs),
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// The stream's name in reports and the quarantine (`a-z0-9_`).
    #[arg(long)]
    pub source: String,
    /// The NDJSON file.
    pub file: PathBuf,
    #[arg(long, short)]
    pub quiet: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MappedArgs {
    /// The mapping file (TOML).
    #[arg(long)]
    pub mapping: PathBuf,
    /// The CSV or NDJSON file.
    pub file: PathBuf,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CdnowArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// Customers per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_customers: u32,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct OnlineRetailArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// Lines without CustomerID: keep as anonymous orders, or skip.
    #[arg(long, value_enum, default_value_t = GuestPolicy::Keep)]
    pub guests: GuestPolicy,
    /// Give customers deterministic synthetic profiles (sealed like real ones).
    #[arg(long)]
    pub synthesize_profiles: bool,
    /// Invoices per transaction.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_invoices: u32,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(config: Config, args: ImportArgs) -> anyhow::Result<()> {
    match args.source {
        ImportSource::OnlineRetail(a) => online_retail(config, a).await,
        ImportSource::Cdnow(a) => cdnow(config, a).await,
        ImportSource::Mapped(a) => mapped(config, a).await,
        ImportSource::Events(a) => event_stream(config, a).await,
    }
}

async fn event_stream(config: Config, args: EventsArgs) -> anyhow::Result<()> {
    let schema = crate::import::event_schema::EventSchema::load(&config.policy_dir)?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    let vault = open_vault(&config, &db).await?;
    let actor = cli_actor();
    let bar = progress_bar(len, args.quiet);
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let job = crate::import::events::EventImport {
        db: &db,
        vault: &vault,
        schema: &schema,
        source: &args.source,
        actor: &actor,
        now: SystemClock.now_micros(),
    };
    let result = job.run(file, progress).await;
    let resource = format!("import/{}", args.source);
    let recorded = if NothingWritten::in_result(&result) {
        Ok(())
    } else {
        record_run(&config, &db, &actor, &resource, mapped_outcome(&result)).await
    };
    let summary = result.with_context(|| format!("import of {} failed", args.file.display()))?;
    recorded?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

async fn mapped(config: Config, args: MappedArgs) -> anyhow::Result<()> {
    let mapping = Mapping::load(&args.mapping)?;
    let purposes = load_purposes(&config)?;
    for c in &mapping.consent {
        if !purposes.contains(&c.purpose) {
            anyhow::bail!(
                "mapping {}: consent.purpose {}: not a purpose of purposes.toml",
                args.mapping.display(),
                c.purpose
            );
        }
    }
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    let vault = open_vault(&config, &db).await?;
    let actor = cli_actor();
    let bar = progress_bar(len, args.quiet);
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let job = MappedImport {
        db: &db,
        vault: &vault,
        mapping: &mapping,
        actor: &actor,
        now: SystemClock.now_micros(),
    };
    let result = job.run(file, progress).await;
    let resource = format!("import/{}", mapping.source);
    let recorded = if NothingWritten::in_result(&result) {
        Ok(())
    } else {
        record_run(&config, &db, &actor, &resource, mapped_outcome(&result)).await
    };
    // The run's own failure is the one to report; a successful run is not
    // done until its audit event is recorded.
    let summary = result.with_context(|| format!("import of {} failed", args.file.display()))?;
    recorded?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

/// The CLI's actor in the audit trail and in `import_runs`: `cli:<OS user>`.
pub fn cli_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    format!("cli:{user}")
}

fn load_purposes(config: &Config) -> anyhow::Result<PurposeCatalog> {
    let path = config.policy_dir.join("purposes.toml");
    PurposeCatalog::load(&path).map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", path.display()))
}

/// The vault, opened with the same master key and purposes as `serve`.
pub async fn open_vault(config: &Config, db: &Db) -> anyhow::Result<Vault> {
    let purposes = load_purposes(config)?;
    let ids: Vec<_> = purposes.all().iter().map(|p| p.id.clone()).collect();
    Vault::open(config, db, &ids).await
}

/// What an import run did, for its audit event: records written and a
/// one-line account; `None` when the run failed.
pub type RunOutcome = Option<(u64, String)>;

/// The audit account of a mapped import or replay.
pub fn mapped_outcome(result: &anyhow::Result<MappedSummary>) -> RunOutcome {
    result.as_ref().ok().map(|s| {
        (
            s.imported + s.merged,
            format!(
                "run {}: {} read, {} imported, {} merged, {} already present, {} quarantined, \
                 {} skipped",
                s.run_id,
                s.rows_read,
                s.imported,
                s.merged,
                s.already_present,
                s.quarantined,
                s.skipped_total()
            ),
        )
    })
}

/// The audit account of a data set import.
fn summary_outcome(result: &anyhow::Result<ImportSummary>) -> RunOutcome {
    result.as_ref().ok().map(|s| {
        (
            s.order_lines_created,
            format!(
                "{} read, {} lines created, {} already present, {} skipped",
                s.rows_read,
                s.order_lines_created,
                s.lines_already_present,
                s.skipped_total()
            ),
        )
    })
}

/// One audit event per run (system actor with the OS user), on the CLI's
/// own chain, failed runs included (what was committed before the failure
/// stays). A run is not reported as done unless its event is recorded.
pub async fn record_run(
    config: &Config,
    db: &Db,
    actor: &str,
    resource: &str,
    outcome: RunOutcome,
) -> anyhow::Result<()> {
    use crate::audit::{Action, AuditEvent, AuditWriter, Reason, Signer, WriterOptions};
    // Every import run ends here, right after its tables grew: the planner
    // learns their new sizes now, not whenever autovacuum comes by. A
    // failure costs only speed, never the run's record.
    if let Err(e) = db.refresh_statistics(&[]).await {
        tracing::warn!(error = %e, "planner statistics not refreshed after the import");
    }
    let clock: crate::clock::SharedClock = std::sync::Arc::new(SystemClock);
    let signer = Signer::from_config(config)?;
    let mut options = WriterOptions::from_config(config);
    options.instance = format!("{}.cli", options.instance);
    let writer = AuditWriter::start(db.clone(), clock, signer, options).await?;
    let builder = AuditEvent::system(actor, Action::Import, resource)
        .request_id(uuid::Uuid::new_v4().to_string());
    let event = match outcome {
        Some((records, account)) => builder
            .records(records)
            .allow(Reason::Admin(account), 200)
            .build(),
        None => builder
            .allow(Reason::Outcome("import_failed".to_owned()), 500)
            .build(),
    };
    let receipt = writer.record(event).await;
    writer.shutdown().await;
    receipt.context("the audit event of the import could not be recorded")?;
    Ok(())
}

async fn cdnow(config: Config, args: CdnowArgs) -> anyhow::Result<()> {
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    let opts = ImportOptions {
        batch_invoices: usize::try_from(args.batch_customers).unwrap_or(500),
        ..ImportOptions::default()
    };
    let bar = progress_bar(len, args.quiet);
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let result = crate::import::import_cdnow(&db, reader, &opts, progress).await;
    let recorded = record_run(
        &config,
        &db,
        &cli_actor(),
        "import/cdnow",
        summary_outcome(&result),
    )
    .await;
    let summary = result.with_context(|| format!("import of {} failed", args.file.display()))?;
    recorded?;
    print_summary(&summary, args.json)
}

fn print_summary(summary: &ImportSummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

async fn online_retail(config: Config, args: OnlineRetailArgs) -> anyhow::Result<()> {
    // Open the file before touching the database: a wrong path fails fast
    // with one line.
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    let sealer = if args.synthesize_profiles {
        Some(profile_sealer(&config, &db).await?)
    } else {
        None
    };
    let opts = ImportOptions {
        guests: args.guests,
        synthesize_profiles: args.synthesize_profiles,
        batch_invoices: usize::try_from(args.batch_invoices).unwrap_or(500),
        ..ImportOptions::default()
    };
    let bar = progress_bar(len, args.quiet);
    let progress: &dyn Progress = match &bar {
        Some(bar) => bar,
        None => &NoProgress,
    };
    let result =
        crate::import::import_online_retail(&db, sealer.as_deref(), reader, &opts, progress).await;
    let resource = "import/online_retail";
    let recorded = record_run(
        &config,
        &db,
        &cli_actor(),
        resource,
        summary_outcome(&result),
    )
    .await;
    let summary = result.with_context(|| format!("import of {} failed", args.file.display()))?;
    recorded?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{summary}");
    }
    Ok(())
}

/// A bytes-based bar on stderr, only when a person is watching.
fn progress_bar(len: u64, quiet: bool) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} (eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// The sealer that encrypts synthetic profiles: the gateway's vault, opened
/// with the same master key and purpose catalog as `serve`.
pub async fn profile_sealer(config: &Config, db: &Db) -> anyhow::Result<Box<dyn ProfileSealer>> {
    let path = config.policy_dir.join("purposes.toml");
    let purposes = PurposeCatalog::load(&path)
        .map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", path.display()))?;
    let ids: Vec<_> = purposes.all().iter().map(|p| p.id.clone()).collect();
    Ok(Box::new(Vault::open(config, db, &ids).await?))
}

/// Loads the demo shop into the application's store (for `serve --demo`).
pub async fn load_demo_shop(state: &crate::state::AppState) -> anyhow::Result<()> {
    let summary = crate::demo::load_demo(
        &state.db,
        &state.vault,
        crate::demo::DEFAULT_SEED,
        crate::demo::DemoSize::DEFAULT,
    )
    .await
    .context("cannot load the demo shop")?;
    println!("{summary}");
    println!("mint a token with: custodian token --sub you --role support_agent");
    Ok(())
}
