// Standard gRPC health checking (grpc.health.v1.Health): per-service
// serving status, Check for one look and Watch for a stream of changes.
import * as grpc from '@grpc/grpc-js';
import type { HealthCheckRequest, HealthCheckResponse, ServingStatus } from './api-types.js';

export class HealthService {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly watchers = new Map<string, Set<(s: ServingStatus) => void>>();
  private readonly calls = new Set<grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>>();

  /** "" is the whole server. */
  setStatus(service: string, status: ServingStatus): void {
    this.statuses.set(service, status);
    for (const w of this.watchers.get(service) ?? []) w(status);
  }

  /** Every service NOT_SERVING (a server going down). */
  shutdown(): void {
    for (const s of this.statuses.keys()) this.setStatus(s, 'NOT_SERVING');
  }

  status(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** grpc-js handlers for addService(services.Health, ...). */
  handlers(): grpc.UntypedServiceImplementation {
    return {
      Check: (call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>, cb: grpc.sendUnaryData<HealthCheckResponse>) => {
        const service = call.request.service ?? '';
        const status = this.statuses.get(service);
        if (status === undefined) cb({ code: grpc.status.NOT_FOUND, details: `unknown service ${JSON.stringify(service)}` });
        else cb(null, { status });
      },
      Watch: (call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
        const service = call.request.service ?? '';
        let last: ServingStatus | undefined;
        const send = (status: ServingStatus): void => {
          if (status === last || call.cancelled) return;
          last = status;
          call.write({ status });
        };
        send(this.statuses.get(service) ?? 'SERVICE_UNKNOWN');
        let set = this.watchers.get(service);
        if (!set) this.watchers.set(service, (set = new Set()));
        set.add(send);
        this.calls.add(call);
        const stop = (): void => {
          set.delete(send);
          this.calls.delete(call);
        };
        call.on('cancelled', stop);
        call.on('close', stop);
        call.on('error', stop);
      },
    };
  }

  /** Ends every Watch stream (server shutdown). */
  endWatches(): void {
    this.watchers.clear();
    for (const call of this.calls) call.end();
    this.calls.clear();
  }
}
