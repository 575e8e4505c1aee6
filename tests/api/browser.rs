//! A real browser for the console tests: Debian's headless Chromium driven
//! through chromedriver (WebDriver, `fantoccini`), both started by the test
//! on a free port with a fresh profile. Without Chromium installed the
//! tests print "skipped: no chromium" and pass; CI installs it
//! (`.ci/run`). Screenshots go to `target/console-screenshots/`.

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// One browser test at a time: two cores are shared by everything else.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Browser {
    pub client: Client,
    pub downloads: tempfile::TempDir,
    driver: Child,
    /// The browser chromedriver started (from the session's capabilities).
    chromium_pid: Option<i32>,
    _profile: tempfile::TempDir,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

fn binary(env: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    path.exists().then_some(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or returns `None`
    /// (after saying so loudly) when they are not installed.
    pub async fn start(test: &str) -> Option<Self> {
        let (Some(chromium), Some(chromedriver)) = (
            binary("CHROMIUM_BIN", CHROMIUM),
            binary("CHROMEDRIVER_BIN", CHROMEDRIVER),
        ) else {
            eprintln!(
                "\n*** {test}: skipped: no chromium (install chromium and chromium-driver) ***\n"
            );
            return None;
        };
        let turn = ONE_AT_A_TIME.lock().await;
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1366,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
            }),
        );
        let url = format!("http://127.0.0.1:{port}");
        let mut last = None;
        for _ in 0..100 {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(client) => {
                    let chromium_pid = client
                        .capabilities()
                        .and_then(|c| c.get("goog:processID"))
                        .and_then(serde_json::Value::as_i64)
                        .and_then(|p| i32::try_from(p).ok());
                    return Some(Self {
                        client,
                        downloads,
                        driver,
                        chromium_pid,
                        _profile: profile,
                        _turn: turn,
                    });
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("chromedriver did not answer: {last:?}");
    }

    /// Waits for an element (up to 30 s: CI machines are busy).
    pub async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
    }

    /// Waits (up to 30 s) until the text of `css` contains `needle`;
    /// returns the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let mut text = String::new();
        for _ in 0..300 {
            if let Ok(el) = self.client.find(Locator::Css(css)).await {
                text = el.text().await.unwrap_or_default();
                if text.contains(needle) {
                    return text;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} never contained {needle:?}; last text: {text:?}");
    }

    pub async fn click(&self, css: &str) {
        self.wait(css).await.click().await.unwrap();
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let el = self.wait(css).await;
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap();
    }

    /// Runs a script in the page and returns its value.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// Saves a screenshot as `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits for a finished download whose name ends with `suffix`.
    pub async fn downloaded(&self, suffix: &str) -> PathBuf {
        for _ in 0..100 {
            if let Ok(entries) = std::fs::read_dir(self.downloads.path()) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(suffix) {
                        return entry.path();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no download ending in {suffix}");
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Also after a failed assertion: never leave the driver or its
        // browser behind (the two processes this test started, by id).
        if let Some(pid) = self.chromium_pid.filter(|p| *p > 1) {
            // SAFETY: kill(2) on a pid we started; no memory is involved.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
