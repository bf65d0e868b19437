/**
 * The seed's `Jobs` API over Sundial's native routes: `Jobs.create` (the job's code is `execute.toString()`),
 * `Jobs.getJob`, `Jobs.getAll`, and the {@link JobInstance} they answer, whose methods change the job on the server.
 *
 * @module
 */

import { type CallOptions, type Connection, segment } from './connection.js';
import { SundialError, invalidConfig } from './errors.js';
import type {
  Deletion,
  JobConfig,
  JobData,
  JobExecution,
  JobMetadata,
  JobVersion,
  NextRun,
  Schedule,
  SchedulePreview,
} from './types.js';
import { type UserInstance, UserApi } from './users.js';

/** Where an API object gets its connection for each call. */
export type ConnectionSource = () => Connection;

/** The connection and user a job instance was read with; its methods act the same way. */
interface Actor {
  connection: Connection;
  userId: string | undefined;
}

/** Options of `Jobs.getAll`. */
export interface GetAllOptions extends CallOptions {
  /** Include dynamic jobs (created with `Jobs.create`). Default: false, as in the Jobs API. */
  includeDynamic?: boolean;
}

/**
 * A job on the server, as `Jobs.create`, `Jobs.getJob` and `Jobs.getAll` answer it. Its properties are a snapshot
 * taken when it was read (`activate`, `deactivate`, `updateMetadata` and `refresh` update them); its methods act on
 * the server with the credentials and user it was read with.
 */
export class JobInstance {
  /** The job's id (`job_…`). */
  readonly id: string;
  /** The job's name. */
  name: string;
  /** The job's metadata. */
  metadata: JobMetadata;
  /** The active version, with its schedule, timeout and retry. */
  activeVersion: JobVersion | null;
  /** The full job as the server answered it, with every version. */
  data: JobData;
  readonly #actor: Actor;

  /** @internal Made by `Jobs`; not meant to be constructed directly. */
  constructor(data: JobData, actor: Actor) {
    this.id = data.id;
    this.name = data.name;
    this.metadata = data.metadata ?? {};
    this.activeVersion = data.activeVersion ?? null;
    this.data = data;
    this.#actor = actor;
  }

  /** The schedule in words, with its zone: `"every weekday at 09:00 (America/New_York)"`. */
  get scheduleDescription(): string | undefined {
    return this.data.scheduleDescription ?? undefined;
  }

  /** The next fire instants (up to 3), in UTC and in the schedule's zone; empty when the job will not fire. */
  get nextRuns(): NextRun[] {
    return this.data.nextRuns ?? [];
  }

  /**
   * The user who created this dynamic job. A job without a user (a pre-defined job, or one created with no user in
   * context) rejects with `job <name> has no user context; use User.get(userId)` (code `no_user_context`).
   */
  async user(options?: CallOptions): Promise<UserInstance> {
    const userId = this.data.userId;
    if (typeof userId !== 'string' || userId.length === 0) {
      throw new SundialError({
        status: 0,
        code: 'no_user_context',
        message: `job ${this.name} has no user context; use User.get(userId)`,
      });
    }
    return new UserApi(() => this.#actor.connection).get(userId, options);
  }

  /**
   * Merges `patch` into the job's metadata on the server (durable, visible to the next run) and answers the
   * metadata after the change.
   */
  async updateMetadata(patch: JobMetadata, options?: CallOptions): Promise<JobMetadata> {
    if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) {
      throw invalidConfig('updateMetadata: patch must be a JSON object', 'patch');
    }
    const answer = await this.#request<{ metadata: JobMetadata }>('PATCH', '/metadata', patch, true, options);
    this.metadata = answer.metadata;
    this.data = { ...this.data, metadata: answer.metadata };
    return this.metadata;
  }

  /**
   * Runs the job now, outside its schedule (also when it is inactive), on the active version or on `versionId` (an
   * id or a semver string). Answers the execution at once, while it is `pending` or `running`.
   */
  async trigger(versionId?: string, options?: CallOptions): Promise<JobExecution> {
    const body = versionId === undefined ? {} : { versionId };
    return this.#request<JobExecution>('POST', '/trigger', body, false, options);
  }

  /**
   * Deletes the job: a dynamic job is gone (every route answers 404 for it); a pre-defined job with versions is
   * deactivated instead (`{deleted: false, deactivated: true}`).
   */
  async delete(options?: CallOptions): Promise<Deletion> {
    return this.#request<Deletion>('DELETE', '', undefined, true, options);
  }

  /** Activates the job: its schedule fires again. Answers this instance, refreshed. */
  async activate(options?: CallOptions): Promise<this> {
    return this.#refreshFrom(await this.#request<JobData>('POST', '/activate', undefined, true, options));
  }

  /** Deactivates the job: its schedule stops firing (a manual `trigger()` still runs it). Answers this instance,
   * refreshed. */
  async deactivate(options?: CallOptions): Promise<this> {
    return this.#refreshFrom(await this.#request<JobData>('POST', '/deactivate', undefined, true, options));
  }

  /** Reads the job again from the server. Answers this instance, refreshed. */
  async refresh(options?: CallOptions): Promise<this> {
    return this.#refreshFrom(await this.#request<JobData>('GET', '', undefined, true, options));
  }

  /** The job's executions, newest first (at most `limit`, default 50). */
  async executions(options?: CallOptions & { limit?: number; status?: JobExecution['status'] }): Promise<JobExecution[]> {
    const answer = await this.#actor.connection.request<{ executions: JobExecution[] }>({
      method: 'GET',
      path: `/jobs/${segment(this.id, 'jobId')}/executions`,
      query: { limit: options?.limit, status: options?.status },
      idempotent: true,
      userId: this.#actor.userId,
      options,
    });
    return answer.executions;
  }

  #refreshFrom(data: JobData): this {
    this.name = data.name;
    this.metadata = data.metadata ?? {};
    this.activeVersion = data.activeVersion ?? null;
    this.data = data;
    return this;
  }

  #request<Answer>(
    method: 'GET' | 'POST' | 'PATCH' | 'DELETE',
    suffix: string,
    body: unknown,
    idempotent: boolean,
    options: CallOptions | undefined,
  ): Promise<Answer> {
    return this.#actor.connection.request<Answer>({
      method,
      path: `/jobs/${segment(this.id, 'jobId')}${suffix}`,
      body,
      idempotent,
      userId: this.#actor.userId,
      options,
    });
  }
}

/**
 * The seed's `Jobs`: create dynamic jobs, read one, list them. Each call acts for the user resolved at that moment:
 * the client's `userId`, else the surrounding `withUser`'s, else the user of a user token, else none.
 */
export class JobsApi {
  readonly #source: ConnectionSource;

  /** @internal Made by `createClient` and for the default `Jobs`. */
  constructor(source: ConnectionSource) {
    this.#source = source;
  }

  /**
   * Creates a dynamic job and answers it. Its code is `config.execute.toString()`, run later in the sandbox with the
   * job as its argument. A name the function uses but neither declares nor finds among the sandbox's globals (a
   * variable of the code around it) rejects with code `unresolved_reference`, naming it: pass values in `metadata`.
   *
   * With `dedupKey`, a repeated create answers the same job (and the call is retried on network errors).
   */
  async create(config: JobConfig, options?: CallOptions): Promise<JobInstance> {
    const body = createBody(config);
    const actor = this.#actor();
    const data = await actor.connection.request<JobData>({
      method: 'POST',
      path: '/jobs',
      body,
      idempotent: typeof config.dedupKey === 'string',
      userId: actor.userId,
      options,
    });
    return new JobInstance(data, actor);
  }

  /** Reads the job `jobId`; rejects with code `job_not_found` (404) when it does not exist or is not visible. */
  async getJob(jobId: string, options?: CallOptions): Promise<JobInstance> {
    const actor = this.#actor();
    const data = await actor.connection.request<JobData>({
      method: 'GET',
      path: `/jobs/${segment(jobId, 'jobId')}`,
      idempotent: true,
      userId: actor.userId,
      options,
    });
    return new JobInstance(data, actor);
  }

  /**
   * Lists the agent's jobs (every page). Dynamic jobs are left out unless `includeDynamic` is true; acting for a
   * user, only that user's dynamic jobs are listed.
   */
  async getAll(options: GetAllOptions = {}): Promise<JobInstance[]> {
    const actor = this.#actor();
    const jobs: JobInstance[] = [];
    let cursor: string | undefined;
    do {
      const page: { jobs: JobData[]; nextCursor?: string | null } = await actor.connection.request({
        method: 'GET',
        path: '/jobs',
        query: { includeDynamic: options.includeDynamic === true, limit: 1000, cursor },
        idempotent: true,
        userId: actor.userId,
        options,
      });
      for (const data of page.jobs) jobs.push(new JobInstance(data, actor));
      cursor = page.nextCursor ?? undefined;
    } while (cursor !== undefined);
    return jobs;
  }

  /** Reads one execution, with its captured console lines. */
  async getExecution(executionId: string, options?: CallOptions): Promise<JobExecution> {
    const actor = this.#actor();
    return actor.connection.request<JobExecution>({
      method: 'GET',
      path: `/executions/${segment(executionId, 'executionId')}`,
      idempotent: true,
      userId: actor.userId,
      options,
    });
  }

  /**
   * Asks the server what `schedule` does before a job exists: in words with its zone, the next `n` runs (default
   * 10) in UTC and local time, and daylight saving notes.
   */
  async preview(schedule: Schedule, options?: CallOptions & { n?: number }): Promise<SchedulePreview> {
    const actor = this.#actor();
    return actor.connection.request<SchedulePreview>({
      method: 'POST',
      path: '/preview',
      body: { schedule: wireSchedule(schedule), n: options?.n },
      idempotent: true,
      userId: actor.userId,
      options,
    });
  }

  #actor(): Actor {
    const connection = this.#source();
    return { connection, userId: connection.actingUserId() };
  }
}

/** The body of `POST /v1/agents/{agentId}/jobs` for `config`. */
function createBody(config: JobConfig): Record<string, unknown> {
  if (config === null || typeof config !== 'object') throw invalidConfig('Jobs.create: config must be an object');
  if (typeof config.name !== 'string') throw invalidConfig('name: is required and must be a string', 'name');
  const body: Record<string, unknown> = {
    name: config.name,
    schedule: wireSchedule(config.schedule),
    code: functionSource(config.execute),
    dynamic: true,
  };
  const optional = ['description', 'metadata', 'timeout', 'retry', 'activate', 'dedupKey', 'policy', 'version'] as const;
  for (const key of optional) {
    if (config[key] !== undefined) body[key] = config[key];
  }
  return body;
}

/** A schedule as the server reads it: a `Date` becomes an RFC 3339 instant. */
export function wireSchedule(schedule: Schedule): Record<string, unknown> {
  if (schedule === null || typeof schedule !== 'object') {
    throw invalidConfig('schedule: is required and must be an object {type, …}', 'schedule');
  }
  if (schedule.type === 'once' && schedule.executeAt instanceof Date) {
    if (Number.isNaN(schedule.executeAt.getTime())) {
      throw invalidConfig('schedule.executeAt: is an invalid Date', 'schedule.executeAt');
    }
    return { ...schedule, executeAt: schedule.executeAt.toISOString() };
  }
  return { ...schedule };
}

/**
 * The source text of a job's function, as the server reads it: an arrow function, a `function` expression or a
 * method (`async execute(job) {…}`).
 */
export function functionSource(execute: unknown): string {
  if (typeof execute !== 'function') {
    throw invalidConfig('execute: is required and must be a function', 'execute');
  }
  const source = Function.prototype.toString.call(execute);
  if (/\{\s*\[native code\]\s*\}\s*$/.test(source)) {
    throw invalidConfig(
      'execute: is a built-in or bound function, whose source cannot be sent; pass a function written in place',
      'execute',
    );
  }
  if (/^class\b/.test(source)) {
    throw invalidConfig('execute: is a class, not a function', 'execute');
  }
  return source;
}
