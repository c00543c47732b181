// Linux capabilities and resource limits by name: the kernel's numbering
// (linux/capability.h, asm-generic/resource.h) that OCI names map onto, and
// the capability set LXR grants a container unless told otherwise.

/** Capability name -> bit number, as in linux/capability.h (up to Linux 5.9). */
export const CAPABILITIES: Readonly<Record<string, number>> = Object.freeze({
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_DAC_READ_SEARCH: 2,
  CAP_FOWNER: 3,
  CAP_FSETID: 4,
  CAP_KILL: 5,
  CAP_SETGID: 6,
  CAP_SETUID: 7,
  CAP_SETPCAP: 8,
  CAP_LINUX_IMMUTABLE: 9,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_BROADCAST: 11,
  CAP_NET_ADMIN: 12,
  CAP_NET_RAW: 13,
  CAP_IPC_LOCK: 14,
  CAP_IPC_OWNER: 15,
  CAP_SYS_MODULE: 16,
  CAP_SYS_RAWIO: 17,
  CAP_SYS_CHROOT: 18,
  CAP_SYS_PTRACE: 19,
  CAP_SYS_PACCT: 20,
  CAP_SYS_ADMIN: 21,
  CAP_SYS_BOOT: 22,
  CAP_SYS_NICE: 23,
  CAP_SYS_RESOURCE: 24,
  CAP_SYS_TIME: 25,
  CAP_SYS_TTY_CONFIG: 26,
  CAP_MKNOD: 27,
  CAP_LEASE: 28,
  CAP_AUDIT_WRITE: 29,
  CAP_AUDIT_CONTROL: 30,
  CAP_SETFCAP: 31,
  CAP_MAC_OVERRIDE: 32,
  CAP_MAC_ADMIN: 33,
  CAP_SYSLOG: 34,
  CAP_WAKE_ALARM: 35,
  CAP_BLOCK_SUSPEND: 36,
  CAP_AUDIT_READ: 37,
  CAP_PERFMON: 38,
  CAP_BPF: 39,
  CAP_CHECKPOINT_RESTORE: 40,
});

/** The highest capability number this table knows (CAP_LAST_CAP). */
export const CAP_LAST_CAP = 40;

export const isCapability = (name: string): boolean => Object.hasOwn(CAPABILITIES, name);

/** Bit number of a capability name, or undefined when the name is unknown. */
export const capNumber = (name: string): number | undefined =>
  isCapability(name) ? CAPABILITIES[name] : undefined;

/**
 * The 64-bit mask the native helper hands to capset/prctl. Unknown names
 * throw: validateSpec has already rejected them, so reaching one here is a
 * programming error, not bad input.
 */
export function capMask(names: readonly string[]): bigint {
  let mask = 0n;
  for (const name of names) {
    const n = capNumber(name);
    if (n === undefined) throw new Error(`unknown capability ${JSON.stringify(name)}`);
    mask |= 1n << BigInt(n);
  }
  return mask;
}

/** The names present in a mask, in bit order (for messages and `state`). */
export function capNames(mask: bigint): string[] {
  return Object.entries(CAPABILITIES)
    .filter(([, n]) => (mask >> BigInt(n)) & 1n)
    .sort((a, b) => a[1] - b[1])
    .map(([name]) => name);
}

/**
 * containerd 2.x's default set (oci.defaultUnixCaps): what ordinary images
 * expect (chown files, bind low ports, switch users, chroot) without anything
 * that reaches the host (SYS_ADMIN, NET_ADMIN, SYS_PTRACE, SYS_MODULE...).
 * Matching it keeps images that run under Docker/containerd running here.
 */
export const DEFAULT_CAPABILITIES: readonly string[] = Object.freeze([
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
]);

/** rlimit name -> resource number for setrlimit(2) (asm-generic numbering, x86 and arm alike). */
export const RLIMITS: Readonly<Record<string, number>> = Object.freeze({
  RLIMIT_CPU: 0,
  RLIMIT_FSIZE: 1,
  RLIMIT_DATA: 2,
  RLIMIT_STACK: 3,
  RLIMIT_CORE: 4,
  RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6,
  RLIMIT_NOFILE: 7,
  RLIMIT_MEMLOCK: 8,
  RLIMIT_AS: 9,
  RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11,
  RLIMIT_MSGQUEUE: 12,
  RLIMIT_NICE: 13,
  RLIMIT_RTPRIO: 14,
  RLIMIT_RTTIME: 15,
});

export const isRlimit = (name: string): boolean => Object.hasOwn(RLIMITS, name);
