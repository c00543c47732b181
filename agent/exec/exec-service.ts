// Exec sessions of one agent: start a process in a running container,
// attach to a session by id, list them; end sessions nobody attached to
// for their idle timeout, and forget ended ones after a retention time.
// A plain class: no grpc here (api/exec-adapter.ts is the boundary).
//
// Decisions:
// - Sessions live in the agent's memory: they survive their clients, not
//   an agent restart (the process's stdio are the agent's pipes).
// - Idle means "no client attached": a session nobody has been attached to
//   for its idle timeout (per session, else the agent's default) is ended
//   like a dropped ssh connection: SIGHUP, then SIGKILL after a grace.
//   Input counts as activity for lastActivity (what autostop will read).
// - A command that is not found or not executable is still a session: its
//   message on stderr and exit code 127 / 126, as docker exec gives.
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../proto/shared/log.js';
import { invalidArgument, LxrError, notFound } from '../../proto/shared/errors.js';
import type { AttachedExec } from '../runtime/exec-io.js';
import { ExecSession, type SessionInfo } from './exec-session.js';

export interface ExecStartRequest {
  container: string;
  args: string[];
  env: string[];
  cwd: string;
  user: string;
  tty: boolean;
  rows: number;
  cols: number;
  /** 0 = the service's default. */
  idleTimeoutSeconds: number;
}

/** What the service needs from containers: run a process in one. */
export interface ExecTarget {
  exec(name: string, req: ExecStartRequest): Promise<AttachedExec>;
}

export interface ExecServiceOptions {
  target: ExecTarget;
  /** Output kept per session (default 1 MiB). */
  ringBytes?: number;
  /** Default idle timeout (default 1 hour). */
  idleTimeoutMs?: number;
  /** How long an ended session stays attachable (default 10 minutes). */
  retentionMs?: number;
  /** Grace between SIGHUP and SIGKILL when a session is ended (default 10 s). */
  killGraceMs?: number;
  maxSessions?: number;
  log?: Logger;
}

const SIGHUP = 1;
const SIGKILL = 9;

export class ExecService {
  private readonly sessions = new Map<string, ExecSession>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private readonly ringBytes: number;
  private readonly idleTimeoutMs: number;
  private readonly retentionMs: number;
  private readonly killGraceMs: number;
  private readonly maxSessions: number;

  constructor(private readonly o: ExecServiceOptions) {
    this.ringBytes = o.ringBytes ?? 1 << 20;
    this.idleTimeoutMs = o.idleTimeoutMs ?? 3600_000;
    this.retentionMs = o.retentionMs ?? 600_000;
    this.killGraceMs = o.killGraceMs ?? 10_000;
    this.maxSessions = o.maxSessions ?? 1024;
  }

  async start(req: ExecStartRequest): Promise<ExecSession> {
    if (!Array.isArray(req.args) || req.args.length === 0 || req.args[0] === '') throw invalidArgument('start.args', 'a command is required');
    if (!Number.isInteger(req.idleTimeoutSeconds) || req.idleTimeoutSeconds < 0) throw invalidArgument('start.idle_timeout_seconds', 'must be a non-negative whole number');
    if (this.sessions.size >= this.maxSessions) throw new LxrError('LXR_RESOURCE_EXHAUSTED', `this agent already holds ${this.sessions.size} exec sessions; end some first`);
    const id = randomBytes(12).toString('hex');
    const session = new ExecSession({ id, container: req.container, args: req.args, tty: req.tty, ringBytes: this.ringBytes });
    try {
      session.run(await this.o.target.exec(req.container, req));
    } catch (e) {
      if (!(e instanceof LxrError && (e.reason === 'LXR_EXEC_NOT_FOUND' || e.reason === 'LXR_EXEC_NOT_EXECUTABLE'))) throw e;
      session.failStart(`lxr: ${e.message}`, { exitCode: e.reason === 'LXR_EXEC_NOT_FOUND' ? 127 : 126, signal: 0 });
    }
    this.sessions.set(id, session);
    const idleMs = req.idleTimeoutSeconds > 0 ? req.idleTimeoutSeconds * 1000 : this.idleTimeoutMs;
    const review = (): void => this.review(session, idleMs);
    session.on('attached', review);
    session.on('detached', review);
    session.on('exit', review);
    review();
    this.o.log?.debug({ session: id, container: req.container, tty: req.tty }, 'exec session started');
    return session;
  }

  /** (Re)arms the one timer a session has: idle end while running, forgetting once ended. */
  private review(s: ExecSession, idleMs: number): void {
    clearTimeout(this.timers.get(s.id));
    this.timers.delete(s.id);
    if (s.clients > 0) return;
    if (s.running) {
      this.timers.set(s.id, setTimeout(() => this.endIdle(s), idleMs).unref());
    } else {
      this.timers.set(s.id, setTimeout(() => this.forget(s), this.retentionMs).unref());
    }
  }

  private endIdle(s: ExecSession): void {
    if (!s.running || s.clients > 0) return;
    this.o.log?.info({ session: s.id, container: s.o.container }, 'exec session idle: ending it');
    s.signal(SIGHUP);
    // A client that came back meanwhile keeps what is left of the session.
    setTimeout(() => s.clients === 0 && s.signal(SIGKILL), this.killGraceMs).unref();
  }

  private forget(s: ExecSession): void {
    if (s.clients > 0 || s.running) return;
    this.sessions.delete(s.id);
    this.timers.delete(s.id);
  }

  get(id: string): ExecSession {
    if (typeof id !== 'string' || id === '') throw invalidArgument('attach.session_id', 'a session id is required');
    const s = this.sessions.get(id);
    if (!s) throw notFound('exec session', id);
    return s;
  }

  list(container = ''): SessionInfo[] {
    return [...this.sessions.values()].filter((s) => container === '' || s.o.container === container).map((s) => s.info());
  }

  /** Stops the timers (the agent is shutting down; sessions end with it). */
  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
