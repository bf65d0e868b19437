// Signing in to the dashboard: an admin or agent key opens a session through the form; a user token is refused with
// an error on the page and no session.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  agentId,
  api,
  assertClean,
  newContext,
  openPage,
  screenshot,
  server,
  signIn,
  textOf,
  useServerAndBrowser,
  visit,
} from './support.mjs';

useServerAndBrowser();

async function sessionCookie(context) {
  return (await context.cookies(`${server.url}/ui`)).find((cookie) => cookie.name === 'sundial_session');
}

test('a visitor without a session is sent to the sign-in form', async () => {
  const context = await newContext();
  try {
    const page = await openPage(context);
    await page.goto(`${server.url}/ui/system`);
    assert.equal(new URL(page.url()).pathname, '/ui/login');
    assert.equal(await page.locator('form[action="/ui/login"] input[type="password"][name="key"]').count(), 1);
    assert.equal(await page.locator('form[action="/ui/login"] input[type="hidden"][name="csrf"]').count(), 1);
    await screenshot(page, 'login');
    await assertClean(page);
  } finally {
    await context.close();
  }
});

test('the admin key signs in through the form and opens a session', async () => {
  const context = await newContext();
  try {
    const page = await openPage(context);
    const response = await signIn(page, server.adminKey);
    assert.equal(response.status(), 200);
    assert.equal(new URL(page.url()).pathname, '/ui');
    assert.equal(await textOf(page, 'main#live h1'), 'Jobs');
    assert.match(await textOf(page, 'header .who'), new RegExp(`agent ${agentId} \\(admin key\\)`));
    const cookie = await sessionCookie(context);
    assert.ok(cookie, 'no sundial_session cookie after signing in');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.ok(!page.url().includes(server.adminKey), 'the key shows in the URL');
    // The session opens the other pages, too.
    await visit(page, '/ui/system');
    assert.equal(await textOf(page, 'main#live h1'), 'System');
    await assertClean(page);
  } finally {
    await context.close();
  }
});

test('an agent key signs in too', async () => {
  const minted = await api('POST', `/v1/agents/${agentId}/keys`, { body: {} });
  assert.equal(minted.status < 300, true, `minting an agent key answered ${minted.status}`);
  const context = await newContext();
  try {
    const page = await openPage(context);
    await signIn(page, minted.body.key);
    assert.equal(new URL(page.url()).pathname, '/ui');
    const who = await textOf(page, 'header .who');
    assert.match(who, new RegExp(`agent ${agentId}`));
    assert.doesNotMatch(who, /admin key/);
    assert.ok(await sessionCookie(context));
    await assertClean(page);
  } finally {
    await context.close();
  }
});

test('a user token is refused: the error is shown and no session is opened', async () => {
  const minted = await api('POST', `/v1/agents/${agentId}/users/alice/tokens`, { body: {} });
  assert.equal(minted.status < 300, true, `minting a user token answered ${minted.status}`);
  const { token } = minted.body;
  assert.ok(token, 'no token in the answer');
  const context = await newContext();
  try {
    const page = await openPage(context);
    const response = await signIn(page, token);
    assert.equal(response.status(), 401);
    assert.equal(new URL(page.url()).pathname, '/ui/login');
    assert.match(await textOf(page, 'section.login p.error[role="alert"]'), /user token cannot open the dashboard/i);
    assert.equal(await sessionCookie(context), undefined, 'a session cookie was set for a user token');
    // Still not signed in: the dashboard sends the visitor back to the form.
    await page.goto(`${server.url}/ui`);
    assert.equal(new URL(page.url()).pathname, '/ui/login');
    await assertClean(page);
  } finally {
    await context.close();
  }
});

test('a wrong key is refused', async () => {
  const context = await newContext();
  try {
    const page = await openPage(context);
    const response = await signIn(page, 'sk_not_a_key');
    assert.equal(response.status(), 401);
    assert.match(await textOf(page, 'p.error[role="alert"]'), /unknown or revoked key/i);
    assert.equal(await sessionCookie(context), undefined);
    await assertClean(page);
  } finally {
    await context.close();
  }
});
