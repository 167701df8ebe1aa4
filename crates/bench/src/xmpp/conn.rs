//! One user's connection through its handshake, logging many users in, and waiting on progress.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Result};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::stanza::*;
use super::*;

/// A connection during its handshake: read and written in order by one task.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) scanner: Scanner,
}

impl Conn {
    pub(crate) async fn connect(port: u16) -> Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            scanner: Scanner::new(),
        })
    }

    pub(crate) async fn send(&mut self, data: &[u8]) -> Result<()> {
        Ok(self.stream.write_all(data).await?)
    }

    /// Reads stanzas until `done` accepts one; stanzas after it stay buffered.
    pub(crate) async fn wait_for(
        &mut self,
        what: &str,
        mut done: impl FnMut(&[u8]) -> Result<bool>,
    ) -> Result<()> {
        let scanner = &mut self.scanner;
        let stream = &mut self.stream;
        let steps = async {
            loop {
                while let Some(event) = scanner.next() {
                    match event {
                        Event::Header => {}
                        Event::End => bail!("the server closed the stream while {what}"),
                        Event::Stanza(range) => {
                            let stanza = &scanner.buf[range];
                            if tag_is(stanza, b"stream:error") {
                                bail!("stream error while {what}: {}", text(stanza));
                            }
                            if done(stanza)? {
                                return Ok(());
                            }
                        }
                    }
                }
                scanner.compact();
                scanner.buf.reserve(READ_RESERVE);
                if stream.read_buf(&mut scanner.buf).await? == 0 {
                    bail!("the server closed the connection while {what}");
                }
            }
        };
        tokio::time::timeout(STEP_TIMEOUT, steps)
            .await
            .map_err(|_| anyhow!("timed out while {what}"))?
    }

    /// Hands the rest of the stream to a task that calls `on_stanza` for each stanza; the task
    /// sets `broken` when the stream ends or fails.
    pub(crate) fn split<F>(
        self,
        broken: Arc<AtomicBool>,
        on_stanza: F,
    ) -> (OwnedWriteHalf, AbortHandle)
    where
        F: FnMut(&[u8]) + Send + 'static,
    {
        let (reader, writer) = self.stream.into_split();
        let task = tokio::spawn(async move {
            let _ = read_loop(reader, self.scanner, on_stanza).await;
            broken.store(true, Ordering::Relaxed);
        });
        (writer, task.abort_handle())
    }
}

pub(crate) async fn read_loop<F: FnMut(&[u8])>(
    mut reader: OwnedReadHalf,
    mut scanner: Scanner,
    mut on_stanza: F,
) -> Result<()> {
    loop {
        while let Some(event) = scanner.next() {
            match event {
                Event::Header => {}
                Event::End => return Ok(()),
                Event::Stanza(range) => on_stanza(&scanner.buf[range]),
            }
        }
        scanner.compact();
        scanner.buf.reserve(READ_RESERVE);
        if reader.read_buf(&mut scanner.buf).await? == 0 {
            return Ok(());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setup {
    /// In-band registration (XEP-0077) only, then close.
    Register,
    /// Optionally register, then SASL PLAIN, bind, optionally initial presence.
    Login { register: bool, presence: bool },
}

/// One user's connection through its handshake; pipelined where the server processes input in
/// order anyway (registration and auth; restart, bind and presence).
pub(crate) async fn session(port: u16, user: &str, setup: Setup) -> Result<Option<Conn>> {
    let mut conn = Conn::connect(port).await?;
    let (register, login, presence) = match setup {
        Setup::Register => (true, false, false),
        Setup::Login { register, presence } => (register, true, presence),
    };
    let mut out = String::from(STREAM_HEADER);
    if register {
        out.push_str(&format!(
            "<iq type='set' id='reg'><query xmlns='jabber:iq:register'><username>{user}\
             </username><password>{PASSWORD}</password></query></iq>"
        ));
    }
    if login {
        out.push_str(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            base64(format!("\0{user}\0{PASSWORD}").as_bytes())
        ));
    }
    conn.send(out.as_bytes()).await?;
    let (mut registered, mut authenticated) = (!register, !login);
    conn.wait_for(&format!("registering/authenticating {user}"), |s| {
        if let Some(ok) = is_iq_reply(s, b"reg") {
            ensure!(ok, "registering {user} failed: {}", text(s));
            registered = true;
        } else if tag_is(s, b"success") {
            authenticated = true;
        } else if tag_is(s, b"failure") {
            bail!("SASL PLAIN failed for {user}: {}", text(s));
        }
        Ok(registered && authenticated)
    })
    .await?;
    if !login {
        conn.send(b"</stream:stream>").await?;
        return Ok(None);
    }
    let mut out = String::from(STREAM_HEADER);
    out.push_str(
        "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
         <resource>bench</resource></bind></iq>",
    );
    if presence {
        out.push_str("<presence/>");
    }
    conn.send(out.as_bytes()).await?;
    conn.wait_for(&format!("binding {user}"), |s| {
        match is_iq_reply(s, b"bind") {
            Some(true) => Ok(true),
            Some(false) => bail!("bind failed for {user}: {}", text(s)),
            None => Ok(false),
        }
    })
    .await?;
    Ok(Some(conn))
}

/// Logs in users `first..first + count` concurrently, in index order.
pub(crate) async fn login_all(
    port: u16,
    first: usize,
    count: usize,
    register: bool,
    presence: bool,
) -> Result<Vec<Conn>> {
    let mut conns: Vec<(usize, Conn)> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let conn = session(
                port,
                &user_name(first + i),
                Setup::Login { register, presence },
            )
            .await?
            .ok_or_else(|| anyhow!("no connection"))?;
            Ok::<_, anyhow::Error>((i, conn))
        })
        .buffer_unordered(LOGIN_CONCURRENCY)
        .try_collect()
        .await?;
    conns.sort_by_key(|(i, _)| *i);
    Ok(conns.into_iter().map(|(_, c)| c).collect())
}

/// Aborts reader tasks when a workload ends.
pub(crate) struct Tasks(pub(crate) Vec<AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Waits until `ready()` or until nothing has changed (`progress()`) for IDLE_TIMEOUT.
pub(crate) async fn wait_progress(
    notify: &Notify,
    mut ready: impl FnMut() -> bool,
    progress: impl Fn() -> u64,
) -> bool {
    let mut last = progress();
    let mut since = Instant::now();
    loop {
        let notified = notify.notified();
        if ready() {
            return true;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        let now = progress();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() > IDLE_TIMEOUT {
            return ready();
        }
    }
}
