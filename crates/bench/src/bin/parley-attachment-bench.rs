//! `parley-attachment-bench`: what attachments cost, against the real server on loopback.
//!
//! 1. A file (100 MiB; 20 MiB with `--quick`) sent from one account's device and saved on the
//!    other's: sealing, upload and download throughput (MB/s), beside a plain loopback TCP copy
//!    of the same bytes in the same run; the server's CPU time and its resident memory's growth
//!    per MB moved.
//! 2. The richer payloads per message, beside a plain text (the message B5 measures): payload
//!    bytes, and send-and-receive time through the server for a text, a reply, a reaction and
//!    an edit.
//!
//! Run: `cargo build --release -p parley -p parley-bench && target/release/parley-attachment-bench [--quick]`
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use parley_bench::measure::{cpu_seconds, rss_bytes};
use parley_bench::server::BenchServer;
use parley_client::{ChatRef, Client, ClientOptions};
use parley_protocol::Username;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn user(name: &str) -> Result<Username> {
    Ok(Username::parse(name)?)
}

async fn register(url: &str, name: &str) -> Result<(tempfile::TempDir, Client)> {
    let home = tempfile::tempdir()?;
    let client = Client::register(home.path(), url, name, ClientOptions::default()).await?;
    Ok((home, client))
}

/// Bytes that do not compress (xorshift), so that nothing on the way can shortcut them.
fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The same bytes through a loopback TCP connection, written and read in 64 KiB pieces.
async fn loopback_copy(data: Arc<Vec<u8>>) -> Result<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let started = Instant::now();
    let sender = tokio::spawn(async move {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        for piece in data.chunks(64 * 1024) {
            stream.write_all(piece).await?;
        }
        stream.shutdown().await?;
        Ok::<_, std::io::Error>(())
    });
    let (mut stream, _) = listener.accept().await?;
    let mut received = Vec::new();
    stream.read_to_end(&mut received).await?;
    sender.await??;
    let elapsed = started.elapsed();
    anyhow::ensure!(!received.is_empty(), "nothing copied");
    Ok(elapsed)
}

/// Samples the server's resident memory until stopped; returns the peak.
fn sample_peak_rss(pid: u32, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let peak = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Ok(rss) = rss_bytes(pid) {
                peak.fetch_max(rss, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.load(Ordering::Relaxed)
    })
}

struct Transfer {
    seconds: f64,
    server_cpu: f64,
    rss_growth: u64,
}

async fn metered<F: std::future::Future<Output = Result<()>>>(
    pid: u32,
    work: F,
) -> Result<Transfer> {
    let cpu_before = cpu_seconds(pid)?;
    let rss_before = rss_bytes(pid)?;
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample_peak_rss(pid, stop.clone());
    let started = Instant::now();
    work.await?;
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let peak = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("sampler died"))?;
    Ok(Transfer {
        seconds,
        server_cpu: cpu_seconds(pid)? - cpu_before,
        rss_growth: peak.saturating_sub(rss_before),
    })
}

/// Milliseconds per message to send `count` messages of one kind and receive them on the other
/// side.
async fn per_message<F, Fut>(receiver: &Client, count: usize, mut send: F) -> Result<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let started = Instant::now();
    for i in 0..count {
        send(i).await?;
    }
    receiver.receive().await?;
    Ok(started.elapsed().as_secs_f64() * 1e3 / count as f64)
}

#[tokio::main]
async fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (mib, messages) = if quick { (20, 50) } else { (100, 200) };
    let server =
        BenchServer::start(&["--rate-per-second", "100000", "--max-attachment-mib", "200"])?;
    let pid = server.pid();
    let (_alice_home, alice) = register(&server.url, "alice").await?;
    let (_bob_home, bob) = register(&server.url, "bob").await?;
    let to_bob = ChatRef::Direct(user("bob")?);
    let hello = alice.send_text(&to_bob, "hello").await?;
    bob.sync().await?;
    println!(
        "Parley attachment benchmark ({} build), {mib} MiB file, one node on SQLite",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!();

    let files = tempfile::tempdir()?;
    let bytes = mib << 20;
    let data = Arc::new(random_bytes(bytes));
    let source = files.path().join("file.bin");
    std::fs::write(&source, data.as_slice())?;
    let mb = bytes as f64 / 1e6;

    let copy = loopback_copy(data.clone()).await?.as_secs_f64();
    let sealed_at = files.path().join("sealed.bin");
    let started = Instant::now();
    parley_client::attachments::seal_file(&source, &sealed_at)?;
    let seal = started.elapsed().as_secs_f64();
    std::fs::remove_file(&sealed_at)?;

    let mut message_id = String::new();
    let upload = metered(pid, async {
        let sent = alice
            .send_file(&to_bob, &source, None, None, &|_, _| {})
            .await?;
        message_id = sent.id;
        Ok(())
    })
    .await?;
    bob.sync().await?;
    let out = files.path().join("saved.bin");
    let download = metered(pid, async {
        bob.save_attachment(&message_id, 0, Some(&out), &|_, _| {})
            .await?;
        Ok(())
    })
    .await?;
    anyhow::ensure!(
        std::fs::read(&out)? == *data,
        "the saved file differs from the sent one"
    );

    println!("{:<58} {:>12}", "1. one file, sender to recipient", "MB/s");
    println!(
        "{:<58} {:>12.0}",
        "plain loopback TCP copy of the same bytes",
        mb / copy
    );
    println!(
        "{:<58} {:>12.0}",
        "sealing on the sender (AES-256-GCM, SHA-256 twice)",
        mb / seal
    );
    println!(
        "{:<58} {:>12.0}",
        "send_file: seal, upload, server's hash check, message",
        mb / upload.seconds
    );
    println!(
        "{:<58} {:>12.0}",
        "save_attachment: download, both hash checks, decrypt",
        mb / download.seconds
    );
    println!();
    println!(
        "{:<58} {:>12} {:>12}",
        "the server, per MB", "upload", "download"
    );
    println!(
        "{:<58} {:>12.2} {:>12.2}",
        "CPU time (ms)",
        upload.server_cpu * 1e3 / mb,
        download.server_cpu * 1e3 / mb
    );
    println!(
        "{:<58} {:>12.1} {:>12.1}",
        "resident memory growth, peak (KiB)",
        upload.rss_growth as f64 / 1024.0 / mb,
        download.rss_growth as f64 / 1024.0 / mb
    );
    println!(
        "{:<58} {:>12.1} {:>12.1}",
        "resident memory growth, peak, whole transfer (MiB)",
        upload.rss_growth as f64 / (1 << 20) as f64,
        download.rss_growth as f64 / (1 << 20) as f64
    );
    println!();

    // 2. Richer payloads per message, beside a plain text.
    let text = per_message(&bob, messages, |i| {
        let alice = &alice;
        let to_bob = &to_bob;
        async move {
            alice.send_text(to_bob, &format!("message {i}")).await?;
            Ok(())
        }
    })
    .await?;
    let reply = per_message(&bob, messages, |i| {
        let (alice, to_bob, hello) = (&alice, &to_bob, &hello);
        async move {
            alice
                .send_reply(to_bob, &format!("message {i}"), Some(&hello.id))
                .await?;
            Ok(())
        }
    })
    .await?;
    let emoji = ["👍", "🎉", "❤️", "😂"];
    let react = per_message(&bob, messages, |i| {
        let alice = &alice;
        let hello = &hello;
        async move {
            alice
                .react(&hello.id, emoji[i % emoji.len()], i % 8 >= 4)
                .await?;
            Ok(())
        }
    })
    .await?;
    let edits = messages.min(10);
    let own: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..messages {
            ids.push(alice.send_text(&to_bob, &format!("to edit {i}")).await?.id);
        }
        bob.receive().await?;
        ids
    };
    let edit = per_message(&bob, messages, |i| {
        let (alice, own) = (&alice, &own);
        async move {
            alice
                .edit(&own[i], &format!("edited {} of {i}", i % edits))
                .await?;
            Ok(())
        }
    })
    .await?;
    let sizes = payload_sizes();
    println!(
        "{:<40} {:>18} {:>26}",
        "2. per message, through the server", "payload bytes", "send and receive (ms)"
    );
    for (name, bytes, ms) in [
        ("text (as in B5)", sizes.0, Some(text)),
        ("reply", sizes.1, Some(reply)),
        ("reaction", sizes.2, Some(react)),
        ("edit", sizes.3, Some(edit)),
        // Its time is the file's transfer, in 1.
        ("text with one attachment", sizes.4, None),
    ] {
        let ms = ms.map_or_else(|| "see 1.".to_owned(), |ms| format!("{ms:.2}"));
        println!("{name:<40} {bytes:>18} {ms:>26}");
    }
    println!();
    println!(
        "A message naming an attachment costs what a text does plus its {} extra payload bytes;",
        sizes.4 - sizes.0
    );
    println!("the file itself is the transfer in 1.");
    Ok(())
}

/// Encoded `AppPayload` sizes: text, reply, reaction, edit, text with one attachment.
fn payload_sizes() -> (usize, usize, usize, usize, usize) {
    use parley_protocol::v1::{self, app_payload::Body};
    use prost::Message;
    let payload = |body: Body| {
        v1::AppPayload {
            salt: vec![0; 16],
            sender_username: "alice".into(),
            sender_device: vec![1; 16],
            message_id: vec![2; 16],
            sent_at_ms: 1_700_000_000_000,
            body: Some(body),
        }
        .encoded_len()
    };
    let text = || v1::TextBody {
        text: "message 100".into(),
        ..Default::default()
    };
    let attachment = v1::Attachment {
        name: "photo.jpg".into(),
        content_type: "image/jpeg".into(),
        size: 3_000_000,
        key: vec![3; 32],
        chunk_bytes: 65536,
        ciphertext_sha256: vec![4; 32],
        plaintext_sha256: vec![5; 32],
    };
    (
        payload(Body::Text(text())),
        payload(Body::Text(v1::TextBody {
            reply_to: Some(vec![6; 16]),
            ..text()
        })),
        payload(Body::Reaction(v1::ReactionBody {
            target: vec![6; 16],
            emoji: "👍".into(),
            remove: false,
        })),
        payload(Body::Edit(v1::EditBody {
            target: vec![6; 16],
            text: "edited 1 of 100".into(),
        })),
        payload(Body::Text(v1::TextBody {
            attachments: vec![attachment],
            ..text()
        })),
    )
}
