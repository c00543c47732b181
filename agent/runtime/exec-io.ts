// A process exec'd into a running container with its stdio wired to the
// agent, for exec sessions: plain pipes (stdout and stderr apart), or a
// terminal. The terminal is a PTY from the container's own devpts (so `tty`
// names a device that exists in the container, as under `docker exec -t`),
// relayed by the native helper over the agent's own PTY, made by node-pty:
// the helper sees window-size changes of that PTY as SIGWINCH and copies
// them over (native/shim/relay.c).
//
// Signals go to the process through the helper (`signal N` on the report
// channel, native/shim/control.c): the helper is the process's parent and
// has not reaped it, so a signal can never reach a reused pid.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, write as fsWrite } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { PassThrough, Readable, Writable, type Duplex } from 'node:stream';
import { LxrError } from '../../proto/shared/errors.js';
import { connectRecycled } from './recycled-reads.js';
import { ReportReader, reportToError, type ShimReport } from './shim.js';

export interface ExecExitStatus {
  /** The exit code; 128+n when killed by signal n. */
  exitCode: number;
  signal: number;
}

export interface AttachedExecOptions {
  tty: boolean;
  rows: number;
  cols: number;
  /**
   * Where the helper connects with its reports (tty only: node-pty passes no
   * fd 3); named in the plan, so chosen by whoever wrote it, in a private dir.
   */
  reportSocket?: string;
}

export interface AttachedExec {
  /** The process's pid on the host. */
  readonly pid: number;
  /**
   * Its output; with a tty, everything it writes to the terminal. Through
   * an exec server, stdout and stderr also offer their output as chunks of
   * recycled memory (recycled-reads.ts: chunkTaker).
   */
  readonly stdout: Readable;
  /** null with a tty. */
  readonly stderr: Readable | null;
  /** Its input, with backpressure: a write that returns false waits for 'drain'. */
  readonly stdin: Writable;
  /** End of input: EOF on a pipe; the terminal's EOF character (^D) with a tty. */
  closeStdin(): void;
  /** The terminal's new size (tty only; ignored otherwise). */
  resize(rows: number, cols: number): void;
  signal(n: number): void;
  /**
   * How the process ended. With a tty it settles after all of its terminal
   * output was read; with pipes it can settle before stdout/stderr end (a
   * child it left behind may keep them open).
   */
  readonly exited: Promise<ExecExitStatus>;
}

const statusOf = (r: ShimReport | null, fallbackCode: number | null): ExecExitStatus => {
  if (r && r.type === 'exited') return { exitCode: r.exitCode ?? 0, signal: r.signal ?? 0 };
  const code = fallbackCode ?? 255;
  return { exitCode: code, signal: code > 128 && code < 128 + 65 ? code - 128 : 0 };
};

/** The report channel is a socket both ways: commands go back on it. */
function sendSignal(channel: Duplex | null, n: number): void {
  if (channel && !channel.destroyed && channel.writable) channel.write(`signal ${n}\n`);
}

/** Without a tty: the helper's stdio are socketpairs the process inherits. */
export async function execWithPipes(shimPath: string, planFile: string): Promise<AttachedExec> {
  const child = spawn(shimPath, ['exec', planFile], { stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
  const channel = child.stdio[3] as Duplex;
  const reader = new ReportReader(channel);
  const spawnError = new Promise<ShimReport>((resolve) =>
    child.once('error', (e) => resolve({ type: 'error', step: 'start helper', message: `${shimPath}: ${e.message}` })),
  );
  let code: number | null = null;
  const childExit = new Promise<void>((resolve) => child.once('exit', (c, sig) => { code = c ?? (sig ? 128 + (os.constants.signals[sig] ?? 0) : null); resolve(); }));
  const first = await Promise.race([reader.next(), spawnError]);
  if (!first || first.type !== 'started') {
    child.stdout?.resume();
    child.stderr?.resume();
    reader.close();
    throw reportToError(first ?? { type: 'error', message: 'the exec helper exited without a report' }, 'exec');
  }
  child.stdin!.on('error', () => {}); // EPIPE once the process is gone: not the agent's problem
  const exited = (async () => {
    const r = await reader.next();
    if (r) return statusOf(r, null);
    await childExit;
    return statusOf(null, code);
  })();
  return {
    pid: first.pid!,
    stdout: child.stdout!,
    stderr: child.stderr!,
    stdin: child.stdin!,
    closeStdin: () => child.stdin!.end(),
    resize: () => {},
    signal: (n) => sendSignal(channel, n),
    exited,
  };
}

/**
 * Through the container's exec server (native/shim/exec_server.c): four
 * connections, each opened with a 64-byte header naming its role and this
 * exec's token; `in`, `out` and `err` become the process's stdio as they
 * are, `ctl` carries the plan and brings the reports.
 */
export async function execViaServer(socket: string, plan: Buffer): Promise<AttachedExec> {
  const token = randomBytes(16).toString('hex');
  const open = (kind: string, extra = ''): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      // Output is read into recycled memory (recycled-reads.ts).
      const s = kind === 'out' || kind === 'err' ? connectRecycled(socket) : net.createConnection(socket);
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        s.on('error', () => {}); // EPIPE/ECONNRESET once the process is gone
        s.write(`${kind} ${token} ${extra}`.padEnd(64, ' '));
        resolve(s);
      });
    });
  const conns = await Promise.allSettled([open('ctl', String(plan.length)), open('in'), open('out'), open('err')]);
  const failed = conns.find((c) => c.status === 'rejected');
  if (failed) {
    for (const c of conns) if (c.status === 'fulfilled') c.value.destroy();
    throw new LxrError('LXR_UNAVAILABLE', `exec server ${socket}: ${(failed.reason as Error).message}`, { cause: failed.reason });
  }
  const [ctl, stdin, stdout, stderr] = conns.map((c) => (c as PromiseFulfilledResult<net.Socket>).value) as [net.Socket, net.Socket, net.Socket, net.Socket];
  ctl.write(plan);
  stdin.resume(); // nothing comes this way; let its end be seen
  const reader = new ReportReader(ctl);
  const first = await reader.next();
  if (!first || first.type !== 'started') {
    for (const s of [ctl, stdin, stdout, stderr]) s.destroy();
    throw reportToError(first ?? { type: 'error', message: 'the exec server closed the connection without a report' }, 'exec');
  }
  const exited = reader.next().then((r) => {
    reader.close();
    return statusOf(r, null);
  });
  return {
    pid: first.pid!,
    stdout,
    stderr,
    stdin,
    closeStdin: () => stdin.end(),
    resize: () => {},
    signal: (n) => sendSignal(ctl, n),
    exited,
  };
}

/** node-pty, loaded on first use: the agent runs without it when nobody asks for a tty. */
type PtyModule = typeof import('node-pty');
let ptyModule: Promise<PtyModule> | null = null;
const loadPty = (): Promise<PtyModule> => (ptyModule ??= import('node-pty').then((m) => ((m as { default?: PtyModule }).default ?? m) as PtyModule));

/** With a tty: the helper runs on a node-pty PTY and relays the container's. */
export async function execWithTerminal(shimPath: string, planFile: string, o: AttachedExecOptions): Promise<AttachedExec> {
  const pty = await loadPty().catch((e: unknown) => {
    throw new LxrError('LXR_UNAVAILABLE', `exec with a tty needs node-pty, which does not load: ${(e as Error).message}`, { cause: e });
  });
  const sock = o.reportSocket;
  if (!sock) throw new LxrError('LXR_INTERNAL', 'exec with a tty: the plan names no report socket');
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sock, resolve);
  });
  const connection = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const cleanup = (): void => {
    server.close();
    rmSync(sock, { force: true });
  };
  let term: import('node-pty').IPty;
  try {
    term = pty.spawn(shimPath, ['exec', planFile], {
      name: 'xterm',
      cols: o.cols > 0 ? o.cols : 80,
      rows: o.rows > 0 ? o.rows : 24,
      cwd: '/',
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' },
      encoding: null,
    });
  } catch (e) {
    cleanup();
    throw new LxrError('LXR_HOST_SETUP_FAILED', `exec: cannot start the helper on a PTY: ${(e as Error).message}`, { cause: e });
  }
  // What the helper prints before it relays (its own errors) and all output after.
  const stdout = new PassThrough({ highWaterMark: 64 * 1024 });
  const early: Buffer[] = [];
  let started = false;
  term.onData((d) => {
    const b = d as unknown as Buffer;
    if (!started) early.push(b);
    else if (!stdout.write(b)) term.pause();
  });
  stdout.on('drain', () => term.resume());
  let ptyDone = false;
  const ptyExit = new Promise<{ exitCode: number; signal?: number }>((resolve) =>
    term.onExit((e) => {
      ptyDone = true;
      resolve(e);
    }),
  );
  let reader: ReportReader | null = null;
  let channel: net.Socket | null = null;
  const firstReport = connection.then((c) => {
    channel = c;
    reader = new ReportReader(c);
    return reader.next();
  });
  // The helper may exit (a quick command) before its connection is seen
  // here: its reports are on the socket still, so give them a moment.
  const first = await Promise.race([firstReport, ptyExit.then(() => Promise.race([firstReport, new Promise<null>((r) => setTimeout(() => r(null), 1000))]))]);
  cleanup();
  if (!first || first.type !== 'started' || !reader || !channel) {
    (reader as ReportReader | null)?.close();
    // Only while node-pty has not reaped it: a reaped pid may be someone else's.
    if (!ptyDone) term.kill('SIGKILL');
    const said = Buffer.concat(early).toString().trim();
    throw reportToError(first ?? { type: 'error', message: said || 'the exec helper exited without a report' }, 'exec');
  }
  started = true;
  for (const b of early) stdout.write(b);
  const rd: ReportReader = reader;
  const ch: net.Socket = channel;
  ch.on('error', () => {});
  const report = rd.next();
  const exited = ptyExit.then(async (e) => {
    // node-pty reports the exit once the PTY was read to its end.
    stdout.end();
    const r = await Promise.race([report, new Promise<null>((resolve) => setTimeout(() => resolve(null), 1000))]);
    rd.close();
    return statusOf(r, e.exitCode);
  });
  const fd = (term as unknown as { fd?: unknown }).fd;
  const stdin = new Writable({
    highWaterMark: 64 * 1024,
    write(chunk: Buffer, _enc, cb) {
      if (typeof fd !== 'number') {
        term.write(chunk as unknown as string);
        cb();
        return;
      }
      // Written to the PTY master ourselves, so completion (and with it
      // backpressure) is known; EAGAIN waits a little instead of spinning.
      let off = 0;
      const step = (): void => {
        fsWrite(fd, chunk, off, chunk.length - off, null, (err, n) => {
          if (err && err.code === 'EAGAIN') return void setTimeout(step, 5);
          if (err) return cb(err.code === 'EIO' ? null : err);
          off += n;
          if (off < chunk.length) step();
          else cb();
        });
      };
      step();
    },
  });
  stdin.on('error', () => {});
  return {
    pid: first.pid!,
    stdout,
    stderr: null,
    stdin,
    closeStdin: () => stdin.write(Buffer.from([4])),
    resize: (rows, cols) => {
      if (rows > 0 && cols > 0) {
        try {
          term.resize(cols, rows);
        } catch {
          // The PTY is already gone.
        }
      }
    },
    signal: (n) => sendSignal(ch, n),
    exited,
  };
}

/** For the fake launcher: a process the test drives through its streams. */
export interface ScriptedExec extends AttachedExec {
  /** What the test does as the process. */
  readonly proc: { stdout: PassThrough; stderr: PassThrough; stdin: PassThrough; exit(status: ExecExitStatus): void; signals: number[]; sizes: Array<[number, number]> };
}

export function scriptedExec(pid: number, tty: boolean): ScriptedExec {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const stdin = new PassThrough();
  let exit!: (s: ExecExitStatus) => void;
  const exited = new Promise<ExecExitStatus>((resolve) => (exit = resolve));
  const signals: number[] = [];
  const sizes: Array<[number, number]> = [];
  return {
    pid,
    stdout,
    stderr: tty ? null : stderr,
    stdin,
    closeStdin: () => (tty ? stdin.write(Buffer.from([4])) : stdin.end()),
    resize: (r, c) => sizes.push([r, c]),
    signal: (n) => signals.push(n),
    exited,
    proc: {
      stdout,
      stderr,
      stdin,
      exit: (s) => {
        if (!tty) stderr.end();
        stdout.end();
        exit(s);
      },
      signals,
      sizes,
    },
  };
}
