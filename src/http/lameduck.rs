//! The service wrapper that makes every connection a lame duck after the handover.
//!
//! It sees each request and response of a connection, so it is where the adapter learns
//! what the connection driver cannot: whether the connection speaks HTTP/1 or HTTP/2, whether
//! a request is in flight (until its response body is fully sent or dropped) and since when
//! it has been idle, and whether it was upgraded (a WebSocket). After the handover it adds
//! `Connection: close` to every HTTP/1 response, so hyper closes the connection right after
//! the response the client is waiting for — the close the client cannot race.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Finish;
use super::policy::Deadlines;
use crate::tokio::Connections;

/// State of one server (one `serve` call), shared by its connections.
pub(crate) struct Shared {
    /// Set at the handover; read on every response, so a plain atomic.
    lame: AtomicBool,
    /// The same moment, for tasks that wait for it.
    pub lame_token: CancellationToken,
    pub finish: Finish,
    pub deadlines: Deadlines,
    epoch: Instant,
    lame_at: AtomicU64,
}

impl Shared {
    pub(crate) fn new(connections: &Connections, deadlines: Deadlines) -> Shared {
        Shared {
            lame: AtomicBool::new(false),
            lame_token: CancellationToken::new(),
            finish: Finish::from(connections.finish_token()),
            deadlines,
            epoch: Instant::now(),
            lame_at: AtomicU64::new(0),
        }
    }

    /// The handover: from now on every connection is a lame duck.
    pub(crate) fn start_lame_duck(&self) {
        self.lame_at.store(self.now(), Ordering::Relaxed);
        self.lame.store(true, Ordering::Release);
        self.lame_token.cancel();
    }

    fn is_lame(&self) -> bool {
        self.lame.load(Ordering::Acquire)
    }

    /// Milliseconds since this server started: the clock of `idle_since`.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// `wait` after `since` (server clock), but never before the handover.
    pub(crate) fn after(&self, since: u64, wait: Duration) -> Instant {
        let from = since.max(self.lame_at.load(Ordering::Relaxed));
        self.epoch + Duration::from_millis(from) + wait
    }
}

/// What the adapter knows about one connection.
#[derive(Default)]
pub(crate) struct ConnState {
    in_flight: AtomicUsize,
    /// When the last response was done, on the server clock.
    last_done: AtomicU64,
    h2: AtomicBool,
    seen: AtomicBool,
    upgraded: AtomicBool,
    /// An HTTP/2 request arrived after the handover: send the GOAWAY now.
    pub goaway_wanted: Notify,
    /// The GOAWAY is queued; responses held for it may go.
    pub goaway_sent: CancellationToken,
}

impl ConnState {
    /// `Some(ms)` when no request is in flight and one was answered before: the idle start
    /// on the server clock.
    pub(crate) fn idle_since(&self) -> Option<u64> {
        let last = self.last_done();
        (self.in_flight.load(Ordering::Acquire) == 0 && last > 0).then_some(last)
    }

    /// No request has arrived yet: the client connected in order to send one.
    pub(crate) fn is_fresh(&self) -> bool {
        !self.seen.load(Ordering::Relaxed)
    }

    /// When the last response was done (0: none yet).
    pub(crate) fn last_done(&self) -> u64 {
        self.last_done.load(Ordering::Relaxed)
    }

    pub(crate) fn is_h2(&self) -> bool {
        self.h2.load(Ordering::Relaxed)
    }

    pub(crate) fn is_upgraded(&self) -> bool {
        self.upgraded.load(Ordering::Relaxed)
    }
}

/// One request from arrival until its response body is done.
struct InFlight {
    conn: Arc<ConnState>,
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The store precedes the decrement, so a reader that sees 0 sees the new time.
        self.conn
            .last_done
            .store(self.shared.now().max(1), Ordering::Relaxed);
        self.conn.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// The wrapped service of one connection.
pub(crate) struct LameDuck<S> {
    inner: S,
    conn: Arc<ConnState>,
    shared: Arc<Shared>,
}

impl<S> LameDuck<S> {
    pub(crate) fn new(inner: S, conn: Arc<ConnState>, shared: Arc<Shared>) -> LameDuck<S> {
        LameDuck {
            inner,
            conn,
            shared,
        }
    }
}

impl<S, B, ReqB> hyper::service::Service<Request<ReqB>> for LameDuck<S>
where
    S: hyper::service::Service<Request<ReqB>, Response = Response<B>>,
{
    type Response = Response<Body<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn call(&self, mut req: Request<ReqB>) -> Self::Future {
        let h1 = req.version() < Version::HTTP_2;
        if !h1 {
            self.conn.h2.store(true, Ordering::Relaxed);
        }
        self.conn.seen.store(true, Ordering::Relaxed);
        self.conn.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight {
            conn: self.conn.clone(),
            shared: self.shared.clone(),
        };
        let connect = req.method() == Method::CONNECT;
        req.extensions_mut().insert(self.shared.finish.clone());
        // An HTTP/2 request after the handover triggers the GOAWAY, and its response waits
        // until the GOAWAY is queued: the client, waiting for this response, reads the
        // GOAWAY first, so it cannot have queued its next request on this connection.
        let gate =
            (!h1 && self.shared.is_lame() && !self.conn.goaway_sent.is_cancelled()).then(|| {
                self.conn.goaway_wanted.notify_one();
                Box::pin(self.conn.goaway_sent.clone().cancelled_owned())
            });
        ResponseFuture {
            inner: self.inner.call(req),
            gate,
            guard: Some(guard),
            h1,
            connect,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response of the wrapped service, marked on its way out.
    pub(crate) struct ResponseFuture<F> {
        #[pin]
        inner: F,
        gate: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
        guard: Option<InFlight>,
        h1: bool,
        connect: bool,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Body<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(gate) = this.gate {
            ready!(gate.as_mut().poll(cx));
            *this.gate = None;
        }
        let mut resp = ready!(this.inner.poll(cx))?;
        let guard = this.guard.take();
        let upgrade = resp.status() == StatusCode::SWITCHING_PROTOCOLS
            || (*this.connect && resp.status().is_success());
        if let (Some(g), true) = (&guard, *this.h1) {
            if upgrade {
                // The socket now belongs to the handler; the driver must not touch it. (An
                // HTTP/2 upgrade is one stream: the connection stays hyper's.)
                g.conn.upgraded.store(true, Ordering::Relaxed);
            } else if g.shared.is_lame() {
                resp.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
            }
        }
        Poll::Ready(Ok(resp.map(|inner| Body {
            inner,
            _guard: guard,
        })))
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts as "in flight" until it is done or dropped.
    pub(crate) struct Body<B> {
        #[pin]
        inner: B,
        _guard: Option<InFlight>,
    }
}

impl<B: http_body::Body> http_body::Body for Body<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
