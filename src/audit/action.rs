//! The closed set of audited actions, derived from one table.
//!
//! Each row names an [`Action`], the code stored and hashed in the trail,
//! and, for actions a caller asks the gate for, the policy's
//! `(object, act)` pair that authorizes it. A handler opens its gate with
//! an `Action`, so the permission checked and the action recorded cannot
//! disagree, and a route cannot exist without an action. Codes are part of
//! the audit format: never rename one; add rows instead.

use serde::{Deserialize, Serialize};

macro_rules! actions {
    ($( $(#[$meta:meta])* $variant:ident = $code:literal $(=> ($object:literal, $act:literal))? ; )*) => {
        /// What was attempted. Stored and hashed as its dotted code.
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum Action {
            $( $(#[$meta])* $variant, )*
            /// A code this version does not know (written by a newer
            /// version): kept verbatim so old verifiers still verify new
            /// chains. Never built by this version.
            Other(String),
        }

        impl Action {
            /// Every action this version knows, in table order.
            pub const ALL: &'static [Action] = &[$( Action::$variant, )*];

            pub fn as_str(&self) -> &str {
                match self {
                    $( Action::$variant => $code, )*
                    Action::Other(code) => code,
                }
            }

            pub fn parse(code: &str) -> Self {
                match code {
                    $( $code => Action::$variant, )*
                    other => Action::Other(other.to_owned()),
                }
            }

            /// The policy's `(object, act)` that authorizes this action, or
            /// `None` for actions no caller can ask the gate for (failed
            /// authentication, operator commands).
            pub fn operation(&self) -> Option<(&'static str, &'static str)> {
                match self {
                    $( $( Action::$variant => Some(($object, $act)), )? )*
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// Authentication failed (bad, expired or missing token).
    AuthFailed = "auth.failed";
    /// Refused before any operation was known (missing or unknown purpose).
    RequestRefused = "request";
    CustomerRead = "customer.read" => ("customer", "read");
    CustomerWrite = "customer.write" => ("customer", "write");
    CustomerDelete = "customer.delete" => ("customer", "delete");
    OrderRead = "order.read" => ("order", "read");
    OrderWrite = "order.write" => ("order", "write");
    ProductRead = "product.read" => ("product", "read");
    ProductWrite = "product.write" => ("product", "write");
    EventRead = "event.read" => ("event", "read");
    EventWrite = "event.write" => ("event", "write");
    ConsentRead = "consent.read" => ("consent", "read");
    /// Consent rates by purpose over time (`GET /v1/consents/rates`):
    /// exact counts, so only for roles trusted to read every customer's
    /// consent evidence (SECURITY.md, "The compliance console").
    ConsentRates = "consent.rates" => ("consent", "rates");
    ConsentWrite = "consent.write" => ("consent", "write");
    /// Recording a grant (beyond `consent.write`, which records withdrawals).
    ConsentGrant = "consent.grant" => ("consent", "grant");
    SegmentRead = "segment.read" => ("segment", "read");
    SegmentWrite = "segment.write" => ("segment", "write");
    SegmentReadMembers = "segment.read_members" => ("segment", "read_members");
    ProfileRead = "profile.read" => ("profile", "read");
    PrivacyBudgetRead = "privacy_budget.read" => ("privacy_budget", "read");
    PrivacyBudgetReadAll = "privacy_budget.read_all" => ("privacy_budget", "read_all");
    RecommendationRead = "recommendation.read" => ("recommendation", "read");
    /// Rebuilding the recommendation models on demand.
    RecsRebuild = "recs.rebuild" => ("recs", "rebuild");
    /// A scheduled rebuild of the recommendation models (system).
    RecsBuild = "recs.build";
    PseudonymResolve = "pseudonym.resolve" => ("pseudonym", "resolve");
    PolicyRead = "policy.read" => ("policy", "read");
    PolicyChange = "policy.change" => ("policy", "write");
    KeysRead = "keys.read" => ("keys", "read");
    KeyRotate = "key.rotate" => ("keys", "rotate");
    /// `GET /v1/audit` and the CLI's reads: reading the trail is audited.
    AuditRead = "audit.read" => ("audit", "read");
    AuditExport = "audit.export" => ("audit", "export");
    AuditVerify = "audit.verify" => ("audit", "verify");
    /// Retention pruning (operator command).
    AuditPrune = "audit.prune";
    /// Data subject requests (src/dsr): reading requests, steps, certificates.
    DsrRead = "dsr.read" => ("dsr", "read");
    DsrOpen = "dsr.open" => ("dsr", "open");
    /// Extending or refusing a request.
    DsrManage = "dsr.manage" => ("dsr", "manage");
    /// Generating an access document or portability archive.
    DsrExport = "dsr.export" => ("dsr", "export");
    DsrDownload = "dsr.download" => ("dsr", "download");
    DsrErase = "dsr.erase" => ("dsr", "erase");
    DsrRectify = "dsr.rectify" => ("dsr", "rectify");
    /// Setting or lifting a legal hold.
    DsrHold = "dsr.hold" => ("dsr", "hold");
    /// One step of a data subject request (which one: the event's
    /// subject-rights block), also when the gateway itself runs it.
    DsrStep = "dsr.step";
    /// A bulk import run (operator command).
    Import = "import";
    /// The data quality report (`GET /v1/quality`).
    QualityRead = "quality.read" => ("quality", "read");
    /// The quarantine list (reasons only) or, from the CLI, its rows.
    QuarantineRead = "quarantine.read" => ("quarantine", "read");
}

impl Action {
    /// The action the policy's `(object, act)` authorizes, if any.
    pub fn for_operation(object: &str, act: &str) -> Option<Action> {
        Action::ALL
            .iter()
            .find(|a| a.operation() == Some((object, act)))
            .cloned()
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Action::parse(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_and_operations_are_unique_and_round_trip() {
        let mut codes = HashSet::new();
        let mut ops = HashSet::new();
        for a in Action::ALL {
            assert!(codes.insert(a.as_str()), "duplicate code {}", a.as_str());
            assert_eq!(&Action::parse(a.as_str()), a);
            if let Some(op) = a.operation() {
                assert!(ops.insert(op), "two actions for {op:?}");
                assert_eq!(Action::for_operation(op.0, op.1).as_ref(), Some(a));
            }
        }
        assert_eq!(Action::parse("x.y"), Action::Other("x.y".into()));
        assert_eq!(Action::Other("x.y".into()).operation(), None);
    }
}
