// The seed's "Recurring Report" tool (shared/seed/jobs-api.txt), copied with only its import line changed.
import { LuaTool, Jobs, JobInstance, Products } from '@sundial/jobs';
import { z } from 'zod';

export default class DailyReportTool implements LuaTool {
  name = 'setup_daily_report';
  description = 'Set up daily sales report';

  inputSchema = z.object({
    timeOfDay: z.string().regex(/^([0-1]?[0-9]|2[0-3]):[0-5][0-9]$/)
      .describe('Time in HH:MM format (24-hour)')
  });

  async execute(input: z.infer<typeof this.inputSchema>) {
    const [hour, minute] = input.timeOfDay.split(':');

    const job = await Jobs.create({
      name: 'daily-sales-report',
      description: 'Daily sales summary',

      metadata: {
        reportTime: input.timeOfDay
      },

      schedule: {
        type: 'cron',
        expression: `${minute} ${hour} * * *`  // Every day at specified time
      },

      execute: async (jobInstance: JobInstance) => {
        // Get products sold today
        const products = await Products.get(1, 100);
        const totalValue = products.reduce((sum, p) => sum + (p.price || 0), 0);

        const report = `📊 Daily Sales Report\n\n` +
          `Total Products: ${products.length}\n` +
          `Catalog Value: $${totalValue.toFixed(2)}\n` +
          `Report Time: ${jobInstance.metadata.reportTime}`;

        const user = await jobInstance.user();
        await user.send([{ type: 'text', text: report }]);

        return {
          success: true,
          productCount: products.length,
          totalValue
        };
      }
    });

    return {
      success: true,
      message: `Daily report scheduled for ${input.timeOfDay}`,
      jobId: job.id
    };
  }
}
