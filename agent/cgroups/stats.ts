// Parsers for the kernel's cgroup accounting files (memory.stat, cpu.stat,
// cpuacct.usage/stat, memory.events, memory.oom_control, pids.*): text in,
// numbers out. Pure, so every format quirk is tested without a kernel.

import { LxrError } from '../../proto/shared/errors.js';

/**
 * USER_HZ, the unit of cpuacct.stat. It is 100 on every Linux ABI the kernel
 * exports to user space (CLK_TCK), independent of the kernel's CONFIG_HZ.
 */
export const USER_HZ = 100;
const NANOS_PER_TICK = 1e9 / USER_HZ;

/**
 * v1 reports "unlimited" as the largest page-aligned value (9223372036854771712
 * with 4 KiB pages, other values with other page sizes). No real limit is
 * anywhere near 2^53 bytes (8 PiB), and beyond it a number cannot hold the
 * value exactly anyway, so anything above counts as unlimited.
 */
export const UNLIMITED_ABOVE = Number.MAX_SAFE_INTEGER;

function bad(file: string, text: string): LxrError {
  return new LxrError('LXR_INTERNAL', `unexpected content in ${file}: ${JSON.stringify(text.slice(0, 80))}`, { step: `read ${file}` });
}

/** "key value" lines (memory.stat, cpu.stat, cpuacct.stat, memory.events, memory.oom_control). */
export function parseKeyed(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value, ...rest] = line.trim().split(/\s+/);
    if (key === undefined || key === '' || value === undefined || rest.length > 0) continue;
    const n = Number(value);
    if (Number.isFinite(n)) out.set(key, n);
  }
  return out;
}

/** A single counter such as memory.current, pids.current, cpuacct.usage. */
export function parseCounter(text: string, file: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw bad(file, text);
  return Number(t);
}

/** A limit file: "max" (v2), -1, or v1's huge sentinel all mean unlimited (null). */
export function parseLimit(text: string, file: string): number | null {
  const t = text.trim();
  if (t === 'max' || t === '-1') return null;
  if (!/^\d+$/.test(t)) throw bad(file, text);
  const n = Number(t);
  return n > UNLIMITED_ABOVE ? null : n;
}

export interface CpuUsage {
  usageNanos: number;
  userNanos: number;
  systemNanos: number;
}

/** v1: cpuacct.usage is in nanoseconds, cpuacct.stat's user/system in USER_HZ ticks. */
export function v1CpuUsage(usageText: string, statText: string): CpuUsage {
  const stat = parseKeyed(statText);
  return {
    usageNanos: parseCounter(usageText, 'cpuacct.usage'),
    userNanos: (stat.get('user') ?? 0) * NANOS_PER_TICK,
    systemNanos: (stat.get('system') ?? 0) * NANOS_PER_TICK,
  };
}

/** v2: cpu.stat's *_usec fields are in microseconds. */
export function v2CpuUsage(statText: string): CpuUsage {
  const stat = parseKeyed(statText);
  return {
    usageNanos: (stat.get('usage_usec') ?? 0) * 1000,
    userNanos: (stat.get('user_usec') ?? 0) * 1000,
    systemNanos: (stat.get('system_usec') ?? 0) * 1000,
  };
}

/**
 * cAdvisor's working set: usage minus the inactive page cache the kernel can
 * drop at once. The two are read at different instants, so clamp at 0.
 */
export function workingSet(usageBytes: number, inactiveFileBytes: number): number {
  return Math.max(0, usageBytes - inactiveFileBytes);
}

/** The inactive_file key: hierarchical ("total_") on v1, where the plain key counts only this cgroup. */
export function inactiveFile(memoryStatText: string, version: 1 | 2): number {
  const stat = parseKeyed(memoryStatText);
  return version === 1 ? (stat.get('total_inactive_file') ?? stat.get('inactive_file') ?? 0) : (stat.get('inactive_file') ?? 0);
}

/** The oom_kill counter of memory.events (v2) or memory.oom_control (v1, kernel >= 4.13). */
export function oomKills(text: string): number {
  return parseKeyed(text).get('oom_kill') ?? 0;
}
