//! Log drains, as Heroku's Logplex runs them: every line of an app's stream is copied to each
//! of its drains, in order, through a bounded buffer per drain.
//!
//! The shape is Vector's: one [`Drain`] per URL, each a task that takes batches from its own
//! queue and hands them to a [`Transport`] (one file per transport: `syslog.rs` for
//! `syslog://` and `syslog+tls://`, `https.rs` for `https://`). Offering a line to a drain
//! never blocks and never allocates beyond the buffer: when the buffer is full the oldest line
//! is displaced and counted, as Logplex's `logplex_msg_buffer` does, so a slow or dead drain
//! costs the dynos, the router, the other drains and the other apps nothing. When the drain
//! delivers again, the app's stream gets Heroku's line
//! `Error L10 (output buffer overflow): drain 'd.…' dropped N messages since T.`, and a
//! certificate that fails verification gets `Error L14 (certificate validation): …`.
//!
//! Where a drain may connect is decided by the platform (a [`Guard`]), checked on every
//! connection, after name resolution: a name that resolves to Kiln itself or to a link-local
//! metadata address is refused, even if it resolved elsewhere when the drain was added.

mod connect;
pub mod format;
mod https;
mod queue;
mod syslog;

use kiln_model::drain::{DrainTarget, LogDrain};
use kiln_model::log::{AppLogSink, LineTap, LogLine};
use queue::Queue;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use connect::{Guard, Refused};

/// Lines a drain buffers before it displaces the oldest (Logplex's default).
pub const BUFFER_LINES: usize = 1024;
/// Lines sent in one syslog write or one HTTPS POST at most.
const BATCH_LINES: usize = 500;
/// The first and the longest wait before a drain that failed tries again.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What every drain of a server shares.
#[derive(Clone)]
pub struct DrainContext {
    /// Trusted roots for `syslog+tls://` and `https://`.
    pub tls: Arc<rustls::ClientConfig>,
    /// Which addresses a drain may connect to.
    pub guard: Guard,
}

/// Why a delivery failed, and so what happens to the batch.
#[derive(Debug)]
pub enum Failure {
    /// Keep the batch and try again after a pause (the endpoint is down or busy).
    Retry(String),
    /// The endpoint refused the batch for good (HTTPS 4xx other than 429): it is lost.
    Reject(String),
    /// The endpoint's certificate failed verification: Heroku's L14, then retry.
    Certificate(String),
}

type Delivery<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// One way of carrying lines to an endpoint. A transport keeps its connection between
/// batches and reconnects as it needs.
pub trait Transport: Send {
    /// Delivers `lines` in order, as frame `frame_id` (stable across retries of one batch).
    fn deliver<'a>(&'a mut self, lines: &'a [Arc<LogLine>], frame_id: u64) -> Delivery<'a>;

    /// How many times one batch is tried before it is given up (None: until it goes).
    fn max_tries(&self) -> Option<u32> {
        None
    }
}

/// A running drain: its queue is what the app's stream offers lines to. Dropping it stops
/// the drain (lines still buffered are lost, as when Logplex removes a drain).
pub struct Drain {
    queue: Arc<Queue>,
    task: tokio::task::JoinHandle<()>,
}

impl Drain {
    /// Starts delivering to `drain`'s URL. Lines offered to [`Drain::tap`] go out in order;
    /// Heroku's L10 and L14 lines go to `stream`, the app's own log stream.
    pub fn start(
        drain: &LogDrain,
        target: DrainTarget,
        ctx: &DrainContext,
        stream: Arc<dyn AppLogSink>,
    ) -> Drain {
        let queue = Arc::new(Queue::new(BUFFER_LINES));
        let uri = target.redacted();
        let token = drain.token.clone();
        let transport: Box<dyn Transport> = match target {
            DrainTarget::Syslog { host, port, tls } => Box::new(syslog::Syslog::new(
                host,
                port,
                tls,
                token.clone(),
                ctx.clone(),
            )),
            DrainTarget::Https {
                host,
                port,
                path,
                basic_auth,
            } => Box::new(https::Https::new(
                host,
                port,
                path,
                basic_auth,
                token.clone(),
                ctx.clone(),
            )),
        };
        let task = tokio::spawn(run(queue.clone(), transport, token, uri, stream));
        Drain { queue, task }
    }

    /// What the app's stream offers each line to.
    pub fn tap(&self) -> Arc<dyn LineTap> {
        self.queue.clone()
    }
}

impl Drop for Drain {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    queue: Arc<Queue>,
    mut transport: Box<dyn Transport>,
    token: String,
    uri: String,
    stream: Arc<dyn AppLogSink>,
) {
    let mut frame_id: u64 = fastrand::u64(..);
    let mut batch: Vec<Arc<LogLine>> = Vec::with_capacity(BATCH_LINES);
    loop {
        queue.take(&mut batch, BATCH_LINES).await;
        frame_id = frame_id.wrapping_add(1);
        let mut tries = 0u32;
        let mut told_certificate = false;
        loop {
            tries += 1;
            match transport.deliver(&batch, frame_id).await {
                Ok(()) => {
                    // The L10 line joins the stream, and so this queue: wait until it has room,
                    // or the line would displace one more and make its own count wrong.
                    if let Some((n, since)) = queue.take_losses_if_room() {
                        stream.emit(LogLine::heroku(
                            "logplex",
                            format!(
                                "Error L10 (output buffer overflow): drain '{token}' dropped {n} messages since {}.",
                                since.rfc3339()
                            ),
                        ));
                    }
                    break;
                }
                Err(Failure::Reject(why)) => {
                    tracing::warn!(drain = %token, %uri, %why, lines = batch.len(), "a drain refused a batch; it is dropped");
                    queue.count_lost(batch.len());
                    break;
                }
                Err(Failure::Certificate(why)) => {
                    if !told_certificate {
                        told_certificate = true;
                        stream.emit(LogLine::heroku(
                            "logplex",
                            format!(
                                "Error L14 (certificate validation): error=\"{why}\" uri=\"{uri}\""
                            ),
                        ));
                    }
                }
                Err(Failure::Retry(why)) => {
                    tracing::debug!(drain = %token, %uri, %why, "drain delivery failed; retrying");
                }
            }
            if transport.max_tries().is_some_and(|max| tries >= max) {
                queue.count_lost(batch.len());
                break;
            }
            tokio::time::sleep(backoff(tries)).await;
        }
        batch.clear();
    }
}

/// Exponential backoff with jitter: a failed endpoint is not hammered, and many drains to one
/// endpoint do not retry in step.
fn backoff(tries: u32) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1u32 << tries.min(10));
    let capped = exp.min(BACKOFF_MAX);
    capped / 2 + capped.mul_f64(fastrand::f64() / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(200));
        assert!(backoff(1) >= Duration::from_millis(100));
        for t in 1..40 {
            assert!(backoff(t) <= BACKOFF_MAX);
        }
        assert!(backoff(20) >= BACKOFF_MAX / 2);
    }
}
