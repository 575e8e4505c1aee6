//! Shared application state: everything a request needs, built once at
//! start and cloned cheaply (one `Arc`) into every handler.

use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;

use crate::audit::AuditWriter;
use crate::catalog::FieldCatalog;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::Vault;
use crate::db::Db;
use crate::pipeline::authenticate::Authenticator;
use crate::pipeline::authorize::Authorizer;
use crate::pipeline::limits::RateLimits;
use crate::pipeline::purpose::PurposeCatalog;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub db: Db,
    pub clock: SharedClock,
    pub metrics: PrometheusHandle,
    /// This instance's audit chain writer; `record` before data leaves.
    pub audit: AuditWriter,
    pub authenticator: Authenticator,
    /// The policy in force (lock-free reads; swapped on reload).
    pub authorizer: Arc<Authorizer>,
    pub purposes: PurposeCatalog,
    pub catalog: FieldCatalog,
    pub vault: Vault,
    pub limits: RateLimits,
    /// The declared event schema `POST /v1/events` validates against.
    pub event_schema: crate::import::event_schema::EventSchema,
    /// Data subject rights: certificate signer, erasure hooks.
    pub dsr: crate::dsr::SharedDsr,
    /// Feature-table refreshes (one at a time per instance).
    pub analytics: crate::analytics::Analytics,
    /// The recommendation models in force (swapped atomically on rebuild).
    pub recs: crate::recs::job::Shared,
    /// The TLS certificate in force, when `[server.tls]` is set; SIGHUP
    /// reloads it through [`crate::http::tls::Tls::reload`].
    pub tls: Option<Arc<crate::http::tls::Tls>>,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// A handle that does not keep the state alive (for background tasks).
    pub fn downgrade(&self) -> WeakState {
        WeakState(Arc::downgrade(&self.0))
    }
}

pub struct WeakState(std::sync::Weak<Inner>);

impl WeakState {
    pub fn upgrade(&self) -> Option<AppState> {
        self.0.upgrade().map(AppState)
    }
}

/// The process-wide Prometheus recorder (installed once, even when tests
/// start several applications in one process).
pub fn metrics_handle() -> PrometheusHandle {
    crate::telemetry::metrics_handle()
}
