/**
 * `@sundial/jobs`: the Jobs API (`Jobs`, `JobInstance`, `User`, `Data`, `Products`, `defineJob`/`LuaJob`) for a
 * Sundial server, with the user of each tool call taken from `createClient({ userId })`, else `withUser(userId, fn)`,
 * else a user token — never silently the key's owner.
 *
 * @packageDocumentation
 */

export { Data, Jobs, Products, SundialClient, User, createClient } from './client.js';
export type { CallOptions, ClientOptions } from './connection.js';
export { currentUserId, withUser } from './context.js';
export { DataApi, ProductsApi } from './data.js';
export { LuaJob, type LuaTool, defineJob, env } from './define.js';
export { SundialError, type SundialErrorInit } from './errors.js';
export { type GetAllOptions, JobInstance, JobsApi } from './jobs.js';
export type {
  CronSchedule,
  DataEntry,
  DataFilter,
  Deletion,
  DeployAction,
  DeployResult,
  DeployedJob,
  ErrorBody,
  Exclusive,
  ExecutionContext,
  ExecutionStatus,
  ExecutionTrigger,
  IntervalSchedule,
  JobConfig,
  JobData,
  JobDefinition,
  JobExecution,
  JobFetch,
  JobMetadata,
  JobPolicy,
  JobResponse,
  JobStatus,
  JobVersion,
  ListResult,
  MessageContent,
  NextRun,
  OnceSchedule,
  Pagination,
  PredefinedRunningJob,
  Product,
  ProductInput,
  ProductPatch,
  RetryPolicy,
  RunningJob,
  Schedule,
  SchedulePreview,
  ScheduleView,
  StoredMessage,
  TimeZone,
  UserMessage,
  UserRecord,
} from './types.js';
export { UserApi, UserInstance } from './users.js';
export type { components, operations, paths } from './generated/openapi.js';
