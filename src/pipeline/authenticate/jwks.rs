//! Verification keys from a configured JWKS URL (`auth.jwks_url`), beside
//! the key file: fetched at start (the server does not start without
//! them), on a schedule (`auth.jwks_refresh_secs`), and when a token names
//! a `kid` no key has, at most once per `auth.jwks_min_refetch_secs`.
//!
//! This module owns the fetch and the key set it produced. The URL comes
//! from the configuration only, never from a token: `jku`, `x5u` and `jwk`
//! headers are refused before any key is looked at (`token::parse_header`).
//! The URL must be `https`, except on a loopback address; redirects are not
//! followed (a redirect is an error), the response is bounded in size and
//! time, and its keys go through the same parser as the key file (public
//! keys only, each bound to one algorithm, `oct` keys refused). A fetch
//! that fails in any way keeps the keys in force, logs, and counts
//! `custodian_jwks_fetches_total{result="error"}`.

use super::failure::{AuthConfigError, AuthFailure};
use super::keys::{self, Algorithm, VerifyKey};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) const SETTING: &str = "auth.jwks_url";

/// Largest JWKS document read; a real one holds a handful of keys (a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The keys of the last good fetch, by `kid`.
type KeySet = HashMap<String, Arc<VerifyKey>>;

/// Why a refetch was asked for (a metric label).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Trigger {
    Startup,
    Schedule,
    UnknownKid,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Schedule => "schedule",
            Trigger::UnknownKid => "unknown_kid",
        }
    }
}

pub(crate) struct JwksSource {
    url: reqwest::Url,
    client: reqwest::Client,
    allowed: Vec<Algorithm>,
    keys: ArcSwap<KeySet>,
    pub(crate) refresh_every: Duration,
    min_refetch: Duration,
    /// When the last fetch started; held across the fetch, so concurrent
    /// unknown-kid refetches wait for one fetch instead of each making one.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

/// Checks the URL: absolute, `https`, or `http` to a loopback address.
pub(crate) fn parse_url(text: &str) -> Result<reqwest::Url, AuthConfigError> {
    let url = reqwest::Url::parse(text)
        .map_err(|e| AuthConfigError::invalid(SETTING, format!("not a URL: {e}")))?;
    let loopback = url.host_str().is_some_and(|host| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        match host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback(),
            Err(_) => host.eq_ignore_ascii_case("localhost"),
        }
    });
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(AuthConfigError::invalid(
                SETTING,
                "must be an https:// URL (http:// only on a loopback address)",
            ))
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(AuthConfigError::invalid(
            SETTING,
            "must not carry credentials",
        ));
    }
    Ok(url)
}

impl JwksSource {
    pub(crate) fn new(
        url: &str,
        allowed: Vec<Algorithm>,
        refresh_every: Duration,
        min_refetch: Duration,
        timeout: Duration,
    ) -> Result<Self, AuthConfigError> {
        let url = parse_url(url)?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("custodian/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AuthConfigError::invalid(SETTING, format!("HTTP client: {e}")))?;
        Ok(JwksSource {
            url,
            client,
            allowed,
            keys: ArcSwap::from_pointee(HashMap::new()),
            refresh_every,
            min_refetch,
            last_fetch: tokio::sync::Mutex::new(None),
        })
    }

    /// The JWKS key named `kid`, if the last good fetch had one.
    pub(crate) fn get(&self, kid: &str) -> Option<Arc<VerifyKey>> {
        self.keys.load().get(kid).cloned()
    }

    pub(crate) fn contains(&self, kid: &str) -> bool {
        self.keys.load().contains_key(kid)
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.load().len()
    }

    /// Fetches now (start and schedule). On error the keys in force stay.
    pub(crate) async fn fetch(&self, trigger: Trigger) -> anyhow::Result<usize> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch_locked(trigger).await
    }

    /// Fetches for a token whose `kid` no key has, unless a fetch started
    /// less than `auth.jwks_min_refetch_secs` ago. True when a fetch ran
    /// and succeeded (the caller may retry the token once).
    pub(crate) async fn refetch_for_unknown_kid(&self, kid: &str) -> bool {
        let mut last = self.last_fetch.lock().await;
        // Another request's refetch may have brought the key while this
        // one waited for the lock.
        if self.contains(kid) {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refetch) {
            metrics::counter!("custodian_jwks_refetches_limited_total").increment(1);
            return false;
        }
        *last = Some(Instant::now());
        self.fetch_locked(Trigger::UnknownKid).await.is_ok()
    }

    async fn fetch_locked(&self, trigger: Trigger) -> anyhow::Result<usize> {
        let result = self.download().await.and_then(|text| {
            self.parse(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", self.url))
        });
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!(
            "custodian_jwks_fetches_total",
            "trigger" => trigger.as_str(),
            "result" => outcome,
        )
        .increment(1);
        match result {
            Ok(set) => {
                let count = set.len();
                self.keys.store(Arc::new(set));
                metrics::gauge!("custodian_jwks_keys").set(count as f64);
                tracing::info!(keys = count, trigger = trigger.as_str(), "JWKS fetched");
                Ok(count)
            }
            Err(e) => {
                tracing::error!(
                    error = %e,
                    trigger = trigger.as_str(),
                    "JWKS fetch failed; the keys in force stay"
                );
                Err(e)
            }
        }
    }

    /// GET with the client's timeout, no redirects, a bounded body.
    async fn download(&self) -> anyhow::Result<String> {
        let url = &self.url;
        let fail = |what: String| anyhow::anyhow!("{SETTING}: {url}: {what}");
        let mut response = self
            .client
            .get(url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/json, application/jwk-set+json",
            )
            .send()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(fail(format!("HTTP {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| fail(error_chain(&e)))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(fail(format!("larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        String::from_utf8(body).map_err(|_| fail("not UTF-8".to_owned()))
    }

    fn parse(&self, text: &str) -> Result<KeySet, AuthConfigError> {
        let parsed = keys::parse_jwks(SETTING, text)?;
        let set: KeySet = parsed
            .into_iter()
            .filter(|(_, k)| self.allowed.contains(&k.algorithm()))
            .map(|(kid, k)| (kid, Arc::new(k)))
            .collect();
        if set.is_empty() {
            return Err(AuthConfigError::invalid(
                SETTING,
                "holds no signing key with an algorithm in auth.algorithms",
            ));
        }
        Ok(set)
    }

    /// Refetches every `auth.jwks_refresh_secs` while `source` is alive.
    pub(crate) fn spawn_schedule(source: &Arc<JwksSource>) {
        let weak = Arc::downgrade(source);
        let every = source.refresh_every;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(source) = weak.upgrade() else { return };
                // fetch() logs and counts its own failure.
                let _ = source.fetch(Trigger::Schedule).await;
            }
        });
    }
}

/// A reqwest error with its causes ("connection refused" sits a few
/// levels down), on one line.
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_owned()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The outcome of looking a `kid` up among the JWKS keys.
pub(crate) fn select(
    source: &JwksSource,
    alg: Algorithm,
    kid: &str,
) -> Result<Arc<VerifyKey>, AuthFailure> {
    let key = source.get(kid).ok_or(AuthFailure::UnknownKey)?;
    if key.algorithm() != alg {
        return Err(AuthFailure::AlgorithmNotAllowed);
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_loopback_http() {
        assert!(parse_url("https://issuer.example/.well-known/jwks.json").is_ok());
        assert!(parse_url("http://127.0.0.1:9000/jwks").is_ok());
        assert!(parse_url("http://[::1]:9000/jwks").is_ok());
        assert!(parse_url("http://localhost/jwks").is_ok());
        for bad in [
            "http://issuer.example/jwks",
            "http://10.0.0.1/jwks",
            "file:///etc/jwks.json",
            "jwks.json",
            "https://user:pw@issuer.example/jwks",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
