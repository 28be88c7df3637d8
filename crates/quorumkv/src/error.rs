//! The one error type of the library and its one mapping to HTTP:
//! status code + `{"error":{"code","message"}}`.

use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::api::headers::Head;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid X-Consistency {0:?}: valid values are strong, eventual, all")]
    InvalidConsistency(String),
    #[error("X-Consistency: all applies to writes only; reads take strong or eventual")]
    AllOnRead,
    #[error("invalid header {name}: {reason}")]
    InvalidHeader { name: &'static str, reason: String },
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    #[error("invalid request body: {0}")]
    InvalidBody(String),
    #[error("key {0:?} not found")]
    KeyNotFound(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("cluster mismatch: {0}")]
    ClusterMismatch(String),
    #[error("lease {0} not found (never granted, expired or revoked)")]
    LeaseNotFound(u64),
    #[error("changes from index {from} are no longer kept (--watch-history); the oldest a watch can start from is {oldest}: read the current state, then watch from its index + 1")]
    Compacted { from: u64, oldest: u64 },
    #[error("incarnation mismatch: {0}")]
    IncarnationMismatch(String),
    #[error("node {0} is not a member")]
    MemberNotFound(u64),
    #[error("{0}")]
    MemberConflict(String),
    #[error("{0}")]
    MemberUnverified(String),
    #[error("learner {id} lags {} entries behind the leader; it may be promoted within {max}", .lag.map_or("an unknown number of".into(), |l| l.to_string()))]
    LearnerLagging { id: u64, lag: Option<u64>, max: u64 },
    #[error("refused: {0}")]
    WouldLoseQuorum(String),
    #[error("the answer would exceed --max-response-bytes ({limit}): {what}")]
    ResponseTooLarge { what: String, limit: usize },
    #[error(
        "request not answered within --request-timeout-ms ({0:?}); a write's outcome is unknown"
    )]
    RequestTimeout(Duration),
    #[error("node overloaded: {0}; retry shortly")]
    Overloaded(String),
    #[error("quota exceeded: {0}; deletes and reads still work")]
    QuotaExceeded(String),
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method {0} not allowed here")]
    MethodNotAllowed(String),
    #[error("key is {len} bytes; limit is {limit}")]
    KeyTooLarge { len: usize, limit: usize },
    #[error("value is {len} bytes; limit is {limit}")]
    ValueTooLarge { len: usize, limit: usize },
    #[error("{what} is {} bytes; limit is {limit}", .len.map_or("over the limit of".into(), |l| l.to_string()))]
    BodyTooLarge {
        what: &'static str,
        len: Option<usize>,
        limit: usize,
    },
    #[error("precondition failed: key is {}", match .current { Some(i) => format!("at modification index {i}"), None => "absent".into() })]
    PreconditionFailed {
        current: Option<u64>,
        index: u64,
        replayed: bool,
    },
    #[error("Idempotency-Key {0:?} was already used for a different request")]
    IdempotencyKeyReused(String),
    #[error("transaction has {ops} compares and operations; limit is {limit}")]
    TxnTooLarge { ops: usize, limit: usize },
    #[error("no leader elected within {0:?}")]
    NoLeader(Duration),
    #[error("could not confirm leadership with a quorum: {0}")]
    NoQuorum(String),
    #[error("replica last heard from a leader {last_contact} ago, over the allowed {max:?}")]
    StaleReplica { last_contact: String, max: Duration },
    #[error("write not acknowledged within {0:?}; its outcome is unknown")]
    WriteTimeout(Duration),
    #[error("could not reach the leader ({0}); a write's outcome is unknown")]
    ForwardFailed(String),
    #[error("applied index did not reach {want} within {waited:?} (at {applied})")]
    MinIndexTimeout {
        want: u64,
        applied: u64,
        waited: Duration,
    },
    #[error("this node did not apply the leader's read index {index} within {waited:?} (it is at {applied}); the read was not served")]
    ReadIndexTimeout {
        index: u64,
        applied: u64,
        waited: Duration,
    },
    #[error(
        "committed at index {index}, but not yet applied on node(s) {missing:?} within {waited:?}"
    )]
    NotFullyReplicated {
        index: u64,
        missing: Vec<u64>,
        waited: Duration,
    },
    #[error("node is not ready: {0}")]
    NotReady(String),
    #[error("node is shutting down")]
    ShuttingDown,
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// An error that another node answered, passed on unchanged.
    #[error("{}", .0.message)]
    Remote(WireError),
}

/// An error as it crosses the wire between nodes (forwarded writes, read index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Error {
    pub fn status(&self) -> StatusCode {
        use Error::*;
        match self {
            InvalidConsistency(_)
            | AllOnRead
            | InvalidHeader { .. }
            | InvalidKey(_)
            | InvalidQuery(_)
            | InvalidBody(_) => StatusCode::BAD_REQUEST,
            Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Forbidden(_) => StatusCode::FORBIDDEN,
            ClusterMismatch(_)
            | IncarnationMismatch(_)
            | MemberConflict(_)
            | MemberUnverified(_)
            | LearnerLagging { .. }
            | WouldLoseQuorum(_) => StatusCode::CONFLICT,
            MemberNotFound(_) | LeaseNotFound(_) => StatusCode::NOT_FOUND,
            Compacted { .. } => StatusCode::GONE,
            RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
            KeyNotFound(_) | RouteNotFound(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            IdempotencyKeyReused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            KeyTooLarge { .. }
            | ValueTooLarge { .. }
            | BodyTooLarge { .. }
            | ResponseTooLarge { .. }
            | TxnTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Overloaded(_)
            | NoLeader(_)
            | NoQuorum(_)
            | StaleReplica { .. }
            | ForwardFailed(_)
            | NotReady(_)
            | ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            MinIndexTimeout { .. }
            | ReadIndexTimeout { .. }
            | NotFullyReplicated { .. }
            | WriteTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Storage(_) | Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Remote(w) => StatusCode::from_u16(w.status).unwrap_or(StatusCode::BAD_GATEWAY),
        }
    }

    pub fn code(&self) -> &str {
        use Error::*;
        match self {
            InvalidConsistency(_) | AllOnRead => "invalid_consistency",
            InvalidHeader { .. } => "invalid_header",
            InvalidKey(_) => "invalid_key",
            InvalidQuery(_) => "invalid_query",
            InvalidBody(_) => "invalid_body",
            KeyNotFound(_) => "key_not_found",
            RouteNotFound(_) => "not_found",
            Unauthorized(_) => "unauthorized",
            Forbidden(_) => "forbidden",
            ClusterMismatch(_) => "cluster_mismatch",
            IncarnationMismatch(_) => "incarnation_mismatch",
            MemberNotFound(_) => "member_not_found",
            LeaseNotFound(_) => "lease_not_found",
            Compacted { .. } => "compacted",
            MemberConflict(_) => "member_conflict",
            MemberUnverified(_) => "member_unverified",
            LearnerLagging { .. } => "learner_lagging",
            WouldLoseQuorum(_) => "would_lose_quorum",
            ResponseTooLarge { .. } => "response_too_large",
            Overloaded(_) => "overloaded",
            RequestTimeout(_) => "request_timeout",
            QuotaExceeded(_) => "quota_exceeded",
            MethodNotAllowed(_) => "method_not_allowed",
            PreconditionFailed { .. } => "precondition_failed",
            IdempotencyKeyReused(_) => "idempotency_key_reused",
            TxnTooLarge { .. } => "txn_too_large",
            KeyTooLarge { .. } => "key_too_large",
            ValueTooLarge { .. } | BodyTooLarge { .. } => "value_too_large",
            NoLeader(_) => "no_leader",
            WriteTimeout(_) => "write_timeout",
            NoQuorum(_) => "no_quorum",
            StaleReplica { .. } => "stale_replica",
            ForwardFailed(_) => "forward_failed",
            MinIndexTimeout { .. } => "min_index_timeout",
            ReadIndexTimeout { .. } => "read_index_timeout",
            NotFullyReplicated { .. } => "not_fully_replicated",
            NotReady(_) => "not_ready",
            ShuttingDown => "shutting_down",
            Storage(_) => "internal",
            Internal(_) => "internal",
            Remote(w) => &w.code,
        }
    }

    /// A request body axum refused: over `limit` (cut off before all of it
    /// was read; `content_length` is the size the request claimed, if known),
    /// or unreadable.
    pub fn body_rejected(
        e: BytesRejection,
        content_length: Option<usize>,
        limit: usize,
        what: &'static str,
    ) -> Error {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::BodyTooLarge {
                what,
                len: content_length,
                limit,
            }
        } else {
            Error::InvalidBody(e.body_text())
        }
    }

    pub fn to_wire(&self) -> WireError {
        WireError {
            status: self.status().as_u16(),
            code: self.code().to_string(),
            message: self.to_string(),
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'a str,
    message: String,
    /// On 412: the key's modification index now (null when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    current_index: Option<Option<u64>>,
    /// On 410: the oldest index a watch can start from.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_index: Option<u64>,
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status().is_server_error() {
            tracing::warn!(code = self.code(), "{self}");
        } else {
            tracing::debug!(code = self.code(), "{self}");
        }
        let (current_index, index, replayed) = match &self {
            Error::PreconditionFailed {
                current,
                index,
                replayed,
            } => (Some(*current), Some(*index), *replayed),
            _ => (None, None, false),
        };
        let body = Body {
            error: Detail {
                code: self.code(),
                message: self.to_string(),
                current_index,
                oldest_index: match &self {
                    Error::Compacted { oldest, .. } => Some(*oldest),
                    _ => None,
                },
            },
        };
        let head = match index {
            Some(index) => Head::new().raft_index(index).replayed(replayed),
            None => Head::new(),
        };
        let mut head = head.into_map();
        match self.code() {
            // When to come back: a queue drains, an election ends, within a second.
            "overloaded" | "no_leader" | "shutting_down" => {
                head.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            "unauthorized" => {
                head.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        (self.status(), head, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_keeps_status_and_code() {
        let e = Error::NoLeader(Duration::from_secs(3));
        let back = Error::Remote(e.to_wire());
        assert_eq!(back.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(back.code(), "no_leader");
        assert_eq!(back.to_string(), e.to_string());
    }

    #[test]
    fn invalid_consistency_lists_valid_values() {
        let msg = Error::InvalidConsistency("weak".into()).to_string();
        for v in ["strong", "eventual", "all"] {
            assert!(msg.contains(v));
        }
    }
}
