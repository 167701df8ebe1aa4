//! The behaviour every `Store` implementation must have. Each check takes a fresh store; the
//! SQLite implementation runs them here, and any other implementation runs the same checks.
//!
//! One file on purpose, though long: it is one suite that every backend runs unchanged, so that
//! no backend can pass a different set of checks.

use std::sync::Arc;

use parley_protocol::{DeviceId, GroupId, MessageId, UserId, Username};
use parley_store::*;

fn device(n: u8) -> DeviceId {
    DeviceId::from_bytes([n; 16])
}

async fn account(store: &dyn Store, n: u8, name: &str) -> DeviceId {
    store
        .create_account(NewAccount {
            user_id: UserId::from_bytes([n; 16]),
            username: Username::parse(name).unwrap(),
            device_id: device(n),
            signature_key: vec![n; 32],
            account_key: vec![n; 32],
            now: 1,
        })
        .await
        .unwrap();
    device(n)
}

fn members(devices: &[DeviceId]) -> Vec<GroupMember> {
    devices
        .iter()
        .enumerate()
        .map(|(i, d)| GroupMember {
            device_id: *d,
            leaf_index: i as u32,
        })
        .collect()
}

fn message(sender: DeviceId, id: u8, group: GroupId, epoch: u64, payload: &[u8]) -> Submission {
    Submission {
        sender,
        message_id: MessageId::from_bytes([id; 16]),
        fingerprint: payload.to_vec(),
        group_id: group,
        epoch,
        payload: payload.to_vec(),
        accepted_at: 10,
        transition: None,
        franking_tag: Some(vec![0xaa; 32]),
        queue_limit: u64::MAX,
        expires_at: None,
    }
}

async fn group_of(store: &dyn Store, group: GroupId, devices: &[DeviceId]) {
    store
        .create_group(NewGroup {
            group_id: group,
            epoch: 1,
            public_state: b"state".to_vec(),
            members: members(devices),
            now: 1,
            max_groups: u64::MAX,
        })
        .await
        .unwrap();
}

async fn accounts_and_sessions(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    let taken = store
        .create_account(NewAccount {
            user_id: UserId::from_bytes([9; 16]),
            username: Username::parse("alice").unwrap(),
            device_id: device(9),
            signature_key: vec![9; 32],
            account_key: vec![9; 32],
            now: 1,
        })
        .await;
    assert!(matches!(taken, Err(StoreError::UsernameTaken)));
    assert_eq!(
        store
            .device(alice)
            .await
            .unwrap()
            .unwrap()
            .username
            .as_str(),
        "alice"
    );
    assert!(store.device(device(77)).await.unwrap().is_none());

    store
        .put_challenge(Challenge {
            nonce: vec![1, 2],
            device_id: alice,
            expires_at: 100,
        })
        .await
        .unwrap();
    assert!(store.take_challenge(&[1, 2]).await.unwrap().is_some());
    assert!(
        store.take_challenge(&[1, 2]).await.unwrap().is_none(),
        "a challenge is good for one login"
    );

    store
        .create_session(NewSession {
            token_hash: vec![5; 32],
            device_id: alice,
            expires_at: 100,
            now: 0,
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .session(&[5; 32], 50)
            .await
            .unwrap()
            .unwrap()
            .device_id,
        alice
    );
    assert!(
        store.session(&[5; 32], 150).await.unwrap().is_none(),
        "expired sessions do not authenticate"
    );
}

/// An account's stored KeyPackages have a byte budget across its devices, and an upload that
/// would go beyond it stores nothing.
async fn key_packages_have_a_byte_budget_per_account(store: Arc<dyn Store>) {
    let bob = account(&*store, 2, "bob").await;
    let packages = |n: usize| (0..n).map(|i| vec![i as u8; 16 * 1024]).collect::<Vec<_>>();
    let budget = parley_protocol::limits::MAX_KEY_PACKAGE_BYTES_PER_ACCOUNT as usize;
    let fits = budget / (16 * 1024);
    store
        .add_key_packages(bob, packages(200), None)
        .await
        .unwrap();
    let refused = store
        .add_key_packages(bob, packages(fits - 200 + 1), None)
        .await;
    assert!(
        matches!(refused, Err(StoreError::TooManyKeyPackages)),
        "{refused:?}"
    );
    assert_eq!(store.key_package_count(bob).await.unwrap().one_time, 200);
    let count = store
        .add_key_packages(bob, packages(fits - 200), None)
        .await
        .unwrap();
    assert_eq!(count.one_time as usize, fits);
}

/// An account already in `max_groups` groups cannot create another (others may still add it
/// to theirs).
async fn an_account_in_too_many_groups_cannot_create_another(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    let new_group = |n: u8| NewGroup {
        group_id: GroupId::from_bytes([n; 16]),
        epoch: 1,
        public_state: b"state".to_vec(),
        members: members(&[alice]),
        now: 1,
        max_groups: 3,
    };
    for n in 1..=3 {
        store.create_group(new_group(n)).await.unwrap();
    }
    let refused = store.create_group(new_group(4)).await;
    assert!(
        matches!(refused, Err(StoreError::TooManyGroups)),
        "{refused:?}"
    );
    assert!(store
        .group(GroupId::from_bytes([4; 16]))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        store
            .memberships(&Username::parse("alice").unwrap())
            .await
            .unwrap()
            .len(),
        3
    );
}

/// A device id names one device: a second account cannot register it.
async fn a_device_id_is_registered_once(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    let again = store
        .create_account(NewAccount {
            user_id: UserId::from_bytes([2; 16]),
            username: Username::parse("bob").unwrap(),
            device_id: alice,
            signature_key: vec![2; 32],
            account_key: vec![2; 32],
            now: 1,
        })
        .await;
    assert!(matches!(again, Err(StoreError::DeviceIdTaken)), "{again:?}");
    assert!(store
        .user_devices(&Username::parse("bob").unwrap())
        .await
        .unwrap()
        .is_empty());
}

async fn key_packages_are_handed_out_once(store: Arc<dyn Store>) {
    let bob = account(&*store, 2, "bob").await;
    let count = store
        .add_key_packages(
            bob,
            (0..20u8).map(|i| vec![i; 8]).collect(),
            Some(vec![0xff; 8]),
        )
        .await
        .unwrap();
    assert_eq!(
        count,
        KeyPackageCount {
            one_time: 20,
            has_last_resort: true
        }
    );
    let claims = (0..30).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.claim_key_package(bob).await.unwrap().unwrap() })
    });
    let mut one_time = std::collections::HashSet::new();
    let mut last_resort = 0;
    for claim in claims {
        let claimed = claim.await.unwrap();
        if claimed.last_resort {
            assert_eq!(claimed.data, vec![0xff; 8]);
            last_resort += 1;
        } else {
            assert!(one_time.insert(claimed.data));
        }
    }
    assert_eq!((one_time.len(), last_resort), (20, 10));
    assert_eq!(
        store.key_package_count(bob).await.unwrap(),
        KeyPackageCount {
            one_time: 0,
            has_last_resort: true
        }
    );
}

async fn a_message_is_stored_once_with_a_pointer_per_recipient(store: Arc<dyn Store>) {
    let (a, b, c) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
        account(&*store, 3, "carol").await,
    );
    let group = GroupId::from_bytes([7; 16]);
    group_of(&*store, group, &[a, b, c]).await;
    let accepted = store
        .accept(message(a, 1, group, 1, b"cipher-1"))
        .await
        .unwrap();
    assert_eq!((accepted.group_seq, accepted.duplicate), (1, false));
    let mut recipients: Vec<DeviceId> = accepted.deliveries.iter().map(|(d, _)| *d).collect();
    recipients.sort();
    assert_eq!(recipients, vec![b, c], "every member but the sender");

    // A retry returns the first result and delivers nothing new.
    let retry = store
        .accept(message(a, 1, group, 1, b"cipher-1"))
        .await
        .unwrap();
    assert!(retry.duplicate && retry.deliveries.is_empty());
    assert_eq!(retry.group_seq, 1);
    assert!(matches!(
        store.accept(message(a, 1, group, 1, b"other")).await,
        Err(StoreError::IdempotencyConflict)
    ));
    assert!(matches!(
        store.accept(message(a, 2, group, 1, b"cipher-1")).await,
        Err(StoreError::Replay)
    ));

    let page = store.fetch_queue(b, 0, 10).await.unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].payload, b"cipher-1");
    assert_eq!(page.entries[0].sender_username.as_str(), "alice");

    // Acknowledged by one recipient: still there for the other. By both: gone.
    store.ack(b, page.entries[0].seq).await.unwrap();
    assert!(store
        .fetch_queue(b, 0, 10)
        .await
        .unwrap()
        .entries
        .is_empty());
    assert_eq!(store.fetch_queue(c, 0, 10).await.unwrap().entries.len(), 1);
    store.ack(c, 100).await.unwrap();
    assert!(store
        .fetch_queue(c, 0, 10)
        .await
        .unwrap()
        .entries
        .is_empty());
}

async fn one_commit_per_epoch(store: Arc<dyn Store>) {
    let (a, b) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
    );
    let group = GroupId::from_bytes([8; 16]);
    group_of(&*store, group, &[a, b]).await;
    let commit = |sender, id, payload: &[u8]| {
        let mut submission = message(sender, id, group, 1, payload);
        submission.transition = Some(GroupTransition {
            joining: false,
            expected_state_version: 0,
            new_epoch: 2,
            new_public_state: payload.to_vec(),
            members: members(&[a, b]),
            welcome: None,
        });
        submission
    };
    let (first, second) = tokio::join!(
        store.accept(commit(a, 1, b"commit-a")),
        store.accept(commit(b, 2, b"commit-b"))
    );
    let outcomes = [first, second];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "exactly one commit wins the epoch"
    );
    assert!(outcomes
        .iter()
        .any(|o| matches!(o, Err(StoreError::WrongEpoch { current: 2 }))));
    assert_eq!(store.group(group).await.unwrap().unwrap().epoch, 2);
    // An application message from the old epoch is refused too.
    assert!(matches!(
        store.accept(message(a, 3, group, 1, b"late")).await,
        Err(StoreError::WrongEpoch { current: 2 })
    ));
    // Outsiders are refused.
    let outsider = account(&*store, 3, "carol").await;
    assert!(matches!(
        store.accept(message(outsider, 4, group, 2, b"hi")).await,
        Err(StoreError::NotMember)
    ));
}

async fn a_welcome_travels_with_its_commit(store: Arc<dyn Store>) {
    let (a, b, c) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
        account(&*store, 3, "carol").await,
    );
    let group = GroupId::from_bytes([9; 16]);
    group_of(&*store, group, &[a, b]).await;
    let mut add = message(a, 1, group, 1, b"add-carol");
    add.transition = Some(GroupTransition {
        joining: false,
        expected_state_version: 0,
        new_epoch: 2,
        new_public_state: b"with carol".to_vec(),
        members: members(&[a, b, c]),
        welcome: Some(WelcomeDelivery {
            payload: b"welcome".to_vec(),
            recipients: vec![c],
        }),
    });
    store.accept(add).await.unwrap();
    let carol = store.fetch_queue(c, 0, 10).await.unwrap();
    assert_eq!(carol.entries.len(), 1);
    assert_eq!(carol.entries[0].kind, ItemKind::Welcome);
    let bob = store.fetch_queue(b, 0, 10).await.unwrap();
    assert_eq!(bob.entries[0].kind, ItemKind::GroupMessage);
    assert!(store.is_member(group, c).await.unwrap());
    let mut devices = store.group_devices(group).await.unwrap();
    devices.sort();
    let mut expected = vec![a, b, c];
    expected.sort();
    assert_eq!(devices, expected, "the group's member devices");
    assert!(store
        .group_devices(parley_protocol::GroupId::from_bytes([0xEE; 16]))
        .await
        .unwrap()
        .is_empty());
    // A transition computed from an older state is refused (compare-and-set).
    let mut stale = message(a, 2, group, 2, b"stale");
    stale.transition = Some(GroupTransition {
        joining: false,
        expected_state_version: 0,
        new_epoch: 2,
        new_public_state: vec![],
        members: members(&[a, b, c]),
        welcome: None,
    });
    assert!(matches!(
        store.accept(stale).await,
        Err(StoreError::StateChanged)
    ));
}

/// A recipient's queue holds at most `queue_limit` undelivered bytes: a submission that would
/// take any recipient beyond it is refused whole, naming that recipient, and nothing queued is
/// dropped to make room; acknowledging and expiring give the room back.
async fn a_full_queue_refuses_instead_of_dropping(store: Arc<dyn Store>) {
    let (a, b, c, d) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
        account(&*store, 3, "carol").await,
        account(&*store, 4, "dave").await,
    );
    let group = GroupId::from_bytes([12; 16]);
    group_of(&*store, group, &[a, b, c]).await;
    let limited = |id: u8, payload: &[u8], at: Millis| Submission {
        queue_limit: 100,
        accepted_at: at,
        ..message(a, id, group, 1, payload)
    };
    let first = store.accept(limited(1, &[1; 60], 10)).await.unwrap();
    let refused = store.accept(limited(2, &[2; 60], 10)).await;
    assert!(
        matches!(&refused, Err(StoreError::QueueFull(name)) if ["bob", "carol"].contains(&name.as_str())),
        "{refused:?}"
    );
    // Nothing of the refused message was stored, for anyone; the group's order goes on.
    assert_eq!(queued(&*store, b, 0, 10).await, items(&[(1, &[1; 60])]));
    assert_eq!(queued(&*store, c, 0, 10).await, items(&[(1, &[1; 60])]));
    store.ack(b, 1).await.unwrap();
    let second = store.accept(limited(3, &[3; 30], 20)).await.unwrap();
    assert_eq!(second.group_seq, first.group_seq + 1);
    // Bob has room (30 queued), carol has not (90): carol is the one named.
    let refused = store.accept(limited(4, &[4; 20], 20)).await;
    assert!(
        matches!(&refused, Err(StoreError::QueueFull(name)) if name.as_str() == "carol"),
        "{refused:?}"
    );
    // A retry of an accepted message is its first answer, not a second charge.
    assert!(
        store
            .accept(limited(3, &[3; 30], 20))
            .await
            .unwrap()
            .duplicate
    );
    // Expiry gives back what it deletes: carol's 60-byte item goes, her 30 stay.
    assert_eq!(store.expire(15, 15).await.unwrap(), 1);
    store.accept(limited(5, &[5; 70], 20)).await.unwrap();
    assert_eq!(
        queued(&*store, c, 0, 10).await,
        items(&[(2, &[3; 30]), (3, &[5; 70])])
    );
    // A Welcome counts against its recipient's queue too, and refuses its whole commit.
    let add = |welcome: usize| {
        let mut add = limited(6, b"add-dave", 20);
        add.queue_limit = 150;
        add.transition = Some(GroupTransition {
            joining: false,
            expected_state_version: 0,
            new_epoch: 2,
            new_public_state: b"with dave".to_vec(),
            members: members(&[a, b, c, d]),
            welcome: Some(WelcomeDelivery {
                payload: vec![6; welcome],
                recipients: vec![d],
            }),
        });
        add
    };
    let refused = store.accept(add(160)).await;
    assert!(
        matches!(&refused, Err(StoreError::QueueFull(name)) if name.as_str() == "dave"),
        "{refused:?}"
    );
    assert!(
        !store.is_member(group, d).await.unwrap(),
        "the commit was not applied"
    );
    assert!(queued(&*store, d, 0, 10).await.is_empty());
    assert_eq!(queued(&*store, b, 0, 10).await.len(), 2);
    store.accept(add(80)).await.unwrap();
    assert!(store.is_member(group, d).await.unwrap());
    assert_eq!(queued(&*store, d, 0, 10).await.len(), 1);
    assert_eq!(queued(&*store, b, 0, 10).await.len(), 3);
}

/// A page holds at most its byte budget of payload, but always its first item.
async fn a_page_stops_at_its_byte_budget(store: Arc<dyn Store>) {
    let (a, b) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
    );
    let group = GroupId::from_bytes([13; 16]);
    group_of(&*store, group, &[a, b]).await;
    for id in 1..=3u8 {
        store
            .accept(message(a, id, group, 1, &[id; 100]))
            .await
            .unwrap();
    }
    let seqs = |page: QueuePage| page.entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    let within = |max: usize| store.fetch_queue_within(b, 0, 10, max);
    assert_eq!(
        seqs(within(10).await.unwrap()),
        [1],
        "the first comes whatever its size"
    );
    assert_eq!(seqs(within(199).await.unwrap()), [1]);
    assert_eq!(seqs(within(200).await.unwrap()), [1, 2]);
    assert_eq!(seqs(store.fetch_queue(b, 1, 10).await.unwrap()), [2, 3]);
}

async fn undelivered_items_expire(store: Arc<dyn Store>) {
    let (a, b) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
    );
    let group = GroupId::from_bytes([10; 16]);
    group_of(&*store, group, &[a, b]).await;
    store.accept(message(a, 1, group, 1, b"old")).await.unwrap();
    assert_eq!(store.expire(11, 11).await.unwrap(), 1);
    let page = store.fetch_queue(b, 0, 10).await.unwrap();
    assert!(page.entries.is_empty());
    assert_eq!(page.expired_up_to, 1, "the device learns it missed items");
}

/// A disappearing message's ciphertext is overwritten at its time, delivered or not; the
/// queue keeps its place (and its byte count), so nothing else moves.
async fn disappearing_messages_are_overwritten_at_their_time(store: Arc<dyn Store>) {
    let (a, b) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
    );
    let group = GroupId::from_bytes([13; 16]);
    group_of(&*store, group, &[a, b]).await;
    let disappearing = Submission {
        expires_at: Some(40),
        ..message(a, 1, group, 1, b"secret")
    };
    store.accept(disappearing).await.unwrap();
    store
        .accept(message(a, 2, group, 1, b"stays"))
        .await
        .unwrap();
    assert_eq!(store.expire(0, 39).await.unwrap(), 0);
    assert_eq!(
        queued(&*store, b, 0, 10).await,
        items(&[(1, b"secret"), (2, b"stays")]),
        "not before its time"
    );
    store.expire(0, 40).await.unwrap();
    assert_eq!(
        queued(&*store, b, 0, 10).await,
        items(&[(1, &[0; 6]), (2, b"stays")])
    );
    store.ack(b, 2).await.unwrap();
    assert!(queued(&*store, b, 0, 10).await.is_empty());
}

/// The payloads a device's queue holds, in order, after `after`.
async fn queued(
    store: &dyn Store,
    device: DeviceId,
    after: u64,
    limit: u32,
) -> Vec<(u64, Vec<u8>)> {
    store
        .fetch_queue(device, after, limit)
        .await
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.seq, e.payload))
        .collect()
}

fn items(list: &[(u64, &[u8])]) -> Vec<(u64, Vec<u8>)> {
    list.iter().map(|(seq, p)| (*seq, p.to_vec())).collect()
}

async fn a_queue_interleaves_groups_in_arrival_order(store: Arc<dyn Store>) {
    let (a, b, c) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
        account(&*store, 3, "carol").await,
    );
    let pair = GroupId::from_bytes([11; 16]);
    let trio = GroupId::from_bytes([12; 16]);
    group_of(&*store, pair, &[a, b]).await;
    group_of(&*store, trio, &[a, b, c]).await;
    let sends = [
        (a, pair, "p1"),
        (b, pair, "p2"),
        (a, trio, "t1"),
        (c, trio, "t2"),
        (a, pair, "p3"),
        (b, trio, "t3"),
        (a, pair, "p4"),
    ];
    for (id, (sender, group, text)) in sends.iter().enumerate() {
        store
            .accept(message(*sender, id as u8 + 1, *group, 1, text.as_bytes()))
            .await
            .unwrap();
    }
    // Nobody receives their own messages; everything else arrives in the order accepted,
    // numbered without gaps.
    let bob = items(&[(1, b"p1"), (2, b"t1"), (3, b"t2"), (4, b"p3"), (5, b"p4")]);
    assert_eq!(queued(&*store, b, 0, 100).await, bob);
    let alice = items(&[(1, b"p2"), (2, b"t2"), (3, b"t3")]);
    assert_eq!(queued(&*store, a, 0, 100).await, alice);
    let carol = items(&[(1, b"t1"), (2, b"t3")]);
    assert_eq!(queued(&*store, c, 0, 100).await, carol);
    assert_eq!(store.queue_head(b).await.unwrap(), 5);
    assert_eq!(store.queue_depth().await.unwrap(), 10);

    // Pages start anywhere and stop at the limit.
    assert_eq!(queued(&*store, b, 2, 2).await, bob[2..4].to_vec());
    assert_eq!(queued(&*store, b, 4, 100).await, bob[4..].to_vec());
    assert!(queued(&*store, b, 5, 100).await.is_empty());

    // Acknowledging part of the queue keeps the rest, with the same numbers.
    store.ack(b, 3).await.unwrap();
    assert_eq!(queued(&*store, b, 0, 100).await, bob[3..].to_vec());
    assert_eq!(
        queued(&*store, a, 0, 100).await,
        alice,
        "others keep theirs"
    );
    store.ack(b, 5).await.unwrap();
    assert!(queued(&*store, b, 0, 100).await.is_empty());
    assert_eq!(store.queue_head(b).await.unwrap(), 5, "the head stays");
    // The next item continues the numbering.
    store.accept(message(a, 20, pair, 1, b"p5")).await.unwrap();
    assert_eq!(queued(&*store, b, 0, 100).await, items(&[(6, b"p5")]));

    store.ack(a, 3).await.unwrap();
    store.ack(c, 2).await.unwrap();
    store.ack(b, 6).await.unwrap();
    assert_eq!(store.queue_depth().await.unwrap(), 0);
}

async fn a_member_who_leaves_and_returns_gets_nothing_from_meanwhile(store: Arc<dyn Store>) {
    let (a, b, c) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
        account(&*store, 3, "carol").await,
    );
    // Dave comes back through the same commit, without a Welcome of his own in it.
    let d = account(&*store, 4, "dave").await;
    let group = GroupId::from_bytes([13; 16]);
    group_of(&*store, group, &[a, b, c, d]).await;
    let commit = |id: u8, epoch: u64, version: u64, payload: &[u8], who: &[DeviceId]| {
        let mut submission = message(a, id, group, epoch, payload);
        submission.transition = Some(GroupTransition {
            joining: false,
            expected_state_version: version,
            new_epoch: epoch + 1,
            new_public_state: payload.to_vec(),
            members: members(who),
            welcome: who.contains(&c).then(|| WelcomeDelivery {
                payload: b"welcome back".to_vec(),
                recipients: vec![c],
            }),
        });
        submission
    };
    store
        .accept(message(b, 1, group, 1, b"before"))
        .await
        .unwrap();
    store
        .accept(commit(2, 1, 0, b"remove carol", &[a, b]))
        .await
        .unwrap();
    store
        .accept(message(b, 3, group, 2, b"meanwhile"))
        .await
        .unwrap();
    store
        .accept(commit(4, 2, 1, b"add carol", &[a, b, c, d]))
        .await
        .unwrap();
    store
        .accept(message(b, 5, group, 3, b"after"))
        .await
        .unwrap();
    let carol = items(&[
        (1, b"before"),
        (2, b"remove carol"),
        (3, b"welcome back"),
        (4, b"after"),
    ]);
    assert_eq!(queued(&*store, c, 0, 100).await, carol);
    let dave = items(&[(1, b"before"), (2, b"remove carol"), (3, b"after")]);
    assert_eq!(queued(&*store, d, 0, 100).await, dave);
    let alice = items(&[(1, b"before"), (2, b"meanwhile"), (3, b"after")]);
    assert_eq!(queued(&*store, a, 0, 100).await, alice);
    // Acknowledging inside the run that straddles the absence.
    store.ack(c, 1).await.unwrap();
    assert_eq!(queued(&*store, c, 0, 100).await, carol[1..].to_vec());
    store.ack(c, 4).await.unwrap();
    store.ack(a, 3).await.unwrap();
    store.ack(b, 100).await.unwrap();
    store.ack(d, 3).await.unwrap();
    assert_eq!(store.queue_depth().await.unwrap(), 0);
}

async fn expiry_keeps_the_newer_part_of_a_queue(store: Arc<dyn Store>) {
    let (a, b) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
    );
    let group = GroupId::from_bytes([14; 16]);
    group_of(&*store, group, &[a, b]).await;
    for (id, (text, at)) in [("old-1", 10), ("old-2", 11), ("new", 20)]
        .iter()
        .enumerate()
    {
        let mut submission = message(a, id as u8 + 1, group, 1, text.as_bytes());
        submission.accepted_at = *at;
        store.accept(submission).await.unwrap();
    }
    assert_eq!(store.expire(15, 15).await.unwrap(), 2);
    let page = store.fetch_queue(b, 0, 10).await.unwrap();
    assert_eq!(page.expired_up_to, 2);
    assert_eq!(
        page.entries
            .iter()
            .map(|e| (e.seq, e.payload.clone()))
            .collect::<Vec<_>>(),
        items(&[(3, b"new")])
    );
    assert_eq!(store.queue_depth().await.unwrap(), 1);
}

/// What every device's queue must hold, kept the simplest way: a list per device.
#[derive(Default)]
struct QueueModel {
    queues: std::collections::HashMap<DeviceId, Vec<(u64, Vec<u8>)>>,
    heads: std::collections::HashMap<DeviceId, u64>,
}

impl QueueModel {
    fn deliver(&mut self, device: DeviceId, payload: &[u8]) {
        let head = self.heads.entry(device).or_default();
        *head += 1;
        self.queues
            .entry(device)
            .or_default()
            .push((*head, payload.to_vec()));
    }

    fn ack(&mut self, device: DeviceId, up_to: u64) {
        self.queues
            .entry(device)
            .or_default()
            .retain(|(seq, _)| *seq > up_to);
    }

    fn page(&self, device: DeviceId, after: u64, limit: usize) -> Vec<(u64, Vec<u8>)> {
        self.queues
            .get(&device)
            .map(|q| {
                q.iter()
                    .filter(|(seq, _)| *seq > after)
                    .take(limit)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A small deterministic generator: the same sequence on every run and every store.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % sides
    }
}

/// Hundreds of messages, membership changes with Welcomes, acknowledgements at random points and
/// pages of every size, in three overlapping groups: every queue always reads exactly as the
/// simplest model of it (one list per device) says.
async fn queues_match_a_model_under_random_traffic(store: Arc<dyn Store>) {
    let names = ["ann", "ben", "cat", "dan", "eve", "fay"];
    let mut devices = Vec::new();
    for (n, name) in names.iter().enumerate() {
        devices.push(account(&*store, n as u8 + 1, name).await);
    }
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let mut model = QueueModel::default();
    // Per group: members, epoch, state version.
    let mut groups: Vec<(GroupId, Vec<DeviceId>, u64, u64)> = Vec::new();
    for g in 0..3u8 {
        let group = GroupId::from_bytes([0x60 + g; 16]);
        let members: Vec<DeviceId> = devices
            .iter()
            .copied()
            .filter(|_| dice.roll(3) != 0)
            .collect();
        let members = if members.len() < 2 {
            devices[..3].to_vec()
        } else {
            members
        };
        group_of(&*store, group, &members).await;
        groups.push((group, members, 1, 0));
    }
    let mut next_id = 0u32;
    for step in 0..400 {
        next_id += 1;
        let message_id = {
            let mut bytes = [0u8; 16];
            bytes[..4].copy_from_slice(&next_id.to_be_bytes());
            MessageId::from_bytes(bytes)
        };
        let payload = format!("m{next_id}").into_bytes();
        let (group, roster, epoch, version) = &mut groups[dice.roll(3) as usize];
        match dice.roll(10) {
            // A membership change: somebody joins (with a Welcome) or leaves.
            0 => {
                let sender = roster[dice.roll(roster.len() as u64) as usize];
                let outsiders: Vec<DeviceId> = devices
                    .iter()
                    .copied()
                    .filter(|d| !roster.contains(d))
                    .collect();
                let mut after = roster.clone();
                let mut welcome = None;
                if !outsiders.is_empty() && (dice.roll(2) == 0 || roster.len() <= 2) {
                    let joiner = outsiders[dice.roll(outsiders.len() as u64) as usize];
                    after.push(joiner);
                    welcome = Some(WelcomeDelivery {
                        payload: format!("welcome{next_id}").into_bytes(),
                        recipients: vec![joiner],
                    });
                } else if roster.len() > 2 {
                    let leaver = loop {
                        let candidate = roster[dice.roll(roster.len() as u64) as usize];
                        if candidate != sender {
                            break candidate;
                        }
                    };
                    after.retain(|d| *d != leaver);
                }
                let submission = Submission {
                    sender,
                    message_id,
                    fingerprint: payload.clone(),
                    group_id: *group,
                    epoch: *epoch,
                    payload: payload.clone(),
                    accepted_at: 10,
                    transition: Some(GroupTransition {
                        joining: false,
                        expected_state_version: *version,
                        new_epoch: *epoch + 1,
                        new_public_state: payload.clone(),
                        members: members(&after),
                        welcome: welcome.clone(),
                    }),
                    franking_tag: None,
                    queue_limit: u64::MAX,
                    expires_at: None,
                };
                store.accept(submission).await.unwrap();
                for member in roster.iter().filter(|d| **d != sender) {
                    model.deliver(*member, &payload);
                }
                if let Some(welcome) = welcome {
                    model.deliver(welcome.recipients[0], &welcome.payload);
                }
                *roster = after;
                *epoch += 1;
                *version += 1;
            }
            // An application message.
            1..=6 => {
                let sender = roster[dice.roll(roster.len() as u64) as usize];
                let mut submission = message(sender, 0, *group, *epoch, &payload);
                submission.message_id = message_id;
                store.accept(submission).await.unwrap();
                for member in roster.iter().filter(|d| **d != sender) {
                    model.deliver(*member, &payload);
                }
            }
            // An acknowledgement up to somewhere in the device's queue.
            7 | 8 => {
                let device = devices[dice.roll(devices.len() as u64) as usize];
                let head = model.heads.get(&device).copied().unwrap_or(0);
                let up_to = dice.roll(head + 1);
                store.ack(device, up_to).await.unwrap();
                model.ack(device, up_to);
            }
            // A page from anywhere.
            _ => {
                let device = devices[dice.roll(devices.len() as u64) as usize];
                let head = model.heads.get(&device).copied().unwrap_or(0);
                let after = dice.roll(head + 1);
                let limit = dice.roll(6) as u32 + 1;
                assert_eq!(
                    queued(&*store, device, after, limit).await,
                    model.page(device, after, limit as usize),
                    "step {step}: a page of {device:?} after {after}"
                );
            }
        }
    }
    for device in &devices {
        assert_eq!(
            queued(&*store, *device, 0, 10_000).await,
            model.page(*device, 0, 10_000),
            "the whole queue of {device:?}"
        );
        let head = model.heads.get(device).copied().unwrap_or(0);
        assert_eq!(store.queue_head(*device).await.unwrap(), head);
        store.ack(*device, head).await.unwrap();
    }
    assert_eq!(store.queue_depth().await.unwrap(), 0);
}

async fn moderation_is_audited_and_append_only(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    store
        .create_session(NewSession {
            token_hash: vec![5; 32],
            device_id: alice,
            expires_at: 100,
            now: 0,
        })
        .await
        .unwrap();
    let report = NewReport {
        created_at: 5,
        reporter: Username::parse("bob").unwrap(),
        accused: Username::parse("alice").unwrap(),
        accused_device: alice,
        group_id: GroupId::from_bytes([3; 16]),
        group_seq: 7,
        message_accepted_at: 4,
        text: "the reported text".into(),
        reason: "spam".into(),
        context: "[]".into(),
    };
    let id = store.create_report(report.clone()).await.unwrap();
    assert!(matches!(
        store.create_report(report.clone()).await,
        Err(StoreError::DuplicateReport)
    ));
    assert_eq!(
        store.reports(Some(ReportStatus::Open)).await.unwrap()[0].report,
        report
    );
    let audit = |action: &str| AuditEntry {
        at: 6,
        moderator: "mod".into(),
        action: action.into(),
        subject: "alice".into(),
    };
    assert!(store
        .set_report_status(id, ReportStatus::Dismissed, audit("dismiss"))
        .await
        .unwrap());
    assert!(store
        .reports(Some(ReportStatus::Open))
        .await
        .unwrap()
        .is_empty());

    let alice_name = Username::parse("alice").unwrap();
    assert!(store
        .set_suspended(&alice_name, true, audit("suspend"))
        .await
        .unwrap());
    assert!(
        store.session(&[5; 32], 50).await.unwrap().is_none(),
        "a suspension ends sessions"
    );
    assert!(store.device(alice).await.unwrap().unwrap().suspended);
    assert!(store
        .set_suspended(&alice_name, false, audit("unsuspend"))
        .await
        .unwrap());
    assert!(!store.device(alice).await.unwrap().unwrap().suspended);
    let log = store.audit_log().await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["dismiss", "suspend", "unsuspend"]);
}

async fn console_sessions_expire_end_and_die_with_their_token(store: Arc<dyn Store>) {
    let (token, other_token) = (vec![1; 32], vec![2; 32]);
    store
        .add_admin_token(token.clone(), "ada".into(), 1)
        .await
        .unwrap();
    store
        .add_admin_token(other_token.clone(), "bo".into(), 1)
        .await
        .unwrap();
    assert!(
        !store
            .create_admin_session(vec![9; 32], vec![3; 32], 10, 100)
            .await
            .unwrap(),
        "a session needs a valid token"
    );
    assert!(store
        .create_admin_session(vec![10; 32], token.clone(), 10, 100)
        .await
        .unwrap());
    assert!(store
        .create_admin_session(vec![11; 32], token.clone(), 10, 100)
        .await
        .unwrap());
    assert!(store
        .create_admin_session(vec![12; 32], other_token, 10, 100)
        .await
        .unwrap());
    assert_eq!(
        store.admin_session(&[10; 32], 50).await.unwrap().as_deref(),
        Some("ada")
    );
    assert_eq!(
        store.admin_session(&[10; 32], 100).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(store.admin_session(&[9; 32], 50).await.unwrap(), None);

    store.end_admin_session(&[10; 32]).await.unwrap();
    assert_eq!(
        store.admin_session(&[10; 32], 50).await.unwrap(),
        None,
        "signed out"
    );
    assert_eq!(
        store.admin_session(&[11; 32], 50).await.unwrap().as_deref(),
        Some("ada")
    );

    let audit = AuditEntry {
        at: 20,
        moderator: "cli".into(),
        action: "revoke admin token".into(),
        subject: "ada".into(),
    };
    assert_eq!(
        store
            .revoke_admin_tokens("ada", audit.clone())
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.admin_token(&token).await.unwrap(), None);
    assert_eq!(
        store.admin_session(&[11; 32], 50).await.unwrap(),
        None,
        "revoked"
    );
    assert_eq!(
        store.admin_session(&[12; 32], 50).await.unwrap().as_deref(),
        Some("bo")
    );
    assert_eq!(store.revoke_admin_tokens("ada", audit).await.unwrap(), 0);
    let actions: Vec<String> = store
        .audit_log()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "revoke admin token")
            .count(),
        1,
        "{actions:?}"
    );
}

async fn a_claim_for_several_users_takes_all_or_nothing(store: Arc<dyn Store>) {
    let bob = account(&*store, 2, "bob").await;
    let carol = account(&*store, 3, "carol").await;
    let dave = account(&*store, 4, "dave").await;
    store
        .add_key_packages(bob, vec![vec![1; 8], vec![2; 8]], None)
        .await
        .unwrap();
    store
        .add_key_packages(carol, vec![vec![3; 8]], Some(vec![0xcc; 8]))
        .await
        .unwrap();
    // Dave has no package: the claim fails on him and takes nothing from bob or carol.
    let err = store
        .claim_key_packages(vec![vec![bob], vec![carol], vec![dave]])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoKeyPackage(2)), "{err:?}");
    assert_eq!(store.key_package_count(bob).await.unwrap().one_time, 2);
    assert_eq!(store.key_package_count(carol).await.unwrap().one_time, 1);
    // Without him, one package per device, in the order asked.
    let claimed = store
        .claim_key_packages(vec![vec![bob], vec![carol]])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].len(), 1);
    assert_eq!(
        (claimed[0][0].device_id, claimed[0][0].last_resort),
        (bob, false)
    );
    assert_eq!(
        (claimed[1][0].device_id, claimed[1][0].last_resort),
        (carol, false)
    );
    assert_eq!(store.key_package_count(bob).await.unwrap().one_time, 1);
    // Carol's last-resort package stays.
    let again = store.claim_key_packages(vec![vec![carol]]).await.unwrap();
    assert!(again[0][0].last_resort);
    assert!(
        store
            .key_package_count(carol)
            .await
            .unwrap()
            .has_last_resort
    );
}

fn new_link(link_id: u8, user: u8, device: u8, now: i64) -> NewLink {
    NewLink {
        link_id: vec![link_id; 8],
        user_id: UserId::from_bytes([user; 16]),
        device_id: DeviceId::from_bytes([device; 16]),
        signature_key: vec![device; 32],
        hpke_key: vec![7; 32],
        mac: vec![8; 32],
        now,
        expires_at: now + 600_000,
        max_pending: 3,
    }
}

fn approval(link_id: u8, now: i64, max_devices: u32) -> LinkApproval {
    LinkApproval {
        link_id: vec![link_id; 8],
        sealed_bundle: vec![9; 100],
        archive_blob: vec![5; 16],
        now,
        kept_until: now + 86_400_000,
        max_devices,
    }
}

async fn a_link_registers_its_device_once_within_the_accounts_limits(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    // The new device's id and key must be nobody's yet.
    let mut taken = new_link(1, 1, 2, 10);
    taken.device_id = alice;
    assert!(matches!(
        store.create_link(taken).await,
        Err(StoreError::DeviceIdTaken)
    ));
    for (link, device) in [(1, 20), (2, 21), (3, 22)] {
        store
            .create_link(new_link(link, 1, device, 10))
            .await
            .unwrap();
    }
    assert!(
        matches!(
            store.create_link(new_link(4, 1, 23, 10)).await,
            Err(StoreError::TooManyLinks)
        ),
        "at most three links wait at once"
    );
    let waiting = store.link(&[1; 8], 11).await.unwrap().unwrap();
    assert_eq!(waiting.username.as_str(), "alice");
    assert_eq!(waiting.device_id, device(20));
    assert_eq!(waiting.approved_at, None);
    assert!(
        store.link(&[1; 8], 10 + 600_000).await.unwrap().is_none(),
        "expired"
    );
    assert!(matches!(
        store.approve_link(approval(1, 10 + 600_000, 10)).await,
        Err(StoreError::LinkExpired)
    ));

    let linked = store.approve_link(approval(1, 20, 10)).await.unwrap();
    assert_eq!(linked.device_id, device(20));
    assert_eq!(linked.username.as_str(), "alice");
    assert_eq!(linked.account_key, vec![1; 32], "the account's key");
    let approved = store.link(&[1; 8], 30).await.unwrap().unwrap();
    assert_eq!(approved.approved_at, Some(20));
    assert_eq!(approved.sealed_bundle, Some(vec![9; 100]));
    assert_eq!(approved.archive_blob, Some(vec![5; 16]));
    assert!(
        store.link(&[1; 8], 20 + 600_000).await.unwrap().is_some(),
        "an approved link is kept for its archive"
    );
    assert!(
        matches!(
            store.approve_link(approval(1, 21, 10)).await,
            Err(StoreError::LinkExpired)
        ),
        "a link works once"
    );
    let devices = store
        .account_devices(UserId::from_bytes([1; 16]))
        .await
        .unwrap();
    assert_eq!(
        devices.iter().map(|d| d.device_id).collect::<Vec<_>>(),
        vec![alice, device(20)]
    );
    assert_eq!(devices[1].added_at, 20);
    store
        .rename_device(device(20), b"sealed".to_vec())
        .await
        .unwrap();
    let devices = store
        .account_devices(UserId::from_bytes([1; 16]))
        .await
        .unwrap();
    assert_eq!(devices[1].sealed_name, b"sealed".to_vec());
    // Two devices now: a limit of two refuses a third.
    assert!(matches!(
        store.approve_link(approval(2, 22, 2)).await,
        Err(StoreError::TooManyDevices)
    ));
    assert!(
        store
            .link(&[2; 8], 23)
            .await
            .unwrap()
            .unwrap()
            .approved_at
            .is_none(),
        "a refused approval changes nothing"
    );
    assert_eq!(
        store.expire_links_and_blobs(20 + 86_400_000).await.unwrap(),
        3
    );
    assert!(store.link(&[1; 8], 0).await.unwrap().is_none());
}

async fn a_revocation_rotates_the_account_key_in_the_same_transaction(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    let mut linked = Vec::new();
    for (link, device) in [(1, 2), (2, 3)] {
        store
            .create_link(new_link(link, 1, device, 10))
            .await
            .unwrap();
        linked.push(
            store
                .approve_link(approval(link, 11, 5))
                .await
                .unwrap()
                .device_id,
        );
    }
    let (stolen, remaining) = (linked[0], linked[1]);
    store
        .add_key_packages(remaining, vec![vec![1; 100]], Some(vec![2; 100]))
        .await
        .unwrap();
    let rotation = |old: u8, new: u8| NewRotation {
        old_key: vec![old; 32],
        new_key: vec![new; 32],
        statement: vec![old, new],
        keys: vec![
            (remaining, b"sealed".to_vec()),
            (stolen, b"not for it".to_vec()),
        ],
    };
    // A rotation from a key that is not the account's any more changes nothing at all.
    assert!(matches!(
        store
            .revoke_device(stolen, alice, b"r".to_vec(), Some(rotation(7, 9)), 20)
            .await,
        Err(StoreError::AccountKeyChanged)
    ));
    assert!(!store.device(stolen).await.unwrap().unwrap().revoked);
    assert_eq!(
        store.device(alice).await.unwrap().unwrap().account_key,
        vec![1; 32]
    );

    assert!(store
        .revoke_device(stolen, alice, b"r".to_vec(), Some(rotation(1, 9)), 21)
        .await
        .unwrap());
    let user = UserId::from_bytes([1; 16]);
    assert_eq!(
        store.device(alice).await.unwrap().unwrap().account_key,
        vec![9; 32]
    );
    assert_eq!(
        store.account_rotations(user).await.unwrap(),
        vec![vec![1, 9]]
    );
    assert_eq!(
        store.rotation_keys(remaining).await.unwrap(),
        Some(b"sealed".to_vec())
    );
    assert_eq!(
        store.rotation_keys(stolen).await.unwrap(),
        None,
        "a revoked device is sealed nothing"
    );
    assert!(
        store.claim_key_package(remaining).await.unwrap().is_none(),
        "KeyPackages under the old key are gone"
    );
    store.finish_rotation(remaining).await.unwrap();
    assert_eq!(store.rotation_keys(remaining).await.unwrap(), None);
}

async fn a_revoked_device_is_gone_for_good(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    store.create_link(new_link(1, 1, 2, 10)).await.unwrap();
    let second = store
        .approve_link(approval(1, 11, 2))
        .await
        .unwrap()
        .device_id;
    store
        .create_session(NewSession {
            token_hash: vec![2; 32],
            device_id: second,
            expires_at: 1000,
            now: 12,
        })
        .await
        .unwrap();
    store
        .add_key_packages(second, vec![vec![1; 100]], Some(vec![2; 100]))
        .await
        .unwrap();
    assert!(store.session(&[2; 32], 13).await.unwrap().is_some());

    assert!(store
        .revoke_device(second, alice, b"statement".to_vec(), None, 20)
        .await
        .unwrap());
    assert!(
        !store
            .revoke_device(second, alice, b"again".to_vec(), None, 21)
            .await
            .unwrap(),
        "once"
    );
    assert!(
        matches!(
            store
                .revoke_device(alice, second, b"back".to_vec(), None, 22)
                .await,
            Err(StoreError::Revoked)
        ),
        "a revoked device revokes nothing: of two that revoke each other, one wins"
    );
    assert!(!store.device(alice).await.unwrap().unwrap().revoked);
    assert!(
        store.session(&[2; 32], 22).await.unwrap().is_none(),
        "its session ended"
    );
    assert!(
        store.claim_key_package(second).await.unwrap().is_none(),
        "its packages are gone"
    );
    assert!(store.device(second).await.unwrap().unwrap().revoked);
    let listed: Vec<DeviceId> = store
        .user_devices(&Username::parse("alice").unwrap())
        .await
        .unwrap()
        .iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(listed, vec![alice], "claims and listings leave it out");
    assert_eq!(
        store
            .account_devices(UserId::from_bytes([1; 16]))
            .await
            .unwrap()
            .len(),
        1
    );
    // It no longer counts against the account's devices; its id stays taken.
    store.create_link(new_link(2, 1, 3, 30)).await.unwrap();
    store.approve_link(approval(2, 31, 2)).await.unwrap();
    let mut reuse = new_link(3, 1, 2, 40);
    reuse.signature_key = vec![77; 32];
    assert!(matches!(
        store.create_link(reuse).await,
        Err(StoreError::DeviceIdTaken)
    ));
}

fn new_blob(id: u8, owner: u8, reader: Option<DeviceId>, now: i64) -> NewBlob {
    NewBlob {
        blob_id: vec![id; 16],
        owner: UserId::from_bytes([owner; 16]),
        reader,
        now,
        expires_at: now + 1000,
        max_per_account: 2,
    }
}

async fn a_blob_is_sealed_only_when_complete_and_expires(store: Arc<dyn Store>) {
    account(&*store, 1, "alice").await;
    let reader = device(9);
    store
        .create_blob(new_blob(1, 1, Some(reader), 10))
        .await
        .unwrap();
    store.create_blob(new_blob(2, 1, None, 10)).await.unwrap();
    assert!(matches!(
        store.create_blob(new_blob(3, 1, None, 10)).await,
        Err(StoreError::TooManyBlobs)
    ));
    store
        .put_blob_chunk(&[1; 16], 0, b"one".to_vec(), 11)
        .await
        .unwrap();
    store
        .put_blob_chunk(&[1; 16], 2, b"three".to_vec(), 12)
        .await
        .unwrap();
    assert!(
        matches!(
            store.seal_blob(&[1; 16], 3, 15).await,
            Err(StoreError::BlobState(_))
        ),
        "chunk 1 is missing"
    );
    // A retried chunk replaces itself.
    store
        .put_blob_chunk(&[1; 16], 1, b"tw".to_vec(), 13)
        .await
        .unwrap();
    store
        .put_blob_chunk(&[1; 16], 1, b"two".to_vec(), 14)
        .await
        .unwrap();
    assert!(matches!(
        store.seal_blob(&[1; 16], 2, 15).await,
        Err(StoreError::BlobState(_))
    ));
    store.seal_blob(&[1; 16], 3, 15).await.unwrap();
    assert!(matches!(
        store
            .put_blob_chunk(&[1; 16], 3, b"more".to_vec(), 15)
            .await,
        Err(StoreError::BlobState(_))
    ));
    let record = store.blob(&[1; 16], 16).await.unwrap().unwrap();
    assert_eq!(
        (
            record.chunks,
            record.bytes,
            record.sealed,
            record.updated_at,
            record.reader
        ),
        (3, 11, true, 14, Some(reader))
    );
    assert_eq!(
        store.blob_chunk(&[1; 16], 1).await.unwrap(),
        Some(b"two".to_vec())
    );
    assert_eq!(store.blob_chunk(&[1; 16], 3).await.unwrap(), None);
    store.delete_blob(&[1; 16]).await.unwrap();
    assert!(store.blob(&[1; 16], 16).await.unwrap().is_none());
    assert_eq!(store.blob_chunk(&[1; 16], 0).await.unwrap(), None);
    assert!(matches!(
        store.put_blob_chunk(&[1; 16], 0, b"x".to_vec(), 17).await,
        Err(StoreError::UnknownBlob)
    ));
    // The other one expires.
    store
        .put_blob_chunk(&[2; 16], 0, b"x".to_vec(), 17)
        .await
        .unwrap();
    assert!(store.blob(&[2; 16], 1010).await.unwrap().is_none());
    assert!(
        matches!(
            store.seal_blob(&[2; 16], 1, 1010).await,
            Err(StoreError::UnknownBlob)
        ),
        "an expired blob is not sealed"
    );
    assert_eq!(store.expire_links_and_blobs(1010).await.unwrap(), 1);
    assert_eq!(store.blob_chunk(&[2; 16], 0).await.unwrap(), None);
    store.create_blob(new_blob(3, 1, None, 1011)).await.unwrap();
}

async fn recovery_keeps_current_group_infos_the_newest_backups_and_rejoins(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    let bob = account(&*store, 2, "bob").await;
    let alice_id = UserId::from_bytes([1; 16]);
    let group = GroupId::from_bytes([8; 16]);
    group_of(&*store, group, &[alice, bob]).await;

    // A GroupInfo is kept only for the group's current epoch.
    assert!(!store
        .put_group_info(group, 0, b"old".to_vec())
        .await
        .unwrap());
    assert!(store.group_info(group).await.unwrap().is_none());
    assert!(store
        .put_group_info(group, 1, b"one".to_vec())
        .await
        .unwrap());
    assert!(store
        .put_group_info(group, 1, b"one again".to_vec())
        .await
        .unwrap());
    assert_eq!(
        store.group_info(group).await.unwrap(),
        Some(StoredGroupInfo {
            epoch: 1,
            group_info: b"one again".to_vec()
        })
    );
    assert!(store.account_in_group(group, alice_id).await.unwrap());
    assert!(!store
        .account_in_group(group, UserId::from_bytes([3; 16]))
        .await
        .unwrap());

    // A restored device of alice's joins by itself: it is no member before its commit.
    let restored = store
        .add_restored_device(RestoredDevice {
            user_id: alice_id,
            device_id: device(11),
            signature_key: vec![11; 32],
            now: 5,
            max_devices: 2,
        })
        .await
        .unwrap();
    assert_eq!(restored.username.as_str(), "alice");
    assert!(matches!(
        store
            .add_restored_device(RestoredDevice {
                user_id: alice_id,
                device_id: device(12),
                signature_key: vec![12; 32],
                now: 5,
                max_devices: 2,
            })
            .await,
        Err(StoreError::TooManyDevices)
    ));
    let mut join = message(device(11), 1, group, 1, b"external commit");
    join.transition = Some(GroupTransition {
        joining: false,
        expected_state_version: 0,
        new_epoch: 2,
        new_public_state: b"after".to_vec(),
        members: members(&[alice, bob, device(11)]),
        welcome: None,
    });
    assert!(
        matches!(store.accept(join.clone()).await, Err(StoreError::NotMember)),
        "only a joining commit may come from outside"
    );
    join.transition.as_mut().unwrap().joining = true;
    let accepted = store.accept(join).await.unwrap();
    let mut told: Vec<DeviceId> = accepted.deliveries.iter().map(|d| d.0).collect();
    told.sort();
    assert_eq!(told, vec![alice, bob], "the members hear of the join");
    assert!(store.is_member(group, device(11)).await.unwrap());
    // The GroupInfo of epoch 1 is now behind; a new one replaces it.
    assert_eq!(store.group_info(group).await.unwrap().unwrap().epoch, 1);
    assert!(store
        .put_group_info(group, 2, b"two".to_vec())
        .await
        .unwrap());

    // Backups: sealed blobs of the owner only, the newest three kept, found by name and id.
    let backup_blob = |id: u8, now: i64| NewBlob {
        blob_id: vec![id; 16],
        owner: alice_id,
        reader: None,
        now,
        expires_at: now + 1000,
        max_per_account: 8,
    };
    store.create_blob(backup_blob(1, 10)).await.unwrap();
    store
        .put_blob_chunk(&[1; 16], 0, b"sealed-1".to_vec(), 10)
        .await
        .unwrap();
    let register = |blob: u8, now: i64| NewBackup {
        owner: alice_id,
        backup_id: vec![7; 32],
        blob_id: vec![blob; 16],
        restore_verifier: vec![5; 32],
        set_by: alice,
        now,
        keep: 3,
    };
    assert!(
        matches!(
            store.register_backup(register(1, 11)).await,
            Err(StoreError::BlobState(_))
        ),
        "an unsealed blob is no backup"
    );
    assert!(matches!(
        store
            .register_backup(NewBackup {
                owner: UserId::from_bytes([2; 16]),
                ..register(1, 11)
            })
            .await,
        Err(StoreError::UnknownBlob)
    ));
    for (id, now) in [(1u8, 20i64), (2, 30), (3, 40), (4, 50)] {
        if id > 1 {
            store.create_blob(backup_blob(id, now)).await.unwrap();
            store
                .put_blob_chunk(&[id; 16], 0, format!("sealed-{id}").into_bytes(), now)
                .await
                .unwrap();
        }
        store.seal_blob(&[id; 16], 1, now).await.unwrap();
        store.register_backup(register(id, now + 1)).await.unwrap();
    }
    let kept: Vec<Vec<u8>> = store
        .backups(alice_id)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.blob.blob_id)
        .collect();
    assert_eq!(
        kept,
        vec![vec![4; 16], vec![3; 16], vec![2; 16]],
        "newest first"
    );
    assert!(
        store.blob(&[1; 16], 0).await.unwrap().is_none(),
        "the oldest is deleted"
    );
    assert_eq!(store.blob_chunk(&[1; 16], 0).await.unwrap(), None);
    let alice_name = Username::parse("alice").unwrap();
    let latest = store
        .latest_backup(&alice_name, &[7; 32])
        .await
        .unwrap()
        .unwrap();
    assert_eq!((latest.blob.blob_id, latest.created_at), (vec![4; 16], 51));
    assert_eq!(
        store.restore_verifier(alice_id, &[7; 32]).await.unwrap(),
        Some(vec![5; 32])
    );
    // Another verifier under the same id is refused, and changes nothing.
    store.create_blob(backup_blob(5, 60)).await.unwrap();
    store
        .put_blob_chunk(&[5; 16], 0, b"other key".to_vec(), 60)
        .await
        .unwrap();
    store.seal_blob(&[5; 16], 1, 60).await.unwrap();
    assert!(matches!(
        store
            .register_backup(NewBackup {
                restore_verifier: vec![6; 32],
                ..register(5, 61)
            })
            .await,
        Err(StoreError::VerifierMismatch)
    ));
    assert_eq!(store.backups(alice_id).await.unwrap().len(), 3);
    store.delete_blob(&[5; 16]).await.unwrap();
    // A backup never expires by itself, and another id or name finds nothing.
    assert_eq!(store.expire_links_and_blobs(1_000_000).await.unwrap(), 0);
    assert!(store
        .latest_backup(&alice_name, &[8; 32])
        .await
        .unwrap()
        .is_none());
    let bob_name = Username::parse("bob").unwrap();
    assert!(store
        .latest_backup(&bob_name, &[7; 32])
        .await
        .unwrap()
        .is_none());
    // Deleting a backup's blob deletes the backup.
    store.delete_blob(&[4; 16]).await.unwrap();
    assert_eq!(
        store
            .latest_backup(&alice_name, &[7; 32])
            .await
            .unwrap()
            .unwrap()
            .blob
            .blob_id,
        vec![3; 16]
    );
    // Revoking the device that set a verifier deletes it and the backups under it; one set by
    // another device stays.
    store.create_blob(backup_blob(6, 70)).await.unwrap();
    store
        .put_blob_chunk(&[6; 16], 0, b"by the restored one".to_vec(), 70)
        .await
        .unwrap();
    store.seal_blob(&[6; 16], 1, 70).await.unwrap();
    store
        .register_backup(NewBackup {
            backup_id: vec![8; 32],
            restore_verifier: vec![9; 32],
            set_by: device(11),
            ..register(6, 71)
        })
        .await
        .unwrap();
    assert!(store
        .revoke_device(alice, device(11), b"statement".to_vec(), None, 80)
        .await
        .unwrap());
    assert_eq!(
        store.restore_verifier(alice_id, &[7; 32]).await.unwrap(),
        None
    );
    assert!(store
        .latest_backup(&alice_name, &[7; 32])
        .await
        .unwrap()
        .is_none());
    assert!(
        store.blob(&[3; 16], 0).await.unwrap().is_none(),
        "its blobs go too"
    );
    assert_eq!(
        store.restore_verifier(alice_id, &[8; 32]).await.unwrap(),
        Some(vec![9; 32])
    );
    assert!(store
        .latest_backup(&alice_name, &[8; 32])
        .await
        .unwrap()
        .is_some());
}

fn new_attachment(hash: u8, uploader: DeviceId, group: GroupId, size: u64) -> NewAttachment {
    NewAttachment {
        hash: vec![hash; 32],
        size,
        uploader,
        group,
        quota_bytes: 1000,
        now: 10,
        expires_at: 5000,
    }
}

async fn an_attachment_goes_once_every_member_device_has_it(store: Arc<dyn Store>) {
    let alice = account(&*store, 1, "alice").await;
    let bob = account(&*store, 2, "bob").await;
    let carol = account(&*store, 3, "carol").await;
    let group = GroupId::from_bytes([7; 16]);
    group_of(&*store, group, &[alice, bob, carol]).await;
    let outsider = account(&*store, 4, "dave").await;
    assert!(matches!(
        store
            .create_attachment(new_attachment(1, outsider, group, 10))
            .await,
        Err(StoreError::NotMember)
    ));
    let record = store
        .create_attachment(new_attachment(1, alice, group, 600))
        .await
        .unwrap();
    assert_eq!((record.received, record.complete), (0, false));
    // Resuming returns the same record; another account cannot take the hash.
    assert_eq!(
        store
            .create_attachment(new_attachment(1, alice, group, 600))
            .await
            .unwrap(),
        record
    );
    assert!(matches!(
        store
            .create_attachment(new_attachment(1, bob, group, 600))
            .await,
        Err(StoreError::AttachmentTaken)
    ));
    // 600 + 500 is over alice's quota of 1000; bob has his own.
    assert!(matches!(
        store
            .create_attachment(new_attachment(2, alice, group, 500))
            .await,
        Err(StoreError::QuotaExceeded)
    ));
    store
        .create_attachment(new_attachment(2, bob, group, 500))
        .await
        .unwrap();
    // Parts move the upload on only from where it is.
    assert!(store
        .advance_attachment(&[1; 32], 0, 300, false)
        .await
        .unwrap());
    assert!(!store
        .advance_attachment(&[1; 32], 0, 300, false)
        .await
        .unwrap());
    assert!(store
        .advance_attachment(&[1; 32], 300, 600, true)
        .await
        .unwrap());
    assert!(!store
        .advance_attachment(&[1; 32], 600, 700, true)
        .await
        .unwrap());
    let done = store.attachment(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((done.received, done.complete), (600, true));
    // The uploader's fetch does not count; bob's and carol's do, once each.
    assert!(!store.attachment_fetched(&[1; 32], alice).await.unwrap());
    assert!(!store.attachment_fetched(&[1; 32], bob).await.unwrap());
    assert!(!store.attachment_fetched(&[1; 32], bob).await.unwrap());
    assert!(store.attachment_fetched(&[1; 32], carol).await.unwrap());
    assert!(store.attachment(&[1; 32]).await.unwrap().is_none());
    // Now alice's quota has room again.
    store
        .create_attachment(new_attachment(3, alice, group, 900))
        .await
        .unwrap();
    // An incomplete upload expires after its grace, a complete one at its retention.
    assert!(store
        .advance_attachment(&[3; 32], 0, 900, true)
        .await
        .unwrap());
    let mut expired = store.expire_attachments(100, 11).await.unwrap();
    assert_eq!(expired, vec![vec![2; 32]], "bob's upload never finished");
    expired = store.expire_attachments(5000, 11).await.unwrap();
    assert_eq!(expired, vec![vec![3; 32]]);
    assert!(store.attachment(&[3; 32]).await.unwrap().is_none());
    assert!(!store.attachment_fetched(&[3; 32], bob).await.unwrap());
}

async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn Store>>,
{
    accounts_and_sessions(make().await).await;
    key_packages_are_handed_out_once(make().await).await;
    a_device_id_is_registered_once(make().await).await;
    key_packages_have_a_byte_budget_per_account(make().await).await;
    an_account_in_too_many_groups_cannot_create_another(make().await).await;
    a_claim_for_several_users_takes_all_or_nothing(make().await).await;
    a_message_is_stored_once_with_a_pointer_per_recipient(make().await).await;
    one_commit_per_epoch(make().await).await;
    a_welcome_travels_with_its_commit(make().await).await;
    undelivered_items_expire(make().await).await;
    disappearing_messages_are_overwritten_at_their_time(make().await).await;
    a_full_queue_refuses_instead_of_dropping(make().await).await;
    a_page_stops_at_its_byte_budget(make().await).await;
    a_queue_interleaves_groups_in_arrival_order(make().await).await;
    a_member_who_leaves_and_returns_gets_nothing_from_meanwhile(make().await).await;
    expiry_keeps_the_newer_part_of_a_queue(make().await).await;
    queues_match_a_model_under_random_traffic(make().await).await;
    moderation_is_audited_and_append_only(make().await).await;
    console_sessions_expire_end_and_die_with_their_token(make().await).await;
    a_link_registers_its_device_once_within_the_accounts_limits(make().await).await;
    a_blob_is_sealed_only_when_complete_and_expires(make().await).await;
    a_revoked_device_is_gone_for_good(make().await).await;
    a_revocation_rotates_the_account_key_in_the_same_transaction(make().await).await;
    recovery_keeps_current_group_infos_the_newest_backups_and_rejoins(make().await).await;
    an_attachment_goes_once_every_member_device_has_it(make().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_conforms() {
    let dirs = std::sync::Mutex::new(Vec::new());
    run_all(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        dirs.lock().unwrap().push(dir);
        async move { Arc::new(store) as Arc<dyn Store> }
    })
    .await;
}

#[tokio::test]
async fn sqlite_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
        account(&store, 1, "alice").await;
    }
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    assert!(store.device(device(1)).await.unwrap().is_some());
}

#[tokio::test]
async fn the_sqlite_audit_log_cannot_be_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap();
    store
        .audit(AuditEntry {
            at: 1,
            moderator: "m".into(),
            action: "a".into(),
            subject: "s".into(),
        })
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(store.database_path()).unwrap();
    assert!(conn
        .execute("UPDATE audit_log SET action = 'x'", [])
        .is_err());
    assert!(conn.execute("DELETE FROM audit_log", []).is_err());
    assert_eq!(store.audit_log().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_conforms() {
    let postgres = parley_testkit::TestPostgres::start();
    let url = postgres.url();
    run_all(|| {
        let url = url.clone();
        async move {
            PgStore::reset(&url).await.unwrap();
            Arc::new(PgStore::connect(&url).await.unwrap()) as Arc<dyn Store>
        }
    })
    .await;
}

/// A pointer's bytes are released however it is deleted, also by the plain `DELETE` of a node of
/// the previous version during a rolling upgrade, so that no queue stays full for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_releases_a_pointers_bytes_whatever_deletes_it() {
    let postgres = parley_testkit::TestPostgres::start();
    let store = Arc::new(PgStore::connect(&postgres.url()).await.unwrap());
    let (a, b) = (
        account(&*store, 1, "alice").await,
        account(&*store, 2, "bob").await,
    );
    let group = GroupId::from_bytes([0x56; 16]);
    group_of(&*store, group, &[a, b]).await;
    let limited = |id: u8| Submission {
        queue_limit: 100,
        ..message(a, id, group, 1, &[id; 60])
    };
    store.accept(limited(1)).await.unwrap();
    assert!(matches!(
        store.accept(limited(2)).await,
        Err(StoreError::QueueFull(_))
    ));
    let pool = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    sqlx::query("DELETE FROM queue WHERE seq <= 1")
        .execute(&pool)
        .await
        .unwrap();
    let queued: i64 = sqlx::query_scalar("SELECT queued_bytes FROM devices WHERE id = $1")
        .bind(b.as_bytes().to_vec())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(queued, 0);
    store.accept(limited(2)).await.unwrap();
}

/// Forty-nine recipients acknowledging the same three group messages at the same moment: none
/// waits for another, and each payload goes with its last pointer however their transactions
/// interleave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_frees_a_payload_when_all_acknowledge_at_once() {
    let postgres = parley_testkit::TestPostgres::start();
    let store = Arc::new(PgStore::connect(&postgres.url()).await.unwrap());
    let mut devices = Vec::new();
    for n in 1..=50u8 {
        devices.push(account(&*store, n, &format!("member{n}")).await);
    }
    let group = GroupId::from_bytes([0x55; 16]);
    group_of(&*store, group, &devices).await;
    for id in 1..=3u8 {
        store
            .accept(message(devices[0], id, group, 1, &[id; 8]))
            .await
            .unwrap();
    }
    let acks = devices[1..].iter().map(|device| {
        let store = store.clone();
        let device = *device;
        tokio::spawn(async move { store.ack(device, 3).await })
    });
    for ack in acks.collect::<Vec<_>>() {
        ack.await.unwrap().unwrap();
    }
    let pool = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    let payloads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payloads")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(payloads, 0, "every acknowledged payload is deleted");
    assert_eq!(store.queue_depth().await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_audit_log_cannot_be_rewritten() {
    let postgres = parley_testkit::TestPostgres::start();
    let store = PgStore::connect(&postgres.url()).await.unwrap();
    store
        .audit(AuditEntry {
            at: 1,
            moderator: "m".into(),
            action: "a".into(),
            subject: "s".into(),
        })
        .await
        .unwrap();
    assert!(store
        .raw_execute("UPDATE audit_log SET action = 'x'")
        .await
        .is_err());
    assert!(store.raw_execute("DELETE FROM audit_log").await.is_err());
    assert_eq!(store.audit_log().await.unwrap().len(), 1);
}

/// One message into a group of 10,000: stored once, 9,999 pointers, and a 1:1 message sent at
/// the same moment is not held up for long.
async fn large_group_fan_out(store: Arc<dyn Store>) -> std::time::Duration {
    const MEMBERS: u32 = 10_000;
    let mut devices = Vec::new();
    for chunk in (0..MEMBERS).collect::<Vec<_>>().chunks(500) {
        let creations = chunk.iter().map(|n| {
            let store = store.clone();
            let n = *n;
            tokio::spawn(async move {
                let mut bytes = [0u8; 16];
                bytes[12..].copy_from_slice(&n.to_be_bytes());
                bytes[0] = 0x42;
                let device = DeviceId::from_bytes(bytes);
                bytes[1] = 1;
                store
                    .create_account(NewAccount {
                        user_id: UserId::from_bytes(bytes),
                        username: Username::parse(&format!("member{n}")).unwrap(),
                        device_id: device,
                        signature_key: [bytes, bytes].concat(),
                        account_key: [bytes, bytes].concat(),
                        now: 1,
                    })
                    .await
                    .unwrap();
                device
            })
        });
        for creation in creations.collect::<Vec<_>>() {
            devices.push(creation.await.unwrap());
        }
    }
    let big = GroupId::from_bytes([0x77; 16]);
    group_of(&*store, big, &devices).await;
    let pair = GroupId::from_bytes([0x78; 16]);
    group_of(&*store, pair, &devices[..2]).await;

    let fan_out = {
        let store = store.clone();
        let sender = devices[0];
        tokio::spawn(async move {
            store
                .accept(message(sender, 1, big, 1, b"to ten thousand"))
                .await
                .unwrap()
        })
    };
    let started = std::time::Instant::now();
    let small = store
        .accept(message(devices[1], 2, pair, 1, b"meanwhile, one to one"))
        .await
        .unwrap();
    let small_latency = started.elapsed();
    let accepted = fan_out.await.unwrap();
    assert_eq!(accepted.deliveries.len(), MEMBERS as usize - 1);
    assert_eq!(small.deliveries.len(), 1);
    assert_eq!(store.queue_depth().await.unwrap(), MEMBERS as u64 - 1 + 1);
    let last = store
        .fetch_queue(devices[MEMBERS as usize - 1], 0, 10)
        .await
        .unwrap();
    assert_eq!(last.entries[0].payload, b"to ten thousand");
    assert!(
        small_latency < std::time::Duration::from_secs(2),
        "a 1:1 message waited {small_latency:?}"
    );
    small_latency
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_a_large_group_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap());
    let latency = large_group_fan_out(store.clone()).await;
    println!("1:1 latency during a 10,000-member fan-out (SQLite): {latency:?}");
    let conn = rusqlite::Connection::open(store.database_path()).unwrap();
    let payloads: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM payloads WHERE data = ?1",
            [b"to ten thousand".as_slice()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        payloads, 1,
        "the payload is stored once, not once per member"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_a_large_group_message_once() {
    let postgres = parley_testkit::TestPostgres::start();
    let store = Arc::new(PgStore::connect(&postgres.url()).await.unwrap());
    let latency = large_group_fan_out(store.clone()).await;
    println!("1:1 latency during a 10,000-member fan-out (PostgreSQL): {latency:?}");
    let pool = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    let payloads: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM payloads WHERE data = $1")
        .bind(b"to ten thousand".as_slice())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        payloads, 1,
        "the payload is stored once, not once per member"
    );
}
