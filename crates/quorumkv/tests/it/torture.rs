//! The torture suite's CI profile (`quorumkv_testkit::torture`): a three-node
//! cluster behind peer proxies, eight sequential clients, and every fault
//! kind at least once (kill -9 of a node, of the leader, of all; SIGSTOP of
//! the leader; leader isolated, 1 | 2 partition, bridge; follower catching
//! up by snapshot), then every check of the history and the final state.
//! And a small failover bench that only asserts the cluster recovers.

use std::time::Duration;

use quorumkv_testkit::drive::clock_seed;
use quorumkv_testkit::torture::{self, FailoverConfig, Fault, RunConfig};

use crate::harness::{secs, within};

fn bin() -> std::path::PathBuf {
    env!("CARGO_BIN_EXE_quorumkv").into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn torture_every_fault_kind() {
    within(secs(300), async {
        let seed = std::env::var("QKV_TORTURE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(clock_seed);
        let report = torture::run(RunConfig::ci(bin(), seed))
            .await
            .unwrap_or_else(|e| panic!("torture run (seed {seed}) could not run: {e}"));
        println!("{report}");
        for fault in Fault::ALL {
            assert!(
                report.faults.get(fault.name()).copied().unwrap_or(0) > 0,
                "fault {fault} was never injected (seed {seed})\n{report}"
            );
        }
        assert!(
            report.total_ops() > 500,
            "too little load to mean anything (seed {seed})\n{report}"
        );
        assert!(
            report.watchers.iter().all(|(changes, _)| *changes > 100),
            "the watchers saw too little to mean anything (seed {seed})\n{report}"
        );
        assert!(
            report.passed(),
            "torture found {} anomalies (seed {seed}; rerun with QKV_TORTURE_SEED={seed})\n{report}",
            report.failures()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failover_recovers_after_leader_kills() {
    within(secs(180), async {
        let report = torture::failover(FailoverConfig::new(bin(), 3))
            .await
            .unwrap_or_else(|e| panic!("failover bench: {e}"));
        println!("{report}");
        assert_eq!(report.unrecovered, 0, "{report}");
        // Loose on purpose: catches "never recovers", not a slow machine.
        let max = report.max().expect("three samples");
        assert!(max < Duration::from_secs(10), "{report}");
    })
    .await;
}
