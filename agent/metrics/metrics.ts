// The agent's Prometheus metrics: per-container gauges and counters under
// cAdvisor's names (so existing Grafana dashboards work unchanged), the
// agent's own lxr_agent_* metrics, and the HTTP endpoint that serves them.
//
// Decisions:
// - A private Registry, not prom-client's global one: several agents (tests)
//   may share a process, and nothing else should leak into our /metrics.
// - Values are read at scrape time (collect callbacks), from one snapshot
//   per scrape shared by every collector: prom-client runs the collectors
//   concurrently, so each would otherwise list containers and read their
//   cgroups again.
// - Only containers that have a cgroup (created, running) get per-container
//   series, as cAdvisor only sees live cgroups; a container whose cgroup
//   cannot be read (it stopped meanwhile) is skipped, not a failed scrape.

import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../../proto/shared/metrics-http.js';
import type { Logger } from '../../proto/shared/log.js';
import type { ContainerInfo, ContainerState, ContainerStats } from '../containers/container-service.js';

/** What the metrics read: the container service's list() and stats(). */
export interface MetricsSource {
  list(): Promise<ContainerInfo[]>;
  stats(name: string): Promise<ContainerStats>;
}

export interface AgentMetricsOptions {
  containers: MetricsSource;
  version: string;
  log?: Logger;
}

interface Snapshot {
  states: Record<ContainerState, number>;
  live: Array<{ info: ContainerInfo; stats: ContainerStats }>;
}

const CONTAINER_LABELS = ['name', 'id', 'image'] as const;
const STATES: readonly ContainerState[] = ['created', 'running', 'stopped'];

const seconds = (iso: string): number => {
  const ms = Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : 0;
};

/** The agent's registry with its collectors; `metrics()` renders a scrape. */
export function createAgentRegistry(o: AgentMetricsOptions): Registry {
  const registry = new Registry();
  let inflight: Promise<Snapshot> | undefined;

  const take = async (): Promise<Snapshot> => {
    const all = await o.containers.list();
    const states: Record<ContainerState, number> = { created: 0, running: 0, stopped: 0 };
    for (const c of all) states[c.state]++;
    const live: Snapshot['live'] = [];
    await Promise.all(
      all
        .filter((c) => c.state !== 'stopped')
        .map(async (info) => {
          try {
            live.push({ info, stats: await o.containers.stats(info.name) });
          } catch (e) {
            o.log?.debug({ container: info.name, err: e }, 'no stats for the metrics scrape');
          }
        }),
    );
    live.sort((a, b) => (a.info.name < b.info.name ? -1 : a.info.name > b.info.name ? 1 : 0));
    return { states, live };
  };
  /** One snapshot for all the collectors of a scrape. */
  const snapshot = (): Promise<Snapshot> => {
    if (!inflight) {
      const p = take();
      inflight = p;
      const clear = (): void => {
        if (inflight === p) inflight = undefined;
      };
      p.then(clear, clear);
    }
    return inflight;
  };

  const labelsOf = (c: ContainerInfo) => ({ name: c.name, id: c.id, image: c.image });
  const perContainer = (name: string, help: string, value: (s: ContainerStats, c: ContainerInfo) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: CONTAINER_LABELS,
      registers: [registry],
      async collect() {
        const snap = await snapshot();
        this.reset();
        for (const { info, stats } of snap.live) this.set(labelsOf(info), value(stats, info));
      },
    });
  };
  const perContainerCounter = (name: string, help: string, value: (s: ContainerStats) => number): void => {
    new Counter({
      name,
      help,
      labelNames: CONTAINER_LABELS,
      registers: [registry],
      async collect() {
        const snap = await snapshot();
        // A counter has no set(): the cgroup holds the running total.
        this.reset();
        for (const { info, stats } of snap.live) this.inc(labelsOf(info), value(stats));
      },
    });
  };

  perContainerCounter('container_cpu_usage_seconds_total', 'Cumulative cpu time consumed in seconds.', (s) => s.cpuUsageNanos / 1e9);
  perContainer('container_memory_usage_bytes', 'Current memory usage in bytes, including all memory regardless of when it was accessed.', (s) => s.memoryUsageBytes);
  perContainer('container_memory_working_set_bytes', 'Current working set in bytes.', (s) => s.memoryWorkingSetBytes);
  perContainer('container_spec_memory_limit_bytes', 'Memory limit for the container (0 = unlimited).', (s) => s.memoryLimitBytes);
  perContainer('container_processes', 'Number of processes running inside the container.', (s) => s.pids);
  perContainer('container_start_time_seconds', 'Start time of the container since unix epoch in seconds.', (_s, c) => seconds(c.startedAt || c.createdAt));
  perContainerCounter('container_oom_events_total', 'Count of out of memory events observed for the container.', (s) => s.oomKills);

  new Gauge({
    name: 'lxr_agent_containers',
    help: 'Containers on this host by state.',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const snap = await snapshot();
      for (const s of STATES) this.set({ state: s }, snap.states[s]);
    },
  });
  new Gauge({ name: 'lxr_agent_info', help: 'The agent build; always 1.', labelNames: ['version'] as const, registers: [registry] }).set({ version: o.version }, 1);
  collectProcessMetrics(registry, 'lxr_agent_');
  return registry;
}
