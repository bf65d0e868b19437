// The seed's three tools in one skill, as a lua-cli project declares them. lua-project.test.mjs copies this project
// to a temporary directory and tests/lua-cli/tools/*.ts into its src/skills/tools/.
import { LuaSkill } from 'lua-cli';
import ReminderTool from './tools/set-reminder';
import ScheduleFollowupTool from './tools/schedule-followup';
import DailyReportTool from './tools/daily-report';

export default new LuaSkill({
  name: 'support-skill',
  description: 'Reminders, follow-ups and reports',
  context: 'Use these tools to schedule work for later.',
  tools: [new ReminderTool(), new ScheduleFollowupTool(), new DailyReportTool()],
});
