//! Consent ledger writes: append-only inserts of grant/withdraw events. The
//! ledger's read API (current state per purpose) lives with the consent
//! stage; this module only appends, idempotently by `receipt_id`.

use sqlx::{Any, Transaction};

use super::bulk::{rows_per_statement, values_clause, Placeholders};

/// Who may enter an aggregate for a purpose, as SQL the analytics compile
/// into their queries (segments, profiles, effect evaluation, recommendation
/// builds), so consent filtering happens inside the database, in the same
/// query as the data, before anything is counted.
///
/// "Customers with current consent to purpose P, or every customer when P's
/// legal basis needs none." Erased customers never qualify. The predicate
/// always binds exactly one parameter (the purpose id), so callers number
/// their own parameters the same way whichever branch applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentPredicate {
    purpose: String,
    required: bool,
}

impl ConsentPredicate {
    /// The predicate for `purpose`, which does or does not need consent
    /// (`pipeline::consent` builds it from the purpose catalog).
    pub fn new(purpose: &str, required: bool) -> Self {
        Self {
            purpose: purpose.to_owned(),
            required,
        }
    }

    /// Whether the purpose needs consent at all.
    pub fn required(&self) -> bool {
        self.required
    }

    /// A boolean SQL expression over the customer id column `customer_id`
    /// (an identifier from the caller's own code, never from a request),
    /// binding the purpose as `$param`. Portable across both backends.
    pub fn sql(&self, customer_id: &'static str, param: usize) -> String {
        if self.required {
            format!(
                "EXISTS (SELECT 1 FROM consent_state cs JOIN customers cc ON cc.id = cs.customer_id \
                 WHERE cs.customer_id = {customer_id} AND cs.purpose = ${param} \
                 AND cs.granted = 1 AND cc.erased_at IS NULL)"
            )
        } else {
            format!(
                "(CAST(${param} AS TEXT) IS NOT NULL AND EXISTS (SELECT 1 FROM customers cc \
                 WHERE cc.id = {customer_id} AND cc.erased_at IS NULL))"
            )
        }
    }

    /// The value to bind at the predicate's parameter.
    pub fn bind_value(&self) -> &str {
        &self.purpose
    }
}

/// One grant or withdrawal, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConsentEvent {
    /// Stable, unique id of this event (the receipt handed to the person).
    pub receipt_id: String,
    pub customer_id: i64,
    pub purpose: String,
    pub granted: bool,
    pub occurred_at: i64,
    /// Where the decision was captured: `web_form`, `crm`, `import`, …
    pub source: String,
    /// What the person saw (notice and version), not personal data.
    pub evidence: Option<String>,
    pub evidence_hash: Option<Vec<u8>>,
    /// Who recorded it (a service or operator id).
    pub actor: String,
}

/// Appends events whose receipt id is new; returns how many were created.
pub async fn insert_many(
    tx: &mut Transaction<'_, Any>,
    events: &[NewConsentEvent],
    recorded_at: i64,
) -> crate::db::DbResult<u64> {
    let style = Placeholders::of(tx);
    let mut created = 0;
    for chunk in events.chunks(rows_per_statement(10)) {
        let sql = format!(
            "INSERT INTO consent_events (receipt_id, customer_id, purpose, granted, occurred_at, \
             recorded_at, source, evidence, evidence_hash, actor) VALUES {} \
             ON CONFLICT (receipt_id) DO NOTHING",
            values_clause(style, chunk.len(), 10)
        );
        let mut q = sqlx::query(&sql);
        for e in chunk {
            q = q
                .bind(&e.receipt_id)
                .bind(e.customer_id)
                .bind(&e.purpose)
                .bind(i64::from(e.granted))
                .bind(e.occurred_at)
                .bind(recorded_at)
                .bind(&e.source)
                .bind(&e.evidence)
                .bind(&e.evidence_hash)
                .bind(&e.actor);
        }
        created += q.execute(&mut **tx).await?.rows_affected();
    }
    Ok(created)
}
