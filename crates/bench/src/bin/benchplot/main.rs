//! `benchplot DIR`: turns the results directory of `scripts/bench.sh` into
//! Markdown tables and SVG plots.
//!
//! ```text
//! runs.rs       runs.tsv + raw/*.json (and the trade-off TSVs) -> Results
//! matrix.rs     summary.md: quorumkv beside etcd, ratios, targets; throughput and latency plots
//! tradeoffs.rs  tradeoffs.md: staleness, loss window, cost vs value size and keys, recovery
//! plot.rs       one SVG line-chart function (plotters, no font files needed)
//! ```
//!
//! It only reads what the script measured; it can be rerun on an old
//! directory after changing how the tables look.

mod matrix;
mod plot;
mod runs;
mod tradeoffs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Markdown tables and SVG plots from a `scripts/bench.sh` results directory.
#[derive(Parser)]
#[command(name = "benchplot")]
struct Cli {
    /// The directory holding runs.tsv and raw/.
    dir: PathBuf,
}

fn run(cli: Cli) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let results = runs::Results::load(&cli.dir)?;
    let mut written = Vec::new();
    if results.has_group("matrix") {
        matrix::draw_plots(&results)?;
        let mut md = String::new();
        matrix::write_summary(&results, &mut md);
        let path = cli.dir.join("summary.md");
        std::fs::write(&path, md)?;
        written.push(path);
    }
    let tradeoff_groups = ["staleness", "value-size", "key-count"];
    let tradeoff_files = ["loss.tsv", "recovery.tsv", "resources.tsv"];
    if tradeoff_groups.iter().any(|g| results.has_group(g))
        || tradeoff_files.iter().any(|f| cli.dir.join(f).exists())
    {
        let mut md = String::new();
        tradeoffs::write(&results, &mut md)?;
        let path = cli.dir.join("tradeoffs.md");
        std::fs::write(&path, md)?;
        written.push(path);
    }
    Ok(written)
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(written) if written.is_empty() => {
            eprintln!("benchplot: nothing to report (no runs in runs.tsv)");
            ExitCode::FAILURE
        }
        Ok(written) => {
            for p in written {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("benchplot: {e}");
            ExitCode::FAILURE
        }
    }
}
