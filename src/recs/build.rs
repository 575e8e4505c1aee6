//! Building the models from the store: one streamed pass over order lines
//! and one over browsing events, then the fit.
//!
//! Only customers who may enter the recommendation aggregates are read:
//! not erased and, when the recommendation purpose rests on consent,
//! currently consenting
//! to it (the consent stage's [`ConsentPredicate`], inside the same query). Returns
//! and non-positive quantities never count; order lines are purchases
//! (weight 1), views, clicks and add-to-cart events are session items
//! (weight `view_weight`).

use anyhow::Context;
use futures::TryStreamExt;
use sqlx::Row;
use std::collections::HashMap;

use super::data::{BasketKind, InteractionsBuilder, LineIn};
use super::model::{profile_of, Model, Profile};
use super::RecsParams;
use crate::db::Db;
use crate::pipeline::consent::ConsentPredicate;

/// Progress of a build, for the CLI's progress bar.
pub trait BuildProgress: Send {
    fn rows(&mut self, _read: u64) {}
    fn stage(&mut self, _name: &'static str) {}
}

/// Reports nothing.
pub struct Quiet;
impl BuildProgress for Quiet {}

/// A customer who entered the build.
#[derive(Clone, Debug)]
pub struct BuiltCustomer {
    pub id: i64,
    pub external_id: String,
    pub profile: Profile,
}

/// The result of a build: the models plus every customer's profile.
pub struct Built {
    pub model: Model,
    pub customers: Vec<BuiltCustomer>,
    pub rows_read: u64,
}

/// The customer filter every build query shares: the consent stage's
/// predicate (binds `$1`; it also leaves out erased customers).
fn eligible(consent: &ConsentPredicate) -> String {
    consent.sql("c.id", 1)
}

/// Reads the eligible data and fits every model.
pub async fn build(
    db: &Db,
    consent: &ConsentPredicate,
    params: &RecsParams,
    version: String,
    now: i64,
    progress: &mut dyn BuildProgress,
) -> anyhow::Result<Built> {
    let filter = eligible(consent);
    let purpose = consent.bind_value();
    let mut b = InteractionsBuilder::default();
    let mut rows_read = 0u64;
    let mut ids: HashMap<String, (i64, String)> = HashMap::new();
    let mut products: HashMap<String, i64> = HashMap::new();
    progress.stage("order lines");
    let sql = format!(
        "SELECT o.id AS order_id, c.id AS customer_id, c.external_id, o.placed_at, \
         COALESCE(o.country, c.country, '') AS country, p.id AS product_id, p.sku, l.quantity \
         FROM orders o JOIN customers c ON c.id = o.customer_id \
         JOIN order_lines l ON l.order_id = o.id JOIN products p ON p.id = l.product_id \
         WHERE o.kind = 'order' AND l.quantity > 0 AND {filter} ORDER BY o.id"
    );
    {
        let mut stream = sqlx::query(&sql).bind(purpose).fetch(&db.pool);
        while let Some(row) = stream.try_next().await.context("reading order lines")? {
            let order_id: i64 = row.try_get("order_id")?;
            let customer_id: i64 = row.try_get("customer_id")?;
            let key = customer_id.to_string();
            if !ids.contains_key(&key) {
                ids.insert(key.clone(), (customer_id, row.try_get("external_id")?));
            }
            let country: String = row.try_get("country")?;
            let sku: String = row.try_get("sku")?;
            if !products.contains_key(&sku) {
                products.insert(sku.clone(), row.try_get("product_id")?);
            }
            let qty: i64 = row.try_get("quantity")?;
            b.push(LineIn {
                basket_key: &order_id.to_string(),
                kind: BasketKind::Purchase,
                customer: &key,
                country: &country,
                item: &sku,
                quantity: qty as f32,
                time: row.try_get("placed_at")?,
                seq: order_id,
            });
            rows_read += 1;
            if rows_read % 10_000 == 0 {
                progress.rows(rows_read);
            }
        }
    }
    progress.stage("browsing events");
    let sql = format!(
        "SELECT c.id AS customer_id, c.external_id, e.occurred_at, COALESCE(c.country, '') AS country, \
         p.id AS product_id, p.sku \
         FROM events e JOIN customers c ON c.id = e.customer_id JOIN products p ON p.id = e.product_id \
         WHERE e.kind IN ('view', 'click', 'add_to_cart') AND {filter} ORDER BY e.id"
    );
    {
        let mut stream = sqlx::query(&sql).bind(purpose).fetch(&db.pool);
        while let Some(row) = stream.try_next().await.context("reading events")? {
            let customer_id: i64 = row.try_get("customer_id")?;
            let key = customer_id.to_string();
            if !ids.contains_key(&key) {
                ids.insert(key.clone(), (customer_id, row.try_get("external_id")?));
            }
            let at: i64 = row.try_get("occurred_at")?;
            let day = at.div_euclid(86_400_000_000);
            let country: String = row.try_get("country")?;
            let sku: String = row.try_get("sku")?;
            if !products.contains_key(&sku) {
                products.insert(sku.clone(), row.try_get("product_id")?);
            }
            b.push(LineIn {
                basket_key: &format!("{customer_id}:{day}"),
                kind: BasketKind::Session,
                customer: &key,
                country: &country,
                item: &sku,
                quantity: 1.0,
                time: at,
                seq: 0,
            });
            rows_read += 1;
            if rows_read % 10_000 == 0 {
                progress.rows(rows_read);
            }
        }
    }
    progress.rows(rows_read);
    progress.stage("fit");
    // The fit is seconds of CPU: off the async workers.
    let params = params.clone();
    let (data, profiles, model) = tokio::task::spawn_blocking(move || {
        let data = cap_items(b.finish(), params.max_items);
        let per = data.by_customer();
        let profiles: Vec<Profile> = per.iter().map(|l| profile_of(&data, l, &params)).collect();
        let mut model = Model::fit(&data, &profiles, &params, version, now)?;
        model.product_ids = data
            .items
            .keys()
            .iter()
            .map(|sku| products.get(sku).copied().unwrap_or(0))
            .collect();
        anyhow::Ok((data, profiles, model))
    })
    .await
    .context("model fit task")??;
    let customers = data
        .customers
        .keys()
        .iter()
        .zip(profiles)
        .filter_map(|(key, profile)| {
            ids.get(key).map(|(id, external_id)| BuiltCustomer {
                id: *id,
                external_id: external_id.clone(),
                profile,
            })
        })
        .collect();
    Ok(Built {
        model,
        customers,
        rows_read,
    })
}

/// Keeps the `max` items most customers touched (the dense solve is
/// quadratic in memory); the others leave every basket.
pub fn cap_items(data: super::data::Interactions, max: usize) -> super::data::Interactions {
    if data.items.len() <= max {
        return data;
    }
    let mut reach = vec![0u32; data.items.len()];
    for b in &data.baskets {
        for &(i, _) in &b.items {
            if let Some(r) = reach.get_mut(i as usize) {
                *r += 1;
            }
        }
    }
    let mut order: Vec<u32> = (0..data.items.len() as u32).collect();
    order.sort_by(|a, b| {
        reach
            .get(*b as usize)
            .cmp(&reach.get(*a as usize))
            .then(a.cmp(b))
    });
    let mut vocab = super::data::Vocab::default();
    let mut remap = vec![u32::MAX; data.items.len()];
    for &old in order.iter().take(max) {
        if let (Some(key), Some(slot)) = (data.items.key(old), remap.get_mut(old as usize)) {
            *slot = vocab.intern(key);
        }
    }
    let baskets = data
        .baskets
        .into_iter()
        .filter_map(|mut b| {
            b.items = b
                .items
                .into_iter()
                .filter_map(|(i, q)| {
                    remap
                        .get(i as usize)
                        .filter(|&&n| n != u32::MAX)
                        .map(|&n| (n, q))
                })
                .collect();
            b.items.sort_by_key(|(i, _)| *i);
            (!b.items.is_empty()).then_some(b)
        })
        .collect();
    super::data::Interactions {
        items: vocab,
        customers: data.customers,
        countries: data.countries,
        baskets,
    }
}
