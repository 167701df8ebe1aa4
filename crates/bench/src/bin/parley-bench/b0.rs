//! B0: the references measured in the same run: loopback echo, NATS fan-out, raw SQLite and
//! PostgreSQL.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// B0: a tokio loopback echo with 100 connections, 64-byte round trips.
pub(crate) async fn loopback_echo(seconds: f64) -> Result<(f64, f64)> {
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
pub(crate) async fn nats_fan_out(subscribers: usize, messages: usize) -> Result<f64> {
    use futures_util::StreamExt;
    let port = parley_testkit::free_port();
    // On the server core, like Parley's server and ejabberd.
    let mut server = parley_bench::measure::pinned(0, "nats-server")
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
pub(crate) fn sqlite_inserts(full: bool, per_transaction: usize, messages: usize) -> Result<f64> {
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
pub(crate) async fn postgres_inserts(runs: &[(usize, usize)]) -> Result<Vec<f64>> {
    let postgres = parley_testkit::TestPostgres::start();
    parley_bench::measure::pin_process_tree(postgres.pid().context("postgres is not running")?, 0)?;
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
pub(crate) fn sqlite_reads(devices: usize, per_device: usize) -> Result<f64> {
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
