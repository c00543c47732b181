// Seccomp as the OCI spec names it, turned into what the kernel and
// libseccomp take (SECCOMP_RET_* values, libseccomp arch names, scmp_compare
// numbers), plus LXR's default syscall filter for containers.

import { invalidSpec } from '../../proto/shared/errors.js';
import type { Seccomp, SeccompSyscall } from './oci.js';

const EPERM = 1;
const ENOSYS = 38;

/** Every action the runtime spec defines (validateSpec accepts all of them). */
export const SECCOMP_ACTIONS: readonly string[] = Object.freeze([
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
  'SCMP_ACT_NOTIFY',
]);

/** The actions whose return value carries an errno (errnoRet is meaningless elsewhere). */
export const ERRNO_ACTIONS: readonly string[] = Object.freeze(['SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE']);

/** OCI arch name -> the name libseccomp's seccomp_arch_resolve_name accepts. */
export const SECCOMP_ARCHES: Readonly<Record<string, string>> = Object.freeze({
  SCMP_ARCH_X86: 'x86',
  SCMP_ARCH_X86_64: 'x86_64',
  SCMP_ARCH_X32: 'x32',
  SCMP_ARCH_ARM: 'arm',
  SCMP_ARCH_AARCH64: 'aarch64',
  SCMP_ARCH_LOONGARCH64: 'loongarch64',
  SCMP_ARCH_M68K: 'm68k',
  SCMP_ARCH_MIPS: 'mips',
  SCMP_ARCH_MIPSEL: 'mipsel',
  SCMP_ARCH_MIPS64: 'mips64',
  SCMP_ARCH_MIPSEL64: 'mipsel64',
  SCMP_ARCH_MIPS64N32: 'mips64n32',
  SCMP_ARCH_MIPSEL64N32: 'mipsel64n32',
  SCMP_ARCH_PARISC: 'parisc',
  SCMP_ARCH_PARISC64: 'parisc64',
  SCMP_ARCH_PPC: 'ppc',
  SCMP_ARCH_PPC64: 'ppc64',
  SCMP_ARCH_PPC64LE: 'ppc64le',
  SCMP_ARCH_S390: 's390',
  SCMP_ARCH_S390X: 's390x',
  SCMP_ARCH_RISCV64: 'riscv64',
  SCMP_ARCH_SH: 'sh',
  SCMP_ARCH_SHEB: 'sheb',
});

/** OCI operator -> libseccomp's enum scmp_compare. */
export const SECCOMP_OPS: Readonly<Record<string, number>> = Object.freeze({
  SCMP_CMP_NE: 1,
  SCMP_CMP_LT: 2,
  SCMP_CMP_LE: 3,
  SCMP_CMP_EQ: 4,
  SCMP_CMP_GE: 5,
  SCMP_CMP_GT: 6,
  SCMP_CMP_MASKED_EQ: 7,
});

/** Filter flags the spec lists; passed through to seccomp(2). */
export const SECCOMP_FLAGS: readonly string[] = Object.freeze([
  'SECCOMP_FILTER_FLAG_TSYNC',
  'SECCOMP_FILTER_FLAG_LOG',
  'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
  'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV',
]);

export const isSeccompAction = (a: string): boolean => SECCOMP_ACTIONS.includes(a);
export const isSeccompArch = (a: string): boolean => Object.hasOwn(SECCOMP_ARCHES, a);
export const isSeccompOp = (op: string): boolean => Object.hasOwn(SECCOMP_OPS, op);

/**
 * The SECCOMP_RET_* u32 an OCI action becomes. ERRNO and TRACE default to
 * EPERM like runc, so a bare SCMP_ACT_ERRNO fails calls the way users expect.
 * NOTIFY needs a listener process (seccomp agent) LXR does not have yet, so it
 * is refused rather than silently downgraded.
 */
export function seccompActionValue(action: string, errnoRet?: number): number {
  const data = ((errnoRet ?? EPERM) & 0xffff) >>> 0;
  switch (action) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return 0x00000000;
    case 'SCMP_ACT_KILL_PROCESS':
      return 0x80000000;
    case 'SCMP_ACT_TRAP':
      return 0x00030000;
    case 'SCMP_ACT_ERRNO':
      return (0x00050000 | data) >>> 0;
    case 'SCMP_ACT_TRACE':
      return (0x7ff00000 | data) >>> 0;
    case 'SCMP_ACT_LOG':
      return 0x7ffc0000;
    case 'SCMP_ACT_ALLOW':
      return 0x7fff0000;
    case 'SCMP_ACT_NOTIFY':
      throw invalidSpec('linux.seccomp', 'SCMP_ACT_NOTIFY is not supported (LXR has no seccomp notify agent)');
    default:
      throw invalidSpec('linux.seccomp', `unknown seccomp action ${JSON.stringify(action)}`);
  }
}

export function seccompArchName(arch: string): string {
  const name = SECCOMP_ARCHES[arch];
  if (name === undefined) throw invalidSpec('linux.seccomp.architectures', `unknown architecture ${JSON.stringify(arch)}`);
  return name;
}

export function seccompOpValue(op: string): number {
  const v = SECCOMP_OPS[op];
  if (v === undefined) throw invalidSpec('linux.seccomp', `unknown seccomp operator ${JSON.stringify(op)}`);
  return v;
}

/** The OCI arches a filter must cover on a host whose Node `process.arch` is given. */
export function hostSeccompArches(nodeArch: string = process.arch): string[] {
  switch (nodeArch) {
    // A 64-bit kernel also runs 32-bit (and x32) binaries; a filter that
    // names only the native arch would let them through with the default.
    case 'x64':
      return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64':
      return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    case 'ia32':
      return ['SCMP_ARCH_X86'];
    case 'arm':
      return ['SCMP_ARCH_ARM'];
    case 'ppc64':
      return ['SCMP_ARCH_PPC64LE'];
    case 's390x':
      return ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'];
    case 'riscv64':
      return ['SCMP_ARCH_RISCV64'];
    case 'loong64':
      return ['SCMP_ARCH_LOONGARCH64'];
    default:
      return [];
  }
}

/**
 * Syscalls a container may not make. They reach state the container does not
 * own: the running kernel (modules, kexec, reboot, bpf, perf), the clock,
 * swap and accounting, other processes' memory, the kernel keyring, raw
 * hardware ports, and the mount/namespace machinery that could undo the
 * isolation set up for the container. Some names exist only on some arches
 * (stime, vm86, create_module...): the native helper skips names libseccomp
 * cannot resolve for an arch, as runc does.
 */
export const DENIED_SYSCALLS: readonly string[] = Object.freeze([
  // kernel code and power state
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module',
  'create_module', 'get_kernel_syms', 'query_module', 'reboot',
  // host-wide resources
  'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd', 'nfsservctl', 'syslog',
  // the clock (adjtimex stays allowed: glibc/ntp read the clock through it, and
  // setting needs CAP_SYS_TIME, which containers do not get)
  'settimeofday', 'clock_settime', 'clock_adjtime', 'stime',
  // kernel attack surface with a history of container escapes
  'bpf', 'perf_event_open', 'userfaultfd', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'lookup_dcookie', 'uselib', 'vm86', 'vm86old', 'iopl', 'ioperm',
  // other processes and file handles by number
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd',
  'open_by_handle_at', 'name_to_handle_at', 'fanotify_init',
  // the kernel keyring is not namespaced
  'add_key', 'keyctl', 'request_key',
  // mounts and namespaces: the container's view was fixed by the runtime
  'mount', 'umount', 'umount2', 'pivot_root', 'mount_setattr', 'move_mount', 'open_tree',
  'fsopen', 'fsconfig', 'fsmount', 'fspick', 'setns', 'unshare',
  // obsolete or host-wide introspection Docker's profile keeps out too
  'pciconfig_iobase', 'pciconfig_read', 'pciconfig_write', '_sysctl', 'sysfs', 'ustat',
  // moving other processes' memory between NUMA nodes (Docker: CAP_SYS_NICE only)
  'move_pages', 'migrate_pages', 'mbind', 'set_mempolicy',
]);

const AF_VSOCK = 40;
const EAFNOSUPPORT = 97;
const ADDR_NO_RANDOMIZE = 0x0040000;

/** clone(2) flags that create namespaces; each gets its own MASKED_EQ rule. */
export const CLONE_NAMESPACE_FLAGS: Readonly<Record<string, number>> = Object.freeze({
  CLONE_NEWNS: 0x00020000,
  CLONE_NEWCGROUP: 0x02000000,
  CLONE_NEWUTS: 0x04000000,
  CLONE_NEWIPC: 0x08000000,
  CLONE_NEWUSER: 0x10000000,
  CLONE_NEWPID: 0x20000000,
  CLONE_NEWNET: 0x40000000,
});

/**
 * LXR's default filter: allow by default, deny a list.
 *
 * Docker and containerd ship an allowlist (default ERRNO, ~350 calls allowed).
 * We chose a denylist for now because it is short enough to audit line by
 * line and blocks the same dangerous calls that allowlist keeps out. The
 * trade-off is real: an allowlist is stricter about syscalls added to future
 * kernels, which this profile allows until someone adds them here. Anyone who
 * needs the stricter posture can pass Docker's profile in the spec; the
 * runtime takes any OCI seccomp section.
 *
 * clone cannot be denied outright (every fork and thread uses it), so one
 * rule per namespace flag rejects only the namespace-creating forms; MASKED_EQ
 * (arg0 & flag) == flag is the only way to test a single bit. clone3 passes its
 * flags in memory that seccomp cannot read, so it fails with ENOSYS, which
 * makes glibc fall back to clone, where the rules apply.
 */
export function defaultSeccompProfile(nodeArch: string = process.arch): Seccomp {
  const syscalls: SeccompSyscall[] = [
    { names: [...DENIED_SYSCALLS], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
    ...Object.values(CLONE_NAMESPACE_FLAGS).map(
      (flag): SeccompSyscall => ({
        names: ['clone'],
        action: 'SCMP_ACT_ERRNO',
        errnoRet: EPERM,
        args: [{ index: 0, value: flag, valueTwo: flag, op: 'SCMP_CMP_MASKED_EQ' }],
      }),
    ),
    { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    // AF_VSOCK talks to the hypervisor, outside every namespace.
    { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: EAFNOSUPPORT, args: [{ index: 0, value: AF_VSOCK, op: 'SCMP_CMP_EQ' }] },
    // personality(ADDR_NO_RANDOMIZE) turns ASLR off; the other flags stay usable.
    {
      names: ['personality'],
      action: 'SCMP_ACT_ERRNO',
      errnoRet: EPERM,
      args: [{ index: 0, value: ADDR_NO_RANDOMIZE, valueTwo: ADDR_NO_RANDOMIZE, op: 'SCMP_CMP_MASKED_EQ' }],
    },
  ];
  return { defaultAction: 'SCMP_ACT_ALLOW', architectures: hostSeccompArches(nodeArch), syscalls };
}

function argMatches(op: string, arg: bigint, value: bigint, valueTwo: bigint): boolean {
  switch (op) {
    case 'SCMP_CMP_NE': return arg !== value;
    case 'SCMP_CMP_LT': return arg < value;
    case 'SCMP_CMP_LE': return arg <= value;
    case 'SCMP_CMP_EQ': return arg === value;
    case 'SCMP_CMP_GE': return arg >= value;
    case 'SCMP_CMP_GT': return arg > value;
    case 'SCMP_CMP_MASKED_EQ': return (arg & value) === valueTwo;
    default: return false;
  }
}

/**
 * What a profile does to one call: the SECCOMP_RET_* value, the way the
 * kernel would decide (the first matching rule wins here; libseccomp orders
 * conflicting rules by action priority, which no LXR profile relies on). For
 * tests and `lxr-runtime` diagnostics; arguments missing from `args` are 0.
 */
export function seccompVerdict(profile: Seccomp, syscall: string, args: readonly bigint[] = []): number {
  for (const rule of profile.syscalls ?? []) {
    if (!rule.names.includes(syscall)) continue;
    const all = (rule.args ?? []).every((a) =>
      argMatches(a.op, args[a.index] ?? 0n, BigInt(a.value), BigInt(a.valueTwo ?? 0)),
    );
    if (all) return seccompActionValue(rule.action, rule.errnoRet);
  }
  return seccompActionValue(profile.defaultAction, profile.defaultErrnoRet);
}
