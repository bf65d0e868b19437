//! The few calls of Sundial's HTTP API the bench makes: create agents and jobs in batches, read an agent's
//! executions back, delete jobs, read `/metrics`.

use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

/// Longest wait for one response (a batch of thousands of jobs on a busy machine can take seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Executions per page when reading them back (the API's maximum).
const PAGE: usize = 10_000;

/// A client of one server, acting as one agent.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base_url: String,
    key: String,
    agent: String,
}

/// An execution as the API returns it, reduced to the fields the bench reads.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireExecution {
    /// The job it belongs to.
    pub job_id: String,
    /// `pending`, `running`, `completed`, `failed`, …
    pub status: String,
    /// `schedule`, `retry` or `manual`.
    pub trigger: String,
    /// The slot it runs (absent for manual runs).
    #[serde(default)]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// When the server started it.
    #[serde(default)]
    pub started_at: Option<DateTime<Utc>>,
    /// What the job's code returned.
    #[serde(default)]
    pub result: Option<Value>,
}

impl WireExecution {
    /// Whether the run began: a final status other than cancelled/skipped, or running.
    pub fn started(&self) -> bool {
        matches!(self.status.as_str(), "running" | "completed" | "failed" | "timeout" | "killed" | "abandoned")
    }

    /// The clock value `t` the job's code returned (ms since the epoch).
    pub fn code_time_ms(&self) -> Option<f64> {
        self.result.as_ref()?.get("t")?.as_f64()
    }
}

#[derive(Deserialize)]
struct CreatedJobs {
    jobs: Vec<CreatedJob>,
}

#[derive(Deserialize)]
struct CreatedJob {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionPage {
    executions: Vec<WireExecution>,
    #[serde(default)]
    next_cursor: Option<String>,
}

impl Api {
    /// A client of `base_url` acting as `agent` with `key`. Loopback only: no proxy.
    pub fn new(base_url: &str, key: &str, agent: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(REQUEST_TIMEOUT)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Api { http, base_url: base_url.trim_end_matches('/').to_owned(), key: key.to_owned(), agent: agent.into() })
    }

    /// The same server as another agent.
    pub fn as_agent(&self, agent: &str, key: &str) -> Api {
        Api { http: self.http.clone(), base_url: self.base_url.clone(), key: key.to_owned(), agent: agent.to_owned() }
    }

    /// The same agent at another address (a restarted server listens on a new port).
    pub fn at(&self, base_url: &str) -> Api {
        Api { base_url: base_url.trim_end_matches('/').to_owned(), ..self.clone() }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request and returns its response body, failing with the API's error on a non-2xx status.
    async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Vec<u8>> {
        let response =
            request.bearer_auth(&self.key).send().await.with_context(|| format!("{what}: request failed"))?;
        let status = response.status();
        let body = response.bytes().await.with_context(|| format!("{what}: cannot read the response"))?;
        if !status.is_success() {
            bail!("{what}: HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(500)]));
        }
        Ok(body.to_vec())
    }

    /// Creates an agent (admin key) and returns the secret of its new key.
    pub async fn create_agent(&self, agent: &str) -> anyhow::Result<String> {
        let request = self.http.post(self.url("/v1/agents")).json(&json!({ "agentId": agent }));
        let body = self.send(request, "POST /v1/agents").await?;
        let created: Value = serde_json::from_slice(&body).context("POST /v1/agents: invalid JSON")?;
        created
            .pointer("/key/key")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .context("POST /v1/agents: no key.key in the response")
    }

    /// Creates `jobs` with the batch route, `batch` per request and up to `concurrency` requests in flight, and
    /// returns their ids in the order of `jobs`.
    pub async fn create_jobs(&self, jobs: Vec<Value>, batch: usize, concurrency: usize) -> anyhow::Result<Vec<String>> {
        let total = jobs.len();
        let mut chunks = Vec::with_capacity(total.div_ceil(batch.max(1)));
        let mut jobs = jobs.into_iter().peekable();
        while jobs.peek().is_some() {
            chunks.push(jobs.by_ref().take(batch.max(1)).collect::<Vec<Value>>());
        }
        let url = self.url(&format!("/v1/agents/{}/jobs/batch?view=ids", self.agent));
        let pages: Vec<anyhow::Result<Vec<String>>> = stream::iter(chunks)
            .map(|chunk| {
                let url = url.clone();
                async move {
                    let expected = chunk.len();
                    let body = serde_json::to_vec(&json!({ "jobs": chunk })).context("cannot encode a batch")?;
                    let request = self.http.post(url).header("content-type", "application/json").body(body);
                    let response = self.send(request, "POST jobs/batch").await?;
                    let created: CreatedJobs =
                        serde_json::from_slice(&response).context("POST jobs/batch: unexpected response")?;
                    if created.jobs.len() != expected {
                        bail!("POST jobs/batch: {} jobs created of {expected}", created.jobs.len());
                    }
                    Ok(created.jobs.into_iter().map(|job| job.id).collect())
                }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;
        let mut ids = Vec::with_capacity(total);
        for page in pages {
            ids.extend(page?);
        }
        Ok(ids)
    }

    /// Every execution of the agent, in creation order.
    pub async fn executions(&self) -> anyhow::Result<Vec<WireExecution>> {
        let url = self.url(&format!("/v1/agents/{}/executions", self.agent));
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            // Execution ids are letters, digits and '_': nothing to escape.
            let page_url = match &cursor {
                Some(cursor) => format!("{url}?limit={PAGE}&cursor={cursor}"),
                None => format!("{url}?limit={PAGE}"),
            };
            let body = self.send(self.http.get(page_url), "GET executions").await?;
            let page: ExecutionPage = serde_json::from_slice(&body).context("GET executions: unexpected response")?;
            let count = page.executions.len();
            all.extend(page.executions);
            match page.next_cursor {
                Some(next) if count > 0 => cursor = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// Deletes jobs, up to `concurrency` requests in flight. Returns how many are gone (deleted or already absent)
    /// and the first error, if any.
    pub async fn delete_jobs(&self, ids: &[String], concurrency: usize) -> (usize, Option<String>) {
        let results: Vec<anyhow::Result<()>> = stream::iter(ids)
            .map(|id| async move {
                let url = self.url(&format!("/v1/agents/{}/jobs/{id}", self.agent));
                let response = self
                    .http
                    .delete(url)
                    .bearer_auth(&self.key)
                    .send()
                    .await
                    .with_context(|| format!("DELETE job {id}: request failed"))?;
                let status = response.status();
                if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
                    Ok(())
                } else {
                    let body = response.text().await.unwrap_or_default();
                    bail!("DELETE job {id}: HTTP {status}: {body}")
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let gone = results.iter().filter(|result| result.is_ok()).count();
        let error = results.into_iter().find_map(Result::err).map(|error| format!("{error:#}"));
        (gone, error)
    }

    /// The number of executions that reached a final status since the server started (`sundial_executions_total`
    /// summed over statuses).
    pub async fn finished_executions(&self) -> anyhow::Result<f64> {
        let body = self.send(self.http.get(self.url("/metrics")), "GET /metrics").await?;
        let text = String::from_utf8_lossy(&body);
        Ok(text
            .lines()
            .filter(|line| line.starts_with("sundial_executions_total"))
            .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
            .sum())
    }
}
