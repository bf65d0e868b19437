// Shared set-up of the SDK's tests: each test file starts its own real `sundial serve` (scripts/server.mjs), points
// the SDK at it through SUNDIAL_URL and SUNDIAL_API_KEY (the admin key), and reads the server's state back through
// the native /v1 API with plain `fetch`, independently of the SDK under test.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

import { run } from '../../../tests/support/process.mjs';
import { restClient, uniqueUser } from '../../../tests/support/rest.mjs';
import { eventually } from '../../../tests/support/wait.mjs';
import { startServer } from '../scripts/server.mjs';

/** `sdk/typescript`: this package. */
export const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The agent every test acts for. */
export const agentId = 'default';

/** The running server: `{url, adminKey, binary}` once `before` has run. */
export const server = {};

/**
 * Starts the server before the file's tests and stops it after them; sets SUNDIAL_URL and SUNDIAL_API_KEY so the
 * SDK's default `Jobs`, `User`, `Data` and `Products` use it.
 */
export function useServer() {
  let running;
  before(async () => {
    running = await startServer({ workers: 2 });
    Object.assign(server, { url: running.url, adminKey: running.adminKey, binary: running.binary });
    process.env.SUNDIAL_URL = running.url;
    process.env.SUNDIAL_API_KEY = running.adminKey;
    delete process.env.SUNDIAL_AGENT;
  });
  after(async () => {
    await running?.stop();
  });
}

export const { api, read, mintUserToken, finalExecutions, finalExecution } = restClient(server, agentId);
export { eventually, run, uniqueUser };

/** The job as the server has it now (admin key, no user). */
export function serverJob(jobId) {
  return read(`/jobs/${jobId}`);
}

/** The texts of the messages in the conversation of `userId`. */
export async function conversation(userId) {
  const { messages } = await read(`/users/${encodeURIComponent(userId)}/messages?limit=1000`);
  return messages.map((message) => message.content?.text);
}

/** Moves a once job's `executeAt` to `seconds` from now through the server (a new version, active at once). */
export async function fireSoon(jobId, seconds = 1.5) {
  const executeAt = new Date(Date.now() + seconds * 1000).toISOString();
  const { status, body } = await api('PATCH', `/v1/agents/${agentId}/jobs/${jobId}`, {
    body: { schedule: { type: 'once', executeAt } },
  });
  assert.equal(status, 200, `moving ${jobId} to ${executeAt}: ${status} ${JSON.stringify(body)}`);
  return body;
}

/** A fresh directory under the system's temporary directory, removed when the process exits. */
export function tempDir(prefix) {
  const directory = mkdtempSync(join(tmpdir(), `sundial-sdk-${prefix}-`));
  process.on('exit', () => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

