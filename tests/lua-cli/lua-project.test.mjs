// A whole lua-cli agent project (tests/lua-cli/agent: the seed's tools in a skill, one LuaJob) worked with the real
// `lua` binary against Sundial: `lua test skill` compiles the seed's set_reminder tool with lua-cli's own compiler
// and runs it in lua-cli's sandbox, whose Jobs.create reaches Sundial with a user token — the reminder then fires at
// its time; `lua push job --auto-deploy` compiles the LuaJob, uploads its bundle, pushes a version, publishes it and
// backs the source up; `lua jobs trigger` runs it; a second push stages 1.0.2 and `lua jobs deploy -v latest`
// publishes it.

import assert from 'node:assert/strict';
import { cpSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';

import {
  adminKey,
  cleanHome,
  conversation,
  finalExecution,
  finalExecutions,
  luaBinary,
  luaEnv,
  native,
  packageDir,
  plain,
  run,
  skillYaml,
  tempDir,
  userId,
  userToken,
} from './support.mjs';

let projectDir;
let home;

/** `lua <args>` in the project; answers {code, stdout, stderr} with progress lines resolved. */
async function lua(args, key = adminKey) {
  const result = await run(luaBinary, [...args, '--ci'], { cwd: projectDir, env: luaEnv(key, home) });
  return { code: result.code, stdout: plain(result.stdout), stderr: plain(result.stderr) };
}

function explain(result) {
  return `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
}

/** The `jobs:` entries lua-cli keeps in lua.skill.yaml. */
function yamlJob(name) {
  const text = readFileSync(join(projectDir, 'lua.skill.yaml'), 'utf8');
  const entry = text.match(new RegExp(`- jobId: '?(\\w*)'?\\n\\s+name: ${name}\\n\\s+version: '?([\\d.]+)'?`));
  return entry ? { jobId: entry[1], version: entry[2] } : null;
}

before(() => {
  projectDir = tempDir('agent');
  cpSync(join(packageDir, 'agent'), projectDir, { recursive: true });
  cpSync(join(packageDir, 'tools'), join(projectDir, 'src', 'skills', 'tools'), { recursive: true });
  symlinkSync(join(packageDir, 'node_modules'), join(projectDir, 'node_modules'), 'dir');
  writeFileSync(join(projectDir, 'lua.skill.yaml'), skillYaml());
  home = cleanHome();
});

let reminderJobId;

test('lua test skill runs the compiled set_reminder tool, whose Jobs.create makes a job of the token\'s user', async () => {
  const input = JSON.stringify({ message: 'Stand-up starts now', minutes: 1 });
  const result = await lua(['test', 'skill', '--name', 'set_reminder', '--input', input, '--json'], userToken);
  assert.equal(result.code, 0, explain(result));
  const answer = JSON.parse(result.stdout.slice(result.stdout.indexOf('{')));
  assert.equal(answer.message, 'Reminder set for 1 minutes from now');
  reminderJobId = answer.jobId;

  const job = await native(`/jobs/${reminderJobId}`);
  assert.match(job.name, /^reminder-\d+_\d+$/, 'lua-cli\'s sandbox suffixes the name of a job it creates');
  assert.deepEqual([job.dynamic, job.userId, job.status], [true, userId, 'active']);
  assert.equal(job.schedule.executeAt, answer.executeAt);
  const code = await native(`/jobs/${reminderJobId}/versions/1.0.0/code`);
  assert.doesNotMatch(code, /jobInstance/, 'the execute function arrives minified by lua-cli\'s compiler');
});

test('lua push job --auto-deploy compiles, uploads, pushes and publishes the LuaJob', async () => {
  const result = await lua(['push', 'job', '--name', 'health-check', '--force', '--auto-deploy']);
  assert.equal(result.code, 0, explain(result));
  assert.match(result.stdout, /✅ Successfully pushed health-check v1\.0\.1/, explain(result));
  assert.match(result.stdout, /health-check v1\.0\.1 deployed to production/, explain(result));
  assert.match(result.stdout, /Backup at v\d+/, explain(result));

  const entry = yamlJob('health-check');
  assert.ok(entry?.jobId, `lua.skill.yaml:\n${readFileSync(join(projectDir, 'lua.skill.yaml'), 'utf8')}`);
  assert.equal(entry.version, '1.0.1');
  const job = await native(`/jobs/${entry.jobId}`);
  assert.deepEqual([job.dynamic, job.active, job.status], [false, true, 'active']);
  assert.equal(job.activeVersion.version, '1.0.1');
  assert.deepEqual(job.schedule, { type: 'interval', seconds: 300 });
  assert.equal(job.activeVersion.timeout, 30);
  assert.deepEqual(job.activeVersion.retry, { maxAttempts: 2, backoffSeconds: 5 });
});

test('lua jobs trigger runs the pushed bundle, module scope included', async () => {
  const { jobId } = yamlJob('health-check');
  const result = await lua(['jobs', 'trigger', '-i', 'health-check']);
  assert.equal(result.code, 0, explain(result));
  const executionId = result.stdout.match(/📋 Execution ID: (exe_\w+)/)?.[1];
  assert.ok(executionId, explain(result));
  const done = await finalExecution(executionId);
  assert.equal(done.jobId, jobId);
  assert.equal(done.status, 'completed', JSON.stringify(done));
  assert.deepEqual(done.result, { ok: true, greeting: 'all systems nominal', user: 'ops', job: 'health-check' });
});

test('a push without --auto-deploy stages a version; lua jobs deploy -v latest publishes it', async () => {
  const source = join(projectDir, 'src', 'jobs', 'health-check.ts');
  writeFileSync(source, readFileSync(source, 'utf8').replace("'all systems nominal'", "'second version'"));
  const pushed = await lua(['push', 'job', '--name', 'health-check', '--force']);
  assert.equal(pushed.code, 0, explain(pushed));
  assert.match(pushed.stdout, /✅ Successfully pushed health-check v1\.0\.2/, explain(pushed));
  const { jobId } = yamlJob('health-check');
  let job = await native(`/jobs/${jobId}`);
  assert.equal(job.activeVersion.version, '1.0.1', 'a staged version is not live');
  assert.deepEqual(job.versions.map((version) => [version.version, version.active]), [
    ['1.0.1', true],
    ['1.0.2', false],
  ]);

  const deployed = await lua(['jobs', 'deploy', '-i', 'health-check', '-v', 'latest']);
  assert.equal(deployed.code, 0, explain(deployed));
  assert.match(deployed.stdout, /✅ Version 1\.0\.2 of "health-check" deployed successfully/, explain(deployed));
  job = await native(`/jobs/${jobId}`);
  assert.equal(job.activeVersion.version, '1.0.2');

  const triggered = await lua(['jobs', 'trigger', '-i', 'health-check']);
  assert.equal(triggered.code, 0, explain(triggered));
  const executionId = triggered.stdout.match(/📋 Execution ID: (exe_\w+)/)?.[1];
  assert.ok(executionId, explain(triggered));
  const done = await finalExecution(executionId);
  assert.equal(done.result?.greeting, 'second version', JSON.stringify(done));
});

test('the reminder that lua test skill scheduled fires at its time, in the user\'s conversation', async () => {
  const [execution] = await finalExecutions(reminderJobId, 1, 90);
  assert.equal(execution.status, 'completed', JSON.stringify(execution));
  assert.equal(execution.trigger, 'schedule');
  assert.ok((await conversation()).includes('⏰ Reminder: Stand-up starts now'));
  assert.equal((await native(`/jobs/${reminderJobId}`)).status, 'completed');
});
