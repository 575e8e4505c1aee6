//! The typed audit event, its builder, and the canonical encoding the hash
//! chain covers (specified in the parent module's docs).

use ring::digest;
use serde::{Deserialize, Serialize};

pub use super::action::Action;
use crate::domain::{Principal, PurposeId, Treatment};

/// A SHA-256 chain hash.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first event of every chain.
pub const GENESIS: Hash = [0u8; 32];

/// The encoding this version writes. Version 1 (no policy version, no
/// blocks) is still read and verified, byte for byte as it was written.
pub const ENCODING_VERSION: u8 = 2;

/// The first encoding version; chains written before v2 use it.
pub const ENCODING_V1: u8 = 1;

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

/// Evidence for an aggregate answer (segments, profiles, effect
/// evaluation, recommendations): how much privacy the release cost and
/// what protected it. Numbers only; epsilon in millionths so the encoding
/// holds no floats.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivacyBlock {
    /// `discrete_laplace`, `k_threshold`, `none`, ...
    pub mechanism: String,
    /// Epsilon debited from the caller's budget by this answer, x 10^6
    /// (0 for an answer repeated from the cache).
    pub epsilon_spent_micros: u64,
    /// The k threshold applied (cells on fewer customers were suppressed).
    pub k: u32,
    pub suppressed_cells: u32,
    /// SHA-256 of the canonical form of the question.
    #[serde(with = "hex_hash")]
    pub fingerprint: Hash,
    /// Budget left in the caller's window after this answer, x 10^6.
    pub budget_remaining_micros: i64,
}

/// Which data subject request a step belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectRights {
    /// The request's public id.
    pub request_id: String,
    /// `access`, `portability`, `rectification`, `erasure`, ...
    pub kind: String,
    /// `opened`, `extended`, `completed`, `key_destroyed`, ...
    pub step: String,
}

/// What a recommendation answer served: the model that produced it,
/// whether consent allowed personalization, and the product ids returned.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Served {
    pub model: String,
    pub model_version: String,
    pub personalized: bool,
    pub items: Vec<i64>,
}

/// One decision of the gateway: the unit of the audit trail.
///
/// Holds ids and numbers only (subject, customer ids, field names, product
/// ids), never a personal value, a token or key material.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The canonical encoding this event is hashed in: [`ENCODING_VERSION`]
    /// for new events, [`ENCODING_V1`] for events read from older chains
    /// (exports written before v2 have no such field).
    #[serde(default = "v1")]
    pub format: u8,
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
    /// v2: the content hash of the policy that decided (`GET
    /// /v1/admin/policies/{version}` shows its rules); `None` when no
    /// policy was consulted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_hex_hash"
    )]
    pub policy_version: Option<Hash>,
    /// v2: evidence of an aggregate release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privacy: Option<PrivacyBlock>,
    /// v2: the data subject request this step belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_rights: Option<SubjectRights>,
    /// v2: what a recommendation answer served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Served>,
}

fn v1() -> u8 {
    ENCODING_V1
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

    /// The canonical encoding the chain hash covers, in the event's
    /// [`format`](Self::format). A v1 event with v2 content cannot be
    /// encoded faithfully; the writer only builds v2 events.
    pub fn canonical(&self, instance: &str, seq: i64) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(self.format);
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
        put_opt(&mut out, self.purpose.as_ref(), |out, p| put_str(out, p));
        out.push(self.decision.code());
        put_str(&mut out, &self.reason);
        put_len(&mut out, self.fields.len());
        for (name, treatment) in &self.fields {
            put_str(&mut out, name);
            out.push(treatment_code(*treatment));
        }
        out.extend_from_slice(&u32::from(self.status).to_be_bytes());
        out.extend_from_slice(&self.records.to_be_bytes());
        if self.format >= 2 {
            put_opt(&mut out, self.policy_version.as_ref(), |out, h| {
                out.extend_from_slice(h)
            });
            put_opt(&mut out, self.privacy.as_ref(), |out, p| {
                put_str(out, &p.mechanism);
                out.extend_from_slice(&p.epsilon_spent_micros.to_be_bytes());
                out.extend_from_slice(&p.k.to_be_bytes());
                out.extend_from_slice(&p.suppressed_cells.to_be_bytes());
                out.extend_from_slice(&p.fingerprint);
                out.extend_from_slice(&p.budget_remaining_micros.to_be_bytes());
            });
            put_opt(&mut out, self.subject_rights.as_ref(), |out, r| {
                put_str(out, &r.request_id);
                put_str(out, &r.kind);
                put_str(out, &r.step);
            });
            put_opt(&mut out, self.served.as_ref(), |out, s| {
                put_str(out, &s.model);
                put_str(out, &s.model_version);
                out.push(u8::from(s.personalized));
                put_len(out, s.items.len());
                for id in &s.items {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            });
        }
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
    let format = r.u8()?;
    if !(ENCODING_V1..=ENCODING_VERSION).contains(&format) {
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
    let purpose = r.opt(|r| r.string())?;
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
    let mut event = AuditEvent {
        format,
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
        policy_version: None,
        privacy: None,
        subject_rights: None,
        served: None,
    };
    if format >= 2 {
        event.policy_version = r.opt(|r| r.take::<32>())?;
        event.privacy = r.opt(|r| {
            Ok(PrivacyBlock {
                mechanism: r.string()?,
                epsilon_spent_micros: u64::from_be_bytes(r.take()?),
                k: r.u32()?,
                suppressed_cells: r.u32()?,
                fingerprint: r.take()?,
                budget_remaining_micros: r.i64()?,
            })
        })?;
        event.subject_rights = r.opt(|r| {
            Ok(SubjectRights {
                request_id: r.string()?,
                kind: r.string()?,
                step: r.string()?,
            })
        })?;
        event.served = r.opt(|r| {
            Ok(Served {
                model: r.string()?,
                model_version: r.string()?,
                personalized: match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err("bad flag".into()),
                },
                items: (0..r.len()?).map(|_| r.i64()).collect::<Result<_, _>>()?,
            })
        })?;
    }
    if !r.0.is_empty() {
        return Err("trailing bytes".into());
    }
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
    /// `u8` 0 for absent, or 1 followed by the value.
    fn opt<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, String>,
    ) -> Result<Option<T>, String> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err("bad option tag".into()),
        }
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

fn put_opt<T>(out: &mut Vec<u8>, value: Option<&T>, put: impl FnOnce(&mut Vec<u8>, &T)) {
    match value {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            put(out, v);
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// Hashes as 64 lowercase hex digits in JSON.
pub(crate) mod hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        // On the stack: the writer encodes two hashes per event.
        let mut buf = [0u8; 64];
        hex::encode_to_slice(h, &mut buf).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(&s)
            .ok()
            .and_then(|b| super::to_hash(&b))
            .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

/// [`hex_hash`] for an optional hash.
pub(crate) mod opt_hex_hash {
    use super::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Option<Hash>, s: S) -> Result<S::Ok, S::Error> {
        match h {
            Some(h) => super::hex_hash::serialize(h, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Hash>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                hex::decode(&s)
                    .ok()
                    .and_then(|b| super::to_hash(&b))
                    .ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
            })
            .transpose()
    }
}

/// Builds an [`AuditEvent`] step by step; handlers start it when the
/// principal is known and finish it with [`Builder::allow`] or
/// [`Builder::deny`].
#[derive(Clone, Debug)]
pub struct Builder(AuditEvent);

impl Builder {
    fn new(actor: &str, roles: Vec<String>, action: Action, resource: impl Into<String>) -> Self {
        Self(AuditEvent {
            format: ENCODING_VERSION,
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
            policy_version: None,
            privacy: None,
            subject_rights: None,
            served: None,
        })
    }

    /// The content hash of the policy that decided.
    pub fn policy_version(mut self, version: Option<Hash>) -> Self {
        self.0.policy_version = version;
        self
    }

    pub fn privacy(mut self, block: PrivacyBlock) -> Self {
        self.0.privacy = Some(block);
        self
    }

    pub fn subject_rights(mut self, block: SubjectRights) -> Self {
        self.0.subject_rights = Some(block);
        self
    }

    pub fn served(mut self, block: Served) -> Self {
        self.0.served = Some(block);
        self
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

    /// A v1 event, as chains written before v2 hold them.
    pub(crate) fn sample() -> AuditEvent {
        AuditEvent {
            format: ENCODING_V1,
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
            policy_version: None,
            privacy: None,
            subject_rights: None,
            served: None,
        }
    }

    /// A v2 event with every block filled.
    pub(crate) fn sample_v2() -> AuditEvent {
        AuditEvent {
            format: ENCODING_VERSION,
            policy_version: Some([7; 32]),
            privacy: Some(PrivacyBlock {
                mechanism: "discrete_laplace".into(),
                epsilon_spent_micros: 500_000,
                k: 10,
                suppressed_cells: 3,
                fingerprint: [9; 32],
                budget_remaining_micros: 9_500_000,
            }),
            subject_rights: Some(SubjectRights {
                request_id: "dsr-1".into(),
                kind: "erasure".into(),
                step: "key_destroyed".into(),
            }),
            served: Some(Served {
                model: "ease".into(),
                model_version: "3".into(),
                personalized: true,
                items: vec![11, 12],
            }),
            ..sample()
        }
    }

    /// Golden value of v1: chains written before v2 must keep verifying, so
    /// the v1 encoding must never change.
    #[test]
    fn canonical_hash_is_stable() {
        let h = sample().chain_hash("gw-1", 5, &GENESIS);
        assert_eq!(
            hex::encode(h),
            "0acfbf9d26a4cc70bd76e7785a1253f3b0c8822109b47c53cb0072d9e1e8f532"
        );
    }

    /// Golden value of v2: if this changes, the encoding changed and every
    /// stored v2 chain would stop verifying. Add a version instead.
    #[test]
    fn canonical_v2_hash_is_stable() {
        let h = sample_v2().chain_hash("gw-1", 5, &GENESIS);
        assert_eq!(hex::encode(h), V2_GOLDEN);
        // A v2 event without blocks still differs from its v1 twin.
        let bare = AuditEvent {
            format: ENCODING_VERSION,
            ..sample()
        };
        assert_ne!(
            bare.chain_hash("gw-1", 5, &GENESIS),
            sample().chain_hash("gw-1", 5, &GENESIS)
        );
    }

    const V2_GOLDEN: &str = "ea5af250cb671e4ea5f32a2157cf33dabce206c08be08aa23711fdf55428569f";

    #[test]
    fn canonical_decodes_back() {
        let mut e = sample();
        e.purpose = None;
        e.records = u64::MAX;
        e.action = Action::Other("future.code".into());
        let mut v2 = sample_v2();
        v2.served = None;
        v2.policy_version = None;
        for event in [sample(), e, sample_v2(), v2] {
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
        // Every v2 field is covered too.
        let base = sample_v2();
        let h = base.chain_hash("gw-1", 5, &GENESIS);
        let edits: Vec<fn(&mut AuditEvent)> = vec![
            |e| e.policy_version = Some([8; 32]),
            |e| e.policy_version = None,
            |e| {
                e.privacy
                    .as_mut()
                    .into_iter()
                    .for_each(|p| p.epsilon_spent_micros += 1)
            },
            |e| e.privacy.as_mut().into_iter().for_each(|p| p.k += 1),
            |e| {
                e.privacy
                    .as_mut()
                    .into_iter()
                    .for_each(|p| p.suppressed_cells += 1)
            },
            |e| {
                e.privacy
                    .as_mut()
                    .into_iter()
                    .for_each(|p| p.fingerprint[0] ^= 1)
            },
            |e| {
                e.privacy
                    .as_mut()
                    .into_iter()
                    .for_each(|p| p.budget_remaining_micros -= 1)
            },
            |e| {
                e.privacy
                    .as_mut()
                    .into_iter()
                    .for_each(|p| p.mechanism.push('x'))
            },
            |e| {
                e.subject_rights
                    .as_mut()
                    .into_iter()
                    .for_each(|r| r.step.push('x'))
            },
            |e| e.subject_rights = None,
            |e| {
                e.served
                    .as_mut()
                    .into_iter()
                    .for_each(|s| s.personalized = false)
            },
            |e| e.served.as_mut().into_iter().for_each(|s| s.items.push(1)),
        ];
        for edit in edits {
            let mut v = base.clone();
            edit(&mut v);
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
        let e = AuditEvent::builder(&p, Action::CustomerRead, "/v1/customers")
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
