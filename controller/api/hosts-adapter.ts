// lxr.controller.v1.Hosts over the host registry and HostAdmin.
import type * as grpc from '@grpc/grpc-js';
import { callerOf } from '../../proto/shared/auth-interceptor.js';
import { LxrError } from '../../proto/shared/errors.js';
import { describeIdentity } from '../../proto/shared/pki.js';
import type * as C from '../../proto/shared/controller-types.js';
import { unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import type { HostAdmin } from '../hosts/host-admin.js';
import type { HostRegistry } from '../hosts/host-registry.js';

/**
 * Over TLS a host speaks only for itself: the name in its certificate must
 * be the one it registers or beats for. (On the unix socket there is no
 * certificate, and root may do anything.)
 */
function mustBeHost(call: { metadata: grpc.Metadata }, name: string | undefined): void {
  const c = callerOf(call);
  const who = c.local ? null : c.who;
  if (!c.local && !(who?.role === 'host' && who.name === name)) throw new LxrError('LXR_PERMISSION_DENIED', `${who ? describeIdentity(who) : 'a caller without a certificate'} cannot speak for host ${JSON.stringify(name ?? '')}: a host's certificate is good for its own name only`);
}

/** `forgetJoined`: revokes the certificates of a name that joined but never registered; how many. */
export function hostsHandlers(ctx: AdapterContext, hosts: HostRegistry, admin: HostAdmin, cluster: { pool: string; heartbeatSeconds: number }, forgetJoined?: (name: string) => Promise<number>): grpc.UntypedServiceImplementation {
  return {
    Register: unary<C.RegisterHostRequest, C.RegisterHostResponse>(ctx, 'Hosts.Register', async (req, call) => {
      mustBeHost(call, req.name);
      const rec = await hosts.register(req);
      return { host: admin.view(rec.name), pool: cluster.pool, heartbeatSeconds: cluster.heartbeatSeconds };
    }),
    Heartbeat: unary<C.HeartbeatRequest, C.HeartbeatResponse>(ctx, 'Hosts.Heartbeat', async (req, call) => {
      mustBeHost(call, req.name);
      hosts.heartbeat(req.name, req.usage);
      return {};
    }),
    List: unary<C.ListHostsRequest, C.ListHostsResponse>(ctx, 'Hosts.List', async () => ({ hosts: admin.list() })),
    Get: unary<C.HostNameRequest, C.HostResponse>(ctx, 'Hosts.Get', async (req) => ({ host: (hosts.must(req.name ?? ''), admin.view(req.name!)) })),
    Cordon: unary<C.HostNameRequest, C.HostResponse>(ctx, 'Hosts.Cordon', async (req) => ({ host: await admin.cordon(req.name ?? '', true) })),
    Uncordon: unary<C.HostNameRequest, C.HostResponse>(ctx, 'Hosts.Uncordon', async (req) => ({ host: await admin.cordon(req.name ?? '', false) })),
    Drain: unary<C.HostNameRequest, C.DrainHostResponse>(ctx, 'Hosts.Drain', async (req) => admin.drain(req.name ?? '')),
    Remove: unary<C.RemoveHostRequest, C.RemoveHostResponse>(ctx, 'Hosts.Remove', async (req) => {
      try {
        await admin.remove(req.name ?? '', !!req.force);
      } catch (e) {
        // A machine that joined under this name but never registered: its certificates are what there is to remove.
        if (!(e instanceof LxrError && e.reason === 'LXR_NOT_FOUND' && forgetJoined && (await forgetJoined(req.name ?? '')) > 0)) throw e;
      }
      return {};
    }),
  };
}
