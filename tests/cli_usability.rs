//! The command line as a new user meets it: help for everything, output that reads naturally,
//! clear refusals, and good manners with pipes and log files.

mod common;

use std::process::{Command, Stdio};

use common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN).args(args).output().expect("run parley");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The entries of one section ("Commands:", "Arguments:", "Options:") of clap's help output.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  "))
        .collect()
}

/// An entry has help when something follows its name after a gap of two spaces or more.
fn has_help(entry: &str) -> bool {
    let name_end = entry.trim_start().find("  ");
    name_end.is_some_and(|i| !entry.trim_start()[i..].trim().is_empty())
}

#[test]
fn every_command_flag_and_argument_has_a_one_line_help() {
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let (status, help, err) = run(&args);
        assert_eq!(status, 0, "{args:?}: {err}");
        seen += 1;
        for title in ["Commands:", "Arguments:", "Options:"] {
            for entry in section(&help, title) {
                assert!(
                    has_help(entry),
                    "`parley {}` lacks help for {entry:?}",
                    path.join(" ")
                );
            }
        }
        for entry in section(&help, "Commands:") {
            let name = entry.split_whitespace().next().unwrap_or_default();
            if name != "help" {
                let mut sub = path.clone();
                sub.push(name.to_owned());
                pending.push(sub);
            }
        }
    }
    // parley, its 12 commands, 5 group and 8 admin subcommands.
    assert!(seen >= 26, "only {seen} help pages were found");
}

#[test]
fn server_and_admin_help_show_only_their_own_flags() {
    for command in ["server", "admin"] {
        let (_, help, _) = run(&[command, "--help"]);
        for client_flag in ["--home", "--server ", "--server <", "--ca-cert"] {
            assert!(
                !help.contains(client_flag),
                "`parley {command} --help` offers the client's {client_flag}:\n{help}"
            );
        }
    }
    // Client flags are accepted before or after the command, and refused where they mean nothing.
    let (status, _, err) = run(&["--home", "/tmp/x", "server", "--listen", "127.0.0.1:0"]);
    assert_ne!(status, 0);
    assert!(err.contains("for client commands"), "{err}");
    let (_, help, _) = run(&["send", "--help"]);
    assert!(help.contains("--home"), "{help}");
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let server = TestServer::start();
    let url = server.url();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(cli(a.path(), &url, &["register", "alice"]).0, 0);
    assert_eq!(cli(b.path(), &url, &["register", "bob"]).0, 0);
    assert_eq!(cli(a.path(), &url, &["send", "bob", "hi bob"]).0, 0);
    for args in [
        vec!["chats", "--json"],
        vec!["chats"],
        vec!["history", "bob"],
    ] {
        // `parley chats --json | head -c 0`: the pipe is closed before the first line.
        let mut child = Command::new(BIN)
            .arg("--home")
            .arg(a.path())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(output.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn logs_in_a_file_carry_no_colour_codes() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    assert_eq!(cli(home.path(), &server.url(), &["register", "alice"]).0, 0);
    let log = std::fs::read(server.log_path()).unwrap();
    assert!(!log.is_empty(), "the server logged nothing");
    assert!(
        !log.contains(&0x1b),
        "ANSI escape in the log file: {}",
        String::from_utf8_lossy(&log[..log.len().min(300)])
    );
}

#[test]
fn admin_refuses_a_directory_without_server_data() {
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("typo");
    for dir in [empty.path(), missing.as_path()] {
        let (status, _, err) = run(&["admin", "--data", dir.to_str().unwrap(), "reports"]);
        assert_ne!(status, 0, "admin ran on {}", dir.display());
        assert!(err.contains("holds no server data"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    assert_eq!(
        std::fs::read_dir(empty.path()).unwrap().count(),
        0,
        "admin wrote there"
    );
}

#[test]
fn naming_an_unknown_account_is_an_error() {
    let server = TestServer::start();
    let data = server.data_dir();
    let home = tempfile::tempdir().unwrap();
    assert_eq!(cli(home.path(), &server.url(), &["register", "alice"]).0, 0);
    for command in ["suspend", "unsuspend"] {
        let (status, _, err) = run(&["admin", "--data", data.to_str().unwrap(), command, "nobody"]);
        assert_ne!(status, 0, "{command} nobody succeeded");
        assert!(err.contains("no account named nobody"), "{command}: {err}");
    }
    let (status, out, err) = run(&[
        "admin",
        "--data",
        data.to_str().unwrap(),
        "suspend",
        "alice",
    ]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("alice suspended"), "{out}");

    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    assert_eq!(cli(home.path(), &server.url(), &["register", "bob"]).0, 0);
    let (status, _, err) = cli(home.path(), &server.url(), &["block", "nobody"]);
    assert_ne!(status, 0, "blocking an unknown account succeeded");
    assert!(err.contains("no account named nobody"), "{err}");
}

#[test]
fn human_output_reads_naturally() {
    let server = TestServer::start();
    let url = server.url();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (a.path(), b.path());
    assert_eq!(cli(a, &url, &["register", "alice"]).0, 0);
    assert_eq!(cli(b, &url, &["register", "bob"]).0, 0);
    assert_eq!(cli(a, &url, &["send", "bob", "hi bob"]).0, 0);
    assert_eq!(cli(a, &url, &["send", "bob", "line one\nline two"]).0, 0);

    // A 1:1 line names the sender once.
    let (status, out, err) = cli(b, &url, &["sync"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("] alice: hi bob"), "{out}");
    assert!(!out.contains("alice alice"), "{out}");

    // One line per chat, with the unread count and the time of the last message.
    let (_, out, _) = cli(b, &url, &["chats"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("alice  2 unread  ["), "{out}");
    assert!(out.contains("alice: line one…"), "{out}");
    assert!(!out.contains("line two"), "{out}");

    // In a group the chat is named.
    assert_eq!(cli(a, &url, &["group", "create", "team", "bob"]).0, 0);
    assert_eq!(cli(a, &url, &["send", "#team", "hello team"]).0, 0);
    let (_, out, _) = cli(b, &url, &["sync"]);
    assert!(out.contains("] #team alice: hello team"), "{out}");

    // A message the server refused for good shows as failed: bob writes to the group after
    // alice removed him, before he has seen it.
    assert_eq!(cli(a, &url, &["group", "remove", "team", "bob"]).0, 0);
    let _ = cli(b, &url, &["send", "#team", "too late"]);
    let (_, out, _) = cli(b, &url, &["history", "#team"]);
    let line = out
        .lines()
        .find(|l| l.contains("too late"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.ends_with("[failed: not delivered]"), "{out}");
}

#[test]
fn someone_you_have_heard_from_can_be_blocked_offline() {
    let server = TestServer::start();
    let url = server.url();
    let homes: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (a, b, c) = (homes[0].path(), homes[1].path(), homes[2].path());
    for (home, name) in [(a, "alice"), (b, "bob"), (c, "carol")] {
        assert_eq!(cli(home, &url, &["register", name]).0, 0);
    }
    assert_eq!(
        cli(a, &url, &["group", "create", "team", "bob", "carol"]).0,
        0
    );
    assert_eq!(cli(c, &url, &["sync"]).0, 0);
    assert_eq!(cli(c, &url, &["send", "#team", "spam"]).0, 0);
    assert_eq!(cli(b, &url, &["sync"]).0, 0);
    // Carol is no chat partner of bob's, but he has her message: no server needed to block her.
    let (status, out, err) = cli(b, "http://127.0.0.1:9", &["block", "carol"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("carol is blocked"), "{out}");
}
