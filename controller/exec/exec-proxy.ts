// Exec, attach and logs of workspaces, proxied from the controller's API to
// the agent of the workspace's host. Nothing is buffered here beyond what
// one write needs: when one side cannot take more, the other side is paused
// until it drains (backpressure both ways), and the exit status, errors and
// trailers of the agent arrive unchanged. Session ids are the controller's:
// "WORKSPACE/AGENT_ID", so an Attach finds the host from the id alone.
import * as grpc from '@grpc/grpc-js';
import type { ExecClient, ContainersClient } from '../../proto/shared/api.js';
import type { ExecRequest, ExecResponse, ListSessionsRequest, ListSessionsResponse, LogsRequest, LogsResponse } from '../../proto/shared/api-types.js';
import { invalidArgument, LxrError } from '../../proto/shared/errors.js';
import { releaseFrame } from '../../proto/shared/exec-wire.js';
import { fromStatus, toStatus } from '../../proto/shared/grpc-errors.js';
import { logFailure, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import { pump } from '../../proto/shared/pump.js';
import { sessionIdOf, splitSessionId } from '../../proto/shared/session-id.js';

/** Where a workspace's streams go: its host's clients; throws when it cannot take them. */
export type Resolve = (workspace: string, op: string) => { host: string; exec: ExecClient; containers: ContainersClient };

export { splitSessionId };

/** An agent's failure as the controller's caller should see it (UNAVAILABLE names the host). */
function agentError(host: string, e: unknown): LxrError {
  const err = fromStatus(e);
  if (err.reason === 'LXR_UNAVAILABLE') return new LxrError('LXR_UNAVAILABLE', `host ${host} does not answer: ${err.message}`, { cause: e });
  return err;
}


/** What a person did in a workspace, for idle detection. */
export type OnActivity = (workspace: string, kind: string) => void;

function bidi(ctx: AdapterContext, resolve: Resolve, kind: 'Exec' | 'Attach', onActivity?: OnActivity) {
  const rpc = `Exec.${kind}`;
  return (call: grpc.ServerDuplexStream<ExecRequest, ExecResponse>): void => {
    const t0 = process.hrtime.bigint();
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      ctx.observe?.(rpc, code, Number(process.hrtime.bigint() - t0) / 1e9);
    };
    const fail = (e: unknown, workspace?: string): void => {
      logFailure(ctx.log, rpc, e, workspace);
      const st = toStatus(e);
      finish(st.code);
      call.emit('error', st);
    };
    call.once('data', (first: ExecRequest) => {
      // Hold the rest until the agent's stream is there.
      call.pause();
      let agent: grpc.ClientDuplexStream<ExecRequest, ExecResponse>;
      let workspace: string;
      let host: string;
      try {
        let msg: ExecRequest;
        if (kind === 'Exec') {
          if (!first.start) throw invalidArgument('start', 'the first message of Exec must be start');
          workspace = first.start.container ?? '';
          if (!workspace) throw invalidArgument('start.container', 'name the workspace to run in');
          msg = first;
        } else {
          if (!first.attach) throw invalidArgument('attach', 'the first message of Attach must be attach');
          const id = splitSessionId(first.attach.sessionId);
          workspace = id.workspace;
          msg = { attach: { sessionId: id.session, offset: first.attach.offset ?? 0 } };
        }
        const target = resolve(workspace, kind === 'Exec' ? 'exec in' : 'attach to');
        host = target.host;
        agent = kind === 'Exec' ? target.exec.Exec() : target.exec.Attach();
        agent.write(msg);
      } catch (e) {
        fail(e);
        return;
      }
      call.on('cancelled', () => agent.cancel());
      call.on('end', () => agent.end());
      pump<ExecRequest>(call, agent, (m) => {
        if (m.stdin?.length) onActivity?.(workspace, 'exec input');
        return m;
      });
      if (kind === 'Exec') onActivity?.(workspace, 'exec');
      // Written: its frame (exec-wire.ts) may be reused.
      pump<ExecResponse>(agent, call, (m) => (m.sessionId ? { sessionId: sessionIdOf(workspace, m.sessionId) } : m), releaseFrame);
      agent.on('end', () => {
        finish(0);
        call.end();
      });
      agent.on('error', (e: grpc.ServiceError) => {
        if (call.cancelled) return finish(1);
        fail(agentError(host, e), workspace);
      });
      call.resume();
    });
    call.on('error', () => finish(1));
  };
}

export function execProxyHandlers(ctx: AdapterContext, resolve: Resolve, onActivity?: OnActivity): grpc.UntypedServiceImplementation {
  return { Exec: bidi(ctx, resolve, 'Exec', onActivity), Attach: bidi(ctx, resolve, 'Attach', onActivity) };
}

/** Workspaces.Logs: the agent's log stream of the workspace's container. */
export function logsProxy(ctx: AdapterContext, resolve: Resolve) {
  const rpc = 'Workspaces.Logs';
  return (call: grpc.ServerWritableStream<LogsRequest, LogsResponse>): void => {
    const t0 = process.hrtime.bigint();
    const finish = (code: number): void => ctx.observe?.(rpc, code, Number(process.hrtime.bigint() - t0) / 1e9);
    let host = '';
    let agent: grpc.ClientReadableStream<LogsResponse>;
    try {
      const t = resolve(call.request.name ?? '', 'read the logs of');
      host = t.host;
      agent = t.containers.Logs(call.request);
    } catch (e) {
      logFailure(ctx.log, rpc, e, call.request.name);
      const st = toStatus(e);
      finish(st.code);
      call.emit('error', st);
      return;
    }
    call.on('cancelled', () => agent.cancel());
    pump<LogsResponse>(agent, call);
    agent.on('end', () => {
      finish(0);
      call.end();
    });
    agent.on('error', (e: grpc.ServiceError) => {
      if (call.cancelled) return finish(1);
      const st = toStatus(agentError(host, e));
      finish(st.code);
      call.emit('error', st);
    });
  };
}

/** Workspaces.ListSessions: the agent's sessions of the workspace, with the controller's ids. */
export async function listSessions(resolve: Resolve, req: ListSessionsRequest): Promise<ListSessionsResponse> {
  const ws = req.container ?? '';
  if (!ws) throw invalidArgument('container', 'name the workspace');
  const t = resolve(ws, 'list the sessions of');
  const res = await new Promise<ListSessionsResponse>((ok, ko) => t.exec.ListSessions({ container: ws }, new grpc.Metadata(), { deadline: Date.now() + 30_000 }, (err, r) => (err ? ko(agentError(t.host, err)) : ok(r!))));
  return { sessions: res.sessions.map((s) => ({ ...s, id: sessionIdOf(ws, s.id) })) };
}
