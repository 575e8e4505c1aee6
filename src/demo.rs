//! The demo shop: a deterministic synthetic store (customers with sealed
//! profiles, products, a year of orders and returns, browsing events and a
//! consent history) for `custodian demo` / `serve --demo`, tests and
//! benchmarks.
//!
//! Everything is drawn from one ChaCha RNG seeded by `seed`, and the shop's
//! history ends at a fixed instant ([`DEMO_NOW`]), so the same seed always
//! yields the same shop. Every row has a stable external id (`demo-…`) and
//! is written with `ON CONFLICT DO NOTHING`: loading twice adds nothing.
//! The people are fake: names drawn at random from common name lists,
//! reserved `example.*` e-mail domains (see [`crate::import::synth`]).

use anyhow::Context;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::time::Instant;

use crate::db::consents::{self, NewConsentEvent};
use crate::db::customers::{NewCustomer, ProfileSealer};
use crate::db::events::{self, NewEvent};
use crate::db::orders::{self, NewOrder, NewOrderLine, OrderKind};
use crate::db::products::{self, NewProduct};
use crate::db::Db;
use crate::import::store::{customer_ids, insert_customers};
use crate::import::synth;

/// The end of the demo shop's history: 2026-01-01T00:00:00Z, in microseconds.
pub const DEMO_NOW: i64 = 1_767_225_600 * 1_000_000;
/// `orders.source` of demo rows.
pub const SOURCE: &str = "demo";
/// The default seed of `custodian demo`.
pub const DEFAULT_SEED: u64 = 42;

const DAY: i64 = 86_400 * 1_000_000;

/// The consent purposes the demo history covers, with the share of
/// customers who granted each and the share of those who later withdrew.
const PURPOSES: &[(&str, f64, f64)] = &[
    ("marketing_analytics", 0.70, 0.10),
    ("personalization", 0.60, 0.15),
    ("email_marketing", 0.45, 0.20),
    ("third_party_sharing", 0.10, 0.30),
];

/// Countries with their share of customers.
const COUNTRIES: &[(&str, u32)] = &[
    ("United Kingdom", 40),
    ("Germany", 15),
    ("France", 15),
    ("Spain", 10),
    ("Netherlands", 10),
    ("Italy", 10),
];

/// Categories: (id, product nouns, price range in cents).
const CATEGORIES: &[(&str, &[&str], (i64, i64))] = &[
    (
        "home_decor",
        &["Cushion", "Vase", "Photo Frame", "Wall Clock", "Mirror"],
        (900, 6_000),
    ),
    (
        "kitchen",
        &["Mug", "Teapot", "Cake Tin", "Apron", "Serving Bowl"],
        (400, 3_500),
    ),
    (
        "candles_lighting",
        &["Candle", "Lantern", "T-Light Holder", "Fairy Lights"],
        (300, 4_500),
    ),
    (
        "bags",
        &["Tote Bag", "Shopper", "Lunch Bag", "Purse"],
        (500, 4_000),
    ),
    (
        "stationery",
        &["Notebook", "Greeting Card", "Gift Wrap", "Pencil Set"],
        (150, 1_500),
    ),
    (
        "toys_games",
        &["Jigsaw", "Wooden Train", "Rag Doll", "Card Game"],
        (600, 5_000),
    ),
    (
        "garden",
        &["Plant Pot", "Bird Feeder", "Watering Can", "Doormat"],
        (700, 6_500),
    ),
    (
        "christmas",
        &["Bauble", "Advent Calendar", "Wreath", "Stocking"],
        (300, 4_000),
    ),
    (
        "party",
        &["Bunting", "Napkins", "Cake Cases", "Balloons"],
        (200, 1_200),
    ),
    (
        "jewellery_accessories",
        &["Necklace", "Bracelet", "Scarf", "Umbrella"],
        (800, 7_000),
    ),
];

const ADJECTIVES: &[&str] = &[
    "Vintage",
    "Rustic",
    "Pastel",
    "Retro",
    "Scandi",
    "Floral",
    "Polka Dot",
    "Striped",
    "Botanical",
    "Enamel",
    "Linen",
    "Ceramic",
    "Glass",
    "Woodland",
    "Nautical",
    "Gingham",
];

/// How big a shop to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct DemoSize {
    pub customers: usize,
    pub products: usize,
    pub orders: usize,
    pub events: usize,
}

impl DemoSize {
    /// The shop of `custodian demo`.
    pub const DEFAULT: Self = Self {
        customers: 3_000,
        products: 200,
        orders: 10_000,
        events: 30_000,
    };
    /// A small shop for tests.
    pub const SMALL: Self = Self {
        customers: 120,
        products: 30,
        orders: 400,
        events: 1_000,
    };
}

impl Default for DemoSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Rows created by one [`load_demo`] (all zero when the shop was loaded
/// before).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DemoSummary {
    pub customers: u64,
    pub products: u64,
    pub orders: u64,
    pub returns: u64,
    pub order_lines: u64,
    pub events: u64,
    pub consent_events: u64,
    pub elapsed_ms: u64,
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "demo shop: {} customers, {} products, {} orders, {} returns, {} order lines, \
             {} events, {} consent events created in {:.1} s",
            self.customers,
            self.products,
            self.orders,
            self.returns,
            self.order_lines,
            self.events,
            self.consent_events,
            self.elapsed_ms as f64 / 1000.0
        )
    }
}

struct DemoOrder {
    external_id: String,
    customer: usize,
    placed_at: i64,
    /// (product index, quantity)
    lines: Vec<(usize, i64)>,
    /// For returns: the returned order's index.
    return_of: Option<usize>,
}

/// Loads the demo shop of `seed` and `size` in one transaction; profiles are
/// sealed by `sealer`. Idempotent.
pub async fn load_demo(
    db: &Db,
    sealer: &dyn ProfileSealer,
    seed: u64,
    size: DemoSize,
) -> anyhow::Result<DemoSummary> {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let now = DEMO_NOW;

    // Generate the whole shop first, so the RNG stream (and so the shop)
    // never depends on what the database already holds.
    let customers = gen_customers(&mut rng, size.customers);
    let products = gen_products(&mut rng, size.products);
    let (orders_gen, returns_gen) = gen_orders(&mut rng, size, &customers);
    let events_gen = gen_events(&mut rng, size);
    let consents_gen = gen_consents(&mut rng, &customers);

    let mut summary = DemoSummary::default();
    let mut tx = db
        .pool
        .begin()
        .await
        .context("cannot start a transaction")?;
    let created = insert_customers(&mut tx, Some(sealer), &customers, now).await?;
    summary.customers = created.created;
    let external: Vec<&str> = customers.iter().map(|c| c.external_id.as_str()).collect();
    let cust_ids = customer_ids(&mut tx, &external).await?;
    let cust_id = |i: usize| {
        customers
            .get(i)
            .and_then(|c| cust_ids.get(&c.external_id).copied())
            .context("demo customer missing")
    };

    summary.products = products::insert_many(&mut tx, &products, now).await?;
    let skus: Vec<&str> = products.iter().map(|p| p.sku.as_str()).collect();
    let prod_ids = products::ids_by_sku(&mut tx, &skus).await?;
    let product = |i: usize| {
        products
            .get(i)
            .and_then(|p| prod_ids.get(&p.sku).map(|id| (*id, p.price_cents)))
            .context("demo product missing")
    };

    // Orders first, then returns (which point at them).
    let mut order_index: HashMap<String, i64> = HashMap::new();
    for (kind, list) in [
        (OrderKind::Order, &orders_gen),
        (OrderKind::Return, &returns_gen),
    ] {
        let mut rows = Vec::with_capacity(list.len());
        for o in list {
            let mut total = 0i64;
            for (p, q) in &o.lines {
                total += q * product(*p)?.1;
            }
            let return_of = match o.return_of.and_then(|i| orders_gen.get(i)) {
                Some(orig) => Some(
                    order_index
                        .get(&orig.external_id)
                        .copied()
                        .context("returned demo order missing")?,
                ),
                None => None,
            };
            rows.push(NewOrder {
                external_id: o.external_id.clone(),
                customer_id: Some(cust_id(o.customer)?),
                kind,
                return_of,
                placed_at: o.placed_at,
                country: customers.get(o.customer).and_then(|c| c.country.clone()),
                total_cents: total,
                source: SOURCE.into(),
                currency: Some("EUR".into()),
            });
        }
        let created = orders::insert_many(&mut tx, &rows, now).await?;
        match kind {
            OrderKind::Order => summary.orders = created.len() as u64,
            OrderKind::Return => summary.returns = created.len() as u64,
        }
        let mut lines = Vec::new();
        for o in list {
            let Some(&order_id) = created.get(&o.external_id) else {
                continue;
            };
            for (n, (p, q)) in o.lines.iter().enumerate() {
                let (product_id, price) = product(*p)?;
                lines.push(NewOrderLine {
                    order_id,
                    line_no: n as i64 + 1,
                    product_id,
                    quantity: *q,
                    unit_price_cents: price,
                });
            }
        }
        summary.order_lines += orders::insert_lines(&mut tx, &lines).await?;
        if kind == OrderKind::Order {
            let ids: Vec<&str> = list.iter().map(|o| o.external_id.as_str()).collect();
            order_index = orders::ids_by_external(&mut tx, &ids).await?;
        }
    }

    let mut event_rows = Vec::with_capacity(events_gen.len());
    for (uid, customer, kind, product_ix, channel, at) in events_gen {
        event_rows.push(NewEvent {
            event_uid: uid,
            customer_id: match customer {
                Some(c) => Some(cust_id(c)?),
                None => None,
            },
            kind,
            product_id: match product_ix {
                Some(p) => Some(product(p)?.0),
                None => None,
            },
            channel,
            occurred_at: at,
            properties: None,
        });
    }
    summary.events = events::insert_many(&mut tx, &event_rows, now).await?;

    let mut consent_rows = Vec::with_capacity(consents_gen.len());
    for (customer, mut event) in consents_gen {
        event.customer_id = cust_id(customer)?;
        consent_rows.push(event);
    }
    summary.consent_events = consents::insert_many(&mut tx, &consent_rows, now).await?;
    tx.commit().await.context("cannot commit the demo shop")?;
    summary.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        seed,
        customers = summary.customers,
        orders = summary.orders,
        events = summary.events,
        elapsed_ms = summary.elapsed_ms,
        "demo shop loaded"
    );
    Ok(summary)
}

fn weighted<'a>(rng: &mut ChaCha8Rng, items: &'a [(&'a str, u32)]) -> &'a str {
    items
        .choose_weighted(rng, |(_, w)| *w)
        .map_or("", |(v, _)| *v)
}

/// An index in `0..n` skewed towards small values (a few popular customers
/// and products, a long tail).
fn skewed(rng: &mut ChaCha8Rng, n: usize) -> usize {
    let u: f64 = rng.gen();
    ((u * u * n as f64) as usize).min(n.saturating_sub(1))
}

fn gen_customers(rng: &mut ChaCha8Rng, n: usize) -> Vec<NewCustomer> {
    (0..n)
        .map(|i| {
            let country = weighted(rng, COUNTRIES);
            let person = synth::person(rng, country);
            NewCustomer {
                external_id: format!("demo-c{i:05}"),
                profile: person.profile.clone(),
                city: Some(person.city),
                country: Some(country.to_owned()),
                signup_at: DEMO_NOW - rng.gen_range(DAY..730 * DAY),
            }
        })
        .collect()
}

fn gen_products(rng: &mut ChaCha8Rng, n: usize) -> Vec<NewProduct> {
    (0..n)
        .map(|i| {
            let (category, nouns, (lo, hi)) = CATEGORIES
                .get(i % CATEGORIES.len())
                .copied()
                .unwrap_or(("other", &[], (100, 1_000)));
            let adjective = ADJECTIVES.choose(rng).copied().unwrap_or("Classic");
            let noun = nouns.choose(rng).copied().unwrap_or("Item");
            // Shop prices end in 49 or 99 cents.
            let price =
                rng.gen_range(lo / 100..hi / 100) * 100 + if rng.gen_bool(0.5) { 49 } else { 99 };
            NewProduct {
                sku: format!("DEMO-{i:04}"),
                name: format!("{adjective} {noun}"),
                category: category.to_owned(),
                price_cents: price,
            }
        })
        .collect()
}

fn gen_orders(
    rng: &mut ChaCha8Rng,
    size: DemoSize,
    customers: &[NewCustomer],
) -> (Vec<DemoOrder>, Vec<DemoOrder>) {
    let mut orders = Vec::with_capacity(size.orders);
    let mut returns = Vec::new();
    if customers.is_empty() || size.products == 0 {
        return (orders, returns);
    }
    for i in 0..size.orders {
        let customer = skewed(rng, customers.len());
        let signup = customers.get(customer).map_or(DEMO_NOW, |c| c.signup_at);
        let from = signup.max(DEMO_NOW - 365 * DAY);
        let placed_at = rng.gen_range(from..DEMO_NOW);
        let n_lines = rng.gen_range(1..=5usize).min(size.products);
        let mut lines: Vec<(usize, i64)> = Vec::with_capacity(n_lines);
        while lines.len() < n_lines {
            let p = skewed(rng, size.products);
            if lines.iter().all(|(q, _)| *q != p) {
                let quantity = if rng.gen_bool(0.8) {
                    1
                } else {
                    rng.gen_range(2..=4)
                };
                lines.push((p, quantity));
            }
        }
        // About 3% of orders see one line returned within three weeks.
        if rng.gen_bool(0.03) {
            if let Some(&(p, q)) = lines.choose(rng) {
                returns.push(DemoOrder {
                    external_id: format!("demo-r{i:06}"),
                    customer,
                    placed_at: (placed_at + rng.gen_range(DAY..21 * DAY)).min(DEMO_NOW),
                    lines: vec![(p, -q)],
                    return_of: Some(i),
                });
            }
        }
        orders.push(DemoOrder {
            external_id: format!("demo-o{i:06}"),
            customer,
            placed_at,
            lines,
            return_of: None,
        });
    }
    (orders, returns)
}

type GenEvent = (
    String,
    Option<usize>,
    &'static str,
    Option<usize>,
    &'static str,
    i64,
);

fn gen_events(rng: &mut ChaCha8Rng, size: DemoSize) -> Vec<GenEvent> {
    const KINDS: &[(&str, u32)] = &[
        ("view", 55),
        ("search", 15),
        ("click", 15),
        ("add_to_cart", 10),
        ("purchase", 5),
    ];
    const CHANNELS: &[(&str, u32)] = &[("web", 60), ("app", 30), ("email", 10)];
    if size.products == 0 || size.customers == 0 {
        return Vec::new();
    }
    (0..size.events)
        .map(|i| {
            // One event in ten comes from a visitor who is not signed in.
            let customer = (!rng.gen_bool(0.1)).then(|| skewed(rng, size.customers));
            let kind = static_str(weighted(rng, KINDS), KINDS);
            let product = (kind != "search").then(|| skewed(rng, size.products));
            let channel = static_str(weighted(rng, CHANNELS), CHANNELS);
            let at = DEMO_NOW - rng.gen_range(0..365 * DAY);
            (
                format!("demo-e{i:07}"),
                customer,
                kind,
                product,
                channel,
                at,
            )
        })
        .collect()
}

/// The `'static` spelling of a value drawn from a static table.
fn static_str(value: &str, table: &'static [(&'static str, u32)]) -> &'static str {
    table
        .iter()
        .find(|(v, _)| *v == value)
        .map_or("view", |(v, _)| v)
}

fn gen_consents(rng: &mut ChaCha8Rng, customers: &[NewCustomer]) -> Vec<(usize, NewConsentEvent)> {
    const SOURCES: &[(&str, u32)] = &[("web_form", 60), ("crm", 25), ("import", 15)];
    const NOTICES: &[&str] = &[
        "privacy notice v2.0",
        "privacy notice v2.1",
        "privacy notice v3.0",
    ];
    let mut out = Vec::new();
    for (ci, c) in customers.iter().enumerate() {
        for (pi, (purpose, grant_share, withdraw_share)) in PURPOSES.iter().enumerate() {
            let source = weighted(rng, SOURCES).to_owned();
            let notice = NOTICES
                .choose(rng)
                .copied()
                .unwrap_or("privacy notice v3.0");
            let event = |n: usize, granted: bool, at: i64, source: &str| {
                let evidence = format!(
                    "{notice}; purpose {purpose}; {}",
                    if granted {
                        "opt-in checkbox ticked"
                    } else {
                        "opt-out recorded"
                    }
                );
                let hash = ring::digest::digest(&ring::digest::SHA256, evidence.as_bytes());
                (
                    ci,
                    NewConsentEvent {
                        receipt_id: format!("demo-k{ci:05}-{pi}-{n}"),
                        customer_id: 0,
                        purpose: (*purpose).to_owned(),
                        granted,
                        occurred_at: at,
                        source: source.to_owned(),
                        evidence: Some(evidence),
                        evidence_hash: Some(hash.as_ref().to_vec()),
                        actor: "demo-loader".to_owned(),
                    },
                )
            };
            if rng.gen_bool(*grant_share) {
                out.push(event(0, true, c.signup_at, &source));
                if rng.gen_bool(*withdraw_share) {
                    let at = rng.gen_range(c.signup_at..DEMO_NOW);
                    out.push(event(1, false, at, "web_form"));
                }
            } else if rng.gen_bool(0.2) {
                // An explicit refusal at signup.
                out.push(event(0, false, c.signup_at, &source));
            }
        }
    }
    out
}
