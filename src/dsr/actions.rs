//! What can be done next with a request: the steps the `/v1/dsr` routes
//! would accept for a request in its current state, each with the
//! [`Action`] (and so the policy's `(dsr, act)`) its route is gated by.
//!
//! The request views carry these steps filtered by the caller's policy, so
//! a client (the compliance console) offers exactly what the gateway would
//! do for this role, and nothing its role cannot. The rules here follow
//! the routes' own checks (`requests::extend`, `requests::set_status`, the
//! refusal's erasure check, `hold::set`/`hold::lift`); the routes still
//! decide every call.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::hold::Hold;
use super::requests::RequestRow;
use super::{DsrError, Kind};
use crate::audit::Action;
use crate::db::Db;

/// One step a client may offer for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextStep {
    /// `POST /v1/dsr/{id}/extend`, once, with a reason.
    Extend,
    /// `POST /v1/dsr/{id}/refuse`, with a reason.
    Refuse,
    /// `POST /v1/dsr/{id}/export` (access, portability).
    Export,
    /// `POST /v1/dsr/{id}/rectify` (rectification).
    Rectify,
    /// `POST /v1/dsr/{id}/erase` (erasure).
    Erase,
    /// `POST /v1/dsr/legal-holds` for the request's customer.
    Hold,
    /// `POST /v1/dsr/legal-holds/{customer_id}/lift`.
    LiftHold,
}

impl NextStep {
    pub const ALL: [NextStep; 7] = [
        NextStep::Extend,
        NextStep::Refuse,
        NextStep::Export,
        NextStep::Rectify,
        NextStep::Erase,
        NextStep::Hold,
        NextStep::LiftHold,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NextStep::Extend => "extend",
            NextStep::Refuse => "refuse",
            NextStep::Export => "export",
            NextStep::Rectify => "rectify",
            NextStep::Erase => "erase",
            NextStep::Hold => "hold",
            NextStep::LiftHold => "lift_hold",
        }
    }

    /// The action its route opens its gate for.
    pub fn action(self) -> Action {
        match self {
            NextStep::Extend | NextStep::Refuse => Action::DsrManage,
            NextStep::Export => Action::DsrExport,
            NextStep::Rectify => Action::DsrRectify,
            NextStep::Erase => Action::DsrErase,
            NextStep::Hold | NextStep::LiftHold => Action::DsrHold,
        }
    }
}

/// What is known about a request beyond its row.
#[derive(Clone, Copy, Debug, Default)]
pub struct Context {
    /// The customer is under an active legal hold.
    pub hold_active: bool,
    /// An erasure has begun for this request (it can no longer be refused).
    pub erasure_begun: bool,
}

/// The steps the routes would accept for `r` now, whoever asks. A closed
/// request has none; holds are offered on open requests of a customer who
/// is not erased (a hold protects what is still there).
pub fn possible(r: &RequestRow, cx: Context) -> Vec<NextStep> {
    if !r.status.is_open() {
        return Vec::new();
    }
    NextStep::ALL
        .into_iter()
        .filter(|step| match step {
            NextStep::Extend => r.extended_at.is_none(),
            NextStep::Refuse => !cx.erasure_begun,
            NextStep::Export => matches!(r.kind, Kind::Access | Kind::Portability),
            NextStep::Rectify => r.kind == Kind::Rectification,
            // Under a hold the erasure would only go (back) on hold.
            NextStep::Erase => r.kind == Kind::Erasure && !cx.hold_active,
            NextStep::Hold => !r.customer_erased && !cx.hold_active,
            NextStep::LiftHold => !r.customer_erased && cx.hold_active,
        })
        .collect()
}

/// `$1, $2, …` for `n` bound values.
fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The active holds of `customers` (one query).
pub async fn active_holds(db: &Db, customers: &[i64]) -> Result<HashMap<i64, Hold>, DsrError> {
    if customers.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT customer_id, reason, set_by, set_at FROM dsr_legal_holds \
         WHERE lifted_at IS NULL AND customer_id IN ({})",
        placeholders(customers.len())
    );
    let mut q = sqlx::query(&sql);
    for id in customers {
        q = q.bind(*id);
    }
    let rows = q.fetch_all(&db.pool).await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                Hold {
                    reason: r.try_get(1)?,
                    set_by: r.try_get(2)?,
                    set_at: crate::clock::rfc3339(r.try_get(3)?),
                },
            ))
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(DsrError::from)
}

/// Which of `requests` have an erasure begun (one query).
pub async fn erasures_begun(db: &Db, requests: &[i64]) -> Result<HashSet<i64>, DsrError> {
    if requests.is_empty() {
        return Ok(HashSet::new());
    }
    let sql = format!(
        "SELECT request_id FROM dsr_erasures WHERE request_id IN ({})",
        placeholders(requests.len())
    );
    let mut q = sqlx::query_scalar(&sql);
    for id in requests {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(&db.pool).await?.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsr::{Channel, Requester, Status};

    fn row(kind: Kind, status: Status) -> RequestRow {
        RequestRow {
            id: 1,
            uid: "dsr_x".into(),
            customer_id: 7,
            customer_key: "c7".into(),
            customer_erased: false,
            kind,
            status,
            requested_by: Requester::DataSubject,
            channel: Channel::Email,
            received_at: 0,
            due_at: 0,
            extended_at: None,
            extension_reason: None,
            status_reason: None,
            opened_by: "dpo".into(),
            updated_at: 0,
            completed_at: None,
        }
    }

    fn names(steps: Vec<NextStep>) -> Vec<&'static str> {
        steps.into_iter().map(NextStep::as_str).collect()
    }

    #[test]
    fn each_kind_offers_its_own_fulfilment() {
        let cx = Context::default();
        assert_eq!(
            names(possible(&row(Kind::Access, Status::Received), cx)),
            ["extend", "refuse", "export", "hold"]
        );
        assert_eq!(
            names(possible(&row(Kind::Rectification, Status::InProgress), cx)),
            ["extend", "refuse", "rectify", "hold"]
        );
        assert_eq!(
            names(possible(&row(Kind::Erasure, Status::Received), cx)),
            ["extend", "refuse", "erase", "hold"]
        );
    }

    #[test]
    fn state_takes_steps_away() {
        let cx = Context::default();
        for closed in [Status::Completed, Status::Refused] {
            assert!(possible(&row(Kind::Access, closed), cx).is_empty());
        }
        let mut extended = row(Kind::Access, Status::Received);
        extended.extended_at = Some(5);
        assert!(!possible(&extended, cx).contains(&NextStep::Extend));
        let held = Context {
            hold_active: true,
            erasure_begun: false,
        };
        assert_eq!(
            names(possible(&row(Kind::Erasure, Status::OnHold), held)),
            ["extend", "refuse", "lift_hold"]
        );
        let begun = Context {
            hold_active: false,
            erasure_begun: true,
        };
        assert!(
            !possible(&row(Kind::Erasure, Status::InProgress), begun).contains(&NextStep::Refuse)
        );
        let mut erased = row(Kind::Erasure, Status::InProgress);
        erased.customer_erased = true;
        assert_eq!(names(possible(&erased, begun)), ["extend", "erase"]);
    }

    #[test]
    fn every_step_names_a_governed_dsr_operation() {
        for step in NextStep::ALL {
            let (object, _) = step.action().operation().unwrap();
            assert_eq!(object, "dsr", "{step:?}");
        }
    }
}
