//! How a request can go wrong ([`FailureKind`]) and why one may be sent twice
//! ([`RetryReason`]): the vocabulary of every table and JSON report the load client feeds.
//!
//! The retry rule, which the whole "honest measurement" claim rests on:
//!
//! - **A request lost on a reused connection is a failure** ([`FailureKind::KeepAliveClosed`]).
//!   The server closed (FIN, RST, or HTTP/2 connection loss) a connection that had already
//!   answered a request, while the next request was on the wire and before any byte of its
//!   answer. HTTP/1.1 lets a client retry such a request only if it is idempotent
//!   (RFC 9112 §9.3.1); a POST is lost for good, and `wrk`, proxies and most client libraries do
//!   not retry at all. The load client retries it once on a fresh connection only when asked
//!   (`retry_idempotent`), and then counts it as [`RetryReason::KeepAliveClosed`].
//! - **An HTTP/2 stream the server provably never processed is retried, and counted.**
//!   RFC 9113 §8.7 guarantees two cases: the stream's id is above the last-stream-id of a
//!   GOAWAY ([`RetryReason::RefusedByGoaway`], §6.8), or the server reset it with
//!   REFUSED_STREAM ([`RetryReason::RefusedStream`]). Every HTTP/2 client retries those, so
//!   the load client does too, without any option — but it counts each one. A stream at or
//!   below the GOAWAY's last-stream-id may have been processed: if it does not complete, it
//!   is a failure, never a retry.
//! - **A retry is never silent.** The report counts retries per reason, the tables show them
//!   whenever there are any, and a run with retries is not clean unless the caller accepted
//!   retries (`accept_retries`); `exuvia check` fails on them by default.
use std::fmt;

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum FailureKind {
    /// ECONNREFUSED, or ENOENT for a Unix path: nobody was listening.
    Refused,
    /// ECONNRESET / EPIPE / ECONNABORTED: the connection was torn down.
    Reset,
    /// The request did not complete within the per-request timeout.
    Timeout,
    /// The peer closed the connection before the full answer arrived.
    EofMidRequest,
    /// A reused connection (HTTP/1.1 keep-alive, HTTP/2) was closed under a request before
    /// any byte of its answer: the race a lame-duck server must avoid (see the module docs).
    KeepAliveClosed,
    /// HTTP/2: the server reset the stream (RST_STREAM other than REFUSED_STREAM), or refused
    /// it more often than the client retries.
    StreamReset,
    /// WebSocket: the connection ended (EOF) without a close frame.
    NoCloseFrame,
    /// WebSocket: a close frame arrived while a message still waited for its echo, so the
    /// message was lost.
    UnansweredAtClose,
    /// The answer arrived but differs from what was expected (or is malformed); WebSocket:
    /// a lost or reordered echo, or a close frame with an error status.
    WrongAnswer,
    /// An HTTP status of 500 or more.
    Http5xx,
    /// Anything else; [`super::Failure::error`] has the text.
    Other,
}

impl FailureKind {
    /// Every kind, in the order of tables.
    pub const ALL: [FailureKind; 11] = [
        FailureKind::Refused,
        FailureKind::Reset,
        FailureKind::Timeout,
        FailureKind::EofMidRequest,
        FailureKind::KeepAliveClosed,
        FailureKind::StreamReset,
        FailureKind::NoCloseFrame,
        FailureKind::UnansweredAtClose,
        FailureKind::WrongAnswer,
        FailureKind::Http5xx,
        FailureKind::Other,
    ];

    /// Short name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
            FailureKind::EofMidRequest => "eof-mid-request",
            FailureKind::KeepAliveClosed => "keep-alive-closed",
            FailureKind::StreamReset => "stream-reset",
            FailureKind::NoCloseFrame => "no-close-frame",
            FailureKind::UnansweredAtClose => "unanswered-at-close",
            FailureKind::WrongAnswer => "wrong-answer",
            FailureKind::Http5xx => "http-5xx",
            FailureKind::Other => "other",
        }
    }

    /// One line for a person reading a table.
    pub fn describe(self) -> &'static str {
        match self {
            FailureKind::Refused => "connection refused: nobody was listening",
            FailureKind::Reset => "connection reset",
            FailureKind::Timeout => "no answer within the request timeout",
            FailureKind::EofMidRequest => "connection closed before the full answer",
            FailureKind::KeepAliveClosed => "keep-alive connection closed under a request",
            FailureKind::StreamReset => "HTTP/2 stream reset by the server",
            FailureKind::NoCloseFrame => "WebSocket ended without a close frame",
            FailureKind::UnansweredAtClose => "WebSocket closed with a message unanswered",
            FailureKind::WrongAnswer => "wrong, lost or reordered answer",
            FailureKind::Http5xx => "HTTP status 500 or more",
            FailureKind::Other => "other error",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a request was sent a second time (see the module docs for when that happens).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum RetryReason {
    /// Opt-in (`retry_idempotent`): a reused connection was closed under the request before
    /// any byte of its answer; a client that does not retry saw a failure.
    KeepAliveClosed,
    /// HTTP/2: the stream id was above the last-stream-id of the server's GOAWAY, so the
    /// server guarantees it was not processed (RFC 9113 §6.8, §8.7).
    RefusedByGoaway,
    /// HTTP/2: the server reset the stream with REFUSED_STREAM before processing it
    /// (RFC 9113 §8.7).
    RefusedStream,
}

impl RetryReason {
    /// Every reason, in the order of tables.
    pub const ALL: [RetryReason; 3] = [
        RetryReason::KeepAliveClosed,
        RetryReason::RefusedByGoaway,
        RetryReason::RefusedStream,
    ];

    /// Short name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            RetryReason::KeepAliveClosed => "keep-alive-closed",
            RetryReason::RefusedByGoaway => "refused-by-goaway",
            RetryReason::RefusedStream => "refused-stream",
        }
    }

    /// What tables print: `retried (refused by GOAWAY)`.
    pub fn label(self) -> &'static str {
        match self {
            RetryReason::KeepAliveClosed => "retried (keep-alive connection closed)",
            RetryReason::RefusedByGoaway => "retried (refused by GOAWAY)",
            RetryReason::RefusedStream => "retried (refused by REFUSED_STREAM)",
        }
    }
}

impl fmt::Display for RetryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
