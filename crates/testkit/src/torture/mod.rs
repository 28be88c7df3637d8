//! The torture suite: a Jepsen-style test of a real three-node cluster under
//! faults, with every operation recorded and checked afterwards.
//!
//! ```text
//! run.rs       one run: cluster behind proxies, clients, nemesis, settle, checks; profiles
//! proxy.rs     TCP proxies on peer links: the fault points of partitions
//! nemesis.rs   kill -9 (one, the leader, all), SIGSTOP, partitions, snapshot catch-up
//! workload.rs  sequential clients: strong reads, writes, deletes, cas; eventual reads
//! outcome.rs   the rule turning an answer into ok / fail / info
//! recorder.rs  the history (JSON lines) and the nemesis log, on one monotonic clock
//! settle.rs    after healing: catch-up, final state on every node, final strong reads
//! verdict.rs   every check: linearizability, eventual reads, indexes, lost writes, replicas
//! failover.rs  the failover figure: leader kills under steady writes
//! ```
//!
//! `src/bin/torture.rs` (this crate) drives it from the command line (`scripts/torture.sh`,
//! `scripts/failover-bench.sh`); the server's `tests/it/torture.rs` runs the CI profile.

pub mod failover;
pub mod nemesis;
pub mod outcome;
pub mod proxy;
pub mod recorder;
pub mod run;
pub mod settle;
pub mod verdict;
pub mod watchers;
pub mod workload;

pub use failover::{failover, FailoverConfig, FailoverReport};
pub use nemesis::{Fault, NemesisConfig};
pub use run::{run, RunConfig, RunReport};
pub use workload::WorkloadConfig;
