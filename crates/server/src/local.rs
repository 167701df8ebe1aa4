//! Announcements to the server nodes running on a data directory, from other processes on the
//! same machine: `parley admin` on a deployment without NATS.
//!
//! Each node listens on a Unix socket of its own, `nodes/HOST-PID.sock` in the data directory
//! (which is its owner's only: the directory 0700, the socket 0600), and removes it when it
//! stops; a node that starts removes the sockets its machine's crashed nodes left. An
//! announcement is one line per item, and the node answers `ok` once it has passed them all to
//! its live connections:
//!
//! ```text
//! ended USERNAME        the account's sessions ended: its live connections check them now
//! head DEVICE-HEX SEQ   the device's queue head is now SEQ (a hint)
//! ```
//!
//! Like every hint, an announcement is never the truth: an ended session makes a connection
//! check its session in the store, a head makes it read its queue. A line that does not parse
//! is ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parley_protocol::{DeviceId, Username};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::fanout::Announcement;
use crate::App;

/// The nodes' sockets, in the data directory.
const NODES_DIR: &str = "nodes";
/// Longest line a node reads (an `ended` line with the longest username is 38 bytes, a `head`
/// line 60).
const MAX_LINE: u64 = 256;
/// How long one announcing connection may stay open.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an announcer waits for each node.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

impl Announcement {
    fn line(&self) -> String {
        match self {
            Announcement::Ended(user) => format!("ended {user}\n"),
            Announcement::Head(device, head) => format!("head {} {head}\n", device.to_hex()),
        }
    }

    fn parse(line: &str) -> Option<Announcement> {
        let mut words = line.split_ascii_whitespace();
        let announcement = match (words.next()?, words.next()?, words.next()) {
            ("ended", name, None) => Announcement::Ended(Username::parse(name).ok()?),
            ("head", device, Some(head)) => {
                let bytes: [u8; 16] = hex::decode(device).ok()?.try_into().ok()?;
                Announcement::Head(DeviceId::from_bytes(bytes), head.parse().ok()?)
            }
            _ => return None,
        };
        words.next().is_none().then_some(announcement)
    }
}

/// This machine's name as it goes into socket names: nodes on other machines that share the
/// data directory (a network file system) are not this machine's to clean up.
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_'))
        .take(32)
        .collect();
    if name.is_empty() {
        "host".into()
    } else {
        name
    }
}

/// A node's socket; dropping it (when the server stops) removes it.
pub(crate) struct NodeSocket {
    path: PathBuf,
}

impl Drop for NodeSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listens for announcements on this node's socket. Without one (a data directory path too
/// long for a socket's name, say) the node still runs; its live connections then learn of
/// what other processes did at their periodic session check.
pub(crate) fn listen(app: &Arc<App>) -> Option<NodeSocket> {
    match bind(&app.config.data_dir) {
        Ok((listener, socket)) => {
            tracing::debug!(path = %socket.path.display(), "listening for local announcements");
            let app = app.clone();
            tokio::spawn(async move {
                loop {
                    let stream = match listener.accept().await {
                        Ok((stream, _)) => stream,
                        // Out of file descriptors, say: wait, then listen on.
                        Err(e) => {
                            tracing::warn!(error = %e, "accepting a local announcement failed");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let app = app.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(CONNECTION_TIMEOUT, serve(&app, stream)).await;
                    });
                }
            });
            Some(socket)
        }
        Err(e) => {
            tracing::warn!(error = %e, "no socket for local announcements; `parley admin` without NATS reaches this node at its next session check");
            None
        }
    }
}

fn bind(data_dir: &Path) -> std::io::Result<(UnixListener, NodeSocket)> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = data_dir.join(NODES_DIR);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)?;
    let prefix = format!("{}-", host());
    // Sockets of this machine's nodes that no longer answer: they crashed.
    for entry in std::fs::read_dir(&dir)?.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(&prefix);
        if ours
            && std::os::unix::net::UnixStream::connect(&path)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            let _ = std::fs::remove_file(&path);
        }
    }
    let path = dir.join(format!("{prefix}{}.sock", std::process::id()));
    // Left by an earlier process with this id, which cannot be running any more.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let socket = NodeSocket { path };
    std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(0o600))?;
    Ok((listener, socket))
}

/// One announcing connection: every line is passed on as it arrives; `ok` once the announcer
/// has sent them all.
async fn serve(app: &App, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).take(MAX_LINE);
    let mut line = Vec::new();
    loop {
        line.clear();
        lines.set_limit(MAX_LINE);
        if lines.read_until(b'\n', &mut line).await? == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            // Too long, or cut off: nothing of ours.
            return Ok(());
        }
        match std::str::from_utf8(&line)
            .ok()
            .and_then(Announcement::parse)
        {
            Some(Announcement::Ended(user)) => app.fanout.local().end_sessions(&user),
            Some(Announcement::Head(device, head)) => app.fanout.refresh_local(device, head),
            None => tracing::debug!("ignored a local announcement that does not parse"),
        }
    }
    write.write_all(b"ok\n").await
}

/// Tells every node running on `data_dir` on this machine; returns how many confirmed.
pub(crate) async fn announce(data_dir: &Path, announcements: &[Announcement]) -> usize {
    let text: String = announcements.iter().map(Announcement::line).collect();
    let Ok(entries) = std::fs::read_dir(data_dir.join(NODES_DIR)) else {
        return 0;
    };
    let mut told = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        let confirmed = tokio::time::timeout(ANSWER_TIMEOUT, tell(&path, text.as_bytes())).await;
        match confirmed {
            Ok(Ok(true)) => told += 1,
            // A node that crashed (the next node to start removes its socket), or one on
            // another machine sharing the directory.
            _ => tracing::debug!(path = %path.display(), "node not told"),
        }
    }
    told
}

async fn tell(path: &Path, text: &[u8]) -> std::io::Result<bool> {
    let mut stream = UnixStream::connect(path).await?;
    stream.write_all(text).await?;
    stream.shutdown().await?;
    let mut answer = Vec::new();
    stream.take(16).read_to_end(&mut answer).await?;
    Ok(answer.starts_with(b"ok"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_survive_their_lines_and_nothing_else_parses() {
        let device = DeviceId::from_bytes([7; 16]);
        for announcement in [
            Announcement::Ended(Username::parse("alice").unwrap()),
            Announcement::Head(device, u64::MAX),
        ] {
            let line = announcement.line();
            assert!(line.len() as u64 <= MAX_LINE, "{line}");
            assert_eq!(Announcement::parse(&line), Some(announcement));
        }
        for junk in [
            "",
            "ended",
            "ended Alice",
            "ended alice bob",
            "head 0707 1",
            "head 07070707070707070707070707070707 -1",
            "head 07070707070707070707070707070707 1 2",
            "suspend alice",
        ] {
            assert_eq!(Announcement::parse(junk), None, "{junk}");
        }
    }
}
