//! Stage 1, limits: how much a caller may ask. Body size and request time
//! are tower layers (see `http::app`); this module owns the rate limits:
//! requests per authenticated principal, and failed authentications per
//! client address (so a flood of forged tokens is slowed down before it costs
//! a signature check each).

use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

pub struct RateLimits {
    per_principal: Option<Keyed<String>>,
    failed_auth_per_ip: Option<Keyed<IpAddr>>,
    /// All addresses together: how many failed authentications per second
    /// are written to the audit trail. A flood from many addresses cannot
    /// fill the audit queue (and so, fail-closed, starve real requests);
    /// failures past it are answered 401 and only counted in metrics.
    audited_failures: Option<governor::DefaultDirectRateLimiter>,
}

impl RateLimits {
    /// `per_second == 0` disables the principal limit. Failed
    /// authentications are limited to a tenth of it (at least 10/s).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let quota = |rate: u32, burst: u32| {
            NonZeroU32::new(rate)
                .map(|r| Quota::per_second(r).allow_burst(NonZeroU32::new(burst).unwrap_or(r)))
        };
        Self {
            per_principal: quota(per_second, burst).map(RateLimiter::keyed),
            failed_auth_per_ip: quota(
                (per_second / 10).max(10).min(per_second.max(1)),
                (burst / 10).max(20),
            )
            .filter(|_| per_second > 0)
            .map(RateLimiter::keyed),
            audited_failures: quota((per_second / 2).max(50), burst.max(100))
                .filter(|_| per_second > 0)
                .map(RateLimiter::direct),
        }
    }

    /// Whether this failed authentication may still be written to the audit
    /// trail this second (all addresses together).
    pub fn audit_failed_auth(&self) -> bool {
        self.audited_failures
            .as_ref()
            .is_none_or(|limiter| limiter.check().is_ok())
    }

    /// True when `sub` may make another request now.
    pub fn allow_principal(&self, sub: &str) -> bool {
        match &self.per_principal {
            // Avoid allocating a key for the common case by checking first
            // with a borrowed lookup is not possible in governor; the
            // allocation is a few nanoseconds.
            Some(limiter) => limiter.check_key(&sub.to_owned()).is_ok(),
            None => true,
        }
    }

    /// Counts one failed authentication from `ip`; false when over the limit.
    pub fn allow_failed_auth(&self, ip: IpAddr) -> bool {
        match &self.failed_auth_per_ip {
            Some(limiter) => limiter.check_key(&ip).is_ok(),
            None => true,
        }
    }

    /// Drops state of idle keys; called periodically so memory stays bounded.
    pub fn shrink(&self) {
        if let Some(l) = &self.per_principal {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.failed_auth_per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_limit_bites_after_burst() {
        let limits = RateLimits::new(1, 3);
        assert!((0..3).all(|_| limits.allow_principal("svc")));
        assert!(!limits.allow_principal("svc"));
        assert!(limits.allow_principal("other"), "limits are per principal");
    }

    #[test]
    fn zero_disables() {
        let limits = RateLimits::new(0, 0);
        assert!((0..10_000).all(|_| limits.allow_principal("svc")));
        assert!((0..10_000).all(|_| limits.allow_failed_auth([127, 0, 0, 1].into())));
    }

    #[test]
    fn audited_failures_are_capped_across_addresses() {
        let limits = RateLimits::new(100, 100);
        let audited = (0..10_000).filter(|_| limits.audit_failed_auth()).count();
        assert!(audited <= 200, "audited {audited}");
        assert!(RateLimits::new(0, 0).audit_failed_auth());
    }

    #[test]
    fn failed_auth_is_limited_per_ip() {
        let limits = RateLimits::new(100, 100);
        let ip: IpAddr = [10, 0, 0, 1].into();
        let allowed = (0..1000).filter(|_| limits.allow_failed_auth(ip)).count();
        assert!(allowed < 100, "allowed {allowed}");
    }
}
