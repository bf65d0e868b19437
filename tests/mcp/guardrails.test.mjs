// Proves the guardrails on jobs made for a user through MCP: with `maxActiveJobsPerUser: 3` a fourth active
// reminder fails with `quota_exceeded` and pausing one makes room; a recurring reminder more often than
// `minRecurringIntervalSeconds` (60 by default) fails and says the limit, while every 60 s is accepted; and with the
// limit lowered to 1 s, `maxRuns: 3` runs exactly three times and `until` stops after the last slot before it, each
// job ending `completed`.

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';

import {
  conversation,
  eventually,
  fails,
  finalExecutions,
  httpClient,
  ok,
  putSettings,
  quietFor,
  read,
  restExecutions,
  restJob,
  sameInstant,
  stdioClient,
  uniqueUser,
  useServer,
} from './support.mjs';

useServer();

/** The user's jobs that count against the quota, through REST. */
async function activeJobsOf(userId) {
  const { jobs } = await read('/jobs?includeDynamic=true&status=active&limit=200');
  return jobs.filter((job) => job.userId === userId);
}

describe('at most maxActiveJobsPerUser active jobs per user', () => {
  test('a 4th active reminder fails quota_exceeded; pausing one makes room', async () => {
    await putSettings({ maxActiveJobsPerUser: 3 });
    const userId = uniqueUser('quota');
    const client = await httpClient({ userId });

    const made = [];
    for (const n of [1, 2, 3]) {
      const { job } = await ok(client, 'schedule_reminder', { text: `reminder ${n}`, in: `${n}h` });
      made.push(job.jobId);
    }
    const text = await fails(client, 'schedule_reminder', { text: 'reminder 4', in: '4h' }, 'quota_exceeded');
    assert.match(text, /3/, 'the error says the limit');
    assert.equal((await activeJobsOf(userId)).length, 3, 'no 4th job was made');

    // Over stdio the same user meets the same quota, and schedule_job counts too.
    const stdio = await stdioClient({ userId });
    await fails(stdio, 'schedule_reminder', { text: 'reminder 4', in: '4h' }, 'quota_exceeded');
    await fails(
      stdio,
      'schedule_job',
      { name: 'job 4', schedule: { type: 'interval', seconds: 3600 }, code: 'async () => 1' },
      'quota_exceeded',
    );

    // Another user has a quota of their own.
    const other = await httpClient({ userId: uniqueUser('quota-other') });
    await ok(other, 'schedule_reminder', { text: 'mine', in: '1h' });

    const paused = await ok(client, 'pause_job', { jobId: made[0] });
    assert.equal(paused.job.active, false);
    const fourth = await ok(client, 'schedule_reminder', { text: 'reminder 4', in: '4h' });
    assert.equal(fourth.created, true);
    assert.equal((await activeJobsOf(userId)).length, 3);
    await fails(client, 'schedule_reminder', { text: 'reminder 5', in: '5h' }, 'quota_exceeded');

    // Resuming the paused one would make a 4th active job.
    await fails(client, 'resume_job', { jobId: made[0] }, 'quota_exceeded');
    assert.equal((await restJob(made[0])).active, false, 'it stays paused');
    assert.equal((await activeJobsOf(userId)).length, 3);

    await putSettings({ maxActiveJobsPerUser: 50 });
  });
});

describe('recurring no more often than minRecurringIntervalSeconds', () => {
  test('everySeconds: 10 fails and says 60; everySeconds: 60 works', async () => {
    const userId = uniqueUser('interval');
    const client = await httpClient({ userId });
    const text = await fails(client, 'schedule_reminder', { text: 'too often', everySeconds: 10 }, 'invalid_schedule');
    assert.match(text, /\b60\b/, 'the error says the limit');
    assert.match(text, /minRecurringIntervalSeconds/, 'the error names the setting');
    const everyHalfMinute = { text: 'too often', cron: '*/30 * * * * *', timezone: 'UTC' };
    await fails(client, 'schedule_reminder', everyHalfMinute, 'invalid_schedule');
    await fails(
      client,
      'schedule_job',
      { name: 'too often', schedule: { type: 'interval', seconds: 10 }, code: 'async () => 1' },
      'invalid_schedule',
    );
    assert.equal((await activeJobsOf(userId)).length, 0);

    const { job } = await ok(client, 'schedule_reminder', { text: 'every minute', everySeconds: 60 });
    assert.equal(job.schedule.type, 'interval');
    assert.equal(job.schedule.seconds, 60);
    assert.equal(job.status, 'active');
    assert.equal(job.nextRuns.length, 3);
  });
});

describe('recurring reminders end: maxRuns and until', { concurrency: true }, () => {
  before(async () => {
    await putSettings({ minRecurringIntervalSeconds: 1 });
  });

  test('everySeconds: 1 with maxRuns: 3 runs exactly 3 times and ends completed', async () => {
    const userId = uniqueUser('maxruns');
    const client = await httpClient({ userId });
    const { job } = await ok(client, 'schedule_reminder', { text: 'tick', everySeconds: 1, maxRuns: 3 });
    assert.equal(job.schedule.maxRuns, 3);

    const done = await eventually('the job to complete', async () => {
      const now = await restJob(job.jobId);
      return now.status === 'completed' ? now : null;
    });
    assert.equal(done.active, false);
    const executions = await finalExecutions(job.jobId, 3);
    await quietFor(1.5);
    const all = await restExecutions(job.jobId);
    assert.equal(all.length, 3, `exactly 3 runs: ${JSON.stringify(all.map((each) => each.dueAt))}`);
    assert.ok(executions.every((each) => each.status === 'completed'));
    assert.equal((await conversation(userId)).filter((message) => message.content?.text === 'tick').length, 3);

    const seen = await ok(client, 'get_job', { jobId: job.jobId });
    assert.equal(seen.job.status, 'completed');
    assert.deepEqual(seen.job.nextRuns, [], 'no further runs');
    assert.equal(seen.executions.length, 3);
    assert.equal(seen.executionCount, 3, 'the run count stays visible');
    const listed = await ok(client, 'list_jobs', {});
    assert.ok(!listed.jobs.some((each) => each.jobId === job.jobId), 'a completed job is not listed as active');
  });

  test('everySeconds: 1 with until ~3.5 s ahead stops after its last slot before until, ends completed', async () => {
    const userId = uniqueUser('until');
    const client = await httpClient({ userId });
    const until = new Date(Date.now() + 3500);
    const { job } = await ok(client, 'schedule_reminder', {
      text: 'until',
      everySeconds: 1,
      until: until.toISOString(),
    });
    sameInstant(job.schedule.until, until, 'the schedule keeps until');
    assert.ok(
      job.nextRuns.every((run) => new Date(run.utc) <= until),
      `no announced run after until: ${JSON.stringify(job.nextRuns)}`,
    );

    const done = await eventually('the job to complete', async () => {
      const now = await restJob(job.jobId);
      return now.status === 'completed' ? now : null;
    });
    assert.equal(done.active, false);
    await quietFor(1.5);
    const executions = (await restExecutions(job.jobId)).reverse();
    const dues = executions.map((each) => new Date(each.dueAt).getTime());
    assert.ok(executions.length >= 2, `it ran on several slots: ${JSON.stringify(dues)}`);
    assert.ok(dues.every((due) => due <= until.getTime()), `no run after until: ${JSON.stringify(dues)}`);
    for (let i = 1; i < dues.length; i += 1) {
      const gap = dues[i] - dues[i - 1];
      assert.ok(gap > 0 && gap % 1000 === 0, `runs fall on the every-second slots: ${JSON.stringify(dues)}`);
    }
    assert.ok(dues.at(-1) + 1000 >= until.getTime(), 'the last slot before until ran');
    assert.ok(executions.every((each) => each.status === 'completed'));
    const seen = await ok(client, 'get_job', { jobId: job.jobId });
    assert.equal(seen.job.status, 'completed');
  });
});
