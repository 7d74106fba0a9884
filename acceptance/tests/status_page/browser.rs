//! `Browser`: Debian's headless Chromium driven over WebDriver, for tests of the edge's status
//! page. `chromedriver` listens on a loopback port it picks itself (`--port=0`); Chromium runs
//! with a fresh profile in a temporary directory and with its background services off (this
//! machine's network refuses them). Both stop when the `Browser` is closed or dropped.
//!
//! Chromium and chromedriver are Debian's `chromium` and `chromium-driver` packages, which
//! `scripts/test` installs when they are missing; without them the test fails, saying so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// How long chromedriver may take to say which port it listens on.
const DRIVER_TIMEOUT: Duration = Duration::from_secs(20);

/// Chromium's flags: headless, no sandbox (tests may run as root), and none of the background
/// connections a fresh profile would try (updates, sync, QUIC probes, first-run pages).
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--password-store=basic",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
    "--lang=en-US",
];

/// A headless Chromium session; stopped when dropped.
pub(crate) struct Browser {
    client: Option<Client>,
    driver: Option<Child>,
    driver_log: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a Chromium session whose window is `width` x `height`.
    /// Panics, saying what to install, when Chromium or chromedriver is missing.
    pub(crate) async fn start(width: u32, height: u32) -> Self {
        let chromium = find_program(&["chromium", "chromium-browser"]);
        let chromedriver = find_program(&["chromedriver"]);
        let (Some(chromium), Some(chromedriver)) = (chromium, chromedriver) else {
            panic!(
                "the status page test needs headless Chromium and chromedriver on PATH \
                 (Debian's packages `chromium` and `chromium-driver`; scripts/test installs \
                 them when they are missing): apt-get install chromium chromium-driver"
            );
        };
        let profile = tempfile::Builder::new()
            .prefix("postern-chromium-")
            .tempdir()
            .expect("temp dir");
        let driver_log = profile.path().join("chromedriver.log");
        let (driver, port) = spawn_driver(&chromedriver, &driver_log);
        let mut browser = Self {
            client: None,
            driver: Some(driver),
            driver_log,
            _profile: profile,
        };
        let user_data_dir = browser._profile.path().join("profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", user_data_dir.display()));
        args.push(format!("--window-size={width},{height}"));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": args }),
        );
        let connected = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        match connected {
            Ok(client) => browser.client = Some(client),
            Err(error) => panic!(
                "Chromium did not start through chromedriver: {error}\nchromedriver log:\n{}",
                browser.driver_log()
            ),
        }
        browser
    }

    /// The WebDriver client.
    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser is running")
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page and decodes what
    /// it returns.
    pub(crate) async fn eval<T: DeserializeOwned>(&self, script: &str, args: Vec<Value>) -> T {
        let value = self
            .client()
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"));
        serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("script answered {value}, not the expected shape: {e}"))
    }

    /// Evaluates `script` every 100 ms until it returns something other than `null`, at most
    /// `timeout`; panics naming `what`, with the page's text, otherwise.
    pub(crate) async fn wait_for<T: DeserializeOwned>(
        &self,
        timeout: Duration,
        what: &str,
        script: &str,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let value: Value = self.eval(script, Vec::new()).await;
            if !value.is_null() {
                return serde_json::from_value(value.clone()).unwrap_or_else(|e| {
                    panic!("waiting for {what}: {value} is not the expected shape: {e}")
                });
            }
            if Instant::now() > deadline {
                let text: String = self
                    .eval(
                        "return document.body ? document.body.innerText : '';",
                        Vec::new(),
                    )
                    .await;
                panic!("timed out after {timeout:?} waiting for {what}; the page shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resizes the window.
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.client()
            .set_window_size(width, height)
            .await
            .expect("resize the window");
    }

    /// Saves a PNG of the viewport to `path` (creating its directory).
    pub(crate) async fn screenshot(&self, path: &Path) {
        let png = self.client().screenshot().await.expect("screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// What chromedriver logged.
    pub(crate) fn driver_log(&self) -> String {
        std::fs::read_to_string(&self.driver_log).unwrap_or_default()
    }

    /// Ends the session (Chromium quits) and stops chromedriver.
    pub(crate) async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        }
        self.stop_driver();
    }

    /// Stops chromedriver and whatever it started that is still in its process group.
    fn stop_driver(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            let _ = killpg(Pid::from_raw(driver.id() as i32), Signal::SIGKILL);
            let _ = driver.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

/// The first of `names` found on `PATH`.
fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Starts chromedriver on a port it picks, in a process group of its own (so that stopping it
/// also stops the Chromium it started), and reads the port from its first lines.
fn spawn_driver(chromedriver: &Path, log: &Path) -> (Child, u16) {
    use std::os::unix::process::CommandExt;

    let log_file = std::fs::File::create(log).expect("chromedriver log");
    let mut child = Command::new(chromedriver)
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
    let stdout = child.stdout.take().expect("stdout");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
            {
                let _ = sender.send(port);
            }
            // Keep draining so chromedriver never blocks on a full pipe.
        }
    });
    match receiver.recv_timeout(DRIVER_TIMEOUT) {
        Ok(port) => (child, port),
        Err(_) => {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "chromedriver did not report its port within {DRIVER_TIMEOUT:?}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}
