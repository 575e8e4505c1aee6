//! The fail-closed, group-committing audit writer.
//!
//! [`AuditWriter::record`] hands an event to one writer task per process
//! through a bounded queue and waits until the event is committed. The task
//! drains whatever is queued (up to `audit.max_batch`), chains the events in
//! order, stores them as one block with one statement (one transaction) on
//! its own connection, then acknowledges every waiter at once: many
//! concurrent requests share one commit. If the transaction fails, every waiter gets
//! [`AuditUnavailable`], the in-memory head is discarded (and reloaded from
//! the store before the next batch), and the writer reports unhealthy until
//! a later batch commits. A full queue also fails closed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

use super::event::{AuditEvent, Hash};
use super::key::{PublicKey, Signer};
use super::store::{self, Block};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::db::{Backend, Db};

/// Proof that an event is durable: its place in this instance's chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    pub seq: i64,
    pub hash: Hash,
}

/// The trail cannot record, so the request must fail with 503 and return
/// no data (`ApiError::AuditUnavailable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditUnavailable {
    #[error("audit queue is full")]
    QueueFull,
    #[error("audit store refused the write")]
    WriteFailed,
    #[error("audit writer is shutting down")]
    ShuttingDown,
}

impl From<AuditUnavailable> for crate::error::ApiError {
    fn from(_: AuditUnavailable) -> Self {
        crate::error::ApiError::AuditUnavailable
    }
}

/// Writer tuning, normally from [`crate::config::AuditConfig`].
#[derive(Clone, Debug)]
pub struct WriterOptions {
    pub instance: String,
    pub checkpoint_every_events: u64,
    pub checkpoint_interval: Duration,
    pub queue_capacity: usize,
    pub max_batch: usize,
}

impl WriterOptions {
    pub fn from_config(config: &Config) -> Self {
        Self {
            instance: config.instance(),
            checkpoint_every_events: config.audit.checkpoint_every_events,
            checkpoint_interval: Duration::from_secs(config.audit.checkpoint_interval_secs),
            queue_capacity: config.audit.queue_capacity,
            max_batch: config.audit.max_batch,
        }
    }
}

type Ack = oneshot::Sender<Result<Receipt, AuditUnavailable>>;

enum Msg {
    Event(Box<AuditEvent>, Ack),
    /// Flush what is queued, sign a final checkpoint, stop.
    Shutdown(oneshot::Sender<()>),
}

/// Handle on the writer task; cheap to clone.
#[derive(Clone)]
pub struct AuditWriter(Arc<Handle>);

struct Handle {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    closing: AtomicBool,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// SQLite: the task that checkpoints the trail's WAL.
    checkpointer: Option<tokio::task::AbortHandle>,
    instance: String,
    public_key: PublicKey,
}

#[derive(Default)]
struct Shared {
    healthy: AtomicBool,
    batches: AtomicU64,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("instance", &self.0.instance)
            .field("healthy", &self.is_healthy())
            .finish()
    }
}

impl AuditWriter {
    /// Loads this instance's chain head and starts the writer task. Fails
    /// when the store cannot be read, so the gateway does not start blind.
    pub async fn start(
        db: Db,
        clock: SharedClock,
        signer: Signer,
        options: WriterOptions,
    ) -> anyhow::Result<Self> {
        let head = store::chain_head(&db, &options.instance).await?;
        let last_checkpoint = store::checkpoints(&db, &options.instance)
            .await?
            .last()
            .map_or(0, |c| c.seq);
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            batches: AtomicU64::new(0),
        });
        metrics::gauge!("custodian_audit_healthy").set(1.0);
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let public_key = *signer.public_key();
        let instance = options.instance.clone();
        tracing::info!(instance = %instance, seq = head.0, key_id = public_key.key_id(), "audit chain loaded");
        // On SQLite the writer never checkpoints the trail's WAL itself: a
        // checkpoint inside a batch commit copies the WAL into the file and
        // syncs it while every waiting request waits too. A background task
        // does it on another connection instead (PASSIVE: never blocks the
        // writer's appends).
        let store = match db.backend {
            Backend::Sqlite => {
                db.dedicated_with(1, "PRAGMA audit.wal_autocheckpoint = 0;")
                    .await?
            }
            Backend::Postgres => db.dedicated(1).await?,
        };
        let checkpointer = match db.backend {
            // Its own connection too: never queued behind request traffic.
            Backend::Sqlite => {
                Some(tokio::spawn(checkpoint_wal(db.dedicated(1).await?)).abort_handle())
            }
            Backend::Postgres => None,
        };
        let task = Task {
            store,
            clock,
            signer,
            head: Some(head),
            last_checkpoint,
            shared: shared.clone(),
            options,
        };
        let join = tokio::spawn(task.run(rx));
        Ok(Self(Arc::new(Handle {
            tx,
            shared,
            closing: AtomicBool::new(false),
            task: Mutex::new(Some(join)),
            checkpointer,
            instance,
            public_key,
        })))
    }

    /// Records one event and waits until it is committed. `Err` means the
    /// request must fail closed (503, no data).
    pub async fn record(&self, event: AuditEvent) -> Result<Receipt, AuditUnavailable> {
        if self.0.closing.load(Ordering::Acquire) {
            return Err(AuditUnavailable::ShuttingDown);
        }
        let (ack, done) = oneshot::channel();
        match self.0.tx.try_send(Msg::Event(Box::new(event), ack)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                metrics::counter!("custodian_audit_rejected_total", "reason" => "queue_full")
                    .increment(1);
                tracing::error!("audit queue full; failing the request closed");
                return Err(AuditUnavailable::QueueFull);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(AuditUnavailable::ShuttingDown)
            }
        }
        // A dropped ack (task gone) is a failure too: never assume durable.
        done.await.unwrap_or(Err(AuditUnavailable::WriteFailed))
    }

    /// False after a failed batch, until a later batch commits.
    pub fn is_healthy(&self) -> bool {
        self.0.shared.healthy.load(Ordering::Acquire)
    }

    /// Committed batches since start (also `custodian_audit_batches_total`).
    pub fn batches(&self) -> u64 {
        self.0.shared.batches.load(Ordering::Acquire)
    }

    pub fn instance(&self) -> &str {
        &self.0.instance
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.0.public_key
    }

    /// Refuses new events, commits everything queued, signs a final
    /// checkpoint and stops the task. Idempotent.
    pub async fn shutdown(&self) {
        self.0.closing.store(true, Ordering::Release);
        let (done_tx, done_rx) = oneshot::channel();
        if self.0.tx.send(Msg::Shutdown(done_tx)).await.is_ok() {
            let _ = done_rx.await;
        }
        let join = self.0.task.lock().ok().and_then(|mut t| t.take());
        if let Some(join) = join {
            let _ = join.await;
        }
        if let Some(checkpointer) = &self.0.checkpointer {
            checkpointer.abort();
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.abort();
        }
    }
}

/// How often the trail's WAL is checkpointed on SQLite. Between two runs
/// the WAL grows by what the writer commits in that time (a few MB at
/// thousands of events a second).
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Copies the trail's WAL into its database file every
/// [`WAL_CHECKPOINT_EVERY`], on a connection of its own (not the writer's).
/// PASSIVE never waits for the writer or readers; what it cannot copy now
/// is copied at the next run. The last connection to close checkpoints too.
async fn checkpoint_wal(db: Db) {
    let mut tick = tokio::time::interval(WAL_CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = sqlx::query("PRAGMA audit.wal_checkpoint(PASSIVE)")
            .execute(&db.pool)
            .await
        {
            tracing::warn!(error = %e, "audit WAL checkpoint failed; retried in a second");
        }
    }
}

/// Whether an error means the connection broke (not that the database
/// refused the statement).
fn connection_lost(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<sqlx::Error>(),
        Some(sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_))
    )
}

struct Task {
    /// The writer's own one-connection pool, for everything it does:
    /// requests hold pooled connections while they wait for their event,
    /// so the writer must never need one of those.
    store: Db,
    clock: SharedClock,
    signer: Signer,
    /// `None` after a failed batch: reload from the store before chaining.
    head: Option<(i64, Hash)>,
    last_checkpoint: i64,
    shared: Arc<Shared>,
    options: WriterOptions,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut tick = tokio::time::interval(self.options.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let msg = tokio::select! {
                biased;
                msg = rx.recv() => msg,
                _ = tick.tick() => {
                    self.checkpoint_if_pending().await;
                    continue;
                }
            };
            let mut batch = match msg {
                None => break,
                Some(Msg::Shutdown(done)) => {
                    self.checkpoint_if_pending().await;
                    let _ = done.send(());
                    break;
                }
                Some(Msg::Event(event, ack)) => vec![(event, ack)],
            };
            let mut shutdown = None;
            while batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(Msg::Event(event, ack)) => batch.push((event, ack)),
                    Ok(Msg::Shutdown(done)) => {
                        shutdown = Some(done);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch).await;
            if let Some((seq, _)) = self.head {
                let every = i64::try_from(self.options.checkpoint_every_events).unwrap_or(i64::MAX);
                if seq - self.last_checkpoint >= every {
                    self.checkpoint_if_pending().await;
                }
            }
            if let Some(done) = shutdown {
                self.checkpoint_if_pending().await;
                let _ = done.send(());
                break;
            }
        }
    }

    async fn commit(&mut self, batch: Vec<(Box<AuditEvent>, Ack)>) {
        let instance = self.options.instance.clone();
        let (events, acks): (Vec<AuditEvent>, Vec<Ack>) =
            batch.into_iter().map(|(event, ack)| (*event, ack)).unzip();
        let result = async {
            let block = self.chain(&instance, events).await?;
            self.insert(&block).await?;
            anyhow::Ok(block)
        }
        .await;
        match result {
            Ok(block) => {
                if let Some(head) = block.head() {
                    self.head = Some(head);
                }
                let rows = block.rows;
                if !self.shared.healthy.swap(true, Ordering::AcqRel) {
                    tracing::info!(instance, "audit store writable again");
                    metrics::gauge!("custodian_audit_healthy").set(1.0);
                }
                self.shared.batches.fetch_add(1, Ordering::AcqRel);
                metrics::counter!("custodian_audit_batches_total").increment(1);
                metrics::counter!("custodian_audit_events_total")
                    .increment(u64::try_from(rows.len()).unwrap_or(0));
                for (ack, row) in acks.into_iter().zip(rows) {
                    let _ = ack.send(Ok(Receipt {
                        seq: row.seq,
                        hash: row.hash,
                    }));
                }
            }
            Err(e) => {
                // The database message may name columns, never event content.
                tracing::error!(
                    instance,
                    events = acks.len(),
                    error = format!("{e:#}"),
                    "audit write failed; failing the requests closed"
                );
                self.head = None;
                self.shared.healthy.store(false, Ordering::Release);
                metrics::gauge!("custodian_audit_healthy").set(0.0);
                metrics::counter!("custodian_audit_failed_batches_total").increment(1);
                for ack in acks {
                    let _ = ack.send(Err(AuditUnavailable::WriteFailed));
                }
            }
        }
    }

    /// Stamps and chains the batch after the current head (reloaded from
    /// the store after a failure), as one block.
    async fn chain(&self, instance: &str, events: Vec<AuditEvent>) -> anyhow::Result<Block> {
        let head = match self.head {
            Some(head) => head,
            None => store::chain_head(&self.store, instance).await?,
        };
        let now = self.clock.now_micros();
        Ok(Block::chain(
            instance,
            head,
            events.into_iter().map(|mut event| {
                event.occurred_at = now;
                event
            }),
        ))
    }

    /// One statement on the writer's own connection. A connection that
    /// failed is closed rather than reused; when the failure was the
    /// connection itself (a database restart or failover), the batch is
    /// tried once more on a fresh one. That is safe: if the first attempt
    /// did commit, the retry hits the `(instance, seq)` key and the batch
    /// fails closed, and the head is reloaded from the store.
    async fn insert(&self, block: &Block) -> anyhow::Result<()> {
        let first = self.insert_once(block).await;
        match &first {
            Err(e) if connection_lost(e) => {
                tracing::warn!("audit store connection lost; retrying the batch once");
                self.insert_once(block).await
            }
            _ => first,
        }
    }

    async fn insert_once(&self, block: &Block) -> anyhow::Result<()> {
        let mut conn = self.store.pool.acquire().await?;
        let result =
            store::insert_block(&mut *conn, self.store.backend, &block.rows, block.bytes()).await;
        if result.is_err() {
            conn.close_on_drop();
        }
        result
    }

    /// Signs the current head if events were added since the last checkpoint.
    async fn checkpoint_if_pending(&mut self) {
        let Some((seq, hash)) = self.head else { return };
        if seq <= self.last_checkpoint {
            return;
        }
        let cp = self
            .signer
            .sign(&self.options.instance, seq, hash, self.clock.now_micros());
        match store::insert_checkpoint(&self.store, &cp).await {
            Ok(()) => {
                self.last_checkpoint = seq;
                metrics::counter!("custodian_audit_checkpoints_total").increment(1);
            }
            // Retried at the next trigger; events stay chained meanwhile.
            Err(e) => tracing::warn!(error = format!("{e:#}"), "audit checkpoint not written"),
        }
    }
}
