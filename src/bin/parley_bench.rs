//! `parley-bench`: the workloads of shared/design/benchmarks.md (B0 to B5), printed as a table of
//! figure, Parley, peer, ratio and target: B1, B2 and B4 side by side with ejabberd, NATS as the
//! routing ceiling, raw SQLite and PostgreSQL as the storage references, raw openmls for B5, and
//! B1 and B2 again on two nodes over PostgreSQL + NATS. docs/performance.md says how to read it.
//!
//! Run: `cargo build --release && target/release/parley-bench` (options: `--quick`,
//! `--only b0,…,b5`, `--no-peers`, `--no-cluster`, `--rates a,b [--nodes N]`, `--hold S`,
//! `--users N`, `--per-user N`).
#![forbid(unsafe_code)]

#[path = "../bench_mls.rs"]
mod bench_mls;
#[path = "../bench_parley.rs"]
mod bench_parley;
#[path = "../bench_xmpp.rs"]
mod bench_xmpp;

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bench_mls::{
    big_group_members, create_config, join_config, key_package, member, receive, send,
    two_member_group,
};
use bench_parley::Deployment;
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

/// A figure with as many decimals as it needs.
fn figure(value: f64) -> String {
    if !value.is_finite() {
        "-".into()
    } else if value.abs() >= 100.0 {
        let whole = format!("{:.0}", value);
        // Thousands separators, for reading at a glance.
        let mut out = String::new();
        for (i, c) in whole.chars().enumerate() {
            if i > 0 && (whole.len() - i) % 3 == 0 && c != '-' {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The table as Markdown: it reads in a terminal and pastes into docs/performance.md.
fn print(rows: &[Row]) {
    println!();
    println!("| figure | Parley | peer | ratio | target |");
    println!("|---|---:|---:|---:|---|");
    for row in rows {
        let peer = row.reference.map(figure).unwrap_or_else(|| "-".into());
        let ratio = row
            .reference
            .filter(|r| *r != 0.0)
            .map(|r| format!("{:.2}", row.parley / r))
            .unwrap_or_else(|| "-".into());
        println!(
            "| {} ({}) | {} | {} | {} | {} |",
            row.figure,
            row.unit,
            figure(row.parley),
            peer,
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
    let (mut a, mut b) =
        two_member_group(&alice, &bob, key_package(&bob, ciphersuite)?, ciphersuite)?;
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
    // On the server core, like Parley's server and ejabberd.
    let mut server = std::process::Command::new("taskset")
        .args(["-c", "0", "nats-server"])
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
        let started = Instant::now();
        // When the last delivery arrived (µs after the start): a subscriber that fell behind
        // and lost messages must not count the wait for them as delivery time.
        let last_delivery = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut listeners = Vec::new();
        for _ in 0..subscribers {
            let client = async_nats::connect(&url).await?;
            let mut subscription = client.subscribe("bench.fanout").await?;
            client.flush().await?;
            let (received, last_delivery) = (received.clone(), last_delivery.clone());
            listeners.push(tokio::spawn(async move {
                let _keep = client;
                let mut count = 0;
                while count < messages {
                    if subscription.next().await.is_none() {
                        break;
                    }
                    count += 1;
                    received.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    last_delivery.fetch_max(
                        started.elapsed().as_micros() as u64,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                }
            }));
        }
        let payload = bytes::Bytes::from(vec![0u8; 64]);
        let publish_from = started.elapsed();
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
        let last = Duration::from_micros(last_delivery.load(std::sync::atomic::Ordering::Relaxed));
        Ok::<f64, anyhow::Error>(total as f64 / (last - publish_from).as_secs_f64())
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

/// B0: raw PostgreSQL insert rate (`synchronous_commit = on`, fsync on) of the same rows as
/// [`sqlite_inserts`], from one connection, PostgreSQL pinned to the server core.
async fn postgres_inserts(runs: &[(usize, usize)]) -> Result<Vec<f64>> {
    let postgres = parley_testkit::TestPostgres::start();
    bench_parley::pin_process_tree(postgres.pid().context("postgres is not running")?, 0)?;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&postgres.url()).await?;
    sqlx::raw_sql(
        "CREATE TABLE p (id BIGSERIAL PRIMARY KEY, data BYTEA NOT NULL);
         CREATE TABLE q (device BYTEA NOT NULL, seq BIGINT NOT NULL, p BIGINT NOT NULL, PRIMARY KEY (device, seq));",
    )
    .execute(&mut conn)
    .await?;
    let payload = vec![0u8; 200];
    let mut rates = Vec::new();
    let mut seq = 0i64;
    for &(per_transaction, messages) in runs {
        let started = Instant::now();
        let mut n = 0usize;
        while n < messages {
            let mut tx = sqlx::Connection::begin(&mut conn).await?;
            for _ in 0..per_transaction {
                let id: i64 = sqlx::query_scalar("INSERT INTO p (data) VALUES ($1) RETURNING id")
                    .bind(&payload)
                    .fetch_one(&mut *tx)
                    .await?;
                sqlx::query("INSERT INTO q (device, seq, p) VALUES ($1, $2, $3)")
                    .bind([1u8; 16].as_slice())
                    .bind(seq)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                seq += 1;
                n += 1;
            }
            tx.commit().await?;
        }
        rates.push(n as f64 / started.elapsed().as_secs_f64());
    }
    Ok(rates)
}

/// B0: raw SQLite read rate of queued messages: pointer rows joined to 200-byte payload rows,
/// read device by device in sequence order (what an offline drain reads).
fn sqlite_reads(devices: usize, per_device: usize) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("raw.db"))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.execute_batch(
        "CREATE TABLE p (id INTEGER PRIMARY KEY, data BLOB NOT NULL);
         CREATE TABLE q (device BLOB NOT NULL, seq INTEGER NOT NULL, p INTEGER NOT NULL, PRIMARY KEY (device, seq)) WITHOUT ROWID;",
    )?;
    let payload = vec![0u8; 200];
    let tx = conn.unchecked_transaction()?;
    for device in 0..devices {
        for seq in 0..per_device {
            tx.execute("INSERT INTO p (data) VALUES (?1)", [&payload])?;
            let id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO q (device, seq, p) VALUES (?1, ?2, ?3)",
                rusqlite::params![(device as u64).to_be_bytes().as_slice(), seq as i64, id],
            )?;
        }
    }
    tx.commit()?;
    let started = Instant::now();
    let mut statement = conn.prepare(
        "SELECT q.seq, p.data FROM q JOIN p ON p.id = q.p WHERE q.device = ?1 AND q.seq > ?2 ORDER BY q.seq",
    )?;
    let mut rows_read = 0usize;
    let mut bytes = 0usize;
    for device in 0..devices {
        let mut rows = statement.query(rusqlite::params![
            (device as u64).to_be_bytes().as_slice(),
            -1i64
        ])?;
        while let Some(row) = rows.next()? {
            let data = row.get_ref(1)?.as_blob()?;
            bytes += data.len();
            rows_read += 1;
        }
    }
    anyhow::ensure!(rows_read == devices * per_device && bytes > 0);
    Ok(rows_read as f64 / started.elapsed().as_secs_f64())
}

/// What to run and how long.
struct Plan {
    quick: bool,
    only: Option<Vec<String>>,
    /// Seconds each B1 rate is held.
    hold: Duration,
    users: usize,
    /// B1 at these rates instead of a ramp.
    rates: Option<Vec<u32>>,
    /// Skip the peers (for profiling Parley alone).
    no_peers: bool,
    /// B4: messages queued per offline user.
    per_user: Option<u64>,
    /// Skip the multi-node rows (B1 and B2 on PostgreSQL + NATS).
    no_cluster: bool,
    /// `--rates` against this many nodes on PostgreSQL + NATS instead of one on SQLite.
    nodes: Option<usize>,
}

/// The multi-node rows: two nodes, as in a small scale-out deployment.
const CLUSTER: Deployment = Deployment::Cluster(2);

impl Plan {
    fn wants(&self, workload: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|w| w == workload))
    }
}

/// The server runs on core 0 and this load generator on core 1: re-run ourselves pinned.
fn pin_to_load_core() -> Result<()> {
    use std::os::unix::process::CommandExt as _;
    if std::env::var_os("PARLEY_BENCH_PINNED").is_some() {
        return Ok(());
    }
    let exe = std::env::current_exe()?;
    let error = std::process::Command::new("taskset")
        .args(["-c", "1"])
        .arg(exe)
        .args(std::env::args().skip(1))
        .env("PARLEY_BENCH_PINNED", "1")
        .exec();
    Err(anyhow::anyhow!(
        "cannot re-run pinned with taskset: {error}"
    ))
}

/// B1's ramp: rates grow by half until one fails (p99 over 50 ms, or anything lost or
/// refused), then four steps between the last that held and the first that failed. Returns the
/// highest rate that held, with its figures.
async fn ramp(
    name: &str,
    start: u32,
    hold: Duration,
    load: &mut impl RelayLoad,
) -> Result<Option<(u32, Relay)>> {
    let mut best: Option<(u32, Relay)> = None;
    let mut rate = start;
    let failed_at = loop {
        let figures = load.relay(rate, hold).await?;
        println!("  {name:<9} {rate:>7} msgs/s: {figures}");
        if !figures.held() {
            break rate;
        }
        best = Some((rate, figures));
        rate = rate * 3 / 2;
    };
    let low = best.as_ref().map_or(0, |(r, _)| *r);
    let step = (failed_at - low) / 5;
    for i in 1..5 {
        let rate = low + step * i;
        if step == 0 || rate == 0 {
            break;
        }
        let figures = load.relay(rate, hold).await?;
        println!("  {name:<9} {rate:>7} msgs/s: {figures}");
        if !figures.held() {
            break;
        }
        best = Some((rate, figures));
    }
    Ok(best)
}

/// Either system's B1 load.
trait RelayLoad {
    async fn relay(&mut self, rate: u32, hold: Duration) -> Result<Relay>;
}

impl RelayLoad for bench_xmpp::XmppPairs {
    async fn relay(&mut self, rate: u32, hold: Duration) -> Result<Relay> {
        let f = self.run(rate, hold).await?;
        Ok(Relay {
            sent: f.sent,
            delivered: f.delivered,
            refused: 0,
            p50_ms: f.p50_ms,
            p99_ms: f.p99_ms,
            cpu_s_per_1000: f.server_cpu_s_per_1000,
            outside_store_us: None,
            load_core_busy: None,
        })
    }
}

impl RelayLoad for bench_parley::Pairs {
    async fn relay(&mut self, rate: u32, hold: Duration) -> Result<Relay> {
        let f = self.run(rate, hold).await?;
        Ok(Relay {
            sent: f.sent,
            delivered: f.delivered,
            refused: f.sent - f.accepted,
            p50_ms: f.p50_ms,
            p99_ms: f.p99_ms,
            cpu_s_per_1000: f.server_cpu_s_per_1000,
            outside_store_us: Some(f.server_cpu.outside_store_us(f.sent)),
            load_core_busy: Some(f.load_core_busy),
        })
    }
}

/// B1 figures of either system at one rate.
struct Relay {
    sent: u64,
    delivered: u64,
    refused: u64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_s_per_1000: f64,
    /// Parley only: server CPU per message outside its SQLite threads.
    outside_store_us: Option<f64>,
    load_core_busy: Option<f64>,
}

impl Relay {
    fn held(&self) -> bool {
        self.p99_ms <= 50.0 && self.delivered == self.sent && self.refused == 0
    }
}

impl std::fmt::Display for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {} delivered {} refused {} p50 {:.2} ms p99 {:.2} ms, server CPU {:.3} s/1000",
            self.sent, self.delivered, self.refused, self.p50_ms, self.p99_ms, self.cpu_s_per_1000
        )?;
        if let (Some(outside), Some(busy)) = (self.outside_store_us, self.load_core_busy) {
            write!(
                f,
                " ({outside:.1} µs/msg outside the store), load core {:.0} % busy",
                busy * 100.0
            )?;
        }
        Ok(())
    }
}

fn row(
    rows: &mut Vec<Row>,
    figure: impl Into<String>,
    parley: f64,
    reference: Option<f64>,
    unit: &'static str,
    target: Option<&'static str>,
) {
    rows.push(Row {
        figure: figure.into(),
        parley,
        reference,
        unit,
        target,
    });
}

async fn b1(plan: &Plan, rows: &mut Vec<Row>) -> Result<()> {
    println!(
        "B1: 1:1 relay, {} users in pairs, 200-byte messages, open loop, each rate held {} s",
        plan.users,
        plan.hold.as_secs()
    );
    let hold = plan.hold;
    if let Some(rates) = &plan.rates {
        let deployment = plan.nodes.map_or(Deployment::Single, Deployment::Cluster);
        let mut pairs = bench_parley::Pairs::start(deployment, plan.users).await?;
        for &rate in rates {
            println!(
                "  Parley    {rate:>7} msgs/s: {}",
                pairs.relay(rate, hold).await?
            );
        }
        return Ok(());
    }
    let ejabberd = if plan.no_peers {
        None
    } else {
        let server = bench_xmpp::Ejabberd::start(0)?;
        let mut pairs = bench_xmpp::XmppPairs::connect(&server, plan.users).await?;
        ramp("ejabberd", 2_000, hold, &mut pairs).await?
    };
    let parley = {
        let mut pairs = bench_parley::Pairs::start(Deployment::Single, plan.users).await?;
        ramp("Parley", 2_000, hold, &mut pairs).await?
    };
    let cluster = if plan.no_cluster {
        None
    } else {
        let mut pairs = bench_parley::Pairs::start(CLUSTER, plan.users).await?;
        ramp("2 nodes", 1_000, hold, &mut pairs).await?
    };
    let rate = |r: &Option<(u32, Relay)>| r.as_ref().map_or(0.0, |(rate, _)| *rate as f64);
    row(
        rows,
        "B1 1:1 relay: highest rate at p99 <= 50 ms, no loss",
        rate(&parley),
        Some(rate(&ejabberd)),
        "msgs/s",
        Some(">= 2.00 (peer: ejabberd)"),
    );
    if let (Some((_, p)), Some((_, e))) = (&parley, &ejabberd) {
        row(
            rows,
            "B1 p50 delivery latency at that rate",
            p.p50_ms,
            Some(e.p50_ms),
            "ms",
            None,
        );
        row(
            rows,
            "B1 p99 delivery latency at that rate",
            p.p99_ms,
            Some(e.p99_ms),
            "ms",
            Some("<= 50 ms"),
        );
        row(
            rows,
            "B1 server CPU per 1,000 messages",
            p.cpu_s_per_1000,
            Some(e.cpu_s_per_1000),
            "s",
            None,
        );
        if let (Some(outside), Some(busy)) = (p.outside_store_us, p.load_core_busy) {
            row(
                rows,
                "B1 server CPU per message outside the store",
                outside,
                None,
                "µs",
                None,
            );
            // All of the server's core for what is left once the store costs nothing: an upper
            // bound that no change to the store can lift.
            row(
                rows,
                "B1 bound: rate if the store cost nothing (one core busy)",
                1e6 / outside,
                Some(rate(&ejabberd)),
                "msgs/s",
                Some("needs >= 2.00"),
            );
            row(
                rows,
                "B1 load generator core busy at that rate",
                busy * 100.0,
                None,
                "%",
                None,
            );
        }
        row(
            rows,
            "B1 messages lost at that rate",
            (p.sent - p.delivered) as f64,
            Some((e.sent - e.delivered) as f64),
            "msgs",
            Some("0"),
        );
    }
    if let Some((cluster_rate, c)) = &cluster {
        row(
            rows,
            "B1 2 nodes on PostgreSQL + NATS, one core: highest rate at p99 <= 50 ms",
            *cluster_rate as f64,
            Some(rate(&parley)),
            "msgs/s",
            Some("(peer: 1 node on SQLite)"),
        );
        row(
            rows,
            "B1 2 nodes: p99 delivery latency at that rate",
            c.p99_ms,
            parley.as_ref().map(|(_, p)| p.p99_ms),
            "ms",
            None,
        );
        row(
            rows,
            "B1 2 nodes: CPU per 1,000 messages (nodes, PostgreSQL, NATS)",
            c.cpu_s_per_1000,
            parley.as_ref().map(|(_, p)| p.cpu_s_per_1000),
            "s",
            None,
        );
    }
    Ok(())
}

async fn b2(plan: &Plan, rows: &mut Vec<Row>, nats: &[(usize, f64)]) -> Result<()> {
    let mut single_thousand = None;
    for (members, messages) in [(100usize, 1_000u64), (1_000, 200)] {
        let messages = if plan.quick { messages / 4 } else { messages };
        println!("B2: fan-out into a group of {members} online members, {messages} messages");
        let parley = bench_parley::group_fan_out(Deployment::Single, members, messages, 16).await?;
        if members == 1_000 {
            single_thousand = Some(parley.deliveries_per_s);
        }
        let outside_store_us = parley.server_cpu.outside_store_us(parley.deliveries);
        println!(
            "  Parley   {:.0} deliveries/s ({} of {}), time to last recipient {:.1} ms, \
             store {:.0} % of server CPU, {outside_store_us:.2} µs/delivery outside it, \
             load core {:.0} % busy",
            parley.deliveries_per_s,
            parley.deliveries,
            parley.messages * (members as u64 - 1),
            parley.time_to_last_ms,
            parley.server_cpu.store_share() * 100.0,
            parley.load_core_busy * 100.0,
        );
        if plan.no_peers {
            continue;
        }
        let server = bench_xmpp::Ejabberd::start(0)?;
        let ejabberd = bench_xmpp::b2_room(&server, members, messages).await?;
        drop(server);
        println!(
            "  ejabberd {:.0} deliveries/s ({}), time to last recipient {:.1} ms",
            ejabberd.deliveries_per_s, ejabberd.deliveries, ejabberd.time_to_last_ms
        );
        row(
            rows,
            format!("B2 fan-out into {members} members"),
            parley.deliveries_per_s,
            Some(ejabberd.deliveries_per_s),
            "deliveries/s",
            None,
        );
        if let Some((_, ceiling)) = nats.iter().find(|(n, _)| *n == members) {
            row(
                rows,
                format!("B2 fan-out into {members} members vs NATS 1 to {members}"),
                parley.deliveries_per_s,
                Some(*ceiling),
                "deliveries/s",
                (members == 1_000).then_some(">= 0.50 (peer: NATS)"),
            );
            if members == 1_000 {
                row(
                    rows,
                    "B2 bound: 1000 members if the store cost nothing (one core busy)",
                    1e6 / outside_store_us,
                    Some(*ceiling),
                    "deliveries/s",
                    Some("needs >= 0.50"),
                );
            }
        }
        row(
            rows,
            format!("B2 load generator core busy, {members} members"),
            parley.load_core_busy * 100.0,
            None,
            "%",
            None,
        );
        row(
            rows,
            format!("B2 time to last recipient, {members} members"),
            parley.time_to_last_ms,
            Some(ejabberd.time_to_last_ms),
            "ms",
            None,
        );
    }
    if !plan.no_cluster {
        let (members, messages) = (1_000usize, if plan.quick { 50 } else { 200 });
        println!("B2: fan-out into {members} members, 2 nodes on PostgreSQL + NATS, one core");
        let cluster = bench_parley::group_fan_out(CLUSTER, members, messages, 16).await?;
        println!(
            "  2 nodes  {:.0} deliveries/s ({} of {}), time to last recipient {:.1} ms, \
             PostgreSQL {:.0} % of the CPU of all processes, {:.1} µs/delivery in all",
            cluster.deliveries_per_s,
            cluster.deliveries,
            cluster.messages * (members as u64 - 1),
            cluster.time_to_last_ms,
            cluster.server_cpu.store_share() * 100.0,
            cluster.server_cpu.total_s / cluster.deliveries.max(1) as f64 * 1e6,
        );
        row(
            rows,
            "B2 2 nodes on PostgreSQL + NATS, one core: fan-out into 1000 members",
            cluster.deliveries_per_s,
            single_thousand,
            "deliveries/s",
            Some("(peer: 1 node on SQLite)"),
        );
    }
    Ok(())
}

async fn b3(plan: &Plan, rows: &mut Vec<Row>) -> Result<()> {
    let count = if plan.quick { 2_000 } else { 19_000 };
    println!("B3: {count} authenticated idle live connections");
    let f = bench_parley::connection_density(count).await?;
    println!(
        "  {:.0} bytes per connection, {:.0} registrations+logins/s, idle CPU {:.2} %",
        f.bytes_per_connection, f.logins_per_s, f.idle_cpu_percent
    );
    row(
        rows,
        format!("B3 server memory per idle connection ({count})"),
        f.bytes_per_connection,
        None,
        "bytes",
        Some("<= 8,192"),
    );
    row(
        rows,
        "B3 registrations with login",
        f.logins_per_s,
        None,
        "per s",
        None,
    );
    row(
        rows,
        "B3 idle CPU with all connected",
        f.idle_cpu_percent,
        None,
        "% of a core",
        None,
    );
    Ok(())
}

async fn b4(plan: &Plan, rows: &mut Vec<Row>, raw_read: f64) -> Result<()> {
    let (users, per_user) = if plan.quick { (200, 20) } else { (1_000, 100) };
    let per_user = plan.per_user.unwrap_or(per_user);
    println!(
        "B4: {} offline recipients, {per_user} messages each, then all reconnect",
        users / 2
    );
    let parley = bench_parley::offline_drain(users, per_user).await?;
    let drain_outside_store_us = parley.drain_cpu.outside_store_us(parley.drained);
    println!(
        "  Parley   enqueue {:.0}/s, drain {:.0}/s, {:.0} bytes stored per message; drain: store \
         {:.0} % of server CPU, {drain_outside_store_us:.2} µs/item outside it, load core {:.0} % busy",
        parley.enqueue_per_s,
        parley.drain_per_s,
        parley.bytes_per_message,
        parley.drain_cpu.store_share() * 100.0,
        parley.drain_load_core_busy * 100.0,
    );
    if plan.no_peers {
        return Ok(());
    }
    let server = bench_xmpp::Ejabberd::start(0)?;
    let ejabberd = bench_xmpp::b4_offline(&server, users / 2, per_user).await?;
    drop(server);
    println!(
        "  ejabberd enqueue {:.0}/s, drain {:.0}/s",
        ejabberd.enqueue_per_s, ejabberd.drain_per_s
    );
    row(
        rows,
        "B4 offline enqueue (durable acknowledgements)",
        parley.enqueue_per_s,
        Some(ejabberd.enqueue_per_s),
        "msgs/s",
        None,
    );
    row(
        rows,
        "B4 offline drain",
        parley.drain_per_s,
        Some(ejabberd.drain_per_s),
        "msgs/s",
        None,
    );
    row(
        rows,
        "B4 offline drain vs raw SQLite read rate",
        parley.drain_per_s,
        Some(raw_read),
        "msgs/s",
        Some(">= 0.50 (peer: raw SQLite)"),
    );
    row(
        rows,
        "B4 bound: drain if the store cost nothing (one core busy)",
        1e6 / drain_outside_store_us,
        Some(raw_read),
        "msgs/s",
        Some("needs >= 0.50"),
    );
    row(
        rows,
        "B4 load generator core busy during the drain",
        parley.drain_load_core_busy * 100.0,
        None,
        "%",
        None,
    );
    row(
        rows,
        "B4 bytes stored per queued message (200-byte text)",
        parley.bytes_per_message,
        None,
        "bytes",
        None,
    );
    Ok(())
}

fn main() -> Result<()> {
    pin_to_load_core()?;
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let quick = args.iter().any(|a| a == "--quick");
    let plan = Plan {
        quick,
        only: value("--only").map(|o| o.split(',').map(str::to_owned).collect()),
        hold: Duration::from_secs(
            value("--hold").map_or(Ok(if quick { 3 } else { 10 }), |v| v.parse())?,
        ),
        users: value("--users").map_or(Ok(1_000), |v| v.parse())?,
        rates: value("--rates")
            .map(|r| {
                r.split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()
            })
            .transpose()?,
        no_peers: args.iter().any(|a| a == "--no-peers"),
        per_user: value("--per-user").map(|v| v.parse()).transpose()?,
        no_cluster: args.iter().any(|a| a == "--no-cluster"),
        nodes: value("--nodes").map(|v| v.parse()).transpose()?,
    };
    let (messages, group_size, echo_seconds) = if quick {
        (1_000, 100, 0.5)
    } else {
        (5_000, 1_000, 2.0)
    };
    println!(
        "parley-bench ({} build): server on core 0, load on core 1",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let mut rows = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut nats = Vec::new();
    let mut raw_read = 0.0;
    if plan.wants("b0") || plan.wants("b2") || plan.wants("b4") {
        let (round_trips, p99) = runtime.block_on(loopback_echo(echo_seconds))?;
        row(
            &mut rows,
            "B0 loopback echo, 100 connections, 64 B",
            round_trips,
            None,
            "round trips/s",
            None,
        );
        row(&mut rows, "B0 loopback echo p99", p99, None, "ms", None);
        for (subscribers, messages) in [(1usize, 200_000usize), (100, 5_000), (1_000, 500)] {
            let messages = if quick { messages / 10 } else { messages };
            match runtime.block_on(nats_fan_out(subscribers, messages)) {
                Ok(rate) => {
                    nats.push((subscribers, rate));
                    row(
                        &mut rows,
                        format!("B0 NATS fan-out, 1 to {subscribers}, 64 B"),
                        rate,
                        None,
                        "deliveries/s",
                        None,
                    );
                }
                Err(e) => println!("B0 NATS fan-out skipped: {e}"),
            }
        }
        // The raw insert runs: messages per transaction, and how many messages in all.
        let runs: Vec<(usize, usize)> = [1usize, 16, 256]
            .into_iter()
            .map(|per| {
                let count = if per == 1 { 1_000 } else { 20_000 };
                (per, if quick { count / 4 } else { count })
            })
            .collect();
        for (full, label) in [(true, "FULL"), (false, "NORMAL")] {
            for &(per, count) in &runs {
                let rate = sqlite_inserts(full, per, count)?;
                row(
                    &mut rows,
                    format!("B0 SQLite {label}, {per} message(s) per transaction"),
                    rate,
                    None,
                    "msgs/s",
                    None,
                );
            }
        }
        match runtime.block_on(postgres_inserts(&runs)) {
            Ok(rates) => {
                for ((per, _), rate) in runs.iter().zip(rates) {
                    row(
                        &mut rows,
                        format!("B0 PostgreSQL, {per} message(s) per transaction"),
                        rate,
                        None,
                        "msgs/s",
                        None,
                    );
                }
            }
            Err(e) => println!("B0 PostgreSQL inserts skipped: {e}"),
        }
        raw_read = sqlite_reads(1_000, if quick { 20 } else { 200 })?;
        row(
            &mut rows,
            "B0 SQLite read, queue rows joined to payloads",
            raw_read,
            None,
            "rows/s",
            None,
        );
    }
    if plan.wants("b1") {
        runtime.block_on(b1(&plan, &mut rows))?;
    }
    if plan.wants("b2") {
        runtime.block_on(b2(&plan, &mut rows, &nats))?;
    }
    if plan.wants("b3") {
        runtime.block_on(b3(&plan, &mut rows))?;
    }
    if plan.wants("b4") {
        runtime.block_on(b4(&plan, &mut rows, raw_read))?;
    }
    if plan.wants("b5") {
        b5(&mut rows, messages, group_size)?;
    }
    print(&rows);
    Ok(())
}
