//! Building and running the application.
//!
//! [`Application::build`] wires every component from a [`Config`] and binds
//! the listener before returning, so the caller knows the real port (tests
//! ask for port 0). [`Application::run_until_stopped`] serves until SIGTERM
//! or Ctrl-C, then lets in-flight requests finish within the grace period.

use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

use crate::audit::{AuditWriter, Signer, WriterOptions};
use crate::catalog::FieldCatalog;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::crypto::rotation;
use crate::crypto::Vault;
use crate::db::Db;
use crate::pipeline::authenticate;
use crate::pipeline::authorize::sync;
use crate::pipeline::limits::RateLimits;
use crate::pipeline::purpose::PurposeCatalog;
use crate::state::{metrics_handle, AppState, Inner};

pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    state: AppState,
}

impl Application {
    /// Connects to the store, applies migrations and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(mut config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        // Everything that can be checked without side effects is checked
        // first: a bad policy directory must not leave generated keys or a
        // migrated database behind.
        check_policy_dir(&config.policy_dir)?;
        let tls = crate::http::tls::Tls::from_config(&config.server.tls)?;
        if let Some(path) = &config.server.metrics_token_file {
            let bytes = crate::secret::read_private_file(path)
                .map_err(|e| anyhow::anyhow!("server.metrics_token_file: {e}"))?;
            let token = std::str::from_utf8(&bytes)
                .ok()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "server.metrics_token_file: {}: empty or not UTF-8",
                        path.display()
                    )
                })?;
            config.server.metrics_token = Some(crate::secret::SecretString::new(token.to_owned()));
        }
        // Before anything records a metric (the audit writer sets its
        // health gauge as it starts).
        let metrics = metrics_handle();
        let purposes_path = config.policy_dir.join("purposes.toml");
        let purposes = PurposeCatalog::load(&purposes_path)
            .map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", purposes_path.display()))?;
        let fields_path = config.policy_dir.join("fields.toml");
        let catalog = FieldCatalog::load(&fields_path)
            .map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", fields_path.display()))?;
        let authenticator = authenticate::setup::build(&config)?;
        // Keys from auth.jwks_url before anything is written: no start
        // (and no migrated database) when the issuer's keys are out of reach.
        authenticator.start_jwks().await?;
        let db = Db::connect(&config).await?;
        db.migrate().await?;
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("server.listen: cannot bind {}", config.server.listen))?;
        let addr = listener.local_addr()?;
        let signer = Signer::from_config(&config)?;
        let audit = AuditWriter::start(
            db.clone(),
            clock.clone(),
            signer,
            WriterOptions::from_config(&config),
        )
        .await
        .context("audit trail: cannot load this instance's chain")?;
        let (authorizer, revision) =
            sync::bootstrap(&db, &config.policy_dir, &purposes, clock.now_micros()).await?;
        let authorizer = Arc::new(authorizer);
        let purpose_ids: Vec<_> = purposes.all().iter().map(|p| p.id.clone()).collect();
        let vault = Vault::open(&config, &db, &purpose_ids).await?;
        sync::spawn_watcher(
            db.clone(),
            Arc::clone(&authorizer),
            revision,
            Duration::from_millis(config.policy.reload_poll_ms),
        );
        let limits = RateLimits::new(
            config.server.rate_limit_per_second,
            config.server.rate_limit_burst,
        );
        let event_schema = crate::import::event_schema::EventSchema::load(&config.policy_dir)?;
        let dsr = Arc::new(crate::dsr::Dsr::new(Signer::from_config(&config)?));
        let analytics = crate::analytics::Analytics::new(std::time::Duration::from_millis(
            config.analytics.feature_staleness_ms,
        ));
        let state = AppState::new(Inner {
            config,
            db,
            clock,
            metrics,
            audit,
            authenticator,
            authorizer,
            purposes,
            catalog,
            vault,
            limits,
            event_schema,
            dsr,
            analytics,
            recs: Default::default(),
            tls,
        });
        spawn_key_upkeep(state.downgrade());
        crate::recs::job::spawn_schedule(state.downgrade());
        state
            .dsr
            .hooks
            .register(Arc::new(crate::recs::subject::RecsSubjectHook(Arc::clone(
                &state.recs,
            ))));
        let weak = state.downgrade();
        tokio::spawn(async move {
            // Keeps rate-limiter memory bounded by forgetting idle callers.
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                match weak.upgrade() {
                    Some(state) => state.limits.shrink(),
                    None => return,
                }
            }
        });
        start_dsr(&state).await?;
        Ok(Self {
            listener,
            addr,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` resolves, then drains in-flight requests for at
    /// most `server.shutdown_grace_secs`.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.state.config.server.shutdown_grace_secs);
        let limits = crate::http::serve::ConnectionLimits::from_config(&self.state.config.server);
        let app = crate::http::app(self.state.clone());
        let tls = self.state.tls.clone();
        #[cfg(unix)]
        let hangup = match &tls {
            Some(tls) => Some(tls.spawn_reload_on_hangup()?),
            None => None,
        };
        match &tls {
            Some(_) => tracing::info!(addr = %self.addr, "serving HTTPS (HTTP/2 and HTTP/1.1)"),
            None if !self.addr.ip().is_loopback() => tracing::warn!(
                addr = %self.addr,
                "serving plain HTTP on a non-loopback address: set server.tls or terminate TLS in front"
            ),
            None => {}
        }
        crate::http::serve::serve(self.listener, app, limits, tls, stop, grace).await;
        #[cfg(unix)]
        if let Some(task) = hangup {
            task.abort();
        }
        // Commit queued audit events and sign the head before the pool goes.
        self.state.audit.shutdown().await;
        self.state.db.pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The policy directory holds the four files the gateway needs; its absence
/// is one line that says how to point at it.
pub fn check_policy_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if !dir.is_dir() {
        anyhow::bail!(
            "policy_dir {}: no such directory (point at the directory holding model.conf, \
             policy.csv, purposes.toml and fields.toml with policy_dir in the config file or \
             CUSTODIAN_POLICY_DIR)",
            dir.display()
        );
    }
    for file in ["model.conf", "policy.csv", "purposes.toml", "fields.toml"] {
        if !dir.join(file).is_file() {
            anyhow::bail!(
                "policy_dir {}: {file} is missing (see the shipped policies/ directory)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Data subject rights at start: temporary documents of a crashed run are
/// deleted, unfinished erasures completed (before anything is served),
/// and expired documents swept now and every minute.
async fn start_dsr(state: &AppState) -> anyhow::Result<()> {
    crate::dsr::export::clean_temp_dir(&crate::dsr::export::temp_dir(state));
    crate::dsr::erasure::resume_all(state)
        .await
        .context("data subject rights: cannot resume interrupted erasures")?;
    let weak = state.downgrade();
    tokio::spawn(async move {
        loop {
            match weak.upgrade() {
                Some(state) => {
                    let now = state.clock.now_micros();
                    if let Err(e) = crate::dsr::documents::delete_expired(&state.db, now).await {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "sweeping expired DSR documents failed"
                        );
                    }
                }
                None => return,
            }
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

// --- Key rotation inside a serving instance (crypto does the work; the
// --- trail records it).

/// Background upkeep of a serving instance: re-reads key versions every
/// [`rotation::REFRESH_EVERY`] (so DEKs of new customers are wrapped under a version
/// another instance added), and at start and every [`rotation::RESUME_EVERY`] resumes
/// an abandoned rotation. Stops when the application is dropped.
pub fn spawn_key_upkeep(weak: crate::state::WeakState) {
    tokio::spawn(async move {
        let mut last_resume_check: Option<tokio::time::Instant> = None;
        loop {
            let Some(state) = weak.upgrade() else { return };
            if let Err(e) = state.vault.refresh(&state.db).await {
                tracing::warn!(error = %e, "key versions: refresh failed");
            }
            if last_resume_check.is_none_or(|t| t.elapsed() >= rotation::RESUME_EVERY) {
                last_resume_check = Some(tokio::time::Instant::now());
                let owner = rotation::owner_id(&state.config.instance());
                let now = state.clock.now_micros();
                match rotation::start(&state.vault, &state.db, owner, now, true).await {
                    Ok(Some(job)) => {
                        tracing::warn!(
                            version = job.version,
                            "resuming an interrupted key rotation"
                        );
                        run_audited(state.clone(), job, rotation::DEFAULT_BATCH).await;
                    }
                    Ok(None) | Err(rotation::RotationError::InProgress) => {}
                    Err(rotation::RotationError::Other(e)) => {
                        tracing::warn!(error = %e, "key rotation: resume check failed");
                    }
                }
            }
            drop(state);
            tokio::time::sleep(rotation::REFRESH_EVERY).await;
        }
    });
}

/// Runs a started rotation inside a serving instance and records its end
/// (or failure) in the audit trail as a system `key.rotate` event.
pub async fn run_audited(state: crate::state::AppState, job: rotation::Started, batch: i64) {
    use crate::audit::{Action, AuditEvent, Reason};
    let result = rotation::run(
        &state.vault,
        &state.db,
        &state.clock,
        &job,
        batch,
        &|_, _| {},
    )
    .await;
    let base = AuditEvent::system("system:key-rotation", Action::KeyRotate, "keys")
        .request_id(uuid::Uuid::new_v4().to_string());
    let event = match &result {
        Ok(report) => {
            tracing::info!(
                version = report.version,
                rewrapped = report.rewrapped,
                "key rotation finished"
            );
            base.records(report.rewrapped).allow(
                Reason::Admin(format!(
                    "rotation to key version {} finished",
                    report.version
                )),
                200,
            )
        }
        Err(e) => {
            tracing::error!(version = job.version, error = %format!("{e:#}"), "key rotation stopped; it will be resumed");
            base.deny(Reason::Outcome("rotation_interrupted".to_owned()), 500)
        }
    };
    if let Err(e) = state.audit.record(event.build()).await {
        tracing::error!(error = %e, "key rotation: could not record its audit event");
    }
}
