// Proves that the user comes from the credential and a user cannot reach another user's jobs through MCP: with a
// user token (over streamable HTTP and over stdio) list_jobs does not show another user's jobs, and get_job,
// pause_job, resume_job, run_job_now and delete_job on another user's jobId fail as not found and change nothing
// (checked through REST), also when the request names the other user in X-User-Id; with the admin key and no user,
// schedule_reminder fails with `no_user`; and a user token's session creates jobs for that token's user only. A job a
// model makes through MCP acts for its user only, even over a connection with the admin key: from inside its code it
// cannot read the agent's variables, another user or another user's jobs.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import {
  api,
  fails,
  finalExecutions,
  httpClient,
  mintUserToken,
  ok,
  read,
  restExecutions,
  restJob,
  stdioClient,
  uniqueUser,
  useServer,
} from './support.mjs';

useServer();

/** The owner's jobs, made with the admin key acting for the owner. */
const owner = { userId: uniqueUser('owner') };
/** Another user, with a user token of their own. */
const intruder = { userId: uniqueUser('intruder') };

/** What REST says of the owner's jobs: existence, status, active, executions, messages. */
async function ownerState() {
  const state = {};
  for (const [name, jobId] of Object.entries(owner.jobs)) {
    const job = await restJob(jobId);
    state[name] = {
      userId: job.userId,
      status: job.status,
      active: job.active,
      nextRunAt: job.nextRuns?.[0]?.utc ?? null,
      executions: (await restExecutions(jobId)).length,
    };
  }
  return state;
}

const intruderClients = [
  { name: 'user token over streamable HTTP', open: () => httpClient({ key: intruder.token }) },
  { name: 'user token over stdio', open: () => stdioClient({ key: intruder.token }) },
];

/** The same token naming the owner as its user: refused outright. */
const spoofingClients = [
  {
    name: 'user token over streamable HTTP naming the owner in X-User-Id',
    open: () => httpClient({ key: intruder.token, userId: owner.userId }),
  },
  {
    name: 'user token over stdio naming the owner with --user',
    open: () => stdioClient({ key: intruder.token, userId: owner.userId, flags: true }),
  },
];

describe("a user token cannot see or change another user's jobs", () => {
  before(async () => {
    const client = await httpClient({ userId: owner.userId });
    const reminder = await ok(client, 'schedule_reminder', { text: 'owner secret', in: '1h' });
    const recurring = await ok(client, 'schedule_job', {
      name: 'owner-daily',
      schedule: { type: 'cron', expression: '0 7 * * *', timezone: 'Asia/Tokyo' },
      code: 'async () => 1',
    });
    const paused = await ok(client, 'schedule_reminder', { text: 'owner paused', cron: '0 8 * * *', timezone: 'UTC' });
    await ok(client, 'pause_job', { jobId: paused.job.jobId });
    owner.jobs = { reminder: reminder.job.jobId, recurring: recurring.job.jobId, paused: paused.job.jobId };
    owner.before = await ownerState();
    assert.equal(owner.before.paused.active, false);
    assert.equal(owner.before.reminder.userId, owner.userId);
    intruder.token = await mintUserToken(intruder.userId);
    const own = await ok(await httpClient({ key: intruder.token }), 'schedule_job', {
      name: 'intruder-own',
      schedule: { type: 'interval', seconds: 3600 },
      code: 'async () => 1',
    });
    assert.equal(own.job.userId, intruder.userId);
    intruder.jobId = own.job.jobId;
  });

  for (const { name, open } of intruderClients) {
    test(name, async () => {
      const client = await open();

      const { jobs } = await ok(client, 'list_jobs', { includeInactive: true, limit: 200 });
      const visible = new Set(jobs.map((job) => job.jobId));
      for (const jobId of Object.values(owner.jobs)) {
        assert.ok(!visible.has(jobId), `list_jobs shows the owner's ${jobId}`);
      }
      assert.deepEqual([...visible], [intruder.jobId], "list_jobs shows the token user's own job only");

      for (const jobId of Object.values(owner.jobs)) {
        const text = await fails(client, 'get_job', { jobId }, 'job_not_found');
        assert.match(text, /not found/);
      }
      await fails(client, 'pause_job', { jobId: owner.jobs.reminder }, 'job_not_found');
      await fails(client, 'pause_job', { jobId: owner.jobs.recurring }, 'job_not_found');
      await fails(client, 'resume_job', { jobId: owner.jobs.paused }, 'job_not_found');
      await fails(client, 'run_job_now', { jobId: owner.jobs.reminder }, 'job_not_found');
      await fails(client, 'run_job_now', { jobId: owner.jobs.paused }, 'job_not_found');
      for (const jobId of Object.values(owner.jobs)) {
        await fails(client, 'delete_job', { jobId }, 'job_not_found');
      }

      assert.deepEqual(await ownerState(), owner.before, "the owner's jobs are as they were");
    });
  }

  for (const { name, open } of spoofingClients) {
    test(`${name}: every tool is forbidden`, async () => {
      const client = await open();
      await fails(client, 'list_jobs', { includeInactive: true }, 'forbidden');
      for (const jobId of Object.values(owner.jobs)) {
        for (const tool of ['get_job', 'pause_job', 'resume_job', 'run_job_now', 'delete_job']) {
          await fails(client, tool, { jobId }, 'forbidden');
        }
      }
      const spoofed = { name: 'spoof', schedule: { type: 'interval', seconds: 3600 }, code: 'async () => 1' };
      await fails(client, 'schedule_job', spoofed, 'forbidden');
      assert.deepEqual(await ownerState(), owner.before, "the owner's jobs are as they were");
    });
  }

  test("the owner's jobs still answer for the owner", async () => {
    const client = await httpClient({ userId: owner.userId });
    const { jobs } = await ok(client, 'list_jobs', { includeInactive: true });
    assert.deepEqual(jobs.map((job) => job.jobId).sort(), Object.values(owner.jobs).sort());
  });
});

describe('the user comes from the credential', () => {
  test('with the admin key and no user, schedule_reminder fails with no_user (HTTP and stdio)', async () => {
    for (const client of [await httpClient(), await stdioClient()]) {
      const text = await fails(client, 'schedule_reminder', { text: 'to nobody', in: '1h' }, 'no_user');
      assert.match(text, /user/);
    }
    const { jobs } = await read('/jobs?includeDynamic=true&limit=200');
    assert.ok(!jobs.some((job) => job.metadata?.reminder === 'to nobody'), 'no job was made');
  });

  test("a user token's stdio session creates jobs for that token's user only (schedule_job)", async () => {
    const userId = uniqueUser('tokenjob');
    const token = await mintUserToken(userId);
    const client = await stdioClient({ key: token });
    const { job } = await ok(client, 'schedule_job', {
      name: 'token-user-job',
      schedule: { type: 'interval', seconds: 3600 },
      code: 'async () => 1',
    });
    assert.equal(job.userId, userId);
    assert.equal((await restJob(job.jobId)).userId, userId);
    const { jobs } = await ok(client, 'list_jobs', {});
    assert.deepEqual(jobs.map((each) => each.jobId), [job.jobId]);
  });

  for (const transport of [
    { name: 'stdio', open: (key) => stdioClient({ key }) },
    { name: 'streamable HTTP', open: (key) => httpClient({ key }) },
  ]) {
    test(
      `a user token's ${transport.name} session makes reminders for that token's user`,
            async () => {
        const userId = uniqueUser('tokenreminder');
        const token = await mintUserToken(userId);
        const client = await transport.open(token);
        const { job } = await ok(client, 'schedule_reminder', { text: 'token reminder', in: '1h' });
        assert.equal(job.userId, userId);
        assert.equal((await restJob(job.jobId)).userId, userId);
      },
    );
  }
});

describe('a job made through MCP acts for its user only, whatever the credential', () => {
  const probe = `async (job) => {
    const attempt = async (what) => {
      try { await what(); return 'allowed'; } catch (error) { return String(error.message); }
    };
    return {
      secret: env('MCP_SECRET') === undefined ? 'hidden' : 'read',
      otherUser: await attempt(() => User.get(job.metadata.other)),
      otherJob: await attempt(() => Jobs.getJob(job.metadata.otherJob)),
      self: await attempt(() => job.user()),
    };
  }`;

  before(async () => {
    const { status } = await api('PUT', '/v1/agents/default/env', { body: { MCP_SECRET: 'agent-only' } });
    assert.equal(status, 200);
  });

  for (const { name, open } of [
    { name: 'streamable HTTP', open: httpClient },
    { name: 'stdio', open: stdioClient },
  ]) {
    test(`${name} with the admin key acting for a user`, async () => {
      const userId = uniqueUser('mcpauthority');
      const other = uniqueUser('mcpother');
      const otherJob = (await ok(await open({ userId: other }), 'schedule_job', {
        name: 'other-job',
        schedule: { type: 'interval', seconds: 3600 },
        code: 'async () => 1',
      })).job.jobId;
      const client = await open({ userId });
      const { job } = await ok(client, 'schedule_job', {
        name: 'probe',
        schedule: { type: 'interval', seconds: 3600 },
        code: probe,
        metadata: { other, otherJob },
      });
      assert.deepEqual((await restJob(job.jobId)).authority, {
        kind: 'user',
        userId,
        scopes: ['jobs', 'data', 'products'],
      });
      await ok(client, 'run_job_now', { jobId: job.jobId });
      const [execution] = await finalExecutions(job.jobId, 1);
      assert.equal(execution.status, 'completed', JSON.stringify(execution));
      const { result } = execution;
      assert.equal(result.secret, 'hidden', "a model's job read the agent's variable");
      assert.match(result.otherUser, /can reach only that user/);
      assert.match(result.otherJob, /only that user's jobs/);
      assert.equal(result.self, 'allowed');
    });
  }

  test('with the admin key and no user, schedule_job fails with no_user and makes nothing', async () => {
    const client = await httpClient();
    await fails(
      client,
      'schedule_job',
      { name: 'nobody', schedule: { type: 'interval', seconds: 3600 }, code: 'async () => 1' },
      'no_user',
    );
    const { jobs } = await read('/jobs?includeDynamic=true&limit=200&name=nobody');
    assert.equal(jobs.length, 0);
  });
});
