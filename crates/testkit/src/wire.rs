//! The JSON bodies of the API as the kit sends and reads them: transactions
//! (`Txn`, `Compare`, `Op`) and the answers (`WriteAck`, `TxnAck`,
//! `ApiError`, `Listing`, `ClusterInfo`). The server's side is `api::txn`.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// A compare of a transaction (`"test"` in the JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "test", rename_all = "snake_case")]
pub enum Test {
    ValueEq { value: String },
    ModIndexEq { mod_index: u64 },
    Exists,
    Absent,
    Ge { number: i64 },
    Le { number: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compare {
    pub key: String,
    #[serde(flatten)]
    pub test: Test,
}

impl Compare {
    pub fn new(key: impl Into<String>, test: Test) -> Compare {
        Compare {
            key: key.into(),
            test,
        }
    }
    pub fn value_eq(key: impl Into<String>, value: impl Into<String>) -> Compare {
        Compare::new(
            key,
            Test::ValueEq {
                value: value.into(),
            },
        )
    }
    pub fn mod_index_eq(key: impl Into<String>, mod_index: u64) -> Compare {
        Compare::new(key, Test::ModIndexEq { mod_index })
    }
    pub fn exists(key: impl Into<String>) -> Compare {
        Compare::new(key, Test::Exists)
    }
    pub fn absent(key: impl Into<String>) -> Compare {
        Compare::new(key, Test::Absent)
    }
    pub fn ge(key: impl Into<String>, number: i64) -> Compare {
        Compare::new(key, Test::Ge { number })
    }
    pub fn le(key: impl Into<String>, number: i64) -> Compare {
        Compare::new(key, Test::Le { number })
    }
}

/// An operation of a transaction branch (`"op"` in the JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Put { key: String, value: String },
    Delete { key: String },
    Get { key: String },
}

impl Op {
    pub fn put(key: impl Into<String>, value: impl Into<String>) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
        }
    }
    pub fn delete(key: impl Into<String>) -> Op {
        Op::Delete { key: key.into() }
    }
    pub fn get(key: impl Into<String>) -> Op {
        Op::Get { key: key.into() }
    }
}

/// The body of `POST /v1/txn`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Txn {
    pub compare: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

/// Body of an acknowledged PUT or DELETE.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WriteAck {
    pub index: u64,
    pub consistency: String,
    #[serde(default)]
    pub deleted: Option<bool>,
}

/// Body of an acknowledged transaction; `succeeded` and `results` are absent
/// for eventual ones (acknowledged before they apply).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TxnAck {
    pub index: u64,
    pub consistency: String,
    #[serde(default)]
    pub succeeded: Option<bool>,
    #[serde(default)]
    pub results: Option<Vec<OpResult>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpResult {
    Put,
    Delete {
        deleted: bool,
    },
    Get {
        key: String,
        found: bool,
        #[serde(default)]
        value: Option<String>,
        #[serde(default)]
        encoding: Option<String>,
        #[serde(default)]
        mod_index: Option<u64>,
    },
}

/// `{"error":{"code","message","current_index"?}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    /// On 412: the key's modification index (`None` when it is absent).
    #[serde(default)]
    pub current_index: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ListItem {
    pub key: String,
    pub value: String,
    pub encoding: String,
}

/// Body of `GET /v1/kv?prefix=`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Listing {
    pub items: Vec<ListItem>,
    pub more: bool,
}

/// Body of `GET /v1/cluster` (the fields the kit uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ClusterInfo {
    pub id: NodeId,
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub committed_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
}

#[derive(Deserialize)]
pub(crate) struct ErrorBody {
    pub(crate) error: ApiError,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_json_is_the_documented_shape() {
        let txn = Txn {
            compare: vec![Compare::mod_index_eq("a", 3), Compare::ge("a", 30)],
            success: vec![Op::put("a", "70")],
            failure: vec![Op::get("a")],
        };
        let json = serde_json::to_value(&txn).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "compare": [{"key": "a", "test": "mod_index_eq", "mod_index": 3},
                            {"key": "a", "test": "ge", "number": 30}],
                "success": [{"op": "put", "key": "a", "value": "70"}],
                "failure": [{"op": "get", "key": "a"}]})
        );
    }
}
