// The real `sundial serve` the type generator and the tests start: the repository's shared helper
// (tests/support/server.mjs), labelled for the SDK.

import { startServer as start } from '../../../tests/support/server.mjs';

export { repositoryRoot, serverBinary } from '../../../tests/support/server.mjs';

/** Starts `sundial serve` for the SDK (see tests/support/server.mjs). */
export function startServer(options = {}) {
  return start({ name: 'sdk', ...options });
}
