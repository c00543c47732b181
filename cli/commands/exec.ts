// lxrctl exec, attach and exec ls: durable exec sessions through the
// controller. lxrctl exits with the remote process's status; detaching
// (ctrl-p ctrl-q) leaves the session running, and attach resumes it from
// the last byte this machine showed (kept in sessions.json beside the config).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { ExecRequest, ExecResponse, Session } from '../../proto/shared/api-types.js';
import type { Command, Invocation } from '../command.js';
import { writeBeside } from '../config.js';
import { CliError, Exit, invalid } from '../failure.js';
import { age, escape, table, toJson, toYaml } from '../output.js';
import { DetachScanner, parseDetachKeys, RawMode } from '../terminal.js';
import { splitSessionId } from '../../proto/shared/session-id.js';
import { checkName, outputMode, parseEnv } from './common.js';

const DETACH_DEFAULT = 'ctrl-p,ctrl-q';
const OFFSETS_FILE = 'sessions.json';
const OFFSETS_KEPT = 200;

type Offsets = Record<string, { offset: number; at: string }>;

function readOffsets(inv: Invocation): Offsets {
  try {
    return JSON.parse(readFileSync(path.join(path.dirname(inv.configFile), OFFSETS_FILE), 'utf8')) as Offsets;
  } catch {
    return {};
  }
}

/** Remembers how far this machine showed a session, so attach resumes there. */
function rememberOffset(inv: Invocation, id: string, offset: number): void {
  const all = readOffsets(inv);
  all[`${inv.target().address} ${id}`] = { offset, at: new Date(inv.io.now()).toISOString() };
  const kept = Object.entries(all)
    .sort((a, b) => b[1].at.localeCompare(a[1].at))
    .slice(0, OFFSETS_KEPT);
  try {
    writeBeside(inv.configFile, OFFSETS_FILE, Object.fromEntries(kept));
  } catch {
    // Not remembering only means attach replays what the session still holds.
  }
}

interface SessionIo {
  tty: boolean;
  /** Forward our stdin (-i). */
  stdin: boolean;
  detachKeys: Buffer;
  /** Shown on detach and when the link is lost. */
  describe: (id: string) => string;
  /** The session's id when it is known before the server says it (attach). */
  id?: string;
}

/**
 * Runs one attached session: output to stdout/stderr with backpressure,
 * stdin (and resizes) up, raw mode on a terminal; resolves with the exit
 * code to leave with.
 */
function runSession(inv: Invocation, call: grpc.ClientDuplexStream<ExecRequest, ExecResponse>, first: ExecRequest, o: SessionIo): Promise<number> {
  const { stdin, stdout, stderr } = inv.io;
  const interactive = o.tty && o.stdin && !!stdin.isTTY;
  const raw = new RawMode(stdin);
  const scanner = interactive ? new DetachScanner(o.detachKeys) : null;
  let sessionId = o.id ?? '';
  let offset = 0;
  let finished = false;
  return new Promise<number>((resolve, reject) => {
    const cleanups: Array<() => void> = [];
    const finish = (f: () => void): void => {
      if (finished) return;
      finished = true;
      for (const c of cleanups.splice(0)) c();
      raw.restore();
      f();
    };
    const sizeOf = (): { rows: number; cols: number } => ({ rows: stdout.rows || 24, cols: stdout.columns || 80 });
    const onResize = (): void => {
      if (!finished) call.write({ resize: sizeOf() });
    };
    /** Leaves the session running: lxrctl was told to go (kill, a closed terminal, ctrl-c twice). */
    const leave = (sig: NodeJS.Signals): void => {
      finish(() => {
        call.cancel();
        if (sessionId) rememberOffset(inv, sessionId, offset);
        stderr.write(`\r\nlxrctl: ${sig}: left ${escape(o.describe(sessionId))} running${sessionId ? `; lxrctl attach ${escape(sessionId)} resumes it` : ''}\r\n`);
        resolve(128 + (sig === 'SIGHUP' ? 1 : sig === 'SIGINT' ? 2 : 15));
      });
    };
    for (const sig of ['SIGTERM', 'SIGHUP'] as const) {
      const h = (): void => leave(sig);
      process.on(sig, h);
      cleanups.push(() => process.off(sig, h));
    }
    if (!interactive) {
      // With a terminal in raw mode ctrl-c is a byte for the remote side. Without one, with -i,
      // the first ctrl-c is sent on as SIGINT (as docker exec -i does) and a second one leaves;
      // without -i, ctrl-c leaves at once. Either way the session goes on.
      let forwarded = !o.stdin;
      const h = (): void => {
        if (finished) return;
        if (forwarded) return leave('SIGINT');
        forwarded = true;
        call.write({ signal: 'SIGINT' });
      };
      process.on('SIGINT', h);
      cleanups.push(() => process.off('SIGINT', h));
    }
    if (o.tty && stdout.isTTY) {
      stdout.on('resize', onResize);
      cleanups.push(() => stdout.off('resize', onResize));
    }
    call.on('data', (m: ExecResponse) => {
      if (m.sessionId) sessionId = m.sessionId;
      if (m.output) {
        offset = m.output.offset + m.output.data.length;
        const out = m.output.stream === 'stderr' ? stderr : stdout;
        if (!out.write(m.output.data)) {
          call.pause();
          out.once('drain', () => {
            if (!finished) call.resume();
          });
        }
      } else if (m.gapUntil !== undefined && m.msg === 'gapUntil') {
        stderr.write(`\r\nlxrctl: output up to byte ${m.gapUntil} is no longer kept by the session\r\n`);
        offset = m.gapUntil;
      } else if (m.exit) {
        const code = m.exit.code;
        finish(() => {
          call.end();
          resolve(code);
        });
      }
    });
    call.on('error', (e: grpc.ServiceError) => finish(() => {
      if (sessionId && (e.code === grpc.status.UNAVAILABLE || e.code === grpc.status.CANCELLED)) {
        rememberOffset(inv, sessionId, offset);
        reject(new CliError(`the session's stream broke (${e.details}); ${o.describe(sessionId)} may still be running`, Exit.UNAVAILABLE, 'LXR_UNAVAILABLE', `lxrctl attach ${sessionId} resumes it`));
      } else reject(e);
    }));
    call.on('end', () => finish(() => {
      if (sessionId) rememberOffset(inv, sessionId, offset);
      reject(new CliError(`the controller ended ${o.describe(sessionId)} without an exit status`, Exit.UNAVAILABLE, 'LXR_UNAVAILABLE', sessionId ? `lxrctl attach ${sessionId} resumes it` : ''));
    }));
    call.write(first);
    if (!o.stdin) {
      if (first.start) call.write({ closeStdin: true });
      return;
    }
    if (interactive) raw.enter();
    const onData = (chunk: Buffer): void => {
      let data = chunk;
      if (scanner) {
        const r = scanner.feed(chunk);
        data = r.forward;
        if (r.detach) {
          const detach = (): void =>
            finish(() => {
              call.cancel();
              if (sessionId) rememberOffset(inv, sessionId, offset);
              stderr.write(`\r\nlxrctl: detached from ${escape(o.describe(sessionId))}; lxrctl attach ${escape(sessionId)} resumes it\r\n`);
              resolve(Exit.OK);
            });
          // What was typed before the keys goes first.
          if (data.length) call.write({ stdin: data }, detach);
          else detach();
          return;
        }
      }
      if (data.length && !call.write({ stdin: data })) {
        stdin.pause();
        call.once('drain', () => {
          if (!finished) stdin.resume();
        });
      }
    };
    const onEnd = (): void => {
      if (!finished) call.write({ closeStdin: true });
    };
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    cleanups.push(() => {
      stdin.off('data', onData);
      stdin.off('end', onEnd);
      stdin.pause();
    });
    stdin.resume();
  });
}

function detachKeys(inv: Invocation): Buffer {
  try {
    return parseDetachKeys(inv.flag('detach-keys') ?? inv.io.env['LXR_DETACH_KEYS'] ?? DETACH_DEFAULT);
  } catch (e) {
    throw invalid(`--detach-keys: ${(e as Error).message}`);
  }
}

const execCmd: Command = {
  path: ['exec'],
  usage: 'NAME [flags] -- CMD [ARG...]',
  summary: 'run a command in a workspace (exit status is the command\'s)',
  details:
    'With -it on a terminal the session is interactive like ssh: ctrl-p ctrl-q detaches and leaves it running (lxrctl attach ID resumes it).\n' +
    'lxrctl exec ls NAME lists a workspace\'s sessions.\nexample: lxrctl exec -it ws1 -- sh',
  args: {
    flags: [
      { name: 'interactive', short: 'i', kind: 'bool', help: 'send this terminal\'s input to the command' },
      { name: 'tty', short: 't', kind: 'bool', help: 'give the command a terminal' },
      { name: 'env', short: 'e', kind: 'list', value: 'K=V', help: 'an environment variable (repeatable)' },
      { name: 'workdir', short: 'w', kind: 'string', value: 'DIR', help: 'the directory to run in' },
      { name: 'user', short: 'u', kind: 'string', value: 'USER', help: 'run as this user (name or uid[:gid])' },
      { name: 'detach-keys', kind: 'string', value: 'KEYS', help: `the keys that detach (default ${DETACH_DEFAULT}; env LXR_DETACH_KEYS)` },
    ],
    positionals: ['NAME'],
    required: 1,
    command: true,
  },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const name = checkName(inv.args.positionals[0]!, 'workspace');
    const argv = inv.args.command;
    if (argv.length === 0) throw invalid(`lxrctl exec ${name} needs a command (e.g. lxrctl exec -it ${name} -- sh)`);
    const tty = inv.bool('tty');
    const stdin = inv.bool('interactive');
    if (tty && stdin && !inv.io.stdin.isTTY) throw invalid('-it needs a terminal on stdin (use -i alone to pipe input)');
    const keys = detachKeys(inv);
    const c = inv.connection();
    const size = { rows: inv.io.stdout.rows || 24, cols: inv.io.stdout.columns || 80 };
    const start = {
      container: name,
      args: argv,
      env: parseEnv(inv.list('env'), inv.io.env),
      cwd: inv.flag('workdir') ?? '',
      user: inv.flag('user') ?? '',
      tty,
      ...(tty ? size : {}),
    };
    const call = c.exec.Exec(c.metadata());
    return runSession(inv, call, { start }, { tty, stdin, detachKeys: keys, describe: (id) => `session ${id || '(not started)'} of ${name}` });
  },
};

async function sessionsOf(inv: Invocation, workspace: string): Promise<Session[]> {
  const c = inv.connection();
  return (await c.call(c.workspaces, c.workspaces.ListSessions, { container: workspace })).sessions;
}

const execLs: Command = {
  path: ['exec', 'ls'],
  usage: 'NAME [-o json|yaml]',
  summary: 'list a workspace\'s exec sessions',
  args: { flags: [{ name: 'output', short: 'o', kind: 'string', value: 'json|yaml', help: 'print as JSON or YAML' }], positionals: ['NAME'], required: 1 },
  subject: (a) => a.positionals[0],
  async run(inv) {
    const mode = outputMode(inv, ['json', 'yaml']);
    const name = checkName(inv.args.positionals[0]!, 'workspace');
    const list = await sessionsOf(inv, name);
    if (mode === 'json') inv.out(toJson(list));
    else if (mode === 'yaml') inv.out(toYaml(list));
    else {
      const now = inv.io.now();
      inv.out(
        table(
          ['ID', 'COMMAND', 'TTY', 'STATE', 'CLIENTS', 'STARTED', 'IDLE'],
          list.map((s) => [s.id, s.args.join(' '), s.tty ? 'yes' : 'no', s.state === 'exited' && s.exit ? `exited (${s.exit.code})` : s.state, String(s.attachedClients), age(s.startedAt, now), age(s.lastActivity, now)]),
        ),
      );
    }
    return Exit.OK;
  },
};

const attach: Command = {
  path: ['attach'],
  usage: 'SESSION-ID [flags]',
  summary: 'attach to an exec session (WORKSPACE/ID, from lxrctl exec ls)',
  details: 'Output resumes where this machine last left the session (else from the oldest byte the session still holds); --offset chooses.',
  args: {
    flags: [
      { name: 'offset', kind: 'int', value: 'N', help: 'replay output from this byte offset' },
      { name: 'no-stdin', kind: 'bool', help: 'only watch: do not send input' },
      { name: 'detach-keys', kind: 'string', value: 'KEYS', help: `the keys that detach (default ${DETACH_DEFAULT})` },
    ],
    positionals: ['SESSION-ID'],
    required: 1,
  },
  subject: (a) => a.positionals[0]?.split('/')[0],
  async run(inv) {
    const id = inv.args.positionals[0]!;
    let workspace: string;
    try {
      workspace = checkName(splitSessionId(id).workspace, 'workspace');
    } catch {
      throw invalid(`session id ${JSON.stringify(id)} is not WORKSPACE/ID (lxrctl exec ls WORKSPACE lists them)`);
    }
    const keys = detachKeys(inv);
    const session = (await sessionsOf(inv, workspace)).find((s) => s.id === id);
    if (!session) throw new CliError(`session ${id} not found`, Exit.NOT_FOUND, 'LXR_NOT_FOUND', `lxrctl exec ls ${workspace} lists its sessions`);
    const given = inv.int('offset');
    if (given !== undefined && given < 0) throw invalid(`--offset ${given}: must be 0 or more`);
    const offset = given ?? readOffsets(inv)[`${inv.target().address} ${id}`]?.offset ?? 0;
    const stdin = !inv.bool('no-stdin') && session.state === 'running';
    const c = inv.connection();
    const call = c.exec.Attach(c.metadata());
    const interactive = session.tty && stdin && !!inv.io.stdin.isTTY;
    const done = runSession(inv, call, { attach: { sessionId: id, offset } }, { tty: session.tty, stdin, detachKeys: keys, id, describe: (sid) => `session ${sid || id}` });
    // The terminal may have another size than the one that started it.
    if (interactive) call.write({ resize: { rows: inv.io.stdout.rows || 24, cols: inv.io.stdout.columns || 80 } });
    return done;
  },
};

export const execCommands: Command[] = [execCmd, execLs, attach];
