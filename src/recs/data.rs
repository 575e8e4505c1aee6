//! The training data every model is built from: baskets of weighted items
//! per customer, with dense `u32` indexes for items, customers and
//! countries so the models work on plain arrays.
//!
//! A basket is one invoice (a purchase) or one browsing session; purchases
//! weigh 1, views `view_weight` (see [`crate::recs::RecsParams`]). Returns
//! and cancellations never enter: the loaders drop them.

use std::collections::HashMap;

/// What a basket records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BasketKind {
    Purchase,
    /// Browsing events of one customer within one session (a day).
    Session,
}

/// One basket: distinct items, each with its weight.
#[derive(Clone, Debug)]
pub struct Basket {
    pub customer: u32,
    pub kind: BasketKind,
    /// Microseconds since the epoch.
    pub time: i64,
    /// Tie-breaker between baskets of one customer at the same time (the
    /// invoice number for the Online Retail data: larger is later).
    pub seq: i64,
    pub country: u16,
    /// Distinct items, sorted by index, with the summed quantity.
    pub items: Vec<(u32, f32)>,
}

/// Interning table: string key ↔ dense index.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    keys: Vec<String>,
    index: HashMap<String, u32>,
}

impl Vocab {
    pub fn intern(&mut self, key: &str) -> u32 {
        if let Some(&i) = self.index.get(key) {
            return i;
        }
        let i = u32::try_from(self.keys.len()).unwrap_or(u32::MAX);
        self.keys.push(key.to_owned());
        self.index.insert(key.to_owned(), i);
        i
    }

    pub fn get(&self, key: &str) -> Option<u32> {
        self.index.get(key).copied()
    }

    pub fn key(&self, i: u32) -> Option<&str> {
        self.keys.get(i as usize).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[String] {
        &self.keys
    }
}

/// All baskets plus their vocabularies.
#[derive(Clone, Debug, Default)]
pub struct Interactions {
    pub items: Vocab,
    pub customers: Vocab,
    pub countries: Vocab,
    pub baskets: Vec<Basket>,
}

/// Collects lines into baskets: lines of one basket key are merged, items
/// summed.
#[derive(Default)]
pub struct InteractionsBuilder {
    data: Interactions,
    open: HashMap<(BasketKind, String), usize>,
}

/// One line of a basket, as a loader sees it.
pub struct LineIn<'a> {
    pub basket_key: &'a str,
    pub kind: BasketKind,
    pub customer: &'a str,
    pub country: &'a str,
    pub item: &'a str,
    pub quantity: f32,
    pub time: i64,
    pub seq: i64,
}

impl InteractionsBuilder {
    pub fn push(&mut self, line: LineIn<'_>) {
        let item = self.data.items.intern(line.item);
        let key = (line.kind, line.basket_key.to_owned());
        let at = match self.open.get(&key) {
            Some(&at) => at,
            None => {
                let customer = self.data.customers.intern(line.customer);
                let country =
                    u16::try_from(self.data.countries.intern(line.country)).unwrap_or(u16::MAX);
                self.data.baskets.push(Basket {
                    customer,
                    kind: line.kind,
                    time: line.time,
                    seq: line.seq,
                    country,
                    items: Vec::new(),
                });
                let at = self.data.baskets.len() - 1;
                self.open.insert(key, at);
                at
            }
        };
        if let Some(b) = self.data.baskets.get_mut(at) {
            b.time = b.time.min(line.time);
            match b.items.iter_mut().find(|(i, _)| *i == item) {
                Some((_, q)) => *q += line.quantity,
                None => b.items.push((item, line.quantity)),
            }
        }
    }

    pub fn finish(mut self) -> Interactions {
        for b in &mut self.data.baskets {
            b.items.sort_by_key(|(i, _)| *i);
        }
        self.data
    }
}

impl Interactions {
    /// Baskets grouped per customer (indexes into `baskets`), each list in
    /// chronological order (time, then `seq`).
    pub fn by_customer(&self) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.customers.len()];
        for (i, b) in self.baskets.iter().enumerate() {
            if let Some(list) = out.get_mut(b.customer as usize) {
                list.push(i);
            }
        }
        for list in &mut out {
            list.sort_by_key(|&i| self.baskets.get(i).map(|b| (b.time, b.seq)));
        }
        out
    }

    /// The latest basket time (the "now" of the data).
    pub fn latest(&self) -> i64 {
        self.baskets.iter().map(|b| b.time).max().unwrap_or(0)
    }
}
