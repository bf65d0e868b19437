// Shared set-up of the lua-cli proof: points the published `lua-cli` package at a running Sundial server the way a
// developer would (LUA_API_URL, LUA_API_KEY, ./lua.skill.yaml, a clean HOME), compiles the seed's tools the way
// `lua compile` does, and reads results back through Sundial's native /v1 API.
//
// The Rust test `crates/cli/tests/lua_cli` starts the server and runs `node --test <file>` with:
//   SUNDIAL_URL          the server, e.g. http://127.0.0.1:41234
//   SUNDIAL_ADMIN_KEY    its admin key
//   SUNDIAL_AGENT_ID     the agent (`default`)
//   SUNDIAL_USER_ID      a user of that agent
//   SUNDIAL_USER_TOKEN   a user token of that user (`POST /v1/agents/{a}/users/{u}/tokens`)

import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

import { run } from '../support/process.mjs';
import { restClient } from '../support/rest.mjs';
import { eventually } from '../support/wait.mjs';

export { eventually, run };

const here = dirname(fileURLToPath(import.meta.url));

/** `tests/lua-cli`: this package. */
export const packageDir = here;

/** The environment the Rust harness passes; a missing variable is a usage error. */
function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through \`cargo test -p sundial --test e2e lua_cli\``);
  }
  return value;
}

export const server = required('SUNDIAL_URL');
export const adminKey = required('SUNDIAL_ADMIN_KEY');
export const agentId = required('SUNDIAL_AGENT_ID');
export const userId = required('SUNDIAL_USER_ID');
export const userToken = required('SUNDIAL_USER_TOKEN');

/** The native API with the admin key, for seeding and reading back; `finalExecutions(jobId, count, seconds)` and
 * `finalExecution(executionId, seconds)` wait for executions to end. */
const rest = restClient({ url: server, adminKey }, agentId);
export const { finalExecutions, finalExecution } = rest;

/** The real `lua` binary of the installed package. */
export const luaBinary = join(here, 'node_modules', '.bin', 'lua');

/** Temporary directories made by this process, removed when it exits. */
const temporary = [];
process.on('exit', () => {
  for (const directory of temporary) rmSync(directory, { recursive: true, force: true });
});

/** A fresh directory under the system's temporary directory, removed when the process exits. */
export function tempDir(prefix) {
  const directory = mkdtempSync(join(tmpdir(), `sundial-lua-${prefix}-`));
  temporary.push(directory);
  return directory;
}

/**
 * A clean HOME for lua-cli: no stored session or key can take precedence over LUA_API_KEY, and a fresh version-check
 * cache keeps the CLI from asking the npm registry whether 3.37.0 is the newest release.
 */
export function cleanHome() {
  const home = tempDir('home');
  mkdirSync(join(home, '.lua-cli'));
  writeFileSync(
    join(home, '.lua-cli', 'version-check.json'),
    JSON.stringify({ latestVersion: '3.37.0', checkedAt: Date.now() }),
  );
  return home;
}

/** `lua.skill.yaml` of a project of agent `agentId`, optionally listing jobs `{name, version, jobId}`. */
export function skillYaml(jobs = []) {
  let text = `agent:\n  agentId: ${agentId}\n  orgId: ${agentId}\n`;
  if (jobs.length > 0) {
    text += 'jobs:\n';
    for (const job of jobs) {
      text += `  - name: ${job.name}\n    version: ${job.version ?? '1.0.0'}\n    jobId: ${job.jobId}\n`;
    }
  }
  return text;
}

/** A project directory holding `lua.skill.yaml`. */
export function project(jobs = []) {
  const directory = tempDir('project');
  writeFileSync(join(directory, 'lua.skill.yaml'), skillYaml(jobs));
  return directory;
}

/** The environment lua-cli runs with: Sundial's URL, the given key, a clean HOME, no telemetry, no banner. */
export function luaEnv(key, home) {
  const env = { ...process.env };
  for (const name of Object.keys(env)) {
    if (name.startsWith('LUA_')) delete env[name];
  }
  return {
    ...env,
    HOME: home,
    LUA_API_URL: server,
    LUA_API_KEY: key,
    LUA_TELEMETRY: 'false',
    LUA_NO_BANNER: '1',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
  };
}

/**
 * Loads the `lua-cli` library in this process, as a tool would, with the credential `key`: the library reads its
 * base URL when it loads and its key and agent (from ./lua.skill.yaml) at its first call, and keeps them.
 */
export async function loadLuaCli(key) {
  const directory = project();
  process.chdir(directory);
  Object.assign(process.env, luaEnv(key, cleanHome()));
  return import('lua-cli');
}

/**
 * Runs an ES module snippet with lua-cli in a child process with another credential (the library keeps the first
 * key it used for the life of a process). The snippet's `return` value comes back as JSON; a throw comes back as
 * `{thrown: {name, message, reason, code, statusCode}}`.
 */
export async function luaAs(key, snippet) {
  const program = `
    const lua = await import(${JSON.stringify(import.meta.resolve('lua-cli'))});
    const { Jobs, Data, Products, User } = lua;
    let answer;
    try {
      answer = { value: await (async () => { ${snippet} })() };
    } catch (error) {
      answer = { thrown: { name: error.name, message: error.message, reason: error.reason, code: error.code,
        statusCode: error.statusCode } };
    }
    process.stdout.write('\\n@@RESULT@@' + JSON.stringify(answer ?? null) + '\\n');
  `;
  const { code, stdout, stderr } = await run(process.execPath, ['--input-type=module', '-e', program], {
    cwd: project(),
    env: luaEnv(key, cleanHome()),
  });
  const line = stdout.split('\n').find((text) => text.startsWith('@@RESULT@@'));
  assert.ok(line, `lua-cli snippet printed no result (exit ${code})\nstdout:\n${stdout}\nstderr:\n${stderr}`);
  return JSON.parse(line.slice('@@RESULT@@'.length));
}

/** Terminal output as a person reads it: colours removed, `\r` progress lines reduced to their last state. */
export function plain(text) {
  // eslint-disable-next-line no-control-regex
  const noAnsi = text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
  return noAnsi
    .split('\n')
    .map((line) => line.split('\r').filter((part) => part.length > 0).pop() ?? '')
    .join('\n');
}

/** Runs the real `lua` CLI in a project whose lua.skill.yaml lists `jobs`, with the developer's (admin) key. */
export async function luaCli(args, { jobs = [], key = adminKey } = {}) {
  const result = await run(luaBinary, args, { cwd: project(jobs), env: luaEnv(key, cleanHome()) });
  return { code: result.code, stdout: plain(result.stdout), stderr: plain(result.stderr) };
}

/** A request to the server (`headers` added last); answers `{status, body}`, the body parsed when it is JSON. */
export function request(method, path, { key = adminKey, body, headers } = {}) {
  return rest.api(method, path, { key, body, headers });
}

/** GET on the native API with the admin key; asserts 200 and answers the body. */
export const native = rest.read;

/** The texts of the messages in the conversation of `user`. */
export async function conversation(user = userId) {
  const { messages } = await native(`/users/${encodeURIComponent(user)}/messages?limit=1000`);
  return messages.map((message) => message.content?.text);
}

/** lua-cli's `compressForPush`: gzip, then base64. */
export function compressForPush(source) {
  return gzipSync(Buffer.from(source, 'utf8')).toString('base64');
}

/** The headers lua-cli sends on a POST (reference §2): one idempotency key per logical call. */
export function luaHeaders(idempotencyKey = crypto.randomUUID()) {
  return { 'X-Lua-Client': 'cli/3.37.0', 'X-Idempotency-Key': idempotencyKey };
}

/**
 * Compiles one of the seed's tools (`tools/<file>.ts`) the way `lua compile` does (reference §4B): lua-cli's imports
 * are stripped so that `Jobs`, `Data`, `Products` stay free identifiers, then esbuild bundles it as minified CommonJS
 * for node18 with `zod` external. The bundle runs with the platform APIs as globals, as in lua-cli's sandbox, and the
 * tool class is answered. `Jobs.create` of a tool thus serializes esbuild's minified `execute`, as a deployed tool
 * does.
 */
export async function compileTool(file, globals) {
  const esbuild = await import('esbuild');
  const stripLuaCliImports = {
    name: 'lua-cli-import-stripper',
    setup(build) {
      build.onLoad({ filter: /\.ts$/ }, (args) => ({
        contents: readFileSync(args.path, 'utf8').replace(
          /^import\s+[^;]*?\s+from\s+['"]lua-cli(\/skill|\/voice)?['"];?\s*$/gm,
          '',
        ),
        loader: 'ts',
      }));
    },
  };
  const built = await esbuild.build({
    entryPoints: [join(here, 'tools', file)],
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node18',
    minify: true,
    external: ['zod'],
    write: false,
    logLevel: 'silent',
    plugins: [stripLuaCliImports],
  });
  const code = built.outputFiles[0].text;
  const module = { exports: {} };
  const names = Object.keys(globals);
  const evaluate = new Function('module', 'exports', 'require', ...names, code);
  evaluate(module, module.exports, createRequire(join(here, 'package.json')), ...names.map((name) => globals[name]));
  const ToolClass = module.exports.default;
  return new ToolClass();
}

/** Runs a tool as lua-cli's runtime does: the input is validated by the tool's zod schema first. */
export async function runTool(tool, input) {
  return tool.execute(tool.inputSchema.parse(input));
}

/**
 * The platform's `Jobs` with one change for the test's sake: a `once` schedule fires `seconds` from now instead of
 * minutes or hours away. Everything else — name, metadata, the `execute` function and its source — is the tool's.
 */
export function jobsFiringSoon(Jobs, seconds = 2, created = []) {
  return {
    ...Jobs,
    async create(config) {
      const schedule = config.schedule?.type === 'once'
        ? { ...config.schedule, executeAt: new Date(Date.now() + seconds * 1000) }
        : config.schedule;
      const sent = { ...config, schedule };
      const job = await Jobs.create(sent);
      created.push({ config: sent, job });
      return job;
    },
  };
}
