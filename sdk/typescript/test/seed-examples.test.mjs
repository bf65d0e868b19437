// The Jobs API document's three complete examples (test/seed/*.ts: ReminderTool, ScheduleFollowupTool,
// DailyReportTool), copied with only their import line changed, compiled by `tsc --strict` into build/seed, and run
// as a tool handler would run them: inside `withUser(userId, …)`. The jobs then run in Sundial's sandbox and the
// outcome is read back through the native /v1 API.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Data, Jobs, Products, withUser } from '@sundial/jobs';

import DailyReportTool from '../build/seed/daily-report.js';
import ScheduleFollowupTool from '../build/seed/schedule-followup.js';
import ReminderTool from '../build/seed/set-reminder.js';
import {
  conversation,
  finalExecution,
  finalExecutions,
  fireSoon,
  read,
  serverJob,
  uniqueUser,
  useServer,
} from './support.mjs';

useServer();

/** Runs a tool the way a tool runtime does: the input is validated by the tool's schema first. */
function runTool(tool, input) {
  return tool.execute(tool.inputSchema.parse(input));
}

test('ReminderTool: the reminder reaches the conversation of the user it was set for', async () => {
  const userId = uniqueUser('alice');
  const tool = new ReminderTool();
  assert.throws(() => tool.inputSchema.parse({ message: 'too soon', minutes: 0 }));

  const before = Date.now();
  const answer = await withUser(userId, () => runTool(tool, { message: 'Team meeting in 10 minutes', minutes: 10 }));
  assert.equal(answer.success, true);
  assert.equal(answer.message, 'Reminder set for 10 minutes from now');
  assert.match(answer.jobId, /^job_/);
  const executeAt = Date.parse(answer.executeAt);
  assert.ok(executeAt >= before + 600_000 && executeAt <= Date.now() + 600_000, `executeAt ${answer.executeAt}`);

  const job = await serverJob(answer.jobId);
  assert.equal(job.dynamic, true);
  assert.equal(job.userId, userId, 'withUser made it a job of that user');
  assert.equal(job.metadata.message, 'Team meeting in 10 minutes');
  assert.deepEqual(job.schedule, { type: 'once', executeAt: new Date(executeAt).toISOString() });

  // Not waiting ten minutes: the server moves the once job to a second from now.
  await fireSoon(answer.jobId);
  const [execution] = await finalExecutions(answer.jobId);
  assert.equal(execution.status, 'completed', JSON.stringify(execution));
  assert.equal(execution.trigger, 'schedule');
  assert.equal(execution.result.success, true);
  assert.ok(!Number.isNaN(Date.parse(execution.result.deliveredAt)));
  assert.deepEqual(await conversation(userId), ['⏰ Reminder: Team meeting in 10 minutes']);
  const done = await serverJob(answer.jobId);
  assert.deepEqual([done.status, done.active], ['completed', false], 'a once job is done after its run');
});

test('ScheduleFollowupTool: the follow-up sees an open ticket through Data and records it', async () => {
  const userId = uniqueUser('bob');
  const open = await Data.create('tickets', { ticketId: 'T-4711', status: 'open', subject: 'Printer on fire' });
  const closed = await Data.create('tickets', { ticketId: 'T-4712', status: 'closed', subject: 'Refund' });
  assert.match(open.id, /.+/);
  const found = await Data.search('tickets', 'T-4711', 1);
  assert.equal(found.data, found, 'Data.search answers an array that is also .data');
  assert.equal(found[0].id, open.id);

  const tool = new ScheduleFollowupTool();
  const forOpen = await withUser(userId, () =>
    runTool(tool, { ticketId: 'T-4711', followupHours: 24, message: 'Is the printer still on fire?' }));
  const forClosed = await withUser(userId, () =>
    runTool(tool, { ticketId: 'T-4712', followupHours: 24, message: 'Did the refund arrive?' }));
  assert.deepEqual(
    { success: forOpen.success, message: forOpen.message },
    { success: true, message: 'Follow-up scheduled for 24 hours' },
  );
  const job = await serverJob(forOpen.jobId);
  assert.deepEqual([job.name, job.description, job.userId], ['followup-T-4711', 'Follow-up for ticket T-4711', userId]);

  // Not waiting a day: trigger() runs each now.
  const [openJob, closedJob] = await withUser(userId, () =>
    Promise.all([Jobs.getJob(forOpen.jobId), Jobs.getJob(forClosed.jobId)]));
  const sent = await finalExecution((await openJob.trigger()).id);
  assert.equal(sent.status, 'completed', JSON.stringify(sent));
  assert.deepEqual(sent.result, { success: true, sent: true });
  const skipped = await finalExecution((await closedJob.trigger()).id);
  assert.equal(skipped.status, 'completed', JSON.stringify(skipped));
  assert.deepEqual(skipped.result, { success: true, sent: false, reason: 'Ticket closed' });

  assert.deepEqual(await conversation(userId), ['📋 Ticket #T-4711 Follow-up:\n\nIs the printer still on fire?']);
  const updated = await Data.getEntry('tickets', open.id);
  assert.equal(updated.data.followupSent, true);
  assert.ok(!Number.isNaN(Date.parse(updated.data.followupAt)));
  assert.deepEqual([updated.data.status, updated.data.subject], ['open', 'Printer on fire'], 'the rest is kept');
  assert.deepEqual((await Data.getEntry('tickets', closed.id)).data, {
    ticketId: 'T-4712',
    status: 'closed',
    subject: 'Refund',
  });
});

test('DailyReportTool: the cron job, triggered once, reports the real products', async () => {
  const userId = uniqueUser('carol');
  for (const product of [
    { name: 'Espresso machine', price: 75 },
    { name: 'Milk jug', price: 19.99 },
    { name: 'Descaler', price: 5.01 },
    { name: 'Gift card (no list price)' },
  ]) {
    await Products.create(product);
  }
  const catalogue = await Products.get(1, 100);
  assert.equal(catalogue.length, 4);
  assert.equal(catalogue.reduce((sum, product) => sum + (product.price || 0), 0), 100);

  const tool = new DailyReportTool();
  assert.throws(() => tool.inputSchema.parse({ timeOfDay: '25:00' }));
  const answer = await withUser(userId, () => runTool(tool, { timeOfDay: '09:30' }));
  assert.deepEqual(
    { success: answer.success, message: answer.message },
    { success: true, message: 'Daily report scheduled for 09:30' },
  );
  const job = await serverJob(answer.jobId);
  assert.deepEqual([job.name, job.status, job.userId], ['daily-sales-report', 'active', userId]);
  assert.deepEqual(job.schedule, { type: 'cron', expression: '30 09 * * *' });
  assert.equal(job.scheduleDescription, 'every day at 09:30 (UTC)');

  const instance = await withUser(userId, () => Jobs.getJob(answer.jobId));
  assert.equal(instance.scheduleDescription, job.scheduleDescription);
  assert.equal(instance.nextRuns.length, 3);
  const triggered = await instance.trigger();
  assert.match(triggered.id, /^exe_/);
  assert.equal(triggered.versionId, instance.activeVersion.id);
  const execution = await finalExecution(triggered.id);
  assert.equal(execution.status, 'completed', JSON.stringify(execution));
  assert.equal(execution.trigger, 'manual');
  assert.deepEqual(execution.result, { success: true, productCount: 4, totalValue: 100 });
  assert.deepEqual(await conversation(userId), [
    '📊 Daily Sales Report\n\nTotal Products: 4\nCatalog Value: $100.00\nReport Time: 09:30',
  ]);
  assert.equal((await serverJob(answer.jobId)).status, 'active', 'a triggered run leaves the cron job active');
  assert.equal((await read(`/jobs/${answer.jobId}/executions`)).total, 1, 'nothing else ran');
});
