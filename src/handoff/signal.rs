//! Two small rendezvous types the hand-off needs on both sides of the runtime line: a flag
//! that blocking threads and async tasks can wait on, and a one-shot reply. (tokio's `Notify`
//! and `oneshot` would do for tasks, but the library's core has no runtime, and blocking
//! services wait on the same objects.)

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::sync::lock;

#[derive(Default)]
struct Inner<T> {
    value: Option<T>,
    wakers: Vec<Waker>,
}

/// A value set once, waited for by any number of blocking threads or tasks.
pub(crate) struct Cell<T> {
    inner: Mutex<Inner<T>>,
    changed: Condvar,
}

impl<T: Clone> Cell<T> {
    pub(crate) fn new() -> Arc<Cell<T>> {
        Arc::new(Cell {
            inner: Mutex::new(Inner {
                value: None,
                wakers: Vec::new(),
            }),
            changed: Condvar::new(),
        })
    }

    /// Sets the value (the first set wins) and wakes every waiter.
    pub(crate) fn set(&self, v: T) {
        let wakers = {
            let mut g = lock(&self.inner);
            if g.value.is_some() {
                return;
            }
            g.value = Some(v);
            std::mem::take(&mut g.wakers)
        };
        self.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn get(&self) -> Option<T> {
        lock(&self.inner).value.clone()
    }

    /// Blocks until set or `timeout` (None: forever).
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> Option<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = lock(&self.inner);
        loop {
            if let Some(v) = &g.value {
                return Some(v.clone());
            }
            g = match deadline {
                None => self.changed.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.changed
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Resolves once set.
    pub(crate) fn wait_async(self: &Arc<Self>) -> CellFuture<T> {
        CellFuture(self.clone())
    }
}

/// See [`Cell::wait_async`].
pub(crate) struct CellFuture<T>(Arc<Cell<T>>);

impl<T: Clone> Future for CellFuture<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut g = lock(&self.0.inner);
        match &g.value {
            Some(v) => Poll::Ready(v.clone()),
            None => {
                if !g.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    g.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// A queue that blocking threads and tasks can both take from; closing it ends every waiter
/// once it is empty.
pub(crate) struct Queue<T> {
    inner: Mutex<QueueInner<T>>,
    changed: Condvar,
}

struct QueueInner<T> {
    items: std::collections::VecDeque<T>,
    closed: bool,
    wakers: Vec<Waker>,
}

impl<T> Queue<T> {
    pub(crate) fn new() -> Arc<Queue<T>> {
        Arc::new(Queue {
            inner: Mutex::new(QueueInner {
                items: std::collections::VecDeque::new(),
                closed: false,
                wakers: Vec::new(),
            }),
            changed: Condvar::new(),
        })
    }

    /// Adds an item unless closed (then it is handed back).
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        let wakers = {
            let mut g = lock(&self.inner);
            if g.closed {
                return Err(item);
            }
            g.items.push_back(item);
            std::mem::take(&mut g.wakers)
        };
        self.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
        Ok(())
    }

    pub(crate) fn close(&self) {
        let wakers = {
            let mut g = lock(&self.inner);
            g.closed = true;
            std::mem::take(&mut g.wakers)
        };
        self.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).items.len()
    }

    /// Takes the next item, waiting up to `timeout` (None: until closed).
    pub(crate) fn pop(&self, timeout: Option<Duration>) -> Option<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut g = lock(&self.inner);
        loop {
            if let Some(item) = g.items.pop_front() {
                return Some(item);
            }
            if g.closed {
                return None;
            }
            g = match deadline {
                None => self.changed.wait(g).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.changed
                        .wait_timeout(g, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Resolves with the next item, or `None` once closed and empty.
    pub(crate) fn next(self: &Arc<Self>) -> QueueFuture<T> {
        QueueFuture(self.clone())
    }
}

/// See [`Queue::next`].
pub(crate) struct QueueFuture<T>(Arc<Queue<T>>);

impl<T> Future for QueueFuture<T> {
    type Output = Option<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut g = lock(&self.0.inner);
        if let Some(item) = g.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if g.closed {
            return Poll::Ready(None);
        }
        if !g.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            g.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocking_and_async_waiters_see_the_first_value() {
        let c = Cell::<u32>::new();
        assert_eq!(c.wait(Some(Duration::from_millis(5))), None);
        let c2 = c.clone();
        let t = std::thread::spawn(move || c2.wait(None));
        std::thread::sleep(Duration::from_millis(10));
        c.set(7);
        c.set(8);
        assert_eq!(t.join().unwrap(), Some(7));
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut f = c.wait_async();
        assert_eq!(Pin::new(&mut f).poll(&mut cx), Poll::Ready(7));
    }
}
