// lxr-runtime: the OCI runtime command line (runc-compatible flag names)
// over the in-process Runtime, so other engines can drive LXR and it can be
// checked against runc on the same bundle.
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { constants as osConstants } from 'node:os';
import { LxrError } from '../../proto/shared/errors.js';
import { createCgroupManager } from '../cgroups/index.js';
import type { Process } from './oci.js';
import { buildSpec } from './defaults.js';
import { Runtime } from './runtime.js';
import { LXR_VERSION } from '../../proto/shared/version.js';

const USAGE = `usage: lxr-runtime [--root DIR] COMMAND [OPTIONS] ID
commands:
  create --bundle DIR [--pid-file F] [--console-socket S] ID
  start ID
  state ID
  kill ID [SIGNAL]
  delete [--force] ID
  exec [--process FILE] [--pid-file F] [--detach] [--tty] [--console-socket S]
       [--cwd DIR] [--env K=V] [--user UID[:GID]] ID [ARGS...]
  run [--bundle DIR] [--pid-file F] [--console-socket S] [--detach] ID
  spec [--bundle DIR] [-- ARGS...]   write a config.json with LXR's secure defaults
  list
  version`;

class UsageError extends Error {}

interface Parsed {
  flags: Map<string, string[]>;
  rest: string[];
}

/** Flags that take a value; the rest are booleans. Aliases map to their long name. */
const VALUE_FLAGS = new Set(['root', 'bundle', 'pid-file', 'console-socket', 'process', 'cwd', 'env', 'user', 'log', 'log-format', 'criu', 'rootless', 'preserve-fds', 'process-label', 'apparmor', 'cap', 'additional-gids']);
const ALIASES: Record<string, string> = { b: 'bundle', f: 'force', p: 'process', d: 'detach', t: 'tty', e: 'env', u: 'user', a: 'all', c: 'cap', g: 'additional-gids' };

function parse(args: string[], stopAtFirstPositional: boolean): Parsed {
  const flags = new Map<string, string[]>();
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      rest.push(...args.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      rest.push(a);
      if (stopAtFirstPositional) {
        rest.push(...args.slice(i + 1));
        break;
      }
      continue;
    }
    let name = a.replace(/^--?/, '');
    let value: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    name = ALIASES[name] ?? name;
    if (VALUE_FLAGS.has(name) && value === undefined) {
      value = args[++i];
      if (value === undefined) throw new UsageError(`flag --${name} needs a value`);
    }
    const list = flags.get(name) ?? [];
    list.push(value ?? 'true');
    flags.set(name, list);
  }
  return { flags, rest };
}

const one = (p: Parsed, name: string): string | undefined => p.flags.get(name)?.at(-1);

function oneId(p: Parsed, cmd: string): string {
  if (p.rest.length !== 1) throw new UsageError(`${cmd} takes exactly one container id`);
  return p.rest[0]!;
}

/** --console-socket and --pid-file, shared by create, run and exec. */
function socketAndPidFile(p: Parsed): { consoleSocket?: string; pidFile?: string } {
  const socket = one(p, 'console-socket');
  const pidFile = one(p, 'pid-file');
  return { ...(socket ? { consoleSocket: path.resolve(socket) } : {}), ...(pidFile ? { pidFile: path.resolve(pidFile) } : {}) };
}

function parseSignal(s: string): NodeJS.Signals | number {
  if (/^\d+$/.test(s)) return Number(s);
  const name = (s.startsWith('SIG') ? s : `SIG${s}`).toUpperCase();
  if (!(name in osConstants.signals)) throw new UsageError(`unknown signal ${s}`);
  return name as NodeJS.Signals;
}

function parseUser(s: string): { uid: number; gid: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(s);
  if (!m) throw new UsageError(`--user ${s}: expected UID[:GID]`);
  return { uid: Number(m[1]), gid: Number(m[2] ?? 0) };
}

async function main(argv: string[]): Promise<number> {
  const global = parse(argv, true);
  const [cmd, ...cmdArgs] = global.rest;
  if (!cmd || cmd === 'help' || global.flags.has('help') || global.flags.has('h')) {
    process.stdout.write(USAGE + '\n');
    return cmd ? 0 : 2;
  }
  if (cmd === 'version' || global.flags.has('version')) {
    process.stdout.write(`lxr-runtime version ${LXR_VERSION}\nspec: 1.2.0\n`);
    return 0;
  }
  if (cmd === 'spec') {
    const p = parse(cmdArgs, false);
    const bundle = path.resolve(one(p, 'bundle') ?? '.');
    const spec = buildSpec({ Cmd: p.rest.length ? p.rest : ['sh'] }, { id: 'lxr', hostname: 'lxr' }, { rootfs: path.join(bundle, 'rootfs'), cgroupsPath: '' });
    spec.root = { path: 'rootfs', readonly: false };
    if (spec.linux) delete spec.linux.cgroupsPath;
    try {
      await writeFile(path.join(bundle, 'config.json'), JSON.stringify(spec, null, 2) + '\n', { flag: 'wx' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${path.join(bundle, 'config.json')} exists: remove it first`);
      throw e;
    }
    return 0;
  }
  const root = one(global, 'root') ?? '/run/lxr/runtime';
  const cgroups = await createCgroupManager();
  const rt = new Runtime({ root: path.resolve(root), cgroups });
  const p = parse(cmdArgs, cmd === 'exec');
  const stdioFds: [number, number, number] = [0, 1, 2];

  switch (cmd) {
    case 'create': {
      const id = oneId(p, cmd);
      await rt.create(id, path.resolve(one(p, 'bundle') ?? '.'), { ...socketAndPidFile(p), stdio: { mode: 'inherit' }, stdioFds });
      return 0;
    }
    case 'start':
      await rt.start(oneId(p, cmd));
      return 0;
    case 'state':
      process.stdout.write(JSON.stringify(await rt.state(oneId(p, cmd)), null, 2) + '\n');
      return 0;
    case 'list': {
      const all = await rt.list();
      process.stdout.write('ID\tPID\tSTATUS\tBUNDLE\n');
      for (const s of all) process.stdout.write(`${s.id}\t${s.pid ?? 0}\t${s.status}\t${s.bundle}\n`);
      return 0;
    }
    case 'kill': {
      if (p.rest.length < 1 || p.rest.length > 2) throw new UsageError('kill takes a container id and an optional signal');
      if (p.flags.has('all')) throw new UsageError('kill --all is not supported yet: it signals the init only without it');
      await rt.kill(p.rest[0]!, parseSignal(p.rest[1] ?? 'SIGTERM'));
      return 0;
    }
    case 'delete':
      await rt.delete(oneId(p, cmd), { force: p.flags.has('force') });
      return 0;
    case 'run': {
      const id = oneId(p, cmd);
      await rt.create(id, path.resolve(one(p, 'bundle') ?? '.'), { ...socketAndPidFile(p), stdio: { mode: 'inherit' }, stdioFds });
      try {
        await rt.start(id);
      } catch (e) {
        await rt.delete(id, { force: true }).catch(() => {});
        throw e;
      }
      if (p.flags.has('detach')) return 0;
      const exit = await rt.wait(id);
      await rt.delete(id, { force: true });
      return exit.exitCode;
    }
    case 'exec': {
      const [id, ...args] = p.rest;
      if (!id) throw new UsageError('exec needs a container id');
      const rec = await rt.store.read(id);
      let proc: Process;
      const procFile = one(p, 'process');
      if (procFile) {
        try {
          proc = JSON.parse(await readFile(procFile, 'utf8')) as Process;
        } catch (e) {
          throw new UsageError(`--process ${procFile}: ${(e as Error).message}`);
        }
      } else {
        if (args.length === 0) throw new UsageError('exec needs a command (or --process FILE)');
        const base = rec.spec.process!;
        proc = {
          ...base,
          args,
          terminal: p.flags.has('tty'),
          env: [...(base.env ?? []), ...(p.flags.get('env') ?? [])],
          cwd: one(p, 'cwd') ?? base.cwd,
          ...(one(p, 'user') ? { user: { ...base.user, ...parseUser(one(p, 'user')!) } } : {}),
        };
      }
      const h = await rt.exec(id, proc, { ...socketAndPidFile(p), detach: p.flags.has('detach'), stdioFds });
      const code = await h.exited;
      return code ?? 0;
    }
    default:
      throw new UsageError(`unknown command ${cmd}`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`lxr-runtime: ${e.message}\n${USAGE}\n`);
      process.exit(2);
    }
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`lxr-runtime: ${msg}\n`);
    const code = (e as { exitCode?: number }).exitCode;
    process.exit(e instanceof LxrError && (code === 127 || code === 126) ? code : 1);
  },
);
