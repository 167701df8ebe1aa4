//! Test harness: the real `parley` server binary on a temporary data directory and a free
//! loopback port, clients on temporary homes, and a proxy that can drop traffic.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_client::{Client, ClientOptions};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

mod forge;
#[allow(unused_imports)] // not every test binary plays a lying server
pub use forge::*;
mod linking;
mod raw;
#[allow(unused_imports)] // not every test binary links devices
pub use linking::*;
mod watch;
mod web;
mod webdriver;
#[allow(unused_imports)] // not every test binary sends raw requests
pub use raw::Raw;
#[allow(unused_imports)] // not every test binary watches an attack
pub use watch::*;
#[allow(unused_imports)] // not every test binary drives a browser
pub use web::*;
#[allow(unused_imports)] // not every test binary drives a browser
pub use webdriver::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_parley");

pub struct TestServer {
    pub dir: TempDir,
    pub port: u16,
    pub metrics_port: u16,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// A data directory shared with other nodes, instead of one of its own.
    shared_data: Option<PathBuf>,
    /// Runs the server's clock this far ahead (libfaketime's offset, e.g. "+25h").
    clock_ahead: Option<String>,
    /// Environment variables for the server process (e.g. S3 credentials).
    env: Vec<(String, String)>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    pub fn start_with(args: &[&str]) -> TestServer {
        Self::launch(args, None)
    }

    /// A server with flags and environment variables of its own.
    #[allow(dead_code)] // not every test binary sets the environment
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut server = Self::prepare(args, None);
        server.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        server.spawn();
        server
    }

    /// One node of a multi-node deployment: nodes share their key files (data directory).
    pub fn start_node(shared_data: &Path, args: &[&str]) -> TestServer {
        Self::launch(args, Some(shared_data.to_owned()))
    }

    /// [`TestServer::start_node`] with environment variables of its own.
    #[allow(dead_code)] // not every test binary runs several nodes
    pub fn start_node_with_env(
        shared_data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> TestServer {
        let mut server = Self::prepare(args, Some(shared_data.to_owned()));
        server.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        server.spawn();
        server
    }

    fn launch(args: &[&str], shared_data: Option<PathBuf>) -> TestServer {
        let mut server = Self::prepare(args, shared_data);
        server.spawn();
        server
    }

    fn prepare(args: &[&str], shared_data: Option<PathBuf>) -> TestServer {
        TestServer {
            dir: tempfile::tempdir().expect("tempdir"),
            port: 0,
            metrics_port: free_port(),
            child: None,
            extra_args: args.iter().map(|s| s.to_string()).collect(),
            shared_data,
            clock_ahead: None,
            env: Vec::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.shared_data
            .clone()
            .unwrap_or_else(|| self.dir.path().join("data"))
    }

    /// The server's SQLite database, opened beside the running server (tests that play a
    /// server that lies change it).
    pub fn database(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.data_dir().join("parley.db")).expect("open");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The metrics listener (loopback, apart from the API).
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("log file");
        let mut command = match &self.clock_ahead {
            None => Command::new(BIN),
            Some(offset) => {
                let mut faked = Command::new("faketime");
                // Only the wall clock moves: timers and timeouts run as usual.
                faked
                    .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                    .arg("-f")
                    .arg(offset)
                    .arg(BIN);
                faked
            }
        };
        let mut child = command
            .arg("server")
            .arg("--data")
            .arg(self.data_dir())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{}", self.metrics_port))
            .args(&self.extra_args)
            .args(self.registration_limit())
            .env("PARLEY_LOG", "debug")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start server");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("server announces its address");
        let address = line
            .trim()
            .rsplit("http://")
            .next()
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        self.port = address.rsplit(':').next().unwrap().parse().expect("port");
        self.child = Some(child);
    }

    /// Tests register many accounts from 127.0.0.1 and create many groups: high limits,
    /// unless the test sets its own.
    fn registration_limit(&self) -> Vec<&'static str> {
        let mut args = Vec::new();
        let set = |flag: &str| self.extra_args.iter().any(|a| a.starts_with(flag));
        if !set("--registration") {
            args.extend(["--registration-burst", "1000000"]);
        }
        if !set("--group") {
            args.extend(["--group-burst", "1000000"]);
        }
        args
    }

    /// The server process's id (for reading its memory in /proc).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The server process's resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill();
        for attempt in 0..50 {
            let free = std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok();
            if free {
                break;
            }
            std::thread::sleep(Duration::from_millis(100 * (attempt + 1)));
        }
        self.spawn();
    }

    /// Starts again on the same data directory and port with its wall clock `offset` ahead
    /// ("+25h"), as if that much time had passed.
    #[allow(dead_code)] // not every test binary moves the clock
    pub fn restart_ahead(&mut self, offset: &str) {
        self.clock_ahead = Some(offset.to_owned());
        self.restart();
    }

    /// Every byte the server wrote: its data directory and its log.
    pub fn all_bytes(&self) -> Vec<u8> {
        let mut bytes = std::fs::read(self.log_path()).unwrap_or_default();
        for entry in walk(&self.data_dir()) {
            bytes.extend(std::fs::read(entry).unwrap_or_default());
        }
        bytes
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port free at the moment.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // The server's data directory holds tens of megabytes (the WAL): scan it fast.
    memchr::memmem::find(haystack, needle).is_some()
}

/// A device: a client library instance on its own temporary home.
pub struct Device {
    pub home: TempDir,
    pub client: Client,
}

impl Device {
    pub async fn register(server: &str, username: &str) -> Device {
        let home = tempfile::tempdir().expect("tempdir");
        let client = Client::register(home.path(), server, username, ClientOptions::default())
            .await
            .unwrap_or_else(|e| panic!("register {username}: {e}"));
        Device { home, client }
    }

    /// Opens the same home again, as after a restart of the app, optionally on another server.
    pub fn reopen(&mut self, server: Option<String>) {
        let options = ClientOptions {
            server,
            ..Default::default()
        };
        self.client = Client::open(self.home.path(), options).expect("reopen");
    }
}

pub fn unique(label: &str) -> String {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{label}-{}-{n}-{:x}", std::process::id(), rand_u64())
}

fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    (nanos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What the proxy should do to the next HTTP request whose first bytes contain a marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward the request, swallow the response, close the connection.
    DropResponse,
    /// Close the connection without forwarding the request.
    DropRequest,
}

/// A TCP proxy in front of the server that can drop one request or response, and records the
/// bodies of the requests it forwards.
pub struct FaultyProxy {
    pub port: u16,
    armed: Arc<Mutex<Option<(String, Fault)>>>,
    pub fired: Arc<AtomicBool>,
    pub recorded: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FaultyProxy {
    pub async fn start(upstream_port: u16) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let armed: Arc<Mutex<Option<(String, Fault)>>> = Arc::new(Mutex::new(None));
        let fired = Arc::new(AtomicBool::new(false));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let (armed2, fired2, recorded2) = (armed.clone(), fired.clone(), recorded.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (armed, fired, recorded) = (armed2.clone(), fired2.clone(), recorded2.clone());
                tokio::spawn(async move {
                    let _ = proxy_connection(client, upstream_port, armed, fired, recorded).await;
                });
            }
        });
        FaultyProxy {
            port,
            armed,
            fired,
            recorded,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn arm(&self, marker: &str, fault: Fault) {
        self.fired.store(false, Ordering::SeqCst);
        *self.armed.lock().unwrap() = Some((marker.to_owned(), fault));
    }
}

async fn proxy_connection(
    mut client: TcpStream,
    upstream_port: u16,
    armed: Arc<Mutex<Option<(String, Fault)>>>,
    fired: Arc<AtomicBool>,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
    let mut from_client = vec![0u8; 1 << 20];
    let mut from_server = vec![0u8; 1 << 20];
    let mut swallow_responses = false;
    loop {
        tokio::select! {
            read = client.read(&mut from_client) => {
                let n = read?;
                if n == 0 { return Ok(()); }
                let chunk = &from_client[..n];
                recorded.lock().unwrap().push(chunk.to_vec());
                let fault = {
                    let mut armed = armed.lock().unwrap();
                    match armed.as_ref() {
                        Some((marker, fault)) if contains(chunk, marker.as_bytes()) => {
                            let fault = *fault;
                            *armed = None;
                            Some(fault)
                        }
                        _ => None,
                    }
                };
                match fault {
                    Some(Fault::DropRequest) => {
                        fired.store(true, Ordering::SeqCst);
                        return Ok(());
                    }
                    Some(Fault::DropResponse) => swallow_responses = true,
                    None => {}
                }
                server.write_all(chunk).await?;
            }
            read = server.read(&mut from_server) => {
                let n = read?;
                if n == 0 { return Ok(()); }
                if swallow_responses {
                    fired.store(true, Ordering::SeqCst);
                    return Ok(());
                }
                client.write_all(&from_server[..n]).await?;
            }
        }
    }
}

/// Runs the CLI with a home directory; returns (status, stdout, stderr).
pub fn cli(home: &Path, server: &str, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .arg("--home")
        .arg(home)
        .arg("--server")
        .arg(server)
        .args(args)
        .output()
        .expect("run parley");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `parley ARGS` on `home` against `server` that must succeed: its standard output.
pub fn cli_ok(home: &Path, server: &TestServer, args: &[&str]) -> String {
    let (status, out, err) = cli(home, &server.url(), args);
    assert_eq!(status, 0, "parley {args:?}: {err}");
    out
}

/// Runs `parley admin --data <the server's data> ARGS`; returns (status, stdout, stderr).
/// `parley admin` that must succeed: its standard output.
pub fn admin_ok(server: &TestServer, args: &[&str]) -> String {
    let (status, out, err) = admin(server, args);
    assert_eq!(status, 0, "admin {args:?}: {err}");
    out
}

pub fn admin(server: &TestServer, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(BIN)
        .args(["admin", "--data"])
        .arg(server.data_dir())
        .args(args)
        .output()
        .expect("run parley admin");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A self-signed certificate for localhost and 127.0.0.1, written to `dir`: (cert file, key
/// file, the certificate's PEM).
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).expect("write the certificate");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write the key");
    (cert, key, certified.cert.pem())
}

/// A registration request body for `username` with a fresh key and its proof of possession,
/// as a client sends it.
pub fn proof_register(username: &str) -> Vec<u8> {
    proof_register_as(username, Vec::new())
}

/// [`proof_register`] for a device that chooses its id (empty: the server chooses).
pub fn proof_register_as(username: &str, device_id: Vec<u8>) -> Vec<u8> {
    use openmls_traits::signatures::Signer as _;
    use prost::Message as _;
    let keys =
        openmls_basic_credential::SignatureKeyPair::new(openmls::prelude::SignatureScheme::ED25519)
            .expect("a key pair");
    let key = keys.public().to_vec();
    let proof = keys
        .sign(&parley_protocol::v1::register_proof_input(username, &key))
        .expect("a signature");
    parley_protocol::v1::RegisterRequest {
        username: username.into(),
        signature_key: key,
        proof,
        device_id,
        account_key: Vec::new(),
        certificate: Vec::new(),
        restore: false,
        restore_secret: Vec::new(),
        backup_id: Vec::new(),
    }
    .encode_to_vec()
}

/// The code and message of a protobuf error body.
pub fn error_of(body: &[u8]) -> (parley_protocol::ErrorCode, String) {
    use prost::Message as _;
    let error = parley_protocol::v1::ErrorBody::decode(body).expect("a protobuf error body");
    (
        parley_protocol::ErrorCode::from_u32(error.code),
        error.message,
    )
}

pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

/// Runs `build` on a device's stored MLS group for a chat, bypassing the client library's own
/// checks (what a modified client could send), in a transaction that is rolled back: the
/// device's real state stays as it was.
pub fn with_stored_group<T>(
    device: &Device,
    chat_name: &str,
    build: impl FnOnce(
        &mut openmls::prelude::MlsGroup,
        &parley_client::provider::TxProvider<'_>,
        &openmls_basic_credential::SignatureKeyPair,
    ) -> T,
) -> T {
    use openmls_traits::OpenMlsProvider;
    let conn = rusqlite::Connection::open(device.home.path().join("parley.db")).unwrap();
    let (group_id, key): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT c.group_id, a.signature_key FROM chats c, account a WHERE c.name = ?1",
            [chat_name],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    let crypto = openmls_rust_crypto::RustCrypto::default();
    let tx = conn.unchecked_transaction().unwrap();
    let provider = parley_client::provider::TxProvider::new(&crypto, &tx);
    let signer = openmls_basic_credential::SignatureKeyPair::read(
        provider.storage(),
        &key,
        openmls::prelude::SignatureScheme::ED25519,
    )
    .unwrap();
    let mut group = openmls::prelude::MlsGroup::load(
        provider.storage(),
        &openmls::prelude::GroupId::from_slice(&group_id),
    )
    .unwrap()
    .unwrap();
    build(&mut group, &provider, &signer)
}
