// lxrctl: the CLI over LXR's APIs (issue #7 builds the rest). Today it
// answers `version` and runs the lab (`lab up|down|status`), a multi-host
// cluster on this machine (cli/lab/lab.ts).
import path from 'node:path';
import { LxrError } from '../proto/shared/errors.js';
import { walkFlags } from '../proto/shared/flags.js';
import { labDown, labStatus, labUp, REGISTRY_PORT, SWITCH_ADDRESS } from './lab/lab.js';

const USAGE = `usage: lxrctl version
       lxrctl lab up [--hosts N] [--controller] [--name NAME] [--dir DIR]
       lxrctl lab down [--name NAME] [--dir DIR]
       lxrctl lab status [--name NAME] [--dir DIR] [-o json]
`;

/** Exit codes: 0 ok, 1 the operation failed, 2 bad usage or input, 4 not found. */
class UsageError extends Error {}

function flags(args: string[]): { name: string; dir: string; hosts: number; output: string; controller: boolean } {
  const f = { name: 'lab', dir: '', hosts: 3, output: '', controller: false };
  walkFlags(
    args,
    (flag, value, a) => {
      if (flag === '--name') f.name = value();
      else if (flag === '--dir') f.dir = value();
      else if (flag === '--hosts') {
        const v = value();
        if (!/^\d+$/.test(v)) throw new UsageError(`--hosts wants a number, got ${v}`);
        f.hosts = Number(v);
      } else if (flag === '-o' || flag === '--output') f.output = value();
      else if (flag === '--controller') f.controller = true;
      else throw new UsageError(`unknown argument ${a}`);
    },
    (m) => new UsageError(m),
  );
  if (f.output !== '' && f.output !== 'json') throw new UsageError(`-o wants json, got ${f.output}`);
  f.dir ||= path.join('/var/lib/lxr-lab', f.name);
  return f;
}

async function main(args: string[]): Promise<number> {
  if (args[0] === 'version' || args[0] === '--version') {
    process.stdout.write('lxrctl 0.1.0\n');
    return 0;
  }
  if (args[0] !== 'lab' || !['up', 'down', 'status'].includes(args[1] ?? '')) {
    process.stderr.write(USAGE);
    return 2;
  }
  const f = flags(args.slice(2));
  if (args[1] === 'up') {
    const s = await labUp({ name: f.name, dir: f.dir, hosts: f.hosts, controller: f.controller });
    process.stdout.write(`lab ${s.name} is up: ${s.hosts.length} hosts (${s.hosts.map((h) => `${h.name} ${h.address}`).join(', ')})${s.registry ? `, registry ${SWITCH_ADDRESS}:${REGISTRY_PORT}` : ''}${s.controller ? `, controller unix://${s.controller.socket} (${s.controller.address} in the lab)` : ''}\n`);
    process.stdout.write(`next: lxrctl lab status --name ${s.name} -o json; lxrctl lab down --name ${s.name}\n`);
    return 0;
  }
  if (args[1] === 'down') {
    const problems = await labDown(f.dir);
    for (const p of problems) process.stderr.write(`lxrctl: lab down: ${p}\n`);
    if (problems.length === 0) process.stdout.write(`lab ${f.name} is down\n`);
    return problems.length === 0 ? 0 : 1;
  }
  const st = labStatus(f.dir);
  if (!st) {
    process.stderr.write(`lxrctl: no lab named ${JSON.stringify(f.name)} in ${f.dir} (lxrctl lab up --name ${f.name} makes one)\n`);
    return 4;
  }
  if (f.output === 'json') process.stdout.write(JSON.stringify(st, null, 2) + '\n');
  else {
    process.stdout.write(`lab ${st.name} (switch ${st.namespace.alive ? 'up' : 'DOWN'}; registry ${st.registry ? `${st.registry.address} ${st.registry.alive ? 'up' : 'DOWN'}` : 'none'}; controller ${st.controller ? `${st.controller.grpc} ${st.controller.alive ? 'up' : 'DOWN'}` : 'none'})\n`);
    for (const h of st.hosts) process.stdout.write(`  ${h.name}\t${h.address}\t${h.subnet}\t${h.alive ? 'up' : 'DOWN'}\t${h.grpc}\n`);
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`lxrctl: ${e.message}\n${USAGE}`);
      process.exitCode = 2;
    } else if (e instanceof LxrError) {
      process.stderr.write(`lxrctl: ${e.message}\n`);
      process.exitCode = e.reason === 'LXR_INVALID_ARGUMENT' ? 2 : e.reason === 'LXR_NOT_FOUND' ? 4 : 1;
    } else {
      process.stderr.write(`lxrctl: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    }
  },
);
