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
    // Leaving Settings before confirming it does not lose it: it is there on coming back.
    browser.click("[data-testid=about]").await;
    browser.find("[data-testid=build]").await;
    browser.click("[data-testid=settings]").await;
    let again = browser
        .wait_for(
            "return document.querySelector('[data-testid=recovery-key]')?.textContent.trim()",
            30,
        )
        .await;
    assert_eq!(again, key);
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

/// The devices of bob's group #team as bob's client counts them, once it is `devices`.
async fn team_devices_at_bob(bob: &Device, devices: usize) -> parley_client::GroupStateView {
    let team = ChatRef::parse("#team").unwrap();
    let mut state = None;
    for _ in 0..100 {
        bob.client.sync().await.unwrap();
        state = bob.client.group_state(&team).ok();
        if state.as_ref().is_some_and(|s| s.devices == devices) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    state.expect("bob is in #team")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_approves_a_new_device_revokes_it_and_leaves_a_group() {
    let server = TestServer::start();
    let bob = Device::register(&server.url(), "bob").await;
    let browser = browser_user(&server, "alice").await;
    start_chat(&browser, "#team", "bob").await;
    send(&browser, "team hello").await;

    // A terminal asks to be alice's laptop; the browser approves its code.
    let laptop = tempfile::tempdir().unwrap();
    let mut link = std::process::Command::new(BIN)
        .arg("--home")
        .arg(laptop.path())
        .args([
            "--server",
            &server.url(),
            "link",
            "alice",
            "--name",
            "laptop",
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(link.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    let code = serde_json::from_str::<serde_json::Value>(&first).unwrap()["link_code"]
        .as_str()
        .unwrap()
        .to_owned();
    browser.click("[data-testid=settings]").await;
    browser.type_into("[data-testid=approve-code]", &code).await;
    browser.click("[data-testid=approve]").await;
    let finished = tokio::task::spawn_blocking(move || link.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    browser
        .wait_for(
            "return document.querySelector('[data-testid=approve-done]')?.textContent.length > 0
                && document.querySelectorAll('[data-testid=device]').length === 2",
            60,
        )
        .await;
    // The laptop has the history, and is in the group: bob's view has three devices.
    let history = cli_ok(laptop.path(), &server, &["history", "#team"]);
    assert!(history.contains("team hello"), "{history}");
    assert_eq!(team_devices_at_bob(&bob, 3).await.devices, 3);

    // Revoked from the browser: out of the group, and the laptop can no longer sync.
    let laptop_id = browser
        .execute(
            "return [...document.querySelectorAll('[data-testid=device]')]
                .find(d => !d.querySelector('[data-testid=this-device]'))?.dataset.id",
            json!([]),
        )
        .await;
    let laptop_id = laptop_id.as_str().unwrap();
    browser
        .click(&format!(
            "[data-testid=device][data-id=\"{laptop_id}\"] [data-testid=revoke-device]"
        ))
        .await;
    browser.accept_dialog().await;
    browser
        .wait_for(
            "return document.querySelectorAll('[data-testid=device]').length === 1",
            60,
        )
        .await;
    assert_eq!(team_devices_at_bob(&bob, 2).await.devices, 2);
    let (status, _, _) = cli(laptop.path(), &server.url(), &["sync"]);
    assert_ne!(status, 0, "a revoked device is refused");

    // Leaving the group: bob's group is bob alone, and the browser says it left.
    open_chat(&browser, "#team").await;
    browser.click("[data-testid=members]").await;
    browser.click("[data-testid=leave]").await;
    browser.accept_dialog().await;
    let state = team_devices_at_bob(&bob, 1).await;
    assert_eq!(state.members, ["bob"]);
    browser
        .wait_for(
            "return document.querySelector('[data-testid=compose]')?.disabled === true",
            30,
        )
        .await;
}
