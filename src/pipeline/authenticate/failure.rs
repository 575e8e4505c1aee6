//! Error types of the authentication stage: why a request was refused
//! ([`AuthFailure`], for audit and logs only), why the configuration was
//! refused ([`AuthConfigError`]) and why a dev token could not be minted
//! ([`MintError`]).

use std::fmt;

/// The single message every authentication failure shows the client. The
/// reason stays internal so a caller cannot probe which check it tripped.
pub const PUBLIC_MESSAGE: &str = "missing or invalid credentials";

/// Why a request was not authenticated. Internal: goes to the audit trail and
/// logs via [`AuthFailure::code`]; the client only ever sees
/// [`AuthFailure::public_message`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// No `Authorization` header, or an empty one.
    Missing,
    /// Not `Bearer <three base64url parts>`, undecodable header or payload,
    /// or a header without `alg`.
    Malformed,
    /// The header value is longer than `auth.max_token_bytes`.
    Oversized,
    /// `alg` is `none`, unknown, outside the allowlist, or does not match
    /// the algorithm of the key it names.
    AlgorithmNotAllowed,
    /// `kid` names no configured key (or is absent while several keys could
    /// apply).
    UnknownKey,
    /// The header carries `jku`, `x5u`, `jwk`, `x5c` or `crit`: the token
    /// tries to choose its own key or extensions.
    ForbiddenHeader,
    /// The signature does not verify under the selected key.
    BadSignature,
    /// `exp` is past (beyond leeway).
    Expired,
    /// `nbf` or `iat` is in the future (beyond leeway).
    NotYetValid,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// `aud` does not contain the configured audience.
    WrongAudience,
    /// The token is not an access token: its header `typ` is missing or not
    /// an accepted access-token type, or its `token_use` claim is not
    /// `access` (RFC 8725 §3.11).
    WrongType,
    /// A required claim is missing or has the wrong type (`sub` empty,
    /// `roles` not an array of non-empty strings, ...).
    InvalidClaims,
}

impl AuthFailure {
    /// Stable machine code for audit events and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Malformed => "malformed",
            AuthFailure::Oversized => "oversized",
            AuthFailure::AlgorithmNotAllowed => "algorithm_not_allowed",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::ForbiddenHeader => "forbidden_header",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::InvalidClaims => "invalid_claims",
            AuthFailure::WrongType => "wrong_token_type",
        }
    }

    /// What the client is told, identical for every variant.
    pub fn public_message(&self) -> &'static str {
        PUBLIC_MESSAGE
    }
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "authentication failed: {}", self.code())
    }
}

impl std::error::Error for AuthFailure {}

/// The authentication configuration was refused. The message names the
/// setting (`auth.<field>`) and never contains secret or key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("{setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
    #[error("{setting}: cannot read {path}: {source}")]
    Io {
        setting: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl AuthConfigError {
    pub(crate) fn invalid(setting: &'static str, message: impl Into<String>) -> Self {
        AuthConfigError::Invalid {
            setting,
            message: message.into(),
        }
    }
}

/// A dev token could not be minted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// Only production (public) keys are configured; there is nothing to sign
    /// with, by design.
    #[error(
        "no development signing key configured (auth.dev_hs256_secret); refusing to mint tokens"
    )]
    NoDevKey,
    #[error("invalid token request: {0}")]
    InvalidRequest(&'static str),
    #[error("signing failed")]
    Signing,
}
