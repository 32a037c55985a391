//! A deadline that moves with nearly every request and is almost never reached: a client
//! connection's head timeout, a dyno connection's first-byte timeout.
//!
//! Each request sets a later deadline. Resetting tokio's `Sleep` for it costs a compare-and-
//! swap on the timer's state and the conversion of the instant to the wheel's ticks, twice
//! per proxied request (about 230 instructions and two locked operations; bench/README.md,
//! "router", session 19). A [`Deadline`] only records a later deadline, and leaves its sleep
//! registered for the earlier one: when that fires, the deadline is checked and, if it has
//! moved, the sleep is set for it. A busy connection's sleep then wakes once per timeout
//! window instead of being reset per request; an earlier deadline is set at once.

use crate::wire::deadline;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub(crate) struct Deadline {
    sleep: Pin<Box<Sleep>>,
    /// What `sleep` is registered for: never later than `due`.
    armed: Instant,
    /// The deadline.
    due: Instant,
}

impl Deadline {
    /// A deadline `after` from now.
    pub(crate) fn after(after: Duration) -> Deadline {
        let due = deadline(Instant::now(), after);
        Deadline {
            sleep: Box::pin(tokio::time::sleep_until(due)),
            armed: due,
            due,
        }
    }

    /// Sets the deadline to `due`: at once if that is earlier than the sleep's, else when
    /// the sleep fires.
    pub(crate) fn set(&mut self, due: Instant) {
        self.due = due;
        if due < self.armed {
            self.armed = due;
            self.sleep.as_mut().reset(due);
        }
    }

    /// Sets the deadline to `after` from now.
    pub(crate) fn set_after(&mut self, after: Duration) {
        self.set(deadline(Instant::now(), after));
    }

    /// Resolves once the deadline has passed (at once if it already has).
    pub(crate) fn expired(&mut self) -> Expired<'_> {
        Expired(self)
    }

    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            if self.due <= self.armed {
                return Poll::Ready(());
            }
            // The deadline moved while the sleep was registered for the old one.
            self.armed = self.due;
            self.sleep.as_mut().reset(self.due);
        }
    }
}

/// The future [`Deadline::expired`] returns.
pub(crate) struct Expired<'a>(&'a mut Deadline);

impl Future for Expired<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.poll_expired(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_kept_and_an_earlier_one_is_set_at_once() {
        let start = Instant::now();
        let mut d = Deadline::after(Duration::from_secs(10));
        // Moved later twice before the first sleep fires: expiry follows the last.
        tokio::time::sleep(Duration::from_secs(4)).await;
        d.set(start + Duration::from_secs(14));
        tokio::time::sleep(Duration::from_secs(4)).await;
        d.set(start + Duration::from_secs(25));
        d.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(25));

        // Earlier than the registered sleep: it fires then, not at the old deadline.
        let start = Instant::now();
        d.set(start + Duration::from_secs(30));
        d.set(start + Duration::from_secs(3));
        d.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));

        // A deadline already past expires at once, and again while it stays past.
        d.set(start);
        d.expired().await;
        d.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn moving_the_deadline_while_waiting_is_seen_when_the_sleep_fires() {
        let start = Instant::now();
        let mut d = Deadline::after(Duration::from_secs(5));
        // The sleep for 5 s fires with the deadline at 8 s: the wait goes on until 8 s.
        d.set(start + Duration::from_secs(8));
        let waited = tokio::time::timeout(Duration::from_secs(7), d.expired()).await;
        assert!(waited.is_err(), "expired before its deadline");
        d.expired().await;
        assert_eq!(Instant::now() - start, Duration::from_secs(8));
    }
}
