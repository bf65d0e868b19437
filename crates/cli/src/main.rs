//! The `sundial` binary: `sundial serve` runs the server; the other commands are clients of a server's HTTP API.
//! `sundial worker` (hidden) is the sandbox worker process the server starts.

mod bench;
mod client;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sundial: a self-hosted jobs engine for AI-agent tools.
#[derive(Parser, Debug)]
#[command(name = "sundial", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (embedded SQLite by default).
    Serve(serve::ServeArgs),
    /// Run the benchmark workloads (W1–W6) through the HTTP API.
    Bench(bench::BenchArgs),
    /// Sandbox worker process (started by the server).
    #[command(hide = true)]
    Worker,
    #[command(flatten)]
    Client(client::ClientCommand),
}

fn main() -> ExitCode {
    // Parse before anything else: the worker must start with nothing but its channel.
    let cli = Cli::parse();
    match cli.command {
        Command::Worker => sundial_sandbox::worker_main(),
        Command::Serve(args) => run(serve::serve(args)),
        Command::Client(command) => run(client::run(command)),
        Command::Bench(args) => run(bench::run(args)),
    }
}

fn run(future: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    sundial_scheduler::outbound::tls_ready();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(future) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
