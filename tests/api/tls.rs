//! TLS termination over real connections: a certificate the test
//! generates (rcgen), HTTPS with HTTP/2 negotiated by ALPN and HTTP/1.1
//! still served, plain HTTP refused on the TLS port, the handshake bounded
//! by the header-read timeout, reload on SIGHUP (the function the handler
//! calls, and a real signal), and a bad certificate refused at startup in
//! one line.
//!
//! Transport only, so SQLite alone: nothing here touches the store.

use crate::helpers::*;
use reqwest::Method;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A fresh self-signed certificate for `localhost`: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    (generated.cert.pem(), generated.key_pair.serialize_pem())
}

/// Writes the pair where the configuration points (the key 0600, as the
/// server insists).
fn write_pair(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, cert).unwrap();
    std::fs::write(&key_file, key).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert_file, key_file)
}

/// A client that trusts `cert` only (no system roots) and reaches
/// `localhost` at the test server's address.
fn client_trusting(cert: &str, addr: SocketAddr, http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(10));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

struct TlsApp {
    app: TestApp,
    dir: tempfile::TempDir,
    cert: String,
}

impl TlsApp {
    async fn start(adjust: impl FnOnce(&mut custodian::config::Config)) -> TlsApp {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed();
        let (cert_file, key_file) = write_pair(dir.path(), &cert, &key);
        let app = spawn_app_with(Backend::Sqlite, |c| {
            c.server.tls.cert_file = Some(cert_file);
            c.server.tls.key_file = Some(key_file);
            adjust(c);
        })
        .await
        .unwrap();
        TlsApp { app, dir, cert }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.app.port))
    }

    fn https(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.app.port)
    }

    /// Whether a client trusting only `cert` completes a request.
    async fn trusted_with(&self, cert: &str) -> bool {
        client_trusting(cert, self.addr(), false)
            .get(self.https("/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_serves_http2_and_http1_and_refuses_plain_http() {
    let tls = TlsApp::start(|_| {}).await;
    let h2 = client_trusting(&tls.cert, tls.addr(), false);
    let r = h2.get(tls.https("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2, "ALPN picks h2");

    // A gated route: authentication, purpose and policy work over TLS.
    let token = tls.app.token("support_agent-user", &["support_agent"]);
    let r = h2
        .request(Method::GET, tls.https("/v1/customers"))
        .bearer_auth(&token)
        .header("x-purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h2
        .get(tls.https("/v1/customers"))
        .header("x-purpose", "customer_support")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let h1 = client_trusting(&tls.cert, tls.addr(), true);
    let r = h1.get(tls.https("/healthz")).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.version()),
        (200, reqwest::Version::HTTP_11)
    );

    // Plain HTTP to the TLS port gets no answer, only a failed handshake.
    let plain = tls.app.client.get(tls.app.url("/healthz")).send().await;
    assert!(
        plain.is_err(),
        "plain HTTP must not be served on the TLS port"
    );
    // A client that does not trust the certificate refuses the server.
    let (other, _) = self_signed();
    assert!(!tls.trusted_with(&other).await);
    let metrics = h2
        .get(tls.https("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("custodian_tls_handshake_failures_total{reason=\"error\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_after_the_header_timeout() {
    use tokio::io::AsyncReadExt as _;
    let tls = TlsApp::start(|c| c.server.header_read_timeout_ms = 300).await;
    let started = std::time::Instant::now();
    let mut stream = tokio::net::TcpStream::connect(tls.addr()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the server closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
    // The server still serves others.
    assert!(tls.trusted_with(&tls.cert).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_the_certificate_and_keeps_the_old_one_on_a_bad_file() {
    let tls = TlsApp::start(|_| {}).await;
    let reloader = tls.app.state.tls.clone().expect("TLS is configured");
    assert!(tls.trusted_with(&tls.cert).await);

    // A renewed certificate at the same paths: new connections get it.
    let (second, second_key) = self_signed();
    write_pair(tls.dir.path(), &second, &second_key);
    reloader.reload().unwrap();
    assert!(tls.trusted_with(&second).await);
    assert!(
        !tls.trusted_with(&tls.cert).await,
        "the old certificate is gone"
    );

    // A botched renewal: the error is reported, the second certificate stays.
    std::fs::write(tls.dir.path().join("tls.crt"), "not a certificate").unwrap();
    let err = reloader.reload().unwrap_err().to_string();
    assert!(err.contains("server.tls.cert_file"), "{err}");
    assert!(tls.trusted_with(&second).await);
    let (third, _) = self_signed();
    write_pair(tls.dir.path(), &third, &second_key);
    let err = reloader.reload().unwrap_err().to_string();
    assert!(err.contains("do not make a usable certificate"), "{err}");
    assert!(tls.trusted_with(&second).await);
    let metrics = client_trusting(&second, tls.addr(), false)
        .get(tls.https("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("custodian_tls_reloads_total{result=\"error\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("custodian_tls_reloads_total{result=\"ok\"}"));

    // A real SIGHUP to this process runs the same reload.
    let (fourth, fourth_key) = self_signed();
    write_pair(tls.dir.path(), &fourth, &fourth_key);
    // SAFETY: kill(2) on our own pid with a signal tokio has a handler for.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    let mut reloaded = false;
    for _ in 0..50 {
        if tls.trusted_with(&fourth).await {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reloaded, "SIGHUP reloads the certificate");
}

#[tokio::test]
async fn a_bad_certificate_or_key_is_refused_at_startup_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let (cert_file, key_file) = write_pair(dir.path(), "garbage", &key);
    let build = |cert_file: PathBuf, key_file: PathBuf| {
        let data = tempfile::tempdir().unwrap();
        let mut config = test_config(data.path());
        config.server.tls.cert_file = Some(cert_file);
        config.server.tls.key_file = Some(key_file);
        async move {
            let r = custodian::startup::Application::build(config).await;
            let err = format!("{:#}", r.err().expect("refused"));
            // Refused before any side effect: no database, no keys.
            assert!(!data.path().join("custodian.db").exists(), "{err}");
            err
        }
    };
    let err = build(cert_file.clone(), key_file.clone()).await;
    assert!(
        err.contains("server.tls.cert_file") && !err.contains('\n'),
        "{err}"
    );

    std::fs::write(&cert_file, &cert).unwrap();
    let err = build(cert_file.clone(), dir.path().join("missing.key")).await;
    assert!(
        err.contains("server.tls.key_file") && !err.contains('\n'),
        "{err}"
    );

    // A key readable by others is refused like every other key file.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = build(cert_file.clone(), key_file.clone()).await;
    assert!(err.contains("server.tls.key_file"), "{err}");

    // Both or neither, checked with the rest of the configuration.
    let mut config = test_config(dir.path());
    config.server.tls.cert_file = Some(cert_file);
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("server.tls.key_file"), "{err}");
}
