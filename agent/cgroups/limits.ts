// Checking and splitting OCI resource limits before they reach cgroupfs:
// the cgroup path, the values' ranges, and which controller each limit
// belongs to. Pure: the v1/v2 planners turn the result into file writes.

import { invalidArgument } from '../../proto/shared/errors.js';
import type { CgroupLimits } from './cgroup.js';
import type { Controller } from './detect.js';

export const PATH_FIELD = 'linux.cgroupsPath';

/** One control-file write a planner asks for; `field` is the OCI field it comes from. */
export interface CgroupWrite {
  controller: Controller;
  file: string;
  value: string;
  field: string;
}

/** The kernel's bounds for cpu.shares (v1 clamps to them; we reject instead of silently changing the value). */
export const MIN_SHARES = 2;
export const MAX_SHARES = 262144;

/**
 * The cgroup path relative to every hierarchy's root. A leading "/" is
 * accepted because OCI's absolute cgroupsPath means "from the root of the
 * hierarchy", as in runc; "." and ".." are refused so no path can leave it.
 */
export function normalizeCgroupPath(path: string): string {
  if (typeof path !== 'string' || path.trim() === '') throw invalidArgument(PATH_FIELD, 'must not be empty');
  // Control characters would corrupt the line format of /proc/<pid>/cgroup.
  if (/[\x00-\x1f]/.test(path)) throw invalidArgument(PATH_FIELD, `must not contain control characters: ${JSON.stringify(path)}`);
  const segments = path.split('/').filter((s) => s !== '');
  if (segments.length === 0) throw invalidArgument(PATH_FIELD, 'names the root cgroup; a container needs a cgroup of its own');
  for (const s of segments) {
    if (s === '.' || s === '..') throw invalidArgument(PATH_FIELD, `must not contain "${s}" segments: ${JSON.stringify(path)}`);
  }
  return segments.join('/');
}

/** Set means present and not 0: runc's reading of the OCI fields, where 0 is "leave as is". */
export const isSet = (v: number | undefined): v is number => v !== undefined && v !== 0;

function checkInt(field: string, v: number | undefined, ok: (v: number) => boolean, problem: string): void {
  if (v === undefined) return;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalidArgument(field, `must be an integer, got ${String(v)}`);
  if (!ok(v)) throw invalidArgument(field, `${problem}, got ${v}`);
}

// Linux cpu list syntax (cpuset(7)): "0-3,8,10-11".
const CPU_LIST = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

export function validateLimits(limits: CgroupLimits): void {
  const m = limits.memory;
  if (m) {
    const bytes = (v: number) => v === -1 || v >= 0;
    checkInt('linux.resources.memory.limit', m.limit, bytes, 'must be -1 (unlimited), 0 (unset) or a byte count');
    checkInt('linux.resources.memory.reservation', m.reservation, bytes, 'must be -1 (unlimited), 0 (unset) or a byte count');
    checkInt('linux.resources.memory.swap', m.swap, bytes, 'must be -1 (unlimited), 0 (unset) or a byte count');
    if (isSet(m.limit) && m.limit > 0 && isSet(m.swap) && m.swap > 0 && m.swap < m.limit) {
      throw invalidArgument('linux.resources.memory.swap', `is memory+swap and must be >= memory.limit (${m.limit}), got ${m.swap}`);
    }
  }
  const c = limits.cpu;
  if (c) {
    checkInt('linux.resources.cpu.shares', c.shares, (v) => v === 0 || (v >= MIN_SHARES && v <= MAX_SHARES), `must be 0 (unset) or ${MIN_SHARES}..${MAX_SHARES}`);
    checkInt('linux.resources.cpu.quota', c.quota, (v) => v >= -1, 'must be -1 (unlimited), 0 (unset) or microseconds');
    checkInt('linux.resources.cpu.period', c.period, (v) => v >= 0, 'must be 0 (unset) or microseconds');
    for (const key of ['cpus', 'mems'] as const) {
      const v = c[key];
      if (v === undefined || v === '') continue;
      if (typeof v !== 'string' || !CPU_LIST.test(v)) throw invalidArgument(`linux.resources.cpu.${key}`, `must be a list like "0-3,6", got ${JSON.stringify(v)}`);
    }
  }
  if (limits.pids) {
    checkInt('linux.resources.pids.limit', limits.pids.limit, (v) => v >= -1, 'must be -1 or 0 (unlimited) or a count');
  }
}

/** The controllers the limits would write to, each with the first OCI field that needs it. */
export function controllersNeeded(limits: CgroupLimits): Map<Controller, string> {
  const need = new Map<Controller, string>();
  const m = limits.memory;
  if (m && (isSet(m.limit) || isSet(m.reservation) || isSet(m.swap))) need.set('memory', 'linux.resources.memory');
  const c = limits.cpu;
  if (c && (isSet(c.shares) || isSet(c.quota) || isSet(c.period))) need.set('cpu', 'linux.resources.cpu');
  if (c && ((c.cpus ?? '') !== '' || (c.mems ?? '') !== '')) need.set('cpuset', 'linux.resources.cpu.cpus');
  if (limits.pids) need.set('pids', 'linux.resources.pids.limit');
  return need;
}

/** The part of `limits` whose controllers satisfy `owns` (so a hybrid host can split them between v1 and v2). */
export function pickLimits(limits: CgroupLimits, owns: (c: Controller) => boolean): CgroupLimits {
  const out: CgroupLimits = {};
  if (limits.memory && owns('memory')) out.memory = { ...limits.memory };
  const c = limits.cpu;
  if (c) {
    const cpu: NonNullable<CgroupLimits['cpu']> = {};
    if (owns('cpu')) {
      if (c.shares !== undefined) cpu.shares = c.shares;
      if (c.quota !== undefined) cpu.quota = c.quota;
      if (c.period !== undefined) cpu.period = c.period;
    }
    if (owns('cpuset')) {
      if (c.cpus !== undefined) cpu.cpus = c.cpus;
      if (c.mems !== undefined) cpu.mems = c.mems;
    }
    if (Object.keys(cpu).length > 0) out.cpu = cpu;
  }
  if (limits.pids && owns('pids')) out.pids = { ...limits.pids };
  if (limits.devices && owns('devices')) out.devices = limits.devices.map((d) => ({ ...d }));
  return out;
}
