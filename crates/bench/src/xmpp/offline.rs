//! B4 on ejabberd: offline storage filled by senders, drained at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::Notify;

use super::conn::*;
use super::server::Ejabberd;
use super::stanza::*;
use super::*;

pub struct OfflineFigures {
    pub messages: u64,
    pub enqueue_per_s: f64,
    pub drain_per_s: f64,
}

pub(crate) struct Offline {
    pub(crate) run: u32,
    pub(crate) total: u64,
    pub(crate) base: Instant,
    pub(crate) seen: Vec<AtomicU64>,
    pub(crate) delivered: AtomicU64,
    pub(crate) last_ns: AtomicU64,
    pub(crate) notify: Notify,
}

impl Offline {
    pub(crate) fn receive(&self, stanza: &[u8]) {
        let Some((b'O', run, index)) = marker(stanza) else {
            return;
        };
        if run != self.run || index >= self.total {
            return;
        }
        let bit = 1u64 << (index % 64);
        if self.seen[(index / 64) as usize].fetch_or(bit, Ordering::AcqRel) & bit == 0 {
            self.last_ns
                .fetch_max(self.base.elapsed().as_nanos() as u64, Ordering::Relaxed);
            if self.delivered.fetch_add(1, Ordering::AcqRel) + 1 == self.total {
                self.notify.notify_one();
            }
        }
    }
}

/// B4: `users` registered, offline recipients get `per_user` messages each from B4_SENDERS
/// senders. Enqueue: until every sender's iq ping after its last message is answered (the server
/// handles a connection's stanzas in order). Drain: every recipient is logged in and bound first
/// (not timed), then all send initial presence at once; until the last message has arrived.
pub async fn b4_offline(server: &Ejabberd, users: usize, per_user: u64) -> Result<OfflineFigures> {
    ensure!(users >= 1 && per_user >= 1, "B4 needs users and messages");
    let port = server.port();
    let run = server.allocate_run();
    let senders = B4_SENDERS.min(users);
    let first_sender = server.allocate_users(senders);
    let first_recipient = server.allocate_users(users);
    let total = users as u64 * per_user;

    let sender_conns = login_all(port, first_sender, senders, true, false).await?;
    futures_util::stream::iter(0..users)
        .map(|i| async move {
            session(port, &user_name(first_recipient + i), Setup::Register).await
        })
        .buffer_unordered(LOGIN_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;

    let enqueue_start = Instant::now();
    futures_util::future::try_join_all(sender_conns.into_iter().enumerate().map(
        |(s, mut conn)| async move {
            let recipients: Vec<Vec<u8>> = (s..users)
                .step_by(senders)
                .map(|r| {
                    format!(
                        "<message to='{}@{DOMAIN}' type='chat'>",
                        user_name(first_recipient + r)
                    )
                    .into_bytes()
                })
                .collect();
            let mut out = Vec::with_capacity(128 * 1024);
            for k in 0..per_user {
                for (j, head) in recipients.iter().enumerate() {
                    let r = (s + j * senders) as u64;
                    out.extend_from_slice(head);
                    push_body(&mut out, b'O', run, r * per_user + k);
                    if out.len() >= 64 * 1024 {
                        conn.send(&out).await?;
                        out.clear();
                    }
                }
            }
            out.extend_from_slice(
                b"<iq type='get' id='done' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
            );
            conn.send(&out).await?;
            conn.wait_for("enqueueing offline messages", |s| {
                ensure!(
                    !(tag_is(s, b"message") && is_error(s)),
                    "an offline message bounced: {}",
                    text(s)
                );
                Ok(is_iq_reply(s, b"done").is_some())
            })
            .await?;
            Ok::<_, anyhow::Error>(conn)
        },
    ))
    .await?;
    let enqueue_s = enqueue_start.elapsed().as_secs_f64();

    let recipients = login_all(port, first_recipient, users, false, false).await?;
    let offline = Arc::new(Offline {
        run,
        total,
        base: Instant::now(),
        seen: (0..total.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        delivered: AtomicU64::new(0),
        last_ns: AtomicU64::new(0),
        notify: Notify::new(),
    });
    let broken = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::with_capacity(users);
    let mut tasks = Vec::with_capacity(users);
    for conn in recipients {
        let offline = offline.clone();
        let (writer, task) = conn.split(broken.clone(), move |s| offline.receive(s));
        writers.push(writer);
        tasks.push(task);
    }
    let _readers = Tasks(tasks);
    let drain_start = offline.base.elapsed().as_nanos() as u64;
    for writer in &mut writers {
        writer.write_all(b"<presence/>").await?;
    }
    wait_progress(
        &offline.notify,
        || offline.delivered.load(Ordering::Acquire) >= total,
        || offline.delivered.load(Ordering::Acquire),
    )
    .await;
    let delivered = offline.delivered.load(Ordering::Acquire);
    ensure!(
        delivered == total,
        "B4: only {delivered} of {total} offline messages arrived"
    );
    let drain_s = offline
        .last_ns
        .load(Ordering::Relaxed)
        .saturating_sub(drain_start) as f64
        / 1e9;
    Ok(OfflineFigures {
        messages: total,
        enqueue_per_s: total as f64 / enqueue_s,
        drain_per_s: total as f64 / drain_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn scanner_splits_partial_and_joined_reads() {
        let input = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='a>b'>\
            <stream:features><bind xmlns='x'/></stream:features><success xmlns='s'/>\
            <stream:stream id='2'><message from='a' type='chat'><body>R7.42.xx</body></message>\
            <presence/></stream:stream>";
        for step in [1, 2, 3, 7, input.len()] {
            let mut scanner = Scanner::new();
            let mut events = Vec::new();
            for chunk in input.chunks(step) {
                scanner.compact();
                scanner.buf.extend_from_slice(chunk);
                while let Some(event) = scanner.next() {
                    events.push(match event {
                        Event::Header => "header".to_string(),
                        Event::End => "end".to_string(),
                        Event::Stanza(r) => String::from_utf8_lossy(&scanner.buf[r]).into_owned(),
                    });
                }
            }
            assert_eq!(events.len(), 7, "step {step}: {events:?}");
            assert_eq!(events[0], "header");
            assert!(events[1].starts_with("<stream:features>"));
            assert_eq!(events[2], "<success xmlns='s'/>");
            assert_eq!(events[3], "header");
            assert_eq!(
                marker(events[4].as_bytes()),
                Some((b'R', 7, 42)),
                "{}",
                events[4]
            );
            assert_eq!(events[5], "<presence/>");
            assert_eq!(events[6], "end");
        }
    }

    #[test]
    pub(crate) fn bodies_are_200_bytes_and_base64_matches() {
        let mut out = Vec::new();
        push_body(&mut out, b'R', 3, 123_456);
        let body = &out[6..out.len() - "</body></message>".len()];
        assert_eq!(body.len(), BODY_LEN);
        assert_eq!(base64(b"\0u1\0pw"), "AHUxAHB3");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            attr(b"<iq id=\"x\" type='result'/>", b"type"),
            Some(&b"result"[..])
        );
    }
}
