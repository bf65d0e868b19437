/**
 * The one error type of the SDK: every failed call — an error answer of the server, a timeout, an abort, a network
 * failure or a configuration the SDK cannot use — rejects with a {@link SundialError}.
 *
 * @module
 */

/** What the SDK knows about a failure. */
export interface SundialErrorInit {
  /** The HTTP status of the server's answer; `0` when there was no answer (network, timeout, abort, configuration). */
  status: number;
  /** A stable machine-readable code: the server's (`invalid_schedule`, `unresolved_reference`, `job_not_found` …) or
   * the SDK's own (`timeout`, `aborted`, `network_error`, `invalid_config`, `no_user_context`). */
  code: string;
  /** What went wrong, naming the field first when one is at fault. */
  message: string;
  /** The JSON path of the offending field, for an answer about one (`schedule.expression`, `code`). */
  field?: string | undefined;
  /** Seconds the server asked to wait before trying again (HTTP 429 `Retry-After`). */
  retryAfterSeconds?: number | undefined;
  /** The error this one wraps (the network error, the abort reason). */
  cause?: unknown;
}

/**
 * A failed call. When the server answered, `status` is the HTTP status of its answer and `code`, `field` and
 * `message` come from its error body `{code, message, field?, statusCode}`; otherwise `status` is `0` and `code` is
 * one of the SDK's codes (`timeout`, `aborted`, `network_error`, `invalid_config`, `no_user_context`).
 *
 * @example
 * try {
 *   await Jobs.create(config);
 * } catch (error) {
 *   if (error instanceof SundialError && error.code === 'invalid_schedule') console.error(error.field, error.message);
 *   else throw error;
 * }
 */
export class SundialError extends Error {
  /** The HTTP status of the server's answer; `0` when there was none. */
  readonly status: number;
  /** A stable machine-readable code. */
  readonly code: string;
  /** The JSON path of the offending field, when the server named one. */
  readonly field: string | undefined;
  /** Seconds the server asked to wait before trying again, when it said so. */
  readonly retryAfterSeconds: number | undefined;

  /** Makes an error from what is known about a failure. */
  constructor(init: SundialErrorInit) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = 'SundialError';
    this.status = init.status;
    this.code = init.code;
    this.field = init.field;
    this.retryAfterSeconds = init.retryAfterSeconds;
  }
}

/** An error of the SDK's configuration or of the arguments of a call (no request was made). */
export function invalidConfig(message: string, field?: string): SundialError {
  return new SundialError({ status: 0, code: 'invalid_config', message, field });
}
