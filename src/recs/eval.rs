//! Offline evaluation on the Online Retail CSV, exactly as the issue sets it:
//!
//! - drop guest lines, cancellations (`C…` invoices) and lines with
//!   non-positive quantity or price (397,884 lines remain);
//! - for every customer with at least two invoices, hold out the
//!   chronologically last invoice (ties: the larger invoice number) and
//!   train on everything else (all other customers' invoices included);
//! - truth = the distinct held-out products that exist in training;
//! - the whole catalogue is ranked (no sampled negatives);
//! - *new items*: the customer's training products are excluded from the
//!   list and from the truth, customers left without truth are dropped;
//!   *repeats allowed*: nothing is excluded.
//!
//! Metrics at 10: hit rate, NDCG (binary relevance), precision, catalogue
//! coverage (distinct items recommended / catalogue), fit time and the time
//! to recommend for every test customer.

use anyhow::Context;
use std::collections::HashSet;
use std::io::Read;
use std::time::Instant;

use super::cooc::Cooccurrence;
use super::data::{BasketKind, Interactions, InteractionsBuilder, LineIn};
use super::model::{profile_of, Mode, Model, Popularity, Profile, Source, TopN};
use super::sparse::SparseRows;
use super::RecsParams;

/// The list length every metric is taken at.
pub const AT: usize = 10;

/// What loading kept and dropped.
#[derive(Clone, Debug, Default)]
pub struct LoadSummary {
    pub lines: u64,
    pub kept: u64,
    pub guests: u64,
    pub cancellations: u64,
    pub non_positive: u64,
    pub unreadable: u64,
}

/// Reads the Online Retail CSV into purchase baskets (one per invoice).
pub fn load_online_retail(reader: impl Read) -> anyhow::Result<(Interactions, LoadSummary)> {
    let mut csv = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(reader);
    let headers = csv.headers().context("reading the header")?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().trim_start_matches('\u{feff}') == name)
            .with_context(|| format!("column {name} missing"))
    };
    let (inv, code, qty, date, price, cust, country) = (
        col("InvoiceNo")?,
        col("StockCode")?,
        col("Quantity")?,
        col("InvoiceDate")?,
        col("UnitPrice")?,
        col("CustomerID")?,
        col("Country")?,
    );
    let mut b = InteractionsBuilder::default();
    let mut s = LoadSummary::default();
    let mut record = csv::StringRecord::new();
    while csv.read_record(&mut record).context("reading a line")? {
        s.lines += 1;
        let f = |i: usize| record.get(i).unwrap_or("").trim();
        let customer = f(cust).strip_suffix(".0").unwrap_or(f(cust));
        if customer.is_empty() {
            s.guests += 1;
            continue;
        }
        let invoice = f(inv);
        if invoice.starts_with('C') || invoice.starts_with('c') {
            s.cancellations += 1;
            continue;
        }
        let (Ok(q), Ok(p), Some(t)) = (
            f(qty).parse::<f64>(),
            f(price).parse::<f64>(),
            crate::import::online_retail::parse_invoice_date(f(date)),
        ) else {
            s.unreadable += 1;
            continue;
        };
        if q <= 0.0 || p <= 0.0 {
            s.non_positive += 1;
            continue;
        }
        let seq = invoice
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse::<i64>()
            .unwrap_or(0);
        s.kept += 1;
        b.push(LineIn {
            basket_key: invoice,
            kind: BasketKind::Purchase,
            customer,
            country: f(country),
            item: f(code),
            quantity: q as f32,
            time: t,
            seq,
        });
    }
    Ok((b.finish(), s))
}

/// The split: training data plus one held-out basket per test customer.
pub struct Split {
    pub train: Interactions,
    /// Per customer, the held-out items (empty: not a test customer).
    pub held_out: Vec<Vec<u32>>,
    /// Items present in training.
    pub catalogue: Vec<bool>,
}

/// Holds out each customer's last purchase basket (time, then `seq`).
pub fn split_last_basket(data: &Interactions) -> Split {
    let per = data.by_customer();
    let mut held = vec![Vec::new(); data.customers.len()];
    let mut test_baskets = HashSet::new();
    for (c, list) in per.iter().enumerate() {
        let purchases: Vec<usize> = list
            .iter()
            .copied()
            .filter(|&b| {
                data.baskets
                    .get(b)
                    .is_some_and(|b| b.kind == BasketKind::Purchase)
            })
            .collect();
        if purchases.len() < 2 {
            continue;
        }
        if let (Some(&last), Some(h)) = (purchases.last(), held.get_mut(c)) {
            test_baskets.insert(last);
            *h = data
                .baskets
                .get(last)
                .map(|b| b.items.iter().map(|(i, _)| *i).collect())
                .unwrap_or_default();
        }
    }
    let mut train = data.clone();
    train.baskets = data
        .baskets
        .iter()
        .enumerate()
        .filter(|(i, _)| !test_baskets.contains(i))
        .map(|(_, b)| b.clone())
        .collect();
    let mut catalogue = vec![false; data.items.len()];
    for b in &train.baskets {
        for &(i, _) in &b.items {
            if let Some(c) = catalogue.get_mut(i as usize) {
                *c = true;
            }
        }
    }
    Split {
        train,
        held_out: held,
        catalogue,
    }
}

/// One row of the result table.
#[derive(Clone, Debug)]
pub struct Row {
    pub model: String,
    pub mode: Mode,
    pub customers: usize,
    pub hit_rate: f64,
    pub ndcg: f64,
    pub precision: f64,
    pub coverage: f64,
    pub fit_secs: f64,
    pub recommend_secs: f64,
}

/// Test customers of one mode, with their truth.
pub struct TestSet {
    pub mode: Mode,
    pub customers: Vec<(u32, Vec<u32>)>,
}

pub fn test_set(split: &Split, owned: &[HashSet<u32>], mode: Mode) -> TestSet {
    let mut customers = Vec::new();
    for (c, held) in split.held_out.iter().enumerate() {
        let truth: Vec<u32> = held
            .iter()
            .copied()
            .filter(|&i| split.catalogue.get(i as usize).copied().unwrap_or(false))
            .filter(|i| mode == Mode::Repeat || !owned.get(c).is_some_and(|o| o.contains(i)))
            .collect();
        if !truth.is_empty() {
            customers.push((c as u32, truth));
        }
    }
    TestSet { mode, customers }
}

/// Scores the lists `recommend` gives every test customer.
pub fn evaluate(
    name: &str,
    set: &TestSet,
    catalogue_size: usize,
    fit_secs: f64,
    mut recommend: impl FnMut(u32) -> Vec<u32>,
) -> Row {
    let started = Instant::now();
    let lists: Vec<Vec<u32>> = set.customers.iter().map(|(c, _)| recommend(*c)).collect();
    let recommend_secs = started.elapsed().as_secs_f64();
    let (mut hr, mut ndcg, mut prec) = (0f64, 0f64, 0f64);
    let mut covered = HashSet::new();
    for ((_, truth), list) in set.customers.iter().zip(&lists) {
        let truth: HashSet<u32> = truth.iter().copied().collect();
        let mut dcg = 0f64;
        let mut hits = 0usize;
        for (rank, i) in list.iter().take(AT).enumerate() {
            covered.insert(*i);
            if truth.contains(i) {
                hits += 1;
                dcg += 1.0 / ((rank + 2) as f64).log2();
            }
        }
        let idcg: f64 = (0..truth.len().min(AT))
            .map(|r| 1.0 / ((r + 2) as f64).log2())
            .sum();
        if hits > 0 {
            hr += 1.0;
        }
        ndcg += if idcg > 0.0 { dcg / idcg } else { 0.0 };
        prec += hits as f64 / AT as f64;
    }
    let n = set.customers.len().max(1) as f64;
    Row {
        model: name.to_owned(),
        mode: set.mode,
        customers: set.customers.len(),
        hit_rate: hr / n,
        ndcg: ndcg / n,
        precision: prec / n,
        coverage: covered.len() as f64 / catalogue_size.max(1) as f64,
        fit_secs,
        recommend_secs,
    }
}

/// Top `AT` from dense scores, skipping `skip`.
fn top_of(scores: &[f32], skip: impl Fn(u32) -> bool) -> Vec<u32> {
    let mut top = TopN::new(AT);
    for (i, &s) in scores.iter().enumerate() {
        let i = i as u32;
        if s > 0.0 && !skip(i) {
            top.offer(i, s, Source::Ease);
        }
    }
    top.finish().into_iter().map(|s| s.item).collect()
}

/// Fills `list` up to `AT` from `fallback`, skipping `skip` and repeats.
fn fill(mut list: Vec<u32>, fallback: &[(u32, u32)], skip: impl Fn(u32) -> bool) -> Vec<u32> {
    for &(i, _) in fallback {
        if list.len() >= AT {
            break;
        }
        if !skip(i) && !list.contains(&i) {
            list.push(i);
        }
    }
    list
}

/// Options of one evaluation run.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Parameters of the served model ("custodian" rows).
    pub params: RecsParams,
    /// Also run the public baselines (popularity, own most-bought,
    /// item-kNN, plain EASE).
    pub baselines: bool,
}

/// The whole evaluation: baselines and the served model, both modes.
pub fn run(data: &Interactions, opts: &EvalOptions) -> anyhow::Result<Vec<Row>> {
    let split = split_last_basket(data);
    let train = &split.train;
    let per = train.by_customer();
    let n = train.items.len();
    let cat_size = split.catalogue.iter().filter(|&&c| c).count();
    let owned: Vec<HashSet<u32>> = per
        .iter()
        .map(|list| {
            list.iter()
                .filter_map(|&b| train.baskets.get(b))
                .flat_map(|b| b.items.iter().map(|(i, _)| *i))
                .collect()
        })
        .collect();
    let sets = [
        test_set(&split, &owned, Mode::New),
        test_set(&split, &owned, Mode::Repeat),
    ];
    let is_owned = |c: u32, i: u32| owned.get(c as usize).is_some_and(|o| o.contains(&i));
    let mut rows = Vec::new();

    if opts.baselines {
        let t = Instant::now();
        let pop = Popularity::build(train, 0, 1);
        let fit = t.elapsed().as_secs_f64();
        for set in &sets {
            let mode = set.mode;
            rows.push(evaluate("popularity", set, cat_size, fit, |c| {
                fill(Vec::new(), &pop.global, |i| {
                    mode == Mode::New && is_owned(c, i)
                })
            }));
        }
        // Own most-bought (invoices holding the item, then quantity).
        let t = Instant::now();
        let own_rank: Vec<Vec<u32>> = per
            .iter()
            .map(|list| {
                let mut m: std::collections::HashMap<u32, (u32, f32)> = Default::default();
                for b in list.iter().filter_map(|&b| train.baskets.get(b)) {
                    for &(i, q) in &b.items {
                        let e = m.entry(i).or_insert((0, 0.0));
                        e.0 += 1;
                        e.1 += q;
                    }
                }
                let mut v: Vec<(u32, (u32, f32))> = m.into_iter().collect();
                v.sort_by(|a, b| {
                    b.1 .0
                        .cmp(&a.1 .0)
                        .then(b.1 .1.total_cmp(&a.1 .1))
                        .then(a.0.cmp(&b.0))
                });
                v.into_iter().map(|(i, _)| i).take(AT).collect()
            })
            .collect();
        let fit = t.elapsed().as_secs_f64() + fit;
        if let Some(set) = sets.get(1) {
            rows.push(evaluate(
                "own most-bought, then popularity",
                set,
                cat_size,
                fit,
                |c| {
                    fill(
                        own_rank.get(c as usize).cloned().unwrap_or_default(),
                        &pop.global,
                        |_| false,
                    )
                },
            ));
        }
        // Item-kNN, cosine on distinct-customer co-occurrence, 100 neighbours.
        let t = Instant::now();
        let item_sets: Vec<Vec<u32>> = owned
            .iter()
            .map(|o| {
                let mut v: Vec<u32> = o.iter().copied().collect();
                v.sort_unstable();
                v
            })
            .collect();
        let cooc = Cooccurrence::from_item_sets(&item_sets, n);
        let knn = cooc.neighbours(100, 1);
        let fit = t.elapsed().as_secs_f64();
        for set in &sets {
            let mode = set.mode;
            rows.push(evaluate(
                "item-kNN cosine, 100 neighbours",
                set,
                cat_size,
                fit,
                |c| {
                    let scores = dense_scores(
                        &knn,
                        item_sets.get(c as usize).map(Vec::as_slice).unwrap_or(&[]),
                        n,
                    );
                    let skip = |i| mode == Mode::New && is_owned(c, i);
                    fill(top_of(&scores, skip), &pop.global, skip)
                },
            ));
        }
        // Plain EASE (binary, every weight, lambda 300).
        let t = Instant::now();
        let inputs: Vec<Vec<(u32, f32)>> = item_sets
            .iter()
            .map(|s| s.iter().map(|&i| (i, 1.0)).collect())
            .collect();
        let b = super::ease::fit(&inputs, n, 300.0, &cooc, 0)?;
        let fit = t.elapsed().as_secs_f64();
        for set in &sets {
            let mode = set.mode;
            rows.push(evaluate(
                "EASE, lambda 300 (all weights)",
                set,
                cat_size,
                fit,
                |c| {
                    let scores = dense_scores(
                        &b,
                        item_sets.get(c as usize).map(Vec::as_slice).unwrap_or(&[]),
                        n,
                    );
                    let skip = |i| mode == Mode::New && is_owned(c, i);
                    fill(top_of(&scores, skip), &pop.global, skip)
                },
            ));
        }
    }

    // The served model, exactly as the server builds and answers.
    let t = Instant::now();
    let profiles: Vec<Profile> = per
        .iter()
        .map(|list| profile_of(train, list, &opts.params))
        .collect();
    let model = Model::fit(train, &profiles, &opts.params, "eval".to_owned(), 0)?;
    let fit = t.elapsed().as_secs_f64();
    let name = format!("custodian (EASE + k={} + recency)", opts.params.k);
    for set in &sets {
        let mode = set.mode;
        rows.push(evaluate(&name, set, cat_size, fit, |c| {
            profiles
                .get(c as usize)
                .map(|p| {
                    model
                        .for_profile(p, AT, mode)
                        .into_iter()
                        .map(|s| s.item)
                        .collect()
                })
                .unwrap_or_default()
        }));
    }
    Ok(rows)
}

fn dense_scores(rows: &SparseRows, items: &[u32], n: usize) -> Vec<f32> {
    let mut s = vec![0f32; n];
    for &i in items {
        rows.axpy(i, 1.0, &mut s);
    }
    s
}

/// The table, as the README shows it.
pub fn render(rows: &[Row]) -> String {
    let mut out = String::from(
        "| model | mode | customers | HR@10 | NDCG@10 | P@10 | coverage | fit s | recommend s |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {:.4} | {:.4} | {:.4} | {:.3} | {:.2} | {:.2} |\n",
            r.model,
            match r.mode {
                Mode::New => "new items",
                Mode::Repeat => "repeats",
            },
            r.customers,
            r.hit_rate,
            r.ndcg,
            r.precision,
            r.coverage,
            r.fit_secs,
            r.recommend_secs
        ));
    }
    out
}
