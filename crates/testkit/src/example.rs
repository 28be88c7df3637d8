//! What the runnable examples (`examples/bank.rs`, `examples/booking.rs`)
//! share: a fresh three-node cluster of the real binary, and an exit code
//! from the run's report.

use std::path::Path;
use std::process::ExitCode;

use crate::{find_binary, Error, LocalCluster, Options};

/// A run's report: printed as it is, and whether every check held.
pub trait Verdict: std::fmt::Display {
    fn passed(&self) -> bool;
}

/// Starts three nodes of the `quorumkv` binary ([`find_binary`]) in a temp
/// dir named after the example, after printing `banner(binary)`. On failure
/// says why and returns the exit code.
pub async fn start_cluster(
    name: &str,
    banner: impl FnOnce(&Path) -> String,
) -> Result<LocalCluster, ExitCode> {
    let bin = find_binary().map_err(|e| {
        eprintln!("{name}: {e}");
        ExitCode::FAILURE
    })?;
    println!("{name}: {}", banner(&bin));
    let opts = Options {
        dir_prefix: format!("quorumkv-{name}-"),
        ..Options::default()
    };
    LocalCluster::start(bin, 3, opts).await.map_err(|e| {
        eprintln!("{name}: could not start the cluster: {e}");
        ExitCode::FAILURE
    })
}

/// Prints the outcome; a failed check or run keeps the cluster's directory
/// (data and logs) for a look and exits 1.
pub fn finish<R: Verdict>(
    name: &str,
    cluster: &LocalCluster,
    outcome: Result<R, Error>,
) -> ExitCode {
    match outcome {
        Ok(report) => {
            println!("{report}");
            if report.passed() {
                return ExitCode::SUCCESS;
            }
        }
        Err(e) => eprintln!("{name}: the run failed: {e}"),
    }
    cluster.keep_dir();
    ExitCode::FAILURE
}
