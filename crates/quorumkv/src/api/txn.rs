//! `POST /v1/txn`: etcd-style transactions in JSON. The whole transaction is
//! one log entry, applied atomically in the state machine.
//!
//! ```json
//! {"compare": [{"key": "acct/a", "test": "ge", "number": 30}],
//!  "success": [{"op": "put", "key": "acct/a", "value": "70"},
//!              {"op": "put", "key": "acct/b", "value": "30"}],
//!  "failure": [{"op": "get", "key": "acct/a"}]}
//! ```

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::api::auth::Caller;
use crate::api::headers::content_length;
use crate::api::kv::{run_write, write_head};
use crate::api::AppState;
use crate::command::{Command, CommandResult, Compare, OpResult, Test, Txn, TxnOp};
use crate::config::Limits;
use crate::error::Error;
use crate::kv::{check_value, Key};
use crate::store::ConsistencyLevel;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/txn", post(txn))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnJson {
    #[serde(default)]
    compare: Vec<CompareJson>,
    #[serde(default)]
    success: Vec<OpJson>,
    #[serde(default)]
    failure: Vec<OpJson>,
}

/// One compare, flat so that unknown fields are refused (serde cannot deny
/// them through `flatten`); which fields a test needs is checked in `test()`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareJson {
    key: String,
    test: TestKind,
    value: Option<String>,
    value_base64: Option<String>,
    mod_index: Option<u64>,
    number: Option<i64>,
}

#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(rename_all = "snake_case")]
enum TestKind {
    ValueEq,
    ModIndexEq,
    Exists,
    Absent,
    Ge,
    Le,
}

impl CompareJson {
    fn test(self, limits: &Limits) -> Result<(Key, Test), Error> {
        let kind = self.test;
        let missing = |field: &str| {
            Error::InvalidBody(format!("compare test {kind:?} needs the field {field}"))
        };
        let extra = |ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidBody(format!(
                    "compare test {kind:?} has fields it does not use"
                )))
            }
        };
        let no_value = self.value.is_none() && self.value_base64.is_none();
        let test = match kind {
            TestKind::ValueEq => {
                extra(self.mod_index.is_none() && self.number.is_none())?;
                Test::ValueEquals(value_of(self.value, self.value_base64, limits)?)
            }
            TestKind::ModIndexEq => {
                extra(no_value && self.number.is_none())?;
                Test::ModIndexEquals(self.mod_index.ok_or_else(|| missing("mod_index"))?)
            }
            TestKind::Exists | TestKind::Absent => {
                extra(no_value && self.mod_index.is_none() && self.number.is_none())?;
                match kind {
                    TestKind::Exists => Test::Exists,
                    _ => Test::Absent,
                }
            }
            TestKind::Ge | TestKind::Le => {
                extra(no_value && self.mod_index.is_none())?;
                let n = self.number.ok_or_else(|| missing("number"))?;
                match kind {
                    TestKind::Ge => Test::AtLeast(n),
                    _ => Test::AtMost(n),
                }
            }
        };
        Ok((Key::parse(self.key, limits.max_key_bytes)?, test))
    }
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum OpJson {
    Put {
        key: String,
        value: Option<String>,
        value_base64: Option<String>,
    },
    Delete {
        key: String,
    },
    Get {
        key: String,
    },
}

fn value_of(value: Option<String>, b64: Option<String>, limits: &Limits) -> Result<Vec<u8>, Error> {
    let bytes = match (value, b64) {
        (Some(v), None) => v.into_bytes(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| Error::InvalidBody(format!("value_base64: {e}")))?,
        _ => {
            return Err(Error::InvalidBody(
                "give exactly one of value and value_base64".into(),
            ))
        }
    };
    check_value(&bytes, limits.max_value_bytes)?;
    Ok(bytes)
}

fn parse_txn(body: &[u8], limits: &Limits) -> Result<Txn, Error> {
    let invalid = |e: serde_json::Error| Error::InvalidBody(format!("transaction JSON: {e}"));
    // serde would also take a JSON array for a struct; a transaction is an object.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(invalid)?;
    if !value.is_object() {
        return Err(Error::InvalidBody(
            "a transaction is a JSON object: {\"compare\": [...], \"success\": [...], \"failure\": [...]}".into(),
        ));
    }
    let json: TxnJson = serde_json::from_value(value).map_err(invalid)?;
    let ops = json.compare.len() + json.success.len() + json.failure.len();
    if ops > limits.max_txn_ops {
        return Err(Error::TxnTooLarge {
            ops,
            limit: limits.max_txn_ops,
        });
    }
    let key = |k: String| Key::parse(k, limits.max_key_bytes);
    let compares = json
        .compare
        .into_iter()
        .map(|c| c.test(limits).map(|(key, test)| Compare { key, test }))
        .collect::<Result<_, Error>>()?;
    let ops = |list: Vec<OpJson>| -> Result<Vec<TxnOp>, Error> {
        list.into_iter()
            .map(|op| {
                Ok(match op {
                    OpJson::Put {
                        key: k,
                        value,
                        value_base64,
                    } => TxnOp::Put {
                        key: key(k)?,
                        value: value_of(value, value_base64, limits)?,
                    },
                    OpJson::Delete { key: k } => TxnOp::Delete { key: key(k)? },
                    OpJson::Get { key: k } => TxnOp::Get { key: key(k)? },
                })
            })
            .collect()
    };
    Ok(Txn {
        compares,
        success: ops(json.success)?,
        failure: ops(json.failure)?,
        max_get_bytes: Some(limits.max_response_bytes as u64),
    })
}

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum OpResultJson {
    Put,
    Delete {
        deleted: bool,
    },
    Get {
        key: String,
        found: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        encoding: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mod_index: Option<u64>,
    },
}

impl From<OpResult> for OpResultJson {
    fn from(r: OpResult) -> Self {
        match r {
            OpResult::Put => OpResultJson::Put,
            OpResult::Delete { existed } => OpResultJson::Delete { deleted: existed },
            OpResult::Get { key, value: None } => OpResultJson::Get {
                key: key.to_string(),
                found: false,
                value: None,
                encoding: None,
                mod_index: None,
            },
            OpResult::Get {
                key,
                value: Some(v),
            } => {
                let (value, encoding) = match String::from_utf8(v.value) {
                    Ok(s) => (s, "utf8"),
                    Err(e) => (
                        base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                        "base64",
                    ),
                };
                OpResultJson::Get {
                    key: key.to_string(),
                    found: true,
                    value: Some(value),
                    encoding: Some(encoding),
                    mod_index: Some(v.mod_index),
                }
            }
        }
    }
}

#[derive(Serialize)]
struct TxnBody {
    index: u64,
    consistency: ConsistencyLevel,
    /// Absent for eventual transactions: they are acknowledged before they apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    succeeded: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<OpResultJson>>,
}

async fn txn(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Error> {
    let limits = state.store.config.limits;
    let body = body.map_err(|e| {
        Error::body_rejected(
            e,
            content_length(&headers),
            limits.max_value_bytes,
            "request body",
        )
    })?;
    let txn = parse_txn(&body, &limits)?;
    let (level, outcome) = run_write(&state, &caller, &headers, Command::Txn(txn)).await?;
    let (status, head) = write_head(&state, level, &outcome);
    let (succeeded, results) = match outcome.result {
        Some(CommandResult::Txn { succeeded, results }) => (
            Some(succeeded),
            Some(results.into_iter().map(OpResultJson::from).collect()),
        ),
        _ => (None, None),
    };
    let body = TxnBody {
        index: outcome.index,
        consistency: level,
        succeeded,
        results,
    };
    Ok((status, head, Json(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_key_bytes: 16,
            max_value_bytes: 8,
            max_txn_ops: 4,
            max_response_bytes: 1024,
        }
    }

    #[test]
    fn parses_every_compare_and_op() {
        let body = br#"{"compare":[
            {"key":"a","test":"value_eq","value":"1"},
            {"key":"a","test":"mod_index_eq","mod_index":3},
            {"key":"b","test":"absent"}],
          "success":[{"op":"put","key":"b","value_base64":"AP8="}],
          "failure":[]}"#;
        let t = parse_txn(body, &limits()).unwrap();
        assert_eq!(t.compares.len(), 3);
        assert_eq!(t.compares[1].test, Test::ModIndexEquals(3));
        assert_eq!(
            t.success[0],
            TxnOp::Put {
                key: Key::parse("b".into(), 16).unwrap(),
                value: vec![0, 255]
            }
        );
    }

    #[test]
    fn rejects_malformed_and_oversized() {
        let l = limits();
        let err = |b: &[u8]| parse_txn(b, &l).unwrap_err().code().to_string();
        assert_eq!(err(b"not json"), "invalid_body");
        assert_eq!(
            err(br#"{"compare":[{"key":"a","test":"near"}]}"#),
            "invalid_body"
        );
        assert_eq!(
            err(br#"{"success":[{"op":"put","key":"a"}]}"#),
            "invalid_body"
        );
        assert_eq!(
            err(br#"{"success":[{"op":"get","key":""}]}"#),
            "invalid_key"
        );
        assert_eq!(
            err(br#"{"success":[{"op":"put","key":"a","value":"123456789"}]}"#),
            "value_too_large"
        );
        assert_eq!(
            err(br#"{"success":[{"op":"get","key":"aaaaaaaaaaaaaaaaa"}]}"#),
            "key_too_large"
        );
        let five = r#"{"op":"get","key":"a"}"#.repeat(5).replace("}{", "},{");
        assert_eq!(
            err(format!(r#"{{"success":[{five}]}}"#).as_bytes()),
            "txn_too_large"
        );
        assert_eq!(err(br#"{"succes":[]}"#), "invalid_body");
        assert_eq!(err(b"[]"), "invalid_body");
        assert_eq!(
            err(br#"{"compare":[{"key":"a","test":"absent","numbr":3}]}"#),
            "invalid_body"
        );
        assert_eq!(
            err(br#"{"compare":[{"key":"a","test":"absent","value":"x"}]}"#),
            "invalid_body"
        );
        assert_eq!(
            err(br#"{"compare":[{"key":"a","test":"ge"}]}"#),
            "invalid_body"
        );
    }

    proptest::proptest! {
        /// Any body: a transaction within the limits, or an error; never a panic.
        #[test]
        fn any_body_parses_or_is_refused(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(txn) = parse_txn(&body, &limits()) {
                let ops = txn.compares.len() + txn.success.len() + txn.failure.len();
                proptest::prop_assert!(ops <= limits().max_txn_ops);
            }
        }

        /// JSON-shaped bodies reach deeper than random bytes do.
        #[test]
        fn any_json_shaped_body_parses_or_is_refused(
            key in "[a-z/]{0,20}",
            op in "(put|get|delete|nope)",
            test in "(value_eq|mod_index_eq|exists|absent|ge|le|bogus)",
            number in proptest::prelude::any::<i64>(),
        ) {
            let body = format!(
                r#"{{"compare":[{{"key":"{key}","test":"{test}","number":{number},"mod_index":3}}],"success":[{{"op":"{op}","key":"{key}","value":"v"}}]}}"#
            );
            let _ = parse_txn(body.as_bytes(), &limits());
        }
    }
}
