//! The web moderation console, driven in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which scripts/test installs) through the W3C WebDriver protocol.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::*;
use parley_client::ChatRef;
use parley_protocol::Username;
use serde_json::{json, Value};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    async fn start() -> Browser {
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
        let profile = tempfile::tempdir().unwrap().keep();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1200,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let mut browser = Browser {
            driver,
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

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
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

    async fn open(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url })).await;
    }

    /// Finds an element, waiting up to five seconds for it (a click may still be navigating).
    async fn find(&self, css: &str) -> String {
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
    async fn wait_text(&self, css: &str, expected: &str) {
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

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            json!({ "text": text }),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call("POST", &format!("/element/{element}/click"), json!({}))
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call("GET", &format!("/element/{element}/text"), Value::Null)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn screenshot(&self) -> Vec<u8> {
        let data = self.call("GET", "/screenshot", Value::Null).await;
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_signs_in_opens_a_report_and_suspends_the_account() {
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let chat = ChatRef::Direct(Username::parse("bob").unwrap());
    alice
        .client
        .send_text(&chat, "<script>alert('x')</script> buy pills")
        .await
        .unwrap();
    let message = bob.client.sync().await.unwrap().pop().unwrap();
    bob.client
        .send_report(
            &bob.client
                .report_bundle(&message.id, "spam & scam", 0)
                .unwrap(),
        )
        .await
        .unwrap();
    let token = admin_ok(&server, &["token", "--label", "ada"])
        .trim()
        .to_owned();

    let browser = Browser::start().await;
    // Without the token nothing but the sign-in page.
    browser
        .open(&format!("{}/admin/reports", server.url()))
        .await;
    browser.find("input[name=token]").await;
    browser.type_into("input[name=token]", "not-a-token").await;
    browser.click("#sign-in").await;
    assert!(browser.text(".error").await.contains("not valid"));

    browser.type_into("input[name=token]", &token).await;
    browser.click("#sign-in").await;
    browser.click("a.report-link").await;
    // The reported text is shown exactly, as text (the markup is escaped, not run).
    browser
        .wait_text("#reported-text", "<script>alert('x')</script> buy pills")
        .await;
    assert_eq!(browser.text("#accused").await, "alice");
    browser.click("#suspend").await;
    browser.wait_text("#status", "actioned").await;
    assert!(browser.text("#accused").await.contains("alice"));
    browser.find("#remove").await;

    let screenshot = browser.screenshot().await;
    assert!(screenshot.starts_with(b"\x89PNG"), "not a PNG");
    let out_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let path = out_dir.join("moderation-console.png");
    std::fs::write(&path, &screenshot).unwrap();
    println!("screenshot: {}", path.display());

    // The suspension took effect, and it is in the audit log under the moderator's name.
    assert!(alice.client.send_text(&chat, "again").await.is_err());
    let audit = admin_ok(&server, &["audit"]).trim().to_owned();
    assert!(audit.contains("ada suspend alice"), "{audit}");
    browser.call("DELETE", "", Value::Null).await;
}
