// Which cgroup hierarchies this host has mounted, read from mountinfo: the
// mode (v1, v2, hybrid), each hierarchy's mount point and controllers, and
// which hierarchy serves each controller the backends use.

import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { LxrError } from '../../proto/shared/errors.js';
import type { CgroupMode } from './cgroup.js';

export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

/** One line of /proc/self/mountinfo (proc(5)), the fields the detection needs. */
export interface MountEntry {
  id: number;
  /** major:minor of the filesystem: two mounts of one hierarchy share it. */
  device: string;
  /** Root of the mount within its filesystem (not "/" for bind mounts of a subdirectory). */
  root: string;
  mountpoint: string;
  fstype: string;
  source: string;
  superOptions: string[];
}

export interface Hierarchy {
  version: 1 | 2;
  mountpoint: string;
  /** v1: the controllers bound to it (e.g. ["cpu", "cpuacct"]). v2: empty (availability is in cgroup.controllers). */
  controllers: string[];
  /** v1 named hierarchy without controllers, e.g. "systemd" for name=systemd. */
  name?: string;
  /** The mount point relative to the cgroup root ("memory", "cpu,cpuacct", "unified"; "" for v2 at the root). */
  subdir: string;
}

export interface CgroupLayout {
  mode: CgroupMode;
  root: string;
  /** In mountinfo order. */
  hierarchies: Hierarchy[];
}

/** The controllers the backends act on; cpuacct means "where cpu usage is read". */
export type Controller = 'memory' | 'cpu' | 'cpuacct' | 'cpuset' | 'pids' | 'devices';
export const CONTROLLERS: readonly Controller[] = ['memory', 'cpu', 'cpuacct', 'cpuset', 'pids', 'devices'];

// Mount options that can appear in a v1 cgroup mount's super options and are
// not controllers. Anything else that is not name=... is taken as a controller.
const V1_OPTIONS = new Set(['rw', 'ro', 'xattr', 'noprefix', 'clone_children', 'cpuset_v2_mode', 'favordynmods', 'nofavordynmods', 'none']);

/** mountinfo escapes space, tab, newline and backslash as octal (\040 ...). */
function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(' ');
    // Optional fields (shared:N, master:N ...) vary in number; " - " ends them.
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 3) continue;
    out.push({
      id: Number(fields[0]),
      device: fields[2] ?? '',
      root: unescapeOctal(fields[3] ?? ''),
      mountpoint: unescapeOctal(fields[4] ?? ''),
      fstype: fields[sep + 1] ?? '',
      source: unescapeOctal(fields[sep + 2] ?? ''),
      superOptions: unescapeOctal(fields[sep + 3] ?? '').split(',').filter((o) => o !== ''),
    });
  }
  return out;
}

function isUnder(path: string, root: string): boolean {
  return path === root || path.startsWith(root === '/' ? '/' : `${root}/`);
}

/**
 * The mode and hierarchies under `root`. Mounts elsewhere (e.g. a container's
 * own /sys/fs/cgroup inside its rootfs) are not the host's and are ignored.
 */
export function detectLayout(mountinfo: string, root: string = DEFAULT_CGROUP_ROOT): CgroupLayout {
  const base = posix.normalize(root).replace(/(.)\/$/, '$1');
  // A later mount under the root hides earlier ones on the same point or
  // below it (mounts above the root are left out: mountinfo order is only
  // roughly mount order, and "/" may be listed after the cgroup mounts).
  const byMountpoint = new Map<string, MountEntry>();
  for (const m of parseMountinfo(mountinfo)) {
    const mp = posix.normalize(m.mountpoint);
    if (!isUnder(mp, base)) continue;
    for (const seen of [...byMountpoint.keys()]) if (isUnder(seen, mp)) byMountpoint.delete(seen);
    if (m.fstype === 'cgroup' || m.fstype === 'cgroup2') byMountpoint.set(mp, { ...m, mountpoint: mp });
  }
  const mounts = [...byMountpoint.values()];

  const unifiedAtRoot = mounts.find((m) => m.fstype === 'cgroup2' && m.mountpoint === base);
  if (unifiedAtRoot) {
    return { mode: 'v2', root: base, hierarchies: [{ version: 2, mountpoint: base, controllers: [], subdir: '' }] };
  }

  const hierarchies: Hierarchy[] = [];
  const seenDevices = new Set<string>();
  const seenKeys = new Set<string>();
  for (const m of mounts) {
    // One hierarchy mounted twice under the root is still one hierarchy.
    if (seenDevices.has(m.device)) continue;
    seenDevices.add(m.device);
    const subdir = posix.relative(base, m.mountpoint);
    if (m.fstype === 'cgroup2') {
      if (seenKeys.has('cgroup2')) continue;
      seenKeys.add('cgroup2');
      hierarchies.push({ version: 2, mountpoint: m.mountpoint, controllers: [], subdir });
      continue;
    }
    const controllers: string[] = [];
    let name: string | undefined;
    for (const opt of m.superOptions) {
      if (opt.startsWith('name=')) name = opt.slice('name='.length);
      else if (!V1_OPTIONS.has(opt) && !opt.includes('=')) controllers.push(opt);
    }
    const key = name !== undefined ? `name=${name}` : [...controllers].sort().join(',');
    if (seenKeys.has(key)) continue;
    seenKeys.add(key);
    hierarchies.push({ version: 1, mountpoint: m.mountpoint, controllers, ...(name !== undefined ? { name } : {}), subdir });
  }

  if (!hierarchies.some((h) => h.version === 1)) {
    throw new LxrError('LXR_UNSUPPORTED', `no cgroup hierarchy is mounted under ${base}: mount cgroup2 there (or the v1 controllers)`, {
      step: 'detect cgroup hierarchies',
    });
  }
  const mode: CgroupMode = hierarchies.some((h) => h.version === 2) ? 'hybrid' : 'v1';
  return { mode, root: base, hierarchies };
}

/**
 * Which hierarchy serves each controller: a v1 hierarchy that has it, else
 * the v2 hierarchy if its root offers it (`v2Available` is that root's
 * cgroup.controllers). cpu usage is core in v2 (cpu.stat), so cpuacct always
 * falls back to v2.
 */
export function bindControllers(layout: CgroupLayout, v2Available: readonly string[]): Map<Controller, Hierarchy> {
  const bindings = new Map<Controller, Hierarchy>();
  const v2 = layout.hierarchies.find((h) => h.version === 2);
  for (const c of CONTROLLERS) {
    const v1 = layout.hierarchies.find((h) => h.version === 1 && h.controllers.includes(c));
    if (v1) bindings.set(c, v1);
    else if (v2 && (c === 'cpuacct' || v2Available.includes(c))) bindings.set(c, v2);
  }
  return bindings;
}

/** A short name for messages: "memory", "cpu,cpuacct", "name=systemd", "cgroup2". */
export function hierarchyLabel(h: Hierarchy): string {
  if (h.version === 2) return 'cgroup2';
  if (h.name !== undefined) return `name=${h.name}`;
  return h.controllers.join(',') || h.subdir;
}

export async function readMountinfo(path = '/proc/self/mountinfo'): Promise<string> {
  return readFile(path, 'utf8');
}
