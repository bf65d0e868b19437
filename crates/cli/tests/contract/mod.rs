//! The API contract that agents and their SDKs build on: schedules said back in words with their next runs, the
//! schedule preview, code accepted as people paste it, free variables refused at creation, idempotent creation with
//! `dedupKey`, and user tokens with scopes and an expiry.

use serde_json::{json, Value};

use crate::support::{send, Server, TestEngine};
use crate::utc;

/// The view of a job the engine created, as the API shows it.
fn view_of(detail: &sundial_scheduler::JobDetail) -> Value {
    detail.view()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_views_say_the_schedule_back_with_the_next_runs_across_dst() {
    // New York springs forward on Sunday 10 March 2030 (02:00 EST → 03:00 EDT).
    let mut test = TestEngine::start(utc("2030-03-08T12:00:00Z")).await;
    let code = "async (job) => job.id";
    let once = test
        .create(
            json!({"name": "once", "schedule": {"type": "once", "executeAt": "2030-03-09T15:00:00Z"}, "code": code}),
            None,
        )
        .await;
    let view = view_of(&once);
    assert_eq!(view["scheduleDescription"], "once on Sat 9 Mar 2030 at 15:00 (UTC)");
    assert_eq!(view["timezone"], "UTC");
    assert_eq!(view["nextRuns"], json!([{"utc": "2030-03-09T15:00:00.000Z", "local": "2030-03-09T15:00:00+00:00"}]));

    let interval = test
        .create(json!({"name": "tick", "schedule": {"type": "interval", "seconds": 300}, "code": code}), None)
        .await;
    let view = view_of(&interval);
    assert_eq!(view["scheduleDescription"], "every 5 minutes");
    let runs: Vec<&str> =
        view["nextRuns"].as_array().expect("nextRuns").iter().map(|run| run["utc"].as_str().expect("utc")).collect();
    assert_eq!(runs, ["2030-03-08T12:05:00.000Z", "2030-03-08T12:10:00.000Z", "2030-03-08T12:15:00.000Z"]);

    let schedule = json!({"type": "cron", "expression": "30 2 * * *", "timezone": "America/New_York"});
    let cron = test.create(json!({"name": "nightly", "schedule": schedule, "code": code}), None).await;
    let view = view_of(&cron);
    assert_eq!(view["scheduleDescription"], "every day at 02:30 (America/New_York)");
    assert_eq!(view["timezone"], "America/New_York");
    assert_eq!(
        view["nextRuns"],
        json!([
            {"utc": "2030-03-09T07:30:00.000Z", "local": "2030-03-09T02:30:00-05:00"},
            // 02:30 does not exist on the 10th: the run comes at the first instant after the gap.
            {"utc": "2030-03-10T07:00:00.000Z", "local": "2030-03-10T03:00:00-04:00"},
            {"utc": "2030-03-11T06:30:00.000Z", "local": "2030-03-11T02:30:00-04:00"},
        ])
    );

    let caller = TestEngine::caller(None);
    let paused = test.engine.deactivate(&caller, &cron.job.id).await.expect("deactivate");
    assert_eq!(paused.view()["nextRuns"], json!([]), "an inactive job has no next runs");
    assert_eq!(paused.view()["scheduleDescription"], "every day at 02:30 (America/New_York)");
    test.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_contract_over_http() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_contract");
    preview_says_what_a_schedule_would_do(&server).await;
    user_tokens_have_scopes_and_an_expiry(&server).await;
    a_repeated_create_with_one_dedup_key_gives_one_job(&server).await;
    code_is_taken_as_people_paste_it_and_must_be_self_contained(&server).await;
    errors_name_the_field_also_inside_nested_bodies(&server).await;
    responses_are_their_contract_types(&server).await;
    messages_are_sent_to_a_user_over_http(&server).await;
    jobs_made_for_a_user_keep_to_the_agents_guardrails(&server).await;
}

/// Reads `value` as the contract type `T` and writes it back: the same JSON means the type holds every field of the
/// answer, and nothing else (the document is derived from these types).
fn is_exactly<T: serde::de::DeserializeOwned + serde::Serialize>(what: &str, value: &Value) {
    let typed: T = serde_json::from_value(value.clone()).unwrap_or_else(|error| panic!("{what}: {error}\n{value}"));
    let again = serde_json::to_value(&typed).expect("serialize");
    assert_eq!(&again, value, "{what} is not exactly its contract type");
}

async fn responses_are_their_contract_types(server: &Server) {
    use sundial_api::contract;
    let (_, created) = server
        .post(
            "/v1/agents/default/jobs",
            json!({"name": "typed", "schedule": {"type": "cron", "expression": "0 9 * * MON-FRI", "timezone": "Europe/Paris"},
                   "code": "async (job) => { console.log('hi'); return { ok: job.name }; }", "metadata": {"a": 1},
                   "retry": {"maxAttempts": 1}, "activate": false}),
        )
        .await;
    is_exactly::<contract::Job>("a created job", &created);
    let job_id = created["id"].as_str().expect("id").to_owned();
    let (_, execution) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
    is_exactly::<contract::Execution>("a triggered execution", &execution);
    let execution_id = execution["id"].as_str().expect("id").to_owned();
    let finished = crate::support::eventually(15, "the run", || async {
        let (_, execution) = server.get(&format!("/v1/agents/default/executions/{execution_id}")).await;
        (execution["status"] == "completed").then_some(execution)
    })
    .await;
    is_exactly::<contract::Execution>("a finished execution with its logs", &finished);
    let (_, job) = server.get(&format!("/v1/agents/default/jobs/{job_id}")).await;
    is_exactly::<contract::Job>("a job with its last execution", &job);
    let (_, list) = server.get("/v1/agents/default/jobs?includeDynamic=true&limit=5").await;
    is_exactly::<contract::JobList>("a page of jobs", &list);
    let (_, page) = server.get(&format!("/v1/agents/default/jobs/{job_id}/executions?logs=true")).await;
    is_exactly::<contract::ExecutionPage>("a page of executions", &page);
    let (_, page) = server.get("/v1/agents/default/executions?limit=3").await;
    is_exactly::<contract::ExecutionList>("the agent's executions", &page);
    let (_, versions) = server.get(&format!("/v1/agents/default/jobs/{job_id}/versions")).await;
    is_exactly::<contract::VersionList>("versions", &versions);
    let (_, preview) = server.get(&format!("/v1/agents/default/jobs/{job_id}/preview?n=3")).await;
    is_exactly::<contract::SchedulePreview>("a job's preview", &preview);
    let (_, metadata) = server.post(&format!("/v1/agents/default/jobs/{job_id}/activate"), json!({})).await;
    is_exactly::<contract::Job>("an activated job", &metadata);
    let request = server.request(reqwest::Method::PATCH, &format!("/v1/agents/default/jobs/{job_id}/metadata"));
    let (_, metadata) = send(request.json(&json!({"b": 2}))).await;
    is_exactly::<contract::MetadataAnswer>("metadata", &metadata);
    let (_, token) = server.post("/v1/agents/default/users/u9/tokens", json!({"expiresInSeconds": 60})).await;
    is_exactly::<contract::Token>("a token", &token);
    let (_, user) =
        send(server.request(reqwest::Method::PUT, "/v1/agents/default/users/u9").json(&json!({"name": "Ann"}))).await;
    is_exactly::<contract::User>("a user", &user);
    let (_, messages) = server.get("/v1/agents/default/users/u1/messages").await;
    is_exactly::<contract::MessagePage>("a conversation", &messages);
    let (_, entry) =
        server.post("/v1/agents/default/data/notes", json!({"data": {"text": "hello"}, "searchText": "hello"})).await;
    is_exactly::<contract::Entry>("a data entry", &entry);
    let (_, hits) = server.get("/v1/agents/default/data/notes/search?text=hello").await;
    is_exactly::<contract::EntryHits>("search hits", &hits);
    let (_, entries) = server.get("/v1/agents/default/data/notes").await;
    is_exactly::<contract::EntryPage>("a page of entries", &entries);
    let (_, collections) = server.get("/v1/agents/default/data").await;
    is_exactly::<contract::Collections>("collections", &collections);
    let (_, product) =
        server.post("/v1/agents/default/products", json!({"name": "Pen", "price": 2, "colour": "blue"})).await;
    is_exactly::<contract::Product>("a product", &product);
    let (_, products) = server.get("/v1/agents/default/products").await;
    is_exactly::<contract::ProductPage>("a page of products", &products);
    let (_, settings) = server.get("/v1/agents/default/settings").await;
    is_exactly::<contract::Settings>("settings", &settings);
    let (_, env) = server.get("/v1/agents/default/env").await;
    is_exactly::<contract::Env>("env", &env);
    let (_, agents) = server.get("/v1/agents").await;
    is_exactly::<contract::AgentList>("agents", &agents);
    let (_, deleted) =
        send(server.request(reqwest::Method::DELETE, &format!("/v1/agents/default/jobs/{job_id}"))).await;
    is_exactly::<contract::Deletion>("a deletion", &deleted);
}

async fn messages_are_sent_to_a_user_over_http(server: &Server) {
    use sundial_api::contract;
    let body = json!({"messages": [
        {"type": "text", "text": "Your report is ready"},
        {"type": "image", "image": "https://example.com/chart.png", "mediaType": "image/png"},
    ]});
    let (status, sent) = server.post("/v1/agents/default/users/u7/messages", body).await;
    assert_eq!(status, 201, "{sent}");
    is_exactly::<contract::MessagesSent>("sent messages", &sent);
    let (_, page) = server.get("/v1/agents/default/users/u7/messages").await;
    let texts: Vec<&Value> = page["messages"].as_array().expect("messages").iter().map(|m| &m["content"]).collect();
    assert_eq!(texts[0], &json!({"type": "text", "text": "Your report is ready"}), "{page}");
    assert_eq!(texts[1]["mediaType"], "image/png");
    assert_eq!(page["messages"][0]["executionId"], Value::Null, "sent from outside any job");

    let (status, error) =
        server.post("/v1/agents/default/users/u7/messages", json!({"messages": [{"type": "video"}]})).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("messages[0].type")), "{error}");
    is_exactly::<contract::Error>("an error", &error);
    let (status, error) = server.post("/v1/agents/default/users/u7/messages", json!({"messages": []})).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("messages")), "{error}");

    // A user token writes to its own conversation only.
    let (_, token) = mint(server, "u8", json!({})).await;
    let token = token["token"].as_str().expect("token");
    let one = json!({"messages": [{"type": "text", "text": "note to self"}]});
    let answer = as_token(server, token, reqwest::Method::POST, "/v1/agents/default/users/u7/messages").json(&one);
    assert_eq!(send(answer).await.0, 404);
    let answer = as_token(server, token, reqwest::Method::POST, "/v1/agents/default/users/u8/messages").json(&one);
    assert_eq!(send(answer).await.0, 201);
}

/// Creates a job as `user` (an agent key with `X-User-Id`), or for the agent when `None`.
async fn create_for(server: &Server, user: Option<&str>, schedule: Value) -> (u16, Value) {
    let body = json!({"name": "guarded", "schedule": schedule, "code": "async () => 1"});
    let mut request = server.request(reqwest::Method::POST, "/v1/agents/default/jobs").json(&body);
    if let Some(user) = user {
        request = request.header("X-User-Id", user);
    }
    send(request).await
}

async fn jobs_made_for_a_user_keep_to_the_agents_guardrails(server: &Server) {
    let hourly = json!({"type": "interval", "seconds": 3600});
    // A recurring job made for a user fires at most once a minute by default; the agent's own jobs may run faster.
    let (status, error) = create_for(server, Some("g1"), json!({"type": "interval", "seconds": 30})).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("schedule.seconds")), "{error}");
    assert!(error["message"].as_str().is_some_and(|message| message.contains("60 seconds")), "{error}");
    let (status, error) =
        create_for(server, Some("g1"), json!({"type": "cron", "expression": "*/10 * * * * *", "timezone": "UTC"}))
            .await;
    assert_eq!((status, error["field"].as_str()), (400, Some("schedule.expression")), "{error}");
    assert_eq!(create_for(server, Some("g1"), json!({"type": "interval", "seconds": 60})).await.0, 201);
    assert_eq!(create_for(server, None, json!({"type": "interval", "seconds": 30})).await.0, 201);

    // At most `maxActiveJobsPerUser` active jobs per user (g1 has one already).
    let settings = json!({"maxActiveJobsPerUser": 2, "minRecurringIntervalSeconds": 120});
    let (status, answer) =
        send(server.request(reqwest::Method::PUT, "/v1/agents/default/settings").json(&settings)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, error) = create_for(server, Some("g1"), json!({"type": "interval", "seconds": 60})).await;
    assert_eq!((status, error["field"].as_str()), (400, Some("schedule.seconds")), "the agent's own minimum: {error}");
    let (status, second) = create_for(server, Some("g1"), hourly.clone()).await;
    assert_eq!(status, 201, "{second}");
    let (status, error) = create_for(server, Some("g1"), hourly.clone()).await;
    assert_eq!((status, error["code"].as_str()), (429, Some("quota_exceeded")), "{error}");
    assert!(error["message"].as_str().is_some_and(|message| message.contains("at most 2")), "{error}");
    assert_eq!(create_for(server, Some("g2"), hourly.clone()).await.0, 201, "another user has a quota of their own");
    let second = second["id"].as_str().expect("id");
    let (status, _) = server.post(&format!("/v1/agents/default/jobs/{second}/deactivate"), json!({})).await;
    assert_eq!(status, 200);
    let (status, third) = create_for(server, Some("g1"), hourly.clone()).await;
    assert_eq!(status, 201, "a paused job frees its place: {third}");
    let (status, error) = server.post(&format!("/v1/agents/default/jobs/{second}/activate"), json!({})).await;
    assert_eq!((status, error["code"].as_str()), (429, Some("quota_exceeded")), "{error}");

    let (status, error) = send(
        server.request(reqwest::Method::PUT, "/v1/agents/default/settings").json(&json!({"maxActiveJobsPerUser": 0})),
    )
    .await;
    assert_eq!((status, error["field"].as_str()), (400, Some("maxActiveJobsPerUser")), "{error}");
    let (status, _) = send(server.request(reqwest::Method::PUT, "/v1/agents/default/settings").json(&json!({}))).await;
    assert_eq!(status, 200);
}

async fn errors_name_the_field_also_inside_nested_bodies(server: &Server) {
    let job = |schedule: Value| json!({"name": "n", "schedule": schedule, "code": "async () => 1"});
    let cases = [
        (
            "/v1/agents/default/jobs",
            job(json!({"type": "cron", "expression": "0 9 * * *", "timezone": "Mars/Base"})),
            "schedule.timezone: unknown IANA zone \"Mars/Base\"",
        ),
        ("/v1/agents/default/jobs", job(json!({"type": "interval", "seconds": "sixty"})), "schedule.seconds: "),
        (
            "/v1/agents/default/jobs",
            json!({"name": "n", "schedule": {"type": "interval", "seconds": 60}, "code": "async () => 1", "retry": {"maxAttempts": "three"}}),
            "retry.maxAttempts: ",
        ),
        (
            "/v1/agents/default/jobs",
            json!({"name": "n", "schedule": {"type": "interval", "seconds": 60}, "code": "async () => 1", "policy": {"overlap": "sometimes"}}),
            "policy.overlap: ",
        ),
        (
            "/v1/agents/default/jobs/batch",
            json!({"jobs": [job(json!({"type": "interval", "seconds": 60})), job(json!({"type": "once", "executeAt": "tomorrow"}))]}),
            "jobs[1].schedule.executeAt: ",
        ),
        ("/v1/agents/default/preview", json!({"schedule": {"type": "interval", "seconds": 60}, "n": "ten"}), "n: "),
    ];
    for (path, body, prefix) in cases {
        let (status, answer) = server.post(path, body).await;
        assert_eq!(status, 400, "{path}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.starts_with(prefix), "{path}: {message:?} does not start with {prefix:?}");
    }
    // Closed bodies refuse unknown fields, naming them; a required body that is missing is a 400.
    let request = server
        .request(reqwest::Method::PUT, "/v1/agents/default/settings")
        .json(&json!({"webhookUrl": null, "webhookURL": "https://example.com"}));
    let (status, answer) = send(request).await;
    assert_eq!((status, answer["field"].clone()), (400, json!("webhookURL")), "{answer}");
    let (status, answer) = send(server.request(reqwest::Method::PUT, "/v1/agents/default/env")).await;
    assert_eq!((status, answer["message"].clone()), (400, json!("body: is required: send a JSON body")), "{answer}");
}

/// The seed's wrong example (`shared/seed/jobs-api.txt`, "Jobs execute functions must be self-contained"), as
/// `execute.toString()` gives it.
const SEED_WRONG_EXAMPLE: &str = "async ( job ) => {
// ...is NOT available here! ❌
await user . send ( userMessage ); // Error: userMessage is not defined
}";

async fn code_is_taken_as_people_paste_it_and_must_be_self_contained(server: &Server) {
    let pasted = "// Sends the day's summary.\n/*! (c) Example Corp, MIT */\n\"use strict\";\n\
                  async (job) => ({ name: job.name, strict: (function () { return this === undefined; })() });\n\
                  // end of job\n";
    let body =
        json!({"name": "pasted", "schedule": {"type": "interval", "seconds": 3600}, "code": pasted, "activate": false});
    let (status, job) = server.post("/v1/agents/default/jobs", body).await;
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_str().expect("id").to_owned();
    let (status, execution) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
    assert_eq!(status, 202, "{execution}");
    let execution_id = execution["id"].as_str().expect("id").to_owned();
    let finished = crate::support::eventually(15, "the pasted job to finish", || async {
        let (_, execution) = server.get(&format!("/v1/agents/default/executions/{execution_id}")).await;
        (execution["status"] != "running" && execution["status"] != "pending").then_some(execution)
    })
    .await;
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["result"], json!({"name": "pasted", "strict": true}));

    // The seed's wrong example is refused when it is created, naming what it cannot reach.
    let body = json!({"name": "wrong", "schedule": {"type": "interval", "seconds": 3600}, "code": SEED_WRONG_EXAMPLE});
    let (status, answer) = server.post("/v1/agents/default/jobs", body).await;
    assert_eq!(
        (status, answer["code"].clone(), answer["field"].clone()),
        (400, json!("unresolved_reference"), json!("code")),
        "{answer}"
    );
    let message = answer["message"].as_str().expect("message");
    assert!(message.starts_with("code: user (at 3:7) and userMessage (at 3:21) are not defined"), "{message}");
    assert!(message.contains("metadata"), "{message}");

    // Globals of the sandbox and names under `typeof` are fine; so is a name the function declares.
    let fine = "async (job) => { const when = new Date(); if (typeof later !== 'undefined') return 1; \
                const user = await job.user(); return [when, user, JSON.stringify(job.metadata), Data, env('X')]; }";
    let body =
        json!({"name": "fine", "schedule": {"type": "interval", "seconds": 3600}, "code": fine, "activate": false});
    let (status, answer) = server.post("/v1/agents/default/jobs", body).await;
    assert_eq!(status, 201, "{answer}");

    let body =
        json!({"name": "nothing", "schedule": {"type": "interval", "seconds": 3600}, "code": "// only a comment"});
    let (status, answer) = server.post("/v1/agents/default/jobs", body).await;
    assert_eq!((status, answer["code"].clone()), (400, json!("invalid_request")), "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("code: must be the source of a JavaScript function")),
        "{answer}"
    );
}

/// Creates a job as `user` (with `X-User-Id`); answers (status, job).
async fn create_as(server: &Server, user: &str, body: &Value) -> (u16, Value) {
    send(server.request(reqwest::Method::POST, "/v1/agents/default/jobs").header("X-User-Id", user).json(body)).await
}

async fn a_repeated_create_with_one_dedup_key_gives_one_job(server: &Server) {
    let body = json!({
        "name": "standup-reminder",
        "dedupKey": "standup",
        "schedule": {"type": "cron", "expression": "0 9 * * MON-FRI", "timezone": "Europe/Paris"},
        "code": "async (job) => job.metadata.text",
        "metadata": {"text": "stand-up"},
    });
    let (status, first) = create_as(server, "u1", &body).await;
    assert_eq!(status, 201, "{first}");
    let id = first["id"].clone();

    // The model calls its tool again with the same arguments: the same job, unchanged.
    let (status, again) = create_as(server, "u1", &body).await;
    assert_eq!((status, again["id"].clone()), (200, id.clone()), "{again}");
    assert_eq!(again["versions"].as_array().map(Vec::len), Some(1));

    // The same key with another schedule: a new version of the same job.
    let mut changed = body.clone();
    changed["schedule"]["expression"] = json!("30 9 * * MON-FRI");
    let (status, updated) = create_as(server, "u1", &changed).await;
    assert_eq!((status, updated["id"].clone()), (200, id.clone()), "{updated}");
    assert_eq!(updated["versions"].as_array().map(Vec::len), Some(2));
    assert_eq!(updated["scheduleDescription"], "every weekday at 09:30 (Europe/Paris)");
    assert_eq!(updated["active"], true);

    // Another user's key is another key.
    let (status, other) = create_as(server, "u2", &body).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(other["id"], id);

    // In a batch: an item with a bound key answers that job; two items with one new key make one job.
    let second = json!({"name": "second", "dedupKey": "second", "schedule": {"type": "interval", "seconds": 3600}, "code": "async () => 2"});
    let batch = json!({"jobs": [changed, second, second]});
    let request = || server.request(reqwest::Method::POST, "/v1/agents/default/jobs/batch").header("X-User-Id", "u1");
    let (status, answer) = send(request().json(&batch)).await;
    assert_eq!(status, 201, "{answer}");
    let ids: Vec<Value> = answer["jobs"].as_array().expect("jobs").iter().map(|job| job["id"].clone()).collect();
    assert_eq!(ids[0], id);
    assert_eq!(ids[1], ids[2], "one key, one job");
    let (_, again) = send(request().json(&batch)).await;
    let again: Vec<Value> = again["jobs"].as_array().expect("jobs").iter().map(|job| job["id"].clone()).collect();
    assert_eq!(again, ids, "a repeated batch makes nothing new");
    let (_, listed) =
        send(server.request(reqwest::Method::GET, "/v1/agents/default/jobs?includeDynamic=true&limit=1000")).await;
    let named = |name: &str| listed["jobs"].as_array().expect("jobs").iter().filter(|job| job["name"] == name).count();
    assert_eq!((named("standup-reminder"), named("second")), (2, 1), "one job per user and key");

    // Once the job is deleted, the key makes a new one.
    let job_id = id.as_str().expect("id");
    let (status, _) = send(server.request(reqwest::Method::DELETE, &format!("/v1/agents/default/jobs/{job_id}"))).await;
    assert_eq!(status, 200);
    let (status, fresh) = create_as(server, "u1", &body).await;
    assert_eq!(status, 201, "{fresh}");
    assert_ne!(fresh["id"], id);

    let mut bad = body.clone();
    bad["dedupKey"] = json!("");
    let (status, answer) = create_as(server, "u1", &bad).await;
    assert_eq!(status, 400);
    assert!(answer["message"].as_str().is_some_and(|message| message.starts_with("dedupKey: ")), "{answer}");
}

/// A request with `token` instead of the admin key.
fn as_token(server: &Server, token: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().request(method, format!("{}{path}", server.url)).bearer_auth(token)
}

/// Mints a user token for `user` with `body` (`{scopes?, expiresInSeconds?}`); answers the whole answer.
async fn mint(server: &Server, user: &str, body: Value) -> (u16, Value) {
    server.post(&format!("/v1/agents/default/users/{user}/tokens"), body).await
}

async fn user_tokens_have_scopes_and_an_expiry(server: &Server) {
    let job = json!({"name": "t", "schedule": {"type": "interval", "seconds": 3600}, "code": "async () => 1"});
    let entry = json!({"data": {"subject": "printer"}, "searchText": "printer"});

    // By default a user token may do what a tool running for its user may: jobs, Data and Products.
    let (status, minted) = mint(server, "u1", json!({})).await;
    assert_eq!(status, 201, "{minted}");
    assert_eq!(minted["scopes"], json!(["jobs", "data", "products"]));
    let token = minted["token"].as_str().expect("token").to_owned();
    let (status, answer) =
        send(as_token(server, &token, reqwest::Method::POST, "/v1/agents/default/data/tickets").json(&entry)).await;
    assert_eq!(status, 201, "a user token writes Data: {answer}");
    let (status, answer) = send(as_token(server, &token, reqwest::Method::GET, "/v1/agents/default/products")).await;
    assert_eq!(status, 200, "a user token reads Products: {answer}");
    let (status, answer) =
        send(as_token(server, &token, reqwest::Method::POST, "/v1/agents/default/jobs").json(&job)).await;
    assert_eq!((status, answer["userId"].clone()), (201, json!("u1")), "{answer}");
    // It still never sees another user's record.
    let (status, _) = send(as_token(server, &token, reqwest::Method::GET, "/v1/agents/default/users/u2")).await;
    assert!(status == 403 || status == 404, "another user's record answered {status}");

    // Narrower scopes.
    let (status, minted) = mint(server, "u1", json!({"scopes": ["jobs"]})).await;
    assert_eq!((status, minted["scopes"].clone()), (201, json!(["jobs"])), "{minted}");
    let jobs_only = minted["token"].as_str().expect("token").to_owned();
    let (status, answer) =
        send(as_token(server, &jobs_only, reqwest::Method::POST, "/v1/agents/default/jobs").json(&job)).await;
    assert_eq!(status, 201, "{answer}");
    for path in [
        "/v1/agents/default/data/tickets",
        "/developer/agents/default/custom-data/tickets",
        "/v1/agents/default/products",
    ] {
        let (status, answer) = send(as_token(server, &jobs_only, reqwest::Method::GET, path)).await;
        assert_eq!((status, answer["code"].clone()), (403, json!("insufficient_scope")), "{path}: {answer}");
        assert!(answer["message"].as_str().is_some_and(|message| message.contains("jobs")), "{answer}");
    }
    let (status, minted) = mint(server, "u1", json!({"scopes": ["data"]})).await;
    assert_eq!(status, 201);
    let data_only = minted["token"].as_str().expect("token").to_owned();
    for path in ["/v1/agents/default/jobs", "/developer/jobs/default"] {
        let (status, answer) = send(as_token(server, &data_only, reqwest::Method::GET, path)).await;
        assert_eq!((status, answer["code"].clone()), (403, json!("insufficient_scope")), "{path}: {answer}");
    }
    let (status, _) = send(as_token(server, &data_only, reqwest::Method::GET, "/v1/agents/default/data/tickets")).await;
    assert_eq!(status, 200);

    // Bad mint requests name the field.
    let (status, answer) = mint(server, "u1", json!({"scopes": ["jobs", "admin"]})).await;
    assert_eq!(
        (status, answer["message"].clone()),
        (400, json!("scopes[1]: must be one of \"jobs\", \"data\", \"products\""))
    );
    let (status, answer) = mint(server, "u1", json!({"scopes": []})).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = mint(server, "u1", json!({"expiresInSeconds": 0})).await;
    assert!(
        status == 400 && answer["message"].as_str().is_some_and(|m| m.starts_with("expiresInSeconds: ")),
        "{answer}"
    );
    let (status, _) =
        send(as_token(server, &token, reqwest::Method::POST, "/v1/agents/default/users/u1/tokens").json(&json!({})))
            .await;
    assert_eq!(status, 403, "a user token cannot mint tokens");

    // Expiry.
    let (status, minted) = mint(server, "u1", json!({"expiresInSeconds": 1})).await;
    assert_eq!(status, 201, "{minted}");
    let expires_at = utc(minted["expiresAt"].as_str().expect("expiresAt"));
    let short = minted["token"].as_str().expect("token").to_owned();
    let (status, _) = send(as_token(server, &short, reqwest::Method::GET, "/v1/agents/default/jobs")).await;
    assert_eq!(status, 200, "a token works before it expires");
    tokio::time::sleep(
        (expires_at - chrono::Utc::now()).to_std().unwrap_or_default() + std::time::Duration::from_millis(50),
    )
    .await;
    let (status, answer) = send(as_token(server, &short, reqwest::Method::GET, "/v1/agents/default/jobs")).await;
    assert_eq!((status, answer["code"].clone()), (401, json!("token_expired")), "{answer}");
}

async fn preview_says_what_a_schedule_would_do(server: &Server) {
    // Every Sunday of March at 02:30 in New York: ten runs always include a spring-forward Sunday.
    let schedule = json!({"type": "cron", "expression": "30 2 * 3 SUN", "timezone": "America/New_York"});
    let (status, answer) = server.post("/v1/agents/default/preview", json!({"schedule": schedule})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["scheduleDescription"], "every Sunday in Mar at 02:30 (America/New_York)");
    assert_eq!(answer["timezone"], "America/New_York");
    let runs = answer["nextRuns"].as_array().expect("nextRuns");
    assert_eq!(runs.len(), 10);
    assert!(
        runs.iter().any(|run| run["local"].as_str().is_some_and(|local| local.contains("T03:00:00-04:00"))),
        "{answer}"
    );
    let notes = answer["dstNotes"].as_array().expect("dstNotes");
    assert!(
        notes.iter().any(|note| note.as_str().is_some_and(|note| note.starts_with("02:30 does not exist on Sun "))),
        "{answer}"
    );

    let (status, answer) = server
        .post("/v1/agents/default/preview", json!({"schedule": {"type": "interval", "seconds": 7200}, "n": 2}))
        .await;
    assert_eq!((status, answer["scheduleDescription"].clone()), (200, json!("every 2 hours")));
    assert_eq!(answer["nextRuns"].as_array().map(Vec::len), Some(2));

    let bad_zone = json!({"schedule": {"type": "cron", "expression": "0 9 * * *", "timezone": "Mars/Base"}});
    let (status, answer) = server.post("/v1/agents/default/preview", bad_zone).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["code"], "invalid_schedule");
    assert_eq!(answer["message"], "schedule.timezone: unknown IANA zone \"Mars/Base\"");

    let (status, answer) = server
        .post("/v1/agents/default/preview", json!({"schedule": {"type": "interval", "seconds": 60}, "n": 0}))
        .await;
    assert_eq!((status, answer["code"].clone()), (400, json!("invalid_request")), "{answer}");
    let url = format!("{}/v1/agents/default/preview", server.url);
    let (status, _) = send(reqwest::Client::new().post(url).bearer_auth("sk_wrong").json(&json!({}))).await;
    assert_eq!(status, 401);
}
