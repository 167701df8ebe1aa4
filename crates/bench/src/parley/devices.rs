//! Registered, logged-in devices with their MLS state in memory, and the groups they form.

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer as _;
use parley_mls::certificate::AccountKey;
use parley_mls::{certified_credential, suite, DeviceIdentity};
use parley_protocol::{v1, DeviceId, Username};
use prost::Message as _;

use super::*;

/// A registered, logged-in device with its MLS state in memory.
pub struct Device {
    pub username: Username,
    pub device_id: DeviceId,
    pub token: String,
    pub(crate) provider: OpenMlsRustCrypto,
    pub(crate) signer: SignatureKeyPair,
    pub(crate) credential: CredentialWithKey,
    pub(crate) group: Option<MlsGroup>,
}

impl Device {
    /// Registers `username` with a fresh signature key and logs in.
    pub async fn register(http: &Http, username: &str) -> Result<Device> {
        let ciphersuite = suite::DEFAULT_CIPHERSUITE;
        let username = Username::parse(username)?;
        let signer = SignatureKeyPair::new(ciphersuite.signature_algorithm())?;
        let public = signer.to_public_vec();
        let proof = signer
            .sign(&v1::register_proof_input(username.as_str(), &public))
            .map_err(|e| anyhow!("signing: {e:?}"))?;
        // Certified like a real client's device, so that the server's checks cost what they do.
        let provider = OpenMlsRustCrypto::default();
        let chosen = DeviceId::from_bytes(rand_bytes(&provider)?);
        let account_key = AccountKey::generate();
        let certificate = account_key.certify(&username, chosen, &public, 0);
        let registered: v1::RegisterResponse = http
            .post(
                "/v1/accounts",
                &v1::RegisterRequest {
                    username: username.to_string(),
                    signature_key: public.clone(),
                    proof,
                    device_id: chosen.to_vec(),
                    account_key: account_key.public().to_bytes().to_vec(),
                    certificate: certificate.encode(),
                    restore: false,
                    restore_secret: Vec::new(),
                    backup_id: Vec::new(),
                },
                None,
            )
            .await?;
        let device_id = DeviceId::from_slice(&registered.device_id)?;
        let challenge: v1::ChallengeResponse = http
            .post(
                "/v1/auth/challenge",
                &v1::ChallengeRequest {
                    device_id: device_id.to_vec(),
                },
                None,
            )
            .await?;
        let signature = signer
            .sign(&v1::login_signature_input(
                device_id.as_bytes(),
                &challenge.challenge,
            ))
            .map_err(|e| anyhow!("signing: {e:?}"))?;
        let login: v1::LoginResponse = http
            .post(
                "/v1/auth/login",
                &v1::LoginRequest {
                    device_id: device_id.to_vec(),
                    challenge: challenge.challenge,
                    signature,
                },
                None,
            )
            .await?;
        signer.store(provider.storage())?;
        let credential = CredentialWithKey {
            credential: certified_credential(&account_key.public(), &certificate),
            signature_key: public.into(),
        };
        Ok(Device {
            username,
            device_id,
            token: login.token,
            provider,
            signer,
            credential,
            group: None,
        })
    }

    pub(crate) fn key_package(&self) -> Result<KeyPackage> {
        crate::mls::build_key_package(
            &self.provider,
            &self.signer,
            &self.credential,
            suite::DEFAULT_CIPHERSUITE,
        )
    }

    /// One application message as Parley's client builds it (payload with a fresh salt and the
    /// franking tag in the AAD), wrapped in a live submission frame.
    pub(crate) fn submission_frame(&mut self, message_id: [u8; 16], text: &str) -> Result<Vec<u8>> {
        let group = self.group.as_mut().context("not in a group")?;
        let salt = rand_bytes(&self.provider)?;
        let sender = crate::mls::Sender {
            username: self.username.as_str(),
            device: self.device_id.as_bytes(),
        };
        let mls_message = crate::mls::encrypt_text(
            &self.provider,
            &self.signer,
            group,
            sender,
            salt,
            message_id,
            text,
        )?;
        Ok(v1::ClientFrame {
            body: Some(v1::client_frame::Body::Submit(v1::LiveSubmit {
                request_id: u64::from_be_bytes(message_id[8..].try_into()?),
                submit: Some(v1::Submit {
                    message_id: message_id.to_vec(),
                    mls_message,
                    welcome: None,
                    expires_in_ms: 0,
                }),
            })),
        }
        .encode_to_vec())
    }
}

pub(crate) fn rand_bytes<const N: usize>(provider: &OpenMlsRustCrypto) -> Result<[u8; N]> {
    use openmls_traits::random::OpenMlsRand as _;
    provider
        .rand()
        .random_array()
        .map_err(|e| anyhow!("randomness: {e:?}"))
}

/// Creates a group held by `creator` on the server and adds `members` in commits of at most
/// `chunk`; with `join`, the members also build their MLS state from the Welcome (they can
/// then send too).
pub async fn create_group(
    http: &Http,
    creator: &mut Device,
    members: &mut [Device],
    chunk: usize,
    join: bool,
) -> Result<()> {
    let info: v1::ServerInfo = http
        .call(reqwest::Method::GET, "/v1/info", None, None)
        .await?;
    let server = ExternalSender::new(
        info.external_sender_key.into(),
        DeviceIdentity::parse(&info.external_sender_identity)?.to_credential(),
    );
    let ciphersuite = suite::DEFAULT_CIPHERSUITE;
    let config =
        crate::mls::create_config_builder(ciphersuite, creator.username.clone(), Some(server))?
            .sender_ratchet_configuration(SenderRatchetConfiguration::new(100, 100_000))
            .build();
    let group_id: [u8; 16] = rand_bytes(&creator.provider)?;
    let mut group = MlsGroup::new_with_group_id(
        &creator.provider,
        &creator.signer,
        &config,
        GroupId::from_slice(&group_id),
        creator.credential.clone(),
    )?;
    let _: v1::CreateGroupResponse = http
        .post(
            "/v1/groups",
            &v1::CreateGroup {
                group_info: group
                    .export_group_info(creator.provider.crypto(), &creator.signer, false)?
                    .to_bytes()?,
                ratchet_tree: group.export_ratchet_tree().tls_serialize_detached()?,
            },
            Some(&creator.token),
        )
        .await?;
    for members in members.chunks_mut(chunk) {
        let packages = members
            .iter()
            .map(Device::key_package)
            .collect::<Result<Vec<_>>>()?;
        let (commit, welcome, _) =
            group.add_members(&creator.provider, &creator.signer, &packages)?;
        let message_id: [u8; 16] = rand_bytes(&creator.provider)?;
        let _: v1::SubmitResponse = http
            .post(
                "/v1/messages",
                &v1::Submit {
                    message_id: message_id.to_vec(),
                    mls_message: commit.to_bytes()?,
                    welcome: Some(welcome.to_bytes()?),
                    expires_in_ms: 0,
                },
                Some(&creator.token),
            )
            .await?;
        group.merge_pending_commit(&creator.provider)?;
        if join {
            let welcome = match MlsMessageIn::from(welcome).extract() {
                MlsMessageBodyIn::Welcome(welcome) => welcome,
                _ => bail!("add_members returned no Welcome"),
            };
            let tree = group.export_ratchet_tree();
            let join_config = MlsGroupJoinConfig::builder()
                .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
                .use_ratchet_tree_extension(false)
                .sender_ratchet_configuration(SenderRatchetConfiguration::new(100, 100_000))
                .build();
            for member in members.iter_mut() {
                let joined = StagedWelcome::new_from_welcome(
                    &member.provider,
                    &join_config,
                    welcome.clone(),
                    Some(tree.clone().into()),
                )?
                .into_group(&member.provider)?;
                member.group = Some(joined);
            }
        }
    }
    creator.group = Some(group);
    Ok(())
}

/// `users` devices in pairs, each pair a two-member group whose members can both send.
pub async fn register_pairs(http: &Http, prefix: &str, users: usize) -> Result<Vec<Device>> {
    anyhow::ensure!(users >= 2 && users.is_multiple_of(2), "users come in pairs");
    let mut devices = register_many(http, prefix, users, 64).await?;
    for pair in devices.chunks_mut(2) {
        let (first, second) = pair.split_at_mut(1);
        create_group(http, &mut first[0], second, 1, true).await?;
    }
    Ok(devices)
}

/// Registers `count` devices named `{prefix}{i}`, `parallel` at a time.
pub async fn register_many(
    http: &Http,
    prefix: &str,
    count: usize,
    parallel: usize,
) -> Result<Vec<Device>> {
    futures_util::stream::iter(0..count)
        .map(|i| {
            let http = http.clone();
            let name = format!("{prefix}{i}");
            async move { Device::register(&http, &name).await }
        })
        .buffered(parallel)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}
