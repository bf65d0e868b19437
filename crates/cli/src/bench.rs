//! `sundial bench`: the benchmark workloads of `bench/workloads.md`, run through Sundial's HTTP API.

use std::process::ExitCode;

use clap::Args;

/// Flags of `sundial bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workload: W1, W2, W3, W4, W5, W6 or all.
    workload: String,
}

/// Runs the chosen workloads and prints one JSON line per run.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("workload {} is not implemented yet", args.workload)
}
