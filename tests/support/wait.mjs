// Waiting for a condition in the JavaScript suites. Plain Node, no dependencies.

import assert from 'node:assert/strict';

/** Polls `probe` every 100 ms until it answers something truthy; fails after `seconds` naming `what`. */
export async function eventually(what, probe, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const answer = await probe();
    if (answer) return answer;
    if (Date.now() > deadline) assert.fail(`timed out after ${seconds} s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
