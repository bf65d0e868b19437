//! The dashboard's pages as the server renders them: sign-in and its refusals, the session cookie, CSRF on every
//! form, the strict Content-Security-Policy, escaping of everything a job wrote, and what each page shows. The browser
//! suite (`tests/ui`) drives the same pages in Chromium.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{eventually, send, Server};

const KEY: &str = "sk_test_dashboard";

/// A browser without a cookie store or redirects: the test carries the session cookie itself.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Browser {
    fn new(server: &Server) -> Browser {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { http, base: server.url.clone(), cookie: String::new() }
    }

    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
        let response =
            self.http.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.expect("get");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, response.text().await.unwrap_or_default())
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, reqwest::header::HeaderMap, String) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(crate::support::form_encoded(form))
            .send()
            .await
            .expect("post");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, headers, response.text().await.unwrap_or_default())
    }

    /// Keeps the cookies a response sets (a `Max-Age=0` one is dropped).
    fn keep_cookies(&mut self, headers: &reqwest::header::HeaderMap) {
        let mut jar: Vec<(String, String)> = self
            .cookie
            .split("; ")
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        for set in headers.get_all("set-cookie").iter().filter_map(|value| value.to_str().ok()) {
            let Some((name, rest)) = set.split_once('=') else { continue };
            let value = rest.split(';').next().unwrap_or_default().to_owned();
            jar.retain(|(existing, _)| existing != name);
            if !set.contains("Max-Age=0") {
                jar.push((name.to_owned(), value));
            }
        }
        self.cookie = jar.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("; ");
    }

    /// Signs in with `key` through the form; answers the status of the form's answer.
    async fn sign_in(&mut self, key: &str) -> (u16, String) {
        let (_, headers, page) = self.get("/ui/login").await;
        self.keep_cookies(&headers);
        let csrf = hidden(&page, "csrf");
        let (status, headers, page) = self.post("/ui/login", &[("csrf", &csrf), ("key", key)]).await;
        self.keep_cookies(&headers);
        (status, page)
    }
}

/// The value of hidden input `name` in `page`.
fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker).map(|at| at + marker.len()).expect("hidden input");
    page[start..].split('"').next().unwrap_or_default().to_owned()
}

async fn create(server: &Server, user: Option<&str>, body: Value) -> Value {
    let mut request = server.request(reqwest::Method::POST, "/v1/agents/default/jobs").json(&body);
    if let Some(user) = user {
        request = request.header("X-User-Id", user);
    }
    let (status, job) = send(request).await;
    assert_eq!(status, 201, "{job}");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_escapes_and_shows_jobs_runs_and_users() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let server = Server::start(directory.path(), KEY);
    let report = create(
        &server,
        Some("alice"),
        json!({"name": "daily report", "schedule": {"type": "cron", "expression": "0 9 * * 1-5", "timezone": "America/New_York"},
               "metadata": {"team": "ops"},
               "code": "async (job) => { console.log('done </script><script>alert(1)</script>'); const user = await job.user(); await user.send([{ type: 'text', text: 'Your <b>report</b> is ready' }]); return { ok: true }; }"}),
    )
    .await;
    let report_id = report["id"].as_str().expect("id").to_owned();
    create(&server, Some("bob"), json!({"name": "<img src=x onerror=alert(1)>", "schedule": {"type": "interval", "seconds": 3600}, "code": "async () => 1"}))
        .await;

    // Not signed in: sent to the sign-in page, which carries the policy.
    let mut browser = Browser::new(&server);
    let (status, headers, _) = browser.get("/ui").await;
    assert_eq!((status, headers["location"].to_str().ok()), (303, Some("/ui/login")));
    let (status, headers, page) = browser.get("/ui/login").await;
    assert_eq!(status, 200);
    let policy = headers["content-security-policy"].to_str().expect("policy");
    assert!(policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"), "{policy}");
    assert!(page.contains("name=\"key\"") && !page.contains("<script>"), "no inline script");

    // A user token is refused; so is a form without its token; the admin key signs in.
    let (_, token) = server.post("/v1/agents/default/users/alice/tokens", json!({})).await;
    let (status, page) = browser.sign_in(token["token"].as_str().expect("token")).await;
    assert_eq!(status, 401);
    assert!(page.contains("A user token cannot open the dashboard"), "{page}");
    let (status, _, page) = browser.post("/ui/login", &[("csrf", "forged"), ("key", KEY)]).await;
    assert_eq!(status, 401, "{page}");
    let (status, _) = browser.sign_in("sk_wrong").await;
    assert_eq!(status, 401);
    let (status, _) = browser.sign_in(KEY).await;
    assert_eq!(status, 303);
    assert!(browser.cookie.contains("sundial_session="), "{}", browser.cookie);

    // The list: every job, names escaped; filtered to one user.
    let (status, _, page) = browser.get("/ui").await;
    assert_eq!(status, 200);
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;") && !page.contains("<img src=x"), "escaped name");
    assert!(page.contains("every weekday at 09:00 (America/New_York)"), "{page}");
    let (_, _, alice) = browser.get("/ui?user=alice").await;
    assert!(alice.contains("daily report") && !alice.contains("onerror"), "filtered to alice");
    let (_, _, cron) = browser.get("/ui?kind=cron&q=OPS").await;
    assert!(cron.contains("daily report") && !cron.contains("onerror"), "kind and text over metadata");

    // The job: next runs in its zone, actions behind confirmation pages with the session's token.
    let (_, _, job) = browser.get(&format!("/ui/jobs/{report_id}")).await;
    assert!(
        job.contains("09:00:00 EST (America/New_York)") || job.contains("09:00:00 EDT (America/New_York)"),
        "{job}"
    );
    assert!(job.contains(&format!("/ui/jobs/{report_id}/confirm/trigger")));
    let (_, _, confirm) = browser.get(&format!("/ui/jobs/{report_id}/confirm/trigger")).await;
    assert!(confirm.contains("Its schedule does not move"), "{confirm}");
    let csrf = hidden(&confirm, "csrf");
    let (status, _, _) = browser.post(&format!("/ui/jobs/{report_id}/trigger"), &[("csrf", "forged")]).await;
    assert_eq!(status, 403, "a forged form is refused");
    let (status, headers, _) = browser.post(&format!("/ui/jobs/{report_id}/trigger"), &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let created = headers["link"].to_str().expect("link").to_owned();
    let execution_path = created.trim_start_matches('<').split('>').next().unwrap_or_default().to_owned();

    // The execution: its log line and the message it sent, as text.
    let page = eventually(20, "the triggered run to complete", || async {
        let (_, _, page) = browser.get(&execution_path).await;
        (page.contains("completed") && page.contains("Your &lt;b&gt;report&lt;/b&gt; is ready")).then_some(page)
    })
    .await;
    assert!(page.contains("done &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;"), "the log line escaped");
    assert!(!page.contains("<script>alert"), "nothing a job wrote is markup");

    // Users, their conversation, and the system page.
    let (_, _, users) = browser.get("/ui/users").await;
    assert!(users.contains("/ui/users/alice") && users.contains("/ui/users/bob"));
    let (_, _, conversation) = browser.get("/ui/users/alice").await;
    assert!(conversation.contains("Your &lt;b&gt;report&lt;/b&gt; is ready") && conversation.contains("daily report"));
    let (status, _, system) = browser.get("/ui/system").await;
    assert_eq!(status, 200);
    assert!(
        system.contains("Fire lateness") && system.contains("Sandbox workers") && system.contains("MiB"),
        "{system}"
    );

    // Deactivate through its confirmation; then sign out, and the session is gone.
    let (_, _, confirm) = browser.get(&format!("/ui/jobs/{report_id}/confirm/deactivate")).await;
    let (status, _, _) =
        browser.post(&format!("/ui/jobs/{report_id}/deactivate"), &[("csrf", &hidden(&confirm, "csrf"))]).await;
    assert_eq!(status, 303);
    let (_, job) = server.get(&format!("/v1/agents/default/jobs/{report_id}")).await;
    assert_eq!((job["active"].as_bool(), job["status"].as_str()), (Some(false), Some("inactive")));
    let (status, _, _) = browser.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    let (status, _, _) = browser.get("/ui").await;
    assert_eq!(status, 303, "signed out");

    // Live updates: the event stream says it is ready at once.
    let mut again = Browser::new(&server);
    again.sign_in(KEY).await;
    let response = again
        .http
        .get(format!("{}/ui/events", again.base))
        .header("cookie", &again.cookie)
        .send()
        .await
        .expect("events");
    assert_eq!(response.headers()["content-type"].to_str().ok(), Some("text/event-stream"));
    let mut stream = response.bytes_stream();
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("an event").expect("bytes");
    assert!(String::from_utf8_lossy(&first.expect("chunk")).contains("event: ready"));
}
