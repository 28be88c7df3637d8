//! Backup and restore with the real binary: `quorumkv snapshot save` from a
//! running cluster, the cluster destroyed, `quorumkv snapshot restore` into
//! every node of a new one: every key, value (binary too) and modification
//! index identical, deleted keys still gone, new writes after the old
//! indexes. A corrupt or truncated backup is refused with a clear error.

use std::collections::BTreeMap;
use std::process::Command;

use futures::StreamExt;

use crate::harness::{secs, within, Cluster, Options};

/// What a key holds: its value and modification index (ETag).
type State = BTreeMap<String, (Vec<u8>, String)>;

fn value_of(i: usize) -> Vec<u8> {
    match i % 3 {
        0 => format!("text value {i}").into_bytes(),
        1 => (0..(i % 700)).map(|b| (b * 31 + i) as u8).collect(),
        _ => vec![0xff, 0x00, (i % 256) as u8, 0xfe],
    }
}

async fn read_all(c: &Cluster, keys: &[String]) -> State {
    let leader = c.leader(secs(10)).await;
    let reads = futures::stream::iter(keys)
        .map(|key| async move { (key, c.get(leader, key, "strong").await) })
        .buffer_unordered(16);
    let answers: Vec<_> = reads.collect().await;
    let mut state = State::new();
    for (key, r) in answers {
        if r.status == 200 {
            let etag = r.header("etag").expect("etag").to_owned();
            state.insert(key.clone(), (r.body.to_vec(), etag));
        } else {
            assert_eq!(r.status, 404, "{r:?}");
        }
    }
    state
}

fn quorumkv(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quorumkv"))
        .args(args)
        .output()
        .expect("run quorumkv")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_restores_every_key_value_and_index_into_a_new_cluster() {
    within(secs(240), async {
        let dir = tempfile::tempdir().expect("temp dir");
        let backup = dir.path().join("backup.qkv");
        let keys: Vec<String> = (0..2000).map(|i| format!("b/{i:04}")).collect();

        let (before, last_index) = {
            let c = Cluster::start(3).await;
            let leader = c.leader(secs(10)).await;
            let writes = futures::stream::iter(keys.iter().enumerate())
                .map(|(i, key)| {
                    let c = &c;
                    async move { c.put_ok(leader, key, value_of(i)).await }
                })
                .buffer_unordered(16);
            let _: Vec<u64> = writes.collect().await;
            // Overwrite some, delete some: modification indexes differ.
            for i in (0..2000).step_by(7) {
                c.put_ok(leader, &keys[i], value_of(i + 1)).await;
            }
            for i in (0..2000).step_by(11) {
                c.delete(leader, &keys[i], "strong").await.expect(200);
            }
            let before = read_all(&c, &keys).await;
            let follower = c.others(leader)[0];
            let out = quorumkv(&[
                "snapshot",
                "save",
                backup.to_str().unwrap(),
                "--endpoints",
                &format!("http://127.0.0.1:1,{}", c.url(follower)),
            ]);
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{said} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(said.contains("saved") && said.contains("sha256"), "{said}");
            let last = c.info(leader).await["last_log_index"].as_u64().unwrap();
            (before, last)
        };
        assert!(before.len() > 1700, "{} keys", before.len());

        // Damaged copies are refused, and leave no data dir behind half-made.
        let bytes = std::fs::read(&backup).unwrap();
        let mut corrupt = bytes.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid] ^= 0x40;
        for (name, damaged, why) in [
            ("corrupt", corrupt, "corrupt"),
            (
                "truncated",
                bytes[..bytes.len() - 100].to_vec(),
                "truncated",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, damaged).unwrap();
            let target = dir.path().join(format!("{name}-node"));
            let out = quorumkv(&[
                "snapshot",
                "restore",
                path.to_str().unwrap(),
                "--data-dir",
                target.to_str().unwrap(),
                "--id",
                "1",
                "--initial-cluster",
                "1=http://127.0.0.1:1",
            ]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{name} backup restored");
            assert!(err.contains(why), "{name}: {err}");
            assert!(!target.exists(), "{name}: a data dir was left behind");
        }

        // A new cluster from the backup: everything as it was.
        let opts = Options {
            restore_from: Some(backup.clone()),
            ..Options::default()
        };
        let c = Cluster::start_opts(3, opts).await;
        let after = read_all(&c, &keys).await;
        assert_eq!(after.len(), before.len());
        for (key, want) in &before {
            assert_eq!(after.get(key), Some(want), "{key}");
        }
        let leader = c.leader(secs(10)).await;
        let index = c.put_ok(leader, "after/restore", "new").await;
        let newest = before
            .values()
            .map(|(_, etag)| etag.trim_matches('"').parse::<u64>().expect("etag"))
            .max()
            .unwrap();
        assert!(newest <= last_index);
        assert!(
            index > newest,
            "new write at {index}, not after the restored {newest}"
        );
        for id in c.ids() {
            let r = c.read_at_least(id, &keys[1], index).await;
            assert_eq!(r.status, 200, "node {id}: {r:?}");
        }
    })
    .await;
}
