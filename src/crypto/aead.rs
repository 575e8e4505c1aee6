//! The one AES-256-GCM framing used for both field ciphertexts and wrapped
//! DEKs: `format (1 B) ‖ nonce (12 B, random) ‖ ciphertext ‖ tag (16 B)`.
//!
//! Callers put the format byte into the associated data themselves, so a
//! ciphertext relabelled with another format byte fails authentication.

use super::{fill_random, CryptoError};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::Aes256Gcm;
use zeroize::Zeroizing;

pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub(crate) const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Encrypts `plaintext` under a fresh random 96-bit nonce.
pub(crate) fn seal(
    cipher: &Aes256Gcm,
    format: u8,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(plaintext.len().saturating_add(OVERHEAD));
    out.push(format);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let body = out.get_mut(1 + NONCE_LEN..).ok_or(CryptoError::Integrity)?;
    // Only fails for messages over 64 GiB, which a field never is.
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(&nonce), aad, body)
        .map_err(|_| CryptoError::Integrity)?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Authenticates and decrypts a sealed message. The plaintext buffer is
/// zeroized on drop, including on failure (aes-gcm decrypts before it
/// compares the tag, so the buffer may hold unauthenticated bytes).
pub(crate) fn open(
    cipher: &Aes256Gcm,
    format: u8,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let (&found, rest) = sealed.split_first().ok_or(CryptoError::Integrity)?;
    if found != format {
        return Err(CryptoError::UnsupportedFormat(found));
    }
    let (nonce, rest) = rest
        .split_at_checked(NONCE_LEN)
        .ok_or(CryptoError::Integrity)?;
    let body_len = rest
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(CryptoError::Integrity)?;
    let (body, tag) = rest
        .split_at_checked(body_len)
        .ok_or(CryptoError::Integrity)?;
    let mut buf = Zeroizing::new(body.to_vec());
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            aad,
            buf.as_mut_slice(),
            GenericArray::from_slice(tag),
        )
        .map_err(|_| CryptoError::Integrity)?;
    Ok(buf)
}
