//! Bulk imports of public retail data sets into the store.
//!
//! An import streams its input (memory stays flat whatever the file size),
//! writes in batches of whole invoices, one transaction per batch, and
//! counts every row it skips or transforms by reason: the
//! [`ImportSummary`] is part of the product, not a debug aid. Imports are
//! idempotent: every row is keyed by a stable external id and written with
//! `ON CONFLICT DO NOTHING`, so a second run (or a re-run after a failure,
//! which leaves only whole committed batches) adds exactly what is missing.
//!
//! - [`online_retail`]: the UCI "Online Retail" CSV;
//! - [`cdnow`]: the CDNOW purchase history CSV;
//! - [`standardize`]: e-mails, phones (E.164), countries (ISO 3166),
//!   timestamps (UTC) and amounts (exact cents) on the way in;
//! - [`synth`]: deterministic synthetic profiles (also used by the demo shop);
//! - [`store`]: bulk customer writes shared with the demo shop.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

pub mod cdnow;
pub mod event_schema;
pub mod events;
pub mod input;
pub mod mapped;
pub mod mapping;
pub mod online_retail;
pub mod quality;
pub mod quarantine;
pub mod standardize;
pub mod store;
pub mod synth;

pub use cdnow::import_cdnow;
pub use online_retail::import_online_retail;

/// An identifier as the store keeps it: trimmed, 1-64 characters of
/// `A-Za-z0-9._-` (the same rule as the API's ids).
pub fn validate_key(v: &str) -> Option<&str> {
    let v = v.trim();
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(v)
}

/// What to do with lines that carry no customer id (guest checkouts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum GuestPolicy {
    /// Import them as anonymous orders (`customer_id` NULL): they are a
    /// quarter of the revenue and matter for product analytics, and carry
    /// no personal data.
    #[default]
    Keep,
    /// Skip them (counted as `guest_skipped`).
    Skip,
}

/// Knobs of an import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    pub guests: GuestPolicy,
    /// Fill customer profiles with deterministic synthetic values, sealed
    /// through the [`crate::db::customers::ProfileSealer`].
    pub synthesize_profiles: bool,
    /// Invoices per transaction.
    pub batch_invoices: usize,
    /// `created_at` of the rows written (microseconds since the epoch).
    pub now: i64,
}

impl Default for ImportOptions {
    fn default() -> Self {
        use crate::clock::Clock;
        Self {
            guests: GuestPolicy::Keep,
            synthesize_profiles: false,
            batch_invoices: 500,
            now: crate::clock::SystemClock.now_micros(),
        }
    }
}

/// Receives progress after each committed batch.
pub trait Progress: Send + Sync {
    /// `bytes` of input consumed and data `rows` read so far.
    fn update(&self, bytes: u64, rows: u64);
    fn finish(&self) {}
}

/// Progress that goes nowhere (library callers, tests).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _bytes: u64, _rows: u64) {}
}

/// A bytes-based bar; the message shows rows and rows/s.
impl Progress for indicatif::ProgressBar {
    fn update(&self, bytes: u64, rows: u64) {
        self.set_position(bytes);
        let secs = self.elapsed().as_secs_f64().max(0.001);
        self.set_message(format!("{rows} rows, {:.0} rows/s", rows as f64 / secs));
    }

    fn finish(&self) {
        self.finish_and_clear();
    }
}

/// Why a source row was not imported. Each skipped row is counted under
/// exactly one reason: the first that applies, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Not valid CSV (for example invalid UTF-8).
    UnreadableRow,
    /// Not exactly the 8 expected columns.
    WrongColumnCount,
    /// Empty invoice number or stock code.
    MissingField,
    /// Quantity, price or customer id is not a number.
    BadNumber,
    /// Invoice date not `YYYY-MM-DD HH:MM[:SS]` or `M/D/YYYY H:MM`.
    BadDate,
    /// The invoice reappeared after other invoices within one batch (the file
    /// is expected to be grouped by invoice).
    InvoiceNotContiguous,
    /// A line of an invoice names a different customer than its first line.
    InconsistentInvoice,
    /// Guest line with `--guests skip`.
    GuestSkipped,
    /// Unit price zero or negative (adjustments, bad-debt write-offs).
    NonPositivePrice,
    /// Zero or negative quantity on a regular invoice.
    NonPositiveQuantity,
    /// Zero or positive quantity on a cancellation.
    NonNegativeReturnQuantity,
    /// A negative amount on a purchase (CDNOW).
    NegativeAmount,
}

impl SkipReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::UnreadableRow => "unreadable row",
            Self::WrongColumnCount => "wrong column count",
            Self::MissingField => "missing invoice or stock code",
            Self::BadNumber => "bad number",
            Self::BadDate => "bad date",
            Self::InvoiceNotContiguous => "invoice not contiguous",
            Self::InconsistentInvoice => "customer differs within invoice",
            Self::GuestSkipped => "guest line (--guests skip)",
            Self::NonPositivePrice => "non-positive price",
            Self::NonPositiveQuantity => "non-positive quantity",
            Self::NonNegativeReturnQuantity => "non-negative quantity on cancellation",
            Self::NegativeAmount => "negative amount",
        }
    }
}

/// How a source row was changed on the way in (the row is still imported).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransformReason {
    /// Guest line imported into an anonymous order.
    GuestKept,
    /// Cancellation line imported into a `return` order, quantity negative.
    CancellationAsReturn,
    /// Empty description: the stock code is used as the product name.
    MissingDescription,
    /// A positive price under half a cent, rounded up to one cent.
    SubCentPriceRoundedUp,
    /// A purchase of amount zero (CDNOW: free or promotional), imported.
    ZeroAmount,
}

impl TransformReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::GuestKept => "guest line kept (anonymous order)",
            Self::CancellationAsReturn => "cancellation line as return",
            Self::MissingDescription => "missing description (name = stock code)",
            Self::SubCentPriceRoundedUp => "sub-cent price rounded up to 1 cent",
            Self::ZeroAmount => "zero amount (imported as a free purchase)",
        }
    }
}

/// The outcome of an import. Invariant: `rows_read = lines_imported +
/// lines_already_present + sum(skipped)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Data rows read (header excluded).
    pub rows_read: u64,
    /// Invoices seen in the input (distinct consecutive invoice numbers).
    pub invoices_read: u64,
    /// Invoices none of whose lines could be imported.
    pub invoices_without_valid_lines: u64,
    /// Orders (`kind = 'order'`) created.
    pub orders_created: u64,
    /// Returns (`kind = 'return'`, from cancellations) created.
    pub returns_created: u64,
    /// Orders and returns that already existed (an earlier run); their
    /// lines are left as they are.
    pub orders_already_present: u64,
    /// Created returns linked to their original order.
    pub returns_linked: u64,
    /// Created returns whose original order could not be found.
    pub returns_unlinked: u64,
    /// Created orders and returns without a customer.
    pub guest_orders_created: u64,
    pub order_lines_created: u64,
    /// Valid lines belonging to orders that already existed.
    pub lines_already_present: u64,
    pub customers_created: u64,
    /// Created customers whose synthetic profile was sealed and stored.
    pub profiles_sealed: u64,
    pub products_created: u64,
    pub skipped: BTreeMap<SkipReason, u64>,
    pub transformed: BTreeMap<TransformReason, u64>,
    /// Wall time of the import.
    pub elapsed_ms: u64,
}

impl ImportSummary {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped.get(&reason).copied().unwrap_or(0)
    }

    pub fn transformed(&self, reason: TransformReason) -> u64 {
        self.transformed.get(&reason).copied().unwrap_or(0)
    }

    pub fn rows_per_sec(&self) -> f64 {
        self.rows_read as f64 / (self.elapsed_ms.max(1) as f64 / 1000.0)
    }

    pub(crate) fn skip(&mut self, reason: SkipReason) {
        *self.skipped.entry(reason).or_insert(0) += 1;
    }

    pub(crate) fn transform(&mut self, reason: TransformReason) {
        *self.transformed.entry(reason).or_insert(0) += 1;
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row =
            |f: &mut fmt::Formatter<'_>, label: &str, n: u64| writeln!(f, "  {label:<42} {n:>10}");
        writeln!(
            f,
            "import finished: {} rows in {:.1} s ({:.0} rows/s)",
            self.rows_read,
            self.elapsed_ms as f64 / 1000.0,
            self.rows_per_sec()
        )?;
        writeln!(f, "rows")?;
        row(f, "read", self.rows_read)?;
        row(f, "imported as order lines", self.order_lines_created)?;
        row(
            f,
            "already present (earlier run)",
            self.lines_already_present,
        )?;
        row(f, "skipped", self.skipped_total())?;
        writeln!(f, "invoices")?;
        row(f, "read", self.invoices_read)?;
        row(f, "orders created", self.orders_created)?;
        row(f, "returns created", self.returns_created)?;
        row(f, "  linked to their order", self.returns_linked)?;
        row(f, "  unlinked (no matching order)", self.returns_unlinked)?;
        row(
            f,
            "guest orders created (no customer)",
            self.guest_orders_created,
        )?;
        row(
            f,
            "already present (earlier run)",
            self.orders_already_present,
        )?;
        row(
            f,
            "without any valid line",
            self.invoices_without_valid_lines,
        )?;
        writeln!(f, "customers and products")?;
        row(f, "customers created", self.customers_created)?;
        row(f, "profiles synthesized and sealed", self.profiles_sealed)?;
        row(f, "products created", self.products_created)?;
        writeln!(f, "skipped rows by reason")?;
        if self.skipped.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for (reason, n) in &self.skipped {
            row(f, reason.label(), *n)?;
        }
        writeln!(f, "transformed rows by reason")?;
        if self.transformed.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for (reason, n) in &self.transformed {
            row(f, reason.label(), *n)?;
        }
        Ok(())
    }
}
