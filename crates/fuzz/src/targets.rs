//! The targets. Each calls the same parsing functions the server or client calls on untrusted
//! bytes, then what those callers do next with the value, and checks that a decoded value
//! encodes back to itself. A target may only return (value or error) or panic (a finding).

use std::fmt::Debug;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    ContentType, GroupId as MlsGroupId, KeyPackageIn, MlsMessageBodyIn, ProposalStore,
    ProtocolMessage, ProtocolVersion, PublicGroup, RatchetTreeIn,
};
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;
use parley_mls::{DeviceIdentity, Roles};
use parley_protocol::{limits, v1, DeviceId, GroupId, MessageId, UserId, Username};
use prost::Message;

use crate::Target;

const PROTO_MAX: usize = 64 * 1024;
const MLS_MAX: usize = 64 * 1024;

/// Decodes `M` as both sides do (bounded by the frame limit) and checks that a decoded value
/// survives encoding and decoding again unchanged.
fn proto<M: Message + Default + PartialEq + Debug>(bytes: &[u8]) -> Option<M> {
    match parley_protocol::decode::<M>(bytes, limits::MAX_FRAME_BYTES) {
        Ok(message) => {
            let again = M::decode(message.encode_to_vec().as_slice())
                .expect("a decoded message encodes to something that decodes");
            assert_eq!(again, message, "re-encoding changed the message");
            Some(message)
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            None
        }
    }
}

macro_rules! proto_targets {
    ($($name:ident => $ty:ty, $about:literal;)*) => {
        $(
            fn $name(bytes: &[u8]) {
                proto::<$ty>(bytes);
            }
        )*
        /// One target per protobuf message of `parley_protocol::v1`.
        pub const PROTO: &[Target] = &[
            $(Target {
                name: stringify!($name),
                about: $about,
                max_len: PROTO_MAX,
                run: $name,
            },)*
        ];
    };
}

proto_targets! {
    proto_error_body => v1::ErrorBody, "client: every error response";
    proto_register_request => v1::RegisterRequest, "server: POST /v1/register";
    proto_register_response => v1::RegisterResponse, "client: register answer";
    proto_challenge_request => v1::ChallengeRequest, "server: POST /v1/challenge";
    proto_challenge_response => v1::ChallengeResponse, "client: challenge answer";
    proto_login_request => v1::LoginRequest, "server: POST /v1/login";
    proto_login_response => v1::LoginResponse, "client: login answer";
    proto_user_devices => v1::UserDevices, "client: device list";
    proto_device_info => v1::DeviceInfo, "client: one device";
    proto_upload_key_packages => v1::UploadKeyPackages, "server: KeyPackage upload";
    proto_key_package_count => v1::KeyPackageCount, "client: KeyPackage count";
    proto_claim_key_packages => v1::ClaimKeyPackages, "server: KeyPackage claim";
    proto_claimed_key_package => v1::ClaimedKeyPackage, "client: one claimed package";
    proto_claim_response => v1::ClaimResponse, "client: claim answer";
    proto_create_group => v1::CreateGroup, "server: POST /v1/groups";
    proto_create_group_response => v1::CreateGroupResponse, "client: group created";
    proto_submit => v1::Submit, "server: POST /v1/messages";
    proto_submit_response => v1::SubmitResponse, "client: submission answer";
    proto_franking_context => v1::FrankingContext, "client: a queue item's frank";
    proto_queue_item => v1::QueueItem, "client: one queue item";
    proto_welcome_bundle => v1::WelcomeBundle, "client: a Welcome queue item's payload";
    proto_queue_batch => v1::QueueBatch, "client: GET /v1/queue page";
    proto_ack => v1::Ack, "server: POST /v1/ack";
    proto_server_frame => v1::ServerFrame, "client: live WebSocket frame";
    proto_client_frame => v1::ClientFrame, "server: live WebSocket frame";
    proto_live_submit => v1::LiveSubmit, "server: live submission";
    proto_start_push => v1::StartPush, "server: live push request";
    proto_live_result => v1::LiveResult, "client: live submission answer";
    proto_reported_message => v1::ReportedMessage, "server: one reported message";
    proto_report_request => v1::ReportRequest, "server: POST /v1/reports";
    proto_report_response => v1::ReportResponse, "client: report answer";
    proto_server_info => v1::ServerInfo, "client: GET /v1/info";
    proto_app_payload => v1::AppPayload, "client: decrypted payload; server: reported payload";
    proto_text_body => v1::TextBody, "client: a text";
    proto_group_meta => v1::GroupMeta, "client: group name and kind";
    proto_message_aad => v1::MessageAad, "server and client: authenticated data";
    proto_group_roles => v1::GroupRoles, "client and server: roles extension";
    proto_group_info_upload => v1::GroupInfoUpload, "server: PUT /v1/groups/{id}/group-info";
    proto_group_info_bundle => v1::GroupInfoBundle, "client: a group's state to rejoin from";
    proto_register_backup => v1::RegisterBackup, "server: POST /v1/backups";
    proto_backup_info => v1::BackupInfo, "client: a backup to restore";
    proto_backup_list => v1::BackupList, "client: GET /v1/backups";
    proto_account_backup => v1::AccountBackup, "client: a decrypted backup";
}

/// The messages the server decodes with `decode_bounded` (`http.rs`), named by their protobuf
/// target. The first byte of a `decode_bounded` input picks one, a field limit and a length
/// limit ([`bounded_selector`]).
pub const BOUNDED: [&str; 11] = [
    "proto_register_request",
    "proto_challenge_request",
    "proto_login_request",
    "proto_upload_key_packages",
    "proto_claim_key_packages",
    "proto_create_group",
    "proto_submit",
    "proto_ack",
    "proto_report_request",
    "proto_group_info_upload",
    "proto_register_backup",
];
/// Field limits: small ones, where the count decides, and those `http.rs` uses.
pub const BOUNDED_FIELDS: [usize; 7] = [0, 1, 2, 24, 64, 201, 1000];
/// Length limits: the frame limit, and one that short bodies exceed.
pub const BOUNDED_BYTES: [usize; 2] = [limits::MAX_FRAME_BYTES, 64];

/// The first byte of a `decode_bounded` input for `BOUNDED[kind]`, `BOUNDED_FIELDS[fields]`
/// and `BOUNDED_BYTES[bytes]`.
pub fn bounded_selector(kind: usize, fields: usize, bytes: usize) -> u8 {
    let (k, f) = (BOUNDED.len(), BOUNDED_FIELDS.len());
    assert!(kind < k && fields < f && bytes < BOUNDED_BYTES.len());
    u8::try_from(kind + k * (fields + f * bytes)).expect("a selector fits a byte")
}

/// `parley_protocol::decode_bounded`, the decoder of every API body: one message type, field
/// limit and length limit by the first byte, then the body. It must refuse a body over the
/// length limit, or of more top-level fields than the limit as prost reads them (what it
/// would build in memory), or with a group (not proto3; prost would skip one of an unknown
/// field and decode on), and otherwise agree with the unbounded decoder.
fn decode_bounded(bytes: &[u8]) {
    let Some((&selector, body)) = bytes.split_first() else {
        return;
    };
    let selector = usize::from(selector);
    let rest = selector / BOUNDED.len();
    let fields = BOUNDED_FIELDS[rest % BOUNDED_FIELDS.len()];
    let max_len = BOUNDED_BYTES[(rest / BOUNDED_FIELDS.len()) % BOUNDED_BYTES.len()];
    match BOUNDED[selector % BOUNDED.len()] {
        "proto_register_request" => bounded::<v1::RegisterRequest>(body, max_len, fields),
        "proto_challenge_request" => bounded::<v1::ChallengeRequest>(body, max_len, fields),
        "proto_login_request" => bounded::<v1::LoginRequest>(body, max_len, fields),
        "proto_upload_key_packages" => bounded::<v1::UploadKeyPackages>(body, max_len, fields),
        "proto_claim_key_packages" => bounded::<v1::ClaimKeyPackages>(body, max_len, fields),
        "proto_create_group" => bounded::<v1::CreateGroup>(body, max_len, fields),
        "proto_submit" => bounded::<v1::Submit>(body, max_len, fields),
        "proto_ack" => bounded::<v1::Ack>(body, max_len, fields),
        "proto_report_request" => bounded::<v1::ReportRequest>(body, max_len, fields),
        "proto_group_info_upload" => bounded::<v1::GroupInfoUpload>(body, max_len, fields),
        "proto_register_backup" => bounded::<v1::RegisterBackup>(body, max_len, fields),
        other => unreachable!("no decoder for {other}"),
    }
}

fn bounded<M: Message + Default + PartialEq + Debug>(body: &[u8], max_len: usize, fields: usize) {
    use parley_protocol::ErrorCode;
    let outcome = parley_protocol::decode_bounded::<M>(body, max_len, fields);
    let unbounded = parley_protocol::decode::<M>(body, max_len);
    let read = prost_fields(body);
    match &outcome {
        Ok(message) => {
            let read = read.expect("a decoded body has fields prost can read");
            assert!(!read.group, "a body with a group passed");
            let count = read.count;
            assert!(count <= fields, "{count} fields passed a limit of {fields}");
            assert_eq!(
                unbounded.as_ref().ok(),
                Some(message),
                "bounded and unbounded differ"
            );
        }
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message");
            if body.len() > max_len {
                assert_eq!(e.code, ErrorCode::TooLarge, "{}", e.message);
            } else if read.is_some_and(|read| read.count <= fields && !read.group) {
                // Within both limits it refuses only what the decoder refuses.
                assert!(unbounded.is_err(), "refused a body within the limits: {e}");
                assert_ne!(e.code, ErrorCode::TooLarge, "{}", e.message);
            }
        }
    }
}

/// A body's top-level fields as prost reads them.
#[derive(Clone, Copy)]
struct Read {
    /// A group, with all it holds, is one field.
    count: usize,
    /// One of them is a group.
    group: bool,
}

/// Top-level fields as prost reads them, or `None` where prost cannot read them. An oracle
/// independent of the counter under test: prost's own field skipping (`prost::encoding` is
/// what prost's generated code calls).
fn prost_fields(mut body: &[u8]) -> Option<Read> {
    use prost::encoding::{decode_key, skip_field, DecodeContext, WireType};
    let mut read = Read {
        count: 0,
        group: false,
    };
    while !body.is_empty() {
        let (tag, wire_type) = decode_key(&mut body).ok()?;
        skip_field(wire_type, tag, &mut body, DecodeContext::default()).ok()?;
        read.count += 1;
        read.group |= wire_type == WireType::StartGroup;
    }
    Some(read)
}

/// What the Delivery Service does with a submission's MLS message before it needs the group
/// (`delivery::submit`): parse, classify, group id and epoch; for an application message its
/// content type, AAD bound and franking tag. The Welcome beside a commit must parse as one.
fn mls_submission(bytes: &[u8]) {
    submission_checks(bytes);
    if let Ok(message) = parley_server::delivery::parse_mls(bytes) {
        let _is_welcome = matches!(message.extract(), MlsMessageBodyIn::Welcome(_));
    }
}

fn submission_checks(bytes: &[u8]) -> Option<()> {
    if bytes.len() > limits::MAX_MLS_MESSAGE_BYTES {
        return None;
    }
    let message = parley_server::delivery::parse_mls(bytes)
        .ok()?
        .try_into_protocol_message()
        .ok()?;
    let _group = GroupId::from_slice(message.group_id().as_slice()).ok()?;
    let _epoch = message.epoch().as_u64();
    match &message {
        ProtocolMessage::PrivateMessage(private) => {
            if private.content_type() != ContentType::Application
                || private.aad().len() > limits::MAX_AAD_BYTES
            {
                return None;
            }
            let _tag = v1::MessageAad::decode(private.aad())
                .ok()
                .map(|aad| aad.franking_tag)
                .filter(|tag| tag.len() == parley_mls::franking::TAG_LEN)?;
        }
        ProtocolMessage::PublicMessage(public) => {
            let _ = public.content_type();
        }
    }
    Some(())
}

/// A new group (`delivery::create_group`): the input is a big-endian u32 length, a GroupInfo
/// message of that length, then the ratchet tree. Parsed, then verified with openmls'
/// `PublicGroup::from_external` as the server does, members' credentials and roles read.
fn create_group(bytes: &[u8]) {
    let Some((info, tree)) = split_two(bytes) else {
        return;
    };
    let Ok(message) = parley_server::delivery::parse_mls(info) else {
        return;
    };
    let MlsMessageBodyIn::GroupInfo(info) = message.extract() else {
        return;
    };
    let Ok(tree) = RatchetTreeIn::tls_deserialize_exact(tree) else {
        return;
    };
    let storage = MemoryStorage::default();
    let Ok((group, _)) = PublicGroup::from_external(
        &RustCrypto::default(),
        &storage,
        tree,
        info,
        ProposalStore::new(),
    ) else {
        return;
    };
    for member in group.members() {
        let _ = DeviceIdentity::from_credential(&member.credential);
    }
    let _ = Roles::from_group_context(group.group_context());
    // The state the server stores loads back.
    let blob = parley_server::public_state::encode_storage(&storage);
    parley_server::public_state::PublicGroupState::load(group.group_id(), &blob)
        .expect("a state the server wrote loads again");
}

/// A length-prefixed first part and the rest.
pub fn split_two(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    (rest.len() >= len).then(|| rest.split_at(len))
}

/// A KeyPackage upload (`keypackages::validate`): parse, verify, read the identity, suite.
fn key_package(bytes: &[u8]) {
    if bytes.len() > limits::MAX_KEY_PACKAGE_BYTES {
        return;
    }
    let Ok(parsed) = KeyPackageIn::tls_deserialize_exact(bytes) else {
        return;
    };
    let Ok(package) = parsed.validate(&RustCrypto::default(), ProtocolVersion::Mls10) else {
        return;
    };
    let _ = DeviceIdentity::from_credential(package.leaf_node().credential());
    let _ = package.last_resort();
    let _ = package.ciphersuite();
    // What the server stores and hands out re-encodes.
    package
        .tls_serialize_detached()
        .expect("a validated KeyPackage serializes");
}

/// A group's stored public state (disk, or a PostgreSQL row): the blob layout, then openmls
/// loading a `PublicGroup` from it, for the id the seeds use and for the id in the blob.
fn public_state(bytes: &[u8]) {
    use parley_server::public_state::{decode_storage, encode_storage, PublicGroupState};
    let Ok(storage) = decode_storage(bytes) else {
        return;
    };
    let again = encode_storage(&storage);
    assert_eq!(
        decode_storage(&again).map(|s| encode_storage(&s)).ok(),
        Some(again.clone()),
        "a decoded state re-encodes stably"
    );
    let id = MlsGroupId::from_slice(&crate::seeds::GROUP_ID);
    if let Ok(state) = PublicGroupState::load(&id, bytes) {
        let _ = state.group.members().count();
        let _ = state.encode();
    }
}

/// A live WebSocket frame as the session handles it: `live::dispatch`, the code `live.rs` runs,
/// decodes it under the frame limit and decides, from a fresh connection and from a busy one;
/// the store's answer to a cursor beyond the head is tried below, at and above the cursor, and
/// missing. A submission then goes through what `delivery::submit` checks before the store.
fn live_frame(bytes: &[u8]) {
    use parley_server::live::dispatch::{Action, Check, FrameState, Push};
    use v1::client_frame::Body;
    const HEAD: u64 = 1_000;
    let body = parley_protocol::decode::<v1::ClientFrame>(bytes, limits::MAX_FRAME_BYTES)
        .ok()
        .and_then(|frame| frame.body);
    let busy = FrameState {
        push: Push::On { sent: 10 },
        acking: true,
        pending_ack: Some(7),
        in_flight: 3,
    };
    for before in [FrameState::default(), busy] {
        let mut state = before.clone();
        let Ok(step) = state.on_frame(bytes, limits::MAX_FRAME_BYTES, HEAD) else {
            assert!(
                match &body {
                    None => true,
                    Some(Body::Typing(typing)) => !typing_in_bounds(typing),
                    Some(_) => false,
                },
                "a frame with a body ended the connection"
            );
            assert_eq!(
                state, before,
                "a frame that ends the connection changed its state"
            );
            continue;
        };
        let body = body.clone().expect("a dispatched frame has a body");
        assert_eq!(
            step.check,
            if matches!(body, Body::Submit(_)) {
                Check::Now
            } else {
                Check::Recent
            },
            "only a submission checks the session at once"
        );
        match (body, step.action) {
            (Body::StartPush(start), Action::Done) => {
                assert!(start.after <= HEAD);
                assert_eq!(state.push, Push::On { sent: start.after });
            }
            (Body::StartPush(start), Action::CheckHead { after }) => {
                assert!(
                    after == start.after && after > HEAD,
                    "asked the store for {after}"
                );
                assert_eq!(state, before, "changed before the store answered");
                confirm_push(&state, after, HEAD);
            }
            (Body::Ack(ack), Action::Done) => {
                assert!(before.acking, "an ack folded while none was running");
                assert_eq!(state.pending_ack, before.pending_ack.max(Some(ack.up_to)));
            }
            (Body::Ack(ack), Action::Ack(up_to)) => {
                assert!(!before.acking && state.acking && up_to == ack.up_to);
            }
            (Body::Submit(live), Action::Submit { request_id, submit }) => {
                assert_eq!(request_id, live.request_id);
                assert_eq!(state.in_flight, before.in_flight + 1);
                match submit {
                    Ok(submit) => {
                        assert_eq!(Some(&submit), live.submit.as_ref());
                        live_submission(&submit);
                    }
                    Err(e) => assert!(live.submit.is_none(), "refused a body: {e:?}"),
                }
            }
            (Body::Typing(typing), Action::Typing(forwarded)) => {
                assert!(typing_in_bounds(&forwarded) && forwarded == typing);
                assert_eq!(state, before, "a typing indicator changes nothing");
            }
            (body, action) => panic!("{body:?} dispatched as {action:?}"),
        }
        // Without the store's word no cursor lies past the head known: no item is skipped.
        if let Push::On { sent } = state.push {
            assert!(sent <= HEAD, "pushing after {sent}, head {HEAD}");
        }
        // The ack written next is the highest folded one.
        let mut finished = state.clone();
        assert_eq!(finished.ack_finished(), state.pending_ack);
        assert_eq!(finished.acking, state.pending_ack.is_some());
    }
}

/// The store's answers to a push cursor beyond the connection's head: a cursor is accepted
/// only up to the store's head, refused beyond it as `GET /v1/queue` refuses it, and without
/// the store's word pushing starts no later than the head known.
fn confirm_push(state: &parley_server::live::dispatch::FrameState, after: u64, head: u64) {
    use parley_server::live::dispatch::Push;
    for stored in [
        Some(head),
        Some(after - 1),
        Some(after),
        Some(u64::MAX),
        None,
    ] {
        let mut confirmed = state.clone();
        match (confirmed.confirm_push(after, head, stored), stored) {
            (Ok(()), Some(stored)) => {
                assert!(after <= stored);
                assert_eq!(confirmed.push, Push::On { sent: after });
            }
            (Ok(()), None) => assert_eq!(confirmed.push, Push::On { sent: head }),
            (Err(e), Some(stored)) => {
                assert!(after > stored, "refused {after} under head {stored}");
                assert_eq!(e.code(), parley_protocol::ErrorCode::Malformed);
                let wanted = format!("cursor {after} is beyond the queue head {stored}");
                assert!(e.0.message.starts_with(&wanted), "{}", e.0.message);
                assert_eq!(&confirmed, state, "a refusal changed the state");
            }
            (Err(e), None) => panic!("refused without the store's word: {e:?}"),
        }
    }
}

/// What `delivery::submit` checks of a submission before it needs the store.
fn live_submission(submit: &v1::Submit) {
    if MessageId::from_slice(&submit.message_id).is_err()
        || submit
            .welcome
            .as_ref()
            .is_some_and(|w| w.len() > limits::MAX_WELCOME_BYTES)
    {
        return;
    }
    submission_checks(&submit.mls_message);
    if let Some(welcome) = &submit.welcome {
        if let Ok(message) = parley_server::delivery::parse_mls(welcome) {
            let _ = message.extract();
        }
    }
}

/// A Welcome queue item as the client opens it (`incoming.rs`): the bundle, the Welcome and
/// the ratchet tree the server attached.
fn welcome_bundle(bytes: &[u8]) {
    let Ok(bundle) = v1::WelcomeBundle::decode(bytes) else {
        return;
    };
    if let Ok(message) = parley_server::delivery::parse_mls(&bundle.welcome) {
        let _ = message.extract();
    }
    let _ = RatchetTreeIn::tls_deserialize_exact(bundle.ratchet_tree.as_slice());
}

/// Ids and names as the server and client parse them from the wire and from MLS credentials
/// (`username:device-hex`).
fn ids_and_names(bytes: &[u8]) {
    let _ = UserId::from_slice(bytes);
    let _ = DeviceId::from_slice(bytes);
    let _ = GroupId::from_slice(bytes);
    let _ = MessageId::from_slice(bytes);
    if let Ok(certificate) = parley_mls::certificate::DeviceCertificate::decode(bytes) {
        assert_eq!(
            certificate.encode(),
            bytes,
            "a certificate re-encodes to its bytes"
        );
    }
    if let Ok(revocation) = parley_mls::revocation::DeviceRevocation::decode(bytes) {
        assert_eq!(
            revocation.encode(),
            bytes,
            "a revocation re-encodes to its bytes"
        );
    }
    if let Ok(rotation) = parley_mls::rotation::AccountRotation::decode(bytes) {
        assert_eq!(
            rotation.encode(),
            bytes,
            "a rotation re-encodes to its bytes"
        );
        let _ = rotation.verify();
    }
    if let Ok(rotations) = parley_mls::rotations_in_aad(bytes) {
        assert!(rotations.len() <= parley_mls::rotation::MAX_CHAIN);
    }
    if let Ok(identity) = DeviceIdentity::parse(bytes) {
        assert_eq!(
            DeviceIdentity::parse(&identity.to_bytes()).ok(),
            Some(identity),
            "an identity re-encodes to itself"
        );
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        if let Ok(name) = Username::parse(text) {
            assert_eq!(Username::parse(name.as_str()).ok(), Some(name));
        }
        let _ = DeviceId::parse_hex(text);
        let _ = parley_client::parse_group_name(text);
        if let Ok(code) = parley_client::LinkCode::parse(text) {
            assert_eq!(
                parley_client::LinkCode::parse(&code.encode()).ok(),
                Some(code),
                "a link code reads back as itself"
            );
        }
    }
}

/// An evidence bundle file (`parley report --import`): JSON, then the report request it
/// stands for.
fn evidence_bundle(bytes: &[u8]) {
    let Ok(bundle) = serde_json::from_slice::<parley_client::EvidenceBundle>(bytes) else {
        return;
    };
    let text = serde_json::to_vec(&bundle).expect("a bundle serializes");
    let again: parley_client::EvidenceBundle =
        serde_json::from_slice(&text).expect("a serialized bundle parses");
    assert_eq!(again, bundle, "a bundle survives JSON");
    if let Ok(request) = bundle.to_wire() {
        let bytes = parley_protocol::encode(&request);
        assert_eq!(
            v1::ReportRequest::decode(bytes.as_slice()).ok(),
            Some(request),
            "a report request survives protobuf"
        );
    }
}

/// The server's configuration file (`--config`, TOML).
fn config_file(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = parley_server::config::FileConfig::parse(text);
}

/// The server's signing key file (`server-signer.json`, read at start).
fn server_key_file(bytes: &[u8]) {
    let _ = serde_json::from_slice::<openmls_basic_credential::SignatureKeyPair>(bytes);
}

/// Targets beyond the protobuf messages.
pub const OTHERS: &[Target] = &[
    Target {
        name: "decode_bounded",
        about: "server: every API body, decoded under a field limit (protocol::decode_bounded)",
        max_len: PROTO_MAX,
        run: decode_bounded,
    },
    Target {
        name: "mls_submission",
        about: "server: the MLS message of a submission (delivery::submit)",
        max_len: MLS_MAX,
        run: mls_submission,
    },
    Target {
        name: "create_group",
        about: "server: GroupInfo and ratchet tree of a new group (delivery::create_group)",
        max_len: MLS_MAX,
        run: create_group,
    },
    Target {
        name: "key_package",
        about: "server: an uploaded KeyPackage (keypackages::validate)",
        max_len: MLS_MAX,
        run: key_package,
    },
    Target {
        name: "public_state",
        about: "server: a group's stored public state (public_state)",
        max_len: MLS_MAX,
        run: public_state,
    },
    Target {
        name: "live_frame",
        about: "server: a live WebSocket client frame, decoded and dispatched (live::dispatch)",
        max_len: MLS_MAX,
        run: live_frame,
    },
    Target {
        name: "welcome_bundle",
        about: "client: a Welcome queue item (incoming.rs)",
        max_len: MLS_MAX,
        run: welcome_bundle,
    },
    Target {
        name: "ids_and_names",
        about: "both: ids, usernames, credential identities, device certificates, group names",
        max_len: 256,
        run: ids_and_names,
    },
    Target {
        name: "evidence_bundle",
        about: "client: an evidence bundle file and its report request (reports.rs)",
        max_len: PROTO_MAX,
        run: evidence_bundle,
    },
    Target {
        name: "config_file",
        about: "server: the TOML configuration file (config.rs FileConfig)",
        max_len: PROTO_MAX,
        run: config_file,
    },
    Target {
        name: "server_key_file",
        about: "server: its signing key file (moderation::ServerIdentity)",
        max_len: 4096,
        run: server_key_file,
    },
];

/// Every target, protobuf messages first.
pub static ALL: &[Target] = &concat_targets();

const fn concat_targets() -> [Target; PROTO.len() + OTHERS.len()] {
    let mut all = [PROTO[0]; PROTO.len() + OTHERS.len()];
    let mut i = 0;
    while i < PROTO.len() {
        all[i] = PROTO[i];
        i += 1;
    }
    let mut j = 0;
    while j < OTHERS.len() {
        all[i + j] = OTHERS[j];
        j += 1;
    }
    all
}

/// A typing indicator the server forwards: a group id and a sealed body within the limit.
fn typing_in_bounds(typing: &v1::Typing) -> bool {
    typing.group_id.len() == 16
        && !typing.sealed.is_empty()
        && typing.sealed.len() <= limits::MAX_TYPING_SEALED_BYTES
}
