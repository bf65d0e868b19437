// A pre-defined job file written with the SDK: `defineJob` types the definition, and `User` reaches a user named in
// its metadata (a pre-defined job has no user of its own).

import { User, defineJob } from '@sundial/jobs';

export default defineJob({
  name: 'daily-digest',
  description: 'Sends the on-call user a digest',
  schedule: { type: 'cron', expression: '0 8 * * MON-FRI', timezone: 'America/New_York' },
  metadata: { userId: 'on-call' },
  async execute(job) {
    const user = await User.get(job.metadata.userId);
    await user.send([{ type: 'text', text: `digest for ${user.userId}` }]);
    return { sentTo: user.userId };
  },
});
