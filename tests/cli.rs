//! The `parley` command line as a user types it, against the real server.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn the_quick_start_works_as_documented() {
    let server = TestServer::start();
    let url = server.url();
    let homes: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b, c, d) = (
        homes[0].path(),
        homes[1].path(),
        homes[2].path(),
        homes[3].path(),
    );

    for (home, name) in [(a, "alice"), (b, "bob"), (c, "carol"), (d, "dave")] {
        let (status, out, err) = cli(home, &url, &["register", name]);
        assert_eq!(status, 0, "{err}");
        assert!(out.contains(&format!("registered {name}")));
    }
    let (status, _, err) = cli(a, &url, &["send", "bob", "hi bob"]);
    assert_eq!(status, 0, "{err}");

    let (status, out, _) = cli(b, &url, &["sync", "--json"]);
    assert_eq!(status, 0);
    let messages = json_lines(&out);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m["chat"], "alice");
    assert_eq!(m["sender"], "alice");
    assert_eq!(m["text"], "hi bob");
    assert_eq!(m["id"].as_str().unwrap().len(), 32);
    assert!(chrono::DateTime::parse_from_rfc3339(m["sent_at"].as_str().unwrap()).is_ok());

    assert_eq!(
        cli(a, &url, &["group", "create", "team", "bob", "carol"]).0,
        0
    );
    assert_eq!(cli(a, &url, &["send", "#team", "hello team"]).0, 0);
    let (_, out, _) = cli(c, &url, &["sync", "--json"]);
    let messages = json_lines(&out);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["kind"], "notice");
    assert_eq!(messages[0]["text"], "alice added you to #team");
    let messages = &messages[1..];
    assert_eq!(messages[0]["chat"], "#team");
    assert_eq!(messages[0]["text"], "hello team");

    assert_eq!(cli(a, &url, &["group", "add", "team", "dave"]).0, 0);
    assert_eq!(cli(a, &url, &["group", "remove", "team", "carol"]).0, 0);
    assert_eq!(cli(b, &url, &["sync"]).0, 0);
    assert_eq!(cli(b, &url, &["group", "leave", "team"]).0, 0);
    assert_eq!(cli(a, &url, &["sync"]).0, 0);
    assert_eq!(cli(a, &url, &["send", "#team", "just us"]).0, 0);
    let (_, out, _) = cli(d, &url, &["sync", "--json"]);
    assert_eq!(json_lines(&out).last().unwrap()["text"], "just us");
    let (_, out, _) = cli(c, &url, &["sync", "--json"]);
    let seen = json_lines(&out);
    assert!(
        seen.iter().all(|m| m["kind"] == "notice"),
        "carol was removed but reads: {out}"
    );
    assert_eq!(seen[0]["text"], "alice removed you from #team");

    let (status, out, _) = cli(a, &url, &["chats", "--json"]);
    assert_eq!(status, 0);
    let chats = json_lines(&out);
    let names: Vec<&str> = chats.iter().map(|c| c["chat"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"#team") && names.contains(&"bob"),
        "{names:?}"
    );
    let (status, out, _) = cli(a, &url, &["chats"]);
    assert_eq!(status, 0);
    assert!(out.contains("#team"));

    let (_, out, _) = cli(a, &url, &["history", "#team", "--json"]);
    let texts: Vec<String> = json_lines(&out)
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, ["hello team", "just us"]);
    let (_, out, _) = cli(a, &url, &["history", "bob"]);
    assert!(out.contains("alice: hi bob"), "{out}");
}

#[test]
fn errors_are_one_clear_line_and_a_failing_status() {
    let server = TestServer::start();
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["send", "bob", "hi"], "no account"),
        (vec!["register", "Bad Name"], "username"),
    ];
    for (args, expected) in cases {
        let (status, _, err) = cli(home.path(), &url, &args);
        assert_ne!(status, 0, "{args:?} succeeded");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.to_lowercase().contains(expected), "{args:?}: {err}");
    }
    assert_eq!(cli(home.path(), &url, &["register", "alice"]).0, 0);
    for (args, expected) in [
        (vec!["send", "nobody", "hi"], "unknown user"),
        (vec!["send", "#nogroup", "hi"], "no chat named #nogroup"),
        (vec!["history", "#nogroup"], "no chat named"),
        (vec!["send", "alice", "hi"], "yourself"),
        (vec!["register", "alice2"], "already exists"),
    ] {
        let (status, _, err) = cli(home.path(), &url, &args);
        assert_ne!(status, 0, "{args:?} succeeded");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // The server is unreachable.
    let (status, _, err) = cli(home.path(), "http://127.0.0.1:9", &["sync"]);
    assert_ne!(status, 0);
    assert!(err.contains("cannot connect"), "{err}");
}

#[test]
fn sync_follow_prints_messages_as_they_arrive() {
    let server = TestServer::start();
    let url = server.url();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(cli(a.path(), &url, &["register", "alice"]).0, 0);
    assert_eq!(cli(b.path(), &url, &["register", "bob"]).0, 0);
    let mut follower = Command::new(BIN)
        .args(["--home"])
        .arg(b.path())
        .args(["--server", &url, "sync", "--follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    for text in ["one", "two"] {
        assert_eq!(cli(a.path(), &url, &["send", "bob", text]).0, 0);
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("follow printed the message");
        let message: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(message["text"], text);
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    let _ = follower.kill();
    let _ = follower.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_midway_loses_nothing_and_shows_nothing_twice() {
    let server = TestServer::start();
    let url = server.url();
    let alice = Device::register(&url, "alice").await;
    let bob_home = tempfile::tempdir().unwrap();
    assert_eq!(cli(bob_home.path(), &url, &["register", "bob"]).0, 0);
    let chat = parley_client::ChatRef::Direct(parley_protocol::Username::parse("bob").unwrap());
    let total = 800;
    for i in 0..total {
        alice
            .client
            .send_text(&chat, &format!("m{i}"))
            .await
            .unwrap();
    }
    // Bob's app is killed in the middle of a long sync.
    let mut first = Command::new(BIN)
        .arg("--home")
        .arg(bob_home.path())
        .args(["--server", &url, "sync", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = first.stdout.take().unwrap();
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // Killed as soon as it has shown its first message: well inside the sync, however fast
    // the machine.
    let mut printed_first = vec![printed
        .recv_timeout(Duration::from_secs(30))
        .expect("the first sync showed a message")];
    first.kill().unwrap();
    first.wait().unwrap();
    printed_first.extend(printed.iter());
    let (status, out, err) = cli(bob_home.path(), &url, &["sync", "--json"]);
    assert_eq!(status, 0, "{err}");
    let ids = |lines: &[serde_json::Value]| -> Vec<String> {
        lines
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first_ids = ids(&printed_first
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect::<Vec<_>>());
    let second_ids = ids(&json_lines(&out));
    assert!(
        first_ids.len() < total,
        "the first sync finished before it was killed; nothing was tested"
    );
    assert!(
        first_ids.iter().all(|id| !second_ids.contains(id)),
        "a message was shown twice"
    );
    let (_, history, _) = cli(
        bob_home.path(),
        &url,
        &["history", "alice", "--json", "--limit", "5000"],
    );
    let history = json_lines(&history);
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..total).map(|i| format!("m{i}")).collect();
    assert_eq!(
        texts,
        expected.iter().map(String::as_str).collect::<Vec<_>>()
    );
}

#[test]
fn the_server_reads_a_configuration_file_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parley.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "data = {:?}\nlisten = \"127.0.0.1:0\"\nmax_group_members = 3\n",
            data.to_str().unwrap()
        ),
    )
    .unwrap();
    let mut server = Command::new(BIN)
        .args(["server", "--config"])
        .arg(&config)
        .args(["--rate-per-second", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("parley server listening on http://127.0.0.1:"),
        "{line}"
    );
    assert!(
        data.join("parley.db").exists(),
        "the data directory from the file was not used"
    );
    let _ = server.kill();
    let _ = server.wait();

    std::fs::write(&config, "lisen = \"127.0.0.1:0\"\n").unwrap();
    let output = Command::new(BIN)
        .args(["server", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("unknown field"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
