// Proves that reminders made through MCP reach the user: `schedule_reminder` with `in: "2s"` posts its text to that
// user's conversation exactly once (over streamable HTTP and over stdio); `at` with a New York wall-clock time is
// read in America/New_York, said back in that zone, and fires at that very instant (the execution's dueAt); and a
// repeated call with one dedupKey gives one job, whichever transport repeats it.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, test } from 'node:test';

import {
  conversation,
  eventually,
  finalExecutions,
  httpClient,
  ok,
  quietFor,
  read,
  restJob,
  sameInstant,
  stdioClient,
  transports,
  uniqueUser,
  useServer,
  wallClock,
} from './support.mjs';

useServer();

/** The messages of `userId`'s conversation whose text is `text`. */
async function messagesWithText(userId, text) {
  return (await conversation(userId)).filter((message) => message.content?.text === text);
}

describe('reminders', { concurrency: true }, () => {
  for (const transport of transports) {
    test(`${transport.name}: in "2s" delivers the text to the user's conversation exactly once`, async () => {
      const userId = uniqueUser('in2s');
      const client = await transport.open({ userId });
      const text = `Stretch your legs (${randomUUID().slice(0, 6)})`;

      const { job, created } = await ok(client, 'schedule_reminder', { text, in: '2s' });
      assert.equal(created, true);
      assert.equal(job.userId, userId);
      assert.equal(job.status, 'active');
      assert.equal(job.schedule.type, 'once');
      assert.equal(job.metadata.reminder, text);
      assert.equal(job.nextRuns.length, 1);

      const [message] = await eventually(`the reminder in ${userId}'s conversation`, async () => {
        const found = await messagesWithText(userId, text);
        return found.length > 0 ? found : null;
      });
      assert.deepEqual(message.content, { type: 'text', text });

      const [execution] = await finalExecutions(job.jobId, 1);
      assert.equal(execution.status, 'completed');
      assert.equal(message.executionId, execution.id, 'sent by the reminder job\'s run');
      sameInstant(execution.dueAt, job.nextRuns[0].utc, 'it fired at the instant it announced');

      // get_job tells what the run sent.
      const seen = await ok(client, 'get_job', { jobId: job.jobId });
      assert.equal(seen.job.status, 'completed');
      assert.equal(seen.executions.length, 1);
      assert.equal(seen.executions[0].executionId, execution.id);
      assert.equal(seen.executions[0].status, 'completed');
      assert.deepEqual(
        seen.executions[0].messages.map((sent) => sent.content),
        [{ type: 'text', text }],
      );

      // A little later there is still exactly one.
      await quietFor(3);
      assert.equal((await messagesWithText(userId, text)).length, 1, 'delivered exactly once');
      assert.equal((await finalExecutions(job.jobId, 1)).length, 1, 'ran exactly once');
      assert.equal((await conversation(userId)).length, 1, 'nothing else was sent to the user');
    });
  }

  test('at a New York wall-clock time fires at that instant and says it back in America/New_York', async () => {
    const userId = uniqueUser('newyork');
    const client = await httpClient({ userId });
    const text = `Call the New York office (${randomUUID().slice(0, 6)})`;
    const zone = 'America/New_York';
    // A whole second about five seconds ahead, said as New York's wall clock shows it.
    const target = new Date(Math.ceil((Date.now() + 5000) / 1000) * 1000);
    const at = wallClock(target, zone);

    const { job, created } = await ok(client, 'schedule_reminder', { text, at, timezone: zone });
    assert.equal(created, true);
    assert.match(job.scheduleDescription, /America\/New_York/, 'the description names the zone');
    assert.equal(job.timezone, zone);
    assert.ok(job.nextRuns.length >= 1);
    sameInstant(job.nextRuns[0].utc, target, `${at} in ${zone} is ${target.toISOString()}`);
    assert.ok(
      job.nextRuns[0].local.startsWith(at),
      `nextRuns[0].local (${job.nextRuns[0].local}) is New York's wall clock ${at}`,
    );
    assert.match(job.nextRuns[0].local, /-0[45]:00$/, 'with New York offset');
    sameInstant(job.schedule.executeAt, target, 'the stored schedule is that instant');

    const [execution] = await finalExecutions(job.jobId, 1);
    assert.equal(execution.status, 'completed');
    sameInstant(execution.dueAt, target, 'fired at the New York wall-clock time');
    const [message] = await eventually('the reminder in the conversation', async () => {
      const found = await messagesWithText(userId, text);
      return found.length > 0 ? found : null;
    });
    assert.equal(message.executionId, execution.id, 'sent by the reminder job\'s run');
  });

  test('the same call twice with one dedupKey gives one job (HTTP first, stdio second)', async () => {
    const userId = uniqueUser('dedup');
    const http = await httpClient({ userId });
    const stdio = await stdioClient({ userId });
    const args = { text: 'Pay the rent', cron: '0 9 1 * *', timezone: 'Europe/Paris', dedupKey: `rent-${userId}` };

    const first = await ok(http, 'schedule_reminder', args);
    assert.equal(first.created, true);
    const second = await ok(stdio, 'schedule_reminder', args);
    assert.equal(second.created, false, 'the second call made nothing new');
    assert.equal(second.job.jobId, first.job.jobId, 'the same job');
    const third = await ok(http, 'schedule_reminder', args);
    assert.equal(third.created, false);
    assert.equal(third.job.jobId, first.job.jobId);

    for (const client of [http, stdio]) {
      const { jobs } = await ok(client, 'list_jobs', { includeInactive: true });
      assert.deepEqual(
        jobs.map((job) => job.jobId),
        [first.job.jobId],
        `list_jobs over ${client.sundial.label} shows one job`,
      );
    }
    const { jobs } = await read(`/jobs?includeDynamic=true&limit=200`);
    assert.equal(jobs.filter((job) => job.userId === userId).length, 1, 'the server holds one job for the user');
  });

  test(
    'get_job and list_jobs list a once reminder\'s single run once',
    async () => {
      const userId = uniqueUser('oncerun');
      const client = await httpClient({ userId });
      const { job } = await ok(client, 'schedule_reminder', { text: 'once', in: '1h' });
      assert.equal(job.nextRuns.length, 1, 'schedule_reminder answers one run');
      const rest = await restJob(job.jobId);
      const { job: seen } = await ok(client, 'get_job', { jobId: job.jobId });
      const { jobs } = await ok(client, 'list_jobs', {});
      assert.equal(seen.nextRuns.length, 1, `get_job nextRuns: ${JSON.stringify(seen.nextRuns)}`);
      assert.equal(jobs[0].nextRuns.length, 1, `list_jobs nextRuns: ${JSON.stringify(jobs[0].nextRuns)}`);
      assert.equal(rest.nextRuns.length, 1, `REST nextRuns: ${JSON.stringify(rest.nextRuns)}`);
    },
  );
});
