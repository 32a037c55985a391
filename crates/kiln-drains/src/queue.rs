//! A drain's buffer: bounded, and never blocking whoever offers a line. When it is full the
//! oldest line is displaced and counted (Logplex's `logplex_msg_buffer`), so what a drain
//! delivers after an outage is the most recent lines, and the L10 line can say exactly how
//! many were lost and since when.

use kiln_model::Timestamp;
use kiln_model::log::{LineTap, LogLine};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub(crate) struct Queue {
    inner: Mutex<Inner>,
    ready: Notify,
    capacity: usize,
}

struct Inner {
    lines: VecDeque<Arc<LogLine>>,
    lost: u64,
    lost_since: Option<Timestamp>,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue {
            inner: Mutex::new(Inner {
                lines: VecDeque::with_capacity(capacity.min(64)),
                lost: 0,
                lost_since: None,
            }),
            ready: Notify::new(),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for at least one line, then moves up to `max` into `batch`, oldest first.
    pub(crate) async fn take(&self, batch: &mut Vec<Arc<LogLine>>, max: usize) {
        loop {
            // Register interest before looking, so a line offered in between wakes us.
            let notified = self.ready.notified();
            {
                let mut inner = self.lock();
                if !inner.lines.is_empty() {
                    let n = inner.lines.len().min(max);
                    batch.extend(inner.lines.drain(..n));
                    return;
                }
            }
            notified.await;
        }
    }

    /// Counts `n` lines lost after they left the buffer (a batch the endpoint refused).
    pub(crate) fn count_lost(&self, n: usize) {
        let mut inner = self.lock();
        inner.lost += n as u64;
        inner.lost_since.get_or_insert_with(Timestamp::now);
    }

    /// The lines lost since the last call, and when the first of them was, if the buffer has
    /// room for one more line (the report itself).
    pub(crate) fn take_losses_if_room(&self) -> Option<(u64, Timestamp)> {
        let mut inner = self.lock();
        if inner.lines.len() >= self.capacity {
            return None;
        }
        let since = inner.lost_since.take()?;
        let n = std::mem::take(&mut inner.lost);
        Some((n, since))
    }
}

impl LineTap for Queue {
    fn offer(&self, line: &Arc<LogLine>) {
        self.offer_all(std::slice::from_ref(line));
    }

    /// One lock and one wake-up for a whole read's worth of lines.
    fn offer_all(&self, lines: &[Arc<LogLine>]) {
        if lines.is_empty() {
            return;
        }
        {
            let mut inner = self.lock();
            // More lines than the buffer holds: the oldest of them are displaced at once.
            let skip = lines.len().saturating_sub(self.capacity);
            let over = (inner.lines.len() + lines.len() - skip).saturating_sub(self.capacity);
            let lost = skip + over;
            if lost > 0 {
                inner.lines.drain(..over);
                inner.lost += lost as u64;
                inner.lost_since.get_or_insert_with(Timestamp::now);
            }
            inner.lines.extend(lines[skip..].iter().cloned());
        }
        self.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_displaces_the_oldest_and_counts_them() {
        let q = Queue::new(3);
        for i in 0..5 {
            q.offer(&Arc::new(LogLine::app("web.1", format!("{i}"))));
        }
        let mut batch = Vec::new();
        q.take(&mut batch, 10).await;
        let got: Vec<_> = batch.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(got, ["2", "3", "4"]);
        let (n, _) = q.take_losses_if_room().unwrap();
        assert_eq!(n, 2);
        assert!(q.take_losses_if_room().is_none());
        q.count_lost(7);
        for i in 0..3 {
            q.offer(&Arc::new(LogLine::app("web.1", format!("{i}"))));
        }
        assert!(
            q.take_losses_if_room().is_none(),
            "full: the report would displace a line"
        );
        batch.clear();
        q.take(&mut batch, 1).await;
        assert_eq!(q.take_losses_if_room().unwrap().0, 7);
    }

    #[tokio::test]
    async fn a_batch_displaces_like_lines_one_by_one() {
        let lines: Vec<_> = (0..7)
            .map(|i| Arc::new(LogLine::app("web.1", format!("{i}"))))
            .collect();
        for (before, batch) in [(0, 7), (2, 2), (2, 3), (3, 7), (0, 2)] {
            let one = Queue::new(3);
            let all = Queue::new(3);
            for l in &lines[..before] {
                one.offer(l);
                all.offer(l);
            }
            for l in &lines[..batch] {
                LineTap::offer_all(&one, std::slice::from_ref(l));
            }
            all.offer_all(&lines[..batch]);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            one.take(&mut a, 10).await;
            all.take(&mut b, 10).await;
            let msgs = |v: &[Arc<LogLine>]| v.iter().map(|l| l.message.clone()).collect::<Vec<_>>();
            assert_eq!(msgs(&a), msgs(&b), "{before} then {batch}");
            assert_eq!(
                one.take_losses_if_room().map(|x| x.0),
                all.take_losses_if_room().map(|x| x.0),
                "{before} then {batch}"
            );
        }
    }

    #[tokio::test]
    async fn take_waits_for_a_line() {
        let q = Arc::new(Queue::new(10));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            let mut batch = Vec::new();
            q2.take(&mut batch, 10).await;
            batch.len()
        });
        tokio::task::yield_now().await;
        q.offer(&Arc::new(LogLine::app("web.1", "x")));
        assert_eq!(waiter.await.unwrap(), 1);
    }
}
