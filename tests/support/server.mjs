// Starts a real `sundial serve` for the JavaScript suites (the SDK's tests and type generator, the MCP and dashboard
// suites): a fresh data directory, a free port on 127.0.0.1, a known admin key. The binary comes from SUNDIAL_BIN, by
// default <repo>/target/debug/sundial. Plain Node, no dependencies.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root (this file lives in `<repo>/tests/support`). */
export const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The server binary: SUNDIAL_BIN, or the debug build of the repository. */
export function serverBinary() {
  const binary = process.env.SUNDIAL_BIN || join(repositoryRoot, 'target', 'debug', 'sundial');
  if (!existsSync(binary)) {
    throw new Error(`sundial binary not found at ${binary}: build it (cargo build) or set SUNDIAL_BIN`);
  }
  return binary;
}

/**
 * Starts `sundial serve` and resolves once it prints its address. Answers `{url, adminKey, binary, output(), stop()}`;
 * `stop()` kills the server and removes its data directory. `name` labels the data directory and the admin key.
 */
export async function startServer({ workers = 2, name = 'test' } = {}) {
  const binary = serverBinary();
  const dataDir = mkdtempSync(join(tmpdir(), `sundial-${name}-`));
  const adminKey = `sk_${name}_test_${process.pid}_${Date.now()}`;
  const child = spawn(binary, ['serve', '--data-dir', dataDir, '--listen', '127.0.0.1:0', '--workers', String(workers)], {
    env: { ...process.env, SUNDIAL_API_KEY: adminKey, SUNDIAL_LOG_FORMAT: 'text', NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`sundial serve printed no address within 30 s:\n${output}`)), 30_000);
    const onData = (chunk) => {
      output += chunk;
      const match = /sundial: listening on (http:\/\/[^\s]+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1]);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sundial serve exited with ${code} before listening:\n${output}`));
    });
  });
  let stopped = false;
  return {
    url,
    adminKey,
    binary,
    /** The server's output so far (for failure messages). */
    output: () => output,
    async stop() {
      if (stopped) return;
      stopped = true;
      const exited = new Promise((resolveExit) => child.once('exit', resolveExit));
      child.kill('SIGKILL');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
