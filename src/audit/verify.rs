//! Verification: recomputes every chain and checks every checkpoint, from
//! the store (streaming each instance in stored order, 500 blocks a page) or
//! from an exported NDJSON file offline. Reports the first problem found.
//!
//! How a problem is classified (events are visited in stored order: blocks
//! by key, events as laid out in their block; `p` is the previous event of
//! the same chain):
//! - **deleted**: a gap in seq, or a chain that starts after seq 1 without a
//!   signed checkpoint at `first - 1` vouching for its `prev_hash`;
//! - **inserted**: the event does not chain from `p` but from `p`'s own
//!   predecessor (two events claim one parent: `p` was inserted, named), or
//!   a self-consistent event that chains from no nearby event (forged);
//! - **reordered**: the event chains from a nearby event other than `p`;
//! - **modified**: the event links correctly but its content no longer
//!   hashes to its stored hash (or cannot be decoded);
//! - **checkpoint_mismatch**: a signed checkpoint's hash differs from the
//!   event at its seq (the chain was rewritten and re-hashed before it);
//! - **truncated**: a signed checkpoint names a seq beyond the chain's end;
//! - **bad_signature**: a checkpoint signature does not verify, or it was
//!   made by a key the verifier was not given.

use std::collections::VecDeque;
use std::fmt;
use std::io::BufRead;

use super::event::{Hash, GENESIS};
use super::export::Line;
use super::key::{Checkpoint, PublicKey};
use super::store::{self, ReadRow};
use crate::db::Db;

/// Blocks per page (a block holds one writer batch, up to `audit.max_batch`
/// events).
const PAGE: i64 = 500;
/// How many rows around the current one are searched when classifying a
/// broken link as reordered.
const WINDOW: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    Modified,
    Deleted,
    Inserted,
    Reordered,
    Truncated,
    CheckpointMismatch,
    BadSignature,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Modified => "modified",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Truncated => "truncated",
            ProblemKind::CheckpointMismatch => "checkpoint_mismatch",
            ProblemKind::BadSignature => "bad_signature",
        }
    }
}

/// The first problem: which chain, which seq, what kind, and a detail line
/// (ids and hashes only, never event content).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub instance: String,
    pub seq: i64,
    pub kind: ProblemKind,
    pub detail: String,
}

/// What a verification could check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerifyMode {
    /// The store itself, every chain in full.
    #[default]
    Store,
    /// A complete export with a valid signed manifest.
    FullExport,
    /// A filtered export with a valid signed manifest: every event it
    /// claims is there and links; what the filter left out is not checked.
    FilteredExport,
    /// An export without a signed manifest or without any checkpoint: its
    /// hashes are consistent, but nothing proves it is all it claims.
    Unverified,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Store => "store",
            VerifyMode::FullExport => "full export, signed manifest",
            VerifyMode::FilteredExport => "filtered export, signed manifest",
            VerifyMode::Unverified => "unverified",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub chains: u64,
    pub events: u64,
    pub checkpoints: u64,
    pub problem: Option<Problem>,
    pub mode: VerifyMode,
    /// What this verification could not check (empty for the store and for
    /// a full export).
    pub unchecked: Option<String>,
}

impl VerifyReport {
    /// True only when nothing is wrong *and* the mode proves completeness
    /// (store or full export); a filtered or unverified export is never
    /// "intact".
    pub fn is_intact(&self) -> bool {
        self.problem.is_none() && matches!(self.mode, VerifyMode::Store | VerifyMode::FullExport)
    }

    /// No problem found in what could be checked.
    pub fn is_consistent(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            None if self.mode == VerifyMode::Store => write!(
                f,
                "intact: {} events, {} checkpoints, {} chains",
                self.events, self.checkpoints, self.chains
            ),
            None if self.mode == VerifyMode::FullExport => write!(
                f,
                "intact ({}): {} events, {} checkpoints, {} chains",
                self.mode.as_str(),
                self.events,
                self.checkpoints,
                self.chains
            ),
            None => write!(
                f,
                "{} ({}): {} events, {} checkpoints, {} chains consistent; NOT CHECKED: {}",
                if self.mode == VerifyMode::Unverified {
                    "UNVERIFIED"
                } else {
                    "PARTIAL"
                },
                self.mode.as_str(),
                self.events,
                self.checkpoints,
                self.chains,
                self.unchecked.as_deref().unwrap_or("completeness")
            ),
            Some(p) => write!(
                f,
                "FAILED: instance {} seq {}: {}: {} (after {} intact events)",
                p.instance,
                p.seq,
                p.kind.as_str(),
                p.detail,
                self.events
            ),
        }
    }
}

/// Verifies every chain in the store. `progress` is called with the number
/// of events verified so far (after each page).
pub async fn verify_store(
    db: &Db,
    keys: &[PublicKey],
    progress: &(dyn Fn(u64) + Send + Sync),
) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    for instance in store::instances(db).await? {
        let checkpoints = store::checkpoints(db, &instance).await?;
        let mut chain = ChainCheck::new(instance.clone(), keys, true);
        for cp in checkpoints {
            chain.add_checkpoint(cp);
        }
        let mut after = 0;
        let outcome = loop {
            let (rows, next) = store::blocks_from(db, &instance, after, PAGE).await?;
            let Some(next) = next else {
                break chain.finish();
            };
            after = next;
            if let Err(p) = rows.into_iter().try_for_each(|r| chain.push(r)) {
                break Err(p);
            }
            progress(report.events + chain.events);
        };
        if let Err(p) = report.add(&chain, outcome) {
            report.problem = Some(p);
            return Ok(report);
        }
    }
    Ok(report)
}

/// Verifies an NDJSON export (see `export`) offline, streaming. A filtered
/// export is checked for what it contains (each event's hash, links between
/// consecutive seqs, signatures and hashes of checkpoints); gaps are then
/// expected and allowed, and truncation cannot be detected.
pub fn verify_ndjson(
    reader: impl BufRead,
    keys: &[PublicKey],
    progress: &dyn Fn(u64),
) -> anyhow::Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut strict = true;
    let mut header_filtered = false;
    let mut chain: Option<ChainCheck<'_>> = None;
    // What the file holds, per chain, to hold against the signed manifest.
    let mut seen = super::export::ManifestBody::default();
    let mut manifest: Option<super::export::Manifest> = None;
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = match serde_json::from_str(&line) {
            Ok(l) => l,
            Err(e) => {
                // Name the seq when the damaged line still shows it.
                let value = serde_json::from_str::<serde_json::Value>(&line).ok();
                let field = |k: &str| value.as_ref().and_then(|v| v.get(k).cloned());
                report.problem = Some(Problem {
                    instance: field("instance")
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    seq: field("seq").and_then(|v| v.as_i64()).unwrap_or(0),
                    kind: ProblemKind::Modified,
                    detail: format!("line {} is not a valid export line: {e}", n + 1),
                });
                return Ok(report);
            }
        };
        let instance = match &parsed {
            Line::Header(h) => {
                strict = !h.filtered;
                header_filtered = h.filtered;
                continue;
            }
            Line::Manifest(m) => {
                manifest = Some(m.clone());
                continue;
            }
            Line::Checkpoint(cp) => cp.instance.clone(),
            Line::Event(e) => e.instance.clone(),
        };
        if chain.as_ref().is_some_and(|c| c.instance != instance) {
            if let Some(done) = chain.take() {
                if let Err(p) = finish_into(&mut report, done) {
                    report.problem = Some(p);
                    return Ok(report);
                }
            }
        }
        let c = chain.get_or_insert_with(|| ChainCheck::new(instance, keys, strict));
        let pushed = match parsed {
            Line::Header(_) | Line::Manifest(_) => Ok(()),
            Line::Checkpoint(cp) => {
                c.add_checkpoint(cp.into_checkpoint());
                Ok(())
            }
            Line::Event(e) => {
                seen.count(&e);
                c.push(ReadRow::Ok(*e))
            }
        };
        if let Err(p) = pushed {
            report.events += c.events;
            report.problem = Some(p);
            return Ok(report);
        }
        if c.events % 10_000 == 0 {
            progress(report.events + c.events);
        }
    }
    if let Some(done) = chain.take() {
        if let Err(p) = finish_into(&mut report, done) {
            report.problem = Some(p);
            return Ok(report);
        }
    }
    check_manifest(&mut report, manifest, &seen, header_filtered, keys);
    Ok(report)
}

/// Holds the file to its signed manifest and sets the report's mode. The
/// header's `filtered` flag is not signed: the manifest's filter decides.
fn check_manifest(
    report: &mut VerifyReport,
    manifest: Option<super::export::Manifest>,
    seen: &super::export::ManifestBody,
    header_filtered: bool,
    keys: &[PublicKey],
) {
    let Some(m) = manifest else {
        report.mode = VerifyMode::Unverified;
        report.unchecked = Some(
            "the export has no signed manifest: events may have been removed or added".to_owned(),
        );
        return;
    };
    let problem = |kind, detail: String| Problem {
        instance: String::new(),
        seq: 0,
        kind,
        detail,
    };
    let key = keys.iter().find(|k| k.key_id() == m.key_id);
    let signature = hex::decode(&m.signature).unwrap_or_default();
    if !key.is_some_and(|k| k.verify_manifest(&m.body.canonical(), &signature)) {
        report.problem = Some(problem(
            ProblemKind::BadSignature,
            format!(
                "the export manifest's signature (key {}) does not verify with the keys given",
                m.key_id
            ),
        ));
        return;
    }
    let filtered = !m.body.filter.is_empty();
    if filtered != header_filtered {
        report.problem = Some(problem(
            ProblemKind::Modified,
            "the header's `filtered` flag contradicts the signed manifest".to_owned(),
        ));
        return;
    }
    for (i, claimed) in m.body.chains.iter().enumerate() {
        let found = seen.chains.iter().find(|c| c.instance == claimed.instance);
        if found != Some(claimed) {
            let events = found.map_or(0, |c| c.events);
            report.problem = Some(Problem {
                instance: claimed.instance.clone(),
                seq: claimed.first_seq,
                kind: ProblemKind::Deleted,
                detail: format!(
                    "the signed manifest lists {} events (seq {}..={}) for this chain; the file holds {events} \
                     or other ends (chain {} of the manifest)",
                    claimed.events,
                    claimed.first_seq,
                    claimed.last_seq,
                    i + 1
                ),
            });
            return;
        }
    }
    if let Some(extra) = seen
        .chains
        .iter()
        .find(|c| !m.body.chains.iter().any(|m| m.instance == c.instance))
    {
        report.problem = Some(Problem {
            instance: extra.instance.clone(),
            seq: extra.first_seq,
            kind: ProblemKind::Inserted,
            detail: "a chain the signed manifest does not list".to_owned(),
        });
        return;
    }
    if report.checkpoints == 0 {
        report.mode = VerifyMode::Unverified;
        report.unchecked =
            Some("no signed checkpoint in the export: the chains are not anchored".to_owned());
    } else if filtered {
        report.mode = VerifyMode::FilteredExport;
        report.unchecked = Some(format!(
            "events outside the filter ({}) and the chain beyond the exported events",
            m.body.filter
        ));
    } else {
        report.mode = VerifyMode::FullExport;
    }
}

fn finish_into(report: &mut VerifyReport, mut chain: ChainCheck<'_>) -> Result<(), Problem> {
    let outcome = chain.finish();
    report.add(&chain, outcome)
}

impl VerifyReport {
    fn add(&mut self, chain: &ChainCheck<'_>, outcome: Result<(), Problem>) -> Result<(), Problem> {
        self.chains += 1;
        self.events += chain.events;
        self.checkpoints += chain.checkpoints_ok;
        outcome
    }
}

struct Prev {
    seq: i64,
    hash: Hash,
    prev_hash: Hash,
}

/// The verifier of one chain. Rows are pushed in seq order and checked once
/// [`WINDOW`] later rows are buffered, so a broken link can be classified by
/// looking ahead.
struct ChainCheck<'k> {
    instance: String,
    keys: Vec<(String, &'k PublicKey)>,
    strict: bool,
    /// Not yet reached, in seq order.
    checkpoints: VecDeque<Checkpoint>,
    /// The last checkpoint passed before the first event (the anchor of a
    /// pruned chain).
    anchor: Option<(i64, Hash)>,
    buffer: VecDeque<ReadRow>,
    recent: VecDeque<Hash>,
    prev: Option<Prev>,
    events: u64,
    checkpoints_ok: u64,
}

impl<'k> ChainCheck<'k> {
    fn new(instance: String, keys: &'k [PublicKey], strict: bool) -> Self {
        Self {
            instance,
            keys: keys.iter().map(|k| (k.key_id(), k)).collect(),
            strict,
            checkpoints: VecDeque::new(),
            anchor: None,
            buffer: VecDeque::with_capacity(WINDOW + 1),
            recent: VecDeque::with_capacity(WINDOW + 1),
            prev: None,
            events: 0,
            checkpoints_ok: 0,
        }
    }

    fn add_checkpoint(&mut self, cp: Checkpoint) {
        let at = self.checkpoints.partition_point(|c| c.seq < cp.seq);
        self.checkpoints.insert(at, cp);
    }

    fn push(&mut self, row: ReadRow) -> Result<(), Problem> {
        self.buffer.push_back(row);
        while self.buffer.len() > WINDOW {
            if let Some(r) = self.buffer.pop_front() {
                self.check(r)?;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), Problem> {
        while let Some(r) = self.buffer.pop_front() {
            self.check(r)?;
        }
        let last = self.prev.as_ref().map_or(0, |p| p.seq);
        while let Some(cp) = self.checkpoints.pop_front() {
            self.check_signature(&cp)?;
            if self.strict && cp.seq > last {
                return Err(self.problem(
                    last + 1,
                    ProblemKind::Truncated,
                    format!(
                        "a signed checkpoint vouches for seq {} but the chain ends at seq {last}",
                        cp.seq
                    ),
                ));
            }
        }
        Ok(())
    }

    fn problem(&self, seq: i64, kind: ProblemKind, detail: String) -> Problem {
        Problem {
            instance: self.instance.clone(),
            seq,
            kind,
            detail,
        }
    }

    fn check_signature(&mut self, cp: &Checkpoint) -> Result<(), Problem> {
        let Some((_, key)) = self.keys.iter().find(|(id, _)| *id == cp.key_id) else {
            return Err(self.problem(
                cp.seq,
                ProblemKind::BadSignature,
                format!(
                    "checkpoint signed by key {}, which was not given",
                    cp.key_id
                ),
            ));
        };
        if !key.verify(cp) {
            return Err(self.problem(
                cp.seq,
                ProblemKind::BadSignature,
                "checkpoint signature does not verify".to_owned(),
            ));
        }
        self.checkpoints_ok += 1;
        Ok(())
    }

    fn check(&mut self, row: ReadRow) -> Result<(), Problem> {
        let r = match row {
            ReadRow::Ok(r) => r,
            ReadRow::Bad { seq, why } => {
                return Err(self.problem(seq, ProblemKind::Modified, format!("unreadable: {why}")))
            }
        };
        // Checkpoints before this row: signatures, and the anchor.
        while let Some(cp) = self.checkpoints.front().filter(|c| c.seq < r.seq).cloned() {
            self.checkpoints.pop_front();
            self.check_signature(&cp)?;
            if self.prev.is_none() {
                self.anchor = Some((cp.seq, cp.hash));
            }
        }
        let expected = match &self.prev {
            Some(p) => Some((p.seq + 1, p.hash)),
            None if r.seq == 1 => Some((1, GENESIS)),
            None => match self.anchor {
                Some((seq, hash)) if seq == r.seq - 1 => Some((r.seq, hash)),
                _ if self.strict => {
                    return Err(self.problem(
                        r.seq - 1,
                        ProblemKind::Deleted,
                        format!(
                            "the chain starts at seq {} and no signed checkpoint at seq {} \
                             vouches for the events before it",
                            r.seq,
                            r.seq - 1
                        ),
                    ))
                }
                _ => None,
            },
        };
        if let Some((seq, prev_hash)) = expected {
            if r.seq > seq && self.strict {
                return Err(self.problem(
                    seq,
                    ProblemKind::Deleted,
                    format!("seq {seq} to {} are missing", r.seq - 1),
                ));
            }
            if r.seq < seq {
                return Err(self.problem(
                    r.seq,
                    ProblemKind::Reordered,
                    format!("seq {} appears after seq {}", r.seq, seq - 1),
                ));
            }
            if r.seq == seq && r.prev_hash != prev_hash {
                return Err(self.classify_broken_link(&r));
            }
        }
        if !r.self_consistent() {
            return Err(self.problem(
                r.seq,
                ProblemKind::Modified,
                "content does not match the stored hash".to_owned(),
            ));
        }
        if let Some(cp) = self.checkpoints.front().filter(|c| c.seq == r.seq).cloned() {
            self.checkpoints.pop_front();
            self.check_signature(&cp)?;
            if cp.hash != r.hash {
                return Err(self.problem(
                    r.seq,
                    ProblemKind::CheckpointMismatch,
                    "the signed checkpoint's hash differs from the event's: the chain was \
                     rewritten at or before this seq"
                        .to_owned(),
                ));
            }
        }
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(r.hash);
        self.prev = Some(Prev {
            seq: r.seq,
            hash: r.hash,
            prev_hash: r.prev_hash,
        });
        self.events += 1;
        Ok(())
    }

    fn classify_broken_link(&self, r: &store::StoredEvent) -> Problem {
        if let Some(p) = self.prev.as_ref().filter(|p| p.prev_hash == r.prev_hash) {
            return self.problem(
                p.seq,
                ProblemKind::Inserted,
                format!(
                    "seq {} and seq {} both chain from seq {}: seq {} was inserted",
                    p.seq,
                    r.seq,
                    p.seq - 1,
                    p.seq
                ),
            );
        }
        let ahead = self
            .buffer
            .iter()
            .any(|b| matches!(b, ReadRow::Ok(b) if b.hash == r.prev_hash));
        if ahead || self.recent.contains(&r.prev_hash) {
            return self.problem(
                r.seq,
                ProblemKind::Reordered,
                "chains from another event than its predecessor".to_owned(),
            );
        }
        if r.self_consistent() {
            return self.problem(
                r.seq,
                ProblemKind::Inserted,
                "a self-consistent event that does not chain from its predecessor (forged)"
                    .to_owned(),
            );
        }
        self.problem(
            r.seq,
            ProblemKind::Modified,
            "prev_hash does not match its predecessor".to_owned(),
        )
    }
}

/// The latest signed checkpoint of every chain: the "head" an auditor keeps
/// (outside the operator's reach) to hold the trail to later.
pub async fn heads(db: &Db) -> anyhow::Result<Vec<Checkpoint>> {
    let mut out = Vec::new();
    for instance in store::instances(db).await? {
        if let Some(cp) = store::checkpoints(db, &instance).await?.pop() {
            out.push(cp);
        }
    }
    Ok(out)
}

/// The consistency check transparency-log monitors make: every head saved
/// earlier must verify under `keys`, and the trail must still contain it
/// and extend it: the same hash at the same seq (as an event, or as a
/// stored checkpoint where the events were pruned) with the chain going on
/// from there. A rollback (the tail deleted with the checkpoints above it)
/// or a rewrite fails, naming the gap.
pub async fn check_since(
    db: &Db,
    keys: &[PublicKey],
    saved: &[Checkpoint],
) -> anyhow::Result<Option<Problem>> {
    for head in saved {
        let problem = |kind, detail: String| Problem {
            instance: head.instance.clone(),
            seq: head.seq,
            kind,
            detail,
        };
        let key = keys.iter().find(|k| k.key_id() == head.key_id);
        if !key.is_some_and(|k| k.verify(head)) {
            return Ok(Some(problem(
                ProblemKind::BadSignature,
                format!(
                    "the saved head is not signed by a given key (key {})",
                    head.key_id
                ),
            )));
        }
        let (last, _) = store::chain_head(db, &head.instance).await?;
        if last < head.seq {
            return Ok(Some(problem(
                ProblemKind::Truncated,
                format!(
                    "the saved head vouches for seq {} but the chain now ends at seq {last}: \
                     seqs {}..={} are gone (rolled back)",
                    head.seq,
                    last + 1,
                    head.seq
                ),
            )));
        }
        let stored_cp = store::checkpoints(db, &head.instance)
            .await?
            .into_iter()
            .find(|c| c.seq == head.seq);
        let event = store::events_after(db, &head.instance, head.seq.saturating_sub(1), 1)
            .await?
            .into_iter()
            .find(|r| r.seq() == head.seq);
        let found = match event {
            Some(ReadRow::Ok(e)) => Some(e.hash),
            Some(ReadRow::Bad { .. }) => None,
            None => stored_cp.map(|c| c.hash),
        };
        match found {
            Some(hash) if hash == head.hash => {}
            Some(_) => {
                return Ok(Some(problem(
                    ProblemKind::CheckpointMismatch,
                    "the trail holds another event at the saved head's seq: it was rolled back \
                     and rewritten"
                        .to_owned(),
                )))
            }
            None => {
                return Ok(Some(problem(
                    ProblemKind::Deleted,
                    "the saved head's event and checkpoint are gone from the trail: it was \
                     rolled back (the chain continues after a gap)"
                        .to_owned(),
                )))
            }
        }
    }
    Ok(None)
}
