//! Compatibility with the published `lua-cli@3.37.0` client, driven through Node against the real server.
//!
//! The JavaScript side lives in `tests/lua-cli/` at the repository root: a private npm package that depends on
//! `lua-cli` 3.37.0 exactly (with a committed lockfile), and `*.test.mjs` files for Node's built-in test runner. Each
//! test here starts `sundial serve` on a random port, mints a user token, and runs one of those files with
//! `node --test`, passing the server through `SUNDIAL_*` variables (see `tests/lua-cli/support.mjs`). The first test
//! to need them installs the npm packages with `npm ci` into `tests/lua-cli/node_modules` (npm's download cache goes to
//! a temporary directory that is removed afterwards).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::Server;

/// The admin key of the servers these tests start.
const ADMIN_KEY: &str = "sk_lua_cli_proof_admin";

/// The agent lua-cli's `lua.skill.yaml` names (the one `sundial serve` creates on its first start).
const AGENT: &str = "default";

/// The user whose token lua-cli's tools run with.
const USER: &str = "lua-cli-user";

/// How long one file of Node tests may run.
const NODE_DEADLINE: Duration = Duration::from_secs(300);

/// The test files, each run by one test below; a new file must be added here too (checked).
const TEST_FILES: &[&str] = &[
    "seed-examples.test.mjs",
    "job-instance.test.mjs",
    "predefined-job.test.mjs",
    "cli-jobs.test.mjs",
    "lua-project.test.mjs",
];

/// Serializes `npm ci` between the tests of this binary.
static INSTALL: Mutex<()> = Mutex::new(());

/// `tests/lua-cli` of this repository.
fn package_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().expect("repository root").join("tests").join("lua-cli")
}

/// Installs the npm packages unless `node_modules` was installed from the current lockfile.
fn install_packages(dir: &Path) {
    let _guard = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|metadata| metadata.modified()).ok();
    let lockfile = modified(dir.join("package-lock.json")).expect("tests/lua-cli/package-lock.json is committed");
    let installed = modified(dir.join("node_modules").join(".package-lock.json"));
    if dir.join("node_modules").join("lua-cli").join("package.json").exists()
        && installed.is_some_and(|installed| installed >= lockfile)
    {
        return;
    }
    let cache = tempfile::tempdir().expect("temporary npm cache");
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--cache"])
        .arg(cache.path())
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run npm: Node.js 20 and npm must be installed to prove lua-cli compatibility");
    assert!(
        output.status.success(),
        "npm ci in {} failed ({})\nstdout:\n{}\nstderr:\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Starts a server with a user token, runs `node --test <file>` against it and fails with Node's report unless every
/// test passed.
async fn run_node_tests(file: &str) {
    assert!(TEST_FILES.contains(&file), "{file} is not listed in TEST_FILES");
    let dir = package_dir();
    let install_dir = dir.clone();
    tokio::task::spawn_blocking(move || install_packages(&install_dir)).await.expect("npm install");

    let data = tempfile::tempdir().expect("data directory");
    let server = Server::start(data.path(), ADMIN_KEY);
    let (status, body) = server.post(&format!("/v1/agents/{AGENT}/users/{USER}/tokens"), json!({})).await;
    assert_eq!(status, 201, "mint a user token: {body}");
    let token = body["token"].as_str().expect("token").to_owned();

    let output = tempfile::tempdir().expect("output directory");
    let stdout_path = output.path().join("stdout");
    let stderr_path = output.path().join("stderr");
    let mut command = Command::new("node");
    command
        .args(["--test", "--test-reporter=spec", file])
        .current_dir(&dir)
        .env("SUNDIAL_URL", &server.url)
        .env("SUNDIAL_ADMIN_KEY", ADMIN_KEY)
        .env("SUNDIAL_AGENT_ID", AGENT)
        .env("SUNDIAL_USER_ID", USER)
        .env("SUNDIAL_USER_TOKEN", &token)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("LUA_") {
            command.env_remove(name);
        }
    }
    let mut child = command.spawn().expect("run node: Node.js 20 must be installed to prove lua-cli compatibility");
    let deadline = Instant::now() + NODE_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let report = format!(
        "node --test {file}\n--- stdout\n{}\n--- stderr\n{}",
        std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        std::fs::read_to_string(&stderr_path).unwrap_or_default()
    );
    match status {
        None => panic!("node did not finish within {NODE_DEADLINE:?}\n{report}"),
        Some(status) => assert!(status.success(), "node exited with {status}\n{report}"),
    }
    drop(server);
}

#[test]
fn every_lua_cli_test_file_is_run() {
    let files: BTreeSet<String> = std::fs::read_dir(package_dir())
        .expect("tests/lua-cli")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    let listed: BTreeSet<String> = TEST_FILES.iter().map(|name| (*name).to_owned()).collect();
    assert_eq!(files, listed, "tests/lua-cli/*.test.mjs and TEST_FILES differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_cli_tools_run_the_seed_examples_against_sundial() {
    run_node_tests("seed-examples.test.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_cli_job_instances_agree_with_the_server() {
    run_node_tests("job-instance.test.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_cli_pushes_publishes_and_deletes_a_pre_defined_job() {
    run_node_tests("predefined-job.test.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_cli_jobs_commands_print_what_lua_cli_documents() {
    run_node_tests("cli-jobs.test.mjs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_cli_project_tests_pushes_and_deploys_against_sundial() {
    run_node_tests("lua-project.test.mjs").await;
}
