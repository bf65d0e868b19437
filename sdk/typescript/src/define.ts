/**
 * Pre-defined jobs (`defineJob`, and lua-cli's `LuaJob` spelling), the tool shape of the Jobs API's examples
 * (`LuaTool`), and `env`, which only job code can call.
 *
 * A job file is a module whose default export (`module.exports` in CommonJS) is a job definition;
 * `sundial deploy <dir>` uploads every `*.js`, `*.mjs` and `*.cjs` file below `dir`. The server evaluates the file
 * itself: there `import … from '@sundial/jobs'` (or `require('@sundial/jobs')`) reaches its built-in module, which
 * provides `defineJob`, `LuaJob`, `User`, `Data`, `Products`, `Jobs`, `env` and `fetch` — not the Node-only parts of
 * this package (`createClient`, `withUser`, `SundialError` …), which a job file cannot import.
 *
 * @module
 */

import { SundialError } from './errors.js';
import type { JobDefinition, JobMetadata, RetryPolicy, Schedule } from './types.js';

/**
 * Declares a pre-defined job: the default export of a job file for `sundial deploy`. Answers `definition`
 * unchanged; its point is the type, which an editor uses to check the definition and complete `job` inside
 * `execute`.
 *
 * @example
 * // jobs/health-check.mjs
 * import { defineJob, User } from '@sundial/jobs';
 *
 * export default defineJob({
 *   name: 'health-check',
 *   description: 'Tell the on-call user that the system is up',
 *   schedule: { type: 'cron', expression: '0 9 * * *', timezone: 'Europe/Paris' },
 *   metadata: { userId: 'ops' },
 *   async execute(job) {
 *     const user = await User.get(job.metadata.userId);
 *     await user.send([{ type: 'text', text: 'all good' }]);
 *     return { ok: true };
 *   },
 * });
 */
export function defineJob<Definition extends JobDefinition>(definition: Definition): Definition {
  return definition;
}

/**
 * lua-cli's spelling of {@link defineJob}: `export default new LuaJob({...})` in a job file deploys the same way.
 * The configuration is kept and read back through lua-cli's getters.
 */
export class LuaJob {
  readonly #definition: JobDefinition;

  /** Declares a pre-defined job from its definition. */
  constructor(definition: JobDefinition) {
    this.#definition = definition;
  }

  /** The job's name. */
  getName(): string {
    return this.#definition.name;
  }

  /** The job's description. */
  getDescription(): string | null | undefined {
    return this.#definition.description;
  }

  /** The job's schedule. */
  getSchedule(): Schedule {
    return this.#definition.schedule;
  }

  /** The job's timeout in seconds. */
  getTimeout(): number | null | undefined {
    return this.#definition.timeout;
  }

  /** The job's retry policy. */
  getRetry(): RetryPolicy | null | undefined {
    return this.#definition.retry;
  }

  /** The job's default metadata. */
  getMetadata(): JobMetadata | null | undefined {
    return this.#definition.metadata;
  }

  /** Calls the definition's `execute` with `job`. */
  execute(job: Parameters<JobDefinition['execute']>[0]): unknown {
    return this.#definition.execute.call(this, job);
  }
}

/**
 * A tool, as the Jobs API's examples write them (`export default class ReminderTool implements LuaTool`): a name, a
 * description, an input schema (a zod schema, or anything with `parse`) and `execute`. The SDK does not run tools;
 * run `execute` from your tool handler, inside `withUser(userId, …)`.
 */
export interface LuaTool<Input = any, Output = unknown> {
  /** The tool's name, as the model calls it. */
  name: string;
  /** What the tool does, for the model. */
  description: string;
  /** Validates the tool's input (`inputSchema.parse(input)`). */
  inputSchema: { parse(input: unknown): Input };
  /** Runs the tool. */
  execute(input: Input): Promise<Output>;
}

/**
 * An environment variable of the agent (`PUT /v1/agents/{agentId}/env`), never the host's. Only job code can call
 * it — the sandbox provides it; anywhere else it throws (code `not_in_job`).
 */
export function env(key: string): string | undefined {
  throw new SundialError({
    status: 0,
    code: 'not_in_job',
    message: `env(${JSON.stringify(key)}) is only available to job code running in Sundial's sandbox`,
  });
}
