//! Parley's terminal UI.
#![forbid(unsafe_code)]

mod actions;
pub mod app;
pub mod preview;
mod run;
pub mod start;
pub mod ui;

pub use run::{run, TuiError};
pub use start::start;
