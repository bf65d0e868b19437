// A lua-cli agent project: the seed's tools in a skill, and one pre-defined job.
import { LuaAgent } from 'lua-cli';
import healthCheck from './jobs/health-check';
import supportSkill from './skills/support.skill';

export const agent = new LuaAgent({
  name: 'sundial-proof',
  persona: 'An agent whose tools schedule work on Sundial.',
  skills: [supportSkill],
  jobs: [healthCheck],
});
