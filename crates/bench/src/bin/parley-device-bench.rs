//! `parley-device-bench`: what several devices per account cost, against the real server.
//!
//! 1. Linking a device to an account with C chats holding M messages: time to approve (on the
//!    approver), bytes the approver sent, time until the new device shows everything; and of
//!    that, adding the device to the C groups (commits, bytes, time).
//! 2. Send and receive per message in a 1:1 chat where both accounts have 3 devices, beside the
//!    same with one device each, in the same run.
//! 3. Backing up the account of 1. (time, encrypted bytes) and restoring it on a fresh device
//!    when every device is lost: time until it shows everything and is back in all C chats by
//!    external commit, and of that the rejoining; the lost devices are revoked afterwards.
//!
//! Run: `cargo build --release -p parley -p parley-bench && target/release/parley-device-bench [--quick]`
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use parley_bench::server::{counting_proxy, BenchServer, Traffic};
use parley_client::{ApproveEvent, ChatRef, Client, ClientOptions, LinkEvent};
use parley_protocol::Username;

fn user(name: &str) -> Result<Username> {
    Ok(Username::parse(name)?)
}

async fn register(url: &str, name: &str) -> Result<(tempfile::TempDir, Client)> {
    let home = tempfile::tempdir()?;
    let client = Client::register(home.path(), url, name, ClientOptions::default()).await?;
    Ok((home, client))
}

/// Links a new device to `approver`'s account; returns the new device, the approver's events
/// with the traffic counted at each, and the times.
struct Linked {
    home: tempfile::TempDir,
    client: Client,
    approve: Duration,
    until_shown: Duration,
    adds: Duration,
    add_commits: usize,
    add_bytes: u64,
    archive_bytes: u64,
    approver_bytes: u64,
}

async fn link(url: &str, approver: &Client, traffic: &Arc<Traffic>) -> Result<Linked> {
    let home = tempfile::tempdir()?;
    let (code_tx, code_rx) = tokio::sync::oneshot::channel();
    let mut code_tx = Some(code_tx);
    let username = approver.username().to_string();
    let started = Instant::now();
    let new_device = Client::link(
        home.path(),
        Some(url),
        &username,
        ClientOptions::default(),
        |e| {
            if let LinkEvent::Code(code) = e {
                if let Some(tx) = code_tx.take() {
                    let _ = tx.send(code);
                }
            }
        },
    );
    let mut marks: Vec<(Instant, u64, ApproveEvent)> = Vec::new();
    let before = traffic.total();
    let approving = async {
        let code = code_rx.await.context("no code")?;
        let approve_started = Instant::now();
        let size = approver
            .approve_link(&code, |event| {
                marks.push((Instant::now(), traffic.total(), event))
            })
            .await?;
        Ok::<_, anyhow::Error>((approve_started.elapsed(), size))
    };
    let (client, approved) = tokio::join!(new_device, approving);
    let client = client?;
    let until_shown = started.elapsed();
    let (approve, size) = approved?;
    let first = marks
        .iter()
        .find(|(_, _, e)| matches!(e, ApproveEvent::Approved { .. }))
        .context("no approval")?;
    let adds: Vec<_> = marks
        .iter()
        .filter(|(_, _, e)| matches!(e, ApproveEvent::Added { .. }))
        .collect();
    let (adds_time, add_bytes) = match adds.last() {
        Some(last) => (last.0 - first.0, last.1 - first.1),
        None => (Duration::ZERO, 0),
    };
    Ok(Linked {
        home,
        client,
        approve,
        until_shown,
        adds: adds_time,
        add_commits: adds.len(),
        add_bytes,
        archive_bytes: size.bytes,
        approver_bytes: traffic.total() - before,
    })
}

async fn send_receive(
    sender: &Client,
    receivers: &[&Client],
    chat: &ChatRef,
    messages: usize,
) -> Result<(f64, f64)> {
    let started = Instant::now();
    for i in 0..messages {
        sender.send_text(chat, &format!("message {i}")).await?;
    }
    let send = started.elapsed().as_secs_f64() * 1e3 / messages as f64;
    let started = Instant::now();
    for receiver in receivers {
        let got = receiver.receive().await?;
        anyhow::ensure!(
            got.len() >= messages,
            "received {} of {messages}",
            got.len()
        );
    }
    let receive = started.elapsed().as_secs_f64() * 1e3 / (messages * receivers.len()) as f64;
    Ok((send, receive))
}

#[tokio::main]
async fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (chats, per_chat, messages) = if quick { (10, 20, 50) } else { (100, 100, 300) };
    let server = BenchServer::start(&[
        "--rate-per-second",
        "100000",
        "--auth-rate-per-second",
        "100000",
        "--registration-burst",
        "100000",
        "--registrations-per-hour",
        "100000",
        "--group-burst",
        "100000",
        "--groups-per-hour",
        "100000",
        "--send-mib-per-minute",
        "100000",
    ])?;
    let (proxied, traffic) = counting_proxy(server.port()?).await?;
    println!(
        "Parley device benchmark ({} build)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    // 1. An account with `chats` chats of `per_chat` messages each, then a device linked.
    let (_alice_home, alice) = register(&proxied, "alice").await?;
    let peers = 10.min(chats);
    let mut peer_clients = Vec::new();
    for p in 0..peers {
        peer_clients.push(register(&server.url, &format!("peer{p}")).await?);
    }
    let fill_started = Instant::now();
    for c in 0..chats {
        let peer = user(&format!("peer{}", c % peers))?;
        let name = format!("chat{c}");
        alice.create_group(&name, &[peer]).await?;
        let chat = ChatRef::Group(name);
        for m in 0..per_chat {
            alice
                .send_text(&chat, &format!("history {c}/{m}: some words"))
                .await?;
        }
    }
    println!(
        "filled {chats} chats with {} messages in {:.1} s",
        chats * per_chat,
        fill_started.elapsed().as_secs_f64()
    );
    let linked = link(&server.url, &alice, &traffic).await?;
    let shown: usize = (0..chats)
        .map(|c| {
            linked
                .client
                .history(&ChatRef::Group(format!("chat{c}")), per_chat as u32 + 10)
                .map(|h| h.len())
                .unwrap_or(0)
        })
        .sum();
    anyhow::ensure!(
        shown == chats * per_chat,
        "the new device shows {shown} messages"
    );
    println!();
    println!(
        "Linking a device to an account with {chats} chats, {} messages",
        chats * per_chat
    );
    println!(
        "  approve (on the approver)              {:>10.2} s",
        linked.approve.as_secs_f64()
    );
    println!(
        "  until the new device shows everything  {:>10.2} s",
        linked.until_shown.as_secs_f64()
    );
    println!(
        "  bytes the approver sent and received   {:>10}",
        linked.approver_bytes
    );
    println!(
        "  history archive (encrypted bytes)      {:>10}",
        linked.archive_bytes
    );
    println!(
        "  adding it to {} groups: {} commits, {:.2} s, {} bytes",
        chats,
        linked.add_commits,
        linked.adds.as_secs_f64(),
        linked.add_bytes
    );
    let linked_client = linked.client;
    drop(linked.home);

    // 2. Send and receive, one device each against three devices each.
    let (_b1, bob) = register(&server.url, "bob").await?;
    let (_c1, carol) = register(&server.url, "carol").await?;
    let to_carol = ChatRef::Direct(user("carol")?);
    bob.send_text(&to_carol, "warm-up").await?;
    carol.sync().await?;
    let (one_send, one_receive) = send_receive(&bob, &[&carol], &to_carol, messages).await?;
    let (_d1, dave) = register(&proxied, "dave").await?;
    let (_e1, erin) = register(&proxied, "erin").await?;
    let to_erin = ChatRef::Direct(user("erin")?);
    dave.send_text(&to_erin, "warm-up").await?;
    erin.sync().await?;
    let mut extra = Vec::new();
    for approver in [&dave, &dave, &erin, &erin] {
        extra.push(link(&server.url, approver, &traffic).await?);
    }
    let erin_devices: Vec<&Client> = std::iter::once(&erin)
        .chain(extra[2..].iter().map(|l| &l.client))
        .collect();
    for device in extra[..2].iter().map(|l| &l.client) {
        device.sync().await?;
    }
    let (three_send, three_receive) =
        send_receive(&dave, &erin_devices[..1], &to_erin, messages).await?;
    for device in &erin_devices[1..] {
        device.receive().await?;
    }
    println!();
    println!("1:1 chat, per message (ms)        one device each   three devices each");
    println!(
        "  send (encrypt, store, ack)     {:>16.2} {:>20.2}",
        one_send, three_send
    );
    println!(
        "  receive (one device)           {:>16.2} {:>20.2}",
        one_receive, three_receive
    );

    // 2b. Revoking the linked device rotates the account key: removals in every chat, then a
    // third device takes the new key up and re-certifies its leaf in every chat.
    let third = link(&server.url, &alice, &traffic).await?;
    third.client.sync().await?;
    let revoke_started = Instant::now();
    let removed = alice
        .revoke_device(&linked_client.device_id().to_string())
        .await?;
    let revoke_time = revoke_started.elapsed();
    let adopt_started = Instant::now();
    third.client.sync().await?;
    let adopt_time = adopt_started.elapsed();
    anyhow::ensure!(removed == chats, "removed from {removed} chats");
    println!();
    println!("Revoking a device of the account with {chats} chats (the account key rotates)");
    println!(
        "  revoke: {removed} removal commits re-certifying the revoker {:>8.2} s",
        revoke_time.as_secs_f64()
    );
    println!(
        "  another device takes the key up and re-certifies {chats} leaves {:>6.2} s",
        adopt_time.as_secs_f64()
    );
    drop(third);

    // 3. Backup of the account of 1., and a restore when every device is lost.
    let backup_started = Instant::now();
    let (key, backup) = alice.enable_backup(60).await?;
    let backup_time = backup_started.elapsed();
    drop(linked_client);
    drop(alice);
    let restore_home = tempfile::tempdir()?;
    let restore_started = Instant::now();
    let (restored, report) = Client::restore(
        restore_home.path(),
        &server.url,
        "alice",
        &key.encode(),
        ClientOptions::default(),
    )
    .await?;
    let restore_time = restore_started.elapsed();
    anyhow::ensure!(
        // The history's texts and each chat's notices.
        report.rejoined == chats as u64 && report.messages >= (chats * per_chat) as u64,
        "restored {report:?}"
    );
    restored.sync().await?;
    println!();
    println!(
        "Backup and restore of the account with {chats} chats, {} messages",
        chats * per_chat
    );
    println!(
        "  backup (export, encrypt, upload)       {:>10.2} s",
        backup_time.as_secs_f64()
    );
    println!(
        "  backup size (encrypted bytes)          {:>10}",
        backup.bytes
    );
    println!(
        "  restore until everything is shown and all {} chats are rejoined, and {} lost devices revoked {:>8.2} s",
        report.rejoined,
        report.revoked_devices,
        restore_time.as_secs_f64()
    );
    Ok(())
}
