//! Authentication stage: turns an `Authorization: Bearer <JWT>` header into a
//! verified [`Principal`], or an [`AuthFailure`] saying why not.
//!
//! It owns the whole decision: header parsing, the algorithm allowlist, key
//! selection by `kid`, signature verification (`jsonwebtoken` over `ring`,
//! behind our own strict header checks), claim checks against
//! an injected clock, the verified-token cache, and dev-token minting.
//!
//! Order of checks, cheapest and most hostile first: size cap (before any
//! parsing), scheme, cache, structure, forbidden headers, token type
//! (`typ`: access tokens only, RFC 8725 §3.11), `alg` allowlist,
//! key, signature, and only then the (now authenticated) claims. The token's
//! `alg` is never trusted alone: it must be allowlisted *and* equal to the
//! algorithm the selected key was loaded for.
//!
//! The HTTP layer maps every failure to one 401 with
//! [`AuthFailure::public_message`]; the reason ([`AuthFailure::code`]) goes
//! to the audit trail only.

mod cache;
mod config;
mod dev;
mod failure;
mod jwks;
mod keys;
pub mod setup;
mod token;

#[cfg(test)]
mod tests;

pub use config::{
    AuthConfig, SecretString, ACCESS_TOKEN_TYPE, MIN_HS256_SECRET_BYTES, SUPPORTED_ALGORITHMS,
};
pub use dev::{
    ed25519_jwks, ed25519_kid, ed25519_public_key_pem, generate_ed25519_keypair, parse_ttl,
    sign_eddsa_token, Ed25519Generated, KeyGenError,
};
pub use failure::{AuthConfigError, AuthFailure, MintError, PUBLIC_MESSAGE};
pub use jwks::MAX_JWKS_BYTES;
pub use keys::Algorithm;
pub use token::TokenClaims;

use crate::domain::Principal;
use cache::TokenCache;
use keys::{KeyStore, VerifyKey};
use ring::hmac;
use std::sync::Arc;
use std::time::Duration;
use token::ClaimRules;

/// Longest TTL a dev token may be minted with.
pub const MAX_DEV_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// Verifies bearer tokens. Immutable after construction (keys rotate by
/// building a new one), shareable across threads; the cache is internally
/// synchronized per shard.
pub struct Authenticator {
    keys: KeyStore,
    /// The allowlist, intersected with the algorithms we have keys for.
    allowed: Vec<Algorithm>,
    /// Accepted header `typ` values, normalized.
    token_types: Vec<String>,
    issuer: String,
    audience: String,
    leeway: i64,
    max_token_bytes: usize,
    cache: TokenCache,
    /// Signing side of the dev secret (the verifying side lives in `keys`).
    dev_signer: Option<hmac::Key>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("allowed", &self.allowed)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("public_keys", &self.keys.public_key_count())
            .field("dev_key", &self.dev_signer.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Validates the config, reads the key file (and secret file), and builds
    /// the verifier.
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthConfigError> {
        config.validate()?;
        let public = match &config.public_keys_file {
            Some(path) => keys::load_public_keys(path, |alg| config.allows(alg.as_jose()))?,
            None => Vec::new(),
        };
        Self::build(config, public)
    }

    /// Like [`from_config`](Self::from_config) with the key file's contents
    /// given directly (JWKS or PEM); `public_keys_file` is ignored.
    pub fn from_config_and_keys(
        config: &AuthConfig,
        public_keys: &str,
    ) -> Result<Self, AuthConfigError> {
        let mut config = config.clone();
        config.public_keys_file = None;
        if config.dev_hs256_secret.is_none() && config.dev_hs256_secret_file.is_none() {
            // validate() insists on some key source; the document is one.
            config.public_keys_file = Some("<inline>".into());
        }
        config.validate()?;
        let public: Vec<(String, VerifyKey)> = keys::parse_public_keys(public_keys)?
            .into_iter()
            .filter(|(_, k)| config.allows(k.algorithm().as_jose()))
            .collect();
        Self::build(&config, public)
    }

    fn build(
        config: &AuthConfig,
        public: Vec<(String, VerifyKey)>,
    ) -> Result<Self, AuthConfigError> {
        let secret = config.load_dev_secret()?;
        let secret_bytes = secret.as_ref().map(|s| s.expose().as_bytes());
        let jwks = match &config.jwks_url {
            Some(url) => {
                let allowed = [Algorithm::EdDsa, Algorithm::Rs256]
                    .into_iter()
                    .filter(|alg| config.allows(alg.as_jose()))
                    .collect();
                Some(Arc::new(jwks::JwksSource::new(
                    url,
                    allowed,
                    Duration::from_secs(config.jwks_refresh_secs),
                    Duration::from_secs(config.jwks_min_refetch_secs),
                    Duration::from_millis(config.jwks_timeout_ms),
                )?))
            }
            None => None,
        };
        let keys = KeyStore::new(public, jwks, secret_bytes)?;
        let allowed: Vec<Algorithm> = [Algorithm::EdDsa, Algorithm::Rs256, Algorithm::Hs256]
            .into_iter()
            .filter(|alg| config.allows(alg.as_jose()) && keys.has_algorithm(*alg))
            .collect();
        if allowed.is_empty() {
            return Err(AuthConfigError::invalid(
                "auth.algorithms",
                "no allowed algorithm has a configured key",
            ));
        }
        Ok(Authenticator {
            keys,
            allowed,
            token_types: config.accepted_types(),
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            // validate() caps leeway at 3600, so this cannot fail.
            leeway: i64::try_from(config.leeway_secs).unwrap_or(i64::MAX),
            max_token_bytes: config.max_token_bytes,
            cache: TokenCache::new(config.cache_capacity),
            dev_signer: secret_bytes.map(|s| hmac::Key::new(hmac::HMAC_SHA256, s)),
        })
    }

    /// True when the development HS256 secret is configured: the caller must
    /// warn loudly at start (and refuse outside development).
    pub fn is_dev_only(&self) -> bool {
        self.keys.has_dev_key()
    }

    /// Algorithms actually accepted (allowlist ∩ configured keys).
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.allowed
    }

    /// Number of public (EdDSA/RS256) keys loaded, the JWKS URL's included.
    pub fn public_key_count(&self) -> usize {
        self.keys.public_key_count() + self.keys.jwks.as_ref().map_or(0, |j| j.key_count())
    }

    /// With `auth.jwks_url`: fetches the keys (an error when that fails,
    /// so the server does not start without them) and schedules the
    /// refetches. Without it, nothing.
    pub async fn start_jwks(&self) -> anyhow::Result<()> {
        let Some(source) = &self.keys.jwks else {
            return Ok(());
        };
        source.fetch(jwks::Trigger::Startup).await?;
        jwks::JwksSource::spawn_schedule(source);
        Ok(())
    }

    /// [`authenticate`](Self::authenticate), and when the token names a
    /// `kid` no key has and a JWKS URL is configured: one (rate-limited)
    /// refetch, then one more try. The `kid` only triggers the fetch of
    /// the configured URL; nothing in the token says where keys live.
    pub async fn authenticate_refreshing(
        &self,
        authorization: Option<&[u8]>,
        now: i64,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let first = self.authenticate(authorization, now);
        let (Err(AuthFailure::UnknownKey), Some(source)) = (&first, &self.keys.jwks) else {
            return first;
        };
        // UnknownKey comes after the header parsed, so this parse succeeds;
        // a token without kid never reaches JWKS keys.
        let kid = authorization
            .and_then(|v| bearer_token(v).ok())
            .and_then(|t| token::split(t).ok())
            .and_then(|s| token::parse_header(s.header).ok())
            .and_then(|h| h.kid);
        match kid {
            Some(kid) if source.refetch_for_unknown_kid(&kid).await => {
                self.authenticate(authorization, now)
            }
            _ => first,
        }
    }

    /// Number of tokens currently cached (for metrics).
    pub fn cached_tokens(&self) -> usize {
        self.cache.len()
    }

    /// Authenticates one request from its raw `Authorization` header value.
    /// `now` is seconds since the Unix epoch, from the caller's clock.
    pub fn authenticate(
        &self,
        authorization: Option<&[u8]>,
        now: i64,
    ) -> Result<Arc<Principal>, AuthFailure> {
        let value = match authorization {
            Some(v) if !v.is_empty() => v,
            _ => return Err(AuthFailure::Missing),
        };
        if value.len() > self.max_token_bytes {
            return Err(AuthFailure::Oversized);
        }
        let token = bearer_token(value)?;
        if !self.cache.enabled() {
            return self.verify(token, now).map(|(principal, _)| principal);
        }
        let key = cache::cache_key(token);
        if let Some(principal) = self.cache.get(&key, now) {
            return Ok(principal);
        }
        let (principal, validity) = self.verify(token, now)?;
        self.cache
            .insert(key, Arc::clone(&principal), validity, now);
        Ok(principal)
    }

    /// Full verification of a token not served from the cache.
    fn verify(
        &self,
        token: &[u8],
        now: i64,
    ) -> Result<(Arc<Principal>, token::Validity), AuthFailure> {
        let segments = token::split(token)?;
        let header = token::parse_header(segments.header)?;
        token::check_type(&header, &self.token_types)?;
        let alg = Algorithm::from_jose(&header.alg)
            .filter(|alg| self.allowed.contains(alg))
            .ok_or(AuthFailure::AlgorithmNotAllowed)?;
        let key = self.keys.select(alg, header.kid.as_deref())?;
        // The header passed every check above; jsonwebtoken verifies the
        // signature with the selected key for its one algorithm and decodes
        // the payload. Our header parser ran first because jsonwebtoken's
        // ignores `crit` and would accept `jku`/`x5u`/`jwk` as data.
        let text = std::str::from_utf8(token).map_err(|_| AuthFailure::Malformed)?;
        let claims: token::ReceivedClaims = key.verify(text)?;
        let rules = ClaimRules {
            issuer: &self.issuer,
            audience: &self.audience,
            leeway: self.leeway,
        };
        let validity = token::check_claims(&claims, &rules, now)?;
        let mut roles = claims.roles;
        roles.sort_unstable();
        roles.dedup();
        let principal = Principal {
            sub: claims.sub,
            roles: roles.into(),
            expires_at: claims.exp,
        };
        Ok((Arc::new(principal), validity))
    }

    /// The claims a token for `sub` with `roles` would carry: configured
    /// issuer and audience, `iat = now`, `exp = now + ttl`.
    pub fn claims_for(
        &self,
        sub: &str,
        roles: &[String],
        ttl: Duration,
        now: i64,
    ) -> Result<TokenClaims, MintError> {
        if sub.is_empty() {
            return Err(MintError::InvalidRequest("sub must not be empty"));
        }
        if roles.is_empty() || roles.iter().any(String::is_empty) {
            return Err(MintError::InvalidRequest(
                "at least one non-empty role is required",
            ));
        }
        if ttl.is_zero() || ttl > MAX_DEV_TOKEN_TTL {
            return Err(MintError::InvalidRequest(
                "ttl must be between 1 second and 365 days",
            ));
        }
        let ttl_secs =
            i64::try_from(ttl.as_secs()).map_err(|_| MintError::InvalidRequest("ttl too large"))?;
        let exp = now
            .checked_add(ttl_secs)
            .ok_or(MintError::InvalidRequest("ttl too large"))?;
        Ok(TokenClaims {
            sub: sub.to_owned(),
            roles: roles.to_vec(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            exp,
            iat: now,
            nbf: None,
        })
    }

    /// Mints an HS256 token with the dev secret (for `custodian token`).
    /// Refuses when only production keys are configured.
    pub fn mint_dev_token(
        &self,
        sub: &str,
        roles: &[String],
        ttl: Duration,
        now: i64,
    ) -> Result<String, MintError> {
        let signer = self.dev_signer.as_ref().ok_or(MintError::NoDevKey)?;
        let claims = self.claims_for(sub, roles, ttl, now)?;
        dev::sign_hs256(signer, &claims)
    }
}

/// Extracts the token from `Bearer <token>` (scheme case-insensitive, exactly
/// one space, RFC 6750 §2.1).
fn bearer_token(value: &[u8]) -> Result<&[u8], AuthFailure> {
    let (scheme, token) = value.split_at_checked(7).ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") || token.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    Ok(token)
}
