//! The ejabberd side of the side-by-side benchmarks (shared/design/benchmarks.md, B1, B2, B4): a
//! private, unthrottled ejabberd pinned to one core, and a raw-socket XMPP load generator (stream
//! header, in-band registration, SASL PLAIN, bind, presence; an incremental stanza scanner instead
//! of an XML parser).
// Each binary that includes this file uses only part of it.
#![allow(dead_code)]

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream as StdTcpStream};
use std::ops::Range;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

const ERL: &str = "/usr/bin/erl";
const ERL_LIBS: &str = "/usr/lib/x86_64-linux-gnu";
const DOMAIN: &str = "localhost";
const MUC_DOMAIN: &str = "conference.localhost";
const PASSWORD: &str = "benchpw";
const BODY_LEN: usize = 200;
const PAD: [u8; BODY_LEN] = [b'x'; BODY_LEN];
/// Logins in flight at once: enough to keep the server busy, few enough not to overflow its backlog.
const LOGIN_CONCURRENCY: usize = 200;
const JOIN_CONCURRENCY: usize = 50;
/// Any single handshake step (a login under load included) must finish within this.
const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// B1: how long to wait after the schedule for messages still in flight.
const STRAGGLERS: Duration = Duration::from_secs(5);
/// B2/B4: give up waiting when no delivery has arrived for this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// B2: deliveries in flight (window of messages = this / members), keeps the room busy without
/// letting queues (and so the time to the last recipient) grow without bound.
const B2_DELIVERIES_IN_FLIGHT: usize = 2_000;
/// B4: sender connections that fill the offline queues.
const B4_SENDERS: usize = 20;
const READ_RESERVE: usize = 16 * 1024;

const STREAM_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// No shaper anywhere, no TLS, no stanza size limit, no registration rate limit, no MAM, offline
/// storage with a high per-user limit, MUC rooms for 20,000 occupants without history.
const CONFIG: &str = r#"loglevel: warning
log_rotate_count: 0
hosts:
  - localhost
default_db: mnesia
auth_method: internal
auth_password_format: plain
registration_timeout: infinity
listen:
  -
    port: @PORT@
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 4096
    max_stanza_size: infinity
    shaper: none
    access: all
    starttls: false
    starttls_required: false
shaper: {}
shaper_rules:
  max_user_sessions: 10
  max_user_offline_messages: 10000000
  c2s_shaper: none
  s2s_shaper: none
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
  register:
    allow: all
  muc_create:
    allow: local
modules:
@MODULES@  mod_disco: {}
  mod_ping: {}
  mod_roster: {}
  mod_register:
    access: register
    ip_access: all
  mod_offline:
    access_max_user_messages: max_user_offline_messages
  mod_muc:
    access: all
    access_create: muc_create
    access_persistent: muc_create
    history_size: 0
    max_users: 20000
    max_users_presence: 20000
    max_user_conferences: 1000000
    min_message_interval: 0
    min_presence_interval: 0
    room_shaper: none
    user_message_shaper: none
    user_presence_shaper: none
    default_room_options:
      max_users: 20000
      mam: false
      persistent: false
      logging: false
"#;

/// The modules loaded besides the ones the workloads need (disco, ping, roster, register,
/// offline, muc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modules {
    /// Only those: the fastest ejabberd for these workloads.
    Minimal,
    /// Also the rest of Debian's default module set that runs without extra listeners (privacy,
    /// blocking, carbons, stream management, client state, push, PEP, vCard, ...), but no
    /// presence counter or fail2ban: ejabberd as shipped, minus throttling.
    Debian,
}

const DEBIAN_MODULES: &str = "  mod_adhoc: {}
  mod_admin_extra: {}
  mod_avatar: {}
  mod_blocking: {}
  mod_caps: {}
  mod_carboncopy: {}
  mod_client_state: {}
  mod_configure: {}
  mod_last: {}
  mod_privacy: {}
  mod_private: {}
  mod_pubsub:
    plugins:
      - flat
      - pep
  mod_push: {}
  mod_push_keepalive: {}
  mod_shared_roster: {}
  mod_sic: {}
  mod_stream_mgmt: {}
  mod_vcard: {}
  mod_vcard_xupdate: {}
  mod_version: {}
";

/// A private ejabberd: its own config, spool and logs in a temporary directory, no Erlang
/// distribution (so no epmd and no node name to clash), one scheduler, pinned to one core.
pub struct Ejabberd {
    child: Child,
    port: u16,
    next_user: AtomicUsize,
    next_run: AtomicU32,
    // Dropped after `drop` has stopped the server.
    dir: tempfile::TempDir,
}

impl Ejabberd {
    /// Starts ejabberd (minimal modules) on `127.0.0.1:<free port>` pinned to `core` and waits
    /// until it answers a stream header with stream features.
    pub fn start(core: usize) -> Result<Ejabberd> {
        Ejabberd::start_with(core, Modules::Minimal)
    }

    pub fn start_with(core: usize, modules: Modules) -> Result<Ejabberd> {
        let dir = tempfile::Builder::new()
            .prefix("parley-ejabberd-")
            .tempdir()?;
        let spool = dir.path().join("spool");
        let logs = dir.path().join("log");
        fs::create_dir_all(&spool)?;
        fs::create_dir_all(&logs)?;
        let port = free_port()?;
        let config = dir.path().join("ejabberd.yml");
        let extra = match modules {
            Modules::Minimal => "",
            Modules::Debian => DEBIAN_MODULES,
        };
        fs::write(
            &config,
            CONFIG
                .replace("@PORT@", &port.to_string())
                .replace("@MODULES@", extra),
        )?;
        let out = fs::File::create(logs.join("console.log"))?;
        let child = Command::new("taskset")
            .arg("-c")
            .arg(core.to_string())
            .arg(ERL)
            // One scheduler (and one dirty CPU scheduler); no busy-waiting, so that CPU seconds
            // measure work rather than spinning.
            .args([
                "-noshell", "-noinput", "+S", "1:1", "+SDcpu", "1:1", "+K", "true",
            ])
            .args(["+P", "1000000", "+Q", "65536"])
            .args(["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"])
            .arg("-mnesia")
            .arg("dir")
            .arg(format!("\"{}\"", spool.display()))
            .args(["-s", "ejabberd"])
            .env("EJABBERD_CONFIG_PATH", &config)
            .env("EJABBERD_LOG_PATH", logs.join("ejabberd.log"))
            .env("ERL_LIBS", ERL_LIBS)
            .env("ERL_CRASH_DUMP", dir.path().join("erl_crash.dump"))
            .env("ERL_CRASH_DUMP_BYTES", "0")
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting ejabberd (taskset + erl)")?;
        let mut server = Ejabberd {
            child,
            port,
            next_user: AtomicUsize::new(0),
            next_run: AtomicU32::new(1),
            dir,
        };
        server.wait_ready()?;
        // taskset and erl exec into beam.smp, so the child's pid is the VM's.
        let comm = fs::read_to_string(format!("/proc/{}/comm", server.pid()))?;
        ensure!(
            comm.trim() == "beam.smp",
            "ejabberd's pid {} is {comm:?}, not beam.smp",
            server.pid()
        );
        Ok(server)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The beam.smp OS pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The temporary directory with config, spool (`spool/`) and logs (`log/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Fresh user numbers, so that every workload registers its own users.
    fn allocate_users(&self, count: usize) -> usize {
        self.next_user.fetch_add(count, Ordering::Relaxed)
    }

    fn allocate_run(&self) -> u32 {
        self.next_run.fetch_add(1, Ordering::Relaxed)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "ejabberd exited ({status}) while starting:\n{}",
                    self.log_tail()
                );
            }
            if probe(self.port).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "ejabberd did not accept XMPP connections on port {} within 90 s:\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        for name in ["console.log", "ejabberd.log", "error.log"] {
            if let Ok(log) = fs::read_to_string(self.dir.path().join("log").join(name)) {
                let start = log.len().saturating_sub(2000);
                let start = (start..log.len())
                    .find(|&i| log.is_char_boundary(i))
                    .unwrap_or(log.len());
                text.push_str(&format!("--- {name}\n{}\n", &log[start..]));
            }
        }
        text
    }
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        // SIGTERM makes the VM stop cleanly (init:stop); SIGKILL if it takes too long.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Ready means: a stream header is answered with stream features (listeners start last).
fn probe(port: u16) -> Result<()> {
    let mut stream = StdTcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(STREAM_HEADER.as_bytes())?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while find(&seen, b"</stream:features>").is_none() {
        let n = stream.read(&mut buf)?;
        ensure!(n > 0, "closed");
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// utime + stime of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// utime + stime from a `/proc/.../stat` file (of a process or of one of its threads).
pub fn stat_cpu_seconds(path: &str) -> Result<f64> {
    let stat = fs::read_to_string(path)?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("unexpected {path}"))?
        .1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i)
            .ok_or_else(|| anyhow!("short {path}"))?
            .parse::<u64>()? as f64)
    };
    // Fields 14 and 15 (utime, stime); USER_HZ is 100 on Linux.
    Ok((tick(11)? + tick(12)?) / 100.0)
}

/// Resident set size of a process, in bytes.
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or_else(|| anyhow!("no VmRSS for pid {pid}"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib * 1024)
}

// ---------------------------------------------------------------------------------------------
// Stanza scanning

#[derive(Clone, Copy, PartialEq, Eq)]
enum Lex {
    Text,
    Open,
    Tag,
    Quote(u8),
    Skip,
}

enum Event {
    Header,
    Stanza(Range<usize>),
    End,
}

/// Splits the inbound byte stream into top-level stanzas, resuming where the last read ended.
/// Tracks only tag depth (quotes respected); enough for what ejabberd sends (no CDATA, no
/// comments).
struct Scanner {
    buf: Vec<u8>,
    pos: usize,
    /// Bytes before this index belong to events already returned.
    done: usize,
    depth: u32,
    lex: Lex,
    tag_start: usize,
    stanza_start: usize,
    closing: bool,
    slash: bool,
}

impl Scanner {
    fn new() -> Scanner {
        Scanner {
            buf: Vec::with_capacity(READ_RESERVE),
            pos: 0,
            done: 0,
            depth: 0,
            lex: Lex::Text,
            tag_start: 0,
            stanza_start: 0,
            closing: false,
            slash: false,
        }
    }

    fn next(&mut self) -> Option<Event> {
        while self.pos < self.buf.len() {
            let i = self.pos;
            match self.lex {
                Lex::Text => match self.buf[i..].iter().position(|&b| b == b'<') {
                    Some(off) => {
                        self.tag_start = i + off;
                        self.pos = i + off + 1;
                        self.lex = Lex::Open;
                    }
                    None => self.pos = self.buf.len(),
                },
                Lex::Open => {
                    self.pos += 1;
                    self.slash = false;
                    match self.buf[i] {
                        b'/' => {
                            self.closing = true;
                            self.lex = Lex::Tag;
                        }
                        b'?' | b'!' => self.lex = Lex::Skip,
                        _ => {
                            self.closing = false;
                            self.lex = Lex::Tag;
                        }
                    }
                }
                Lex::Quote(q) => match self.buf[i..].iter().position(|&b| b == q) {
                    Some(off) => {
                        self.pos = i + off + 1;
                        self.lex = Lex::Tag;
                        self.slash = false;
                    }
                    None => self.pos = self.buf.len(),
                },
                Lex::Skip => {
                    self.pos += 1;
                    if self.buf[i] == b'>' {
                        self.lex = Lex::Text;
                        if self.depth <= 1 {
                            self.done = i + 1;
                        }
                    }
                }
                Lex::Tag => {
                    self.pos += 1;
                    let b = self.buf[i];
                    match b {
                        b'"' | b'\'' => self.lex = Lex::Quote(b),
                        b'>' => {
                            self.lex = Lex::Text;
                            if let Some(event) = self.tag_end(i) {
                                return Some(event);
                            }
                        }
                        _ => {}
                    }
                    self.slash = b == b'/';
                }
            }
        }
        None
    }

    /// A tag ended at `i` (its '>').
    fn tag_end(&mut self, i: usize) -> Option<Event> {
        let end = i + 1;
        if self.closing {
            self.depth = self.depth.saturating_sub(1);
            return match self.depth {
                0 => {
                    self.done = end;
                    Some(Event::End)
                }
                1 => {
                    self.done = end;
                    Some(Event::Stanza(self.stanza_start..end))
                }
                _ => None,
            };
        }
        if self.slash {
            if self.depth == 1 {
                self.done = end;
                return Some(Event::Stanza(self.tag_start..end));
            }
            return None;
        }
        // A stream restart (after SASL) sends a new header inside the old stream.
        if self.depth == 0
            || (self.depth == 1 && self.buf[self.tag_start..].starts_with(b"<stream:stream"))
        {
            self.depth = 1;
            self.done = end;
            return Some(Event::Header);
        }
        if self.depth == 1 {
            self.stanza_start = self.tag_start;
        }
        self.depth += 1;
        None
    }

    /// Drops the bytes of returned events before the next read (the rest is one partial stanza).
    fn compact(&mut self) {
        let keep = if self.lex == Lex::Text && self.depth <= 1 {
            self.pos
        } else {
            self.done
        };
        if keep == 0 {
            return;
        }
        self.buf.drain(..keep);
        self.pos -= keep;
        self.done = self.done.saturating_sub(keep);
        self.tag_start = self.tag_start.saturating_sub(keep);
        self.stanza_start = self.stanza_start.saturating_sub(keep);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut from = 0;
    while let Some(off) = hay[from..=hay.len() - needle.len()]
        .iter()
        .position(|&b| b == first)
    {
        let at = from + off;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether a stanza's element name is `name`.
fn tag_is(stanza: &[u8], name: &[u8]) -> bool {
    stanza.len() > name.len() + 1
        && stanza[0] == b'<'
        && stanza[1..].starts_with(name)
        && matches!(
            stanza[name.len() + 1],
            b' ' | b'>' | b'/' | b'\t' | b'\n' | b'\r'
        )
}

/// The value of an attribute of the stanza's opening tag.
fn attr<'a>(stanza: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head = &stanza[..stanza.iter().position(|&b| b == b'>')?];
    let mut from = 0;
    while let Some(off) = find(&head[from..], name) {
        let at = from + off;
        let end = at + name.len();
        if at > 0 && head[at - 1].is_ascii_whitespace() && head.get(end) == Some(&b'=') {
            let quote = *head.get(end + 1)?;
            if quote == b'\'' || quote == b'"' {
                let value = &head[end + 2..];
                return Some(&value[..value.iter().position(|&b| b == quote)?]);
            }
        }
        from = end;
    }
    None
}

fn is_iq_reply(stanza: &[u8], id: &[u8]) -> Option<bool> {
    if !tag_is(stanza, b"iq") || attr(stanza, b"id") != Some(id) {
        return None;
    }
    Some(attr(stanza, b"type") == Some(b"result"))
}

fn is_error(stanza: &[u8]) -> bool {
    attr(stanza, b"type") == Some(b"error")
}

fn text(stanza: &[u8]) -> String {
    String::from_utf8_lossy(&stanza[..stanza.len().min(600)]).into_owned()
}

/// Bodies start with a marker: kind letter, run number, '.', index, '.'.
fn marker(stanza: &[u8]) -> Option<(u8, u32, u64)> {
    if !tag_is(stanza, b"message") || is_error(stanza) {
        return None;
    }
    let body = &stanza[find(stanza, b"<body>")? + 6..];
    let kind = *body.first()?;
    let (run, rest) = number(&body[1..])?;
    let (index, _) = number(rest)?;
    Some((kind, u32::try_from(run).ok()?, index))
}

/// Leading decimal digits up to a '.', and what follows the '.'.
fn number(s: &[u8]) -> Option<(u64, &[u8])> {
    let len = s.iter().position(|&b| b == b'.')?;
    if len == 0 || len > 19 {
        return None;
    }
    let mut n = 0u64;
    for &b in &s[..len] {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some((n, &s[len + 1..]))
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends a 200-byte body with its marker and closes the message.
fn push_body(out: &mut Vec<u8>, kind: u8, run: u32, index: u64) {
    out.extend_from_slice(b"<body>");
    let start = out.len();
    out.push(kind);
    push_u64(out, u64::from(run));
    out.push(b'.');
    push_u64(out, index);
    out.push(b'.');
    let used = out.len() - start;
    out.extend_from_slice(&PAD[..BODY_LEN.saturating_sub(used)]);
    out.extend_from_slice(b"</body></message>");
}

fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

fn user_name(n: usize) -> String {
    format!("u{n}")
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Connections

/// A connection during its handshake: read and written in order by one task.
struct Conn {
    stream: TcpStream,
    scanner: Scanner,
}

impl Conn {
    async fn connect(port: u16) -> Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            scanner: Scanner::new(),
        })
    }

    async fn send(&mut self, data: &[u8]) -> Result<()> {
        Ok(self.stream.write_all(data).await?)
    }

    /// Reads stanzas until `done` accepts one; stanzas after it stay buffered.
    async fn wait_for(
        &mut self,
        what: &str,
        mut done: impl FnMut(&[u8]) -> Result<bool>,
    ) -> Result<()> {
        let scanner = &mut self.scanner;
        let stream = &mut self.stream;
        let steps = async {
            loop {
                while let Some(event) = scanner.next() {
                    match event {
                        Event::Header => {}
                        Event::End => bail!("the server closed the stream while {what}"),
                        Event::Stanza(range) => {
                            let stanza = &scanner.buf[range];
                            if tag_is(stanza, b"stream:error") {
                                bail!("stream error while {what}: {}", text(stanza));
                            }
                            if done(stanza)? {
                                return Ok(());
                            }
                        }
                    }
                }
                scanner.compact();
                scanner.buf.reserve(READ_RESERVE);
                if stream.read_buf(&mut scanner.buf).await? == 0 {
                    bail!("the server closed the connection while {what}");
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, steps)
            .await
            .map_err(|_| anyhow!("timed out while {what}"))?
    }

    /// Hands the rest of the stream to a task that calls `on_stanza` for each stanza; the task
    /// sets `broken` when the stream ends or fails.
    fn split<F>(self, broken: Arc<AtomicBool>, on_stanza: F) -> (OwnedWriteHalf, AbortHandle)
    where
        F: FnMut(&[u8]) + Send + 'static,
    {
        let (reader, writer) = self.stream.into_split();
        let task = tokio::spawn(async move {
            let _ = read_loop(reader, self.scanner, on_stanza).await;
            broken.store(true, Ordering::Relaxed);
        });
        (writer, task.abort_handle())
    }
}

async fn read_loop<F: FnMut(&[u8])>(
    mut reader: OwnedReadHalf,
    mut scanner: Scanner,
    mut on_stanza: F,
) -> Result<()> {
    loop {
        while let Some(event) = scanner.next() {
            match event {
                Event::Header => {}
                Event::End => return Ok(()),
                Event::Stanza(range) => on_stanza(&scanner.buf[range]),
            }
        }
        scanner.compact();
        scanner.buf.reserve(READ_RESERVE);
        if reader.read_buf(&mut scanner.buf).await? == 0 {
            return Ok(());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// In-band registration (XEP-0077) only, then close.
    Register,
    /// Optionally register, then SASL PLAIN, bind, optionally initial presence.
    Login { register: bool, presence: bool },
}

/// One user's connection through its handshake; pipelined where the server processes input in
/// order anyway (registration and auth; restart, bind and presence).
async fn session(port: u16, user: &str, setup: Setup) -> Result<Option<Conn>> {
    let mut conn = Conn::connect(port).await?;
    let (register, login, presence) = match setup {
        Setup::Register => (true, false, false),
        Setup::Login { register, presence } => (register, true, presence),
    };
    let mut out = String::from(STREAM_HEADER);
    if register {
        out.push_str(&format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}\
             </username><password>{PASSWORD}</password></query></iq>"
        ));
    }
    if login {
        out.push_str(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            base64(format!("\0{user}\0{PASSWORD}").as_bytes())
        ));
    }
    conn.send(out.as_bytes()).await?;
    let (mut registered, mut authenticated) = (!register, !login);
    conn.wait_for(&format!("registering/authenticating {user}"), |s| {
        if let Some(ok) = is_iq_reply(s, b"reg") {
            ensure!(ok, "registering {user} failed: {}", text(s));
            registered = true;
        } else if tag_is(s, b"success") {
            authenticated = true;
        } else if tag_is(s, b"failure") {
            bail!("SASL PLAIN failed for {user}: {}", text(s));
        }
        Ok(registered && authenticated)
    })
    .await?;
    if !login {
        conn.send(b"</stream:stream>").await?;
        return Ok(None);
    }
    let mut out = String::from(STREAM_HEADER);
    out.push_str(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>bench</resource></bind></iq>",
    );
    if presence {
        out.push_str("<presence/>");
    }
    conn.send(out.as_bytes()).await?;
    conn.wait_for(&format!("binding {user}"), |s| {
        match is_iq_reply(s, b"bind") {
            Some(true) => Ok(true),
            Some(false) => bail!("bind failed for {user}: {}", text(s)),
            None => Ok(false),
        }
    })
    .await?;
    Ok(Some(conn))
}

/// Logs in users `first..first + count` concurrently, in index order.
async fn login_all(
    port: u16,
    first: usize,
    count: usize,
    register: bool,
    presence: bool,
) -> Result<Vec<Conn>> {
    let mut conns: Vec<(usize, Conn)> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let conn = session(
                port,
                &user_name(first + i),
                Setup::Login { register, presence },
            )
            .await?
            .ok_or_else(|| anyhow!("no connection"))?;
            Ok::<_, anyhow::Error>((i, conn))
        })
        .buffer_unordered(LOGIN_CONCURRENCY)
        .try_collect()
        .await?;
    conns.sort_by_key(|(i, _)| *i);
    Ok(conns.into_iter().map(|(_, c)| c).collect())
}

/// Aborts reader tasks when a workload ends.
struct Tasks(Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The latency (ms) at or below which `q` of the sorted microsecond latencies fall; both
/// systems' figures are computed this way.
pub fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    f64::from(sorted[rank - 1]) / 1000.0
}

/// Waits until `ready()` or until nothing has changed (`progress()`) for IDLE_TIMEOUT.
async fn wait_progress(
    notify: &Notify,
    mut ready: impl FnMut() -> bool,
    progress: impl Fn() -> u64,
) -> bool {
    let mut last = progress();
    let mut since = Instant::now();
    loop {
        let notified = notify.notified();
        if ready() {
            return true;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        let now = progress();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > IDLE_TIMEOUT {
            return ready();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// B1: 1:1 relay

pub struct RelayFigures {
    pub offered_per_s: f64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_s_per_1000: f64,
}

#[derive(Default)]
struct RelayRun {
    run: u32,
    start: Option<Instant>,
    interval_ns: f64,
    total: u64,
    seen: Vec<u64>,
    delivered: u64,
    duplicates: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

impl RelayRun {
    fn receive(&mut self, stanza: &[u8]) {
        let Some((b'R', run, seq)) = marker(stanza) else {
            if tag_is(stanza, b"message") && is_error(stanza) {
                self.errors += 1;
            }
            return;
        };
        let Some(start) = self.start else { return };
        if run != self.run || seq >= self.total {
            return;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.delivered += 1;
        // From the scheduled send time, so a late send counts against the server.
        let late_ns = start.elapsed().as_nanos() as f64 - seq as f64 * self.interval_ns;
        self.latencies_us
            .push((late_ns / 1000.0).clamp(0.0, u32::MAX as f64) as u32);
    }
}

/// B1: `users` connected, authenticated users (registered in-band, initial presence sent) in
/// users/2 pairs, reused for all rates.
pub struct XmppPairs {
    pid: u32,
    run_base: u32,
    runs: u32,
    writers: Vec<OwnedWriteHalf>,
    /// `<message to='partner' type='chat'>` per connection.
    heads: Vec<Vec<u8>>,
    pending: Vec<Vec<u8>>,
    state: Arc<Mutex<RelayRun>>,
    broken: Arc<AtomicBool>,
    /// Set when a run ended with a stanza half written: the streams can no longer be used.
    poisoned: bool,
    _readers: Tasks,
}

impl XmppPairs {
    pub async fn connect(server: &Ejabberd, users: usize) -> Result<XmppPairs> {
        ensure!(
            users >= 2 && users.is_multiple_of(2),
            "B1 needs an even number of users"
        );
        let first = server.allocate_users(users);
        let conns = login_all(server.port(), first, users, true, true).await?;
        let state = Arc::new(Mutex::new(RelayRun::default()));
        let broken = Arc::new(AtomicBool::new(false));
        let mut writers = Vec::with_capacity(users);
        let mut readers = Vec::with_capacity(users);
        let mut heads = Vec::with_capacity(users);
        for (i, conn) in conns.into_iter().enumerate() {
            let state = state.clone();
            let (writer, reader) = conn.split(broken.clone(), move |s| lock(&state).receive(s));
            writers.push(writer);
            readers.push(reader);
            heads.push(
                format!(
                    "<message to='{}@{DOMAIN}' type='chat'>",
                    user_name(first + (i ^ 1))
                )
                .into_bytes(),
            );
        }
        Ok(XmppPairs {
            pid: server.pid(),
            run_base: server.allocate_run(),
            runs: 0,
            writers,
            heads,
            pending: vec![Vec::new(); users],
            state,
            broken,
            poisoned: false,
            _readers: Tasks(readers),
        })
    }

    /// Open loop: message k is due at start + k / rate; every 1 ms tick writes what is due, one
    /// write per connection, round-robin over the pairs in both directions. Latency runs from the
    /// due time (no coordinated omission) to receipt; after `duration` stragglers get up to
    /// STRAGGLERS; lost = sent - delivered (unique sequence numbers).
    pub async fn run(&mut self, rate_per_s: u32, duration: Duration) -> Result<RelayFigures> {
        ensure!(rate_per_s > 0, "rate must be positive");
        ensure!(!self.poisoned, "an earlier run left a stanza half written");
        ensure!(
            !self.broken.load(Ordering::Relaxed),
            "a B1 connection was closed"
        );
        self.runs += 1;
        let run = self.run_base * 1000 + self.runs;
        let total = (f64::from(rate_per_s) * duration.as_secs_f64()).round() as u64;
        let interval_ns = 1e9 / f64::from(rate_per_s);
        let n = self.writers.len();
        let cpu_before = cpu_seconds(self.pid)?;
        let start = Instant::now();
        {
            let mut state = lock(&self.state);
            *state = RelayRun {
                run,
                start: Some(start),
                interval_ns,
                total,
                seen: vec![0; total.div_ceil(64) as usize],
                latencies_us: Vec::with_capacity(total as usize),
                ..RelayRun::default()
            };
        }
        let mut written = vec![0usize; n];
        let mut dirty: Vec<usize> = Vec::with_capacity(n);
        let mut is_dirty = vec![false; n];
        let mut ticker = tokio::time::interval(Duration::from_millis(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let give_up = start + duration + STRAGGLERS;
        let mut next = 0u64;
        loop {
            ticker.tick().await;
            let due = ((start.elapsed().as_nanos() as f64 / interval_ns) as u64 + 1).min(total);
            // Everything due since the last tick, round-robin over connections: pair p sends
            // 2p -> 2p+1, then 2p+1 -> 2p.
            while next < due {
                let c = (next % n as u64) as usize;
                let out = &mut self.pending[c];
                out.extend_from_slice(&self.heads[c]);
                push_body(out, b'R', run, next);
                if !is_dirty[c] {
                    is_dirty[c] = true;
                    dirty.push(c);
                }
                next += 1;
            }
            // One write per connection per tick; what the socket does not take waits.
            let mut i = 0;
            while i < dirty.len() {
                let c = dirty[i];
                let out = &self.pending[c];
                let mut failed = None;
                while written[c] < out.len() {
                    match self.writers[c].try_write(&out[written[c]..]) {
                        Ok(k) => written[c] += k,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failed {
                    self.poisoned = true;
                    bail!("B1 write failed: {e}");
                }
                if written[c] == out.len() {
                    self.pending[c].clear();
                    written[c] = 0;
                    is_dirty[c] = false;
                    dirty.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            if next >= total && dirty.is_empty() {
                break;
            }
            if Instant::now() > give_up {
                // The server stopped reading: what was not written counts as lost.
                self.poisoned = true;
                break;
            }
        }
        let deadline = (start + duration).max(Instant::now()) + STRAGGLERS;
        while Instant::now() < deadline && lock(&self.state).delivered < total {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cpu = cpu_seconds(self.pid)? - cpu_before;
        let mut state = lock(&self.state);
        state.start = None;
        ensure!(
            state.errors == 0,
            "B1: {} messages bounced with errors",
            state.errors
        );
        let mut latencies = std::mem::take(&mut state.latencies_us);
        latencies.sort_unstable();
        Ok(RelayFigures {
            offered_per_s: total as f64 / duration.as_secs_f64(),
            sent: total,
            delivered: state.delivered,
            lost: total - state.delivered,
            p50_ms: percentile(&latencies, 0.50),
            p99_ms: percentile(&latencies, 0.99),
            server_cpu_s_per_1000: cpu / total.max(1) as f64 * 1000.0,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// B2: group fan-out

pub struct GroupFigures {
    pub members: usize,
    pub messages: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub time_to_last_ms: f64,
}

struct Group {
    run: u32,
    members: usize,
    base: Instant,
    counts: Vec<AtomicU32>,
    sent_ns: Vec<AtomicU64>,
    last_ns: Vec<AtomicU64>,
    deliveries: AtomicU64,
    completed: AtomicU64,
    synced: AtomicUsize,
    errors: AtomicU64,
    notify: Notify,
}

impl Group {
    fn receive(&self, stanza: &[u8]) {
        match marker(stanza) {
            Some((b'G', run, index)) if run == self.run => {
                let Some(count) = self.counts.get(index as usize) else {
                    return;
                };
                let now = self.base.elapsed().as_nanos() as u64;
                self.last_ns[index as usize].fetch_max(now, Ordering::Relaxed);
                self.deliveries.fetch_add(1, Ordering::Relaxed);
                if count.fetch_add(1, Ordering::AcqRel) + 1 == self.members as u32 {
                    self.completed.fetch_add(1, Ordering::AcqRel);
                    self.notify.notify_one();
                }
            }
            Some((b'S', run, _)) if run == self.run => {
                self.synced.fetch_add(1, Ordering::AcqRel);
                self.notify.notify_one();
            }
            _ if is_error(stanza) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.notify.notify_one();
            }
            _ => {}
        }
    }
}

fn groupchat(out: &mut Vec<u8>, room: &str, kind: u8, run: u32, index: u64) {
    out.extend_from_slice(b"<message to='");
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(b"' type='groupchat'>");
    push_body(out, kind, run, index);
}

fn is_self_presence(s: &[u8]) -> Result<bool> {
    if !tag_is(s, b"presence") {
        return Ok(false);
    }
    ensure!(!is_error(s), "joining the room failed: {}", text(s));
    Ok(find(s, b"code='110'").is_some() || find(s, b"code=\"110\"").is_some())
}

/// B2: one room with `members` online occupants; occupant 0 sends `messages` messages, keeping
/// about B2_DELIVERIES_IN_FLIGHT deliveries outstanding. Deliveries are counted at every
/// occupant, the sender's own echo included; fewer than members x messages means loss.
pub async fn b2_room(server: &Ejabberd, members: usize, messages: u64) -> Result<GroupFigures> {
    ensure!(
        members >= 2 && messages >= 1,
        "B2 needs 2+ members and 1+ messages"
    );
    let run = server.allocate_run();
    let room = format!("bench{run}@{MUC_DOMAIN}");
    let first = server.allocate_users(members);
    let conns = login_all(server.port(), first, members, true, true).await?;
    let group = Arc::new(Group {
        run,
        members,
        base: Instant::now(),
        counts: (0..messages).map(|_| AtomicU32::new(0)).collect(),
        sent_ns: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        last_ns: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        deliveries: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        synced: AtomicUsize::new(0),
        errors: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let broken = Arc::new(AtomicBool::new(false));
    let join = |nick: usize| {
        format!(
            "<presence to='{room}/m{nick}'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>"
        )
    };

    // The owner creates the room and accepts the default configuration (an instant room).
    let mut conns = conns.into_iter();
    let mut owner = conns.next().ok_or_else(|| anyhow!("no members"))?;
    owner.send(join(0).as_bytes()).await?;
    owner
        .wait_for("creating the room", is_self_presence)
        .await?;
    owner
        .send(
            format!(
                "<iq type='set' id='cfg' to='{room}'><query \
                 xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' \
                 type='submit'/></query></iq>"
            )
            .as_bytes(),
        )
        .await?;
    owner
        .wait_for("configuring the room", |s| match is_iq_reply(s, b"cfg") {
            Some(true) => Ok(true),
            Some(false) => bail!("room configuration failed: {}", text(s)),
            None => Ok(false),
        })
        .await?;
    let g = group.clone();
    let (mut sender, owner_reader) = owner.split(broken.clone(), move |s| g.receive(s));

    // The others join concurrently; each reads its own join answers until its self-presence.
    let joined: Vec<(OwnedWriteHalf, AbortHandle)> = futures_util::stream::iter(conns.zip(1..))
        .map(|(mut conn, nick)| {
            let presence = join(nick);
            let group = group.clone();
            let broken = broken.clone();
            async move {
                conn.send(presence.as_bytes()).await?;
                conn.wait_for("joining the room", is_self_presence).await?;
                Ok::<_, anyhow::Error>(conn.split(broken, move |s| group.receive(s)))
            }
        })
        .buffer_unordered(JOIN_CONCURRENCY)
        .try_collect()
        .await?;
    let mut tasks = vec![owner_reader];
    let mut writers = Vec::with_capacity(members);
    for (writer, task) in joined {
        writers.push(writer);
        tasks.push(task);
    }
    let _readers = Tasks(tasks);

    // Barrier: once every occupant has this message, the join presences have all been delivered.
    let mut out = Vec::with_capacity(64 * 1024);
    groupchat(&mut out, &room, b'S', run, 0);
    sender.write_all(&out).await?;
    let synced = wait_progress(
        &group.notify,
        || group.synced.load(Ordering::Acquire) >= members,
        || group.synced.load(Ordering::Acquire) as u64,
    )
    .await;
    ensure!(
        synced,
        "B2: only {} of {members} occupants got the sync message",
        group.synced.load(Ordering::Acquire)
    );

    let window = (B2_DELIVERIES_IN_FLIGHT / members).max(1) as u64;
    let mut next = 0u64;
    while next < messages {
        let completed = group.completed.load(Ordering::Acquire);
        if next - completed >= window {
            let progressed = wait_progress(
                &group.notify,
                || next - group.completed.load(Ordering::Acquire) < window,
                || group.deliveries.load(Ordering::Relaxed),
            )
            .await;
            ensure!(
                progressed,
                "B2: deliveries stalled ({} errors, connection closed: {})",
                group.errors.load(Ordering::Relaxed),
                broken.load(Ordering::Relaxed)
            );
            continue;
        }
        let end = messages.min(completed + window);
        out.clear();
        let now = group.base.elapsed().as_nanos() as u64;
        for index in next..end {
            group.sent_ns[index as usize].store(now, Ordering::Relaxed);
            groupchat(&mut out, &room, b'G', run, index);
        }
        sender.write_all(&out).await?;
        next = end;
    }
    wait_progress(
        &group.notify,
        || group.completed.load(Ordering::Acquire) >= messages,
        || group.deliveries.load(Ordering::Relaxed),
    )
    .await;
    let errors = group.errors.load(Ordering::Relaxed);
    ensure!(errors == 0, "B2: {errors} error stanzas");

    let deliveries = group.deliveries.load(Ordering::Relaxed);
    let first_sent = group.sent_ns[0].load(Ordering::Relaxed);
    let last = group
        .last_ns
        .iter()
        .map(|t| t.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let (mut sum_ms, mut counted) = (0.0, 0u64);
    for i in 0..messages as usize {
        let last = group.last_ns[i].load(Ordering::Relaxed);
        if last > 0 {
            sum_ms += last.saturating_sub(group.sent_ns[i].load(Ordering::Relaxed)) as f64 / 1e6;
            counted += 1;
        }
    }
    drop(writers);
    Ok(GroupFigures {
        members,
        messages,
        deliveries,
        deliveries_per_s: deliveries as f64 / (last.saturating_sub(first_sent) as f64 / 1e9),
        time_to_last_ms: sum_ms / counted.max(1) as f64,
    })
}

// ---------------------------------------------------------------------------------------------
// B4: offline queue

pub struct OfflineFigures {
    pub messages: u64,
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
}

struct Offline {
    run: u32,
    total: u64,
    base: Instant,
    seen: Vec<AtomicU64>,
    delivered: AtomicU64,
    last_ns: AtomicU64,
    notify: Notify,
}

impl Offline {
    fn receive(&self, stanza: &[u8]) {
        let Some((b'O', run, index)) = marker(stanza) else {
            return;
        };
        if run != self.run || index >= self.total {
            return;
        }
        let bit = 1u64 << (index % 64);
        if self.seen[(index / 64) as usize].fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            self.last_ns
                .fetch_max(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if self.delivered.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
                self.notify.notify_one();
            }
        }
    }
}

/// B4: `users` registered, offline recipients get `per_user` messages each from B4_SENDERS
/// senders. Enqueue: until every sender's iq ping after its last message is answered (the server
/// handles a connection's stanzas in order). Drain: every recipient is logged in and bound first
/// (not timed), then all send initial presence at once; until the last message has arrived.
pub async fn b4_offline(server: &Ejabberd, users: usize, per_user: u64) -> Result<OfflineFigures> {
    ensure!(users >= 1 && per_user >= 1, "B4 needs users and messages");
    let port = server.port();
    let run = server.allocate_run();
    let senders = B4_SENDERS.min(users);
    let first_sender = server.allocate_users(senders);
    let first_recipient = server.allocate_users(users);
    let total = users as u64 * per_user;

    let sender_conns = login_all(port, first_sender, senders, true, false).await?;
    futures_util::stream::iter(0..users)
        .map(|i| async move {
            session(port, &user_name(first_recipient + i), Setup::Register).await
        })
        .buffer_unordered(LOGIN_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;

    let enqueue_start = Instant::now();
    futures_util::future::try_join_all(sender_conns.into_iter().enumerate().map(
        |(s, mut conn)| async move {
            let recipients: Vec<Vec<u8>> = (s..users)
                .step_by(senders)
                .map(|r| {
                    format!(
                        "<message to='{}@{DOMAIN}' type='chat'>",
                        user_name(first_recipient + r)
                    )
                    .into_bytes()
                })
                .collect();
            let mut out = Vec::with_capacity(128 * 1024);
            for k in 0..per_user {
                for (j, head) in recipients.iter().enumerate() {
                    let r = (s + j * senders) as u64;
                    out.extend_from_slice(head);
                    push_body(&mut out, b'O', run, r * per_user + k);
                    if out.len() >= 64 * 1024 {
                        conn.send(&out).await?;
                        out.clear();
                    }
                }
            }
            out.extend_from_slice(
                b"<iq type='get' id='done' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            );
            conn.send(&out).await?;
            conn.wait_for("enqueueing offline messages", |s| {
                ensure!(
                    !(tag_is(s, b"message") && is_error(s)),
                    "an offline message bounced: {}",
                    text(s)
                );
                Ok(is_iq_reply(s, b"done").is_some())
            })
            .await?;
            Ok::<_, anyhow::Error>(conn)
        },
    ))
    .await?;
    let enqueue_s = enqueue_start.elapsed().as_secs_f64();

    let recipients = login_all(port, first_recipient, users, false, false).await?;
    let offline = Arc::new(Offline {
        run,
        total,
        base: Instant::now(),
        seen: (0..total.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        delivered: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let broken = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::with_capacity(users);
    let mut tasks = Vec::with_capacity(users);
    for conn in recipients {
        let offline = offline.clone();
        let (writer, task) = conn.split(broken.clone(), move |s| offline.receive(s));
        writers.push(writer);
        tasks.push(task);
    }
    let _readers = Tasks(tasks);
    let drain_start = offline.base.elapsed().as_nanos() as u64;
    for writer in &mut writers {
        writer.write_all(b"<presence/>").await?;
    }
    wait_progress(
        &offline.notify,
        || offline.delivered.load(Ordering::Acquire) >= total,
        || offline.delivered.load(Ordering::Acquire),
    )
    .await;
    let delivered = offline.delivered.load(Ordering::Acquire);
    ensure!(
        delivered == total,
        "B4: only {delivered} of {total} offline messages arrived"
    );
    let drain_s = offline
        .last_ns
        .load(Ordering::Relaxed)
        .saturating_sub(drain_start) as f64
        / 1e9;
    Ok(OfflineFigures {
        messages: total,
        enqueue_per_s: total as f64 / enqueue_s,
        drain_per_s: total as f64 / drain_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_splits_partial_and_joined_reads() {
        let input = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>\
            <stream:features><bind xmlns='x'/></stream:features><success xmlns='s'/>\
            <stream:stream id='2'><message from='a' type='chat'><body>R7.42.xx</body></message>\
            <presence/></stream:stream>";
        for step in [1, 2, 3, 7, input.len()] {
            let mut scanner = Scanner::new();
            let mut events = Vec::new();
            for chunk in input.chunks(step) {
                scanner.compact();
                scanner.buf.extend_from_slice(chunk);
                while let Some(event) = scanner.next() {
                    events.push(match event {
                        Event::Header => "header".to_string(),
                        Event::End => "end".to_string(),
                        Event::Stanza(r) => String::from_utf8_lossy(&scanner.buf[r]).into_owned(),
                    });
                }
            }
            assert_eq!(events.len(), 7, "step {step}: {events:?}");
            assert_eq!(events[0], "header");
            assert!(events[1].starts_with("<stream:features>"));
            assert_eq!(events[2], "<success xmlns='s'/>");
            assert_eq!(events[3], "header");
            assert_eq!(
                marker(events[4].as_bytes()),
                Some((b'R', 7, 42)),
                "{}",
                events[4]
            );
            assert_eq!(events[5], "<presence/>");
            assert_eq!(events[6], "end");
        }
    }

    #[test]
    fn bodies_are_200_bytes_and_base64_matches() {
        let mut out = Vec::new();
        push_body(&mut out, b'R', 3, 123_456);
        let body = &out[6..out.len() - "</body></message>".len()];
        assert_eq!(body.len(), BODY_LEN);
        assert_eq!(base64(b"\0u1\0pw"), "AHUxAHB3");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            attr(b"<iq id=\"x\" type='result'/>", b"type"),
            Some(&b"result"[..])
        );
    }
}
