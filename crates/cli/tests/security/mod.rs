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
