//! The client core in a real browser: this crate compiled to wasm32, run by
//! `scripts/wasm-test` in headless Chromium inside a Dedicated Worker, with SQLite on OPFS,
//! against a real Parley server on loopback (its address comes in `PARLEY_TEST_SERVER` at
//! build time). The same `Client` as the CLI's: registration, MLS, the log, sync, the live
//! connection.
#![cfg(target_arch = "wasm32")]

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use parley_client::provider::TxProvider;
use parley_client::{platform, ChatRef, Client, ClientOptions};
use parley_protocol::Username;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_dedicated_worker);

const SERVER: &str = env!("PARLEY_TEST_SERVER");

thread_local! {
    static STORAGE: Cell<bool> = const { Cell::new(false) };
}

/// The OPFS pool, installed once per worker.
async fn storage() {
    if !STORAGE.get() {
        platform::install_storage().await.expect("OPFS storage");
        STORAGE.set(true);
    }
}

/// A name no earlier run in this browser profile used.
fn unique(name: &str) -> String {
    format!("{name}{}", (js_sys::Math::random() * 1e9) as u64)
}

#[wasm_bindgen_test]
async fn a_rolled_back_change_leaves_neither_mls_state_nor_log_row() {
    storage().await;
    let home = format!("/{}", unique("tx"));
    let conn = parley_client::testing::open_database(Path::new(&home)).unwrap();
    let crypto = RustCrypto::default();
    let change = |commit: bool| {
        let tx = conn.unchecked_transaction().unwrap();
        let group = {
            let provider = TxProvider::new(&crypto, &tx);
            let suite = parley_mls::suite::DEFAULT_CIPHERSUITE;
            let keys = SignatureKeyPair::new(suite.signature_algorithm()).unwrap();
            keys.store(provider.storage()).unwrap();
            let credential = CredentialWithKey {
                credential: BasicCredential::new(b"alice".to_vec()).into(),
                signature_key: keys.public().into(),
            };
            let config = MlsGroupCreateConfig::builder().ciphersuite(suite).build();
            let group = MlsGroup::new(&provider, &keys, &config, credential).unwrap();
            group.group_id().clone()
        };
        tx.execute(
            "INSERT INTO messages (id, group_id, sender, sender_device, text, sent_at,
                 received_at, status, payload, aad)
             VALUES (?1, ?2, 'alice', x'00', 'hello', 0, 0, 0, x'', x'')",
            rusqlite::params![group.as_slice(), group.as_slice()],
        )
        .unwrap();
        if commit {
            tx.commit().unwrap();
        } // else dropped: rolled back
        group
    };
    let kept = change(true);
    let rolled_back = change(false);
    drop(conn);

    // Reopened from OPFS, as after a reload.
    let conn = parley_client::testing::open_database(Path::new(&home)).unwrap();
    let storage = parley_client::provider::Storage::new(&conn);
    let rows = |group: &GroupId| -> i64 {
        conn.query_row(
            "SELECT count(*) FROM messages WHERE group_id = ?1",
            [group.as_slice()],
            |row| row.get(0),
        )
        .unwrap()
    };
    assert!(MlsGroup::load(&storage, &kept).unwrap().is_some());
    assert_eq!(rows(&kept), 1);
    assert!(MlsGroup::load(&storage, &rolled_back).unwrap().is_none());
    assert_eq!(rows(&rolled_back), 0);
}

#[wasm_bindgen_test]
async fn the_database_logs_ahead_and_syncs_every_commit_as_natively() {
    storage().await;
    let home = format!("/{}", unique("wal"));
    let conn = parley_client::testing::open_database(Path::new(&home)).unwrap();
    // OPFS has no shared memory: without an exclusive lock SQLite would keep its rollback
    // journal (two flushes and a file deletion per commit) and say nothing.
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let synchronous: i64 = conn
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .unwrap();
    assert_eq!(synchronous, 2, "FULL: a commit is on disk when it returns");
}

#[wasm_bindgen_test]
async fn two_browser_clients_talk_live_and_history_survives_reopening() {
    storage().await;
    let (alice_name, bob_name) = (unique("alice"), unique("bob"));
    let (alice_home, bob_home) = (format!("/{alice_name}"), format!("/{bob_name}"));
    let alice = Client::register(
        Path::new(&alice_home),
        SERVER,
        &alice_name,
        ClientOptions::default(),
    )
    .await
    .unwrap();
    let bob = Client::register(
        Path::new(&bob_home),
        SERVER,
        &bob_name,
        ClientOptions::default(),
    )
    .await
    .unwrap();
    let to_bob = ChatRef::Direct(Username::parse(&bob_name).unwrap());
    alice
        .send_text(&to_bob, "first, while bob is away")
        .await
        .unwrap();
    let texts: Vec<String> = bob
        .sync()
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(texts, ["first, while bob is away"]);

    // Live: bob follows over the browser's WebSocket; alice's next message is pushed.
    let heard = Rc::new(RefCell::new(Vec::new()));
    let online = Rc::new(Cell::new(false));
    let follow = bob.follow(
        {
            let heard = heard.clone();
            move |m| heard.borrow_mut().push(m.text.clone())
        },
        {
            let online = online.clone();
            move |up| online.set(up)
        },
        {
            let heard = heard.clone();
            async move {
                while heard.borrow().is_empty() {
                    platform::sleep(Duration::from_millis(20)).await;
                }
            }
        },
    );
    let send = async {
        while !online.get() {
            platform::sleep(Duration::from_millis(20)).await;
        }
        alice.send_text(&to_bob, "second, live").await.unwrap();
    };
    let (followed, ()) = futures_util::future::join(follow, send).await;
    followed.unwrap();
    assert_eq!(*heard.borrow(), ["second, live"]);

    // Reopened from OPFS: both messages, once each.
    drop(bob);
    let bob = Client::open(Path::new(&bob_home), ClientOptions::default()).unwrap();
    let history: Vec<String> = bob
        .history(&ChatRef::Direct(Username::parse(&alice_name).unwrap()), 50)
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(history, ["first, while bob is away", "second, live"]);
}

/// The browser's side of the cost comparison: scripts/wasm-test prints it beside the native
/// client's (`examples/send_receive_cost.rs`) against the same server.
#[wasm_bindgen_test]
async fn sending_and_receiving_costs_are_measured() {
    storage().await;
    let messages = 100;
    let cost = parley_client::testing::send_receive_cost(
        SERVER,
        Path::new("/"),
        &unique("wsend"),
        &unique("wrecv"),
        messages,
    )
    .await
    .unwrap();
    assert!(cost.send_ms > 0.0 && cost.receive_ms > 0.0, "{cost:?}");
    console_log!(
        "browser send_receive_cost: send {:.2} ms, receive {:.2} ms per message ({messages} messages)",
        cost.send_ms,
        cost.receive_ms
    );
}
