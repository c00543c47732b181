// cgroup v2 (the unified hierarchy): how OCI limits map onto its control
// files (memory.max, cpu.max, cpu.weight, ...), with OCI's v1-shaped values
// converted, and which controllers a parent must delegate. Pure planning.

import { invalidArgument } from '../../proto/shared/errors.js';
import type { CgroupLimits } from './cgroup.js';
import type { Controller } from './detect.js';
import { isSet, type CgroupWrite } from './limits.js';
import { pidsMax } from './v1.js';

export interface V2PlanContext {
  /** memory.swap.max is missing without swap accounting; swap is then not limited. */
  swapAvailable: boolean;
  /** Current memory.max, read when swap changes without the limit (memory.swap.max is swap only). */
  currentMemoryMax?: number | null;
  /** Current cpu.max ("max 100000"), read when only one of quota and period changes. */
  currentCpuMax?: string;
}

export const DEFAULT_CPU_PERIOD = 100000;

/** runc's (and the kernel docs') mapping of v1 shares [2, 262144] onto v2 weight [1, 10000]. */
export function sharesToWeight(shares: number): number {
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

const maxOr = (v: number): string => (v < 0 ? 'max' : String(v));

export function planV2Writes(limits: CgroupLimits, ctx: V2PlanContext): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  const c = limits.cpu;
  if (c?.cpus) out.push({ controller: 'cpuset', file: 'cpuset.cpus', value: c.cpus, field: 'linux.resources.cpu.cpus' });
  if (c?.mems) out.push({ controller: 'cpuset', file: 'cpuset.mems', value: c.mems, field: 'linux.resources.cpu.mems' });

  const m = limits.memory;
  if (m) {
    if (isSet(m.limit)) out.push({ controller: 'memory', file: 'memory.max', value: maxOr(m.limit), field: 'linux.resources.memory.limit' });
    if (isSet(m.swap) && ctx.swapAvailable) {
      out.push({ controller: 'memory', file: 'memory.swap.max', value: swapMax(m.swap, isSet(m.limit) ? m.limit : ctx.currentMemoryMax ?? -1), field: 'linux.resources.memory.swap' });
    }
    if (isSet(m.reservation)) out.push({ controller: 'memory', file: 'memory.low', value: maxOr(m.reservation), field: 'linux.resources.memory.reservation' });
  }

  if (c) {
    if (isSet(c.shares)) out.push({ controller: 'cpu', file: 'cpu.weight', value: String(sharesToWeight(c.shares)), field: 'linux.resources.cpu.shares' });
    if (isSet(c.quota) || isSet(c.period)) {
      // cpu.max holds both; keep the current half that is not changing.
      const [curQuota, curPeriod] = (ctx.currentCpuMax ?? '').trim().split(/\s+/);
      const quota = isSet(c.quota) ? maxOr(c.quota) : curQuota || 'max';
      const period = isSet(c.period) ? String(c.period) : curPeriod || String(DEFAULT_CPU_PERIOD);
      out.push({ controller: 'cpu', file: 'cpu.max', value: `${quota} ${period}`, field: isSet(c.quota) ? 'linux.resources.cpu.quota' : 'linux.resources.cpu.period' });
    }
  }

  if (limits.pids) out.push({ controller: 'pids', file: 'pids.max', value: pidsMax(limits.pids.limit), field: 'linux.resources.pids.limit' });
  return out;
}

/** OCI swap is memory+swap; v2 limits swap alone, so it needs a finite memory limit to subtract. */
export function swapMax(ociSwap: number, memoryLimit: number | null): string {
  if (ociSwap < 0) return 'max';
  if (memoryLimit === null || memoryLimit < 0) {
    throw invalidArgument('linux.resources.memory.swap', 'needs a memory limit on cgroup v2 (swap is memory+swap)');
  }
  if (ociSwap < memoryLimit) {
    throw invalidArgument('linux.resources.memory.swap', `is memory+swap and must be >= the memory limit (${memoryLimit}), got ${ociSwap}`);
  }
  return String(ociSwap - memoryLimit);
}

/** The v2 controllers LXR delegates to a container's cgroup (stats need them even without limits). */
export const V2_DELEGATED: readonly Controller[] = ['cpu', 'cpuset', 'memory', 'pids'];

/**
 * Which "+controller" writes each ancestor's cgroup.subtree_control needs so
 * the leaf gets `wanted`: `current` is each ancestor's subtree_control text,
 * from the hierarchy root down to the leaf's parent.
 */
export function planSubtreeControl(current: readonly string[], wanted: readonly Controller[]): string[][] {
  return current.map((text) => {
    const enabled = new Set(text.trim().split(/\s+/).filter((s) => s !== ''));
    return wanted.filter((c) => !enabled.has(c)).map((c) => `+${c}`);
  });
}

export const V2_FILES = {
  cpuStat: 'cpu.stat',
  memUsage: 'memory.current',
  memStat: 'memory.stat',
  memLimit: 'memory.max',
  memEvents: 'memory.events',
  swapMax: 'memory.swap.max',
  cpuMax: 'cpu.max',
  kill: 'cgroup.kill',
  controllers: 'cgroup.controllers',
  subtreeControl: 'cgroup.subtree_control',
} as const;
