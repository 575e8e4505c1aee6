//! The served models: one immutable snapshot behind an `ArcSwap`, so a
//! request reads a consistent model without a lock, and a rebuild replaces
//! it in one atomic store (no request ever sees a half-swapped or mixed
//! model: it holds its own `Arc` of the snapshot it started with).
//!
//! Customers are found by their `personalization` pseudonym: the snapshot
//! maps each token to the customer's internal id (for the consent check,
//! which the HTTP layer does on every request) and to their lists, scored
//! once per build (so a personalized answer is a look-up, not a scoring). Erasure removes
//! a customer at once ([`Recommender::forget_customer`]); the next build no
//! longer reads them.

use arc_swap::ArcSwapOption;
use dashmap::DashSet;
use std::collections::HashMap;
use std::sync::Arc;

use super::build::Built;
use super::model::{Mode, Model, ModelStats, Scored};

/// The longest list a customer can ask for; each customer's lists are
/// scored once, when the snapshot is made, so an answer is a look-up.
pub const MAX_LIST: usize = 100;

/// A customer's precomputed answers, best first.
#[derive(Clone, Debug)]
pub struct CustomerLists {
    pub new: Vec<Scored>,
    pub repeat: Vec<Scored>,
}

impl CustomerLists {
    /// The first `n` items of the mode's list.
    pub fn top(&self, mode: Mode, n: usize) -> &[Scored] {
        let list = match mode {
            Mode::New => &self.new,
            Mode::Repeat => &self.repeat,
        };
        list.get(..n.min(list.len())).unwrap_or(&[])
    }
}

/// One loaded build.
pub struct Snapshot {
    pub model: Model,
    /// Personalization pseudonym → index into `customers`.
    by_token: HashMap<String, usize>,
    customers: Vec<(i64, CustomerLists)>,
}

impl Snapshot {
    /// `token_of(external_id)` gives the customer's pseudonym. Scores every
    /// customer's lists (CPU: run it off the async workers).
    pub fn new(built: Built, token_of: impl Fn(&str) -> String) -> Self {
        let mut by_token = HashMap::with_capacity(built.customers.len());
        let mut customers = Vec::with_capacity(built.customers.len());
        for c in built.customers {
            by_token.insert(token_of(&c.external_id), customers.len());
            let lists = CustomerLists {
                new: built.model.for_profile(&c.profile, MAX_LIST, Mode::New),
                repeat: built.model.for_profile(&c.profile, MAX_LIST, Mode::Repeat),
            };
            customers.push((c.id, lists));
        }
        Self {
            model: built.model,
            by_token,
            customers,
        }
    }

    /// The customer behind a pseudonym: internal id and answers.
    pub fn customer(&self, token: &str) -> Option<(i64, &CustomerLists)> {
        let &i = self.by_token.get(token)?;
        self.customers.get(i).map(|(id, p)| (*id, p))
    }

    pub fn contains_customer(&self, id: i64) -> bool {
        self.customers.iter().any(|(c, _)| *c == id)
    }

    /// Model plus the customers' lists and the pseudonym index, approximately.
    pub fn memory_bytes(&self) -> usize {
        let per = std::mem::size_of::<Scored>();
        self.model.memory_bytes()
            + self
                .customers
                .iter()
                .map(|(_, l)| 64 + (l.new.capacity() + l.repeat.capacity()) * per)
                .sum::<usize>()
            + self.by_token.len() * (25 + 24 + 8 + 16)
    }

    pub fn stats(&self) -> ModelStats {
        let mut s = self.model.stats();
        s.memory_bytes = self.memory_bytes();
        s
    }
}

/// The server's recommender: the current snapshot and the customers erased
/// since it was built.
#[derive(Default)]
pub struct Recommender {
    current: ArcSwapOption<Snapshot>,
    forgotten: DashSet<i64>,
    /// Serializes rebuilds (one at a time per instance).
    pub rebuilding: tokio::sync::Mutex<()>,
}

impl Recommender {
    /// The snapshot in force (None before the first build).
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Installs a new snapshot in one atomic store. Customers forgotten
    /// while it was being built stay forgotten if it still holds them.
    pub fn swap(&self, snapshot: Snapshot) {
        self.forgotten.retain(|id| snapshot.contains_customer(*id));
        self.current.store(Some(Arc::new(snapshot)));
    }

    /// Removes an erased customer from personalized answers at once.
    pub fn forget_customer(&self, customer_id: i64) {
        self.forgotten.insert(customer_id);
    }

    pub fn is_forgotten(&self, customer_id: i64) -> bool {
        self.forgotten.contains(&customer_id)
    }
}
