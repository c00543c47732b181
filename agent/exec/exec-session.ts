// One exec session: a process in a container and everything a client needs
// to come and go. Its output goes into a bounded ring (output-ring.ts) that
// clients read from their own offsets; several clients can be attached at
// once, and the process keeps running while none is.
//
// Backpressure, both ways:
// - Output: a client is sent at most MAX_IN_FLIGHT messages ahead of what
//   its transport accepted. While a client is attached, the ring never drops
//   what its transport has not taken yet (a message's data are views of the
//   ring's chunks, whose memory may be reused once dropped: see
//   runtime/recycled-reads.ts; a client that detaches with messages in
//   flight holds them until they are written or its stream is gone): when
//   the ring is full the session stops
//   reading the process's output, so the process blocks on its writes
//   instead of the agent buffering without bound. With no client attached,
//   the oldest output is dropped instead (the process keeps running, like a
//   detached tmux); a client that re-attaches from a dropped offset is told
//   the gap.
// - Input: write() resolves when the process's stdin took the bytes; the
//   adapter stops reading its stream meanwhile.
import { EventEmitter } from 'node:events';
import type { AttachedExec, ExecExitStatus } from '../runtime/exec-io.js';
import { chunkTaker } from '../runtime/recycled-reads.js';
import { OutputRing, type OutputStream } from './output-ring.js';

/** Largest output message sent to a client (and at most a quarter of the ring, so reading goes on while messages are written). */
export const MAX_MESSAGE_BYTES = 1 << 20;
const MIN_MESSAGE_BYTES = 64 * 1024;
const MAX_IN_FLIGHT = 2;
/** After the process exited, how long output may go quiet before the session ends (pipes a child left open). */
const EXIT_DRAIN_MS = 1000;

export type ClientMessage =
  | { kind: 'output'; stream: OutputStream; pieces: Buffer[]; length: number; offset: number }
  | { kind: 'gap'; until: number }
  | { kind: 'exit'; status: ExecExitStatus };

/** Where a session sends one client's messages (a gRPC stream, or a test). */
export interface SessionClient {
  /** Sends; `done` is called once the transport accepted it. */
  send(msg: ClientMessage, done: () => void): void;
  /** The session is over for this client: end its stream. */
  end(): void;
}

export interface SessionInfo {
  id: string;
  container: string;
  args: string[];
  tty: boolean;
  state: 'running' | 'exited';
  attachedClients: number;
  startedAt: string;
  lastActivity: string;
  exit: ExecExitStatus | null;
  /** Output offsets the session still holds: [start, end). */
  outputStart: number;
  outputEnd: number;
}

interface Attachment {
  client: SessionClient;
  cursor: number;
  /** Where each message in flight starts, oldest first (as many as are in flight): the ring keeps them until sent. */
  pinned: number[];
  done: boolean;
}

export interface ExecSessionOptions {
  id: string;
  container: string;
  args: string[];
  tty: boolean;
  ringBytes: number;
}

export class ExecSession extends EventEmitter {
  readonly ring: OutputRing;
  readonly startedAt = new Date();
  lastActivity = new Date();
  exit: ExecExitStatus | null = null;
  private readonly attached = new Set<Attachment>();
  /** Detached with messages in flight that may still be written: their data stay. */
  private readonly leaving = new Set<Attachment>();
  private readonly messageBytes: number;
  private io: AttachedExec | null = null;
  private paused = false;
  private openStreams = 0;
  private processExit: ExecExitStatus | null = null;
  private drainTimer: NodeJS.Timeout | null = null;

  constructor(readonly o: ExecSessionOptions) {
    super();
    this.ring = new OutputRing(o.ringBytes);
    this.messageBytes = Math.min(MAX_MESSAGE_BYTES, Math.max(MIN_MESSAGE_BYTES, Math.floor(o.ringBytes / 4)));
  }

  get id(): string {
    return this.o.id;
  }

  get running(): boolean {
    return this.exit === null;
  }

  get clients(): number {
    return this.attached.size;
  }

  info(): SessionInfo {
    return {
      id: this.o.id,
      container: this.o.container,
      args: [...this.o.args],
      tty: this.o.tty,
      state: this.exit ? 'exited' : 'running',
      attachedClients: this.attached.size,
      startedAt: this.startedAt.toISOString(),
      lastActivity: this.lastActivity.toISOString(),
      exit: this.exit,
      outputStart: this.ring.start,
      outputEnd: this.ring.end,
    };
  }

  /** Wires the running process in. */
  run(io: AttachedExec): void {
    this.io = io;
    for (const [stream, r] of [['stdout', io.stdout], ['stderr', io.stderr]] as const) {
      if (!r) continue;
      this.openStreams++;
      const take = chunkTaker(r);
      if (take) take((d, release) => this.onOutput(stream, d, release));
      else r.on('data', (d: Buffer) => this.onOutput(stream, d));
      let closed = false;
      const close = (): void => {
        if (closed) return;
        closed = true;
        this.openStreams--;
        this.maybeFinish();
      };
      r.on('end', close);
      r.on('close', close);
      r.on('error', close);
    }
    io.exited.then((st) => {
      this.processExit = st;
      this.maybeFinish();
    });
  }

  /** A process that never started (not found, not executable): its message and status. */
  failStart(message: string, status: ExecExitStatus): void {
    this.ring.append('stderr', Buffer.from(message.endsWith('\n') ? message : message + '\n'));
    this.processExit = status;
    this.finish();
  }

  private onOutput(stream: OutputStream, d: Buffer, release?: () => void): void {
    this.ring.append(stream, d, release);
    if (this.drainTimer) this.drainTimer.refresh();
    this.flowControl();
    for (const a of this.attached) this.pump(a);
  }

  /** Evicts what every attached client's transport took; pauses the process's output when that is not enough. */
  private flowControl(): void {
    let limit = Infinity;
    for (const a of this.attached) limit = Math.min(limit, a.pinned[0] ?? a.cursor);
    for (const a of this.leaving) limit = Math.min(limit, a.pinned[0] ?? a.cursor);
    const fits = this.ring.evict(limit);
    if (!fits && !this.paused) this.setPaused(true);
    else if (fits && this.paused) this.setPaused(false);
  }

  private setPaused(on: boolean): void {
    this.paused = on;
    for (const r of [this.io?.stdout, this.io?.stderr]) {
      if (!r) continue;
      if (on) r.pause();
      else r.resume();
    }
    if (this.drainTimer && !on) this.drainTimer.refresh();
  }

  private maybeFinish(): void {
    if (this.exit || !this.processExit) return;
    if (this.openStreams === 0) return this.finish();
    // Exited, but something it left behind holds its stdout/stderr open:
    // end once that output goes quiet (not while we hold it back ourselves).
    this.drainTimer ??= setTimeout(() => {
      this.drainTimer = null;
      if (this.paused) return void (this.drainTimer = setTimeout(() => { this.drainTimer = null; this.maybeFinish(); }, EXIT_DRAIN_MS));
      this.io?.stdout.destroy();
      this.io?.stderr?.destroy();
      this.finish();
    }, EXIT_DRAIN_MS);
  }

  private finish(): void {
    if (this.exit) return;
    if (this.drainTimer) clearTimeout(this.drainTimer);
    this.drainTimer = null;
    this.exit = this.processExit!;
    this.lastActivity = new Date();
    for (const a of this.attached) this.pump(a);
    this.emit('exit', this.exit);
  }

  /**
   * Attaches a client that wants output from `offset` on. The returned
   * detach keeps the data of messages in flight until their `done`, unless
   * `gone` says that none of them will be written any more (the stream is
   * closed); a later call with `gone` lets them go.
   */
  attach(client: SessionClient, offset: number): (gone?: boolean) => void {
    const a: Attachment = { client, cursor: Math.max(0, Math.min(offset, this.ring.end)), pinned: [], done: false };
    this.attached.add(a);
    this.lastActivity = new Date();
    this.emit('attached', this.attached.size);
    this.pump(a);
    return (gone = false) => this.detach(a, gone);
  }

  private detach(a: Attachment, gone: boolean): void {
    const was = this.attached.delete(a);
    a.done = true;
    if (gone || a.pinned.length === 0) this.leaving.delete(a);
    else this.leaving.add(a);
    this.flowControl();
    if (was) this.emit('detached', this.attached.size);
  }

  /** Sends `a` what it has not had yet, at most MAX_IN_FLIGHT messages ahead of its transport. */
  private pump(a: Attachment): void {
    while (!a.done && a.pinned.length < MAX_IN_FLIGHT) {
      const piece = this.ring.read(a.cursor, this.messageBytes);
      if (!piece) {
        if (this.exit && a.pinned.length === 0) {
          a.done = true;
          a.client.send({ kind: 'exit', status: this.exit }, () => {});
          a.client.end();
          this.detach(a, false);
        }
        return;
      }
      let msg: ClientMessage;
      if (piece.kind === 'gap') {
        msg = { kind: 'gap', until: piece.until };
        a.cursor = piece.until;
      } else {
        msg = { kind: 'output', stream: piece.stream, pieces: piece.pieces, length: piece.length, offset: piece.offset };
        a.cursor = piece.offset + piece.length;
      }
      a.pinned.push(msg.kind === 'output' ? msg.offset : a.cursor);
      a.client.send(msg, () => {
        a.pinned.shift();
        if (a.done && a.pinned.length === 0) this.leaving.delete(a);
        if (this.paused || a.done) this.flowControl();
        this.pump(a);
      });
    }
  }

  /** Input for the process; resolves once its stdin took it. */
  write(data: Buffer): Promise<void> {
    this.lastActivity = new Date();
    const io = this.io;
    if (!io || this.exit || data.length === 0 || io.stdin.destroyed || io.stdin.writableEnded) return Promise.resolve();
    return new Promise((resolve) => {
      if (io.stdin.write(data)) resolve();
      else {
        const done = (): void => {
          io.stdin.off('drain', done);
          io.stdin.off('close', done);
          resolve();
        };
        io.stdin.on('drain', done);
        io.stdin.on('close', done);
      }
    });
  }

  closeStdin(): void {
    this.lastActivity = new Date();
    if (this.io && !this.exit) this.io.closeStdin();
  }

  resize(rows: number, cols: number): void {
    this.lastActivity = new Date();
    if (this.io && !this.exit) this.io.resize(rows, cols);
  }

  signal(n: number): void {
    this.lastActivity = new Date();
    if (this.io && !this.exit) this.io.signal(n);
  }
}
