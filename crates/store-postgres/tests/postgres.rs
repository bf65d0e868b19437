//! Runs the store conformance suites against PostgreSQL, each check in a fresh schema, and the races that only a
//! shared database has: nodes starting together, schedulers recording the same slots, nodes claiming one queue.
//!
//! Reads the server's URL from `SUNDIAL_TEST_DATABASE_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); without
//! it every test says it was skipped and passes. Each test works in schemas of its own and drops them afterwards.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sundial_core::{Schedule, Trigger};
use sundial_store::conformance::{sample_job, slot_execution, CHECKS};
use sundial_store::data::{DataEntry, DataStore, SearchQuery};
use sundial_store::{OccurrenceRecord, StartOutcome, Store, StoreError};
use sundial_store_postgres::PostgresStore;

/// The test server's URL, or `None` (and a line saying so) when the tests are to be skipped.
fn database_url(test: &str) -> Option<String> {
    match std::env::var("SUNDIAL_TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            println!("skipped {test}: SUNDIAL_TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// A schema name no other run uses.
fn unique_schema(label: &str) -> String {
    let random = sundial_store::new_id("s");
    let label: String = label.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(24).collect();
    format!("sundial_test_{}_{}", label.to_ascii_lowercase(), &random[2..])
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to the test database");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn drop_schema(url: &str, schema: &str) {
    let client = admin_client(url).await;
    client.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")).await.expect("drop the test schema");
}

/// Runs `body` with a fresh schema name, then drops the schema — also when `body` panics, whose panic then goes on.
async fn in_fresh_schema<F, Fut>(url: &str, label: &str, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let schema = unique_schema(label);
    let outcome = tokio::spawn(body(schema.clone())).await;
    drop_schema(url, &schema).await;
    if let Err(error) = outcome {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
        panic!("test task failed: {error}");
    }
}

async fn connect(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::connect_schema(url, 4, schema).await.expect("connect the store")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_conformance_suite() {
    let Some(url) = database_url("postgres_passes_the_conformance_suite") else { return };
    for check in CHECKS {
        let url2 = url.clone();
        in_fresh_schema(&url, check, move |schema| async move {
            let store = connect(&url2, &schema).await;
            sundial_store::conformance::run(check, &store).await;
            store.close();
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_the_data_conformance_suite() {
    let Some(url) = database_url("postgres_passes_the_data_conformance_suite") else { return };
    for check in sundial_store::data::conformance::CHECKS {
        let url2 = url.clone();
        in_fresh_schema(&url, check, move |schema| async move {
            let store = connect(&url2, &schema).await;
            sundial_store::data::conformance::run(check, &store).await;
            store.close();
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_through_pgbouncer_in_transaction_mode() {
    let Some(url) = database_url("the_store_works_through_pgbouncer_in_transaction_mode") else { return };
    // Two server connections for the four each store holds: every transaction may land on another session.
    let Some(bouncer) = sundial_store_postgres::testing::PgBouncer::start(&url, 2) else { return };
    let pooled = bouncer.url_for(&url);

    // Without `pool_mode=transaction` the schema goes as a startup option, which PgBouncer refuses.
    let schema = unique_schema("bouncer_plain");
    let plain = pooled.replace("?pool_mode=transaction", "");
    let error =
        PostgresStore::connect_schema(&plain, 2, &schema).await.expect_err("a startup option through PgBouncer");
    assert!(error.to_string().contains("unsupported startup parameter"), "{error}");

    for check in CHECKS {
        let pooled = pooled.clone();
        in_fresh_schema(&url, check, move |schema| async move {
            let store = PostgresStore::connect_schema(&pooled, 4, &schema).await.expect("connect through PgBouncer");
            sundial_store::conformance::run(check, &store).await;
            store.close();
        })
        .await;
    }
    for check in sundial_store::data::conformance::CHECKS {
        let pooled = pooled.clone();
        in_fresh_schema(&url, check, move |schema| async move {
            let store = PostgresStore::connect_schema(&pooled, 4, &schema).await.expect("connect through PgBouncer");
            sundial_store::data::conformance::run(check, &store).await;
            store.close();
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrations_run_once_when_nodes_start_together() {
    let Some(url) = database_url("migrations_run_once_when_nodes_start_together") else { return };
    let url2 = url.clone();
    in_fresh_schema(&url, "migrate", move |schema| async move {
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let (url, schema) = (url2.clone(), schema.clone());
                tokio::spawn(async move { PostgresStore::connect_schema(&url, 2, &schema).await })
            })
            .collect();
        let mut stores = Vec::new();
        for start in starts {
            stores.push(start.await.expect("join").expect("every node connects"));
        }
        let client = admin_client(&url2).await;
        let rows = client
            .query(&format!("SELECT version FROM \"{schema}\".schema_migrations ORDER BY version"), &[])
            .await
            .expect("read the migrations");
        let versions: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
        let expected: Vec<i64> = (1..=versions.len() as i64).collect();
        assert!(!versions.is_empty(), "no migration was recorded");
        assert_eq!(versions, expected, "each migration is recorded once, in order");

        // The nodes share one database: what one writes, another reads.
        stores[0].agent_insert(&sundial_store::Agent::new("a", Utc::now())).await.expect("insert agent");
        assert!(stores[3].agent_get("a").await.expect("get").is_some());
        // A node that starts later finds nothing to migrate.
        let late = connect(&url2, &schema).await;
        assert_eq!(late.agent_list().await.expect("list").len(), 1);
    })
    .await;
}

/// `count` active interval jobs of agent `a`, all due at the same slot, stored through `store`.
async fn insert_due_jobs(store: &PostgresStore, count: usize) -> Vec<sundial_core::Job> {
    let mut jobs = Vec::with_capacity(count);
    let mut batch = Vec::with_capacity(count);
    for _ in 0..count {
        let (job, version) = sample_job(Schedule::interval(10));
        jobs.push(job.clone());
        batch.push((job, Some(version)));
    }
    store.jobs_insert_batch(std::sync::Arc::new(batch.clone())).await.expect("insert jobs");
    jobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_record_each_slot_once() {
    let Some(url) = database_url("two_nodes_record_each_slot_once") else { return };
    let url2 = url.clone();
    in_fresh_schema(&url, "record", move |schema| async move {
        let nodes = [Arc::new(connect(&url2, &schema).await), Arc::new(connect(&url2, &schema).await)];

        // 100 jobs due at one slot; four schedulers (two per node) each record all of them in one batch, in
        // different orders: every slot is recorded once, and no batch deadlocks on another.
        let jobs = Arc::new(insert_due_jobs(&nodes[0], 100).await);
        let mut tasks = Vec::new();
        for task in 0..4usize {
            let (store, jobs) = (nodes[task % 2].clone(), jobs.clone());
            tasks.push(tokio::spawn(async move {
                let mut order: Vec<usize> = (0..jobs.len()).collect();
                match task {
                    0 => {}
                    1 => order.reverse(),
                    _ => order.sort_by_key(|index| (index * 37 + task * 11) % 101),
                }
                let records: Vec<OccurrenceRecord> = order
                    .iter()
                    .map(|&index| {
                        let job = &jobs[index];
                        let slot = job.next_run_at.unwrap_or_default();
                        OccurrenceRecord {
                            job_id: job.id.clone(),
                            expected_next_run_at: slot,
                            next_run_at: Some(slot + Duration::seconds(10)),
                            missed: 0,
                            slots: vec![slot_execution(job, slot)],
                        }
                    })
                    .collect();
                store.occurrences_record(&records, Utc::now()).await.expect("record")
            }));
        }
        let mut applied = 0;
        for task in tasks {
            applied += task.await.expect("join");
        }
        assert_eq!(applied, 100, "each job's slot is recorded by exactly one scheduler");
        for job in jobs.iter() {
            let (executions, total) = nodes[1].execution_list(&job.id, None, 10, 0).await.expect("list");
            assert_eq!(total, 1, "job {} has {executions:?}", job.id);
        }

        // One job, 100 successive slots: four schedulers race the compare-and-set on its next slot.
        let job = insert_due_jobs(&nodes[1], 1).await.remove(0);
        let first = job.next_run_at.unwrap_or_default();
        let last = first + Duration::seconds(10 * 99);
        let mut tasks = Vec::new();
        for task in 0..4usize {
            let (store, job) = (nodes[task % 2].clone(), job.clone());
            tasks.push(tokio::spawn(async move {
                let mut applied = 0;
                loop {
                    let current = store.job_get("a", &job.id).await.expect("get").expect("job");
                    let Some(slot) = current.next_run_at.filter(|slot| *slot <= last) else { break };
                    let record = OccurrenceRecord {
                        job_id: job.id.clone(),
                        expected_next_run_at: slot,
                        next_run_at: Some(slot + Duration::seconds(10)),
                        missed: 0,
                        slots: vec![slot_execution(&job, slot)],
                    };
                    applied += store.occurrences_record(&[record], Utc::now()).await.expect("record");
                }
                applied
            }));
        }
        let mut applied = 0;
        for task in tasks {
            applied += task.await.expect("join");
        }
        assert_eq!(applied, 100, "each of the 100 slots is recorded once");
        let (executions, total) = nodes[0].execution_list(&job.id, None, 1000, 0).await.expect("list");
        let slots: HashSet<Option<DateTime<Utc>>> =
            executions.iter().map(|execution| execution.scheduled_for).collect();
        assert_eq!((total, slots.len()), (100, 100), "one execution per slot");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_claim_each_execution_once() {
    let Some(url) = database_url("two_nodes_claim_each_execution_once") else { return };
    let url2 = url.clone();
    in_fresh_schema(&url, "claim", move |schema| async move {
        let nodes = [Arc::new(connect(&url2, &schema).await), Arc::new(connect(&url2, &schema).await)];
        let job = insert_due_jobs(&nodes[0], 1).await.remove(0);
        let first = job.next_run_at.unwrap_or_default();
        let slots: Vec<_> = (0..1000).map(|index| slot_execution(&job, first + Duration::seconds(index))).collect();
        let record = OccurrenceRecord {
            job_id: job.id.clone(),
            expected_next_run_at: first,
            next_run_at: Some(first + Duration::seconds(1000)),
            missed: 0,
            slots,
        };
        assert_eq!(nodes[0].occurrences_record(&[record], first).await.expect("record"), 1);

        let horizon = first + Duration::seconds(1000);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (node, store) in nodes.iter().enumerate() {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let owner = format!("node-{node}");
                let mut claimed = Vec::new();
                loop {
                    let batch = store
                        .executions_claim(horizon, &owner, horizon + Duration::seconds(60), first, 50)
                        .await
                        .expect("claim");
                    if batch.is_empty() {
                        break;
                    }
                    claimed.extend(batch.into_iter().map(|execution| execution.id));
                }
                claimed
            }));
        }
        let mut per_node = Vec::new();
        for task in tasks {
            per_node.push(task.await.expect("join"));
        }
        let elapsed = started.elapsed();
        let all: HashSet<&String> = per_node.iter().flatten().collect();
        let claims: usize = per_node.iter().map(Vec::len).sum();
        assert_eq!((claims, all.len()), (1000, 1000), "every execution is claimed by exactly one node");
        assert!(
            per_node.iter().all(|claimed| !claimed.is_empty()),
            "both nodes took part: {:?}",
            per_node.iter().map(Vec::len).collect::<Vec<_>>()
        );
        println!(
            "two nodes claimed 1000 executions ({} + {}) in {:.1} ms: {:.0} claims/s",
            per_node[0].len(),
            per_node[1].len(),
            elapsed.as_secs_f64() * 1000.0,
            1000.0 / elapsed.as_secs_f64()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_start_an_execution_once() {
    let Some(url) = database_url("two_nodes_start_an_execution_once") else { return };
    let url2 = url.clone();
    in_fresh_schema(&url, "start", move |schema| async move {
        let nodes = [Arc::new(connect(&url2, &schema).await), Arc::new(connect(&url2, &schema).await)];
        let job = insert_due_jobs(&nodes[0], 1).await.remove(0);
        for round in 0..20 {
            // A manual trigger is not claimed: both nodes may try to start it.
            let mut execution = slot_execution(&job, job.next_run_at.unwrap_or_default());
            execution.trigger = Trigger::Manual;
            nodes[0].execution_insert(&execution).await.expect("insert");
            let starts: Vec<_> = (0..2usize)
                .map(|node| {
                    let (store, id) = (nodes[node].clone(), execution.id.clone());
                    tokio::spawn(async move {
                        let now = Utc::now();
                        store.execution_start(&id, &format!("node-{node}"), now + Duration::seconds(60), now).await
                    })
                })
                .collect();
            let mut started = 0;
            for start in starts {
                match start.await.expect("join").expect("start") {
                    StartOutcome::Started(_) => started += 1,
                    StartOutcome::Gone => {}
                    other => panic!("round {round}: unexpected {other:?}"),
                }
            }
            assert_eq!(started, 1, "round {round}: one node starts the execution");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deduplicated_messages_are_stored_once() {
    let Some(url) = database_url("concurrent_deduplicated_messages_are_stored_once") else { return };
    let url2 = url.clone();
    in_fresh_schema(&url, "messages", move |schema| async move {
        let nodes = [Arc::new(connect(&url2, &schema).await), Arc::new(connect(&url2, &schema).await)];
        let sends: Vec<_> = (0..8usize)
            .map(|task| {
                let store = nodes[task % 2].clone();
                tokio::spawn(async move {
                    let content = json!({"type": "text", "text": "once"});
                    store.message_insert("a", "u1", &content, None, Some("occ_1:0"), Utc::now()).await
                })
            })
            .collect();
        let mut ids = HashSet::new();
        for send in sends {
            ids.insert(send.await.expect("join").expect("insert").id);
        }
        assert_eq!(ids.len(), 1, "one message for one dedupe key");
        assert_eq!(nodes[1].message_list("a", "u1", 0, 10).await.expect("list").len(), 1);
        let text = json!({"type": "text", "text": "nul \u{0} inside"});
        let stored = nodes[0].message_insert("a", "u1", &text, None, None, Utc::now()).await.expect("a NUL is stored");
        assert_eq!(stored.content["text"], json!("nul \u{fffd} inside"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_takes_any_text() {
    let Some(url) = database_url("search_takes_any_text") else { return };
    let url2 = url.clone();
    in_fresh_schema(&url, "search", move |schema| async move {
        let store = connect(&url2, &schema).await;
        let long_word = "x".repeat(3000);
        let data = match json!({"text": format!("Ünïcode café, the end {long_word}")}) {
            serde_json::Value::Object(object) => object,
            _ => unreachable!("an object literal"),
        };
        let entry = DataEntry {
            agent_id: "a".into(),
            collection: "notes".into(),
            id: sundial_store::new_id("ent"),
            data,
            search_text: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        store.data_entry_insert(&entry).await.expect("insert");
        for text in ["ÜNÏCODE", "the", "CAFÉ end", long_word.as_str(), "it's \\ 'quoted' \"x\" :* & | !"] {
            let query = SearchQuery { text: text.into(), limit: 10, threshold: 0.0 };
            let hits = store.data_entry_search("a", "notes", &query).await.expect("search");
            assert!(hits.len() <= 1, "{text}: {hits:?}");
            if !text.starts_with("it's") {
                assert_eq!(hits.first().map(|hit| hit.score), Some(1.0), "{text}: {hits:?}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_is_a_database_error() {
    let outcome = PostgresStore::connect("postgres://postgres@127.0.0.1:1/test?connect_timeout=2", 1).await;
    assert!(matches!(outcome, Err(StoreError::Database(_))), "{outcome:?}");
    let outcome = PostgresStore::connect_schema("postgres://postgres@127.0.0.1:1/test", 1, "Bad-Name").await;
    assert!(matches!(outcome, Err(StoreError::Database(_))), "{outcome:?}");
}

/// Certificates the TLS test makes: an authority, a server certificate it signed for `localhost` only, and an
/// unrelated authority. They live where the local PostgreSQL can read them and are kept (a restart of the database
/// with its configuration pointing at deleted files would fail).
struct TestCertificates {
    directory: std::path::PathBuf,
}

impl TestCertificates {
    fn make() -> TestCertificates {
        let directory = std::path::PathBuf::from("/var/lib/postgresql/sundial-test-tls");
        std::fs::create_dir_all(&directory).expect("certificate directory");
        let openssl = |args: &[&str]| {
            let output = std::process::Command::new("openssl").args(args).current_dir(&directory).output();
            let output = output.expect("run openssl");
            assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        };
        for authority in ["ca", "other-ca"] {
            openssl(&[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                &format!("/CN=Sundial test {authority}"),
                "-keyout",
                &format!("{authority}.key"),
                "-out",
                &format!("{authority}.pem"),
            ]);
        }
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ]);
        std::fs::write(directory.join("server.ext"), "subjectAltName = DNS:localhost\n").expect("extensions");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ]);
        // PostgreSQL refuses a key others can read; it runs as the postgres user.
        let chown = std::process::Command::new("chown").args(["-R", "postgres:postgres"]).arg(&directory).status();
        assert!(chown.is_ok_and(|status| status.success()), "chown the certificates to postgres");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(directory.join("server.key"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        TestCertificates { directory }
    }

    fn path(&self, name: &str) -> String {
        self.directory.join(name).display().to_string()
    }
}

/// Points the local PostgreSQL at the test's server certificate while it lives, and back at its own after.
struct ServerCertificate {
    url: String,
}

impl ServerCertificate {
    async fn install(url: &str, certificates: &TestCertificates) -> ServerCertificate {
        let client = admin_client(url).await;
        let cert = certificates.path("server.pem");
        let key = certificates.path("server.key");
        client.batch_execute(&format!("ALTER SYSTEM SET ssl_cert_file = '{cert}'")).await.expect("set ssl_cert_file");
        client.batch_execute(&format!("ALTER SYSTEM SET ssl_key_file = '{key}'")).await.expect("set ssl_key_file");
        client.batch_execute("ALTER SYSTEM SET ssl = on").await.expect("set ssl");
        client.query_one("SELECT pg_reload_conf()", &[]).await.expect("reload");
        // The reload is asynchronous: wait until new connections are offered the test's certificate.
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        ServerCertificate { url: url.to_owned() }
    }
}

impl Drop for ServerCertificate {
    fn drop(&mut self) {
        let url = self.url.clone();
        let reset = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let client = admin_client(&url).await;
                // One statement at a time: ALTER SYSTEM cannot run in the transaction several statements share.
                for setting in ["ssl_cert_file", "ssl_key_file", "ssl"] {
                    if let Err(error) = client.batch_execute(&format!("ALTER SYSTEM RESET {setting}")).await {
                        eprintln!("cannot reset {setting} of the test database: {error}");
                    }
                }
                let _ = client.query_one("SELECT pg_reload_conf()", &[]).await;
            });
        });
        let _ = reset.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_check_the_server_as_libpq_does() {
    let Some(url) = database_url("tls_modes_check_the_server_as_libpq_does") else { return };
    // The test configures the server it reaches, so it needs the local one (and its superuser).
    let Some(rest) = url.strip_prefix("postgres://postgres@127.0.0.1:5432/") else {
        println!("skipped the TLS test: {url} is not the local PostgreSQL");
        return;
    };
    let database = rest.split('?').next().unwrap_or(rest);
    install_crypto_provider();
    let certificates = TestCertificates::make();
    let _installed = ServerCertificate::install(&url, &certificates).await;
    let schema = unique_schema("tls");
    let connect = |host: &str, query: String| {
        let url = format!("postgres://postgres@{host}:5432/{database}?{query}");
        let schema = schema.clone();
        async move { PostgresStore::connect_schema(&url, 2, &schema).await.map(|store| store.close()) }
    };
    let ca = certificates.path("ca.pem");
    let other = certificates.path("other-ca.pem");

    connect("localhost", format!("sslmode=verify-full&sslrootcert={ca}"))
        .await
        .expect("verify-full with the right authority and name");
    connect("127.0.0.1", format!("sslmode=verify-ca&sslrootcert={ca}"))
        .await
        .expect("verify-ca does not compare the name");
    connect("127.0.0.1", "sslmode=require".into()).await.expect("require trusts any certificate");
    connect("127.0.0.1", "sslmode=disable".into()).await.expect("disable connects in plain");

    let error =
        connect("localhost", format!("sslmode=verify-full&sslrootcert={other}")).await.expect_err("another authority");
    assert!(error.to_string().contains("UnknownIssuer"), "a clear error for an unknown authority: {error}");
    let error = connect("127.0.0.1", format!("sslmode=verify-full&sslrootcert={ca}")).await.expect_err("another name");
    assert!(error.to_string().contains("not valid for name"), "a clear error for a wrong host name: {error}");
    let error =
        connect("localhost", "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem".into()).await.expect_err("no file");
    assert!(error.to_string().contains("sslrootcert /nonexistent/ca.pem"), "{error}");
    let error = connect("localhost", "sslmode=verify".into()).await.expect_err("no such mode");
    assert!(error.to_string().contains("sslmode \"verify\""), "{error}");
    drop_schema(&url, &schema).await;
}

/// rustls needs its process-wide crypto provider chosen once (the server does this at start).
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What one scheduling cycle costs per execution: `JOBS` once jobs due now go through every step a node takes —
/// recorded, claimed, started, finished — on a database that already holds `backlog` jobs due in a day and
/// `backlog` finished executions. Answers tuples read per execution (PostgreSQL's count for the schema), index scans
/// per execution, and the store's own transactions and statements per execution.
async fn cycle_cost(url: &str, backlog: i64, analysed: bool) -> (f64, f64, f64, f64) {
    const JOBS: usize = 200;
    let url = url.to_owned();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    in_fresh_schema(
        &url.clone(),
        &format!("flat{backlog}{}", if analysed { "a" } else { "" }),
        move |schema| async move {
            let store = connect(&url, &schema).await;
            let observer = sundial_store_postgres::observe::Observer::new(&url, &schema).expect("observer");
            if backlog > 0 {
                observer.load_backlog("a", backlog, backlog, analysed).await.expect("load the backlog");
            }
            let now = Utc::now();
            let mut batch = Vec::with_capacity(JOBS);
            for _ in 0..JOBS {
                let (mut job, mut version) = sample_job(Schedule::once(now));
                job.next_run_at = Some(now);
                job.anchor_at = now;
                version.created_at = now;
                batch.push((job, Some(version)));
            }
            store.jobs_insert_batch(Arc::new(batch)).await.expect("insert the due jobs");
            let before = settled(&observer).await;
            let counted = store.counters();

            let horizon = now + Duration::seconds(1);
            let lease = now + Duration::seconds(30);
            let due = store.jobs_due(horizon, 500).await.expect("due jobs");
            assert_eq!(due.len(), JOBS, "only the jobs due now are read, not the backlog's");
            let records: Vec<OccurrenceRecord> = due
                .iter()
                .map(|due| OccurrenceRecord {
                    job_id: due.job.id.clone(),
                    expected_next_run_at: now,
                    next_run_at: None,
                    missed: 0,
                    slots: vec![slot_execution(&due.job, now)],
                })
                .collect();
            assert_eq!(store.occurrences_record(&records, now).await.expect("record"), JOBS);
            let claimed = store.executions_claim(horizon, "node", lease, now, 1000).await.expect("claim");
            assert_eq!(claimed.len(), JOBS);
            let mut finishes = Vec::with_capacity(JOBS);
            for chunk in claimed.chunks(100) {
                let starts: Vec<(String, DateTime<Utc>)> =
                    chunk.iter().map(|execution| (execution.id.clone(), now)).collect();
                let outcomes = store.executions_start(&starts, "node", lease).await.expect("start");
                assert!(outcomes.iter().all(|outcome| matches!(outcome, StartOutcome::Started(_))));
                finishes.extend(chunk.iter().map(|execution| sundial_store::ExecutionFinish {
                    id: execution.id.clone(),
                    status: sundial_core::ExecutionStatus::Completed,
                    result: Some(json!({"ok": true})),
                    error: None,
                    logs: Vec::new(),
                    completed_at: now,
                    duration_ms: Some(1),
                    retry: None,
                    job_effect: sundial_core::JobEffect::CompleteOnce,
                    lease_owner: Some("node".into()),
                }));
            }
            for chunk in finishes.chunks(JOBS) {
                assert!(store.executions_finish(chunk).await.expect("finish").iter().all(|recorded| *recorded));
            }
            let sent = store.counters();
            // Sessions publish their counts when they end.
            store.close();
            let after = settled(&observer).await;
            if std::env::var_os("SUNDIAL_TEST_SHOW_INDEXES").is_some() {
                let client = admin_client(&url).await;
                for row in client
                    .query(
                        "SELECT indexrelname, idx_scan, idx_tup_read, idx_tup_fetch FROM pg_stat_user_indexes \
                     WHERE schemaname = $1 ORDER BY idx_tup_read DESC LIMIT 8",
                        &[&schema],
                    )
                    .await
                    .expect("indexes")
                {
                    let (name, scans, read, fetched): (String, i64, i64, i64) =
                        (row.get(0), row.get(1), row.get(2), row.get(3));
                    println!("{backlog}: {name} scans {scans} read {read} fetched {fetched}");
                }
            }
            let done = after.since(&before);
            let per = |count: f64| count / JOBS as f64;
            let _ = sender.send((
                per(done.tuples_read as f64),
                per(done.index_scans as f64),
                per((sent.transactions - counted.transactions) as f64),
                per((sent.statements - counted.statements) as f64),
            ));
        },
    )
    .await;
    receiver.await.expect("the cycle's cost")
}

/// The schema's counters once PostgreSQL has published them (they stop moving).
async fn settled(
    observer: &sundial_store_postgres::observe::Observer,
) -> sundial_store_postgres::observe::DatabaseCounters {
    let mut last = observer.counters().await.expect("counters");
    let mut still = 0;
    while still < 5 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let now = observer.counters().await.expect("counters");
        still = if (now.tuples_read, now.index_scans) == (last.tuples_read, last.index_scans) { still + 1 } else { 0 };
        last = now;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cost_of_an_execution_does_not_grow_with_what_the_database_holds() {
    let Some(url) = database_url("the_cost_of_an_execution_does_not_grow_with_what_the_database_holds") else {
        return;
    };
    let empty = cycle_cost(&url, 0, false).await;
    // The backlog as autovacuum leaves it after long use, and as it is when it came in the minute before autovacuum
    // first looked: PostgreSQL then plans without statistics, and a statement that filters on more than the rows'
    // keys can be planned as a scan of the whole table.
    for analysed in [true, false] {
        let full = cycle_cost(&url, 20_000, analysed).await;
        println!(
            "per execution (tuples read, index scans, transactions, statements): empty {empty:?}, backlog \
             {full:?} (analysed: {analysed})"
        );
        assert_eq!((full.2, full.3), (empty.2, empty.3), "transactions and statements per execution are constants");
        // Index scans are not compared: on a database this small PostgreSQL reads the tables whole instead, and the
        // tuples it reads then count against the empty database, never for it.
        assert!(
            full.0 <= empty.0 * 1.2 + 2.0,
            "tuples read per execution grew with 20,000 finished executions and 20,000 future jobs (analysed: \
             {analysed}): {empty:?} on an empty database, {full:?} with the backlog"
        );
    }
}
