//! The bank and booking workloads of the test kit on a 3-node
//! cluster with the leader killed mid-run: the same code as
//! `examples/bank.rs` and `examples/booking.rs`, sized for a 2-core CI box.

use std::time::Duration;

use quorumkv_testkit::bank::{self, BankConfig};
use quorumkv_testkit::booking::{self, BookingConfig};

use crate::harness::{ok, secs, within, Cluster};

#[tokio::test(flavor = "multi_thread")]
async fn bank_transfers_stay_exact_through_a_leader_kill() {
    within(secs(90), async {
        let c = Cluster::start(3).await;
        let cfg = BankConfig {
            clients: 10,
            transfers_per_client: 20,
            deadline: Duration::from_secs(60),
            ..BankConfig::default()
        };
        eprintln!("bank seed {}", cfg.seed);
        let report = ok("bank run", bank::run(c.kit(), &cfg).await);
        eprintln!("{report}");
        assert!(report.ok(), "seed {}: {report}", cfg.seed);
        assert!(
            report.kill.killed.is_some() && report.kill.restarted,
            "{report}"
        );
        let applied = report.count(|o| matches!(o, bank::Outcome::Applied { .. }));
        assert!(
            applied >= 100,
            "too few transfers applied to prove much: {report}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn booking_sells_each_seat_once_through_a_leader_kill() {
    within(secs(90), async {
        let c = Cluster::start(3).await;
        let cfg = BookingConfig {
            deadline: Duration::from_secs(60),
            ..BookingConfig::default()
        };
        eprintln!("booking seed {}", cfg.seed);
        let report = ok("booking run", booking::run(c.kit(), &cfg).await);
        eprintln!("{report}");
        assert!(report.ok(), "seed {}: {report}", cfg.seed);
        assert!(
            report.kill.killed.is_some() && report.kill.restarted,
            "{report}"
        );
        assert_eq!(report.seats_sold, cfg.seats, "{report}");
    })
    .await;
}
