//! Customer rows. Personal fields arrive here as a plaintext [`Profile`] and
//! leave for the database only sealed (encrypted, plus blind indexes) by a
//! [`ProfileSealer`]; this module never writes a personal value in clear.

use crate::domain::BlindField;
use sqlx::{Any, Transaction};
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The personal fields of a customer, in clear. Zeroized on drop and never
/// `Debug`-printed.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct Profile {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub name: Option<String>,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    pub postcode: Option<String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Profile(<redacted>)")
    }
}

/// A customer to create (or find, by external id).
#[derive(Clone, Debug)]
pub struct NewCustomer {
    pub external_id: String,
    pub profile: Profile,
    /// Plain quasi-identifiers (kept clear for analytics; see fields.toml).
    pub city: Option<String>,
    pub country: Option<String>,
    pub signup_at: i64,
}

/// What the database stores for a profile: ciphertexts bound to their place,
/// blind indexes for look-ups, and the customer's wrapped data key.
#[derive(Clone, Debug, Default)]
pub struct SealedProfile {
    pub email_ct: Option<Vec<u8>>,
    pub email_bidx: Option<Vec<u8>>,
    pub phone_ct: Option<Vec<u8>>,
    pub phone_bidx: Option<Vec<u8>>,
    pub name_ct: Option<Vec<u8>>,
    pub birth_date_ct: Option<Vec<u8>>,
    pub postcode_ct: Option<Vec<u8>>,
    pub kek_version: i64,
    pub wrapped_dek: Vec<u8>,
}

/// Encrypts a profile for one customer row. Implemented by the crypto layer;
/// the customer id is part of every ciphertext's associated data.
pub trait ProfileSealer: Send + Sync {
    fn seal(&self, customer_id: i64, profile: &Profile) -> anyhow::Result<SealedProfile>;

    /// The keys under which an erased person is on the suppression list
    /// (`dsr::suppression::keys`): field name and keyed digest. Bulk
    /// writers refuse a customer matching any of them. Default: none.
    fn suppression_keys(
        &self,
        _external_id: &str,
        _profile: &Profile,
    ) -> Vec<(&'static str, Vec<u8>)> {
        Vec::new()
    }
}

/// Inserts customers that do not exist yet (by external id) and seals their
/// profiles; existing customers are left untouched, so re-running an import
/// changes nothing. Returns how many rows were created.
pub async fn insert_new(
    tx: &mut Transaction<'_, Any>,
    sealer: &dyn ProfileSealer,
    customers: &[NewCustomer],
    now: i64,
) -> crate::db::DbResult<u64> {
    let mut created = 0;
    for c in customers {
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO customers (external_id, city, country, signup_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (external_id) DO NOTHING RETURNING id",
        )
        .bind(&c.external_id)
        .bind(&c.city)
        .bind(&c.country)
        .bind(c.signup_at)
        .bind(now)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(id) = id else { continue };
        let sealed = sealer.seal(id, &c.profile)?;
        store_sealed(tx, id, &sealed, now).await?;
        created += 1;
    }
    Ok(created)
}

/// Writes a sealed profile and its data key for an existing customer row.
pub async fn store_sealed(
    tx: &mut Transaction<'_, Any>,
    customer_id: i64,
    sealed: &SealedProfile,
    now: i64,
) -> crate::db::DbResult<()> {
    sqlx::query(
        "UPDATE customers SET email_ct = $1, email_bidx = $2, phone_ct = $3, phone_bidx = $4, \
         name_ct = $5, birth_date_ct = $6, postcode_ct = $7, updated_at = $8 WHERE id = $9",
    )
    .bind(&sealed.email_ct)
    .bind(&sealed.email_bidx)
    .bind(&sealed.phone_ct)
    .bind(&sealed.phone_bidx)
    .bind(&sealed.name_ct)
    .bind(&sealed.birth_date_ct)
    .bind(&sealed.postcode_ct)
    .bind(now)
    .bind(customer_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO data_keys (customer_id, kek_version, wrapped_dek, created_at) \
         VALUES ($1, $2, $3, $4) \
         ON CONFLICT (customer_id) DO UPDATE SET kek_version = excluded.kek_version, \
         wrapped_dek = excluded.wrapped_dek, rewrapped_at = excluded.created_at",
    )
    .bind(customer_id)
    .bind(sealed.kek_version)
    .bind(&sealed.wrapped_dek)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A customer row as stored: plain columns, ciphertexts, and the wrapped
/// data key needed to open them.
#[derive(Clone, Debug)]
pub struct StoredCustomer {
    pub id: i64,
    pub external_id: String,
    pub email_ct: Option<Vec<u8>>,
    pub phone_ct: Option<Vec<u8>>,
    pub name_ct: Option<Vec<u8>>,
    pub birth_date_ct: Option<Vec<u8>>,
    pub postcode_ct: Option<Vec<u8>>,
    pub city: Option<String>,
    pub country: Option<String>,
    pub signup_at: i64,
    pub erased_at: Option<i64>,
    pub kek_version: Option<i64>,
    pub wrapped_dek: Option<Vec<u8>>,
}

const SELECT_STORED: &str = "SELECT c.id, c.external_id, c.email_ct, c.phone_ct, c.name_ct, \
     c.birth_date_ct, c.postcode_ct, c.city, c.country, c.signup_at, c.erased_at, \
     k.kek_version, k.wrapped_dek \
     FROM customers c LEFT JOIN data_keys k ON k.customer_id = c.id";

fn stored_from_row(row: &sqlx::any::AnyRow) -> Result<StoredCustomer, sqlx::Error> {
    use sqlx::Row;
    Ok(StoredCustomer {
        id: row.try_get("id")?,
        external_id: row.try_get("external_id")?,
        email_ct: row.try_get("email_ct")?,
        phone_ct: row.try_get("phone_ct")?,
        name_ct: row.try_get("name_ct")?,
        birth_date_ct: row.try_get("birth_date_ct")?,
        postcode_ct: row.try_get("postcode_ct")?,
        city: row.try_get("city")?,
        country: row.try_get("country")?,
        signup_at: row.try_get("signup_at")?,
        erased_at: row.try_get("erased_at")?,
        kek_version: row.try_get("kek_version")?,
        wrapped_dek: row.try_get("wrapped_dek")?,
    })
}

pub async fn get_by_external_id(
    db: &crate::db::Db,
    external_id: &str,
) -> Result<Option<StoredCustomer>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_STORED} WHERE c.external_id = $1"))
        .bind(external_id)
        .fetch_optional(&db.pool)
        .await?;
    row.as_ref().map(stored_from_row).transpose()
}

/// Equality look-up on an encrypted field through its blind index.
pub async fn find_by_blind_index(
    db: &crate::db::Db,
    field: BlindField,
    index: &[u8],
    limit: i64,
) -> Result<Vec<StoredCustomer>, sqlx::Error> {
    let col = match field {
        BlindField::Email => "email_bidx",
        BlindField::Phone => "phone_bidx",
    };
    let rows = sqlx::query(&format!(
        "{SELECT_STORED} WHERE c.{col} = $1 ORDER BY c.id LIMIT $2"
    ))
    .bind(index)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter().map(stored_from_row).collect()
}

/// A page of customers in id order, after `after_id`, optionally in one
/// country.
pub async fn list_page(
    db: &crate::db::Db,
    after_id: i64,
    limit: i64,
    country: Option<&str>,
    admitted: &super::consents::ConsentPredicate,
) -> Result<Vec<StoredCustomer>, sqlx::Error> {
    // Consent is part of the query, so a page is `limit` customers who may
    // be shown for the purpose, never a page cut first and thinned after.
    let rows = match country {
        Some(country) => {
            sqlx::query(&format!(
                "{SELECT_STORED} WHERE c.id > $1 AND c.country = $2 AND c.erased_at IS NULL \
                 AND {} ORDER BY c.id LIMIT $4",
                admitted.sql("c.id", 3)
            ))
            .bind(after_id)
            .bind(country)
            .bind(admitted.bind_value())
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
        None => {
            sqlx::query(&format!(
                "{SELECT_STORED} WHERE c.id > $1 AND c.erased_at IS NULL AND {} \
                 ORDER BY c.id LIMIT $3",
                admitted.sql("c.id", 2)
            ))
            .bind(after_id)
            .bind(admitted.bind_value())
            .bind(limit)
            .fetch_all(&db.pool)
            .await?
        }
    };
    rows.iter().map(stored_from_row).collect()
}

/// Customers (not erased, of `country` when given) with an id in
/// `(after_id, up_to]` (`up_to` `None`: to the end): what a page of
/// [`list_page`] covered before consent was applied.
pub async fn count_in_range(
    db: &crate::db::Db,
    after_id: i64,
    up_to: Option<i64>,
    country: Option<&str>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM customers c WHERE c.id > $1 AND c.id <= $2 \
         AND c.erased_at IS NULL AND (CAST($3 AS TEXT) IS NULL OR c.country = $3)",
    )
    .bind(after_id)
    .bind(up_to.unwrap_or(i64::MAX))
    .bind(country)
    .fetch_one(&db.pool)
    .await
}

/// Internal id of a customer by external id.
pub async fn id_of(db: &crate::db::Db, external_id: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM customers WHERE external_id = $1")
        .bind(external_id)
        .fetch_optional(&db.pool)
        .await
}

/// `(id, external_id)` of customers not erased, after `after_id` in id
/// order: the subject keys pseudonyms are computed from, for resolving a
/// pseudonym by recomputation.
pub async fn subject_keys_page(
    db: &crate::db::Db,
    after_id: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    use sqlx::Row;
    let rows = sqlx::query(
        "SELECT id, external_id FROM customers WHERE id > $1 AND erased_at IS NULL \
         ORDER BY id LIMIT $2",
    )
    .bind(after_id)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
}
