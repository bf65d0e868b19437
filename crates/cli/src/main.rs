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
    /// Copy the embedded SQLite database into a new file while the server runs (a consistent snapshot).
    Backup(BackupArgs),
    /// Serve Sundial's MCP tools over stdio (for desktop and command-line agents), acting against a server.
    Mcp(McpArgs),
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
        Command::Backup(args) => backup(args),
        Command::Mcp(args) => run(mcp(args)),
    }
}

/// `sundial mcp`: MCP over stdin and stdout. Nothing but the protocol goes to stdout; errors go to stderr.
#[derive(clap::Args, Debug)]
struct McpArgs {
    /// The server. Default: `SUNDIAL_URL`, else `SUNDIAL_SERVER`, else http://127.0.0.1:7777.
    #[arg(long)]
    server: Option<String>,
    /// A user token (the tools act as its user), or an agent key with `--user`.
    #[arg(long, env = "SUNDIAL_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The user an agent key acts for: the tools never take the user from the model.
    #[arg(long, env = "SUNDIAL_USER_ID")]
    user: Option<String>,
}

async fn mcp(args: McpArgs) -> anyhow::Result<ExitCode> {
    let server = args
        .server
        .or_else(|| std::env::var("SUNDIAL_URL").ok())
        .or_else(|| std::env::var("SUNDIAL_SERVER").ok())
        .filter(|server| !server.trim().is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:7777".to_owned());
    let Some(key) = args.key.filter(|key| !key.trim().is_empty()) else {
        anyhow::bail!("no key: set SUNDIAL_API_KEY (a user token, or an agent key with --user/SUNDIAL_USER_ID)");
    };
    let credentials = sundial_mcp::Credentials { authorization: format!("Bearer {}", key.trim()), user_id: args.user };
    let backend = std::sync::Arc::new(sundial_mcp::HttpBackend::new(&server));
    sundial_mcp::serve_stdio(backend, credentials).await.map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}

/// `sundial backup <file>`: restore by putting the file in a data directory as `sundial.db` and starting
/// `sundial serve --data-dir` on it.
#[derive(clap::Args, Debug)]
struct BackupArgs {
    /// The backup file to write (it must not exist yet).
    file: std::path::PathBuf,
    /// The server's data directory. Default: `sundial-data`.
    #[arg(long, env = "SUNDIAL_DATA_DIR", default_value = "sundial-data")]
    data_dir: std::path::PathBuf,
}

fn backup(args: BackupArgs) -> ExitCode {
    use std::io::Write;
    let source = args.data_dir.join("sundial.db");
    let started = std::time::Instant::now();
    let mut last_line = String::new();
    let result = sundial_store::backup::backup(&source, &args.file, |written, total| {
        let line = format!("backup: {} of about {} MB written", written / 1_000_000, total.max(written) / 1_000_000);
        if line != last_line {
            eprintln!("{line}");
            last_line = line;
        }
    });
    match result {
        Ok(size) => {
            println!(
                "backup: {} ({:.1} MB) is a consistent copy of {}, taken in {:.1} s",
                args.file.display(),
                size as f64 / 1e6,
                source.display(),
                started.elapsed().as_secs_f64()
            );
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: cannot back up {}: {error}", source.display());
            ExitCode::FAILURE
        }
    }
}

fn run(future: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> ExitCode {
    sundial_scheduler::outbound::tls_ready();
    let runtime =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(runtime_threads()).enable_all().build() {
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

/// The async runtime's threads: `TOKIO_WORKER_THREADS` when set, else half the cores (at least one). The server's
/// other busy threads are outside the runtime — the SQLite writer and the sandbox workers, which run the jobs — and
/// on two cores a second runtime thread measured slower and costlier per execution than one (`BENCHMARKS.md`): the
/// threads woke each other for every hand-off instead of leaving the other core to the writer and the workers.
fn runtime_threads() -> usize {
    if let Some(threads) = std::env::var("TOKIO_WORKER_THREADS").ok().and_then(|value| value.trim().parse().ok()) {
        if threads > 0 {
            return threads;
        }
    }
    std::thread::available_parallelism().map_or(1, |cores| (cores.get() / 2).max(1))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
