//! What people do with messages in the web client, in headless Chromium against the real
//! server, checked on the other side: files to and from the command line byte for byte,
//! replies, reactions, edits, deletes, receipts, timers, group members, safety numbers, and a
//! report that reaches the moderators verified.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use parley_client::{ChatRef, Client, MessageView};
use serde_json::{json, Value};

/// A 64×48 PNG, striped, without an image library: zlib from flate2, CRCs from flate2.
fn png(path: &Path) {
    use std::io::Write as _;
    let (width, height) = (64u32, 48u32);
    let mut raw = Vec::new();
    for y in 0..height {
        raw.push(0); // no filter
        for x in 0..width {
            raw.extend_from_slice(&[
                (x * 4) as u8,
                (y * 5) as u8,
                if (x / 8 + y / 8) % 2 == 0 { 200 } else { 40 },
            ]);
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).unwrap();
    let data = z.finish().unwrap();
    let chunk = |kind: &[u8], body: &[u8]| {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(body);
        [
            &(body.len() as u32).to_be_bytes()[..],
            kind,
            body,
            &crc.sum().to_be_bytes(),
        ]
        .concat()
    };
    let header = [
        &width.to_be_bytes()[..],
        &height.to_be_bytes(),
        &[8, 2, 0, 0, 0],
    ]
    .concat();
    let file = [
        &b"\x89PNG\r\n\x1a\n"[..],
        &chunk(b"IHDR", &header),
        &chunk(b"IDAT", &data),
        &chunk(b"IEND", &[]),
    ]
    .concat();
    std::fs::write(path, file).unwrap();
}

/// `size` bytes that do not compress (xorshift), seeded by the name.
fn random_file(path: &Path, size: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ path.to_string_lossy().len() as u64;
    let bytes: Vec<u8> = (0..size)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

/// Gives `path` to the chat's file input, as choosing it in the file dialog does.
async fn attach(browser: &Browser, path: &Path) {
    // WebDriver types a path into a file input; the input may be drawn as a button instead.
    browser
        .execute(
            "const i = document.querySelector('[data-testid=attach]'); i.style.display = 'block'; return true",
            json!([]),
        )
        .await;
    browser
        .type_into("[data-testid=attach]", path.to_str().unwrap())
        .await;
}

/// Bob's messages in his chat `chat` as his CLI shows them.
fn cli_history(home: &Path, server: &TestServer, chat: &str) -> Vec<Value> {
    cli_ok(home, server, &["sync"]);
    let out = cli_ok(home, server, &["history", chat, "--json"]);
    serde_json::from_str::<Vec<Value>>(&out).unwrap_or_else(|_| {
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    })
}

/// Waits for a download named `name` to be complete in the browser's downloads.
async fn downloaded(browser: &Browser, name: &str, size: usize) -> Vec<u8> {
    let path: PathBuf = browser.downloads().join(name);
    for _ in 0..300 {
        if let Ok(bytes) = std::fs::read(&path) {
            if bytes.len() == size {
                return bytes;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never arrived whole", path.display());
}

/// Waits until the browser sent the file `name`, then has bob's CLI save it into `dir`;
/// returns where.
async fn sent_and_saved_by_cli(
    browser: &Browser,
    server: &TestServer,
    bob: &Path,
    name: &str,
    dir: &Path,
) -> PathBuf {
    browser
        .wait_for(
            &format!(
                "return [...document.querySelectorAll('[data-testid=message]')]
                    .some(m => m.textContent.includes({name:?}) && m.dataset.id
                        && !['sending', 'failed'].includes(m.dataset.status))"
            ),
            60,
        )
        .await;
    let history = cli_history(bob, server, "alice");
    let carrying = history
        .iter()
        .find(|m| m["attachments"][0]["name"] == name)
        .unwrap_or_else(|| panic!("{history:?}"));
    let saved = dir.join(format!("saved-{name}"));
    cli_ok(
        bob,
        server,
        &[
            "attachment",
            "save",
            carrying["id"].as_str().unwrap(),
            "--out",
            saved.to_str().unwrap(),
        ],
    );
    saved
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_go_from_the_browser_to_the_cli_and_back_byte_identical() {
    let server = TestServer::start();
    let files = tempfile::tempdir().unwrap();
    let bob = tempfile::tempdir().unwrap();
    cli_ok(bob.path(), &server, &["register", "bob"]);
    let alice = browser_user(&server, "alice").await;
    start_chat(&alice, "bob", "").await;
    send(&alice, "files follow").await;

    // Browser → CLI: 9 MB of random bytes, in three upload parts of 4 MiB.
    let upload = files.path().join("notes.bin");
    let sent = random_file(&upload, 9_000_000);
    // What the upload bar shows while it goes, sampled.
    alice
        .execute(
            "window.progressSeen = [];
             setInterval(() => {
                 const bar = document.querySelector('[data-testid=upload-progress]');
                 if (bar && !bar.hidden) window.progressSeen.push([bar.value, bar.max]);
             }, 5);
             return true",
            json!([]),
        )
        .await;
    attach(&alice, &upload).await;
    let saved = sent_and_saved_by_cli(&alice, &server, bob.path(), "notes.bin", files.path()).await;
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        sent,
        "byte-identical at the CLI"
    );
    // The bar moved part by part: somewhere between empty and full, out of the whole size.
    let seen: Vec<(f64, f64)> =
        serde_json::from_value(alice.execute("return window.progressSeen", json!([])).await)
            .unwrap();
    assert!(
        seen.iter()
            .any(|&(done, total)| done > 0.0 && done < total && total >= 9_000_000.0),
        "{:?}",
        &seen[seen.len().saturating_sub(20)..]
    );

    // A file dropped on the chat goes like a chosen one.
    alice
        .execute(
            "const drop = new DataTransfer();
             drop.items.add(new File(['dropped on the chat\\n'], 'dropped.txt', { type: 'text/plain' }));
             const pane = document.querySelector('.pane');
             for (const type of ['dragenter', 'dragover', 'drop']) {
                 pane.dispatchEvent(new DragEvent(type, { dataTransfer: drop, bubbles: true, cancelable: true }));
             }
             return true",
            json!([]),
        )
        .await;
    let saved =
        sent_and_saved_by_cli(&alice, &server, bob.path(), "dropped.txt", files.path()).await;
    assert_eq!(
        std::fs::read_to_string(&saved).unwrap(),
        "dropped on the chat\n"
    );

    // CLI → browser: a picture shows as a preview; a file downloads byte-identical.
    let picture = files.path().join("stripes.png");
    png(&picture);
    cli_ok(
        bob.path(),
        &server,
        &[
            "send",
            "alice",
            "--file",
            picture.to_str().unwrap(),
            "--caption",
            "a picture",
        ],
    );
    // Over two download parts.
    let download = files.path().join("report.dat");
    let bytes = random_file(&download, 5_000_000);
    cli_ok(
        bob.path(),
        &server,
        &["send", "alice", "--file", download.to_str().unwrap()],
    );
    alice
        .wait_for(
            "return [...document.querySelectorAll('[data-testid=message] img')]
                .some(i => i.complete && i.naturalWidth === 64)",
            60,
        )
        .await;
    alice.save_screenshot("web-attachments-desktop").await;
    let id = alice
        .wait_for(
            "return [...document.querySelectorAll('[data-testid=message]')]
                .find(m => m.textContent.includes('report.dat'))?.dataset.id",
            60,
        )
        .await;
    alice
        .click(&format!(
            "{} [data-testid=download]",
            message(id.as_str().unwrap())
        ))
        .await;
    assert_eq!(
        downloaded(&alice, "report.dat", bytes.len()).await,
        bytes,
        "byte-identical in the browser"
    );
    alice.resize(360, 740).await;
    alice.save_screenshot("web-attachments-phone").await;
}

async fn synced(client: &Client, until: impl Fn(&[MessageView]) -> bool) -> Vec<MessageView> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen.extend(client.sync().await.unwrap());
        if until(&seen) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never arrived; saw {seen:?}");
}

/// Bob's view of one message in his chat with alice.
fn bobs_view(bob: &Client, id: &str) -> MessageView {
    bob.history(&ChatRef::parse("alice").unwrap(), 200)
        .unwrap()
        .into_iter()
        .find(|m| m.id == id)
        .unwrap_or_else(|| panic!("bob has no message {id}"))
}

/// Clicks the action `action` (reply, react, edit, delete, report, block) of message `id`.
async fn act(browser: &Browser, id: &str, action: &str) {
    browser
        .click(&format!("{} [data-testid={action}]", message(id)))
        .await;
}

async fn until_bob(bob: &Client, id: &str, check: impl Fn(&MessageView) -> bool) -> MessageView {
    for _ in 0..100 {
        bob.sync().await.unwrap();
        let view = bobs_view(bob, id);
        if check(&view) {
            return view;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("bob's view of {id} never changed: {:?}", bobs_view(bob, id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_browser_does_to_messages_reaches_the_other_side() {
    let server = TestServer::start();
    let alice = browser_user(&server, "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let to_alice = ChatRef::parse("alice").unwrap();
    let pills = bob
        .client
        .send_text(&to_alice, "buy cheap pills")
        .await
        .unwrap();
    alice.find("[data-testid=chat][data-chat=bob]").await;
    open_chat(&alice, "bob").await;
    wait_shown(&alice, "bob", "buy cheap pills").await;

    // Ticks: delivered once bob's device has it, read once he read it.
    send(&alice, "hello bob").await;
    let hello = message_id(&alice, "hello bob").await;
    synced(&bob.client, |seen| {
        seen.iter().any(|m| m.text == "hello bob")
    })
    .await;
    bob.client.read(&to_alice).await.unwrap();
    alice
        .wait_for(
            &format!(
                "return document.querySelector('{}')?.dataset.status === 'read'",
                message(&hello)
            ),
            30,
        )
        .await;

    // A reply, a reaction, an edit and a delete, as bob's device shows them.
    act(&alice, &pills.id, "reply").await;
    send(&alice, "what pills?").await;
    let reply = message_id(&alice, "what pills?").await;
    let view = until_bob(&bob.client, &reply, |_| true).await;
    assert_eq!(view.reply_to.as_deref(), Some(pills.id.as_str()));
    act(&alice, &pills.id, "react").await;
    alice
        .click("[data-testid=reaction-option][data-emoji='👍']")
        .await;
    until_bob(&bob.client, &pills.id, |m| {
        m.reactions
            .get("👍")
            .is_some_and(|who| who == &["alice".to_string()])
    })
    .await;
    act(&alice, &reply, "edit").await;
    alice
        .execute(
            "document.querySelector('[data-testid=compose]').value = ''; return true",
            json!([]),
        )
        .await;
    alice
        .type_into("[data-testid=compose]", "which pills?")
        .await;
    alice.click("[data-testid=send]").await;
    let edited = until_bob(&bob.client, &reply, |m| m.edited).await;
    assert_eq!(edited.text, "which pills?");
    alice
        .wait_for(
            &format!(
                "return document.querySelector('{} .text')?.textContent === 'which pills?'",
                message(&reply)
            ),
            30,
        )
        .await;
    act(&alice, &hello, "delete").await;
    alice.accept_dialog().await;
    until_bob(&bob.client, &hello, |m| m.deleted).await;
    alice.save_screenshot("web-message-actions-desktop").await;

    // A disappearing timer set in the browser holds for bob too.
    alice
        .execute(
            "const s = document.querySelector('[data-testid=disappearing]'); s.value = '3600';
             s.dispatchEvent(new Event('change', { bubbles: true })); return true",
            json!([]),
        )
        .await;
    let mut timer = 0;
    for _ in 0..100 {
        bob.client.sync().await.unwrap();
        timer = bob.client.disappearing(&to_alice).unwrap();
        if timer == 3600 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(timer, 3600, "bob's device has the browser's timer");

    // The safety number is the one bob's device computes; marking it verified shows.
    alice.click("[data-testid=safety]").await;
    let digits = alice.text("[data-testid=safety-digits]").await;
    let bobs = bob
        .client
        .safety_number(&parley_protocol::Username::parse("alice").unwrap())
        .unwrap();
    assert_eq!(
        digits.split_whitespace().collect::<String>(),
        bobs.digits.replace(' ', "")
    );
    alice.save_screenshot("web-safety-number-desktop").await;
    alice.click("[data-testid=verify]").await;
    alice
        .wait_for(
            "return document.querySelector('[data-testid=verified]')?.hidden === false",
            30,
        )
        .await;

    // A group: members added and removed from the browser, as the others' devices see it.
    start_chat(&alice, "#team", "bob").await;
    send(&alice, "team, hello").await;
    alice.click("[data-testid=members]").await;
    alice.type_into("[data-testid=member-name]", "carol").await;
    alice.click("[data-testid=add-member]").await;
    let team = ChatRef::parse("#team").unwrap();
    synced(&carol.client, |_| {
        carol
            .client
            .group_state(&team)
            .is_ok_and(|g| g.members.contains(&"carol".to_string()))
    })
    .await;
    alice.save_screenshot("web-members-desktop").await;
    alice
        .click("[data-testid=remove-member][data-user=carol]")
        .await;
    let mut members = Vec::new();
    for _ in 0..100 {
        bob.client.sync().await.unwrap();
        members = bob
            .client
            .group_state(&team)
            .map(|g| g.members)
            .unwrap_or_default();
        if members == ["alice", "bob"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(members, ["alice", "bob"]);

    // A report from the browser reaches the moderators, verified, with its reason.
    open_chat(&alice, "bob").await;
    act(&alice, &pills.id, "report").await;
    alice.type_into("[data-testid=report-reason]", "spam").await;
    alice.click("[data-testid=report-send]").await;
    alice.find("[data-testid=report-done]").await;
    let (status, out, err) = admin(&server, &["reports", "--json"]);
    assert_eq!(status, 0, "{err}");
    let reports = json_lines(&out);
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["text"], "buy cheap pills");
    assert_eq!(reports[0]["accused"], "bob");
    assert_eq!(reports[0]["reporter"], "alice");
    assert_eq!(reports[0]["reason"], "spam");
    // In the moderation console, the report opens with the reported text.
    let token = admin_ok(&server, &["token", "--label", "ada"])
        .trim()
        .to_owned();
    let console = Browser::start().await;
    console
        .open(&format!("{}/admin/reports", server.url()))
        .await;
    console.type_into("input[name=token]", &token).await;
    console.click("#sign-in").await;
    console.click("a.report-link").await;
    console.wait_text("#reported-text", "buy cheap pills").await;
    assert_eq!(console.text("#accused").await, "bob");

    // Blocked: bob's next message is not shown.
    act(&alice, &pills.id, "block").await;
    alice.accept_dialog().await;
    alice.click("[data-testid=settings]").await;
    alice
        .wait_for(
            "return document.querySelector('[data-testid=blocked-user][data-user=bob]')",
            30,
        )
        .await;
    bob.client
        .send_text(&to_alice, "after the block")
        .await
        .unwrap();
    bob.client
        .send_text(&ChatRef::parse("#team").unwrap(), "also in the group")
        .await
        .unwrap();
    // Carol, not blocked, writes after bob: once hers is in, bob's were processed too.
    carol
        .client
        .send_text(&to_alice, "carol is not blocked")
        .await
        .unwrap();
    alice.find("[data-testid=chat][data-chat=carol]").await;
    open_chat(&alice, "carol").await;
    wait_shown(&alice, "carol", "carol is not blocked").await;
    open_chat(&alice, "bob").await;
    let after = shown(&alice).await;
    assert_eq!(times_shown(&after, "after the block"), 0, "{after:?}");
    open_chat(&alice, "#team").await;
    let in_group = shown(&alice).await;
    assert_eq!(
        times_shown(&in_group, "also in the group"),
        0,
        "{in_group:?}"
    );
    assert_eq!(times_shown(&in_group, "team, hello"), 1, "{in_group:?}");
    alice.resize(360, 740).await;
    alice.save_screenshot("web-message-actions-phone").await;
}
