//! Parley's side of `parley-bench`: the real server binary pinned to one core, and a load
//! generator that speaks Parley's wire protocol like a client would: devices registered and
//! logged in over HTTP, MLS groups in memory (openmls, the default hybrid suite, the server as
//! external sender), and live WebSocket sessions that submit, take pushed items and acknowledge
//! them. The generator never decrypts what it receives: it is the load, not a client under test.
//!
//! `servers` starts and meters the real server processes, `http` and `devices` register devices
//! and build groups, `live` runs live connections and records latencies, `workloads` B1 to B4.

mod devices;
mod http;
mod live;
mod servers;
mod workloads;

pub use devices::*;
pub use http::Http;
pub use live::*;
pub use servers::*;
pub use workloads::*;
