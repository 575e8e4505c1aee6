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
    /// Evaluate on the Online Retail CSV: hold out each customer's last
    /// invoice, rank the whole catalogue, print HR/NDCG/precision@10.
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The Online Retail CSV (InvoiceNo, StockCode, …, CustomerID, Country).
    #[arg(long)]
    pub file: PathBuf,
    /// Skip the public baselines (only the served model).
    #[arg(long)]
    pub no_baselines: bool,
    /// Override model parameters, `name=value` (see `[recs]` in README).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

pub async fn run(config: Config, cmd: RecsCommand) -> anyhow::Result<()> {
    match cmd.command {
        RecsSub::Eval(args) => eval_cmd(&config, &args),
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
    value.try_into().context("--set: unknown or mistyped parameter")
}

fn eval_cmd(config: &Config, args: &EvalArgs) -> anyhow::Result<()> {
    let params = params_with(&config.recs.model, &args.set)?;
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
