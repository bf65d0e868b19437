//! Attacks on the trust boundaries, each tried as an attacker would and shown failing: a job made with a user token
//! reaching past its user from inside its code, a user token reaching the agent's own jobs, and the other findings of
//! the security review (connections, fairness between agents, keys, sign-ins, cookies and files).

use serde_json::{json, Value};

use crate::support::{eventually, send, Server};

/// A client acting with `key` (and, when given, for `user` through `X-User-Id`).
struct As<'a> {
    server: &'a Server,
    key: String,
    user: Option<&'a str>,
}

impl As<'_> {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request =
            reqwest::Client::new().request(method, format!("{}{path}", self.server.url)).bearer_auth(&self.key);
        match self.user {
            Some(user) => request.header("x-user-id", user),
            None => request,
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        send(self.request(reqwest::Method::GET, path)).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        send(self.request(method, path).json(&body)).await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, body).await
    }
}

/// Mints a token for `user` of agent `default` with the admin key (all scopes when `scopes` is `None`).
async fn mint(server: &Server, user: &str, scopes: Option<&[&str]>) -> String {
    let body = match scopes {
        Some(scopes) => json!({ "scopes": scopes }),
        None => json!({}),
    };
    let (status, token) = server.post(&format!("/v1/agents/default/users/{user}/tokens"), body).await;
    assert_eq!(status, 201, "{token}");
    token["token"].as_str().expect("token").to_owned()
}

/// Creates an inactive job with `code` as `client`; answers the job.
async fn create(client: &As<'_>, name: &str, code: &str, metadata: Value) -> Value {
    let body = json!({"name": name, "schedule": {"type": "interval", "seconds": 3600}, "activate": false,
        "code": code, "metadata": metadata});
    let (status, job) = client.post("/v1/agents/default/jobs", body).await;
    assert_eq!(status, 201, "{job}");
    job
}

/// Runs a job now as `client` and answers its finished execution.
async fn run(client: &As<'_>, job_id: &str) -> Value {
    let (status, execution) = client.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
    assert_eq!(status, 202, "{execution}");
    let id = execution["id"].as_str().expect("execution id").to_owned();
    eventually(20, "the run to finish", || async {
        let (_, one) = client.get(&format!("/v1/agents/default/executions/{id}")).await;
        matches!(one["status"].as_str(), Some("completed" | "failed" | "timeout" | "killed")).then_some(one)
    })
    .await
}

/// The texts of a user's conversation.
async fn conversation(server: &Server, user: &str) -> Vec<String> {
    let (_, page) = server.get(&format!("/v1/agents/default/users/{user}/messages")).await;
    page["messages"]
        .as_array()
        .map(|messages| messages.iter().filter_map(|message| message["content"]["text"].as_str()).map(str::to_owned))
        .into_iter()
        .flatten()
        .collect()
}

/// Job code that tries everything a job made with u1's token must not do, and a few things it may; it answers what
/// each attempt did (`allowed`, or the error's message).
const PROBE: &str = r#"async (job) => {
    const attempt = async (what) => {
        try { await what(); return 'allowed'; } catch (error) { return String((error && error.message) || error); }
    };
    const victim = job.metadata.victim;
    const me = await job.user();
    const forged = await job.user();
    forged.userId = 'u2';
    const ownId = job.id;
    const asVictim = async (what) => { job.id = victim; try { return await attempt(what); } finally { job.id = ownId; } };
    const listed = await Jobs.getAll({ includeDynamic: true });
    return {
        secret: env('SECRET') === undefined ? 'hidden' : 'read',
        shared: env('SHARED'),
        otherUser: await attempt(() => User.get('u2')),
        ownUser: await attempt(() => User.get('u1')),
        sendAsOther: await attempt(() => forged.send([{ type: 'text', text: 'forged by u1' }])),
        updateOther: await attempt(() => forged.update({ owned: true })),
        sendAsSelf: await attempt(() => me.send([{ type: 'text', text: 'u1 to u1' }])),
        getOtherJob: await attempt(() => Jobs.getJob(victim)),
        getAgentJob: await attempt(() => Jobs.getJob(job.metadata.agentJob)),
        deactivateOther: await asVictim(() => job.deactivate()),
        metadataOther: await asVictim(() => job.updateMetadata({ pwned: true })),
        triggerOther: await asVictim(() => job.trigger()),
        listed: listed.map((one) => one.name).sort(),
        ownMetadata: await attempt(() => job.updateMetadata({ ran: true })),
        dataWrite: await attempt(() => Data.create('notes', { by: 'u1' })),
        dataRead: await attempt(() => Data.get('notes')),
        products: await attempt(() => Products.get()),
        childAsAgent: await attempt(() => Jobs.create({ name: 'child-agent', authority: 'agent', activate: false,
            schedule: { type: 'interval', seconds: 3600 }, execute: async () => 1 })),
        child: await attempt(() => Jobs.create({ name: 'child', activate: false,
            schedule: { type: 'interval', seconds: 3600 }, execute: async () => env('SECRET') })),
    };
}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_made_with_a_user_token_reaches_only_its_user_from_inside_its_code() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_job_authority_admin");
    let admin = As { server: &server, key: server.key.clone(), user: None };
    let (status, _) =
        admin.call(reqwest::Method::PUT, "/v1/agents/default/env", json!({"SECRET": "s3cret", "SHARED": "ok"})).await;
    assert_eq!(status, 200);
    let (status, settings) =
        admin.call(reqwest::Method::PUT, "/v1/agents/default/settings", json!({"userJobEnv": ["SHARED"]})).await;
    assert_eq!(status, 200, "{settings}");
    let (status, _) =
        admin.call(reqwest::Method::PUT, "/v1/agents/default/users/u2", json!({"phone": "private"})).await;
    assert_eq!(status, 200);

    // u2's job (made by the agent's backend for u2) and a job of the agent's own.
    let for_u2 = As { server: &server, key: server.key.clone(), user: Some("u2") };
    let body = json!({"name": "u2-job", "schedule": {"type": "interval", "seconds": 3600},
        "code": "async () => 1", "metadata": {"owner": "u2"}});
    let (status, victim) = for_u2.post("/v1/agents/default/jobs", body).await;
    assert_eq!(status, 201, "{victim}");
    assert_eq!(victim["authority"], json!({"kind": "agent"}), "an agent key's job acts for the agent");
    let victim_id = victim["id"].as_str().expect("id").to_owned();
    let agent_job = create(&admin, "agent-job", "async () => 1", json!({})).await;

    // u1's token makes the probe: its job acts for u1 only.
    let u1 = As { server: &server, key: mint(&server, "u1", None).await, user: None };
    let metadata = json!({"victim": victim_id, "agentJob": agent_job["id"]});
    let probe = create(&u1, "probe", PROBE, metadata).await;
    assert_eq!(probe["authority"], json!({"kind": "user", "userId": "u1", "scopes": ["jobs", "data", "products"]}));
    let execution = run(&u1, probe["id"].as_str().expect("id")).await;
    assert_eq!(execution["status"], "completed", "{execution}");
    let result = &execution["result"];
    let refused = |field: &str, words: &str| {
        let text = result[field].as_str().unwrap_or_default();
        assert!(text.contains(words), "{field}: expected a refusal naming {words:?}, got {text:?}");
    };
    assert_eq!(result["secret"], "hidden", "a user's job read the agent's secret");
    assert_eq!(result["shared"], "ok", "the variable the agent exposes to user jobs");
    refused("otherUser", "can reach only that user, not u2");
    refused("sendAsOther", "can reach only that user, not u2");
    refused("updateOther", "can reach only that user, not u2");
    refused("getOtherJob", "only that user's jobs");
    refused("getAgentJob", "only that user's jobs");
    refused("deactivateOther", "only that user's jobs");
    refused("metadataOther", "only that user's jobs");
    refused("triggerOther", "only that user's jobs");
    refused("childAsAgent", "only an agent key makes a job act for the agent");
    for allowed in ["ownUser", "sendAsSelf", "ownMetadata", "dataWrite", "dataRead", "products", "child"] {
        assert_eq!(result[allowed], "allowed", "{allowed}: {result}");
    }
    assert_eq!(result["listed"], json!(["probe"]), "Jobs.getAll lists the user's own jobs only");

    // Nothing of u2's changed; u1's own message landed; the child acts for u1 too.
    assert_eq!(conversation(&server, "u2").await, Vec::<String>::new(), "a message reached u2");
    assert_eq!(conversation(&server, "u1").await, ["u1 to u1"]);
    let (_, u2) = admin.get("/v1/agents/default/users/u2").await;
    assert_eq!(u2, json!({"userId": "u2", "phone": "private"}));
    let (_, victim_now) = admin.get(&format!("/v1/agents/default/jobs/{victim_id}")).await;
    assert_eq!((victim_now["active"].clone(), victim_now["metadata"].clone()), (json!(true), json!({"owner": "u2"})));
    let (_, executions) = admin.get(&format!("/v1/agents/default/jobs/{victim_id}/executions")).await;
    assert_eq!(executions["total"], 0, "u2's job was triggered");
    let (_, jobs) = admin.get("/v1/agents/default/jobs?includeDynamic=true&name=child").await;
    let child = &jobs["jobs"][0];
    assert_eq!((child["userId"].clone(), child["authority"]["kind"].clone()), (json!("u1"), json!("user")));
    let child_run = run(&admin, child["id"].as_str().expect("id")).await;
    assert_eq!(child_run["result"], Value::Null, "the child job read the secret: {child_run}");

    // A token minted with `scopes: ["jobs"]` makes jobs that cannot reach Data or Products either.
    let jobs_only = As { server: &server, key: mint(&server, "u1", Some(&["jobs"])).await, user: None };
    let (status, _) = jobs_only.get("/v1/agents/default/data/notes").await;
    assert_eq!(status, 403, "the token itself reaches no Data");
    let code = "async () => { const attempt = async (what) => { try { await what(); return 'allowed'; } \
        catch (error) { return String(error.message); } }; return { read: await attempt(() => Data.get('notes')), \
        write: await attempt(() => Data.create('notes', { by: 'scoped' })), \
        products: await attempt(() => Products.get()) }; }";
    let scoped = create(&jobs_only, "scoped", code, json!({})).await;
    assert_eq!(scoped["authority"]["scopes"], json!(["jobs"]));
    let execution = run(&jobs_only, scoped["id"].as_str().expect("id")).await;
    for (field, scope) in [("read", "data"), ("write", "data"), ("products", "products")] {
        let text = execution["result"][field].as_str().unwrap_or_default();
        assert!(text.contains(&format!("do not include \"{scope}\"")), "{field}: {text}");
    }
    let (_, notes) = admin.get("/v1/agents/default/data/notes").await;
    let writers: Vec<&str> =
        notes["entries"].as_array().into_iter().flatten().filter_map(|entry| entry["data"]["by"].as_str()).collect();
    assert_eq!(writers, ["u1"], "only the full token's job wrote Data");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_token_touches_only_its_users_jobs_and_a_change_narrows_a_jobs_authority() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_user_token_jobs");
    let admin = As { server: &server, key: server.key.clone(), user: None };
    let agent_job = create(&admin, "agent-job", "async () => 1", json!({})).await;
    let agent_id = agent_job["id"].as_str().expect("id").to_owned();
    let for_u2 = As { server: &server, key: server.key.clone(), user: Some("u2") };
    let u2_job = create(&for_u2, "u2-job", "async () => 1", json!({})).await;
    let u2_id = u2_job["id"].as_str().expect("id").to_owned();
    let u1 = As { server: &server, key: mint(&server, "u1", None).await, user: None };

    // Every job operation on the agent's job and on u2's answers 404 to u1's token, on both APIs, and changes nothing.
    use reqwest::Method;
    for job_id in [&agent_id, &u2_id] {
        let base = format!("/v1/agents/default/jobs/{job_id}");
        let attempts = [
            (Method::GET, base.clone(), Value::Null),
            (Method::PATCH, base.clone(), json!({"code": "async () => 'u1 was here'"})),
            (Method::DELETE, base.clone(), Value::Null),
            (Method::POST, format!("{base}/versions"), json!({"code": "async () => 'u1 was here'"})),
            (Method::POST, format!("{base}/versions/1.0.0/publish"), Value::Null),
            (Method::POST, format!("{base}/activate"), Value::Null),
            (Method::POST, format!("{base}/deactivate"), Value::Null),
            (Method::POST, format!("{base}/trigger"), json!({})),
            (Method::PUT, format!("{base}/metadata"), json!({"pwned": true})),
            (Method::PATCH, format!("{base}/metadata"), json!({"pwned": true})),
            (Method::GET, format!("{base}/versions"), Value::Null),
            (Method::GET, format!("{base}/versions/1.0.0/code"), Value::Null),
            (Method::GET, format!("{base}/executions"), Value::Null),
            (Method::GET, format!("{base}/preview"), Value::Null),
            (Method::GET, format!("/developer/jobs/default/{job_id}"), Value::Null),
            (Method::POST, format!("/developer/jobs/default/{job_id}/version"), json!({})),
            (Method::POST, format!("/developer/jobs/default/{job_id}/1.0.0/publish"), json!({})),
            (Method::POST, format!("/developer/jobs/default/{job_id}/deactivate"), json!({})),
            (Method::POST, format!("/developer/jobs/default/{job_id}/trigger"), json!({})),
            (Method::DELETE, format!("/developer/jobs/default/{job_id}"), Value::Null),
        ];
        for (method, path, body) in attempts {
            let request = u1.request(method.clone(), &path);
            let request = if body.is_null() { request } else { request.json(&body) };
            let (status, answer) = send(request).await;
            assert_eq!(status, 404, "{method} {path} answered {status} to u1's token: {answer}");
        }
        let (_, job) = admin.get(&format!("/v1/agents/default/jobs/{job_id}")).await;
        assert_eq!(job["versions"].as_array().map(Vec::len), Some(1), "a version was added to {job_id}");
        assert_eq!((job["active"].clone(), job["metadata"].clone()), (json!(false), json!({})));
        let (_, executions) = admin.get(&format!("/v1/agents/default/jobs/{job_id}/executions")).await;
        assert_eq!(executions["total"], 0);
    }
    let (_, listed) = u1.get("/v1/agents/default/jobs?includeDynamic=true").await;
    assert_eq!(listed["jobs"], json!([]), "u1's token listed jobs that are not u1's");

    // A job the agent's backend made for u1 acts for the agent; u1's own token changing it narrows it to u1's
    // authority, which only an agent key widens again, and only when it says so.
    let for_u1 = As { server: &server, key: server.key.clone(), user: Some("u1") };
    let shared = create(&for_u1, "made-for-u1", "async () => 1", json!({})).await;
    let shared_id = shared["id"].as_str().expect("id").to_owned();
    assert_eq!(shared["authority"], json!({"kind": "agent"}));
    let path = format!("/v1/agents/default/jobs/{shared_id}");
    let (status, narrowed) = u1.call(Method::PATCH, &path, json!({"code": "async () => 2"})).await;
    assert_eq!(status, 200, "{narrowed}");
    assert_eq!(narrowed["authority"]["kind"], "user");
    let (status, refused) = u1.call(Method::PATCH, &path, json!({"authority": "agent"})).await;
    assert_eq!((status, refused["code"].clone()), (403, json!("forbidden")), "{refused}");
    let (_, unchanged) = admin.get(&path).await;
    assert_eq!(unchanged["authority"]["kind"], "user");
    let (status, _) = admin.call(Method::PATCH, &path, json!({"description": "agent key, no authority asked"})).await;
    assert_eq!(status, 200);
    let (_, still) = admin.get(&path).await;
    assert_eq!(still["authority"]["kind"], "user", "an agent key's change widened the job without asking");
    let (status, raised) = admin.call(Method::PATCH, &path, json!({"authority": "agent"})).await;
    assert_eq!((status, raised["authority"].clone()), (200, json!({"kind": "agent"})), "{raised}");
    // Metadata and a new version by the token narrow it too.
    let (status, _) = u1.call(Method::PATCH, &format!("{path}/metadata"), json!({"step": 1})).await;
    assert_eq!(status, 200);
    let (_, after_metadata) = admin.get(&path).await;
    assert_eq!(after_metadata["authority"]["kind"], "user");

    // An agent key may make a job that acts for its user only; without a user it cannot.
    let body = json!({"name": "least", "schedule": {"type": "interval", "seconds": 3600}, "activate": false,
        "code": "async () => 1", "authority": "user"});
    let (status, least) = for_u1.post("/v1/agents/default/jobs", body.clone()).await;
    assert_eq!((status, least["authority"]["kind"].clone()), (201, json!("user")), "{least}");
    let (status, refused) = admin.post("/v1/agents/default/jobs", body).await;
    assert_eq!((status, refused["field"].clone()), (400, json!("authority")), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_agents_flood_of_long_runs_does_not_starve_another_agent() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start_with(directory.path(), "sk_test_fair_shares", &["--workers", "4"]);
    for agent in ["flood", "steady"] {
        let (status, created) = server.post("/v1/agents", json!({"agentId": agent})).await;
        assert_eq!(status, 201, "{created}");
    }
    // Agent `flood`: 200 runs due at once, each computing for 2 seconds (about 130 s of work for the workers).
    let now = chrono::Utc::now();
    let busy = "async () => { const end = Date.now() + 2000; while (Date.now() < end) {} return 'done'; }";
    let jobs: Vec<Value> = (0..200)
        .map(|i| {
            json!({"name": format!("busy-{i}"), "code": busy, "timeout": 10,
                "schedule": {"type": "once", "executeAt": sundial_core::wire::instant(now)}})
        })
        .collect();
    let (status, created) = server.post("/v1/agents/flood/jobs/batch?view=ids", json!({ "jobs": jobs })).await;
    assert_eq!(status, 201, "{created}");
    // Agent `steady`: one job every second, which reports how late it started.
    let on_time = "async (job) => Date.now() - Date.parse(job.execution.scheduledFor)";
    let (status, steady) = server
        .post(
            "/v1/agents/steady/jobs",
            json!({"name": "tick", "code": on_time,
            "schedule": {"type": "interval", "seconds": 1}}),
        )
        .await;
    assert_eq!(status, 201, "{steady}");
    let path = format!("/v1/agents/steady/jobs/{}/executions?limit=100", steady["id"].as_str().expect("id"));
    let executions = eventually(40, "ten runs of the steady agent's job", || async {
        let (_, page) = server.get(&path).await;
        let executions = page["executions"].as_array().cloned().unwrap_or_default();
        let finished =
            executions.iter().filter(|execution| !matches!(execution["status"].as_str(), Some("pending" | "running")));
        let finished = finished.count();
        (finished >= 10).then_some(executions)
    })
    .await;
    let statuses: Vec<&str> = executions
        .iter()
        .filter_map(|execution| execution["status"].as_str())
        .filter(|status| !matches!(*status, "pending" | "running"))
        .collect();
    let mut lateness: Vec<i64> = executions.iter().filter_map(|execution| execution["result"].as_i64()).collect();
    assert!(!statuses.contains(&"skipped"), "the steady job's slots were skipped: {statuses:?}");
    lateness.sort_unstable();
    assert!(lateness.len() >= 10, "{statuses:?}");
    let p90 = lateness[(lateness.len() * 9).div_ceil(10) - 1];
    assert!(p90 <= 1000, "the steady agent's runs started late behind the flood: p90 {p90} ms of {lateness:?}");
    // Meanwhile the flood runs, within its share.
    let (_, flood) = server.get("/v1/agents/flood/executions?limit=1000").await;
    let completed = flood["executions"].as_array().into_iter().flatten().filter(|e| e["status"] == "completed").count();
    assert!(completed >= 3, "the flooding agent ran {completed} of its jobs");
}

/// An HTTP client whose connections come from `address` (another loopback address is another client).
fn client_from(address: &str) -> reqwest::Client {
    let address: std::net::IpAddr = address.parse().expect("address");
    reqwest::Client::builder()
        .local_address(address)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_from_one_address_leave_the_server_to_everyone_else() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_idle_connections");
    let target: std::net::SocketAddr = server.url.trim_start_matches("http://").parse().expect("server address");
    // 4,200 connections from 127.0.0.3, each with half a request head, held open.
    let mut held = Vec::with_capacity(4200);
    for _ in 0..4200 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.bind("127.0.0.3:0".parse().expect("address")).expect("bind");
        let Ok(mut stream) = socket.connect(target).await else { continue };
        use tokio::io::AsyncWriteExt;
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: sundial\r\n").await;
        held.push(stream);
    }
    // Meanwhile another client is served, request after request.
    let other = client_from("127.0.0.2");
    for _ in 0..20 {
        let response =
            other.get(format!("{}/healthz", server.url)).send().await.expect("a request from another client");
        assert_eq!(response.status(), 200);
    }
    let (status, _) = send(other.get(format!("{}/v1/agents/default/jobs", server.url)).bearer_auth(&server.key)).await;
    assert_eq!(status, 200);
    // A burst of 100 parallel requests, each on a connection of its own, from one client: every one is answered.
    let burst = (0..100).map(|_| {
        let client = client_from("127.0.0.2");
        let url = format!("{}/v1/agents/default/jobs?limit=1", server.url);
        let key = server.key.clone();
        async move { send(client.get(url).bearer_auth(key)).await.0 }
    });
    let statuses = futures_util::future::join_all(burst).await;
    assert!(statuses.iter().all(|status| *status == 200), "a burst of one client's parallel requests: {statuses:?}");
    // The server kept at most its per-client share of the idle ones, and soon only its header slots of them.
    let open = still_open(&mut held).await;
    assert!(open <= 256, "{open} connections of one address are held");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    loop {
        let open = still_open(&mut held).await;
        if open <= 32 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{open} half-sent connections of one address are still held");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// How many of `streams` the server has not closed.
async fn still_open(streams: &mut [tokio::net::TcpStream]) -> usize {
    let mut open = 0;
    for stream in streams {
        use tokio::io::AsyncReadExt;
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_millis(2), stream.read(&mut byte)).await;
        open += usize::from(read.is_err());
    }
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_key_cannot_be_revoked_by_an_agent_key_and_a_restart_with_it_always_works() {
    let directory = tempfile::tempdir().expect("temporary directory");
    const ADMIN: &str = "sk_test_configured_admin";
    // A copy of the configured key stored (as an unsalted hash) by an earlier version of the server.
    {
        let store = sundial_store::SqliteStore::open(&directory.path().join("sundial.db")).expect("store");
        use sundial_store::Store;
        let legacy = sundial_store::ApiKey {
            id: "key_legacy0000000000000000".into(),
            agent_id: Some("default".into()),
            user_id: None,
            admin: true,
            hash: sundial_api::auth::hash_key(ADMIN),
            created_at: chrono::Utc::now(),
            scopes: None,
            expires_at: None,
        };
        store.key_insert(&legacy).await.expect("legacy key");
    }
    let mut server = Server::start(directory.path(), ADMIN);
    let admin = As { server: &server, key: ADMIN.into(), user: None };
    let (_, whoami) = admin.get("/v1/whoami").await;
    assert_eq!((whoami["kind"].clone(), whoami["keyId"].clone()), (json!("admin"), json!("key_configured")));
    let (status, created) = admin.post("/v1/agents/default/keys", json!({})).await;
    assert_eq!(status, 201, "{created}");
    let agent = As { server: &server, key: created["key"].as_str().expect("key").into(), user: None };
    for key_id in ["key_configured", "key_legacy0000000000000000"] {
        let (status, refused) =
            send(agent.request(reqwest::Method::DELETE, &format!("/v1/agents/default/keys/{key_id}"))).await;
        assert!(matches!(status, 403 | 404 | 409), "an agent key revoked {key_id}: {status} {refused}");
    }
    let (status, refused) =
        send(admin.request(reqwest::Method::DELETE, "/v1/agents/default/keys/key_configured")).await;
    assert_eq!((status, refused["code"].clone()), (409, json!("configured_key")), "{refused}");
    let (status, _) = admin.get("/v1/agents").await;
    assert_eq!(status, 200);
    // The stored copy was revoked (its hash forgotten) at start; the configured key works across restarts.
    for _ in 0..2 {
        server.kill();
        server = Server::start(directory.path(), ADMIN);
        let (status, agents) = server.get("/v1/agents").await;
        assert_eq!(status, 200, "{agents}");
    }
    let store = sundial_store::SqliteStore::open(&directory.path().join("sundial.db")).expect("store");
    use sundial_store::Store;
    assert!(store.key_find(&sundial_api::auth::hash_key(ADMIN)).await.expect("find").is_none());

    // Without SUNDIAL_API_KEY the first start makes a stored admin key; the last one cannot be revoked.
    let fresh = tempfile::tempdir().expect("temporary directory");
    let mut command = std::process::Command::new(crate::support::binary());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1", "--data-dir"])
        .arg(fresh.path())
        .env_remove("SUNDIAL_API_KEY")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = command.spawn().expect("start");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let (mut url, mut key) = (String::new(), String::new());
    for line in lines.by_ref() {
        let line = line.expect("line");
        if let Some(secret) = line.trim().strip_prefix("SUNDIAL_API_KEY=") {
            key = secret.to_owned();
        }
        if let Some(rest) = line.strip_prefix("sundial: listening on ") {
            url = rest.split_whitespace().next().unwrap_or_default().to_owned();
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(key.starts_with("sk_") && key.matches('_').count() == 2, "a key of the salted form: {key}");
    let request = |method, path: &str, key: &str| {
        reqwest::Client::new().request(method, format!("{url}{path}")).bearer_auth(key.to_owned())
    };
    let (_, whoami) = send(request(reqwest::Method::GET, "/v1/whoami", &key)).await;
    let admin_id = whoami["keyId"].as_str().expect("key id").to_owned();
    let (_, agent_key) = send(request(reqwest::Method::POST, "/v1/agents/default/keys", &key)).await;
    let agent_key = agent_key["key"].as_str().expect("agent key").to_owned();
    let path = format!("/v1/agents/default/keys/{admin_id}");
    let (status, refused) = send(request(reqwest::Method::DELETE, &path, &agent_key)).await;
    assert_eq!((status, refused["code"].clone()), (403, json!("forbidden")), "{refused}");
    let (status, refused) = send(request(reqwest::Method::DELETE, &path, &key)).await;
    assert_eq!((status, refused["code"].clone()), (409, json!("last_admin_key")), "{refused}");
    let (status, _) = send(request(reqwest::Method::GET, "/v1/agents", &key)).await;
    assert_eq!(status, 200, "the admin key still works");
    let _ = child.kill();
    let _ = child.wait();
}

/// The bytes of the database and its journal.
fn database_bytes(directory: &std::path::Path) -> Vec<u8> {
    ["sundial.db", "sundial.db-wal"]
        .iter()
        .filter_map(|file| std::fs::read(directory.join(file)).ok())
        .flatten()
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_needs_a_working_key_and_never_returns_a_secret() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_replays");
    let (_, created) = server.post("/v1/agents/default/keys", json!({})).await;
    let minter = created["key"].as_str().expect("key").to_owned();
    let minter_id = created["id"].as_str().expect("id").to_owned();
    let mint = |key: &str, path: &str| {
        reqwest::Client::new()
            .post(format!("{}{path}", server.url))
            .bearer_auth(key.to_owned())
            .header("x-idempotency-key", "mint-once")
            .json(&json!({}))
    };
    for path in ["/v1/agents/default/keys", "/v1/agents/default/users/u1/tokens"] {
        let (status, first) = send(mint(&minter, path)).await;
        assert_eq!(status, 201, "{first}");
        let secret = first["key"].as_str().or(first["token"].as_str()).expect("secret").to_owned();
        let (status, replay) = send(mint(&minter, path)).await;
        assert_eq!((status, replay["code"].clone()), (409, json!("secret_shown_once")), "{replay}");
        assert!(!replay.to_string().contains(&secret));
        assert!(!contains(&database_bytes(directory.path()), &secret), "the secret is stored");
    }
    // Once revoked, the key replays nothing.
    let (status, _) =
        send(server.request(reqwest::Method::DELETE, &format!("/v1/agents/default/keys/{minter_id}"))).await;
    assert_eq!(status, 200);
    let (status, refused) = send(mint(&minter, "/v1/agents/default/keys")).await;
    assert_eq!((status, refused["code"].clone()), (401, json!("unauthorized")), "{refused}");
    // Keys are stored salted and hashed, never as they are.
    let store = sundial_store::SqliteStore::open(&directory.path().join("sundial.db")).expect("store");
    use sundial_store::Store;
    let (_, fresh) = server.post("/v1/agents/default/keys", json!({})).await;
    let stored = store.key_get(fresh["id"].as_str().expect("id")).await.expect("get").expect("the key");
    assert!(stored.hash.starts_with("s1:") && !stored.hash.contains(fresh["key"].as_str().expect("key")));
}

/// Signs in to the dashboard from `client` with `key`: answers the status and the cookies set.
async fn sign_in(client: &reqwest::Client, url: &str, key: &str, headers: &[(&str, &str)]) -> (u16, Vec<String>) {
    let mut form = client.get(format!("{url}/ui/login"));
    for (name, value) in headers {
        form = form.header(*name, *value);
    }
    let form = form.send().await.expect("sign-in form");
    let set: Vec<String> = form
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .map(str::to_owned)
        .collect();
    let login = set.iter().find(|cookie| cookie.contains("sundial_login=")).cloned().unwrap_or_default();
    let (name, csrf) = login.split(';').next().and_then(|pair| pair.split_once('=')).unwrap_or_default();
    let mut post = client
        .post(format!("{url}/ui/login"))
        .header("cookie", format!("{name}={csrf}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(crate::support::form_encoded(&[("csrf", csrf), ("key", key)]));
    for (name, value) in headers {
        post = post.header(*name, *value);
    }
    let answer = post.send().await.expect("sign in");
    let cookies =
        answer.headers().get_all("set-cookie").iter().filter_map(|value| value.to_str().ok()).map(str::to_owned);
    (answer.status().as_u16(), cookies.collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentication_is_limited_per_client_address() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_throttle");
    let attacker = client_from("127.0.0.3");
    let mut statuses = std::collections::BTreeMap::new();
    for attempt in 0..300 {
        let (status, _) = sign_in(&attacker, &server.url, &format!("sk_guess_{attempt}"), &[]).await;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses.get(&401), Some(&30), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&270), "{statuses:?}");
    // The right key from the throttled address waits too; bearer keys count against the same address.
    let (status, _) = sign_in(&attacker, &server.url, &server.key, &[]).await;
    assert_eq!(status, 429);
    let response = attacker.get(format!("{}/v1/whoami", server.url)).bearer_auth("sk_another_guess").send().await;
    let response = response.expect("request");
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    // Another address signs in and uses the API as usual.
    let other = client_from("127.0.0.2");
    let (status, cookies) = sign_in(&other, &server.url, &server.key, &[]).await;
    assert_eq!(status, 303, "{cookies:?}");
    let response = other.get(format!("{}/v1/whoami", server.url)).bearer_auth(&server.key).send().await;
    assert_eq!(response.expect("request").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_over_https_sessions_expire_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let directory = tempfile::tempdir().expect("temporary directory");
    let flags = ["--public-url", "https://sundial.example.com", "--session-lifetime", "2"];
    let secret = [("SUNDIAL_SECRET_KEY", "a test secret that is long enough")];
    let mut server = Server::start_with_env(directory.path(), "sk_test_cookies", &flags, &secret);
    let client = client_from("127.0.0.1");
    let (status, cookies) = sign_in(&client, &server.url, &server.key, &[]).await;
    assert_eq!(status, 303);
    let session = cookies.iter().find(|cookie| cookie.contains("sundial_session=")).expect("session cookie");
    assert!(session.starts_with("__Host-sundial_session=") && session.contains("; Secure"), "{session}");
    assert!(session.contains("; Path=/;") && session.contains("HttpOnly") && session.contains("SameSite=Strict"));
    let pair = session.split(';').next().expect("pair").to_owned();
    let page = client.get(format!("{}/ui", server.url)).header("cookie", &pair).send().await.expect("page");
    assert_eq!(page.status(), 200, "the __Host- session opens the dashboard");
    // A cookie without the prefix (one a non-secure origin could plant) opens nothing.
    let plain = pair.trim_start_matches("__Host-").to_owned();
    let page = client.get(format!("{}/ui", server.url)).header("cookie", &plain).send().await.expect("page");
    assert_eq!(page.status(), 303);
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let page = client.get(format!("{}/ui", server.url)).header("cookie", &pair).send().await.expect("page");
    assert_eq!(page.status(), 303, "the session outlived its lifetime");

    // The data directory and the database are the server's own.
    let mode = |path: &std::path::Path| std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(directory.path()), 0o700);
    assert_eq!(mode(&directory.path().join("sundial.db")), 0o600);

    // Env values are encrypted at rest with SUNDIAL_SECRET_KEY; jobs and the API read them as set.
    let (status, _) = send(
        server.request(reqwest::Method::PUT, "/v1/agents/default/env").json(&json!({"TOKEN": "plain-secret-value-42"})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, env) = server.get("/v1/agents/default/env").await;
    assert_eq!(env["env"]["TOKEN"], "plain-secret-value-42");
    let admin = As { server: &server, key: server.key.clone(), user: None };
    let job = create(
        &admin,
        "reads-env",
        "async () => env('TOKEN').split('').reverse().join('') === '24-eulav-terces-nialp'",
        json!({}),
    )
    .await;
    let execution = run(&admin, job["id"].as_str().expect("id")).await;
    assert_eq!(execution["result"], true, "the job read the value as set");
    assert!(!contains(&database_bytes(directory.path()), "plain-secret-value-42"), "the value is stored in plain text");
    server.kill();
    // Without the key the server refuses to start on values it cannot read; with it, it starts.
    let refused = std::process::Command::new(crate::support::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(directory.path())
        .env("SUNDIAL_API_KEY", "sk_test_cookies")
        .env_remove("SUNDIAL_SECRET_KEY")
        .output()
        .expect("serve without the key");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SUNDIAL_SECRET_KEY"));
    let server = Server::start_with_env(directory.path(), "sk_test_cookies", &[], &secret);
    let (_, env) = server.get("/v1/agents/default/env").await;
    assert_eq!(env["env"]["TOKEN"], "plain-secret-value-42");

    // Behind a trusted proxy that says the client came over HTTPS, cookies are secure too; from anyone else the
    // header means nothing.
    let proxied = tempfile::tempdir().expect("temporary directory");
    let server = Server::start_with(proxied.path(), "sk_test_proxy", &["--trusted-proxies", "127.0.0.1"]);
    let https = [("x-forwarded-proto", "https")];
    let (_, cookies) = sign_in(&client_from("127.0.0.1"), &server.url, &server.key, &https).await;
    assert!(cookies.iter().any(|cookie| cookie.starts_with("__Host-sundial_session=")), "{cookies:?}");
    let (_, cookies) = sign_in(&client_from("127.0.0.2"), &server.url, &server.key, &https).await;
    assert!(cookies.iter().any(|cookie| cookie.starts_with("sundial_session=")), "{cookies:?}");
}
