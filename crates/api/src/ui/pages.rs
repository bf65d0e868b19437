//! The dashboard's pages.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use maud::{html, Markup};
use serde_json::Value;
use sundial_core::{Execution, ExecutionStatus, Job, JobStatus, JobVersion, Schedule};
use sundial_store::{JobFilter, Message};

use super::{error_page, form_viewer, page, pretty, viewer};
use crate::AppState;

/// Jobs per page of the list.
const PAGE: usize = 50;
/// Jobs read from the store per step while filling a page (filters on kind and text are applied here).
const SCAN_STEP: usize = 500;
/// The most jobs one page request reads while looking for matches.
const SCAN_LIMIT: usize = 5_000;
/// Outcomes in a job's strip.
const STRIP: usize = 20;

// --- time ---

/// An instant as the dashboard shows it: in `zone`, with the zone's name, in a `<time>` that `app.js` adds the
/// viewer's own time and a relative time to.
fn when(at: DateTime<Utc>, zone: Tz) -> Markup {
    let local = at.with_timezone(&zone);
    html! {
        time datetime=(sundial_core::wire::instant(at)) data-local="1" {
            (local.format("%a %-d %b %Y %H:%M:%S %Z")) " (" (zone.name()) ")"
        }
    }
}

fn zone_of(schedule: &Schedule) -> Tz {
    schedule.timezone_name().parse::<Tz>().unwrap_or(Tz::UTC)
}

fn optional_when(at: Option<DateTime<Utc>>, zone: Tz) -> Markup {
    match at {
        Some(at) => when(at, zone),
        None => html! { span.muted { "—" } },
    }
}

fn status_class(status: ExecutionStatus) -> &'static str {
    match status {
        ExecutionStatus::Completed => "ok",
        ExecutionStatus::Pending | ExecutionStatus::Running => "busy",
        ExecutionStatus::Skipped | ExecutionStatus::Cancelled => "muted",
        _ => "bad",
    }
}

// --- jobs ---

/// The job list's filters.
struct Filters {
    user: Option<String>,
    status: Option<JobStatus>,
    kind: Option<String>,
    owner: Option<String>,
    text: Option<String>,
}

impl Filters {
    fn read(params: &HashMap<String, String>) -> Filters {
        let value =
            |name: &str| params.get(name).map(|value| value.trim().to_owned()).filter(|value| !value.is_empty());
        Filters {
            user: value("user"),
            status: value("status").and_then(|status| serde_json::from_value(Value::String(status)).ok()),
            kind: value("kind").filter(|kind| matches!(kind.as_str(), "once" | "interval" | "cron")),
            owner: value("owner").filter(|owner| matches!(owner.as_str(), "dynamic" | "predefined")),
            text: value("q"),
        }
    }

    fn keeps(&self, job: &Job, version: Option<&JobVersion>) -> bool {
        if let Some(user) = &self.user {
            if job.user_id.as_deref() != Some(user.as_str()) {
                return false;
            }
        }
        if let Some(kind) = &self.kind {
            let actual = version.map(|version| match version.schedule {
                Schedule::Once { .. } => "once",
                Schedule::Interval { .. } => "interval",
                Schedule::Cron { .. } => "cron",
            });
            if actual != Some(kind.as_str()) {
                return false;
            }
        }
        match self.owner.as_deref() {
            Some("dynamic") if !job.dynamic => return false,
            Some("predefined") if job.dynamic => return false,
            _ => {}
        }
        if let Some(text) = &self.text {
            let text = text.to_lowercase();
            let metadata = serde_json::to_string(&job.metadata).unwrap_or_default().to_lowercase();
            if !job.name.to_lowercase().contains(text.as_str()) && !metadata.contains(text.as_str()) {
                return false;
            }
        }
        true
    }

    /// The query string of these filters (for paging links).
    fn query(&self) -> String {
        let mut pairs = Vec::new();
        let mut push = |name: &str, value: Option<&str>| {
            if let Some(value) = value {
                pairs.push(format!("{name}={}", encode(value)));
            }
        };
        push("user", self.user.as_deref());
        push("status", self.status.map(|status| status.as_str()));
        push("kind", self.kind.as_deref());
        push("owner", self.owner.as_deref());
        push("q", self.text.as_deref());
        pairs.join("&")
    }
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub(crate) async fn jobs(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let viewer = signed_in!(state, headers);
    let filters = Filters::read(&params);
    let engine = &state.engine;
    let caller = viewer.caller();
    let mut filter = JobFilter {
        include_dynamic: true,
        status: filters.status,
        user_id: filters.user.clone(),
        user_only: false,
        limit: SCAN_STEP,
        after_id: params.get("after").filter(|after| !after.is_empty()).cloned(),
        name: None,
    };
    let mut rows = Vec::new();
    let mut scanned = 0;
    let mut next: Option<String> = None;
    'scan: loop {
        let page = match engine.list_jobs(&caller, &filter).await {
            Ok(page) => page,
            Err(error) => return crate::ApiError::from(error).into_response(),
        };
        scanned += page.len();
        let full = page.len() == filter.limit;
        for detail in page {
            let version =
                detail.job.active_version_id.as_ref().and_then(|id| detail.versions.iter().find(|v| &v.id == id));
            let keep = filters.keeps(&detail.job, version.or(detail.versions.last()));
            filter.after_id = Some(detail.job.id.clone());
            if keep {
                rows.push(detail);
                if rows.len() == PAGE {
                    // More may follow (an empty next page is possible when this was the very last job).
                    next = filter.after_id.clone();
                    break 'scan;
                }
            }
        }
        if !full {
            break;
        }
        if scanned >= SCAN_LIMIT {
            next = filter.after_id.clone();
            break;
        }
    }
    let mut strips = Vec::with_capacity(rows.len());
    for detail in &rows {
        let outcomes =
            engine.store().execution_list(&detail.job.id, None, STRIP, 0).await.map(|page| page.0).unwrap_or_default();
        strips.push(outcomes);
    }
    let now = engine.now();
    let body = html! {
        h1 { "Jobs" }
        form.filters method="get" action="/ui" {
            label { "User " input type="text" name="user" value=[filters.user.as_deref()]; }
            label { "Status "
                select name="status" {
                    option value="" { "any" }
                    @for status in ["active", "inactive", "paused", "failed", "completed"] {
                        option value=(status) selected[filters.status.map(|s| s.as_str()) == Some(status)] { (status) }
                    }
                }
            }
            label { "Kind "
                select name="kind" {
                    option value="" { "any" }
                    @for kind in ["once", "interval", "cron"] {
                        option value=(kind) selected[filters.kind.as_deref() == Some(kind)] { (kind) }
                    }
                }
            }
            label { "Owner "
                select name="owner" {
                    option value="" { "any" }
                    option value="dynamic" selected[filters.owner.as_deref() == Some("dynamic")] { "made for a user" }
                    option value="predefined" selected[filters.owner.as_deref() == Some("predefined")] { "pre-defined" }
                }
            }
            label { "Text " input type="search" name="q" value=[filters.text.as_deref()] placeholder="name or metadata"; }
            button type="submit" { "Filter" }
        }
        @if rows.is_empty() {
            p.muted { @if next.is_some() { "No match among the first " (SCAN_LIMIT) " jobs looked at; the next page looks further." } @else { "No jobs match." } }
        } @else {
            table.jobs {
                thead { tr { th { "Name" } th { "User" } th { "Schedule" } th { "Next run" } th { "Last " (STRIP) } th { "Active" } } }
                tbody {
                    @for (detail, strip) in rows.iter().zip(&strips) {
                        @let job = &detail.job;
                        @let version = job.active_version_id.as_ref().and_then(|id| detail.versions.iter().find(|v| &v.id == id));
                        @let zone = version.map(|v| zone_of(&v.schedule)).unwrap_or(Tz::UTC);
                        tr data-job=(job.id) {
                            td { a href={ "/ui/jobs/" (job.id) } { (job.name) } }
                            td { @match &job.user_id { Some(user) => a href={ "/ui/users/" (encode(user)) } { (user) }, None => span.muted { "pre-defined" } } }
                            td { @match version { Some(v) => (sundial_core::describe::describe(&v.schedule)), None => span.muted { "no version" } } }
                            td { @if job.active { (optional_when(job.next_run_at, zone)) } @else { span.muted { (job.status.as_str()) } } }
                            td { (outcome_strip(strip)) }
                            td {
                                a.toggle href={ "/ui/jobs/" (job.id) "/confirm/" (if job.active { "deactivate" } else { "activate" }) "?back=list" }
                                    aria-pressed=(job.active) title=(if job.active { "Deactivate" } else { "Activate" }) {
                                    (if job.active { "on" } else { "off" })
                                }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(after) = &next {
            p { a.next href={ "/ui?" (filters.query()) "&after=" (encode(after)) } { "Next page →" } }
        }
        p.muted { "As of " (when(now, Tz::UTC)) }
    };
    page(&viewer, "Jobs", true, body).into_response()
}

/// The last outcomes of a job, oldest first, as coloured marks.
fn outcome_strip(executions: &[Execution]) -> Markup {
    html! {
        span.strip {
            @for execution in executions.iter().rev() {
                a class={ "mark " (status_class(execution.status)) } href={ "/ui/executions/" (execution.id) }
                    title={ (execution.status.as_str()) " · " (sundial_core::wire::instant(execution.due_at)) } { (execution.status.as_str()) }
            }
        }
    }
}

// --- one job ---

pub(crate) async fn job(State(state): State<AppState>, headers: HeaderMap, Path(job_id): Path<String>) -> Response {
    let viewer = signed_in!(state, headers);
    let engine = &state.engine;
    let caller = viewer.caller();
    let detail = match engine.job_detail(&caller, &job_id).await {
        Ok(detail) => detail,
        Err(_) => return error_page(&viewer, StatusCode::NOT_FOUND, "No such job for this agent."),
    };
    let job = &detail.job;
    let version = job
        .active_version_id
        .as_ref()
        .and_then(|id| detail.versions.iter().find(|v| &v.id == id))
        .or(detail.versions.last());
    let (runs, notes, zone) = match version {
        Some(version) => {
            let zone = zone_of(&version.schedule);
            let runs = engine.preview(&caller, &job.id, 10).await.map(|(_, _, runs)| runs).unwrap_or_default();
            let notes =
                version.schedule.compile().map(|compiled| compiled.dst_notes(engine.now(), 10)).unwrap_or_default();
            (runs, notes, zone)
        }
        None => (Vec::new(), Vec::new(), Tz::UTC),
    };
    let executions = engine.executions(&caller, &job.id, None, 50, 0).await.map(|page| page.0).unwrap_or_default();
    let body = html! {
        h1 { (job.name) }
        p.meta {
            span class={ "badge " (job.status.as_str()) } { (job.status.as_str()) }
            " · " @match &job.user_id { Some(user) => { "for user " a href={ "/ui/users/" (encode(user)) } { (user) } }, None => { "pre-defined" } }
            @if let Some(description) = &job.description { " · " (description) }
        }
        nav.actions {
            a.button href={ "/ui/jobs/" (job.id) "/confirm/trigger" } { "Run now" }
            @if job.active {
                a.button href={ "/ui/jobs/" (job.id) "/confirm/deactivate" } { "Deactivate" }
            } @else {
                a.button href={ "/ui/jobs/" (job.id) "/confirm/activate" } { "Activate" }
            }
            a.button.danger href={ "/ui/jobs/" (job.id) "/confirm/delete" } { "Delete" }
        }
        section {
            h2 { "Schedule" }
            @match version {
                Some(version) => {
                    p { strong { (sundial_core::describe::describe(&version.schedule)) } }
                    @if runs.is_empty() { p.muted { "No further runs." } } @else {
                        table.runs {
                            thead { tr {
                                th { @if job.active { "Next runs" } @else { "Runs if activated now" } " (" (zone.name()) ")" }
                                th { "UTC" }
                            } }
                            tbody { @for run in &runs { tr { td { (when(*run, zone)) } td { (sundial_core::wire::instant(*run)) } } } }
                        }
                    }
                    @if !notes.is_empty() { ul.notes { @for note in &notes { li { (note) } } } }
                }
                None => p.muted { "This job has no version yet." },
            }
        }
        section {
            h2 { "Settings" }
            dl {
                @if let Some(version) = version {
                    dt { "Timeout" } dd { (version.timeout_seconds) " s" }
                    dt { "Retry" } dd { @match &version.retry { Some(retry) => code { (pretty(&serde_json::to_value(retry).unwrap_or_default())) }, None => "none" } }
                }
                dt { "Policy" } dd { code { (pretty(&serde_json::to_value(&job.policy).unwrap_or_default())) } }
                dt { "Failures in a row" } dd { (job.consecutive_failures) }
                dt { "Missed slots" } dd { (job.missed_slots) }
            }
            h3 { "Metadata" }
            pre.json { (pretty(&Value::Object(job.metadata.clone()))) }
        }
        section {
            h2 { "Executions" }
            (executions_table(&executions, zone))
        }
        section {
            h2 { "Versions" }
            @for version in detail.versions.iter().rev() {
                details open[Some(&version.id) == job.active_version_id.as_ref()] {
                    summary { "Version " (version.version) @if Some(&version.id) == job.active_version_id.as_ref() { " (active)" } " · " (when(version.created_at, Tz::UTC)) }
                    p { (sundial_core::describe::describe(&version.schedule)) }
                    pre.code { code { (version.code) } }
                }
            }
        }
    };
    page(&viewer, &job.name, true, body).into_response()
}

fn executions_table(executions: &[Execution], zone: Tz) -> Markup {
    html! {
        @if executions.is_empty() { p.muted { "No executions yet." } } @else {
            table.executions {
                thead { tr { th { "Execution" } th { "Trigger" } th { "Status" } th { "Due" } th { "Lateness" } th { "Duration" } } }
                tbody {
                    @for execution in executions {
                        tr data-execution=(execution.id) {
                            td { a href={ "/ui/executions/" (execution.id) } { (execution.id) } }
                            td { (execution.trigger.as_str()) @if execution.retry_count > 0 { " (retry " (execution.retry_count) ")" } }
                            td { span class={ "badge " (status_class(execution.status)) } { (execution.status.as_str()) } }
                            td { (when(execution.due_at, zone)) }
                            td { (lateness(execution)) }
                            td { @match execution.duration_ms { Some(ms) => { (ms) " ms" }, None => span.muted { "—" } } }
                        }
                    }
                }
            }
        }
    }
}

fn lateness(execution: &Execution) -> String {
    match execution.started_at {
        Some(started) => {
            let micros = (started - execution.due_at).num_microseconds().unwrap_or(0);
            format!("{:.1} ms", micros as f64 / 1000.0)
        }
        None => "—".to_owned(),
    }
}

// --- actions ---

fn action_words(action: &str) -> Option<(&'static str, &'static str)> {
    Some(match action {
        "trigger" => ("Run this job now?", "It runs once now, on its active version. Its schedule does not move: the next scheduled run stays where it is."),
        "activate" => ("Activate this job?", "Its schedule fires again from now."),
        "deactivate" => ("Deactivate this job?", "Its schedule stops firing and its pending runs are cancelled. You can activate it again."),
        "delete" => ("Delete this job?", "It never runs again. A pre-defined job with versions is deactivated instead."),
        _ => return None,
    })
}

pub(crate) async fn confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((job_id, action)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let back_to_list = params.get("back").map(String::as_str) == Some("list");
    let viewer = signed_in!(state, headers);
    let Some((question, consequence)) = action_words(&action) else {
        return error_page(&viewer, StatusCode::NOT_FOUND, "No such action.");
    };
    let job = match state.engine.job(&viewer.caller(), &job_id).await {
        Ok(job) => job,
        Err(_) => return error_page(&viewer, StatusCode::NOT_FOUND, "No such job for this agent."),
    };
    let body = html! {
        section.confirm {
            h1 { (question) }
            p { strong { (job.name) } }
            p { (consequence) }
            form method="post" action={ "/ui/jobs/" (job.id) "/" (action) } {
                input type="hidden" name="csrf" value=(viewer.csrf);
                @if back_to_list { input type="hidden" name="back" value="list"; }
                button type="submit" class=(if action == "delete" { "danger" } else { "primary" }) { "Yes, " (action) }
                " "
                a href=(if back_to_list { "/ui".to_owned() } else { format!("/ui/jobs/{}", job.id) }) { "Cancel" }
            }
        }
    };
    page(&viewer, question, false, body).into_response()
}

pub(crate) async fn act(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((job_id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    let viewer = signed_in!(state, headers, form);
    let caller = viewer.caller();
    let engine = &state.engine;
    let job_page = format!("/ui/jobs/{job_id}");
    let outcome = match action.as_str() {
        "trigger" => {
            engine.trigger(&caller, &job_id, None).await.map(|execution| format!("/ui/executions/{}", execution.id))
        }
        "activate" => engine.activate(&caller, &job_id).await.map(|_| job_page.clone()),
        "deactivate" => engine.deactivate(&caller, &job_id).await.map(|_| job_page.clone()),
        "delete" => engine.delete(&caller, &job_id).await.map(|_| "/ui".to_owned()),
        _ => return error_page(&viewer, StatusCode::NOT_FOUND, "No such action."),
    };
    match outcome {
        Ok(_) if form.get("back").map(String::as_str) == Some("list") => Redirect::to("/ui").into_response(),
        // A triggered run is shown on its job's page, where it appears as it goes; `Link` names the execution.
        Ok(target) if action == "trigger" => {
            let mut response = Redirect::to(&job_page).into_response();
            if let Ok(link) = axum::http::HeaderValue::from_str(&format!("<{target}>; rel=\"created\"")) {
                response.headers_mut().insert(axum::http::header::LINK, link);
            }
            response
        }
        Ok(target) => Redirect::to(&target).into_response(),
        Err(error) => {
            let error = crate::ApiError::from(error);
            error_page(&viewer, error.status, &error.message)
        }
    }
}

// --- one execution ---

pub(crate) async fn execution(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(execution_id): Path<String>,
) -> Response {
    let viewer = signed_in!(state, headers);
    let engine = &state.engine;
    let caller = viewer.caller();
    let execution = match engine.execution(&caller, &execution_id).await {
        Ok(execution) => execution,
        Err(_) => return error_page(&viewer, StatusCode::NOT_FOUND, "No such execution for this agent."),
    };
    let job = engine.job(&caller, &execution.job_id).await.ok();
    let zone = match &job {
        Some(job) => match job.active_version_id.as_ref() {
            Some(id) => engine
                .store()
                .version_get(&job.id, id)
                .await
                .ok()
                .flatten()
                .map(|v| zone_of(&v.schedule))
                .unwrap_or(Tz::UTC),
            None => Tz::UTC,
        },
        None => Tz::UTC,
    };
    let attempts: Vec<Execution> = engine
        .store()
        .execution_list(&execution.job_id, None, 200, 0)
        .await
        .map(|page| page.0)
        .unwrap_or_default()
        .into_iter()
        .filter(|other| other.occurrence_id == execution.occurrence_id)
        .collect();
    let sent: Vec<Message> = match job.as_ref().and_then(|job| job.user_id.clone()) {
        Some(user) => conversation(&state, &viewer.agent_id, &user, 1000)
            .await
            .into_iter()
            .filter(|message| message.execution_id.as_deref() == Some(execution.id.as_str()))
            .collect(),
        None => Vec::new(),
    };
    let body = html! {
        h1 { "Execution " (execution.id) }
        p.meta {
            "of " @match &job { Some(job) => a href={ "/ui/jobs/" (job.id) } { (job.name) }, None => { (execution.job_id) } }
            " · " (execution.trigger.as_str())
            " · " span class={ "badge " (status_class(execution.status)) } { (execution.status.as_str()) }
        }
        ol.timeline {
            @if let Some(slot) = execution.scheduled_for { li { "Scheduled for " (when(slot, zone)) } }
            li { "Due " (when(execution.due_at, zone)) }
            li { "Started " (optional_when(execution.started_at, zone)) @if execution.started_at.is_some() { " · " (lateness(&execution)) " late" } }
            li { "Ended " (optional_when(execution.completed_at, zone)) @if let Some(ms) = execution.duration_ms { " · ran " (ms) " ms" } }
        }
        @if attempts.len() > 1 {
            h2 { "Attempts of this occurrence" }
            (executions_table(&attempts, zone))
        }
        @if let Some(error) = &execution.error { h2 { "Error" } pre.error { (error) } }
        @if let Some(result) = &execution.result { h2 { "Result" } pre.json { (pretty(result)) } }
        h2 { "Console" }
        @if execution.logs.is_empty() { p.muted { "Nothing was logged." } } @else {
            pre.logs {
                @for line in &execution.logs {
                    span class={ "log " (line.level) } {
                        (DateTime::from_timestamp_millis(line.at).map(sundial_core::wire::instant).unwrap_or_default()) " [" (line.level) "] " (line.message) "\n"
                    }
                }
            }
        }
        h2 { "Messages it sent" }
        @if sent.is_empty() { p.muted { "None." } } @else { (messages_list(&sent, zone)) }
    };
    page(&viewer, "Execution", true, body).into_response()
}

/// A user's conversation, the newest `limit` messages, oldest first.
async fn conversation(state: &AppState, agent_id: &str, user_id: &str, limit: usize) -> Vec<Message> {
    let store = state.engine.store();
    let mut all: VecDeque<Message> = VecDeque::new();
    let mut after = 0;
    // Pages forward, keeping the newest `limit`.
    for _ in 0..100 {
        let page = store.message_list(agent_id, user_id, after, 1000).await.unwrap_or_default();
        let Some(last) = page.last() else { break };
        after = last.seq;
        let done = page.len() < 1000;
        all.extend(page);
        while all.len() > limit {
            all.pop_front();
        }
        if done {
            break;
        }
    }
    all.into()
}

/// Messages as the user saw them, with their delivery state.
fn messages_list(messages: &[Message], zone: Tz) -> Markup {
    html! {
        ol.conversation {
            @for message in messages {
                li.message data-message=(message.id) {
                    div.bubble { (message_content(&message.content)) }
                    div.meta {
                        (when(message.created_at, zone))
                        @if let Some(delivery) = &message.delivery { " · webhook " span class={ "badge " (delivery) } { (delivery) } }
                        @if let Some(execution) = &message.execution_id { " · from " a href={ "/ui/executions/" (execution) } { (execution) } }
                    }
                }
            }
        }
    }
}

fn message_content(content: &Value) -> Markup {
    let text = |key: &str| content.get(key).and_then(Value::as_str).unwrap_or_default();
    html! {
        @match content.get("type").and_then(Value::as_str) {
            Some("text") => p.text { (text("text")) },
            Some("image") => p { "🖼 image (" (text("mediaType")) "): " a href=(text("image")) rel="noreferrer noopener" target="_blank" { (text("image")) } },
            Some("file") => p { "📎 file (" (text("mediaType")) ")" },
            _ => pre.json { (pretty(content)) },
        }
    }
}

// --- users ---

pub(crate) async fn users(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = signed_in!(state, headers);
    let caller = viewer.caller();
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut filter = JobFilter { include_dynamic: true, limit: SCAN_STEP, ..JobFilter::default() };
    let mut scanned = 0;
    loop {
        let page = match state.engine.store().job_list(&caller.agent_id, &filter).await {
            Ok(page) => page,
            Err(error) => return crate::ApiError::from(error).into_response(),
        };
        scanned += page.len();
        for job in &page {
            if let Some(user) = &job.user_id {
                let entry = counts.entry(user.clone()).or_default();
                entry.0 += 1;
                entry.1 += usize::from(job.active);
            }
        }
        filter.after_id = page.last().map(|job| job.id.clone());
        if page.len() < SCAN_STEP || scanned >= 10 * SCAN_LIMIT {
            break;
        }
    }
    let body = html! {
        h1 { "Users" }
        p.muted { "Users with jobs made for them. Any user's jobs by id:" }
        form.filters method="get" action="/ui" {
            label { "User id " input type="text" name="user" required; }
            button type="submit" { "Their jobs" }
        }
        @if counts.is_empty() { p.muted { "No jobs made for users yet." } } @else {
            table.users {
                thead { tr { th { "User" } th { "Jobs" } th { "Active" } } }
                tbody { @for (user, (jobs, active)) in &counts {
                    tr { td { a href={ "/ui/users/" (encode(user)) } { (user) } } td { (jobs) } td { (active) } }
                } }
            }
        }
    };
    page(&viewer, "Users", true, body).into_response()
}

pub(crate) async fn user(State(state): State<AppState>, headers: HeaderMap, Path(user_id): Path<String>) -> Response {
    let viewer = signed_in!(state, headers);
    if crate::validate_user_id(&user_id, "userId").is_err() {
        return error_page(&viewer, StatusCode::NOT_FOUND, "No such user.");
    }
    let filter =
        JobFilter { include_dynamic: true, user_id: Some(user_id.clone()), limit: 200, ..JobFilter::default() };
    let jobs: Vec<Job> = state
        .engine
        .store()
        .job_list(&viewer.agent_id, &filter)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|job| job.user_id.as_deref() == Some(user_id.as_str()))
        .collect();
    let messages = conversation(&state, &viewer.agent_id, &user_id, 200).await;
    let record = state.engine.store().user_get(&viewer.agent_id, &user_id).await.ok().flatten();
    let body = html! {
        h1 { "User " (user_id) }
        @if let Some(record) = &record { @if !record.data.is_empty() { details { summary { "Their data" } pre.json { (pretty(&Value::Object(record.data.clone()))) } } } }
        h2 { "Jobs made for them" }
        @if jobs.is_empty() { p.muted { "None." } } @else {
            ul.jobs { @for job in &jobs { li { a href={ "/ui/jobs/" (job.id) } { (job.name) } " · " span class={ "badge " (job.status.as_str()) } { (job.status.as_str()) } } } }
        }
        h2 { "Their conversation" }
        @if messages.is_empty() { p.muted { "Nothing was sent to them yet." } } @else { (messages_list(&messages, Tz::UTC)) }
    };
    page(&viewer, &format!("User {user_id}"), true, body).into_response()
}

// --- system ---

/// Snapshots of the fire-lateness histogram, to say p50/p99 over the last minutes.
#[derive(Default)]
pub(crate) struct LatenessSamples {
    samples: VecDeque<(Instant, Vec<(f64, f64)>)>,
}

/// How far back the lateness percentiles look.
const LATENESS_WINDOW: Duration = Duration::from_secs(300);

impl LatenessSamples {
    /// Records `buckets` (cumulative `(le, count)`) and answers the buckets of the window: now minus the oldest
    /// sample within it.
    fn window(&mut self, buckets: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
        let now = Instant::now();
        while self.samples.front().is_some_and(|(at, _)| now.duration_since(*at) > LATENESS_WINDOW) {
            self.samples.pop_front();
        }
        let base = self.samples.front().map(|(_, base)| base.clone());
        if self.samples.back().is_none_or(|(at, _)| now.duration_since(*at) >= Duration::from_secs(5)) {
            self.samples.push_back((now, buckets.clone()));
        }
        match base {
            Some(base) if base.len() == buckets.len() => {
                buckets.iter().zip(base).map(|((le, count), (_, before))| (*le, count - before)).collect()
            }
            _ => buckets,
        }
    }
}

/// The `q`-quantile of cumulative histogram buckets, as the upper bound of the bucket it falls in.
fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets.iter().find(|(_, count)| *count >= q * total).map(|(le, _)| *le)
}

fn seconds_text(seconds: Option<f64>) -> String {
    match seconds {
        None => "—".to_owned(),
        Some(seconds) if seconds.is_infinite() => "over 32 s".to_owned(),
        Some(seconds) if seconds < 1.0 => format!("≤ {:.2} ms", seconds * 1000.0),
        Some(seconds) => format!("≤ {seconds:.1} s"),
    }
}

pub(crate) async fn system(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let viewer = signed_in!(state, headers);
    let engine = &state.engine;
    let metrics = engine.metrics_text().await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|number| number.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let buckets: Vec<(f64, f64)> = metrics
        .lines()
        .filter_map(|line| line.strip_prefix("sundial_fire_lateness_seconds_bucket{le=\""))
        .filter_map(|rest| {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let (overall_p50, overall_p99) = (quantile(&buckets, 0.5), quantile(&buckets, 0.99));
    let recent = state.ui.lateness.lock().unwrap_or_else(std::sync::PoisonError::into_inner).window(buckets);
    let (recent_p50, recent_p99) = (quantile(&recent, 0.5), quantile(&recent, 0.99));
    let pool = engine.pool().stats();
    let overview = engine.store().overview().await.ok();
    let agents = if viewer.key.admin { engine.store().agent_list().await.unwrap_or_default() } else { Vec::new() };
    let body = html! {
        h1 { "System" }
        section {
            h2 { "Slots" }
            dl {
                dt { "Fired" } dd.fired { (value("sundial_fires_total")) }
                dt { "Skipped by policy" } dd { (value("sundial_skipped_slots_total")) }
                dt { "Missed (no node ran)" } dd { (value("sundial_missed_slots_total")) }
                dt { "Due and waiting" } dd { (value("sundial_queue_depth")) }
                dt { "Active jobs" } dd { (value("sundial_active_jobs")) }
                dt { "Late results refused" } dd { (value("sundial_late_results_refused_total")) }
            }
            h2 { "Fire lateness" }
            table {
                thead { tr { th {} th { "p50" } th { "p99" } } }
                tbody {
                    tr { th { "last 5 minutes" } td { (seconds_text(recent_p50)) } td { (seconds_text(recent_p99)) } }
                    tr { th { "since start" } td { (seconds_text(overall_p50)) } td { (seconds_text(overall_p99)) } }
                }
            }
        }
        section {
            h2 { "Sandbox workers" }
            dl {
                dt { "Workers" } dd { (pool.workers) }
                dt { "Busy" } dd { (pool.busy) }
                dt { "Restarted" } dd { (pool.restarts) }
            }
        }
        section {
            h2 { "Database" }
            @match &overview {
                Some(overview) => {
                    p { "Size: " (format!("{:.1} MiB", overview.database_bytes as f64 / 1_048_576.0)) }
                    h3 { "Nodes holding leases" }
                    @if overview.nodes.is_empty() { p.muted { "None right now." } } @else {
                        table {
                            thead { tr { th { "Node" } th { "Running" } th { "Claimed" } th { "Lease until" } } }
                            tbody { @for node in &overview.nodes {
                                tr { td { (node.node) } td { (node.running) } td { (node.claimed) } td { (optional_when(node.lease_until, Tz::UTC)) } }
                            } }
                        }
                    }
                }
                None => p.error { "The store did not answer." },
            }
        }
        @if !agents.is_empty() {
            section {
                h2 { "Agents" }
                form.filters method="post" action="/ui/agent" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    select name="agent" { @for agent in &agents { option value=(agent.id) selected[agent.id == viewer.agent_id] { (agent.id) } } }
                    button type="submit" { "Show this agent" }
                }
            }
        }
    };
    page(&viewer, "System", true, body).into_response()
}

// --- live updates ---

/// Says `change` whenever runs start or end or messages are sent (checked every second), so that an open list
/// refreshes itself; a comment every 15 s keeps the connection open.
pub(crate) async fn events(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let _viewer = signed_in!(state, headers);
    let engine = state.engine.clone();
    let messages = engine.subscribe_messages();
    let start = (engine, messages, String::new(), true);
    let stream = futures_util::stream::unfold(start, |(engine, mut messages, last, first)| async move {
        loop {
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = messages.recv() => {}
                }
            }
            let metrics = engine.metrics_text().await;
            let counters: Vec<&str> = metrics
                .lines()
                .filter(|line| {
                    line.starts_with("sundial_fires_total")
                        || line.starts_with("sundial_executions_total")
                        || line.starts_with("sundial_sandbox_workers_busy")
                })
                .collect();
            let depth = engine.store_stats().await.queue_depth;
            let stamp = format!("{}|{depth}", counters.join("|"));
            if first {
                return Some((
                    Ok::<Event, Infallible>(Event::default().event("ready").data("")),
                    (engine, messages, stamp, false),
                ));
            }
            if stamp != last {
                return Some((Ok(Event::default().event("change").data("change")), (engine, messages, stamp, false)));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
