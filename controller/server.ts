// lxr-controller's process: the durable store, the host registry with its
// subnet pool, the workspace service and the loop that reconciles them with
// the agents, and images across the hosts, served over gRPC (unix socket
// 0600, TCP when configured) with standard health checking, plus /metrics
// and Prometheus service discovery of the agents (/sd/agents) over HTTP.
import { randomUUID } from 'node:crypto';
import { mkdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { controllerServices, ServiceNames } from '../proto/shared/api.js';
import { LxrError } from '../proto/shared/errors.js';
import { bind, bindUnix, newServer, shutdownServer } from '../proto/shared/grpc-server.js';
import { HealthService } from '../proto/shared/health.js';
import { rootLogger, type Logger } from '../proto/shared/log.js';
import { serveMetrics, type MetricsServer } from '../proto/shared/metrics-http.js';
import { GrpcAgentGateway, type AgentGateway } from './agents/agent-gateway.js';
import { hostsHandlers } from './api/hosts-adapter.js';
import { imagesHandlers } from './api/images-adapter.js';
import { workspacesHandlers } from './api/workspaces-adapter.js';
import { execProxyHandlers, type Resolve } from './exec/exec-proxy.js';
import { HostAdmin } from './hosts/host-admin.js';
import { HostRegistry } from './hosts/host-registry.js';
import { ClusterImageService } from './images/image-service.js';
import { PeerSync } from './hosts/peer-sync.js';
import { createControllerMetrics } from './metrics/metrics.js';
import type { Policy } from './scheduler/index.js';
import { LogStore, type Store } from './store/index.js';
import { SubnetPool } from './subnets/subnet-pool.js';
import { illegalState } from '../proto/shared/errors.js';
import { WorkspaceService } from './workspaces/workspace-service.js';
import { LXR_VERSION } from '../proto/shared/version.js';
import { probeHosts } from './hosts/host-probe.js';
import { authInterceptor } from '../proto/shared/auth-interceptor.js';
import { Renewal } from '../proto/shared/renewal.js';
import { expectIdentity, TlsIdentity } from '../proto/shared/tls.js';
import { trustHandlers } from './api/trust-adapter.js';
import { openHandler } from './api/open-adapter.js';
import { portForwardProxy } from './exec/port-forward-proxy.js';
import { startWebServer, type WebServer } from './web/web-server.js';
import { WebLinks } from './web/web-links.js';
import { controllerPolicy } from './trust/controller-policy.js';
import { localAddresses, TrustService } from './trust/trust-service.js';
import { hostOf } from './hosts/peer-sync.js';
import { isIP } from 'node:net';

/**
 * IP and DNS names for the controller's certificate: the hosts of the
 * addresses it listens on (every local address for a wildcard one), and
 * --tls-san values; always 127.0.0.1 and localhost.
 */
export function certificateNames(listens: ReadonlyArray<string | undefined>, sans: readonly string[]): [string[], string[]] {
  const ips = new Set<string>(['127.0.0.1']);
  const dns = new Set<string>(['localhost']);
  const hosts = listens.filter((l): l is string => !!l).map(hostOf);
  const wildcard = hosts.length === 0 || hosts.some((h) => h === '' || h === '0.0.0.0' || h === '::');
  for (const h of [...hosts.filter((x) => x !== '' && x !== '0.0.0.0' && x !== '::'), ...(wildcard ? localAddresses() : []), ...sans.map((h) => h.replace(/^\[(.*)\]$/, '$1'))]) (isIP(h) ? ips : dns).add(h);
  return [[...ips], [...dns]];
}

export const CONTROLLER_VERSION = LXR_VERSION;

export interface ControllerOptions {
  /** State directory (the store), e.g. /var/lib/lxr-controller. */
  root: string;
  /** Unix socket, e.g. /run/lxr/controller.sock. */
  socket: string;
  /** HOST:PORT for agents and remote clients: mutual TLS, every call authenticated (controller/trust). */
  listen?: string;
  /** Lifetime of host and controller certificates in seconds (default 30 days); renewed at two thirds. */
  certTtlSeconds?: number;
  /** More names and addresses for the controller's certificate (it always has its listen address). */
  tlsSans?: string[];
  /** HOST:PORT of the HTTPS side for browsers (/w/NAME/...: the web terminal). */
  webListen?: string;
  /** Stop Running workspaces with no activity for this long (0/absent: never). */
  idleTimeoutSeconds?: number;
  /** HOST:PORT of /metrics and /sd/agents. */
  metricsListen?: string;
  /** The cluster's pool (default 10.200.0.0/16) and the prefix of each host's subnet (default 24). */
  pool?: string;
  subnetPrefix?: number;
  /** Seconds between agent heartbeats (told to agents; default 5) and without one before NotReady (default 40). */
  heartbeatSeconds?: number;
  hostGraceSeconds?: number;
  /** Milliseconds between reconcile rounds (default 5000). */
  reconcileMs?: number;
  policy?: Policy;
  unready?: { policy: 'keep' | 'reschedule'; afterMs: number };
  gateway?: AgentGateway;
  store?: Store;
  log?: Logger;
}

export interface Controller {
  address: string;
  tcpAddress?: string;
  metricsAddress?: string;
  /** HOST:PORT of the HTTPS side for browsers. */
  webAddress?: string;
  workspaces: WorkspaceService;
  hosts: HostRegistry;
  /** One reconcile round now (tests). */
  reconcile(): Promise<void>;
  close(): Promise<void>;
}

export async function startController(o: ControllerOptions): Promise<Controller> {
  const log = o.log ?? rootLogger('lxr-controller');
  const root = path.resolve(o.root);
  mkdirSync(root, { recursive: true, mode: 0o700 });
  const pool = new SubnetPool(o.pool ?? '10.200.0.0/16', o.subnetPrefix ?? 24);
  const store = o.store ?? (await LogStore.open(path.join(root, 'store')));
  const cluster = await store.get<{ id: string; pool: string; prefix: number }>('meta/cluster');
  let clusterId: string;
  if (cluster) {
    if (cluster.value.pool !== pool.pool || cluster.value.prefix !== pool.prefix) {
      await store.close();
      throw new LxrError('LXR_ILLEGAL_STATE', `the cluster in ${root} uses the pool ${cluster.value.pool} with /${cluster.value.prefix} subnets, not ${pool.pool} /${pool.prefix}: hosts hold subnets of it (start with the same --pool and --subnet-prefix)`);
    }
    clusterId = cluster.value.id;
  } else {
    clusterId = randomUUID();
    await store.commit([{ type: 'put', key: 'meta/cluster', value: { id: clusterId, pool: pool.pool, prefix: pool.prefix }, expect: 0 }]);
  }
  const trust = await TrustService.open({ store, dir: path.join(root, 'pki'), log, ...(o.certTtlSeconds ? { certTtlSeconds: o.certTtlSeconds } : {}) });
  const policy = controllerPolicy(trust);
  // The same names at every renewal.
  const names = certificateNames([o.listen, o.webListen], o.tlsSans ?? []);
  const own = await trust.controllerCertificate(...names);
  const identity = new TlsIdentity(trust.ca.certPem, own.certPem, own.keyPem);
  const gateway =
    o.gateway ?? new GrpcAgentGateway((t) => (t.address.startsWith('unix:') ? grpc.credentials.createInsecure() : identity.channelCredentials(expectIdentity({ role: 'host', name: t.name }))));
  const heartbeatSeconds = o.heartbeatSeconds ?? 5;
  const hosts = new HostRegistry({ store, subnets: pool, graceMs: (o.hostGraceSeconds ?? 40) * 1000, log, beforeRemove: (name) => trust.revokeHost(name) });
  // Agents check the controller's certificate on every call: after a renewal,
  // calls go over new connections (made with the new one); streams already
  // open keep theirs until they end.
  let web: WebServer | undefined;
  const renewal = new Renewal(identity, async () => trust.controllerCertificate(...names), log, () => {
    for (const h of hosts.names()) gateway.reset(h);
    web?.setCertificate(identity.chainPem, identity.keyPem);
  });
  await hosts.load();
  const api = { hosts: () => admin.list(), workspaces: () => workspaces.list(), pool: () => ({ size: pool.size, used: pool.used, prefix: pool.prefix }) };
  const metrics = createControllerMetrics(api, CONTROLLER_VERSION);
  const workspaces = new WorkspaceService({ store, hosts, gateway, clusterId, log, observe: { scheduled: metrics.scheduled, created: metrics.created }, ...(o.policy ? { policy: o.policy } : {}), ...(o.unready ? { unready: o.unready } : {}) });
  await workspaces.load();
  const admin = new HostAdmin(hosts, workspaces);
  const images = new ClusterImageService({ hosts, gateway, spoolDir: path.join(root, 'imports'), log });
  const peers = new PeerSync(hosts, gateway, log);
  // A host that comes back is compared with what should run there at once.
  hosts.on('ready', (name: string) => gateway.reset(name));
  hosts.on('ready', (name: string) => void workspaces.reconcileHost(name).catch((e: unknown) => log.warn({ host: name, err: e }, 'reconcile failed')));

  const resolve: Resolve = (name, op) => {
    const w = workspaces.get(name);
    if (w.state === 'Unknown') throw new LxrError('LXR_UNAVAILABLE', `cannot ${op} workspace ${JSON.stringify(name)}: its host ${w.host} is NotReady`);
    if ((op === 'exec in' || op === 'forward a port of') && w.state !== 'Running') throw illegalState('workspace', name, w.state, op);
    const h = hosts.must(w.host);
    return { host: h.name, ...gateway.clients({ name: h.name, address: h.address }) };
  };

  const shutdown = new AbortController();
  const ctx = { log, shutdown: shutdown.signal, observe: metrics.rpc };
  const health = new HealthService();
  const server = newServer();
  server.addService(controllerServices.Health, health.handlers());
  server.addService(controllerServices.Hosts, hostsHandlers(ctx, hosts, admin, { pool: pool.pool, heartbeatSeconds }, (name) => trust.revokeHost(name)));
  server.addService(controllerServices.Trust, trustHandlers(ctx, trust, (name) => {
    const h = hosts.record(name);
    return h ? { ips: [h.address.replace(/:\d+$/, '')].filter((ip) => /^\d+\.\d+\.\d+\.\d+$/.test(ip)) } : null;
  }));
  const links = WebLinks.open(path.join(root, 'pki'));
  const onActivity = (name: string, kind: string): void => workspaces.activity.touch(name, kind);
  /** A workspace's IDE ("" = none); NOT_FOUND for no such workspace. */
  const ideOf = (name: string): string => workspaces.get(name).spec?.ide ?? '';
  server.addService(controllerServices.Workspaces, {
    ...workspacesHandlers(ctx, workspaces, resolve),
    PortForward: portForwardProxy(ctx, resolve, onActivity),
    Open: openHandler(ctx, { web: () => (web ? { address: web.address, links } : null), ideOf }),
  });
  server.addService(controllerServices.Exec, execProxyHandlers(ctx, resolve, onActivity));
  server.addService(controllerServices.Images, imagesHandlers(ctx, images));
  for (const s of ['', ServiceNames.ClusterHosts, ServiceNames.ClusterWorkspaces, ServiceNames.ClusterExec, ServiceNames.ClusterImages, ServiceNames.Trust, ServiceNames.Health]) health.setStatus(s, 'SERVING');

  let tcpAddress: string | undefined;
  let http: MetricsServer | undefined;
  const sd = () =>
    hosts
      .names()
      .map((n) => hosts.record(n)!)
      .filter((h) => h.metricsAddress)
      .map((h) => ({ targets: [h.metricsAddress], labels: { lxr_host: h.name } }));
  try {
    await bindUnix(server, o.socket);
    if (o.listen) {
      const port = await bind(server, o.listen, identity.serverCredentials(false, [authInterceptor(policy, log)]));
      tcpAddress = o.listen.replace(/:\d+$/, `:${port}`);
    }
    if (o.metricsListen) http = await serveMetrics(metrics.registry, o.metricsListen, log, { '/sd/agents': sd });
    if (o.webListen) {
      web = await startWebServer({
        listen: o.webListen,
        certPem: identity.chainPem,
        keyPem: identity.keyPem,
        links,
        operatorToken: (authorization) => trust.authenticate(undefined, authorization)?.role === 'operator',
        hostOf: (name, op) => resolve(name, op),
        ideOf,
        onActivity,
        log,
      });
    }
    peers.setControllerEndpoints([tcpAddress, http?.address, web?.address].filter((a): a is string => !!a));
  } catch (e) {
    server.forceShutdown();
    renewal.stop();
    await store.close();
    throw e;
  }

  let round: Promise<void> | null = null;
  const reconcileRound = async (): Promise<void> => {
    hosts.tick();
    await peers.sync();
    for (const h of hosts.names()) {
      if (!hosts.isReady(h)) continue;
      await workspaces.reconcileHost(h).catch((e: unknown) => log.warn({ host: h, err: e }, 'reconcile failed'));
    }
    await workspaces.rescheduleUnready().catch((e: unknown) => log.warn({ err: e }, 'reschedule failed'));
    if (o.idleTimeoutSeconds) await workspaces.stopIdle(o.idleTimeoutSeconds * 1000);
  };
  // One round at a time; the callback of finally() always runs after the assignment below.
  const reconcile = (): Promise<void> => {
    if (round) return round;
    const p = reconcileRound().finally(() => {
      if (round === p) round = null;
    });
    round = p;
    return p;
  };
  const timer = setInterval(() => void reconcile(), o.reconcileMs ?? 5000);
  // Hosts the store knows are asked at once instead of waiting for their heartbeats.
  void probeHosts(hosts, gateway, log).then(() => reconcile());
  renewal.start();
  log.info({ socket: o.socket, listen: tcpAddress, metrics: http?.address, root, pool: pool.pool, cluster: clusterId, ca: trust.ca.hash }, 'lxr-controller serving');

  let closed: Promise<void> | undefined;
  return {
    address: `unix://${o.socket}`,
    ...(tcpAddress ? { tcpAddress } : {}),
    ...(http ? { metricsAddress: http.address } : {}),
    ...(web ? { webAddress: web.address } : {}),
    workspaces,
    hosts,
    reconcile,
    close() {
      closed ??= (async () => {
        clearInterval(timer);
        renewal.stop();
        health.shutdown();
        health.endWatches();
        shutdown.abort();
        await shutdownServer(server);
        await round?.catch(() => {});
        await workspaces.idle();
        await http?.close();
        await web?.close();
        gateway.close();
        await store.close();
        try {
          unlinkSync(o.socket);
        } catch {
          // Already gone.
        }
        log.info('lxr-controller stopped');
      })();
      return closed;
    },
  };
}
