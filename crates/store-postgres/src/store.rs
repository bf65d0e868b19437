//! [`Store`] for PostgreSQL: the same statements as the SQLite store, with the row locks that make them safe when
//! several nodes run them at once (see the crate documentation for the lock order).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sundial_core::{CodeKind, Execution, ExecutionStatus, Job, JobStatus, JobVersion, JsonObject, Trigger};
use sundial_store::{
    Activation, Agent, ApiKey, Delivery, DeliveryOutcome, DueJob, ExecutionFinish, JobFilter, Message, MessageOrigin,
    NodeLeases, OccurrenceRecord, Orphan, Result, StartOutcome, Store, StoreError, StoreOverview, StoreStats,
    UserRecord,
};
use tokio_postgres::Row;

use crate::{
    database, execute, get, get_json, get_opt_json, jsonb, millis, opt_millis, opt_text, opt_time, query, query_one,
    query_opt, text, time, to_u32, Db, PostgresStore,
};

pub(crate) const JOB_COLUMNS: &str = "id, agent_id, name, description, dynamic, user_id, active, status, metadata, policy, \
     active_version_id, anchor_at, next_run_at, last_run_at, consecutive_failures, missed_slots, created_at, updated_at, \
     authority";
/// How many columns [`JOB_COLUMNS`] has: a row of a join reads the next table's columns from here.
pub(crate) const JOB_WIDTH: usize = 19;
/// A stored key's columns, as `key_from_row` reads them.
const KEY_SELECT: &str = "SELECT id, agent_id, user_id, admin, hash, created_at, scopes, expires_at FROM api_keys";
pub(crate) const VERSION_COLUMNS: &str =
    "id, job_id, name, version, description, code, schedule, timeout_seconds, retry, metadata, created_at, kind";
pub(crate) const EXECUTION_COLUMNS: &str =
    "id, agent_id, job_id, version_id, occurrence_id, status, trigger, scheduled_for, \
     due_at, started_at, completed_at, duration_ms, result, error, retry_count, logs, created_at";
/// How many columns [`EXECUTION_COLUMNS`] has.
pub(crate) const EXECUTION_WIDTH: usize = 17;

/// Columns of a message with its delivery state (`m` is messages, `d` the left-joined deliveries).
const MESSAGE_COLUMNS: &str =
    "m.seq, m.id, m.agent_id, m.user_id, m.content, m.execution_id, m.created_at, d.status, m.job_id, m.occurrence_id";
const MESSAGE_FROM: &str = "messages m LEFT JOIN deliveries d ON d.message_id = m.id";

pub(crate) fn job_from_row(row: &Row, at: usize) -> Result<Job> {
    let status: String = get(row, at + 7)?;
    Ok(Job {
        id: get(row, at)?,
        agent_id: get(row, at + 1)?,
        name: get(row, at + 2)?,
        description: get(row, at + 3)?,
        dynamic: get(row, at + 4)?,
        user_id: get(row, at + 5)?,
        active: get(row, at + 6)?,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Inactive),
        metadata: get_json(row, at + 8)?,
        policy: get_json(row, at + 9)?,
        active_version_id: get(row, at + 10)?,
        anchor_at: time(get(row, at + 11)?),
        next_run_at: opt_time(get(row, at + 12)?),
        last_run_at: opt_time(get(row, at + 13)?),
        consecutive_failures: to_u32(get(row, at + 14)?),
        missed_slots: get::<i64>(row, at + 15)?.max(0) as u64,
        created_at: time(get(row, at + 16)?),
        updated_at: time(get(row, at + 17)?),
        authority: {
            let stored: Option<i64> = get(row, at + 18)?;
            sundial_core::Authority::from_stored(stored)
                .ok_or_else(|| StoreError::Database(format!("column {}: unknown job authority {stored:?}", at + 18)))?
        },
    })
}

pub(crate) fn version_from_row(row: &Row, at: usize) -> Result<JobVersion> {
    Ok(JobVersion {
        id: get(row, at)?,
        job_id: get(row, at + 1)?,
        name: get(row, at + 2)?,
        version: get(row, at + 3)?,
        description: get(row, at + 4)?,
        code: get(row, at + 5)?,
        schedule: get_json(row, at + 6)?,
        timeout_seconds: to_u32(get(row, at + 7)?),
        retry: get_opt_json(row, at + 8)?,
        metadata: get_opt_json(row, at + 9)?,
        created_at: time(get(row, at + 10)?),
        kind: CodeKind::parse(&get::<String>(row, at + 11)?).unwrap_or_default(),
    })
}

pub(crate) fn execution_from_row(row: &Row) -> Result<Execution> {
    let status: String = get(row, 5)?;
    let trigger: String = get(row, 6)?;
    Ok(Execution {
        id: get(row, 0)?,
        agent_id: get(row, 1)?,
        job_id: get(row, 2)?,
        version_id: get(row, 3)?,
        occurrence_id: get(row, 4)?,
        status: ExecutionStatus::parse(&status).unwrap_or(ExecutionStatus::Failed),
        trigger: Trigger::parse(&trigger).unwrap_or(Trigger::Manual),
        scheduled_for: opt_time(get(row, 7)?),
        due_at: time(get(row, 8)?),
        started_at: opt_time(get(row, 9)?),
        completed_at: opt_time(get(row, 10)?),
        duration_ms: get(row, 11)?,
        result: get_opt_json(row, 12)?,
        error: get(row, 13)?,
        retry_count: to_u32(get(row, 14)?),
        logs: get_json(row, 15)?,
        created_at: time(get(row, 16)?),
    })
}

fn message_from_row(row: &Row) -> Result<Message> {
    Ok(Message {
        seq: get(row, 0)?,
        id: get(row, 1)?,
        agent_id: get(row, 2)?,
        user_id: get(row, 3)?,
        content: get_json(row, 4)?,
        execution_id: get(row, 5)?,
        job_id: get(row, 8)?,
        occurrence_id: get(row, 9)?,
        created_at: time(get(row, 6)?),
        delivery: get(row, 7)?,
    })
}

fn key_from_row(row: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        id: get(row, 0)?,
        agent_id: get(row, 1)?,
        user_id: get(row, 2)?,
        admin: get(row, 3)?,
        hash: get(row, 4)?,
        created_at: time(get(row, 5)?),
        scopes: get::<Option<String>>(row, 6)?.map(|text| sundial_store::split_scopes(&text)),
        expires_at: get::<Option<i64>>(row, 7)?.map(time),
    })
}

fn agent_from_row(row: &Row) -> Result<Agent> {
    Ok(Agent { id: get(row, 0)?, env: get_json(row, 1)?, created_at: time(get(row, 2)?), settings: get_json(row, 3)? })
}

fn user_from_row(row: &Row) -> Result<UserRecord> {
    Ok(UserRecord {
        agent_id: get(row, 0)?,
        user_id: get(row, 1)?,
        data: get_json(row, 2)?,
        created_at: time(get(row, 3)?),
        updated_at: time(get(row, 4)?),
    })
}

fn rows_to<T>(rows: &[Row], decode: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(decode).collect()
}

async fn get_job(client: &impl Db, job_id: &str) -> Result<Option<Job>> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND deleted_at IS NULL");
    query_opt(client, &sql, &[&job_id]).await?.map(|row| job_from_row(&row, 0)).transpose()
}

async fn get_version(client: &impl Db, version_id: &str) -> Result<Option<JobVersion>> {
    let sql = format!("SELECT {VERSION_COLUMNS} FROM job_versions WHERE id = $1");
    query_opt(client, &sql, &[&version_id]).await?.map(|row| version_from_row(&row, 0)).transpose()
}

async fn get_execution(client: &impl Db, id: &str) -> Result<Option<Execution>> {
    let sql = format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE id = $1");
    query_opt(client, &sql, &[&id]).await?.map(|row| execution_from_row(&row)).transpose()
}

async fn get_message(client: &impl Db, condition: &str, value: &str) -> Result<Option<Message>> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE {condition}");
    query_opt(client, &sql, &[&value]).await?.map(|row| message_from_row(&row)).transpose()
}

/// Cancels pending executions of a job that a schedule made (slots and their retries), not manual triggers. The
/// caller holds the job's row lock; the executions are locked in id order.
async fn cancel_pending(client: &impl Db, job_id: &str, now: i64) -> Result<()> {
    execute(
        client,
        "UPDATE executions SET status = 'cancelled', started_at = $2, completed_at = $2, lease_owner = NULL \
         WHERE status = 'pending' AND id IN (SELECT id FROM executions WHERE job_id = $1 AND status = 'pending' \
           AND trigger <> 'manual' ORDER BY id FOR UPDATE)",
        &[&job_id, &now],
    )
    .await?;
    Ok(())
}

/// Applies an activation change to a job that is not deleted and answers the job as it is now.
async fn apply_activation(client: &impl Db, job_id: &str, change: &Activation, now: i64) -> Result<Option<Job>> {
    let sql = format!(
        "UPDATE jobs SET active = $2, status = $3, anchor_at = COALESCE($4, anchor_at), next_run_at = $5, \
         updated_at = $6 WHERE id = $1 AND deleted_at IS NULL RETURNING {JOB_COLUMNS}"
    );
    let row = query_opt(
        client,
        &sql,
        &[
            &job_id,
            &change.active,
            &change.status.as_str(),
            &opt_millis(change.anchor_at),
            &opt_millis(change.next_run_at),
            &now,
        ],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    if !change.active {
        cancel_pending(client, job_id, now).await?;
    }
    job_from_row(&row, 0).map(Some)
}

#[async_trait]
impl Store for PostgresStore {
    async fn agent_insert(&self, agent: &Agent) -> Result<()> {
        let client = self.client().await?;
        let inserted = execute(
            &client,
            "INSERT INTO agents (id, env, created_at, settings) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&agent.id, &jsonb(&agent.env), &millis(agent.created_at), &jsonb(&agent.settings)],
        )
        .await?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("agent {}", agent.id)));
        }
        Ok(())
    }

    async fn agent_get(&self, agent_id: &str) -> Result<Option<Agent>> {
        let client = self.client().await?;
        let row =
            query_opt(&client, "SELECT id, env, created_at, settings FROM agents WHERE id = $1", &[&agent_id]).await?;
        row.map(|row| agent_from_row(&row)).transpose()
    }

    async fn agent_list(&self) -> Result<Vec<Agent>> {
        let client = self.client().await?;
        let rows = query(&client, "SELECT id, env, created_at, settings FROM agents ORDER BY id", &[]).await?;
        rows_to(&rows, agent_from_row)
    }

    async fn agent_set_settings(&self, agent_id: &str, settings: &JsonObject) -> Result<bool> {
        let client = self.client().await?;
        let changed =
            execute(&client, "UPDATE agents SET settings = $2 WHERE id = $1", &[&agent_id, &jsonb(settings)]).await?;
        Ok(changed > 0)
    }

    async fn agent_set_env(&self, agent_id: &str, env: &JsonObject) -> Result<bool> {
        let client = self.client().await?;
        let changed = execute(&client, "UPDATE agents SET env = $2 WHERE id = $1", &[&agent_id, &jsonb(env)]).await?;
        Ok(changed > 0)
    }

    async fn key_insert(&self, key: &ApiKey) -> Result<()> {
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO api_keys (id, agent_id, user_id, admin, hash, created_at, scopes, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &key.id,
                &key.agent_id,
                &key.user_id,
                &key.admin,
                &key.hash,
                &millis(key.created_at),
                &key.scopes.as_ref().map(|scopes| scopes.join(",")),
                &key.expires_at.map(millis),
            ],
        )
        .await?;
        Ok(())
    }

    async fn key_find(&self, hash: &str) -> Result<Option<ApiKey>> {
        let client = self.client().await?;
        let row = query_opt(&client, &format!("{KEY_SELECT} WHERE hash = $1 AND revoked_at IS NULL"), &[&hash]).await?;
        row.map(|row| key_from_row(&row)).transpose()
    }

    async fn key_get(&self, key_id: &str) -> Result<Option<ApiKey>> {
        let client = self.client().await?;
        let row = query_opt(&client, &format!("{KEY_SELECT} WHERE id = $1 AND revoked_at IS NULL"), &[&key_id]).await?;
        row.map(|row| key_from_row(&row)).transpose()
    }

    async fn key_revoke(&self, agent_id: &str, key_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let client = self.client().await?;
        let changed = execute(
            &client,
            "UPDATE api_keys SET revoked_at = $3, hash = 'revoked:' || id \
             WHERE id = $2 AND agent_id = $1 AND revoked_at IS NULL",
            &[&agent_id, &key_id, &millis(now)],
        )
        .await?;
        Ok(changed > 0)
    }

    async fn job_dedup_bind(
        &self,
        agent_id: &str,
        user_id: Option<&str>,
        key: &str,
        job_id: &str,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let client = self.client().await?;
        let user_id = user_id.unwrap_or_default();
        // One statement: the new binding, or (on a conflict, which returns no row) the existing one.
        let row = query_one(
            &client,
            "WITH bound AS (INSERT INTO job_dedup (agent_id, user_id, dedup_key, job_id, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING job_id) \
             SELECT job_id FROM bound UNION ALL \
             SELECT job_id FROM job_dedup WHERE agent_id = $1 AND user_id = $2 AND dedup_key = $3 LIMIT 1",
            &[&agent_id, &user_id, &key, &job_id, &millis(now)],
        )
        .await?;
        get(&row, 0)
    }

    async fn job_dedup_rebind(
        &self,
        agent_id: &str,
        user_id: Option<&str>,
        key: &str,
        from: &str,
        to: Option<&str>,
    ) -> Result<bool> {
        let client = self.client().await?;
        let user_id = user_id.unwrap_or_default();
        let changed = match to {
            Some(to) => {
                execute(
                    &client,
                    "UPDATE job_dedup SET job_id = $5 WHERE agent_id = $1 AND user_id = $2 AND dedup_key = $3 \
                     AND job_id = $4",
                    &[&agent_id, &user_id, &key, &from, &to],
                )
                .await?
            }
            None => {
                execute(
                    &client,
                    "DELETE FROM job_dedup WHERE agent_id = $1 AND user_id = $2 AND dedup_key = $3 AND job_id = $4",
                    &[&agent_id, &user_id, &key, &from],
                )
                .await?
            }
        };
        Ok(changed > 0)
    }

    async fn admin_key_count(&self) -> Result<u64> {
        let client = self.client().await?;
        let row = query_one(&client, "SELECT COUNT(*) FROM api_keys WHERE admin AND revoked_at IS NULL", &[]).await?;
        Ok(get::<i64>(&row, 0)? as u64)
    }

    async fn user_get(&self, agent_id: &str, user_id: &str) -> Result<Option<UserRecord>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT agent_id, user_id, data, created_at, updated_at FROM users WHERE agent_id = $1 AND user_id = $2",
            &[&agent_id, &user_id],
        )
        .await?;
        row.map(|row| user_from_row(&row)).transpose()
    }

    async fn user_put(
        &self,
        agent_id: &str,
        user_id: &str,
        data: &JsonObject,
        now: DateTime<Utc>,
    ) -> Result<UserRecord> {
        let client = self.client().await?;
        let row = query_one(
            &client,
            "INSERT INTO users (agent_id, user_id, data, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
             ON CONFLICT (agent_id, user_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at \
             RETURNING agent_id, user_id, data, created_at, updated_at",
            &[&agent_id, &user_id, &jsonb(data), &millis(now)],
        )
        .await?;
        user_from_row(&row)
    }

    async fn message_insert(
        &self,
        agent_id: &str,
        user_id: &str,
        content: &Value,
        origin: Option<&MessageOrigin>,
        dedupe_key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Message> {
        let id = sundial_store::new_id("msg");
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        // Message inserts take turns until they commit, so `seq` grows in commit order: a reader paging with
        // `after = seq` never skips a message that commits later with a smaller seq. Taken before the dedupe check,
        // which so sees every earlier message.
        execute(&transaction, "SELECT pg_advisory_xact_lock($1)", &[&self.lock_key("messages")]).await?;
        if let Some(key) = dedupe_key {
            if let Some(earlier) = get_message(&transaction, "m.dedupe_key = $1", key).await? {
                transaction.commit().await.map_err(database)?;
                return Ok(earlier);
            }
        }
        let created_at = millis(now);
        let row = query_one(
            &transaction,
            "INSERT INTO messages (id, agent_id, user_id, content, execution_id, dedupe_key, created_at, job_id, \
             occurrence_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq, content",
            &[
                &id,
                &agent_id,
                &user_id,
                &jsonb(content),
                &origin.map(|origin| origin.execution_id.as_str()),
                &dedupe_key,
                &created_at,
                &origin.map(|origin| origin.job_id.as_str()),
                &origin.map(|origin| origin.occurrence_id.as_str()),
            ],
        )
        .await?;
        let (seq, stored): (i64, Value) = (get(&row, 0)?, get_json(&row, 1)?);
        let settings = query_opt(&transaction, "SELECT settings FROM agents WHERE id = $1", &[&agent_id]).await?;
        let settings: JsonObject = match settings {
            Some(row) => get_json(&row, 0)?,
            None => JsonObject::new(),
        };
        let mut delivery = None;
        if let Some(url) = settings.get("webhookUrl").and_then(Value::as_str) {
            execute(
                &transaction,
                "INSERT INTO deliveries (message_id, agent_id, url, status, next_attempt_at) \
                 VALUES ($1, $2, $3, 'pending', $4)",
                &[&id, &agent_id, &text(url), &created_at],
            )
            .await?;
            delivery = Some("pending".to_owned());
        }
        transaction.commit().await.map_err(database)?;
        Ok(Message {
            seq,
            id,
            agent_id: agent_id.to_owned(),
            user_id: user_id.to_owned(),
            content: stored,
            execution_id: origin.map(|origin| origin.execution_id.clone()),
            job_id: origin.map(|origin| origin.job_id.clone()),
            occurrence_id: origin.map(|origin| origin.occurrence_id.clone()),
            delivery,
            created_at: time(created_at),
        })
    }

    async fn deliveries_claim(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        let rows = query(
            &transaction,
            "UPDATE deliveries SET lease_owner = $2, lease_until = $3 WHERE message_id IN ( \
               SELECT message_id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
               AND (lease_owner IS NULL OR lease_until < $1) ORDER BY next_attempt_at LIMIT $4 \
               FOR UPDATE SKIP LOCKED) \
             RETURNING message_id, url, attempts, next_attempt_at",
            &[&millis(now), &owner, &millis(lease_until), &(limit.min(i64::MAX as usize) as i64)],
        )
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| Ok((get::<String>(row, 0)?, get::<String>(row, 1)?, get::<i64>(row, 2)?, get::<i64>(row, 3)?)))
            .collect::<Result<Vec<_>>>()?;
        claimed.sort_by(|a, b| a.3.cmp(&b.3).then_with(|| a.0.cmp(&b.0)));
        let ids: Vec<&str> = claimed.iter().map(|(id, ..)| id.as_str()).collect();
        let messages =
            query(&transaction, &format!("SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE m.id = ANY($1)"), &[&ids])
                .await?;
        let mut messages: HashMap<String, Message> = messages
            .iter()
            .map(|row| message_from_row(row).map(|message| (message.id.clone(), message)))
            .collect::<Result<_>>()?;
        transaction.commit().await.map_err(database)?;
        let mut deliveries = Vec::with_capacity(claimed.len());
        for (message_id, url, attempts, _) in claimed {
            if let Some(message) = messages.remove(&message_id) {
                deliveries.push(Delivery { message, url, attempts: to_u32(attempts) });
            }
        }
        Ok(deliveries)
    }

    async fn delivery_finish(&self, message_id: &str, outcome: &DeliveryOutcome, now: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        let now = millis(now);
        match outcome {
            DeliveryOutcome::Delivered => {
                execute(
                    &client,
                    "UPDATE deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = $2, \
                     lease_owner = NULL, last_error = NULL WHERE message_id = $1 AND status = 'pending'",
                    &[&message_id, &now],
                )
                .await?
            }
            DeliveryOutcome::Retry { at, error } => {
                execute(
                    &client,
                    "UPDATE deliveries SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3, \
                     lease_owner = NULL WHERE message_id = $1 AND status = 'pending'",
                    &[&message_id, &millis(*at), &text(error)],
                )
                .await?
            }
            DeliveryOutcome::Failed { error } => {
                execute(
                    &client,
                    "UPDATE deliveries SET status = 'failed', attempts = attempts + 1, last_error = $2, \
                     lease_owner = NULL WHERE message_id = $1 AND status = 'pending'",
                    &[&message_id, &text(error)],
                )
                .await?
            }
        };
        Ok(())
    }

    async fn message_list(&self, agent_id: &str, user_id: &str, after: i64, limit: usize) -> Result<Vec<Message>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!(
                "SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} \
                 WHERE m.agent_id = $1 AND m.user_id = $2 AND m.seq > $3 ORDER BY m.seq LIMIT $4"
            ),
            &[&agent_id, &user_id, &after, &(limit.min(i64::MAX as usize) as i64)],
        )
        .await?;
        rows_to(&rows, message_from_row)
    }

    async fn job_insert(&self, job: &Job, version: Option<&JobVersion>) -> Result<()> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        crate::batch::insert_jobs(&transaction, [(job, version)]).await?;
        transaction.commit().await.map_err(database)
    }

    async fn jobs_insert_batch(&self, jobs: std::sync::Arc<Vec<(Job, Option<JobVersion>)>>) -> Result<()> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        crate::batch::insert_jobs(&transaction, jobs.iter().map(|(job, version)| (job, version.as_ref()))).await?;
        transaction.commit().await.map_err(database)
    }

    async fn job_get(&self, agent_id: &str, job_id: &str) -> Result<Option<Job>> {
        let client = self.client().await?;
        Ok(get_job(&client, job_id).await?.filter(|job| job.agent_id == agent_id))
    }

    async fn job_list(&self, agent_id: &str, filter: &JobFilter) -> Result<Vec<Job>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE agent_id = $1 AND deleted_at IS NULL \
                 AND ($2::BOOLEAN OR NOT dynamic) AND ($3::TEXT IS NULL OR status = $3) \
                 AND ($4::TEXT IS NULL OR user_id = $4 OR (NOT dynamic AND NOT $8::BOOLEAN)) \
                 AND ($5::TEXT IS NULL OR id > $5) AND ($7::TEXT IS NULL OR name = $7) ORDER BY id LIMIT $6"
            ),
            &[
                &agent_id,
                &filter.include_dynamic,
                &filter.status.map(JobStatus::as_str),
                &filter.user_id,
                &filter.after_id,
                &(filter.limit.min(i64::MAX as usize) as i64),
                &opt_text(filter.name.as_deref()),
                &filter.user_only,
            ],
        )
        .await?;
        rows_to(&rows, |row| job_from_row(row, 0))
    }

    async fn job_update_info(&self, job: &Job) -> Result<bool> {
        let client = self.client().await?;
        let changed = execute(
            &client,
            "UPDATE jobs SET name = $2, description = $3, policy = $4, updated_at = $5, authority = $6 \
             WHERE id = $1 AND deleted_at IS NULL",
            &[
                &job.id,
                &text(&job.name),
                &opt_text(job.description.as_deref()),
                &jsonb(&job.policy.stored()),
                &millis(job.updated_at),
                &job.authority.stored(),
            ],
        )
        .await?;
        Ok(changed > 0)
    }

    async fn job_set_activation(&self, job_id: &str, change: &Activation, now: DateTime<Utc>) -> Result<Option<Job>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        let job = apply_activation(&transaction, job_id, change, millis(now)).await?;
        transaction.commit().await.map_err(database)?;
        Ok(job)
    }

    async fn job_set_active_version(
        &self,
        job_id: &str,
        version_id: &str,
        change: &Activation,
        now: DateTime<Utc>,
    ) -> Result<Option<Job>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        let changed = execute(
            &transaction,
            "UPDATE jobs SET active_version_id = $2 WHERE id = $1 AND deleted_at IS NULL",
            &[&job_id, &version_id],
        )
        .await?;
        if changed == 0 {
            return Ok(None);
        }
        // A new version changes the schedule: slots recorded for the old one do not run.
        cancel_pending(&transaction, job_id, millis(now)).await?;
        let job = apply_activation(&transaction, job_id, change, millis(now)).await?;
        transaction.commit().await.map_err(database)?;
        Ok(job)
    }

    async fn job_delete(&self, agent_id: &str, job_id: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin(&mut client).await?;
        let now = millis(now);
        let changed = execute(
            &transaction,
            "UPDATE jobs SET deleted_at = $3, active = FALSE, status = 'inactive', next_run_at = NULL, \
             updated_at = $3 WHERE id = $1 AND agent_id = $2 AND deleted_at IS NULL",
            &[&job_id, &agent_id, &now],
        )
        .await?;
        if changed > 0 {
            execute(
                &transaction,
                "UPDATE executions SET status = 'cancelled', started_at = $2, completed_at = $2, lease_owner = NULL \
                 WHERE status = 'pending' AND id IN (SELECT id FROM executions WHERE job_id = $1 \
                   AND status = 'pending' ORDER BY id FOR UPDATE)",
                &[&job_id, &now],
            )
            .await?;
        }
        transaction.commit().await.map_err(database)?;
        Ok(changed > 0)
    }

    async fn job_metadata_update(
        &self,
        agent_id: &str,
        job_id: &str,
        metadata: &JsonObject,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Result<Option<JsonObject>> {
        let client = self.client().await?;
        // `||` merges the top-level keys of two objects, the patch winning: a merge in one statement, so two
        // concurrent merges both land.
        let row = query_opt(
            &client,
            "UPDATE jobs SET metadata = CASE WHEN $4::BOOLEAN THEN $3::JSONB ELSE metadata || $3::JSONB END, \
             updated_at = $5 WHERE id = $1 AND agent_id = $2 AND deleted_at IS NULL RETURNING metadata",
            &[&job_id, &agent_id, &jsonb(metadata), &replace, &millis(now)],
        )
        .await?;
        row.map(|row| get_json(&row, 0)).transpose()
    }

    async fn active_job_count(&self, agent_id: &str) -> Result<u64> {
        let client = self.client().await?;
        let row = query_one(
            &client,
            "SELECT COUNT(*) FROM jobs WHERE agent_id = $1 AND active AND deleted_at IS NULL",
            &[&agent_id],
        )
        .await?;
        Ok(get::<i64>(&row, 0)? as u64)
    }

    async fn version_insert(&self, version: &JobVersion) -> Result<()> {
        let client = self.client().await?;
        crate::batch::insert_version(&client, version).await
    }

    async fn version_get(&self, job_id: &str, version_id: &str) -> Result<Option<JobVersion>> {
        let client = self.client().await?;
        Ok(get_version(&client, version_id).await?.filter(|version| version.job_id == job_id))
    }

    async fn version_find(&self, job_id: &str, version: &str) -> Result<Option<JobVersion>> {
        let client = self.client().await?;
        let sql = format!("SELECT {VERSION_COLUMNS} FROM job_versions WHERE job_id = $1 AND version = $2");
        query_opt(&client, &sql, &[&job_id, &version]).await?.map(|row| version_from_row(&row, 0)).transpose()
    }

    async fn version_list(&self, job_id: &str) -> Result<Vec<JobVersion>> {
        let client = self.client().await?;
        let sql = format!("SELECT {VERSION_COLUMNS} FROM job_versions WHERE job_id = $1 ORDER BY created_at, id");
        let rows = query(&client, &sql, &[&job_id]).await?;
        rows_to(&rows, |row| version_from_row(row, 0))
    }

    async fn jobs_due(&self, horizon: DateTime<Utc>, limit: usize) -> Result<Vec<DueJob>> {
        let mut client = self.client().await?;
        // Versions never change: the jobs are read alone (by the head of `jobs_due`), their versions from the cache
        // or by id. The limit applies to jobs before a job without its version is left out, as in SQLite.
        let transaction = PostgresStore::begin_read(&mut client).await?;
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE active AND deleted_at IS NULL AND next_run_at IS NOT NULL \
             AND next_run_at <= $1 ORDER BY next_run_at LIMIT $2"
        );
        let rows = query(&transaction, &sql, &[&millis(horizon), &(limit.min(i64::MAX as usize) as i64)]).await?;
        let jobs = rows_to(&rows, |row| job_from_row(row, 0))?;
        let version_ids: Vec<String> = jobs.iter().filter_map(|job| job.active_version_id.clone()).collect();
        let versions = self.versions.get(&transaction, &version_ids).await?;
        transaction.commit().await.map_err(database)?;
        Ok(jobs
            .into_iter()
            .filter_map(|job| {
                let version = versions.get(job.active_version_id.as_deref()?)?.clone();
                Some(DueJob { job, version })
            })
            .collect())
    }

    async fn next_slot_at(&self) -> Result<Option<DateTime<Utc>>> {
        let client = self.client().await?;
        let row = query_one(
            &client,
            "SELECT MIN(next_run_at) FROM jobs WHERE active AND deleted_at IS NULL AND next_run_at IS NOT NULL",
            &[],
        )
        .await?;
        let millis: Option<i64> = get(&row, 0)?;
        Ok(millis.and_then(DateTime::from_timestamp_millis))
    }

    async fn occurrences_record(&self, records: &[OccurrenceRecord], now: DateTime<Utc>) -> Result<usize> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_bookkeeping(&mut client).await?;
        let applied = crate::batch::record(&transaction, records, now).await?;
        transaction.commit().await.map_err(database)?;
        Ok(applied)
    }

    async fn execution_insert(&self, execution: &Execution) -> Result<()> {
        let client = self.client().await?;
        crate::batch::insert_execution(&client, execution).await
    }

    async fn executions_claim(
        &self,
        horizon: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Execution>> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_bookkeeping(&mut client).await?;
        let claimed = crate::batch::claim(&transaction, horizon, owner, lease_until, now, limit).await?;
        transaction.commit().await.map_err(database)?;
        Ok(claimed)
    }

    async fn execution_start(
        &self,
        id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<StartOutcome> {
        let mut outcomes = self.executions_start(&[(id.to_owned(), now)], owner, lease_until).await?;
        Ok(outcomes.pop().unwrap_or(StartOutcome::Gone))
    }

    async fn executions_start(
        &self,
        starts: &[(String, DateTime<Utc>)],
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<StartOutcome>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_bookkeeping(&mut client).await?;
        let outcomes = crate::batch::start(&transaction, &self.versions, starts, owner, lease_until).await?;
        transaction.commit().await.map_err(database)?;
        Ok(outcomes)
    }

    async fn execution_finish(&self, execution_finish: &ExecutionFinish) -> Result<bool> {
        let recorded = self.executions_finish(std::slice::from_ref(execution_finish)).await?;
        Ok(recorded.first().copied().unwrap_or(false))
    }

    async fn executions_finish(&self, finishes: &[ExecutionFinish]) -> Result<Vec<bool>> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_bookkeeping(&mut client).await?;
        let recorded = crate::batch::finish(&transaction, finishes).await?;
        transaction.commit().await.map_err(database)?;
        Ok(recorded)
    }

    async fn execution_note(&self, id: &str, note: &str) -> Result<bool> {
        let client = self.client().await?;
        let changed = execute(
            &client,
            "UPDATE executions SET error = COALESCE(error || E'\\n', '') || $2 \
             WHERE id = $1 AND status NOT IN ('pending', 'running')",
            &[&id, &note.replace('\0', "\u{fffd}")],
        )
        .await?;
        Ok(changed > 0)
    }

    async fn executions_heartbeat(&self, owner: &str, lease_until: DateTime<Utc>) -> Result<u64> {
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE executions SET lease_until = $2 WHERE lease_owner = $1 AND status = 'running' \
             AND id IN (SELECT id FROM executions WHERE lease_owner = $1 AND status = 'running' \
               ORDER BY id FOR UPDATE SKIP LOCKED)",
            &[&owner, &millis(lease_until)],
        )
        .await
    }

    async fn executions_orphaned(&self, now: DateTime<Utc>, live_owner: Option<&str>) -> Result<Vec<Orphan>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!(
                "SELECT {EXECUTION_COLUMNS}, lease_owner, lease_until FROM executions WHERE status = 'running' \
                 AND (lease_until IS NULL OR lease_until < $1 OR ($2::TEXT IS NOT NULL AND lease_owner IS DISTINCT FROM $2))"
            ),
            &[&millis(now), &live_owner],
        )
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Orphan {
                    execution: execution_from_row(row)?,
                    owner: get(row, EXECUTION_WIDTH)?,
                    lease_until: opt_time(get(row, EXECUTION_WIDTH + 1)?),
                })
            })
            .collect()
    }

    async fn executions_release_claims(&self, owner: &str) -> Result<u64> {
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE executions SET lease_owner = NULL, lease_until = NULL \
             WHERE status = 'pending' AND lease_owner IS NOT NULL AND lease_owner <> $1 \
             AND id IN (SELECT id FROM executions WHERE status = 'pending' AND lease_owner IS NOT NULL \
               AND lease_owner <> $1 ORDER BY id FOR UPDATE)",
            &[&owner],
        )
        .await
    }

    async fn executions_hand_back(&self, owner: &str) -> Result<u64> {
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE executions SET lease_owner = NULL, lease_until = NULL \
             WHERE status = 'pending' AND lease_owner = $1 \
             AND id IN (SELECT id FROM executions WHERE status = 'pending' AND lease_owner = $1 ORDER BY id FOR UPDATE)",
            &[&owner],
        )
        .await
    }

    async fn execution_get(&self, agent_id: &str, execution_id: &str) -> Result<Option<Execution>> {
        let client = self.client().await?;
        Ok(get_execution(&client, execution_id).await?.filter(|execution| execution.agent_id == agent_id))
    }

    async fn execution_list(
        &self,
        job_id: &str,
        status: Option<ExecutionStatus>,
        limit: usize,
        offset: usize,
    ) -> Result<(Vec<Execution>, u64)> {
        let mut client = self.client().await?;
        let transaction = PostgresStore::begin_read(&mut client).await?;
        let status = status.map(ExecutionStatus::as_str);
        let total: i64 = get(
            &query_one(
                &transaction,
                "SELECT COUNT(*) FROM executions WHERE job_id = $1 AND ($2::TEXT IS NULL OR status = $2)",
                &[&job_id, &status],
            )
            .await?,
            0,
        )?;
        let rows = query(
            &transaction,
            &format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE job_id = $1 AND ($2::TEXT IS NULL OR status = $2) \
                 ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
            ),
            &[&job_id, &status, &(limit.min(i64::MAX as usize) as i64), &(offset.min(i64::MAX as usize) as i64)],
        )
        .await?;
        transaction.commit().await.map_err(database)?;
        Ok((rows_to(&rows, execution_from_row)?, total.max(0) as u64))
    }

    async fn execution_list_agent(&self, agent_id: &str, after: Option<&str>, limit: usize) -> Result<Vec<Execution>> {
        let client = self.client().await?;
        let rows = query(
            &client,
            &format!(
                "SELECT {EXECUTION_COLUMNS} FROM executions WHERE agent_id = $1 AND ($2::TEXT IS NULL OR id > $2) \
                 ORDER BY id LIMIT $3"
            ),
            &[&agent_id, &after, &(limit.min(i64::MAX as usize) as i64)],
        )
        .await?;
        rows_to(&rows, execution_from_row)
    }

    async fn execution_latest(&self, job_id: &str) -> Result<Option<Execution>> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM executions WHERE job_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        query_opt(&client, &sql, &[&job_id]).await?.map(|row| execution_from_row(&row)).transpose()
    }

    async fn executions_prune(&self, before: DateTime<Utc>, keep: usize) -> Result<u64> {
        let client = self.client().await?;
        // Rows are locked in id order, so two nodes pruning at once take turns; a row the other already deleted
        // is skipped.
        execute(
            &client,
            "DELETE FROM executions WHERE id IN ( \
               SELECT id FROM executions WHERE id IN ( \
                 SELECT id FROM ( \
                   SELECT id, created_at, status, ROW_NUMBER() OVER (PARTITION BY job_id \
                     ORDER BY created_at DESC, id DESC) AS position FROM executions) ranked \
                 WHERE position > $2 AND created_at < $1 AND status NOT IN ('pending', 'running')) \
               ORDER BY id FOR UPDATE)",
            &[&millis(before), &(keep.min(i64::MAX as usize) as i64)],
        )
        .await
    }

    async fn stats(&self, now: DateTime<Utc>) -> Result<StoreStats> {
        let client = self.client().await?;
        let row = query_one(
            &client,
            // Counting every active job would read all of them: the gauge is PostgreSQL's own count of the entries of
            // `jobs_due` (kept by autovacuum and ANALYZE), counted exactly only before the table was ever analysed.
            "SELECT (SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::BIGINT \
                      ELSE (SELECT COUNT(*) FROM jobs WHERE active AND deleted_at IS NULL AND next_run_at IS NOT NULL) \
                    END FROM pg_class c WHERE c.oid = to_regclass('jobs_due')), \
                    (SELECT COUNT(*) FROM executions WHERE status = 'pending' AND lease_owner IS NULL AND due_at <= $1) \
                    + (SELECT COUNT(*) FROM executions WHERE status = 'pending' AND lease_owner IS NOT NULL \
                      AND due_at <= $1)",
            &[&millis(now)],
        )
        .await?;
        Ok(StoreStats {
            active_jobs: get::<i64>(&row, 0)?.max(0) as u64,
            queue_depth: get::<i64>(&row, 1)?.max(0) as u64,
        })
    }

    async fn overview(&self) -> Result<StoreOverview> {
        let client = self.client().await?;
        let size = query_one(&client, "SELECT pg_database_size(current_database())", &[]).await?;
        let rows = query(
            &client,
            "SELECT lease_owner, COUNT(*) FILTER (WHERE status = 'running'), COUNT(*) FILTER (WHERE status = 'pending'), \
                    MAX(lease_until) \
             FROM executions WHERE lease_owner IS NOT NULL AND status IN ('running', 'pending') \
             GROUP BY lease_owner ORDER BY lease_owner",
            &[],
        )
        .await?;
        let nodes = rows
            .iter()
            .map(|row| {
                Ok(NodeLeases {
                    node: get(row, 0)?,
                    running: get::<i64>(row, 1)?.max(0) as u64,
                    claimed: get::<i64>(row, 2)?.max(0) as u64,
                    lease_until: opt_time(get(row, 3)?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(StoreOverview { database_bytes: get::<i64>(&size, 0)?.max(0) as u64, nodes })
    }

    async fn blob_put(&self, agent_id: &str, hash: &str, bytes: &[u8], now: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO blobs (agent_id, hash, content, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&agent_id, &hash, &bytes, &millis(now)],
        )
        .await?;
        Ok(())
    }

    async fn blob_get(&self, agent_id: &str, hash: &str) -> Result<Option<Vec<u8>>> {
        let client = self.client().await?;
        let row =
            query_opt(&client, "SELECT content FROM blobs WHERE agent_id = $1 AND hash = $2", &[&agent_id, &hash])
                .await?;
        row.map(|row| get(&row, 0)).transpose()
    }

    async fn blobs_existing(&self, agent_id: &str, hashes: &[String]) -> Result<Vec<String>> {
        let client = self.client().await?;
        let rows =
            query(&client, "SELECT hash FROM blobs WHERE agent_id = $1 AND hash = ANY($2)", &[&agent_id, &hashes])
                .await?;
        let found = rows.iter().map(|row| get::<String>(row, 0)).collect::<Result<std::collections::HashSet<_>>>()?;
        Ok(hashes.iter().filter(|hash| found.contains(*hash)).cloned().collect())
    }

    async fn idempotency_get(&self, scope: &str, key: &str) -> Result<Option<(u16, String)>> {
        let client = self.client().await?;
        let row = query_opt(
            &client,
            "SELECT status, body FROM idempotency WHERE agent_id = $1 AND key = $2",
            &[&scope, &key],
        )
        .await?;
        let Some(row) = row else { return Ok(None) };
        let status = u16::try_from(get::<i64>(&row, 0)?)
            .map_err(|_| StoreError::Database("an idempotency status out of range".into()))?;
        Ok(Some((status, get(&row, 1)?)))
    }

    async fn idempotency_put(&self, scope: &str, key: &str, status: u16, body: &str, now: DateTime<Utc>) -> Result<()> {
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO idempotency (agent_id, key, status, body, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING",
            &[&scope, &key, &i64::from(status), &text(body), &millis(now)],
        )
        .await?;
        Ok(())
    }

    async fn idempotency_prune(&self, before: DateTime<Utc>) -> Result<u64> {
        let client = self.client().await?;
        execute(
            &client,
            "DELETE FROM idempotency WHERE (agent_id, key) IN (SELECT agent_id, key FROM idempotency \
             WHERE created_at < $1 ORDER BY agent_id, key FOR UPDATE)",
            &[&millis(before)],
        )
        .await
    }
}
