//! A private ejabberd: its configuration, start-up, readiness probe and teardown.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream as StdTcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};

use super::stanza::find;
use super::*;

pub(crate) const ERL: &str = "/usr/bin/erl";
pub(crate) const ERL_LIBS: &str = "/usr/lib/x86_64-linux-gnu";
/// No shaper anywhere, no TLS, no stanza size limit, no registration rate limit, no MAM, offline
/// storage with a high per-user limit, MUC rooms for 20,000 occupants without history.
pub(crate) const CONFIG: &str = r#"loglevel: warning
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

pub(crate) const DEBIAN_MODULES: &str = "  mod_adhoc: {}
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
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) next_user: AtomicUsize,
    pub(crate) next_run: AtomicU32,
    // Dropped after `drop` has stopped the server.
    pub(crate) dir: tempfile::TempDir,
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
        let port = parley_testkit::free_port();
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
        let child = crate::measure::pinned(core, ERL)
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
    pub(crate) fn allocate_users(&self, count: usize) -> usize {
        self.next_user.fetch_add(count, Ordering::Relaxed)
    }

    pub(crate) fn allocate_run(&self) -> u32 {
        self.next_run.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn wait_ready(&mut self) -> Result<()> {
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

    pub(crate) fn log_tail(&self) -> String {
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

/// Ready means: a stream header is answered with stream features (listeners start last).
pub(crate) fn probe(port: u16) -> Result<()> {
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
