// cgroup v1 (one hierarchy per controller): how OCI limits map onto its
// control files (memory.limit_in_bytes, cpu.cfs_quota_us, cpuset.cpus, ...)
// and in which order the kernel accepts them. Pure planning.

import type { CgroupLimits } from './cgroup.js';
import { isSet, type CgroupWrite } from './limits.js';

export interface V1PlanContext {
  /** memory.memsw.limit_in_bytes exists only with swap accounting (swapaccount=1); without it swap is not limited. */
  memswAvailable: boolean;
  /** The current memory+swap limit, read when both limit and swap change; null or absent = unlimited. */
  currentMemswLimit?: number | null;
}

const bytes = (v: number): string => (v < 0 ? '-1' : String(v));

export function planV1Writes(limits: CgroupLimits, ctx: V1PlanContext): CgroupWrite[] {
  const out: CgroupWrite[] = [];
  const c = limits.cpu;
  // cpus before mems, as runc: either order works for a cgroup without tasks.
  if (c?.cpus) out.push({ controller: 'cpuset', file: 'cpuset.cpus', value: c.cpus, field: 'linux.resources.cpu.cpus' });
  if (c?.mems) out.push({ controller: 'cpuset', file: 'cpuset.mems', value: c.mems, field: 'linux.resources.cpu.mems' });

  const m = limits.memory;
  if (m) {
    const limit: CgroupWrite | undefined = isSet(m.limit)
      ? { controller: 'memory', file: 'memory.limit_in_bytes', value: bytes(m.limit), field: 'linux.resources.memory.limit' }
      : undefined;
    const swap: CgroupWrite | undefined =
      isSet(m.swap) && ctx.memswAvailable
        ? { controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: bytes(m.swap), field: 'linux.resources.memory.swap' }
        : undefined;
    if (limit && swap) {
      // The kernel keeps limit <= memsw at every instant. Writing the limit
      // first works iff the new limit fits under the current memsw; when it
      // does not, memsw must grow first (and then the old limit fits under it).
      const newLimit = m.limit! < 0 ? Infinity : m.limit!;
      const curMemsw = ctx.currentMemswLimit ?? Infinity;
      if (newLimit <= curMemsw) out.push(limit, swap);
      else out.push(swap, limit);
    } else {
      if (limit) out.push(limit);
      if (swap) out.push(swap);
    }
    if (isSet(m.reservation)) {
      out.push({ controller: 'memory', file: 'memory.soft_limit_in_bytes', value: bytes(m.reservation), field: 'linux.resources.memory.reservation' });
    }
  }

  if (c) {
    if (isSet(c.shares)) out.push({ controller: 'cpu', file: 'cpu.shares', value: String(c.shares), field: 'linux.resources.cpu.shares' });
    // Period first, as runc: the quota is then checked against the period it will run with.
    if (isSet(c.period)) out.push({ controller: 'cpu', file: 'cpu.cfs_period_us', value: String(c.period), field: 'linux.resources.cpu.period' });
    if (isSet(c.quota)) out.push({ controller: 'cpu', file: 'cpu.cfs_quota_us', value: c.quota < 0 ? '-1' : String(c.quota), field: 'linux.resources.cpu.quota' });
  }

  if (limits.pids) out.push({ controller: 'pids', file: 'pids.max', value: pidsMax(limits.pids.limit), field: 'linux.resources.pids.limit' });

  // Device rules in order: with CAP_MKNOD a container could otherwise make
  // a node for the host's disk and read it.
  (limits.devices ?? []).forEach((d, i) => {
    out.push({ controller: 'devices', file: d.allow ? 'devices.allow' : 'devices.deny', value: deviceRule(d), field: `linux.resources.devices[${i}]` });
  });
  return out;
}

/** "c 1:3 rwm"; a missing type is "a" (all), a missing number "*". */
export function deviceRule(d: NonNullable<CgroupLimits['devices']>[number]): string {
  const type = !d.type || d.type === 'a' ? 'a' : d.type;
  return `${type} ${d.major === undefined || d.major < 0 ? '*' : d.major}:${d.minor === undefined || d.minor < 0 ? '*' : d.minor} ${d.access || 'rwm'}`;
}

/** OCI pids.limit: -1 and 0 both mean no limit (runc's reading). Same file on v1 and v2. */
export function pidsMax(limit: number): string {
  return limit <= 0 ? 'max' : String(limit);
}

/** The files create() copies from the parent into each new v1 cpuset cgroup: empty ones refuse tasks (ENOSPC). */
export const CPUSET_INHERITED = ['cpuset.cpus', 'cpuset.mems'] as const;

/** v1 file names the stats reader uses. */
export const V1_FILES = {
  cpuUsage: 'cpuacct.usage',
  cpuStat: 'cpuacct.stat',
  memUsage: 'memory.usage_in_bytes',
  memStat: 'memory.stat',
  memLimit: 'memory.limit_in_bytes',
  memOom: 'memory.oom_control',
  memsw: 'memory.memsw.limit_in_bytes',
} as const;
