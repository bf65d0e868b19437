// lua-cli's `Jobs` and `JobInstance` with a user token, checked against the server's state read back through the
// native /v1 API: updateMetadata, trigger with and without a version, activate/deactivate, getAll, delete; the error
// bodies the client understands (401 → AuthenticationError, 404 → getJob throws); X-Idempotency-Key deduplication.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  agentId,
  compressForPush,
  conversation,
  finalExecutions,
  loadLuaCli,
  luaAs,
  luaHeaders,
  native,
  request,
  userId,
  userToken,
} from './support.mjs';

const { Jobs, JobInstance } = await loadLuaCli(userToken);

/** A dynamic job far from its next slot, whose runs answer the metadata and version they saw. */
function hourlyJob(name, metadata) {
  return Jobs.create({
    name,
    description: 'Reports what it sees',
    metadata,
    schedule: { type: 'interval', seconds: 3600 },
    retry: { maxAttempts: 1, backoffSeconds: 1 },
    timeout: 30,
    execute: async (job) => ({ metadata: job.metadata, version: job.activeVersion?.version, seen: 'v1' }),
  });
}

test('updateMetadata merges locally and stores the whole merged object; the next run sees it', async () => {
  const job = await hourlyJob('metadata-check', { city: 'Lisbon', count: 1 });
  assert.ok(job instanceof JobInstance);
  assert.equal(job.data.dynamic, true);
  assert.equal(job.data.userId, userId);
  assert.equal(job.activeVersion.version, '1.0.0');

  await job.updateMetadata({ count: 2, lastRun: '2030-01-01T00:00:00Z' });
  assert.deepEqual(job.metadata, { city: 'Lisbon', count: 2, lastRun: '2030-01-01T00:00:00Z' });
  const stored = await native(`/jobs/${job.id}`);
  assert.deepEqual(stored.metadata, { city: 'Lisbon', count: 2, lastRun: '2030-01-01T00:00:00Z' });

  const again = await Jobs.getJob(job.id);
  assert.deepEqual(again.metadata, stored.metadata, 'Jobs.getJob reads the stored metadata');
  const execution = await again.trigger();
  const [done] = await finalExecutions(job.id);
  assert.equal(done.id, execution.id);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.result.metadata, stored.metadata, 'the run sees the updated metadata');
});

test('JobInstance.user() is the token\'s user: its data, profile, update, patch and send reach Sundial', async () => {
  const seeded = await request('PUT', `/v1/agents/${agentId}/users/${userId}`, {
    body: { fullName: 'Ada Lovelace', plan: 'pro', timezone: 'Europe/London' },
  });
  assert.equal(seeded.status, 200, JSON.stringify(seeded.body));
  const job = await hourlyJob('user-check', {});
  const user = await job.user();
  assert.equal(user.plan, 'pro', 'lua-cli\'s proxy reads data fields');
  assert.deepEqual(user.data, { fullName: 'Ada Lovelace', plan: 'pro', timezone: 'Europe/London' });
  assert.equal(user._luaProfile.userId, userId);
  assert.equal(user._luaProfile.fullName, 'Ada Lovelace');

  await user.update({ ...user.data, plan: 'enterprise' });
  await user.patch({ set: { seats: 12 }, unset: ['timezone'] });
  const stored = await native(`/users/${userId}`);
  assert.deepEqual(stored, { userId, fullName: 'Ada Lovelace', plan: 'enterprise', seats: 12 });

  assert.equal(await user.send([{ type: 'text', text: 'Sent by a tool through lua-cli' }]), true);
  assert.ok((await conversation()).includes('Sent by a tool through lua-cli'));
});

test('trigger() runs the active version and trigger(versionId) a given one', async () => {
  const job = await hourlyJob('version-check', {});
  const pushed = await request('POST', `/v1/agents/${agentId}/jobs/${job.id}/versions`, {
    body: { version: '1.0.1', code: 'async (job) => ({ seen: "v2" })' },
  });
  assert.equal(pushed.status, 201, JSON.stringify(pushed.body));
  const versions = (await native(`/jobs/${job.id}`)).versions;
  const second = versions.find((version) => version.version === '1.0.1');
  assert.ok(second, `versions: ${JSON.stringify(versions)}`);

  const onActive = await job.trigger();
  assert.equal(onActive.versionId, job.activeVersion.id);
  assert.equal(onActive.executionId, onActive.id);
  assert.equal(onActive.jobId, job.id);
  assert.equal(typeof onActive.status, 'string');
  await finalExecutions(job.id, 1);
  const onSecond = await job.trigger(second.id);
  assert.equal(onSecond.versionId, second.id);

  const executions = await finalExecutions(job.id, 2);
  const byId = Object.fromEntries(executions.map((execution) => [execution.id, execution]));
  assert.equal(byId[onActive.id].result.seen, 'v1');
  assert.equal(byId[onSecond.id].result.seen, 'v2');
  assert.equal(byId[onSecond.id].versionId, second.id);
  assert.equal((await native(`/jobs/${job.id}`)).activeVersionId, job.activeVersion.id, 'the active version stays');
});

test('Jobs.create passes timeout, retry, a cron timezone and activate: false through', async () => {
  const job = await Jobs.create({
    name: 'created-inactive',
    schedule: { type: 'cron', expression: '0 9 * * 1-5', timezone: 'America/New_York' },
    timeout: 45,
    retry: { maxAttempts: 3, backoffSeconds: 10 },
    activate: false,
    execute: async () => ({ ran: true }),
  });
  let stored = await native(`/jobs/${job.id}`);
  assert.deepEqual([stored.active, stored.status, stored.nextRunAt ?? null], [false, 'inactive', null]);
  assert.equal(stored.versions.length, 1);
  assert.equal(stored.versions[0].timeout, 45);
  assert.deepEqual(stored.versions[0].retry, { maxAttempts: 3, backoffSeconds: 10 });

  await job.activate();
  stored = await native(`/jobs/${job.id}`);
  assert.deepEqual([stored.active, stored.status], [true, 'active']);
  assert.equal(stored.activeVersion.version, '1.0.0');
  assert.deepEqual(stored.schedule, { type: 'cron', expression: '0 9 * * 1-5', timezone: 'America/New_York' });
  const next = new Date(stored.nextRunAt);
  const local = new Intl.DateTimeFormat('en-US', {
    timeZone: 'America/New_York', hour: 'numeric', minute: 'numeric', weekday: 'short', hour12: false,
  }).format(next);
  assert.match(local, /^(Mon|Tue|Wed|Thu|Fri) 09:00$/, `next run ${stored.nextRunAt} is ${local} in New York`);
});

test('deactivate() and activate() change the stored job and the instance', async () => {
  const job = await hourlyJob('switch-check', {});
  assert.equal(await job.deactivate(), job);
  assert.equal(job.data.active, false);
  assert.equal(job.data.status, 'inactive');
  const off = await native(`/jobs/${job.id}`);
  assert.deepEqual([off.active, off.status, off.nextRunAt ?? null], [false, 'inactive', null]);

  await job.activate();
  assert.equal(job.data.active, true);
  const on = await native(`/jobs/${job.id}`);
  assert.deepEqual([on.active, on.status], [true, 'active']);
  assert.ok(on.nextRunAt, 'an active interval job has a next run');
});

test('getAll hides dynamic jobs unless includeDynamic, and delete() removes a dynamic job', async () => {
  const job = await hourlyJob('listing-check', {});
  const withoutDynamic = await Jobs.getAll();
  assert.ok(!withoutDynamic.some((listed) => listed.id === job.id), 'dynamic jobs are hidden by default');
  const withDynamic = await Jobs.getAll({ includeDynamic: true });
  const listed = withDynamic.find((candidate) => candidate.id === job.id);
  assert.ok(listed instanceof JobInstance);
  assert.equal(listed.name, 'listing-check');

  await job.delete();
  const gone = await request('GET', `/v1/agents/${agentId}/jobs/${job.id}`);
  assert.equal(gone.status, 404, 'a dynamic job without a pre-defined life is deleted');
  await assert.rejects(Jobs.getJob(job.id), (error) => error.statusCode === 404);
});

test('Jobs.getJob of an unknown job, or of another user\'s job, throws lua-cli\'s not_found error', async () => {
  await assert.rejects(Jobs.getJob('job_does_not_exist'), (error) => {
    assert.equal(error.code, 'not_found', `${error.name}: ${error.message}`);
    assert.equal(error.statusCode, 404);
    return true;
  });
  const theirs = await request('POST', `/v1/agents/${agentId}/jobs`, {
    headers: { 'X-User-Id': 'someone-else' },
    body: { name: 'not-yours', schedule: { type: 'interval', seconds: 3600 }, code: 'async () => 1' },
  });
  assert.equal(theirs.status, 201, JSON.stringify(theirs.body));
  await assert.rejects(Jobs.getJob(theirs.body.id), (error) => error.code === 'not_found');
});

test('a bad key makes lua-cli throw its AuthenticationError', async () => {
  const answer = await luaAs('sk_not_a_key_of_this_server', 'return await Jobs.getAll();');
  assert.equal(answer.thrown?.name, 'AuthenticationError', JSON.stringify(answer));
  assert.equal(answer.thrown.statusCode, 401);
});

test('a repeated POST with the same X-Idempotency-Key gets the first answer and creates nothing', async () => {
  const name = `idempotent-${Date.now()}`;
  const body = {
    dynamic: true,
    name,
    schedule: { type: 'interval', seconds: 3600 },
    metadata: {},
    version: { version: '1.0.0', code: compressForPush('async (job) => ({ ok: true })') },
    activate: true,
  };
  const headers = luaHeaders();
  const first = await request('POST', `/developer/jobs/${agentId}`, { key: userToken, body, headers });
  assert.ok(first.status >= 200 && first.status < 300, JSON.stringify(first.body));
  assert.equal(first.body.success, true);
  const repeat = await request('POST', `/developer/jobs/${agentId}`, { key: userToken, body, headers });
  assert.equal(repeat.status, first.status);
  assert.deepEqual(repeat.body, first.body, 'the first answer, replayed');

  const trigger = luaHeaders();
  const path = `/developer/jobs/${agentId}/${first.body.data.id}/trigger`;
  const fired = await request('POST', path, { key: userToken, body: {}, headers: trigger });
  const refired = await request('POST', path, { key: userToken, body: {}, headers: trigger });
  assert.equal(refired.body.data.id, fired.body.data.id, 'a replayed trigger runs nothing new');
  const other = await request('POST', path, { key: userToken, body: {}, headers: luaHeaders() });
  assert.notEqual(other.body.data.id, fired.body.data.id, 'a new key is a new call');

  const { jobs } = await native('/jobs?includeDynamic=true&limit=1000');
  assert.equal(jobs.filter((job) => job.name === name).length, 1, 'one job, not two');
  await finalExecutions(first.body.data.id, 2);
  const { total } = await native(`/jobs/${first.body.data.id}/executions`);
  assert.equal(total, 2, 'two triggers ran, not three');
});

test('a tool holding a user token files a ticket through Data and schedules its follow-up', async () => {
  const answer = await luaAs(userToken, `
    const ticket = await Data.create('tickets', { subject: 'Printer on fire', status: 'open' }, 'printer on fire');
    const job = await Jobs.create({
      name: 'ticket-followup-' + ticket.id,
      metadata: { ticketId: ticket.id },
      schedule: { type: 'once', executeAt: new Date(Date.now() + 3600 * 1000) },
      execute: async (job) => {
        const entry = await Data.getEntry('tickets', job.metadata.ticketId);
        return { status: entry.data.status };
      },
    });
    const found = await Data.search('tickets', 'printer', 5, 0);
    return { ticketId: ticket.id, jobId: job.id, found: found.length };`);
  assert.ok(answer.value, `the tool failed: ${JSON.stringify(answer.thrown)}`);
  assert.ok(answer.value.found >= 1, 'the user token searched the collection');
  const job = await native(`/jobs/${answer.value.jobId}`);
  assert.equal(job.userId, userId, 'the follow-up is a dynamic job of the token\'s user');
  assert.equal(job.metadata.ticketId, answer.value.ticketId);
  const entry = await native(`/data/tickets/${answer.value.ticketId}`);
  assert.equal(entry.data.status, 'open');
});

test('Jobs.create twice with one metadata.dedupKey gives one job, and a changed schedule a new version', async () => {
  const config = (minutes) => ({
    name: 'dedup-followup',
    metadata: { dedupKey: 'followup-T-7' },
    schedule: { type: 'interval', seconds: minutes * 60 },
    execute: async (job) => job.metadata.dedupKey,
  });
  const first = await Jobs.create(config(60));
  const second = await Jobs.create(config(60));
  assert.equal(second.id, first.id, 'the same job');
  const changed = await Jobs.create(config(30));
  assert.equal(changed.id, first.id, 'still the same job');
  const job = await native(`/jobs/${first.id}`);
  assert.equal(job.versions.length, 2, 'a new version for the new schedule');
  assert.deepEqual(job.schedule, { type: 'interval', seconds: 1800 });
  const { jobs } = await native('/jobs?includeDynamic=true&limit=1000');
  assert.equal(jobs.filter((each) => each.name === 'dedup-followup').length, 1);
});

test("the seed's wrong example (a parent-scope variable) is refused by Jobs.create, naming it", async () => {
  const input = { message: 'Team meeting' };
  const userMessage = input.message; // This variable...
  await assert.rejects(
    Jobs.create({
      name: 'self-contained-or-not',
      schedule: { type: 'once', executeAt: new Date(Date.now() + 3600 * 1000) },
      execute: async (job) => {
        // ...is NOT available here!
        await user.send(userMessage); // eslint-disable-line no-undef
      },
    }),
    (error) => {
      assert.match(String(error.message ?? error), /userMessage \(at \d+:\d+\)/);
      assert.match(String(error.message ?? error), /metadata/);
      return true;
    },
  );
});
