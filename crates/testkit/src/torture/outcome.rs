//! How an answer (or its absence) becomes a history completion: `ok`, `fail`
//! (it definitely did not happen) or `info` (it may or may not have).
//!
//! The rule, for every operation of the workload:
//!
//! | answer | completion |
//! |---|---|
//! | 2xx (a txn: `succeeded` says ok or fail) | `ok` |
//! | 400, 404, 412, 413, 422 | `fail` (a strong read's 404 `key_not_found` is an `ok` read of nothing) |
//! | 503 `no_leader` or `not_leader` on a **write** | `fail` (see below) |
//! | connection refused / connect timeout | `fail`: nothing was sent |
//! | any other 5xx, a timeout, a reset, a body cut short | `info` |
//!
//! Why `no_leader` is a definite failure of a write (read in src/store/):
//! `Store::write` runs `on_leader`, which answers `no_leader` only when no
//! leader became known before `--leader-wait-ms`, or when every attempt it
//! made ended in `Attempt::Retry`. An attempt ends in `Retry` only if (a) the
//! forward to the leader failed to *connect* (`CallError::Unreachable`:
//! nothing sent), (b) the leader answered `not_leader`, or (c) the local
//! proposal was rejected with openraft's `ForwardToLeader`. openraft 0.9.25
//! sends that in two places: when the node is not leader as the write arrives
//! (nothing appended), and from `Command::DeleteConflictLog`, when the
//! proposal's entry was appended but then truncated by a newer leader whose
//! log differs there. Every other outcome of an attempt (`forward_failed`,
//! `write_timeout`, a dropped answer) ends the loop with an error that is not
//! `no_leader`. A truncated entry cannot be committed later in a cluster of
//! three voters: the leader that truncated it lacked it and won its election
//! with the vote of a node no more up to date, so no node but the truncated
//! one held it, and none does now. (With five voters it can: two nodes may
//! hold it while a leader lacking it wins with the other two, truncates it on
//! one, and dies; the other may then win and commit it, after `Store::write`
//! retried the write on another leader. So this rule, and the server's retry,
//! are sound for three voters only.) So here `no_leader` means the write was
//! not, and will never be, applied. `not_leader` never reaches a client on
//! the write path (followers retry it); it is listed for safety.
//! A harness run with `--no-leader-is-info` treats both as `info` instead.

use crate::checker::Phase;
use crate::{Error, Response};

/// What the client saw of one request.
pub enum Answer<'a> {
    Response(&'a Response),
    Transport(&'a Error),
}

/// The completion of an operation and why (for `fail`/`info`, the record's `error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub phase: Phase,
    pub why: Option<String>,
}

impl Completion {
    fn ok() -> Self {
        Completion {
            phase: Phase::Ok,
            why: None,
        }
    }

    fn fail(why: String) -> Self {
        Completion {
            phase: Phase::Fail,
            why: Some(why),
        }
    }

    fn info(why: String) -> Self {
        Completion {
            phase: Phase::Info,
            why: Some(why),
        }
    }
}

/// Which rule applies: reads never change anything, so only writes need
/// the `no_leader` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
}

/// The classification rule of this module, with `no_leader` on writes
/// counted as `fail` unless `no_leader_is_info`.
pub fn classify(answer: Answer<'_>, kind: Kind, no_leader_is_info: bool) -> Completion {
    let resp = match answer {
        Answer::Transport(e) => return transport(e),
        Answer::Response(r) => r,
    };
    let status = resp.status.as_u16();
    let code = resp.api_error().map(|e| e.code).unwrap_or_default();
    let why = format!("{status} {code}");
    match status {
        200..=299 => Completion::ok(),
        404 if kind == Kind::Read && code == "key_not_found" => Completion::ok(),
        400 | 404 | 412 | 413 | 422 => Completion::fail(why),
        503 if kind == Kind::Write
            && !no_leader_is_info
            && (code == "no_leader" || code == "not_leader") =>
        {
            Completion::fail(why)
        }
        _ => Completion::info(why),
    }
}

/// A transport error: `fail` only if the connection was never made.
fn transport(e: &Error) -> Completion {
    match e {
        Error::Http(h) if h.is_connect() => Completion::fail(format!("connect: {h}")),
        Error::Http(h) if h.is_timeout() => Completion::info("timeout".into()),
        other => Completion::info(other.to_string()),
    }
}

/// A short label of an answer for the status tallies: `200`, `503 no_leader`,
/// `timeout`, `connect`, `reset`.
pub fn label(answer: Answer<'_>) -> String {
    match answer {
        Answer::Response(r) => match r.api_error() {
            Some(e) if !r.status.is_success() => format!("{} {}", r.status.as_u16(), e.code),
            _ => r.status.as_u16().to_string(),
        },
        Answer::Transport(Error::Http(h)) if h.is_connect() => "connect".into(),
        Answer::Transport(Error::Http(h)) if h.is_timeout() => "timeout".into(),
        Answer::Transport(_) => "transport".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use reqwest::header::HeaderMap;
    use reqwest::StatusCode;

    fn resp(status: u16, code: &str) -> Response {
        let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        Response {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body),
        }
    }

    fn phase(status: u16, code: &str, kind: Kind) -> Phase {
        classify(Answer::Response(&resp(status, code)), kind, false).phase
    }

    #[test]
    fn the_rule() {
        assert_eq!(phase(200, "", Kind::Write), Phase::Ok);
        assert_eq!(phase(404, "key_not_found", Kind::Read), Phase::Ok);
        assert_eq!(phase(412, "precondition_failed", Kind::Write), Phase::Fail);
        assert_eq!(phase(503, "no_leader", Kind::Write), Phase::Fail);
        assert_eq!(phase(503, "no_leader", Kind::Read), Phase::Info);
        assert_eq!(phase(503, "forward_failed", Kind::Write), Phase::Info);
        assert_eq!(phase(504, "write_timeout", Kind::Write), Phase::Info);
        assert_eq!(phase(500, "internal", Kind::Write), Phase::Info);
        let r = resp(503, "no_leader");
        let c = classify(Answer::Response(&r), Kind::Write, true);
        assert_eq!(c.phase, Phase::Info);
        assert_eq!(label(Answer::Response(&r)), "503 no_leader");
    }
}
