// lxr.agent.v1.Exec over ExecService: the bidirectional stream of one
// client of an exec session. The first request starts a session (Exec) or
// names one (Attach); the stream then carries input up and the session's
// output down, and ends with the exit status. A client that goes away only
// detaches: the session keeps running.
import type * as grpc from '@grpc/grpc-js';
import type * as T from '../../proto/shared/api-types.js';
import { invalidArgument } from '../../proto/shared/errors.js';
import { releaseFrame, type ExecResponseOut } from '../../proto/shared/exec-wire.js';
import { toStatus } from '../../proto/shared/grpc-errors.js';
import { parseSignal } from '../containers/container-service.js';
import type { ClientMessage, ExecSession, SessionInfo } from '../exec/exec-session.js';
import type { ExecService } from '../exec/exec-service.js';
import { logFailure, unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';

type Call = grpc.ServerDuplexStream<T.ExecRequest, ExecResponseOut>;

const toResponse = (m: ClientMessage): ExecResponseOut => {
  if (m.kind === 'output') return { output: { stream: m.stream, data: m.pieces, offset: m.offset } };
  if (m.kind === 'gap') return { gapUntil: m.until };
  return { exit: { code: m.status.exitCode, signal: m.status.signal } };
};

export const toSession = (s: SessionInfo): T.Session => ({
  id: s.id,
  container: s.container,
  args: s.args,
  tty: s.tty,
  state: s.state,
  attachedClients: s.attachedClients,
  startedAt: s.startedAt,
  lastActivity: s.lastActivity,
  exit: s.exit ? { code: s.exit.exitCode, signal: s.exit.signal } : null,
});

const which = (req: T.ExecRequest): string | undefined => req.msg ?? (['start', 'attach', 'stdin', 'resize', 'signal', 'closeStdin'] as const).find((k) => req[k] !== undefined);

function stream(ctx: AdapterContext, svc: ExecService, rpc: string, opening: 'start' | 'attach') {
  return (call: Call): void => {
    let session: ExecSession | null = null;
    let detach: ((gone?: boolean) => void) | null = null;
    let first = true;
    let failed = false;
    const fail = (e: unknown): void => {
      if (failed) return;
      failed = true;
      detach?.();
      logFailure(ctx.log, rpc, e, session?.o.container);
      call.emit('error', toStatus(e));
    };
    // The stream is closed: no message in flight will be written any more.
    const gone = (): void => detach?.(true);
    call.on('cancelled', gone);
    call.on('close', gone);
    // grpc-js ends the stream gracefully on 'error' (our own fail() below):
    // messages queued before it are still written, and keep their data.
    call.on('error', () => detach?.(call.destroyed));
    const onShutdown = (): void => {
      detach?.();
      call.end();
    };
    ctx.shutdown?.addEventListener('abort', onShutdown, { once: true });
    call.on('close', () => ctx.shutdown?.removeEventListener('abort', onShutdown));

    const open = async (req: T.ExecRequest): Promise<void> => {
      const kind = which(req);
      if (kind !== opening) throw invalidArgument(opening, `the first message must be ${opening}, not ${kind ?? 'empty'}`);
      let offset = 0;
      if (opening === 'start') {
        const s = req.start ?? {};
        if (!s.container) throw invalidArgument('start.container', 'a container is required');
        session = await svc.start({
          container: s.container,
          args: s.args ?? [],
          env: s.env ?? [],
          cwd: s.cwd ?? '',
          user: s.user ?? '',
          tty: s.tty ?? false,
          rows: s.rows ?? 0,
          cols: s.cols ?? 0,
          idleTimeoutSeconds: s.idleTimeoutSeconds ?? 0,
        });
      } else {
        session = svc.get(req.attach?.sessionId ?? '');
        offset = Number(req.attach?.offset ?? 0);
      }
      if (call.cancelled) return;
      call.write({ sessionId: session.id });
      detach = session.attach(
        {
          send: (m, done) => {
            if (call.cancelled || call.destroyed) return done();
            const res = toResponse(m);
            // Written: its frame (exec-wire.ts) may be reused.
            call.write(res, () => {
              releaseFrame(res);
              done();
            });
          },
          end: () => call.end(),
        },
        offset,
      );
    };

    call.on('data', (req: T.ExecRequest) => {
      if (failed) return;
      if (first) {
        first = false;
        call.pause();
        open(req).then(() => call.resume(), fail);
        return;
      }
      const s = session;
      if (!s) return;
      try {
        switch (which(req)) {
          case 'stdin':
            if (req.stdin && req.stdin.length > 0) {
              // One write at a time: the stream is read again once stdin took it.
              call.pause();
              void s.write(req.stdin).then(() => call.resume());
            }
            break;
          case 'resize':
            s.resize(req.resize?.rows ?? 0, req.resize?.cols ?? 0);
            break;
          case 'signal':
            s.signal(parseSignal(req.signal ?? ''));
            break;
          case 'closeStdin':
            if (req.closeStdin) s.closeStdin();
            break;
          default:
            throw invalidArgument(which(req) ?? 'msg', `${which(req) ?? 'an empty message'} is only allowed as the first message`);
        }
      } catch (e) {
        fail(e);
      }
    });
  };
}

export function execHandlers(ctx: AdapterContext, svc: ExecService): grpc.UntypedServiceImplementation {
  return {
    Exec: stream(ctx, svc, 'Exec.Exec', 'start'),
    Attach: stream(ctx, svc, 'Exec.Attach', 'attach'),
    ListSessions: unary<T.ListSessionsRequest, T.ListSessionsResponse>(ctx, 'Exec.ListSessions', async (req) => ({ sessions: svc.list(req.container ?? '').map(toSession) })),
  };
}
