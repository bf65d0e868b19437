/**
 * The user of the tool call in progress, carried through async code with `AsyncLocalStorage`: a tool's handler
 * runs inside `withUser(userId, …)`, and every SDK call made inside it — however deep, across `await`s — acts for
 * that user, while a concurrent call for another user keeps its own.
 *
 * @module
 */

import { AsyncLocalStorage } from 'node:async_hooks';

import { invalidConfig } from './errors.js';

const ambientUser = new AsyncLocalStorage<string>();

/**
 * Runs `fn` on behalf of the user `userId`: jobs it creates with `Jobs.create` belong to that user (so
 * `job.user()` inside them is that user), and `Jobs.getAll`/`Jobs.getJob` see only that user's dynamic jobs.
 * An explicit client's `userId` (see `createClient`) takes precedence over this.
 *
 * @example
 * app.post('/tools/set_reminder', (request, response) =>
 *   withUser(request.user.id, () => reminderTool.execute(request.body)).then((answer) => response.json(answer)));
 */
export function withUser<Result>(userId: string, fn: () => Result): Result {
  if (typeof userId !== 'string' || userId.length === 0) {
    throw invalidConfig(`withUser: userId must be a non-empty string, got ${JSON.stringify(userId)}`, 'userId');
  }
  return ambientUser.run(userId, fn);
}

/** The user of the surrounding `withUser` call, if any. */
export function currentUserId(): string | undefined {
  return ambientUser.getStore();
}
