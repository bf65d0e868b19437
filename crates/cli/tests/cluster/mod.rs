//! Several nodes on one PostgreSQL database: every slot fired once through a `kill -9` of a node and a restart of the
//! database, and the killed node's running executions retried. Needs `SUNDIAL_TEST_DATABASE_URL`.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use crate::support::{eventually, Server};

/// The cluster tests restart the database and cut nodes off: they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The database URL for these tests, or `None` (the test says it was skipped).
fn database_url() -> Option<String> {
    let url = std::env::var("SUNDIAL_TEST_DATABASE_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        eprintln!("skipped: SUNDIAL_TEST_DATABASE_URL is not set");
    }
    url
}

/// Restarts the local PostgreSQL cluster, if this machine manages one with pg_ctlcluster.
fn restart_database() -> bool {
    let Ok(mut versions) = std::fs::read_dir("/etc/postgresql") else { return false };
    let Some(Ok(version)) = versions.next() else { return false };
    let version = version.file_name().to_string_lossy().into_owned();
    std::process::Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", &version, "main", "restart"])
        .status()
        .is_ok_and(|status| status.success())
}

/// Every execution of agent `default`, read through node `server`.
async fn all_executions(server: &Server) -> Vec<Value> {
    let mut executions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/v1/agents/default/executions?limit=5000&cursor={cursor}"),
            None => "/v1/agents/default/executions?limit=5000".to_owned(),
        };
        let (status, page) = server.get(&path).await;
        assert_eq!(status, 200, "{page}");
        executions.extend(page["executions"].as_array().cloned().unwrap_or_default());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return executions,
        }
    }
}

/// `count` once jobs due evenly over `window_ms` from `start`, each running ~150 ms (so a node stopped in the window
/// has runs in flight), with `retry` when given.
fn spread_jobs(
    prefix: &str,
    count: i64,
    start: chrono::DateTime<Utc>,
    window_ms: i64,
    retry: Option<Value>,
) -> Vec<Value> {
    (0..count)
        .map(|index| {
            let due = start + chrono::Duration::milliseconds(window_ms * index / count);
            let mut job = json!({
                "name": format!("{prefix}-{index}"),
                "metadata": {"i": index},
                "schedule": {"type": "once", "executeAt": sundial_core::wire::instant(due)},
                "code": "async (job) => { await new Promise((resolve) => setTimeout(resolve, 150)); return { i: job.metadata.i }; }",
            });
            if let Some(retry) = &retry {
                job["retry"] = retry.clone();
            }
            job
        })
        .collect()
}

/// Three nodes on one schema of the test database with leases of `lease` seconds, each with a data directory of its
/// own.
fn start_nodes(url: &str, schema: &str, key: &str, lease: &str) -> (Vec<tempfile::TempDir>, Vec<Server>) {
    let flags = ["--database", url, "--database-schema", schema, "--lease-seconds", lease];
    let directories: Vec<tempfile::TempDir> =
        (0..3).map(|_| tempfile::tempdir().expect("temporary directory")).collect();
    let nodes = directories.iter().map(|directory| Server::start_with(directory.path(), key, &flags)).collect();
    (directories, nodes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_fire_every_slot_once_through_a_node_kill_and_a_database_restart() {
    let Some(url) = database_url() else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let schema = format!("cluster_{}", std::process::id());
    fire_each_slot_once_through_a_kill(&url, &url, &schema, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_through_pgbouncer_in_transaction_mode_fire_every_slot_once_through_a_node_kill() {
    let Some(url) = database_url() else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    // Four server connections for three nodes of sixteen connections each: their transactions share sessions.
    let Some(bouncer) = sundial_store_postgres::testing::PgBouncer::start(&url, 4) else { return };
    let schema = format!("bouncer_{}", std::process::id());
    fire_each_slot_once_through_a_kill(&url, &bouncer.url_for(&url), &schema, false).await;
}

/// Three nodes on `schema`, reaching the database at `node_url`: 400 once jobs spread over six seconds, one node
/// killed in the middle (and the database restarted, when `restart`): every slot fires once, every occurrence
/// completes once, and the killed node's runs are abandoned and retried.
async fn fire_each_slot_once_through_a_kill(url: &str, node_url: &str, schema: &str, restart: bool) {
    let key = "sk_test_cluster";
    let flags = ["--database", node_url, "--database-schema", schema, "--lease-seconds", "3"];
    let (directories, mut nodes) = start_nodes(node_url, schema, key, "3");

    // W2-like: jobs evenly spread over six seconds (so the killed node has runs in flight), retried once after an
    // abandoned run.
    let count = 400;
    let start = Utc::now() + chrono::Duration::milliseconds(2500);
    let jobs = spread_jobs("spread", count, start, 6000, Some(json!({"maxAttempts": 2, "backoffSeconds": 1})));
    let (status, created) = nodes[0].post("/v1/agents/default/jobs/batch", json!({"jobs": jobs})).await;
    assert_eq!(status, 201, "{created}");

    // Kill a node in the middle of the window while it runs a job, restart the database, then bring the node back.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    eventually(10, "node 2 to be running a job", || async {
        (gauge(&nodes[1], "sundial_sandbox_workers_busy").await >= 1.0).then_some(())
    })
    .await;
    nodes[1].kill();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = restart && restart_database();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    nodes[1] = Server::start_with(directories[1].path(), key, &flags);

    eventually(90, "every job to complete", || async {
        let executions = all_executions(&nodes[0]).await;
        let mut completed: HashMap<String, usize> = HashMap::new();
        for execution in &executions {
            if execution["status"] == "completed" {
                *completed.entry(execution["jobId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
            }
        }
        (completed.len() == count as usize).then_some(())
    })
    .await;
    // Settle, so that a late duplicate would show up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let executions = all_executions(&nodes[0]).await;
    assert!(executions.len() >= count as usize);

    let mut scheduled: HashMap<String, usize> = HashMap::new();
    let mut completed_occurrences: HashMap<String, usize> = HashMap::new();
    for execution in &executions {
        if execution["trigger"] == "schedule" {
            *scheduled.entry(execution["jobId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
        if execution["status"] == "completed" {
            *completed_occurrences
                .entry(execution["occurrenceId"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(scheduled.len(), count as usize, "an occurrence was lost");
    let twice: Vec<_> = scheduled.iter().filter(|(_, fired)| **fired > 1).collect();
    assert!(twice.is_empty(), "slots fired twice: {twice:?}");
    let completed_twice: Vec<_> = completed_occurrences.iter().filter(|(_, done)| **done > 1).collect();
    assert!(completed_twice.is_empty(), "occurrences completed twice: {completed_twice:?}");
    // Runs cut off by the kill (or by the database restart) were abandoned and retried to completion.
    for abandoned in executions.iter().filter(|execution| execution["status"] == "abandoned") {
        let occurrence = abandoned["occurrenceId"].as_str().unwrap_or_default();
        assert_eq!(
            completed_occurrences.get(occurrence),
            Some(&1),
            "abandoned run {abandoned} was not retried to completion"
        );
    }
    let abandoned = executions.iter().filter(|execution| execution["status"] == "abandoned").count();
    eprintln!(
        "cluster ({}): {} executions, {abandoned} abandoned, database restarted: {restarted}",
        if node_url == url { "direct" } else { "through PgBouncer" },
        executions.len()
    );
    assert!(abandoned >= 1, "the killed node had runs in flight; they must show up as abandoned and retried");
    drop(nodes);
    drop_schema(url, schema);
}

/// Drops the test's schema (best effort, with the PostgreSQL client).
fn drop_schema(url: &str, schema: &str) {
    let _ = std::process::Command::new("psql")
        .args([url, "-q", "-c", &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")])
        .stdout(std::process::Stdio::null())
        .status();
}

/// Runs a command, failing the test with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program).args(args).output().expect("run command");
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A network namespace joined to the host by a veth pair: host side `10.213.N.1`, namespace side `10.213.N.2`.
struct Namespace {
    name: String,
    host_address: String,
    inner_address: String,
}

impl Namespace {
    fn create(index: u32) -> Namespace {
        let name = format!("sdnet{index}");
        let (host, inner) = (format!("sdh{index}"), format!("sdn{index}"));
        let _ = std::process::Command::new("ip").args(["netns", "del", &name]).status();
        let _ = std::process::Command::new("ip").args(["link", "del", &host]).status();
        let (host_address, inner_address) = (format!("10.213.{index}.1"), format!("10.213.{index}.2"));
        run("ip", &["netns", "add", &name]);
        run("ip", &["link", "add", &host, "type", "veth", "peer", "name", &inner]);
        run("ip", &["link", "set", &inner, "netns", &name]);
        run("ip", &["addr", "add", &format!("{host_address}/30"), "dev", &host]);
        run("ip", &["link", "set", &host, "up"]);
        run("ip", &["netns", "exec", &name, "ip", "addr", "add", &format!("{inner_address}/30"), "dev", &inner]);
        run("ip", &["netns", "exec", &name, "ip", "link", "set", &inner, "up"]);
        run("ip", &["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Namespace { name, host_address, inner_address }
    }

    /// Drops (or, with `false`, lets through again) every packet the namespace sends to port 5432.
    fn cut_database(&self, cut: bool) {
        let action = if cut { "-A" } else { "-D" };
        run(
            "ip",
            &["netns", "exec", &self.name, "iptables", action, "OUTPUT", "-p", "tcp", "--dport", "5432", "-j", "DROP"],
        );
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Forwards `listen` to PostgreSQL on loopback (the database listens on 127.0.0.1 only).
async fn database_proxy(listen: &str) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(listen).await.expect("bind the database proxy");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    })
}

/// `sundial_fires_total` of a node.
async fn fires(server: &Server) -> f64 {
    gauge(server, "sundial_fires_total").await
}

/// One unlabelled metric of a node.
async fn gauge(server: &Server, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", server.url)).await.expect("metrics").text().await.expect("text");
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .and_then(|line| line.split_whitespace().last())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_database_stops_firing_and_the_others_take_over() {
    let Some(url) = database_url() else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    if !std::process::Command::new("iptables").arg("-V").output().is_ok_and(|output| output.status.success()) {
        eprintln!("skipped: iptables is not installed");
        return;
    }
    let namespace = Namespace::create(std::process::id() % 200 + 20);
    let proxy = database_proxy(&format!("{}:5432", namespace.host_address)).await;
    let schema = format!("partition_{}", std::process::id());
    let key = "sk_test_partition";
    let inside_url = url.replace("127.0.0.1", &namespace.host_address).replace("localhost", &namespace.host_address);
    let flags = |url: &str| {
        vec![
            "--database".to_owned(),
            url.to_owned(),
            "--database-schema".into(),
            schema.clone(),
            "--lease-seconds".into(),
            "3".into(),
        ]
    };
    let host_flags = flags(&url);
    let inside_flags = flags(&inside_url);
    let host_flags: Vec<&str> = host_flags.iter().map(String::as_str).collect();
    let inside_flags: Vec<&str> = inside_flags.iter().map(String::as_str).collect();
    let directories: Vec<tempfile::TempDir> =
        (0..2).map(|_| tempfile::tempdir().expect("temporary directory")).collect();
    let host_node = Server::start_with(directories[0].path(), key, &host_flags);
    let cut_node = Server::start_in_namespace(
        &namespace.name,
        &namespace.inner_address,
        directories[1].path(),
        key,
        &inside_flags,
    );

    let count = 300;
    let start = Utc::now() + chrono::Duration::milliseconds(2000);
    let jobs: Vec<Value> = (0..count)
        .map(|index| {
            let due = start + chrono::Duration::milliseconds(8000 * index / count);
            json!({
                "name": format!("p-{index}"),
                "schedule": {"type": "once", "executeAt": sundial_core::wire::instant(due)},
                "retry": {"maxAttempts": 2, "backoffSeconds": 1},
                "code": "async () => { await new Promise((resolve) => setTimeout(resolve, 20)); return 1; }",
            })
        })
        .collect();
    let (status, created) = host_node.post("/v1/agents/default/jobs/batch", json!({"jobs": jobs})).await;
    assert_eq!(status, 201, "{created}");

    tokio::time::sleep(Duration::from_millis(3500)).await;
    let before_cut = fires(&cut_node).await;
    namespace.cut_database(true);
    // Within its lease the cut-off node stops firing; it stays stopped while cut off.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let after_lease = fires(&cut_node).await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let later = fires(&cut_node).await;
    namespace.cut_database(false);
    assert!(before_cut > 0.0, "the node inside the namespace never fired before the cut");
    assert_eq!(after_lease, later, "the cut-off node kept firing without its database");

    eventually(90, "every job to complete", || async {
        let executions = all_executions(&host_node).await;
        let done: std::collections::HashSet<String> = executions
            .iter()
            .filter(|execution| execution["status"] == "completed")
            .map(|execution| execution["jobId"].as_str().unwrap_or_default().to_owned())
            .collect();
        (done.len() == count as usize).then_some(())
    })
    .await;
    // Give the node that came back time to finish whatever it was holding, then look for duplicates.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let executions = all_executions(&host_node).await;
    let mut scheduled: HashMap<String, usize> = HashMap::new();
    let mut completed: HashMap<String, usize> = HashMap::new();
    for execution in &executions {
        if execution["trigger"] == "schedule" {
            *scheduled.entry(execution["jobId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
        if execution["status"] == "completed" {
            *completed.entry(execution["occurrenceId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(scheduled.len(), count as usize, "an occurrence was lost");
    assert!(scheduled.values().all(|fired| *fired == 1), "a slot fired twice");
    assert!(completed.values().all(|done| *done == 1), "an occurrence completed twice");
    eprintln!("partition: fires of the cut-off node {before_cut} before, {after_lease} after its lease, {later} later");
    drop(cut_node);
    drop(host_node);
    proxy.abort();
    drop_schema(&url, &schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_with_sigterm_loses_nothing_and_completes_each_job_once() {
    let Some(url) = database_url() else { return };
    let _serial = ONE_AT_A_TIME.lock().await;
    let schema = format!("rolling_{}", std::process::id());
    let key = "sk_test_rolling";
    // The default lease: a loaded two-core machine can hold a heartbeat up for seconds, and a lease that lapses for
    // that reason is not what this test is about.
    let flags = ["--database", url.as_str(), "--database-schema", schema.as_str(), "--lease-seconds", "10"];
    let (directories, mut nodes) = start_nodes(&url, &schema, key, "10");

    // Jobs spread over eight seconds, without retries: a run lost to a restart would stay lost.
    let count = 400;
    let start = Utc::now() + chrono::Duration::milliseconds(2000);
    let jobs = spread_jobs("rolling", count, start, 8000, None);
    let (status, created) = nodes[0].post("/v1/agents/default/jobs/batch?view=ids", json!({"jobs": jobs})).await;
    assert_eq!(status, 201, "{created}");
    // And recurring jobs whose runs outlast their interval: each slot waits behind the running one (overlap
    // `queue_one`) and is started on its own once that ends, a path a stop must wait for too.
    let recurring: Vec<Value> = (0..6)
        .map(|index| {
            json!({
                "name": format!("rolling-recurring-{index}"),
                "schedule": {"type": "interval", "seconds": 1},
                "policy": {"overlap": "queue_one"},
                "code": "async () => { await new Promise((resolve) => setTimeout(resolve, 1300)); return 'slow'; }",
            })
        })
        .collect();
    let (status, made) = nodes[0].post("/v1/agents/default/jobs/batch?view=ids", json!({"jobs": recurring})).await;
    assert_eq!(status, 201, "{made}");
    let recurring_ids: HashSet<String> =
        made["jobs"].as_array().expect("jobs").iter().filter_map(|job| job["id"].as_str().map(str::to_owned)).collect();
    let is_recurring = |execution: &Value| recurring_ids.contains(execution["jobId"].as_str().unwrap_or_default());

    // Restart nodes 2 and 3 one after the other with SIGTERM while they run jobs, as a rolling deploy does.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let mut stops = Vec::new();
    for index in [1, 2] {
        eventually(10, "the node to be running a job", || async {
            (gauge(&nodes[index], "sundial_sandbox_workers_busy").await >= 1.0).then_some(())
        })
        .await;
        let (_, ready) = nodes[index].get("/readyz").await;
        stops.push(format!("{} at {}", ready["node"].as_str().unwrap_or("?"), sundial_core::wire::instant(Utc::now())));
        nodes[index].terminate();
        let status =
            tokio::task::block_in_place(|| nodes[index].wait_exit(20)).expect("the node stops within its grace");
        assert!(status.success(), "a graceful stop exits 0, not {status}");
        nodes[index] = Server::start_with(directories[index].path(), key, &flags);
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }

    eventually(60, "every job to complete", || async {
        let executions = all_executions(&nodes[0]).await;
        let completed = executions
            .iter()
            .filter(|execution| execution["status"] == "completed" && !is_recurring(execution))
            .count();
        (completed >= count as usize).then_some(())
    })
    .await;
    // The recurring jobs stop; their last runs finish.
    for job_id in &recurring_ids {
        let (status, job) = nodes[0].post(&format!("/v1/agents/default/jobs/{job_id}/deactivate"), json!({})).await;
        assert_eq!(status, 200, "{job}");
    }
    eventually(30, "the recurring jobs' last runs to end", || async {
        let executions = all_executions(&nodes[0]).await;
        let busy = |execution: &&Value| matches!(execution["status"].as_str(), Some("running" | "pending"));
        (!executions.iter().filter(|execution| is_recurring(execution)).any(|execution| busy(&execution))).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (recurring_runs, executions): (Vec<Value>, Vec<Value>) =
        all_executions(&nodes[0]).await.into_iter().partition(|execution| is_recurring(execution));
    let mut runs: HashMap<String, usize> = HashMap::new();
    for execution in &executions {
        *runs.entry(execution["jobId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    let statuses: Vec<&str> = executions.iter().filter_map(|execution| execution["status"].as_str()).collect();
    eprintln!("rolling restart: {} executions for {count} jobs", executions.len());
    assert_eq!(runs.len(), count as usize, "an occurrence was lost");
    let abandoned: Vec<String> = executions
        .iter()
        .filter(|execution| execution["status"] == "abandoned")
        .map(|execution| {
            let field = |name: &str| execution[name].as_str().unwrap_or("-").to_owned();
            format!(
                "due {} started {} ended {}: {}",
                field("dueAt"),
                field("startedAt"),
                field("completedAt"),
                field("error")
            )
        })
        .collect();
    eprintln!(
        "rolling restart: {} abandoned and retried (stopped: {}):\n{}",
        abandoned.len(),
        stops.join(", "),
        abandoned.join("\n")
    );
    // Nothing lost, nothing done twice: every job's occurrence completed exactly once.
    let mut completed: HashMap<String, usize> = HashMap::new();
    for execution in executions.iter().filter(|execution| execution["status"] == "completed") {
        *completed.entry(execution["jobId"].as_str().unwrap_or_default().to_owned()).or_default() += 1;
    }
    assert_eq!(completed.len(), count as usize, "a job never completed");
    let twice: Vec<_> = completed.iter().filter(|(_, done)| **done > 1).collect();
    assert!(twice.is_empty(), "jobs completed twice: {twice:?}");
    let others: Vec<&&str> = statuses.iter().filter(|status| !matches!(**status, "completed" | "abandoned")).collect();
    assert!(others.is_empty(), "runs neither completed nor abandoned and retried: {others:?}");
    // A graceful stop finishes every run it started and hands back every claim it did not: no run of a stopped
    // node waits for its lease to be abandoned.
    assert!(abandoned.is_empty(), "{} runs abandoned by two graceful stops", abandoned.len());
    // The recurring jobs' slots: each ran at most once, a slot that found its job still running waited and ran or
    // was skipped (`queue_one`), and none was abandoned.
    let mut slots: HashMap<(String, String), usize> = HashMap::new();
    let mut recurring_statuses: HashMap<String, usize> = HashMap::new();
    for execution in &recurring_runs {
        let status = execution["status"].as_str().unwrap_or("-").to_owned();
        if status == "completed" {
            let slot = (execution["jobId"].to_string(), execution["scheduledFor"].to_string());
            *slots.entry(slot).or_default() += 1;
        }
        *recurring_statuses.entry(status).or_default() += 1;
    }
    eprintln!("rolling restart: recurring runs {recurring_statuses:?}");
    assert!(recurring_statuses.get("completed").copied().unwrap_or(0) >= 6, "{recurring_statuses:?}");
    let unexpected: Vec<_> = recurring_statuses
        .keys()
        .filter(|status| !matches!(status.as_str(), "completed" | "skipped" | "cancelled"))
        .collect();
    assert!(unexpected.is_empty(), "recurring runs ended otherwise: {recurring_statuses:?}");
    assert!(slots.values().all(|done| *done == 1), "a recurring slot completed twice");
    drop(nodes);
    drop_schema(&url, &schema);
}
