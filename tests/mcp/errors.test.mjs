// Proves that a tool's failures are clear to the model that reads them, over both transports: each is
// `isError: true` with one line "<code>: <message>" naming the argument at fault and what would be right — a
// wall-clock `at` without `timezone` says the zone is needed, `cron` without `timezone` fails, giving two (or none)
// of at/in/cron/everySeconds fails — and a failed call makes no job.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { call, fails, httpClient, ok, read, transports, uniqueUser, useServer } from './support.mjs';

useServer();

/** The user's jobs on the server, whatever their state. */
async function jobsOf(userId) {
  const { jobs } = await read('/jobs?includeDynamic=true&limit=200');
  return jobs.filter((job) => job.userId === userId);
}

describe('errors say what is wrong', { concurrency: true }, () => {
  for (const transport of transports) {
    test(`${transport.name}: at, cron and the choice of when`, async () => {
      const userId = uniqueUser('errors');
      const client = await transport.open({ userId });

      // A wall-clock time needs a zone; Sundial never guesses UTC.
      let text = await fails(client, 'schedule_reminder', { text: 'x', at: '2026-12-24T09:00' }, 'invalid_arguments');
      assert.match(text, /^invalid_arguments: at: /, 'names the argument');
      assert.match(text, /wall-clock time/);
      assert.match(text, /needs `timezone`/, 'says timezone is needed');
      // The same time with an offset is an instant and needs no zone.
      const instant = await ok(client, 'preview_schedule', { at: '2030-12-24T09:00:00-05:00' });
      assert.equal(instant.nextRuns[0].utc.slice(0, 19), '2030-12-24T14:00:00');

      // A cron pattern is read on a wall clock and needs a zone.
      text = await fails(client, 'schedule_reminder', { text: 'x', cron: '0 9 * * 1-5' }, 'invalid_arguments');
      assert.match(text, /^invalid_arguments: cron: /);
      assert.match(text, /timezone/);
      await fails(client, 'preview_schedule', { cron: '0 9 * * 1-5' }, 'invalid_arguments');

      // Exactly one of at, in, cron, everySeconds.
      const two = [
        { at: '2030-12-24T09:00:00Z', in: '2s' },
        { in: '15m', everySeconds: 3600 },
        { cron: '0 9 * * *', timezone: 'UTC', everySeconds: 3600 },
        { at: '2030-12-24T09:00', timezone: 'UTC', cron: '0 9 * * *' },
      ];
      for (const when of two) {
        text = await fails(client, 'schedule_reminder', { text: 'x', ...when }, 'invalid_arguments');
        assert.match(text, /exactly one of at, in, cron or everySeconds/);
        for (const name of Object.keys(when).filter((key) => key !== 'timezone')) {
          assert.match(text, new RegExp(`\\b${name}\\b`), `names ${name}: ${text}`);
        }
      }
      text = await fails(client, 'schedule_reminder', { text: 'x' }, 'invalid_arguments');
      assert.match(text, /exactly one of at, in, cron or everySeconds \(got none\)/);

      assert.deepEqual(await jobsOf(userId), [], 'no failed call made a job');
    });

    test(`${transport.name}: other wrong arguments name the argument and the fix`, async () => {
      const userId = uniqueUser('errors-more');
      const client = await transport.open({ userId });
      const cases = [
        [{ at: '2030-12-24T09:00', timezone: 'Mars/Base' }, 'invalid_arguments', /timezone: unknown time zone "Mars/],
        [{ in: 'soon' }, 'invalid_arguments', /in: "soon" is not a delay; write it like 90s, 15m/],
        [{ at: '2020-01-01T00:00:00Z' }, 'invalid_arguments', /at: .* lies in the past/],
        // 02:30 on the day New York's clocks go forward (the second Sunday of March 2027).
        [{ at: '2027-03-14T02:30', timezone: 'America/New_York' }, 'invalid_arguments', /does not exist in America/],
        [{ in: '1h', maxRuns: 3 }, 'invalid_arguments', /maxRuns: only a recurring schedule/],
        [{ in: '1h', until: '2030-01-01T00:00:00Z' }, 'invalid_arguments', /until: only a recurring schedule/],
        [{ cron: 'nonsense', timezone: 'UTC' }, 'invalid_schedule', /expression/],
      ];
      for (const [when, code, pattern] of cases) {
        const text = await fails(client, 'schedule_reminder', { text: 'x', ...when }, code);
        assert.match(text, pattern);
      }
      let text = await fails(client, 'schedule_reminder', { in: '1h' }, 'invalid_arguments');
      assert.match(text, /text: required/);
      text = await fails(client, 'get_job', { jobId: '' }, 'invalid_arguments');
      assert.match(text, /jobId/);
      text = await fails(client, 'get_job', { jobId: 'job_doesnotexist' }, 'job_not_found');
      assert.match(text, /not found/);
      assert.deepEqual(await jobsOf(userId), [], 'no failed call made a job');
    });
  }

  test(
    'an argument the inputSchema does not allow is refused, not ignored',
    async () => {
      const userId = uniqueUser('unknown-arg');
      const client = await httpClient({ userId });
      const result = await call(client, 'schedule_reminder', { text: 'x', everySeconds: 3600, maxruns: 3 });
      try {
        assert.equal(result.isError, true, `accepted: ${result.content[0].text}`);
        assert.match(result.content[0].text, /^invalid_arguments: .*maxruns/);
      } finally {
        for (const job of await jobsOf(userId)) {
          await ok(client, 'delete_job', { jobId: job.id });
        }
      }
    },
  );

  test(
    'an unknown tool is a JSON-RPC error (-32602), as the MCP specification says',
    async () => {
      const client = await httpClient({ userId: uniqueUser('unknown-tool') });
      await assert.rejects(client.callTool({ name: 'no_such_tool', arguments: {} }), /-32602|no_such_tool/);
    },
  );
});
