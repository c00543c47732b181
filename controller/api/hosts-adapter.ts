// lxr.controller.v1.Hosts over the host registry and HostAdmin.
import type * as grpc from '@grpc/grpc-js';
import type * as C from '../../proto/shared/controller-types.js';
import { unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import type { HostAdmin } from '../hosts/host-admin.js';
import type { HostRegistry } from '../hosts/host-registry.js';

export function hostsHandlers(ctx: AdapterContext, hosts: HostRegistry, admin: HostAdmin, cluster: { pool: string; heartbeatSeconds: number }): grpc.UntypedServiceImplementation {
  return {
    Register: unary<C.RegisterHostRequest, C.RegisterHostResponse>(ctx, 'Hosts.Register', async (req) => {
      const rec = await hosts.register(req);
      return { host: admin.view(rec.name), pool: cluster.pool, heartbeatSeconds: cluster.heartbeatSeconds };
    }),
    Heartbeat: unary<C.HeartbeatRequest, C.HeartbeatResponse>(ctx, 'Hosts.Heartbeat', async (req) => {
      hosts.heartbeat(req.name, req.usage);
      return {};
    }),
    List: unary<C.ListHostsRequest, C.ListHostsResponse>(ctx, 'Hosts.List', async () => ({ hosts: admin.list() })),
    Get: unary<C.HostNameRequest, C.HostResponse>(ctx, 'Hosts.Get', async (req) => ({ host: (hosts.must(req.name ?? ''), admin.view(req.name!)) })),
    Cordon: unary<C.HostNameRequest, C.HostResponse>(ctx, 'Hosts.Cordon', async (req) => ({ host: await admin.cordon(req.name ?? '', true) })),
    Uncordon: unary<C.HostNameRequest, C.HostResponse>(ctx, 'Hosts.Uncordon', async (req) => ({ host: await admin.cordon(req.name ?? '', false) })),
    Drain: unary<C.HostNameRequest, C.DrainHostResponse>(ctx, 'Hosts.Drain', async (req) => admin.drain(req.name ?? '')),
    Remove: unary<C.RemoveHostRequest, C.RemoveHostResponse>(ctx, 'Hosts.Remove', async (req) => {
      await admin.remove(req.name ?? '', !!req.force);
      return {};
    }),
  };
}
