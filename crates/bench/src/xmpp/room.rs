//! B2 on ejabberd: fan-out in one MUC room.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::AsyncWriteExt as _;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::conn::*;
use super::server::Ejabberd;
use super::stanza::*;
use super::*;

pub struct GroupFigures {
    pub members: usize,
    pub messages: u64,
    pub deliveries: u64,
    pub deliveries_per_s: f64,
    pub time_to_last_ms: f64,
}

pub(crate) struct Group {
    pub(crate) run: u32,
    pub(crate) members: usize,
    pub(crate) base: Instant,
    pub(crate) counts: Vec<AtomicU32>,
    pub(crate) sent_ns: Vec<AtomicU64>,
    pub(crate) last_ns: Vec<AtomicU64>,
    pub(crate) deliveries: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) synced: AtomicUsize,
    pub(crate) errors: AtomicU64,
    pub(crate) notify: Notify,
}

impl Group {
    pub(crate) fn receive(&self, stanza: &[u8]) {
        match marker(stanza) {
            Some((b'G', run, index)) if run == self.run => {
                let Some(count) = self.counts.get(index as usize) else {
                    return;
                };
                let now = self.base.elapsed().as_nanos() as u64;
                self.last_ns[index as usize].fetch_max(now, Ordering::Relaxed);
                self.deliveries.fetch_add(1, Ordering::Relaxed);
                if count.fetch_add(1, Ordering::AcqRel) + 1 == self.members as u32 {
                    self.completed.fetch_add(1, Ordering::AcqRel);
                    self.notify.notify_one();
                }
            }
            Some((b'S', run, _)) if run == self.run => {
                self.synced.fetch_add(1, Ordering::AcqRel);
                self.notify.notify_one();
            }
            _ if is_error(stanza) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.notify.notify_one();
            }
            _ => {}
        }
    }
}

pub(crate) fn groupchat(out: &mut Vec<u8>, room: &str, kind: u8, run: u32, index: u64) {
    out.extend_from_slice(b"<message to='");
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(b"' type='groupchat'>");
    push_body(out, kind, run, index);
}

pub(crate) fn is_self_presence(s: &[u8]) -> Result<bool> {
    if !tag_is(s, b"presence") {
        return Ok(false);
    }
    ensure!(!is_error(s), "joining the room failed: {}", text(s));
    Ok(find(s, b"code='110'").is_some() || find(s, b"code=\"110\"").is_some())
}

/// B2: one room with `members` online occupants; occupant 0 sends `messages` messages, keeping
/// about B2_DELIVERIES_IN_FLIGHT deliveries outstanding. Deliveries are counted at every
/// occupant, the sender's own echo included; fewer than members x messages means loss.
pub async fn b2_room(server: &Ejabberd, members: usize, messages: u64) -> Result<GroupFigures> {
    ensure!(
        members >= 2 && messages >= 1,
        "B2 needs 2+ members and 1+ messages"
    );
    let run = server.allocate_run();
    let room = format!("bench{run}@{MUC_DOMAIN}");
    let first = server.allocate_users(members);
    let conns = login_all(server.port(), first, members, true, true).await?;
    let group = Arc::new(Group {
        run,
        members,
        base: Instant::now(),
        counts: (0..messages).map(|_| AtomicU32::new(0)).collect(),
        sent_ns: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        last_ns: (0..messages).map(|_| AtomicU64::new(0)).collect(),
        deliveries: AtomicU64::new(0),
        completed: AtomicU64::new(0),
        synced: AtomicUsize::new(0),
        errors: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let broken = Arc::new(AtomicBool::new(false));
    let join = |nick: usize| {
        format!(
            "<presence to='{room}/m{nick}'><x xmlns='http://jabber.org/protocol/muc'>\
             <history maxstanzas='0'/></x></presence>"
        )
    };

    // The owner creates the room and accepts the default configuration (an instant room).
    let mut conns = conns.into_iter();
    let mut owner = conns.next().ok_or_else(|| anyhow!("no members"))?;
    owner.send(join(0).as_bytes()).await?;
    owner
        .wait_for("creating the room", is_self_presence)
        .await?;
    owner
        .send(
            format!(
                "<iq type='set' id='cfg' to='{room}'><query \
                 xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' \
                 type='submit'/></query></iq>"
            )
            .as_bytes(),
        )
        .await?;
    owner
        .wait_for("configuring the room", |s| match is_iq_reply(s, b"cfg") {
            Some(true) => Ok(true),
            Some(false) => bail!("room configuration failed: {}", text(s)),
            None => Ok(false),
        })
        .await?;
    let g = group.clone();
    let (mut sender, owner_reader) = owner.split(broken.clone(), move |s| g.receive(s));

    // The others join concurrently; each reads its own join answers until its self-presence.
    let joined: Vec<(OwnedWriteHalf, AbortHandle)> = futures_util::stream::iter(conns.zip(1..))
        .map(|(mut conn, nick)| {
            let presence = join(nick);
            let group = group.clone();
            let broken = broken.clone();
            async move {
                conn.send(presence.as_bytes()).await?;
                conn.wait_for("joining the room", is_self_presence).await?;
                Ok::<_, anyhow::Error>(conn.split(broken, move |s| group.receive(s)))
            }
        })
        .buffer_unordered(JOIN_CONCURRENCY)
        .try_collect()
        .await?;
    let mut tasks = vec![owner_reader];
    let mut writers = Vec::with_capacity(members);
    for (writer, task) in joined {
        writers.push(writer);
        tasks.push(task);
    }
    let _readers = Tasks(tasks);

    // Barrier: once every occupant has this message, the join presences have all been delivered.
    let mut out = Vec::with_capacity(64 * 1024);
    groupchat(&mut out, &room, b'S', run, 0);
    sender.write_all(&out).await?;
    let synced = wait_progress(
        &group.notify,
        || group.synced.load(Ordering::Acquire) >= members,
        || group.synced.load(Ordering::Acquire) as u64,
    )
    .await;
    ensure!(
        synced,
        "B2: only {} of {members} occupants got the sync message",
        group.synced.load(Ordering::Acquire)
    );

    let window = (B2_DELIVERIES_IN_FLIGHT / members).max(1) as u64;
    let mut next = 0u64;
    while next < messages {
        let completed = group.completed.load(Ordering::Acquire);
        if next - completed >= window {
            let progressed = wait_progress(
                &group.notify,
                || next - group.completed.load(Ordering::Acquire) < window,
                || group.deliveries.load(Ordering::Relaxed),
            )
            .await;
            ensure!(
                progressed,
                "B2: deliveries stalled ({} errors, connection closed: {})",
                group.errors.load(Ordering::Relaxed),
                broken.load(Ordering::Relaxed)
            );
            continue;
        }
        let end = messages.min(completed + window);
        out.clear();
        let now = group.base.elapsed().as_nanos() as u64;
        for index in next..end {
            group.sent_ns[index as usize].store(now, Ordering::Relaxed);
            groupchat(&mut out, &room, b'G', run, index);
        }
        sender.write_all(&out).await?;
        next = end;
    }
    wait_progress(
        &group.notify,
        || group.completed.load(Ordering::Acquire) >= messages,
        || group.deliveries.load(Ordering::Relaxed),
    )
    .await;
    let errors = group.errors.load(Ordering::Relaxed);
    ensure!(errors == 0, "B2: {errors} error stanzas");

    let deliveries = group.deliveries.load(Ordering::Relaxed);
    let first_sent = group.sent_ns[0].load(Ordering::Relaxed);
    let last = group
        .last_ns
        .iter()
        .map(|t| t.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let (mut sum_ms, mut counted) = (0.0, 0u64);
    for i in 0..messages as usize {
        let last = group.last_ns[i].load(Ordering::Relaxed);
        if last > 0 {
            sum_ms += last.saturating_sub(group.sent_ns[i].load(Ordering::Relaxed)) as f64 / 1e6;
            counted += 1;
        }
    }
    drop(writers);
    Ok(GroupFigures {
        members,
        messages,
        deliveries,
        deliveries_per_s: deliveries as f64 / (last.saturating_sub(first_sent) as f64 / 1e9),
        time_to_last_ms: sum_ms / counted.max(1) as f64,
    })
}
