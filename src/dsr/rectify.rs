//! Rectification (Art. 16): correcting profile fields.
//!
//! The current profile is opened, the corrections applied, and the whole
//! profile sealed again under a fresh data key (new ciphertexts, blind
//! indexes recomputed from the corrected values), in one transaction with
//! the step. The audit trail and the step record which fields changed,
//! never a value, old or new. Documents generated earlier for the customer
//! are deleted (they were under the old key and would hold the old values).

use serde::Deserialize;
use sqlx::Row;
use zeroize::Zeroizing;

use super::requests::{self, RequestRow};
use super::trail::{self, Actor};
use super::{DsrError, Status};
use crate::crypto::FieldPlace;
use crate::db::customers::{self, Profile, ProfileSealer};
use crate::state::AppState;

/// Corrected values; an absent field is left as it is. Values are
/// validated by the HTTP layer before they get here.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Corrections {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub name: Option<String>,
    /// `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    pub postcode: Option<String>,
    pub city: Option<String>,
    pub country: Option<String>,
}

// Corrections are personal data: never in debug output.
impl std::fmt::Debug for Corrections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Corrections(<redacted>)")
    }
}

impl Drop for Corrections {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for v in [
            &mut self.email,
            &mut self.phone,
            &mut self.name,
            &mut self.birth_date,
            &mut self.postcode,
        ]
        .into_iter()
        .flatten()
        {
            v.zeroize();
        }
    }
}

impl Corrections {
    pub fn is_empty(&self) -> bool {
        self.email.is_none()
            && self.phone.is_none()
            && self.name.is_none()
            && self.birth_date.is_none()
            && self.postcode.is_none()
            && self.city.is_none()
            && self.country.is_none()
    }
}

const ENCRYPTED: [&str; 5] = ["email", "phone", "name", "birth_date", "postcode"];

/// Applies `corrections` for the request's customer and completes the
/// request. Returns the names of the fields whose value changed.
pub async fn rectify(
    state: &AppState,
    actor: &Actor<'_>,
    request: &RequestRow,
    corrections: &Corrections,
) -> Result<Vec<&'static str>, DsrError> {
    let id = request.customer_id;
    let cipher = super::documents::customer_cipher(state, id).await?;
    let row = sqlx::query(
        "SELECT email_ct, phone_ct, name_ct, birth_date_ct, postcode_ct, city, country \
         FROM customers WHERE id = $1 AND erased_at IS NULL",
    )
    .bind(id)
    .fetch_optional(&state.db.pool)
    .await?
    .ok_or(DsrError::Erased)?;
    let mut current: Vec<Option<Zeroizing<String>>> = Vec::with_capacity(5);
    for (i, field) in ENCRYPTED.iter().enumerate() {
        let ct: Option<Vec<u8>> = row.try_get(i)?;
        current.push(match ct {
            None => None,
            Some(ct) => {
                let plain = cipher
                    .decrypt(
                        FieldPlace {
                            resource: "customer",
                            field,
                            record_id: id,
                        },
                        &ct,
                    )
                    .map_err(|_| DsrError::Integrity)?;
                let text = std::str::from_utf8(&plain).map_err(|_| DsrError::Integrity)?;
                Some(Zeroizing::new(text.to_owned()))
            }
        });
    }
    let city: Option<String> = row.try_get(5)?;
    let country: Option<String> = row.try_get(6)?;

    let wanted = [
        &corrections.email,
        &corrections.phone,
        &corrections.name,
        &corrections.birth_date,
        &corrections.postcode,
    ];
    let mut changed = Vec::new();
    let mut next: Vec<Option<String>> = Vec::with_capacity(5);
    for ((field, old), new) in ENCRYPTED.iter().zip(&current).zip(wanted) {
        match new {
            Some(v) if old.as_ref().map(|o| o.as_str()) != Some(v.as_str()) => {
                changed.push(*field);
                next.push(Some(v.clone()));
            }
            _ => next.push(old.as_ref().map(|o| o.to_string())),
        }
    }
    let mut it = next.into_iter();
    let profile = Profile {
        email: it.next().flatten(),
        phone: it.next().flatten(),
        name: it.next().flatten(),
        birth_date: it.next().flatten(),
        postcode: it.next().flatten(),
    };
    let new_city = match &corrections.city {
        Some(c) if Some(c) != city.as_ref() => {
            changed.push("city");
            Some(c.clone())
        }
        _ => city,
    };
    let new_country = match &corrections.country {
        Some(c) if Some(c) != country.as_ref() => {
            changed.push("country");
            Some(c.clone())
        }
        _ => country,
    };

    let now = state.clock.now_micros();
    let sealed = state.vault.seal(id, &profile)?;
    drop(profile);
    let mut tx = state.db.pool.begin().await?;
    customers::store_sealed(&mut tx, id, &sealed, now).await?;
    sqlx::query("UPDATE customers SET city = $1, country = $2 WHERE id = $3")
        .bind(&new_city)
        .bind(&new_country)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let documents = super::documents::delete_for_customer(&mut tx, id).await?;
    if !requests::set_status(&mut tx, request.id, Status::Completed, None, now).await? {
        return Err(DsrError::Conflict("the request is closed"));
    }
    let detail = serde_json::json!({ "fields": changed, "documents_deleted": documents });
    trail::step(state, &mut tx, actor, request, "rectified", Some(&detail)).await?;
    tx.commit().await?;
    Ok(changed)
}
