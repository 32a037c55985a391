//! What Kiln's tests share, in one place instead of a copy per crate:
//!
//! - [`temp`]: a fresh directory per test, removed when the test is done with it;
//! - [`pg`]: `psql` as a client;
//! - [`wait`]: polling for a condition with a deadline and a message that says what was awaited;
//! - [`http`]: raw HTTP/1.1 over a blocking socket (requests the tests write byte by byte,
//!   responses parsed without a client library that would hide what the server really sent);
//! - [`net`] (feature `tokio`): the same exchanges on tokio;
//! - [`dyno`] (feature `hyper`): tiny dynos on random ports.
//!
//! It depends on no Kiln crate, so that every crate, the lowest included, can dev-depend on it.

pub mod http;
pub mod pg;
pub mod temp;
pub mod wait;

#[cfg(feature = "tokio")]
pub mod net;

#[cfg(feature = "hyper")]
pub mod dyno;

pub use temp::TempDir;
pub use wait::wait_for;
