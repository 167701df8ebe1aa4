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
//! Run: `cargo run --release --bin parley-client-bench [-- --quick]`
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use parley_mls::{franking, suite, DeviceIdentity, Roles};
use parley_protocol::{v1, DeviceId, Username};
use prost::Message as _;

struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
}

fn member(index: usize, ciphersuite: Ciphersuite) -> Result<Member> {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(ciphersuite.signature_algorithm())?;
    signer.store(provider.storage())?;
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(index as u64).to_be_bytes());
    let identity = DeviceIdentity::new(
        Username::parse(&format!("user{index}"))?,
        DeviceId::from_bytes(id),
    );
    let credential = CredentialWithKey {
        credential: identity.to_credential(),
        signature_key: signer.to_public_vec().into(),
    };
    Ok(Member {
        provider,
        signer,
        credential,
    })
}

fn key_package(m: &Member, ciphersuite: Ciphersuite) -> Result<KeyPackage> {
    Ok(KeyPackage::builder()
        .leaf_node_capabilities(suite::leaf_capabilities(ciphersuite))
        .build(ciphersuite, &m.provider, &m.signer, m.credential.clone())?
        .key_package()
        .clone())
}

fn create_config(ciphersuite: Ciphersuite) -> Result<MlsGroupCreateConfig> {
    Ok(MlsGroupCreateConfig::builder()
        .ciphersuite(ciphersuite)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(false)
        .capabilities(suite::leaf_capabilities(ciphersuite))
        .with_group_context_extensions(suite::group_context_extensions(
            &Roles::with_admin(Username::parse("user0")?),
            None,
        )?)
        .build())
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(false)
        .build()
}

/// What Parley's client does to send: payload with salt, franking tag in the AAD, encrypt.
fn send(m: &Member, group: &mut MlsGroup, text: &str) -> Result<Vec<u8>> {
    let salt = [7u8; franking::SALT_LEN];
    let payload = v1::AppPayload {
        salt: salt.to_vec(),
        sender_username: "user0".into(),
        sender_device: vec![0; 16],
        message_id: vec![1; 16],
        sent_at_ms: 0,
        body: Some(v1::app_payload::Body::Text(v1::TextBody {
            text: text.into(),
            ..Default::default()
        })),
    }
    .encode_to_vec();
    let aad = v1::MessageAad {
        franking_tag: franking::franking_tag(&salt, &payload).to_vec(),
    }
    .encode_to_vec();
    group.set_aad(aad);
    Ok(group
        .create_message(&m.provider, &m.signer, &payload)?
        .to_bytes()?)
}

/// What Parley's client does to receive: decrypt, decode, check the franking tag.
fn receive(m: &Member, group: &mut MlsGroup, bytes: &[u8]) -> Result<()> {
    let message = MlsMessageIn::tls_deserialize_exact(bytes)?.try_into_protocol_message()?;
    let processed = group.process_message(&m.provider, message)?;
    let aad = v1::MessageAad::decode(processed.aad())?;
    if let ProcessedMessageContent::ApplicationMessage(app) = processed.into_content() {
        let plaintext = app.into_bytes();
        let payload = v1::AppPayload::decode(plaintext.as_slice())?;
        anyhow::ensure!(franking::verify_franking_tag(
            &payload.salt,
            &plaintext,
            &aad.franking_tag
        ));
        Ok(())
    } else {
        anyhow::bail!("expected an application message")
    }
}

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
    let mut a_group = MlsGroup::new(
        &alice.provider,
        &alice.signer,
        &create_config(ciphersuite)?,
        alice.credential.clone(),
    )?;
    let (_, welcome, _) = a_group.add_members(&alice.provider, &alice.signer, &[bob_kp])?;
    a_group.merge_pending_commit(&alice.provider)?;
    let welcome = match MlsMessageIn::from(welcome).extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => anyhow::bail!("no welcome"),
    };
    let tree = a_group.export_ratchet_tree().into();
    let mut b_group =
        StagedWelcome::new_from_welcome(&bob.provider, &join_config(), welcome, Some(tree))?
            .into_group(&bob.provider)?;

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
    let creator = member(0, ciphersuite)?;
    let joiners: Vec<Member> = (1..group_size)
        .map(|i| member(i, ciphersuite))
        .collect::<Result<_>>()?;
    let packages: Vec<KeyPackage> = joiners
        .iter()
        .map(|m| key_package(m, ciphersuite))
        .collect::<Result<_>>()?;
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
    let binary = std::env::current_exe()?
        .parent()
        .context("no parent")?
        .join("parley");
    let data = tempfile::tempdir()?;
    let mut server = std::process::Command::new(&binary)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--rate-per-second",
            "100000",
            "--data",
        ])
        .arg(data.path())
        .env("PARLEY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().context("stdout")?),
        &mut line,
    )?;
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .context("no address")?
        .to_owned();
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
    let _ = server.kill();
    let _ = server.wait();
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
