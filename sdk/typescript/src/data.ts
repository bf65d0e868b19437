/**
 * The seed's `Data` (the agent's JSON collections, searched full-text) and `Products` (its catalogue), with the
 * result shapes job code sees in the sandbox: lists are arrays that also answer `.data`.
 *
 * @module
 */

import { type CallOptions, type Connection, segment } from './connection.js';
import { invalidConfig } from './errors.js';
import type { DataEntry, DataFilter, ListResult, Pagination, Product, ProductInput, ProductPatch } from './types.js';

/** An array that also answers `.data` (the same array) and, for a page, `.pagination`. */
function listResult<Item>(items: Item[], pagination?: Pagination): ListResult<Item> {
  const list = items as ListResult<Item>;
  Object.defineProperty(list, 'data', { value: list, writable: true, configurable: true });
  if (pagination !== undefined) {
    Object.defineProperty(list, 'pagination', { value: pagination, writable: true, configurable: true });
  }
  return list;
}

function requireObject(value: unknown, name: string): asserts value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw invalidConfig(`${name}: must be a JSON object`, name);
  }
}

/** The seed's `Data`: the agent's JSON collections. */
export class DataApi {
  readonly #source: () => Connection;

  /** @internal Made by `createClient` and for the default `Data`. */
  constructor(source: () => Connection) {
    this.#source = source;
  }

  /** Adds an entry to `collection` (made when missing). `searchText` is what `search` matches (default: the
   * data's values). */
  async create(
    collection: string,
    data: Record<string, unknown>,
    searchText?: string,
    options?: CallOptions,
  ): Promise<DataEntry> {
    requireObject(data, 'data');
    return this.#source().request<DataEntry>({
      method: 'POST',
      path: `/data/${segment(collection, 'collection')}`,
      body: searchText === undefined ? { data } : { data, searchText },
      idempotent: false,
      options,
    });
  }

  /** A page of entries of `collection` that match `filter` (page from 1, `limit` default 10). */
  async get(
    collection: string,
    filter?: DataFilter,
    page?: number,
    limit?: number,
    options?: CallOptions,
  ): Promise<ListResult<DataEntry>> {
    const answer = await this.#source().request<{ entries: DataEntry[]; pagination: Pagination }>({
      method: 'GET',
      path: `/data/${segment(collection, 'collection')}`,
      query: {
        filter: filter === undefined ? undefined : JSON.stringify(filter),
        page,
        limit: limit ?? 10,
      },
      idempotent: true,
      options,
    });
    return listResult(answer.entries, answer.pagination);
  }

  /** One entry of `collection`; rejects with a 404 `SundialError` when there is none. */
  async getEntry(collection: string, id: string, options?: CallOptions): Promise<DataEntry> {
    return this.#source().request<DataEntry>({
      method: 'GET',
      path: `/data/${segment(collection, 'collection')}/${segment(id, 'id')}`,
      idempotent: true,
      options,
    });
  }

  /** Merges `data` into the entry's fields (as lua-cli's `Data.update` does); `searchText` replaces its search
   * text. */
  async update(
    collection: string,
    id: string,
    data: Record<string, unknown>,
    searchText?: string,
    options?: CallOptions,
  ): Promise<DataEntry> {
    requireObject(data, 'data');
    return this.#source().request<DataEntry>({
      method: 'PATCH',
      path: `/data/${segment(collection, 'collection')}/${segment(id, 'id')}`,
      body: searchText === undefined ? { set: data } : { set: data, searchText },
      idempotent: true,
      options,
    });
  }

  /** Entries of `collection` matching `text`, best first, each with its `score` (`limit` default 10). */
  async search(
    collection: string,
    text: string,
    limit?: number,
    scoreThreshold?: number,
    options?: CallOptions,
  ): Promise<ListResult<DataEntry>> {
    const answer = await this.#source().request<{ entries: DataEntry[] }>({
      method: 'GET',
      path: `/data/${segment(collection, 'collection')}/search`,
      query: { text, limit: limit ?? 10, scoreThreshold },
      idempotent: true,
      options,
    });
    return listResult(answer.entries);
  }

  /** Deletes an entry. */
  async delete(collection: string, id: string, options?: CallOptions): Promise<{ deleted: boolean; id: string }> {
    return this.#source().request({
      method: 'DELETE',
      path: `/data/${segment(collection, 'collection')}/${segment(id, 'id')}`,
      idempotent: true,
      options,
    });
  }
}

/** The seed's `Products`: the agent's catalogue. */
export class ProductsApi {
  readonly #source: () => Connection;

  /** @internal Made by `createClient` and for the default `Products`. */
  constructor(source: () => Connection) {
    this.#source = source;
  }

  /** A page of products (page from 1, `limit` default 10): an array with `length`, `map`, `reduce` … */
  async get(page?: number, limit?: number, options?: CallOptions): Promise<ListResult<Product>> {
    const answer = await this.#source().request<{ products: Product[]; pagination: Pagination }>({
      method: 'GET',
      path: '/products',
      query: { page, limit: limit ?? 10 },
      idempotent: true,
      options,
    });
    return listResult(answer.products, answer.pagination);
  }

  /** One product; rejects with a 404 `SundialError` when there is none. */
  async getById(id: string, options?: CallOptions): Promise<Product> {
    return this.#source().request<Product>({
      method: 'GET',
      path: `/products/${segment(id, 'id')}`,
      idempotent: true,
      options,
    });
  }

  /** Adds a product (`name` required; `id` generated when left out). */
  async create(product: ProductInput, options?: CallOptions): Promise<Product> {
    requireObject(product, 'product');
    return this.#source().request<Product>({
      method: 'POST',
      path: '/products',
      body: product,
      idempotent: false,
      options,
    });
  }

  /** Merges `fields` into the product `id` (lua-cli's argument order). */
  async update(fields: ProductPatch, id: string, options?: CallOptions): Promise<Product> {
    requireObject(fields, 'product');
    return this.#source().request<Product>({
      method: 'PATCH',
      path: `/products/${segment(id, 'id')}`,
      body: fields,
      idempotent: true,
      options,
    });
  }

  /** Deletes a product. */
  async delete(id: string, options?: CallOptions): Promise<{ deleted: boolean; id: string }> {
    return this.#source().request({
      method: 'DELETE',
      path: `/products/${segment(id, 'id')}`,
      idempotent: true,
      options,
    });
  }

  /** Products matching `query`, best first (`limit` default 5). */
  async search(query: string, limit?: number, options?: CallOptions): Promise<ListResult<Product>> {
    const answer = await this.#source().request<{ products: Product[] }>({
      method: 'GET',
      path: '/products/search',
      query: { query, limit: limit ?? 5 },
      idempotent: true,
      options,
    });
    return listResult(answer.products);
  }
}
