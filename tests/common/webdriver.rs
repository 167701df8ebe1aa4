//! A headless Chromium (Debian's `chromium` and `chromium-driver`) driven through the W3C
//! WebDriver protocol: the moderation console's tests and the web client's.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";
pub const SHIFT: &str = "\u{E008}";
pub const ESCAPE: &str = "\u{E00C}";

pub struct Browser {
    driver: Child,
    profile: std::path::PathBuf,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    pub async fn start() -> Browser {
        Browser::start_in(&tempfile::tempdir().unwrap().keep()).await
    }

    /// A browser on the profile directory `profile` (cookies, storage, OPFS): another start on
    /// the same one is the same browser, restarted. Downloads go to `profile`/downloads.
    pub async fn start_in(profile: &std::path::Path) -> Browser {
        let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver not found: install Debian's chromium and chromium-driver (scripts/test does)");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let downloads = profile.join("downloads");
        std::fs::create_dir_all(&downloads).unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "prefs": {"download.default_directory": downloads,
                          "download.prompt_for_download": false},
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1200,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let mut browser = Browser {
            driver,
            profile: profile.to_owned(),
            base,
            session: String::new(),
            http,
        };
        let answer = browser.call("POST", "/session", capabilities).await;
        browser.session = answer["sessionId"]
            .as_str()
            .expect("a WebDriver session")
            .to_owned();
        browser
    }

    pub async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = if path == "/session" {
            format!("{}{path}", self.base)
        } else {
            format!("{}/session/{}{path}", self.base, self.session)
        };
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        };
        let response = request.send().await.expect("WebDriver request");
        let value: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
        assert!(
            value["value"]["error"].is_null(),
            "WebDriver error on {path}: {value}"
        );
        value["value"].clone()
    }

    /// Where the browser saves downloads.
    pub fn downloads(&self) -> std::path::PathBuf {
        self.profile.join("downloads")
    }

    /// Closes the browser (all its windows) as a user would, and stops the driver.
    pub async fn quit(mut self) {
        self.call("DELETE", "", Value::Null).await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// Accepts the `confirm()` the page shows, waiting for it.
    pub async fn accept_dialog(&self) {
        let url = format!("{}/session/{}/alert/accept", self.base, self.session);
        for _ in 0..50 {
            let answer = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await;
            if let Ok(answer) = answer {
                let value: Value =
                    serde_json::from_slice(&answer.bytes().await.unwrap_or_default())
                        .unwrap_or_default();
                if value["value"]["error"].is_null() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no dialog to accept");
    }

    pub async fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// Finds an element, waiting up to five seconds for it (a click may still be navigating).
    pub async fn find(&self, css: &str) -> String {
        let url = format!("{}/session/{}/element", self.base, self.session);
        let body = json!({"using": "css selector", "value": css}).to_string();
        let mut last = Value::Null;
        for _ in 0..50 {
            let response = self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            if let Ok(response) = response {
                last = serde_json::from_slice(&response.bytes().await.unwrap_or_default())
                    .unwrap_or_default();
                if let Some(element) = last["value"][ELEMENT].as_str() {
                    return element.to_owned();
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element {css}: {last}")
    }

    /// Waits until an element's text is `expected` (the page may still be the previous one).
    pub async fn wait_text(&self, css: &str, expected: &str) {
        let mut seen = String::new();
        for _ in 0..50 {
            let element = self.find(css).await;
            let url = format!(
                "{}/session/{}/element/{element}/text",
                self.base, self.session
            );
            if let Ok(response) = self.http.get(url).send().await {
                let value: Value =
                    serde_json::from_slice(&response.bytes().await.unwrap_or_default())
                        .unwrap_or_default();
                seen = value["value"].as_str().unwrap_or_default().to_owned();
                if seen == expected {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{css} shows {seen:?}, not {expected:?}");
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    /// Presses `keys` together, as a person does (WebDriver key codes: `TAB`, `ENTER`,
    /// `ESCAPE`, `SHIFT`, or plain characters), into whatever has the focus.
    pub async fn chord(&self, keys: &[&str]) {
        let mut actions: Vec<Value> = keys
            .iter()
            .map(|k| json!({"type": "keyDown", "value": k}))
            .collect();
        actions.extend(
            keys.iter()
                .rev()
                .map(|k| json!({"type": "keyUp", "value": k})),
        );
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        )
        .await;
    }

    /// Types `text` key by key into whatever has the focus.
    pub async fn keys(&self, text: &str) {
        for c in text.chars() {
            self.chord(&[&c.to_string()]).await;
        }
    }

    /// Presses Tab (Shift+Tab when `backwards`) until the focus is on an element matching
    /// `css` (none if it is there already); panics after 60 presses.
    pub async fn tab_to(&self, css: &str, backwards: bool) {
        let limit = 60;
        for _ in 0..=limit {
            let there = self
                .execute(
                    "return document.activeElement?.matches(arguments[0]) ?? false",
                    json!([css]),
                )
                .await;
            if there == Value::Bool(true) {
                return;
            }
            if backwards {
                self.chord(&[SHIFT, TAB]).await;
            } else {
                self.chord(&[TAB]).await;
            }
        }
        let at = self
            .execute(
                "return document.activeElement?.outerHTML.slice(0, 200)",
                json!([]),
            )
            .await;
        panic!("{limit} presses of Tab never reached {css}; the focus is on {at}");
    }

    /// Lets the page show notifications, as a user allowing them in the browser's prompt.
    pub async fn allow_notifications(&self) {
        self.call(
            "POST",
            "/permissions",
            json!({"descriptor": {"name": "notifications"}, "state": "granted"}),
        )
        .await;
    }

    /// Clicks an element, finding it again if the page redrew it in between.
    pub async fn click(&self, css: &str) {
        for _ in 0..50 {
            let element = self.find(css).await;
            let url = format!(
                "{}/session/{}/element/{element}/click",
                self.base, self.session
            );
            let response = self
                .http
                .post(url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .expect("WebDriver request");
            let value: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            match value["value"]["error"].as_str() {
                None => return,
                Some("stale element reference") => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Some(_) => panic!("WebDriver error clicking {css}: {value}"),
            }
        }
        panic!("{css} kept being redrawn");
    }

    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call("GET", &format!("/element/{element}/text"), Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn screenshot(&self) -> Vec<u8> {
        let data = self.call("GET", "/screenshot", Value::Null).await;
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap()
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({ "script": script, "args": args }),
        )
        .await
    }

    /// Waits up to `seconds` until `script` returns something truthy, and returns it.
    pub async fn wait_for(&self, script: &str, seconds: u64) -> Value {
        let mut last = Value::Null;
        for _ in 0..seconds * 10 {
            last = self.execute(script, json!([])).await;
            if !(last.is_null() || last == json!(false) || last == json!(0) || last == json!("")) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = self
            .execute("return document.body.innerText.slice(0, 2000)", json!([]))
            .await;
        panic!("waited {seconds} s for `{script}`; last {last}; the page shows:\n{page}")
    }

    /// The window's size in CSS pixels.
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            json!({ "width": width, "height": height }),
        )
        .await;
    }

    /// Opens a new tab and switches to it; returns the previous tab's handle.
    /// Opens a tab and switches to it; returns the handle of the tab it left.
    pub async fn new_tab(&self) -> String {
        let previous = self.tab().await;
        let tab = self
            .call("POST", "/window/new", json!({ "type": "tab" }))
            .await;
        self.switch_to(tab["handle"].as_str().unwrap()).await;
        previous
    }

    /// The handle of the tab commands go to.
    pub async fn tab(&self) -> String {
        let handle = self.call("GET", "/window", Value::Null).await;
        handle.as_str().unwrap().to_owned()
    }

    pub async fn switch_to(&self, handle: &str) {
        self.call("POST", "/window", json!({ "handle": handle }))
            .await;
    }

    /// Saves a screenshot under target/screenshots/ and returns its path.
    pub async fn save_screenshot(&self, name: &str) -> std::path::PathBuf {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.screenshot().await).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
