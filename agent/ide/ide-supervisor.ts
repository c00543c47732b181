// Keeps the IDE of every running IDE workspace up: code-server, started
// inside the workspace (with the workspace's namespaces, cgroup, user and
// restrictions, as an exec is) and restarted when it dies.
//
// Decisions:
// - Up means "answers on the workspace's address at IDE_PORT". The
//   supervisor probes every interval; what does not answer and is not being
//   started is started. This also adopts an IDE left running by an earlier
//   agent (it answers, so nothing is started twice).
// - A process that ends is started again after a backoff that doubles
//   (1 s up to 30 s) while it keeps dying within a minute of its start.
// - Its output (stdout and stderr) is appended to a file of the container's
//   (ide.log in its state dir), bounded: past 1 MiB it starts over.
// - The process is the agent's child, like an exec session's: an agent
//   restart ends it at its next write to the agent's pipe, and the next
//   agent starts it again.
import { createWriteStream, statSync, type WriteStream } from 'node:fs';
import net from 'node:net';
import type { Logger } from '../../proto/shared/log.js';
import { IDE_PORT } from '../../proto/shared/ide.js';
import type { AttachedExec } from '../runtime/exec-io.js';

export interface IdeContainer {
  name: string;
  address: string;
  running: boolean;
}

/** What the supervisor needs from the containers. */
export interface IdeHost {
  /** The containers that have an IDE. */
  ideContainers(): Promise<IdeContainer[]>;
  /** Starts the IDE in a running container. */
  launch(name: string): Promise<AttachedExec>;
  /** Where its output goes. */
  logPath(name: string): string;
}

export type Probe = (address: string, port: number) => Promise<boolean>;

export interface IdeSupervisorOptions {
  host: IdeHost;
  probe?: Probe;
  intervalMs?: number;
  minBackoffMs?: number;
  maxBackoffMs?: number;
  log?: Logger;
  now?: () => number;
}

interface Supervised {
  child: AttachedExec | null;
  starting: boolean;
  startedAt: number;
  failures: number;
  notBefore: number;
  status: string;
  out: WriteStream | null;
}

const STABLE_MS = 60_000;
const LOG_LIMIT = 1 << 20;

export const tcpProbe: Probe = (address, port) =>
  new Promise((resolve) => {
    const s = net.connect({ host: address, port, timeout: 1000 });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('timeout', () => done(false));
    s.once('error', () => done(false));
  });

export class IdeSupervisor {
  private readonly supervised = new Map<string, Supervised>();
  private timer: NodeJS.Timeout | null = null;
  private ticking: Promise<void> | null = null;
  private readonly probe: Probe;
  private readonly now: () => number;

  constructor(private readonly o: IdeSupervisorOptions) {
    this.probe = o.probe ?? tcpProbe;
    this.now = o.now ?? Date.now;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.tick(), this.o.intervalMs ?? 2000);
    this.timer.unref();
    void this.tick();
  }

  /** "starting", "running", "restarting in Ns (...)", or "" for a container without a supervised IDE. */
  status(name: string): string {
    return this.supervised.get(name)?.status ?? '';
  }

  /** One pass: every running IDE container answers, is being started, or is started now. */
  tick(): Promise<void> {
    this.ticking ??= this.pass().finally(() => {
      this.ticking = null;
    });
    return this.ticking;
  }

  private async pass(): Promise<void> {
    let list: IdeContainer[];
    try {
      list = await this.o.host.ideContainers();
    } catch (e) {
      this.o.log?.warn({ err: (e as Error).message }, 'ide: could not list containers');
      return;
    }
    const running = new Set(list.filter((c) => c.running).map((c) => c.name));
    for (const [name, s] of this.supervised) {
      if (!running.has(name) && !s.child && !s.starting) this.supervised.delete(name);
    }
    await Promise.all(list.filter((c) => c.running).map((c) => this.ensure(c)));
  }

  private async ensure(c: IdeContainer): Promise<void> {
    let s = this.supervised.get(c.name);
    if (!s) {
      s = { child: null, starting: false, startedAt: 0, failures: 0, notBefore: 0, status: 'starting', out: null };
      this.supervised.set(c.name, s);
    }
    if (s.starting) return;
    if (await this.probe(c.address, IDE_PORT)) {
      s.status = 'running';
      return;
    }
    if (s.child || this.now() < s.notBefore) return;
    s.starting = true;
    try {
      const child = await this.o.host.launch(c.name);
      s.child = child;
      s.startedAt = this.now();
      s.status = 'starting';
      s.out = this.output(c.name, s.out);
      child.stdout.pipe(s.out, { end: false });
      child.stderr?.pipe(s.out, { end: false });
      this.o.log?.info({ container: c.name, pid: child.pid }, 'ide: started code-server');
      void child.exited.then((st) => this.exited(c.name, s!, child, st.exitCode));
    } catch (e) {
      this.failed(c.name, s, `could not start: ${(e as Error).message}`);
    } finally {
      s.starting = false;
    }
  }

  private exited(name: string, s: Supervised, child: AttachedExec, code: number): void {
    if (s.child !== child) return;
    s.child = null;
    this.failed(name, s, `exited with ${code}`);
  }

  private failed(name: string, s: Supervised, why: string): void {
    s.failures = s.startedAt && this.now() - s.startedAt >= STABLE_MS ? 1 : s.failures + 1;
    const min = this.o.minBackoffMs ?? 1000;
    const wait = Math.min(this.o.maxBackoffMs ?? 30_000, min * 2 ** (s.failures - 1));
    s.notBefore = this.now() + wait;
    s.status = `restarting in ${Math.ceil(wait / 1000)}s (${why})`;
    this.o.log?.warn({ container: name, failures: s.failures, waitMs: wait }, `ide: code-server ${why}`);
  }

  private output(name: string, current: WriteStream | null): WriteStream {
    const file = this.o.host.logPath(name);
    let size = 0;
    try {
      size = statSync(file).size;
    } catch {
      // a new file
    }
    if (current && size < LOG_LIMIT) return current;
    current?.end();
    return createWriteStream(file, { flags: size < LOG_LIMIT ? 'a' : 'w', mode: 0o600 });
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const s of this.supervised.values()) s.out?.end();
  }
}
