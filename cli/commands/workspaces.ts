// lxrctl's workspace commands, docker's words over the controller's
// Workspaces service: create, ps, inspect, start, stop, rm, logs.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { PortMapping } from '../../proto/shared/api-types.js';
import type { Workspace, WorkspaceSpec } from '../../proto/shared/controller-types.js';
import type { FlagSpec } from '../args.js';
import type { Command, Invocation } from '../command.js';
import { CliError, Exit, failureLine, invalid, toCliError } from '../failure.js';
import { age, bytes, escape, parseSince, parseSize, table, toJson, toYaml } from '../output.js';
import { checkName, outputFlag, outputMode, parseEnv, parseKeyValues } from './common.js';

const CREATE_FLAGS: FlagSpec[] = [
  { name: 'image', kind: 'string', value: 'REF', help: 'the image (required): a name (busybox, 198.18.0.254:5000/dev:1) or a digest' },
  { name: 'host', kind: 'string', value: 'HOST', help: 'place it on this host instead of letting the scheduler choose' },
  { name: 'cpus', kind: 'string', value: 'N', help: 'CPUs reserved and enforced as a limit (1.5); default: best effort' },
  { name: 'memory', short: 'm', kind: 'string', value: 'SIZE', help: 'memory reserved and enforced as a limit (512m, 2g)' },
  { name: 'env', short: 'e', kind: 'list', value: 'K=V', help: 'an environment variable (repeatable); -e K takes K from here' },
  { name: 'publish', short: 'p', kind: 'list', value: 'HOST:CONTAINER[/udp]', help: 'publish a port on the host\'s address (repeatable)' },
  { name: 'label', short: 'l', kind: 'list', value: 'K=V', help: 'a label on the workspace (repeatable)' },
  { name: 'selector', kind: 'list', value: 'K=V', help: 'only hosts with this label (repeatable)' },
  { name: 'arch', kind: 'string', value: 'ARCH', help: 'only hosts of this architecture (amd64, arm64)' },
  { name: 'ide', kind: 'string', value: 'IDE', help: 'VS Code in the browser at /w/NAME/: code-server (needs a glibc image)' },
  { name: 'detach', short: 'd', kind: 'bool', help: 'answer once it is placed; do not wait for it to run' },
  { name: 'timeout', kind: 'int', value: 'SECONDS', help: 'how long to wait for it to run (default 300); it keeps trying after' },
];

const SETTLED = new Set(['Running', 'Failed', 'Stopped']);
const POLL_MS = 200;

/**
 * Waits until the workspace runs, failed or stopped, telling a person at a
 * terminal what it is doing meanwhile (the host's image pull, a retry and why).
 */
async function waitSettled(inv: Invocation, first: Workspace, timeoutS: number): Promise<Workspace> {
  const c = inv.connection();
  const name = first.spec?.name ?? '';
  const deadline = inv.io.now() + timeoutS * 1000;
  const tty = !!inv.io.stderr.isTTY;
  let w = first;
  let shown = '';
  for (;;) {
    if (SETTLED.has(w.state)) return w;
    const line = `${name}: ${w.state} on host ${w.host}${w.reason ? ` (${w.reason})` : ''}`;
    if (tty && line !== shown) inv.err(`${escape(line)}\n`);
    shown = line;
    if (inv.io.now() >= deadline) {
      throw new CliError(
        `workspace ${name} is still ${w.state} on host ${w.host} after ${timeoutS} s${w.reason ? `: ${w.reason}` : ''}`,
        Exit.UNAVAILABLE,
        'LXR_UNAVAILABLE',
        `the controller keeps trying; lxrctl ps -a shows it, lxrctl rm -f ${name} gives up`,
      );
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
    w = (await c.call(c.workspaces, c.workspaces.Get, { name })).workspace!;
  }
}

export function parsePort(s: string): PortMapping {
  const m = /^(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(s);
  const ok = (n: number): boolean => n >= 1 && n <= 65535;
  if (!m || !ok(Number(m[1])) || !ok(Number(m[2]))) throw invalid(`-p ${JSON.stringify(s)} is not HOST:CONTAINER[/tcp|/udp] with ports 1-65535 (e.g. -p 8080:80)`);
  return { hostPort: Number(m[1]), containerPort: Number(m[2]), protocol: m[3] ?? 'tcp' };
}


function buildSpec(inv: Invocation, name: string): Partial<WorkspaceSpec> {
  const image = inv.flag('image');
  if (!image) throw invalid('--image is required (e.g. --image busybox)', 'lxrctl images ls lists the images on each host');
  const host = inv.flag('host');
  if (host !== undefined) checkName(host, 'host');
  const cpusText = inv.flag('cpus');
  let cpus = 0;
  if (cpusText !== undefined) {
    cpus = Number(cpusText);
    if (!/^\d+(\.\d+)?$/.test(cpusText) || !(cpus > 0)) throw invalid(`--cpus ${JSON.stringify(cpusText)} is not a number of CPUs above zero (1, 0.5, 2.5)`);
  }
  let memoryBytes = 0;
  const mem = inv.flag('memory');
  if (mem !== undefined) {
    try {
      memoryBytes = parseSize(mem);
    } catch (e) {
      throw invalid(`--memory: ${(e as Error).message}`);
    }
  }
  return {
    name,
    image,
    host: host ?? '',
    cpus,
    memoryBytes,
    env: parseEnv(inv.list('env'), inv.io.env),
    ports: inv.list('publish').map(parsePort),
    labels: parseKeyValues(inv.list('label'), '--label'),
    hostSelector: parseKeyValues(inv.list('selector'), '--selector'),
    architecture: inv.flag('arch') ?? '',
    ...(inv.flag('ide') ? { ide: inv.flag('ide')! } : {}),
    command: inv.args.command,
  };
}

/** A Failed workspace as the error it is, with its catalogue reason's exit code. */
function failedError(w: Workspace): CliError {
  const name = w.spec?.name ?? '';
  const why = w.reason || 'no reason recorded';
  const code = w.reasonCode || 'LXR_INTERNAL';
  const notFound = code === 'LXR_NOT_FOUND';
  return new CliError(
    `workspace ${name} failed on host ${w.host}: ${why}`,
    notFound ? Exit.NOT_FOUND : code === 'LXR_UNAVAILABLE' ? Exit.UNAVAILABLE : code === 'LXR_INVALID_ARGUMENT' || code === 'LXR_INVALID_SPEC' ? Exit.INVALID : Exit.FAILED,
    code,
    notFound && /image|manifest|repository/i.test(why)
      ? `lxrctl images ls lists the images on each host (lxrctl images pull or import brings one); then lxrctl rm ${name} and create it again`
      : `lxrctl rm ${name}, then create it again`,
  );
}

const create: Command = {
  path: ['create'],
  usage: 'NAME --image REF [flags] [-- CMD...]',
  summary: 'create a workspace and start it',
  details: 'Waits until the workspace runs (or failed) unless -d. Running it again with the same spec is harmless.\nexample: lxrctl create ws1 --image busybox --cpus 1 -m 512m -- sleep infinity',
  args: { flags: CREATE_FLAGS, positionals: ['NAME'], required: 1, command: true },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'workspace');
    const spec = buildSpec(inv, name);
    const timeout = inv.int('timeout') ?? 300;
    if (timeout < 1) throw invalid(`--timeout ${timeout}: must be at least 1 second`);
    const c = inv.connection();
    const r = await c.call(c.workspaces, c.workspaces.Create, { spec, wait: false });
    const w = inv.bool('detach') ? r.workspace! : await waitSettled(inv, r.workspace!, timeout);
    if (w.state === 'Failed') throw failedError(w);
    const where = `host ${w.host}${w.address ? `, address ${w.address}` : ''}`;
    inv.out(`${escape(name)} ${r.created ? '' : '(already there) '}${w.state === 'Running' ? 'is running' : `is ${w.state}`} on ${escape(where)}\n`);
    if (w.state === 'Stopped') inv.err(`lxrctl: note: its main process ended (${escape(w.reason)}); lxrctl logs ${escape(name)} shows its output\n`);
    return Exit.OK;
  },
};

const VISIBLE_WITHOUT_ALL = new Set(['Pending', 'Creating', 'Running', 'Unknown']);

const ps: Command = {
  path: ['ps'],
  usage: '[flags]',
  summary: 'list workspaces (running ones; -a for all)',
  args: {
    flags: [
      { name: 'all', short: 'a', kind: 'bool', help: 'also stopped and failed ones' },
      { name: 'quiet', short: 'q', kind: 'bool', help: 'names only' },
      { name: 'host', kind: 'string', value: 'HOST', help: 'only those on this host' },
      outputFlag,
    ],
    positionals: [],
    required: 0,
  },
  async run(inv) {
    const mode = outputMode(inv, ['json', 'yaml', 'wide']);
    const host = inv.flag('host');
    if (host !== undefined) checkName(host, 'host');
    const c = inv.connection();
    const r = await c.call(c.workspaces, c.workspaces.List, { host: host ?? '' });
    const list = r.workspaces.filter((w) => inv.bool('all') || VISIBLE_WITHOUT_ALL.has(w.state)).sort((a, b) => (a.spec?.name ?? '').localeCompare(b.spec?.name ?? ''));
    if (mode === 'json') inv.out(toJson(list));
    else if (mode === 'yaml') inv.out(toYaml(list));
    else if (inv.bool('quiet')) inv.out(list.map((w) => escape(w.spec?.name ?? '') + '\n').join(''));
    else {
      const now = inv.io.now();
      const wide = mode === 'wide';
      const headers = ['NAME', 'HOST', 'IP', 'STATE', 'IMAGE', 'AGE', ...(wide ? ['CPUS', 'MEMORY', 'PORTS', 'UID', 'REASON'] : [])];
      const rows = list.map((w) => [
        w.spec?.name ?? '',
        w.host,
        w.address,
        w.state === 'Stopped' && w.exitCode ? `Stopped (${w.exitCode})` : w.state,
        w.spec?.image ?? '',
        age(w.createdAt, now),
        ...(wide
          ? [
              w.spec?.cpus ? String(w.spec.cpus) : '-',
              w.spec?.memoryBytes ? bytes(w.spec.memoryBytes) : '-',
              (w.spec?.ports ?? []).map((p) => `${p.hostPort}->${p.containerPort}/${p.protocol || 'tcp'}`).join(',') || '-',
              w.uid,
              w.reason,
            ]
          : []),
      ]);
      inv.out(table(headers, rows));
    }
    return Exit.OK;
  },
};

const inspect: Command = {
  path: ['inspect'],
  usage: 'NAME [flags]',
  summary: 'show everything about a workspace (JSON)',
  args: { flags: [{ name: 'output', short: 'o', kind: 'string', value: 'json|yaml', help: 'json (the default) or yaml' }], positionals: ['NAME'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const mode = outputMode(inv, ['json', 'yaml']);
    const name = checkName(inv.args.positionals[0]!, 'workspace');
    const c = inv.connection();
    const r = await c.call(c.workspaces, c.workspaces.Get, { name });
    inv.out(mode === 'yaml' ? toYaml(r.workspace) : toJson(r.workspace));
    return Exit.OK;
  },
};

/** Runs `one` for each named workspace; every name is tried, the first failure decides the exit code. */
async function each(inv: Invocation, command: string, one: (name: string) => Promise<void>): Promise<number> {
  const names = inv.args.positionals.map((n) => checkName(n, 'workspace'));
  let firstError: unknown = null;
  for (const n of names) {
    try {
      await one(n);
      inv.out(`${n}\n`);
    } catch (e) {
      if (names.length === 1) throw e;
      firstError ??= e;
      inv.err(failureLine(toCliError(e, { command, server: inv.serverForMessages(), subject: n })));
    }
  }
  if (firstError) return toCliError(firstError, { command, server: inv.serverForMessages() }).exit;
  return Exit.OK;
}

const start: Command = {
  path: ['start'],
  usage: 'NAME...',
  summary: 'start stopped workspaces (their files are kept)',
  args: { flags: [], positionals: ['NAME'], required: 1, variadic: true },
  subject: (a) => a.positionals[0],
  run(inv) {
    const c = inv.connection();
    return each(inv, 'start', async (name) => {
      const r = await c.call(c.workspaces, c.workspaces.Start, { name });
      if (r.workspace?.state === 'Failed') throw failedError(r.workspace);
    });
  },
};

const stop: Command = {
  path: ['stop'],
  usage: 'NAME... [-t SECONDS]',
  summary: 'stop workspaces: SIGTERM, then SIGKILL after the grace time',
  args: { flags: [{ name: 'time', short: 't', kind: 'int', value: 'SECONDS', help: 'seconds between SIGTERM and SIGKILL (default 10)' }], positionals: ['NAME'], required: 1, variadic: true },
  subject: (a) => a.positionals[0],
  run(inv) {
    const t = inv.int('time');
    // The API reads 0 as "the default" (10 s): an immediate kill is not offered, so 0 is refused rather than misread.
    if (t !== undefined && (t < 1 || t > 3600)) throw invalid(`-t ${t}: the grace time must be 1-3600 seconds (default 10)`);
    const c = inv.connection();
    return each(inv, 'stop', async (name) => {
      await c.call(c.workspaces, c.workspaces.Stop, { name, graceSeconds: t ?? 0 }, 0);
    });
  },
};

const rm: Command = {
  path: ['rm'],
  usage: 'NAME... [-f]',
  summary: 'remove workspaces (a running one only with -f)',
  args: { flags: [{ name: 'force', short: 'f', kind: 'bool', help: 'remove it even while it runs' }], positionals: ['NAME'], required: 1, variadic: true },
  subject: (a) => a.positionals[0],
  run(inv) {
    const c = inv.connection();
    return each(inv, 'rm', async (name) => {
      if (!inv.bool('force')) {
        const w = (await c.call(c.workspaces, c.workspaces.Get, { name })).workspace!;
        if (w.state === 'Running' || w.state === 'Creating' || w.state === 'Pending') {
          throw new CliError(`workspace ${name} is ${w.state}`, Exit.FAILED, 'LXR_ILLEGAL_STATE', `stop it first (lxrctl stop ${name}) or remove it anyway (lxrctl rm -f ${name})`);
        }
      }
      await c.call(c.workspaces, c.workspaces.Delete, { name });
    });
  },
};

const logs: Command = {
  path: ['logs'],
  usage: 'NAME [flags]',
  summary: 'print a workspace\'s output (its main process)',
  args: {
    flags: [
      { name: 'follow', short: 'f', kind: 'bool', help: 'keep printing new output' },
      { name: 'tail', short: 'n', kind: 'int', value: 'N', help: 'only the last N lines' },
      { name: 'since', kind: 'string', value: 'T', help: 'only output since T: an RFC 3339 time or a duration (10m, 2h)' },
      { name: 'timestamps', short: 't', kind: 'bool', help: 'prefix each line with its time' },
    ],
    positionals: ['NAME'],
    required: 1,
  },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'workspace');
    const tail = inv.int('tail');
    if (tail !== undefined && tail < 0) throw invalid(`--tail ${tail}: must be 0 or more`);
    let since = '';
    const s = inv.flag('since');
    if (s !== undefined) {
      try {
        since = parseSince(s, inv.io.now());
      } catch (e) {
        throw invalid(`--since: ${(e as Error).message}`);
      }
    }
    // docker's --tail 0 is "no old lines"; the API's tail 0 is "all": ask for lines from now on instead.
    if (tail === 0) since = new Date(inv.io.now()).toISOString();
    const c = inv.connection();
    const stream = c.workspaces.Logs({ name, follow: inv.bool('follow'), tail: tail ?? 0, since }, c.metadata());
    const stamps = inv.bool('timestamps');
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m) => {
        const out = m.stream === 'stderr' ? inv.io.stderr : inv.io.stdout;
        const body = m.partial ? m.line : Buffer.concat([m.line, Buffer.from('\n')]);
        if (stamps) out.write(`${escape(m.time)} `);
        if (!out.write(body)) {
          stream.pause();
          out.once('drain', () => stream.resume());
        }
      });
      stream.on('error', reject);
      stream.on('end', resolve);
    });
    return Exit.OK;
  },
};

const open: Command = {
  path: ['open'],
  usage: 'NAME',
  summary: 'print a short-lived link to the workspace\'s web terminal',
  args: {
    flags: [
      { name: 'page', kind: 'string', value: 'PAGE', help: 'the page: ide (the default when it has one) or terminal' },
      { name: 'no-browser', kind: 'bool', help: 'only print the link, even on a desktop' },
    ],
    positionals: ['NAME'],
    required: 1,
  },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'workspace');
    const c = inv.connection();
    const res = await c.call(c.workspaces, c.workspaces.Open, { name, page: (inv.args.flags.page as string | undefined) ?? '' });
    inv.out(`${res.url}\n`);
    // On a desktop, open it too (as xdg-open would for a click); elsewhere, the link is the answer.
    const env = inv.io.env;
    const desktop = (env.DISPLAY || env.WAYLAND_DISPLAY) && (env.PATH ?? '').split(':').some((d) => d && existsSync(path.join(d, 'xdg-open')));
    if (desktop && !inv.args.flags['no-browser']) {
      spawn('xdg-open', [res.url], { detached: true, stdio: 'ignore' }).on('error', () => {}).unref();
      inv.err(`opened in the browser; the link holds until ${res.expiresAt}, then 12 hours in that browser\n`);
    } else inv.err(`open it in a browser before ${res.expiresAt}; it then holds for 12 hours in that browser\n`);
    return Exit.OK;
  },
};

export const workspaceCommands: Command[] = [create, ps, inspect, start, stop, rm, logs, open];
