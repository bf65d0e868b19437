// The native /v1 API with plain `fetch`, for the JavaScript suites to seed a server and read its state back
// independently of what they test. Plain Node, no dependencies.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';

import { eventually } from './wait.mjs';

/** The statuses an execution ends in. */
export const finalStates = new Set(['completed', 'failed', 'timeout', 'killed', 'cancelled', 'abandoned', 'skipped']);

/**
 * REST helpers bound to `server` (`{url, adminKey}`, filled in once the server runs) and the agent `agentId`:
 * - `api(method, path, {key, body, userId, headers})` answers `{status, body}` (the body parsed when it is JSON);
 *   `key` defaults to the admin key, `null` sends none; `userId` goes as `X-User-Id`; `headers` are added last;
 * - `read(path)` GETs below `/v1/agents/{agentId}`, asserts 200 and answers the body;
 * - `mintUserToken(userId)` answers a new user token of `userId`;
 * - `finalExecutions(jobId, count, seconds)` waits for at least `count` executions of the job in a final state and
 *   answers them oldest first; `finalExecution(executionId, seconds)` waits for one execution to end.
 */
export function restClient(server, agentId = 'default') {
  async function api(method, path, { key = server.adminKey, body, userId, headers: extra = {} } = {}) {
    const headers = {};
    if (key !== null) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (userId !== undefined) headers['X-User-Id'] = userId;
    Object.assign(headers, extra);
    const response = await fetch(`${server.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let parsed = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return { status: response.status, body: parsed };
  }

  async function read(path) {
    const { status, body } = await api('GET', `/v1/agents/${agentId}${path}`);
    assert.equal(status, 200, `GET /v1/agents/${agentId}${path} answered ${status}: ${JSON.stringify(body)}`);
    return body;
  }

  async function mintUserToken(userId) {
    const { status, body } = await api('POST', `/v1/agents/${agentId}/users/${encodeURIComponent(userId)}/tokens`, {
      body: {},
    });
    assert.equal(status, 201, `minting a token for ${userId}: ${status} ${JSON.stringify(body)}`);
    return body.token;
  }

  function finalExecutions(jobId, count = 1, seconds = 30) {
    return eventually(`${count} finished execution(s) of ${jobId}`, async () => {
      const { executions } = await read(`/jobs/${jobId}/executions?limit=100`);
      const done = executions.filter((execution) => finalStates.has(execution.status));
      return done.length >= count ? done.reverse() : null;
    }, seconds);
  }

  function finalExecution(executionId, seconds = 30) {
    return eventually(`execution ${executionId} to finish`, async () => {
      const execution = await read(`/executions/${executionId}`);
      return finalStates.has(execution.status) ? execution : null;
    }, seconds);
  }

  return { api, read, mintUserToken, finalExecutions, finalExecution };
}

/** A user id no other test uses. */
export function uniqueUser(prefix = 'user') {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}
