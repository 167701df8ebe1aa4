//! Parley's side of `parley-bench`: the real server binary pinned to one core, and a load
//! generator that speaks Parley's wire protocol like a client would: devices registered and
//! logged in over HTTP, MLS groups in memory (openmls, the default hybrid suite, the server as
//! external sender), and live WebSocket sessions that submit, take pushed items and acknowledge
//! them. The generator never decrypts what it receives: it is the load, not a client under test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::Signer as _;
use parley_mls::{franking, suite, DeviceIdentity, Roles};
use parley_protocol::{v1, DeviceId, Username};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::bench_xmpp::{cpu_seconds, percentile, rss_bytes, stat_cpu_seconds};

/// The real `parley` binary (next to this one), on a free port.
pub struct ParleyServer {
    child: Child,
    /// Its own fresh data directory, or the one the nodes of a deployment share (key files).
    data: Arc<tempfile::TempDir>,
    pub base: String,
}

impl ParleyServer {
    /// Starts a server on its embedded SQLite store, in a fresh data directory, pinned to `core`.
    pub fn start(core: usize) -> Result<ParleyServer> {
        ParleyServer::start_with(core, Arc::new(tempfile::tempdir()?), &[])
    }

    /// Starts a server pinned to `core` with more flags. Rate limits are lifted: the load comes
    /// from a few addresses and accounts at rates no single person sends at.
    fn start_with(
        core: usize,
        data: Arc<tempfile::TempDir>,
        flags: &[String],
    ) -> Result<ParleyServer> {
        let exe = std::env::current_exe()?.with_file_name("parley");
        anyhow::ensure!(
            exe.exists(),
            "{} not found: build it with `cargo build --release`",
            exe.display()
        );
        let mut child = Command::new("taskset")
            .args(["-c", &core.to_string()])
            .arg(&exe)
            .args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .args(flags)
            .args(["--rate-per-second", "10000000"])
            .args(["--auth-rate-per-second", "10000000"])
            .env("PARLEY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the parley server (is taskset installed?)")?;
        let stdout = child.stdout.take().context("no server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = loop {
            let line = lines
                .next()
                .ok_or_else(|| anyhow!("the server exited before listening"))??;
            if let Some(address) = line.strip_prefix("parley server listening on ") {
                break address.trim().to_owned();
            }
        };
        Ok(ParleyServer { child, data, base })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// What a workload runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// One node on its embedded SQLite store: the default.
    Single,
    /// This many nodes sharing a private PostgreSQL and NATS (the scale-out deployment).
    Cluster(usize),
}

/// The processes of a deployment, every one pinned to the server core: on this 2-core machine
/// the multi-node figures show what the scale-out path costs, not how it scales.
pub struct Servers {
    nodes: Vec<ParleyServer>,
    // Declared after the nodes, so dropped after them.
    postgres: Option<parley_testkit::TestPostgres>,
    nats: Option<parley_testkit::TestNats>,
}

impl Servers {
    pub fn start(deployment: Deployment, core: usize) -> Result<Servers> {
        match deployment {
            Deployment::Single => Ok(Servers {
                nodes: vec![ParleyServer::start(core)?],
                postgres: None,
                nats: None,
            }),
            Deployment::Cluster(count) => {
                let postgres = parley_testkit::TestPostgres::start();
                pin_process_tree(postgres.pid().context("postgres is not running")?, core)?;
                let nats = parley_testkit::TestNats::start(1);
                for pid in nats.pids() {
                    pin_process_tree(pid, core)?;
                }
                let shared = Arc::new(tempfile::tempdir()?);
                let flags = [
                    "--database-url".to_owned(),
                    postgres.url(),
                    "--nats".to_owned(),
                    nats.url(0),
                ];
                let nodes = (0..count)
                    .map(|_| ParleyServer::start_with(core, shared.clone(), &flags))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Servers {
                    nodes,
                    postgres: Some(postgres),
                    nats: Some(nats),
                })
            }
        }
    }

    /// The node that device number `index` connects to: devices are spread over the nodes in
    /// turn, so that the two sides of a pair are on different nodes.
    pub fn base(&self, index: usize) -> &str {
        &self.nodes[index % self.nodes.len()].base
    }

    /// One live connection per device, taking new pushes, device i on node `base(i)`.
    async fn connect_all(&self, devices: &[Device], load: &Arc<Load>) -> Result<Vec<Connection>> {
        let mut connections = Vec::with_capacity(devices.len());
        for (index, device) in devices.iter().enumerate() {
            connections.push(
                connect(
                    self.base(index),
                    &device.token,
                    load.clone(),
                    Push::New,
                    false,
                )
                .await?,
            );
        }
        Ok(connections)
    }

    pub fn first(&self) -> &ParleyServer {
        &self.nodes[0]
    }

    pub fn pids(&self) -> String {
        let pids: Vec<String> = self.nodes.iter().map(|n| n.pid().to_string()).collect();
        pids.join(", ")
    }

    /// CPU of every process of the deployment. The store's share is the SQLite threads of the
    /// nodes, or PostgreSQL (all its processes).
    pub fn cpu(&self) -> Result<CpuSplit> {
        let mut split = CpuSplit::default();
        for node in &self.nodes {
            let node = CpuSplit::of(node.pid())?;
            split.total_s += node.total_s;
            split.store_s += node.store_s;
        }
        if let Some(pid) = self.postgres.as_ref().and_then(|p| p.pid()) {
            let postgres = process_tree_cpu_seconds(pid)?;
            split.total_s += postgres;
            split.store_s += postgres;
        }
        for pid in self.nats.iter().flat_map(|n| n.pids()) {
            split.total_s += process_tree_cpu_seconds(pid)?;
        }
        Ok(split)
    }
}

/// A process and its descendants (PostgreSQL's backends), from /proc.
fn process_tree(root: u32) -> Result<Vec<u32>> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Ok(pid) = entry?.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // A process that ends while we look is no longer part of the tree.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((pid, ppid));
        }
    }
    let mut tree = vec![root];
    let mut index = 0;
    while index < tree.len() {
        let parent = tree[index];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        index += 1;
    }
    Ok(tree)
}

/// Pins a process and its descendants (PostgreSQL's backends) to `core`.
pub fn pin_process_tree(root: u32, core: usize) -> Result<()> {
    for pid in process_tree(root)? {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", &core.to_string(), &pid.to_string()])
            .stdout(Stdio::null())
            .status()?;
        anyhow::ensure!(status.success(), "cannot pin process {pid}");
    }
    Ok(())
}

fn process_tree_cpu_seconds(root: u32) -> Result<f64> {
    let mut total = 0.0;
    for pid in process_tree(root)? {
        // Counted only if still there when read.
        total += cpu_seconds(pid).unwrap_or(0.0);
    }
    Ok(total)
}

/// Where a Parley server's CPU time went: all of it, and the part its SQLite threads (the writer
/// and the readers, named `parley-sqlite-*`) used. The rest is the async runtime: sockets,
/// WebSocket and protobuf framing, MLS framing checks, franks, fan-out. The split says how fast
/// the server could go if the store cost nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    pub total_s: f64,
    pub store_s: f64,
}

impl CpuSplit {
    pub fn of(pid: u32) -> Result<CpuSplit> {
        let mut store_s = 0.0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
            let task = task?.path();
            // A thread that ends between listing and reading is not a store thread.
            let Ok(name) = std::fs::read_to_string(task.join("comm")) else {
                continue;
            };
            if name.starts_with("parley-sqlite") {
                store_s += stat_cpu_seconds(&task.join("stat").to_string_lossy())?;
            }
        }
        Ok(CpuSplit {
            total_s: cpu_seconds(pid)?,
            store_s,
        })
    }

    pub fn since(self, before: CpuSplit) -> CpuSplit {
        CpuSplit {
            total_s: self.total_s - before.total_s,
            store_s: self.store_s - before.store_s,
        }
    }

    /// Microseconds of server CPU per unit of work, outside the store.
    pub fn outside_store_us(&self, units: u64) -> f64 {
        (self.total_s - self.store_s) / units.max(1) as f64 * 1e6
    }

    pub fn store_share(&self) -> f64 {
        if self.total_s > 0.0 {
            self.store_s / self.total_s
        } else {
            0.0
        }
    }
}

/// CPU seconds used so far by this process, the load generator (pinned to the other core).
fn load_cpu_seconds() -> Result<f64> {
    cpu_seconds(std::process::id())
}

/// The server's CPU and the load core's busy share over one measured interval.
struct Meter {
    server: CpuSplit,
    load_s: f64,
    started: Instant,
}

impl Meter {
    /// Starts measuring, given the server's CPU now.
    fn start(server: CpuSplit) -> Result<Meter> {
        Ok(Meter {
            server,
            load_s: load_cpu_seconds()?,
            started: Instant::now(),
        })
    }

    /// Given the server's CPU now: its CPU since the start, and the load core's busy share.
    fn stop(self, server: CpuSplit) -> Result<(CpuSplit, f64)> {
        let busy = (load_cpu_seconds()? - self.load_s) / self.started.elapsed().as_secs_f64();
        Ok((server.since(self.server), busy))
    }
}

impl Drop for ParleyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ----------------------------------------------------------------------------------------------
// HTTP calls

#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    pub fn new(base: &str) -> Result<Http> {
        Ok(Http {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()?,
            base: base.to_owned(),
        })
    }

    async fn call<R: prost::Message + Default>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        token: Option<&str>,
    ) -> Result<R> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", parley_protocol::CONTENT_TYPE);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            let error = v1::ErrorBody::decode(bytes.as_ref()).unwrap_or_default();
            bail!("{path}: {status}: {}", error.message);
        }
        Ok(R::decode(bytes.as_ref())?)
    }

    async fn post<Q: prost::Message, R: prost::Message + Default>(
        &self,
        path: &str,
        body: &Q,
        token: Option<&str>,
    ) -> Result<R> {
        self.call(
            reqwest::Method::POST,
            path,
            Some(body.encode_to_vec()),
            token,
        )
        .await
    }
}

// ----------------------------------------------------------------------------------------------
// Devices and groups

/// A registered, logged-in device with its MLS state in memory.
pub struct Device {
    pub username: Username,
    pub device_id: DeviceId,
    pub token: String,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    group: Option<MlsGroup>,
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
        let registered: v1::RegisterResponse = http
            .post(
                "/v1/accounts",
                &v1::RegisterRequest {
                    username: username.to_string(),
                    signature_key: public.clone(),
                    proof,
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
        let provider = OpenMlsRustCrypto::default();
        signer.store(provider.storage())?;
        let credential = CredentialWithKey {
            credential: DeviceIdentity::new(username.clone(), device_id).to_credential(),
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

    fn key_package(&self) -> Result<KeyPackage> {
        let ciphersuite = suite::DEFAULT_CIPHERSUITE;
        Ok(KeyPackage::builder()
            .leaf_node_capabilities(suite::leaf_capabilities(ciphersuite))
            .build(
                ciphersuite,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )?
            .key_package()
            .clone())
    }

    /// One application message as Parley's client builds it (payload with a fresh salt and the
    /// franking tag in the AAD), wrapped in a live submission frame.
    fn submission_frame(&mut self, message_id: [u8; 16], text: &str) -> Result<Vec<u8>> {
        let group = self.group.as_mut().context("not in a group")?;
        let salt: [u8; franking::SALT_LEN] = rand_bytes(&self.provider)?;
        let payload = v1::AppPayload {
            salt: salt.to_vec(),
            sender_username: self.username.to_string(),
            sender_device: self.device_id.to_vec(),
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
        let mls_message = group
            .create_message(&self.provider, &self.signer, &payload)?
            .to_bytes()?;
        Ok(v1::ClientFrame {
            body: Some(v1::client_frame::Body::Submit(v1::LiveSubmit {
                request_id: u64::from_be_bytes(message_id[8..].try_into()?),
                submit: Some(v1::Submit {
                    message_id: message_id.to_vec(),
                    mls_message,
                    welcome: None,
                }),
            })),
        }
        .encode_to_vec())
    }
}

fn rand_bytes<const N: usize>(provider: &OpenMlsRustCrypto) -> Result<[u8; N]> {
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
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(ciphersuite)
        .wire_format_policy(MIXED_PLAINTEXT_WIRE_FORMAT_POLICY)
        .use_ratchet_tree_extension(false)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(100, 100_000))
        .capabilities(suite::leaf_capabilities(ciphersuite))
        .with_group_context_extensions(suite::group_context_extensions(
            &Roles::with_admin(creator.username.clone()),
            Some(server),
        )?)
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

// ----------------------------------------------------------------------------------------------
// Live connections and measurement

/// Message ids of the load: step, sending device, and the message's index within the step.
/// The receiver finds the scheduled send time from them.
fn message_id(step: u32, sender: u32, index: u64) -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&step.to_be_bytes());
    id[4..8].copy_from_slice(&sender.to_be_bytes());
    id[8..].copy_from_slice(&index.to_be_bytes());
    id
}

/// Delivery latencies of one run, in microseconds.
#[derive(Default)]
pub struct Latencies(Mutex<Vec<u32>>);

impl Latencies {
    fn record(&self, nanos: u64) {
        let micros = u32::try_from(nanos / 1_000).unwrap_or(u32::MAX);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(micros);
    }

    /// The same quantile as the ejabberd side's ([`percentile`]).
    fn quantile_ms(&self, quantile: f64) -> f64 {
        let mut sorted = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        sorted.sort_unstable();
        percentile(&sorted, quantile)
    }
}

/// What one measured run expects and has seen so far.
pub struct Step {
    id: u32,
    /// Messages each sending device sends in this step.
    per_sender: u64,
    /// Scheduled send time (ns since the load's epoch), by sender * per_sender + index.
    scheduled: Vec<AtomicU64>,
    /// Deliveries still expected per message (1 for a pair, members - 1 in a group).
    expected_per_message: u64,
    seen: Vec<AtomicU64>,
    pub latency: Latencies,
    pub delivered: AtomicU64,
    pub duplicates: AtomicU64,
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    last_delivery_ns: AtomicU64,
}

impl Step {
    pub fn new(id: u32, senders: usize, per_sender: u64, expected_per_message: u64) -> Step {
        let slots = senders * per_sender as usize;
        Step {
            id,
            per_sender,
            scheduled: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            expected_per_message,
            seen: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            latency: Latencies::default(),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
        }
    }

    fn slot(&self, sender: u32, index: u64) -> usize {
        sender as usize * self.per_sender as usize + index as usize
    }

    pub fn expected(&self) -> u64 {
        self.scheduled.len() as u64 * self.expected_per_message
    }
}

/// The load's clock and the current step, shared by every connection's reader.
pub struct Load {
    epoch: Instant,
    step: RwLock<Arc<Step>>,
    /// Connections whose acknowledgements are all written: the load waits for them.
    pub unacked_connections: AtomicU64,
}

impl Load {
    pub fn new() -> Arc<Load> {
        Arc::new(Load {
            epoch: Instant::now(),
            step: RwLock::new(Arc::new(Step::new(0, 0, 0, 0))),
            unacked_connections: AtomicU64::new(0),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    pub fn set_step(&self, step: Arc<Step>) {
        *self.step.write().unwrap_or_else(|p| p.into_inner()) = step;
    }

    fn step(&self) -> Arc<Step> {
        self.step.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn delivered(&self, message_id: &[u8]) {
        let step = self.step();
        let Ok(id) = <[u8; 16]>::try_from(message_id) else {
            return;
        };
        let step_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
        let sender = u32::from_be_bytes([id[4], id[5], id[6], id[7]]);
        let index =
            u64::from_be_bytes([id[8], id[9], id[10], id[11], id[12], id[13], id[14], id[15]]);
        if step_id != step.id || index >= step.per_sender {
            return;
        }
        let slot = step.slot(sender, index);
        let Some(seen) = step.seen.get(slot) else {
            return;
        };
        if seen.fetch_add(1, Ordering::Relaxed) >= step.expected_per_message {
            step.duplicates.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let now = self.now_ns();
        let scheduled = step.scheduled[slot].load(Ordering::Relaxed);
        step.latency.record(now.saturating_sub(scheduled));
        step.delivered.fetch_add(1, Ordering::Relaxed);
        step.last_delivery_ns.fetch_max(now, Ordering::Relaxed);
    }

    fn result(&self, result: &v1::LiveResult) {
        let step = self.step();
        if result.accepted.is_some() {
            step.accepted.fetch_add(1, Ordering::Relaxed);
        } else {
            step.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(error) = &result.error {
                eprintln!("refused: {}", error.message);
            }
        }
    }
}

/// A device's live connection: frames to send go into `outbox`; a reader task records what
/// arrives and acknowledges pushed items.
pub struct Connection {
    pub outbox: mpsc::UnboundedSender<Vec<u8>>,
}

/// How a connection acknowledges: after this many items or this long after the oldest
/// unacknowledged one, whichever comes first.
const ACK_EVERY_ITEMS: u64 = 256;
const ACK_EVERY: Duration = Duration::from_millis(500);

/// Whether and from where a connection asks the server to push items.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Hints only (an idle client).
    Off,
    /// Everything queued, from the first item.
    Backlog,
    /// Only what arrives from now on (the load skips the Welcomes of its own setup).
    New,
}

pub async fn connect(
    base: &str,
    token: &str,
    load: Arc<Load>,
    push: Push,
    small_buffers: bool,
) -> Result<Connection> {
    let url = format!("{}/v1/ws", base.replacen("http", "ws", 1));
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    // tungstenite zero-fills the spare room of its read buffer before each read: keep it small.
    let config = Some(
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .read_buffer_size(if small_buffers { 4096 } else { 16 * 1024 })
            .write_buffer_size(0),
    );
    let (stream, _) = tokio_tungstenite::connect_async_with_config(request, config, true).await?;
    let (mut sink, mut source) = stream.split();
    let (outbox, mut frames) = mpsc::unbounded_channel::<Vec<u8>>();
    let after = match push {
        Push::Off => None,
        Push::Backlog => Some(0),
        // The server's first frame on a connection announces the queue head.
        Push::New => loop {
            match source.next().await {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    break Some(v1::ServerFrame::decode(bytes.as_ref())?.queue_head)
                }
                Some(Ok(_)) => continue,
                _ => bail!("the live connection closed before its first frame"),
            }
        },
    };
    if let Some(after) = after {
        outbox.send(
            v1::ClientFrame {
                body: Some(v1::client_frame::Body::StartPush(v1::StartPush { after })),
            }
            .encode_to_vec(),
        )?;
    }
    tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if sink.feed(WsMessage::Binary(frame.into())).await.is_err() {
                return;
            }
            // Everything already waiting goes out in the same write.
            while let Ok(frame) = frames.try_recv() {
                if sink.feed(WsMessage::Binary(frame.into())).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let acks = outbox.clone();
    tokio::spawn(async move {
        let mut received_up_to = 0u64;
        let mut acked_up_to = 0u64;
        let mut unacked = 0u64;
        let mut ack_due: Option<tokio::time::Instant> = None;
        let ack = |up_to: u64| {
            acks.send(
                v1::ClientFrame {
                    body: Some(v1::client_frame::Body::Ack(v1::Ack { up_to })),
                }
                .encode_to_vec(),
            )
        };
        loop {
            let next = match ack_due {
                Some(due) => tokio::select! {
                    frame = source.next() => frame,
                    () = tokio::time::sleep_until(due) => {
                        if ack(received_up_to).is_err() { return; }
                        acked_up_to = received_up_to;
                        unacked = 0;
                        ack_due = None;
                        load.unacked_connections.fetch_sub(1, Ordering::Relaxed);
                        continue;
                    }
                },
                None => source.next().await,
            };
            let Some(Ok(WsMessage::Binary(bytes))) = next else {
                match next {
                    Some(Ok(_)) => continue,
                    _ => return,
                }
            };
            let Ok(frame) = v1::ServerFrame::decode(bytes.as_ref()) else {
                eprintln!("malformed server frame");
                return;
            };
            for result in &frame.results {
                load.result(result);
            }
            for item in &frame.items {
                if item.kind == v1::ItemKind::GroupMessage as i32 {
                    load.delivered(&item.message_id);
                }
                received_up_to = received_up_to.max(item.seq);
                unacked += 1;
            }
            if received_up_to > acked_up_to {
                if unacked >= ACK_EVERY_ITEMS {
                    if ack(received_up_to).is_err() {
                        return;
                    }
                    acked_up_to = received_up_to;
                    unacked = 0;
                    if ack_due.take().is_some() {
                        load.unacked_connections.fetch_sub(1, Ordering::Relaxed);
                    }
                } else if ack_due.is_none() {
                    ack_due = Some(tokio::time::Instant::now() + ACK_EVERY);
                    load.unacked_connections.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Ok(Connection { outbox })
}

// ----------------------------------------------------------------------------------------------
// Workloads

/// B1's world: devices in pairs, each pair a two-member MLS group, every device connected live.
pub struct Pairs {
    servers: Servers,
    devices: Vec<Device>,
    connections: Vec<Connection>,
    load: Arc<Load>,
    steps: u32,
}

/// The text of every load message: 200 bytes, as in the peers' runs.
fn load_text() -> String {
    "x".repeat(200)
}

pub struct RelayFigures {
    pub sent: u64,
    pub accepted: u64,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_s_per_1000: f64,
    pub server_cpu: CpuSplit,
    /// Busy share of the load generator's core while the load ran.
    pub load_core_busy: f64,
}

impl Pairs {
    pub async fn start(deployment: Deployment, users: usize) -> Result<Pairs> {
        let servers = Servers::start(deployment, 0)?;
        let http = Http::new(&servers.first().base)?;
        let devices = register_pairs(&http, "pair", users).await?;
        let load = Load::new();
        let connections = servers.connect_all(&devices, &load).await?;
        Ok(Pairs {
            servers,
            devices,
            connections,
            load,
            steps: 0,
        })
    }

    /// Open loop at `rate` messages per second for `duration`: message i is due at i / rate
    /// and goes from device i mod users to its partner. Latency runs from the due time (so a
    /// stalled sender shows up as latency) to the pushed item's arrival at the partner.
    pub async fn run(&mut self, rate: u32, duration: Duration) -> Result<RelayFigures> {
        self.steps += 1;
        let users = self.devices.len();
        let total = (rate as f64 * duration.as_secs_f64()) as u64;
        let per_sender = total.div_ceil(users as u64);
        let total = per_sender * users as u64;
        // Encrypting is the clients' work, not the server's: done before the clock starts.
        let text = load_text();
        let step_id = self.steps;
        let frames: Vec<Vec<Vec<u8>>> = self
            .devices
            .iter_mut()
            .enumerate()
            .map(|(sender, device)| {
                (0..per_sender)
                    .map(|index| {
                        device.submission_frame(message_id(step_id, sender as u32, index), &text)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<_>>()?;
        let step = Arc::new(Step::new(step_id, users, per_sender, 1));
        self.load.set_step(step.clone());
        // For attaching a profiler to the server while the load runs.
        eprintln!(
            "  (step {step_id}: {rate} msgs/s for {duration:?}, server pid {})",
            self.servers.pids()
        );
        let meter = Meter::start(self.servers.cpu()?)?;
        let start = self.load.now_ns();
        let mut frames: Vec<std::vec::IntoIter<Vec<u8>>> =
            frames.into_iter().map(Vec::into_iter).collect();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while sent < total {
            tick.tick().await;
            let elapsed = self.load.now_ns() - start;
            let due = ((elapsed as f64 / 1e9) * rate as f64).min(total as f64) as u64;
            while sent < due {
                let sender = (sent % users as u64) as usize;
                let index = sent / users as u64;
                let scheduled = start + (sent as f64 * 1e9 / rate as f64) as u64;
                step.scheduled[step.slot(sender as u32, index)].store(scheduled, Ordering::Relaxed);
                let frame = frames[sender].next().context("ran out of frames")?;
                self.connections[sender]
                    .outbox
                    .send(frame)
                    .map_err(|_| anyhow!("connection {sender} closed"))?;
                sent += 1;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while (step.delivered.load(Ordering::Relaxed) < total
            || step.accepted.load(Ordering::Relaxed) + step.refused.load(Ordering::Relaxed) < total)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (cpu, load_core_busy) = meter.stop(self.servers.cpu()?)?;
        // Let the last acknowledgements land before the next step.
        while self.load.unacked_connections.load(Ordering::Relaxed) > 0 && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let delivered = step.delivered.load(Ordering::Relaxed);
        Ok(RelayFigures {
            sent: total,
            accepted: step.accepted.load(Ordering::Relaxed),
            delivered,
            p50_ms: step.latency.quantile_ms(0.50),
            p99_ms: step.latency.quantile_ms(0.99),
            server_cpu_s_per_1000: cpu.total_s / total as f64 * 1000.0,
            server_cpu: cpu,
            load_core_busy,
        })
    }
}

pub struct GroupFigures {
    pub messages: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub time_to_last_ms: f64,
    pub server_cpu: CpuSplit,
    pub load_core_busy: f64,
}

/// B2: one sender and `members - 1` online receivers in one group; the sender keeps `window`
/// submissions in flight. Deliveries per second run from the first send to the last delivery.
pub async fn group_fan_out(
    deployment: Deployment,
    members: usize,
    messages: u64,
    window: u64,
) -> Result<GroupFigures> {
    let servers = Servers::start(deployment, 0)?;
    let http = Http::new(&servers.first().base)?;
    let mut devices = register_many(&http, "member", members, 64).await?;
    let (creator, others) = devices.split_at_mut(1);
    create_group(&http, &mut creator[0], others, 250, false).await?;
    let load = Load::new();
    let connections = servers.connect_all(&devices, &load).await?;
    // Let the Welcomes drain before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let text = load_text();
    let frames = (0..messages)
        .map(|index| devices[0].submission_frame(message_id(1, 0, index), &text))
        .collect::<Result<Vec<_>>>()?;
    let step = Arc::new(Step::new(1, 1, messages, members as u64 - 1));
    load.set_step(step.clone());
    eprintln!("  (fan-out into {members}: server pid {})", servers.pids());
    let meter = Meter::start(servers.cpu()?)?;
    let start = load.now_ns();
    let mut sent = 0u64;
    let mut frames = frames.into_iter();
    while sent < messages {
        let answered = step.accepted.load(Ordering::Relaxed) + step.refused.load(Ordering::Relaxed);
        if sent - answered >= window {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        step.scheduled[step.slot(0, sent)].store(load.now_ns(), Ordering::Relaxed);
        connections[0]
            .outbox
            .send(frames.next().context("ran out of frames")?)
            .map_err(|_| anyhow!("sender connection closed"))?;
        sent += 1;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while step.delivered.load(Ordering::Relaxed) < step.expected() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let deliveries = step.delivered.load(Ordering::Relaxed);
    let elapsed = (step.last_delivery_ns.load(Ordering::Relaxed) - start) as f64 / 1e9;
    let (server_cpu, load_core_busy) = meter.stop(servers.cpu()?)?;
    drop(connections);
    Ok(GroupFigures {
        messages,
        deliveries,
        deliveries_per_s: deliveries as f64 / elapsed,
        time_to_last_ms: step.latency.quantile_ms(1.0),
        server_cpu,
        load_core_busy,
    })
}

pub struct DensityFigures {
    pub bytes_per_connection: f64,
    pub logins_per_s: f64,
    pub idle_cpu_percent: f64,
}

/// B3: `count` devices register and log in, then each opens its live connection and stays
/// idle. Memory per connection is the server's RSS growth from before the first connection to
/// after the last, divided by their number.
pub async fn connection_density(count: usize) -> Result<DensityFigures> {
    let server = ParleyServer::start(0)?;
    let http = Http::new(&server.base)?;
    let started = Instant::now();
    let devices = register_many(&http, "idle", count, 128).await?;
    let logins_per_s = count as f64 / started.elapsed().as_secs_f64();
    let tokens: Vec<String> = devices.into_iter().map(|d| d.token).collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_bytes(server.pid())?;
    let load = Load::new();
    let connections = futures_util::stream::iter(tokens.iter())
        .map(|token| connect(&server.base, token, load.clone(), Push::Off, true))
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_bytes(server.pid())?;
    let cpu_before = cpu_seconds(server.pid())?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_cpu_percent = (cpu_seconds(server.pid())? - cpu_before) / 5.0 * 100.0;
    drop(connections);
    Ok(DensityFigures {
        bytes_per_connection: after.saturating_sub(before) as f64 / count as f64,
        logins_per_s,
        idle_cpu_percent,
    })
}

pub struct OfflineFigures {
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
    pub bytes_per_message: f64,
    pub drained: u64,
    /// Server CPU while the backlog drained.
    pub drain_cpu: CpuSplit,
    pub drain_load_core_busy: f64,
}

/// B4: `users` devices in pairs; the second of each pair is offline while the first sends it
/// `per_user` messages (enqueue rate: durable acknowledgements per second, 64 in flight per
/// sender); then all recipients connect at once and drain (drain rate: items pushed and
/// received per second until the last one).
pub async fn offline_drain(users: usize, per_user: u64) -> Result<OfflineFigures> {
    let server = ParleyServer::start(0)?;
    let http = Http::new(&server.base)?;
    let mut devices = register_pairs(&http, "offline", users).await?;
    let load = Load::new();
    let senders: Vec<usize> = (0..users).step_by(2).collect();
    let text = load_text();
    let frames: Vec<Vec<Vec<u8>>> = senders
        .iter()
        .map(|&sender| {
            (0..per_user)
                .map(|index| {
                    devices[sender].submission_frame(message_id(1, sender as u32, index), &text)
                })
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<_>>()?;
    let step = Arc::new(Step::new(1, users, per_user, 1));
    load.set_step(step.clone());
    let mut connections = Vec::new();
    for &sender in &senders {
        connections.push(
            connect(
                &server.base,
                &devices[sender].token,
                load.clone(),
                Push::New,
                false,
            )
            .await?,
        );
    }
    let db_before = dir_bytes(server.data.path())?;
    let start = Instant::now();
    let total = senders.len() as u64 * per_user;
    for (connection, frames) in connections.iter().zip(frames) {
        for frame in frames {
            connection
                .outbox
                .send(frame)
                .map_err(|_| anyhow!("sender connection closed"))?;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while step.accepted.load(Ordering::Relaxed) + step.refused.load(Ordering::Relaxed) < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let enqueue_per_s = total as f64 / start.elapsed().as_secs_f64();
    anyhow::ensure!(
        step.refused.load(Ordering::Relaxed) == 0,
        "the server refused submissions"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bytes_per_message =
        dir_bytes(server.data.path())?.saturating_sub(db_before) as f64 / total as f64;
    eprintln!("  (drain: server pid {})", server.pid());
    let meter = Meter::start(CpuSplit::of(server.pid())?)?;
    let started_drain = load.now_ns();
    let _receivers = futures_util::stream::iter(devices.iter().skip(1).step_by(2))
        .map(|device| {
            connect(
                &server.base,
                &device.token,
                load.clone(),
                Push::Backlog,
                false,
            )
        })
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    while step.delivered.load(Ordering::Relaxed) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered = step.delivered.load(Ordering::Relaxed);
    anyhow::ensure!(delivered == total, "{delivered} of {total} drained");
    let drain_s = (step.last_delivery_ns.load(Ordering::Relaxed) - started_drain) as f64 / 1e9;
    let (drain_cpu, drain_load_core_busy) = meter.stop(CpuSplit::of(server.pid())?)?;
    Ok(OfflineFigures {
        enqueue_per_s,
        drain_per_s: total as f64 / drain_s,
        bytes_per_message,
        drained: total,
        drain_cpu,
        drain_load_core_busy,
    })
}

fn dir_bytes(dir: &std::path::Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}
