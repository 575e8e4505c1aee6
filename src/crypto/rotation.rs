//! KEK rotation: add a key version, then re-wrap every customer's data key
//! under it in small batches while the gateway keeps serving.
//!
//! * **No downtime.** Field ciphertexts are never touched (they are under the
//!   DEKs, which do not change); only the 61-byte wrapped DEKs are. Every KEK
//!   version stays in the keyring, so a reader that fetched a DEK wrapped
//!   under the old version still unwraps it after the row was re-wrapped.
//! * **One rotation at a time, across instances.** The job holds a lease on
//!   the target version's `keys` row (`rotation_owner`,
//!   `rotation_heartbeat_at`), renewed before every batch. Starting a
//!   rotation while another one holds a live lease is refused
//!   ([`RotationError::InProgress`], HTTP 409); two instances adding the same
//!   version at once cannot both win (the insert is conditional).
//! * **Resumable.** A rotation is unfinished while some DEK is under another
//!   version than the active one, or the active version's
//!   `rotation_finished_at` is unset. Starting a rotation then resumes that
//!   one instead of adding a version; instances also resume it on their own
//!   (at start and every minute) once its lease is stale, so a crash midway
//!   loses nothing and only delays completion.
//! * **Progress** is in the store: `rotation_started_at` /
//!   `rotation_finished_at` on the version's row and the count of DEKs not
//!   yet under it ([`status`]).
//!
//! Instances that did not run the rotation learn the new version through
//! [`Vault::refresh`]: on the first unknown version they read, and every few
//! seconds from [`spawn_background`].

use anyhow::Context;
use serde::Serialize;
use sqlx::Row;
use std::time::Duration;
use utoipa::ToSchema;

use super::vault::{Vault, VersionTaken};
use crate::clock::{rfc3339, SharedClock};
use crate::db::Db;

/// A lease not renewed for this long is considered abandoned (microseconds).
pub const LEASE_MICROS: i64 = 60_000_000;
/// Data keys re-wrapped per transaction by default.
pub const DEFAULT_BATCH: i64 = 500;
/// How often a serving instance re-reads the key versions.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How often a serving instance looks for an abandoned rotation to resume.
pub const RESUME_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// Another job (here or on another instance) holds a live lease.
    #[error("a key rotation is already in progress")]
    InProgress,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// A rotation this caller now owns and must [`run`].
#[derive(Clone, Debug)]
pub struct Started {
    /// The version every DEK is being re-wrapped to.
    pub version: u32,
    /// `true` when an unfinished rotation was taken over instead of a new
    /// version being added.
    pub resumed: bool,
    /// The lease holder id (instance plus a random job id).
    pub owner: String,
}

/// The lease holder id for a new job of `instance`.
pub fn owner_id(instance: &str) -> String {
    format!("{instance}/{}", uuid::Uuid::new_v4().simple())
}

/// Starts a rotation, or takes over an unfinished one whose lease is stale.
/// With `resume_only`, never adds a version (`Ok(None)` if nothing is
/// unfinished).
pub async fn start(
    vault: &Vault,
    db: &Db,
    owner: String,
    now: i64,
    resume_only: bool,
) -> Result<Option<Started>, RotationError> {
    vault.refresh(db).await?;
    let active = i64::from(vault.keyring().active_version());
    if unfinished(db, active).await? {
        if !claim(db, active, &owner, now).await? {
            return Err(RotationError::InProgress);
        }
        return Ok(Some(Started {
            version: version_u32(active)?,
            resumed: true,
            owner,
        }));
    }
    if resume_only {
        return Ok(None);
    }
    match vault.add_version(db, now, Some(&owner)).await {
        Ok(version) => Ok(Some(Started {
            version,
            resumed: false,
            owner,
        })),
        Err(e) if e.is::<VersionTaken>() => Err(RotationError::InProgress),
        Err(e) => Err(e.into()),
    }
}

/// What a finished job did.
#[derive(Clone, Copy, Debug)]
pub struct Report {
    pub version: u32,
    pub rewrapped: u64,
}

/// Re-wraps every DEK to `job.version`, `batch` per transaction, renewing
/// the lease before each batch; marks the version's rotation finished.
/// `progress(rewrapped so far, remaining)` is called after each batch.
/// On error the lease is released so that the rotation can be resumed at
/// once.
pub async fn run(
    vault: &Vault,
    db: &Db,
    clock: &SharedClock,
    job: &Started,
    batch: i64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> anyhow::Result<Report> {
    let result = run_inner(vault, db, clock, job, batch.max(1), progress).await;
    if result.is_err() {
        let _ = sqlx::query(
            "UPDATE keys SET rotation_owner = NULL, rotation_heartbeat_at = NULL \
             WHERE version = $1 AND rotation_owner = $2",
        )
        .bind(i64::from(job.version))
        .bind(&job.owner)
        .execute(&db.pool)
        .await;
    }
    result
}

async fn run_inner(
    vault: &Vault,
    db: &Db,
    clock: &SharedClock,
    job: &Started,
    batch: i64,
    progress: &(dyn Fn(u64, u64) + Send + Sync),
) -> anyhow::Result<Report> {
    let version = i64::from(job.version);
    vault.refresh(db).await?;
    anyhow::ensure!(
        vault.keyring().active_version() == job.version,
        "key version {} is no longer the active one; not re-wrapping to it",
        job.version
    );
    let mut rewrapped = 0u64;
    let mut idle = 0u32;
    loop {
        anyhow::ensure!(
            claim(db, version, &job.owner, clock.now_micros()).await?,
            "lost the rotation lease of key version {version} to another instance"
        );
        let done = vault
            .rewrap_batch(db, batch, clock.now_micros())
            .await
            .context("re-wrapping a batch of data keys")?;
        rewrapped += done;
        let left = remaining(db, version).await?;
        metrics::gauge!("custodian_key_rotation_remaining").set(left as f64);
        metrics::counter!("custodian_key_rotation_rewrapped_total").increment(done);
        progress(rewrapped, left);
        if left == 0 {
            break;
        }
        if done == 0 {
            // Rows changed under us (a concurrent writer replaced a DEK):
            // retry a few times, then give up and leave it to a resume.
            idle += 1;
            anyhow::ensure!(
                idle < 20,
                "no progress re-wrapping the last {left} data keys"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else {
            idle = 0;
            // Let serving requests have the store between batches.
            tokio::task::yield_now().await;
        }
    }
    sqlx::query(
        "UPDATE keys SET rotation_finished_at = $1, rotation_owner = NULL, \
         rotation_heartbeat_at = NULL WHERE version = $2 AND rotation_owner = $3",
    )
    .bind(clock.now_micros())
    .bind(version)
    .bind(&job.owner)
    .execute(&db.pool)
    .await
    .context("recording the end of the rotation")?;
    Ok(Report {
        version: job.version,
        rewrapped,
    })
}

/// Takes or renews the lease on `version` for `owner`.
async fn claim(db: &Db, version: i64, owner: &str, now: i64) -> anyhow::Result<bool> {
    let updated = sqlx::query(
        "UPDATE keys SET rotation_owner = $1, rotation_heartbeat_at = $2, \
         rotation_started_at = COALESCE(rotation_started_at, $2) \
         WHERE version = $3 AND (rotation_owner IS NULL OR rotation_owner = $1 \
         OR rotation_heartbeat_at IS NULL OR rotation_heartbeat_at < $4)",
    )
    .bind(owner)
    .bind(now)
    .bind(version)
    .bind(now - LEASE_MICROS)
    .execute(&db.pool)
    .await
    .context("claiming the rotation lease")?
    .rows_affected();
    Ok(updated == 1)
}

/// Whether the rotation to `active` still has work (or its end unrecorded).
async fn unfinished(db: &Db, active: i64) -> anyhow::Result<bool> {
    if remaining(db, active).await? > 0 {
        return Ok(true);
    }
    let row = sqlx::query(
        "SELECT rotation_started_at, rotation_finished_at FROM keys WHERE version = $1",
    )
    .bind(active)
    .fetch_optional(&db.pool)
    .await
    .context("reading the active key version")?;
    Ok(match row {
        Some(row) => {
            let started: Option<i64> = row.try_get(0)?;
            let finished: Option<i64> = row.try_get(1)?;
            started.is_some() && finished.is_none()
        }
        None => false,
    })
}

/// DEKs not yet under `version`.
async fn remaining(db: &Db, version: i64) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM data_keys WHERE kek_version <> $1")
        .bind(version)
        .fetch_one(&db.pool)
        .await
        .context("counting data keys to re-wrap")?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn version_u32(v: i64) -> anyhow::Result<u32> {
    u32::try_from(v).context("keys: version out of range")
}

/// One KEK version as reported to operators: metadata only.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct VersionInfo {
    pub version: u32,
    /// `active` (wraps new data keys) or `retired` (still unwraps).
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// How many customers' data keys are wrapped under this version.
    pub data_keys: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation_finished_at: Option<String>,
}

/// The state of the latest rotation.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RotationInfo {
    /// `idle` (nothing to do), `running` (a job holds a live lease) or
    /// `interrupted` (work left, no live job; it will be resumed).
    pub state: String,
    /// The active version, i.e. the one data keys are re-wrapped to.
    pub target_version: u32,
    /// Data keys not yet under the target version.
    pub remaining: u64,
}

/// `GET /v1/admin/keys` and `custodian keys status`. Never key material
/// (not even the check values).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct KeyStatus {
    pub versions: Vec<VersionInfo>,
    pub rotation: RotationInfo,
}

/// Reads versions, DEK counts and rotation progress from the store.
pub async fn status(db: &Db, now: i64) -> anyhow::Result<KeyStatus> {
    let counts: Vec<(i64, i64)> = sqlx::query(
        "SELECT kek_version, COUNT(*) FROM data_keys GROUP BY kek_version ORDER BY kek_version",
    )
    .fetch_all(&db.pool)
    .await
    .context("counting data keys per version")?
    .iter()
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let rows = sqlx::query(
        "SELECT version, status, created_at, rotation_started_at, rotation_finished_at, \
         rotation_owner, rotation_heartbeat_at FROM keys ORDER BY version",
    )
    .fetch_all(&db.pool)
    .await
    .context("reading key versions")?;
    let mut versions = Vec::with_capacity(rows.len());
    let mut active: Option<(u32, bool)> = None;
    for row in &rows {
        let version: i64 = row.try_get(0)?;
        let status: String = row.try_get(1)?;
        let created_at: i64 = row.try_get(2)?;
        let started: Option<i64> = row.try_get(3)?;
        let finished: Option<i64> = row.try_get(4)?;
        let owner: Option<String> = row.try_get(5)?;
        let heartbeat: Option<i64> = row.try_get(6)?;
        let v = version_u32(version)?;
        if status == "active" || active.is_none_or(|(a, _)| a < v) {
            let live = owner.is_some() && heartbeat.is_some_and(|h| h >= now - LEASE_MICROS);
            active = Some((v, live));
        }
        let data_keys = counts
            .iter()
            .find(|(k, _)| *k == version)
            .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0));
        versions.push(VersionInfo {
            version: v,
            status,
            created_at: rfc3339(created_at),
            data_keys,
            rotation_started_at: started.map(rfc3339),
            rotation_finished_at: finished.map(rfc3339),
        });
    }
    let (target, live) = active.unwrap_or((1, false));
    let left = remaining(db, i64::from(target)).await?;
    let open = left > 0
        || versions.iter().any(|v| {
            v.version == target
                && v.rotation_started_at.is_some()
                && v.rotation_finished_at.is_none()
        });
    let state = match (open, live) {
        (_, true) => "running",
        (true, false) => "interrupted",
        (false, false) => "idle",
    };
    Ok(KeyStatus {
        versions,
        rotation: RotationInfo {
            state: state.to_owned(),
            target_version: target,
            remaining: left,
        },
    })
}
