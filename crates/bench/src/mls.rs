//! MLS pieces shared by the benchmark binaries: members on in-memory openmls providers, and
//! Parley's send and receive paths (payload, franking tag in the AAD, encrypt; decrypt, check).

use anyhow::Result;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use parley_mls::{franking, suite, DeviceIdentity, Roles};
use parley_protocol::{v1, DeviceId, Username};
use prost::Message as _;

pub struct Member {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub credential: CredentialWithKey,
}

pub fn member(index: usize, ciphersuite: Ciphersuite) -> Result<Member> {
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

pub fn key_package(m: &Member, ciphersuite: Ciphersuite) -> Result<KeyPackage> {
    build_key_package(&m.provider, &m.signer, &m.credential, ciphersuite)
}

/// A KeyPackage with Parley's leaf capabilities.
pub fn build_key_package(
    provider: &OpenMlsRustCrypto,
    signer: &SignatureKeyPair,
    credential: &CredentialWithKey,
    ciphersuite: Ciphersuite,
) -> Result<KeyPackage> {
    Ok(KeyPackage::builder()
        .leaf_node_capabilities(suite::leaf_capabilities(ciphersuite))
        .build(ciphersuite, provider, signer, credential.clone())?
        .key_package()
        .clone())
}

pub fn create_config(ciphersuite: Ciphersuite) -> Result<MlsGroupCreateConfig> {
    Ok(create_config_builder(ciphersuite, Username::parse("user0")?, None)?.build())
}

/// A group configuration as Parley's client makes it: `admin` its first admin, `server` (the
/// server's credential and key) as external sender where the group lives on a server.
pub fn create_config_builder(
    ciphersuite: Ciphersuite,
    admin: Username,
    server: Option<ExternalSender>,
) -> Result<MlsGroupCreateConfigBuilder> {
    Ok(MlsGroupCreateConfig::builder()
        .ciphersuite(ciphersuite)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(false)
        .capabilities(suite::leaf_capabilities(ciphersuite))
        .with_group_context_extensions(suite::group_context_extensions(
            &Roles::with_admin(admin),
            server,
        )?))
}

pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(false)
        .build()
}

/// Alice's group with Bob added from `bob_key_package`, and Bob's joined copy of it.
pub fn two_member_group(
    alice: &Member,
    bob: &Member,
    bob_key_package: KeyPackage,
    ciphersuite: Ciphersuite,
) -> Result<(MlsGroup, MlsGroup)> {
    let mut a = MlsGroup::new(
        &alice.provider,
        &alice.signer,
        &create_config(ciphersuite)?,
        alice.credential.clone(),
    )?;
    let (_, welcome, _) = a.add_members(&alice.provider, &alice.signer, &[bob_key_package])?;
    a.merge_pending_commit(&alice.provider)?;
    let welcome = match MlsMessageIn::from(welcome).extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        _ => anyhow::bail!("no welcome"),
    };
    let b = StagedWelcome::new_from_welcome(
        &bob.provider,
        &join_config(),
        welcome,
        Some(a.export_ratchet_tree().into()),
    )?
    .into_group(&bob.provider)?;
    Ok((a, b))
}

/// What Parley's client does to send: payload with salt, franking tag in the AAD, encrypt.
pub fn send(m: &Member, group: &mut MlsGroup, text: &str) -> Result<Vec<u8>> {
    let sender = Sender {
        username: "user0",
        device: &[0; 16],
    };
    encrypt_text(
        &m.provider,
        &m.signer,
        group,
        sender,
        [7u8; franking::SALT_LEN],
        [1; 16],
        text,
    )
}

/// Who a payload names as its sender.
pub struct Sender<'a> {
    pub username: &'a str,
    pub device: &'a [u8],
}

/// Parley's send path: the payload with its salt and sender, the franking tag in the AAD, the
/// MLS application message.
pub fn encrypt_text(
    provider: &OpenMlsRustCrypto,
    signer: &SignatureKeyPair,
    group: &mut MlsGroup,
    sender: Sender<'_>,
    salt: [u8; franking::SALT_LEN],
    message_id: [u8; 16],
    text: &str,
) -> Result<Vec<u8>> {
    let payload = v1::AppPayload {
        salt: salt.to_vec(),
        sender_username: sender.username.into(),
        sender_device: sender.device.to_vec(),
        message_id: message_id.to_vec(),
        sent_at_ms: 0,
        body: Some(v1::app_payload::Body::Text(v1::TextBody {
            text: text.into(),
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
    Ok(group
        .create_message(provider, signer, &payload)?
        .to_bytes()?)
}

/// What Parley's client does to receive: decrypt, decode, check the franking tag.
pub fn receive(m: &Member, group: &mut MlsGroup, bytes: &[u8]) -> Result<()> {
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

/// A creator and `group_size - 1` joiners with one KeyPackage each, ready for one big add.
pub fn big_group_members(
    group_size: usize,
    ciphersuite: Ciphersuite,
) -> Result<(Member, Vec<Member>, Vec<KeyPackage>)> {
    let creator = member(0, ciphersuite)?;
    let joiners: Vec<Member> = (1..group_size)
        .map(|i| member(i, ciphersuite))
        .collect::<Result<_>>()?;
    let packages: Vec<KeyPackage> = joiners
        .iter()
        .map(|m| key_package(m, ciphersuite))
        .collect::<Result<_>>()?;
    Ok((creator, joiners, packages))
}
