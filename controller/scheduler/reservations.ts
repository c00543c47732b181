// Promises made to workspaces still being created: until a host reports the
// workspace, its request lives here so that concurrent creates scheduled from
// the same snapshot never over-commit a host. In memory; keyed by workspace.
import { schedule } from './schedule.js';
import type { Decision, HostView, Policy, ScheduleRequest } from './types.js';

export interface Reservation {
  host: string;
  cpus: number;
  memoryBytes: number;
}

export class Reservations {
  readonly #byKey = new Map<string, Reservation>();

  /** Reserving the same key again replaces the earlier reservation. */
  reserve(host: string, key: string, cpus: number, memoryBytes: number): void {
    this.#byKey.set(key, { host, cpus, memoryBytes });
  }

  /** Returns whether there was a reservation for the key. */
  release(key: string): boolean {
    return this.#byKey.delete(key);
  }

  get(key: string): Reservation | undefined {
    const r = this.#byKey.get(key);
    return r === undefined ? undefined : { ...r };
  }

  get size(): number {
    return this.#byKey.size;
  }

  /** New views with the reservations added; the input is left alone. `except` leaves one key out. */
  apply(hosts: readonly HostView[], except?: string): HostView[] {
    const add = new Map<string, { cpus: number; memoryBytes: number; n: number }>();
    for (const [key, r] of this.#byKey) {
      if (key === except) continue;
      const a = add.get(r.host) ?? { cpus: 0, memoryBytes: 0, n: 0 };
      a.cpus += r.cpus;
      a.memoryBytes += r.memoryBytes;
      a.n += 1;
      add.set(r.host, a);
    }
    return hosts.map((h) => {
      const a = add.get(h.name);
      const view: HostView = { ...h, labels: { ...h.labels } };
      if (a === undefined) return view;
      view.reservedCpus += a.cpus;
      view.reservedMemoryBytes += a.memoryBytes;
      view.workspaces += a.n;
      return view;
    });
  }

  /**
   * Schedules against the hosts plus the reservations and, when a host is
   * chosen, reserves it for `key` in the same synchronous step, so no other
   * create can be placed in between.
   */
  place(hosts: readonly HostView[], key: string, req: ScheduleRequest, policy: Policy = 'spread'): Decision {
    const d = schedule(this.apply(hosts, key), req, policy);
    if (d.ok) this.reserve(d.host, key, req.cpus, req.memoryBytes);
    return d;
  }
}
