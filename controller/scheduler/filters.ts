// The yes/no questions asked of every host before any scoring: each filter
// returns null when the host can take the request, or the reason it cannot,
// worded for the operator who reads it in an error.
import { formatBytes, formatCpus } from './format.js';
import type { HostView, ScheduleRequest } from './types.js';

export type Filter = (host: HostView, req: ScheduleRequest) => string | null;

// Absorbs float noise such as 0.1 + 0.2 so that exact fits are not refused.
const EPSILON = 1e-9;

export const unreservedCpus = (h: HostView): number => Math.max(0, h.cpus - h.reservedCpus);
export const unreservedMemory = (h: HostView): number => Math.max(0, h.memoryBytes - h.reservedMemoryBytes);

export const ready: Filter = (h) => (h.ready ? null : 'NotReady');

export const notCordoned: Filter = (h) => (h.cordoned ? 'cordoned' : null);

export const enoughCpu: Filter = (h, req) => {
  if (req.cpus === 0) return null;
  const free = unreservedCpus(h);
  if (req.cpus <= free + EPSILON) return null;
  return `needs ${formatCpus(req.cpus)} ${req.cpus === 1 ? 'cpu' : 'cpus'}, ${formatCpus(free)} of ${formatCpus(h.cpus)} unreserved`;
};

export const enoughMemory: Filter = (h, req) => {
  if (req.memoryBytes === 0) return null;
  const free = unreservedMemory(h);
  if (req.memoryBytes <= free) return null;
  return `needs ${formatBytes(req.memoryBytes)} memory, ${formatBytes(free)} of ${formatBytes(h.memoryBytes)} unreserved`;
};

// Hosts report uname or Node names as often as GOARCH ones; compare the GOARCH.
const ARCH_ALIASES: Readonly<Record<string, string>> = {
  x86_64: 'amd64',
  x64: 'amd64',
  aarch64: 'arm64',
  ia32: '386',
  i386: '386',
  i686: '386',
};
export const normalizeArch = (a: string): string => {
  const lower = a.toLowerCase();
  return ARCH_ALIASES[lower] ?? lower;
};

export const architecture: Filter = (h, req) => {
  if (!req.architecture) return null;
  if (normalizeArch(h.architecture) === normalizeArch(req.architecture)) return null;
  return `architecture ${h.architecture || 'unknown'}, wants ${req.architecture}`;
};

export const labels: Filter = (h, req) => {
  const wanted = Object.entries(req.selector ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const misses: string[] = [];
  for (const [k, v] of wanted) {
    if (!Object.hasOwn(h.labels, k)) misses.push(`no label ${k}, wants ${k}=${v}`);
    else if (h.labels[k] !== v) misses.push(`label ${k}=${h.labels[k]}, wants ${k}=${v}`);
  }
  return misses.length === 0 ? null : misses.join(' and ');
};

/** In the order their reasons are reported: state first, then fit. */
export const FILTERS: readonly Filter[] = [ready, notCordoned, architecture, labels, enoughCpu, enoughMemory];

/** Every reason this host cannot take the request, joined; null when it can. */
export function whyNot(h: HostView, req: ScheduleRequest): string | null {
  const reasons: string[] = [];
  for (const f of FILTERS) {
    const r = f(h, req);
    if (r !== null) reasons.push(r);
  }
  return reasons.length === 0 ? null : reasons.join(' and ');
}
