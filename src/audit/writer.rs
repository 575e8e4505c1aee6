//! The fail-closed, group-committing audit writer.
//!
//! [`AuditWriter::record`] hands an event to one writer task per process
//! through a bounded queue and waits until the event is committed. The
//! task drains whatever is queued (up to `audit.max_batch`), chains the
//! events in order, stores them as one block with one statement (one
//! transaction) on its own connection, then acknowledges every waiter at
//! once: many concurrent requests share one commit. If the transaction
//! fails, every waiter gets [`AuditUnavailable`], the in-memory head is
//! discarded (and reloaded from the store before the next batch), and the
//! writer reports unhealthy until a later batch commits. A full queue also
//! fails closed.
//!
//! Work that must not sit inside a commit every request waits on runs
//! beside it: indexing new blocks by customer every [`INDEX_EVERY`], and on
//! SQLite checkpointing the WAL (see [`open_connections`] for where each
//! runs on which backend).

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
    /// Lock and statement timeout of the writer's connection.
    pub write_timeout: Duration,
}

impl WriterOptions {
    pub fn from_config(config: &Config) -> Self {
        Self {
            instance: config.instance(),
            checkpoint_every_events: config.audit.checkpoint_every_events,
            checkpoint_interval: Duration::from_secs(config.audit.checkpoint_interval_secs),
            queue_capacity: config.audit.queue_capacity,
            max_batch: config.audit.max_batch,
            write_timeout: Duration::from_millis(config.audit.write_timeout_ms),
        }
    }
}

/// How often new blocks are added to the customer index: outside the
/// commits every request waits on, and often enough that each pass is short
/// (on SQLite the requests queued during a pass wait for it).
pub const INDEX_EVERY: Duration = Duration::from_millis(100);

/// The most blocks one pass indexes, so that a backlog (after an upgrade,
/// or after passes failed) is caught up in steps between commits.
const INDEX_BLOCKS_PER_PASS: i64 = 1_000;

type Ack = oneshot::Sender<Result<Receipt, AuditUnavailable>>;

enum Msg {
    Event(Box<AuditEvent>, Ack),
    Control(Control),
}

/// Handled after the events queued before it are committed.
enum Control {
    /// Index every block not yet in the customer index; answers whether
    /// that worked.
    Index(oneshot::Sender<bool>),
    /// Index, sign a final checkpoint, stop.
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
    /// The WAL checkpointer (SQLite) or the customer indexer (PostgreSQL).
    background: tokio::task::AbortHandle,
    instance: String,
    public_key: PublicKey,
    /// Shared with the task: the handle signs export manifests.
    signer: Arc<Signer>,
}

struct Shared {
    healthy: AtomicBool,
    batches: AtomicU64,
    /// Milliseconds after `epoch` at which the batch being written started
    /// (0: none in flight), so readiness can see a writer that is stuck
    /// before its timeout fires.
    writing_since: AtomicU64,
    epoch: std::time::Instant,
    write_timeout: Duration,
}

impl Shared {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1)
    }

    /// Whether the batch in flight has been waiting longer than half the
    /// write timeout: the store is locked or hung.
    fn stuck(&self) -> bool {
        let since = self.writing_since.load(Ordering::Acquire);
        let half = u64::try_from(self.write_timeout.as_millis() / 2).unwrap_or(u64::MAX);
        since != 0 && self.now_ms().saturating_sub(since) > half
    }
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
            writing_since: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            write_timeout: options.write_timeout,
            batches: AtomicU64::new(0),
        });
        metrics::gauge!("custodian_audit_healthy").set(1.0);
        let (tx, rx) = mpsc::channel(options.queue_capacity);
        let public_key = *signer.public_key();
        let signer = Arc::new(signer);
        let instance = options.instance.clone();
        tracing::info!(instance = %instance, seq = head.0, key_id = public_key.key_id(), "audit chain loaded");
        let (store, wal_backfilled, background) =
            open_connections(&db, &options.instance, options.write_timeout).await?;
        let task = Task {
            store,
            clock,
            signer: Arc::clone(&signer),
            head: Some(head),
            last_checkpoint,
            last_index: tokio::time::Instant::now(),
            wal_backfilled,
            indexed_head: None,
            shared: shared.clone(),
            options,
        };
        // On the gateway's runtime, deliberately: the task runs when its
        // turn comes among the request tasks, and the events that arrive
        // meanwhile join its next batch (a thread of its own commits smaller
        // batches, and the extra commits cost more than they save).
        let join = tokio::spawn(task.run(rx));
        Ok(Self(Arc::new(Handle {
            tx,
            shared,
            closing: AtomicBool::new(false),
            task: Mutex::new(Some(join)),
            background,
            instance,
            public_key,
            signer,
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
            Ok(()) => {
                let depth = self.0.tx.max_capacity() - self.0.tx.capacity();
                metrics::gauge!("custodian_audit_queue_depth").set(depth as f64);
            }
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

    /// Queues one event without waiting for it: for a request that can no
    /// longer wait (its future is being dropped). False when the queue
    /// refused it (full or closed); the caller counts that.
    pub fn record_detached(&self, event: AuditEvent) -> bool {
        if self.0.closing.load(Ordering::Acquire) {
            return false;
        }
        // Nobody waits on the receipt: the writer's send to a dropped
        // receiver is ignored.
        let (ack, _) = oneshot::channel();
        self.0.tx.try_send(Msg::Event(Box::new(event), ack)).is_ok()
    }

    /// False after a failed batch, until a later batch commits.
    pub fn is_healthy(&self) -> bool {
        self.0.shared.healthy.load(Ordering::Acquire) && !self.0.shared.stuck()
    }

    /// Committed batches since start (also `custodian_audit_batches_total`).
    pub fn batches(&self) -> u64 {
        self.0.shared.batches.load(Ordering::Acquire)
    }

    pub fn instance(&self) -> &str {
        &self.0.instance
    }

    /// The checkpoint key, to sign what an export claims.
    pub fn signer(&self) -> Arc<Signer> {
        Arc::clone(&self.0.signer)
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.0.public_key
    }

    /// Indexes every event committed before the call (normally the
    /// customer index lags by up to [`INDEX_EVERY`]). False when the store
    /// refused (tried a few times) or the writer is gone.
    pub async fn index_now(&self) -> bool {
        self.control(Control::Index).await.unwrap_or(false)
    }

    /// Sends a control message after the queued events and waits until the
    /// task has handled it (`None`: the task is gone).
    async fn control<T>(&self, message: fn(oneshot::Sender<T>) -> Control) -> Option<T> {
        let (done_tx, done_rx) = oneshot::channel();
        self.0.tx.send(Msg::Control(message(done_tx))).await.ok()?;
        done_rx.await.ok()
    }

    /// Refuses new events, commits everything queued, signs a final
    /// checkpoint and stops the task. Idempotent.
    pub async fn shutdown(&self) {
        self.0.closing.store(true, Ordering::Release);
        self.control(Control::Shutdown).await;
        let join = self.0.task.lock().ok().and_then(|mut t| t.take());
        if let Some(join) = join {
            let _ = join.await;
        }
        self.0.background.abort();
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.background.abort();
    }
}

/// The writer's own connection, and the background task with a connection
/// of its own: on SQLite the WAL checkpointer, on PostgreSQL the customer
/// indexer (there a pass does not lock the writer out, so it runs beside
/// it; on SQLite one writer at a time holds the file, so the writer itself
/// indexes between batches).
async fn open_connections(
    db: &Db,
    instance: &str,
    write_timeout: Duration,
) -> anyhow::Result<(Db, Arc<AtomicBool>, tokio::task::AbortHandle)> {
    let backfilled = Arc::new(AtomicBool::new(false));
    // Both connections before the task starts: a failed start leaves
    // nothing running.
    // Every request waits on this connection: bound how long it waits for
    // a lock or a statement, well under the request timeout, so a locked or
    // hung trail fails requests closed fast instead of stalling them all.
    let ms = write_timeout.as_millis().max(1);
    let store = match db.backend {
        Backend::Sqlite => {
            db.dedicated_with(
                1,
                format!("PRAGMA audit.wal_autocheckpoint = 0; PRAGMA busy_timeout = {ms};"),
            )
            .await?
        }
        Backend::Postgres => {
            db.dedicated_with(
                1,
                format!("SET lock_timeout = {ms}; SET statement_timeout = {ms};"),
            )
            .await?
        }
    };
    let own = db.dedicated(1).await?;
    let task = match db.backend {
        Backend::Sqlite => tokio::spawn(checkpoint_wal(own, backfilled.clone())),
        Backend::Postgres => tokio::spawn(index_in_background(own, instance.to_owned())),
    };
    Ok((store, backfilled, task.abort_handle()))
}

/// PostgreSQL: a customer-indexing pass every [`INDEX_EVERY`] beside the
/// writer. A failure is retried at the next pass.
async fn index_in_background(db: Db, instance: String) {
    let mut tick = tokio::time::interval(INDEX_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        index_pass(&db, &instance, INDEX_BLOCKS_PER_PASS).await;
    }
}

/// One customer-indexing pass (see [`store::index_customers`]), with its
/// metrics. `Some(true)` when it caught up with the chain.
async fn index_pass(db: &Db, instance: &str, max_blocks: i64) -> Option<bool> {
    let started = tokio::time::Instant::now();
    let result = store::index_customers(db, instance, max_blocks).await;
    metrics::histogram!("custodian_audit_index_seconds").record(started.elapsed().as_secs_f64());
    match result {
        Ok(blocks) => {
            metrics::counter!("custodian_audit_indexed_blocks_total").increment(blocks);
            Some(i64::try_from(blocks).is_ok_and(|b| b < max_blocks))
        }
        Err(e) => {
            // Events are durable without the index, and the customer
            // filter reads blocks past the index's progress directly.
            metrics::counter!("custodian_audit_index_failures_total").increment(1);
            tracing::warn!(
                error = format!("{e:#}"),
                "audit customer index not updated; retried at the next pass"
            );
            None
        }
    }
}

/// How often the trail's WAL is checkpointed on SQLite.
const WAL_CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// SQLite: copies the trail's WAL into its database file every
/// [`WAL_CHECKPOINT_EVERY`], concurrently with the writer (PASSIVE never
/// blocks it), then sets `backfilled`. That copy never quite catches up
/// with a busy writer, and a WAL restarts only once every frame is copied:
/// so the writer, seeing `backfilled`, copies the few frames left between
/// two batches ([`Task::maintain`]) and its next commit starts the WAL
/// over. The writer never waits for the bulk of the copy, and the WAL stays
/// at about one interval of commits. (Without that last step the WAL grew
/// by tens of MB a second under steady load; with the whole checkpoint in
/// the writer, every request waited for it once a second.)
async fn checkpoint_wal(db: Db, backfilled: Arc<AtomicBool>) {
    let mut tick = tokio::time::interval(WAL_CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if wal_checkpoint(&db, "background").await {
            backfilled.store(true, Ordering::Release);
        }
    }
}

/// One PASSIVE checkpoint of the trail's WAL on `db`'s connection, timed
/// under `by`. PASSIVE never waits: a reader holding an old snapshot only
/// defers the WAL's restart to a later run. False when it failed (retried
/// at the next run).
async fn wal_checkpoint(db: &Db, by: &'static str) -> bool {
    let started = tokio::time::Instant::now();
    let result = sqlx::query("PRAGMA audit.wal_checkpoint(PASSIVE)")
        .execute(&db.pool)
        .await;
    metrics::histogram!("custodian_audit_wal_checkpoint_seconds", "by" => by)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        tracing::warn!(error = %e, by, "audit WAL checkpoint failed; retried in a second");
    }
    result.is_ok()
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
    signer: Arc<Signer>,
    /// `None` after a failed batch: reload from the store before chaining.
    head: Option<(i64, Hash)>,
    last_checkpoint: i64,
    /// When the last indexing pass ran.
    last_index: tokio::time::Instant,
    /// SQLite: set by the background checkpointer after each run (never
    /// set on PostgreSQL).
    wal_backfilled: Arc<AtomicBool>,
    /// The head seq when the index last caught up with it.
    indexed_head: Option<i64>,
    shared: Arc<Shared>,
    options: WriterOptions,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut tick = tokio::time::interval(self.options.checkpoint_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut maintenance = tokio::time::interval(INDEX_EVERY);
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        maintenance.tick().await;
        loop {
            let msg = tokio::select! {
                biased;
                msg = rx.recv() => msg,
                _ = tick.tick() => {
                    self.checkpoint_if_pending().await;
                    continue;
                }
                // Idle periods; under load it runs after a commit. SQLite
                // only: on PostgreSQL there is nothing to do between batches.
                _ = maintenance.tick() => {
                    if !self.shared.healthy.load(Ordering::Acquire) {
                        self.probe().await;
                    }
                    if self.store.backend == Backend::Sqlite {
                        self.maintain(true).await;
                    }
                    continue;
                }
            };
            let mut batch = Vec::new();
            let mut control = None;
            match msg {
                None => break,
                Some(Msg::Event(event, ack)) => batch.push((event, ack)),
                Some(Msg::Control(c)) => control = Some(c),
            }
            while control.is_none() && batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(Msg::Event(event, ack)) => batch.push((event, ack)),
                    Ok(Msg::Control(c)) => control = Some(c),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(batch).await;
                if let Some((seq, _)) = self.head {
                    let every =
                        i64::try_from(self.options.checkpoint_every_events).unwrap_or(i64::MAX);
                    if seq - self.last_checkpoint >= every {
                        self.checkpoint_if_pending().await;
                    }
                }
                if self.store.backend == Backend::Sqlite {
                    self.maintain(false).await;
                }
            }
            match control {
                None => {}
                Some(Control::Index(done)) => {
                    let _ = done.send(self.index_all().await);
                }
                Some(Control::Shutdown(done)) => {
                    self.index_all().await;
                    self.checkpoint_if_pending().await;
                    let _ = done.send(());
                    break;
                }
            }
        }
    }

    /// After a failed batch, with no traffic to retry it: whether the trail
    /// can take a write again. The probe inserts a block row exactly as a
    /// batch would (same lock, same triggers and constraints, same
    /// timeouts) and rolls it back, so it succeeds only when a real batch
    /// would. Without it an unready instance would get no traffic and so
    /// never become ready again.
    async fn probe(&mut self) {
        let attempt = async {
            let mut tx = self.store.pool.begin().await?;
            sqlx::query(
                "INSERT INTO audit_blocks (instance, first_seq, last_seq, at, customers, events) \
                 VALUES ($1, 1, 1, 0, '[]', $2)",
            )
            .bind(format!("{}#probe", self.options.instance))
            .bind(Vec::<u8>::new())
            .execute(&mut *tx)
            .await?;
            tx.rollback().await
        };
        let ok = attempt.await.is_ok();
        if ok && !self.shared.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(
                instance = self.options.instance,
                "audit store writable again"
            );
            metrics::gauge!("custodian_audit_healthy").set(1.0);
        }
    }

    /// SQLite: work kept out of the commits, done between batches when
    /// due: the customer index pass and the end of the WAL checkpoint.
    /// `tick`: the maintenance interval fired (the task was idle), so the
    /// index pass is due whatever the clock says since the last one.
    async fn maintain(&mut self, tick: bool) {
        if tick || self.last_index.elapsed() >= INDEX_EVERY {
            self.index_pending(INDEX_BLOCKS_PER_PASS).await;
        }
        if self.wal_backfilled.swap(false, Ordering::AcqRel) {
            wal_checkpoint(&self.store, "writer").await;
        }
    }

    /// Indexes everything committed, trying a few times: a pass can lose a
    /// lock race (PostgreSQL: with the background pass or retention;
    /// SQLite: a busy file).
    async fn index_all(&mut self) -> bool {
        for _ in 0..3 {
            if self.index_pending(i64::MAX).await {
                return true;
            }
        }
        false
    }

    /// One customer-indexing pass over this chain's new blocks (at most
    /// `max_blocks`), skipped when nothing was committed since the index
    /// last caught up. True when the index has caught up with the head.
    async fn index_pending(&mut self, max_blocks: i64) -> bool {
        self.last_index = tokio::time::Instant::now();
        let head = self.head.map(|(seq, _)| seq);
        if head.is_some() && head == self.indexed_head {
            return true;
        }
        let caught_up =
            index_pass(&self.store, &self.options.instance, max_blocks).await == Some(true);
        if caught_up {
            self.indexed_head = head;
        }
        caught_up
    }

    async fn commit(&mut self, batch: Vec<(Box<AuditEvent>, Ack)>) {
        let instance = self.options.instance.clone();
        let started = std::time::Instant::now();
        metrics::histogram!("custodian_audit_batch_size").record(batch.len() as f64);
        let (events, acks): (Vec<AuditEvent>, Vec<Ack>) =
            batch.into_iter().map(|(event, ack)| (*event, ack)).unzip();
        self.shared
            .writing_since
            .store(self.shared.now_ms(), Ordering::Release);
        let result = async {
            let block = self.chain(&instance, events).await?;
            self.insert(&block).await?;
            anyhow::Ok(block)
        }
        .await;
        self.shared.writing_since.store(0, Ordering::Release);
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
                metrics::histogram!("custodian_audit_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
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
        let result = store::insert_block(&mut *conn, &block.rows, block.bytes()).await;
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
