// The OCI config that `runc spec` writes, as a fresh object per call, so a
// test can run one bundle under LXR's runtime and under runc and compare.

import type { Spec } from '../../agent/runtime/oci.js';

export interface BaseConfigOptions {
  /** process.args; default ["sh"] as runc spec. */
  args?: string[];
  /** Default "runc", as runc spec. */
  hostname?: string;
  /** Default false: tests read output through pipes, not a console. */
  terminal?: boolean;
  /** Replaces the default PATH+TERM environment. */
  env?: string[];
  cwd?: string;
  uid?: number;
  gid?: number;
  additionalGids?: number[];
  /** root.path, relative to the bundle; default "rootfs". */
  rootPath?: string;
  /** root.readonly; default true, as runc spec. */
  readonly?: boolean;
}

const defaultCaps = (): string[] => ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];

/**
 * Matches `runc spec` except where opts say otherwise, and except: no ambient
 * capabilities (runc 1.1 sets them; later runc does not, and a test default
 * should not grant more than it must), ociVersion "1.0.2", terminal false,
 * and always a cgroup namespace (runc adds it only on cgroup v2 hosts; LXR
 * gives every container one). runc 1.3's extra masked path
 * /sys/devices/virtual/tpm is left out to match the runc installed here.
 */
export function baseConfig(opts: BaseConfigOptions = {}): Spec {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: opts.terminal ?? false,
      user: {
        uid: opts.uid ?? 0,
        gid: opts.gid ?? 0,
        ...(opts.additionalGids !== undefined ? { additionalGids: [...opts.additionalGids] } : {}),
      },
      args: [...(opts.args ?? ['sh'])],
      env: [...(opts.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'])],
      cwd: opts.cwd ?? '/',
      capabilities: {
        bounding: defaultCaps(),
        effective: defaultCaps(),
        permitted: defaultCaps(),
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: opts.rootPath ?? 'rootfs', readonly: opts.readonly ?? true },
    hostname: opts.hostname ?? 'runc',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
      },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'cgroup' }],
      maskedPaths: [
        '/proc/acpi',
        '/proc/asound',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/timer_stats',
        '/proc/sched_debug',
        '/sys/firmware',
        '/proc/scsi',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
