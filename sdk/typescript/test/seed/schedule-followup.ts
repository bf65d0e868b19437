// The seed's "Complete Examples" follow-up tool (shared/seed/jobs-api.txt), copied with only its import line changed.
import { LuaTool, Jobs, JobInstance, Data } from '@sundial/jobs';
import { z } from 'zod';

export default class ScheduleFollowupTool implements LuaTool {
  name = 'schedule_followup';
  description = 'Schedule a follow-up message for customer support';

  inputSchema = z.object({
    ticketId: z.string(),
    followupHours: z.number().min(1).max(168),
    message: z.string()
  });

  async execute(input: z.infer<typeof this.inputSchema>) {
    // Create job for follow-up
    const job = await Jobs.create({
      name: `followup-${input.ticketId}`,
      description: `Follow-up for ticket ${input.ticketId}`,

      metadata: {
        ticketId: input.ticketId,
        message: input.message
      },

      schedule: {
        type: 'once',
        executeAt: new Date(Date.now() + input.followupHours * 3600000)
      },

      execute: async (jobInstance: JobInstance) => {
        const user = await jobInstance.user();
        const { ticketId, message } = jobInstance.metadata;

        // Check if ticket is still open
        const tickets = await Data.search('tickets', ticketId, 1);

        if (tickets.data.length > 0 && tickets.data[0].data.status === 'open') {
          // Send follow-up
          await user.send([{
            type: 'text',
            text: `📋 Ticket #${ticketId} Follow-up:\n\n${message}`
          }]);

          // Update ticket
          await Data.update('tickets', tickets.data[0].id, {
            ...tickets.data[0].data,
            followupSent: true,
            followupAt: new Date().toISOString()
          });

          return { success: true, sent: true };
        }

        return { success: true, sent: false, reason: 'Ticket closed' };
      }
    });

    return {
      success: true,
      message: `Follow-up scheduled for ${input.followupHours} hours`,
      jobId: job.id
    };
  }
}
