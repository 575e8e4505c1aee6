//! The vault: the running gateway's key material in one place. It opens the
//! master key (environment, key file, or a generated development key),
//! reconciles the KEK versions with the `keys` table, seals customer
//! profiles, opens data keys, and re-wraps data keys when the master key
//! version rotates.

use anyhow::{bail, Context};
use arc_swap::ArcSwap;
use sqlx::Row;
use std::sync::Arc;

use super::{BlindField, BlindIndexer, FieldPlace, Keyring, MasterKey, Pseudonymizer};
use crate::config::{Config, Mode};
use crate::db::customers::{Profile, ProfileSealer, SealedProfile};
use crate::db::Db;
use crate::domain::PurposeId;

/// File name of the generated development master key inside `data_dir`.
pub const DEV_KEY_FILE: &str = "master.key";

pub struct Vault {
    master: MasterKey,
    keyring: ArcSwap<Keyring>,
    blind: BlindIndexer,
    pseudonymizer: Pseudonymizer,
    cursors: super::cursor::CursorSealer,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").finish_non_exhaustive()
    }
}

/// Loads the master key from configuration; in development mode, generates
/// one into the data directory (0600) when none is configured.
pub fn load_master_key(config: &Config) -> anyhow::Result<MasterKey> {
    if let Some(b64) = &config.crypto.master_key {
        return MasterKey::from_base64(b64.expose())
            .map_err(|e| anyhow::anyhow!("crypto.master_key (CUSTODIAN_MASTER_KEY): {e}"));
    }
    if let Some(path) = &config.crypto.master_key_file {
        return super::load_kek_file(path)
            .map_err(|e| anyhow::anyhow!("crypto.master_key_file: {e}"));
    }
    if config.mode == Mode::Production {
        bail!("crypto.master_key_file: production mode needs a master key");
    }
    crate::db::prepare_data_dir(&config.data_dir)?;
    let path = config.data_dir.join(DEV_KEY_FILE);
    if path.exists() {
        return super::load_kek_file(&path)
            .map_err(|e| anyhow::anyhow!("development master key {}: {e}", path.display()));
    }
    let key = super::generate_dev_kek_file(&path)
        .map_err(|e| anyhow::anyhow!("development master key {}: {e}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "GENERATED A DEVELOPMENT MASTER KEY. It protects every personal field in this \
         store; it is for development only. In production set CUSTODIAN_MASTER_KEY or \
         crypto.master_key_file and mode = \"production\"."
    );
    Ok(key)
}

impl Vault {
    /// Opens the vault against the store: the first start records KEK
    /// version 1; later starts check that the configured master key is the
    /// one the stored versions were made with, and refuse otherwise (a wrong
    /// key would make every record unreadable, or worse, be used to write).
    pub async fn open(config: &Config, db: &Db, purposes: &[PurposeId]) -> anyhow::Result<Self> {
        let master = load_master_key(config)?;
        let versions = stored_versions(db).await?;
        let active = match versions.iter().map(|(v, _)| *v).max() {
            Some(v) => u32::try_from(v).context("keys: version out of range")?,
            None => {
                let ring = Keyring::from_master(&master, 1)?;
                match insert_version(db, &ring, 1, 0, None).await {
                    // Another instance started first: its version 1 is checked below.
                    Err(e) if e.is::<VersionTaken>() => {}
                    other => other?,
                }
                1
            }
        };
        let keyring = Keyring::from_master(&master, active)?;
        let versions = if versions.is_empty() {
            stored_versions(db).await?
        } else {
            versions
        };
        for (version, check) in &versions {
            let v = u32::try_from(*version).context("keys: version out of range")?;
            if !keyring.verify_check_value(v, check) {
                bail!(
                    "crypto: the configured master key does not match key version {v} in the store; \
                     refusing to start"
                );
            }
        }
        Ok(Self {
            blind: BlindIndexer::from_master(&master),
            cursors: super::cursor::CursorSealer::from_master(&master),
            pseudonymizer: Pseudonymizer::from_master(&master, purposes.iter()),
            keyring: ArcSwap::from_pointee(keyring),
            master,
        })
    }

    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.load_full()
    }

    /// Seals and opens opaque page cursors (see [`super::cursor`]).
    pub fn cursors(&self) -> &super::cursor::CursorSealer {
        &self.cursors
    }

    pub fn pseudonymizer(&self) -> &Pseudonymizer {
        &self.pseudonymizer
    }

    pub fn blind_index(
        &self,
        field: BlindField,
        value: &str,
    ) -> Option<[u8; super::BLIND_INDEX_LEN]> {
        self.blind.index(field, value)
    }

    /// Re-reads the KEK versions from the store (after a rotation elsewhere).
    pub async fn refresh(&self, db: &Db) -> anyhow::Result<()> {
        let versions = stored_versions(db).await?;
        let max = versions.iter().map(|(v, _)| *v).max().unwrap_or(1);
        let max = u32::try_from(max).context("keys: version out of range")?;
        if max != self.keyring.load().active_version() {
            self.keyring
                .store(Arc::new(Keyring::from_master(&self.master, max)?));
        }
        Ok(())
    }

    /// Adds a KEK version and makes it active for new data keys. The
    /// re-wrap of existing data keys is [`Vault::rewrap_batch`], run by the
    /// rotation job ([`super::rotation`]), which passes itself as `owner` so
    /// that the version and the rotation lease appear in one transaction.
    ///
    /// Fails with [`VersionTaken`] when another instance added the same
    /// version first (two rotations started at once: one of them wins).
    pub async fn add_version(&self, db: &Db, now: i64, owner: Option<&str>) -> anyhow::Result<u32> {
        self.refresh(db).await?;
        let next = self.keyring.load().active_version() + 1;
        let ring = Keyring::from_master(&self.master, next)?;
        insert_version(db, &ring, next, now, owner).await?;
        self.keyring.store(Arc::new(ring));
        Ok(next)
    }

    /// Whether this instance has the KEK of `version` loaded.
    pub fn knows_version(&self, version: i64) -> bool {
        u32::try_from(version).is_ok_and(|v| self.keyring.load().versions().any(|k| k == v))
    }

    /// Makes sure every version in `versions` is loaded, re-reading the
    /// `keys` table once if one is not (another instance rotated). Versions
    /// still unknown afterwards are left to fail at unwrap (integrity).
    pub async fn ensure_versions(
        &self,
        db: &Db,
        versions: impl IntoIterator<Item = i64>,
    ) -> anyhow::Result<()> {
        if versions.into_iter().any(|v| !self.knows_version(v)) {
            self.refresh(db).await?;
        }
        Ok(())
    }

    /// Re-wraps up to `limit` data keys that are not under the active
    /// version. Every key is unwrapped and wrapped again before the
    /// transaction opens, so the write lock is held only for the batch's
    /// small updates (SQLite has one writer: serving waits on nothing long).
    /// Returns how many were re-wrapped (0 when the rotation is complete).
    pub async fn rewrap_batch(&self, db: &Db, limit: i64, now: i64) -> anyhow::Result<u64> {
        let ring = self.keyring.load_full();
        let active = i64::from(ring.active_version());
        let rows = sqlx::query(
            "SELECT customer_id, kek_version, wrapped_dek FROM data_keys \
             WHERE kek_version <> $1 ORDER BY customer_id LIMIT $2",
        )
        .bind(active)
        .bind(limit)
        .fetch_all(&db.pool)
        .await?;
        let mut rewrapped = Vec::with_capacity(rows.len());
        for row in rows {
            let customer_id: i64 = row.try_get(0)?;
            let version: i64 = row.try_get(1)?;
            let wrapped: Vec<u8> = row.try_get(2)?;
            let from = u32::try_from(version).context("data key: bad version")?;
            let new = ring
                .rewrap(from, &wrapped, customer_id, ring.active_version())
                .map_err(|e| anyhow::anyhow!("re-wrap of customer {customer_id}: {e}"))?;
            rewrapped.push((customer_id, version, new));
        }
        let mut done = 0;
        let mut tx = db.pool.begin().await?;
        for (customer_id, version, new) in &rewrapped {
            // Only replace what we read: a concurrent writer wins.
            let updated = sqlx::query(
                "UPDATE data_keys SET kek_version = $1, wrapped_dek = $2, rewrapped_at = $3 \
                 WHERE customer_id = $4 AND kek_version = $5",
            )
            .bind(i64::from(new.kek_version))
            .bind(&new.bytes)
            .bind(now)
            .bind(*customer_id)
            .bind(*version)
            .execute(&mut *tx)
            .await?;
            done += updated.rows_affected();
        }
        tx.commit().await?;
        Ok(done)
    }
}

impl ProfileSealer for Vault {
    fn suppression_keys(
        &self,
        external_id: &str,
        profile: &Profile,
    ) -> Vec<(&'static str, Vec<u8>)> {
        crate::dsr::suppression::keys(
            self,
            Some(external_id),
            profile.email.as_deref(),
            profile.phone.as_deref(),
        )
    }

    fn seal(&self, customer_id: i64, profile: &Profile) -> anyhow::Result<SealedProfile> {
        let ring = self.keyring.load();
        let dek = ring.generate_dek()?;
        let wrapped = ring.wrap_dek(&dek, customer_id)?;
        let cipher = dek.cipher();
        let enc = |field: &str, value: &Option<String>| -> anyhow::Result<Option<Vec<u8>>> {
            value
                .as_deref()
                .map(|v| {
                    cipher.encrypt(
                        FieldPlace {
                            resource: "customer",
                            field,
                            record_id: customer_id,
                        },
                        v.as_bytes(),
                    )
                })
                .transpose()
                .map_err(|e| anyhow::anyhow!("sealing {field}: {e}"))
        };
        let bidx = |field: BlindField, value: &Option<String>| {
            value
                .as_deref()
                .and_then(|v| self.blind.index(field, v))
                .map(|b| b.to_vec())
        };
        Ok(SealedProfile {
            email_ct: enc("email", &profile.email)?,
            email_bidx: bidx(BlindField::Email, &profile.email),
            phone_ct: enc("phone", &profile.phone)?,
            phone_bidx: bidx(BlindField::Phone, &profile.phone),
            name_ct: enc("name", &profile.name)?,
            birth_date_ct: enc("birth_date", &profile.birth_date)?,
            postcode_ct: enc("postcode", &profile.postcode)?,
            kek_version: i64::from(wrapped.kek_version),
            wrapped_dek: wrapped.bytes,
        })
    }
}

async fn stored_versions(db: &Db) -> anyhow::Result<Vec<(i64, Vec<u8>)>> {
    let rows = sqlx::query("SELECT version, check_value FROM keys ORDER BY version")
        .fetch_all(&db.pool)
        .await
        .context("reading key versions")?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()
        .context("decoding key versions")
}

/// Another instance recorded this key version first.
#[derive(Debug, thiserror::Error)]
#[error("key version {0} was added concurrently by another instance")]
pub struct VersionTaken(pub u32);

async fn insert_version(
    db: &Db,
    ring: &Keyring,
    version: u32,
    now: i64,
    owner: Option<&str>,
) -> anyhow::Result<()> {
    let check = ring
        .check_value(version)
        .context("keys: new version missing from keyring")?;
    let mut tx = db.pool.begin().await?;
    let inserted = sqlx::query(
        "INSERT INTO keys (version, check_value, status, created_at, rotation_started_at, \
         rotation_owner, rotation_heartbeat_at) \
         VALUES ($1, $2, 'active', $3, $4, $5, $6) ON CONFLICT (version) DO NOTHING",
    )
    .bind(i64::from(version))
    .bind(check.to_vec())
    .bind(now)
    .bind(if version > 1 { Some(now) } else { None })
    .bind(owner)
    .bind(owner.map(|_| now))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        tx.rollback().await?;
        return Err(VersionTaken(version).into());
    }
    sqlx::query("UPDATE keys SET status = 'retired' WHERE status = 'active' AND version <> $1")
        .bind(i64::from(version))
        .execute(&mut *tx)
        .await?;
    tx.commit().await.context("recording key version")?;
    Ok(())
}

// --- data subject rights (src/dsr) -------------------------------------------

impl Vault {
    /// A keyed digest of a customer's external id, kept after erasure (the
    /// id itself is replaced by a tombstone) so that the old id answers
    /// 410 and a new request for it is refused, without storing the id.
    /// `HMAC-SHA256(HKDF(master, "custodian erased subject v1"), external_id)`.
    pub fn subject_digest(&self, external_id: &str) -> [u8; 32] {
        let key = self
            .master
            .prk()
            .expand32(&[b"custodian erased subject v1"]);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_slice());
        let tag = ring::hmac::sign(&key, external_id.as_bytes());
        let mut out = [0u8; 32];
        out.iter_mut().zip(tag.as_ref()).for_each(|(d, s)| *d = *s);
        out
    }
}
