//! Two small synchronisation helpers the rest of the crate shares.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Locks `m`, ignoring poisoning: exuvia's locks guard plain values that a panicking holder
/// cannot leave half-written, and a drain must go on after a service thread panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A count of live things (open listeners, unanswered control connections) that can be
/// waited on until it drops to zero.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    n: Mutex<usize>,
    changed: Condvar,
}

/// Counts one thing for as long as it lives.
#[derive(Debug)]
pub(crate) struct Counted(Arc<Counter>);

impl Counter {
    pub(crate) fn enter(self: &Arc<Self>) -> Counted {
        *lock(&self.n) += 1;
        Counted(self.clone())
    }

    pub(crate) fn count(&self) -> usize {
        *lock(&self.n)
    }

    /// Waits until the count is zero or `deadline` passes; `true` if it reached zero.
    pub(crate) fn wait_zero(&self, deadline: Instant) -> bool {
        let mut n = lock(&self.n);
        while *n > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            n = self
                .changed
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Counted {
    /// The count including this one.
    pub(crate) fn count(&self) -> usize {
        self.0.count()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        *lock(&self.0.n) -= 1;
        self.0.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_and_waits_for_zero() {
        let c = Arc::new(Counter::default());
        let a = c.enter();
        let b = c.enter();
        assert_eq!(b.count(), 2);
        assert!(!c.wait_zero(Instant::now() + Duration::from_millis(10)));
        drop(a);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            drop(b);
        });
        assert!(c.wait_zero(Instant::now() + Duration::from_secs(5)));
        t.join().unwrap();
    }
}
