// Choosing among the hosts that fit: spread keeps hosts evenly loaded (less
// blast radius, more headroom per workspace), binpack fills hosts so others
// stay empty for big workspaces or can be drained. Ties are broken by name
// so that the same snapshot always gives the same host.
import type { HostView, Policy, ScheduleRequest } from './types.js';

const EPSILON = 1e-9;

function fraction(used: number, capacity: number): number {
  if (!(capacity > 0)) return used > 0 ? 1 : 0;
  return used / capacity;
}

/** How full the host would be after placing the request: its busiest resource. */
export function loadAfter(h: HostView, req: ScheduleRequest): number {
  return Math.max(fraction(h.reservedCpus + req.cpus, h.cpus), fraction(h.reservedMemoryBytes + req.memoryBytes, h.memoryBytes));
}

/** Negative when `a` is the better host under the policy. */
export function compareHosts(a: HostView, b: HostView, req: ScheduleRequest, policy: Policy): number {
  const sign = policy === 'spread' ? 1 : -1;
  const la = loadAfter(a, req);
  const lb = loadAfter(b, req);
  if (Math.abs(la - lb) > EPSILON) return sign * (la - lb);
  if (a.workspaces !== b.workspaces) return sign * (a.workspaces - b.workspaces);
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** The best of the candidates (which must all fit), or undefined when there are none. */
export function pickHost(candidates: readonly HostView[], req: ScheduleRequest, policy: Policy): HostView | undefined {
  let best: HostView | undefined;
  for (const h of candidates) if (best === undefined || compareHosts(h, best, req, policy) < 0) best = h;
  return best;
}
