// The dashboard as a person uses it, signed in with the admin key: the jobs list and its filters, a job (its next
// runs in the job's zone and in the viewer's), running it now and watching the run on the job's page, an execution
// (console, result, the messages it sent), deactivating with confirmation, and the users and system pages.
//
// The tests of this file run in order and share one signed-in browser context and the jobs seeded before them.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  api,
  agentId,
  assertClean,
  createJob,
  executionEnded,
  localized,
  newContext,
  openPage,
  restExecution,
  restJob,
  screenshot,
  server,
  signIn,
  textOf,
  useServerAndBrowser,
  visit,
} from './support.mjs';

const logLine = 'hello </script><script>alert(1)</script>';
// The run takes 1.5 s, so that the job page shows it under way first and has to catch its end by itself.
const reportCode = `async (job) => { console.log('hello </script><script>alert(1)</script>'); await new Promise((resolve) => setTimeout(resolve, 1500)); const user = await job.user(); await user.send([{type:'text', text:'Your report is ready'}]); return {ok:true}; }`;
const plainCode = 'async (job) => ({ ok: true })';

/** The seeded jobs, by role: `{id, name, userId}`. */
const jobs = {};
let context;
let page;
/** The execution started with "Run now" in the browser. */
let uiExecutionId;

useServerAndBrowser(async () => {
  const seed = async (role, spec, userId) => {
    const job = await createJob({ code: plainCode, ...spec }, userId);
    jobs[role] = { id: job.id, name: job.name, userId };
  };
  await seed(
    'report',
    {
      name: 'Morning report',
      schedule: { type: 'cron', expression: '0 9 * * 1-5', timezone: 'America/New_York' },
      code: reportCode,
      metadata: { team: 'reports' },
    },
    'alice',
  );
  await seed('aliceOther', { name: 'Water the plants', schedule: { type: 'cron', expression: '0 18 * * *', timezone: 'UTC' } }, 'alice');
  await seed('bobDigest', { name: 'Weekly digest', schedule: { type: 'cron', expression: '0 8 * * 1', timezone: 'Europe/London' } }, 'bob');
  await seed('bobBackup', { name: 'Backup reminder', schedule: { type: 'cron', expression: '30 22 * * *', timezone: 'UTC' } }, 'bob');
  await seed('predefined', { name: 'Nightly cleanup', schedule: { type: 'cron', expression: '0 3 * * *', timezone: 'UTC' } });

  context = await newContext({ timezoneId: 'Europe/Paris', locale: 'en-GB' });
  page = await openPage(context);
  await signIn(page, server.adminKey);
  assert.equal(new URL(page.url()).pathname, '/ui', 'signing in did not land on the jobs list');
}, async () => {
  if (context) await context.close();
});

/** The ids of the jobs listed on the page, in order. */
async function listedJobIds() {
  return page.locator('table.jobs tbody tr[data-job]').evaluateAll((rows) => rows.map((row) => row.dataset.job));
}

/** Paris (or any zone's) wall time, HH:MM, of an instant, as the test computes it independently of the page. */
function wallTime(instant, timeZone) {
  return new Intl.DateTimeFormat('en-GB', { timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(
    new Date(instant),
  );
}

test('the jobs list shows every job; filtering on user alice lists only her jobs', async () => {
  await visit(page, '/ui');
  await localized(page);
  const all = await listedJobIds();
  assert.deepEqual(new Set(all), new Set(Object.values(jobs).map((job) => job.id)));
  const report = page.locator(`tr[data-job="${jobs.report.id}"]`);
  assert.equal((await report.locator('td').nth(0).textContent()).trim(), 'Morning report');
  assert.equal((await report.locator('td').nth(1).textContent()).trim(), 'alice');
  assert.match(await report.locator('td').nth(2).textContent(), /weekday.*09:00/i);
  assert.match(await report.locator('td').nth(3).locator('time[data-local]').textContent(), /09:00:00 E[SD]T \(America\/New_York\)/);
  assert.match(await textOf(page, `tr[data-job="${jobs.predefined.id}"] td:nth-child(2)`), /pre-defined/);
  await screenshot(page, 'jobs');

  // Through the filter form, as a person would.
  await page.fill('form.filters input[name="user"]', 'alice');
  await Promise.all([page.waitForNavigation(), page.click('form.filters button[type="submit"]')]);
  assert.equal(new URL(page.url()).searchParams.get('user'), 'alice');
  const listed = await listedJobIds();
  assert.deepEqual(new Set(listed), new Set([jobs.report.id, jobs.aliceOther.id]));
  const users = await page.locator('table.jobs tbody tr[data-job] td:nth-child(2)').allTextContents();
  assert.deepEqual(users.map((user) => user.trim()), ['alice', 'alice']);
  assert.equal(await page.inputValue('form.filters input[name="user"]'), 'alice', 'the filter form forgot the user');
  await assertClean(page);
});

test(
  'the text filter keeps what was typed',
  async () => {
    await visit(page, '/ui');
    await page.fill('form.filters input[name="q"]', 'Morning');
    await Promise.all([page.waitForNavigation(), page.click('form.filters button[type="submit"]')]);
    assert.deepEqual(await listedJobIds(), [jobs.report.id]);
    assert.equal(await page.inputValue('form.filters input[name="q"]'), 'Morning');
  },
);

test("a job's next runs are shown in the job's zone and, by the browser, in the viewer's zone", async () => {
  await visit(page, `/ui/jobs/${jobs.report.id}`);
  await localized(page);
  assert.equal(await textOf(page, 'main#live h1'), 'Morning report');
  assert.match(await textOf(page, 'p.meta'), /for user alice/);
  assert.equal(await textOf(page, 'table.runs thead th'), 'Next runs (America/New_York)');

  const rows = page.locator('table.runs tbody tr');
  assert.equal(await rows.count(), 10);
  const runs = await rows.evaluateAll((trs) =>
    trs.map((tr) => {
      const time = tr.querySelector('td:first-child time[data-local]');
      return {
        datetime: time.getAttribute('datetime'),
        shown: time.textContent.trim(),
        viewer: tr.querySelector('td:first-child .viewer-time')?.textContent ?? '',
        utc: tr.querySelector('td:nth-child(2)').textContent.trim(),
      };
    }),
  );
  const rest = await restJob(jobs.report.id);
  assert.equal(runs[0].datetime, rest.nextRunAt, 'the first next run is not the job\'s next run');
  for (const run of runs) {
    // In the job's zone: 09:00 New York time, on a weekday.
    assert.match(run.shown, /^(Mon|Tue|Wed|Thu|Fri) \d{1,2} \w{3} \d{4} 09:00:00 E[SD]T \(America\/New_York\)$/);
    assert.equal(wallTime(run.datetime, 'America/New_York'), '09:00');
    assert.equal(run.utc, run.datetime);
    // In the viewer's zone (this browser sits in Paris): 15:00, or 14:00 in the weeks the two zones' summer times
    // do not overlap — computed here from the instant, not taken from the page.
    assert.match(run.viewer, /\(Europe\/Paris\)/);
    const paris = wallTime(run.datetime, 'Europe/Paris');
    assert.ok(run.viewer.includes(`${paris}:00`), `viewer time "${run.viewer}" does not show Paris time ${paris}`);
  }
  assert.ok(
    runs.some((run) => run.viewer.includes('15:00:00')),
    'no next run shows 15:00 Paris time',
  );
  // Relative time, too.
  assert.match(runs[0].viewer, /· (in |tomorrow|today)/);

  // The same page seen from Tokyo shows Tokyo's wall time: the extra time is the viewer's own zone.
  const tokyo = await newContext({ timezoneId: 'Asia/Tokyo', locale: 'en-GB' });
  try {
    const tokyoPage = await openPage(tokyo);
    await signIn(tokyoPage, server.adminKey);
    await visit(tokyoPage, `/ui/jobs/${jobs.report.id}`);
    await localized(tokyoPage);
    const viewer = await textOf(tokyoPage, 'table.runs tbody tr:first-child .viewer-time');
    assert.match(viewer, /\(Asia\/Tokyo\)/);
    assert.ok(viewer.includes(`${wallTime(runs[0].datetime, 'Asia/Tokyo')}:00`), viewer);
    assert.match(await textOf(tokyoPage, 'table.runs tbody tr:first-child time'), /09:00:00 E[SD]T/);
    await assertClean(tokyoPage);
  } finally {
    await tokyo.close();
  }
  await assertClean(page);
});

test('Run now asks for confirmation, then the new run is listed on the job page', async () => {
  await visit(page, `/ui/jobs/${jobs.report.id}`);
  await Promise.all([page.waitForNavigation(), page.click('nav.actions a.button:text-is("Run now")')]);
  assert.equal(new URL(page.url()).pathname, `/ui/jobs/${jobs.report.id}/confirm/trigger`);
  assert.equal(await textOf(page, 'section.confirm h1'), 'Run this job now?');
  assert.equal(await textOf(page, 'section.confirm p strong'), 'Morning report');

  const posted = page.waitForResponse(
    (response) => response.request().method() === 'POST' && response.url().endsWith(`/ui/jobs/${jobs.report.id}/trigger`),
  );
  await Promise.all([page.waitForNavigation(), page.click('section.confirm button:text-is("Yes, trigger")')]);
  const response = await posted;
  assert.equal(response.status(), 303);
  const link = /<\/ui\/executions\/([^>]+)>; rel="created"/.exec(response.headers().link ?? '');
  assert.ok(link, `the trigger's answer names no new execution (Link: ${response.headers().link})`);
  uiExecutionId = link[1];
  assert.equal(new URL(page.url()).pathname, `/ui/jobs/${jobs.report.id}`);
  assert.equal(await page.locator(`table.executions tr[data-execution="${uiExecutionId}"]`).count(), 1);
  assert.match(await textOf(page, `tr[data-execution="${uiExecutionId}"] td:nth-child(2)`), /^manual/);
  assert.match(await textOf(page, `tr[data-execution="${uiExecutionId}"] .badge`), /^(pending|running)$/);
  const rest = await restExecution(uiExecutionId);
  assert.equal(rest.jobId, jobs.report.id);
  await assertClean(page);
});

/** Fails with what the page shows and what the stream delivered, when a run's row does not turn completed. */
async function expectRowCompleted(executionId, timeout) {
  const badge = page.locator(`tr[data-execution="${executionId}"] .badge`);
  try {
    await badge.filter({ hasText: /^completed$/ }).waitFor({ timeout });
  } catch {
    const events = await page.evaluate(() => window.__sundialTest.events);
    const shown = (await badge.count()) ? `"${await badge.textContent()}"` : 'no row';
    assert.fail(
      `the job page shows ${shown} for ${executionId} while the server says ` +
        `"${(await restExecution(executionId)).status}"; the page's EventSource dispatched ` +
        `${events.ready} "ready" and ${events.change} "change" events`,
    );
  }
  assert.equal(await page.evaluate(() => window.__notReloaded), true, 'the page was reloaded instead of refreshed');
}

test('after Run now, the run shown on the job page turns completed there without a reload', async () => {
  assert.ok(uiExecutionId, 'the previous test started no run');
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
  await executionEnded(uiExecutionId);
  await expectRowCompleted(uiExecutionId, 4_000);
});

test('a run started elsewhere appears and completes on the open job page, refreshed by Server-Sent Events', async () => {
  await visit(page, `/ui/jobs/${jobs.report.id}`);
  assert.equal(await page.getAttribute('body', 'data-live'), '1');
  await page.evaluate(() => {
    window.__notReloaded = true;
  });
  // Give app.js its stream before the run starts (the server's first event, "ready", says it is there).
  await page.waitForFunction(() => window.__sundialTest.events.ready >= 1, null, { timeout: 2_000 }).catch(() => {});
  const triggered = await api('POST', `/v1/agents/${agentId}/jobs/${jobs.report.id}/trigger`, { body: {} });
  assert.ok(triggered.status < 300, `REST trigger answered ${triggered.status}`);
  const executionId = triggered.body.id;
  await executionEnded(executionId);
  await expectRowCompleted(executionId, 4_000);
  assert.ok(await page.evaluate(() => window.__sundialTest.events.change) >= 1, 'no "change" event arrived');
  // The swapped-in region is localized again.
  await localized(page);
});

test('the execution page shows its console log as text and the message it sent', async () => {
  assert.ok(uiExecutionId, 'no run was started with Run now');
  const ended = await executionEnded(uiExecutionId);
  assert.equal(ended.status, 'completed', `the run ended ${ended.status}: ${JSON.stringify(ended.error)}`);

  // From the job page, as a person would.
  await visit(page, `/ui/jobs/${jobs.report.id}`);
  await localized(page);
  assert.equal(await textOf(page, `tr[data-execution="${uiExecutionId}"] .badge`), 'completed');
  await screenshot(page, 'job');
  await Promise.all([
    page.waitForNavigation(),
    page.click(`tr[data-execution="${uiExecutionId}"] a[href="/ui/executions/${uiExecutionId}"]`),
  ]);
  await localized(page);
  assert.equal(await textOf(page, 'main#live h1'), `Execution ${uiExecutionId}`);
  assert.equal(await textOf(page, 'p.meta .badge'), 'completed');
  assert.equal(await textOf(page, 'p.meta a'), 'Morning report');
  assert.match(await textOf(page, 'ol.timeline'), /Ended .*E[SD]T \(America\/New_York\)/s);

  const logs = await page.locator('pre.logs').textContent();
  assert.ok(logs.includes(`[log] ${logLine}`), `console shows ${JSON.stringify(logs)}`);
  // The log's markup stays text: the only script on the page is the dashboard's own.
  const scripts = await page.evaluate(() => [...document.scripts].map((script) => script.getAttribute('src')));
  assert.deepEqual(scripts, ['/ui/assets/app.js']);
  assert.equal(await page.locator('pre.logs *:not(span.log)').count(), 0, 'the log line made elements');

  assert.match(await textOf(page, 'pre.json'), /"ok": true/);
  const bubbles = await page.locator('ol.conversation li.message .bubble').allTextContents();
  assert.deepEqual(bubbles.map((text) => text.trim()), ['Your report is ready']);
  await screenshot(page, 'execution');
  await assertClean(page);
});

test('Deactivate asks for confirmation, then the job is inactive', async () => {
  await visit(page, `/ui/jobs/${jobs.report.id}`);
  assert.equal(await textOf(page, 'p.meta .badge'), 'active');
  await Promise.all([page.waitForNavigation(), page.click('nav.actions a.button:text-is("Deactivate")')]);
  assert.equal(new URL(page.url()).pathname, `/ui/jobs/${jobs.report.id}/confirm/deactivate`);
  assert.equal(await textOf(page, 'section.confirm h1'), 'Deactivate this job?');
  // Nothing has changed before the confirmation.
  assert.equal((await restJob(jobs.report.id)).status, 'active');

  await Promise.all([page.waitForNavigation(), page.click('section.confirm button:text-is("Yes, deactivate")')]);
  assert.equal(new URL(page.url()).pathname, `/ui/jobs/${jobs.report.id}`);
  assert.equal(await textOf(page, 'p.meta .badge'), 'inactive');
  assert.equal(await page.locator('nav.actions a.button:text-is("Activate")').count(), 1);
  assert.equal(await page.locator('nav.actions a.button:text-is("Deactivate")').count(), 0);
  const rest = await restJob(jobs.report.id);
  assert.equal(rest.status, 'inactive');
  assert.equal(rest.active, false);

  // The list says so too, and the status filter finds it.
  await visit(page, '/ui?status=inactive');
  assert.deepEqual(await listedJobIds(), [jobs.report.id]);
  assert.equal(await textOf(page, `tr[data-job="${jobs.report.id}"] td:nth-child(4)`), 'inactive');
  assert.equal(await textOf(page, `tr[data-job="${jobs.report.id}"] td:nth-child(6) a.toggle`), 'off');
  // The list's toggle asks for confirmation too.
  assert.equal(
    await page.getAttribute(`tr[data-job="${jobs.report.id}"] td:nth-child(6) a.toggle`, 'href'),
    `/ui/jobs/${jobs.report.id}/confirm/activate?back=list`,
  );
  await assertClean(page);
});

test('the users page lists users with their jobs; a user page shows their jobs and conversation', async () => {
  await visit(page, '/ui/users');
  const rows = await page.locator('table.users tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent.trim())),
  );
  // alice: two jobs, one active (the report was deactivated); bob: two, both active.
  assert.deepEqual(rows, [
    ['alice', '2', '1'],
    ['bob', '2', '2'],
  ]);
  await screenshot(page, 'users');

  await Promise.all([page.waitForNavigation(), page.click('table.users a:text-is("alice")')]);
  assert.equal(new URL(page.url()).pathname, '/ui/users/alice');
  await localized(page);
  assert.equal(await textOf(page, 'main#live h1'), 'User alice');
  const listed = await page.locator('ul.jobs li a').allTextContents();
  assert.deepEqual(new Set(listed), new Set(['Morning report', 'Water the plants']));
  const bubbles = await page.locator('ol.conversation li.message .bubble').allTextContents();
  const sent = await api('GET', `/v1/agents/${agentId}/users/alice/messages`);
  assert.equal(sent.status, 200);
  assert.ok(sent.body.messages.length >= 1);
  assert.deepEqual(
    bubbles.map((text) => text.trim()),
    sent.body.messages.map((message) => message.content.text),
  );
  await screenshot(page, 'user');
  await assertClean(page);
});

test('the system page shows counters, lateness, workers, database and nodes', async () => {
  await visit(page, '/ui/system');
  await localized(page);
  assert.equal(await textOf(page, 'main#live h1'), 'System');
  const headings = await page.locator('main#live h2').allTextContents();
  for (const heading of ['Slots', 'Fire lateness', 'Sandbox workers', 'Database']) {
    assert.ok(headings.includes(heading), `no "${heading}" section (has ${headings.join(', ')})`);
  }
  assert.ok(Number(await textOf(page, 'dd.fired')) >= 0);
  const lateness = await page.locator('main#live table').first().textContent();
  assert.match(lateness, /p50/);
  assert.match(lateness, /p99/);
  assert.match(await textOf(page, 'main#live'), /Workers\s*2/);
  assert.match(await textOf(page, 'main#live'), /Size: [\d.]+ MiB/);
  assert.match(await textOf(page, 'main#live'), /Nodes holding leases/);
  await screenshot(page, 'system');
  await assertClean(page);
});
