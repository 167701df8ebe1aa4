//! Parley's client core for the browser: [`parley_client::Client`] behind wasm-bindgen, for
//! the web client's Dedicated Worker (web/src/worker.ts). Nothing here decides anything: it
//! turns calls from the page into `Client` calls and views into JSON. Compiled for wasm32
//! only; on other targets the crate is empty.
#![forbid(unsafe_code)]

#[cfg(target_arch = "wasm32")]
mod account;
#[cfg(target_arch = "wasm32")]
mod chats;
#[cfg(target_arch = "wasm32")]
mod core;
#[cfg(target_arch = "wasm32")]
mod qr;
#[cfg(target_arch = "wasm32")]
pub use crate::core::Core;
