//! Real headless Chromium for the browser tests, driven through chromedriver's WebDriver.
//!
//! A [`Lab`] is one chromedriver child process (its whole process group, the browsers it
//! started included, killed when the lab is dropped); each [`Profile`] is a WebDriver session
//! of its own with its own `--user-data-dir`, so two profiles are two browsers with two
//! identities in IndexedDB. [`Lab::run`] runs a test's body and, if it panics, saves for every
//! profile a screenshot, `document.body.outerHTML` and the browser console under
//! `target/artifacts/failures/` before the panic goes on.
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them [`Lab::start`] says the test is
//! skipped and returns `None`, unless `NORTHSTAR_TEST_CHROMIUM=require` (as `.ci/run`'s browser
//! step sets it), where their absence fails; `NORTHSTAR_TEST_CHROMIUM=skip` skips the browser
//! tests even where Chromium is installed (`.ci/run`'s workspace test step, as the browser step
//! runs them).
//!
//! Every wait polls the DOM under [`WAIT`]; nothing sleeps for a fixed time to let the page
//! catch up.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// Every wait on the page is bounded by this: loading the app compiles its WebAssembly module,
/// which on a busy two-core machine takes seconds, and the nodes work in the same process.
pub const WAIT: Duration = Duration::from_secs(30);

/// How often a wait looks at the page again.
const POLL: Duration = Duration::from_millis(100);

/// The window of every profile: wide enough that the app's layout is the desktop one in the
/// screenshots.
const WINDOW: (u32, u32) = (1280, 900);

/// The workspace's `target/artifacts`, where screenshots are kept (CI prints where).
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace root")
        .join("target")
        .join("artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One chromedriver and the profiles (sessions) a test opened through it.
pub struct Lab {
    test: &'static str,
    driver: Child,
    url: String,
    /// Each profile's name and a handle on its session, for the failure artifacts.
    profiles: Mutex<Vec<(String, Client)>>,
    /// Drains chromedriver's stdout so that it never blocks on a full pipe.
    _drain: tokio_util::task::AbortOnDropHandle<()>,
}

impl Lab {
    /// Start chromedriver for the test `test` (the name its failure artifacts carry); `None` if
    /// Chromium is not installed and not required.
    pub async fn start(test: &'static str) -> Option<Lab> {
        let wanted = std::env::var("NORTHSTAR_TEST_CHROMIUM").unwrap_or_default();
        if wanted == "skip" {
            eprintln!("skipped: NORTHSTAR_TEST_CHROMIUM=skip");
            return None;
        }
        let required = wanted == "require";
        if !on_path("chromium") {
            return skipped(required, "no chromium");
        }
        let mut command = Command::new("chromedriver");
        // Port 0: chromedriver binds a free port and prints it, so no two tests race for one.
        command
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // A process group of its own, so that dropping the lab also stops the browsers it
        // started (their group is chromedriver's).
        command.process_group(0);
        let mut driver = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return skipped(required, "no chromedriver");
            }
            Err(e) => panic!("cannot start chromedriver: {e}"),
        };
        let mut stdout = driver.stdout.take().expect("stdout was piped");
        let port = tokio::time::timeout(WAIT, listening_port(&mut stdout))
            .await
            .expect("chromedriver did not say its port in time");
        let drain = tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            // Its output is not needed; an error only means it exited.
            let _ = tokio::io::copy(&mut stdout, &mut sink).await;
        });
        Some(Lab {
            test,
            driver,
            url: format!("http://127.0.0.1:{port}"),
            profiles: Mutex::new(Vec::new()),
            _drain: tokio_util::task::AbortOnDropHandle::new(drain),
        })
    }

    /// A new browser profile: its own session, user data dir, IndexedDB and localStorage.
    pub async fn profile(&self, name: &str) -> Profile {
        let dir = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless=new".to_owned(),
            // The tests run as root, where Chromium's sandbox cannot start.
            "--no-sandbox".to_owned(),
            // /dev/shm is small in containers; Chromium then crashes tabs.
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            format!("--window-size={},{}", WINDOW.0, WINDOW.1),
            format!("--user-data-dir={}", dir.path().display()),
        ];
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert("goog:chromeOptions".into(), json!({ "args": args }));
        // The console log, kept for the failure artifacts.
        capabilities.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            WAIT,
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&self.url),
        )
        .await
        .expect("Chromium did not start in time")
        .unwrap_or_else(|e| panic!("chromedriver refused a session: {e}"));
        self.profiles
            .lock()
            .unwrap()
            .push((name.to_owned(), client.clone()));
        Profile {
            name: name.to_owned(),
            client,
            _dir: dir,
        }
    }

    /// Run a test's body; if it panics, save every profile's screenshot, HTML and console log
    /// before the panic goes on.
    pub async fn run<T>(&self, body: impl Future<Output = T>) -> T {
        match std::panic::AssertUnwindSafe(body).catch_unwind().await {
            Ok(value) => value,
            Err(panic) => {
                let profiles = self.profiles.lock().unwrap().clone();
                let dir = artifacts_dir().join("failures");
                std::fs::create_dir_all(&dir).unwrap();
                for (name, client) in profiles {
                    let stem = dir.join(format!("{}-{name}", self.test));
                    save_artifacts(&client, &stem).await;
                }
                eprintln!(
                    "browser artifacts of the failure: {}/{}-*",
                    dir.display(),
                    self.test
                );
                std::panic::resume_unwind(panic)
            }
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // chromedriver's whole group: the Chromium processes of sessions not yet closed are in
        // it, and would outlive chromedriver killed alone.
        if let Some(pid) = self.driver.id() {
            let group = format!("-{pid}");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &group])
                .status();
        }
    }
}

/// Whether `program` is an executable file in one of `PATH`'s directories.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn skipped(required: bool, what: &str) -> Option<Lab> {
    assert!(
        !required,
        "{what} here, and NORTHSTAR_TEST_CHROMIUM=require (apt-get install chromium chromium-driver)"
    );
    eprintln!(
        "skipped: {what} here (apt-get install chromium chromium-driver; \
         NORTHSTAR_TEST_CHROMIUM=require makes this a failure)"
    );
    None
}

/// The port in chromedriver's "started successfully on port N." line.
async fn listening_port(stdout: &mut tokio::process::ChildStdout) -> u16 {
    const MARK: &str = "started successfully on port ";
    let mut seen = String::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = stdout.read(&mut chunk).await.unwrap();
        assert!(n > 0, "chromedriver exited: {seen}");
        seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
        if let Some(rest) = seen.split_once(MARK).map(|(_, rest)| rest) {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            // The number is complete once something follows it (a '.').
            if digits.len() < rest.len() {
                return digits.parse().unwrap();
            }
        }
    }
}

/// `{stem}.png`, `{stem}.html` and `{stem}.console.log`, each as far as the browser still
/// answers.
async fn save_artifacts(client: &Client, stem: &Path) {
    let with = |ext: &str| stem.with_extension(ext);
    match client.screenshot().await {
        Ok(png) => std::fs::write(with("png"), png).unwrap(),
        Err(e) => eprintln!("no screenshot of {}: {e}", stem.display()),
    }
    match client
        .execute(
            "return document.body ? document.body.outerHTML : '';",
            vec![],
        )
        .await
    {
        Ok(html) => std::fs::write(with("html"), html.as_str().unwrap_or_default()).unwrap(),
        Err(e) => eprintln!("no HTML of {}: {e}", stem.display()),
    }
    match client.issue_cmd(ConsoleLog).await {
        Ok(entries) => {
            let lines: Vec<String> = entries
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| format!("{} {} {}", e["timestamp"], e["level"], e["message"]))
                .collect();
            std::fs::write(with("console.log"), lines.join("\n")).unwrap();
        }
        Err(e) => eprintln!("no console log of {}: {e}", stem.display()),
    }
}

/// chromedriver's `POST /session/{id}/se/log` for the `browser` log: the console messages and
/// page errors since the last call (a Chromium extension to WebDriver).
#[derive(Debug)]
struct ConsoleLog;

impl WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (
            http::Method::POST,
            Some(json!({ "type": "browser" }).to_string()),
        )
    }
}

/// A post as the app shows it: `li.message` with its `data-seq`, `data-author` and `.body`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Shown {
    pub seq: u64,
    pub author: String,
    pub body: String,
}

/// One browser profile: a WebDriver session on its own user data dir.
pub struct Profile {
    pub name: String,
    client: Client,
    _dir: tempfile::TempDir,
}

impl Profile {
    pub async fn goto(&self, url: &str) {
        tokio::time::timeout(WAIT, self.client.goto(url))
            .await
            .unwrap_or_else(|_| panic!("{}: {url} did not load in time", self.name))
            .unwrap_or_else(|e| panic!("{}: cannot open {url}: {e}", self.name));
    }

    /// Run `script` (a function body: `arguments` are `args`, `return` gives the value).
    pub async fn eval(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{}: script failed: {e}\n{script}", self.name))
    }

    /// Run `script` asynchronously: its last argument is the callback that gives the value.
    pub async fn eval_async(&self, script: &str, args: Vec<Value>) -> Value {
        tokio::time::timeout(WAIT, self.client.execute_async(script, args))
            .await
            .unwrap_or_else(|_| panic!("{}: script did not call back in time", self.name))
            .unwrap_or_else(|e| panic!("{}: script failed: {e}\n{script}", self.name))
    }

    /// Run `script` until it returns something other than `null`, `undefined` or `false`, and
    /// return that; panic (naming `what`) if it does not within [`WAIT`].
    pub async fn wait_for(&self, what: &str, script: &str, args: Vec<Value>) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            // A script may fail while a page loads (a navigation drops its context); the next
            // poll tries again.
            if let Ok(value) = self.client.execute(script, args.clone()).await
                && !(value.is_null() || value == Value::Bool(false))
            {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: timed out after {WAIT:?} waiting for {what}",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the first element matching `selector` has attribute `name` equal to `value`.
    pub async fn wait_attr(&self, selector: &str, name: &str, value: &str) {
        let script = "const e = document.querySelector(arguments[0]); \
                      return !!e && e.getAttribute(arguments[1]) === arguments[2];";
        self.wait_for(
            &format!("{selector}[{name}={value:?}]"),
            script,
            vec![json!(selector), json!(name), json!(value)],
        )
        .await;
    }

    /// Wait until the first element matching `selector` has a non-empty attribute `name`; return
    /// it.
    pub async fn wait_attr_set(&self, selector: &str, name: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); \
                      const v = e && e.getAttribute(arguments[1]); return v ? v : null;";
        let value = self
            .wait_for(
                &format!("a value of {selector}'s {name}"),
                script,
                vec![json!(selector), json!(name)],
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// The text of every element matching `selector`, in document order.
    pub async fn texts(&self, selector: &str) -> Vec<String> {
        let script = "return Array.from(document.querySelectorAll(arguments[0]), \
                      e => e.textContent);";
        serde_json::from_value(self.eval(script, vec![json!(selector)]).await).unwrap()
    }

    /// The text of the first element matching `selector`, waiting until it is non-empty.
    pub async fn wait_text(&self, selector: &str) -> String {
        let script = "const e = document.querySelector(arguments[0]); \
                      const t = e && e.textContent.trim(); return t ? t : null;";
        let value = self
            .wait_for(
                &format!("text in {selector}"),
                script,
                vec![json!(selector)],
            )
            .await;
        value.as_str().unwrap_or_default().to_owned()
    }

    /// Wait until at least one element matches `selector`.
    pub async fn wait_present(&self, selector: &str) {
        let script = "return document.querySelector(arguments[0]) !== null;";
        self.wait_for(selector, script, vec![json!(selector)]).await;
    }

    /// Type `text` into the field `selector` as a user does, after clearing it.
    pub async fn fill(&self, selector: &str, text: &str) {
        let field = self.find(selector).await;
        field.clear().await.unwrap();
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("{}: cannot type into {selector}: {e}", self.name));
    }

    /// Choose the file at `path` in the file input `selector`, as a user picking it does.
    pub async fn choose_file(&self, selector: &str, path: &Path) {
        self.find(selector)
            .await
            .send_keys(&path.display().to_string())
            .await
            .unwrap_or_else(|e| panic!("{}: cannot choose a file in {selector}: {e}", self.name));
    }

    /// Click the element `selector`.
    pub async fn click(&self, selector: &str) {
        self.find(selector)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("{}: cannot click {selector}: {e}", self.name));
    }

    /// The element `selector`, waiting until it is there.
    async fn find(&self, selector: &str) -> fantoccini::elements::Element {
        self.wait_present(selector).await;
        self.client
            .find(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("{}: no {selector}: {e}", self.name))
    }

    /// Every `li.message` of `#messages`, in the page's order.
    pub async fn messages(&self) -> Vec<Shown> {
        let script = "return Array.from(document.querySelectorAll('#messages li.message'), \
                      e => ({ seq: Number(e.dataset.seq), author: e.dataset.author || '', \
                      body: (e.querySelector('.body') || {}).textContent || '' }));";
        let value = self.eval(script, vec![]).await;
        serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("{}: a message without a numeric data-seq: {e}", self.name))
    }

    /// Wait until `#messages` shows a post with body `body`; return the posts shown then.
    pub async fn wait_message(&self, body: &str) -> Vec<Shown> {
        let script = "return Array.from(document.querySelectorAll('#messages li.message .body'))\
                      .some(e => e.textContent === arguments[0]);";
        self.wait_for(&format!("the post {body:?}"), script, vec![json!(body)])
            .await;
        self.messages().await
    }

    /// Save a screenshot of the whole window as PNG at `path`.
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{}: not a PNG", self.name);
        std::fs::write(path, png).unwrap();
    }

    /// End the session (closes the browser).
    pub async fn close(self) {
        // A session whose browser died is gone already; nothing to close then.
        let _ = self.client.close().await;
    }
}
