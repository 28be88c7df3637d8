//! Key-value basics through every node of a 3-node cluster: writes via a
//! follower, strong/eventual/all levels, delete, prefix listing, binary values.

use base64::Engine;
use reqwest::Method;

use crate::harness::{secs, within, Cluster};

#[tokio::test(flavor = "multi_thread")]
async fn write_via_follower_is_read_strong_on_every_node() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];

        let w = c
            .put(follower, "greeting", "hello", "strong")
            .await
            .expect(200);
        let index = w.index();
        assert_eq!(w.json()["consistency"], "strong", "{w:?}");
        assert_eq!(w.raft_index(), index, "X-Raft-Index vs body: {w:?}");
        assert_eq!(w.header("x-consistency"), Some("strong"), "{w:?}");
        assert!(w.header("x-served-by").is_some(), "{w:?}");

        for id in c.ids() {
            let r = c.get(id, "greeting", "strong").await.expect(200);
            assert_eq!(&r.body[..], b"hello", "node {id}: {r:?}");
            assert_eq!(r.served_by(), id, "strong read is served locally: {r:?}");
            assert!(
                r.raft_index() >= index,
                "node {id} read below the write: {r:?}"
            );
            assert_eq!(
                r.header("x-raft-leader"),
                Some(&*leader.to_string()),
                "{r:?}"
            );
            assert_eq!(r.header("x-consistency"), Some("strong"), "{r:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_removes_the_key() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        c.put_ok(leader, "doomed", "x").await;

        let d = c.delete(follower, "doomed", "strong").await.expect(200);
        assert_eq!(d.json()["deleted"], true, "{d:?}");
        let index = d.index();
        for id in c.ids() {
            let r = c.get(id, "doomed", "strong").await.expect(404);
            assert_eq!(r.error_code(), "key_not_found", "{r:?}");
            assert!(r.raft_index() >= index, "404 read below the delete: {r:?}");
            assert_eq!(r.served_by(), id, "{r:?}");
        }
        let again = c.delete(leader, "doomed", "strong").await.expect(200);
        assert_eq!(again.json()["deleted"], false, "{again:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn prefix_list_is_in_key_order_with_base64_for_binary() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let binary = vec![0xff, 0xfe, 0x00, 0x80];
        // Written out of order; "list/a%20b" is the key "list/a b".
        for (key, value) in [
            ("list/c", b"3".to_vec()),
            ("list/a", b"1".to_vec()),
            ("list/bin", binary.clone()),
            ("list/a%20b", "é".as_bytes().to_vec()),
            ("list/b", b"2".to_vec()),
            ("lisu", b"outside".to_vec()),
            ("other", b"outside".to_vec()),
        ] {
            c.put_ok(leader, key, value).await;
        }
        let b64 = base64::engine::general_purpose::STANDARD.encode(&binary);
        let want = [
            ("list/a", "1", "utf8"),
            ("list/a b", "é", "utf8"),
            ("list/b", "2", "utf8"),
            ("list/bin", b64.as_str(), "base64"),
            ("list/c", "3", "utf8"),
        ];

        let follower = c.others(leader)[0];
        let all = list(&c, follower, "prefix=list/").await;
        assert_eq!(items(&all), want, "{all}");
        assert_eq!(all["more"], false, "{all}");

        let page = list(&c, follower, "prefix=list/&limit=2").await;
        assert_eq!(items(&page), &want[..2], "{page}");
        assert_eq!(page["more"], true, "{page}");
    })
    .await;
}

async fn list(c: &Cluster, id: u64, query: &str) -> serde_json::Value {
    let path = format!("/v1/kv?{query}");
    c.call(id, Method::GET, &path, &[], Vec::new())
        .await
        .expect(200)
        .json()
}

fn items(list: &serde_json::Value) -> Vec<(&str, &str, &str)> {
    let items = list["items"].as_array().expect("items array");
    items
        .iter()
        .map(|i| (field(i, "key"), field(i, "value"), field(i, "encoding")))
        .collect()
}

fn field<'a>(item: &'a serde_json::Value, name: &str) -> &'a str {
    item[name].as_str().unwrap_or("<missing>")
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_values_round_trip() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let every_byte: Vec<u8> = (0..=255u8).collect();
        let big: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let values = [("bytes", every_byte), ("big", big), ("empty", Vec::new())];
        let mut index = 0;
        for (key, value) in &values {
            index = c.put_ok(leader, key, value.clone()).await;
        }
        for id in c.ids() {
            for (key, value) in &values {
                let r = c.get(id, key, "strong").await.expect(200);
                assert!(
                    r.body == *value,
                    "node {id} key {key}: {} bytes back",
                    r.body.len()
                );
                assert!(r.raft_index() >= index, "{r:?}");
                let content_type = r.header("content-type");
                assert_eq!(content_type, Some("application/octet-stream"), "{r:?}");
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn eventual_write_is_visible_everywhere_at_its_index() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[0];
        let w = c.put(follower, "ev", "later", "eventual").await.expect(202);
        assert_eq!(w.json()["consistency"], "eventual", "{w:?}");
        assert_eq!(w.header("x-consistency"), Some("eventual"), "{w:?}");
        let index = w.index();
        for id in c.ids() {
            let r = c.read_at_least(id, "ev", index).await.expect(200);
            assert_eq!(&r.body[..], b"later", "node {id}: {r:?}");
            assert!(r.raft_index() >= index, "{r:?}");
            assert_eq!(r.served_by(), id, "{r:?}");
            assert!(r.header("x-last-contact-ms").is_some(), "{r:?}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_write_is_already_applied_on_every_node() {
    within(secs(60), async {
        let c = Cluster::start(3).await;
        let leader = c.leader(secs(10)).await;
        let follower = c.others(leader)[1];
        let w = c
            .put(follower, "everywhere", "now", "all")
            .await
            .expect(200);
        assert_eq!(w.json()["consistency"], "all", "{w:?}");
        let index = w.index();
        for id in c.ids() {
            let r = c.get(id, "everywhere", "eventual").await.expect(200);
            assert_eq!(
                &r.body[..],
                b"now",
                "node {id} had not applied the `all` write: {r:?}"
            );
            assert!(r.raft_index() >= index, "{r:?}");
        }
    })
    .await;
}
