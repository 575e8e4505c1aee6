//! The recommendation subsystem's part in data subject rights: what the
//! served snapshot holds about a customer (access), and forgetting them at
//! once (erasure). The erased customer's contribution to the aggregate
//! weights leaves with the next build, which no longer reads them.

use std::sync::Arc;

use sqlx::{Any, Transaction};

use super::model::Mode;
use super::serve::Recommender;
use crate::db::Db;
use crate::dsr::hooks::{HookFuture, SubjectHook};

/// Registered at start with the DSR hooks.
pub struct RecsSubjectHook(pub Arc<Recommender>);

impl SubjectHook for RecsSubjectHook {
    fn name(&self) -> &'static str {
        "recommendation_profile"
    }

    fn export<'a>(&'a self, _db: &'a Db, customer_id: i64) -> HookFuture<'a, serde_json::Value> {
        Box::pin(async move {
            let Some(snap) = self.0.current() else {
                return Ok(serde_json::json!({ "in_model": false }));
            };
            let held = snap
                .customer_by_id(customer_id)
                .filter(|_| !self.0.is_forgotten(customer_id));
            let skus = |mode: Mode| -> Vec<String> {
                held.map(|l| {
                    l.top(mode, usize::MAX)
                        .iter()
                        .filter_map(|s| snap.model.items.key(s.item).map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
            };
            Ok(serde_json::json!({
                "in_model": held.is_some(),
                "model_version": snap.model.version,
                "new_items": skus(Mode::New),
                "repeat": skus(Mode::Repeat),
            }))
        })
    }

    fn erase<'a>(
        &'a self,
        _tx: &'a mut Transaction<'static, Any>,
        customer_id: i64,
    ) -> HookFuture<'a, u64> {
        Box::pin(async move {
            let held = self
                .0
                .current()
                .is_some_and(|s| s.contains_customer(customer_id));
            self.0.forget_customer(customer_id);
            Ok(u64::from(held))
        })
    }
}
