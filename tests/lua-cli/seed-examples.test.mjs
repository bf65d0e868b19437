// The seed's three complete examples (shared/seed/jobs-api.txt: set_reminder, schedule_followup,
// setup_daily_report), run as lua-cli tools: each tool is compiled like `lua compile` does and executed in Node with
// the published lua-cli's `Jobs` pointed at Sundial with a user token, so `Jobs.create` makes a dynamic job of that
// user. The jobs then run in Sundial's sandbox; the results are read back through Sundial's native /v1 API.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  adminKey,
  compileTool,
  conversation,
  finalExecutions,
  jobsFiringSoon,
  loadLuaCli,
  luaAs,
  native,
  runTool,
  userId,
  userToken,
} from './support.mjs';

const lua = await loadLuaCli(userToken);

/** Reads a data entry back with lua-cli's own client (as the developer). */
async function ticket(id) {
  const answer = await luaAs(adminKey, `const entry = await Data.getEntry('tickets', ${JSON.stringify(id)});
    return { id: entry.id, data: entry.data };`);
  assert.ok(answer.value, `Data.getEntry failed: ${JSON.stringify(answer.thrown)}`);
  return answer.value;
}

test('set_reminder: the reminder lands in the conversation of the user who set it', async () => {
  const created = [];
  const tool = await compileTool('set-reminder.ts', { Jobs: jobsFiringSoon(lua.Jobs, 2, created) });

  await assert.rejects(runTool(tool, { message: 'too soon', minutes: 0 }), /greater than or equal to 1/);
  const answer = await runTool(tool, { message: 'Team meeting in 10 minutes', minutes: 10 });

  assert.equal(answer.success, true);
  assert.equal(answer.message, 'Reminder set for 10 minutes from now');
  assert.match(answer.jobId, /^job_/);
  const { config } = created[0];
  assert.equal(answer.executeAt, config.schedule.executeAt.toISOString(), 'activeVersion.schedule.executeAt');
  assert.match(config.name, /^reminder-\d+$/);

  const job = await native(`/jobs/${answer.jobId}`);
  assert.equal(job.dynamic, true);
  assert.equal(job.userId, userId, 'a user token makes a dynamic job of its user');
  assert.equal(job.metadata.message, 'Team meeting in 10 minutes');
  const code = await native(`/jobs/${answer.jobId}/versions/1.0.0/code`);
  const source = typeof code === 'string' ? code : code.code;
  assert.equal(source, config.execute.toString(), 'the minified execute arrives as lua-cli sent it');

  const [execution] = await finalExecutions(answer.jobId);
  assert.equal(execution.status, 'completed', `execution: ${JSON.stringify(execution)}`);
  assert.equal(execution.trigger, 'schedule');
  assert.equal(execution.result.success, true);
  assert.ok(!Number.isNaN(Date.parse(execution.result.deliveredAt)), 'deliveredAt is an instant');
  assert.ok(
    (await conversation()).includes('⏰ Reminder: Team meeting in 10 minutes'),
    'the reminder is in the user\'s conversation',
  );
  const after = await native(`/jobs/${answer.jobId}`);
  assert.equal(after.status, 'completed', 'a once job is done after its run');
  assert.equal(after.active, false);
});

test('schedule_followup: only an open ticket gets a follow-up, and the ticket records it', async () => {
  const seeded = await luaAs(adminKey, `
    const open = await Data.create('tickets', { ticketId: 'T-4711', status: 'open', subject: 'Printer on fire' });
    const closed = await Data.create('tickets', { ticketId: 'T-4712', status: 'closed', subject: 'Refund' });
    return { open: open.id, closed: closed.id };`);
  assert.ok(seeded.value, `seeding tickets with Data.create failed: ${JSON.stringify(seeded.thrown)}`);
  const { open, closed } = seeded.value;

  const created = [];
  const tool = await compileTool('schedule-followup.ts', { Jobs: jobsFiringSoon(lua.Jobs, 2, created) });
  const forOpen = await runTool(tool, { ticketId: 'T-4711', followupHours: 24, message: 'Is the printer still on fire?' });
  const forClosed = await runTool(tool, { ticketId: 'T-4712', followupHours: 24, message: 'Did the refund arrive?' });
  assert.deepEqual(
    { success: forOpen.success, message: forOpen.message },
    { success: true, message: 'Follow-up scheduled for 24 hours' },
  );
  assert.equal(created[0].config.name, 'followup-T-4711');
  assert.equal((await native(`/jobs/${forOpen.jobId}`)).description, 'Follow-up for ticket T-4711');

  const [sent] = await finalExecutions(forOpen.jobId);
  assert.equal(sent.status, 'completed', `execution: ${JSON.stringify(sent)}`);
  assert.deepEqual(sent.result, { success: true, sent: true });
  const [skipped] = await finalExecutions(forClosed.jobId);
  assert.equal(skipped.status, 'completed', `execution: ${JSON.stringify(skipped)}`);
  assert.deepEqual(skipped.result, { success: true, sent: false, reason: 'Ticket closed' });

  const texts = await conversation();
  assert.ok(texts.includes('📋 Ticket #T-4711 Follow-up:\n\nIs the printer still on fire?'), JSON.stringify(texts));
  assert.ok(!texts.some((text) => text?.includes('T-4712')), 'no follow-up for a closed ticket');

  const updated = await ticket(open);
  assert.equal(updated.data.followupSent, true);
  assert.ok(!Number.isNaN(Date.parse(updated.data.followupAt)), 'followupAt is an instant');
  assert.equal(updated.data.status, 'open', 'the rest of the ticket is kept');
  assert.equal(updated.data.subject, 'Printer on fire');
  const untouched = await ticket(closed);
  assert.deepEqual(untouched.data, { ticketId: 'T-4712', status: 'closed', subject: 'Refund' });
});

test('setup_daily_report: the cron job reports on the real catalog when triggered', async () => {
  const seeded = await luaAs(adminKey, `
    for (const product of [
      { name: 'Espresso machine', price: 75 },
      { name: 'Milk jug', price: 19.99 },
      { name: 'Descaler', price: 5.01 },
      { name: 'Gift card (no list price)' },
    ]) await Products.create(product);
    return (await Products.get(1, 100)).length;`);
  assert.equal(seeded.value, 4, `seeding products with Products.create failed: ${JSON.stringify(seeded.thrown)}`);

  const tool = await compileTool('daily-report.ts', { Jobs: lua.Jobs });
  await assert.rejects(runTool(tool, { timeOfDay: '25:00' }));
  const answer = await runTool(tool, { timeOfDay: '09:30' });
  assert.deepEqual(
    { success: answer.success, message: answer.message },
    { success: true, message: 'Daily report scheduled for 09:30' },
  );

  const job = await native(`/jobs/${answer.jobId}`);
  assert.equal(job.name, 'daily-sales-report');
  assert.deepEqual(job.schedule, { type: 'cron', expression: '30 09 * * *' });
  assert.equal(job.status, 'active');
  const next = new Date(job.nextRunAt);
  assert.deepEqual([next.getUTCHours(), next.getUTCMinutes()], [9, 30], 'cron times are UTC by default');

  // Not waiting for 09:30: lua-cli's JobInstance.trigger() runs it now, outside its schedule.
  const instance = await lua.Jobs.getJob(answer.jobId);
  const triggered = await instance.trigger();
  assert.match(triggered.id, /^exe_/);
  assert.equal(triggered.executionId, triggered.id);
  assert.equal(triggered.versionId, instance.activeVersion.id);

  const [execution] = await finalExecutions(answer.jobId);
  assert.equal(execution.id, triggered.id);
  assert.equal(execution.status, 'completed', `execution: ${JSON.stringify(execution)}`);
  assert.equal(execution.trigger, 'manual');
  assert.deepEqual(execution.result, { success: true, productCount: 4, totalValue: 100 });
  const report = '📊 Daily Sales Report\n\nTotal Products: 4\nCatalog Value: $100.00\nReport Time: 09:30';
  assert.ok((await conversation()).includes(report), 'the report is in the user\'s conversation');
  assert.equal((await native(`/jobs/${answer.jobId}`)).status, 'active', 'a triggered run leaves the cron job active');
});
