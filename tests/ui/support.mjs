// Shared set-up of the dashboard's browser tests. Each test file starts its own real `sundial serve` (a fresh data
// directory, a free port on 127.0.0.1, a known admin key), seeds it through the /v1 REST API with plain `fetch`, and
// drives the system's Chromium (/usr/bin/chromium) with playwright-core — no browser is downloaded.
//
// Every page opened with `openPage()` is watched: a JavaScript dialog (alert, confirm, prompt) is dismissed and
// recorded, and so are Content-Security-Policy violations (console errors and `securitypolicyviolation` events) and
// uncaught page errors; `assertClean()` fails the test on any of them.
//
// The binary comes from SUNDIAL_BIN, by default <repo>/target/debug/sundial. Screenshots are written to
// <repo>/docs/screenshots only when SUNDIAL_UI_SCREENSHOTS=1.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before } from 'node:test';

import { chromium } from 'playwright-core';

import { finalStates, restClient } from '../support/rest.mjs';
import { repositoryRoot, startServer } from '../support/server.mjs';

export { repositoryRoot, serverBinary } from '../support/server.mjs';

/** The agent every test acts for. */
export const agentId = 'default';

/** The browser the tests drive: Debian's Chromium. */
export const chromiumPath = '/usr/bin/chromium';

const chromiumArgs = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The width of every page the tests open (and of the screenshots). */
export const viewport = { width: 1280, height: 800 };

/** The running server of this file: `{url, adminKey, binary, output()}` once `before` has run. */
export const server = {};

/** The browser of this file, once `before` has run. */
export const browserHolder = {};

/**
 * Starts `sundial serve` and Chromium before the file's tests, then runs `setup` (seeding, signing in), and stops
 * both after them. Read `server` and call `newContext()`.
 */
export function useServerAndBrowser(setup = async () => {}, teardown = async () => {}) {
  let running;
  before(async () => {
    if (!existsSync(chromiumPath)) {
      throw new Error(`${chromiumPath} is missing: install Debian's chromium package (apt-get install -y chromium)`);
    }
    // playwright-core's launch() gives the browser a fresh, temporary user-data-dir of its own.
    const [started, browser] = await Promise.all([
      startServer({ name: 'ui' }),
      chromium.launch({ executablePath: chromiumPath, args: chromiumArgs, headless: true }),
    ]);
    running = started;
    Object.assign(server, { url: running.url, adminKey: running.adminKey, binary: running.binary, output: running.output });
    browserHolder.browser = browser;
    await setup();
  });
  after(async () => {
    await teardown().catch(() => {});
    if (browserHolder.browser) await browserHolder.browser.close().catch(() => {});
    if (running) await running.stop();
  });
}

/**
 * A new browser context (its own cookies) at 1280 px wide. `timezoneId` and `locale` are the viewer's; the default
 * viewer sits in Paris with a 24-hour English locale.
 */
export function newContext({ timezoneId = 'Europe/Paris', locale = 'en-GB' } = {}) {
  return browserHolder.browser.newContext({ viewport, timezoneId, locale, deviceScaleFactor: 1 });
}

// ---------------------------------------------------------------------------------------------------------------
// REST, for set-up and verification

/** A request to the server with plain fetch; answers `{status, body}` (see tests/support/rest.mjs). */
export const { api } = restClient(server, agentId);

/** Creates a job for the agent (for `userId` when given); answers the job as the server answered it. */
export async function createJob(spec, userId) {
  const { status, body } = await api('POST', `/v1/agents/${agentId}/jobs`, { body: spec, userId });
  assert.ok(status === 200 || status === 201, `creating job ${spec.name} answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

/** The job as the server has it now. */
export async function restJob(jobId) {
  const { status, body } = await api('GET', `/v1/agents/${agentId}/jobs/${jobId}`);
  assert.equal(status, 200, `GET job ${jobId} answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

/** The execution as the server has it now. */
export async function restExecution(executionId) {
  const { status, body } = await api('GET', `/v1/agents/${agentId}/executions/${executionId}`);
  assert.equal(status, 200, `GET execution ${executionId} answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

/** Polls `probe` (async, answers a value or undefined) until it answers something, or fails after `timeout` ms. */
export async function waitFor(what, probe, { timeout = 10_000, interval = 100 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await probe();
    if (last !== undefined && last !== null && last !== false) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolveWait) => setTimeout(resolveWait, interval));
  }
}

/** Waits until the execution has ended (any final state); answers it. */
export function executionEnded(executionId, timeout = 15_000) {
  return waitFor(
    `execution ${executionId} to end`,
    async () => {
      const execution = await restExecution(executionId);
      return finalStates.has(execution.status) ? execution : undefined;
    },
    { timeout },
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Pages

/**
 * Recorded by an init script in every page: CSP violations the browser reported as events, and the dashboard's
 * Server-Sent Events (`ready`/`change`) as app.js's EventSource received them. Instrumentation only: it wraps
 * EventSource without changing what it does.
 */
function instrument() {
  window.__sundialTest = { violations: [], events: { ready: 0, change: 0 } };
  document.addEventListener('securitypolicyviolation', (event) => {
    window.__sundialTest.violations.push(`${event.violatedDirective} blocked ${event.blockedURI || 'inline'}`);
  });
  const Original = window.EventSource;
  if (Original) {
    window.EventSource = class extends Original {
      constructor(...args) {
        super(...args);
        for (const name of ['ready', 'change']) {
          this.addEventListener(name, () => {
            window.__sundialTest.events[name] += 1;
          });
        }
      }
    };
  }
}

/** A watched page in `context`: see `assertClean`. */
export async function openPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const problems = { dialogs: [], csp: [], pageErrors: [], consoleErrors: [] };
  page.on('dialog', (dialog) => {
    problems.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    dialog.dismiss().catch(() => {});
  });
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    problems.consoleErrors.push(message.text());
    if (/content security policy/i.test(message.text())) problems.csp.push(message.text());
  });
  page.on('pageerror', (error) => problems.pageErrors.push(String(error)));
  await page.addInitScript(instrument);
  page.problems = problems;
  return page;
}

/** Fails when the page opened a dialog, broke the CSP, or threw. */
export async function assertClean(page) {
  const { dialogs, csp, pageErrors } = page.problems;
  let violations = [];
  try {
    violations = await page.evaluate(() => window.__sundialTest?.violations ?? []);
  } catch {
    // the page is gone or navigating: the console listener still saw its reports
  }
  assert.deepEqual(dialogs, [], `a dialog opened: ${dialogs.join('; ')}`);
  assert.deepEqual(csp, [], `Content-Security-Policy violations in the console: ${csp.join('; ')}`);
  assert.deepEqual(violations, [], `Content-Security-Policy violation events: ${violations.join('; ')}`);
  assert.deepEqual(pageErrors, [], `uncaught errors in the page: ${pageErrors.join('; ')}`);
}

/** Opens `path` of the dashboard; asserts the answer's status (200 by default); answers the response. */
export async function visit(page, path, status = 200) {
  const response = await page.goto(`${server.url}${path}`);
  assert.equal(response.status(), status, `GET ${path} answered ${response.status()}`);
  return response;
}

/** Signs in through the form with `key`; answers the response to the form's POST (after its redirect, if any). */
export async function signIn(page, key) {
  await visit(page, '/ui/login');
  await page.fill('input[name="key"]', key);
  const [response] = await Promise.all([
    page.waitForNavigation(),
    page.click('section.login button[type="submit"]'),
  ]);
  return response;
}

/** The trimmed text of the first element matching `selector`. */
export async function textOf(page, selector) {
  return (await page.locator(selector).first().textContent()).trim();
}

/** Waits until app.js has shown the viewer's own time for every `<time data-local>` on the page. */
export async function localized(page) {
  await page.waitForFunction(() =>
    [...document.querySelectorAll('time[data-local]')].every((element) => element.dataset.done === '1'),
  );
}

/**
 * A full-page PNG of the page into <repo>/docs/screenshots/<name>.png, only when SUNDIAL_UI_SCREENSHOTS=1 (so
 * that test runs leave the tree as it was). Asserts it stays under 300 KB.
 */
export async function screenshot(page, name) {
  if (process.env.SUNDIAL_UI_SCREENSHOTS !== '1') return;
  const directory = join(repositoryRoot, 'docs', 'screenshots');
  mkdirSync(directory, { recursive: true });
  const path = join(directory, `${name}.png`);
  await page.screenshot({ path, fullPage: true, type: 'png', animations: 'disabled' });
  const size = statSync(path).size;
  assert.ok(size < 300 * 1024, `screenshot ${name}.png is ${Math.round(size / 1024)} KB, over 300 KB`);
}
