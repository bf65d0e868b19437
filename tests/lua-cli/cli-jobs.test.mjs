// The real `lua` binary of lua-cli 3.37.0 (`node_modules/.bin/lua jobs …`) against Sundial, with the developer's key
// and a lua.skill.yaml listing the jobs: view, trigger, history, deactivate, activate and delete print what the
// reference (§8) lists, and the server's state read back through the native /v1 API agrees.

import assert from 'node:assert/strict';
import { before, test } from 'node:test';

import {
  agentId,
  compressForPush,
  eventually,
  finalExecution,
  finalExecutions,
  luaAs,
  luaCli,
  luaHeaders,
  native,
  request,
  userToken,
} from './support.mjs';

/** The jobs of the project's lua.skill.yaml. */
const jobs = [];

/** `lua jobs <action> -i <name>` in CI mode; answers {code, stdout, stderr} with progress lines resolved. */
function luaJobs(action, name) {
  return luaCli(['jobs', action, '-i', name, '--ci'], { jobs });
}

/** Fails with everything the CLI printed. */
function explain(result) {
  return `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

before(async () => {
  // A user's dynamic job, created by lua-cli's Jobs.create as a tool would (with that user's token).
  const created = await luaAs(userToken, `
    const job = await Jobs.create({
      name: 'nightly-digest',
      description: 'Digest of the day',
      metadata: { topic: 'news' },
      schedule: { type: 'cron', expression: '0 3 * * *', timezone: 'Europe/London' },
      execute: async (job) => ({ ok: true, topic: job.metadata.topic }),
    });
    return job.id;`);
  assert.ok(created.value, `Jobs.create failed: ${JSON.stringify(created.thrown)}`);
  jobs.push({ name: 'nightly-digest', version: '1.0.0', jobId: created.value });

  // A pre-defined job with a version, as `lua push job` leaves it.
  const shell = await request('POST', `/developer/jobs/${agentId}`, {
    body: { name: 'weekly-export', description: 'Export', schedule: { type: 'interval', seconds: 3600 } },
    headers: luaHeaders(),
  });
  assert.ok(shell.body.success, JSON.stringify(shell.body));
  const jobId = shell.body.data.id;
  const code = 'module.exports.default={__lua_primitive__:{version:"2.0.0",kind:"job",name:"weekly-export"},' +
    'primitive:{name:"weekly-export",execute:async()=>({exported:!0})}};';
  const pushed = await request('POST', `/developer/jobs/${agentId}/${jobId}/version`, {
    body: { name: 'weekly-export', version: '1.0.0', jobId, schedule: { type: 'interval', seconds: 3600 },
      code: compressForPush(code) },
    headers: luaHeaders(),
  });
  assert.ok(pushed.body.success, JSON.stringify(pushed.body));
  const published = await request('POST', `/developer/jobs/${agentId}/${jobId}/1.0.0/publish`, {
    body: {},
    headers: luaHeaders(),
  });
  assert.ok(published.body.success, JSON.stringify(published.body));
  jobs.push({ name: 'weekly-export', version: '1.0.0', jobId });

  // A job that fails and is retried 30 s later.
  const flaky = await luaAs(userToken, `
    const job = await Jobs.create({
      name: 'flaky-job',
      schedule: { type: 'interval', seconds: 3600 },
      retry: { maxAttempts: 1, backoffSeconds: 30 },
      execute: async () => { throw new Error('upstream unavailable'); },
    });
    return job.id;`);
  assert.ok(flaky.value, `Jobs.create failed: ${JSON.stringify(flaky.thrown)}`);
  jobs.push({ name: 'flaky-job', version: '1.0.0', jobId: flaky.value });
});

test('lua jobs view prints the job, its schedule and its next run', async () => {
  const result = await luaJobs('view', 'nightly-digest');
  assert.equal(result.code, 0, explain(result));
  const { jobId } = jobs[0];
  assert.match(result.stdout, /⏰ nightly-digest\n/, explain(result));
  assert.match(result.stdout, new RegExp(`Job ID: ${jobId}\n`));
  assert.match(result.stdout, /Status: active\n/);
  assert.match(result.stdout, /Schedule: Cron: 0 3 \* \* \* \(Europe\/London\)\n/);
  assert.match(result.stdout, /Next Run: .+\n/);
});

test('lua jobs history before any run says there is none', async () => {
  const result = await luaJobs('history', 'nightly-digest');
  assert.equal(result.code, 0, explain(result));
  assert.match(result.stdout, /No execution history found for nightly-digest\./, explain(result));
});

test('lua jobs trigger runs the job now and prints the execution id; history shows the run', async () => {
  const result = await luaJobs('trigger', 'nightly-digest');
  assert.equal(result.code, 0, explain(result));
  assert.match(result.stdout, /✅ Job "nightly-digest" triggered successfully/, explain(result));
  const executionId = result.stdout.match(/📋 Execution ID: (exe_\w+)/)?.[1];
  assert.ok(executionId, explain(result));

  const [done] = await finalExecutions(jobs[0].jobId);
  assert.equal(done.id, executionId);
  assert.equal(done.trigger, 'manual');
  assert.deepEqual(done.result, { ok: true, topic: 'news' });

  const history = await luaJobs('history', 'nightly-digest');
  assert.equal(history.code, 0, explain(history));
  assert.match(history.stdout, /1\. ✅ COMPLETED\n/, explain(history));
  assert.match(history.stdout, new RegExp(`Execution ID: ${executionId}\n`));
  assert.match(history.stdout, /Started: .+\n/);
  assert.match(history.stdout, /Completed: .+\n/);
  assert.match(history.stdout, /Duration: \d+s\n/);
  assert.match(history.stdout, /Result: \{"ok":true,"topic":"news"\}/);
  assert.match(history.stdout, /Showing last 1 executions/);
});

test('lua jobs history shows a failed run with its error, and the retry waiting out its backoff', async () => {
  const { jobId } = jobs[2];
  const result = await luaJobs('trigger', 'flaky-job');
  assert.equal(result.code, 0, explain(result));
  const executionId = result.stdout.match(/📋 Execution ID: (exe_\w+)/)?.[1];
  assert.ok(executionId, explain(result));
  const failed = await finalExecution(executionId);
  assert.equal(failed.status, 'failed', JSON.stringify(failed));
  await eventually('the retry to be queued', async () => {
    const { executions } = await native(`/jobs/${jobId}/executions`);
    return executions.find((execution) => execution.retryCount === 1 && execution.status === 'pending');
  });

  const history = await luaJobs('history', 'flaky-job');
  assert.equal(history.code, 0, explain(history));
  assert.match(history.stdout, /\d\. ⏳ PENDING\n/, explain(history));
  assert.match(history.stdout, /\d\. ❌ FAILED\n/);
  assert.match(history.stdout, /Error: .*upstream unavailable/);
  assert.doesNotMatch(history.stdout, /1970/, 'a queued run shows when it was queued, not the epoch');
  assert.match(history.stdout, /Showing last 2 executions/);
});

test('lua jobs deactivate and activate switch the job on the server', async () => {
  const off = await luaJobs('deactivate', 'nightly-digest');
  assert.equal(off.code, 0, explain(off));
  assert.match(off.stdout, /✅ Job "nightly-digest" deactivated successfully/, explain(off));
  let job = await native(`/jobs/${jobs[0].jobId}`);
  assert.deepEqual([job.active, job.status], [false, 'inactive']);
  const viewed = await luaJobs('view', 'nightly-digest');
  assert.match(viewed.stdout, /Status: inactive\n/, explain(viewed));

  const on = await luaJobs('activate', 'nightly-digest');
  assert.equal(on.code, 0, explain(on));
  assert.match(on.stdout, /✅ Job "nightly-digest" activated successfully/, explain(on));
  assert.match(on.stdout, /💡 The job is now enabled and will run on schedule\./);
  job = await native(`/jobs/${jobs[0].jobId}`);
  assert.deepEqual([job.active, job.status], [true, 'active']);
});

test('lua jobs delete deletes a dynamic job, and deactivates a pre-defined job with versions', async () => {
  const deleted = await luaJobs('delete', 'nightly-digest');
  assert.equal(deleted.code, 0, explain(deleted));
  assert.match(deleted.stdout, /✅ Job "nightly-digest" deleted successfully/, explain(deleted));
  const gone = await request('GET', `/v1/agents/${agentId}/jobs/${jobs[0].jobId}`);
  assert.equal(gone.status, 404);
  const view = await luaJobs('view', 'nightly-digest');
  assert.equal(view.code, 3, explain(view));
  assert.match(view.stdout + view.stderr, /no longer exists on the server/, explain(view));

  const kept = await luaJobs('delete', 'weekly-export');
  assert.equal(kept.code, 0, explain(kept));
  assert.match(kept.stdout, /⚠️ {2}Job "weekly-export" has versions and was deactivated instead of deleted/, explain(kept));
  const job = await native(`/jobs/${jobs[1].jobId}`);
  assert.deepEqual([job.active, job.status], [false, 'inactive']);
});

test('lua jobs without -i, or with a name the project does not know, fails as lua-cli documents', async () => {
  const usage = await luaCli(['jobs', 'trigger', '--ci'], { jobs });
  assert.equal(usage.code, 2, explain(usage));
  assert.match(usage.stdout + usage.stderr, /--job-name is required for action "trigger"/, explain(usage));
  const unknown = await luaJobs('view', 'no-such-job');
  assert.equal(unknown.code, 3, explain(unknown));
});
