// The controller's Prometheus metrics: cluster state read at scrape time
// (hosts by state, workspaces by state and host, the subnet pool), latency
// histograms fed by the services (scheduling, create-to-Running), every
// gRPC call by method and code, and process metrics. The agents' per-
// container series (cAdvisor names) are not relayed: Prometheus scrapes the
// agents directly, found through /sd/agents (http_sd_configs), so a scrape
// of the controller never waits on a host.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../../proto/shared/metrics-http.js';
import type { ClusterHost, Workspace } from '../../proto/shared/controller-types.js';

export interface ControllerMetricsSource {
  hosts(): ClusterHost[];
  workspaces(): Workspace[];
  pool(): { size: number; used: number; prefix: number };
}

export interface ControllerMetrics {
  registry: Registry;
  scheduled(seconds: number): void;
  created(seconds: number): void;
  rpc(method: string, code: number, seconds: number): void;
}

const CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];
const HOST_STATES = ['Ready', 'NotReady'] as const;
const WS_STATES = ['Pending', 'Creating', 'Running', 'Stopped', 'Failed', 'Unknown'] as const;

export function createControllerMetrics(src: ControllerMetricsSource, version: string): ControllerMetrics {
  const registry = new Registry();
  new Gauge({
    name: 'lxr_hosts',
    help: 'Registered hosts by state (Ready, NotReady); cordoned ones are also counted in lxr_hosts_cordoned.',
    labelNames: ['state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const hs = src.hosts();
      for (const s of HOST_STATES) this.set({ state: s }, hs.filter((h) => h.state === s).length);
    },
  });
  new Gauge({
    name: 'lxr_hosts_cordoned',
    help: 'Registered hosts that take no new workspaces.',
    registers: [registry],
    collect() {
      this.set(src.hosts().filter((h) => h.cordoned).length);
    },
  });
  new Gauge({
    name: 'lxr_workspaces',
    help: 'Workspaces by state and host (every state of every registered host is present, 0 when none).',
    labelNames: ['state', 'host'] as const,
    registers: [registry],
    collect() {
      this.reset();
      const hosts = new Set(src.hosts().map((h) => h.name));
      const ws = src.workspaces();
      for (const w of ws) hosts.add(w.host);
      for (const h of hosts) for (const s of WS_STATES) this.set({ state: s, host: h }, ws.filter((w) => w.host === h && w.state === s).length);
    },
  });
  new Gauge({
    name: 'lxr_host_reserved_cpus',
    help: 'CPU cores reserved by the workspaces placed on a host, and its capacity (lxr_host_cpus).',
    labelNames: ['host'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const h of src.hosts()) this.set({ host: h.name }, h.reservedCpus);
    },
  });
  new Gauge({
    name: 'lxr_host_cpus',
    help: 'CPU cores of a host, as its agent registered them.',
    labelNames: ['host'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const h of src.hosts()) this.set({ host: h.name }, h.cpus);
    },
  });
  new Gauge({
    name: 'lxr_subnet_pool_size',
    help: 'Subnets the cluster pool holds (one per host).',
    registers: [registry],
    collect() {
      this.set(src.pool().size);
    },
  });
  new Gauge({
    name: 'lxr_subnet_pool_used',
    help: 'Subnets of the pool given to hosts.',
    registers: [registry],
    collect() {
      this.set(src.pool().used);
    },
  });
  const scheduling = new Histogram({
    name: 'lxr_scheduling_duration_seconds',
    help: 'Time to choose a host for a workspace.',
    buckets: [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1],
    registers: [registry],
  });
  const creating = new Histogram({
    name: 'lxr_workspace_create_duration_seconds',
    help: 'Time from a create request to the workspace running (pull, create and start on the agent).',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    registers: [registry],
  });
  const handled = new Counter({
    name: 'lxr_grpc_server_handled_total',
    help: 'gRPC calls the controller completed, by method and status code.',
    labelNames: ['method', 'code'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'lxr_grpc_server_handling_seconds',
    help: 'Duration of gRPC calls the controller handled, by method and status code (streams: their whole life).',
    labelNames: ['method', 'code'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  new Gauge({ name: 'lxr_controller_info', help: 'The controller build; always 1.', labelNames: ['version'] as const, registers: [registry] }).set({ version }, 1);
  collectProcessMetrics(registry, 'lxr_controller_');
  return {
    registry,
    scheduled: (s) => scheduling.observe(s),
    created: (s) => creating.observe(s),
    rpc: (method, code, s) => {
      const c = CODES[code] ?? String(code);
      handled.inc({ method, code: c });
      duration.observe({ method, code: c }, s);
    },
  };
}
