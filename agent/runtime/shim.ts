// The native helper as the runtime sees it: start a container's monitor
// from a plan file, or exec a process into a running container; both
// answer in one-line JSON reports (native/PLAN.md). A Linux implementation
// spawns lxr-shim; a fake records calls so the runtime is testable without root.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { findNativeBinary } from '../native-bin.js';
import { LxrError, type Reason } from '../../proto/shared/errors.js';
import { execViaServer, execWithPipes, execWithTerminal, scriptedExec, type AttachedExec, type AttachedExecOptions, type ScriptedExec } from './exec-io.js';

export interface ShimReport {
  type: 'created' | 'started' | 'error' | 'exited';
  pid?: number;
  monitor?: number;
  exitCode?: number;
  signal?: number;
  oomKilled?: boolean;
  step?: string;
  errno?: string;
  errnum?: number;
  message?: string;
}

/** stdio for the helper: file descriptors to pass, or 'ignore'. */
export type ShimStdio = [number | 'ignore', number | 'ignore', number | 'ignore'];

export interface ShimProcess {
  /** The first report: created/started, or the error (already thrown as LxrError). */
  readonly first: ShimReport;
  /**
   * A plan that starts itself (`autostart`): the report after `created`,
   * `started` or the start's `error`; null when the reporter went away first.
   */
  readonly started?: Promise<ShimReport | null>;
  /** Resolves with the exit report, or null when the reporter went away before it. */
  readonly exited: Promise<ShimReport | null>;
  /** Stop listening (the process keeps running). */
  detach(): void;
}

export interface CreateHints {
  /**
   * The plan gives the container a new pid namespace (so no sealed re-exec
   * is needed) and hands over no stdio: the long-lived helper server can
   * fork its monitor, the fast path.
   */
  viaServer?: boolean;
  /** The plan starts itself (`autostart`): a `started` or `error` report follows `created`. */
  startsItself?: boolean;
  /**
   * The plan is gated (server only): the monitor goes on to the cgroups once
   * this settles true, and is called off when it settles false.
   */
  gate?: Promise<boolean>;
}

/** Whether the helper server can make it: it forks its monitors, so it hands over no stdio. */
export const serverCanCreate = (stdio: ShimStdio, hints: CreateHints): boolean => !!hints.viaServer && stdio.every((s) => s === 'ignore');

export interface ShimLauncher {
  create(planFile: string, stdio: ShimStdio, hints?: CreateHints): Promise<ShimProcess>;
  exec(planFile: string, stdio: ShimStdio): Promise<ShimProcess>;
  /** Exec with the process's stdio wired to the agent (exec sessions). */
  execAttached(planFile: string, o: AttachedExecOptions): Promise<AttachedExec>;
  /** Starts a container's exec server on `socket`; resolves with its pid once it serves. */
  startExecServer(planFile: string, socket: string): Promise<number>;
  /** Exec (without a tty) through a running exec server. */
  execViaServer(socket: string, plan: Buffer): Promise<AttachedExec>;
}

/**
 * Which spec field a failing helper step is about: a bad cwd, mount or
 * sysctl is the request's fault (INVALID_ARGUMENT naming the field), not a
 * missing container (NOT_FOUND) or a host problem.
 */
const STEP_FIELDS: Record<string, string> = {
  cwd: 'process.cwd',
  mount: 'mounts',
  remount: 'mounts',
  'create mount point': 'mounts',
  'resolve path': 'mounts',
  'masked path': 'linux.maskedPaths',
  'readonly path': 'linux.readonlyPaths',
  sysctl: 'linux.sysctl',
  'join namespace': 'linux.namespaces',
  hostname: 'hostname',
  'create device': 'linux.devices',
};

/** Maps a helper's error report to the catalogue, once, by step and errno. */
export function reportToError(r: ShimReport, what: string): LxrError {
  const message = `${what}: ${r.step ? r.step + ': ' : ''}${r.message ?? 'failed'}`;
  const common = { ...(r.errno ? { errno: r.errno } : {}), ...(r.step ? { step: r.step } : {}) };
  let reason: Reason = 'LXR_HOST_SETUP_FAILED';
  let field: string | undefined;
  if (r.exitCode === 127) reason = 'LXR_EXEC_NOT_FOUND';
  else if (r.exitCode === 126) reason = 'LXR_EXEC_NOT_EXECUTABLE';
  else if (r.step && STEP_FIELDS[r.step] && r.errno !== 'EPERM') {
    reason = 'LXR_INVALID_SPEC';
    field = STEP_FIELDS[r.step];
  } else if (r.errno === 'ENOENT') reason = 'LXR_NOT_FOUND';
  else if (r.errno === 'EPERM' || r.errno === 'EACCES') reason = 'LXR_PERMISSION_DENIED';
  else if (r.errno === 'EINVAL' && r.step === 'read plan') reason = 'LXR_INTERNAL';
  const err = new LxrError(reason, message, { ...common, ...(field ? { field } : {}) });
  if (r.exitCode !== undefined) (err as LxrError & { exitCode?: number }).exitCode = r.exitCode;
  return err;
}

/** Reports for one helper, queued until someone asks for the next. */
export class ReportQueue {
  private queue: ShimReport[] = [];
  private waiters: Array<(r: ShimReport | null) => void> = [];
  private ended = false;

  push(r: ShimReport): void {
    const w = this.waiters.shift();
    if (w) w(r);
    else this.queue.push(r);
  }

  end(): void {
    this.ended = true;
    for (const w of this.waiters.splice(0)) w(null);
  }

  next(): Promise<ShimReport | null> {
    const r = this.queue.shift();
    if (r) return Promise.resolve(r);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

function parseReport(line: string): ShimReport {
  try {
    return JSON.parse(line) as ShimReport;
  } catch {
    return { type: 'error', step: 'report', message: `unreadable report: ${line}` };
  }
}

/** Calls onLine for each newline-terminated line of a stream, onEnd once. */
function readLines(stream: Readable, onLine: (line: string) => void, onEnd: () => void): void {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim()) onLine(line);
    }
  });
  let ended = false;
  const end = () => {
    if (!ended) {
      ended = true;
      onEnd();
    }
  };
  stream.on('end', end);
  stream.on('close', end);
  stream.on('error', end);
}

/** Reads newline-delimited JSON reports from one helper's stream. */
export class ReportReader extends ReportQueue {
  constructor(private readonly stream: Readable) {
    super();
    readLines(stream, (line) => this.push(parseReport(line)), () => this.end());
  }

  close(): void {
    this.stream.destroy();
  }
}

export function defaultShimPath(): string {
  return findNativeBinary('lxr-shim', 'LXR_SHIM') ?? 'lxr-shim';
}

/** The long-lived `lxr-shim server`: tagged reports demultiplexed per request. */
class ShimServer {
  private readonly proc: ChildProcess;
  private readonly queues = new Map<string, ReportQueue>();
  private seq = 0;
  /** Requests and containers still to report: the pipes keep the process alive only meanwhile. */
  private live = 0;
  dead = false;

  constructor(shimPath: string) {
    this.proc = spawn(shimPath, ['server'], { stdio: ['pipe', 'ignore', 'ignore', 'pipe'] });
    const reports = this.proc.stdio[3] as Readable;
    readLines(
      reports,
      (line) => {
        const sp = line.indexOf(' ');
        this.queues.get(line.slice(0, sp))?.push(parseReport(line.slice(sp + 1)));
      },
      () => this.die(),
    );
    this.proc.on('error', () => this.die());
    this.proc.on('exit', () => this.die());
    // A write to a server that just died must fail its request, not the agent.
    this.proc.stdin?.on('error', () => this.die());
    this.setRef(false);
  }

  private die(): void {
    this.dead = true;
    for (const q of this.queues.values()) q.end();
    this.queues.clear();
  }

  private setRef(on: boolean): void {
    const handles = [this.proc, this.proc.stdin, this.proc.stdio[3]] as Array<{ ref?: () => void; unref?: () => void } | null>;
    for (const h of handles) (on ? h?.ref : h?.unref)?.call(h);
  }

  private hold(delta: number): void {
    this.live += delta;
    this.setRef(this.live > 0);
  }

  async create(planFile: string, gate?: Promise<boolean>): Promise<{ first: ShimReport | null; rest: ReportQueue; release: () => void }> {
    const tag = `r${++this.seq}`;
    const q = new ReportQueue();
    this.queues.set(tag, q);
    this.hold(1);
    let held = true;
    const release = () => {
      if (held) {
        held = false;
        this.queues.delete(tag);
        this.hold(-1);
      }
    };
    this.proc.stdin!.write(`create ${tag} ${planFile}\n`);
    if (gate) void gate.then((ok) => !this.dead && this.proc.stdin!.write(`${ok ? 'go' : 'abort'} ${tag}\n`));
    const first = await q.next();
    if (!first || first.type !== 'created') release();
    return { first, rest: q, release };
  }

  close(): void {
    this.proc.stdin?.end();
  }
}

export class LinuxShimLauncher implements ShimLauncher {
  private server: ShimServer | null = null;

  constructor(private readonly shimPath: string = defaultShimPath()) {}

  async create(planFile: string, stdio: ShimStdio, hints: CreateHints = {}): Promise<ShimProcess> {
    const viaServer = serverCanCreate(stdio, hints);
    if (hints.gate && !viaServer) throw new LxrError('LXR_INTERNAL', 'a gated plan goes through the helper server only');
    if (!viaServer) return this.run('create', planFile, stdio, hints);
    if (!this.server || this.server.dead) this.server = new ShimServer(this.shimPath);
    const { first, rest, release } = await this.server.create(planFile, hints.gate);
    if (!first || first.type === 'error') {
      throw reportToError(first ?? { type: 'error', message: 'the helper server exited without a report' }, 'create');
    }
    const { started, exited } = laterReports(rest, hints);
    return { first, ...(started ? { started } : {}), exited: exited.finally(release), detach: release };
  }

  exec(planFile: string, stdio: ShimStdio): Promise<ShimProcess> {
    return this.run('exec', planFile, stdio);
  }

  execAttached(planFile: string, o: AttachedExecOptions): Promise<AttachedExec> {
    return o.tty ? execWithTerminal(this.shimPath, planFile, o) : execWithPipes(this.shimPath, planFile);
  }

  async startExecServer(planFile: string, socket: string): Promise<number> {
    // Detached: it belongs to the container, not to this agent.
    const child = spawn(this.shimPath, ['exec-server', planFile, socket], { stdio: ['ignore', 'ignore', 'ignore', 'pipe'], detached: true });
    const spawnError = new Promise<ShimReport>((resolve) => child.once('error', (e) => resolve({ type: 'error', step: 'start helper', message: `${this.shimPath}: ${e.message}` })));
    const reader = new ReportReader(child.stdio[3] as Readable);
    const first = await Promise.race([reader.next(), spawnError]);
    reader.close();
    child.unref();
    if (!first || first.type !== 'created') throw reportToError(first ?? { type: 'error', message: 'the exec server exited without a report' }, 'exec server');
    return first.pid!;
  }

  execViaServer(socket: string, plan: Buffer): Promise<AttachedExec> {
    return execViaServer(socket, plan);
  }

  /** Stops the helper server (running containers are unaffected). */
  close(): void {
    this.server?.close();
    this.server = null;
  }

  private async run(mode: 'create' | 'exec', planFile: string, stdio: ShimStdio, hints: CreateHints = {}): Promise<ShimProcess> {
    const child = spawn(this.shimPath, [mode, planFile], { stdio: [...stdio, 'pipe'] as StdioOptions });
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    const reader = new ReportReader(child.stdio[3] as Readable);
    const first = await Promise.race([
      reader.next(),
      spawnError.then((e) => ({ type: 'error', step: 'start helper', message: `${this.shimPath}: ${e.message}` }) as ShimReport),
    ]);
    if (!first || first.type === 'error') {
      reader.close();
      throw reportToError(first ?? { type: 'error', message: 'the helper exited without a report' }, mode);
    }
    let exitCode: number | null = null;
    const childExit = new Promise<void>((resolve) => child.once('exit', (code) => { exitCode = code; resolve(); }));
    const later = laterReports(reader, hints);
    const exited = (async () => {
      const r = await later.exited;
      if (r) return r;
      if (mode === 'exec') {
        // The exec helper's own exit status is the process's.
        await childExit;
        return exitCode === null ? null : ({ type: 'exited', exitCode } as ShimReport);
      }
      return null;
    })();
    child.unref();
    return {
      first,
      ...(later.started ? { started: later.started } : {}),
      exited,
      detach: () => reader.close(),
    };
  }
}

/** The reports after `created`: the start's (a plan that starts itself), then the exit. */
function laterReports(q: ReportQueue, hints: CreateHints): { started: Promise<ShimReport | null> | null; exited: Promise<ShimReport | null> } {
  if (!hints.startsItself) return { started: null, exited: q.next() };
  const started = q.next();
  return { started, exited: started.then(() => q.next()) };
}

/** Records what the runtime asked for; answers with scripted reports. */
export class FakeShimLauncher implements ShimLauncher {
  readonly calls: Array<{ mode: 'create' | 'exec'; planFile: string; stdio: ShimStdio; hints?: CreateHints }> = [];
  /** Attached execs handed out, for the test to drive as the process. */
  readonly attached: ScriptedExec[] = [];
  /** Past the largest pid_max (2^22): a signal for it can never reach a real process. */
  nextPid = 4_194_304 + 4242;
  failWith: ShimReport | null = null;

  /** With a plan that starts itself: the start's report (default: started). */
  startWith: ShimReport | null = null;

  private async answer(mode: 'create' | 'exec', planFile: string, stdio: ShimStdio, hints: CreateHints = {}): Promise<ShimProcess> {
    this.calls.push({ mode, planFile, stdio, ...(mode === 'create' ? { hints } : {}) });
    // As the helper: a failure before the gate (a plan it cannot read), then called off at a gate that opens false.
    if (this.failWith) throw reportToError(this.failWith, mode);
    if (hints.gate && !(await hints.gate)) throw reportToError({ type: 'error', step: 'gate', errno: 'ECANCELED', message: 'the create was called off before its cgroups were made' }, mode);
    const pid = this.nextPid++;
    return {
      first: { type: mode === 'create' ? 'created' : 'started', pid, monitor: pid - 1 },
      ...(hints.startsItself ? { started: Promise.resolve(this.startWith ?? { type: 'started', pid }) } : {}),
      exited: new Promise<ShimReport | null>(() => {}),
      detach: () => {},
    };
  }

  create(planFile: string, stdio: ShimStdio, hints?: CreateHints) {
    return this.answer('create', planFile, stdio, hints);
  }

  exec(planFile: string, stdio: ShimStdio) {
    return this.answer('exec', planFile, stdio);
  }

  /** Exec servers started: [planFile, socket]. */
  readonly servers: Array<[string, string]> = [];

  startExecServer(planFile: string, socket: string): Promise<number> {
    this.servers.push([planFile, socket]);
    return this.failWith ? Promise.reject(reportToError(this.failWith, 'exec server')) : Promise.resolve(this.nextPid++);
  }

  execViaServer(_socket: string, _plan: Buffer): Promise<AttachedExec> {
    if (this.failWith) return Promise.reject(reportToError(this.failWith, 'exec'));
    const x = scriptedExec(this.nextPid++, false);
    this.attached.push(x);
    return Promise.resolve(x);
  }

  execAttached(planFile: string, o: AttachedExecOptions): Promise<AttachedExec> {
    this.calls.push({ mode: 'exec', planFile, stdio: ['ignore', 'ignore', 'ignore'] });
    if (this.failWith) return Promise.reject(reportToError(this.failWith, 'exec'));
    const x = scriptedExec(this.nextPid++, o.tty);
    this.attached.push(x);
    return Promise.resolve(x);
  }
}
