//! `parley-bench`: the workloads of shared/design/benchmarks.md, printed as a table of figure,
//! Parley, reference, ratio. This first part runs B0 (physical references on this machine) and
//! B5 (client crypto against raw openmls); B1–B4 against ejabberd and NATS come next.
//!
//! Run: `cargo run --release --bin parley-bench [-- --quick]`
#![forbid(unsafe_code)]

#[path = "../bench_mls.rs"]
mod bench_mls;

use std::time::{Duration, Instant};

use anyhow::Result;
use bench_mls::{
    big_group_members, create_config, join_config, key_package, member, receive, send,
};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use parley_mls::suite;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Row {
    figure: String,
    parley: f64,
    reference: Option<f64>,
    unit: &'static str,
    target: Option<&'static str>,
}

fn print(rows: &[Row]) {
    println!(
        "{:<52} {:>14} {:>14} {:>8}  target",
        "figure", "Parley", "reference", "ratio"
    );
    for row in rows {
        let reference = row
            .reference
            .map(|r| format!("{r:.1}"))
            .unwrap_or_else(|| "-".into());
        let ratio = row
            .reference
            .map(|r| format!("{:.2}", row.parley / r))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<52} {:>14.1} {:>14} {:>8}  {}",
            format!("{} ({})", row.figure, row.unit),
            row.parley,
            reference,
            ratio,
            row.target.unwrap_or("")
        );
    }
}

/// B5: what Parley adds to openmls per message (payload, franking tag, its check), and the cost
/// of large-group operations.
fn b5(rows: &mut Vec<Row>, messages: usize, group_size: usize) -> Result<()> {
    let ciphersuite = suite::DEFAULT_CIPHERSUITE;
    let alice = member(0, ciphersuite)?;
    let bob = member(1, ciphersuite)?;
    let mut a = MlsGroup::new(
        &alice.provider,
        &alice.signer,
        &create_config(ciphersuite)?,
        alice.credential.clone(),
    )?;
    let (_, welcome, _) = a.add_members(
        &alice.provider,
        &alice.signer,
        &[key_package(&bob, ciphersuite)?],
    )?;
    a.merge_pending_commit(&alice.provider)?;
    let welcome = match MlsMessageIn::from(welcome).extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => anyhow::bail!("no welcome"),
    };
    let mut b = StagedWelcome::new_from_welcome(
        &bob.provider,
        &join_config(),
        welcome,
        Some(a.export_ratchet_tree().into()),
    )?
    .into_group(&bob.provider)?;
    let text = "x".repeat(120);

    // Interleave raw and Parley rounds so that machine noise hits both alike.
    let (mut raw_send, mut parley_send, mut raw_receive, mut parley_receive) = (
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
        Duration::ZERO,
    );
    let raw_payload = vec![7u8; 200];
    for _ in 0..messages / 100 {
        let started = Instant::now();
        let raw: Vec<Vec<u8>> = (0..100)
            .map(|_| {
                a.create_message(&alice.provider, &alice.signer, &raw_payload)
                    .map_err(anyhow::Error::from)?
                    .to_bytes()
                    .map_err(anyhow::Error::from)
            })
            .collect::<Result<_>>()?;
        raw_send += started.elapsed();
        let started = Instant::now();
        for bytes in &raw {
            let message = MlsMessageIn::tls_deserialize_exact(bytes.as_slice())?
                .try_into_protocol_message()?;
            b.process_message(&bob.provider, message)?;
        }
        raw_receive += started.elapsed();
        let started = Instant::now();
        let franked: Vec<Vec<u8>> = (0..100)
            .map(|_| send(&alice, &mut a, &text))
            .collect::<Result<_>>()?;
        parley_send += started.elapsed();
        let started = Instant::now();
        for bytes in &franked {
            receive(&bob, &mut b, bytes)?;
        }
        parley_receive += started.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / (messages / 100 * 100) as f64;
    rows.push(Row {
        figure: "B5 send with franking vs raw create_message".into(),
        parley: per(parley_send),
        reference: Some(per(raw_send)),
        unit: "µs/msg",
        target: Some("≤ 1.15x"),
    });
    rows.push(Row {
        figure: "B5 receive with verification vs raw process_message".into(),
        parley: per(parley_receive),
        reference: Some(per(raw_receive)),
        unit: "µs/msg",
        target: Some("≤ 1.15x"),
    });

    let (creator, joiners, packages) = big_group_members(group_size, ciphersuite)?;
    let mut group = MlsGroup::new(
        &creator.provider,
        &creator.signer,
        &create_config(ciphersuite)?,
        creator.credential.clone(),
    )?;
    let started = Instant::now();
    let (_, welcome, _) = group.add_members(&creator.provider, &creator.signer, &packages)?;
    group.merge_pending_commit(&creator.provider)?;
    rows.push(Row {
        figure: format!("B5 add {} members in one commit", group_size - 1),
        parley: started.elapsed().as_secs_f64() * 1e3,
        reference: None,
        unit: "ms",
        target: None,
    });
    let welcome = match MlsMessageIn::from(welcome).extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => anyhow::bail!("no welcome"),
    };
    let last = joiners.last().ok_or_else(|| anyhow::anyhow!("no joiner"))?;
    let started = Instant::now();
    StagedWelcome::new_from_welcome(
        &last.provider,
        &join_config(),
        welcome,
        Some(group.export_ratchet_tree().into()),
    )?
    .into_group(&last.provider)?;
    rows.push(Row {
        figure: format!("B5 join a {group_size}-member group"),
        parley: started.elapsed().as_secs_f64() * 1e3,
        reference: None,
        unit: "ms",
        target: None,
    });
    Ok(())
}

/// B0: a tokio loopback echo with 100 connections, 64-byte round trips.
async fn loopback_echo(seconds: f64) -> Result<(f64, f64)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 64];
                while socket.read_exact(&mut buffer).await.is_ok() {
                    if socket.write_all(&buffer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(async move {
            let mut socket = tokio::net::TcpStream::connect(address).await?;
            socket.set_nodelay(true)?;
            let mut latencies = Vec::new();
            let mut buffer = [1u8; 64];
            while Instant::now() < deadline {
                let started = Instant::now();
                socket.write_all(&buffer).await?;
                socket.read_exact(&mut buffer).await?;
                latencies.push(started.elapsed());
            }
            Ok::<_, std::io::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    all.sort();
    let p99 = all.get(all.len() * 99 / 100).copied().unwrap_or_default();
    Ok((all.len() as f64 / seconds, p99.as_secs_f64() * 1e3))
}

/// B0: the NATS routing ceiling: one publisher, `subscribers` subscriber connections, 64-byte
/// messages, through a nats-server started here. Returns deliveries per second.
async fn nats_fan_out(subscribers: usize, messages: usize) -> Result<f64> {
    use futures_util::StreamExt;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("nats-server not available ({e}); apt-get install nats-server")
        })?;
    let result = async {
        let url = format!("nats://127.0.0.1:{port}");
        let mut connected = None;
        for _ in 0..50 {
            if let Ok(client) = async_nats::connect(&url).await {
                connected = Some(client);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let publisher = connected.ok_or_else(|| anyhow::anyhow!("nats-server did not start"))?;
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut listeners = Vec::new();
        for _ in 0..subscribers {
            let client = async_nats::connect(&url).await?;
            let mut subscription = client.subscribe("bench.fanout").await?;
            client.flush().await?;
            let received = received.clone();
            listeners.push(tokio::spawn(async move {
                let _keep = client;
                let mut count = 0;
                while count < messages {
                    if subscription.next().await.is_none() {
                        break;
                    }
                    count += 1;
                    received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        let payload = bytes::Bytes::from(vec![0u8; 64]);
        let started = Instant::now();
        for _ in 0..messages {
            publisher.publish("bench.fanout", payload.clone()).await?;
        }
        publisher.flush().await?;
        // A slow consumer may have lost messages: wait a while, then count what arrived.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        for listener in listeners {
            let abort = listener.abort_handle();
            if tokio::time::timeout_at(deadline, listener).await.is_err() {
                abort.abort();
            }
        }
        let total = received.load(std::sync::atomic::Ordering::Relaxed);
        Ok::<f64, anyhow::Error>(total as f64 / started.elapsed().as_secs_f64())
    }
    .await;
    let _ = server.kill();
    let _ = server.wait();
    result
}

/// B0: raw SQLite insert rate of a 200-byte payload row plus one pointer row per message.
fn sqlite_inserts(full: bool, per_transaction: usize, messages: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
    conn.execute_batch(
        "CREATE TABLE p (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
         CREATE TABLE q (device BLOB NOT NULL, seq INTEGER NOT NULL, p INTEGER NOT NULL, PRIMARY KEY (device, seq)) WITHOUT ROWID;",
    )?;
    let payload = vec![0u8; 200];
    let started = Instant::now();
    let mut n = 0usize;
    while n < messages {
        let tx = conn.unchecked_transaction()?;
        for _ in 0..per_transaction {
            tx.execute("INSERT INTO p (data) VALUES (?1)", [&payload])?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO q (device, seq, p) VALUES (?1, ?2, ?3)",
                rusqlite::params![[1u8; 16].as_slice(), n as i64, id],
            )?;
            n += 1;
        }
        tx.commit()?;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (messages, group_size, echo_seconds) = if quick {
        (1_000, 100, 0.5)
    } else {
        (5_000, 1_000, 2.0)
    };
    println!(
        "parley-bench ({} build): B0 references and B5 client crypto",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let mut rows = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (round_trips, p99) = runtime.block_on(loopback_echo(echo_seconds))?;
    rows.push(Row {
        figure: "B0 loopback echo, 100 connections, 64 B".into(),
        parley: round_trips,
        reference: None,
        unit: "round trips/s",
        target: None,
    });
    rows.push(Row {
        figure: "B0 loopback echo p99".into(),
        parley: p99,
        reference: None,
        unit: "ms",
        target: None,
    });
    for (subscribers, messages) in [(1usize, 200_000usize), (100, 5_000), (1_000, 500)] {
        let messages = if quick { messages / 10 } else { messages };
        match runtime.block_on(nats_fan_out(subscribers, messages)) {
            Ok(rate) => rows.push(Row {
                figure: format!("B0 NATS fan-out, 1 to {subscribers}, 64 B"),
                parley: rate,
                reference: None,
                unit: "deliveries/s",
                target: None,
            }),
            Err(e) => println!("B0 NATS fan-out skipped: {e}"),
        }
    }
    for (full, label) in [(true, "FULL"), (false, "NORMAL")] {
        for per in [1usize, 16, 256] {
            let count = if per == 1 { 1_000 } else { 20_000 };
            rows.push(Row {
                figure: format!("B0 SQLite {label}, {per} message(s) per transaction"),
                parley: sqlite_inserts(full, per, if quick { count / 4 } else { count })?,
                reference: None,
                unit: "msgs/s",
                target: None,
            });
        }
    }
    b5(&mut rows, messages, group_size)?;
    print(&rows);
    Ok(())
}
