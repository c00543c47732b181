// lxr-agent's gRPC server: the Host, Images and Containers services and
// standard health checking, on a unix socket (mode 0600) and, when asked, on
// TCP. Closing the server leaves containers running: they belong to their
// monitors, and the next agent adopts them.
import { mkdirSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { ServiceNames, services } from '../proto/shared/api.js';
import { HealthService } from '../proto/shared/health.js';
import { childLogger, rootLogger, type Logger } from '../proto/shared/log.js';
import { containersHandlers } from './api/containers-adapter.js';
import { execHandlers } from './api/exec-adapter.js';
import { hostHandlers } from './api/host-adapter.js';
import { imagesHandlers } from './api/images-adapter.js';
import { createCgroupManager } from './cgroups/index.js';
import { ContainerService } from './containers/container-service.js';
import { ExecService } from './exec/exec-service.js';
import { BridgeNetwork, parseEndpoint } from './net/bridge-network.js';
import { LinuxNetRunner } from './net/net-runner.js';
import { AGENT_VERSION, HostService } from './host/host-service.js';
import { RegistryClient, type RegistryClientOptions } from './image/registry/client.js';
import { ImageService } from './image/service.js';
import { createAgentRegistry } from './metrics/metrics.js';
import { serveMetrics, type MetricsServer } from '../proto/shared/metrics-http.js';
import { bind, bindUnix, newServer, shutdownServer } from '../proto/shared/grpc-server.js';
import { Runtime } from './runtime/runtime.js';
import { IdeTools } from './ide/tools.js';
import { IdeSupervisor } from './ide/ide-supervisor.js';
import { authInterceptor, onlyFor, type AuthPolicy } from '../proto/shared/auth-interceptor.js';
import { LxrError } from '../proto/shared/errors.js';
import { IssuedCertificates } from '../proto/shared/cert-info.js';
import type { TlsIdentity } from '../proto/shared/tls.js';

/**
 * An agent's TCP port answers the controller alone. TLS has already refused
 * clients without a certificate of the cluster CA; this names the caller
 * and keeps hosts and people out (people go through the controller).
 */
export function agentPolicy(tls: TlsIdentity): AuthPolicy {
  const issued = new IssuedCertificates(() => tls.ca);
  return {
    authenticate: (a) => (a.cert ? issued.verify(a.cert) : null),
    allowed: (_method, who) => (who?.role === 'controller' ? true : onlyFor('the controller', who)),
  };
}

export interface AgentOptions {
  /** State root (images, containers), e.g. /var/lib/lxr. */
  root: string;
  /** The unix socket to serve on, e.g. /run/lxr/agent.sock. */
  socket: string;
  /** HOST:PORT to serve on over TCP as well: mutual TLS with `tls`, for the controller only. */
  listen?: string;
  /** This host's certificate from the cluster (agent/cluster/credentials.ts). */
  tls?: TlsIdentity;
  /** HOST:PORT to serve Prometheus metrics on over HTTP at /metrics (port 0: any free one). */
  metricsListen?: string;
  /** Where the IDE tools are installed (default <root>/tools); several agents may share one. */
  toolsDir?: string;
  /** Parent cgroup of every container (default "lxr"). */
  cgroupParent?: string;
  /** The runtime's state (default <root>/run; /run/lxr/runtime in production). */
  runtimeRoot?: string;
  registry?: RegistryClientOptions;
  labels?: Record<string, string>;
  /**
   * The host's container network: its subnet (e.g. 10.200.3.0/24) and
   * bridge (default lxr0), made in the agent's network namespace. Without
   * it, containers get network mode "none".
   */
  network?: { subnet: string; bridge?: string; pool?: string; protect?: string[] };
  /** Fault injection for crash tests: called after each create step (runtime and containers). */
  crashPoint?: (step: string) => void;
  /** Exec sessions: output kept per session, default idle timeout, how long ended ones stay attachable. */
  exec?: { ringBytes?: number; idleTimeoutMs?: number; retentionMs?: number; killGraceMs?: number };
  log?: Logger;
}

export interface Agent {
  /** The unix socket address (unix://...), and the TCP one when listening. */
  address: string;
  tcpAddress?: string;
  /** HOST:PORT of the /metrics endpoint, when serving it. */
  metricsAddress?: string;
  health: HealthService;
  host: HostService;
  close(): Promise<void>;
}

export async function startAgent(o: AgentOptions): Promise<Agent> {
  const root = path.resolve(o.root);
  const log = childLogger(o.log ?? rootLogger('lxr-agent'), { host: os.hostname() });
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const cgroups = await createCgroupManager();
  const cgroupParent = o.cgroupParent ?? 'lxr';
  const runtime = new Runtime({ root: o.runtimeRoot ?? path.join(root, 'run'), cgroups, cgroupParent, ...(o.crashPoint ? { crashPoint: o.crashPoint } : {}) });
  const registry = new RegistryClient(o.registry ?? {});
  const images = new ImageService({ root: path.join(root, 'images'), registry });
  let network: BridgeNetwork | null = null;
  if (o.network) {
    network = new BridgeNetwork({
      runner: new LinuxNetRunner(),
      subnet: o.network.subnet,
      ...(o.network.bridge ? { bridge: o.network.bridge } : {}),
      ...(o.network.pool ? { pool: o.network.pool } : {}),
      stateDir: path.join(root, 'net', 'addresses'),
      protectEndpoints: (o.network.protect ?? []).map((e, i) => parseEndpoint(e, `network.protect[${i}]`)),
    });
    await network.ensureBridge();
  }
  const ideTools = new IdeTools({ dir: o.toolsDir ?? path.join(root, 'tools'), log });
  let ide: IdeSupervisor | null = null;
  const containers = new ContainerService({
    root, images, runtime, cgroups, cgroupParent, log, network, ideTools,
    ideStatus: (name) => ide?.status(name) ?? '',
    ...(o.crashPoint ? { crashPoint: o.crashPoint } : {}),
  });
  await containers.init();
  ide = new IdeSupervisor({
    host: { ideContainers: () => containers.ideContainers(), launch: (name) => containers.launchIde(name), logPath: (name) => containers.ideLogPath(name) },
    log,
  });
  // A workspace that starts gets its IDE at once, not at the next pass.
  containers.events.on('event', (ev: { type: string }) => {
    if (ev.type === 'started') void ide?.tick();
  });
  ide.start();
  const exec = new ExecService({ target: containers, log, ...(o.exec ?? {}) });
  const host = new HostService({ cgroupMode: cgroups.mode, labels: o.labels ?? {}, containerUsage: () => containers.usage() });

  const shutdown = new AbortController();
  const ctx = { log, shutdown: shutdown.signal };
  const health = new HealthService();
  const server = newServer();
  server.addService(services.Health, health.handlers());
  server.addService(services.Host, hostHandlers(ctx, host, network));
  server.addService(services.Images, imagesHandlers(ctx, images));
  server.addService(services.Containers, containersHandlers(ctx, containers));
  server.addService(services.Exec, execHandlers(ctx, exec));
  for (const s of ['', ServiceNames.Host, ServiceNames.Images, ServiceNames.Containers, ServiceNames.Exec, ServiceNames.Health]) health.setStatus(s, 'SERVING');

  let tcpAddress: string | undefined;
  let metrics: MetricsServer | undefined;
  try {
    await bindUnix(server, o.socket);
    if (o.listen) {
      if (!o.tls) throw new LxrError('LXR_INVALID_ARGUMENT', 'serving on TCP needs the host\'s certificate from the cluster (join a controller)', { field: 'listen' });
      const port = await bind(server, o.listen, o.tls.serverCredentials(true, [authInterceptor(agentPolicy(o.tls), log)]));
      tcpAddress = o.listen.replace(/:\d+$/, `:${port}`);
    }
    if (o.metricsListen) metrics = await serveMetrics(createAgentRegistry({ containers, version: AGENT_VERSION, log }), o.metricsListen, log);
    // Now that the ports are known (0 picks one), containers are kept off them.
    const own = [tcpAddress, metrics?.address].map((a) => Number(a?.match(/:(\d+)$/)?.[1] ?? 0)).filter((p) => p > 0);
    await network?.protectOwnPorts(own);
  } catch (e) {
    server.forceShutdown();
    registry.close();
    throw e;
  }
  log.info({ socket: o.socket, listen: tcpAddress, metrics: metrics?.address, root, cgroupMode: cgroups.mode }, 'lxr-agent serving');

  let closed: Promise<void> | undefined;
  return {
    address: `unix://${o.socket}`,
    ...(tcpAddress ? { tcpAddress } : {}),
    ...(metrics ? { metricsAddress: metrics.address } : {}),
    health,
    host,
    close() {
      closed ??= (async () => {
        health.shutdown();
        health.endWatches();
        shutdown.abort();
        await shutdownServer(server);
        await metrics?.close();
        exec.close();
        ide?.close();
        network?.close();
        registry.close();
        try {
          unlinkSync(o.socket);
        } catch {
          // Already gone.
        }
        log.info('lxr-agent stopped; containers keep running');
      })();
      return closed;
    },
  };
}
