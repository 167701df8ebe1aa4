//! Careless use must not lose anything: what must hold when a new user does what comes naturally
//! (two commands at once, a one-off server, two groups with one name, …), against the real
//! `parley` binary and server.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

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
