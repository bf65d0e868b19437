//! The conformance suite: behaviour every [`Store`] implementation must show. SQLite runs it always; any other
//! implementation runs the same functions from its own tests.
//!
//! Each check takes a fresh, empty store and panics with a message when the store misbehaves.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use sundial_core::policy::{JobPolicy, Overlap};
use sundial_core::{Execution, ExecutionStatus, Job, JobEffect, JobStatus, JobVersion, JsonObject, Schedule, Trigger};

use crate::{
    new_id, Activation, Agent, ApiKey, DeliveryOutcome, ExecutionFinish, JobFilter, OccurrenceRecord, StartOutcome,
    Store, StoreError,
};

/// Every check of the suite, by name, so an implementation's test can run them all.
pub const CHECKS: &[&str] = &[
    "agents_and_keys",
    "users_and_messages",
    "jobs_versions_and_metadata",
    "versions_stay_as_made",
    "occurrence_recorded_once",
    "claim_start_finish",
    "overlap_skip_and_retry",
    "batched_start_and_finish",
    "delete_cancels_pending",
    "orphans_and_prune",
    "blobs_and_idempotency",
    "webhook_deliveries",
];

/// Runs the check called `name` against `store`.
pub async fn run(name: &str, store: &dyn Store) {
    match name {
        "agents_and_keys" => agents_and_keys(store).await,
        "users_and_messages" => users_and_messages(store).await,
        "jobs_versions_and_metadata" => jobs_versions_and_metadata(store).await,
        "versions_stay_as_made" => versions_stay_as_made(store).await,
        "occurrence_recorded_once" => occurrence_recorded_once(store).await,
        "claim_start_finish" => claim_start_finish(store).await,
        "overlap_skip_and_retry" => overlap_skip_and_retry(store).await,
        "batched_start_and_finish" => batched_start_and_finish(store).await,
        "delete_cancels_pending" => delete_cancels_pending(store).await,
        "orphans_and_prune" => orphans_and_prune(store).await,
        "blobs_and_idempotency" => blobs_and_idempotency(store).await,
        "webhook_deliveries" => webhook_deliveries(store).await,
        other => panic!("unknown conformance check {other}"),
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0).single().unwrap_or_default()
}

/// A test job of agent `a` with an interval schedule, active, next slot at `at(10)`.
pub fn sample_job(schedule: Schedule) -> (Job, JobVersion) {
    let job_id = new_id("job");
    let version = JobVersion {
        id: new_id("ver"),
        job_id: job_id.clone(),
        name: "sample".into(),
        version: "1.0.0".into(),
        description: None,
        code: "async (job) => 1".into(),
        kind: sundial_core::CodeKind::Function,
        schedule,
        timeout_seconds: 60,
        retry: None,
        metadata: None,
        created_at: at(0),
    };
    let job = Job {
        id: job_id,
        agent_id: "a".into(),
        name: "sample".into(),
        description: Some("a sample".into()),
        dynamic: true,
        user_id: Some("u1".into()),
        authority: sundial_core::Authority::User(sundial_core::Scopes::ALL),
        active: true,
        status: JobStatus::Active,
        metadata: JsonObject::new(),
        policy: JobPolicy::default(),
        active_version_id: Some(version.id.clone()),
        anchor_at: at(0),
        next_run_at: Some(at(10)),
        last_run_at: None,
        consecutive_failures: 0,
        missed_slots: 0,
        created_at: at(0),
        updated_at: at(0),
    };
    (job, version)
}

/// A pending scheduled execution of `job` for the slot `slot`.
pub fn slot_execution(job: &Job, slot: DateTime<Utc>) -> Execution {
    Execution {
        id: new_id("exe"),
        agent_id: job.agent_id.clone(),
        job_id: job.id.clone(),
        version_id: job.active_version_id.clone().unwrap_or_default(),
        occurrence_id: new_id("occ"),
        status: ExecutionStatus::Pending,
        trigger: Trigger::Schedule,
        scheduled_for: Some(slot),
        due_at: slot,
        started_at: None,
        completed_at: None,
        duration_ms: None,
        result: None,
        error: None,
        retry_count: 0,
        logs: Vec::new(),
        created_at: slot,
    }
}

fn interval() -> Schedule {
    Schedule::interval(10)
}

fn finish(id: &str, status: ExecutionStatus, effect: JobEffect, retry: Option<Execution>) -> ExecutionFinish {
    ExecutionFinish {
        id: id.into(),
        status,
        result: Some(json!({"ok": true})),
        error: None,
        logs: Vec::new(),
        completed_at: at(11),
        duration_ms: Some(5),
        retry,
        job_effect: effect,
        lease_owner: Some("node-1".into()),
    }
}

async fn agents_and_keys(store: &dyn Store) {
    let agent = Agent::new("a", at(0));
    store.agent_insert(&agent).await.expect("insert agent");
    assert!(matches!(store.agent_insert(&agent).await, Err(StoreError::Conflict(_))), "duplicate agent accepted");
    assert_eq!(store.agent_get("a").await.expect("get").map(|agent| agent.id), Some("a".into()));
    assert!(store.agent_get("b").await.expect("get").is_none());
    let mut env = JsonObject::new();
    env.insert("GREETING".into(), json!("hi"));
    assert!(store.agent_set_env("a", &env).await.expect("env"));
    assert_eq!(store.agent_get("a").await.expect("get").map(|agent| agent.env), Some(env));

    let key = ApiKey {
        id: new_id("key"),
        agent_id: Some("a".into()),
        user_id: None,
        admin: false,
        hash: "h1".into(),
        created_at: at(0),
        scopes: None,
        expires_at: None,
    };
    let scoped = ApiKey {
        id: new_id("key"),
        user_id: Some("u1".into()),
        hash: "h2".into(),
        scopes: Some(vec!["data".into(), "jobs".into()]),
        expires_at: Some(at(3600)),
        ..key.clone()
    };
    store.key_insert(&scoped).await.expect("insert scoped key");

    // A dedup key binds once per agent and user; a rebind moves it only from the job it is bound to.
    assert_eq!(store.job_dedup_bind("a", Some("u1"), "k", "job_1", at(0)).await.expect("bind"), "job_1");
    assert_eq!(store.job_dedup_bind("a", Some("u1"), "k", "job_2", at(1)).await.expect("bind"), "job_1");
    assert_eq!(store.job_dedup_bind("a", Some("u2"), "k", "job_3", at(1)).await.expect("bind"), "job_3");
    assert_eq!(store.job_dedup_bind("a", None, "k", "job_4", at(1)).await.expect("bind"), "job_4");
    assert!(!store.job_dedup_rebind("a", Some("u1"), "k", "job_2", Some("job_5")).await.expect("rebind"));
    assert!(store.job_dedup_rebind("a", Some("u1"), "k", "job_1", Some("job_5")).await.expect("rebind"));
    assert_eq!(store.job_dedup_bind("a", Some("u1"), "k", "job_6", at(2)).await.expect("bind"), "job_5");
    assert!(store.job_dedup_rebind("a", Some("u1"), "k", "job_5", None).await.expect("unbind"));
    assert_eq!(store.job_dedup_bind("a", Some("u1"), "k", "job_6", at(2)).await.expect("bind"), "job_6");
    assert_eq!(store.key_find("h2").await.expect("find"), Some(scoped), "scopes and expiry read back");
    store.key_insert(&key).await.expect("insert key");
    assert_eq!(store.key_find("h1").await.expect("find"), Some(key.clone()));
    assert_eq!(store.admin_key_count().await.expect("count"), 0);
    assert!(!store.key_revoke("other", &key.id, at(1)).await.expect("revoke"), "revoked another agent's key");
    assert!(store.key_revoke("a", &key.id, at(1)).await.expect("revoke"));
    assert!(store.key_find("h1").await.expect("find").is_none(), "revoked key still found");
}

async fn users_and_messages(store: &dyn Store) {
    assert!(store.user_get("a", "u1").await.expect("get").is_none());
    let mut data = JsonObject::new();
    data.insert("name".into(), json!("Ada"));
    let user = store.user_put("a", "u1", &data, at(0)).await.expect("put");
    assert_eq!(user.data, data);
    assert_eq!(store.user_get("a", "u1").await.expect("get").map(|user| user.data), Some(data));
    assert!(store.user_get("b", "u1").await.expect("get").is_none(), "user visible to another agent");

    let origin = |execution: &str| crate::MessageOrigin {
        job_id: "job_1".into(),
        execution_id: execution.into(),
        occurrence_id: "occ_1".into(),
    };
    let first = store
        .message_insert(
            "a",
            "u1",
            &json!({"type": "text", "text": "one"}),
            Some(&origin("exe_1")),
            Some("occ_1:0"),
            at(1),
        )
        .await
        .expect("message");
    let again = store
        .message_insert(
            "a",
            "u1",
            &json!({"type": "text", "text": "one"}),
            Some(&origin("exe_2")),
            Some("occ_1:0"),
            at(2),
        )
        .await
        .expect("message");
    assert_eq!(first.id, again.id, "a deduplicated message was stored twice");
    assert_eq!(
        (again.job_id.as_deref(), again.execution_id.as_deref(), again.occurrence_id.as_deref()),
        (Some("job_1"), Some("exe_1"), Some("occ_1")),
        "a message names the run that sent it"
    );
    store.message_insert("a", "u1", &json!({"type": "text", "text": "two"}), None, None, at(3)).await.expect("message");
    let messages = store.message_list("a", "u1", 0, 100).await.expect("list");
    let texts: Vec<_> = messages.iter().map(|message| message.content["text"].clone()).collect();
    assert_eq!(texts, [json!("one"), json!("two")]);
    assert_eq!(messages[0].occurrence_id.as_deref(), Some("occ_1"));
    assert_eq!((messages[1].job_id.as_deref(), messages[1].execution_id.as_deref()), (None, None));
    let after = store.message_list("a", "u1", messages[0].seq, 100).await.expect("list");
    assert_eq!(after.len(), 1);
    assert!(store.message_list("b", "u1", 0, 100).await.expect("list").is_empty());
}

async fn jobs_versions_and_metadata(store: &dyn Store) {
    let (job, version) = sample_job(interval());
    store.job_insert(&job, Some(&version)).await.expect("insert job");
    assert_eq!(store.job_get("a", &job.id).await.expect("get"), Some(job.clone()));
    assert!(store.job_get("b", &job.id).await.expect("get").is_none(), "job visible to another agent");
    let hidden = store.job_list("a", &JobFilter { limit: 10, ..JobFilter::default() }).await.expect("list");
    assert!(hidden.is_empty(), "dynamic job listed without includeDynamic");
    let listed = store
        .job_list("a", &JobFilter { limit: 10, include_dynamic: true, ..JobFilter::default() })
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    let by_name =
        |name: &str| JobFilter { limit: 10, include_dynamic: true, name: Some(name.into()), ..JobFilter::default() };
    assert_eq!(store.job_list("a", &by_name("sample")).await.expect("list").len(), 1);
    assert!(store.job_list("a", &by_name("other")).await.expect("list").is_empty());

    let duplicate = JobVersion { id: new_id("ver"), ..version.clone() };
    assert!(matches!(store.version_insert(&duplicate).await, Err(StoreError::Conflict(_))));
    let second = JobVersion { id: new_id("ver"), version: "1.0.1".into(), created_at: at(1), ..version.clone() };
    store.version_insert(&second).await.expect("second version");
    let versions = store.version_list(&job.id).await.expect("versions");
    assert_eq!(versions.iter().map(|version| version.version.as_str()).collect::<Vec<_>>(), ["1.0.0", "1.0.1"]);
    assert_eq!(store.version_find(&job.id, "1.0.1").await.expect("find").map(|version| version.id), Some(second.id));

    let mut patch = JsonObject::new();
    patch.insert("runCount".into(), json!(1));
    let merged = store.job_metadata_update("a", &job.id, &patch, false, at(2)).await.expect("merge");
    assert_eq!(merged, Some(patch.clone()));
    let mut more = JsonObject::new();
    more.insert("lastRun".into(), json!("x"));
    let merged = store.job_metadata_update("a", &job.id, &more, false, at(2)).await.expect("merge").unwrap_or_default();
    assert_eq!(merged.len(), 2, "merge lost a key");
    let replaced = store.job_metadata_update("a", &job.id, &more, true, at(2)).await.expect("replace");
    assert_eq!(replaced, Some(more));
    assert!(store.job_metadata_update("b", &job.id, &patch, false, at(2)).await.expect("other").is_none());

    let off = Activation { active: false, status: JobStatus::Inactive, anchor_at: None, next_run_at: None };
    let job_off = store.job_set_activation(&job.id, &off, at(3)).await.expect("deactivate");
    assert_eq!(job_off.map(|job| (job.active, job.status)), Some((false, JobStatus::Inactive)));
    assert_eq!(store.active_job_count("a").await.expect("count"), 0);
}

/// A version is a snapshot: renaming its job or changing the job's metadata does not change it, and versions that
/// differ from their job in name, metadata, creation time, version string, kind or code read back as written.
async fn versions_stay_as_made(store: &dyn Store) {
    let (mut job, mut first) = sample_job(Schedule::once(at(10)));
    job.metadata.insert("i".into(), json!(1));
    first.metadata = Some(job.metadata.clone());
    store.jobs_insert_batch(std::sync::Arc::new(vec![(job.clone(), Some(first.clone()))])).await.expect("insert job");
    let other_code = JobVersion {
        id: new_id("ver"),
        name: "renamed later".into(),
        version: "2.0.0".into(),
        description: Some("second".into()),
        code: "export default { execute: async () => 2 }".into(),
        kind: sundial_core::CodeKind::Module,
        schedule: Schedule::cron("0 9 * * *", Some("Europe/Paris".into())),
        retry: Some(sundial_core::RetryPolicy { max_attempts: 2, backoff_seconds: Some(30) }),
        metadata: Some(JsonObject::new()),
        created_at: at(5),
        ..first.clone()
    };
    store.version_insert(&other_code).await.expect("second version");
    let fine_time = Schedule::once(at(20) + chrono::Duration::microseconds(1));
    let same_code = JobVersion {
        id: new_id("ver"),
        version: "2.0.1".into(),
        schedule: fine_time,
        metadata: None,
        created_at: at(6),
        ..first.clone()
    };
    store.version_insert(&same_code).await.expect("third version");
    let made = vec![first.clone(), other_code.clone(), same_code.clone()];
    assert_eq!(store.version_list(&job.id).await.expect("versions"), made);

    job.name = "a new name".into();
    assert!(store.job_update_info(&job).await.expect("rename"));
    let mut patch = JsonObject::new();
    patch.insert("i".into(), json!(2));
    store.job_metadata_update("a", &job.id, &patch, false, at(7)).await.expect("metadata");
    store.job_metadata_update("a", &job.id, &JsonObject::new(), true, at(8)).await.expect("metadata");
    assert_eq!(store.version_list(&job.id).await.expect("versions"), made, "a version followed its job");
    assert_eq!(store.version_get(&job.id, &first.id).await.expect("get"), Some(first.clone()));
    assert_eq!(store.version_find(&job.id, "1.0.0").await.expect("find"), Some(first));
    assert_eq!(store.version_find(&job.id, "2.0.0").await.expect("find"), Some(other_code));
    assert!(store.version_get("job_other", &same_code.id).await.expect("get").is_none(), "version of another job");
    let renamed = store.job_get("a", &job.id).await.expect("get").expect("job");
    assert_eq!((renamed.name.as_str(), renamed.metadata.len()), ("a new name", 0));

    let again = JobVersion { id: new_id("ver"), ..same_code };
    assert!(matches!(store.version_insert(&again).await, Err(StoreError::Conflict(_))), "a version string twice");
}

async fn occurrence_recorded_once(store: &dyn Store) {
    let (job, version) = sample_job(interval());
    store.job_insert(&job, Some(&version)).await.expect("insert job");
    let due = store.jobs_due(at(10), 100).await.expect("due");
    assert_eq!(due.len(), 1);
    assert!(store.jobs_due(at(9), 100).await.expect("due").is_empty(), "job due before its slot");

    let record = |slot| OccurrenceRecord {
        job_id: job.id.clone(),
        expected_next_run_at: at(10),
        next_run_at: Some(at(20)),
        missed: 0,
        slots: vec![slot_execution(&job, slot)],
    };
    // Two schedulers race for the same slot: the second one's compare-and-set fails.
    let applied = store.occurrences_record(&[record(at(10))], at(9)).await.expect("record");
    let again = store.occurrences_record(&[record(at(10))], at(9)).await.expect("record");
    assert_eq!((applied, again), (1, 0), "a slot was recorded twice");
    let job_now = store.job_get("a", &job.id).await.expect("get").expect("job");
    assert_eq!(job_now.next_run_at, Some(at(20)));
    // Even with a stale expectation that matches, the (job, slot) pair stays unique.
    let stale = OccurrenceRecord {
        job_id: job.id.clone(),
        expected_next_run_at: at(20),
        next_run_at: Some(at(30)),
        missed: 2,
        slots: vec![slot_execution(&job, at(10))],
    };
    assert_eq!(store.occurrences_record(&[stale], at(9)).await.expect("record"), 1);
    let (executions, total) = store.execution_list(&job.id, None, 10, 0).await.expect("list");
    assert_eq!(total, 1, "duplicate occurrence produced a second execution: {executions:?}");
    let job_now = store.job_get("a", &job.id).await.expect("get").expect("job");
    assert_eq!((job_now.next_run_at, job_now.missed_slots), (Some(at(30)), 2));
}

async fn claim_start_finish(store: &dyn Store) {
    let (job, version) = sample_job(Schedule::once(at(10)));
    store.job_insert(&job, Some(&version)).await.expect("insert job");
    let slot = slot_execution(&job, at(10));
    let record = OccurrenceRecord {
        job_id: job.id.clone(),
        expected_next_run_at: at(10),
        next_run_at: None,
        missed: 0,
        slots: vec![slot.clone()],
    };
    store.occurrences_record(&[record], at(8)).await.expect("record");

    assert!(store.executions_claim(at(9), "node-1", at(30), at(8), 10).await.expect("claim").is_empty());
    let claimed = store.executions_claim(at(10), "node-1", at(30), at(8), 10).await.expect("claim");
    assert_eq!(claimed.iter().map(|execution| &execution.id).collect::<Vec<_>>(), [&slot.id]);
    assert_eq!(
        store.executions_heartbeat("node-1", at(60)).await.expect("heartbeat"),
        0,
        "a pending claim was extended"
    );
    let overview = store.overview().await.expect("overview");
    assert!(overview.database_bytes > 0, "the database has a size");
    assert_eq!(
        overview.nodes,
        [crate::NodeLeases { node: "node-1".into(), running: 0, claimed: 1, lease_until: Some(at(30)) }],
        "the node holding the claim"
    );
    let rival = store.executions_claim(at(10), "node-2", at(30), at(9), 10).await.expect("claim");
    assert!(rival.is_empty(), "a held claim was taken by another node");
    // A claim handed back (a node stopping) is free at once; claimed again, it is node-1's as before.
    assert_eq!(store.executions_hand_back("node-2").await.expect("hand back"), 0, "handed back another's claim");
    assert_eq!(store.executions_hand_back("node-1").await.expect("hand back"), 1);
    let taken = store.executions_claim(at(10), "node-2", at(30), at(9), 10).await.expect("claim");
    assert_eq!(taken.len(), 1, "a handed-back claim waits for its lease");
    assert_eq!(store.executions_hand_back("node-2").await.expect("hand back"), 1);
    let claimed = store.executions_claim(at(10), "node-1", at(30), at(8), 10).await.expect("claim");
    assert_eq!(claimed.len(), 1);
    assert!(matches!(
        store.execution_start(&slot.id, "node-2", at(40), at(10)).await.expect("start"),
        StartOutcome::Gone
    ));

    let started = store.execution_start(&slot.id, "node-1", at(40), at(10)).await.expect("start");
    let StartOutcome::Started(started) = started else {
        panic!("not started: {started:?}");
    };
    let (execution, started_job, started_version) = (started.execution, started.job, started.version);
    assert_eq!(execution.status, ExecutionStatus::Running);
    assert_eq!(started_job.last_run_at, Some(at(10)));
    assert_eq!(started_version.id, version.id);
    assert!(matches!(
        store.execution_start(&slot.id, "node-1", at(40), at(10)).await.expect("start"),
        StartOutcome::Gone
    ));

    let mut wrong_owner = finish(&slot.id, ExecutionStatus::Completed, JobEffect::CompleteOnce, None);
    wrong_owner.lease_owner = Some("node-2".into());
    assert!(!store.execution_finish(&wrong_owner).await.expect("finish"), "a fenced-out node finished the run");
    let done = finish(&slot.id, ExecutionStatus::Completed, JobEffect::CompleteOnce, None);
    assert!(store.execution_finish(&done).await.expect("finish"));
    assert!(!store.execution_finish(&done).await.expect("finish"), "an execution finished twice");
    let stored = store.execution_get("a", &slot.id).await.expect("get").expect("execution");
    assert_eq!(
        (stored.status, stored.result.clone(), stored.duration_ms),
        (ExecutionStatus::Completed, Some(json!({"ok": true})), Some(5))
    );
    assert!(store.execution_get("b", &slot.id).await.expect("get").is_none());
    let listed = store.execution_list_agent("a", None, 10).await.expect("list agent");
    assert_eq!(listed.iter().map(|execution| &execution.id).collect::<Vec<_>>(), [&slot.id]);
    assert!(store.execution_list_agent("a", Some(&slot.id), 10).await.expect("list agent").is_empty());
    assert!(store.execution_list_agent("b", None, 10).await.expect("list agent").is_empty());
    let job_now = store.job_get("a", &job.id).await.expect("get").expect("job");
    assert_eq!((job_now.active, job_now.status), (false, JobStatus::Completed));
    assert_eq!(store.execution_latest(&job.id).await.expect("latest").map(|execution| execution.id), Some(slot.id));
}

async fn overlap_skip_and_retry(store: &dyn Store) {
    let (mut job, version) = sample_job(interval());
    job.policy = JobPolicy { overlap: Overlap::Skip, ..JobPolicy::default() };
    store.job_insert(&job, Some(&version)).await.expect("insert job");
    let first = slot_execution(&job, at(10));
    let second = slot_execution(&job, at(20));
    let record = OccurrenceRecord {
        job_id: job.id.clone(),
        expected_next_run_at: at(10),
        next_run_at: Some(at(30)),
        missed: 0,
        slots: vec![first.clone(), second.clone()],
    };
    store.occurrences_record(&[record], at(9)).await.expect("record");
    store.executions_claim(at(20), "node-1", at(60), at(9), 10).await.expect("claim");
    assert!(matches!(
        store.execution_start(&first.id, "node-1", at(60), at(10)).await.expect("start"),
        StartOutcome::Started(_)
    ));
    let skipped = store.execution_start(&second.id, "node-1", at(60), at(20)).await.expect("start");
    assert!(matches!(skipped, StartOutcome::NotRun(ExecutionStatus::Skipped)), "overlap not skipped: {skipped:?}");

    let retry = Execution {
        id: new_id("exe"),
        trigger: Trigger::Retry,
        retry_count: 1,
        due_at: at(12),
        created_at: at(11),
        ..first.clone()
    };
    let failed = ExecutionFinish {
        error: Some("Error: boom".into()),
        ..finish(&first.id, ExecutionStatus::Failed, JobEffect::None, Some(retry.clone()))
    };
    assert!(store.execution_finish(&failed).await.expect("finish"));
    let (executions, total) = store.execution_list(&job.id, None, 10, 0).await.expect("list");
    assert_eq!(total, 3);
    let stored_retry = executions.iter().find(|execution| execution.id == retry.id).expect("retry stored");
    assert_eq!(
        (stored_retry.status, stored_retry.retry_count, stored_retry.occurrence_id.clone()),
        (ExecutionStatus::Pending, 1, first.occurrence_id.clone())
    );
    let (failures, failed_total) =
        store.execution_list(&job.id, Some(ExecutionStatus::Failed), 10, 0).await.expect("list");
    assert_eq!((failed_total, failures[0].error.clone()), (1, Some("Error: boom".into())));

    // A retry runs even though the slot's overlap policy is `skip`: nothing else of the job runs now.
    store.executions_claim(at(12), "node-1", at(60), at(12), 10).await.expect("claim");
    assert!(matches!(
        store.execution_start(&retry.id, "node-1", at(60), at(12)).await.expect("start"),
        StartOutcome::Started(_)
    ));
    let count = finish(&retry.id, ExecutionStatus::Failed, JobEffect::CountFailure, None);
    assert!(store.execution_finish(&count).await.expect("finish"));
    let job_now = store.job_get("a", &job.id).await.expect("get").expect("job");
    assert_eq!(job_now.consecutive_failures, 1);
}

async fn batched_start_and_finish(store: &dyn Store) {
    let (once, once_version) = sample_job(Schedule::once(at(10)));
    store.job_insert(&once, Some(&once_version)).await.expect("insert job");
    let (mut recurring, recurring_version) = sample_job(interval());
    recurring.policy = JobPolicy { overlap: Overlap::Skip, ..JobPolicy::default() };
    store.job_insert(&recurring, Some(&recurring_version)).await.expect("insert job");
    let once_slot = slot_execution(&once, at(10));
    let (first, second) = (slot_execution(&recurring, at(10)), slot_execution(&recurring, at(11)));
    let records = [
        OccurrenceRecord {
            job_id: once.id.clone(),
            expected_next_run_at: at(10),
            next_run_at: None,
            missed: 0,
            slots: vec![once_slot.clone()],
        },
        OccurrenceRecord {
            job_id: recurring.id.clone(),
            expected_next_run_at: at(10),
            next_run_at: Some(at(12)),
            missed: 0,
            slots: vec![first.clone(), second.clone()],
        },
    ];
    store.occurrences_record(&records, at(9)).await.expect("record");
    assert_eq!(store.executions_claim(at(11), "node-1", at(60), at(9), 10).await.expect("claim").len(), 3);

    // One batch: each start sees the ones before it, so the recurring job's second slot overlaps its first.
    let starts = [
        (once_slot.id.clone(), at(10)),
        (first.id.clone(), at(10)),
        (second.id.clone(), at(11)),
        ("exe_unknown".to_owned(), at(11)),
    ];
    let outcomes = store.executions_start(&starts, "node-1", at(60)).await.expect("start batch");
    assert_eq!(outcomes.len(), 4);
    let StartOutcome::Started(started) = &outcomes[0] else { panic!("not started: {:?}", outcomes[0]) };
    assert_eq!((started.execution.id.as_str(), started.execution.started_at), (once_slot.id.as_str(), Some(at(10))));
    assert!(matches!(&outcomes[1], StartOutcome::Started(started) if started.execution.id == first.id));
    assert!(matches!(outcomes[2], StartOutcome::NotRun(ExecutionStatus::Skipped)), "{:?}", outcomes[2]);
    assert!(matches!(outcomes[3], StartOutcome::Gone), "{:?}", outcomes[3]);

    let finishes = [
        finish(&once_slot.id, ExecutionStatus::Completed, JobEffect::CompleteOnce, None),
        finish(&first.id, ExecutionStatus::Completed, JobEffect::ResetFailures, None),
        finish(&second.id, ExecutionStatus::Completed, JobEffect::None, None),
    ];
    let recorded = store.executions_finish(&finishes).await.expect("finish batch");
    assert_eq!(recorded, [true, true, false], "only running executions are finished");
    assert_eq!(store.executions_finish(&finishes[..1]).await.expect("finish batch"), [false]);
    let once_now = store.job_get("a", &once.id).await.expect("get").expect("job");
    assert_eq!((once_now.active, once_now.status), (false, JobStatus::Completed));
    let stored = store.execution_get("a", &first.id).await.expect("get").expect("execution");
    assert_eq!(stored.status, ExecutionStatus::Completed);
}

async fn delete_cancels_pending(store: &dyn Store) {
    let (job, version) = sample_job(interval());
    store.job_insert(&job, Some(&version)).await.expect("insert job");
    let slot = slot_execution(&job, at(10));
    let record = OccurrenceRecord {
        job_id: job.id.clone(),
        expected_next_run_at: at(10),
        next_run_at: Some(at(20)),
        missed: 0,
        slots: vec![slot.clone()],
    };
    store.occurrences_record(&[record], at(9)).await.expect("record");
    assert!(!store.job_delete("b", &job.id, at(9)).await.expect("delete"), "another agent deleted the job");
    assert!(store.job_delete("a", &job.id, at(9)).await.expect("delete"));
    assert!(store.job_get("a", &job.id).await.expect("get").is_none(), "deleted job still visible");
    assert!(store.jobs_due(at(100), 10).await.expect("due").is_empty(), "deleted job still due");
    let stored = store.execution_get("a", &slot.id).await.expect("get").expect("execution");
    assert_eq!(stored.status, ExecutionStatus::Cancelled);
    assert!(store.executions_claim(at(100), "node-1", at(200), at(10), 10).await.expect("claim").is_empty());
}

async fn orphans_and_prune(store: &dyn Store) {
    let (job, version) = sample_job(interval());
    store.job_insert(&job, Some(&version)).await.expect("insert job");
    let slot = slot_execution(&job, at(10));
    let record = OccurrenceRecord {
        job_id: job.id.clone(),
        expected_next_run_at: at(10),
        next_run_at: Some(at(20)),
        missed: 0,
        slots: vec![slot.clone()],
    };
    store.occurrences_record(&[record], at(9)).await.expect("record");
    store.executions_claim(at(10), "dead-node", at(15), at(9), 10).await.expect("claim");
    assert!(matches!(
        store.execution_start(&slot.id, "dead-node", at(15), at(10)).await.expect("start"),
        StartOutcome::Started(_)
    ));
    assert!(store.executions_orphaned(at(12), None).await.expect("orphans").is_empty(), "a live lease was orphaned");
    assert_eq!(store.executions_heartbeat("dead-node", at(25)).await.expect("heartbeat"), 1);
    assert!(store.executions_orphaned(at(20), None).await.expect("orphans").is_empty());
    let orphans = store.executions_orphaned(at(20), Some("new-node")).await.expect("orphans");
    assert_eq!(orphans.len(), 1, "a dead owner's run was not orphaned for the new node");
    let orphans = store.executions_orphaned(at(26), None).await.expect("orphans");
    assert_eq!(orphans.iter().map(|orphan| &orphan.execution.id).collect::<Vec<_>>(), [&slot.id]);
    assert_eq!((orphans[0].owner.as_deref(), orphans[0].lease_until), (Some("dead-node"), Some(at(25))));
    let abandoned = ExecutionFinish {
        lease_owner: None,
        ..finish(&slot.id, ExecutionStatus::Abandoned, JobEffect::CountFailure, None)
    };
    assert!(store.execution_finish(&abandoned).await.expect("finish"));
    assert!(store.execution_note(&slot.id, "late result refused: completed").await.expect("note"));
    let noted = store.execution_get("a", &slot.id).await.expect("get").expect("execution");
    assert_eq!(noted.error.as_deref(), Some("late result refused: completed"));
    assert!(store.execution_note(&slot.id, "again").await.expect("note"));
    let noted = store.execution_get("a", &slot.id).await.expect("get").expect("execution");
    assert_eq!(noted.error.as_deref(), Some("late result refused: completed\nagain"));

    // Pruning keeps the newest `keep` per job and never touches unfinished executions.
    let mut executions = Vec::new();
    for index in 0..5 {
        let mut execution = slot_execution(&job, at(100 + index));
        execution.trigger = Trigger::Manual;
        execution.status = if index == 0 { ExecutionStatus::Pending } else { ExecutionStatus::Completed };
        execution.created_at = at(100 + index);
        store.execution_insert(&execution).await.expect("insert");
        executions.push(execution);
    }
    let pruned = store.executions_prune(at(1000), 2).await.expect("prune");
    let (left, total) = store.execution_list(&job.id, None, 100, 0).await.expect("list");
    assert_eq!(total, 6 - pruned, "prune count does not match");
    assert!(left.iter().any(|execution| execution.id == executions[0].id), "a pending execution was pruned");
    assert!(left.iter().any(|execution| execution.id == executions[4].id), "the newest execution was pruned");
    assert_eq!(total, 3, "expected the 2 newest plus the pending one: {left:?}");
}

async fn blobs_and_idempotency(store: &dyn Store) {
    store.blob_put("a", "h1", b"bundle", at(0)).await.expect("put");
    store.blob_put("a", "h1", b"bundle", at(1)).await.expect("put twice");
    assert_eq!(store.blob_get("a", "h1").await.expect("get"), Some(b"bundle".to_vec()));
    assert!(store.blob_get("b", "h1").await.expect("get").is_none(), "blob visible to another agent");
    let existing = store.blobs_existing("a", &["h1".into(), "h2".into()]).await.expect("existing");
    assert_eq!(existing, ["h1"]);

    assert!(store.idempotency_get("scope", "k").await.expect("get").is_none());
    store.idempotency_put("scope", "k", 201, "{\"id\":1}", at(0)).await.expect("put");
    store.idempotency_put("scope", "k", 500, "later", at(1)).await.expect("put again");
    assert_eq!(store.idempotency_get("scope", "k").await.expect("get"), Some((201, "{\"id\":1}".into())));
    assert!(store.idempotency_get("other", "k").await.expect("get").is_none());
    assert_eq!(store.idempotency_prune(at(5)).await.expect("prune"), 1);
    assert!(store.idempotency_get("scope", "k").await.expect("get").is_none());
}

async fn webhook_deliveries(store: &dyn Store) {
    store.agent_insert(&Agent::new("a", at(0))).await.expect("agent");
    let before = store.message_insert("a", "u1", &json!({"type": "text", "text": "no hook"}), None, None, at(1)).await;
    assert_eq!(before.expect("message").delivery, None, "a message without a webhook has no delivery");
    let mut settings = JsonObject::new();
    settings.insert("webhookUrl".into(), json!("http://127.0.0.1:9/hook"));
    assert!(store.agent_set_settings("a", &settings).await.expect("settings"));
    assert_eq!(store.agent_get("a").await.expect("get").map(|agent| agent.settings), Some(settings));
    let message = store
        .message_insert("a", "u1", &json!({"type": "text", "text": "hooked"}), None, Some("occ:0"), at(2))
        .await
        .expect("message");
    assert_eq!(message.delivery.as_deref(), Some("pending"));
    // The same dedupe key makes no second message and so no second delivery.
    store
        .message_insert("a", "u1", &json!({"type": "text", "text": "hooked"}), None, Some("occ:0"), at(3))
        .await
        .expect("again");

    let claimed = store.deliveries_claim(at(2), "node-1", at(30), 10).await.expect("claim");
    let claimed_ids: Vec<&String> = claimed.iter().map(|delivery| &delivery.message.id).collect();
    assert_eq!(claimed_ids, [&message.id]);
    assert!(store.deliveries_claim(at(3), "node-2", at(30), 10).await.expect("claim").is_empty(), "claimed twice");
    let retry = DeliveryOutcome::Retry { at: at(10), error: "HTTP 500".into() };
    store.delivery_finish(&message.id, &retry, at(4)).await.expect("retry");
    assert!(store.deliveries_claim(at(9), "node-1", at(30), 10).await.expect("claim").is_empty(), "retried early");
    let again = store.deliveries_claim(at(10), "node-1", at(30), 10).await.expect("claim");
    assert_eq!(again.first().map(|delivery| delivery.attempts), Some(1));
    store.delivery_finish(&message.id, &DeliveryOutcome::Delivered, at(11)).await.expect("delivered");
    assert!(store.deliveries_claim(at(100), "node-1", at(130), 10).await.expect("claim").is_empty(), "delivered twice");
    let listed = store.message_list("a", "u1", 0, 10).await.expect("list");
    let states: Vec<_> = listed.iter().map(|message| message.delivery.clone()).collect();
    assert_eq!(states, [None, Some("delivered".into())]);
}
