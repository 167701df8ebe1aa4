//! Parley's terminal UI.
#![forbid(unsafe_code)]

pub mod app;
mod run;
pub mod start;
pub mod ui;

pub use run::{run, TuiError};
pub use start::start;
