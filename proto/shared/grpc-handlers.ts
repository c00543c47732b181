// The boundary between grpc-js and the plain services: every handler runs
// its service call, and whatever it throws becomes a status here, once
// (proto/shared/grpc-errors.ts), logged with {host, rpc}.
import type * as grpc from '@grpc/grpc-js';
import { toStatus } from './grpc-errors.js';
import type { Logger } from './log.js';

export interface AdapterContext {
  log: Logger;
  /** Called once per finished call: its method, status code and duration (request metrics). */
  observe?: (rpc: string, code: number, seconds: number) => void;
  /** Fires when the server shuts down: open streams end. */
  shutdown?: AbortSignal;
}

export function logFailure(log: Logger, rpc: string, e: unknown, container?: string): void {
  const st = toStatus(e);
  const child = log.child({ rpc, ...(container ? { container } : {}) });
  // INTERNAL means a bug or a host failure; the rest are the caller's doing.
  if (st.code === 13) child.error({ err: e }, 'rpc failed');
  else child.debug({ code: st.code, msg: st.details }, 'rpc refused');
}

const containerOf = (req: unknown): string | undefined => {
  const n = (req as { name?: unknown } | null)?.name;
  return typeof n === 'string' && n !== '' ? n : undefined;
};

export function unary<Req, Res>(ctx: AdapterContext, rpc: string, fn: (req: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>) {
  return (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>): void => {
    const t0 = process.hrtime.bigint();
    const done = (code: number): void => ctx.observe?.(rpc, code, Number(process.hrtime.bigint() - t0) / 1e9);
    fn(call.request, call).then(
      (res) => {
        done(0);
        cb(null, res);
      },
      (e: unknown) => {
        logFailure(ctx.log, rpc, e, containerOf(call.request));
        const st = toStatus(e);
        done(st.code);
        cb(st);
      },
    );
  };
}

/**
 * A server stream: `fn` writes through `send` until done; the AbortSignal
 * fires when the client cancels (or goes away), and the stream then ends
 * without a status of its own.
 */
export function serverStream<Req, Res>(ctx: AdapterContext, rpc: string, fn: (req: Req, send: (msg: Res) => void, signal: AbortSignal) => Promise<void>) {
  return (call: grpc.ServerWritableStream<Req, Res>): void => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    const onShutdown = (): void => {
      if (ac.signal.aborted) return;
      ac.abort();
      call.end();
    };
    if (ctx.shutdown?.aborted) onShutdown();
    ctx.shutdown?.addEventListener('abort', onShutdown, { once: true });
    const send = (msg: Res): void => {
      if (!ac.signal.aborted) call.write(msg);
    };
    const t0 = process.hrtime.bigint();
    const done = (code: number): void => ctx.observe?.(rpc, code, Number(process.hrtime.bigint() - t0) / 1e9);
    fn(call.request, send, ac.signal).finally(() => ctx.shutdown?.removeEventListener('abort', onShutdown)).then(
      () => {
        done(ac.signal.aborted ? 1 : 0);
        if (!ac.signal.aborted) call.end();
      },
      (e: unknown) => {
        if (ac.signal.aborted) return done(1);
        logFailure(ctx.log, rpc, e, containerOf(call.request));
        const st = toStatus(e);
        done(st.code);
        call.emit('error', st);
      },
    );
  };
}

/**
 * A client stream: `fn` reads the requests from an async iterable that
 * asks the call for more only when `fn` is ready (so a slow consumer pauses
 * the client: backpressure), and answers once. The AbortSignal fires when
 * the client cancels; reading then fails, and no status of ours is sent.
 */
export function clientStream<Req, Res>(ctx: AdapterContext, rpc: string, fn: (requests: AsyncIterable<Req>, signal: AbortSignal) => Promise<Res>) {
  return (call: grpc.ServerReadableStream<Req, Res>, cb: grpc.sendUnaryData<Res>): void => {
    const ac = new AbortController();
    call.on('cancelled', () => ac.abort());
    const t0 = process.hrtime.bigint();
    const done = (code: number): void => ctx.observe?.(rpc, code, Number(process.hrtime.bigint() - t0) / 1e9);
    fn(call as AsyncIterable<Req>, ac.signal).then(
      (res) => {
        done(ac.signal.aborted ? 1 : 0);
        if (!ac.signal.aborted) cb(null, res);
      },
      (e: unknown) => {
        if (ac.signal.aborted) return done(1);
        logFailure(ctx.log, rpc, e);
        const st = toStatus(e);
        done(st.code);
        cb(st);
      },
    );
  };
}
