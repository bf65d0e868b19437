// The same in CommonJS: `require('@sundial/jobs')` in a job file reaches the server's built-in module, and
// lua-cli's `LuaJob` spelling declares the job.

const { LuaJob, User } = require('@sundial/jobs');

module.exports = new LuaJob({
  name: 'weekly-summary',
  description: 'Sends the on-call user a weekly summary',
  schedule: { type: 'cron', expression: '0 9 * * MON' },
  metadata: { userId: 'on-call' },
  async execute(job) {
    const user = await User.get(job.metadata.userId);
    await user.send([{ type: 'text', text: `summary for ${user.userId}` }]);
    return { sentTo: user.userId, trigger: job.execution.trigger };
  },
});
