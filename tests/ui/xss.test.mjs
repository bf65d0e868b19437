// Hostile text stays text: a job named like an HTML tag, a console line that closes a <script>, a message and
// metadata carrying markup. On every page they show up on, no dialog opens, no element is made from them, the only
// script is the dashboard's own, the strict Content-Security-Policy is sent, and the browser reports no violation of
// it caused by the dashboard's own markup.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  agentId,
  api,
  assertClean,
  createJob,
  executionEnded,
  localized,
  newContext,
  openPage,
  server,
  signIn,
  textOf,
  useServerAndBrowser,
  visit,
} from './support.mjs';

const hostileName = '<img src=x onerror=alert(1)>';
const hostileLog = 'hello </script><script>alert(1)</script>';
const hostileMessage = '<img src=x onerror=alert(2)> <b>bold?</b>';
const hostileMetadata = '</script><script>alert(3)</script>';

let context;
let page;
let jobId;
let executionId;

useServerAndBrowser(
  async () => {
    const job = await createJob(
      {
        name: hostileName,
        description: '<script>alert(4)</script>',
        schedule: { type: 'cron', expression: '0 9 * * 1-5', timezone: 'America/New_York' },
        code: `async (job) => { console.log(${JSON.stringify(hostileLog)}); const user = await job.user(); await user.send([{type:'text', text:${JSON.stringify(hostileMessage)}}]); return {html: ${JSON.stringify(hostileMetadata)}}; }`,
        metadata: { note: hostileMetadata },
      },
      'bob',
    );
    jobId = job.id;
    const triggered = await api('POST', `/v1/agents/${agentId}/jobs/${jobId}/trigger`, { body: {} });
    assert.ok(triggered.status < 300, `trigger answered ${triggered.status}: ${JSON.stringify(triggered.body)}`);
    executionId = triggered.body.id;
    const ended = await executionEnded(executionId);
    assert.equal(ended.status, 'completed', `the hostile job's run ended ${ended.status}`);

    context = await newContext();
    page = await openPage(context);
    await signIn(page, server.adminKey);
  },
  async () => {
    if (context) await context.close();
  },
);

/** Asserts the page's markup holds no element made from the seeded text, and the dashboard's headers. */
async function assertInert(response) {
  const csp = response.headers()['content-security-policy'] ?? '';
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(response.headers()['x-content-type-options'], 'nosniff');
  assert.equal(await page.locator('img').count(), 0, 'an <img> element was made');
  assert.equal(await page.locator('main b').count(), 0, 'a <b> element was made');
  const scripts = await page.evaluate(() => [...document.scripts].map((script) => script.getAttribute('src')));
  assert.deepEqual(scripts, ['/ui/assets/app.js'], 'a script other than the dashboard\'s own is in the page');
  const handlers = await page.evaluate(
    () => [...document.querySelectorAll('*')].filter((element) => [...element.attributes].some((a) => a.name.startsWith('on'))).length,
  );
  assert.equal(handlers, 0, 'an element carries an event-handler attribute');
  await assertClean(page);
}

test('the job named like an <img> tag is text in the list, the filters, the job and its confirmation pages', async () => {
  let response = await visit(page, '/ui');
  await localized(page);
  assert.equal(await textOf(page, `tr[data-job="${jobId}"] td:first-child a`), hostileName);
  await assertInert(response);

  // The text filter echoes what was typed back into the form, as a value.
  response = await visit(page, `/ui?q=${encodeURIComponent('"><img src=x onerror=alert(5)>')}`);
  assert.equal(await page.inputValue('form.filters input[name="q"]'), '"><img src=x onerror=alert(5)>');
  await assertInert(response);
  response = await visit(page, `/ui?user=${encodeURIComponent('"><script>alert(6)</script>')}`);
  assert.match(await textOf(page, 'main#live'), /No jobs match/);
  await assertInert(response);

  response = await visit(page, `/ui/jobs/${jobId}`);
  await localized(page);
  assert.equal(await textOf(page, 'main#live h1'), hostileName);
  assert.equal(await page.title(), `${hostileName} · Sundial`);
  assert.match(await textOf(page, 'p.meta'), /<script>alert\(4\)<\/script>/);
  assert.ok((await textOf(page, 'pre.json')).includes(hostileMetadata));
  assert.ok((await page.locator('pre.code code').first().textContent()).includes('console.log('));
  await assertInert(response);

  for (const action of ['trigger', 'deactivate', 'delete']) {
    response = await visit(page, `/ui/jobs/${jobId}/confirm/${action}`);
    assert.equal(await textOf(page, 'section.confirm p strong'), hostileName);
    await assertInert(response);
  }
});

test('the console line with </script> and the message with markup are text on the execution and user pages', async () => {
  let response = await visit(page, `/ui/executions/${executionId}`);
  await localized(page);
  assert.ok((await page.locator('pre.logs').textContent()).includes(hostileLog), 'the log line is not shown verbatim');
  assert.equal(await textOf(page, 'ol.conversation li.message .bubble'), hostileMessage);
  assert.ok((await textOf(page, 'pre.json')).includes(JSON.stringify(hostileMetadata).slice(1, -1)));
  assert.equal(await textOf(page, 'p.meta a'), hostileName);
  await assertInert(response);

  response = await visit(page, '/ui/users/bob');
  await localized(page);
  assert.equal(await textOf(page, 'ul.jobs li a'), hostileName);
  assert.equal(await textOf(page, 'ol.conversation li.message .bubble'), hostileMessage);
  await assertInert(response);

  for (const path of ['/ui/users', '/ui/system']) {
    response = await visit(page, path);
    await assertInert(response);
  }
});

test('the list stays inert when app.js refreshes #live in place', async () => {
  // Another run while the list is open: whatever app.js swaps into #live is as inert as the first render.
  const response = await visit(page, '/ui');
  const triggered = await api('POST', `/v1/agents/${agentId}/jobs/${jobId}/trigger`, { body: {} });
  assert.ok(triggered.status < 300);
  await executionEnded(triggered.body.id);
  // app.js's own refresh (what a "change" event runs) swaps the fetched page's #live in; the strip gains a mark.
  await page.evaluate(() => refresh());
  await page.locator(`tr[data-job="${jobId}"] .strip .mark`).nth(1).waitFor({ timeout: 5_000 });
  assert.equal(await textOf(page, `tr[data-job="${jobId}"] td:first-child a`), hostileName);
  await assertInert(response);
});
