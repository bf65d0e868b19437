// `npm run generate`: starts the server (SUNDIAL_BIN), fetches its OpenAPI document and writes the generated types
// to src/generated/openapi.ts.

import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { fetchDocument, generateTypes } from './openapi.mjs';
import { startServer } from './server.mjs';

const target = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'generated', 'openapi.ts');
const server = await startServer({ workers: 1 });
try {
  const source = await generateTypes(await fetchDocument(server.url));
  writeFileSync(target, source);
  console.log(`wrote ${target} from ${server.binary}`);
} finally {
  await server.stop();
}
