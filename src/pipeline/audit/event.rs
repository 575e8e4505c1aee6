//! The typed audit event, its builder, and the canonical encoding the hash
//! chain covers (specified in the parent module's docs).

use ring::digest;
use serde::{Deserialize, Serialize};

use crate::domain::{Principal, PurposeId, Treatment};

/// A SHA-256 chain hash.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first event of every chain.
pub const GENESIS: Hash = [0u8; 32];

/// Version byte that starts every canonical encoding.
pub const ENCODING_VERSION: u8 = 1;

/// The actor recorded when authentication failed.
pub const ANONYMOUS: &str = "anonymous";

/// Whether the gateway let the request through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            Decision::Deny => 0,
            Decision::Allow => 1,
        }
    }
}

/// What was attempted. Stored and hashed as its dotted code; codes are part
/// of the audit format, so never rename one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Authentication failed (bad, expired or missing token).
    AuthFailed,
    CustomerRead,
    CustomerSearch,
    CustomerExport,
    CustomerErase,
    ConsentRead,
    ConsentWrite,
    SegmentQuery,
    RecommendationRead,
    PseudonymResolve,
    PolicyChange,
    KeyRotate,
    Import,
    /// `GET /v1/audit` and the CLI's reads: reading the trail is audited.
    AuditRead,
    AuditExport,
    AuditPrune,
    /// A code written by a newer version (kept verbatim so old verifiers
    /// still verify new chains).
    Other(String),
}

impl Action {
    pub fn as_str(&self) -> &str {
        match self {
            Action::AuthFailed => "auth.failed",
            Action::CustomerRead => "customer.read",
            Action::CustomerSearch => "customer.search",
            Action::CustomerExport => "customer.export",
            Action::CustomerErase => "customer.erase",
            Action::ConsentRead => "consent.read",
            Action::ConsentWrite => "consent.write",
            Action::SegmentQuery => "segment.query",
            Action::RecommendationRead => "recommendation.read",
            Action::PseudonymResolve => "pseudonym.resolve",
            Action::PolicyChange => "policy.change",
            Action::KeyRotate => "key.rotate",
            Action::Import => "import",
            Action::AuditRead => "audit.read",
            Action::AuditExport => "audit.export",
            Action::AuditPrune => "audit.prune",
            Action::Other(code) => code,
        }
    }

    pub fn parse(code: &str) -> Self {
        const KNOWN: &[Action] = &[
            Action::AuthFailed,
            Action::CustomerRead,
            Action::CustomerSearch,
            Action::CustomerExport,
            Action::CustomerErase,
            Action::ConsentRead,
            Action::ConsentWrite,
            Action::SegmentQuery,
            Action::RecommendationRead,
            Action::PseudonymResolve,
            Action::PolicyChange,
            Action::KeyRotate,
            Action::Import,
            Action::AuditRead,
            Action::AuditExport,
            Action::AuditPrune,
        ];
        KNOWN
            .iter()
            .find(|a| a.as_str() == code)
            .cloned()
            .unwrap_or_else(|| Action::Other(code.to_owned()))
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

/// Why the decision was taken. Rendered as `kind:detail`
/// (`policy:p, analyst, customer, read_masked`, `consent:withdrawn`,
/// `auth:expired`), which is what is stored and hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The casbin rule (or "no matching rule") that decided.
    Policy(String),
    /// The consent state that decided (`granted`, `withdrawn`, `none`).
    Consent(String),
    /// The authentication failure code (`expired`, `bad_signature`, ...).
    Auth(String),
    /// An admin or system reason (`retention`, `operator`).
    Admin(String),
    /// The request was refused for its input (`purpose_missing`, `invalid_input`).
    Input(String),
    /// The request was allowed but failed (`not_found`, `integrity_failure`).
    Outcome(String),
}

impl Reason {
    pub fn render(&self) -> String {
        match self {
            Reason::Policy(s) => format!("policy:{s}"),
            Reason::Consent(s) => format!("consent:{s}"),
            Reason::Auth(s) => format!("auth:{s}"),
            Reason::Admin(s) => format!("admin:{s}"),
            Reason::Input(s) => format!("input:{s}"),
            Reason::Outcome(s) => format!("outcome:{s}"),
        }
    }
}

/// One decision of the gateway: the unit of the audit trail.
///
/// Holds ids only (subject, customer ids, field names), never a personal
/// value, a token or key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Microseconds since the epoch; stamped by the writer when it sequences
    /// the event, so time never goes backwards along a chain.
    pub occurred_at: i64,
    pub request_id: String,
    /// The `sub` claim, or [`ANONYMOUS`].
    pub actor: String,
    pub roles: Vec<String>,
    pub action: Action,
    /// The route or object acted on (`/v1/customers/{id}`, `policy`).
    pub resource: String,
    /// Customer ids touched, sorted and deduplicated.
    pub customers: Vec<i64>,
    pub purpose: Option<String>,
    pub decision: Decision,
    /// The rendered [`Reason`].
    pub reason: String,
    /// Fields returned and the treatment each got.
    pub fields: Vec<(String, Treatment)>,
    /// HTTP status of the response.
    pub status: u16,
    /// Number of records returned.
    pub records: u64,
}

impl AuditEvent {
    /// Starts an event for an authenticated principal.
    pub fn builder(principal: &Principal, action: Action, resource: impl Into<String>) -> Builder {
        Builder::new(&principal.sub, principal.roles.to_vec(), action, resource)
    }

    /// Starts an event for a request whose authentication failed: actor
    /// `anonymous`, decision deny, status 401, reason `auth:<code>`.
    pub fn auth_failed(
        request_id: impl Into<String>,
        resource: impl Into<String>,
        code: &str,
    ) -> Self {
        Builder::new(ANONYMOUS, Vec::new(), Action::AuthFailed, resource)
            .request_id(request_id)
            .deny(Reason::Auth(code.to_owned()), 401)
            .build()
    }

    /// Starts an event for an operator or system action without a JWT
    /// (the CLI): the actor is a fixed name such as `cli:prune`.
    pub fn system(actor: &str, action: Action, resource: impl Into<String>) -> Builder {
        Builder::new(actor, Vec::new(), action, resource)
    }

    /// The canonical encoding (format version 1) the chain hash covers.
    pub fn canonical(&self, instance: &str, seq: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(ENCODING_VERSION);
        put_str(&mut out, instance);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&self.occurred_at.to_be_bytes());
        put_str(&mut out, &self.request_id);
        put_str(&mut out, &self.actor);
        put_len(&mut out, self.roles.len());
        for role in &self.roles {
            put_str(&mut out, role);
        }
        put_str(&mut out, self.action.as_str());
        put_str(&mut out, &self.resource);
        put_len(&mut out, self.customers.len());
        for id in &self.customers {
            out.extend_from_slice(&id.to_be_bytes());
        }
        match &self.purpose {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                put_str(&mut out, p);
            }
        }
        out.push(self.decision.code());
        put_str(&mut out, &self.reason);
        put_len(&mut out, self.fields.len());
        for (name, treatment) in &self.fields {
            put_str(&mut out, name);
            out.push(treatment_code(*treatment));
        }
        out.extend_from_slice(&u32::from(self.status).to_be_bytes());
        out.extend_from_slice(&self.records.to_be_bytes());
        out
    }

    /// `SHA-256(prev_hash || canonical(event))`.
    pub fn chain_hash(&self, instance: &str, seq: i64, prev_hash: &Hash) -> Hash {
        link_hash(prev_hash, &self.canonical(instance, seq))
    }
}

/// `SHA-256(prev_hash || canonical)`, for a caller that already holds the
/// canonical encoding (the writer stores those bytes too).
pub fn link_hash(prev_hash: &Hash, canonical: &[u8]) -> Hash {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev_hash);
    ctx.update(canonical);
    to_hash(ctx.finish().as_ref()).unwrap_or(GENESIS)
}

/// The inverse of [`AuditEvent::canonical`]: `(instance, seq, event)`, or
/// why the bytes are not one complete canonical encoding (damaged storage).
pub fn decode_canonical(bytes: &[u8]) -> Result<(String, i64, AuditEvent), String> {
    let mut r = Reader(bytes);
    if r.u8()? != ENCODING_VERSION {
        return Err("unknown encoding version".into());
    }
    let instance = r.string()?;
    let seq = r.i64()?;
    let occurred_at = r.i64()?;
    let request_id = r.string()?;
    let actor = r.string()?;
    let roles = (0..r.len()?)
        .map(|_| r.string())
        .collect::<Result<_, _>>()?;
    let action = Action::parse(&r.string()?);
    let resource = r.string()?;
    let customers = (0..r.len()?).map(|_| r.i64()).collect::<Result<_, _>>()?;
    let purpose = match r.u8()? {
        0 => None,
        1 => Some(r.string()?),
        _ => return Err("bad purpose tag".into()),
    };
    let decision = match r.u8()? {
        0 => Decision::Deny,
        1 => Decision::Allow,
        _ => return Err("bad decision".into()),
    };
    let reason = r.string()?;
    let fields = (0..r.len()?)
        .map(|_| Ok((r.string()?, treatment_of(r.u8()?)?)))
        .collect::<Result<_, String>>()?;
    let status = u16::try_from(r.u32()?).map_err(|_| "status out of range")?;
    let records = u64::from_be_bytes(r.take()?);
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
    let event = AuditEvent {
        occurred_at,
        request_id,
        actor,
        roles,
        action,
        resource,
        customers,
        purpose,
        decision,
        reason,
        fields,
        status,
        records,
    };
    Ok((instance, seq, event))
}

/// A cursor over canonical bytes; every read checks the length left.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self.0.split_at_checked(N).ok_or("truncated")?;
        self.0 = rest;
        head.try_into().map_err(|_| "truncated".to_owned())
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(u8::from_be_bytes(self.take()?))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take()?))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take()?))
    }
    fn len(&mut self) -> Result<usize, String> {
        let n = usize::try_from(self.u32()?).map_err(|_| "length out of range")?;
        // Every element takes at least one byte: refuse absurd counts early.
        if n > self.0.len() {
            return Err("length beyond the data".into());
        }
        Ok(n)
    }
    fn string(&mut self) -> Result<String, String> {
        let n = self.len()?;
        let (head, rest) = self.0.split_at_checked(n).ok_or("truncated")?;
        self.0 = rest;
        String::from_utf8(head.to_vec()).map_err(|_| "string is not UTF-8".to_owned())
    }
}

fn treatment_of(code: u8) -> Result<Treatment, String> {
    Ok(match code {
        0 => Treatment::Dropped,
        1 => Treatment::Pseudonym,
        2 => Treatment::Masked,
        3 => Treatment::Clear,
        _ => return Err("bad treatment".into()),
    })
}

/// Copies a 32-byte slice into a [`Hash`]; `None` for any other length.
pub fn to_hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

fn treatment_code(t: Treatment) -> u8 {
    match t {
        Treatment::Dropped => 0,
        Treatment::Pseudonym => 1,
        Treatment::Masked => 2,
        Treatment::Clear => 3,
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Nothing we encode approaches 4 GiB; saturate rather than panic.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Builds an [`AuditEvent`] step by step; handlers start it when the
/// principal is known and finish it with [`Builder::allow`] or
/// [`Builder::deny`].
#[derive(Clone, Debug)]
pub struct Builder(AuditEvent);

impl Builder {
    fn new(actor: &str, roles: Vec<String>, action: Action, resource: impl Into<String>) -> Self {
        Self(AuditEvent {
            occurred_at: 0,
            request_id: String::new(),
            actor: actor.to_owned(),
            roles,
            action,
            resource: resource.into(),
            customers: Vec::new(),
            purpose: None,
            decision: Decision::Deny,
            reason: String::new(),
            fields: Vec::new(),
            status: 0,
            records: 0,
        })
    }

    pub fn request_id(mut self, id: impl Into<String>) -> Self {
        self.0.request_id = id.into();
        self
    }

    pub fn purpose(mut self, purpose: &PurposeId) -> Self {
        self.0.purpose = Some(purpose.as_str().to_owned());
        self
    }

    pub fn customer(mut self, id: i64) -> Self {
        self.0.customers.push(id);
        self
    }

    pub fn customers(mut self, ids: impl IntoIterator<Item = i64>) -> Self {
        self.0.customers.extend(ids);
        self
    }

    pub fn field(mut self, name: impl Into<String>, treatment: Treatment) -> Self {
        self.0.fields.push((name.into(), treatment));
        self
    }

    pub fn fields(mut self, fields: impl IntoIterator<Item = (String, Treatment)>) -> Self {
        self.0.fields.extend(fields);
        self
    }

    /// Clamped to `i64::MAX`, the largest count both stores hold exactly.
    pub fn records(mut self, n: u64) -> Self {
        self.0.records = n.min(i64::MAX.unsigned_abs());
        self
    }

    pub fn allow(mut self, reason: Reason, status: u16) -> Self {
        self.0.decision = Decision::Allow;
        self.0.reason = reason.render();
        self.0.status = status;
        self
    }

    pub fn deny(mut self, reason: Reason, status: u16) -> Self {
        self.0.decision = Decision::Deny;
        self.0.reason = reason.render();
        self.0.status = status;
        self
    }

    pub fn build(mut self) -> AuditEvent {
        self.0.customers.sort_unstable();
        self.0.customers.dedup();
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> AuditEvent {
        AuditEvent {
            occurred_at: 1_780_000_000_123_456,
            request_id: "req-1".into(),
            actor: "analyst@svc".into(),
            roles: vec!["analyst".into(), "support".into()],
            action: Action::CustomerRead,
            resource: "/v1/customers/42".into(),
            customers: vec![42, 7],
            purpose: Some("marketing".into()),
            decision: Decision::Allow,
            reason: Reason::Policy("p, analyst, customer, read_masked".into()).render(),
            fields: vec![
                ("email".into(), Treatment::Masked),
                ("city".into(), Treatment::Clear),
            ],
            status: 200,
            records: 1,
        }
    }

    /// Golden value: if this changes, the encoding changed and every stored
    /// chain would stop verifying. Bump `ENCODING_VERSION` instead.
    #[test]
    fn canonical_hash_is_stable() {
        let h = sample().chain_hash("gw-1", 5, &GENESIS);
        assert_eq!(
            hex::encode(h),
            "0acfbf9d26a4cc70bd76e7785a1253f3b0c8822109b47c53cb0072d9e1e8f532"
        );
    }

    #[test]
    fn canonical_decodes_back() {
        let mut e = sample();
        e.purpose = None;
        e.records = u64::MAX;
        e.action = Action::Other("future.code".into());
        for event in [sample(), e] {
            let bytes = event.canonical("gw-1", 5);
            assert_eq!(decode_canonical(&bytes), Ok(("gw-1".to_owned(), 5, event)));
            // Every truncation and any trailing byte is refused, not misread.
            for n in 0..bytes.len() {
                assert!(decode_canonical(&bytes[..n]).is_err(), "{n}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_canonical(&longer).is_err());
        }
    }

    #[test]
    fn every_field_is_covered() {
        let base = sample();
        let h = base.chain_hash("gw-1", 5, &GENESIS);
        let mut variants = Vec::new();
        let mut e = base.clone();
        e.actor.push('x');
        variants.push(e);
        let mut e = base.clone();
        e.customers.push(1);
        variants.push(e);
        let mut e = base.clone();
        e.purpose = None;
        variants.push(e);
        let mut e = base.clone();
        e.fields[0].1 = Treatment::Clear;
        variants.push(e);
        let mut e = base.clone();
        e.status = 201;
        variants.push(e);
        let mut e = base.clone();
        e.records = 2;
        variants.push(e);
        let mut e = base.clone();
        e.decision = Decision::Deny;
        variants.push(e);
        // Length prefixes: moving a byte between adjacent strings changes the hash.
        let mut e = base.clone();
        e.roles = vec!["analystsupport".into()];
        variants.push(e);
        for v in variants {
            assert_ne!(v.chain_hash("gw-1", 5, &GENESIS), h, "{v:?}");
        }
        assert_ne!(base.chain_hash("gw-1", 6, &GENESIS), h);
        assert_ne!(base.chain_hash("gw-2", 5, &GENESIS), h);
        assert_ne!(base.chain_hash("gw-1", 5, &[1; 32]), h);
    }

    #[test]
    fn builder_sorts_customers_and_auth_failure_is_anonymous() {
        let p = Principal {
            sub: "svc".into(),
            roles: vec!["a".to_owned()].into(),
            expires_at: 0,
        };
        let e = AuditEvent::builder(&p, Action::CustomerSearch, "/v1/customers")
            .customers([3, 1, 3])
            .allow(Reason::Policy("r".into()), 200)
            .build();
        assert_eq!(e.customers, vec![1, 3]);
        assert_eq!(e.reason, "policy:r");
        let f = AuditEvent::auth_failed("r1", "/v1/customers", "expired");
        assert_eq!(f.actor, ANONYMOUS);
        assert_eq!(f.decision, Decision::Deny);
        assert_eq!(f.status, 401);
        assert_eq!(Action::parse("audit.read"), Action::AuditRead);
        assert_eq!(Action::parse("x.y"), Action::Other("x.y".into()));
    }
}
