//! `parley tui` end to end: two users in two tmux sessions (80x24) against the real server; a
//! message typed by one appears on the other's screen.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Tmux {
    socket: String,
    sessions: Vec<String>,
}

impl Tmux {
    fn new() -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "tmux is not installed: apt-get install tmux (scripts/test does)"
        );
        Tmux {
            // One tmux server per test: tests of this binary run in parallel in one process.
            socket: unique("parley-test"),
            sessions: Vec::new(),
        }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn start(&mut self, name: &str, command: &str) {
        self.start_sized(name, 80, 24, command);
    }

    fn start_sized(&mut self, name: &str, width: u16, height: u16, command: &str) {
        let (width, height) = (width.to_string(), height.to_string());
        self.tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &width,
            "-y",
            &height,
            command,
        ]);
        self.sessions.push(name.to_owned());
    }

    fn keys(&self, session: &str, keys: &[&str]) {
        for key in keys {
            self.tmux(&["send-keys", "-t", session, key]);
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn type_text(&self, session: &str, text: &str) {
        self.tmux(&["send-keys", "-t", session, "-l", text]);
        std::thread::sleep(Duration::from_millis(150));
    }

    fn screen(&self, session: &str) -> String {
        self.tmux(&["capture-pane", "-p", "-t", session])
    }

    fn wait_for(&self, session: &str, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen(session);
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} never appeared on {session}'s screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

#[test]
fn a_message_typed_in_one_tui_appears_in_the_other() {
    let server = TestServer::start();
    let (alice, bob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(
        cli(alice.path(), &server.url(), &["register", "alice"]).0,
        0
    );
    assert_eq!(cli(bob.path(), &server.url(), &["register", "bob"]).0, 0);

    let mut tmux = Tmux::new();
    tmux.start(
        "alice",
        &format!("{BIN} --home {} tui", alice.path().display()),
    );
    tmux.start("bob", &format!("{BIN} --home {} tui", bob.path().display()));
    tmux.wait_for("alice", "online", Duration::from_secs(20));
    tmux.wait_for("bob", "online", Duration::from_secs(20));

    // Alice starts a chat with Bob and writes.
    tmux.keys("alice", &["n"]);
    tmux.wait_for("alice", "Chat with (username)", Duration::from_secs(5));
    tmux.type_text("alice", "bob");
    tmux.keys("alice", &["Enter"]);
    tmux.type_text("alice", "hello from the terminal");
    tmux.keys("alice", &["Enter"]);
    // Sent, then delivered and read (bob's TUI reads it at once): one tick or two.
    tmux.wait_for("alice", "alice ✓", Duration::from_secs(20));

    // It appears on Bob's screen, live, with the sender and an unread mark in the chat list.
    let screen = tmux.wait_for("bob", "hello from the terminal", Duration::from_secs(20));
    assert!(screen.contains("alice"), "{screen}");

    // Bob answers with two lines; Alice sees both.
    tmux.keys("bob", &["Enter"]);
    tmux.type_text("bob", "first line");
    tmux.keys("bob", &["C-j"]);
    tmux.type_text("bob", "second line");
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("alice", "second line", Duration::from_secs(20));
    let screen = tmux.wait_for("alice", "first line", Duration::from_secs(5));
    assert!(screen.contains("bob"), "{screen}");

    // Help, and a resize to something tiny and back, do not break it.
    tmux.keys("bob", &["Escape", "?"]);
    tmux.wait_for("bob", "Keys (any key closes)", Duration::from_secs(5));
    tmux.keys("bob", &["x"]);
    tmux.tmux(&["resize-window", "-t", "bob", "-x", "20", "-y", "5"]);
    std::thread::sleep(Duration::from_millis(300));
    tmux.tmux(&["resize-window", "-t", "bob", "-x", "80", "-y", "24"]);
    tmux.wait_for("bob", "Chats", Duration::from_secs(5));
    tmux.keys("bob", &["q"]);
    tmux.keys("alice", &["C-c"]);
}

/// The devices screen: a new device shown by `parley link` is approved from the TUI, then
/// renamed and revoked there.
#[test]
fn the_devices_screen_approves_renames_and_revokes_a_device() {
    use std::io::{BufRead as _, BufReader};
    let server = TestServer::start();
    let (alice, laptop) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    assert_eq!(
        cli(alice.path(), &server.url(), &["register", "alice"]).0,
        0
    );
    let mut link = Command::new(BIN)
        .arg("--home")
        .arg(laptop.path())
        .args(["--server", &server.url(), "link", "alice"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(link.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let code = first.trim().strip_prefix("link code: ").unwrap().to_owned();

    let mut tmux = Tmux::new();
    tmux.start(
        "alice",
        &format!("{BIN} --home {} tui", alice.path().display()),
    );
    tmux.wait_for("alice", "online", Duration::from_secs(20));
    tmux.keys("alice", &["D"]);
    tmux.wait_for("alice", "(this device)", Duration::from_secs(10));
    tmux.keys("alice", &["a"]);
    tmux.wait_for(
        "alice",
        "Link code shown on the new device",
        Duration::from_secs(5),
    );
    tmux.type_text("alice", &code);
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "Linked: the new device", Duration::from_secs(30));
    let linked = link.wait_with_output().unwrap();
    assert!(
        linked.status.success(),
        "{}",
        String::from_utf8_lossy(&linked.stderr)
    );
    // The link printed its code as a QR code too.
    assert!(String::from_utf8_lossy(&linked.stderr).contains('█'));

    // Rename the new device (second in the list), then revoke it.
    tmux.keys("alice", &["D"]);
    tmux.wait_for("alice", "(unnamed)", Duration::from_secs(10));
    tmux.keys("alice", &["Down", "r"]);
    tmux.wait_for("alice", "New name for this device", Duration::from_secs(5));
    tmux.type_text("alice", "laptop");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "Device renamed to laptop", Duration::from_secs(10));
    tmux.keys("alice", &["D"]);
    tmux.wait_for("alice", "laptop", Duration::from_secs(10));
    tmux.keys("alice", &["Down", "x"]);
    tmux.wait_for("alice", "Revoke laptop?", Duration::from_secs(5));
    tmux.keys("alice", &["y"]);
    tmux.wait_for("alice", "Device revoked", Duration::from_secs(20));
    tmux.keys("alice", &["q"]);
    let (status, _, stderr) = cli(laptop.path(), &server.url(), &["sync"]);
    assert_ne!(status, 0);
    assert!(stderr.contains("revoked"), "{stderr}");
}

#[test]
fn a_new_device_links_from_the_tui_which_shows_the_code_as_a_qr_code() {
    let server = TestServer::start();
    let url = server.url();
    let (alice, bob, laptop) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    assert_eq!(cli(alice.path(), &url, &["register", "alice"]).0, 0);
    assert_eq!(cli(bob.path(), &url, &["register", "bob"]).0, 0);
    assert_eq!(
        cli(bob.path(), &url, &["send", "alice", "from before the link"]).0,
        0
    );
    assert_eq!(cli(alice.path(), &url, &["sync"]).0, 0);

    let mut tmux = Tmux::new();
    // Tall enough for the QR code below the text.
    tmux.start_sized(
        "laptop",
        80,
        40,
        &format!(
            "{BIN} --home {} --server {url} tui",
            laptop.path().display()
        ),
    );
    tmux.wait_for("laptop", "no Parley account yet", Duration::from_secs(10));
    tmux.keys("laptop", &["l"]);
    tmux.wait_for("laptop", "The account to link", Duration::from_secs(5));
    tmux.type_text("laptop", "alice");
    tmux.keys("laptop", &["Enter"]);
    let screen = tmux.wait_for("laptop", "link code: ", Duration::from_secs(10));
    assert!(
        screen.contains('█') || screen.contains('▀') || screen.contains('▄'),
        "no QR code on the screen:\n{screen}"
    );
    let code: String = screen
        .split("link code: ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let (status, out, err) = cli(alice.path(), &url, &["devices", "approve", &code]);
    assert_eq!(status, 0, "{out}{err}");
    // The new device opens the full UI, with alice's chat and its history.
    tmux.wait_for("laptop", "online", Duration::from_secs(30));
    tmux.keys("laptop", &["Enter"]);
    tmux.wait_for("laptop", "from before the link", Duration::from_secs(10));
}

/// What one does to a message from the TUI (issue 14): react, reply, the ticks, "typing…",
/// read receipts and the disappearing timer, against a CLI user on the other side.
#[test]
fn the_tui_reacts_replies_shows_ticks_and_typing_and_sets_the_timer() {
    let server = TestServer::start();
    let (alice, bob) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = server.url();
    let ok = |home: &std::path::Path, args: &[&str]| {
        let (code, out, err) = cli(home, &url, args);
        assert_eq!(code, 0, "parley {args:?}: {out}{err}");
        out
    };
    ok(alice.path(), &["register", "alice"]);
    ok(bob.path(), &["register", "bob"]);
    ok(alice.path(), &["send", "bob", "react to me"]);
    let history = |home: &std::path::Path| json_lines(&ok(home, &["history", "bob", "--json"]));

    let mut tmux = Tmux::new();
    tmux.start("bob", &format!("{BIN} --home {} tui", bob.path().display()));
    tmux.wait_for("bob", "react to me", Duration::from_secs(20));
    // Opening the chat read it: alice's message shows read once she syncs.
    let read = Instant::now();
    loop {
        ok(alice.path(), &["sync"]);
        if history(alice.path())[0]["status"] == "read" {
            break;
        }
        assert!(
            read.elapsed() < Duration::from_secs(20),
            "{:?}",
            history(alice.path())
        );
        std::thread::sleep(Duration::from_millis(300));
    }

    tmux.keys("bob", &["Tab", "+"]);
    tmux.wait_for("bob", "React with", Duration::from_secs(5));
    tmux.type_text("bob", "👍");
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("bob", "👍 1", Duration::from_secs(10));
    tmux.keys("bob", &["p"]);
    tmux.wait_for("bob", "Reply (Enter sends", Duration::from_secs(5));
    tmux.type_text("bob", "reacted");
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("bob", "✓ sent", Duration::from_secs(10));
    ok(alice.path(), &["sync"]);
    let lines = history(alice.path());
    assert_eq!(lines[0]["reactions"]["👍"][0], "bob", "{lines:?}");
    let reply = lines
        .iter()
        .find(|l| l["text"] == "reacted")
        .expect("the reply");
    assert_eq!(reply["reply_to"], lines[0]["id"]);
    // alice's sync told bob she has it: two ticks on his screen.
    tmux.wait_for("bob", "✓✓ delivered", Duration::from_secs(10));

    ok(alice.path(), &["typing", "bob"]);
    tmux.wait_for("bob", "alice typing…", Duration::from_secs(10));

    // A picture: saved from the TUI, then shown small.
    use base64::Engine as _;
    let dot = base64::engine::general_purpose::STANDARD
        .decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
        .unwrap();
    let photo = alice.path().join("dot.png");
    std::fs::write(&photo, &dot).unwrap();
    ok(
        alice.path(),
        &["send", "bob", "--file", photo.to_str().unwrap()],
    );
    tmux.wait_for("bob", "📎 dot.png", Duration::from_secs(10));
    let saved = bob.path().join("saved-dot.png");
    tmux.keys("bob", &["Escape", "Tab", "Down", "Down", "Down", "S"]);
    tmux.wait_for("bob", "Save the file as", Duration::from_secs(5));
    for _ in 0.."dot.png".len() {
        tmux.keys("bob", &["BSpace"]);
    }
    tmux.type_text("bob", saved.to_str().unwrap());
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for(
        "bob",
        "saved-dot.png (any key closes)",
        Duration::from_secs(10),
    );
    assert_eq!(std::fs::read(&saved).unwrap(), dot);
    tmux.keys("bob", &["x"]);

    tmux.keys("bob", &["Escape", "t"]);
    tmux.wait_for("bob", "Disappearing messages", Duration::from_secs(5));
    tmux.type_text("bob", "1h");
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("bob", "⏱ 1 hour", Duration::from_secs(10));
    ok(alice.path(), &["sync"]);
    let lines = history(alice.path());
    assert!(
        lines
            .iter()
            .any(|l| l["text"] == "bob set messages to disappear 1 hour after sending"),
        "{lines:?}"
    );
    tmux.keys("bob", &["q"]);
}
