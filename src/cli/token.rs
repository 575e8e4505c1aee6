//! `custodian token`: mints a development token (HS256, signed with the dev
//! secret) so a developer can call the API on a bare machine. With only
//! production (public) keys configured there is nothing to sign with, and the
//! command refuses: production tokens come from the identity provider.

use clap::Args;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::pipeline::authenticate::{self, MintError};

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

pub fn run(config: &Config, args: &TokenArgs) -> anyhow::Result<()> {
    let ttl = authenticate::parse_ttl(&args.ttl)
        .ok_or_else(|| anyhow::anyhow!("--ttl {:?}: use e.g. 90s, 15m, 1h, 7d", args.ttl))?;
    let authenticator = authenticate::setup::build(config)?;
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
