// lxr.agent.v1.Containers over ContainerService: proto <-> domain only.
import type * as grpc from '@grpc/grpc-js';
import type * as T from '../../proto/shared/api-types.js';
import type { ContainerEvent, ContainerInfo, ContainerService } from '../containers/container-service.js';
import { logFailure, serverStream, unary, type AdapterContext } from '../../proto/shared/grpc-handlers.js';
import { connect } from 'node:net';
import { illegalState, invalidArgument, LxrError } from '../../proto/shared/errors.js';
import { toStatus } from '../../proto/shared/grpc-errors.js';
import { serveTunnel } from '../../proto/shared/tunnel.js';

export const toContainer = (c: ContainerInfo): T.Container => ({ ...c, limits: { ...c.limits } });

export function containersHandlers(ctx: AdapterContext, svc: ContainerService): grpc.UntypedServiceImplementation {
  return {
    Create: unary<T.CreateContainerRequest, T.CreateContainerResponse>(ctx, 'Containers.Create', async (req, call) => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      const c = await svc.create(
        {
          name: req.name ?? '',
          image: req.image ?? '',
          command: req.command ?? [],
          entrypoint: req.entrypoint ?? [],
          env: req.env ?? [],
          workdir: req.workdir ?? '',
          user: req.user ?? '',
          limits: { cpus: req.limits?.cpus ?? 0, memoryBytes: req.limits?.memoryBytes ?? 0, pids: req.limits?.pids ?? 0 },
          labels: req.labels ?? {},
          network: { mode: req.network?.mode ?? '', address: req.network?.address ?? '', ports: req.network?.ports ?? [] },
          hostname: req.hostname ?? '',
          tty: req.tty ?? false,
          requestId: req.requestId ?? '',
          ide: req.ide ?? '',
          start: req.start ?? false,
        },
        ac.signal,
      );
      return { container: toContainer(c) };
    }),
    Start: unary<T.StartContainerRequest, T.StartContainerResponse>(ctx, 'Containers.Start', async (req) => ({ container: toContainer(await svc.start(req.name ?? '')) })),
    Stop: unary<T.StopContainerRequest, T.StopContainerResponse>(ctx, 'Containers.Stop', async (req) => ({ container: toContainer(await svc.stop(req.name ?? '', req.graceSeconds ?? 0)) })),
    Kill: unary<T.KillContainerRequest, T.KillContainerResponse>(ctx, 'Containers.Kill', async (req) => {
      await svc.kill(req.name ?? '', req.signal ?? '');
      return {};
    }),
    Remove: unary<T.RemoveContainerRequest, T.RemoveContainerResponse>(ctx, 'Containers.Remove', async (req) => {
      await svc.remove(req.name ?? '', req.force ?? false);
      return {};
    }),
    Get: unary<T.GetContainerRequest, T.GetContainerResponse>(ctx, 'Containers.Get', async (req) => ({ container: toContainer(await svc.get(req.name ?? '')) })),
    List: unary<T.ListContainersRequest, T.ListContainersResponse>(ctx, 'Containers.List', async (req) => ({
      containers: (await svc.list({ labels: req.labels ?? {}, states: req.states ?? [] })).map(toContainer),
    })),
    Stats: unary<T.StatsRequest, T.StatsResponse>(ctx, 'Containers.Stats', async (req) => svc.stats(req.name ?? '')),
    Logs: serverStream<T.LogsRequest, T.LogsResponse>(ctx, 'Containers.Logs', async (req, send, signal) => {
      for await (const l of svc.logs(req.name ?? '', { follow: req.follow ?? false, tail: req.tail ?? 0, since: req.since ?? '', stdout: req.stdout ?? false, stderr: req.stderr ?? false, signal })) {
        send({ stream: l.stream, time: l.time, line: l.line, partial: l.partial });
      }
    }),
    PortForward: portForwardHandler(ctx, svc),
    Events: serverStream<T.EventsRequest, T.Event>(ctx, 'Containers.Events', async (req, send, signal) => {
      const names = new Set((req.names ?? []).filter((n) => n !== ''));
      const onEvent = (ev: ContainerEvent): void => {
        if (names.size === 0 || names.has(ev.name)) send({ ...ev });
      };
      svc.events.on('event', onEvent);
      try {
        // Runs until the client cancels (or the server shuts down).
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
      } finally {
        svc.events.off('event', onEvent);
      }
    }),
  };
}

/**
 * Containers.PortForward: a TCP connection from this host (which reaches the
 * bridge) to the container's address and port, tunnelled over the stream.
 */
function portForwardHandler(ctx: AdapterContext, svc: ContainerService) {
  return (call: grpc.ServerDuplexStream<T.PortForwardRequest, T.PortForwardResponse>): void => {
    const fail = (e: unknown): void => {
      logFailure(ctx.log, 'Containers.PortForward', e);
      call.emit('error', toStatus(e));
    };
    call.once('data', (first: T.PortForwardRequest) => {
      call.pause();
      void (async () => {
        const name = first.start?.container ?? '';
        const port = first.start?.port ?? 0;
        if (!first.start) throw invalidArgument('start', 'the first message of PortForward must be start');
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument('start.port', `must be 1-65535, got ${port}`);
        const c = await svc.get(name);
        if (c.state !== 'running') throw illegalState('container', name, c.state, 'forward a port of');
        if (!c.address) throw new LxrError('LXR_ILLEGAL_STATE', `container ${JSON.stringify(name)} has no network address to forward to`);
        const socket = connect({ host: c.address, port });
        await new Promise<void>((resolve, reject) => {
          socket.once('connect', resolve);
          socket.once('error', (e: NodeJS.ErrnoException) => reject(new LxrError('LXR_UNAVAILABLE', `nothing answers on port ${port} of ${JSON.stringify(name)} (${e.code ?? e.message})`)));
        });
        serveTunnel(call, socket);
        call.resume();
      })().catch(fail);
    });
  };
}
