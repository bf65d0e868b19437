/**
 * The seed's `User`: `User.get(userId)` answers a {@link UserInstance} — the user's data fields as properties, and
 * `send` to post to their conversation.
 *
 * @module
 */

import { type CallOptions, type Connection, segment } from './connection.js';
import { invalidConfig } from './errors.js';
import type { components } from './generated/openapi.js';
import type { StoredMessage, UserMessage, UserRecord } from './types.js';

type SendMessages = components['schemas']['SendMessages'];
type MessagesSent = components['schemas']['MessagesSent'];

/**
 * A user of the agent: `userId`, their data fields as properties (also as `data`), and methods that write through
 * the server. Inside a job, `job.user()` and `User.get(userId)` answer the same shape.
 */
export class UserInstance {
  /** The user's id. */
  readonly userId: string;
  /** A data field of the user. */
  [field: string]: unknown;
  readonly #connection: Connection;

  /** @internal Made by `User.get`; not meant to be constructed directly. */
  constructor(record: UserRecord, connection: Connection) {
    for (const [key, value] of Object.entries(record)) {
      if (key !== 'userId') this[key] = value;
    }
    this.userId = record.userId;
    this.#connection = connection;
  }

  /** The user's data fields (without `userId`). */
  get data(): Record<string, unknown> {
    const fields: Record<string, unknown> = {};
    for (const [key, value] of Object.entries(this)) {
      if (key !== 'userId') fields[key] = value;
    }
    return fields;
  }

  /**
   * Posts `messages` (1 to 100) to the user's conversation, in order: `{type: 'text', text}`,
   * `{type: 'image', image, mediaType}` or `{type: 'file', data, mediaType}`. Answers the stored messages (their
   * `executionId` is `null`: they were not sent by a job). Not retried: a repeat would post them twice. A user token
   * may only post to its own user (another user is `404 user_not_found`); an item the server refuses is
   * `400 invalid_request` with `field` naming it (`messages[0].type`).
   */
  async send(messages: UserMessage[], options?: CallOptions): Promise<StoredMessage[]> {
    if (!Array.isArray(messages) || messages.length === 0) {
      throw invalidConfig('messages: must be a non-empty array of {type, …}', 'messages');
    }
    const body: SendMessages = { messages };
    const answer = await this.#connection.request<MessagesSent>({
      method: 'POST',
      path: `/users/${segment(this.userId, 'userId')}/messages`,
      body,
      idempotent: false,
      options,
    });
    return answer.messages;
  }

  /** Replaces the user's data fields with `data`. Answers the user after the change. */
  async update(data: Record<string, unknown>, options?: CallOptions): Promise<UserInstance> {
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      throw invalidConfig('data: must be a JSON object', 'data');
    }
    const record = await this.#connection.request<UserRecord>({
      method: 'PUT',
      path: `/users/${segment(this.userId, 'userId')}`,
      body: data,
      idempotent: true,
      options,
    });
    return new UserInstance(record, this.#connection);
  }

  /** Removes every data field of the user. */
  async clear(options?: CallOptions): Promise<UserInstance> {
    return this.update({}, options);
  }

  /** Stores this instance's data fields (after assigning to them). */
  async save(options?: CallOptions): Promise<UserInstance> {
    return this.update(this.data, options);
  }
}

/** The seed's `User`. */
export class UserApi {
  readonly #source: () => Connection;

  /** @internal Made by `createClient` and for the default `User`. */
  constructor(source: () => Connection) {
    this.#source = source;
  }

  /** Reads the user `userId` of the agent (a user without data has only `userId`). */
  async get(userId: string, options?: CallOptions): Promise<UserInstance> {
    const connection = this.#source();
    const record = await connection.request<UserRecord>({
      method: 'GET',
      path: `/users/${segment(userId, 'userId')}`,
      idempotent: true,
      options,
    });
    return new UserInstance(record, connection);
  }
}
