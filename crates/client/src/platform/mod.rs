//! What differs between the native client (CLI, TUI) and the browser (a Dedicated Worker):
//! the clock, timers and blocking work, the home (its directory, lock and file modes), TLS
//! and HTTP, the live WebSocket, and the files beside the database (attachments on their way). Everything above this module is the same code on both.
//!
//! Each platform module offers the same names with the same signatures; `cargo check` for
//! both targets (scripts/wasm-check in CI) keeps them in step.
//!
//! Architecture invariant: no other module of this crate names `tokio::time`,
//! `tokio::task`, `std::os`, `std::fs`, `SystemTime`, `Instant`, a TLS type or a WebSocket type.

#[cfg(not(target_arch = "wasm32"))]
mod native;
#[cfg(not(target_arch = "wasm32"))]
pub use native::*;

#[cfg(target_arch = "wasm32")]
mod web;
#[cfg(target_arch = "wasm32")]
pub use web::*;

/// `std::time` natively; the browser's clocks on wasm32, where `std`'s panic.
pub use web_time::{Instant, SystemTime, UNIX_EPOCH};

/// Now, as the client stores times: milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
