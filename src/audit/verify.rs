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

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub chains: u64,
    pub events: u64,
    pub checkpoints: u64,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            None => write!(
                f,
                "intact: {} events, {} checkpoints, {} chains",
                self.events, self.checkpoints, self.chains
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
    let mut chain: Option<ChainCheck<'_>> = None;
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
            Line::Header(_) => Ok(()),
            Line::Checkpoint(cp) => {
                c.add_checkpoint(cp.into_checkpoint());
                Ok(())
            }
            Line::Event(e) => c.push(ReadRow::Ok(*e)),
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
        }
    }
    Ok(report)
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
