//! Per-node figures of the durable store, the numbers behind docs/scaling.md:
//! durable 1:1 submissions per second (concurrent writers, every answer after a durable commit),
//! delivery into a 10,000-member group, and the drain rate of an offline queue, on the embedded
//! SQLite store and on PostgreSQL (a throwaway local server, fsync on).
//!
//! Run: `cargo run --release -p parley-bench --example store_bench [-- --quick]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_protocol::{DeviceId, GroupId, MessageId, UserId, Username};
use parley_store::*;

fn id16(kind: u8, n: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    bytes[0] = kind;
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    bytes
}

async fn accounts(store: &Arc<dyn Store>, count: u64) -> Vec<DeviceId> {
    let mut devices = Vec::new();
    for n in 0..count {
        let device = DeviceId::from_bytes(id16(1, n));
        store
            .create_account(NewAccount {
                user_id: UserId::from_bytes(id16(2, n)),
                username: Username::parse(&format!("user{n}")).unwrap(),
                device_id: device,
                signature_key: id16(3, n).repeat(2),
                account_key: id16(3, n).repeat(2),
                now: 0,
            })
            .await
            .unwrap();
        devices.push(device);
    }
    devices
}

async fn group(store: &Arc<dyn Store>, n: u64, members: &[DeviceId]) -> GroupId {
    let group_id = GroupId::from_bytes(id16(4, n));
    let members = members
        .iter()
        .enumerate()
        .map(|(i, d)| GroupMember {
            device_id: *d,
            leaf_index: i as u32,
        })
        .collect();
    store
        .create_group(NewGroup {
            group_id,
            epoch: 0,
            public_state: vec![0; 64],
            members,
            now: 0,
            max_groups: u64::MAX,
        })
        .await
        .unwrap();
    group_id
}

fn submission(sender: DeviceId, group_id: GroupId, n: u64) -> Submission {
    let mut payload = vec![0u8; 200];
    payload[..8].copy_from_slice(&n.to_be_bytes());
    payload[8..24].copy_from_slice(group_id.as_bytes());
    Submission {
        sender,
        message_id: MessageId::from_bytes(id16(5, n)),
        fingerprint: payload[..24].to_vec(),
        group_id,
        epoch: 0,
        payload,
        accepted_at: 1,
        transition: None,
        franking_tag: Some(vec![7; 32]),
        queue_limit: u64::MAX,
        expires_at: None,
    }
}

struct Figures {
    one_to_one_per_sec: f64,
    big_group_ms: f64,
    drain_per_sec: f64,
}

async fn measure(store: Arc<dyn Store>, pairs: u64, per_pair: u64, big: u64) -> Figures {
    let devices = accounts(&store, pairs * 2 + big).await;
    let mut groups = Vec::new();
    for p in 0..pairs {
        groups.push(group(&store, p, &devices[(2 * p) as usize..(2 * p + 2) as usize]).await);
    }
    // 1:1: one task per pair, all at once; each answer only after its durable commit.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (p, group_id) in groups.iter().enumerate() {
        let (store, sender, group_id) = (store.clone(), devices[2 * p], *group_id);
        tasks.push(tokio::spawn(async move {
            for m in 0..per_pair {
                store
                    .accept(submission(sender, group_id, p as u64 * 1_000_000 + m))
                    .await
                    .unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let one_to_one_per_sec = (pairs * per_pair) as f64 / started.elapsed().as_secs_f64();

    // One message into a group of `big` members: one payload, `big - 1` pointers.
    let members = &devices[(pairs * 2) as usize..];
    let big_group = group(&store, 999_999, members).await;
    let rounds = 5;
    let started = Instant::now();
    for m in 0..rounds {
        let accepted = store
            .accept(submission(members[0], big_group, 900_000_000 + m))
            .await
            .unwrap();
        assert_eq!(accepted.deliveries.len() as u64, big - 1);
    }
    let big_group_ms = started.elapsed().as_secs_f64() * 1e3 / rounds as f64;

    // Drain: a recipient that was offline fetches and acknowledges everything.
    let recipient = devices[1];
    let started = Instant::now();
    let mut drained = 0u64;
    let mut after = 0;
    loop {
        let page = store.fetch_queue(recipient, after, 500).await.unwrap();
        let Some(last) = page.entries.last().map(|e| e.seq) else {
            break;
        };
        drained += page.entries.len() as u64;
        store.ack(recipient, last).await.unwrap();
        after = last;
    }
    assert_eq!(drained, per_pair);
    let drain_per_sec = drained as f64 / started.elapsed().as_secs_f64();
    Figures {
        one_to_one_per_sec,
        big_group_ms,
        drain_per_sec,
    }
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (pairs, per_pair, big) = if quick {
        (16, 50, 1_000)
    } else {
        (64, 200, 10_000)
    };
    println!("Parley store benchmark: {pairs} concurrent 1:1 senders x {per_pair} messages of 200 bytes, a {big}-member group");
    println!("{:<48} {:>14} {:>14}", "", "SQLite (FULL)", "PostgreSQL");

    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let s = measure(sqlite, pairs, per_pair, big).await;

    let postgres = parley_testkit::TestPostgres::start();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pg: Arc<dyn Store> = Arc::new(PgStore::connect(&postgres.url()).await.unwrap());
    let p = measure(pg, pairs, per_pair, big).await;

    println!(
        "{:<48} {:>14.0} {:>14.0}",
        "durable 1:1 submissions per second", s.one_to_one_per_sec, p.one_to_one_per_sec
    );
    println!(
        "{:<48} {:>14.1} {:>14.1}",
        format!("one message into {big} members (ms)"),
        s.big_group_ms,
        p.big_group_ms
    );
    println!(
        "{:<48} {:>14.0} {:>14.0}",
        format!("  = deliveries per second into {big}"),
        (big - 1) as f64 / (s.big_group_ms / 1e3),
        (big - 1) as f64 / (p.big_group_ms / 1e3)
    );
    println!(
        "{:<48} {:>14.0} {:>14.0}",
        "offline drain, items per second", s.drain_per_sec, p.drain_per_sec
    );
}
