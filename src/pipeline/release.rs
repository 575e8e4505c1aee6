//! The release step: the one way an aggregate answer (a segment size, a
//! profile cell, an effect estimate, a served recommendation) leaves the
//! gateway.
//!
//! By the time a handler calls [`Gate::release`], the `privacy` module has
//! filtered the question's population through the consent predicate,
//! suppressed every cell resting on fewer than `privacy.k` customers,
//! added noise where the caller's role has no member access, and written
//! the budget debit into `tx`. The release then records the request's
//! audit event with its privacy block and commits `tx` only once that
//! event is durable: an answer never leaves without its evidence, and a
//! budget is never spent on an answer the trail does not show (nor shown
//! spent for an answer that never left). If the trail cannot record, `tx`
//! rolls back and the request fails with 503.

use crate::audit::PrivacyBlock;
use crate::error::ApiError;

use super::gate::Gate;

impl Gate<'_> {
    /// Records the allow event carrying `block` and then commits `tx`
    /// (the budget debit and any cached answer). Set the status and the
    /// fields or records returned before calling it; `finish` afterwards
    /// lets the answer leave.
    pub async fn release(
        &mut self,
        tx: sqlx::Transaction<'_, sqlx::Any>,
        block: PrivacyBlock,
    ) -> Result<(), ApiError> {
        self.privacy(block);
        self.commit_audited(tx).await
    }
}
