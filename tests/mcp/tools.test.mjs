// Proves that the official MCP client SDK connects to Sundial over both transports (streamable HTTP at /mcp with an
// agent key and X-User-Id, and `sundial mcp` over stdio configured by environment or by flags), that `tools/list`
// answers all nine tools each with an inputSchema, an outputSchema and annotations, that every tool answers a
// result whose structuredContent matches its outputSchema, and that /mcp refuses a request without a valid key with
// 401 before any MCP message is handled.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  api,
  fails,
  httpClient,
  ok,
  restJob,
  server,
  stdioClient,
  toolNames,
  transports,
  uniqueUser,
  useServer,
} from './support.mjs';

useServer();

const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '0' } },
};

/** POST /mcp with plain fetch and the given headers. */
async function rawMcp(headers) {
  const response = await fetch(`${server.url}/mcp`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(initialize),
  });
  return { status: response.status, text: await response.text() };
}

describe('tools over both transports', { concurrency: true }, () => {
  for (const transport of [
    ...transports,
    { name: 'stdio configured by flags', open: (options) => stdioClient({ ...options, flags: true }) },
  ]) {
    test(`${transport.name}: connects and lists the nine tools with schemas and annotations`, async () => {
      const client = await transport.open({ userId: uniqueUser('lister') });
      const info = client.getServerVersion();
      assert.equal(info.name, 'sundial');
      assert.ok(client.getServerCapabilities()?.tools, 'the server offers tools');

      const { tools } = await client.listTools();
      assert.deepEqual(tools.map((tool) => tool.name).sort(), [...toolNames].sort());
      for (const tool of tools) {
        assert.ok(tool.description?.length > 20, `${tool.name}: a description a model can read`);
        assert.equal(tool.inputSchema?.type, 'object', `${tool.name}: inputSchema is an object schema`);
        assert.equal(typeof tool.inputSchema.properties, 'object', `${tool.name}: inputSchema has properties`);
        assert.equal(tool.outputSchema?.type, 'object', `${tool.name}: outputSchema is an object schema`);
        assert.ok(Array.isArray(tool.outputSchema.required), `${tool.name}: outputSchema lists required fields`);
        const annotations = tool.annotations;
        assert.ok(annotations, `${tool.name}: annotations`);
        for (const hint of ['readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint']) {
          assert.equal(typeof annotations[hint], 'boolean', `${tool.name}: annotations.${hint}`);
        }
      }
      const byName = new Map(tools.map((tool) => [tool.name, tool]));
      for (const name of ['preview_schedule', 'list_jobs', 'get_job']) {
        assert.equal(byName.get(name).annotations.readOnlyHint, true, `${name} is read-only`);
      }
      assert.equal(byName.get('delete_job').annotations.destructiveHint, true, 'delete_job is destructive');
      assert.equal(byName.get('schedule_reminder').annotations.readOnlyHint, false);
      assert.deepEqual(byName.get('schedule_reminder').inputSchema.required, ['text']);
      assert.deepEqual(byName.get('get_job').inputSchema.required, ['jobId']);
    });

    test(`${transport.name}: every tool answers structuredContent valid against its outputSchema`, async () => {
      const userId = uniqueUser('all-tools');
      const client = await transport.open({ userId });

      const preview = await ok(client, 'preview_schedule', { cron: '0 9 * * 1-5', timezone: 'Europe/Paris', count: 3 });
      assert.equal(preview.timezone, 'Europe/Paris');
      assert.equal(preview.nextRuns.length, 3);
      assert.match(preview.scheduleDescription, /Europe\/Paris/);

      const reminder = await ok(client, 'schedule_reminder', { text: 'water the plants', in: '2h' });
      assert.equal(reminder.created, true);
      assert.equal(reminder.job.userId, userId);
      const reminderId = reminder.job.jobId;

      const job = await ok(client, 'schedule_job', {
        name: 'hourly-report',
        schedule: { type: 'cron', expression: '0 * * * *', timezone: 'UTC' },
        code: "async (job) => ({ report: job.metadata.topic })",
        metadata: { topic: 'weather' },
        timeout: 10,
        retry: { maxAttempts: 1 },
      });
      assert.equal(job.created, true);
      assert.equal(job.job.userId, userId);
      assert.equal(job.job.timezone, 'UTC');
      const jobId = job.job.jobId;

      const listed = await ok(client, 'list_jobs', {});
      assert.deepEqual(listed.jobs.map((each) => each.jobId).sort(), [reminderId, jobId].sort());

      const fetched = await ok(client, 'get_job', { jobId: reminderId });
      assert.equal(fetched.job.jobId, reminderId);
      assert.deepEqual(fetched.executions, []);

      const paused = await ok(client, 'pause_job', { jobId });
      assert.equal(paused.job.status, 'inactive', 'a paused job is inactive (deactivated by its user)');
      assert.equal(paused.job.active, false);
      const resumed = await ok(client, 'resume_job', { jobId });
      assert.equal(resumed.job.status, 'active');
      assert.equal(resumed.job.active, true);

      const run = await ok(client, 'run_job_now', { jobId });
      assert.equal(run.execution.jobId, jobId);
      assert.equal(run.execution.trigger, 'manual');

      const deleted = await ok(client, 'delete_job', { jobId: reminderId });
      assert.equal(deleted.deleted, true);
      assert.equal((await api('GET', `/v1/agents/default/jobs/${reminderId}`)).status, 404);
      assert.equal((await restJob(jobId)).status, 'active');

      await fails(client, 'get_job', { jobId: reminderId }, 'job_not_found');
    });
  }
});

describe('/mcp refuses a request without a valid key', () => {
  test('no Authorization header: 401 before any MCP message', async () => {
    const { status, text } = await rawMcp({});
    assert.equal(status, 401, text);
    assert.doesNotMatch(text, /jsonrpc/);
  });

  test('an unknown key: 401 before any MCP message', async () => {
    const { status, text } = await rawMcp({ Authorization: 'Bearer sk_not_a_key' });
    assert.equal(status, 401, text);
    assert.doesNotMatch(text, /jsonrpc/);
  });

  test('the SDK client with an unknown key cannot connect', async () => {
    await assert.rejects(httpClient({ key: 'sk_not_a_key', userId: 'nobody' }), /401|nauthorized/);
  });

  test('a valid key: the same request initializes', async () => {
    const { status, text } = await rawMcp({ Authorization: `Bearer ${server.adminKey}` });
    assert.equal(status, 200, text);
    assert.equal(JSON.parse(text).result.serverInfo.name, 'sundial');
  });
});
