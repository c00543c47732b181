// lxrctl hosts: the cluster's hosts as the controller sees them, and
// taking one out of service (cordon, drain) and back (uncordon).
import type { ClusterHost } from '../../proto/shared/controller-types.js';
import type { Command, Invocation } from '../command.js';
import { Exit } from '../failure.js';
import { age, bytes, escape, table, toJson, toYaml } from '../output.js';
import { checkName, outputFlag, outputMode } from './common.js';

function printHosts(inv: Invocation, hosts: ClusterHost[]): void {
  const mode = outputMode(inv, ['json', 'yaml', 'wide']);
  if (mode === 'json') return inv.out(toJson(hosts));
  if (mode === 'yaml') return inv.out(toYaml(hosts));
  const now = inv.io.now();
  const wide = mode === 'wide';
  const headers = ['NAME', 'STATE', 'ADDRESS', 'SUBNET', 'CPUS', 'MEMORY', 'WORKSPACES', 'AGE', ...(wide ? ['ARCH', 'VERSION', 'LAST HEARTBEAT', 'LABELS'] : [])];
  const rows = hosts.map((h) => [
    h.name,
    `${h.state}${h.cordoned ? ',Cordoned' : ''}`,
    h.address,
    h.subnet,
    `${Number(h.reservedCpus.toFixed(2))}/${h.cpus}`,
    `${bytes(h.reservedMemoryBytes)}/${bytes(h.memoryBytes)}`,
    String(h.workspaces),
    age(h.registeredAt, now),
    ...(wide
      ? [
          h.architecture,
          h.agentVersion,
          h.lastHeartbeat ? `${age(h.lastHeartbeat, now)} ago` : 'never',
          Object.entries(h.labels)
            .sort()
            .map(([k, v]) => `${k}=${v}`)
            .join(','),
        ]
      : []),
  ]);
  inv.out(table(headers, rows));
}

const ls: Command = {
  path: ['hosts', 'ls'],
  usage: '[-o json|yaml|wide]',
  summary: 'list the hosts: state, subnet, reserved/total CPUs and memory',
  args: { flags: [outputFlag], positionals: [], required: 0 },
  async run(inv) {
    const c = inv.connection();
    const r = await c.call(c.hosts, c.hosts.List, {});
    printHosts(inv, [...r.hosts].sort((a, b) => a.name.localeCompare(b.name)));
    return Exit.OK;
  },
};

const inspect: Command = {
  path: ['hosts', 'inspect'],
  usage: 'HOST [-o json|yaml]',
  summary: 'show everything about a host (JSON)',
  args: { flags: [{ name: 'output', short: 'o', kind: 'string', value: 'json|yaml', help: 'json (the default) or yaml' }], positionals: ['HOST'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const mode = outputMode(inv, ['json', 'yaml']);
    const name = checkName(inv.args.positionals[0]!, 'host');
    const c = inv.connection();
    const r = await c.call(c.hosts, c.hosts.Get, { name });
    inv.out(mode === 'yaml' ? toYaml(r.host) : toJson(r.host));
    return Exit.OK;
  },
};

const cordon: Command = {
  path: ['hosts', 'cordon'],
  usage: 'HOST',
  summary: 'place no new workspaces on a host (those there keep running)',
  args: { flags: [], positionals: ['HOST'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'host');
    const c = inv.connection();
    await c.call(c.hosts, c.hosts.Cordon, { name });
    inv.out(`${name} cordoned\n`);
    return Exit.OK;
  },
};

const uncordon: Command = {
  path: ['hosts', 'uncordon'],
  usage: 'HOST',
  summary: 'let the scheduler place workspaces on a host again',
  args: { flags: [], positionals: ['HOST'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'host');
    const c = inv.connection();
    await c.call(c.hosts, c.hosts.Uncordon, { name });
    inv.out(`${name} uncordoned\n`);
    return Exit.OK;
  },
};

const drain: Command = {
  path: ['hosts', 'drain'],
  usage: 'HOST',
  summary: 'cordon a host and stop its workspaces (their files stay there)',
  args: { flags: [], positionals: ['HOST'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'host');
    const c = inv.connection();
    const r = await c.call(c.hosts, c.hosts.Drain, { name }, 0);
    inv.out(`${name} drained${r.stopped.length ? `; stopped ${r.stopped.map(escape).join(', ')}` : '; no workspace was running'}\n`);
    return Exit.OK;
  },
};

const rm: Command = {
  path: ['hosts', 'rm'],
  usage: 'HOST [-f]',
  summary: 'forget a host and free its subnet (-f: even with workspaces on it)',
  args: { flags: [{ name: 'force', short: 'f', kind: 'bool', help: 'also forget the workspaces placed on it' }], positionals: ['HOST'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'host');
    const c = inv.connection();
    await c.call(c.hosts, c.hosts.Remove, { name, force: inv.bool('force') });
    inv.out(`${name} removed\n`);
    return Exit.OK;
  },
};

export const hostCommands: Command[] = [{ ...ls, path: ['hosts'] }, ls, inspect, cordon, uncordon, drain, rm];
