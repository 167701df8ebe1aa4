//! The web client as one device among others, in headless Chromium against the real server:
//! a browser linked to a command-line account gets its history, keeps everything across a
//! browser restart, and manages the account's devices and backups.

mod common;

use std::time::Duration;

use common::*;
use parley_client::ChatRef;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_linked_to_a_cli_account_gets_its_history_and_survives_a_restart() {
    let server = TestServer::start();
    let alice_cli = tempfile::tempdir().unwrap();
    cli_ok(alice_cli.path(), &server, &["register", "alice"]);
    let bob = Device::register(&server.url(), "bob").await;
    cli_ok(
        alice_cli.path(),
        &server,
        &["send", "bob", "sent from the terminal"],
    );
    bob.client.sync().await.unwrap();
    let to_alice = ChatRef::parse("alice").unwrap();
    bob.client
        .send_text(&to_alice, "bob answers")
        .await
        .unwrap();
    cli_ok(alice_cli.path(), &server, &["sync"]);

    // The browser asks to be alice's device and shows the code (and its QR code).
    let profile = tempfile::tempdir().unwrap();
    let browser = Browser::start_in(profile.path()).await;
    browser.open(&format!("{}/", server.url())).await;
    browser.type_into("[data-testid=username]", "alice").await;
    browser.click("[data-testid=link]").await;
    let code = browser
        .wait_for(
            "return document.querySelector('[data-testid=link-code]')?.textContent.trim()",
            60,
        )
        .await
        .as_str()
        .unwrap()
        .to_owned();
    browser.find("canvas").await;
    browser.save_screenshot("web-link-desktop").await;
    browser.resize(360, 740).await;
    browser.save_screenshot("web-link-phone").await;
    browser.resize(1200, 900).await;

    // Approved on the command line, as the page says to.
    let (home, url) = (alice_cli.path().to_owned(), server.url());
    let approve =
        tokio::task::spawn_blocking(move || cli(&home, &url, &["devices", "approve", &code]));
    let (status, out, err) = approve.await.unwrap();
    assert_eq!(status, 0, "{out}{err}");

    // The history arrives: the chat with bob, both messages, once each.
    browser.find("[data-testid=chat][data-chat=bob]").await;
    open_chat(&browser, "bob").await;
    wait_shown(&browser, "alice", "sent from the terminal").await;
    wait_shown(&browser, "bob", "bob answers").await;
    // And the browser is alice's device from now on: live both ways.
    bob.client
        .send_text(&to_alice, "hello browser")
        .await
        .unwrap();
    wait_shown(&browser, "bob", "hello browser").await;
    send(&browser, "from alice's browser").await;
    let mut heard = false;
    for _ in 0..50 {
        heard |= bob
            .client
            .sync()
            .await
            .unwrap()
            .iter()
            .any(|m| m.text == "from alice's browser" && m.sender == "alice");
        if heard {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(heard, "bob got the browser's message");

    // Settings: both devices, this one marked; renamed here, the terminal sees the name.
    browser.click("[data-testid=settings]").await;
    browser
        .wait_for(
            "return document.querySelectorAll('[data-testid=device]').length === 2",
            30,
        )
        .await;
    browser.save_screenshot("web-settings-desktop").await;
    let this_device = "[data-testid=device]:has([data-testid=this-device])";
    browser
        .click(&format!("{this_device} [data-testid=rename-device]"))
        .await;
    browser
        .execute(
            "document.querySelector('[data-testid=device-name]').value = ''; return true",
            json!([]),
        )
        .await;
    browser
        .type_into("[data-testid=device-name]", "work browser")
        .await;
    browser.click("[data-testid=rename-save]").await;
    let mut renamed = String::new();
    for _ in 0..50 {
        renamed = cli_ok(alice_cli.path(), &server, &["devices"]);
        if renamed.contains("work browser") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(renamed.contains("work browser"), "{renamed}");

    // Backups: the recovery key is shown once, and the terminal sees backups on.
    browser.click("[data-testid=backup-enable]").await;
    let key = browser
        .wait_for(
            "return document.querySelector('[data-testid=recovery-key]')?.textContent.trim()",
            60,
        )
        .await;
    assert!(key.as_str().unwrap().len() >= 40, "{key}");
    browser.click("[data-testid=recovery-done]").await;
    browser
        .wait_for(
            "return !document.querySelector('[data-testid=recovery-key]')
                && /^Backups are on.*The server keeps [1-9]/.test(document.querySelector('[data-testid=backup-status]')?.textContent)",
            30,
        )
        .await;

    // Closing and reopening the browser: still alice, history there, nothing doubled.
    browser.quit().await;
    bob.client
        .send_text(&to_alice, "while you were away")
        .await
        .unwrap();
    let browser = Browser::start_in(profile.path()).await;
    browser.open(&format!("{}/", server.url())).await;
    browser.find("[data-testid=chat][data-chat=bob]").await;
    open_chat(&browser, "bob").await;
    wait_shown(&browser, "bob", "hello browser").await;
    let after = shown(&browser).await;
    for text in [
        "sent from the terminal",
        "bob answers",
        "hello browser",
        "from alice's browser",
    ] {
        assert_eq!(times_shown(&after, text), 1, "{text}: {after:?}");
    }
    // What came while the browser was closed arrives at the next start.
    wait_shown(&browser, "bob", "while you were away").await;
    browser.resize(360, 740).await;
    browser
        .save_screenshot("web-chat-after-restart-phone")
        .await;
    browser.click(".pane .back").await;
    browser.click("[data-testid=settings]").await;
    browser.find("[data-testid=device]").await;
    browser.save_screenshot("web-settings-phone").await;
}
