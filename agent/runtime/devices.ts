// Device nodes and device-cgroup rules every container gets: the nodes the
// runtime makes in /dev, and the access rules runc always adds after a
// spec's "deny all" (those nodes, ptys, tun, and mknod of anything, since
// access is checked on open). One list, so the planner, the defaults and
// the cgroup rules cannot disagree.
import type { DeviceRule } from './oci.js';

export const DEFAULT_DEVICE_NODES: ReadonlyArray<{ path: string; major: number; minor: number }> = [
  { path: '/dev/null', major: 1, minor: 3 },
  { path: '/dev/zero', major: 1, minor: 5 },
  { path: '/dev/full', major: 1, minor: 7 },
  { path: '/dev/random', major: 1, minor: 8 },
  { path: '/dev/urandom', major: 1, minor: 9 },
  { path: '/dev/tty', major: 5, minor: 0 },
];

export const ALWAYS_ALLOWED_DEVICE_RULES: readonly DeviceRule[] = Object.freeze([
  { allow: true, type: 'c', access: 'm' },
  { allow: true, type: 'b', access: 'm' },
  ...DEFAULT_DEVICE_NODES.map((d): DeviceRule => ({ allow: true, type: 'c', major: d.major, minor: d.minor, access: 'rwm' })),
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { allow: true, type: 'c', major: 136, access: 'rwm' }, // pts/*
  { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' }, // net/tun
]);
