//! The router's own threads: one single-threaded tokio runtime per core, in the manner of
//! nginx's worker processes.
//!
//! The listener's accept loop runs wherever [`serve`](crate::serve) is awaited and hands
//! each accepted connection to the next worker in turn. From then on everything that
//! connection causes stays on that worker's thread: its HTTP/1 or HTTP/2 task, its dyno
//! connections (taken from the dynos' pools by [`dyno_client`](crate::dyno_client)), body
//! streaming and log lines. A request and its response
//! never cross threads, so the hot path has no cross-core wake-ups (a futex and an IPI each)
//! and no work-stealing; on a 2-core machine this is most of the difference between the
//! router and nginx (bench/README.md, "router").
//!
//! Connections are spread round-robin, which keeps workers even for keep-alive traffic where
//! accepts are rare; the kernel's `SO_REUSEPORT` hashing would be as even but needs every
//! listener bound with the option, and [`serve`](crate::serve) takes a listener that is
//! already bound.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// A job run on a worker thread, inside its runtime (it may `tokio::spawn`).
type Job = Box<dyn FnOnce() + Send>;

/// The worker threads of one listener. Dropping it lets each worker finish the job queue;
/// a worker's thread then ends, cancelling what is left on it (idle dyno connections).
pub(crate) struct Workers {
    queues: Vec<mpsc::UnboundedSender<Job>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `count` workers (at least one); `0` means half the available cores.
    ///
    /// Half, not all (nginx's `auto`): Kiln's router shares the machine with the dynos it
    /// serves, and a worker that has to fight the dyno for a core loses more to preemption
    /// than it gains. Measured on 2 cores with the dyno, the load generator and the router
    /// on the same machine: one worker gave 0.90x nginx's throughput with nginx's p99, two
    /// gave 0.77x with three times the p99 (bench/README.md).
    pub(crate) fn start(count: usize, name: &str) -> io::Result<Arc<Workers>> {
        let count = match count {
            0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
            n => n,
        };
        let mut queues = Vec::with_capacity(count);
        for i in 0..count {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        while let Some(job) = rx.recv().await {
                            job();
                        }
                    });
                })?;
            queues.push(tx);
        }
        Ok(Arc::new(Workers {
            queues,
            next: AtomicUsize::new(0),
        }))
    }

    /// Runs `job` on the next worker. `false` if that worker has gone (it panicked).
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.queues.len();
        self.queues[i].send(Box::new(job)).is_ok()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queues.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[tokio::test]
    async fn jobs_spread_over_workers_and_can_spawn() {
        let workers = Workers::start(2, "test-worker").unwrap();
        assert_eq!(workers.len(), 2);
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        for _ in 0..4 {
            let seen = Arc::clone(&seen);
            let done_tx = done_tx.clone();
            assert!(workers.run(move || {
                // Inside the worker's runtime: spawning works and stays on this thread.
                let here = std::thread::current().name().map(str::to_string);
                tokio::spawn(async move {
                    assert_eq!(std::thread::current().name().map(str::to_string), here);
                    seen.lock().unwrap().insert(here);
                    let _ = done_tx.send(());
                });
            }));
        }
        for _ in 0..4 {
            done_rx.recv().await.unwrap();
        }
        assert_eq!(
            seen.lock().unwrap().len(),
            2,
            "round-robin reaches both workers"
        );
    }
}
