// lxr.agent.v1.Host over HostService.
import type * as grpc from '@grpc/grpc-js';
import type { GetInfoRequest, GetInfoResponse } from '../../proto/shared/api-types.js';
import type { HostService } from '../host/host-service.js';
import { unary, type AdapterContext } from './handlers.js';

export function hostHandlers(ctx: AdapterContext, host: HostService): grpc.UntypedServiceImplementation {
  return {
    GetInfo: unary<GetInfoRequest, GetInfoResponse>(ctx, 'Host.GetInfo', async () => {
      const i = await host.info();
      return { ...i, usage: { ...i.usage } };
    }),
  };
}
