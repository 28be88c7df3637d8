//! Malformed transactions get a clear 4xx with a JSON error body saying
//! what is wrong, and none of them reaches the log.

use std::time::Instant;

use quorumkv_testkit::Opts;

use crate::harness::{secs, within, Cluster, POLL};
use crate::http::{api_error, sent, status};

const LIMITS: [&str; 6] = [
    "--max-txn-ops",
    "4",
    "--max-value-bytes",
    "1024",
    "--max-key-bytes",
    "16",
];

#[tokio::test(flavor = "multi_thread")]
async fn malformed_transactions_get_a_clear_4xx_and_never_reach_the_log() {
    within(secs(60), async {
        let c = Cluster::start_with(1, &LIMITS).await;
        let k = c.client(c.leader(secs(10)).await);
        let put = sent(k.put("k", "v", &Opts::new()).await);
        let index = status(&put, 200).write_ack().unwrap().index;
        // /v1/cluster reports from Raft's metrics, which trail the apply a little.
        let deadline = Instant::now() + secs(10);
        let log = loop {
            let info = k.cluster_info().await.unwrap();
            if info.applied_index >= Some(index) || Instant::now() > deadline {
                break (info.last_log_index, info.applied_index);
            }
            tokio::time::sleep(POLL).await;
        };
        assert_eq!(log, (Some(index), Some(index)));
        let big_value = "x".repeat(1025);
        let big_body = format!(
            r#"{{"success":[{{"op":"put","key":"k","value":"{}"}}]}}"#,
            "y".repeat(4000)
        );
        let five_ops = r#"{"op":"get","key":"k"}"#.repeat(5).replace("}{", "},{");
        let cases: Vec<(String, u16, &str)> = vec![
            ("not json".into(), 400, "invalid_body"),
            ("".into(), 400, "invalid_body"),
            (
                r#"{"success":[{"op":"put","key":"k","value":"1"}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"success":[{"op":"frob","key":"k"}]}"#.into(),
                400,
                "invalid_body",
            ),
            (r#"{"success":[{"key":"k"}]}"#.into(), 400, "invalid_body"),
            (
                r#"{"compare":[{"key":"k","test":"near"}]}"#.into(),
                400,
                "invalid_body",
            ),
            (r#"{"compare":[{"key":"k"}]}"#.into(), 400, "invalid_body"),
            (
                r#"{"compare":[{"test":"exists"}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"compare":[{"key":"k","test":"value_eq"}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"compare":[{"key":"k","test":"ge"}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"success":[{"op":"put","key":"k"}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"success":[{"op":"put","key":"k","value":"1","value_base64":"MQ=="}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"success":[{"op":"put","key":"k","value_base64":"!!"}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"success":[{"op":"get","key":""}]}"#.into(),
                400,
                "invalid_key",
            ),
            (
                r#"{"compare":[{"key":"","test":"exists"}]}"#.into(),
                400,
                "invalid_key",
            ),
            (
                r#"{"success":[{"op":"get","key":5}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"success":[{"op":"put","key":"k","value":7}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"compare":[{"key":"k","test":"ge","number":"5"}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"compare":[{"key":"k","test":"le","number":1.5}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"compare":[{"key":"k","test":"mod_index_eq","mod_index":-1}]}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"success":{"op":"get","key":"k"}}"#.into(),
                400,
                "invalid_body",
            ),
            (
                r#"{"success":[{"op":"get","key":"k","x":1}]}"#.into(),
                400,
                "invalid_body",
            ),
            (r#"{"succes":[]}"#.into(), 400, "invalid_body"),
            (r#""txn""#.into(), 400, "invalid_body"),
            (
                format!(r#"{{"success":[{five_ops}]}}"#),
                413,
                "txn_too_large",
            ),
            (
                format!(r#"{{"success":[{{"op":"put","key":"k","value":"{big_value}"}}]}}"#),
                413,
                "value_too_large",
            ),
            (big_body, 413, "value_too_large"),
            (
                r#"{"success":[{"op":"get","key":"aaaaaaaaaaaaaaaaa"}]}"#.into(),
                413,
                "key_too_large",
            ),
        ];
        for (body, code_status, code) in cases {
            let r = sent(k.txn_raw(body.clone(), &Opts::new()).await);
            let shown = &body[..body.len().min(80)];
            assert_eq!(r.status, code_status, "body {shown}: {r:?}");
            let e = api_error(&r, code_status, code);
            assert!(e.message.len() > 10, "terse message for {shown}: {r:?}");
        }
        let r = sent(
            k.request(reqwest::Method::GET, "/v1/txn", &Opts::new(), "")
                .await,
        );
        api_error(&r, 405, "method_not_allowed");
        let r = sent(
            k.txn_raw("{}", &Opts::new().header("idempotency-key", ""))
                .await,
        );
        api_error(&r, 400, "invalid_header");

        let info = k.cluster_info().await.unwrap();
        assert_eq!(
            (info.last_log_index, info.applied_index),
            log,
            "something reached the log"
        );
        let r = sent(k.get("k", &Opts::strong()).await);
        assert_eq!(status(&r, 200).text(), "v");
    })
    .await;
}
