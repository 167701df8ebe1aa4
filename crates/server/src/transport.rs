//! Transport limits of the API listener, against slowloris and connection floods: a cap on open
//! connections per client address and in all (those beyond are answered 503 and closed, and the
//! listener keeps accepting), an idle timeout on every connection but live WebSockets, and a
//! deadline for a request's whole body. Header-read and HTTP/2 stream limits are hyper's, set in
//! [`crate::http::serve`].

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, BodyDataStream, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request};
use axum_server::accept::Accept;
use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// What a refused connection is told (plain HTTP only; under TLS it is just closed).
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\n\
content-length: 34\r\nretry-after: 5\r\nconnection: close\r\n\r\ntoo many connections, retry later\n";

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    /// Each open connection's idle exemption, by its peer address.
    connections: HashMap<SocketAddr, IdleExempt>,
}

/// Counts open connections, per client address and in all.
#[derive(Clone)]
pub struct Limiter {
    counts: Arc<Mutex<Counts>>,
    per_address: usize,
    global: usize,
}

/// One admitted connection; dropping it (when the connection ends) frees its place.
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    peer: SocketAddr,
    exempt: IdleExempt,
}

impl Limiter {
    pub fn new(per_address: usize, global: usize) -> Self {
        Limiter {
            counts: Arc::default(),
            per_address,
            global,
        }
    }

    /// A place for a connection from `address`, unless it or the server is at its cap.
    pub fn admit(&self, peer: SocketAddr) -> Option<Slot> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.global {
            return None;
        }
        let open = counts.per_address.entry(peer.ip()).or_insert(0);
        if *open >= self.per_address {
            return None;
        }
        *open += 1;
        counts.total += 1;
        let exempt = IdleExempt::default();
        counts.connections.insert(peer, exempt.clone());
        Some(Slot {
            counts: self.counts.clone(),
            peer,
            exempt,
        })
    }

    /// The connection from `peer` became a live WebSocket: no idle timeout for it.
    fn exempt(&self, peer: SocketAddr) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(exempt) = counts.connections.get(&peer) {
            exempt.0.store(true, Ordering::Relaxed);
        }
    }

    /// Open connections in all.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        counts.connections.remove(&self.peer);
        let address = self.peer.ip();
        if let Some(open) = counts.per_address.get_mut(&address) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                counts.per_address.remove(&address);
            }
        }
    }
}

/// Set on a connection that became a live WebSocket: the idle timeout no longer applies.
#[derive(Clone, Default)]
struct IdleExempt(Arc<AtomicBool>);

/// Wraps the acceptor below it (TCP_NODELAY) and is wrapped by the TLS acceptor, if any: counts
/// the connection, refuses it past a cap, and watches it for idleness.
#[derive(Clone)]
pub struct LimitAcceptor<A> {
    inner: A,
    limiter: Limiter,
    idle: Duration,
    /// Answer refused connections with a plain-HTTP 503 (not under TLS).
    answer_busy: bool,
}

impl<A> LimitAcceptor<A> {
    pub fn new(inner: A, limiter: Limiter, idle: Duration, answer_busy: bool) -> Self {
        LimitAcceptor {
            inner,
            limiter,
            idle,
            answer_busy,
        }
    }
}

impl<A, S> Accept<TcpStream, S> for LimitAcceptor<A>
where
    A: Accept<TcpStream, S> + Clone + Send + 'static,
    A::Future: Send,
    A::Stream: Send,
    A::Service: Send,
    S: Send + 'static,
{
    type Stream = Guarded<A::Stream>;
    type Service = A::Service;
    type Future = Pin<Box<dyn Future<Output = io::Result<(Self::Stream, A::Service)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let slot = stream
            .peer_addr()
            .ok()
            .and_then(|peer| self.limiter.admit(peer));
        let Some(slot) = slot else {
            if self.answer_busy {
                // Best effort, without waiting: a fresh socket's send buffer takes it.
                let _ = stream.try_write(BUSY);
            }
            return Box::pin(std::future::ready(Err(io::Error::other(
                "connection cap reached",
            ))));
        };
        let inner = self.inner.clone();
        let idle = self.idle;
        Box::pin(async move {
            let (stream, service) = inner.accept(stream, service).await?;
            Ok((Guarded::new(stream, slot, idle), service))
        })
    }
}

/// A counted connection, closed (read error `TimedOut`) when nothing has been read or written
/// for the idle timeout, unless it became a live WebSocket.
pub struct Guarded<S> {
    inner: S,
    slot: Slot,
    idle: Duration,
    last_active: Instant,
    timer: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    fn new(inner: S, slot: Slot, idle: Duration) -> Self {
        let now = Instant::now();
        Guarded {
            inner,
            slot,
            idle,
            last_active: now,
            timer: Box::pin(tokio::time::sleep_until(now + idle)),
        }
    }

    /// Whether the connection has been idle too long; re-arms the timer otherwise.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        if self.slot.exempt.0.load(Ordering::Relaxed) {
            return false;
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            let due = self.last_active + self.idle;
            if due <= Instant::now() {
                return true;
            }
            self.timer.as_mut().reset(due);
        }
        false
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.last_active = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending if this.timed_out(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.last_active = Instant::now();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.last_active = Instant::now();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Middleware: a request's whole body must arrive within `timeout` (else reading it fails and
/// the connection closes); a WebSocket upgrade exempts its connection from the idle timeout.
pub async fn deadlines(limiter: Limiter, timeout: Duration, mut request: Request) -> Request {
    let upgrading = request
        .headers()
        .get(axum::http::header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrading {
        if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
            limiter.exempt(*peer);
        }
    }
    if !request.body().is_end_stream() {
        request = request.map(|body| {
            Body::from_stream(DeadlineStream {
                inner: body.into_data_stream(),
                deadline: Box::pin(tokio::time::sleep(timeout)),
            })
        });
    }
    request
}

/// A body's data that fails once its deadline has passed.
struct DeadlineStream {
    inner: BodyDataStream,
    deadline: Pin<Box<Sleep>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

impl Stream for DeadlineStream {
    type Item = Result<Bytes, axum::BoxError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Poll::Ready(data) = Pin::new(&mut this.inner).poll_next(cx) {
            return Poll::Ready(data.map(|d| d.map_err(Into::into)));
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_address_and_in_all() {
        let limiter = Limiter::new(2, 3);
        let a = |port| SocketAddr::from(([10, 0, 0, 1], port));
        let b = |port| SocketAddr::from(([10, 0, 0, 2], port));
        let first = limiter.admit(a(1)).unwrap();
        let _second = limiter.admit(a(2)).unwrap();
        assert!(limiter.admit(a(3)).is_none(), "third from one address");
        let _third = limiter.admit(b(1)).unwrap();
        assert!(limiter.admit(b(2)).is_none(), "past the global cap");
        drop(first);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.admit(a(4)).is_some(), "a freed place is free again");
    }
}
