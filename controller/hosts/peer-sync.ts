// Routes follow the cluster: every Ready agent is told the whole peer list
// (each other host's address and subnet), and the LXR endpoints its
// containers may not reach (every agent's API and metrics, the
// controller's), whenever it changed or the agent came back, and again
// until it has accepted it.
import type { Peer } from '../../proto/shared/api-types.js';
import type { Logger } from '../../proto/shared/log.js';
import type { AgentGateway } from '../agents/agent-gateway.js';
import type { HostRegistry } from './host-registry.js';

/** "198.18.0.1:7070" -> "198.18.0.1"; "[fd00::1]:7070" -> "fd00::1". */
export const hostOf = (address: string): string => address.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');

const IPV4_ENDPOINT = /^\d{1,3}(\.\d{1,3}){3}:\d{1,5}$/;

export class PeerSync {
  /** The controller's own TCP endpoints (gRPC, metrics), once bound. */
  private controllerEndpoints: string[] = [];
  /** The list's generation: one more at every change. */
  private generation = 0;
  /** Host -> the generation of the list its agent has. */
  private readonly synced = new Map<string, number>();
  private running: Promise<void> | null = null;

  constructor(
    private readonly hosts: HostRegistry,
    private readonly gateway: AgentGateway,
    private readonly log?: Logger,
  ) {
    hosts.on('changed', () => {
      this.generation++;
      void this.sync();
    });
    hosts.on('ready', (name: string) => {
      this.synced.delete(name);
      void this.sync();
    });
  }

  peersOf(name: string): Peer[] {
    return this.hosts
      .names()
      .filter((n) => n !== name)
      .map((n) => {
        const h = this.hosts.record(n)!;
        return { name: n, address: hostOf(h.address), subnet: h.subnet };
      });
  }

  /** Every LXR server endpoint in the cluster with a specific IPv4 address (0.0.0.0 names none). */
  protectedEndpoints(): string[] {
    const all = new Set<string>(this.controllerEndpoints);
    for (const n of this.hosts.names()) {
      const h = this.hosts.record(n)!;
      for (const e of [h.address, h.metricsAddress]) if (e && IPV4_ENDPOINT.test(e) && !e.startsWith('0.0.0.0:')) all.add(e);
    }
    return [...all].sort();
  }

  /** Tells the agents about the controller's endpoints too (known once it has bound them). */
  setControllerEndpoints(endpoints: readonly string[]): void {
    this.controllerEndpoints = endpoints.filter((e) => IPV4_ENDPOINT.test(e) && !e.startsWith('0.0.0.0:'));
    this.generation++;
    void this.sync();
  }

  /** Whether every Ready host has the current list. */
  get current(): boolean {
    return this.hosts.names().every((n) => !this.hosts.isReady(n) || this.synced.get(n) === this.generation);
  }

  /** Pushes the list to every Ready host that does not have it; one round at a time (the reconcile loop calls it again). */
  sync(): Promise<void> {
    if (this.running) return this.running;
    const p = this.round().finally(() => {
      if (this.running === p) this.running = null;
    });
    this.running = p;
    return p;
  }

  private async round(): Promise<void> {
    for (const name of this.hosts.names()) {
      const gen = this.generation;
      if (this.synced.get(name) === gen || !this.hosts.isReady(name)) continue;
      const h = this.hosts.record(name);
      if (!h) continue;
      try {
        await this.gateway.setPeers({ name, address: h.address }, this.peersOf(name), this.protectedEndpoints());
        this.synced.set(name, gen);
      } catch (e) {
        this.log?.warn({ host: name, err: e }, 'cannot give the agent its peers; tried again');
      }
    }
  }
}
