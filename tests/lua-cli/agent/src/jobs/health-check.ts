// A pre-defined job as lua-cli's docs write one. Module scope is bundled with the job (unlike a dynamic job's
// `execute`), so GREETING is available when it runs.
import { LuaJob, User } from 'lua-cli';

const GREETING = 'all systems nominal';

export default new LuaJob({
  name: 'health-check',
  description: 'System health monitoring',
  schedule: { type: 'interval', seconds: 300 },
  timeout: 30,
  retry: { maxAttempts: 2, backoffSeconds: 5 },
  execute: async (job) => {
    const ops = await User.get('ops');
    return { ok: true, greeting: GREETING, user: ops.userId, job: job.name };
  },
});
