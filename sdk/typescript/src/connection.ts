/**
 * How the SDK talks to a Sundial server: the configuration (`SUNDIAL_URL`, `SUNDIAL_API_KEY`, `SUNDIAL_AGENT` or
 * `createClient`'s options), one `request` function over Node's own `fetch` with a timeout and an `AbortSignal` on
 * every call, retries of idempotent calls only, and the server's error body turned into a {@link SundialError}.
 *
 * @module
 */

import { currentUserId } from './context.js';
import { SundialError, invalidConfig } from './errors.js';
import type { ErrorBody } from './types.js';

/** Options of `createClient`. Every field has a default from the environment or a fixed value. */
export interface ClientOptions {
  /** The server's base URL. Default: `SUNDIAL_URL`, else `http://127.0.0.1:7777`. */
  url?: string;
  /** An agent key, the admin key or a user token. Default: `SUNDIAL_API_KEY`. */
  apiKey?: string;
  /** The agent to act for. Default: `SUNDIAL_AGENT`, else `default`. */
  agentId?: string;
  /**
   * The user to act for (sent as `X-User-Id`, which an agent key or the admin key may do). Takes precedence over
   * `withUser`. Leave it out with a user token: the token acts as its own user.
   */
  userId?: string;
  /** How long one request may take, in milliseconds. Default: 30000. */
  timeoutMs?: number;
  /** How many times an idempotent call is retried after a network error, a timeout, 429, 502, 503 or 504.
   * Default: 2. */
  maxRetries?: number;
  /** The `fetch` to use. Default: the global `fetch` of Node ≥ 20. */
  fetch?: typeof fetch;
}

/** Options every call takes. */
export interface CallOptions {
  /** Aborts the call; it then rejects with a `SundialError` whose code is `aborted`. */
  signal?: AbortSignal;
  /** How long the call may take, in milliseconds (each attempt). Default: the client's `timeoutMs`. */
  timeoutMs?: number;
}

/** One request of the native API, below `/v1/agents/{agentId}` unless `absolute`. */
export interface ApiRequest {
  /** The HTTP method. */
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** The path below `/v1/agents/{agentId}` (already encoded), e.g. `/jobs/job_123/trigger`. */
  path: string;
  /** Query parameters; `undefined` values are left out. */
  query?: Record<string, string | number | boolean | undefined>;
  /** The JSON body. */
  body?: unknown;
  /** Whether repeating the request is harmless, which allows retries. */
  idempotent: boolean;
  /** The user to act for, sent as `X-User-Id`. */
  userId?: string | undefined;
  /** The caller's signal and timeout. */
  options?: CallOptions | undefined;
}

const DEFAULT_URL = 'http://127.0.0.1:7777';
const DEFAULT_AGENT = 'default';
const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_RETRIES = 2;
/** Statuses worth another attempt of an idempotent call. */
const RETRY_STATUSES = new Set([429, 502, 503, 504]);
/** The longest wait between attempts, whatever `Retry-After` says. */
const MAX_RETRY_WAIT_MS = 10_000;

/** A configured connection to one agent of one Sundial server. */
export class Connection {
  /** The server's base URL, without a trailing slash. */
  readonly url: string;
  /** The agent every call acts for. */
  readonly agentId: string;
  /** The user this connection always acts for, when it was configured with one. */
  readonly userId: string | undefined;
  readonly #apiKey: string;
  readonly #timeoutMs: number;
  readonly #maxRetries: number;
  readonly #fetch: typeof fetch;

  /** A connection from `options`, with defaults from the environment. */
  constructor(options: ClientOptions = {}) {
    const url = options.url ?? process.env['SUNDIAL_URL'] ?? DEFAULT_URL;
    try {
      new URL(url);
    } catch {
      throw invalidConfig(`url: ${JSON.stringify(url)} is not a URL (set SUNDIAL_URL or createClient({ url }))`, 'url');
    }
    const apiKey = options.apiKey ?? process.env['SUNDIAL_API_KEY'];
    if (!apiKey) {
      throw invalidConfig('apiKey: no API key (set SUNDIAL_API_KEY or pass createClient({ apiKey }))', 'apiKey');
    }
    if (options.userId !== undefined && (typeof options.userId !== 'string' || options.userId.length === 0)) {
      throw invalidConfig('userId: must be a non-empty string', 'userId');
    }
    this.url = url.replace(/\/+$/, '');
    this.agentId = options.agentId ?? process.env['SUNDIAL_AGENT'] ?? DEFAULT_AGENT;
    this.userId = options.userId;
    this.#apiKey = apiKey;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.#fetch = options.fetch ?? globalThis.fetch;
  }

  /**
   * The user a call made now acts for: this connection's own `userId`, else the surrounding `withUser`'s, else none
   * (a user token then acts as its own user; an agent key acts for the agent, with no user).
   */
  actingUserId(): string | undefined {
    return this.userId ?? currentUserId();
  }

  /** Sends `request` and answers the parsed JSON body; rejects with a {@link SundialError}. */
  async request<Answer>(request: ApiRequest): Promise<Answer> {
    const url = this.#urlOf(request);
    const description = `${request.method} ${url.pathname}`;
    const attempts = request.idempotent ? 1 + this.#maxRetries : 1;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#attempt<Answer>(request, url, description);
      } catch (error) {
        const retry = attempt < attempts && error instanceof SundialError && isRetryable(error);
        if (!retry) throw error;
        await wait(retryDelayMs(error, attempt), request.options?.signal, description);
      }
    }
  }

  #urlOf(request: ApiRequest): URL {
    const url = new URL(`${this.url}/v1/agents/${encodeURIComponent(this.agentId)}${request.path}`);
    for (const [name, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    return url;
  }

  async #attempt<Answer>(request: ApiRequest, url: URL, description: string): Promise<Answer> {
    const headers: Record<string, string> = {
      Authorization: `Bearer ${this.#apiKey}`,
      Accept: 'application/json',
    };
    if (request.body !== undefined) headers['Content-Type'] = 'application/json';
    if (request.userId !== undefined) headers['X-User-Id'] = request.userId;

    const timeoutMs = request.options?.timeoutMs ?? this.#timeoutMs;
    const callerSignal = request.options?.signal;
    if (callerSignal?.aborted) throw aborted(description, callerSignal.reason);
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onCallerAbort = () => controller.abort(callerSignal?.reason);
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    try {
      let response: Response;
      try {
        response = await this.#fetch(url, {
          method: request.method,
          headers,
          body: request.body === undefined ? undefined : JSON.stringify(request.body),
          signal: controller.signal,
        });
      } catch (error) {
        if (timedOut) throw timeout(description, timeoutMs, error);
        if (callerSignal?.aborted) throw aborted(description, callerSignal.reason);
        throw new SundialError({
          status: 0,
          code: 'network_error',
          message: `${description}: cannot reach ${this.url}: ${causeText(error)}`,
          cause: error,
        });
      }
      let text: string;
      try {
        text = await response.text();
      } catch (error) {
        if (timedOut) throw timeout(description, timeoutMs, error);
        if (callerSignal?.aborted) throw aborted(description, callerSignal.reason);
        throw new SundialError({
          status: response.status,
          code: 'network_error',
          message: `${description}: the answer was cut off: ${causeText(error)}`,
          cause: error,
        });
      }
      if (!response.ok) throw errorFromAnswer(response, text, description);
      if (text === '') return undefined as Answer;
      try {
        return JSON.parse(text) as Answer;
      } catch (error) {
        throw new SundialError({
          status: response.status,
          code: 'invalid_answer',
          message: `${description}: the server answered ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`,
          cause: error,
        });
      }
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    }
  }
}

/**
 * The error of a non-2xx answer: the server's `{code, message, field?, statusCode}`, or a description of what came
 * back. `status` is always the HTTP status of the answer; the body's `statusCode` (the same number, for clients that
 * keep only the body) is accepted but not read, so a proxy that rewrites the status cannot make the two disagree.
 */
function errorFromAnswer(response: Response, text: string, description: string): SundialError {
  const retryAfterHeader = response.headers.get('retry-after');
  const retryAfterSeconds =
    retryAfterHeader !== null && /^\d+$/.test(retryAfterHeader.trim()) ? Number(retryAfterHeader.trim()) : undefined;
  let body: Partial<ErrorBody> | undefined;
  try {
    body = JSON.parse(text) as Partial<ErrorBody>;
  } catch {
    body = undefined;
  }
  if (body && typeof body.code === 'string' && typeof body.message === 'string') {
    return new SundialError({
      status: response.status,
      code: body.code,
      message: body.message,
      field: typeof body.field === 'string' ? body.field : undefined,
      retryAfterSeconds,
    });
  }
  return new SundialError({
    status: response.status,
    code: 'http_error',
    message: `${description}: the server answered ${response.status} ${response.statusText}: ${text.slice(0, 200)}`,
    retryAfterSeconds,
  });
}

function isRetryable(error: SundialError): boolean {
  if (error.status === 0) return error.code === 'network_error' || error.code === 'timeout';
  return RETRY_STATUSES.has(error.status);
}

/** 250 ms, 500 ms, 1 s … or what `Retry-After` asked for, at most 10 s. */
function retryDelayMs(error: SundialError, attempt: number): number {
  const asked = error.retryAfterSeconds === undefined ? undefined : error.retryAfterSeconds * 1000;
  return Math.min(asked ?? 250 * 2 ** (attempt - 1), MAX_RETRY_WAIT_MS);
}

function wait(milliseconds: number, signal: AbortSignal | undefined, description: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(aborted(description, signal.reason));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(aborted(description, signal?.reason));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, milliseconds);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function timeout(description: string, timeoutMs: number, cause: unknown): SundialError {
  return new SundialError({
    status: 0,
    code: 'timeout',
    message: `${description}: no answer within ${timeoutMs} ms`,
    cause,
  });
}

function aborted(description: string, reason: unknown): SundialError {
  return new SundialError({
    status: 0,
    code: 'aborted',
    message: `${description}: aborted${reason instanceof Error ? `: ${reason.message}` : ''}`,
    cause: reason,
  });
}

function causeText(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

/** Encodes one path segment. */
export function segment(value: string, name: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw invalidConfig(`${name}: must be a non-empty string, got ${JSON.stringify(value)}`, name);
  }
  return encodeURIComponent(value);
}
