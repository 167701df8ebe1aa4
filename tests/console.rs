//! The web moderation console, driven in headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which scripts/test installs) through the W3C WebDriver protocol.

mod common;

use serde_json::Value;

use common::*;
use parley_client::ChatRef;
use parley_protocol::Username;

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
