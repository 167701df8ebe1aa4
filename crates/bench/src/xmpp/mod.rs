//! The ejabberd side of the side-by-side benchmarks (shared/design/benchmarks.md, B1, B2, B4): a
//! private, unthrottled ejabberd pinned to one core (`server`), and a raw-socket XMPP load
//! generator: an incremental stanza scanner instead of an XML parser (`stanza`), connections
//! through stream header, in-band registration, SASL PLAIN, bind and presence (`conn`), and the
//! workloads (`relay` B1, `room` B2, `offline` B4).

mod conn;
mod offline;
mod relay;
mod room;
mod server;
mod stanza;

pub use offline::{b4_offline, OfflineFigures};
pub use relay::{RelayFigures, XmppPairs};
pub use room::{b2_room, GroupFigures};
pub use server::{Ejabberd, Modules};

use std::time::Duration;

pub(crate) const DOMAIN: &str = "localhost";
pub(crate) const MUC_DOMAIN: &str = "conference.localhost";
pub(crate) const PASSWORD: &str = "benchpw";
pub(crate) const BODY_LEN: usize = 200;
pub(crate) const PAD: [u8; BODY_LEN] = [b'x'; BODY_LEN];
/// Logins in flight at once: enough to keep the server busy, few enough not to overflow its backlog.
pub(crate) const LOGIN_CONCURRENCY: usize = 200;
pub(crate) const JOIN_CONCURRENCY: usize = 50;
/// Any single handshake step (a login under load included) must finish within this.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(120);
/// B1: how long to wait after the schedule for messages still in flight.
pub(crate) const STRAGGLERS: Duration = Duration::from_secs(5);
/// B2/B4: give up waiting when no delivery has arrived for this long.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// B2: deliveries in flight (window of messages = this / members), keeps the room busy without
/// letting queues (and so the time to the last recipient) grow without bound.
pub(crate) const B2_DELIVERIES_IN_FLIGHT: usize = 2_000;
/// B4: sender connections that fill the offline queues.
pub(crate) const B4_SENDERS: usize = 20;
pub(crate) const READ_RESERVE: usize = 16 * 1024;

pub(crate) const STREAM_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";
