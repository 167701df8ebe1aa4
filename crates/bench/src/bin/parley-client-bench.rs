//! `parley-client-bench`: client-side costs, printed as a table.
//!
//! Part 1 measures MLS alone (openmls with in-memory storage) for the classic X25519 suite and the
//! post-quantum hybrid, the figures behind the ciphersuite choice in ARCHITECTURE.md: send and
//! receive per message (with the franking tag Parley adds), in a 1:1 chat and in a group of
//! 1,000; time to create a 1,000-member group (one commit adding 999) and to join it.
//!
//! Part 2 measures the whole Parley client against a real server process (the `parley` binary
//! beside this one): send (encrypt, persist, submit, durable ack) and receive (fetch, decrypt,
//! verify, persist) per message.
//!
//! Run: `cargo build --release -p parley -p parley-bench && target/release/parley-client-bench [--quick]`
#![forbid(unsafe_code)]

use parley_bench::mls::{
    big_group_members, create_config, join_config, key_package, member, receive, send,
    two_member_group,
};

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use parley_mls::suite;
use parley_protocol::Username;

fn per_op(total: Duration, count: usize) -> f64 {
    total.as_secs_f64() * 1e6 / count as f64
}

/// Formats one figure of a suite for the table.
type FigureOf = fn(&SuiteFigures) -> String;

struct SuiteFigures {
    name: &'static str,
    key_package_us: f64,
    key_package_bytes: usize,
    send_1to1_us: f64,
    receive_1to1_us: f64,
    ciphertext_bytes: usize,
    create_group_ms: f64,
    welcome_bytes: usize,
    tree_bytes: usize,
    join_ms: f64,
    send_group_us: f64,
    receive_group_us: f64,
}

fn measure_suite(
    name: &'static str,
    ciphersuite: Ciphersuite,
    group_size: usize,
    messages: usize,
) -> Result<SuiteFigures> {
    let text = "x".repeat(120);
    // 1:1
    let alice = member(0, ciphersuite)?;
    let bob = member(1, ciphersuite)?;
    let started = Instant::now();
    let bob_kp = key_package(&bob, ciphersuite)?;
    let key_package_us = started.elapsed().as_secs_f64() * 1e6;
    let key_package_bytes = bob_kp.tls_serialize_detached()?.len();
    let (mut a_group, mut b_group) = two_member_group(&alice, &bob, bob_kp, ciphersuite)?;

    let mut ciphertexts = Vec::with_capacity(messages);
    let started = Instant::now();
    for _ in 0..messages {
        ciphertexts.push(send(&alice, &mut a_group, &text)?);
    }
    let send_1to1_us = per_op(started.elapsed(), messages);
    let ciphertext_bytes = ciphertexts[0].len();
    let started = Instant::now();
    for c in &ciphertexts {
        receive(&bob, &mut b_group, c)?;
    }
    let receive_1to1_us = per_op(started.elapsed(), messages);

    // A group of `group_size`: one commit adds everyone.
    let (creator, joiners, packages) = big_group_members(group_size, ciphersuite)?;
    let started = Instant::now();
    let mut big = MlsGroup::new(
        &creator.provider,
        &creator.signer,
        &create_config(ciphersuite)?,
        creator.credential.clone(),
    )?;
    let (_, welcome, _) = big.add_members(&creator.provider, &creator.signer, &packages)?;
    big.merge_pending_commit(&creator.provider)?;
    let create_group_ms = started.elapsed().as_secs_f64() * 1e3;
    // As Parley's server does: the Welcome, plus the ratchet tree the server attaches.
    let tree_bytes = big.export_ratchet_tree().tls_serialize_detached()?;
    let welcome_bytes = welcome.to_bytes()?.len();
    let welcome = match MlsMessageIn::from(welcome).extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => anyhow::bail!("no welcome"),
    };
    let last = joiners.last().context("no joiner")?;
    let started = Instant::now();
    let tree = RatchetTreeIn::tls_deserialize_exact(tree_bytes.as_slice())?;
    let mut joined =
        StagedWelcome::new_from_welcome(&last.provider, &join_config(), welcome, Some(tree))?
            .into_group(&last.provider)?;
    let join_ms = started.elapsed().as_secs_f64() * 1e3;
    let group_messages = messages.min(500);
    let mut ciphertexts = Vec::with_capacity(group_messages);
    let started = Instant::now();
    for _ in 0..group_messages {
        ciphertexts.push(send(&creator, &mut big, &text)?);
    }
    let send_group_us = per_op(started.elapsed(), group_messages);
    let started = Instant::now();
    for c in &ciphertexts {
        receive(last, &mut joined, c)?;
    }
    let receive_group_us = per_op(started.elapsed(), group_messages);
    Ok(SuiteFigures {
        name,
        key_package_us,
        key_package_bytes,
        send_1to1_us,
        receive_1to1_us,
        ciphertext_bytes,
        create_group_ms,
        welcome_bytes,
        tree_bytes: tree_bytes.len(),
        join_ms,
        send_group_us,
        receive_group_us,
    })
}

/// The whole client (encrypt, local transaction, HTTP, server's durable ack) against the real
/// server binary.
async fn measure_full_stack(messages: usize) -> Result<(f64, f64)> {
    let server = parley_bench::server::BenchServer::start(&["--rate-per-second", "100000"])?;
    let url = server.url.clone();
    let result = async {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let alice =
            parley_client::Client::register(a.path(), &url, "alice", Default::default()).await?;
        let bob =
            parley_client::Client::register(b.path(), &url, "bob", Default::default()).await?;
        let chat = parley_client::ChatRef::Direct(Username::parse("bob")?);
        alice.send_text(&chat, "warm-up").await?;
        bob.sync().await?;
        let started = Instant::now();
        for i in 0..messages {
            alice.send_text(&chat, &format!("message {i}")).await?;
        }
        let send = per_op(started.elapsed(), messages);
        let started = Instant::now();
        let received = bob.receive().await?;
        let receive = per_op(started.elapsed(), messages);
        anyhow::ensure!(
            received.len() == messages,
            "received {} of {messages}",
            received.len()
        );
        Ok::<_, anyhow::Error>((send, receive))
    }
    .await;
    drop(server);
    result
}

fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (group_size, messages) = if quick { (100, 200) } else { (1000, 2000) };
    println!(
        "Parley client benchmark ({} build), group size {group_size}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!();
    let figures = [
        measure_suite(
            "X25519 (0x0001)",
            suite::CLASSIC_X25519,
            group_size,
            messages,
        )?,
        measure_suite(
            "ML-KEM-768+X25519 (0x004F)",
            suite::HYBRID_PQ,
            group_size,
            messages,
        )?,
    ];
    println!(
        "{:<44} {:>18} {:>26}",
        "MLS only, in memory", figures[0].name, figures[1].name
    );
    let n = group_size;
    let rows: Vec<(String, FigureOf)> = vec![
        ("KeyPackage generation (µs)".into(), |f| {
            format!("{:.0}", f.key_package_us)
        }),
        ("KeyPackage size (bytes)".into(), |f| {
            f.key_package_bytes.to_string()
        }),
        ("1:1 send, per message (µs)".into(), |f| {
            format!("{:.1}", f.send_1to1_us)
        }),
        ("1:1 receive, per message (µs)".into(), |f| {
            format!("{:.1}", f.receive_1to1_us)
        }),
        ("ciphertext of a 120-byte text (bytes)".into(), |f| {
            f.ciphertext_bytes.to_string()
        }),
        (format!("create {n}-member group (ms)"), |f| {
            format!("{:.0}", f.create_group_ms)
        }),
        (format!("Welcome into {n} (bytes)"), |f| {
            f.welcome_bytes.to_string()
        }),
        (format!("ratchet tree of {n} (bytes)"), |f| {
            f.tree_bytes.to_string()
        }),
        (format!("join a {n}-member group (ms)"), |f| {
            format!("{:.1}", f.join_ms)
        }),
        ("group send, per message (µs)".into(), |f| {
            format!("{:.1}", f.send_group_us)
        }),
        ("group receive, per message (µs)".into(), |f| {
            format!("{:.1}", f.receive_group_us)
        }),
    ];
    for (label, value) in rows.iter() {
        println!(
            "{label:<44} {:>18} {:>26}",
            value(&figures[0]),
            value(&figures[1])
        );
    }
    println!();
    let runtime = tokio::runtime::Runtime::new()?;
    let full_messages = if quick { 100 } else { 500 };
    match runtime.block_on(measure_full_stack(full_messages)) {
        Ok((send, receive)) => {
            println!("Whole client against the real server (default suite, SQLite synchronous=FULL on both sides)");
            println!("{:<44} {:>18.0}", "1:1 send_text, per message (µs)", send);
            println!("{:<44} {:>18.0}", "1:1 receive, per message (µs)", receive);
        }
        Err(e) => println!("full-stack measurement skipped: {e:#}"),
    }
    Ok(())
}
