//! Deploying pre-defined jobs (SPEC §7): job files — ES modules or lua-cli's compiled artifacts whose default export
//! is `{name, description, schedule, timeout?, retry?, metadata?, execute}` — become jobs. A new name makes a job,
//! a changed file or option makes a new version, an unchanged file makes nothing; `activate` publishes.

use std::time::Duration;

use serde_json::{json, Value};
use sundial_core::{CodeKind, FieldError, JsonObject, RetryPolicy, Schedule};
use sundial_store::JobFilter;

use crate::engine::{Caller, Engine, EngineResult, NewJob, NewVersion};

/// How long reading one job file's definition may take.
const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Job files one deploy may carry.
pub const MAX_DEPLOY_FILES: usize = 200;

/// One job file to deploy.
#[derive(Clone, Debug)]
pub struct JobFile {
    /// Its path in the project (for messages).
    pub path: String,
    /// Its source.
    pub source: String,
}

/// What deploying one file did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// The file.
    pub path: String,
    /// The job's name.
    pub name: String,
    /// The job.
    pub job_id: String,
    /// `created`, `updated` or `unchanged`.
    pub action: &'static str,
    /// The version that holds the file now.
    pub version: String,
    /// Whether the job is active after the deploy.
    pub active: bool,
}

impl Deployed {
    /// The wire view.
    pub fn view(&self) -> Value {
        json!({"path": self.path, "name": self.name, "jobId": self.job_id, "action": self.action,
               "version": self.version, "active": self.active})
    }
}

/// A job file's definition, validated.
struct Definition {
    name: String,
    description: Option<String>,
    schedule: Schedule,
    timeout_seconds: Option<u32>,
    retry: Option<RetryPolicy>,
    metadata: JsonObject,
}

fn definition(engine: &Engine, path: &str, described: &Value) -> Result<Definition, FieldError> {
    let field = |name: &str| format!("{path}: {name}");
    let name = described.get("name").and_then(Value::as_str).unwrap_or_default().trim().to_owned();
    if name.is_empty() || name.len() > 200 {
        return Err(FieldError::new(field("name"), "must be 1 to 200 characters"));
    }
    let schedule = Schedule::parse(described.get("schedule").unwrap_or(&Value::Null), &engine.config().schedule_limits)
        .map_err(|error| FieldError::new(field(&error.field), error.reason))?;
    let timeout_seconds = match described.get("timeout").filter(|value| !value.is_null()) {
        None => None,
        Some(value) => {
            let max = engine.config().max_timeout_seconds;
            let seconds = value
                .as_f64()
                .filter(|seconds| seconds.fract() == 0.0 && *seconds >= 1.0 && *seconds <= f64::from(max));
            Some(seconds.ok_or_else(|| {
                FieldError::new(field("timeout"), format!("must be a whole number of seconds between 1 and {max}"))
            })? as u32)
        }
    };
    let retry = RetryPolicy::parse(described.get("retry").unwrap_or(&Value::Null), &field("retry"))?;
    let metadata = match described.get("metadata") {
        None | Some(Value::Null) => JsonObject::new(),
        Some(Value::Object(metadata)) => metadata.clone(),
        Some(_) => return Err(FieldError::new(field("metadata"), "must be an object")),
    };
    let description = described.get("description").and_then(Value::as_str).map(str::to_owned);
    Ok(Definition { name, description, schedule, timeout_seconds, retry, metadata })
}

impl Engine {
    /// Deploys job files: all are read (described in the sandbox, never run) before anything is written, so a
    /// broken file changes nothing. Jobs are matched to files by name among the agent's pre-defined jobs.
    pub async fn deploy(&self, caller: &Caller, files: Vec<JobFile>, activate: bool) -> EngineResult<Vec<Deployed>> {
        if files.len() > MAX_DEPLOY_FILES {
            return Err(FieldError::new("files", format!("must hold at most {MAX_DEPLOY_FILES} job files")).into());
        }
        let mut definitions = Vec::with_capacity(files.len());
        for file in &files {
            crate::engine::check_code_of_kind(
                &file.source,
                CodeKind::Module,
                &file.path,
                self.config().max_code_bytes,
            )?;
            let described = self
                .pool()
                .describe(file.source.clone(), sundial_sandbox::CodeKind::Module, DESCRIBE_TIMEOUT)
                .await
                .map_err(|error| FieldError::new(file.path.clone(), error))?;
            let definition = definition(self, &file.path, &described)?;
            if definitions.iter().any(|(_, other): &(&JobFile, Definition)| other.name == definition.name) {
                // Each file is fine alone; together they clash.
                return Err(crate::EngineError::Conflict(format!(
                    "{}: another file also defines job {}",
                    file.path, definition.name
                )));
            }
            definitions.push((file, definition));
        }
        let agent = Caller::agent(caller.agent_id.clone());
        let mut deployed = Vec::with_capacity(definitions.len());
        for (file, definition) in definitions {
            let filter = JobFilter { name: Some(definition.name.clone()), limit: 10, ..JobFilter::default() };
            let existing = self.store().job_list(&agent.agent_id, &filter).await?.into_iter().find(|job| !job.dynamic);
            let Some(job) = existing else {
                let new = NewJob {
                    name: definition.name.clone(),
                    description: definition.description.clone(),
                    schedule: definition.schedule,
                    code: file.source.clone(),
                    kind: CodeKind::Module,
                    timeout_seconds: definition.timeout_seconds.unwrap_or(self.config().default_timeout_seconds),
                    retry: definition.retry,
                    metadata: definition.metadata,
                    activate,
                    policy: Default::default(),
                    version: "1.0.0".into(),
                    dynamic: Some(false),
                    authority: None,
                    dedup_key: None,
                };
                let created = self.create_job(&agent, new).await?;
                deployed.push(Deployed {
                    path: file.path.clone(),
                    name: definition.name,
                    job_id: created.job.id,
                    action: "created",
                    version: "1.0.0".into(),
                    active: created.job.active,
                });
                continue;
            };
            let versions = self.store().version_list(&job.id).await?;
            let timeout_seconds = definition.timeout_seconds.unwrap_or(self.config().default_timeout_seconds);
            let metadata = (!definition.metadata.is_empty()).then(|| definition.metadata.clone());
            let same = versions.iter().rev().find(|version| {
                version.code == file.source
                    && version.kind == CodeKind::Module
                    && version.schedule == definition.schedule
                    && version.timeout_seconds == timeout_seconds
                    && version.retry == definition.retry
                    && version.metadata.clone().filter(|metadata| !metadata.is_empty()) == metadata
            });
            let (action, version) = match same {
                Some(version) => ("unchanged", version.clone()),
                None => {
                    let new = NewVersion {
                        version: None,
                        description: definition.description.clone(),
                        code: Some(file.source.clone()),
                        kind: Some(CodeKind::Module),
                        schedule: Some(definition.schedule.clone()),
                        timeout_seconds: Some(timeout_seconds),
                        retry: Some(definition.retry.clone()),
                        metadata: Some(definition.metadata.clone()),
                    };
                    ("updated", self.add_version(&agent, &job.id, new, false).await?)
                }
            };
            let is_active_version = job.active_version_id.as_deref() == Some(version.id.as_str());
            let active = if activate && !(job.active && is_active_version) {
                self.publish_version(&agent, &job.id, &version.version).await?.job.active
            } else {
                job.active
            };
            deployed.push(Deployed {
                path: file.path.clone(),
                name: definition.name,
                job_id: job.id,
                action,
                version: version.version,
                active,
            });
        }
        Ok(deployed)
    }
}
