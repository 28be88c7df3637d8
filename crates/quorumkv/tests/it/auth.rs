//! Client tokens from `--auth-file` against a real cluster: 401 without a
//! known token, 403 beyond a token's role or prefixes (a transaction checked
//! key by key before it reaches the log), idempotency keys scoped per token,
//! and a SIGHUP reload on every node that adds and revokes tokens, keeping
//! the old ones when the new file is bad.

use std::time::Instant;

use reqwest::Method;

use crate::harness::{secs, within, Cluster, NodeId, Options, POLL};
use crate::http::Resp;

const OPS: &str = "ops-secret-0123456789";
const FEEDS: &str = "feeds-secret-0123456789";
const VIEWER: &str = "viewer-secret-0123456789";
const NEWBIE: &str = "newbie-secret-0123456789";

fn auth_file(with_feeds: bool, with_newbie: bool) -> String {
    let mut text = format!(
        "[[token]]\nname = \"ops\"\nsecret = \"{OPS}\"\nrole = \"admin\"\n\n\
         [[token]]\nname = \"viewer\"\nsecret = \"{VIEWER}\"\nrole = \"read\"\n"
    );
    if with_feeds {
        text += &format!(
            "\n[[token]]\nname = \"feeds\"\nsecret = \"{FEEDS}\"\nrole = \"write\"\nprefixes = [\"feeds/\"]\n"
        );
    }
    if with_newbie {
        text +=
            &format!("\n[[token]]\nname = \"newbie\"\nsecret = \"{NEWBIE}\"\nrole = \"write\"\n");
    }
    text
}

async fn as_(
    c: &Cluster,
    id: NodeId,
    secret: Option<&str>,
    method: Method,
    path: &str,
    extra: &[(&str, &str)],
    body: &str,
) -> Resp {
    let bearer = secret.map(|s| format!("Bearer {s}")).unwrap_or_default();
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    c.call(id, method, path, &headers, body.as_bytes().to_vec())
        .await
}

#[track_caller]
fn refused(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.error_code(), code, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_roles_and_prefixes_are_enforced() {
    within(secs(120), async {
        let opts = Options {
            auth_file: Some(auth_file(true, false)),
            client_token: Some(OPS.into()),
            ..Options::default()
        };
        let c = Cluster::start_opts(3, opts).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        c.put_ok(leader, "bank/a", "100").await;

        for id in [leader, follower] {
            // No token, a wrong one: 401, with the probes left open.
            let r = as_(&c, id, None, Method::GET, "/v1/kv/bank/a", &[], "").await;
            refused(&r, 401, "unauthorized");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{r:?}");
            let wrong = Some("wrong-secret-0123456789");
            let r = as_(&c, id, wrong, Method::PUT, "/v1/kv/bank/a", &[], "0").await;
            refused(&r, 401, "unauthorized");
            let r = as_(&c, id, None, Method::GET, "/v1/cluster", &[], "").await;
            refused(&r, 401, "unauthorized");
            as_(&c, id, None, Method::GET, "/health", &[], "").await.expect(200);
            as_(&c, id, None, Method::GET, "/ready", &[], "").await.expect(200);

            // read: reads, scans, read-only transactions; no writes.
            let v = Some(VIEWER);
            as_(&c, id, v, Method::GET, "/v1/kv/bank/a", &[], "").await.expect(200);
            as_(&c, id, v, Method::GET, "/v1/kv?prefix=bank/", &[], "").await.expect(200);
            let r = as_(&c, id, v, Method::PUT, "/v1/kv/bank/a", &[], "0").await;
            refused(&r, 403, "forbidden");
            let r = as_(&c, id, v, Method::DELETE, "/v1/kv/bank/a", &[], "").await;
            refused(&r, 403, "forbidden");
            let read_only = r#"{"compare":[{"key":"bank/a","test":"exists"}],"success":[{"op":"get","key":"bank/a"}]}"#;
            as_(&c, id, v, Method::POST, "/v1/txn", &[], read_only).await.expect(200);

            // write under feeds/ only: every key of a transaction is checked.
            let f = Some(FEEDS);
            as_(&c, id, f, Method::PUT, "/v1/kv/feeds/1", &[], "post").await.expect(200);
            as_(&c, id, f, Method::GET, "/v1/kv?prefix=feeds/", &[], "").await.expect(200);
            let r = as_(&c, id, f, Method::GET, "/v1/kv/bank/a", &[], "").await;
            refused(&r, 403, "forbidden");
            let r = as_(&c, id, f, Method::GET, "/v1/kv?prefix=", &[], "").await;
            refused(&r, 403, "forbidden");
            let r = as_(&c, id, f, Method::PUT, "/v1/kv/bank/a", &[], "0").await;
            refused(&r, 403, "forbidden");
        }

        // A refused transaction never reached the log.
        let before = c.info(leader).await["last_log_index"].clone();
        let sneaky = r#"{"success":[{"op":"put","key":"feeds/2","value":"x"},{"op":"put","key":"bank/a","value":"0"}]}"#;
        let r = as_(&c, follower, Some(FEEDS), Method::POST, "/v1/txn", &[], sneaky).await;
        refused(&r, 403, "forbidden");
        let peek = r#"{"compare":[{"key":"bank/a","test":"ge","number":1}],"success":[{"op":"put","key":"feeds/3","value":"x"}]}"#;
        let r = as_(&c, leader, Some(FEEDS), Method::POST, "/v1/txn", &[], peek).await;
        refused(&r, 403, "forbidden");
        assert_eq!(c.info(leader).await["last_log_index"], before);
        let r = c.get(leader, "bank/a", "strong").await.expect(200);
        assert_eq!(r.body.as_ref(), b"100");
        assert_eq!(c.get(leader, "feeds/2", "strong").await.status, 404);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_keys_belong_to_the_token_that_made_them() {
    within(secs(120), async {
        let opts = Options {
            auth_file: Some(auth_file(true, true)),
            client_token: Some(OPS.into()),
            ..Options::default()
        };
        let c = Cluster::start_opts(3, opts).await;
        let leader = c.leader(secs(10)).await;
        let key = [("idempotency-key", "pay-1")];
        let first = as_(
            &c,
            leader,
            Some(FEEDS),
            Method::PUT,
            "/v1/kv/feeds/p",
            &key,
            "a",
        )
        .await;
        let first = first.expect(200).index();
        // Another token, same Idempotency-Key, another request: its own write,
        // neither a replay of feeds' answer nor a 422.
        let other = as_(
            &c,
            leader,
            Some(NEWBIE),
            Method::PUT,
            "/v1/kv/n/p",
            &key,
            "b",
        )
        .await;
        let other = other.expect(200);
        assert_ne!(other.index(), first);
        assert_eq!(other.header("idempotent-replayed"), None, "{other:?}");
        // The same token retrying gets its own answer back.
        let again = as_(
            &c,
            leader,
            Some(FEEDS),
            Method::PUT,
            "/v1/kv/feeds/p",
            &key,
            "a",
        )
        .await;
        let again = again.expect(200);
        assert_eq!(again.index(), first);
        assert_eq!(
            again.header("idempotent-replayed"),
            Some("true"),
            "{again:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_auth_file_on_every_node() {
    within(secs(120), async {
        let opts = Options {
            auth_file: Some(auth_file(true, false)),
            client_token: Some(OPS.into()),
            ..Options::default()
        };
        let c = Cluster::start_opts(3, opts).await;
        let path = c.kit().auth_file();
        let c = &c;
        let status = |id, secret| async move {
            as_(c, id, Some(secret), Method::GET, "/v1/kv/feeds/x", &[], "")
                .await
                .status
        };
        // Revoke feeds, add newbie, signal every node.
        std::fs::write(&path, auth_file(false, true)).expect("rewrite auth file");
        for id in c.ids() {
            let pid = c.pid(id).to_string();
            let sent = std::process::Command::new("kill")
                .args(["-HUP", &pid])
                .status();
            assert!(sent.expect("kill").success());
        }
        for id in c.ids() {
            let deadline = Instant::now() + secs(10);
            while status(id, FEEDS).await != 401 || status(id, NEWBIE).await != 404 {
                assert!(Instant::now() < deadline, "node {id} did not reload");
                tokio::time::sleep(POLL).await;
            }
        }
        // A broken file: logged, and the tokens in use stay.
        std::fs::write(&path, "[[token]]\nname = \"x\"").expect("break auth file");
        let id = c.ids()[0];
        let pid = c.pid(id).to_string();
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success());
        let deadline = Instant::now() + secs(10);
        while !c.kit().log_tail(id, 200).contains("the tokens in use stay") {
            assert!(Instant::now() < deadline, "no log line for the bad file");
            tokio::time::sleep(POLL).await;
        }
        assert_eq!(status(id, NEWBIE).await, 404);
        assert_eq!(status(id, FEEDS).await, 401);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn leases_watches_metrics_and_the_dashboard_under_tokens() {
    within(secs(120), async {
        let opts = Options {
            auth_file: Some(auth_file(true, true)),
            client_token: Some(OPS.into()),
            ..Options::default()
        };
        let c = Cluster::start_opts(3, opts).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        // The page is open (it holds no data); the metrics are not.
        let r = as_(&c, follower, None, Method::GET, "/ui", &[], "").await;
        assert_eq!(r.status, 200, "{r:?}");
        let r = as_(&c, follower, None, Method::GET, "/metrics", &[], "").await;
        refused(&r, 401, "unauthorized");
        let r = as_(&c, follower, Some(VIEWER), Method::GET, "/metrics", &[], "").await;
        assert_eq!(r.status, 200, "{r:?}");

        // Leases need the write role and belong to the token that took them.
        let ttl = r#"{"ttl":"30s"}"#;
        let r = as_(
            &c,
            follower,
            Some(VIEWER),
            Method::POST,
            "/v1/lease",
            &[],
            ttl,
        )
        .await;
        refused(&r, 403, "forbidden");
        let r = as_(
            &c,
            follower,
            Some(FEEDS),
            Method::POST,
            "/v1/lease",
            &[],
            ttl,
        )
        .await;
        assert_eq!(r.status, 201, "{r:?}");
        let id = r.json()["id"].as_u64().expect("lease id");
        let keepalive = format!("/v1/lease/{id}/keepalive");
        let r = as_(&c, follower, Some(FEEDS), Method::POST, &keepalive, &[], "").await;
        assert_eq!(r.status, 200, "{r:?}");
        let lease = id.to_string();
        let with_lease = [("x-lease", lease.as_str())];
        let r = as_(
            &c,
            follower,
            Some(FEEDS),
            Method::PUT,
            "/v1/kv/feeds/x",
            &with_lease,
            "v",
        )
        .await;
        assert_eq!(r.status, 200, "{r:?}");
        let r = as_(
            &c,
            follower,
            Some(NEWBIE),
            Method::POST,
            &keepalive,
            &[],
            "",
        )
        .await;
        refused(&r, 403, "forbidden");
        let path = format!("/v1/lease/{id}");
        let r = as_(&c, follower, Some(NEWBIE), Method::DELETE, &path, &[], "").await;
        refused(&r, 403, "forbidden");
        c.get(leader, "feeds/x", "strong").await.expect(200);
        // An admin may end anyone's lease.
        let r = as_(&c, follower, Some(OPS), Method::DELETE, &path, &[], "").await;
        assert_eq!(r.status, 200, "{r:?}");
        c.get(leader, "feeds/x", "strong").await.expect(404);

        // A watch is a read of its prefix.
        let r = as_(
            &c,
            follower,
            Some(FEEDS),
            Method::GET,
            "/v1/watch?prefix=",
            &[],
            "",
        )
        .await;
        refused(&r, 403, "forbidden");
        let r = as_(
            &c,
            follower,
            Some(FEEDS),
            Method::GET,
            "/v1/watch?key=bank/a",
            &[],
            "",
        )
        .await;
        refused(&r, 403, "forbidden");
    })
    .await;
}
