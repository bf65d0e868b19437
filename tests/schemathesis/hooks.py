"""Generators for the formats Sundial's OpenAPI document names but JSON Schema cannot check: the server refuses a
cron pattern, a time zone or job code it cannot use, so the fuzzer draws these from values the server accepts."""

import schemathesis
from hypothesis import strategies as st

CRON = [
    "*/5 * * * *",
    "0 9 * * MON-FRI",
    "30 2 * * *",
    "0 0 1 * *",
    "0 0 L * *",
    "15 10 * * 1,3,5",
    "*/10 * * * * *",
    "0 12 25 DEC *",
    "@daily",
    "@hourly",
    "@weekly",
]
ZONES = ["UTC", "America/New_York", "Europe/Paris", "Asia/Tokyo", "Australia/Lord_Howe", "Asia/Kolkata"]
CODE = [
    "async (job) => ({ ok: true, id: job.id })",
    "// a note\nasync function execute(job) { return job.metadata; }",
    "\"use strict\";\nasync execute(job) { const user = await job.user().catch(() => null); return user === null; }",
    "job => job.name.length;",
    "async (job) => { console.log('tick', job.execution.scheduledFor); }",
]

schemathesis.openapi.format("cron", st.sampled_from(CRON))
schemathesis.openapi.format("iana-timezone", st.sampled_from(ZONES))
schemathesis.openapi.format("javascript-function", st.sampled_from(CODE))
JOB_FILES = [
    "export default { name: 'nightly-report', schedule: { type: 'cron', expression: '0 2 * * *' },\n"
    "  execute: async (job) => ({ ok: true }) };\n",
    "const every = 3600;\nexport default { name: 'hourly', description: 'an hourly job',\n"
    "  schedule: { type: 'interval', seconds: every }, timeout: 30, execute: async () => every };\n",
]
FILTERS = ['{"status":"open"}', '{"priority":{"$gt":2}}', '{"$or":[{"status":"open"},{"status":"new"}]}', "{}"]

schemathesis.openapi.format("job-file", st.sampled_from(JOB_FILES))
# The end of a recurring schedule lies after its first run: an instant in the years 2100-2999.
schemathesis.openapi.format(
    "end-instant",
    st.integers(min_value=2100, max_value=2999).map(lambda year: f"{year}-06-01T09:00:00Z"),
)
schemathesis.openapi.format("json-filter", st.sampled_from(FILTERS))
# The fuzzer's admin key acts for no user: `user` authority needs a job made for a user (X-User-Id or a user token).
schemathesis.openapi.format("job-authority", st.just("agent"))
