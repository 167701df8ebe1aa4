//! Parley's benchmarks (shared/design/benchmarks.md), kept out of the product: the load
//! generators both benchmark binaries share. `parley` and `xmpp` drive the two systems the same
//! way; `mls` holds Parley's send and receive paths on in-memory openmls; `measure` the readings.
#![forbid(unsafe_code)]

pub mod measure;
pub mod mls;
pub mod parley;
pub mod server;
pub mod xmpp;
