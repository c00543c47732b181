// lxrctl version: this client's version and, unless --client, whether the
// controller it would talk to answers (and where that address came from).
import type { Command } from '../command.js';
import { Exit } from '../failure.js';
import { escape } from '../output.js';

import { LXR_VERSION as VERSION } from '../../proto/shared/version.js';

export const versionCommand: Command = {
  path: ['version'],
  usage: '[--client]',
  summary: 'print lxrctl\'s version and whether its controller answers',
  args: { flags: [{ name: 'client', kind: 'bool', help: 'only the client\'s version' }], positionals: [], required: 0 },
  async run(inv) {
    inv.out(`lxrctl ${VERSION}\n`);
    if (inv.bool('client')) return Exit.OK;
    const t = inv.target();
    const c = inv.connection();
    const from = t.source === 'context' ? `context ${t.context}` : t.source === 'flag' ? '--server' : t.source === 'env' ? 'LXR_SERVER' : 'the default';
    const r = await c.call(c.health, c.health.Check, { service: '' }, 5000).then(
      (x) => x.status,
      (e: { details?: string }) => `unreachable (${e.details ?? 'no answer'})`,
    );
    inv.out(`controller ${t.address} (from ${from}): ${escape(String(r))}\n`);
    return Exit.OK;
  },
};
