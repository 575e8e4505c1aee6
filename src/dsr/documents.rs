//! Generated documents (access JSON, portability zip), kept in the store
//! until they expire.
//!
//! A document is stored in chunks of [`CHUNK`] bytes, each encrypted under
//! the customer's own data key with the document id and chunk number in
//! the associated data: a chunk moved, swapped or dropped fails to open,
//! the chunk count and a SHA-256 of the whole document are checked at the
//! end of a download, and erasing the customer (or rectifying, which
//! issues a new data key) makes every document of theirs unreadable, even
//! a copy. Expired documents are deleted by [`delete_expired`] (at start,
//! every minute, and before every download).

use axum::body::Bytes;
use ring::digest;
use sqlx::{Any, Row, Transaction};
use std::path::Path;
use tokio::io::AsyncReadExt;

use super::{random_id, DsrError};
use crate::crypto::{FieldCipher, FieldPlace};
use crate::db::Db;
use crate::state::AppState;

/// Plaintext bytes per stored chunk.
pub const CHUNK: usize = 256 * 1024;

/// The two kinds of document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Zip,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Zip => "zip",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Zip => "application/zip",
        }
    }

    fn parse(s: &str) -> Option<Format> {
        match s {
            "json" => Some(Format::Json),
            "zip" => Some(Format::Zip),
            _ => None,
        }
    }
}

/// A stored document's metadata.
#[derive(Clone, Debug)]
pub struct Document {
    pub id: i64,
    pub uid: String,
    pub request_id: i64,
    pub customer_id: i64,
    pub format: Format,
    pub created_at: i64,
    pub expires_at: i64,
    pub bytes: i64,
    pub chunks: i64,
    pub sha256: Vec<u8>,
}

/// The customer's field cipher (their data key, unwrapped). A customer
/// without a data key was erased.
pub async fn customer_cipher(state: &AppState, customer_id: i64) -> Result<FieldCipher, DsrError> {
    let row: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT kek_version, wrapped_dek FROM data_keys WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_optional(&state.db.pool)
            .await?;
    let (version, wrapped) = row.ok_or(DsrError::Erased)?;
    state.vault.ensure_versions(&state.db, [version]).await?;
    let version = u32::try_from(version).map_err(|_| DsrError::Integrity)?;
    let dek = state
        .vault
        .keyring()
        .unwrap_dek(version, &wrapped, customer_id)
        .map_err(|_| DsrError::Integrity)?;
    Ok(dek.cipher())
}

fn place_name(uid: &str, chunk_no: i64) -> String {
    format!("{uid}#{chunk_no}")
}

/// Encrypts the file at `path` into a new document of `request_id`.
pub async fn store_file(
    state: &AppState,
    request_id: i64,
    customer_id: i64,
    format: Format,
    path: &Path,
) -> Result<Document, DsrError> {
    let cipher = customer_cipher(state, customer_id).await?;
    let uid = random_id("doc_")?;
    let now = state.clock.now_micros();
    let ttl = i64::from(state.config.dsr.document_ttl_hours) * 3_600_000_000;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO dsr_documents (document_uid, request_id, customer_id, format, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(&uid)
    .bind(request_id)
    .bind(customer_id)
    .bind(format.as_str())
    .bind(now)
    .bind(now.saturating_add(ttl))
    .fetch_one(&state.db.pool)
    .await?;
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| DsrError::Store(anyhow::anyhow!("reading the generated document: {e}")))?;
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut chunk_no: i64 = 0;
    let mut total: i64 = 0;
    loop {
        let mut filled = 0;
        while filled < CHUNK {
            let n = file
                .read(buf.get_mut(filled..).unwrap_or_default())
                .await
                .map_err(|e| DsrError::Store(anyhow::anyhow!("reading the document: {e}")))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let plain = buf.get(..filled).unwrap_or_default();
        hash.update(plain);
        let name = place_name(&uid, chunk_no);
        let ct = cipher
            .encrypt(
                FieldPlace {
                    resource: "dsr_document",
                    field: &name,
                    record_id: customer_id,
                },
                plain,
            )
            .map_err(|e| DsrError::Store(anyhow::anyhow!("encrypting a document chunk: {e}")))?;
        sqlx::query(
            "INSERT INTO dsr_document_chunks (document_id, chunk_no, ciphertext) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(chunk_no)
        .bind(ct)
        .execute(&state.db.pool)
        .await?;
        chunk_no += 1;
        total += i64::try_from(filled).unwrap_or(i64::MAX);
        if filled < CHUNK {
            break;
        }
    }
    buf.iter_mut().for_each(|b| *b = 0);
    let sha = hash.finish().as_ref().to_vec();
    sqlx::query(
        "UPDATE dsr_documents SET bytes = $1, chunks = $2, sha256 = $3, complete = 1 WHERE id = $4",
    )
    .bind(total)
    .bind(chunk_no)
    .bind(sha.clone())
    .bind(id)
    .execute(&state.db.pool)
    .await?;
    Ok(Document {
        id,
        uid,
        request_id,
        customer_id,
        format,
        created_at: now,
        expires_at: now.saturating_add(ttl),
        bytes: total,
        chunks: chunk_no,
        sha256: sha,
    })
}

/// The newest complete, unexpired document of a request.
pub async fn current(db: &Db, request_id: i64, now: i64) -> Result<Option<Document>, DsrError> {
    let row = sqlx::query(
        "SELECT id, document_uid, request_id, customer_id, format, created_at, expires_at, bytes, \
         chunks, sha256 FROM dsr_documents WHERE request_id = $1 AND complete = 1 \
         AND expires_at > $2 ORDER BY id DESC LIMIT 1",
    )
    .bind(request_id)
    .bind(now)
    .fetch_optional(&db.pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let format: String = r.try_get(4)?;
    Ok(Some(Document {
        id: r.try_get(0)?,
        uid: r.try_get(1)?,
        request_id: r.try_get(2)?,
        customer_id: r.try_get(3)?,
        format: Format::parse(&format)
            .ok_or_else(|| DsrError::Store(anyhow::anyhow!("dsr_documents: unknown format")))?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        bytes: r.try_get(7)?,
        chunks: r.try_get(8)?,
        sha256: r.try_get::<Option<Vec<u8>>, _>(9)?.unwrap_or_default(),
    }))
}

/// Deletes expired documents (and unfinished ones older than a day: a
/// generation that crashed). Returns how many were deleted.
pub async fn delete_expired(db: &Db, now: i64) -> anyhow::Result<u64> {
    // Chunks first: ON DELETE CASCADE needs foreign keys on, which an
    // operator's SQLite shell may not have.
    let cond = "expires_at <= $1 OR (complete = 0 AND created_at <= $2)";
    sqlx::query(&format!(
        "DELETE FROM dsr_document_chunks WHERE document_id IN \
         (SELECT id FROM dsr_documents WHERE {cond})"
    ))
    .bind(now)
    .bind(now.saturating_sub(super::DAY_MICROS))
    .execute(&db.pool)
    .await?;
    let n = sqlx::query(&format!("DELETE FROM dsr_documents WHERE {cond}"))
        .bind(now)
        .bind(now.saturating_sub(super::DAY_MICROS))
        .execute(&db.pool)
        .await?
        .rows_affected();
    if n > 0 {
        metrics::counter!("custodian_dsr_documents_expired_total").increment(n);
    }
    Ok(n)
}

/// Deletes every document of a customer (erasure, rectification).
pub async fn delete_for_customer(
    tx: &mut Transaction<'_, Any>,
    customer_id: i64,
) -> anyhow::Result<u64> {
    sqlx::query(
        "DELETE FROM dsr_document_chunks WHERE document_id IN \
         (SELECT id FROM dsr_documents WHERE customer_id = $1)",
    )
    .bind(customer_id)
    .execute(&mut **tx)
    .await?;
    Ok(
        sqlx::query("DELETE FROM dsr_documents WHERE customer_id = $1")
            .bind(customer_id)
            .execute(&mut **tx)
            .await?
            .rows_affected(),
    )
}

/// The document's plaintext as a stream of chunks, decrypted one at a
/// time. A chunk that is missing or fails to open, or a final digest that
/// differs, ends the stream with an error (the client sees a broken
/// transfer, never a wrong document).
pub fn stream(
    state: AppState,
    doc: Document,
    cipher: FieldCipher,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    struct Cursor {
        state: AppState,
        doc: Document,
        cipher: FieldCipher,
        next: i64,
        hash: Option<digest::Context>,
    }
    let start = Cursor {
        state,
        doc,
        cipher,
        next: 0,
        hash: Some(digest::Context::new(&digest::SHA256)),
    };
    let broken = |what: &str| std::io::Error::other(format!("document {what}"));
    futures::stream::unfold(start, move |mut c| async move {
        if c.next >= c.doc.chunks {
            let hash = c.hash.take()?;
            if hash.finish().as_ref() == c.doc.sha256.as_slice() {
                return None;
            }
            tracing::error!(document = %c.doc.uid, "document digest mismatch");
            return Some((Err(broken("digest mismatch")), c));
        }
        let row: Result<Option<Vec<u8>>, sqlx::Error> = sqlx::query_scalar(
            "SELECT ciphertext FROM dsr_document_chunks WHERE document_id = $1 AND chunk_no = $2",
        )
        .bind(c.doc.id)
        .bind(c.next)
        .fetch_optional(&c.state.db.pool)
        .await;
        let ct = match row {
            Ok(Some(ct)) => ct,
            Ok(None) => {
                c.next = i64::MAX;
                c.hash = None;
                return Some((Err(broken("chunk missing")), c));
            }
            Err(e) => {
                tracing::error!(error = %e, "reading a document chunk");
                c.next = i64::MAX;
                c.hash = None;
                return Some((Err(broken("unreadable")), c));
            }
        };
        let name = place_name(&c.doc.uid, c.next);
        let opened = c.cipher.decrypt(
            FieldPlace {
                resource: "dsr_document",
                field: &name,
                record_id: c.doc.customer_id,
            },
            &ct,
        );
        match opened {
            Ok(plain) => {
                if let Some(h) = c.hash.as_mut() {
                    h.update(&plain);
                }
                c.next += 1;
                Some((Ok(Bytes::copy_from_slice(&plain)), c))
            }
            Err(_) => {
                tracing::error!(document = %c.doc.uid, chunk = c.next, "document chunk failed its integrity check");
                c.next = i64::MAX;
                c.hash = None;
                Some((Err(broken("integrity failure")), c))
            }
        }
    })
}
