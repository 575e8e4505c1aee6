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

use crate::catalog::FieldCatalog;
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::crypto::Vault;
use crate::db::Db;
use crate::pipeline::audit::{AuditWriter, Signer, WriterOptions};
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

    pub async fn build_with_clock(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
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
        let purposes_path = config.policy_dir.join("purposes.toml");
        let purposes = PurposeCatalog::load(&purposes_path)
            .map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", purposes_path.display()))?;
        let fields_path = config.policy_dir.join("fields.toml");
        let catalog = FieldCatalog::load(&fields_path)
            .map_err(|e| anyhow::anyhow!("policy_dir: {}: {e}", fields_path.display()))?;
        let authenticator = authenticate::setup::build(&config)?;
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
        let state = AppState::new(Inner {
            config,
            db,
            clock,
            metrics: metrics_handle(),
            audit,
            authenticator,
            authorizer,
            purposes,
            catalog,
            vault,
            limits,
            recs: Default::default(),
        });
        crate::crypto::rotation::spawn_background(state.downgrade());
        crate::recs::job::spawn_schedule(state.downgrade());
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
        let app = crate::http::app(self.state.clone());
        let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
        let serve = axum::serve(
            self.listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            stop.await;
            tracing::info!("shutdown requested; finishing in-flight requests");
            let _ = stopped_tx.send(());
        });
        let drain_deadline = async move {
            let _ = stopped_rx.await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serve => result.context("server error")?,
            () = drain_deadline => tracing::warn!("grace period over; dropping remaining requests"),
        }
        // Commit queued audit events and sign the head before the pool goes.
        self.state.audit.shutdown().await;
        self.state.db.pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
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
