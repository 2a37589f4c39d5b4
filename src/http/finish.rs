//! The soft deadline as a handler sees it.
//!
//! A request/response handler needs nothing: the adapter finishes it. A stream — a
//! WebSocket, an SSE body, a gRPC server stream — only ends when its handler ends it, so the
//! handler takes a [`Finish`] (an axum extractor, or from a tonic request's extensions) and
//! says goodbye when it fires: a close frame, a last event, an `OK` status. Whatever is still
//! open at the hard deadline is cut.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// Fires at the soft deadline of this generation's drain. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Finish {
    token: CancellationToken,
}

impl Finish {
    /// Resolves when the handler should wind its stream down. Owns what it needs, so it can
    /// be moved into a spawned task or a `'static` stream.
    pub fn requested(&self) -> impl Future<Output = ()> + Send + use<> {
        self.token.clone().cancelled_owned()
    }

    /// Whether the soft deadline has passed.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// Wraps a token: handlers can be tested with one they cancel themselves.
impl From<CancellationToken> for Finish {
    fn from(token: CancellationToken) -> Finish {
        Finish { token }
    }
}
