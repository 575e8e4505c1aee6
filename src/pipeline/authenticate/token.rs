//! The compact JWS itself: splitting `header.payload.signature`, reading the
//! protected header (our own parser, so that key-selecting headers such as
//! `jku` are seen even when null) and checking the claims against an injected
//! `now`.

use super::failure::AuthFailure;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};

/// A compact JWS checked for shape (three non-empty segments). Only the
/// header is read here; payload and signature are `jsonwebtoken`'s, after
/// the header checks.
pub(crate) struct Segments<'a> {
    pub header: &'a [u8],
}

/// Splits on exactly two dots. Anything else (JWE's five parts, a bare
/// string) is malformed.
pub(crate) fn split(token: &[u8]) -> Result<Segments<'_>, AuthFailure> {
    let mut dots = token
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'.')
        .map(|(i, _)| i);
    let (Some(first), Some(second), None) = (dots.next(), dots.next(), dots.next()) else {
        return Err(AuthFailure::Malformed);
    };
    let (signing_input, rest) = token
        .split_at_checked(second)
        .ok_or(AuthFailure::Malformed)?;
    let signature = rest.get(1..).ok_or(AuthFailure::Malformed)?;
    let (header, dot_payload) = signing_input
        .split_at_checked(first)
        .ok_or(AuthFailure::Malformed)?;
    let payload = dot_payload.get(1..).ok_or(AuthFailure::Malformed)?;
    if header.is_empty() || payload.is_empty() || signature.is_empty() {
        return Err(AuthFailure::Malformed);
    }
    Ok(Segments { header })
}

/// Strict base64url: no padding, no non-canonical trailing bits, so one
/// token has exactly one spelling.
pub(crate) fn decode(segment: &[u8]) -> Result<Vec<u8>, AuthFailure> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| AuthFailure::Malformed)
}

/// The protected header fields we act on. Unknown fields (`cty`) are
/// ignored; duplicate fields are a parse error.
#[derive(Deserialize)]
pub(crate) struct Header {
    pub alg: String,
    pub kid: Option<String>,
    /// The token's media type; checked against the accepted access-token
    /// types by [`check_type`] before any key is looked at.
    pub typ: Option<String>,
    /// Headers by which a token would pick its own key or impose extensions.
    /// `present` makes even `"jku": null` count.
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    jwk: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

pub(crate) fn parse_header(segment: &[u8]) -> Result<Header, AuthFailure> {
    let json = decode(segment)?;
    let header: Header = serde_json::from_slice(&json).map_err(|_| AuthFailure::Malformed)?;
    if header.jku || header.x5u || header.jwk || header.x5c || header.crit {
        return Err(AuthFailure::ForbiddenHeader);
    }
    Ok(header)
}

/// Explicit typing (RFC 8725 §3.11, RFC 9068 §2.1): the header's `typ` must
/// be one of `accepted` (normalized). A missing `typ`, a JWE, an ID token, a
/// refresh or logout token is not an access token, however well signed.
pub(crate) fn check_type(header: &Header, accepted: &[String]) -> Result<(), AuthFailure> {
    let typ = header.typ.as_deref().ok_or(AuthFailure::WrongType)?;
    let typ = super::config::normalize_type(typ);
    if accepted.contains(&typ) {
        Ok(())
    } else {
        Err(AuthFailure::WrongType)
    }
}

/// The claims of a Custodian token. Used to mint tokens and, through
/// [`ReceivedClaims`], to read them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenClaims {
    pub sub: String,
    pub roles: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// Claims as received: `aud` may be a string or an array (RFC 7519 §4.1.3).
#[derive(Deserialize)]
pub(crate) struct ReceivedClaims {
    pub sub: String,
    pub roles: Vec<String>,
    pub iss: String,
    pub aud: Audience,
    pub exp: i64,
    pub iat: i64,
    #[serde(default)]
    pub nbf: Option<i64>,
    /// AWS Cognito and others mark refresh and ID tokens with `token_use`;
    /// only `access` (or no such claim) is an access token.
    #[serde(default)]
    pub token_use: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(aud) => aud == wanted,
            Audience::Many(auds) => auds.iter().any(|a| a == wanted),
        }
    }
}

/// What the claims checks need from the configuration.
pub(crate) struct ClaimRules<'a> {
    pub issuer: &'a str,
    pub audience: &'a str,
    pub leeway: i64,
}

/// The window in which verified claims stay valid: `valid_from <= now <
/// valid_until`, leeway included. Reused for every cache hit.
#[derive(Clone, Copy)]
pub(crate) struct Validity {
    pub valid_from: i64,
    pub valid_until: i64,
}

impl Validity {
    pub(crate) fn check(&self, now: i64) -> Result<(), AuthFailure> {
        if now >= self.valid_until {
            return Err(AuthFailure::Expired);
        }
        if now < self.valid_from {
            return Err(AuthFailure::NotYetValid);
        }
        Ok(())
    }
}

/// Checks issuer, audience, time and subject claims. The token is valid
/// while `now < exp + leeway` (RFC 7519: "before" exp) and once
/// `now >= max(nbf, iat) - leeway`.
pub(crate) fn check_claims(
    claims: &ReceivedClaims,
    rules: &ClaimRules<'_>,
    now: i64,
) -> Result<Validity, AuthFailure> {
    if claims.iss != rules.issuer {
        return Err(AuthFailure::WrongIssuer);
    }
    if !claims.aud.contains(rules.audience) {
        return Err(AuthFailure::WrongAudience);
    }
    if claims
        .token_use
        .as_deref()
        .is_some_and(|u| !u.eq_ignore_ascii_case("access"))
    {
        return Err(AuthFailure::WrongType);
    }
    if claims.sub.is_empty() || claims.roles.iter().any(String::is_empty) {
        return Err(AuthFailure::InvalidClaims);
    }
    let not_before = claims.nbf.map_or(claims.iat, |nbf| nbf.max(claims.iat));
    let validity = Validity {
        valid_from: not_before.saturating_sub(rules.leeway),
        valid_until: claims.exp.saturating_add(rules.leeway),
    };
    validity.check(now)?;
    Ok(validity)
}
