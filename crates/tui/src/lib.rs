//! Parley's terminal UI.
#![forbid(unsafe_code)]

pub mod app;
mod run;
pub mod ui;

pub use run::{run, TuiError};
