//! The client commands: talk to a Sundial server over its `/v1` API; tables for people, `--json` for scripts.
//! Exit codes: 0 success, 1 server or network failure, 2 usage error, 3 not found, 4 unauthorized or forbidden.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comfy_table::Table;
use serde_json::{json, Value};

/// Where and as whom the client talks.
#[derive(Args, Debug, Clone)]
pub struct ClientOptions {
    /// Server base URL.
    #[arg(long, global = true, env = "SUNDIAL_SERVER", default_value = "http://127.0.0.1:7777")]
    server: String,
    /// API key (agent key, admin key or user token).
    #[arg(long, global = true, env = "SUNDIAL_API_KEY", hide_env_values = true)]
    key: Option<String>,
    /// Agent to act for.
    #[arg(long, global = true, env = "SUNDIAL_AGENT", default_value = "default")]
    agent: String,
    /// Act on behalf of this user (sent as X-User-Id).
    #[arg(long = "as-user", global = true, env = "SUNDIAL_USER")]
    as_user: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

/// Client commands.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Jobs of an agent.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// A user's conversation.
    Messages {
        #[command(subcommand)]
        command: MessagesCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Agents (admin key).
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Deploy a folder of job files (`*.js`, `*.mjs`, `*.cjs`) as pre-defined jobs.
    Deploy {
        /// The folder (searched recursively; `node_modules` and hidden folders are skipped).
        dir: std::path::PathBuf,
        /// Publish new versions at once (and activate new jobs).
        #[arg(long)]
        activate: bool,
        #[command(flatten)]
        options: ClientOptions,
    },
    /// Users: data and tokens.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
        #[command(flatten)]
        options: ClientOptions,
    },
}

/// `sundial jobs …`
#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// List jobs.
    List {
        /// Include dynamic jobs (created by tools for users).
        #[arg(long)]
        all: bool,
        /// Only jobs with this status.
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one job.
    Get { job_id: String },
    /// Create a job.
    Create(CreateArgs),
    /// Run a job now.
    Trigger {
        job_id: String,
        /// Version id or semver string to run (default: the active version).
        #[arg(long = "job-version")]
        job_version: Option<String>,
    },
    /// Activate a job.
    Activate { job_id: String },
    /// Deactivate a job.
    Deactivate { job_id: String },
    /// Delete a job.
    Delete { job_id: String },
    /// A job's executions, newest first.
    History {
        job_id: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only executions with this status.
        #[arg(long)]
        status: Option<String>,
    },
    /// One execution with its console output.
    Logs { execution_id: String },
    /// The next fire instants.
    Preview {
        job_id: String,
        #[arg(short, default_value_t = 10)]
        n: usize,
    },
    /// A job's versions.
    Versions { job_id: String },
    /// Make a version active.
    Publish { job_id: String, version: String },
}

/// `sundial jobs create` flags.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Job name.
    #[arg(long)]
    name: String,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Run once at an instant: RFC 3339 (`2030-01-01T09:00:00Z`) or relative (`+90s`, `+10m`, `+2h`).
    #[arg(long, group = "when")]
    once: Option<String>,
    /// Run every N seconds.
    #[arg(long, group = "when")]
    every: Option<u64>,
    /// Run on a cron pattern.
    #[arg(long, group = "when")]
    cron: Option<String>,
    /// IANA timezone of --cron.
    #[arg(long, requires = "cron")]
    timezone: Option<String>,
    /// The job's code: a JavaScript function, e.g. `async (job) => job.metadata`.
    #[arg(long, group = "source")]
    code: Option<String>,
    /// Read the code from a file.
    #[arg(long, group = "source")]
    code_file: Option<std::path::PathBuf>,
    /// Metadata as a JSON object.
    #[arg(long)]
    metadata: Option<String>,
    /// Timeout in seconds.
    #[arg(long)]
    timeout: Option<u32>,
    /// Retries after a failed first attempt.
    #[arg(long)]
    retries: Option<u32>,
    /// Seconds between retries (exponential when unset).
    #[arg(long)]
    backoff: Option<u64>,
    /// Create it inactive.
    #[arg(long)]
    inactive: bool,
}

/// `sundial messages …`
#[derive(Subcommand, Debug)]
pub enum MessagesCommand {
    /// Print a user's messages; with --follow, keep printing new ones.
    Tail {
        user_id: String,
        #[arg(long, short)]
        follow: bool,
    },
}

/// `sundial agents …`
#[derive(Subcommand, Debug)]
pub enum AgentsCommand {
    /// Create an agent and print its first key.
    Create { agent_id: String },
    /// List agents.
    List,
}

/// `sundial users …`
#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Show a user's data.
    Get { user_id: String },
    /// Replace a user's data with a JSON object.
    Set { user_id: String, data: String },
    /// Mint a token that acts only as this user.
    Token { user_id: String },
}

/// A failed request, with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

struct Client {
    http: reqwest::Client,
    options: ClientOptions,
}

impl Client {
    fn new(options: ClientOptions) -> anyhow::Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, options })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.options.server.trim_end_matches('/'), path)
    }

    fn agent_path(&self, rest: &str) -> String {
        format!("/v1/agents/{}{}", self.options.agent, rest)
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        let mut request = self.http.request(method, self.url(path));
        if let Some(key) = &self.options.key {
            request = request.bearer_auth(key);
        }
        if let Some(user) = &self.options.as_user {
            request = request.header("X-User-Id", user);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| Failure { code: 1, message: format!("cannot reach {}: {error}", self.options.server) })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let message =
            body.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| body.to_string());
        let code = match status.as_u16() {
            404 => 3,
            401 | 403 => 4,
            400 | 409 | 413 | 422 => 2,
            _ => 1,
        };
        Err(Failure { code, message: format!("{message} (HTTP {})", status.as_u16()) })
    }

    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

/// Runs a client command.
pub async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    let outcome = match command {
        ClientCommand::Jobs { command, options } => jobs(Client::new(options)?, command).await,
        ClientCommand::Messages { command, options } => messages(Client::new(options)?, command).await,
        ClientCommand::Agents { command, options } => agents(Client::new(options)?, command).await,
        ClientCommand::Users { command, options } => users(Client::new(options)?, command).await,
        ClientCommand::Deploy { dir, activate, options } => deploy(Client::new(options)?, &dir, activate).await,
    };
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            Ok(ExitCode::from(failure.code))
        }
    }
}

fn usage(error: anyhow::Error) -> Failure {
    Failure { code: 2, message: format!("{error:#}") }
}

fn text(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

fn schedule_text(schedule: &Value) -> String {
    match schedule.get("type").and_then(Value::as_str) {
        Some("once") => format!("once at {}", text(schedule, "executeAt")),
        Some("interval") => format!("every {}s", text(schedule, "seconds")),
        Some("cron") => match schedule.get("timezone").and_then(Value::as_str) {
            Some(zone) => format!("cron {} ({zone})", text(schedule, "expression")),
            None => format!("cron {} (UTC)", text(schedule, "expression")),
        },
        _ => "-".into(),
    }
}

fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table.set_header(header.to_vec());
    table
}

fn print_json(value: &Value) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string()));
}

fn print_job(client: &Client, job: &Value) {
    if client.options.json {
        return print_json(job);
    }
    let mut rows = table(&["field", "value"]);
    for key in ["id", "name", "description", "status", "active", "dynamic", "userId", "nextRunAt", "lastRunAt"] {
        rows.add_row(vec![key.to_owned(), text(job, key)]);
    }
    rows.add_row(vec!["schedule".to_owned(), job.get("schedule").map(schedule_text).unwrap_or_else(|| "-".into())]);
    rows.add_row(vec![
        "version".to_owned(),
        job.pointer("/activeVersion/version").map(|v| text(&json!({"v": v}), "v")).unwrap_or_else(|| "-".into()),
    ]);
    rows.add_row(vec!["metadata".to_owned(), text(job, "metadata")]);
    if let Some(last) = job.get("lastExecution") {
        rows.add_row(vec!["last execution".to_owned(), format!("{} {}", text(last, "status"), text(last, "id"))]);
    }
    println!("{rows}");
}

fn print_execution(client: &Client, execution: &Value) {
    if client.options.json {
        return print_json(execution);
    }
    let mut rows = table(&["field", "value"]);
    for key in [
        "id",
        "jobId",
        "status",
        "trigger",
        "scheduledFor",
        "startedAt",
        "completedAt",
        "duration",
        "retryCount",
        "result",
        "error",
    ] {
        rows.add_row(vec![key.to_owned(), text(execution, key)]);
    }
    println!("{rows}");
    if let Some(Value::Array(logs)) = execution.get("logs") {
        for line in logs {
            println!("[{}] {}", text(line, "level"), text(line, "message"));
        }
    }
}

/// Parses `--once`: an RFC 3339 instant or `+<n><s|m|h|d>`.
fn parse_when(text: &str, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    if let Some(relative) = text.strip_prefix('+') {
        let (number, unit) = relative.split_at(relative.len().saturating_sub(1));
        let amount: i64 = number.parse().map_err(|_| anyhow!("--once: expected +<number><s|m|h|d>, got {text}"))?;
        let seconds = match unit {
            "s" => amount,
            "m" => amount * 60,
            "h" => amount * 3600,
            "d" => amount * 86_400,
            _ => bail!("--once: expected a unit of s, m, h or d, got {text}"),
        };
        return Ok(now + chrono::Duration::seconds(seconds));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|error| anyhow!("--once: expected an RFC 3339 instant or +<n><unit>: {error}"))
}

fn create_body(args: CreateArgs) -> anyhow::Result<Value> {
    let schedule = if let Some(once) = &args.once {
        json!({"type": "once", "executeAt": sundial_core::wire::instant(parse_when(once, Utc::now())?)})
    } else if let Some(seconds) = args.every {
        json!({"type": "interval", "seconds": seconds})
    } else if let Some(expression) = &args.cron {
        let mut schedule = json!({"type": "cron", "expression": expression});
        if let Some(zone) = &args.timezone {
            schedule["timezone"] = json!(zone);
        }
        schedule
    } else {
        bail!("one of --once, --every or --cron is required");
    };
    let code = match (&args.code, &args.code_file) {
        (Some(code), _) => code.clone(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
        }
        (None, None) => bail!("one of --code or --code-file is required"),
    };
    let mut body = json!({"name": args.name, "schedule": schedule, "code": code, "activate": !args.inactive});
    if let Some(description) = args.description {
        body["description"] = json!(description);
    }
    if let Some(metadata) = args.metadata {
        let metadata: Value = serde_json::from_str(&metadata).context("--metadata: expected a JSON object")?;
        body["metadata"] = metadata;
    }
    if let Some(timeout) = args.timeout {
        body["timeout"] = json!(timeout);
    }
    if let Some(retries) = args.retries {
        let mut retry = json!({"maxAttempts": retries});
        if let Some(backoff) = args.backoff {
            retry["backoffSeconds"] = json!(backoff);
        }
        body["retry"] = retry;
    }
    Ok(body)
}

async fn jobs(client: Client, command: JobsCommand) -> Result<(), Failure> {
    match command {
        JobsCommand::List { all, status } => {
            let mut path = client.agent_path(&format!("/jobs?includeDynamic={all}&limit=1000"));
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            let answer = client.get(&path).await?;
            if client.options.json {
                print_json(&answer);
                return Ok(());
            }
            let mut rows = table(&["id", "name", "status", "schedule", "next run", "user"]);
            for job in answer.get("jobs").and_then(Value::as_array).into_iter().flatten() {
                rows.add_row(vec![
                    text(job, "id"),
                    text(job, "name"),
                    text(job, "status"),
                    job.get("schedule").map(schedule_text).unwrap_or_else(|| "-".into()),
                    text(job, "nextRunAt"),
                    text(job, "userId"),
                ]);
            }
            println!("{rows}");
        }
        JobsCommand::Get { job_id } => {
            let job = client.get(&client.agent_path(&format!("/jobs/{job_id}"))).await?;
            print_job(&client, &job);
        }
        JobsCommand::Create(args) => {
            let body = create_body(args).map_err(usage)?;
            let job = client.post(&client.agent_path("/jobs"), body).await?;
            print_job(&client, &job);
        }
        JobsCommand::Trigger { job_id, job_version } => {
            let body = job_version.map(|version| json!({"versionId": version})).unwrap_or_else(|| json!({}));
            let execution = client.post(&client.agent_path(&format!("/jobs/{job_id}/trigger")), body).await?;
            if client.options.json {
                print_json(&execution);
            } else {
                println!(
                    "triggered job {job_id}: execution {} ({})",
                    text(&execution, "id"),
                    text(&execution, "status")
                );
            }
        }
        JobsCommand::Activate { job_id } => {
            let job = client.post(&client.agent_path(&format!("/jobs/{job_id}/activate")), json!({})).await?;
            print_job(&client, &job);
        }
        JobsCommand::Deactivate { job_id } => {
            let job = client.post(&client.agent_path(&format!("/jobs/{job_id}/deactivate")), json!({})).await?;
            print_job(&client, &job);
        }
        JobsCommand::Delete { job_id } => {
            let answer =
                client.send(reqwest::Method::DELETE, &client.agent_path(&format!("/jobs/{job_id}")), None).await?;
            if client.options.json {
                print_json(&answer);
            } else {
                println!("{}", text(&answer, "message"));
            }
        }
        JobsCommand::History { job_id, limit, status } => {
            let mut path = client.agent_path(&format!("/jobs/{job_id}/executions?limit={limit}"));
            if let Some(status) = status {
                path.push_str(&format!("&status={status}"));
            }
            let answer = client.get(&path).await?;
            if client.options.json {
                print_json(&answer);
                return Ok(());
            }
            let mut rows = table(&["execution", "status", "trigger", "try", "started", "ms", "result / error"]);
            for execution in answer.get("executions").and_then(Value::as_array).into_iter().flatten() {
                let outcome = match execution.get("error") {
                    Some(Value::String(error)) => error.lines().next().unwrap_or_default().to_owned(),
                    _ => text(execution, "result"),
                };
                rows.add_row(vec![
                    text(execution, "id"),
                    text(execution, "status"),
                    text(execution, "trigger"),
                    text(execution, "retryCount"),
                    text(execution, "startedAt"),
                    text(execution, "duration"),
                    outcome.chars().take(80).collect(),
                ]);
            }
            println!("{rows}");
            println!(
                "{} of {} executions",
                answer["executions"].as_array().map_or(0, Vec::len),
                text(&answer, "total")
            );
        }
        JobsCommand::Logs { execution_id } => {
            let execution = client.get(&client.agent_path(&format!("/executions/{execution_id}"))).await?;
            print_execution(&client, &execution);
        }
        JobsCommand::Preview { job_id, n } => {
            let answer = client.get(&client.agent_path(&format!("/jobs/{job_id}/preview?n={n}"))).await?;
            if client.options.json {
                print_json(&answer);
                return Ok(());
            }
            let mut rows = table(&["UTC", &format!("local ({})", text(&answer, "timezone"))]);
            for fire in answer.get("fires").and_then(Value::as_array).into_iter().flatten() {
                rows.add_row(vec![text(fire, "utc"), text(fire, "local")]);
            }
            println!("{rows}");
        }
        JobsCommand::Versions { job_id } => {
            let answer = client.get(&client.agent_path(&format!("/jobs/{job_id}/versions"))).await?;
            if client.options.json {
                print_json(&answer);
                return Ok(());
            }
            let mut rows = table(&["version", "id", "active", "schedule", "timeout", "created"]);
            for version in answer.get("versions").and_then(Value::as_array).into_iter().flatten() {
                rows.add_row(vec![
                    text(version, "version"),
                    text(version, "id"),
                    text(version, "active"),
                    version.get("schedule").map(schedule_text).unwrap_or_else(|| "-".into()),
                    text(version, "timeout"),
                    text(version, "createdAt"),
                ]);
            }
            println!("{rows}");
        }
        JobsCommand::Publish { job_id, version } => {
            let job = client
                .post(&client.agent_path(&format!("/jobs/{job_id}/versions/{version}/publish")), json!({}))
                .await?;
            print_job(&client, &job);
        }
    }
    Ok(())
}

fn print_message(client: &Client, message: &Value) {
    if client.options.json {
        println!("{message}");
        return;
    }
    let content = &message["content"];
    let body = match content.get("type").and_then(Value::as_str) {
        Some("text") => text(content, "text"),
        Some(kind) => format!("[{kind}] {}", text(content, "mediaType")),
        None => content.to_string(),
    };
    println!("{} {}", text(message, "createdAt"), body);
}

async fn messages(client: Client, command: MessagesCommand) -> Result<(), Failure> {
    let MessagesCommand::Tail { user_id, follow } = command;
    let mut after = 0i64;
    loop {
        let answer =
            client.get(&client.agent_path(&format!("/users/{user_id}/messages?after={after}&limit=500"))).await?;
        for message in answer.get("messages").and_then(Value::as_array).into_iter().flatten() {
            print_message(&client, message);
            after = message.get("seq").and_then(Value::as_i64).unwrap_or(after);
        }
        if !follow {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn agents(client: Client, command: AgentsCommand) -> Result<(), Failure> {
    match command {
        AgentsCommand::Create { agent_id } => {
            let answer = client.post("/v1/agents", json!({"agentId": agent_id})).await?;
            if client.options.json {
                print_json(&answer);
            } else {
                println!("created agent {agent_id}; its key (shown once): {}", text(&answer["key"], "key"));
            }
        }
        AgentsCommand::List => {
            let answer = client.get("/v1/agents").await?;
            if client.options.json {
                print_json(&answer);
                return Ok(());
            }
            let mut rows = table(&["agent", "created"]);
            for agent in answer.get("agents").and_then(Value::as_array).into_iter().flatten() {
                rows.add_row(vec![text(agent, "id"), text(agent, "createdAt")]);
            }
            println!("{rows}");
        }
    }
    Ok(())
}

async fn users(client: Client, command: UsersCommand) -> Result<(), Failure> {
    let answer = match command {
        UsersCommand::Get { user_id } => client.get(&client.agent_path(&format!("/users/{user_id}"))).await?,
        UsersCommand::Set { user_id, data } => {
            let data: Value =
                serde_json::from_str(&data).map_err(|error| usage(anyhow!("data: expected a JSON object: {error}")))?;
            client.send(reqwest::Method::PUT, &client.agent_path(&format!("/users/{user_id}")), Some(data)).await?
        }
        UsersCommand::Token { user_id } => {
            let answer = client.post(&client.agent_path(&format!("/users/{user_id}/tokens")), json!({})).await?;
            if !client.options.json {
                println!("{}", text(&answer, "token"));
                return Ok(());
            }
            answer
        }
    };
    print_json(&answer);
    Ok(())
}

/// Job files below `dir`, sorted by path.
fn job_files(dir: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        let entries = std::fs::read_dir(&folder).with_context(|| format!("cannot read {}", folder.display()))?;
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            if name.starts_with('.') || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if name.ends_with(".js") || name.ends_with(".mjs") || name.ends_with(".cjs") {
                let source =
                    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let relative = path.strip_prefix(dir).unwrap_or(&path).to_string_lossy().into_owned();
                files.push((relative, source));
            }
        }
    }
    files.sort();
    Ok(files)
}

async fn deploy(client: Client, dir: &std::path::Path, activate: bool) -> Result<(), Failure> {
    let files = job_files(dir).map_err(usage)?;
    if files.is_empty() {
        return Err(usage(anyhow!("no job files (*.js, *.mjs, *.cjs) in {}", dir.display())));
    }
    let files: Vec<Value> = files.into_iter().map(|(path, source)| json!({"path": path, "source": source})).collect();
    let answer = client.post(&client.agent_path("/deploy"), json!({"files": files, "activate": activate})).await?;
    if client.options.json {
        print_json(&answer);
        return Ok(());
    }
    let mut rows = table(&["job", "file", "action", "version", "active", "id"]);
    for job in answer.get("jobs").and_then(Value::as_array).into_iter().flatten() {
        rows.add_row(vec![
            text(job, "name"),
            text(job, "path"),
            text(job, "action"),
            text(job, "version"),
            text(job, "active"),
            text(job, "jobId"),
        ]);
    }
    println!("{rows}");
    Ok(())
}
