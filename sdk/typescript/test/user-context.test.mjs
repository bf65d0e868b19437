// Who the user is: an explicit client's userId, then the surrounding withUser, then a user token's own user — and
// with none of them, no user at all (never the key's owner). Two concurrent withUser calls never mix their jobs.
// User.get reads a user; user.send posts to the user's conversation from job code and from Node alike.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Jobs, SundialError, User, createClient, currentUserId, withUser } from '@sundial/jobs';

import {
  agentId,
  api,
  conversation,
  finalExecution,
  mintUserToken,
  read,
  server,
  serverJob,
  uniqueUser,
  useServer,
} from './support.mjs';

useServer();

const hourly = { type: 'interval', seconds: 3600 };

/** Lets other async work run between the steps of a tool call. */
const yieldTurn = () => new Promise((resolve) => setTimeout(resolve, Math.random() * 20));

test('two concurrent withUser calls for different users never mix their jobs', async () => {
  const alice = uniqueUser('alice');
  const bob = uniqueUser('bob');

  /** A tool call: several jobs created with awaits in between, then the user's own list. */
  async function toolCall(label) {
    const created = [];
    for (let index = 0; index < 5; index++) {
      await yieldTurn();
      assert.equal(currentUserId(), label === 'a' ? alice : bob);
      const job = await Jobs.create({
        name: `${label}-${index}`,
        metadata: { label },
        schedule: hourly,
        execute: async (job) => (await job.user()).userId,
      });
      created.push(job);
    }
    await yieldTurn();
    const listed = await Jobs.getAll({ includeDynamic: true });
    return { created, listed };
  }
  const [forAlice, forBob] = await Promise.all([withUser(alice, () => toolCall('a')), withUser(bob, () => toolCall('b'))]);
  assert.equal(currentUserId(), undefined, 'no user outside withUser');

  for (const [userId, label, { created, listed }] of [
    [alice, 'a', forAlice],
    [bob, 'b', forBob],
  ]) {
    for (const job of created) {
      const stored = await serverJob(job.id);
      assert.equal(stored.userId, userId, `${job.name} belongs to ${userId}`);
      assert.equal(stored.metadata.label, label);
    }
    assert.deepEqual(
      listed.map((job) => job.name).sort(),
      created.map((job) => job.name).sort(),
      `${userId} sees exactly their own jobs`,
    );
  }
  // A run of one of them: job.user() inside the sandbox is its creator.
  const execution = await finalExecution((await forBob.created[2].trigger()).id);
  assert.equal(execution.result, bob);
  // A job instance keeps acting for the user it was read with, outside withUser too.
  const other = await forAlice.created[0].trigger();
  assert.equal((await finalExecution(other.id)).result, alice);
});

test("an explicit client's userId wins over withUser; withUser wins over a user token's own user", async () => {
  const explicit = uniqueUser('explicit');
  const ambient = uniqueUser('ambient');
  const client = createClient({ url: server.url, apiKey: server.adminKey, userId: explicit });
  const fromClient = await withUser(ambient, () =>
    client.jobs.create({ name: 'explicit', schedule: hourly, execute: async () => 1 }));
  assert.equal((await serverJob(fromClient.id)).userId, explicit);

  const tokenUser = uniqueUser('token');
  const token = await mintUserToken(tokenUser);
  const tokenClient = createClient({ url: server.url, apiKey: token });
  const fromToken = await tokenClient.jobs.create({ name: 'by-token', schedule: hourly, execute: async () => 1 });
  const stored = await serverJob(fromToken.id);
  assert.deepEqual([stored.userId, stored.dynamic], [tokenUser, true], "a user token's jobs are its user's");
  const sameUser = await withUser(tokenUser, () =>
    tokenClient.jobs.create({ name: 'same', schedule: hourly, execute: async () => 1 }));
  assert.equal((await serverJob(sameUser.id)).userId, tokenUser);

  // withUser for another user is sent as X-User-Id, which a user token may not do: the server says so.
  const refused = await withUser(ambient, () =>
    tokenClient.jobs.create({ name: 'other', schedule: hourly, execute: async () => 1 })).catch((caught) => caught);
  assert.ok(refused instanceof SundialError);
  assert.deepEqual([refused.status, refused.code], [403, 'forbidden']);
  assert.equal((await tokenClient.jobs.getAll({ includeDynamic: true })).length, 2, 'the token sees its own jobs');
});

test('configuration comes from SUNDIAL_URL and SUNDIAL_API_KEY; a missing key is a clear error', async () => {
  const saved = process.env.SUNDIAL_API_KEY;
  delete process.env.SUNDIAL_API_KEY;
  try {
    const error = await Jobs.getAll().catch((caught) => caught);
    assert.ok(error instanceof SundialError);
    assert.equal(error.code, 'invalid_config');
    assert.match(error.message, /SUNDIAL_API_KEY/);
  } finally {
    process.env.SUNDIAL_API_KEY = saved;
  }
  const wrongKey = createClient({ url: server.url, apiKey: 'sk_wrong' });
  const unauthorized = await wrongKey.jobs.getAll().catch((caught) => caught);
  assert.deepEqual([unauthorized.status, unauthorized.code], [401, 'unauthorized']);
});

test("User.get reads a user's data; update writes it", async () => {
  const userId = uniqueUser('dana');
  const user = await User.get(userId);
  assert.equal(user.userId, userId);
  const updated = await user.update({ name: 'Dana', plan: 'pro' });
  assert.deepEqual([updated.name, updated.plan], ['Dana', 'pro']);
  assert.deepEqual(updated.data, { name: 'Dana', plan: 'pro' });
  const again = await User.get(userId);
  assert.equal(again.name, 'Dana');

  // Inside a job, User.get(userId) reaches the same user and can send (the pre-defined pattern).
  const job = await Jobs.create({
    name: 'notify-dana',
    metadata: { userId },
    schedule: hourly,
    execute: async (job) => {
      const user = await User.get(job.metadata.userId);
      await user.send([{ type: 'text', text: `hello ${user.name}` }]);
      return user.plan;
    },
  });
  assert.equal((await finalExecution((await job.trigger()).id)).result, 'pro');
  assert.deepEqual(await conversation(userId), ['hello Dana']);
});

test('user.send from Node posts to the conversation, read back through GET …/messages', async () => {
  const erin = uniqueUser('erin');
  // A tool call: inside withUser, with the default User (admin key from the environment).
  const sent = await withUser(erin, async () => {
    const user = await User.get(currentUserId());
    return user.send([
      { type: 'text', text: 'sent from a tool' },
      { type: 'image', image: 'https://example.com/chart.png', mediaType: 'image/png' },
    ]);
  });
  assert.equal(sent.length, 2);
  for (const message of sent) {
    assert.match(message.id, /^msg_/);
    assert.equal(message.userId, erin);
    assert.equal(message.executionId, null, 'not sent by a job');
    assert.ok(Number.isInteger(message.seq));
    assert.ok(!Number.isNaN(Date.parse(message.createdAt)));
  }
  assert.ok(sent[0].seq < sent[1].seq, 'in order');
  const { messages } = await read(`/users/${encodeURIComponent(erin)}/messages`);
  assert.deepEqual(messages, sent, 'the conversation holds what send answered');
  assert.deepEqual(
    messages.map((message) => message.content),
    [
      { type: 'text', text: 'sent from a tool' },
      { type: 'image', image: 'https://example.com/chart.png', mediaType: 'image/png' },
    ],
  );

  // With a client acting for the user, after a message sent by a job: the conversation keeps the order.
  const client = createClient({ url: server.url, apiKey: server.adminKey, userId: erin });
  const job = await client.jobs.create({
    name: 'from-job',
    schedule: hourly,
    execute: async (job) => (await job.user()).send([{ type: 'text', text: 'sent from a job' }]),
  });
  const execution = await finalExecution((await job.trigger()).id);
  assert.equal(execution.status, 'completed', JSON.stringify(execution));
  const [file] = await (await client.users.get(erin)).send([
    { type: 'file', data: 'aGVsbG8=', mediaType: 'text/plain' },
  ]);
  assert.deepEqual(file.content, { type: 'file', data: 'aGVsbG8=', mediaType: 'text/plain' });
  const after = (await read(`/users/${encodeURIComponent(erin)}/messages`)).messages;
  assert.deepEqual(
    after.map((message) => [message.content.text ?? message.content.type, message.executionId === null]),
    [
      ['sent from a tool', true],
      ['image', true],
      ['sent from a job', false],
      ['file', true],
    ],
  );

  // An item the server refuses: 400, naming it; nothing is stored.
  const invalid = await (await User.get(erin)).send([{ type: 'video', url: 'x' }]).catch((caught) => caught);
  assert.ok(invalid instanceof SundialError);
  assert.deepEqual(
    [invalid.status, invalid.code, invalid.field],
    [400, 'invalid_request', 'messages[0].type'],
  );
  assert.equal((await conversation(erin)).length, 4);
});

test("a user token sends to its own user's conversation only", async () => {
  const owner = uniqueUser('owner');
  const other = uniqueUser('other');
  const token = await mintUserToken(owner);
  const tokenClient = createClient({ url: server.url, apiKey: token });
  const [sent] = await (await tokenClient.users.get(owner)).send([{ type: 'text', text: 'mine' }]);
  assert.equal(sent.userId, owner);
  assert.deepEqual(await conversation(owner), ['mine']);

  // Another user: the token cannot read them, and a post to their conversation is refused as if they did not exist.
  const unseen = await tokenClient.users.get(other).catch((caught) => caught);
  assert.ok(unseen instanceof SundialError);
  assert.deepEqual([unseen.status, unseen.code], [404, 'user_not_found']);
  const posted = await api('POST', `/v1/agents/${agentId}/users/${encodeURIComponent(other)}/messages`, {
    key: token,
    body: { messages: [{ type: 'text', text: 'not yours' }] },
  });
  assert.deepEqual([posted.status, posted.body.code], [404, 'user_not_found'], JSON.stringify(posted.body));
  assert.deepEqual(await conversation(other), [], 'nothing reached the other conversation');
  assert.deepEqual(await conversation(owner), ['mine']);
});
