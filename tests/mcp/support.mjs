// Shared set-up of the MCP end-to-end tests. Each test file starts its own real `sundial serve` (a fresh data
// directory, a free port on 127.0.0.1, a known admin key), talks to it with the official MCP TypeScript client SDK
// over streamable HTTP (`POST /mcp`) or over stdio (`sundial mcp`), and reads the server's state back through the
// native /v1 REST API with plain `fetch`, independently of the MCP server under test.
//
// Every tool call goes through `call()`, which validates the result's `structuredContent` against the tool's
// `outputSchema` (as `tools/list` answered it) with the SDK's own JSON Schema validator, on top of the validation the
// SDK's `Client` does by itself.
//
// The binary comes from SUNDIAL_BIN, by default <repo>/target/debug/sundial.

import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { after, before } from 'node:test';

import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';

import { finalStates, restClient, uniqueUser } from '../support/rest.mjs';
import { eventually as waitFor } from '../support/wait.mjs';
import { startServer } from '../support/server.mjs';

export { repositoryRoot, serverBinary } from '../support/server.mjs';

/** The agent every test acts for. */
export const agentId = 'default';

/** The nine tools the server offers. */
export const toolNames = [
  'schedule_reminder',
  'schedule_job',
  'preview_schedule',
  'list_jobs',
  'get_job',
  'pause_job',
  'resume_job',
  'run_job_now',
  'delete_job',
];


/** The running server of this file: `{url, adminKey, binary}` once `before` has run. */
export const server = {};

/** Starts `sundial serve` before the file's tests and stops it (and every MCP client opened) after them. */
export function useServer() {
  let running;
  before(async () => {
    running = await startServer({ name: 'mcp' });
    Object.assign(server, { url: running.url, adminKey: running.adminKey, binary: running.binary, output: running.output });
  });
  after(async () => {
    await Promise.allSettled(openClients.splice(0).map((client) => client.close()));
    if (running) await running.stop();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// REST, for set-up and verification

export const { api, read, mintUserToken } = restClient(server, agentId);
export { uniqueUser };

/** The job as the server has it now (admin key, no user). */
export function restJob(jobId) {
  return read(`/jobs/${jobId}`);
}

/** The job's executions, newest first. */
export async function restExecutions(jobId) {
  const { executions } = await read(`/jobs/${jobId}/executions?limit=100`);
  return executions;
}

/** The messages in the conversation of `userId`, oldest first as the API lists them. */
export async function conversation(userId) {
  const { messages } = await read(`/users/${encodeURIComponent(userId)}/messages?limit=1000`);
  return messages;
}

/** Sets the agent's settings (`maxActiveJobsPerUser`, `minRecurringIntervalSeconds`) with the admin key. */
export async function putSettings(settings) {
  const { status, body } = await api('PUT', `/v1/agents/${agentId}/settings`, { body: settings });
  assert.equal(status, 200, `PUT settings answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

/** Polls `probe` every 100 ms until it answers something truthy; fails after `seconds` (20 here) naming `what`. */
export function eventually(what, probe, seconds = 20) {
  return waitFor(what, probe, seconds);
}

/** The job's executions in a final state, oldest first, once there are at least `count`. */
export function finalExecutions(jobId, count = 1, seconds = 20) {
  return eventually(
    `${count} finished execution(s) of ${jobId}`,
    async () => {
      const done = (await restExecutions(jobId)).filter((execution) => finalStates.has(execution.status));
      return done.length >= count ? done.reverse() : null;
    },
    seconds,
  );
}

/** Waits until `seconds` have passed (only where nothing can be polled: proving that nothing more happens). */
export function quietFor(seconds) {
  return new Promise((resolveWait) => setTimeout(resolveWait, seconds * 1000));
}

// ---------------------------------------------------------------------------------------------------------------
// MCP clients

/** Every client opened by this file, closed after its tests. */
const openClients = [];

/** The SDK's own JSON Schema validator (Ajv), used to check every structured result explicitly. */
const validator = new AjvJsonSchemaValidator();

/**
 * Connects `client` over `transport`, lists the tools and remembers each tool's `outputSchema` on the client
 * (the SDK also caches them from `tools/list` to validate results itself).
 */
async function connect(transport, label) {
  const client = new Client({ name: 'sundial-mcp-e2e', version: '0.0.0' });
  await client.connect(transport);
  openClients.push(client);
  const { tools } = await client.listTools();
  client.sundial = {
    label,
    tools: new Map(tools.map((tool) => [tool.name, tool])),
    validators: new Map(tools.map((tool) => [tool.name, validator.getValidator(tool.outputSchema ?? {})])),
  };
  return client;
}

/**
 * An SDK client over streamable HTTP (`POST /mcp`), sending `Authorization: Bearer <key>` and, when given,
 * `X-User-Id: <userId>` on every request.
 */
export function httpClient({ key = server.adminKey, userId } = {}) {
  const headers = { Authorization: `Bearer ${key}` };
  if (userId !== undefined) headers['X-User-Id'] = userId;
  const transport = new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), { requestInit: { headers } });
  return connect(transport, `http(${userId ?? 'token'})`);
}

/**
 * An SDK client over stdio: spawns `$SUNDIAL_BIN mcp` with SUNDIAL_URL, SUNDIAL_API_KEY and (when given)
 * SUNDIAL_USER_ID in its environment, or with `--server`, `--key`, `--user` when `flags` is true.
 */
export function stdioClient({ key = server.adminKey, userId, flags = false } = {}) {
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: process.env.HOME ?? tmpdir(), NO_COLOR: '1' };
  const args = ['mcp'];
  if (flags) {
    args.push('--server', server.url, '--key', key);
    if (userId !== undefined) args.push('--user', userId);
  } else {
    env.SUNDIAL_URL = server.url;
    env.SUNDIAL_API_KEY = key;
    if (userId !== undefined) env.SUNDIAL_USER_ID = userId;
  }
  const transport = new StdioClientTransport({ command: server.binary, args, env, stderr: 'pipe' });
  let stderr = '';
  transport.stderr?.on('data', (chunk) => (stderr += chunk));
  return connect(transport, `stdio(${userId ?? 'token'})`).then((client) => {
    client.sundial.stderr = () => stderr;
    return client;
  });
}

/** Both transports, for tests that prove the same behaviour over each. */
export const transports = [
  { name: 'streamable HTTP', open: httpClient },
  { name: 'stdio', open: stdioClient },
];

/** Asserts that `structuredContent` is valid against `tool`'s outputSchema with the SDK's validator. */
export function assertMatchesOutputSchema(client, name, structuredContent) {
  const check = client.sundial.validators.get(name);
  assert.ok(check, `no tool ${name} in tools/list`);
  const verdict = check(structuredContent);
  assert.ok(
    verdict.valid,
    `${name}: structuredContent does not match its outputSchema: ${verdict.errorMessage}\n` +
      JSON.stringify(structuredContent, null, 2),
  );
}

/**
 * Calls tool `name` with `args` through the SDK (which validates structured results itself) and checks the result:
 * a success carries one text line and `structuredContent` valid against the tool's outputSchema; a failure is
 * `isError: true` with one text line "<code>: <message>". Answers the CallToolResult.
 */
export async function call(client, name, args = {}) {
  const result = await client.callTool({ name, arguments: args });
  assert.ok(Array.isArray(result.content) && result.content.length === 1, `${name}: one content item expected`);
  const [content] = result.content;
  assert.equal(content.type, 'text', `${name}: the content is text`);
  assert.ok(content.text.length > 0 && !content.text.includes('\n'), `${name}: one line of text: ${content.text}`);
  if (result.isError) {
    assert.match(content.text, /^[a-z_]+: \S/, `${name}: an error's text is "<code>: <message>"`);
  } else {
    assert.ok(result.structuredContent, `${name}: a success carries structuredContent (${content.text})`);
    assertMatchesOutputSchema(client, name, result.structuredContent);
  }
  return result;
}

/** Calls a tool that must succeed; answers its structuredContent (validated). */
export async function ok(client, name, args = {}) {
  const result = await call(client, name, args);
  assert.ok(
    !result.isError,
    `${name} ${JSON.stringify(args)} failed over ${client.sundial.label}: ${result.content[0].text}`,
  );
  return result.structuredContent;
}

/** Calls a tool that must fail with `code`; answers the error's text ("<code>: <message>"). */
export async function fails(client, name, args, code) {
  const result = await call(client, name, args);
  assert.equal(
    result.isError,
    true,
    `${name} ${JSON.stringify(args)} should fail with ${code} but answered ${JSON.stringify(result.structuredContent)}`,
  );
  const { text } = result.content[0];
  assert.ok(text.startsWith(`${code}: `), `${name}: expected a ${code} error, got: ${text}`);
  return text;
}

// ---------------------------------------------------------------------------------------------------------------
// Time

/** `instant` as a wall-clock time in `timeZone` ("2026-12-24T09:00:05"), computed with Intl. */
export function wallClock(instant, timeZone) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-CA', {
      timeZone,
      year: 'numeric',
      month: '2-digit',
      day: '2-digit',
      hour: '2-digit',
      minute: '2-digit',
      second: '2-digit',
      hourCycle: 'h23',
    })
      .formatToParts(instant)
      .map((part) => [part.type, part.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day}T${parts.hour}:${parts.minute}:${parts.second}`;
}

/** The same instant? (ISO strings compared as instants, so `.000Z` and `+00:00` agree.) */
export function sameInstant(actual, expected, what) {
  assert.equal(new Date(actual).toISOString(), new Date(expected).toISOString(), what);
}
