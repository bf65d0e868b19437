// Pre-defined job files deploy with the real `sundial deploy` and run: a file typed with the SDK through JSDoc
// (no import), deployed, redeployed unchanged and changed; files that import `defineJob`/`LuaJob` and `User` from
// `@sundial/jobs` (ES module and CommonJS), which the server provides as a built-in module. In Node, `defineJob`
// answers the definition and `LuaJob` reads like lua-cli's.

import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';

import { Jobs, LuaJob, defineJob } from '@sundial/jobs';

import { agentId, conversation, finalExecution, packageDir, run, server, serverJob, tempDir, useServer } from './support.mjs';

useServer();

/** Runs `sundial deploy <dir> --json` against the test's server with the admin key. */
async function deploy(dir, ...flags) {
  const { code, stdout, stderr } = await run(server.binary, ['deploy', dir, '--json', ...flags], {
    env: { ...process.env, SUNDIAL_SERVER: server.url, SUNDIAL_API_KEY: server.adminKey, SUNDIAL_AGENT: agentId },
  });
  return { code, stderr, answer: code === 0 ? JSON.parse(stdout) : undefined };
}

test('a job file typed with the SDK deploys with `sundial deploy` and runs; redeploys make versions only on change', async () => {
  const dir = tempDir('deploy');
  cpSync(join(packageDir, 'test', 'jobs', 'plain'), dir, { recursive: true });

  const first = await deploy(dir, '--activate');
  assert.equal(first.code, 0, first.stderr);
  const [entry] = first.answer.jobs;
  assert.deepEqual(
    { name: entry.name, path: entry.path, action: entry.action, version: entry.version, active: entry.active },
    { name: 'inventory-check', path: 'inventory-check.mjs', action: 'created', version: '1.0.0', active: true },
  );

  const stored = await serverJob(entry.jobId);
  assert.deepEqual([stored.dynamic, stored.userId ?? null, stored.status], [false, null, 'active']);
  assert.deepEqual(stored.schedule, { type: 'cron', expression: '0 7 * * *', timezone: 'Europe/Paris' });
  assert.deepEqual([stored.timeout, stored.retry], [30, { maxAttempts: 2, backoffSeconds: 5 }]);
  assert.equal(stored.scheduleDescription, 'every day at 07:00 (Europe/Paris)');

  const listed = await Jobs.getAll();
  const job = listed.find((candidate) => candidate.id === entry.jobId);
  assert.ok(job, 'Jobs.getAll lists the pre-defined job without includeDynamic');
  const execution = await finalExecution((await job.trigger()).id);
  assert.equal(execution.status, 'completed', JSON.stringify(execution));
  assert.deepEqual(execution.result, {
    level: 'low',
    trigger: 'manual',
    userError: 'job inventory-check has no user context; use User.get(userId)',
  });

  const unchanged = await deploy(dir, '--activate');
  assert.equal(unchanged.code, 0, unchanged.stderr);
  assert.equal(unchanged.answer.jobs[0].jobId, entry.jobId);
  assert.equal((await serverJob(entry.jobId)).versions.length, 1, 'an unchanged file makes nothing new');

  const file = join(dir, 'inventory-check.mjs');
  writeFileSync(file, readFileSync(file, 'utf8').replace('const threshold = 3;', 'const threshold = 1;'));
  const changed = await deploy(dir, '--activate');
  assert.equal(changed.code, 0, changed.stderr);
  assert.equal(changed.answer.jobs[0].jobId, entry.jobId, 'the same job');
  const after = await serverJob(entry.jobId);
  assert.deepEqual(after.versions.map((version) => version.version), ['1.0.0', '1.0.1']);
  assert.equal(after.activeVersion.version, '1.0.1', '--activate publishes the new version');
  const rerun = await finalExecution((await job.trigger()).id);
  assert.equal(rerun.result.level, 'ok', 'the new code runs');

  // delete() of a pre-defined job with versions deactivates it instead.
  const deletion = await job.delete();
  assert.deepEqual([deletion.deleted, deletion.deactivated], [false, true]);
  assert.deepEqual([(await serverJob(entry.jobId)).active, (await serverJob(entry.jobId)).status], [false, 'inactive']);
});

test('defineJob answers the definition in Node; LuaJob reads back like lua-cli', async () => {
  const { default: definition } = await import('./jobs/sdk-import/daily-digest.mjs');
  assert.equal(definition.name, 'daily-digest');
  assert.equal(typeof definition.execute, 'function');
  const config = { name: 'x', schedule: { type: 'interval', seconds: 60 }, execute: async () => 1 };
  assert.equal(defineJob(config), config);
  const luaJob = new LuaJob({ ...config, description: 'd', metadata: { userId: 'u' } });
  assert.deepEqual(
    [luaJob.getName(), luaJob.getDescription(), luaJob.getSchedule(), luaJob.getMetadata()],
    ['x', 'd', { type: 'interval', seconds: 60 }, { userId: 'u' }],
  );
  assert.equal(await luaJob.execute({}), 1);
  const weekly = createRequire(import.meta.url)('./jobs/sdk-import/weekly-summary.cjs');
  assert.deepEqual([weekly.getName(), weekly.getMetadata()], ['weekly-summary', { userId: 'on-call' }]);
});

test('job files importing from @sundial/jobs (import and require) deploy with `sundial deploy --activate` and run', async () => {
  const dir = tempDir('deploy-sdk');
  cpSync(join(packageDir, 'test', 'jobs', 'sdk-import'), dir, { recursive: true });
  const deployed = await deploy(dir, '--activate');
  assert.equal(deployed.code, 0, deployed.stderr);
  const entries = Object.fromEntries(deployed.answer.jobs.map((entry) => [entry.path, entry]));
  assert.deepEqual(Object.keys(entries).sort(), ['daily-digest.mjs', 'weekly-summary.cjs']);
  for (const [path, name] of [['daily-digest.mjs', 'daily-digest'], ['weekly-summary.cjs', 'weekly-summary']]) {
    const { jobId, ...rest } = entries[path];
    assert.match(jobId, /^job_/);
    assert.deepEqual(rest, { path, name, action: 'created', version: '1.0.0', active: true });
    const stored = await serverJob(jobId);
    assert.deepEqual([stored.name, stored.dynamic, stored.status], [name, false, 'active']);
  }

  const [digest, weekly] = await Promise.all(
    ['daily-digest.mjs', 'weekly-summary.cjs'].map(async (path) => {
      const job = await Jobs.getJob(entries[path].jobId);
      return finalExecution((await job.trigger()).id);
    }),
  );
  assert.equal(digest.status, 'completed', JSON.stringify(digest));
  assert.deepEqual(digest.result, { sentTo: 'on-call' });
  assert.equal(weekly.status, 'completed', JSON.stringify(weekly));
  assert.deepEqual(weekly.result, { sentTo: 'on-call', trigger: 'manual' });
  assert.deepEqual((await conversation('on-call')).sort(), ['digest for on-call', 'summary for on-call']);

  // The Node-only parts of the SDK are not in the server's module: such a file is refused at deploy, naming them.
  const nodeOnly = tempDir('deploy-node-only');
  writeFileSync(
    join(nodeOnly, 'uses-client.mjs'),
    "import { createClient, defineJob } from '@sundial/jobs';\n" +
      "export default defineJob({ name: 'uses-client', schedule: { type: 'interval', seconds: 3600 }, " +
      'execute: async () => typeof createClient });\n',
  );
  const refused = await deploy(nodeOnly);
  assert.notEqual(refused.code, 0, 'a job file importing createClient is refused');
  assert.match(refused.stderr, /uses-client\.mjs: .*createClient.*@sundial\/jobs/);
});
