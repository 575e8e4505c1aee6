//! Turning configuration into a working [`Authenticator`]: in development
//! mode with no key configured, a random HS256 secret is generated into the
//! data directory (0600) so `custodian serve` and `custodian token` work on a
//! bare machine; production mode never generates anything.

use std::path::Path;

use super::{AuthConfig, Authenticator};
use crate::config::{Config, Mode};

/// File name of the generated development token secret in `data_dir`.
pub const DEV_SECRET_FILE: &str = "dev-jwt.secret";

/// The `[auth]` settings in force, with the development secret filled in
/// when needed.
pub fn effective_config(config: &Config) -> anyhow::Result<AuthConfig> {
    let mut auth = config.auth.clone();
    let has_keys = auth.public_keys_file.is_some()
        || auth.jwks_url.is_some()
        || auth.dev_hs256_secret.is_some()
        || auth.dev_hs256_secret_file.is_some();
    if !has_keys && config.mode == Mode::Development {
        let path = config.data_dir.join(DEV_SECRET_FILE);
        if !path.exists() {
            crate::db::prepare_data_dir(&config.data_dir)?;
            write_secret(&path)?;
            tracing::warn!(
                path = %path.display(),
                "GENERATED A DEVELOPMENT TOKEN SECRET (HS256). Anyone who can read it can mint \
                 tokens for any role. For production configure auth.public_keys_file and \
                 mode = \"production\"."
            );
        }
        auth.dev_hs256_secret_file = Some(path);
    }
    Ok(auth)
}

/// Builds the authenticator; warns loudly when development tokens are accepted.
pub fn build(config: &Config) -> anyhow::Result<Authenticator> {
    let auth = effective_config(config)?;
    let authenticator = Authenticator::from_config(&auth).map_err(|e| anyhow::anyhow!("{e}"))?;
    if authenticator.is_dev_only() {
        tracing::warn!("accepting HS256 development tokens: never expose this instance");
    }
    Ok(authenticator)
}

fn write_secret(path: &Path) -> anyhow::Result<()> {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = zeroize::Zeroizing::new([0u8; 48]);
    ring::rand::SystemRandom::new()
        .fill(bytes.as_mut())
        .map_err(|_| anyhow::anyhow!("system random number generator failed"))?;
    let text =
        zeroize::Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes.as_ref()));
    crate::secret::write_new_private_file(path, text.as_bytes())?;
    Ok(())
}
