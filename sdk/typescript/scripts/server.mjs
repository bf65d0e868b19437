// Starts a real `sundial serve` for the type generator and the tests: a fresh data directory, a free port on
// 127.0.0.1, a known admin key. The binary comes from SUNDIAL_BIN, by default <repo>/target/debug/sundial.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root (this package lives in `<repo>/sdk/typescript`). */
export const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The server binary: SUNDIAL_BIN, or the debug build of the repository. */
export function serverBinary() {
  const binary = process.env.SUNDIAL_BIN || join(repositoryRoot, 'target', 'debug', 'sundial');
  if (!existsSync(binary)) {
    throw new Error(`sundial binary not found at ${binary}: build it (cargo build) or set SUNDIAL_BIN`);
  }
  return binary;
}

/**
 * Starts `sundial serve` and resolves once it prints its address. Answers `{url, adminKey, binary, stop()}`;
 * `stop()` kills the server and removes its data directory.
 */
export async function startServer({ workers = 2 } = {}) {
  const binary = serverBinary();
  const dataDir = mkdtempSync(join(tmpdir(), 'sundial-sdk-'));
  const adminKey = `sk_sdk_test_${process.pid}_${Date.now()}`;
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
