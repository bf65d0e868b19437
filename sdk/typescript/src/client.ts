/**
 * `createClient` and the default `Jobs`, `User`, `Data` and `Products`, which read their configuration from the
 * environment (`SUNDIAL_URL`, `SUNDIAL_API_KEY`, `SUNDIAL_AGENT`) at each call.
 *
 * @module
 */

import { type ClientOptions, Connection } from './connection.js';
import { DataApi, ProductsApi } from './data.js';
import { JobsApi } from './jobs.js';
import { UserApi } from './users.js';

/** A client of one agent of one Sundial server, with its own credentials and, optionally, its own user. */
export class SundialClient {
  /** The seed's `Jobs`, through this client. */
  readonly jobs: JobsApi;
  /** The seed's `User`, through this client. */
  readonly users: UserApi;
  /** The seed's `Data`, through this client. */
  readonly data: DataApi;
  /** The seed's `Products`, through this client. */
  readonly products: ProductsApi;
  /** The server's base URL. */
  readonly url: string;
  /** The agent this client acts for. */
  readonly agentId: string;
  /** The user this client always acts for, if it was given one. */
  readonly userId: string | undefined;

  /** A client from `options`; prefer {@link createClient}. */
  constructor(options: ClientOptions = {}) {
    const connection = new Connection(options);
    const source = () => connection;
    this.jobs = new JobsApi(source);
    this.users = new UserApi(source);
    this.data = new DataApi(source);
    this.products = new ProductsApi(source);
    this.url = connection.url;
    this.agentId = connection.agentId;
    this.userId = connection.userId;
  }
}

/**
 * Makes a client with explicit settings; each one left out comes from the environment as for the default `Jobs`.
 * A `userId` here takes precedence over `withUser`.
 *
 * @example
 * const sundial = createClient({ url: 'https://sundial.internal', apiKey: process.env.AGENT_KEY, userId: 'u_42' });
 * const job = await sundial.jobs.create({ ... });
 */
export function createClient(options: ClientOptions = {}): SundialClient {
  return new SundialClient(options);
}

/** A connection configured from the environment, made at each call so that a change of it takes effect. */
const fromEnvironment = () => new Connection();

/**
 * The seed's `Jobs`, configured from the environment: `Jobs.create(config)`, `Jobs.getJob(id)`,
 * `Jobs.getAll({ includeDynamic })`. Acts for the user of the surrounding `withUser`, else for the user of a user
 * token, else for no user.
 */
export const Jobs: JobsApi = new JobsApi(fromEnvironment);

/** The seed's `User`, configured from the environment: `User.get(userId)`. */
export const User: UserApi = new UserApi(fromEnvironment);

/** The seed's `Data`, configured from the environment: the agent's JSON collections. */
export const Data: DataApi = new DataApi(fromEnvironment);

/** The seed's `Products`, configured from the environment: the agent's catalogue. */
export const Products: ProductsApi = new ProductsApi(fromEnvironment);
