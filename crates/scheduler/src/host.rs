//! Answers the host calls of one running execution (`job.user()`, `user.send`, `Jobs.create` …).
//!
//! Authority comes from the execution itself — its agent, the user of its job and the authority the job was made
//! with — never from fields of the objects the job code passed: a `jobId` argument is looked up within the
//! execution's agent, a `userId` within its agent. Before a call does anything, [`ExecutionHost::answer`] asks
//! [`Caller::check`] whether the job's authority reaches what the call names (a user, the agent's jobs, Data,
//! Products); a job's own operations on one job are checked by [`Engine::job`], which every one of them goes through.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde_json::{json, Map, Value};
use sundial_core::wire::execution_view;
use sundial_store::JobFilter;

use crate::access::Reach;
use crate::engine::{Caller, Engine, EngineError, NewJob};

/// Fields of a user object that are not data (lua-cli keeps them apart).
const RESERVED_USER_FIELDS: [&str; 2] = ["userId", "_luaProfile"];

/// Messages one execution may send.
pub const MAX_MESSAGES_PER_EXECUTION: u32 = 100;
/// Jobs one execution may create.
pub const MAX_JOBS_CREATED_PER_EXECUTION: u32 = 10;

/// The host side of one execution.
pub struct ExecutionHost {
    engine: Engine,
    /// The agent, the user of the running job (inherited by jobs it creates) and the job's authority.
    caller: Caller,
    job_name: String,
    /// The run, which the messages it sends name.
    origin: sundial_store::MessageOrigin,
    /// The version the run runs, and the job's active version (for `job.activeVersion`).
    version_id: String,
    active_version_id: Option<String>,
    sent: AtomicU32,
    created: AtomicU32,
    data_writes: AtomicU32,
}

impl ExecutionHost {
    /// The host for an execution of `job`.
    pub fn new(engine: Engine, job: &sundial_core::Job, execution: &sundial_core::Execution) -> ExecutionHost {
        ExecutionHost {
            engine,
            caller: Caller { agent_id: job.agent_id.clone(), user_id: job.user_id.clone(), authority: job.authority },
            job_name: job.name.clone(),
            origin: sundial_store::MessageOrigin {
                job_id: job.id.clone(),
                execution_id: execution.id.clone(),
                occurrence_id: execution.occurrence_id.clone(),
            },
            version_id: execution.version_id.clone(),
            active_version_id: job.active_version_id.clone(),
            sent: AtomicU32::new(0),
            created: AtomicU32::new(0),
            data_writes: AtomicU32::new(0),
        }
    }

    /// The caller that looks jobs up: with the agent's authority, agent-wide (a job of a user may manage the agent's
    /// jobs when the agent made it); with a user's, only that user's jobs.
    fn jobs_caller(&self) -> Caller {
        match self.caller.authority {
            sundial_core::Authority::Agent => Caller::agent(self.caller.agent_id.clone()),
            sundial_core::Authority::User(_) => self.caller.clone(),
        }
    }

    /// What a call reaches beyond the running job itself, for [`Caller::check`].
    fn reach<'a>(&self, method: &str, args: &'a Value) -> Option<Reach<'a>> {
        let text = |key: &str| args.get(key).and_then(Value::as_str);
        match method {
            "User.get" | "user.send" | "user.update" | "user.patch" => Some(Reach::User(text("userId").unwrap_or(""))),
            // Another job than its own: the agent's jobs (a user's authority reaches them with the `jobs` scope).
            "job.updateMetadata" | "job.trigger" | "job.delete" | "job.activate" | "job.deactivate" | "job.data"
            | "Jobs.getJob"
                if text("jobId") != Some(self.origin.job_id.as_str()) =>
            {
                Some(Reach::Jobs)
            }
            "Jobs.getAll" | "Jobs.create" => Some(Reach::Jobs),
            other if other.starts_with("Data.") => Some(Reach::Data),
            other if other.starts_with("Products.") => Some(Reach::Products),
            _ => None,
        }
    }

    async fn answer(self: Arc<Self>, method: String, args: Value) -> Result<Value, String> {
        if let Some(reach) = self.reach(&method, &args) {
            self.caller.check(reach).map_err(|denied| format!("{method}: {denied}"))?;
        }
        let text = |key: &str| args.get(key).and_then(Value::as_str).map(str::to_owned);
        let job_id = || text("jobId").ok_or_else(|| format!("{method}: jobId must be a string"));
        let engine = &self.engine;
        let jobs = self.jobs_caller();
        match method.as_str() {
            "job.user" => {
                let job = engine.job(&jobs, &job_id()?).await.map_err(message)?;
                let Some(user_id) = job.user_id else {
                    return Err(format!("job {} has no user context; use User.get(userId)", job.name));
                };
                self.user_view(&user_id).await
            }
            "User.get" => {
                let user_id = text("userId").ok_or("User.get: userId must be a string")?;
                self.user_view(&user_id).await
            }
            "user.send" => {
                let user_id = text("userId").ok_or("user.send: userId must be a string")?;
                let Some(messages) = args.get("messages").and_then(Value::as_array) else {
                    return Err("user.send: messages must be an array".into());
                };
                let count = messages.len() as u32;
                let before = self.sent.fetch_add(count, Ordering::SeqCst);
                if before + count > MAX_MESSAGES_PER_EXECUTION {
                    self.sent.fetch_sub(count, Ordering::SeqCst);
                    return Err(format!(
                        "user.send: an execution may send at most {MAX_MESSAGES_PER_EXECUTION} messages"
                    ));
                }
                // The n-th message of an occurrence lands once, however often the occurrence is retried.
                let keys = (before..before + count).map(|n| format!("{}:{n}", self.origin.occurrence_id)).collect();
                engine
                    .send_messages(&self.caller.agent_id, &user_id, messages, Some(&self.origin), Some(keys))
                    .await
                    .map_err(message)?;
                Ok(Value::Bool(true))
            }
            "user.update" => {
                let user_id = text("userId").ok_or("user.update: userId must be a string")?;
                let Some(Value::Object(data)) = args.get("data") else {
                    return Err("user.update: data must be an object".into());
                };
                let mut data = data.clone();
                data.retain(|key, _| !RESERVED_USER_FIELDS.contains(&key.as_str()));
                engine
                    .store()
                    .user_put(&self.caller.agent_id, &user_id, &data, engine.now())
                    .await
                    .map_err(|error| error.to_string())?;
                self.user_view(&user_id).await
            }
            "user.patch" => {
                let user_id = text("userId").ok_or("user.patch: userId must be a string")?;
                let store = engine.store();
                let record =
                    store.user_get(&self.caller.agent_id, &user_id).await.map_err(|error| error.to_string())?;
                let mut data = record.map(|record| record.data).unwrap_or_default();
                if let Some(set) = args.get("set").and_then(Value::as_object) {
                    data.extend(
                        set.iter()
                            .filter(|(key, _)| !RESERVED_USER_FIELDS.contains(&key.as_str()))
                            .map(|(key, value)| (key.clone(), value.clone())),
                    );
                }
                for key in args.get("unset").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                    data.remove(key);
                }
                store
                    .user_put(&self.caller.agent_id, &user_id, &data, engine.now())
                    .await
                    .map_err(|error| error.to_string())?;
                self.user_view(&user_id).await
            }
            "job.updateMetadata" => {
                let patch = args.get("patch").cloned().unwrap_or(Value::Null);
                let metadata = engine.update_metadata(&jobs, &job_id()?, &patch, false).await.map_err(message)?;
                Ok(json!({ "metadata": metadata }))
            }
            "job.trigger" => {
                let version_id = text("versionId");
                let execution = engine.trigger(&jobs, &job_id()?, version_id.as_deref()).await.map_err(message)?;
                Ok(execution_view(&execution, false))
            }
            "job.delete" => {
                let job_id = job_id()?;
                let deletion = engine.delete(&jobs, &job_id).await.map_err(message)?;
                Ok(deletion.view(&job_id))
            }
            "job.activate" => Ok(engine.activate(&jobs, &job_id()?).await.map_err(message)?.view()),
            "job.deactivate" => Ok(engine.deactivate(&jobs, &job_id()?).await.map_err(message)?.view()),
            "Jobs.create" => {
                if self.created.fetch_add(1, Ordering::SeqCst) >= MAX_JOBS_CREATED_PER_EXECUTION {
                    return Err(format!(
                        "Jobs.create: an execution may create at most {MAX_JOBS_CREATED_PER_EXECUTION} jobs"
                    ));
                }
                let mut body = match args.get("config") {
                    Some(Value::Object(config)) => config.clone(),
                    _ => return Err("Jobs.create: config must be an object".into()),
                };
                body.insert("code".into(), args.get("code").cloned().unwrap_or(Value::Null));
                let new = NewJob::parse(&Value::Object(body), engine.config())
                    .map_err(|error| format!("Jobs.create: {error}"))?;
                // A job created from a job inherits its user.
                let created = engine.create_job(&self.caller, new).await.map_err(message)?;
                Ok(created.view())
            }
            // The version this run runs (`job.activeVersion`), asked when job code first reads it.
            "job.version" => {
                let version = engine
                    .store()
                    .version_get(&self.origin.job_id, &self.version_id)
                    .await
                    .map_err(|error| error.to_string())?
                    .ok_or_else(|| format!("job.version: the version of job {} is gone", self.job_name))?;
                Ok(sundial_core::wire::version_view(&version, self.active_version_id.as_deref()))
            }
            // The running job's `data`, asked when job code first reads it.
            "job.data" => Ok(engine.job_detail(&jobs, &job_id()?).await.map_err(message)?.view()),
            "Jobs.getJob" => Ok(engine.job_detail(&jobs, &job_id()?).await.map_err(message)?.view()),
            "Jobs.getAll" => {
                let include_dynamic = args.get("includeDynamic").and_then(Value::as_bool).unwrap_or(false);
                let filter = JobFilter { include_dynamic, limit: 1000, ..JobFilter::default() };
                let jobs = engine.list_jobs(&jobs, &filter).await.map_err(message)?;
                Ok(Value::Array(jobs.iter().map(|job| job.view()).collect()))
            }
            "fetch" => engine.fetch(&self.caller.agent_id, &args).await,
            other if other.starts_with("Data.") || other.starts_with("Products.") => {
                if crate::data::is_write(other) {
                    let cap = crate::data::MAX_DATA_WRITES_PER_EXECUTION;
                    if self.data_writes.fetch_add(1, Ordering::SeqCst) >= cap {
                        self.data_writes.fetch_sub(1, Ordering::SeqCst);
                        return Err(format!("{other}: an execution may make at most {cap} Data and Products writes"));
                    }
                }
                crate::data::host_call(engine, &self.caller.agent_id, other, args.clone()).await
            }
            other => {
                let family = other.split('.').next().unwrap_or(other);
                Err(format!("{family} is not available to jobs on this server (job {})", self.job_name))
            }
        }
    }

    /// `{userId, ...data, _luaProfile}` of a user of the execution's agent (a user without a record has no fields).
    async fn user_view(&self, user_id: &str) -> Result<Value, String> {
        let record =
            self.engine.store().user_get(&self.caller.agent_id, user_id).await.map_err(|error| error.to_string())?;
        let data = record.map(|record| record.data).unwrap_or_default();
        let profile = sundial_core::wire::lua_profile(user_id, &data);
        let mut object = Map::new();
        object.insert("userId".into(), json!(user_id));
        for (key, value) in data {
            if !RESERVED_USER_FIELDS.contains(&key.as_str()) {
                object.insert(key, value);
            }
        }
        object.insert("_luaProfile".into(), profile);
        Ok(Value::Object(object))
    }
}

fn message(error: EngineError) -> String {
    error.to_string()
}

/// Adapts an `Arc<ExecutionHost>` to the sandbox's [`sundial_sandbox::Host`].
pub struct HostAdapter(pub Arc<ExecutionHost>);

impl sundial_sandbox::Host for HostAdapter {
    fn call(&self, method: String, args: Value) -> BoxFuture<'static, Result<Value, String>> {
        let host = self.0.clone();
        Box::pin(host.answer(method, args))
    }
}
