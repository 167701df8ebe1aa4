//! The seed corpus: small valid inputs for every target, made with openmls as Parley's client
//! makes them, plus edge cases. `parley-fuzz seeds` writes them to `corpus/`; the checked-in
//! files are what CI runs (the keys in them are throwaway ones).

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use parley_mls::certificate::AccountKey;
use parley_mls::{certified_credential, franking, suite, DeviceIdentity, Roles};
use parley_protocol::{v1, DeviceId, Username};
use prost::Message as _;

/// The MLS group id of the seed group (the `public_state` target loads this id).
pub const GROUP_ID: [u8; 16] = [0x42; 16];

struct Member {
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    identity: DeviceIdentity,
}

fn member(name: &str, device: u8, ciphersuite: Ciphersuite) -> Result<Member> {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(ciphersuite.signature_algorithm())?;
    signer.store(provider.storage())?;
    let identity = DeviceIdentity::new(Username::parse(name)?, DeviceId::from_bytes([device; 16]));
    // Certified as a client's device is, so that the seeds reach the certificate checks.
    let account_key = AccountKey::from_secret_bytes(&[device; 32]);
    let certificate = account_key.certify(
        &identity.username,
        identity.device_id,
        &signer.to_public_vec(),
        1_700_000_000_000,
    );
    let credential = CredentialWithKey {
        credential: certified_credential(&account_key.public(), &certificate),
        signature_key: signer.to_public_vec().into(),
    };
    Ok(Member {
        provider,
        signer,
        credential,
        identity,
    })
}

fn key_package(m: &Member, ciphersuite: Ciphersuite, last_resort: bool) -> Result<KeyPackage> {
    let mut builder =
        KeyPackage::builder().leaf_node_capabilities(suite::leaf_capabilities(ciphersuite));
    if last_resort {
        builder = builder.mark_as_last_resort();
    }
    Ok(builder
        .build(ciphersuite, &m.provider, &m.signer, m.credential.clone())?
        .key_package()
        .clone())
}

/// MLS pieces of one small group, as bytes.
struct Mls {
    key_package: Vec<u8>,
    last_resort: Vec<u8>,
    group_info: Vec<u8>,
    ratchet_tree: Vec<u8>,
    public_state: Vec<u8>,
    commit: Vec<u8>,
    welcome: Vec<u8>,
    tree_after: Vec<u8>,
    application: Vec<u8>,
    payload: Vec<u8>,
    identity: Vec<u8>,
}

fn mls(ciphersuite: Ciphersuite) -> Result<Mls> {
    let alice = member("alice", 1, ciphersuite)?;
    let bob = member("bob", 2, ciphersuite)?;
    let server = SignatureKeyPair::new(SignatureScheme::ED25519)?;
    let external = ExternalSender::new(
        server.to_public_vec().into(),
        BasicCredential::new(b"parley-server".to_vec()).into(),
    );
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(ciphersuite)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(false)
        .capabilities(suite::leaf_capabilities(ciphersuite))
        .with_group_context_extensions(suite::group_context_extensions(
            &Roles::with_admin(alice.identity.username.clone()),
            Some(external),
        )?)
        .build();
    let mut group = MlsGroup::new_with_group_id(
        &alice.provider,
        &alice.signer,
        &config,
        GroupId::from_slice(&GROUP_ID),
        alice.credential.clone(),
    )?;
    let group_info = group
        .export_group_info(alice.provider.crypto(), &alice.signer, false)?
        .to_bytes()?;
    let ratchet_tree = group.export_ratchet_tree().tls_serialize_detached()?;

    // The server's view of it, as `create_group` stores it.
    let info = match MlsMessageIn::tls_deserialize_exact(group_info.as_slice())?.extract() {
        MlsMessageBodyIn::GroupInfo(info) => info,
        _ => bail!("no GroupInfo"),
    };
    let storage = openmls_memory_storage::MemoryStorage::default();
    let tree = RatchetTreeIn::tls_deserialize_exact(ratchet_tree.as_slice())?;
    PublicGroup::from_external(
        &openmls_rust_crypto::RustCrypto::default(),
        &storage,
        tree,
        info,
        ProposalStore::new(),
    )?;
    let public_state = parley_server::public_state::encode_storage(&storage);

    let bob_package = key_package(&bob, ciphersuite, false)?;
    let (commit, welcome, _) = group.add_members(
        &alice.provider,
        &alice.signer,
        std::slice::from_ref(&bob_package),
    )?;
    group.merge_pending_commit(&alice.provider)?;
    let tree_after = group.export_ratchet_tree().tls_serialize_detached()?;

    let salt = [7u8; franking::SALT_LEN];
    let payload = v1::AppPayload {
        salt: salt.to_vec(),
        sender_username: "alice".into(),
        sender_device: vec![1; 16],
        message_id: vec![9; 16],
        sent_at_ms: 1_700_000_000_000,
        body: Some(v1::app_payload::Body::Text(v1::TextBody {
            text: "hello".into(),
            ..Default::default()
        })),
    }
    .encode_to_vec();
    group.set_aad(
        v1::MessageAad {
            franking_tag: franking::franking_tag(&salt, &payload).to_vec(),
        }
        .encode_to_vec(),
    );
    let application = group
        .create_message(&alice.provider, &alice.signer, &payload)?
        .to_bytes()?;
    Ok(Mls {
        key_package: bob_package.tls_serialize_detached()?,
        last_resort: key_package(&bob, ciphersuite, true)?.tls_serialize_detached()?,
        group_info,
        ratchet_tree,
        public_state,
        commit: commit.to_bytes()?,
        welcome: welcome.to_bytes()?,
        tree_after,
        application,
        payload,
        identity: alice.identity.to_bytes(),
    })
}

fn two(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = (a.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

/// Seeds per target: file name → bytes.
pub fn generate() -> Result<BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>> {
    let mut out: BTreeMap<&'static str, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut put = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.entry(target)
            .or_default()
            .insert(name.to_string(), bytes);
    };
    // Two suites: the hybrid default (big) and the classic one (small, quick to mutate).
    let classic = mls(suite::CLASSIC_X25519)?;
    let hybrid = mls(suite::DEFAULT_CIPHERSUITE)?;

    for target in crate::targets::PROTO {
        put(target.name, "empty", Vec::new());
        // Edge cases every protobuf decoder meets: a truncated varint, a huge length, a
        // group wire type, field zero.
        put(target.name, "truncated-varint", vec![0x08, 0xff]);
        put(
            target.name,
            "huge-length",
            vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
        );
        put(target.name, "start-group", vec![0x0b, 0x0c]);
        put(target.name, "field-zero", vec![0x00, 0x01]);
    }
    let item = |kind: v1::ItemKind, payload: &[u8]| v1::QueueItem {
        seq: 7,
        kind: kind as i32,
        group_id: GROUP_ID.to_vec(),
        group_seq: 3,
        sender_device: vec![1; 16],
        sender_username: "alice".into(),
        message_id: vec![9; 16],
        accepted_at_ms: 1_700_000_000_000,
        payload: payload.to_vec(),
        franking: Some(v1::FrankingContext {
            key_id: 1,
            frank: vec![5; 32],
        }),
    };
    let submit = |m: &Mls, welcome: bool| v1::Submit {
        message_id: vec![9; 16],
        mls_message: if welcome {
            m.commit.clone()
        } else {
            m.application.clone()
        },
        welcome: welcome.then(|| m.welcome.clone()),
        expires_in_ms: 0,
    };
    let reported = v1::ReportedMessage {
        payload: classic.payload.clone(),
        sender_username: "alice".into(),
        sender_device: vec![1; 16],
        group_id: GROUP_ID.to_vec(),
        group_seq: 3,
        accepted_at_ms: 1_700_000_000_000,
        key_id: 1,
        frank: vec![5; 32],
    };
    let error = v1::ErrorBody {
        code: 3,
        message: "wrong epoch (current = 4)".into(),
        current_epoch: Some(4),
    };
    let accepted = v1::SubmitResponse {
        group_id: GROUP_ID.to_vec(),
        group_seq: 3,
        epoch: 1,
        accepted_at_ms: 1_700_000_000_000,
        duplicate: false,
    };
    let samples: Vec<(&'static str, Vec<u8>)> = vec![
        ("proto_error_body", error.encode_to_vec()),
        (
            "proto_register_request",
            v1::RegisterRequest {
                username: "alice".into(),
                signature_key: vec![3; 32],
                proof: vec![4; 64],
                device_id: vec![2; 16],
                account_key: vec![5; 32],
                certificate: vec![6; 130],
                restore: false,
                restore_secret: Vec::new(),
                backup_id: Vec::new(),
            }
            .encode_to_vec(),
        ),
        (
            "proto_register_response",
            v1::RegisterResponse {
                user_id: vec![1; 16],
                device_id: vec![2; 16],
            }
            .encode_to_vec(),
        ),
        (
            "proto_challenge_request",
            v1::ChallengeRequest {
                device_id: vec![2; 16],
            }
            .encode_to_vec(),
        ),
        (
            "proto_challenge_response",
            v1::ChallengeResponse {
                challenge: vec![6; 32],
            }
            .encode_to_vec(),
        ),
        (
            "proto_login_request",
            v1::LoginRequest {
                device_id: vec![2; 16],
                challenge: vec![6; 32],
                signature: vec![7; 64],
            }
            .encode_to_vec(),
        ),
        (
            "proto_login_response",
            v1::LoginResponse {
                token: "t0k3n".into(),
                expires_at_ms: 1_700_000_000_000,
            }
            .encode_to_vec(),
        ),
        (
            "proto_user_devices",
            v1::UserDevices {
                username: "bob".into(),
                user_id: vec![1; 16],
                devices: vec![v1::DeviceInfo {
                    device_id: vec![2; 16],
                    signature_key: vec![3; 32],
                }],
                account_key: vec![5; 32],
            }
            .encode_to_vec(),
        ),
        (
            "proto_device_info",
            v1::DeviceInfo {
                device_id: vec![2; 16],
                signature_key: vec![3; 32],
            }
            .encode_to_vec(),
        ),
        (
            "proto_upload_key_packages",
            v1::UploadKeyPackages {
                key_packages: vec![classic.key_package.clone(), classic.key_package.clone()],
                last_resort: Some(classic.last_resort.clone()),
            }
            .encode_to_vec(),
        ),
        (
            "proto_key_package_count",
            v1::KeyPackageCount {
                one_time_remaining: 99,
                has_last_resort: true,
                rotation_waiting: true,
            }
            .encode_to_vec(),
        ),
        (
            "proto_claim_key_packages",
            v1::ClaimKeyPackages {
                usernames: vec!["bob".into(), "carol".into(), "bob".into()],
            }
            .encode_to_vec(),
        ),
        (
            "proto_claimed_key_package",
            v1::ClaimedKeyPackage {
                username: "bob".into(),
                device_id: vec![2; 16],
                key_package: classic.key_package.clone(),
                last_resort: false,
            }
            .encode_to_vec(),
        ),
        (
            "proto_claim_response",
            v1::ClaimResponse {
                key_packages: vec![v1::ClaimedKeyPackage {
                    username: "bob".into(),
                    device_id: vec![2; 16],
                    key_package: classic.key_package.clone(),
                    last_resort: true,
                }],
            }
            .encode_to_vec(),
        ),
        (
            "proto_create_group",
            v1::CreateGroup {
                group_info: classic.group_info.clone(),
                ratchet_tree: classic.ratchet_tree.clone(),
            }
            .encode_to_vec(),
        ),
        (
            "proto_create_group_response",
            v1::CreateGroupResponse {
                group_id: GROUP_ID.to_vec(),
                epoch: 0,
            }
            .encode_to_vec(),
        ),
        ("proto_submit", submit(&classic, false).encode_to_vec()),
        ("proto_submit", submit(&classic, true).encode_to_vec()),
        ("proto_submit_response", accepted.encode_to_vec()),
        (
            "proto_franking_context",
            v1::FrankingContext {
                key_id: 1,
                frank: vec![5; 32],
            }
            .encode_to_vec(),
        ),
        (
            "proto_queue_item",
            item(v1::ItemKind::GroupMessage, &classic.application).encode_to_vec(),
        ),
        (
            "proto_welcome_bundle",
            v1::WelcomeBundle {
                welcome: classic.welcome.clone(),
                ratchet_tree: classic.tree_after.clone(),
            }
            .encode_to_vec(),
        ),
        (
            "proto_queue_batch",
            v1::QueueBatch {
                items: vec![
                    item(v1::ItemKind::GroupMessage, &classic.application),
                    item(v1::ItemKind::Welcome, &[1, 2, 3]),
                ],
                head: 9,
                expired_up_to: 2,
            }
            .encode_to_vec(),
        ),
        ("proto_ack", v1::Ack { up_to: 9 }.encode_to_vec()),
        (
            "proto_server_frame",
            v1::ServerFrame {
                queue_head: 9,
                items: vec![item(v1::ItemKind::GroupMessage, &classic.application)],
                results: vec![v1::LiveResult {
                    request_id: 1,
                    accepted: Some(accepted.clone()),
                    error: None,
                }],
                expired_up_to: 0,
                typing: vec![v1::Typing {
                    group_id: vec![7; 16],
                    epoch: 2,
                    sealed: vec![1; 40],
                    sender_username: "alice".into(),
                    sender_device: vec![3; 16],
                }],
            }
            .encode_to_vec(),
        ),
        (
            "proto_live_submit",
            v1::LiveSubmit {
                request_id: 1,
                submit: Some(submit(&classic, false)),
            }
            .encode_to_vec(),
        ),
        (
            "proto_start_push",
            v1::StartPush { after: 3 }.encode_to_vec(),
        ),
        (
            "proto_live_result",
            v1::LiveResult {
                request_id: 2,
                accepted: None,
                error: Some(error.clone()),
            }
            .encode_to_vec(),
        ),
        ("proto_reported_message", reported.encode_to_vec()),
        (
            "proto_report_request",
            v1::ReportRequest {
                message: Some(reported.clone()),
                reason: "spam".into(),
                context: vec![reported.clone()],
                versions: vec![reported.clone()],
                files: vec![v1::ReportedFile {
                    index: 0,
                    blob_id: vec![3; 16],
                }],
            }
            .encode_to_vec(),
        ),
        (
            "proto_report_response",
            v1::ReportResponse { report_id: 12 }.encode_to_vec(),
        ),
        (
            "proto_server_info",
            v1::ServerInfo {
                external_sender_key: vec![3; 32],
                external_sender_identity: b"parley-server".to_vec(),
            }
            .encode_to_vec(),
        ),
        ("proto_app_payload", classic.payload.clone()),
        (
            "proto_text_body",
            v1::TextBody {
                text: "hello ✓".into(),
                reply_to: Some(vec![9; 16]),
                attachments: vec![v1::Attachment {
                    name: "photo.jpg".into(),
                    content_type: "image/jpeg".into(),
                    size: 1000,
                    key: vec![2; 32],
                    chunk_bytes: 65536,
                    ciphertext_sha256: vec![3; 32],
                    plaintext_sha256: vec![4; 32],
                }],
            }
            .encode_to_vec(),
        ),
        (
            "proto_edit_body",
            v1::EditBody {
                target: vec![9; 16],
                text: "hello, edited".into(),
            }
            .encode_to_vec(),
        ),
        (
            "proto_delete_body",
            v1::DeleteBody {
                target: vec![9; 16],
            }
            .encode_to_vec(),
        ),
        (
            "proto_reaction_body",
            v1::ReactionBody {
                target: vec![9; 16],
                emoji: "👍".into(),
                remove: true,
            }
            .encode_to_vec(),
        ),
        (
            "proto_group_meta",
            v1::GroupMeta {
                kind: 1,
                name: "team".into(),
            }
            .encode_to_vec(),
        ),
        (
            "proto_message_aad",
            v1::MessageAad {
                franking_tag: vec![8; 32],
            }
            .encode_to_vec(),
        ),
        (
            "proto_group_roles",
            v1::GroupRoles {
                admins: vec!["alice".into()],
            }
            .encode_to_vec(),
        ),
        (
            "proto_group_info_upload",
            v1::GroupInfoUpload {
                epoch: 3,
                group_info: vec![0, 1, 0, 4, 1, 2, 3],
            }
            .encode_to_vec(),
        ),
        (
            "proto_group_info_bundle",
            v1::GroupInfoBundle {
                epoch: 3,
                group_info: vec![0, 1, 0, 4],
                ratchet_tree: vec![1, 2, 3],
                group_epoch: 4,
            }
            .encode_to_vec(),
        ),
        (
            "proto_register_backup",
            v1::RegisterBackup {
                blob_id: vec![1; 16],
                backup_id: vec![2; 32],
                restore_verifier: vec![3; 32],
            }
            .encode_to_vec(),
        ),
        (
            "proto_backup_info",
            v1::BackupInfo {
                blob_id: vec![1; 16],
                chunks: 2,
                bytes: 1_048_576,
                created_at_ms: 1_700_000_000_000,
            }
            .encode_to_vec(),
        ),
        (
            "proto_backup_list",
            v1::BackupList {
                backups: vec![v1::BackupInfo {
                    blob_id: vec![1; 16],
                    chunks: 1,
                    bytes: 10,
                    created_at_ms: 5,
                }],
            }
            .encode_to_vec(),
        ),
        (
            "proto_account_backup",
            v1::AccountBackup {
                username: "alice".into(),
                account_secret: vec![7; 32],
                history: Some(v1::HistoryArchive {
                    chats: vec![v1::ArchivedChat {
                        group_id: vec![8; 16],
                        kind: 2,
                        name: "team".into(),
                        ..Default::default()
                    }],
                    backup_id: vec![2; 32],
                    backup_key: vec![4; 32],
                    restore_verifier: vec![3; 32],
                    backup_every_minutes: 60,
                    ..Default::default()
                }),
                created_at_ms: 5,
                every_minutes: 60,
            }
            .encode_to_vec(),
        ),
    ];
    bounded_seeds(&samples, &mut put);
    for (i, (target, bytes)) in samples.into_iter().enumerate() {
        put(target, &format!("sample-{i}"), bytes);
    }
    for frame in [
        v1::client_frame::Body::StartPush(v1::StartPush { after: 3 }),
        v1::client_frame::Body::StartPush(v1::StartPush { after: u64::MAX }),
        v1::client_frame::Body::Ack(v1::Ack { up_to: 9 }),
        v1::client_frame::Body::Submit(v1::LiveSubmit {
            request_id: 1,
            submit: Some(submit(&classic, false)),
        }),
        v1::client_frame::Body::Submit(v1::LiveSubmit {
            request_id: 2,
            submit: Some(submit(&classic, true)),
        }),
        v1::client_frame::Body::Submit(v1::LiveSubmit {
            request_id: 3,
            submit: None,
        }),
        v1::client_frame::Body::Typing(v1::Typing {
            group_id: vec![7; 16],
            epoch: 2,
            sealed: vec![1; 40],
            ..Default::default()
        }),
        v1::client_frame::Body::Typing(v1::Typing {
            group_id: vec![7; 16],
            sealed: vec![1; parley_protocol::limits::MAX_TYPING_SEALED_BYTES + 1],
            ..Default::default()
        }),
    ]
    .into_iter()
    .enumerate()
    {
        let (i, frame) = frame;
        let bytes = v1::ClientFrame { body: Some(frame) }.encode_to_vec();
        put("proto_client_frame", &format!("frame-{i}"), bytes.clone());
        put("live_frame", &format!("frame-{i}"), bytes);
    }
    put("live_frame", "empty", Vec::new());

    for (suite, m) in [("classic", &classic), ("hybrid", &hybrid)] {
        put(
            "mls_submission",
            &format!("{suite}-application"),
            m.application.clone(),
        );
        put(
            "mls_submission",
            &format!("{suite}-commit"),
            m.commit.clone(),
        );
        put(
            "mls_submission",
            &format!("{suite}-welcome"),
            m.welcome.clone(),
        );
        put(
            "mls_submission",
            &format!("{suite}-group-info"),
            m.group_info.clone(),
        );
        put(
            "create_group",
            &format!("{suite}-group"),
            two(&m.group_info, &m.ratchet_tree),
        );
        put(
            "key_package",
            &format!("{suite}-one-time"),
            m.key_package.clone(),
        );
        put(
            "key_package",
            &format!("{suite}-last-resort"),
            m.last_resort.clone(),
        );
        put(
            "public_state",
            &format!("{suite}-state"),
            m.public_state.clone(),
        );
        put(
            "welcome_bundle",
            &format!("{suite}-bundle"),
            v1::WelcomeBundle {
                welcome: m.welcome.clone(),
                ratchet_tree: m.tree_after.clone(),
            }
            .encode_to_vec(),
        );
        put(
            "ids_and_names",
            &format!("{suite}-identity"),
            m.identity.clone(),
        );
    }
    put("mls_submission", "empty", Vec::new());
    put("create_group", "empty", Vec::new());
    put("key_package", "empty", Vec::new());
    put("public_state", "empty", Vec::new());
    put("public_state", "truncated", vec![0, 0, 0, 9, 1]);
    put("public_state", "huge-length", vec![0xff, 0xff, 0xff, 0xff]);
    put("welcome_bundle", "empty", Vec::new());

    for (i, text) in [
        "alice",
        "a",
        "Alice",
        "alice_bob-1",
        "team chat",
        "#team",
        "alice:0101010101010101010101010101010",
        "alice:01010101010101010101010101010101",
        "ünïcödé",
        "",
    ]
    .iter()
    .enumerate()
    {
        put(
            "ids_and_names",
            &format!("text-{i}"),
            text.as_bytes().to_vec(),
        );
    }
    put("ids_and_names", "id", vec![1; 16]);
    put("ids_and_names", "device-certificate", {
        let account = parley_mls::certificate::AccountKey::from_secret_bytes(&[3; 32]);
        let name = parley_protocol::Username::parse("alice").unwrap();
        account
            .certify(
                &name,
                parley_protocol::DeviceId::from_bytes([1; 16]),
                &[7; 32],
                42,
            )
            .encode()
    });

    put("ids_and_names", "device-revocation", {
        let account = parley_mls::certificate::AccountKey::from_secret_bytes(&[3; 32]);
        let name = parley_protocol::Username::parse("alice").unwrap();
        account
            .revoke(&name, parley_protocol::DeviceId::from_bytes([2; 16]), 43)
            .encode()
    });
    put("ids_and_names", "account-rotation", {
        let old = parley_mls::certificate::AccountKey::from_secret_bytes(&[3; 32]);
        let new = parley_mls::certificate::AccountKey::from_secret_bytes(&[4; 32]);
        let name = parley_protocol::Username::parse("alice").unwrap();
        old.rotate_to(&new, &name, 44).encode()
    });
    put(
        "ids_and_names",
        "link-code",
        parley_client::LinkCode {
            link_id: [5; 8],
            secret: [6; 16],
        }
        .encode()
        .into_bytes(),
    );

    let message = |m: &Mls| {
        serde_json::json!({
            "id": hex::encode([9u8; 16]),
            "text": "hello",
            "payload": hex::encode(&m.payload),
            "sender": "alice",
            "sender_device": hex::encode([1u8; 16]),
            "group_id": hex::encode(GROUP_ID),
            "group_seq": 3,
            "accepted_at_ms": 1_700_000_000_000i64,
            "key_id": 1,
            "frank": hex::encode([5u8; 32]),
        })
    };
    let bundle = serde_json::json!({
        "version": 1,
        "reason": "spam",
        "message": message(&classic),
        "context": [message(&classic)],
    });
    put(
        "evidence_bundle",
        "bundle",
        serde_json::to_vec_pretty(&bundle)?,
    );
    let mut no_context = bundle.clone();
    no_context.as_object_mut().map(|o| o.remove("context"));
    put(
        "evidence_bundle",
        "no-context",
        serde_json::to_vec(&no_context)?,
    );
    let mut odd_hex = bundle.clone();
    odd_hex["message"]["frank"] = "abc".into();
    put("evidence_bundle", "odd-hex", serde_json::to_vec(&odd_hex)?);
    put("evidence_bundle", "empty-object", b"{}".to_vec());

    put(
        "config_file",
        "sample",
        include_bytes!("../../../docs/parley.toml").to_vec(),
    );
    put(
        "config_file",
        "all-fields",
        br#"data = "/var/lib/parley"
listen = "0.0.0.0:8443"
metrics_listen = "127.0.0.1:9090"
database_url = "postgres://parley@localhost/parley"
nats = ["nats://127.0.0.1:4222"]
tls_cert = "/etc/parley/cert.pem"
tls_key = "/etc/parley/key.pem"
allow_plaintext_public = false
max_group_members = 10000
max_frame_bytes = 8388608
retention_days = 30
rate_per_second = 20
auth_rate_per_second = 5
claim_rate_per_second = 1
session_ttl_seconds = 2592000
session_check_seconds = 1
reserved_names = ["admin", "support"]
"#
        .to_vec(),
    );
    put(
        "config_file",
        "unknown-key",
        b"lisen = \"127.0.0.1:1\"\n".to_vec(),
    );
    put("config_file", "empty", Vec::new());

    let signer = SignatureKeyPair::new(SignatureScheme::ED25519)?;
    put("server_key_file", "key", serde_json::to_vec(&signer)?);
    put("server_key_file", "empty", Vec::new());
    Ok(out)
}

/// Seeds of `decode_bounded`: each bounded message's samples under a field limit that admits
/// them and one that does not, bodies of empty repeated entries at and past their route's
/// limit, a body past the length limit, and the protobuf edge cases.
fn bounded_seeds(
    samples: &[(&'static str, Vec<u8>)],
    put: &mut impl FnMut(&'static str, &str, Vec<u8>),
) {
    use crate::targets::{bounded_selector, BOUNDED, BOUNDED_FIELDS};
    let limit = |fields: usize| {
        BOUNDED_FIELDS
            .iter()
            .position(|&f| f == fields)
            .expect("a listed field limit")
    };
    let kind = |name: &str| {
        BOUNDED
            .iter()
            .position(|&k| k == name)
            .expect("a bounded type")
    };
    let mut seed = |name: String, kind: usize, fields: usize, bytes: usize, body: &[u8]| {
        let mut input = vec![bounded_selector(kind, limit(fields), bytes)];
        input.extend_from_slice(body);
        put("decode_bounded", &name, input);
    };
    for (i, (target, body)) in samples.iter().enumerate() {
        let Some(k) = BOUNDED.iter().position(|b| b == target) else {
            continue;
        };
        seed(format!("{target}-{i}-within"), k, 64, 0, body);
        seed(format!("{target}-{i}-over-fields"), k, 1, 0, body);
        seed(format!("{target}-{i}-over-bytes"), k, 64, 1, body);
    }
    let claim = kind("proto_claim_key_packages");
    let empty_usernames = |n: usize| [0x0a, 0x00].repeat(n);
    seed(
        "claim-1000-empty".into(),
        claim,
        1000,
        0,
        &empty_usernames(1000),
    );
    seed(
        "claim-1001-empty".into(),
        claim,
        1000,
        0,
        &empty_usernames(1001),
    );
    let report = kind("proto_report_request");
    let empty_context = |n: usize| [0x1a, 0x00].repeat(n);
    seed("report-24-empty".into(), report, 24, 0, &empty_context(24));
    seed("report-25-empty".into(), report, 24, 0, &empty_context(25));
    let upload = kind("proto_upload_key_packages");
    seed(
        "upload-202-empty".into(),
        upload,
        201,
        0,
        &[0x0a, 0x00].repeat(202),
    );
    for (k, name) in BOUNDED.iter().enumerate() {
        for (edge, body) in [
            ("empty", &[][..]),
            ("truncated-varint", &[0x08, 0xff]),
            ("huge-length", &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            ("start-group", &[0x0b, 0x0c]),
            ("field-zero", &[0x00, 0x01]),
        ] {
            seed(format!("{name}-{edge}"), k, 2, 0, body);
        }
    }
}

/// Writes the seeds to `corpus/<target>/<name>`, replacing what was there: of the targets
/// named in `only`, or of all when it is empty. (The MLS seeds come out different on every
/// run, fresh keys: naming targets leaves the others' files as they are.)
pub fn write(only: &[String]) -> Result<usize> {
    let seeds = generate()?;
    if let Some(unknown) = only.iter().find(|t| !seeds.contains_key(t.as_str())) {
        bail!("no seeds for target {unknown}");
    }
    let mut count = 0;
    for (target, files) in seeds {
        if !only.is_empty() && !only.iter().any(|t| t == target) {
            continue;
        }
        let dir = crate::corpus_dir(target);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in files {
            std::fs::write(dir.join(name), bytes)?;
            count += 1;
        }
    }
    Ok(count)
}
