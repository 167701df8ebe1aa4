//! Careless use must not lose anything: what must hold when a new user does what comes naturally
//! (two commands at once, a one-off server, two groups with one name, …), against the real
//! `parley` binary and server.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The CLI with a home and no `--server`: what the user types after registering.
fn parley(home: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("PARLEY_SERVER")
        .output()
        .expect("run parley");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn ok(result: (i32, String, String)) -> String {
    assert_eq!(result.0, 0, "stdout: {}\nstderr: {}", result.1, result.2);
    result.1
}

/// Registers each name on a home of its own.
fn accounts(server: &TestServer, names: &[&str]) -> Vec<tempfile::TempDir> {
    names
        .iter()
        .map(|name| {
            let home = tempfile::tempdir().unwrap();
            ok(cli(home.path(), &server.url(), &["register", name]));
            home
        })
        .collect()
}

fn texts(stdout: &str) -> Vec<String> {
    json_lines(stdout)
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---- Item 13: two processes on one home ----

#[test]
fn eight_parallel_sends_on_one_home_all_arrive_exactly_once() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    ok(parley(alice, &["send", "bob", "first"]));

    let children: Vec<_> = (0..8)
        .map(|i| {
            Command::new(BIN)
                .arg("--home")
                .arg(alice)
                .args(["send", "bob", &format!("parallel {i}")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "a parallel send failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut received = texts(&ok(parley(bob, &["sync", "--json"])));
    received.sort();
    let mut expected: Vec<String> = (0..8).map(|i| format!("parallel {i}")).collect();
    expected.push("first".into());
    expected.sort();
    assert_eq!(received, expected);
    // Nothing is left half-sent on alice's side either.
    let history = json_lines(&ok(parley(alice, &["history", "bob", "--json"])));
    assert_eq!(history.len(), 9);
    assert!(history.iter().all(|m| m["status"] == "sent"), "{history:?}");
}

#[test]
fn a_command_on_a_home_in_use_waits_and_says_so() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    let mut follower = Command::new(BIN)
        .arg("--home")
        .arg(alice)
        .args(["sync", "--follow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let mut send = Command::new(BIN)
        .arg("--home")
        .arg(alice)
        .args(["send", "bob", "while following"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let still_waiting = send.try_wait().unwrap().is_none();
    let _ = follower.kill();
    let _ = follower.wait();
    let output = send.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(still_waiting, "the send did not wait for the other process");
    assert!(
        stderr.contains("waiting for another parley process using this home"),
        "{stderr}"
    );
    assert_eq!(
        texts(&ok(parley(bob, &["sync", "--json"]))),
        ["while following"]
    );
}

// ---- Item 16: a one-off --server ----

/// A plain HTTP server that is not Parley: every request gets `404` with an empty body.
fn not_parley() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    stream
                        .set_read_timeout(Some(Duration::from_millis(500)))
                        .unwrap();
                    let mut buffer = [0u8; 65536];
                    let _ = stream.read(&mut buffer);
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    (port, handle)
}

#[test]
fn a_one_off_server_flag_is_not_saved() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    let (port, _other) = not_parley();
    let other = format!("http://127.0.0.1:{port}");

    let (status, _, err) = parley(alice, &["--server", &other, "send", "bob", "hi"]);
    assert_ne!(status, 0);
    assert!(err.starts_with("parley: ") && err.trim().len() > "parley:".len() + 5);

    // The next command without --server still talks to the registered server.
    ok(parley(alice, &["send", "bob", "hello again"]));
    assert!(texts(&ok(parley(bob, &["sync", "--json"]))).contains(&"hello again".to_string()));
    assert_eq!(ok(parley(alice, &["server-address"])).trim(), server.url());
}

#[test]
fn the_stored_server_address_changes_only_by_its_command() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    let (port, _other) = not_parley();
    let other = format!("http://127.0.0.1:{port}");

    ok(parley(alice, &["server-address", &other]));
    assert_eq!(ok(parley(alice, &["server-address"])).trim(), other);
    let (status, _, err) = parley(alice, &["send", "bob", "to nowhere"]);
    assert_ne!(status, 0, "a server that is not Parley accepted a message");
    assert!(err.contains("HTTP 404"), "{err}");
    let (status, _, _) = parley(alice, &["server-address", "ftp://nowhere"]);
    assert_ne!(status, 0, "an address that is not http(s) was stored");

    ok(parley(alice, &["server-address", &server.url()]));
    ok(parley(alice, &["send", "bob", "back home"]));
    assert!(texts(&ok(parley(bob, &["sync", "--json"]))).contains(&"back home".to_string()));
}

#[test]
fn no_error_line_is_empty() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice"]);
    let (port, _other) = not_parley();
    let other = format!("http://127.0.0.1:{port}");
    for args in [
        vec!["--server", &other, "sync"],
        vec!["--server", &other, "send", "bob", "hi"],
        vec!["--server", &other, "group", "create", "team", "bob"],
    ] {
        let (status, out, err) = parley(homes[0].path(), &args);
        assert_ne!(status, 0, "{args:?}: {out}");
        let line = err.lines().next().unwrap_or_default();
        let message = line.strip_prefix("parley:").unwrap_or(line).trim();
        assert!(message.len() > 5, "{args:?}: empty error line {err:?}");
    }
}

// ---- Item 7: files only their owner can read ----

#[test]
fn a_client_home_and_its_database_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let server = TestServer::start();
    let parent = tempfile::tempdir().unwrap();
    let home = parent.path().join("alice-home");
    ok(cli(&home, &server.url(), &["register", "alice"]));
    ok(cli(&home, &server.url(), &["sync"]));
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&home), 0o700, "home directory");
    for file in ["parley.db", "parley.db-wal", "parley.db-shm"] {
        let path = home.join(file);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{file}");
        }
    }
    assert_eq!(mode(&home.join("parley.db")), 0o600);
}

// ---- Item 14: two groups with the same name ----

#[test]
fn a_second_group_of_ones_own_with_a_name_in_use_is_refused() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob", "carol"]);
    let alice = homes[0].path();
    ok(parley(alice, &["group", "create", "team", "bob"]));
    let (status, _, err) = parley(alice, &["group", "create", "team", "carol"]);
    assert_ne!(status, 0, "a second #team was created");
    assert!(err.contains("#team") && err.contains("already"), "{err}");
    let chats = json_lines(&ok(parley(alice, &["chats", "--json"])));
    assert_eq!(chats.len(), 1, "{chats:?}");
}

#[test]
fn incoming_groups_with_one_name_stay_addressable() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob", "dave"]);
    let (alice, bob, dave) = (homes[0].path(), homes[1].path(), homes[2].path());
    ok(parley(alice, &["group", "create", "team", "bob"]));
    ok(parley(dave, &["group", "create", "team", "bob"]));
    ok(parley(bob, &["sync"]));

    // Sending to the ambiguous name is refused, naming a handle for each.
    let (status, _, err) = parley(bob, &["send", "#team", "which one?"]);
    assert_ne!(status, 0, "the ambiguous #team was picked silently");
    assert!(err.contains("ambiguous"), "{err}");
    let handles: Vec<String> = err
        .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
        .filter(|w| w.starts_with("#team@"))
        .map(|w| w.trim_end_matches([',', ';', ':', '.']).to_owned())
        .collect();
    assert_eq!(handles.len(), 2, "{err}");

    // `chats` tells them apart, with the same handles.
    let chats: Vec<String> = json_lines(&ok(parley(bob, &["chats", "--json"])))
        .iter()
        .map(|c| c["chat"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted_chats = chats.clone();
    sorted_chats.sort();
    let mut sorted_handles = handles.clone();
    sorted_handles.sort();
    assert_eq!(sorted_chats, sorted_handles);

    // Each handle reaches its own group, and only that one.
    for handle in &handles {
        ok(parley(bob, &["send", handle, &format!("to {handle}")]));
    }
    let for_alice = texts(&ok(parley(alice, &["sync", "--json"])));
    let for_dave = texts(&ok(parley(dave, &["sync", "--json"])));
    assert_eq!(for_alice.len(), 1, "{for_alice:?}");
    assert_eq!(for_dave.len(), 1, "{for_dave:?}");
    assert_ne!(for_alice, for_dave);
    // History and group commands take the handle too.
    let history: Vec<String> = json_lines(&ok(parley(bob, &["history", &handles[0], "--json"])))
        .iter()
        .filter(|m| m["kind"] == "text")
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(history, [format!("to {}", handles[0])]);
    ok(parley(bob, &["group", "leave", &handles[0]]));
}

// ---- Item 17: members are told what happened to them ----

#[test]
fn a_removed_member_is_told_who_removed_them() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob", "carol"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    ok(parley(alice, &["group", "create", "team", "bob", "carol"]));
    ok(parley(bob, &["sync"]));
    ok(parley(alice, &["group", "remove", "team", "bob"]));
    let out = ok(parley(bob, &["sync"]));
    assert!(out.contains("alice removed you from #team"), "{out}");
    let history = ok(parley(bob, &["history", "#team"]));
    assert!(
        history.contains("alice removed you from #team"),
        "{history}"
    );
}

#[test]
fn an_added_member_is_told_who_added_them() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    ok(parley(alice, &["group", "create", "team", "bob"]));
    let out = ok(parley(bob, &["sync"]));
    assert!(out.contains("alice added you to #team"), "{out}");
}

#[test]
fn group_members_lists_members_and_admins() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob", "carol"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    ok(parley(alice, &["group", "create", "team", "bob", "carol"]));
    ok(parley(bob, &["sync"]));
    let out = ok(parley(bob, &["group", "members", "team"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["alice (admin)", "bob", "carol"], "{out}");
}

#[test]
fn a_blocked_account_can_be_listed_and_unblocked() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    ok(parley(bob, &["send", "alice", "before"]));
    ok(parley(alice, &["sync"]));
    ok(parley(alice, &["block", "bob"]));
    assert_eq!(ok(parley(alice, &["blocked"])).trim(), "bob");
    ok(parley(bob, &["send", "alice", "while blocked"]));
    assert!(texts(&ok(parley(alice, &["sync", "--json"]))).is_empty());
    ok(parley(alice, &["unblock", "bob"]));
    assert_eq!(ok(parley(alice, &["blocked"])).trim(), "");
    ok(parley(bob, &["send", "alice", "after"]));
    assert_eq!(texts(&ok(parley(alice, &["sync", "--json"]))), ["after"]);
    let (status, _, err) = parley(alice, &["unblock", "bob"]);
    assert_ne!(status, 0);
    assert!(err.contains("not blocked"), "{err}");
}

#[test]
fn empty_or_blank_messages_are_refused() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    for text in ["", "   ", "\n\t "] {
        let (status, _, err) = parley(alice, &["send", "bob", text]);
        assert_ne!(status, 0, "{text:?} was sent");
        assert!(err.contains("empty"), "{err}");
    }
    assert!(texts(&ok(parley(bob, &["sync", "--json"]))).is_empty());
}

// ---- Item 15: moderators remove a suspended account ----

#[test]
fn moderators_leave_one_to_one_chats_alone_and_messages_sent_there_arrive() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob", "carol"]);
    let (alice, bob, carol) = (homes[0].path(), homes[1].path(), homes[2].path());
    ok(parley(alice, &["send", "bob", "hi bob"]));
    ok(parley(alice, &["group", "create", "town", "bob", "carol"]));
    ok(parley(bob, &["sync"]));
    ok(parley(carol, &["sync"]));

    admin_ok(&server, &["suspend", "alice"]);
    let out = admin_ok(&server, &["remove-from-groups", "alice"]);
    assert!(out.contains("in 1 group"), "{out}");
    ok(parley(bob, &["sync"]));
    ok(parley(carol, &["sync"]));
    ok(parley(bob, &["sync"]));

    // Bob's message in the 1:1 chat is sent into a live chat: alice reads it once unsuspended.
    let sent = json_lines(&ok(parley(bob, &["history", "alice", "--json"])));
    assert_eq!(sent.len(), 1);
    ok(parley(bob, &["send", "alice", "are you there?"]));
    admin_ok(&server, &["unsuspend", "alice"]);
    let received = texts(&ok(parley(alice, &["sync", "--json"])));
    assert!(
        received.contains(&"are you there?".to_string()),
        "{received:?}"
    );
    let out = ok(parley(alice, &["sync"]));
    assert!(!out.contains("parley:"), "{out}");
    ok(parley(alice, &["send", "bob", "back again"]));
    assert_eq!(texts(&ok(parley(bob, &["sync", "--json"]))), ["back again"]);
}

#[test]
fn a_member_whose_removal_is_pending_fails_cleanly() {
    let server = TestServer::start();
    let homes = accounts(&server, &["alice", "bob", "carol"]);
    let (alice, bob) = (homes[0].path(), homes[1].path());
    ok(parley(bob, &["group", "create", "town", "alice"]));
    ok(parley(bob, &["group", "add", "town", "carol"]));
    ok(parley(alice, &["sync"]));

    admin_ok(&server, &["suspend", "alice"]);
    admin_ok(&server, &["remove-from-groups", "alice"]);
    admin_ok(&server, &["unsuspend", "alice"]);
    // Before the members commit the removal, alice syncs and tries to send.
    let (status, _, err) = parley(alice, &["sync"]);
    assert_eq!(status, 0, "sync failed: {err}");
    let (status, _, err) = parley(alice, &["send", "#town", "still here?"]);
    assert_ne!(
        status, 0,
        "a message was accepted from a member being removed"
    );
    assert!(err.contains("moderators"), "{err}");
    // Once a member commits it, alice is told.
    ok(parley(bob, &["sync"]));
    let out = ok(parley(alice, &["sync"]));
    assert!(
        out.contains("the server's moderators removed you from #town"),
        "{out}"
    );
}

// ---- Sibling of item 15: a pending proposal must not make a send fail ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_right_after_receiving_a_members_leave_goes_out() {
    use parley_client::ChatRef;
    let server = TestServer::start();
    let alice = Device::register(&server.url(), "alice").await;
    let bob = Device::register(&server.url(), "bob").await;
    let carol = Device::register(&server.url(), "carol").await;
    let user = |n: &str| parley_protocol::Username::parse(n).unwrap();
    alice
        .client
        .create_group("team", &[user("bob"), user("carol")])
        .await
        .unwrap();
    bob.client.sync().await.unwrap();
    carol.client.sync().await.unwrap();
    carol.client.leave_group("team").await.unwrap();
    // Alice's app has fetched carol's proposal (a receive, as a live push triggers) but not yet
    // committed it when she sends.
    alice.client.receive().await.unwrap();
    let team = ChatRef::Group("team".into());
    let sent = alice.client.send_text(&team, "after carol left").await;
    assert!(sent.is_ok(), "{:?}", sent.err());
    assert_eq!(sent.unwrap().status, "sent");
    let got: Vec<String> = bob
        .client
        .sync()
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.kind == "text")
        .map(|m| m.text)
        .collect();
    assert_eq!(got, ["after carol left"]);
}
