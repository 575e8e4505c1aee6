//! How other subsystems take part in data subject rights.
//!
//! Anything that keeps data derived from a customer (segment members and
//! features, recommendation models and their in-memory copies, caches)
//! registers one [`SubjectHook`] at start:
//!
//! ```ignore
//! state.dsr.hooks.register(Arc::new(MySegmentsHook { .. }));
//! ```
//!
//! - [`SubjectHook::export`] returns what the subsystem holds about the
//!   customer as JSON; it becomes the section named [`SubjectHook::name`]
//!   of the access document (and `<name>.json` in the portability archive).
//! - [`SubjectHook::erase`] removes the customer, inside the erasure's
//!   transaction for that step. It must be idempotent: an interrupted
//!   erasure runs the step again at the next start. In-memory structures
//!   are dropped in the same call (before it returns), so nothing served
//!   afterwards rests on the customer.
//!
//! Tables keyed by `customers.id` may instead rely on `ON DELETE CASCADE`
//! only if the row is deleted, which erasure does not do (the emptied row
//! anchors the tombstone): such tables need a hook too.

use arc_swap::ArcSwap;
use sqlx::{Any, Transaction};
use std::sync::Arc;

use crate::db::Db;

/// What a hook's methods return: a boxed future, so hooks can be held as
/// `dyn SubjectHook` without a macro crate.
pub type HookFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<T>> + Send + 'a>>;

/// One subsystem's part in access and erasure.
pub trait SubjectHook: Send + Sync {
    /// Section name in the access document (`segments`,
    /// `recommendation_profile`, ...): `[a-z_]{1,40}`.
    fn name(&self) -> &'static str;

    /// What this subsystem holds about `customer_id` (internal id).
    fn export<'a>(&'a self, db: &'a Db, customer_id: i64) -> HookFuture<'a, serde_json::Value>;

    /// Forgets `customer_id`; returns how many records were removed.
    fn erase<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Any>,
        customer_id: i64,
    ) -> HookFuture<'a, u64>;
}

/// The registered hooks (lock-free to read; registration is rare).
#[derive(Default)]
pub struct ErasureHooks {
    hooks: ArcSwap<Vec<Arc<dyn SubjectHook>>>,
}

impl ErasureHooks {
    /// Adds a hook; a second hook with the same name replaces the first.
    pub fn register(&self, hook: Arc<dyn SubjectHook>) {
        self.hooks.rcu(|current| {
            let mut next: Vec<_> = current
                .iter()
                .filter(|h| h.name() != hook.name())
                .cloned()
                .collect();
            next.push(Arc::clone(&hook));
            next
        });
    }

    pub fn all(&self) -> Arc<Vec<Arc<dyn SubjectHook>>> {
        self.hooks.load_full()
    }
}
