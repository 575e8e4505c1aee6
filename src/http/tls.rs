//! TLS termination (rustls, `ring` provider): loading the certificate chain
//! and private key from PEM files, the server configuration handed to each
//! new connection, and its reload on SIGHUP.
//!
//! This module owns the certificate in force. The accept loop
//! (`http::serve`) asks [`Tls::acceptor`] once per connection, so a reload
//! affects new connections only; open connections keep the certificate
//! they were made with. A reload that cannot read or parse the new files,
//! or whose key does not match the certificate, keeps the old certificate,
//! logs an error and counts `custodian_tls_reloads_total{result="error"}`:
//! a botched certificate renewal must not take the service down.
//!
//! ALPN offers `h2` then `http/1.1`; the connection layer then speaks
//! whichever the client picked. Only TLS 1.2 and 1.3 with rustls' default
//! (forward-secret, AEAD) cipher suites are offered.

use anyhow::Context as _;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `[server.tls]` section: both files or neither.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate;
    /// refused when readable by group or others.
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// The two paths when TLS is on, or an error naming the missing one.
    pub fn paths(&self) -> Result<Option<(&Path, &Path)>, String> {
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            (Some(_), None) => {
                Err("server.tls.key_file: must be set with server.tls.cert_file".into())
            }
            (None, Some(_)) => {
                Err("server.tls.cert_file: must be set with server.tls.key_file".into())
            }
        }
    }
}

/// The certificate in force and where it came from.
pub struct Tls {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads both files and builds the server configuration; `None` when
    /// TLS is not configured. Every error is one line naming the setting
    /// and the file.
    pub fn from_config(config: &TlsConfig) -> anyhow::Result<Option<Arc<Tls>>> {
        let Some((cert_file, key_file)) = config.paths().map_err(anyhow::Error::msg)? else {
            return Ok(None);
        };
        let server_config = load(cert_file, key_file)?;
        Ok(Some(Arc::new(Tls {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: ArcSwap::from_pointee(server_config),
        })))
    }

    /// An acceptor with the certificate in force now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Re-reads the files (what SIGHUP does). On any error the certificate
    /// in force stays, and the error is returned after being logged and
    /// counted.
    pub fn reload(&self) -> anyhow::Result<()> {
        match load(&self.cert_file, &self.key_file) {
            Ok(config) => {
                self.current.store(Arc::new(config));
                metrics::counter!("custodian_tls_reloads_total", "result" => "ok").increment(1);
                tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                metrics::counter!("custodian_tls_reloads_total", "result" => "error").increment(1);
                tracing::error!(
                    error = format!("{e:#}"),
                    "TLS reload failed; the previous certificate stays in use"
                );
                Err(e)
            }
        }
    }

    /// Reloads on every SIGHUP for as long as the returned task runs.
    #[cfg(unix)]
    pub fn spawn_reload_on_hangup(self: &Arc<Self>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let tls = Arc::downgrade(self);
        Ok(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let Some(tls) = tls.upgrade() else { return };
                // reload() logs and counts its own failure.
                let _ = tls.reload();
            }
        }))
    }
}

/// The rustls server configuration for one certificate and key.
fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs = read_certs(cert_file)?;
    let key = read_key(key_file)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS: protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow::anyhow!(
                "server.tls: {} and {} do not make a usable certificate: {e}",
                cert_file.display(),
                key_file.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("server.tls.cert_file: {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("server.tls.cert_file: {}: not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "server.tls.cert_file: {}: no CERTIFICATE block found",
            path.display()
        );
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = crate::secret::read_private_file(path)
        .map_err(|e| anyhow::anyhow!("server.tls.key_file: {e}"))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "server.tls.key_file: {}: no usable private key: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        let none = TlsConfig::default();
        assert!(none.paths().unwrap().is_none());
        let cert_only = TlsConfig {
            cert_file: Some("c.pem".into()),
            key_file: None,
        };
        assert!(cert_only
            .paths()
            .unwrap_err()
            .contains("server.tls.key_file"));
        let key_only = TlsConfig {
            cert_file: None,
            key_file: Some("k.pem".into()),
        };
        assert!(key_only
            .paths()
            .unwrap_err()
            .contains("server.tls.cert_file"));
    }
}
