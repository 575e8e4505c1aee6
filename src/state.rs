//! Shared application state: everything a request needs, built once at
//! start and cloned cheaply (one `Arc`) into every handler.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};

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
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, in which case our
            // handle still renders what we record through it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
