// lxrctl lab: a multi-host cluster on this machine (cli/lab/lab.ts). As kind
// does for kubectl, `lab up --controller` adds a context lab-NAME for the
// lab's controller and makes it current; `lab down` removes it.
import path from 'node:path';
import type { FlagSpec } from '../args.js';
import type { Command, Invocation } from '../command.js';
import { checkContextName, readConfig, updateConfig } from '../config.js';
import { CliError, Exit, invalid } from '../failure.js';
import { escape, toJson } from '../output.js';
import { labDown, labStatus, labUp, REGISTRY_PORT, SWITCH_ADDRESS } from '../lab/lab.js';

const common: FlagSpec[] = [
  { name: 'name', kind: 'string', value: 'NAME', help: 'the lab\'s name (default lab)' },
  { name: 'dir', kind: 'string', value: 'DIR', help: 'its directory (default /var/lib/lxr-lab/NAME)' },
];

function where(inv: Invocation): { name: string; dir: string } {
  const name = inv.flag('name') ?? 'lab';
  if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(name)) throw invalid(`lab name ${JSON.stringify(name)} must be 1-31 lowercase letters, digits or '-'`);
  return { name, dir: inv.flag('dir') ?? path.join('/var/lib/lxr-lab', name) };
}

export const labContext = (name: string): string => `lab-${name}`;

const up: Command = {
  path: ['lab', 'up'],
  usage: '[--hosts N] [--controller] [--name NAME] [--dir DIR] [--tools-dir DIR]',
  summary: 'bring up a cluster of network namespaces on this machine',
  args: {
    flags: [
      ...common,
      { name: 'hosts', kind: 'int', value: 'N', help: 'how many hosts (default 3)' },
      { name: 'controller', kind: 'bool', help: 'run a controller the hosts join (and make it lxrctl\'s current context)' },
      { name: 'tools-dir', kind: 'string', value: 'DIR', help: 'the IDE tools the hosts share (default /var/lib/lxr/tools; lxr-agent tools install fills it)' },
    ],
    positionals: [],
    required: 0,
  },
  async run(inv) {
    const { name, dir } = where(inv);
    const hosts = inv.int('hosts') ?? 3;
    const toolsDir = inv.flag('tools-dir');
    const s = await labUp({ name, dir, hosts, controller: inv.bool('controller'), ...(toolsDir ? { toolsDir } : {}) });
    inv.out(`lab ${s.name} is up: ${s.hosts.length} hosts (${s.hosts.map((h) => `${h.name} ${h.address}`).join(', ')})${s.registry ? `, registry ${SWITCH_ADDRESS}:${REGISTRY_PORT}` : ''}${s.controller ? `, controller unix://${s.controller.socket} (${s.controller.address} in the lab)` : ''}\n`);
    if (s.controller) {
      const ctx = checkContextName(labContext(name));
      updateConfig(inv.configFile, (c) => {
        c.contexts[ctx] = { server: `unix://${s.controller!.socket}` };
        c.currentContext = ctx;
      });
      inv.out(`lxrctl now uses context ${ctx} (${inv.configFile})\n`);
      inv.out(`next: lxrctl hosts ls; lxrctl create ws1 --image IMAGE; lxrctl lab down --name ${name}\n`);
    } else inv.out(`next: lxrctl lab status --name ${name} -o json; lxrctl lab down --name ${name}\n`);
    return Exit.OK;
  },
};

const down: Command = {
  path: ['lab', 'down'],
  usage: '[--name NAME] [--dir DIR]',
  summary: 'tear a lab down, all the way (also its context)',
  args: { flags: common, positionals: [], required: 0 },
  async run(inv) {
    const { name, dir } = where(inv);
    const problems = await labDown(dir);
    for (const p of problems) inv.err(`lxrctl: lab down: ${escape(p)}\n`);
    const ctx = labContext(name);
    if (readConfig(inv.configFile).contexts[ctx]) {
      updateConfig(inv.configFile, (c) => {
        delete c.contexts[ctx];
        if (c.currentContext === ctx) c.currentContext = '';
      });
    }
    if (problems.length === 0) inv.out(`lab ${name} is down\n`);
    return problems.length === 0 ? Exit.OK : Exit.FAILED;
  },
};

const status: Command = {
  path: ['lab', 'status'],
  usage: '[--name NAME] [--dir DIR] [-o json]',
  summary: 'show a lab\'s hosts, addresses and processes',
  args: { flags: [...common, { name: 'output', short: 'o', kind: 'string', value: 'json', help: 'print as JSON' }], positionals: [], required: 0 },
  async run(inv) {
    const { name, dir } = where(inv);
    const o = inv.flag('output');
    if (o !== undefined && o !== 'json') throw invalid(`-o ${JSON.stringify(o)}: choose json`);
    const st = labStatus(dir);
    if (!st) throw new CliError(`no lab named ${JSON.stringify(name)} in ${dir}`, Exit.NOT_FOUND, 'LXR_NOT_FOUND', `lxrctl lab up --name ${name} makes one`);
    if (o === 'json') inv.out(toJson(st));
    else {
      inv.out(`lab ${st.name} (switch ${st.namespace.alive ? 'up' : 'DOWN'}; registry ${st.registry ? `${st.registry.address} ${st.registry.alive ? 'up' : 'DOWN'}` : 'none'}; controller ${st.controller ? `${st.controller.grpc} ${st.controller.alive ? 'up' : 'DOWN'}` : 'none'})\n`);
      for (const h of st.hosts) inv.out(`  ${h.name}\t${h.address}\t${h.subnet}\t${h.alive ? 'up' : 'DOWN'}\t${h.grpc}\n`);
    }
    // A lab whose processes are gone (a reboot, a kill) is there but not usable: exit 3, as an unreachable server.
    const down = [!st.namespace.alive && 'its switch', st.registry && !st.registry.alive && 'its registry', st.controller && !st.controller.alive && 'its controller', ...st.hosts.filter((h) => !h.alive).map((h) => `host ${h.name}`)].filter(Boolean);
    if (down.length) {
      inv.err(`lxrctl: lab ${name} is not all up: ${down.join(', ')} DOWN (LXR_UNAVAILABLE); lxrctl lab down --name ${name}, then lab up again\n`);
      return Exit.UNAVAILABLE;
    }
    return Exit.OK;
  },
};

export const labCommands: Command[] = [up, down, status];
