//! Kiln's domain model: the types every room of the platform shares and the pure rules that
//! govern them (what a valid app name is, how a Procfile parses, how a formation scales, how a
//! log line is rendered). Nothing here does IO, so every rule is cheap to test and to fuzz.
//!
//! The rules follow Heroku's documented behaviour (see `shared/reference/`), because Heroku
//! compatibility is Kiln's interface.

pub mod access;
pub mod addon;
pub mod app;
pub mod appjson;
pub mod attach;
pub mod buildpack;
pub mod config;
pub mod drain;
pub mod dyno;
pub mod formation;
pub mod log;
pub mod meter;
pub mod procfile;
pub mod records;
pub mod release;
pub mod route;
pub mod schedule;
pub mod secret;
pub mod sleep;
pub mod time;

pub use app::AppName;
pub use config::ConfigVars;
pub use dyno::{DynoName, DynoSize, DynoState};
pub use log::{LogLine, LogSink};
pub use time::Timestamp;

/// A rule was broken by some input. `field` names the input (as the API calls it) and
/// `message` is written for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Invalid {
            field,
            message: message.into(),
        }
    }
}
