//! The real `parley` server binary (beside the bench binary) on a temporary data directory, and
//! a TCP proxy that counts the bytes a client sends and receives through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct BenchServer {
    process: std::process::Child,
    pub url: String,
    _data: tempfile::TempDir,
}

impl BenchServer {
    /// Starts `parley server` with `args` on a free loopback port.
    pub fn start(args: &[&str]) -> Result<BenchServer> {
        let binary = std::env::current_exe()?
            .parent()
            .context("no parent")?
            .join("parley");
        let data = tempfile::tempdir()?;
        let mut process = std::process::Command::new(&binary)
            .args(["server", "--listen", "127.0.0.1:0"])
            .args(args)
            .arg("--data")
            .arg(data.path())
            .env("PARLEY_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(process.stdout.take().context("stdout")?),
            &mut line,
        )?;
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .context("no address")?
            .to_owned();
        Ok(BenchServer {
            process,
            url,
            _data: data,
        })
    }

    /// The server process's id (for its CPU time and memory in /proc).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    pub fn port(&self) -> Result<u16> {
        Ok(self.url.rsplit(':').next().context("no port")?.parse()?)
    }
}

impl Drop for BenchServer {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Bytes through a [`CountingProxy`], each way.
#[derive(Default)]
pub struct Traffic {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

impl Traffic {
    pub fn total(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) + self.received.load(Ordering::Relaxed)
    }
}

/// A loopback TCP proxy in front of `upstream` that counts what passes.
pub async fn counting_proxy(upstream: u16) -> Result<(String, Arc<Traffic>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://127.0.0.1:{}", listener.local_addr()?.port());
    let traffic = Arc::new(Traffic::default());
    let counted = traffic.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let traffic = counted.clone();
            tokio::spawn(async move {
                let _ = relay(client, upstream, traffic).await;
            });
        }
    });
    Ok((url, traffic))
}

async fn relay(mut client: TcpStream, upstream: u16, traffic: Arc<Traffic>) -> Result<()> {
    let mut server = TcpStream::connect(("127.0.0.1", upstream)).await?;
    let (mut from_client, mut to_client) = client.split();
    let (mut from_server, mut to_server) = server.split();
    let up = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = from_client.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            traffic.sent.fetch_add(n as u64, Ordering::Relaxed);
            to_server.write_all(&buffer[..n]).await?;
        }
    };
    let down = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = from_server.read(&mut buffer).await?;
            if n == 0 {
                return Ok::<_, std::io::Error>(());
            }
            traffic.received.fetch_add(n as u64, Ordering::Relaxed);
            to_client.write_all(&buffer[..n]).await?;
        }
    };
    tokio::select! {
        r = up => r?,
        r = down => r?,
    }
    Ok(())
}
