// A pre-defined job file for `sundial deploy`: an ES module whose default export is the job definition. It imports
// nothing, so any server deploys it; the type comes from the SDK through JSDoc, checked by `tsc --checkJs`.

/** Module scope is available to `execute`: the whole file is the job. */
const threshold = 3;

/** @param {number} count */
function describe(count) {
  return count < threshold ? 'low' : 'ok';
}

/** @type {import('@sundial/jobs').JobDefinition} */
const definition = {
  name: 'inventory-check',
  description: 'Checks stock levels every morning',
  schedule: { type: 'cron', expression: '0 7 * * *', timezone: 'Europe/Paris' },
  timeout: 30,
  retry: { maxAttempts: 2, backoffSeconds: 5 },
  metadata: { count: 2 },
  async execute(job) {
    let userError = '';
    try {
      // @ts-expect-error a pre-defined job has no user(): the SDK's type says so before the server does
      await job.user();
    } catch (error) {
      userError = error instanceof Error ? error.message : String(error);
    }
    return { level: describe(job.metadata.count), trigger: job.execution.trigger, userError };
  },
};

export default definition;
