// The package itself: the committed generated types equal what the live server's OpenAPI document generates now
// (so a change of the server's API is caught), and the CommonJS build exports the same API as the ES module build.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';

import * as esm from '@sundial/jobs';

import { fetchDocument, generateTypes } from '../scripts/openapi.mjs';
import { packageDir, server, useServer } from './support.mjs';

useServer();

test('src/generated/openapi.ts is what the live server\'s /v1/openapi.json generates (run `npm run generate`)', async () => {
  const committed = readFileSync(join(packageDir, 'src', 'generated', 'openapi.ts'), 'utf8');
  const generated = await generateTypes(await fetchDocument(server.url));
  assert.ok(
    committed === generated,
    'the server\'s API changed: run `SUNDIAL_BIN=… npm run generate` in sdk/typescript, then fix the types that break',
  );
});

test('require() loads the CommonJS build with the same exports and a working client', async () => {
  const require = createRequire(join(packageDir, 'package.json'));
  const cjs = require('@sundial/jobs');
  assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort());
  assert.notEqual(cjs.Jobs, esm.Jobs, 'a separate build');
  const client = cjs.createClient({ url: server.url, apiKey: server.adminKey });
  const jobs = await client.jobs.getAll();
  assert.ok(Array.isArray(jobs));
  const error = await client.jobs.getJob('job_missing').catch((caught) => caught);
  assert.ok(error instanceof cjs.SundialError);
  assert.deepEqual([error.status, error.code], [404, 'job_not_found']);
});
