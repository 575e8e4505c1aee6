//! Keeps every instance's decision table in step with the policy stored in
//! the database: seeding it from `policies/` on first start, validating and
//! storing changes, and reloading when another instance changed it
//! (PostgreSQL `LISTEN/NOTIFY` for an immediate reload, plus a poll of the
//! revision counter on both backends as the safety net).

use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{parse_policy_csv, vocabulary, Authorizer, CompiledPolicy, PolicyError, PolicyRule};
use crate::db::policy_store::{self, POLICY_CHANNEL};
use crate::db::{Backend, Db};
use crate::pipeline::purpose::PurposeCatalog;

/// Why a proposed policy was refused. The policy in force stays.
#[derive(Debug, thiserror::Error)]
pub enum PolicyChangeError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl From<crate::db::DbError> for PolicyChangeError {
    fn from(e: crate::db::DbError) -> Self {
        Self::Store(e.into())
    }
}

/// Loads the model from `policy_dir/model.conf` and the rules from the
/// database; seeds the database from `policy_dir/policy.csv` when it holds
/// no policy yet. Returns the authorizer and the revision it reflects.
pub async fn bootstrap(
    db: &Db,
    policy_dir: &Path,
    purposes: &PurposeCatalog,
    now: i64,
) -> anyhow::Result<(Authorizer, i64)> {
    let model_path = policy_dir.join("model.conf");
    let model = std::fs::read_to_string(&model_path)
        .with_context(|| format!("policy_dir: cannot read {}", model_path.display()))?;
    let mut revision = policy_store::revision(db).await?;
    if revision == 0 {
        let csv_path = policy_dir.join("policy.csv");
        let csv = std::fs::read_to_string(&csv_path)
            .with_context(|| format!("policy_dir: cannot read {}", csv_path.display()))?;
        let compiled = validate(&model, &csv, purposes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", csv_path.display()))?;
        let mut tx = db.pool.begin().await?;
        revision = policy_store::replace(
            &mut tx,
            db.backend,
            compiled.rules(),
            compiled.version(),
            &compiled.canonical_text(),
            "bootstrap",
            now,
        )
        .await?;
        tx.commit().await.context("storing the seeded policy")?;
        tracing::info!(
            revision,
            rules = compiled.rules().len(),
            "seeded policy from policy_dir"
        );
        return Ok((Authorizer::new(compiled), revision));
    }
    let rules = policy_store::load(db).await?;
    let model_for_compile = model.clone();
    let compiled =
        tokio::task::spawn_blocking(move || CompiledPolicy::compile(&model_for_compile, rules))
            .await
            .context("policy compile task")?
            .context("the stored policy does not compile")?;
    Ok((Authorizer::new(compiled), revision))
}

/// Parses, checks and compiles a policy file without touching anything:
/// every line must parse, every object/action must be in the vocabulary and
/// every purpose in the catalog, so a typo cannot silently grant or revoke.
pub fn validate(
    model: &str,
    csv: &str,
    purposes: &PurposeCatalog,
) -> Result<CompiledPolicy, PolicyChangeError> {
    let rules: Vec<PolicyRule> = parse_policy_csv(csv).map_err(invalid)?;
    if let Some(rule) = vocabulary::unknown_vocabulary(&rules).first() {
        return Err(PolicyChangeError::Invalid(format!(
            "{}rule `{}` names an object or action Custodian does not know",
            line_prefix(csv, rule),
            rule.to_csv_line()
        )));
    }
    let compiled = CompiledPolicy::compile(model, rules).map_err(invalid)?;
    if let Some(rule) = compiled
        .rules_with_unknown_purpose(|p| purposes.contains(p))
        .first()
    {
        return Err(PolicyChangeError::Invalid(format!(
            "{}rule `{}` names a purpose that is not in purposes.toml",
            line_prefix(csv, rule),
            rule.to_csv_line()
        )));
    }
    Ok(compiled)
}

/// `policy line N: ` for the first line of `csv` holding `rule`, so a
/// refusal names the line to fix as parse errors already do.
fn line_prefix(csv: &str, rule: &PolicyRule) -> String {
    csv.lines()
        .position(|line| parse_policy_csv(line).is_ok_and(|r| r.first() == Some(rule)))
        .map(|i| format!("policy line {}: ", i + 1))
        .unwrap_or_default()
}

fn invalid(e: PolicyError) -> PolicyChangeError {
    PolicyChangeError::Invalid(e.to_string())
}

/// [`validate`] plus the safety rules of [`super::safety::check`] (no
/// lock-out, no unapproved wildcard), off the async threads.
pub async fn validate_safe(
    authorizer: &Authorizer,
    csv: String,
    purposes: &PurposeCatalog,
    allow_wildcard_purpose: bool,
) -> Result<CompiledPolicy, PolicyChangeError> {
    let model = authorizer.current().model_text().to_owned();
    let purposes = purposes.clone();
    tokio::task::spawn_blocking(move || {
        let compiled = validate(&model, &csv, &purposes)?;
        super::safety::check(compiled.rules(), allow_wildcard_purpose)
            .map_err(PolicyChangeError::Invalid)?;
        Ok(compiled)
    })
    .await
    .map_err(|e| PolicyChangeError::Store(e.into()))?
}

/// A validated policy written into an open transaction: the caller records
/// the change's audit event, commits `tx`, then [`StagedPolicy::apply`]s it.
/// Dropping the transaction instead (the trail could not record) leaves the
/// policy in force untouched, in the store and in memory.
pub struct StagedPolicy {
    compiled: CompiledPolicy,
    pub version: String,
    pub revision: i64,
}

impl StagedPolicy {
    /// Applies the committed policy here at once (other instances follow
    /// through the watcher). Returns (version, revision).
    pub fn apply(self, authorizer: &Authorizer) -> (String, i64) {
        authorizer.reload(self.compiled);
        (self.version, self.revision)
    }
}

/// Validates a new policy and stores it in a transaction left open for the
/// caller to commit after the audit event (see [`StagedPolicy`]).
pub async fn stage(
    db: &Db,
    authorizer: &Authorizer,
    csv: String,
    purposes: &PurposeCatalog,
    allow_wildcard_purpose: bool,
    actor: &str,
    now: i64,
) -> Result<(sqlx::Transaction<'static, sqlx::Any>, StagedPolicy), PolicyChangeError> {
    let compiled = validate_safe(authorizer, csv, purposes, allow_wildcard_purpose).await?;
    let version = compiled.version().to_owned();
    let mut tx = db.pool.begin().await.map_err(crate::db::DbError::from)?;
    let revision = policy_store::replace(
        &mut tx,
        db.backend,
        compiled.rules(),
        &version,
        &compiled.canonical_text(),
        actor,
        now,
    )
    .await?;
    Ok((
        tx,
        StagedPolicy {
            compiled,
            version,
            revision,
        },
    ))
}

/// Watches the stored revision and reloads the policy when it moves.
pub fn spawn_watcher(
    db: Db,
    authorizer: Arc<Authorizer>,
    mut revision: i64,
    poll: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut listener = match db.backend {
            Backend::Postgres => listen(&db).await,
            Backend::Sqlite => None,
        };
        loop {
            match listener.as_mut() {
                Some(l) => {
                    tokio::select! {
                        n = l.recv() => if n.is_err() {
                            tracing::warn!("policy notification channel lost; polling only");
                            listener = None;
                        },
                        () = tokio::time::sleep(poll) => {},
                    }
                }
                None => tokio::time::sleep(poll).await,
            }
            if db.pool.is_closed() {
                return;
            }
            match reload_if_changed(&db, &authorizer, revision).await {
                Ok(Some(new)) => revision = new,
                Ok(None) => {}
                // The policy in force stays; the next tick retries.
                Err(e) => tracing::error!(error = format!("{e:#}"), "policy reload failed"),
            }
        }
    })
}

async fn listen(db: &Db) -> Option<sqlx::postgres::PgListener> {
    let mut l = sqlx::postgres::PgListener::connect(db.url()).await.ok()?;
    l.listen(POLICY_CHANNEL).await.ok()?;
    Some(l)
}

async fn reload_if_changed(
    db: &Db,
    authorizer: &Arc<Authorizer>,
    seen: i64,
) -> anyhow::Result<Option<i64>> {
    let current = policy_store::revision(db).await?;
    if current == seen {
        return Ok(None);
    }
    let rules = policy_store::load(db).await?;
    let authorizer = Arc::clone(authorizer);
    let version = tokio::task::spawn_blocking(move || authorizer.reload_rules(rules))
        .await
        .context("policy compile task")??;
    tracing::info!(revision = current, version = %version, "policy reloaded");
    Ok(Some(current))
}
