//! `custodian policy …`: the operator side of the access policy. Every
//! subcommand works on the policy stored in the database (what every gateway
//! instance enforces), never on `policies/policy.csv` directly, so what it
//! prints is what is enforced:
//!
//! - `import` validates a file and stores it (all or nothing); running
//!   instances pick it up through NOTIFY or their revision poll. Every import,
//!   refused or accepted, is an audit event (`policy.change`).
//! - `export` prints the stored rules as CSV (importable again).
//! - `check` explains one decision: allowed or not, and the rule that decided.
//! - `who-can` lists the roles, and for which purposes, that may do an action.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;

use crate::audit::{Action, AuditEvent, AuditWriter, Reason, Signer, WriterOptions};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::db::{policy_store, Db};
use crate::pipeline::authorize::sync::{self, PolicyChangeError};
use crate::pipeline::authorize::{vocabulary, CompiledPolicy};
use crate::pipeline::purpose::PurposeCatalog;

/// The actor recorded for policy changes made from the command line.
/// The command part of this group's audit actor (`cli:policy@<os user>`).
const CLI_COMMAND: &str = "policy";

#[derive(Args, Debug)]
pub struct PolicyCommand {
    #[command(subcommand)]
    pub command: PolicySub,
}

#[derive(Subcommand, Debug)]
pub enum PolicySub {
    /// Validate a policy file and store it as the policy every instance
    /// enforces. A file with any bad line is refused whole.
    Import {
        /// The policy CSV (default: policy_dir/policy.csv).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Print the stored policy as CSV.
    Export,
    /// Explain one decision: allowed or denied, and the rule that decided.
    Check {
        /// A role of the caller; repeat for a caller with several roles.
        #[arg(long = "sub", required = true)]
        roles: Vec<String>,
        /// Object: a resource (`customer`) or a field (`customer.email`).
        #[arg(long)]
        obj: String,
        /// Action: `read`, `write`, ... or on a field `read_clear`,
        /// `read_masked`, `read_pseudonym`.
        #[arg(long)]
        act: String,
        /// The declared purpose (an id from purposes.toml).
        #[arg(long)]
        purpose: String,
    },
    /// List the roles that may do an action on an object, with the purposes.
    WhoCan {
        #[arg(long)]
        obj: String,
        #[arg(long)]
        act: String,
    },
}

pub async fn run(config: Config, cmd: PolicyCommand) -> anyhow::Result<()> {
    let purposes = load_purposes(&config)?;
    let db = Db::connect(&config).await?;
    db.migrate().await?;
    match cmd.command {
        PolicySub::Import { file } => {
            let path = file.unwrap_or_else(|| config.policy_dir.join("policy.csv"));
            import(&config, &db, &purposes, &path).await
        }
        PolicySub::Export => {
            let (policy, revision) = stored(&config, &db).await?;
            print!("{}", export_text(&policy, revision));
            Ok(())
        }
        PolicySub::Check {
            roles,
            obj,
            act,
            purpose,
        } => {
            let purpose = purposes.parse(&purpose).map_err(|_| {
                anyhow::anyhow!("--purpose {purpose:?}: not a purpose in purposes.toml")
            })?;
            warn_unknown_vocabulary(&obj, &act);
            let (policy, revision) = stored(&config, &db).await?;
            let mut roles = roles;
            roles.sort_unstable();
            roles.dedup();
            println!("policy revision {revision}, version {}", policy.version());
            print!("{}", policy.explain(&roles, &obj, &act, &purpose));
            Ok(())
        }
        PolicySub::WhoCan { obj, act } => {
            warn_unknown_vocabulary(&obj, &act);
            let (policy, revision) = stored(&config, &db).await?;
            println!("policy revision {revision}, version {}", policy.version());
            let grants = policy.who_can(&obj, &act);
            if grants.is_empty() {
                println!("no role may {act} {obj} (deny by default)");
            }
            for (role, purposes) in grants {
                println!("{role}: {}", purposes.join(", "));
            }
            Ok(())
        }
    }
}

fn load_purposes(config: &Config) -> anyhow::Result<PurposeCatalog> {
    let path = config.policy_dir.join("purposes.toml");
    PurposeCatalog::load(&path).map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", path.display()))
}

fn model_text(config: &Config) -> anyhow::Result<String> {
    let path = config.policy_dir.join("model.conf");
    std::fs::read_to_string(&path)
        .with_context(|| format!("policy_dir: cannot read {}", path.display()))
}

/// The stored policy, compiled exactly as a gateway instance compiles it.
/// Read-only: on a database without a policy it says so instead of seeding.
async fn stored(config: &Config, db: &Db) -> anyhow::Result<(CompiledPolicy, i64)> {
    let revision = policy_store::revision(db).await?;
    anyhow::ensure!(
        revision > 0,
        "no policy stored yet: start the gateway once (it seeds policy_dir/policy.csv) \
         or run `custodian policy import`"
    );
    let rules = policy_store::load(db).await?;
    let policy = CompiledPolicy::compile(&model_text(config)?, rules)
        .context("the stored policy does not compile")?;
    Ok((policy, revision))
}

/// The stored rules as an importable CSV, headed by comments naming the
/// revision and version. Comments of the imported file are not stored.
pub fn export_text(policy: &CompiledPolicy, revision: i64) -> String {
    let mut out = format!(
        "# Custodian policy, revision {revision}, version {}\n",
        policy.version()
    );
    for rule in policy.rules() {
        out.push_str(&rule.to_csv_line());
        out.push('\n');
    }
    out
}

fn warn_unknown_vocabulary(obj: &str, act: &str) {
    if !vocabulary::is_known(obj, act) {
        eprintln!(
            "warning: ({obj}, {act}) is not an object/action the gateway asks about; \
             check for a typo"
        );
    }
}

async fn import(
    config: &Config,
    db: &Db,
    purposes: &PurposeCatalog,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let csv = std::fs::read_to_string(path)
        .with_context(|| format!("--file {}: cannot read", path.display()))?;
    // The audit writer starts first: if the trail cannot record, nothing is
    // changed (fail-closed, as on the request path).
    let clock: SharedClock = Arc::new(SystemClock);
    let actor = super::cli_actor(CLI_COMMAND);
    let signer = Signer::from_config(config)?;
    let mut options = WriterOptions::from_config(config);
    // The CLI appends to its own chain, so it never races a running server
    // of this host for the server's sequence numbers.
    options.instance = format!("{}.cli", options.instance);
    let writer = AuditWriter::start(db.clone(), clock.clone(), signer, options).await?;
    let (authorizer, _) = sync::bootstrap(db, &config.policy_dir, purposes, clock.now_micros())
        .await
        .context("loading the policy in force")?;
    let staged = sync::stage(
        db,
        &authorizer,
        csv,
        purposes,
        config.policy.allow_wildcard_purpose,
        &actor,
        clock.now_micros(),
    )
    .await;
    let resource = format!("policy:{}", path.display());
    let builder = AuditEvent::system(&actor, Action::PolicyChange, resource)
        .request_id(uuid::Uuid::new_v4().to_string());
    let event = match &staged {
        Ok((_, staged)) => builder.allow(
            Reason::Admin(format!(
                "revision {}, version {}",
                staged.revision, staged.version
            )),
            200,
        ),
        Err(PolicyChangeError::Invalid(_)) => {
            builder.deny(Reason::Input("invalid_policy".to_owned()), 422)
        }
        Err(PolicyChangeError::Store(_)) => {
            builder.deny(Reason::Outcome("internal".to_owned()), 500)
        }
    };
    // The event is durable before the change commits; if it cannot be
    // recorded, the open transaction is dropped and nothing changes.
    let receipt = writer.record(event.build()).await;
    writer.shutdown().await;
    match staged {
        Ok((tx, staged)) => {
            receipt.context("the audit event could not be recorded; the policy is unchanged")?;
            tx.commit().await.context("storing the policy")?;
            println!(
                "policy stored: revision {}, version {}",
                staged.revision, staged.version
            );
            Ok(())
        }
        Err(PolicyChangeError::Invalid(reason)) => {
            receipt.context("recording the refused import")?;
            anyhow::bail!(
                "{}: refused, the policy in force is unchanged: {reason}",
                path.display()
            )
        }
        Err(PolicyChangeError::Store(e)) => Err(e.context("storing the policy")),
    }
}
