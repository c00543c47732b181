// One client of an agent exec session, for tests and benchmarks: opens the
// bidirectional stream (Exec or Attach), collects stdout, stderr, gaps and
// the exit, checks that output offsets are contiguous, and lets the test
// wait for output it expects.
import { readFileSync } from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { ExecClient } from '../../proto/shared/api.js';
import type { ExecExit, ExecRequest, ExecResponse, ExecStart } from '../../proto/shared/api-types.js';

export interface ExecResult {
  sessionId: string;
  stdout: Buffer;
  stderr: Buffer;
  exit: ExecExit | null;
  gaps: number[];
  /** Offset of the first byte received and the offset after the last. */
  firstOffset: number;
  endOffset: number;
}

export class ExecStream {
  readonly call: grpc.ClientDuplexStream<ExecRequest, ExecResponse>;
  readonly session: Promise<string>;
  readonly done: Promise<ExecResult>;
  private out: Buffer[] = [];
  private err: Buffer[] = [];
  private waiters: Array<() => void> = [];
  private result: ExecResult = { sessionId: '', stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), exit: null, gaps: [], firstOffset: -1, endOffset: -1 };
  /** Called with each output chunk instead of keeping it (big transfers). */
  onOutput: ((stream: string, data: Buffer) => void) | null = null;

  constructor(client: ExecClient, first: ExecRequest, rpc: 'Exec' | 'Attach' = 'Exec') {
    this.call = rpc === 'Exec' ? client.Exec() : client.Attach();
    let gotSession!: (id: string) => void;
    let noSession!: (e: Error) => void;
    this.session = new Promise((resolve, reject) => {
      gotSession = resolve;
      noSession = reject;
    });
    this.session.catch(() => {});
    this.done = new Promise((resolve, reject) => {
      this.call.on('data', (m: ExecResponse) => {
        if (m.msg === 'sessionId') {
          this.result.sessionId = m.sessionId!;
          gotSession(m.sessionId!);
        } else if (m.msg === 'output') {
          const o = m.output!;
          if (this.result.firstOffset < 0) this.result.firstOffset = o.offset;
          else if (o.offset !== this.result.endOffset) reject(new Error(`output offset ${o.offset} after ${this.result.endOffset}: not contiguous`));
          this.result.endOffset = o.offset + o.data.length;
          if (this.onOutput) this.onOutput(o.stream, o.data);
          else (o.stream === 'stderr' ? this.err : this.out).push(Buffer.from(o.data));
        } else if (m.msg === 'gapUntil') {
          this.result.gaps.push(m.gapUntil!);
          this.result.endOffset = m.gapUntil!;
        } else if (m.msg === 'exit') {
          this.result.exit = m.exit!;
        }
        for (const w of this.waiters.splice(0)) w();
      });
      this.call.on('error', (e) => {
        noSession(e);
        reject(e);
      });
      this.call.on('end', () => {
        this.result.stdout = Buffer.concat(this.out);
        this.result.stderr = Buffer.concat(this.err);
        resolve(this.result);
      });
    });
    this.done.catch(() => {});
    this.call.write(first);
  }

  static start(client: ExecClient, start: ExecStart): ExecStream {
    return new ExecStream(client, { start });
  }

  static attach(client: ExecClient, sessionId: string, offset = 0): ExecStream {
    return new ExecStream(client, { attach: { sessionId, offset } }, 'Attach');
  }

  stdoutText(): string {
    return Buffer.concat(this.out).toString();
  }

  /** Resolves once `pred` holds for the stdout received so far. */
  async waitStdout(pred: (s: string) => boolean, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms;
    while (!pred(this.stdoutText())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for output; have ${JSON.stringify(this.stdoutText())}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.stdoutText();
  }

  send(req: ExecRequest): void {
    this.call.write(req);
  }

  input(s: string | Buffer): void {
    this.call.write({ stdin: Buffer.from(s) });
  }

  /** Goes away without ending the session. */
  detach(): void {
    this.call.cancel();
  }
}

/** A process's resident memory, from /proc. */
export const rssBytes = (pid: number): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;

/**
 * Stops reading the stream and measures how much the process `pid` (the
 * server relaying it) grows while nobody reads: 1 s to settle, then 2 s.
 */
export async function growthWhilePaused(s: ExecStream, pid: number): Promise<number> {
  s.call.pause();
  await new Promise((r) => setTimeout(r, 1000));
  const before = rssBytes(pid);
  await new Promise((r) => setTimeout(r, 2000));
  return rssBytes(pid) - before;
}
