//! The PostgreSQL schema as migrations, applied in order once each; the index + 1 is the schema version. Append only.
//!
//! The tables mirror the SQLite store's: times are `BIGINT` Unix milliseconds, JSON is `JSONB`, flags are `BOOLEAN`,
//! and text that is compared or sorted uses the `"C"` collation so ordering is byte-wise, as in SQLite.

/// Every migration, oldest first.
pub(crate) const MIGRATIONS: &[&str] =
    &[CORE, DATA, KEY_SCOPES, JOB_DEDUP, MESSAGE_ORIGIN, JOB_AUTHORITY, FORGET_REVOKED_HASHES, CLAIM_INDEXES];

/// Claims read only what they can claim: the pending executions nobody claimed, by due time, and the claims that may
/// have expired, by lease end — never the claimed executions waiting for their instant, however many. A node finds
/// its own claims and runs through these and `executions_running` (bounded by the work in flight), so executions no
/// longer carry an index by lease owner, which every claim and start wrote to. Jobs leave room in their pages for
/// updates that change no indexed column (failure counts) to stay on the page.
const CLAIM_INDEXES: &str = r#"
CREATE INDEX executions_unclaimed ON executions (due_at) WHERE status = 'pending' AND lease_owner IS NULL;
CREATE INDEX executions_claimed ON executions (lease_until) WHERE status = 'pending' AND lease_owner IS NOT NULL;
DROP INDEX executions_pending;
DROP INDEX executions_leased;
ALTER TABLE jobs SET (fillfactor = 80);
"#;

/// A revoked key's hash is of no use to anyone but a guesser: forget it.
const FORGET_REVOKED_HASHES: &str = "UPDATE api_keys SET hash = 'revoked:' || id WHERE revoked_at IS NOT NULL;";

/// What a job's code may reach (NULL: the agent; otherwise the scope bits of its user's authority). Jobs made for a
/// user before authority was recorded act for that user with every scope: the narrower reading of the past.
const JOB_AUTHORITY: &str =
    "ALTER TABLE jobs ADD COLUMN authority BIGINT; UPDATE jobs SET authority = 7 WHERE user_id IS NOT NULL;";

/// Messages name the run that sent them: its job and occurrence besides the execution.
const MESSAGE_ORIGIN: &str = r#"
ALTER TABLE messages ADD COLUMN job_id TEXT COLLATE "C";
ALTER TABLE messages ADD COLUMN occurrence_id TEXT COLLATE "C";
UPDATE messages m SET job_id = e.job_id, occurrence_id = e.occurrence_id FROM executions e WHERE e.id = m.execution_id;
"#;

/// Idempotent creation: a `dedupKey` of one agent and user, bound to the job it created.
const JOB_DEDUP: &str = r#"
CREATE TABLE job_dedup (
    agent_id TEXT COLLATE "C" NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    dedup_key TEXT COLLATE "C" NOT NULL,
    job_id TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, user_id, dedup_key)
);
"#;

/// User tokens with narrower rights and an expiry.
const KEY_SCOPES: &str =
    "ALTER TABLE api_keys ADD COLUMN scopes TEXT; ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;";

/// Agents, keys, users and messages, jobs, versions, occurrences and executions, blobs and idempotency keys.
const CORE: &str = r#"
CREATE TABLE agents (
    id TEXT COLLATE "C" PRIMARY KEY,
    env JSONB NOT NULL DEFAULT '{}',
    settings JSONB NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    agent_id TEXT COLLATE "C",
    user_id TEXT COLLATE "C",
    admin BOOLEAN NOT NULL,
    hash TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE TABLE users (
    agent_id TEXT COLLATE "C" NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    data JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, user_id)
);
CREATE TABLE messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT COLLATE "C" NOT NULL UNIQUE,
    agent_id TEXT COLLATE "C" NOT NULL,
    user_id TEXT COLLATE "C" NOT NULL,
    content JSONB NOT NULL,
    execution_id TEXT COLLATE "C",
    dedupe_key TEXT COLLATE "C" UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE INDEX messages_by_user ON messages (agent_id, user_id, seq);
CREATE TABLE deliveries (
    message_id TEXT COLLATE "C" PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    url TEXT NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT COLLATE "C",
    lease_until BIGINT,
    last_error TEXT,
    delivered_at BIGINT
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE TABLE jobs (
    id TEXT COLLATE "C" PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    description TEXT,
    dynamic BOOLEAN NOT NULL,
    user_id TEXT COLLATE "C",
    active BOOLEAN NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    metadata JSONB NOT NULL,
    policy JSONB NOT NULL,
    active_version_id TEXT COLLATE "C",
    anchor_at BIGINT NOT NULL,
    next_run_at BIGINT,
    last_run_at BIGINT,
    consecutive_failures BIGINT NOT NULL DEFAULT 0,
    missed_slots BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX jobs_by_agent ON jobs (agent_id, id) WHERE deleted_at IS NULL;
CREATE INDEX jobs_due ON jobs (next_run_at) WHERE active AND deleted_at IS NULL AND next_run_at IS NOT NULL;
CREATE TABLE job_versions (
    id TEXT COLLATE "C" PRIMARY KEY,
    job_id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    description TEXT,
    code TEXT NOT NULL,
    schedule JSONB NOT NULL,
    timeout_seconds BIGINT NOT NULL,
    retry JSONB,
    metadata JSONB,
    created_at BIGINT NOT NULL,
    kind TEXT COLLATE "C" NOT NULL DEFAULT 'function',
    UNIQUE (job_id, version)
);
CREATE TABLE occurrences (
    id TEXT COLLATE "C" PRIMARY KEY,
    job_id TEXT COLLATE "C" NOT NULL,
    scheduled_for BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (job_id, scheduled_for)
);
CREATE TABLE executions (
    id TEXT COLLATE "C" PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    job_id TEXT COLLATE "C" NOT NULL,
    version_id TEXT COLLATE "C" NOT NULL,
    occurrence_id TEXT COLLATE "C" NOT NULL,
    status TEXT COLLATE "C" NOT NULL,
    trigger TEXT COLLATE "C" NOT NULL,
    scheduled_for BIGINT,
    due_at BIGINT NOT NULL,
    started_at BIGINT,
    completed_at BIGINT,
    duration_ms BIGINT,
    result JSONB,
    error TEXT,
    retry_count BIGINT NOT NULL,
    logs JSONB NOT NULL DEFAULT '[]',
    lease_owner TEXT COLLATE "C",
    lease_until BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX executions_by_job ON executions (job_id, created_at DESC, id DESC);
CREATE INDEX executions_by_agent ON executions (agent_id, id);
CREATE INDEX executions_pending ON executions (due_at) WHERE status = 'pending';
CREATE INDEX executions_running ON executions (job_id) WHERE status = 'running';
CREATE INDEX executions_leased ON executions (lease_owner) WHERE status IN ('pending', 'running');
CREATE TABLE idempotency (
    agent_id TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    status BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, key)
);
CREATE INDEX idempotency_by_age ON idempotency (created_at);
CREATE TABLE blobs (
    agent_id TEXT COLLATE "C" NOT NULL,
    hash TEXT COLLATE "C" NOT NULL,
    content BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (agent_id, hash)
);
"#;

/// `Data` collections and `Products`, each row with its search lexemes as a `tsvector` under a GIN index.
///
/// Search does not use PostgreSQL's text parser (its word boundaries depend on the server's locale): the store splits
/// the indexed text into words itself, as [`sundial_store::data::search_terms`] splits a query, and `search_lexeme`
/// stems each word with the built-in Snowball English stemmer — the words it calls stop words are kept, unstemmed.
const DATA: &str = r#"
CREATE FUNCTION search_lexeme(word TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT COALESCE((ts_lexize('pg_catalog.english_stem', word))[1], word) $$;
CREATE FUNCTION search_vector(words TEXT[]) RETURNS TSVECTOR
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT array_to_tsvector(ARRAY(SELECT DISTINCT search_lexeme(word) FROM unnest(words) AS word
        WHERE word <> '')) $$;
CREATE TABLE data_entries (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    collection TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    data JSONB NOT NULL,
    search_text TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    lexemes TSVECTOR NOT NULL,
    UNIQUE (agent_id, collection, id)
);
CREATE INDEX data_entries_by_collection ON data_entries (agent_id, collection, seq);
CREATE INDEX data_entries_search ON data_entries USING GIN (lexemes);
CREATE TABLE products (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agent_id TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    fields JSONB NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    lexemes TSVECTOR NOT NULL,
    UNIQUE (agent_id, id)
);
CREATE INDEX products_search ON products USING GIN (lexemes);
"#;
