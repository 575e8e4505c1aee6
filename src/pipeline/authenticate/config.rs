//! `[auth]` settings: issuer, audience, leeway, the algorithm allowlist,
//! where the public keys live and the development-only HS256 secret.

use super::failure::AuthConfigError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Algorithms this gateway can verify. Anything else in the config is refused.
pub const SUPPORTED_ALGORITHMS: [&str; 3] = ["EdDSA", "RS256", "HS256"];

/// Shortest accepted HS256 secret: RFC 7518 §3.2 asks for a key at least as
/// long as the hash output.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

pub use crate::secret::SecretString;

/// The `typ` of an RFC 9068 access token, which `custodian token` mints.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Token types that are never access tokens, whatever the configuration says.
const NEVER_ACCESS_TYPES: [&str; 6] = [
    "refresh+jwt",
    "id_token",
    "id_token+jwt",
    "logout+jwt",
    "secevent+jwt",
    "jwe",
];

/// The `[auth]` section of the configuration.
#[derive(Deserialize, Serialize, Clone)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Required `iss` claim. Default `"custodian"`.
    pub issuer: String,
    /// Required member of the `aud` claim. Default `"custodian-api"`.
    pub audience: String,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds. Default 30.
    pub leeway_secs: u64,
    /// Algorithm allowlist. Default `["EdDSA", "RS256", "HS256"]`; HS256 is
    /// only usable when a dev secret is configured.
    pub algorithms: Vec<String>,
    /// Public verification keys: a JWKS JSON document (keys selected by
    /// `kid`), or PEM with one or more `PUBLIC KEY` / `RSA PUBLIC KEY` blocks
    /// (each gets the RFC 7638 JWK thumbprint as its `kid`).
    pub public_keys_file: Option<PathBuf>,
    /// A JWKS URL whose keys verify tokens beside the key file's (by
    /// `kid`): `https://`, or `http://` on a loopback address. Fetched at
    /// start (no start without it), every `jwks_refresh_secs`, and when a
    /// token names an unknown `kid`, at most once per
    /// `jwks_min_refetch_secs`.
    pub jwks_url: Option<String>,
    /// Scheduled JWKS refetch interval, in seconds. Default 300.
    pub jwks_refresh_secs: u64,
    /// Fewest seconds between two JWKS fetches caused by unknown `kid`s:
    /// a flood of forged kids costs at most one fetch per this. Default 30.
    pub jwks_min_refetch_secs: u64,
    /// Time limit of one JWKS fetch (connect and body), in milliseconds.
    /// Default 5000.
    pub jwks_timeout_ms: u64,
    /// HS256 secret, for development only (at least 32 bytes).
    pub dev_hs256_secret: Option<SecretString>,
    /// File holding the HS256 secret (trailing newline ignored); exclusive
    /// with `dev_hs256_secret`.
    pub dev_hs256_secret_file: Option<PathBuf>,
    /// Longest accepted `Authorization` header value, checked before any
    /// parsing. Default 8192.
    pub max_token_bytes: usize,
    /// Verified tokens remembered until they expire; 0 disables the cache.
    /// Default 100 000.
    pub cache_capacity: usize,
    /// Accepted values of the protected header's `typ` (compared
    /// case-insensitively, an `application/` prefix ignored, RFC 7515
    /// §4.1.9). Default `["at+jwt"]` (RFC 9068 access tokens); add `"JWT"`
    /// for an issuer that cannot type its tokens. A token without `typ`, or
    /// with any other type (`refresh+jwt`, `id_token`, `logout+jwt`, `JWE`),
    /// is refused: explicit typing, RFC 8725 §3.11.
    pub token_types: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            issuer: "custodian".to_owned(),
            audience: "custodian-api".to_owned(),
            leeway_secs: 30,
            algorithms: SUPPORTED_ALGORITHMS
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
            public_keys_file: None,
            jwks_url: None,
            jwks_refresh_secs: 300,
            jwks_min_refetch_secs: 30,
            jwks_timeout_ms: 5000,
            dev_hs256_secret: None,
            dev_hs256_secret_file: None,
            max_token_bytes: 8192,
            cache_capacity: 100_000,
            token_types: vec![ACCESS_TOKEN_TYPE.to_owned()],
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("algorithms", &self.algorithms)
            .field("public_keys_file", &self.public_keys_file)
            .field("jwks_url", &self.jwks_url)
            .field("jwks_refresh_secs", &self.jwks_refresh_secs)
            .field("jwks_min_refetch_secs", &self.jwks_min_refetch_secs)
            .field("jwks_timeout_ms", &self.jwks_timeout_ms)
            .field(
                "dev_hs256_secret",
                &self.dev_hs256_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("dev_hs256_secret_file", &self.dev_hs256_secret_file)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("cache_capacity", &self.cache_capacity)
            .field("token_types", &self.token_types)
            .finish()
    }
}

impl AuthConfig {
    /// Checks everything that can be checked without reading files. Errors
    /// name the offending setting.
    pub fn validate(&self) -> Result<(), AuthConfigError> {
        if self.issuer.is_empty() {
            return Err(AuthConfigError::invalid("auth.issuer", "must not be empty"));
        }
        if self.audience.is_empty() {
            return Err(AuthConfigError::invalid(
                "auth.audience",
                "must not be empty",
            ));
        }
        if self.leeway_secs > 3600 {
            return Err(AuthConfigError::invalid(
                "auth.leeway_secs",
                "must be at most 3600",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(AuthConfigError::invalid(
                "auth.algorithms",
                "must not be empty",
            ));
        }
        if let Some(bad) = self
            .algorithms
            .iter()
            .find(|a| !SUPPORTED_ALGORITHMS.contains(&a.as_str()))
        {
            return Err(AuthConfigError::invalid(
                "auth.algorithms",
                format!("unsupported algorithm {bad:?} (supported: EdDSA, RS256, HS256)"),
            ));
        }
        if !(512..=65536).contains(&self.max_token_bytes) {
            return Err(AuthConfigError::invalid(
                "auth.max_token_bytes",
                "must be between 512 and 65536",
            ));
        }
        if self.token_types.is_empty() {
            return Err(AuthConfigError::invalid(
                "auth.token_types",
                "must not be empty (the default is [\"at+jwt\"])",
            ));
        }
        if let Some(bad) = self
            .token_types
            .iter()
            .find(|t| t.is_empty() || NEVER_ACCESS_TYPES.contains(&normalize_type(t).as_str()))
        {
            return Err(AuthConfigError::invalid(
                "auth.token_types",
                format!("{bad:?} is not an access token type"),
            ));
        }
        if self.dev_hs256_secret.is_some() && self.dev_hs256_secret_file.is_some() {
            return Err(AuthConfigError::invalid(
                "auth.dev_hs256_secret",
                "set either dev_hs256_secret or dev_hs256_secret_file, not both",
            ));
        }
        if let Some(secret) = &self.dev_hs256_secret {
            check_secret_len("auth.dev_hs256_secret", secret)?;
        }
        let has_dev = self.dev_hs256_secret.is_some() || self.dev_hs256_secret_file.is_some();
        if has_dev && !self.allows("HS256") {
            return Err(AuthConfigError::invalid(
                "auth.dev_hs256_secret",
                "is set but HS256 is not in auth.algorithms",
            ));
        }
        if let Some(url) = &self.jwks_url {
            super::jwks::parse_url(url)?;
            if !(1..=86_400).contains(&self.jwks_refresh_secs) {
                return Err(AuthConfigError::invalid(
                    "auth.jwks_refresh_secs",
                    "must be between 1 and 86400",
                ));
            }
            if !(1..=3600).contains(&self.jwks_min_refetch_secs) {
                return Err(AuthConfigError::invalid(
                    "auth.jwks_min_refetch_secs",
                    "must be between 1 and 3600",
                ));
            }
            if !(100..=60_000).contains(&self.jwks_timeout_ms) {
                return Err(AuthConfigError::invalid(
                    "auth.jwks_timeout_ms",
                    "must be between 100 and 60000",
                ));
            }
        }
        if !has_dev && self.public_keys_file.is_none() && self.jwks_url.is_none() {
            return Err(AuthConfigError::invalid(
                "auth.public_keys_file",
                "no verification keys configured (set auth.public_keys_file or \
                 auth.jwks_url, or auth.dev_hs256_secret for development)",
            ));
        }
        Ok(())
    }

    /// The accepted token types, normalized (see [`normalize_type`]).
    pub(crate) fn accepted_types(&self) -> Vec<String> {
        let mut types: Vec<String> = self.token_types.iter().map(|t| normalize_type(t)).collect();
        types.sort_unstable();
        types.dedup();
        types
    }

    pub(crate) fn allows(&self, alg: &str) -> bool {
        self.algorithms.iter().any(|a| a == alg)
    }

    /// The dev secret, from the inline setting or its file.
    pub(crate) fn load_dev_secret(&self) -> Result<Option<SecretString>, AuthConfigError> {
        if let Some(secret) = &self.dev_hs256_secret {
            return Ok(Some(secret.clone()));
        }
        let Some(path) = &self.dev_hs256_secret_file else {
            return Ok(None);
        };
        let setting = "auth.dev_hs256_secret_file";
        let raw = crate::secret::read_private_file(path).map_err(|e| AuthConfigError::Io {
            setting,
            path: path.display().to_string(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let raw = Zeroizing::new(
            String::from_utf8(raw.to_vec())
                .map_err(|_| AuthConfigError::invalid(setting, "is not UTF-8 text".to_owned()))?,
        );
        // Files written by `echo` end in a newline that is not part of the secret.
        let secret = SecretString::new(raw.trim_end_matches(['\r', '\n']).to_owned());
        check_secret_len(setting, &secret)?;
        Ok(Some(secret))
    }
}

fn check_secret_len(setting: &'static str, secret: &SecretString) -> Result<(), AuthConfigError> {
    if secret.expose().len() < MIN_HS256_SECRET_BYTES {
        return Err(AuthConfigError::invalid(
            setting,
            format!("must be at least {MIN_HS256_SECRET_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// A media type as `typ` carries it: lower case, without the `application/`
/// prefix RFC 7515 §4.1.9 lets senders omit.
pub(crate) fn normalize_type(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}
