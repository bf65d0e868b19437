// A pre-defined job (lua-cli's `LuaJob`) driven the way `lua push job --auto-deploy` drives the server — create
// without a version, push a version with the compiled artifact, publish — then lua-cli's `Jobs.getJob` + JobInstance
// with the developer's key: trigger(versionId) on an unpublished version, and delete(), which must deactivate a job
// with versions instead of deleting it. The server's state is read back through the native /v1 API.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  adminKey,
  agentId,
  compressForPush,
  finalExecutions,
  loadLuaCli,
  luaHeaders,
  native,
  request,
} from './support.mjs';

const { Jobs, JobInstance } = await loadLuaCli(adminKey);

/** `dist-v2/artifacts/job/<name>.js` as `lua compile` writes it (reference §4B): CommonJS, minified by esbuild. */
function artifact(name, version) {
  return `"use strict";var o={name:"${name}",description:"System health monitoring",schedule:{type:"interval",` +
    `seconds:300},timeout:30,retry:{maxAttempts:2,backoffSeconds:5},execute:async e=>{const t=await User.get("ops");` +
    `return{ok:!0,version:"${version}",job:e.name,user:t.userId}}};module.exports.default={__lua_primitive__:{` +
    `version:"2.0.0",kind:"job",name:"${name}",description:"System health monitoring",exportName:"default"},` +
    `primitive:o};\n`;
}

/** `POST` on a lua-cli route with the developer's key and lua-cli's headers; asserts a 2xx `{success: true}`. */
async function luaPost(path, body) {
  const answer = await request('POST', path, { body, headers: luaHeaders() });
  assert.ok(answer.status >= 200 && answer.status < 300, `POST ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
  assert.equal(answer.body.success, true);
  return answer.body.data;
}

/** What `lua push job --auto-deploy` sends for a new job: create (compile's server sync), push 1.0.0, publish. */
async function pushAndDeploy(name) {
  const created = await luaPost(`/developer/jobs/${agentId}`, {
    name,
    description: 'System health monitoring',
    schedule: { type: 'interval', seconds: 300 },
  });
  assert.match(created.id, /^job_/);
  assert.deepEqual(created.versions, []);
  await pushVersion(created.id, name, '1.0.0');
  const published = await luaPost(`/developer/jobs/${agentId}/${created.id}/1.0.0/publish`, {});
  assert.equal(published.activeVersion.version, '1.0.0');
  return created.id;
}

async function pushVersion(jobId, name, version) {
  return luaPost(`/developer/jobs/${agentId}/${jobId}/version`, {
    name,
    description: 'System health monitoring',
    code: compressForPush(artifact(name, version)),
    schedule: { type: 'interval', seconds: 300 },
    timeout: 30,
    retry: { maxAttempts: 2, backoffSeconds: 5 },
    version,
    jobId,
  });
}

test('a pushed and published pre-defined job is active on its version and runs its artifact', async () => {
  const jobId = await pushAndDeploy('health-check');
  const job = await native(`/jobs/${jobId}`);
  assert.equal(job.dynamic, false);
  assert.equal(job.userId ?? null, null, 'a pre-defined job has no user');
  assert.deepEqual([job.active, job.status], [true, 'active']);
  assert.deepEqual(job.schedule, { type: 'interval', seconds: 300 });
  assert.deepEqual(job.versions.map((version) => version.version), ['1.0.0']);

  const listed = await Jobs.getAll();
  assert.ok(listed.some((candidate) => candidate.id === jobId), 'getAll lists pre-defined jobs');
  const instance = await Jobs.getJob(jobId);
  const execution = await instance.trigger();
  const [done] = await finalExecutions(jobId);
  assert.equal(done.id, execution.id);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.result, { ok: true, version: '1.0.0', job: 'health-check', user: 'ops' });
});

test('trigger(versionId) runs a pushed version that is not published; publishing switches the active one', async () => {
  const jobId = await pushAndDeploy('inventory-sync');
  const second = await pushVersion(jobId, 'inventory-sync', '1.0.1');
  assert.equal(second.version, '1.0.1');
  assert.equal(second.active, false, 'a pushed version is not active until published');

  const instance = await Jobs.getJob(jobId);
  assert.equal(instance.activeVersion.version, '1.0.0');
  const onSecond = await instance.trigger(second.id);
  assert.equal(onSecond.versionId, second.id);
  const [done] = await finalExecutions(jobId);
  assert.equal(done.versionId, second.id);
  assert.equal(done.result.version, '1.0.1', JSON.stringify(done));
  assert.equal((await native(`/jobs/${jobId}`)).activeVersion.version, '1.0.0', 'triggering publishes nothing');

  const versions = await request('GET', `/developer/jobs/${agentId}/${jobId}/versions`);
  assert.deepEqual(versions.body.data.map((version) => [version.version, version.active]), [
    ['1.0.0', true],
    ['1.0.1', false],
  ]);
  await luaPost(`/developer/jobs/${agentId}/${jobId}/1.0.1/publish`, {});
  assert.equal((await native(`/jobs/${jobId}`)).activeVersion.version, '1.0.1');
});

test('JobInstance.delete() of a job with versions deactivates it instead of deleting it', async () => {
  const jobId = await pushAndDeploy('nightly-cleanup');
  const instance = await Jobs.getJob(jobId);
  assert.ok(instance instanceof JobInstance);
  await instance.delete();

  const job = await native(`/jobs/${jobId}`);
  assert.deepEqual([job.active, job.status], [false, 'inactive'], 'deactivated, not deleted');
  assert.deepEqual(job.versions.map((version) => version.version), ['1.0.0'], 'its versions are kept');
  const again = await Jobs.getJob(jobId);
  assert.equal(again.data.status, 'inactive');

  const raw = await request('DELETE', `/developer/jobs/${agentId}/${jobId}`);
  assert.equal(raw.status, 200);
  assert.deepEqual(
    { deleted: raw.body.data.deleted, deactivated: raw.body.data.deactivated },
    { deleted: false, deactivated: true },
  );
  assert.equal(typeof raw.body.data.message, 'string');

  const shell = await luaPost(`/developer/jobs/${agentId}`, {
    name: 'never-pushed',
    schedule: { type: 'cron', expression: '0 0 * * *' },
  });
  await (await Jobs.getJob(shell.id)).delete();
  const gone = await request('GET', `/v1/agents/${agentId}/jobs/${shell.id}`);
  assert.equal(gone.status, 404, 'a job without versions is deleted');
});
