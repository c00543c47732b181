// The cluster's hosts: agents register (name, address, capacity, labels)
// and keep a heartbeat; a host is Ready from its first heartbeat (sent once
// the agent serves), NotReady after the grace period without one, and
// Ready again when the next one arrives. Each host holds one
// subnet of the pool for as long as it is registered (registering again
// keeps it). Records are durable ("hosts/NAME"); heartbeats and usage are
// only in memory: after a controller restart every host is NotReady until
// it is heard from, since nothing is known about it until then.
import { EventEmitter } from 'node:events';
import { invalidArgument, LxrError, notFound } from '../../proto/shared/errors.js';
import type { HostUsage } from '../../proto/shared/api-types.js';
import type { ClusterHost, RegisterHostRequest } from '../../proto/shared/controller-types.js';
import type { Logger } from '../../proto/shared/log.js';
import type { Store } from '../store/index.js';
import type { SubnetPool } from '../subnets/subnet-pool.js';
import { checkDnsLabel } from '../workspaces/validate.js';

/** What is stored of a host: its registration, subnet and cordon; not its liveness. */
export type HostRecord = Pick<ClusterHost, 'name' | 'address' | 'metricsAddress' | 'subnet' | 'cordoned' | 'cpus' | 'memoryBytes' | 'architecture' | 'labels' | 'agentVersion' | 'registeredAt'>;

interface Live {
  ready: boolean;
  lastHeartbeat: number;
  usage: HostUsage | null;
}

export const hostKey = (name: string): string => `hosts/${name}`;

export interface HostRegistryOptions {
  store: Store;
  subnets: SubnetPool;
  /** Milliseconds without a heartbeat before a host is NotReady. */
  graceMs: number;
  now?: () => number;
  log?: Logger;
  /** Runs before a host is forgotten (the controller revokes its certificates), so it cannot come back in between. */
  beforeRemove?: (name: string) => Promise<unknown>;
}

/**
 * Events: 'ready' (name), 'notready' (name), 'changed' () whenever the set
 * of hosts, an address or a subnet changed (the peers lists must follow).
 */
export class HostRegistry extends EventEmitter {
  private readonly records = new Map<string, { rec: HostRecord; revision: number }>();
  private readonly live = new Map<string, Live>();
  private readonly now: () => number;

  constructor(private readonly o: HostRegistryOptions) {
    super();
    this.now = o.now ?? Date.now;
  }

  /** Reads the records and takes their subnets from the pool. */
  async load(): Promise<void> {
    for (const r of await this.o.store.list<HostRecord>('hosts/')) {
      if (!this.o.subnets.take(r.value.subnet)) {
        throw new LxrError('LXR_INTERNAL', `hosts ${r.value.name} and another one hold the same subnet ${r.value.subnet} in the store`);
      }
      this.records.set(r.value.name, { rec: r.value, revision: r.revision });
      this.live.set(r.value.name, { ready: false, lastHeartbeat: 0, usage: null });
    }
  }

  names(): string[] {
    return [...this.records.keys()].sort();
  }

  record(name: string): HostRecord | undefined {
    return this.records.get(name)?.rec;
  }

  /** The record, or NOT_FOUND. */
  must(name: string): HostRecord {
    const r = this.records.get(name);
    if (!r) throw notFound('host', name);
    return r.rec;
  }

  isReady(name: string): boolean {
    return this.live.get(name)?.ready ?? false;
  }

  view(name: string): ClusterHost {
    const rec = this.must(name);
    const l = this.live.get(name)!;
    return {
      ...rec,
      labels: { ...rec.labels },
      state: l.ready ? 'Ready' : 'NotReady',
      lastHeartbeat: l.lastHeartbeat ? new Date(l.lastHeartbeat).toISOString() : '',
      reservedCpus: 0,
      reservedMemoryBytes: 0,
      workspaces: 0,
      usage: l.usage ? { ...l.usage } : null,
    };
  }

  async register(req: RegisterHostRequest): Promise<HostRecord> {
    const name = checkDnsLabel(req.name, 'name');
    const address = checkHostPort(req.address, 'address');
    const metricsAddress = req.metricsAddress ? checkHostPort(req.metricsAddress, 'metrics_address') : '';
    if (!Number.isInteger(req.cpus) || (req.cpus ?? 0) < 1) throw invalidArgument('cpus', `must be a whole number of at least 1, got ${req.cpus ?? 0}`);
    if (!Number.isSafeInteger(req.memoryBytes) || (req.memoryBytes ?? 0) < 1) throw invalidArgument('memory_bytes', `must be a positive number of bytes, got ${req.memoryBytes ?? 0}`);
    if (!req.architecture) throw invalidArgument('architecture', 'required (amd64, arm64, ...)');
    const prev = this.records.get(name);
    let subnet = prev?.rec.subnet ?? '';
    let allocated = false;
    if (!prev) {
      if (req.subnet && (this.o.subnets.slotOf(req.subnet, 'subnet'), this.o.subnets.take(req.subnet))) subnet = req.subnet;
      else subnet = this.o.subnets.allocate();
      allocated = true;
    }
    const rec: HostRecord = {
      name,
      address,
      metricsAddress,
      subnet,
      cordoned: prev?.rec.cordoned ?? false,
      cpus: req.cpus!,
      memoryBytes: req.memoryBytes!,
      architecture: req.architecture,
      labels: { ...(req.labels ?? {}) },
      agentVersion: req.agentVersion ?? '',
      registeredAt: prev?.rec.registeredAt ?? new Date(this.now()).toISOString(),
    };
    try {
      await this.put(rec, prev?.revision ?? 0);
    } catch (e) {
      if (allocated) this.o.subnets.release(subnet);
      throw e;
    }
    const changed = !prev || prev.rec.address !== rec.address;
    // Ready only with the first heartbeat: an agent registers before it serves (it needs its subnet first).
    if (!this.live.has(name)) this.live.set(name, { ready: false, lastHeartbeat: 0, usage: null });
    this.o.log?.info({ host: name, address, subnet, again: !!prev }, 'host registered');
    if (changed) this.emit('changed');
    return rec;
  }

  /** A heartbeat: NOT_FOUND for a host the controller does not know (it registers again). */
  heartbeat(name: string | undefined, usage: Partial<HostUsage> | null | undefined): void {
    if (!name || !this.records.has(name)) throw notFound('host', name ?? '');
    this.beat(name, usage ? { containers: 0, running: 0, reservedCpus: 0, reservedMemoryBytes: 0, load1: 0, memoryUsedBytes: 0, ...usage } : null);
  }

  private beat(name: string, usage: HostUsage | null): void {
    const l = this.live.get(name) ?? { ready: false, lastHeartbeat: 0, usage: null };
    l.lastHeartbeat = this.now();
    if (usage) l.usage = usage;
    this.live.set(name, l);
    if (!l.ready) {
      l.ready = true;
      this.o.log?.info({ host: name }, 'host Ready');
      this.emit('ready', name);
    }
  }

  /** Marks hosts whose last heartbeat is older than the grace period NotReady. */
  tick(): void {
    const t = this.now();
    for (const [name, l] of this.live) {
      if (l.ready && t - l.lastHeartbeat > this.o.graceMs) {
        l.ready = false;
        this.o.log?.warn({ host: name, silentMs: t - l.lastHeartbeat }, 'host NotReady: no heartbeat');
        this.emit('notready', name);
      }
    }
  }

  /** Since when (ms) a NotReady host is silent; 0 when Ready. */
  silentFor(name: string): number {
    const l = this.live.get(name);
    if (!l || l.ready) return 0;
    return this.now() - l.lastHeartbeat;
  }

  async setCordoned(name: string, cordoned: boolean): Promise<HostRecord> {
    const cur = this.records.get(name);
    if (!cur) throw notFound('host', name);
    if (cur.rec.cordoned === cordoned) return cur.rec;
    await this.put({ ...cur.rec, cordoned }, cur.revision);
    this.o.log?.info({ host: name, cordoned }, cordoned ? 'host cordoned' : 'host uncordoned');
    return this.must(name);
  }

  /** Forgets the host and releases its subnet. */
  async remove(name: string): Promise<void> {
    if (!this.records.has(name)) throw notFound('host', name);
    await this.o.beforeRemove?.(name);
    const cur = this.records.get(name);
    if (!cur) throw notFound('host', name);
    await this.o.store.commit([{ type: 'delete', key: hostKey(name), expect: cur.revision }]);
    this.records.delete(name);
    this.live.delete(name);
    this.o.subnets.release(cur.rec.subnet);
    this.o.log?.info({ host: name, subnet: cur.rec.subnet }, 'host removed');
    this.emit('changed');
  }

  private async put(rec: HostRecord, expect: number): Promise<void> {
    const revision = await this.o.store.commit([{ type: 'put', key: hostKey(rec.name), value: rec, expect }]);
    this.records.set(rec.name, { rec, revision });
  }
}

/** HOST:PORT with a port 1-65535 (an IPv6 host in brackets). */
export function checkHostPort(v: string | undefined, field: string): string {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(v ?? '');
  const port = m ? Number(m[2]) : 0;
  if (!m || port < 1 || port > 65535) throw invalidArgument(field, `${JSON.stringify(v ?? '')} is not HOST:PORT`);
  return v!;
}
