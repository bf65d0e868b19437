// Every JobInstance method changes the server's state as the Jobs API says, read back through /v1; Jobs.getAll
// hides dynamic jobs unless asked; the forms of `execute` the server accepts; the document's wrong example (a
// variable of the surrounding scope) rejected at Jobs.create, naming it; SundialError, timeouts and aborts.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Jobs, SundialError, createClient, withUser } from '@sundial/jobs';

import { api, agentId, finalExecution, read, server, serverJob, uniqueUser, useServer } from './support.mjs';

useServer();

const hourly = { type: 'interval', seconds: 3600 };

test('updateMetadata merges into the metadata on the server, and a run sees it', async () => {
  const userId = uniqueUser();
  const job = await withUser(userId, () =>
    Jobs.create({
      name: 'counter',
      metadata: { runCount: 0, label: 'kept' },
      schedule: hourly,
      execute: async (job) => {
        await job.updateMetadata({ runCount: (job.metadata.runCount || 0) + 1, lastRun: new Date().toISOString() });
        return { seen: job.metadata.runCount };
      },
    }));
  const metadata = await job.updateMetadata({ runCount: 41 });
  assert.deepEqual(metadata, { runCount: 41, label: 'kept' });
  assert.deepEqual(job.metadata, metadata);
  assert.deepEqual((await serverJob(job.id)).metadata, { runCount: 41, label: 'kept' });

  const execution = await finalExecution((await job.trigger()).id);
  assert.equal(execution.status, 'completed', JSON.stringify(execution));
  assert.deepEqual(execution.result, { seen: 42 });
  const after = (await serverJob(job.id)).metadata;
  assert.equal(after.runCount, 42);
  assert.equal(after.label, 'kept');
  assert.ok(!Number.isNaN(Date.parse(after.lastRun)));
});

test('deactivate, activate and trigger(versionId) change the job on the server', async () => {
  const job = await Jobs.create({
    name: `versioned-${Date.now()}`,
    schedule: hourly,
    execute: async (job) => ({ version: job.activeVersion?.version }),
  });
  assert.deepEqual([job.data.active, job.data.status], [true, 'active']);

  assert.equal(await job.deactivate(), job, 'deactivate answers the instance');
  assert.deepEqual([job.data.active, job.data.status], [false, 'inactive']);
  let stored = await serverJob(job.id);
  assert.deepEqual([stored.active, stored.status, stored.nextRunAt ?? null], [false, 'inactive', null]);

  const whileInactive = await finalExecution((await job.trigger()).id);
  assert.equal(whileInactive.status, 'completed', 'trigger runs an inactive job');

  await job.activate();
  assert.deepEqual([job.data.active, job.data.status], [true, 'active']);
  stored = await serverJob(job.id);
  assert.deepEqual([stored.active, stored.status], [true, 'active']);
  assert.ok(stored.nextRunAt, 'an active interval job has a next run');

  // A second version, not published: trigger(versionId) runs it and leaves the active one alone.
  const added = await api('POST', `/v1/agents/${agentId}/jobs/${job.id}/versions`, {
    body: { code: 'async (job) => ({ version: "second" })', version: '2.0.0' },
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  const onSecond = await job.trigger(added.body.id);
  assert.equal(onSecond.versionId, added.body.id);
  const ran = await finalExecution(onSecond.id);
  assert.deepEqual(ran.result, { version: 'second' });
  const onActive = await finalExecution((await job.trigger()).id);
  assert.deepEqual(onActive.result, { version: '1.0.0' });
  assert.equal((await job.refresh()).activeVersion.version, '1.0.0');
});

test('delete() deletes a dynamic job: every route answers 404 for it', async () => {
  const job = await Jobs.create({ name: 'short-lived', schedule: hourly, execute: async () => 1 });
  const deletion = await job.delete();
  assert.deepEqual([deletion.deleted, deletion.deactivated], [true, false]);
  assert.equal(typeof deletion.message, 'string');
  const gone = await api('GET', `/v1/agents/${agentId}/jobs/${job.id}`);
  assert.deepEqual([gone.status, gone.body.code], [404, 'job_not_found']);
  const error = await Jobs.getJob(job.id).catch((caught) => caught);
  assert.ok(error instanceof SundialError, String(error));
  assert.deepEqual([error.status, error.code], [404, 'job_not_found']);
});

test('Jobs.getAll hides dynamic jobs unless includeDynamic is true', async () => {
  const dynamic = await Jobs.create({ name: 'track-game-42', schedule: hourly, execute: async () => 1 });
  assert.equal((await serverJob(dynamic.id)).dynamic, true, 'Jobs.create makes a dynamic job');
  const predefined = await api('POST', `/v1/agents/${agentId}/jobs`, {
    body: { name: 'nightly', dynamic: false, schedule: hourly, code: 'async () => 1' },
  });
  assert.equal(predefined.status, 201, JSON.stringify(predefined.body));

  const plain = (await Jobs.getAll()).map((job) => job.id);
  assert.ok(plain.includes(predefined.body.id), 'pre-defined jobs are listed');
  assert.ok(!plain.includes(dynamic.id), 'dynamic jobs are hidden by default');
  const all = await Jobs.getAll({ includeDynamic: true });
  assert.ok(all.some((job) => job.id === dynamic.id));
  assert.ok(all.some((job) => job.id === predefined.body.id));

  // The Jobs API's example: find a job by name and deactivate it.
  const trackingJob = all.find((job) => job.name.startsWith('track-game-'));
  await trackingJob.deactivate();
  assert.equal((await serverJob(dynamic.id)).active, false);
  const listed = all.map((job) => `${job.name}: ${job.data.active ? 'active' : 'inactive'}`);
  assert.ok(listed.includes('nightly: active'), listed.join('\n'));
});

test('execute may be an arrow function, a function expression or a method; its source is what is stored', async () => {
  const forms = {
    arrow: { execute: async (job) => ({ form: 'arrow', name: job.name }) },
    expression: {
      execute: async function (job) {
        return { form: 'expression', name: job.name };
      },
    },
    method: {
      async execute(job) {
        return { form: 'method', name: job.name };
      },
    },
  };
  for (const [form, { execute }] of Object.entries(forms)) {
    const job = await Jobs.create({ name: `form-${form}`, schedule: hourly, execute });
    const code = await api('GET', `/v1/agents/${agentId}/jobs/${job.id}/versions/1.0.0/code`);
    const source = typeof code.body === 'string' ? code.body : code.body.code;
    assert.equal(source, execute.toString(), `${form}: the stored code is execute.toString()`);
    const execution = await finalExecution((await job.trigger()).id);
    assert.equal(execution.status, 'completed', `${form}: ${JSON.stringify(execution)}`);
    assert.deepEqual(execution.result, { form, name: `form-${form}` });
  }
});

test("the document's wrong example: a parent-scope variable is refused at Jobs.create, naming it", async () => {
  // ❌ WRONG - Accessing parent scope (the Jobs API document's example, with a schedule added).
  async function execute(input) {
    const userMessage = input.message; // This variable...
    await Jobs.create({
      name: 'wrong',
      schedule: hourly,
      execute: async (job) => {
        // ...is NOT available here! ❌
        await user.send(userMessage); // Error: userMessage is not defined
      },
    });
  }
  const error = await execute({ message: 'hello' }).catch((caught) => caught);
  assert.ok(error instanceof SundialError, String(error));
  assert.equal(error.status, 400);
  assert.equal(error.code, 'unresolved_reference');
  assert.equal(error.field, 'code');
  assert.match(error.message, /userMessage \(at \d+:\d+\)/);
  assert.match(error.message, /\buser \(at \d+:\d+\)/);
  assert.match(error.message, /metadata/);
  assert.match(error.stack, /job-instance\.test\.mjs/, `the caller's stack:\n${error.stack}`);
  assert.match(error.stack, /at async execute/, `the caller's frame:\n${error.stack}`);
  const { jobs } = await read('/jobs?includeDynamic=true&name=wrong');
  assert.deepEqual(jobs, [], 'no job was made');

  // ✅ CORRECT - Using metadata.
  const userId = uniqueUser();
  const job = await withUser(userId, () =>
    Jobs.create({
      name: 'right',
      schedule: hourly,
      metadata: { message: 'hello' },
      execute: async (job) => {
        const message = job.metadata.message;
        const user = await job.user();
        await user.send([{ type: 'text', text: message }]);
        return { sentTo: user.userId };
      },
    }));
  const execution = await finalExecution((await job.trigger()).id);
  assert.deepEqual(execution.result, { sentTo: userId });
});

test('a job created with no user has none: job.user() fails with its clear error, in Node and in the sandbox', async () => {
  const job = await Jobs.create({
    name: 'no-user',
    schedule: hourly,
    execute: async (job) => {
      const user = await job.user();
      return user.userId;
    },
  });
  assert.equal((await serverJob(job.id)).userId ?? null, null, 'never silently the key owner');
  const error = await job.user().catch((caught) => caught);
  assert.ok(error instanceof SundialError);
  assert.equal(error.code, 'no_user_context');
  assert.equal(error.message, 'job no-user has no user context; use User.get(userId)');
  const execution = await finalExecution((await job.trigger()).id);
  assert.equal(execution.status, 'failed');
  assert.match(execution.error, /job no-user has no user context; use User\.get\(userId\)/);
});

test('SundialError carries status, code, field and message of the server; a Date executeAt is sent as an instant', async () => {
  const error = await Jobs.create({
    name: 'bad-cron',
    schedule: { type: 'cron', expression: '0 9 * *', timezone: 'America/New_York' },
    execute: async () => 1,
  }).catch((caught) => caught);
  assert.ok(error instanceof SundialError);
  assert.deepEqual(
    { status: error.status, code: error.code, field: error.field },
    { status: 400, code: 'invalid_schedule', field: 'schedule.expression' },
  );
  assert.equal(error.message, 'schedule.expression: expected 5 or 6 fields, got 4');

  const zone = await Jobs.create({
    name: 'bad-zone',
    schedule: { type: 'cron', expression: '0 9 * * *', timezone: 'Mars/Base' },
    execute: async () => 1,
  }).catch((caught) => caught);
  assert.deepEqual([zone.status, zone.field], [400, 'schedule.timezone']);
  assert.match(zone.message, /Mars\/Base/);

  const at = new Date(Date.now() + 3_600_000);
  const once = await Jobs.create({ name: 'dated', schedule: { type: 'once', executeAt: at }, execute: async () => 1 });
  assert.equal(once.activeVersion.schedule.executeAt, at.toISOString());
  assert.equal((await serverJob(once.id)).nextRunAt, at.toISOString());
  const invalid = await Jobs.create({
    name: 'never',
    schedule: { type: 'once', executeAt: new Date('not a date') },
    execute: async () => 1,
  }).catch((caught) => caught);
  assert.deepEqual([invalid.code, invalid.field], ['invalid_config', 'schedule.executeAt']);

  // The body's statusCode repeats the HTTP status; `status` is always the HTTP status, whatever the body says.
  const raw = await api('GET', `/v1/agents/${agentId}/jobs/job_missing`);
  assert.deepEqual([raw.status, raw.body.statusCode], [404, 404]);
  const proxied = createClient({
    url: server.url,
    apiKey: 'k',
    fetch: async () =>
      new Response(JSON.stringify({ code: 'conflict', message: 'busy', statusCode: 500 }), {
        status: 409,
        headers: { 'Content-Type': 'application/json' },
      }),
  });
  const rewritten = await proxied.jobs.getJob('job_1').catch((caught) => caught);
  assert.ok(rewritten instanceof SundialError);
  assert.deepEqual([rewritten.status, rewritten.code, rewritten.message], [409, 'conflict', 'busy']);
});

test('dedupKey makes Jobs.create idempotent; scheduleDescription and nextRuns come back', async () => {
  const userId = uniqueUser();
  const config = {
    name: 'weekday-report',
    dedupKey: `report-${userId}`,
    schedule: { type: 'cron', expression: '0 9 * * MON-FRI', timezone: 'America/New_York' },
    execute: async () => ({ ok: true }),
  };
  const first = await withUser(userId, () => Jobs.create(config));
  const second = await withUser(userId, () => Jobs.create(config));
  assert.equal(second.id, first.id, 'the same job');
  assert.equal(first.scheduleDescription, 'every weekday at 09:00 (America/New_York)');
  assert.equal(first.nextRuns.length, 3);
  assert.match(first.nextRuns[0].local, /T09:00:00-0[45]:00$/);
  const { jobs } = await read(`/jobs?includeDynamic=true&name=weekday-report`);
  assert.equal(jobs.length, 1, 'never a second job');
  const preview = await Jobs.preview({ type: 'cron', expression: '30 2 * 3 SUN', timezone: 'America/New_York' }, { n: 5 });
  assert.equal(preview.nextRuns.length, 5);
  assert.match(preview.scheduleDescription, /America\/New_York/);
});

test('every call takes an AbortSignal and a timeout', async () => {
  const controller = new AbortController();
  controller.abort(new Error('the user went away'));
  const aborted = await Jobs.getAll({ signal: controller.signal }).catch((caught) => caught);
  assert.ok(aborted instanceof SundialError);
  assert.equal(aborted.code, 'aborted');
  assert.match(aborted.message, /the user went away/);

  // A server that accepts the connection and never answers: the call ends with code `timeout`.
  const { createServer } = await import('node:net');
  const silent = createServer(() => {});
  await new Promise((resolve) => silent.listen(0, '127.0.0.1', resolve));
  try {
    const client = createClient({ url: `http://127.0.0.1:${silent.address().port}`, apiKey: 'k', maxRetries: 0 });
    const timedOut = await client.jobs.getJob('job_1', { timeoutMs: 200 }).catch((caught) => caught);
    assert.ok(timedOut instanceof SundialError);
    assert.equal(timedOut.code, 'timeout');
    assert.match(timedOut.message, /GET \/v1\/agents\/default\/jobs\/job_1: no answer within 200 ms/);
  } finally {
    silent.close();
  }
});
