//! End-to-end tests of the agent's `Data` collections and `Products`: the native `/v1` routes, lua-cli's routes in
//! its envelope, tenancy, and job code on the real server running the seed's `schedule_followup` and
//! `setup_daily_report` bodies as written.

use chrono::Utc;
use serde_json::{json, Value};

use crate::support::{eventually, send, Server};

/// The seed's `schedule_followup` execute function, as `execute.toString()` gives it (the tool's TypeScript
/// annotation compiled away).
const FOLLOWUP: &str = r#"async (jobInstance) => {
  const user = await jobInstance.user();
  const { ticketId, message } = jobInstance.metadata;
  // Check if ticket is still open
  const tickets = await Data.search('tickets', ticketId, 1);
  if (tickets.data.length > 0 && tickets.data[0].data.status === 'open') {
    // Send follow-up
    await user.send([{
      type: 'text',
      text: `📋 Ticket #${ticketId} Follow-up:\n\n${message}`
    }]);
    // Update ticket
    await Data.update('tickets', tickets.data[0].id, {
      ...tickets.data[0].data,
      followupSent: true,
      followupAt: new Date().toISOString()
    });
    return { success: true, sent: true };
  }
  return { success: true, sent: false, reason: 'Ticket closed' };
}"#;

/// The seed's `setup_daily_report` execute function.
const DAILY_REPORT: &str = r#"async (jobInstance) => {
  // Get products sold today
  const products = await Products.get(1, 100);
  const totalValue = products.reduce((sum, p) => sum + (p.price || 0), 0);
  const report = `📊 Daily Sales Report\n\n` +
    `Total Products: ${products.length}\n` +
    `Catalog Value: $${totalValue.toFixed(2)}\n` +
    `Report Time: ${jobInstance.metadata.reportTime}`;
  const user = await jobInstance.user();
  await user.send([{ type: 'text', text: report }]);
  return {
    success: true,
    productCount: products.length,
    totalValue
  };
}"#;

/// `path` with a URL-encoded query string.
fn at(path: &str, query: &[(&str, &str)]) -> String {
    format!("{path}?{}", crate::support::form_encoded(query))
}

fn get(server: &Server, path: &str) -> reqwest::RequestBuilder {
    server.request(reqwest::Method::GET, path)
}

fn with_method(server: &Server, method: reqwest::Method, path: &str, body: Value) -> reqwest::RequestBuilder {
    server.request(method, path).json(&body)
}

/// Creates a dynamic job of user `u1` that would fire only in an hour, triggers it, and answers its final execution.
async fn run_job(server: &Server, name: &str, code: &str, metadata: Value) -> Value {
    let later = sundial_core::wire::instant(Utc::now() + chrono::Duration::hours(1));
    let body =
        json!({"name": name, "metadata": metadata, "schedule": {"type": "once", "executeAt": later}, "code": code});
    let request =
        server.request(reqwest::Method::POST, "/v1/agents/default/jobs").header("X-User-Id", "u1").json(&body);
    let (status, job) = send(request).await;
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_str().expect("job id").to_owned();
    let (status, execution) = server.post(&format!("/v1/agents/default/jobs/{job_id}/trigger"), json!({})).await;
    assert_eq!(status, 202, "{execution}");
    let execution_id = execution["id"].as_str().expect("execution id").to_owned();
    eventually(20, "the triggered run to finish", || async {
        let (_, execution) = server.get(&format!("/v1/agents/default/executions/{execution_id}")).await;
        let status = execution["status"].as_str().unwrap_or_default();
        (!matches!(status, "pending" | "running" | "")).then_some(execution)
    })
    .await
}

async fn messages(server: &Server, user: &str) -> Vec<Value> {
    let (status, answer) = server.get(&format!("/v1/agents/default/users/{user}/messages")).await;
    assert_eq!(status, 200, "{answer}");
    answer["messages"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_entries_over_v1_crud_filter_search_and_bad_input() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_data_v1");
    let tickets = [
        ("T-1001", "open", "Printer does not print"),
        ("T-1002", "closed", "Refund for order 77"),
        ("T-1003", "open", "Printing is slow on the second floor"),
    ];
    let mut ids = Vec::new();
    for (ticket, status, subject) in tickets {
        let body = json!({"data": {"ticketId": ticket, "status": status, "subject": subject}});
        let (code, entry) = server.post("/v1/agents/default/data/tickets", body).await;
        assert_eq!(code, 201, "{entry}");
        assert!(entry["createdAt"].is_i64() && entry["updatedAt"].is_i64(), "times are Unix ms: {entry}");
        ids.push(entry["id"].as_str().expect("id").to_owned());
    }

    let (code, entry) = server.get(&format!("/v1/agents/default/data/tickets/{}", ids[1])).await;
    assert_eq!((code, entry["data"]["ticketId"].clone()), (200, json!("T-1002")));
    let (code, page) =
        send(get(&server, &at("/v1/agents/default/data/tickets", &[("page", "2"), ("limit", "2")]))).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["entries"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["entries"][0]["id"], json!(ids[2]), "pages are in creation order");
    let pagination = &page["pagination"];
    assert_eq!(
        (pagination["total"].clone(), pagination["totalPages"].clone(), pagination["hasPrevPage"].clone()),
        (json!(3), json!(2), json!(true))
    );
    let filter = json!({"status": "open", "subject": {"$exists": true}}).to_string();
    let (code, open) = send(get(&server, &at("/v1/agents/default/data/tickets", &[("filter", filter.as_str())]))).await;
    assert_eq!(code, 200, "{open}");
    let found: Vec<_> = open["entries"].as_array().expect("entries").iter().map(|entry| entry["id"].clone()).collect();
    assert_eq!(found, vec![json!(ids[0]), json!(ids[2])]);

    // Ranked search: the ticket whose data holds the id comes first, above the default threshold of 0.6.
    let search = |text: &str, extra: &[(&str, &str)]| {
        let mut query = vec![("text", text)];
        query.extend_from_slice(extra);
        send(get(&server, &at("/v1/agents/default/data/tickets/search", &query)))
    };
    let (code, hits) = search("T-1001", &[]).await;
    assert_eq!(code, 200, "{hits}");
    let hits = hits["entries"].as_array().cloned().expect("entries");
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0]["id"], json!(ids[0]));
    assert!(hits[0]["score"].as_f64().is_some_and(|score| (0.6..=1.0).contains(&score)), "{hits:?}");
    let (_, all) = search("T-1001", &[("scoreThreshold", "0")]).await;
    let scores: Vec<f64> =
        all["entries"].as_array().expect("entries").iter().filter_map(|hit| hit["score"].as_f64()).collect();
    assert_eq!(scores.len(), 3, "every ticket has the term t: {all}");
    assert!(scores.windows(2).all(|pair| pair[0] >= pair[1]) && scores[1] < 0.6, "best first: {scores:?}");
    let (_, limited) = search("printing", &[("limit", "1")]).await;
    assert_eq!(limited["entries"].as_array().map(Vec::len), Some(1), "{limited}");

    // PATCH merges and unsets; PUT replaces; DELETE removes.
    let path = format!("/v1/agents/default/data/tickets/{}", ids[0]);
    let patch = json!({"set": {"status": "closed", "agent": "ada"}, "unset": ["subject"], "searchText": "escalated"});
    let (code, patched) = send(with_method(&server, reqwest::Method::PATCH, &path, patch)).await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["data"], json!({"ticketId": "T-1001", "status": "closed", "agent": "ada"}));
    assert_eq!(patched["searchText"], json!("escalated"));
    let (_, by_text) = search("escalated", &[]).await;
    assert_eq!(by_text["entries"][0]["id"], json!(ids[0]), "searchText is what search indexes: {by_text}");
    let (code, replaced) = send(with_method(&server, reqwest::Method::PUT, &path, json!({"data": {"v": 2}}))).await;
    assert_eq!((code, replaced["data"].clone(), replaced.get("searchText")), (200, json!({"v": 2}), None));
    let (code, deleted) = send(server.request(reqwest::Method::DELETE, &path)).await;
    assert_eq!((code, deleted["deleted"].clone()), (200, json!(true)));
    let (code, gone) = server.get(&path).await;
    assert_eq!((code, gone["code"].clone()), (404, json!("entry_not_found")));
    let (code, _) = send(server.request(reqwest::Method::DELETE, &path)).await;
    assert_eq!(code, 404);

    let (code, listed) = server.get("/v1/agents/default/data").await;
    assert_eq!(code, 200);
    assert_eq!(listed["collections"][0]["name"], json!("tickets"));
    assert_eq!(listed["collections"][0]["entryCount"], json!(2));

    // Bad input: 400 naming the field.
    let big = "x".repeat(300 * 1024);
    let cases = [
        ("/v1/agents/default/data/bad%20name", json!({"data": {}}), "collection"),
        ("/v1/agents/default/data/tickets", json!({"data": [1]}), "data"),
        ("/v1/agents/default/data/tickets", json!({"data": {"x": 1}, "searchText": 5}), "searchText"),
        ("/v1/agents/default/data/tickets", json!({"data": {"blob": big}}), "data"),
    ];
    for (path, body, field) in cases {
        let (code, error) = server.post(path, body).await;
        assert_eq!((code, error["field"].clone()), (400, json!(field)), "{path}: {error}");
    }
    for (query, field) in [("filter", "{not json"), ("limit", "0"), ("page", "x")] {
        let (code, error) = send(get(&server, &at("/v1/agents/default/data/tickets", &[(query, field)]))).await;
        assert_eq!((code, error["field"].clone()), (400, json!(query)), "{query}={field}: {error}");
    }
    let (code, error) =
        send(get(&server, &at("/v1/agents/default/data/tickets", &[("filter", r#"{"a": {"$where": 1}}"#)]))).await;
    assert_eq!(code, 400, "{error}");
    assert!(error["message"].as_str().is_some_and(|message| message.contains("$where")), "{error}");
    let (code, error) = search("x", &[("scoreThreshold", "2")]).await;
    assert_eq!((code, error["field"].clone()), (400, json!("scoreThreshold")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_cli_routes_answer_in_its_envelope_and_agents_are_apart() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_data_lua");
    let base = "/developer/agents/default/custom-data";

    let (code, created) =
        server.post(&format!("{base}/tickets"), json!({"data": {"ticketId": "T-9", "status": "open"}, "searchText": "T-9 printer jam", "index": ["status"]})).await;
    assert_eq!((code, created["success"].clone()), (201, json!(true)), "{created}");
    let entry = &created["data"];
    assert_eq!(
        (entry["data"]["ticketId"].clone(), entry["searchText"].clone()),
        (json!("T-9"), json!("T-9 printer jam"))
    );
    let id = entry["id"].as_str().expect("id").to_owned();
    server.post(&format!("{base}/tickets"), json!({"data": {"ticketId": "T-10", "status": "closed"}})).await;

    // Data.get returns `response.data`: {data: [...], pagination} with lua-cli's Pagination fields.
    let (code, listed) = send(get(
        &server,
        &at(&format!("{base}/tickets"), &[("page", "1"), ("limit", "10"), ("filter", r#"{"status":"open"}"#)]),
    ))
    .await;
    assert_eq!((code, listed["success"].clone()), (200, json!(true)), "{listed}");
    assert_eq!(listed["data"]["data"].as_array().map(Vec::len), Some(1), "{listed}");
    let pagination = &listed["data"]["pagination"];
    assert_eq!((pagination["currentPage"].clone(), pagination["totalCount"].clone()), (json!(1), json!(1)));
    // Data.search maps `response.data.data`.
    let (code, found) = send(get(
        &server,
        &at(
            &format!("{base}/tickets/search"),
            &[("searchText", "printer"), ("limit", "10"), ("scoreThreshold", "0.6")],
        ),
    ))
    .await;
    assert_eq!(code, 200, "{found}");
    assert_eq!(found["data"]["data"][0]["id"], json!(id));
    assert!(found["data"]["data"][0]["score"].as_f64().is_some_and(|score| score >= 0.6), "{found}");
    let (code, one) = server.get(&format!("{base}/tickets/{id}")).await;
    assert_eq!((code, one["data"]["id"].clone()), (200, json!(id)));

    let path = format!("{base}/tickets/{id}");
    let (code, updated) =
        send(with_method(&server, reqwest::Method::PUT, &path, json!({"data": {"status": "closed"}}))).await;
    assert_eq!((code, updated["data"]["status"].clone()), (200, json!("success")), "{updated}");
    assert_eq!(updated["data"]["data"], json!({"ticketId": "T-9", "status": "closed"}), "update merges: {updated}");
    let patch = json!({"set": {"owner": "ada"}, "unset": ["ticketId"], "searchText": null});
    let (code, patched) = send(with_method(&server, reqwest::Method::PATCH, &path, patch)).await;
    assert_eq!(
        (code, patched["data"]["data"].clone()),
        (200, json!({"status": "closed", "owner": "ada"})),
        "{patched}"
    );
    assert_eq!(patched["data"].get("searchText"), None);
    let (code, collections) = server.get(base).await;
    assert_eq!((code, collections["data"]["count"].clone()), (200, json!(1)), "{collections}");
    assert_eq!(collections["data"]["data"][0]["entryCount"], json!(2));

    // Another agent: 404 on default's data, its own collections are empty.
    let (code, created) = server.post("/v1/agents", json!({"agentId": "other"})).await;
    assert_eq!(code, 201, "{created}");
    let other_key = created["key"]["key"].as_str().expect("key").to_owned();
    let as_other = |method, path: &str| {
        reqwest::Client::new().request(method, format!("{}{}", server.url, path)).bearer_auth(&other_key)
    };
    for path in [path.clone(), format!("{base}/tickets"), format!("/v1/agents/default/data/tickets/{id}")] {
        let (code, error) = send(as_other(reqwest::Method::GET, &path)).await;
        assert_eq!((code, error["code"].clone()), (404, json!("agent_not_found")), "{path}");
    }
    let (code, error) = send(as_other(reqwest::Method::GET, &format!("/v1/agents/other/data/tickets/{id}"))).await;
    assert_eq!((code, error["code"].clone()), (404, json!("entry_not_found")), "an id of another agent");
    let (code, own) = send(as_other(reqwest::Method::GET, "/developer/agents/other/custom-data/tickets")).await;
    assert_eq!((code, own["data"]["data"].clone()), (200, json!([])));
    let (_, searched) =
        send(as_other(reqwest::Method::GET, &at("/v1/agents/other/data/tickets/search", &[("text", "T-9")]))).await;
    assert_eq!(searched["entries"], json!([]), "search stays within the agent");

    // A user token reaches the agent's data collections, like a tool running for its user, unless it was minted
    // without the `data` scope.
    let (_, token) = server.post("/v1/agents/default/users/u7/tokens", json!({})).await;
    let token = token["token"].as_str().expect("token").to_owned();
    let request = reqwest::Client::new().get(format!("{}{base}/tickets", server.url)).bearer_auth(&token);
    assert_eq!(send(request).await.0, 200);
    let (_, token) = server.post("/v1/agents/default/users/u7/tokens", json!({"scopes": ["jobs"]})).await;
    let token = token["token"].as_str().expect("token").to_owned();
    let request = reqwest::Client::new().get(format!("{}{base}/tickets", server.url)).bearer_auth(&token);
    let (code, error) = send(request).await;
    assert_eq!((code, error["code"].clone()), (403, json!("insufficient_scope")));

    let (code, deleted) = send(server.request(reqwest::Method::DELETE, &path)).await;
    assert_eq!((code, deleted["data"]["status"].clone()), (200, json!("success")));
    let (code, missing) = server.get(&path).await;
    assert_eq!((code, missing["code"].clone()), (404, json!("entry_not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn products_over_v1_and_lua_cli_routes() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_products");
    let (code, mouse) = server
        .post(
            "/v1/agents/default/products",
            json!({"name": "Wireless Mouse", "price": 25.5, "category": "electronics"}),
        )
        .await;
    assert_eq!(code, 201, "{mouse}");
    let mouse_id = mouse["id"].as_str().expect("id").to_owned();
    assert!(mouse_id.starts_with("prd_"), "{mouse}");
    let (code, lua) = server
        .post("/developer/agents/default/products", json!({"id": "kbd-1", "name": "Mechanical Keyboard", "price": 80}))
        .await;
    assert_eq!((code, lua["data"]["product"]["id"].clone()), (201, json!("kbd-1")), "create reads data.product: {lua}");
    let (code, duplicate) = server.post("/v1/agents/default/products", json!({"id": "kbd-1", "name": "Again"})).await;
    assert_eq!((code, duplicate["code"].clone()), (409, json!("conflict")));
    server
        .post(
            "/v1/agents/default/products",
            json!({"name": "Coffee Mug", "price": 9.99, "description": "A mug for the desk"}),
        )
        .await;
    for (body, field) in [
        (json!({"price": 1}), "name"),
        (json!({"name": "x", "price": "1"}), "price"),
        (json!({"id": "search", "name": "x"}), "id"),
    ] {
        let (code, error) = server.post("/v1/agents/default/products", body).await;
        assert_eq!((code, error["field"].clone()), (400, json!(field)), "{error}");
    }

    // lua-cli's Products.get wraps the whole response: {success, data: [...], pagination} at the top level.
    let (code, page) =
        send(get(&server, &at("/developer/agents/default/products", &[("page", "1"), ("limit", "2")]))).await;
    assert_eq!((code, page["success"].clone()), (200, json!(true)), "{page}");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        (page["pagination"]["totalCount"].clone(), page["pagination"]["nextPage"].clone()),
        (json!(3), json!(2))
    );
    let filter = json!({"price": {"$lte": 30}}).to_string();
    let (code, cheap) = send(get(&server, &at("/v1/agents/default/products", &[("filter", filter.as_str())]))).await;
    assert_eq!(code, 200, "{cheap}");
    let names: Vec<_> = cheap["products"].as_array().expect("products").iter().map(|p| p["name"].clone()).collect();
    assert_eq!(names, vec![json!("Wireless Mouse"), json!("Coffee Mug")]);

    let (code, found) = send(get(
        &server,
        &at("/developer/agents/default/products/search", &[("searchQuery", "keyboard"), ("limit", "5")]),
    ))
    .await;
    assert_eq!((code, found["success"].clone()), (200, json!(true)), "{found}");
    assert_eq!(found["data"][0]["id"], json!("kbd-1"));
    let (_, desk) = send(get(&server, &at("/v1/agents/default/products/search", &[("query", "desk mug")]))).await;
    assert_eq!(desk["products"][0]["name"], json!("Coffee Mug"), "{desk}");

    // lua-cli's Products.update: PUT …/products with {...fields, id}; a partial update.
    let update = json!({"price": 19, "id": mouse_id});
    let (code, updated) =
        send(with_method(&server, reqwest::Method::PUT, "/developer/agents/default/products", update)).await;
    assert_eq!((code, updated["data"]["updated"].clone()), (200, json!(true)), "{updated}");
    assert_eq!(updated["data"]["product"]["name"], json!("Wireless Mouse"));
    assert_eq!(updated["data"]["product"]["price"], json!(19));
    let path = format!("/v1/agents/default/products/{mouse_id}");
    let (code, patched) = send(with_method(&server, reqwest::Method::PATCH, &path, json!({"stock": 4}))).await;
    assert_eq!((code, patched["stock"].clone(), patched["price"].clone()), (200, json!(4), json!(19)));
    let (code, replaced) = send(with_method(&server, reqwest::Method::PUT, &path, json!({"name": "Trackball"}))).await;
    assert_eq!((code, replaced), (200, json!({"id": mouse_id, "name": "Trackball"})));
    let (code, one) = server.get(&format!("/developer/agents/default/products/{mouse_id}")).await;
    assert_eq!((code, one["data"]["name"].clone()), (200, json!("Trackball")));

    // Another agent sees none of it; a user token may read and write unless minted without the `products` scope.
    let (_, created) = server.post("/v1/agents", json!({"agentId": "other"})).await;
    let other_key = created["key"]["key"].as_str().expect("key").to_owned();
    let request =
        reqwest::Client::new().get(format!("{}/v1/agents/other/products/kbd-1", server.url)).bearer_auth(&other_key);
    let (code, error) = send(request).await;
    assert_eq!((code, error["code"].clone()), (404, json!("product_not_found")));
    let (_, token) = server.post("/v1/agents/default/users/u7/tokens", json!({})).await;
    let token = token["token"].as_str().expect("token").to_owned();
    let (code, _) =
        send(reqwest::Client::new().get(format!("{}/v1/agents/default/products", server.url)).bearer_auth(&token))
            .await;
    assert_eq!(code, 200);
    let request = reqwest::Client::new()
        .post(format!("{}/v1/agents/default/products", server.url))
        .bearer_auth(&token)
        .json(&json!({"id": "pen-1", "name": "Pen"}));
    assert_eq!(send(request).await.0, 201);
    let (_, token) = server.post("/v1/agents/default/users/u7/tokens", json!({"scopes": ["jobs", "data"]})).await;
    let token = token["token"].as_str().expect("token").to_owned();
    let request = reqwest::Client::new()
        .post(format!("{}/v1/agents/default/products", server.url))
        .bearer_auth(&token)
        .json(&json!({"name": "Nope"}));
    assert_eq!(send(request).await.0, 403);

    let (code, deleted) =
        send(server.request(reqwest::Method::DELETE, "/developer/agents/default/products/kbd-1")).await;
    assert_eq!((code, deleted["data"]["deleted"].clone()), (200, json!(true)));
    let (code, again) = send(server.request(reqwest::Method::DELETE, "/v1/agents/default/products/kbd-1")).await;
    assert_eq!((code, again["code"].clone()), (404, json!("product_not_found")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_followup_and_daily_report_jobs_run_as_written() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_data_seed");
    send(server.request(reqwest::Method::PUT, "/v1/agents/default/users/u1").json(&json!({"name": "Ada"}))).await;
    let mut ticket_ids = Vec::new();
    for (ticket, status) in [("T-1001", "open"), ("T-1002", "closed"), ("T-1003", "open")] {
        let body = json!({"data": {"ticketId": ticket, "status": status, "subject": "Printer trouble"}});
        let (code, entry) = server.post("/v1/agents/default/data/tickets", body).await;
        assert_eq!(code, 201, "{entry}");
        ticket_ids.push(entry["id"].as_str().expect("id").to_owned());
    }

    // An open ticket: the follow-up is sent and the ticket updated.
    let metadata = json!({"ticketId": "T-1001", "message": "Is the printer working again?"});
    let execution = run_job(&server, "followup-T-1001", FOLLOWUP, metadata).await;
    assert_eq!(execution["status"], json!("completed"), "{execution}");
    assert_eq!(execution["result"], json!({"success": true, "sent": true}));
    let sent = messages(&server, "u1").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["content"],
        json!({"type": "text", "text": "📋 Ticket #T-1001 Follow-up:\n\nIs the printer working again?"})
    );
    let (_, ticket) = server.get(&format!("/v1/agents/default/data/tickets/{}", ticket_ids[0])).await;
    assert_eq!(ticket["data"]["followupSent"], json!(true), "{ticket}");
    assert_eq!(
        (ticket["data"]["status"].clone(), ticket["data"]["ticketId"].clone()),
        (json!("open"), json!("T-1001"))
    );
    assert!(ticket["data"]["followupAt"].is_string(), "{ticket}");

    // A closed ticket: nothing is sent.
    let metadata = json!({"ticketId": "T-1002", "message": "Anything else?"});
    let execution = run_job(&server, "followup-T-1002", FOLLOWUP, metadata).await;
    assert_eq!(execution["result"], json!({"success": true, "sent": false, "reason": "Ticket closed"}), "{execution}");
    assert_eq!(messages(&server, "u1").await.len(), 1, "a closed ticket got a follow-up");

    // The daily report reads the catalog with Products.get(1, 100), .length and .reduce.
    for (name, price) in [("Mouse", json!(25.5)), ("Keyboard", json!(80)), ("Sticker", Value::Null)] {
        let (code, product) = server.post("/v1/agents/default/products", json!({"name": name, "price": price})).await;
        assert_eq!(code, 201, "{product}");
    }
    let execution = run_job(&server, "daily-sales-report", DAILY_REPORT, json!({"reportTime": "09:00"})).await;
    assert_eq!(execution["status"], json!("completed"), "{execution}");
    assert_eq!(execution["result"], json!({"success": true, "productCount": 3, "totalValue": 105.5}));
    let sent = messages(&server, "u1").await;
    assert_eq!(
        sent.last().map(|message| message["content"]["text"].clone()),
        Some(json!("📊 Daily Sales Report\n\nTotal Products: 3\nCatalog Value: $105.50\nReport Time: 09:00"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_code_sees_every_data_and_products_call_in_both_result_styles() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), "sk_test_data_calls");
    let code = r#"async () => {
      const first = await Data.create('notes', { title: 'hello world', n: 1 });
      await Data.create('notes', { title: 'second', n: 2 }, 'custom search words');
      await Data.create('notes', { title: 'third', n: 3 }, { searchText: 'other words', index: ['n'] });
      const page = await Data.get('notes', { n: { $gte: 2 } }, 1, 1);
      const entry = await Data.getEntry('notes', first.id);
      const missing = await Data.getEntry('notes', 'ent_none');
      const found = await Data.search('notes', 'custom words');
      const updated = await Data.update('notes', first.id, { extra: true });
      const deleted = await Data.delete('notes', first.id);
      const errors = [];
      for (const call of [
        () => Data.create('bad name', {}),
        () => Data.create('notes', 'not an object'),
        () => Data.get('notes', { n: { $regex: 'x' } }),
        () => Data.update('notes', first.id, { x: 1 }),
        () => Products.create({ price: 1 }),
      ]) {
        try { await call(); errors.push(null); } catch (error) { errors.push(error.message); }
      }
      const product = await Products.create({ name: 'Widget', price: 2.5 });
      await Products.create({ name: 'Gadget', price: 7 });
      const cheap = await Products.get({ page: 1, limit: 10, filter: { price: { $lt: 5 } } });
      const all = await Products.get();
      const changed = await Products.update({ price: 3 }, product.id);
      const searched = await Products.search('widget');
      const byId = await Products.getById(product.id);
      const removed = await Products.delete(product.id);
      const none = await Products.getById(product.id);
      return {
        created: [typeof first.id, first.data.title, typeof first.createdAt],
        page: [page.length, page.data.length, page[0].data.n, page.pagination.total, page.pagination.totalPages],
        entry: [entry.id === first.id, missing],
        found: [found.length, found[0].data.title, found.data[0].score >= 0.6],
        updated: [updated.status, updated.data.title, updated.data.extra],
        deleted,
        errors,
        products: [cheap.length, cheap[0].name, cheap.pagination.total, all.length, all.products.length,
                   all.map(p => p.name).join(','), all.filter(p => p.price > 5).length,
                   all.reduce((sum, p) => sum + p.price, 0)],
        changed: [changed.updated, changed.product.price, changed.product.name],
        searched: [searched.length, searched[0].id === product.id],
        byId: byId.name,
        removed,
        none,
      };
    }"#;
    let execution = run_job(&server, "every-call", code, json!({})).await;
    assert_eq!(execution["status"], json!("completed"), "{execution}");
    let result = &execution["result"];
    assert_eq!(result["created"], json!(["string", "hello world", "number"]));
    assert_eq!(result["page"], json!([1, 1, 2, 2, 2]));
    assert_eq!(result["entry"], json!([true, null]));
    assert_eq!(result["found"], json!([1, "second", true]));
    assert_eq!(result["updated"], json!(["success", "hello world", true]));
    assert_eq!(result["deleted"]["status"], json!("success"));
    let errors: Vec<String> = result["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|error| error.as_str().unwrap_or("").to_owned())
        .collect();
    let expected = [
        "Data.create: collection must be 1 to 64 characters of letters, digits, '_' or '-'",
        "Data.create: data must be a JSON object",
        "Data.get: filter n: $regex is not a supported operator",
        "Data.update: no entry",
        "Products.create: name is required and must be a non-empty string",
    ];
    for (error, expected) in errors.iter().zip(expected) {
        assert!(error.starts_with(expected), "{error:?} does not start with {expected:?}");
    }
    assert_eq!(errors.len(), expected.len());
    assert_eq!(result["products"], json!([1, "Widget", 1, 2, 2, "Widget,Gadget", 1, 9.5]));
    assert_eq!(result["changed"], json!([true, 3, "Widget"]));
    assert_eq!(result["searched"], json!([1, true]));
    assert_eq!(result["byId"], json!("Widget"));
    assert_eq!(result["removed"], json!({"deleted": true}));
    assert_eq!(result["none"], Value::Null);
}
