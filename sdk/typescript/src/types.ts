/**
 * The SDK's public types, written in terms of the types generated from the server's OpenAPI document
 * (`src/generated/openapi.ts`), so they follow the server when it changes: configurations and schedules going in,
 * jobs, versions, executions, users, data entries and products coming back, and what job code sees while it runs.
 *
 * @module
 */

import type { components } from './generated/openapi.js';
import type { JobInstance } from './jobs.js';

/** The schemas of the server's OpenAPI document. */
type Schemas = components['schemas'];

type WireSchedule = Schemas['Schedule'];
type WireOnceSchedule = Extract<WireSchedule, { type: 'once' }>;
type WireIntervalSchedule = Extract<WireSchedule, { type: 'interval' }>;
type WireCronSchedule = Extract<WireSchedule, { type: 'cron' }>;

/** Every key of every member of a union. */
type KeysOfUnion<T> = T extends unknown ? keyof T : never;

/**
 * A union whose members also declare the other members' keys as absent (`?: undefined`), so a property of one
 * member can be read on the union (`job.activeVersion?.schedule?.executeAt`) and is `undefined` on the others.
 */
export type Exclusive<T, All = T> = T extends unknown
  ? T & { [Key in Exclude<KeysOfUnion<All>, keyof T>]?: undefined }
  : never;

// ---------------------------------------------------------------------------------------------------------------
// Going in: schedules and job configurations
// ---------------------------------------------------------------------------------------------------------------

/** An IANA time zone name the server knows (`America/New_York`, `Europe/Paris`, `UTC` …). */
export type TimeZone = NonNullable<WireCronSchedule['timezone']>;

/**
 * Runs once at `executeAt`: a `Date`, an RFC 3339 instant (`'2025-12-25T09:00:00Z'`) or Unix epoch milliseconds.
 * A past instant fires at once. After its run the job is `completed` and inactive.
 */
export type OnceSchedule = Omit<WireOnceSchedule, 'executeAt'> & {
  /** When to run. */
  executeAt: Date | WireOnceSchedule['executeAt'];
};

/** Runs every `seconds` seconds on a grid anchored at activation (a slow run never shifts the grid). */
export type IntervalSchedule = WireIntervalSchedule;

/**
 * Runs whenever the cron `expression` matches the wall clock of `timezone` (UTC by default): 5 fields, 6 with a
 * leading seconds field, or a nickname such as `@daily`.
 */
export type CronSchedule = Omit<WireCronSchedule, 'timezone'> & {
  /** An IANA zone name; any string is accepted here and the server refuses one it does not know. */
  timezone?: TimeZone | (string & {}) | null;
};

/** When a job runs: `once`, `interval` or `cron`, told apart by `type`. */
export type Schedule = OnceSchedule | IntervalSchedule | CronSchedule;

/** Retries after a failed first attempt: `maxAttempts: 3` means at most 4 executions. */
export type RetryPolicy = Schemas['Retry'];

/** Overlap, misfire and failure policy of a recurring job. */
export type JobPolicy = Schemas['Policy'];

/**
 * A job's metadata: any JSON object. Job code reads it as `job.metadata` — it is how values reach the job, which
 * cannot see the variables of the code that created it. Typed loosely (`any` fields) so that job code can read
 * what it put there without casts.
 */
export type JobMetadata = Record<string, any>;

/** The options of a job common to `Jobs.create` and pre-defined job files. */
type JobOptions = Pick<Schemas['CreateJob'], 'description' | 'timeout' | 'retry'>;

/**
 * The configuration of a dynamic job (`Jobs.create`).
 *
 * `execute` is sent to the server as its source text (`execute.toString()`): an arrow function, a `function`
 * expression or a method (`async execute(job) {…}`). It runs later in Sundial's sandbox and cannot see the variables
 * around it; pass values in `metadata`. A name it uses that it neither declares nor finds among the sandbox's
 * globals makes `Jobs.create` fail with code `unresolved_reference`, naming it.
 */
export type JobConfig = JobOptions &
  Pick<Schemas['CreateJob'], 'activate' | 'dedupKey' | 'policy' | 'version'> & {
    /** A name for people; `reminder-${Date.now()}`, `followup-ticket-${ticketId}`. */
    name: string;
    /** When the job runs. */
    schedule: Schedule;
    /** Data the job's code reads as `job.metadata`. */
    metadata?: JobMetadata | null;
    /** The job's code, run in the sandbox with the job as its argument; what it returns is the run's result. */
    execute: (job: RunningJob) => unknown;
  };

/**
 * A pre-defined job: the default export of a job file that `sundial deploy <dir>` uploads. Such a job has no user:
 * use `User.get(userId)` (with the id from `metadata`) instead of `job.user()`. Unlike `Jobs.create`, the whole
 * module is the unit, so `execute` may use the module's other declarations.
 */
export type JobDefinition = JobOptions & {
  /** The job's name; deploying a file with the same name again makes a new version of that job. */
  name: string;
  /** When the job runs. */
  schedule: Schedule;
  /** The job's default metadata. */
  metadata?: JobMetadata | null;
  /** The job's code. */
  execute: (job: PredefinedRunningJob) => unknown;
};

// ---------------------------------------------------------------------------------------------------------------
// Coming back: jobs, versions, executions
// ---------------------------------------------------------------------------------------------------------------

/** A schedule as the server answers it (`executeAt` always an RFC 3339 string). */
export type ScheduleView = Exclusive<WireSchedule>;

/** An immutable version of a job's code, schedule and options. `version` is a semver string (`1.0.0` first). */
export type JobVersion = Omit<Schemas['JobVersion'], 'schedule'> & {
  /** Its schedule. */
  schedule: ScheduleView;
};

/** A job as the server answers it: `GET /v1/agents/{agentId}/jobs/{jobId}`. */
export type JobData = Omit<Schemas['Job'], 'schedule' | 'activeVersion' | 'versions' | 'metadata'> & {
  /** The active version's schedule. */
  schedule?: ScheduleView | null;
  /** The active version. */
  activeVersion?: JobVersion | null;
  /** Every version, oldest first. */
  versions: JobVersion[];
  /** The job's metadata. */
  metadata: JobMetadata;
};

/** One fire instant, in UTC and in the schedule's zone. */
export type NextRun = Schemas['Run'];

/** A job's status: `active`, `paused`, `failed`, `inactive` or `completed`. */
export type JobStatus = Schemas['JobStatus'];

/** One attempt to run a job: a scheduled slot, a manual trigger or a retry. */
export type JobExecution = Schemas['Execution'];

/** An execution's status: `pending`, `running`, `completed`, `failed`, `timeout`, `cancelled`, `abandoned`,
 * `killed` or `skipped`. */
export type ExecutionStatus = Schemas['ExecutionStatus'];

/** Why an execution ran: `schedule`, `manual` or `retry`. */
export type ExecutionTrigger = Schemas['ExecutionTrigger'];

/** What `delete()` did: a dynamic job is deleted; a pre-defined job with versions is deactivated instead. */
export type Deletion = Schemas['Deletion'];

/** A schedule said back by the server: in words, with its zone, its next runs and daylight saving notes. */
export type SchedulePreview = Omit<Schemas['SchedulePreview'], 'schedule'> & {
  /** The schedule, as the server reads it. */
  schedule: ScheduleView;
};

/** The body of every error answer of the server: `{code, message, field?, statusCode}`. */
export type ErrorBody = Schemas['Error'];

// ---------------------------------------------------------------------------------------------------------------
// Pre-defined jobs: what `sundial deploy` did
// ---------------------------------------------------------------------------------------------------------------

/** What a deploy did with a job file: `created` (a new job), `updated` (a new version) or `unchanged`. */
export type DeployAction = Schemas['DeployAction'];

/** What a deploy did with one job file: `path`, `name`, `jobId`, `action`, `version` and whether it is `active`. */
export type DeployedJob = Schemas['DeployedJob'];

/**
 * The answer of a deploy (`POST /v1/agents/{agentId}/deploy`, and what `sundial deploy <dir> --json` prints): one
 * {@link DeployedJob} per file.
 */
export type DeployResult = Schemas['Deployed'];

// ---------------------------------------------------------------------------------------------------------------
// Users, messages, data, products
// ---------------------------------------------------------------------------------------------------------------

/**
 * A message to a user's conversation, told apart by `type`: `{type: 'text', text}`, `{type: 'image', image,
 * mediaType}` or `{type: 'file', data, mediaType}` (an image or a file as a URL or base64 data).
 */
export type UserMessage = Schemas['MessageContent'];

/** The content of a message: the same shape as {@link UserMessage}, which is what was sent. */
export type MessageContent = Schemas['MessageContent'];

/**
 * A message stored in a user's conversation: `seq` (its place), `id` (`msg_…`), `userId`, `content`, `executionId`
 * (the run that sent it; `null` for one sent from outside a job), `createdAt` and `delivery` (to the agent's webhook).
 */
export type StoredMessage = Schemas['Message'];

/** A user's data record: `userId` and their data fields. */
export type UserRecord = Schemas['User'];

/** An entry of a data collection: `id`, `data` (its fields), `score` in search results. */
export type DataEntry = Schemas['Entry'];

/** Pagination of a page of entries or products, in both of lua-cli's spellings. */
export type Pagination = Schemas['Pagination'];

/**
 * A list of entries or products that is also reachable as `.data` (the same array), so that both the Jobs API
 * document's `tickets.data[0]` and lua-cli's `tickets[0]` work.
 */
export type ListResult<Item> = Item[] & {
  /** The same array. */
  data: Item[];
  /** Where the page is (`Data.get`, `Products.get`). */
  pagination?: Pagination;
};

/** A product: `id`, `name`, `price` and any other fields. */
export type Product = Schemas['Product'] & Partial<Pick<Schemas['ProductFields'], 'name' | 'price'>>;

/** A new product: `name` (required), `price`, an optional `id` and any other fields. */
export type ProductInput = Schemas['ProductInput'];

/** Fields to merge into a product. */
export type ProductPatch = Schemas['ProductPatch'];

/** A data filter (lua-cli's `LuaQuery`): `{field: value}`, or operators such as `{price: {$gt: 10}}`. */
export type DataFilter = Record<string, any>;

// ---------------------------------------------------------------------------------------------------------------
// What job code sees while it runs
// ---------------------------------------------------------------------------------------------------------------

/** The run in progress, as job code sees it in `job.execution`. */
export interface ExecutionContext {
  /** The execution (`exe_…`). */
  id: string;
  /** The occurrence (slot or trigger) it is an attempt of; retries share it — use it for idempotency. */
  occurrenceId: string;
  /** The slot it runs for, for a scheduled run. */
  scheduledFor?: string | null;
  /** 0 for the first attempt. */
  retryCount: number;
  /** Why it runs. */
  trigger: ExecutionTrigger;
}

/**
 * The job as its own code sees it while it runs: a {@link JobInstance} plus the run in progress. `job.user()` is the
 * user of the conversation that created a dynamic job.
 */
export type RunningJob = JobInstance & {
  /** The run in progress. */
  readonly execution: ExecutionContext;
};

/** A pre-defined job while it runs: it has no `user()` (use `User.get(userId)`). */
export type PredefinedRunningJob = Omit<RunningJob, 'user'>;

/** A response of the sandbox's `fetch` (a subset of the web's `Response`). */
export interface JobResponse {
  /** The HTTP status. */
  readonly status: number;
  /** Its reason phrase. */
  readonly statusText: string;
  /** Whether the status is 2xx. */
  readonly ok: boolean;
  /** The final URL. */
  readonly url: string;
  /** Whether a redirect was followed. */
  readonly redirected: boolean;
  /** The response headers. */
  readonly headers: { get(name: string): string | null; has(name: string): boolean };
  /** Whether the body was read. */
  readonly bodyUsed: boolean;
  /** The body as text. */
  text(): Promise<string>;
  /** The body parsed as JSON. */
  json(): Promise<unknown>;
  /** The body's bytes. */
  arrayBuffer(): Promise<ArrayBuffer>;
}

/**
 * The sandbox's `fetch`: only to hosts on the agent's allow-list, never to loopback or private addresses; anything
 * else fails with a clear error.
 */
export type JobFetch = (
  input: string | URL,
  init?: { method?: string; headers?: Record<string, string> | Array<[string, string]>; body?: string },
) => Promise<JobResponse>;

