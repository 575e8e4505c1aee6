//! `custodian token`: mints a development token (HS256, signed with the dev
//! secret) so a developer can call the API on a bare machine. With only
//! production (public) keys configured there is nothing to sign with, and the
//! command refuses: production tokens come from the identity provider.

//!
//! It signs only with a secret that already exists: pointed at a data
//! directory the server does not use, it would otherwise generate a fresh
//! secret whose tokens the server rejects with a bare 401. And it mints only
//! roles the policy in force knows, since a token for an unknown role can do
//! nothing but fail.

use anyhow::Context;
use clap::Args;
use std::collections::BTreeSet;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Mode};
use crate::db::{policy_store, Db};
use crate::pipeline::authenticate::{self, setup::DEV_SECRET_FILE, Authenticator, MintError};
use crate::pipeline::authorize::{parse_policy_csv, PolicyRule};

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// The subject (`sub` claim): who the token speaks for.
    #[arg(long)]
    pub sub: String,
    /// A role (`roles` claim); repeat for several.
    #[arg(long = "role", required = true)]
    pub roles: Vec<String>,
    /// Lifetime: `90s`, `15m`, `1h`, `7d` (at most 365 days).
    #[arg(long, default_value = "1h")]
    pub ttl: String,
}

pub async fn run(config: &Config, args: &TokenArgs) -> anyhow::Result<()> {
    let ttl = authenticate::parse_ttl(&args.ttl)
        .ok_or_else(|| anyhow::anyhow!("--ttl {:?}: use e.g. 90s, 15m, 1h, 7d", args.ttl))?;
    let auth = &config.auth;
    let configured = auth.public_keys_file.is_some()
        || auth.jwks_url.is_some()
        || auth.dev_hs256_secret.is_some()
        || auth.dev_hs256_secret_file.is_some();
    let generated = config.data_dir.join(DEV_SECRET_FILE);
    if !configured && config.mode == Mode::Development && !generated.is_file() {
        anyhow::bail!(
            "no development token secret in data_dir {} (the server generates {DEV_SECRET_FILE} \
             there on first start): point --config or CUSTODIAN_DATA_DIR at the server's data \
             directory, or start `custodian serve` once",
            config.data_dir.display()
        );
    }
    let known = known_roles(config).await?;
    if let Some(unknown) = args.roles.iter().find(|r| !known.contains(r.as_str())) {
        let list: Vec<&str> = known.iter().map(String::as_str).collect();
        anyhow::bail!(
            "--role {unknown}: the policy in force knows no such role (known: {})",
            list.join(", ")
        );
    }
    // Built without setup::build's warning: this command serves nothing.
    let effective = authenticate::setup::effective_config(config)?;
    let authenticator =
        Authenticator::from_config(&effective).map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = authenticator
        .mint_dev_token(&args.sub, &args.roles, ttl, SystemClock.now_secs())
        .map_err(|e| match e {
            MintError::NoDevKey => anyhow::anyhow!(
                "this configuration has production keys only (no auth.dev_hs256_secret); \
                 development tokens cannot be minted: get a token from your identity provider"
            ),
            other => anyhow::anyhow!("{other}"),
        })?;
    println!("{token}");
    Ok(())
}

/// Roles named by the policy in force: the stored policy when the database
/// holds one, else `policy_dir/policy.csv` (what the server seeds from).
async fn known_roles(config: &Config) -> anyhow::Result<BTreeSet<String>> {
    let stored = match Db::connect(config).await {
        Ok(db) => {
            let rules = match policy_store::revision(&db).await {
                Ok(rev) if rev > 0 => policy_store::load(&db).await.ok(),
                _ => None,
            };
            db.pool.close().await;
            rules
        }
        Err(_) => None,
    };
    let rules = match stored {
        Some(rules) => rules,
        None => {
            let path = config.policy_dir.join("policy.csv");
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "policy_dir: cannot read {} (set policy_dir or CUSTODIAN_POLICY_DIR)",
                    path.display()
                )
            })?;
            parse_policy_csv(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
    };
    Ok(roles_of(&rules))
}

fn roles_of(rules: &[PolicyRule]) -> BTreeSet<String> {
    let mut roles = BTreeSet::new();
    for rule in rules {
        let names = match rule.ptype.as_str() {
            "p" => rule.values.get(..1),
            "g" => rule.values.get(..2),
            _ => None,
        };
        roles.extend(names.unwrap_or_default().iter().cloned());
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_permissions_and_links() {
        let rules = vec![
            PolicyRule::p("support_agent", "customer", "read", "customer_support"),
            PolicyRule::g("team_lead", "support_agent"),
        ];
        let roles = roles_of(&rules);
        assert_eq!(
            roles.into_iter().collect::<Vec<_>>(),
            ["support_agent", "team_lead"]
        );
    }
}
