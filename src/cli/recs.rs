//! `custodian recs`: build the recommendation models from the store, and
//! evaluate them offline on the Online Retail CSV (no database needed).

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

use crate::config::Config;
use crate::recs::eval::{self, EvalOptions};
use crate::recs::RecsParams;

#[derive(Args, Debug)]
pub struct RecsCommand {
    #[command(subcommand)]
    pub command: RecsSub,
}

#[derive(Subcommand, Debug)]
pub enum RecsSub {
    /// Build the models from the store (streamed, with a progress bar) and
    /// report their size and build time. The server builds its own copy at
    /// start, on `recs.rebuild_interval_secs` and on
    /// `POST /v1/admin/recs/rebuild`; this command checks a build offline.
    Build(BuildArgs),
    /// Evaluate on the Online Retail CSV: hold out each customer's last
    /// invoice, rank the whole catalogue, print HR/NDCG/precision@10.
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The Online Retail CSV (InvoiceNo, StockCode, …, CustomerID, Country).
    #[arg(long)]
    pub file: PathBuf,
    /// Skip the public baselines (only the served model).
    #[arg(long)]
    pub no_baselines: bool,
    /// The k rule's threshold (default: `privacy.k`).
    #[arg(long)]
    pub k: Option<u32>,
    /// Override model parameters, `name=value` (see `[recs.model]` in README).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

pub async fn run(config: Config, cmd: RecsCommand) -> anyhow::Result<()> {
    match cmd.command {
        RecsSub::Eval(args) => eval_cmd(&config, &args),
        RecsSub::Build(args) => build_cmd(config, &args).await,
    }
}

/// Applies `name=value` overrides through the same deserializer as the
/// configuration file, so names and types are checked the same way.
pub fn params_with(base: &RecsParams, sets: &[String]) -> anyhow::Result<RecsParams> {
    let mut value = toml::Value::try_from(base).context("parameters")?;
    let table = value.as_table_mut().context("parameters")?;
    for s in sets {
        let (k, v) = s.split_once('=').context("--set expects name=value")?;
        let parsed: toml::Value = toml::from_str(&format!("v = {v}"))
            .ok()
            .and_then(|t: toml::Table| t.get("v").cloned())
            .with_context(|| format!("--set {k}: not a number or boolean"))?;
        table.insert(k.trim().to_owned(), parsed);
    }
    value
        .try_into()
        .context("--set: unknown or mistyped parameter")
}

fn eval_cmd(config: &Config, args: &EvalArgs) -> anyhow::Result<()> {
    let mut params = params_with(&config.recs.model, &args.set)?;
    params.k = args.k.unwrap_or(config.privacy.k);
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let started = std::time::Instant::now();
    let (data, summary) = eval::load_online_retail(std::io::BufReader::new(file))?;
    println!(
        "loaded {} of {} lines ({} guest, {} cancellation, {} non-positive, {} unreadable dropped): {} customers, {} invoices, {} products in {:.2} s",
        summary.kept,
        summary.lines,
        summary.guests,
        summary.cancellations,
        summary.non_positive,
        summary.unreadable,
        data.customers.len(),
        data.baskets.len(),
        data.items.len(),
        started.elapsed().as_secs_f64()
    );
    let rows = eval::run(
        &data,
        &EvalOptions {
            params,
            baselines: !args.no_baselines,
        },
    )?;
    print!("{}", eval::render(&rows));
    Ok(())
}

/// Progress bar over rows read, then the fit.
struct Bar(indicatif::ProgressBar);

impl crate::recs::build::BuildProgress for Bar {
    fn rows(&mut self, read: u64) {
        self.0.set_position(read);
    }
    fn stage(&mut self, name: &'static str) {
        self.0.set_message(name);
    }
}

async fn build_cmd(config: Config, args: &BuildArgs) -> anyhow::Result<()> {
    let db = crate::db::Db::connect(&config).await?;
    db.migrate().await?;
    let purposes_path = config.policy_dir.join("purposes.toml");
    let purposes = crate::pipeline::purpose::PurposeCatalog::load(&purposes_path)
        .map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", purposes_path.display()))?;
    let purpose = purposes
        .parse(crate::recs::job::PURPOSE)
        .map_err(|_| anyhow::anyhow!("the purpose catalog has no `personalization` purpose"))?;
    let consent = crate::pipeline::consent::ConsentPredicate::for_purpose(&purposes, &purpose);
    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new_spinner()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg}: {pos} rows ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000;
    let mut progress = Bar(bar);
    let built = crate::recs::build::build(
        &db,
        &consent,
        &crate::recs::RecsParams {
            k: config.privacy.k,
            ..config.recs.model.clone()
        },
        "cli".to_owned(),
        now,
        &mut progress,
    )
    .await?;
    progress.0.finish_and_clear();
    let rows = built.rows_read;
    // The snapshot the server would hold: model plus every customer's
    // scored lists and a pseudonym index (placeholder tokens of the real
    // length; the real ones need the master key, which a build check does
    // not).
    let scoring = std::time::Instant::now();
    let snapshot = crate::recs::serve::Snapshot::new(built, |k| format!("ps_{k:0>22}"));
    let stats = snapshot.stats();
    println!(
        "built in {:.2} s ({} rows read, fit {:.2} s, customers' lists {:.2} s): {} customers, {} items, {} EASE weights, {} neighbour pairs, {} rules; {:.1} MB in memory (model {:.1} MB)",
        started.elapsed().as_secs_f64(),
        rows,
        stats.fit_ms as f64 / 1000.0,
        scoring.elapsed().as_secs_f64(),
        stats.customers,
        stats.items,
        stats.ease_weights,
        stats.neighbour_pairs,
        stats.together_rules,
        stats.memory_bytes as f64 / 1e6,
        snapshot.model.memory_bytes() as f64 / 1e6,
    );
    Ok(())
}
