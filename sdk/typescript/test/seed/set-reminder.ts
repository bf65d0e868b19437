// The seed's "Complete Examples" reminder tool (shared/seed/jobs-api.txt), copied with only its import line changed.
import { LuaTool, Jobs, JobInstance } from '@sundial/jobs';
import { z } from 'zod';

export default class ReminderTool implements LuaTool {
  name = 'set_reminder';
  description = 'Set a reminder to notify user later';

  inputSchema = z.object({
    message: z.string().describe('Reminder message'),
    minutes: z.number().min(1).max(10080).describe('Minutes from now')
  });

  async execute(input: z.infer<typeof this.inputSchema>) {
    // Create job to notify user later
    const job = await Jobs.create({
      name: `reminder-${Date.now()}`,
      description: 'User reminder',

      // ✅ Pass data via metadata (not parent scope!)
      metadata: {
        message: input.message,
        setAt: new Date().toISOString()
      },

      schedule: {
        type: 'once',
        executeAt: new Date(Date.now() + input.minutes * 60000)
      },

      execute: async (jobInstance: JobInstance) => {
        const user = await jobInstance.user();
        const message = jobInstance.metadata.message;

        await user.send([{
          type: 'text',
          text: `⏰ Reminder: ${message}`
        }]);

        return {
          success: true,
          deliveredAt: new Date().toISOString()
        };
      }
    });

    return {
      success: true,
      message: `Reminder set for ${input.minutes} minutes from now`,
      jobId: job.id,
      executeAt: job.activeVersion?.schedule?.executeAt
    };
  }
}
