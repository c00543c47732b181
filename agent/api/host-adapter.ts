// lxr.agent.v1.Host over HostService.
import type * as grpc from '@grpc/grpc-js';
import type { GetInfoRequest, GetInfoResponse, SetPeersRequest, SetPeersResponse } from '../../proto/shared/api-types.js';
import { LxrError } from '../../proto/shared/errors.js';
import type { BridgeNetwork } from '../net/bridge-network.js';
import type { HostService } from '../host/host-service.js';
import { unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';

export function hostHandlers(ctx: AdapterContext, host: HostService, network: BridgeNetwork | null = null): grpc.UntypedServiceImplementation {
  return {
    GetInfo: unary<GetInfoRequest, GetInfoResponse>(ctx, 'Host.GetInfo', async () => {
      const i = await host.info();
      return { ...i, usage: { ...i.usage } };
    }),
    SetPeers: unary<SetPeersRequest, SetPeersResponse>(ctx, 'Host.SetPeers', async (req) => {
      if (!network) throw new LxrError('LXR_UNSUPPORTED', 'this agent has no container network (start lxr-agent with --subnet)');
      const routes = await network.setPeers((req.peers ?? []).map((p) => ({ name: p.name ?? '', address: p.address ?? '', subnet: p.subnet ?? '' })), req.protectedEndpoints ?? []);
      return { routes };
    }),
  };
}
