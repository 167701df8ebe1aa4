//! Throwaway PostgreSQL servers and NATS clusters for tests: real processes on loopback, on
//! free ports and temporary directories, killed when dropped; and an S3-compatible server
//! ([`TestS3`]) on loopback.
#![forbid(unsafe_code)]

mod s3;
pub use s3::{TestS3, ACCESS_KEY as S3_ACCESS_KEY, SECRET_KEY as S3_SECRET_KEY};

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// uid and gid of a system account, from /etc/passwd.
fn account(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))?
    })
}

fn postgres_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed: apt-get install postgresql (scripts/test does)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("no PostgreSQL server binaries under /usr/lib/postgresql")
}

/// A PostgreSQL server of its own. PostgreSQL refuses to run as root, so under root it runs as
/// the `postgres` account.
pub struct TestPostgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub port: u16,
    user: Option<(u32, u32)>,
    child: Option<Child>,
}

impl TestPostgres {
    pub fn start() -> TestPostgres {
        TestPostgres::start_on(free_port())
    }

    /// Starts on `port`, or on another free port if `port` turns out to be taken.
    fn start_on(port: u16) -> TestPostgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("pgdata");
        let user = if is_root() {
            Some(account("postgres").expect("a postgres account"))
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        }
        let mut initdb = Command::new(bin.join("initdb"));
        initdb.args(["-D"]).arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        as_user(&mut initdb, user);
        let status = initdb
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        let mut pg = TestPostgres {
            _dir: dir,
            data,
            bin,
            port,
            user,
            child: None,
        };
        pg.spawn();
        pg
    }

    /// Starts the server and waits until it is ready. A free port can be taken by another test's
    /// server before this one binds it; this server then exits, and a test that only waited for
    /// the port would talk to the other test's database. So readiness is read from this data
    /// directory's `postmaster.pid`, and a server that exited starts again on another port.
    fn spawn(&mut self) {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let mut child = self.command().spawn().expect("start postgres");
            if self.wait_until_ready(&mut child, Duration::from_secs(30)) {
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
            assert!(attempt < ATTEMPTS, "postgres did not start");
            self.port = free_port();
        }
    }

    fn command(&self) -> Command {
        let mut command = Command::new(self.bin.join("postgres"));
        command
            .arg("-D")
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=on",
            ])
            .arg("-k")
            .arg(&self.data)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_user(&mut command, self.user);
        command
    }

    /// True once this child reports "ready" on this port; false if it exits or times out.
    fn wait_until_ready(&self, child: &mut Child, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return false;
            }
            let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"));
            if pid_file.is_ok_and(|f| postmaster_ready(&f, child.id(), self.port)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's pid (its backends are its children), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The postmaster's children exit when it dies; wait until the port is free.
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.data.join("postmaster.pid"));
    }

    pub fn restart(&mut self) {
        self.kill();
        std::thread::sleep(Duration::from_millis(200));
        self.spawn();
    }
}

/// `postmaster.pid` names the postmaster's pid on its first line, its port on the fourth, and
/// its status on the eighth (PostgreSQL 10 and later; `pg_ctl -w` reads the same).
fn postmaster_ready(pid_file: &str, pid: u32, port: u16) -> bool {
    let lines: Vec<&str> = pid_file.lines().collect();
    lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
        && lines.get(3).map(|l| l.trim()) == Some(port.to_string().as_str())
        && lines.get(7).map(|l| l.trim()) == Some("ready")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn as_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A NATS cluster of `size` nodes routed to each other.
pub struct TestNats {
    dir: tempfile::TempDir,
    pub client_ports: Vec<u16>,
    route_ports: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl TestNats {
    pub fn start(size: usize) -> TestNats {
        // A free port can be taken by another test's process before nats-server binds it; the
        // node then exits at once. Start again on other ports rather than fail the test.
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let dir = tempfile::tempdir().expect("tempdir");
            let client_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
            let route_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
            let mut nats = TestNats {
                dir,
                client_ports,
                route_ports,
                children: (0..size).map(|_| None).collect(),
            };
            for node in 0..size {
                nats.spawn(node);
            }
            let up = nats
                .client_ports
                .iter()
                .all(|port| wait_for_port(*port, Duration::from_secs(10)));
            if up {
                // Let the routes form. A node that lost its port to another test's process has
                // exited by then, and the port that answered was that other process.
                std::thread::sleep(Duration::from_millis(700));
                if nats.all_running() {
                    return nats;
                }
            }
            drop(nats);
            assert!(
                attempt < ATTEMPTS,
                "nats-server did not start ({ATTEMPTS} attempts on fresh ports)"
            );
        }
        unreachable!("the loop returns or panics")
    }

    fn all_running(&mut self) -> bool {
        self.children.iter_mut().all(|child| {
            child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
        })
    }

    fn spawn(&mut self, node: usize) {
        let routes: Vec<String> = self
            .route_ports
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != node)
            .map(|(_, p)| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.client_ports[node].to_string(),
            ])
            .args(["--cluster_name", "parley-test"])
            .args([
                "--cluster",
                &format!("nats://127.0.0.1:{}", self.route_ports[node]),
            ])
            .args(["--routes", &routes.join(",")])
            .args([
                "--pid",
                &self
                    .dir
                    .path()
                    .join(format!("n{node}.pid"))
                    .to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (apt-get install nats-server; scripts/test does)");
        self.children[node] = Some(child);
    }

    /// All nodes, as a comma-separated list of URLs.
    pub fn urls(&self) -> String {
        self.client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn url(&self, node: usize) -> String {
        format!("nats://127.0.0.1:{}", self.client_ports[node])
    }

    /// The pids of the running nodes.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    pub fn stop(&mut self, node: usize) {
        if let Some(mut child) = self.children[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        for node in 0..self.children.len() {
            self.stop(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_whose_port_is_taken_starts_on_another_instead_of_sharing() {
        let other_server = TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = other_server.local_addr().unwrap().port();
        let postgres = TestPostgres::start_on(taken);
        assert_ne!(postgres.port, taken);
        let pid_file = std::fs::read_to_string(postgres.data.join("postmaster.pid")).unwrap();
        assert!(postmaster_ready(
            &pid_file,
            postgres.pid().unwrap(),
            postgres.port
        ));
    }

    #[test]
    fn a_postmaster_is_ready_only_on_its_own_pid_port_and_status() {
        let file = "4242\n/d\n1700000000\n5433\n/d\n127.0.0.1\n  1 2\nready   \n";
        assert!(postmaster_ready(file, 4242, 5433));
        assert!(!postmaster_ready(file, 4243, 5433));
        assert!(!postmaster_ready(file, 4242, 5434));
        let starting = file.replace("ready   ", "starting");
        assert!(!postmaster_ready(&starting, 4242, 5433));
        assert!(!postmaster_ready("4242\n", 4242, 5433));
    }
}
