//! The web client (web/, crates/web) in headless Chromium through WebDriver, served by the
//! real server binary: people in browsers and on the command line talk to each other live,
//! and the browser keeps everything across a reload; a second tab is told.

mod common;

use std::time::Duration;

use common::*;
use parley_client::ChatRef;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_and_the_cli_talk_live_and_a_reload_keeps_everything() {
    let server = TestServer::start();
    let alice = browser_user(&server, "alice").await;
    let bob = browser_user(&server, "bob").await;
    let carol = Device::register(&server.url(), "carol").await;

    // 1:1, browser to browser, live both ways; multi-line text arrives as typed.
    start_chat(&alice, "bob", "").await;
    send(&alice, "hello bob").await;
    open_chat(&bob, "alice").await;
    wait_shown(&bob, "alice", "hello bob").await;
    send(&bob, "hi alice,\nnice to see you").await;
    wait_shown(&alice, "bob", "hi alice,\nnice to see you").await;
    // What arrives in the open chat is read at once: no unread count.
    alice
        .wait_for(
            "return !document.querySelector('[data-testid=chat][data-chat=bob] .unread')",
            30,
        )
        .await;
    // Typing shows on the other side, and goes once the box is empty again.
    alice.type_into("[data-testid=compose]", "I am typ").await;
    bob.wait_for(
        "return document.querySelector('[data-testid=typing]')?.textContent.includes('alice')",
        30,
    )
    .await;
    alice.save_screenshot("web-chat-desktop").await;
    bob.save_screenshot("web-typing-desktop").await;
    alice
        .execute(
            "const c = document.querySelector('[data-testid=compose]'); c.value = '';
             c.dispatchEvent(new Event('input', { bubbles: true })); return true",
            json!([]),
        )
        .await;
    // Sooner than the line would clear by itself (6 s): the stop was sent.
    bob.wait_for(
        "return !document.querySelector('[data-testid=typing]')?.textContent.includes('alice')",
        4,
    )
    .await;

    // A group of two browsers and a CLI user.
    start_chat(&alice, "#team", "bob, carol").await;
    send(&alice, "hello team").await;
    let team = ChatRef::parse("#team").unwrap();
    let mut heard = Vec::new();
    for _ in 0..50 {
        heard.extend(carol.client.sync().await.unwrap());
        if heard.iter().any(|m| m.text == "hello team") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(heard
        .iter()
        .any(|m| m.text == "hello team" && m.sender == "alice"));
    carol.client.send_text(&team, "carol here").await.unwrap();
    wait_shown(&alice, "carol", "carol here").await;
    // Not opened yet: unread in bob's chat list (the two messages, and being added).
    bob.wait_for(
        "return document.querySelector('[data-testid=chat][data-chat=\"#team\"] .unread')?.textContent >= 2",
        30,
    )
    .await;
    open_chat(&bob, "#team").await;
    wait_shown(&bob, "carol", "carol here").await;
    wait_shown(&bob, "alice", "hello team").await;
    // And from a browser to the CLI, 1:1.
    start_chat(&bob, "carol", "").await;
    send(&bob, "for the terminal").await;
    let mut got = false;
    for _ in 0..50 {
        got |= carol
            .client
            .sync()
            .await
            .unwrap()
            .iter()
            .any(|m| m.text == "for the terminal" && m.sender == "bob");
        if got {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(got, "the CLI user got the browser's message");

    // The chat list: every chat.
    let chats: Vec<String> = serde_json::from_value(
        alice
            .execute(
                "return [...document.querySelectorAll('[data-testid=chat]')].map(c => c.dataset.chat)",
                json!([]),
            )
            .await,
    )
    .unwrap();
    assert!(
        chats.contains(&"bob".into()) && chats.contains(&"#team".into()),
        "{chats:?}"
    );

    // Reload: still signed in, history there, nothing doubled.
    alice.open(&format!("{}/", server.url())).await;
    let ready: Value = alice
        .wait_for("return document.body.dataset.ready", 30)
        .await;
    eprintln!("web client: load to interactive chat list {ready} ms");
    open_chat(&alice, "#team").await;
    wait_shown(&alice, "carol", "carol here").await;
    let after = shown(&alice).await;
    assert_eq!(times_shown(&after, "hello team"), 1, "{after:?}");
    assert_eq!(times_shown(&after, "carol here"), 1, "{after:?}");

    // "About" shows the build hash of the files served.
    alice.click("[data-testid=about]").await;
    let build = std::fs::read_to_string("web/dist/BUILD").unwrap();
    alice.wait_text("[data-testid=build]", build.trim()).await;

    // A second tab of the same account is told, and can take over.
    let first = alice.new_tab().await;
    alice.open(&format!("{}/", server.url())).await;
    alice
        .wait_for(
            "return document.body.textContent.includes('open in another tab')",
            30,
        )
        .await;
    alice.save_screenshot("web-second-tab").await;
    alice.click("[data-testid=use-here]").await;
    alice.find("[data-testid=new-chat]").await;
    let second = alice.tab().await;
    alice.switch_to(&first).await;
    alice
        .wait_for(
            "return document.body.textContent.includes('opened in another tab')",
            30,
        )
        .await;
    // And the first tab takes it back: the account opens again there, whole.
    alice.click("[data-testid=use-here]").await;
    open_chat(&alice, "#team").await;
    wait_shown(&alice, "carol", "carol here").await;
    assert_eq!(times_shown(&shown(&alice).await, "hello team"), 1);
    alice.switch_to(&second).await;
    alice
        .wait_for(
            "return document.body.textContent.includes('opened in another tab')",
            30,
        )
        .await;

    // At a phone's width: one column, the chat, then back to the list.
    bob.resize(360, 740).await;
    bob.save_screenshot("web-chat-phone").await;
    bob.click(".pane .back").await;
    bob.find("[data-testid=chat][data-chat=alice]").await;
    bob.save_screenshot("web-chats-phone").await;
    let welcome = Browser::start().await;
    welcome.open(&format!("{}/", server.url())).await;
    welcome.find("[data-testid=register]").await;
    welcome.save_screenshot("web-welcome-desktop").await;
}

fn sri(bytes: &[u8]) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha384::digest(bytes);
    format!(
        "sha384-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_comes_with_a_strict_policy_integrity_hashes_and_a_small_first_visit() {
    let server = TestServer::start();
    let http = reqwest::Client::new();
    let get = |path: &str, gzip: bool| {
        let request = http.get(format!("{}{path}", server.url()));
        let request = if gzip {
            request.header("accept-encoding", "gzip, br")
        } else {
            request
        };
        request.send()
    };
    let page = get("/", false).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let html = page.text().await.unwrap();

    let body = |path: &'static str| {
        let get = &get;
        async move { get(path, false).await.unwrap().bytes().await.unwrap() }
    };
    let (main, style, worker, wasm) = (
        body("/main.js").await,
        body("/style.css").await,
        body("/worker.js").await,
        body("/parley_web_bg.wasm").await,
    );
    // Every script is an external file with its hash; the page checks the rest itself.
    assert!(!html.contains("<script>"), "no inline script");
    assert!(
        html.contains(&format!("src=\"main.js\" integrity=\"{}\"", sri(&main))),
        "{html}"
    );
    assert!(
        html.contains(&format!("integrity=\"{}\"", sri(&style))),
        "{html}"
    );
    let main_text = String::from_utf8_lossy(&main);
    assert!(main_text.contains(&sri(&worker)), "main.js pins worker.js");
    assert!(main_text.contains(&sri(&wasm)), "main.js pins the wasm");
    assert_eq!(&wasm[..4], b"\0asm");

    // Compressed, the first visit stays within its 3 MB budget.
    let mut total = 0;
    for path in [
        "/",
        "/main.js",
        "/style.css",
        "/worker.js",
        "/parley_web_bg.wasm",
    ] {
        let answer = get(path, true).await.unwrap();
        assert_eq!(answer.headers()["content-encoding"], "gzip", "{path}");
        let gz = answer.bytes().await.unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain).unwrap();
        if path == "/parley_web_bg.wasm" {
            assert_eq!(plain, wasm, "the gzipped wasm is the wasm");
        }
        total += gz.len();
    }
    eprintln!("web client: first visit {total} bytes compressed");
    assert!(total < 3_000_000, "{total} bytes");

    // `gzip;q=0` refuses gzip; each file has its own tag, and an unchanged one is not sent.
    let plain = http
        .get(format!("{}/main.js", server.url()))
        .header("accept-encoding", "gzip;q=0")
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let tag = plain.headers()["etag"].clone();
    let worker_tag = get("/worker.js", false).await.unwrap().headers()["etag"].clone();
    assert_ne!(tag, worker_tag);
    let again = http
        .get(format!("{}/main.js", server.url()))
        .header("if-none-match", tag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);

    // Nothing else is served from there.
    assert_eq!(get("/secrets.js", false).await.unwrap().status(), 404);
    assert_eq!(get("/BUILD", false).await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_alone_is_enough_and_a_tab_in_the_background_notifies() {
    let server = TestServer::start();
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let alice = browser_user(&server, "alice").await;
    carol
        .client
        .send_text(&ChatRef::parse("alice").unwrap(), "hi alice")
        .await
        .unwrap();
    alice.find("[data-testid=chat][data-chat=carol]").await;

    // A new chat: Tab to "New chat", Enter, the name, Enter.
    alice.tab_to("[data-testid=new-chat]", false).await;
    alice.chord(&[ENTER]).await;
    alice.keys("bob").await;
    alice.chord(&[ENTER]).await;
    shows_chat(&alice, "bob").await;
    // The compose box has the focus: Shift+Enter breaks the line, Enter sends.
    alice.keys("line one").await;
    alice.chord(&[SHIFT, ENTER]).await;
    alice.keys("line two").await;
    alice.chord(&[ENTER]).await;
    let id = stored(&alice, "line one\nline two").await;

    // A reaction: Shift+Tab back to the message's React, Enter opens the picker with the
    // focus on its first emoji, Enter picks it.
    let react = format!("{} [data-testid=react]", message(&id));
    alice.tab_to(&react, true).await;
    alice.chord(&[ENTER]).await;
    alice
        .wait_for(
            "return document.activeElement?.dataset.testid === 'reaction-option'",
            10,
        )
        .await;
    alice.chord(&[ENTER]).await;
    alice
        .find(&format!("{} [data-testid=reaction]", message(&id)))
        .await;
    // Bob sees the text as typed and the reaction.
    let to_alice = ChatRef::parse("alice").unwrap();
    let mut history = Vec::new();
    for _ in 0..50 {
        bob.client.sync().await.unwrap();
        history = bob.client.history(&to_alice, 10).unwrap();
        if history.iter().any(|m| !m.reactions.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(history[0].text, "line one\nline two");
    assert_eq!(history[0].reactions.len(), 1, "{history:?}");

    // Escape closes what was opened last, also after moving on: the picker left open in
    // bob's chat does not swallow the Escape meant for the reply bar in carol's.
    alice.tab_to(&react, true).await;
    alice.chord(&[ENTER]).await;
    alice.find(".picker").await;
    alice
        .tab_to("[data-testid=chat][data-chat=carol]", true)
        .await;
    alice.chord(&[ENTER]).await;
    shows_chat(&alice, "carol").await;
    let from_carol = stored(&alice, "hi alice").await;
    alice
        .tab_to(
            &format!("{} [data-testid=reply]", message(&from_carol)),
            true,
        )
        .await;
    alice.chord(&[ENTER]).await;
    alice.find("[data-testid=replying]:not([hidden])").await;
    alice.chord(&[ESCAPE]).await;
    alice
        .wait_for(
            "return !document.querySelector('[data-testid=replying]:not([hidden])')
                && document.activeElement?.dataset.testid === 'compose'",
            10,
        )
        .await;

    // Notifications: allowed, none while the tab is in front, one while it is behind another.
    alice.allow_notifications().await;
    alice
        .execute(
            "window.notified = [];
             const Shown = window.Notification;
             window.Notification = class extends Shown {
                 constructor(title, options) { super(title, options); window.notified.push([title, options?.body ?? '']); }
             };
             return Notification.permission",
            json!([]),
        )
        .await;
    carol
        .client
        .send_text(&ChatRef::parse("alice").unwrap(), "while you look")
        .await
        .unwrap();
    wait_shown(&alice, "carol", "while you look").await;
    let page = alice.new_tab().await;
    bob.client
        .send_text(&ChatRef::parse("alice").unwrap(), "while you are away")
        .await
        .unwrap();
    // Give the page a moment behind the other tab, then look.
    tokio::time::sleep(Duration::from_secs(3)).await;
    alice.switch_to(&page).await;
    let notified = alice
        .wait_for("return window.notified.length > 0 && window.notified", 10)
        .await;
    assert_eq!(notified, json!([["Parley: bob", "New message"]]));
}
