// Workspaces.PortForward: the client's tunnel relayed to the agent of the
// workspace's host (Containers.PortForward), message for message, with
// backpressure both ways; the agent's failures arrive as they were.
import * as grpc from '@grpc/grpc-js';
import type { PortForwardRequest, PortForwardResponse } from '../../proto/shared/api-types.js';
import { invalidArgument, LxrError } from '../../proto/shared/errors.js';
import { fromStatus, toStatus } from '../../proto/shared/grpc-errors.js';
import { logFailure, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import { pump } from '../../proto/shared/pump.js';
import type { OnActivity, Resolve } from './exec-proxy.js';

export function portForwardProxy(ctx: AdapterContext, resolve: Resolve, onActivity?: OnActivity) {
  return (call: grpc.ServerDuplexStream<PortForwardRequest, PortForwardResponse>): void => {
    const fail = (e: unknown, workspace?: string): void => {
      logFailure(ctx.log, 'Workspaces.PortForward', e, workspace);
      call.emit('error', toStatus(e));
    };
    call.once('data', (first: PortForwardRequest) => {
      call.pause();
      const workspace = first.start?.container ?? '';
      let agent: grpc.ClientDuplexStream<PortForwardRequest, PortForwardResponse>;
      try {
        if (!first.start) throw invalidArgument('start', 'the first message of PortForward must be start');
        if (!workspace) throw invalidArgument('start.container', 'name the workspace');
        const host = resolve(workspace, 'forward a port of');
        agent = host.containers.PortForward();
        agent.on('error', (e: grpc.ServiceError) => {
          if (e.code === grpc.status.CANCELLED) return;
          const err = fromStatus(e);
          fail(err.reason === 'LXR_UNAVAILABLE' && !/nothing answers/.test(err.message) ? new LxrError('LXR_UNAVAILABLE', `host ${host.host} does not answer: ${err.message}`) : err, workspace);
        });
      } catch (e) {
        fail(e, workspace);
        return;
      }
      agent.write(first);
      // What the person sends is activity (idle detection); what the workspace sends back is not.
      const port = `port ${first.start!.port ?? 0}`;
      pump(agent, call);
      pump(call, agent, (m: PortForwardRequest) => (onActivity?.(workspace, port), m));
      agent.on('end', () => call.end());
      call.on('end', () => agent.end());
      call.on('cancelled', () => agent.cancel());
      call.resume();
    });
  };
}
