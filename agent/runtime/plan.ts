// Planning: the pure step from a validated OCI spec (plus what the host
// prepared: cgroups, overlay, state paths) to the native launch plan that
// lxr-shim carries out (native/PLAN.md). Every policy decision about what
// the container gets is made here, in TypeScript, where it is testable
// without root; the C side only executes records in order.
import { posix } from 'node:path';
import { invalidSpec } from '../../proto/shared/errors.js';
import type { CgroupMountSource } from '../cgroups/cgroup.js';
import type { RootfsOverlay } from '../rootfs/overlay.js';
import { capMask, RLIMITS } from './capabilities.js';
import { DEFAULT_DEVICE_NODES } from './devices.js';
import { MS, parseMountOptions, PROPAGATION } from './mount-options.js';
import type { Mount, NamespaceType, Process, Spec } from './oci.js';
import { seccompActionValue, seccompArchName, seccompOpValue } from './seccomp.js';

export type PlanRecord = readonly [op: string, ...args: string[]];

export interface CgroupPlacement {
  procsFiles: readonly string[];
  mountSources: readonly CgroupMountSource[];
  oomCounter: { file: string; key: string } | null;
}

export type Stdio = { mode: 'inherit' } | { mode: 'log'; path: string };

export interface CreatePlanInput {
  id: string;
  spec: Spec;
  /** Absolute rootfs path (root.path resolved against the bundle). */
  rootfs: string;
  /** The bundle directory: relative bind sources are relative to it (runtime-spec). */
  bundle?: string;
  cgroup: CgroupPlacement | null;
  overlay?: RootfsOverlay | undefined;
  stdio: Stdio;
  consoleSocket?: string | undefined;
  controlSocket: string;
  exitFile: string;
  /**
   * Started as part of create: the monitor releases the init as soon as it
   * is ready (no control socket, so nobody can start it twice).
   */
  start?: boolean;
  /**
   * The cgroup is still being made while the helper server forks the
   * monitor: it waits for the server's go before it touches it (only
   * through the server, which holds the gate).
   */
  gate?: boolean;
}

const NS_NAMES: Record<NamespaceType, string> = {
  pid: 'pid',
  network: 'net',
  mount: 'mount',
  ipc: 'ipc',
  uts: 'uts',
  user: 'user',
  cgroup: 'cgroup',
  time: 'time',
};

const UINT64_MAX = (1n << 64n) - 1n;

/** JSON numbers above 2^53 arrive rounded; anything at or past 2^64-1 means "unlimited". */
function u64(n: number): string {
  if (n < 0) return '0';
  if (n >= 1.8446744073709552e19) return UINT64_MAX.toString();
  return BigInt(Math.trunc(n)).toString();
}


const DEV_SYMLINKS: ReadonlyArray<[target: string, link: string]> = [
  ['/proc/self/fd', '/dev/fd'],
  ['/proc/self/fd/0', '/dev/stdin'],
  ['/proc/self/fd/1', '/dev/stdout'],
  ['/proc/self/fd/2', '/dev/stderr'],
  ['pts/ptmx', '/dev/ptmx'],
];

function hasNamespace(spec: Spec, type: NamespaceType): boolean {
  return (spec.linux?.namespaces ?? []).some((n) => n.type === type);
}

function isCgroupMount(m: Mount): boolean {
  return m.type === 'cgroup' || m.type === 'cgroup2';
}

/**
 * The container's /sys/fs/cgroup: its own cgroup in each hierarchy. In a
 * cgroup namespace of its own (which the init enters once it is in its
 * cgroups, so they are the namespace's root), each hierarchy is mounted
 * afresh, as runc does: one mount with its flags, the root the container's
 * cgroup, and /proc/self/mountinfo agreeing with /proc/self/cgroup.
 * Otherwise, bind mounts of its cgroup directories.
 */
function planCgroupMount(m: Mount, cgroup: CgroupPlacement | null, index: number, ownNamespace: boolean): PlanRecord[] {
  if (!cgroup || cgroup.mountSources.length === 0) {
    throw invalidSpec(`mounts[${index}]`, 'a cgroup mount needs the container to have cgroups');
  }
  const o = parseMountOptions(m.options);
  const out: PlanRecord[] = [];
  // A fresh mount takes only these of the spec's flags: a bind or remount among them
  // would make its source ("cgroup") a path, resolved on the host.
  const fresh = o.flags & (MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.NOATIME | MS.NODIRATIME | MS.RELATIME | MS.STRICTATIME);
  const each = (s: CgroupMountSource, dst: string, propagation: number): PlanRecord =>
    ownNamespace ? ['mount', s.fsType, dst, s.fsType, String(fresh), String(propagation), s.data] : ['mount', s.hostDir, dst, '', String(o.flags | MS.BIND), String(propagation), ''];
  const single = cgroup.mountSources.length === 1 && cgroup.mountSources[0]!.subdir === '';
  if (single) return [each(cgroup.mountSources[0]!, m.destination, o.propagation)];
  // v1/hybrid: a tmpfs holding one directory per hierarchy, made read-only last.
  const base = o.flags & (MS.NOSUID | MS.NODEV | MS.NOEXEC);
  out.push(['mount', 'tmpfs', m.destination, 'tmpfs', String(base), '0', 'mode=755']);
  for (const s of cgroup.mountSources) out.push(each(s, `${m.destination}/${s.subdir}`, 0));
  if (o.flags & MS.RDONLY) out.push(['remount', m.destination, String(base | MS.RDONLY), '']);
  return out;
}

function planMounts(spec: Spec, cgroup: CgroupPlacement | null, bundle: string | undefined): PlanRecord[] {
  const out: PlanRecord[] = [];
  const ownCgroupNs = (spec.linux?.namespaces ?? []).some((n) => n.type === 'cgroup' && !n.path);
  (spec.mounts ?? []).forEach((m, i) => {
    if (isCgroupMount(m)) {
      out.push(...planCgroupMount(m, cgroup, i, ownCgroupNs));
      return;
    }
    const o = parseMountOptions(m.options);
    const bind = m.type === 'bind' || (o.flags & MS.BIND) !== 0;
    if (bind && !m.source) throw invalidSpec(`mounts[${i}].source`, 'a bind mount needs a source');
    const flags = bind ? o.flags | MS.BIND : o.flags;
    const source = bind && bundle && !m.source!.startsWith('/') ? posix.resolve(bundle, m.source!) : m.source;
    out.push(['mount', source ?? m.type ?? 'none', m.destination, bind ? '' : (m.type ?? ''), String(flags), String(o.propagation), o.data]);
  });
  return out;
}

function planDevices(spec: Spec): PlanRecord[] {
  const out: PlanRecord[] = [];
  const userns = hasNamespace(spec, 'user');
  const seen = new Set<string>();
  const devices = [
    ...(spec.linux?.devices ?? []).map((d) => ({ ...d })),
    ...DEFAULT_DEVICE_NODES.map((d) => ({ type: 'c' as const, path: d.path, major: d.major, minor: d.minor, fileMode: 0o666, uid: 0, gid: 0 })),
  ];
  for (const d of devices) {
    if (seen.has(d.path)) continue; // the spec's own entry wins over the default
    seen.add(d.path);
    if (userns) {
      // A user namespace cannot mknod: bind the host's node instead (runc does the same).
      out.push(['mount', d.path, d.path, '', String(MS.BIND), '0', '']);
      continue;
    }
    const type = d.type === 'u' ? 'c' : d.type;
    out.push(['mkdev', d.path, type, String(d.major ?? 0), String(d.minor ?? 0), String(d.fileMode ?? 0o666), String(d.uid ?? 0), String(d.gid ?? 0)]);
  }
  return out;
}

/** Records describing the process: shared by create and exec. */
export function planProcess(proc: Process, spec: Spec, opts: { consoleSocket?: string | undefined }): PlanRecord[] {
  const out: PlanRecord[] = [];
  for (const r of proc.rlimits ?? []) {
    const n = RLIMITS[r.type];
    if (n === undefined) throw invalidSpec('process.rlimits', `unknown rlimit ${r.type}`);
    out.push(['rlimit', String(n), u64(r.soft), u64(r.hard)]);
  }
  if (proc.oomScoreAdj !== undefined) out.push(['oom_score_adj', String(proc.oomScoreAdj)]);
  if (proc.user.umask !== undefined) out.push(['umask', String(proc.user.umask)]);
  out.push(['user', String(proc.user.uid), String(proc.user.gid)]);
  out.push(['groups', ...(proc.user.additionalGids ?? []).map(String)]);
  const c = proc.capabilities ?? {};
  const [bnd, eff, perm, inh, amb] = [c.bounding, c.effective, c.permitted, c.inheritable, c.ambient].map((set) => capMask(set ?? []));
  // The kernel keeps an ambient capability only if it is also permitted and
  // inheritable; runc skips the others with a warning, and so do we.
  const ambient = amb! & perm! & inh!;
  out.push(['caps', ...[bnd!, eff!, perm!, inh!, ambient].map((m) => '0x' + m.toString(16))]);
  if (proc.noNewPrivileges) out.push(['no_new_privs']);
  out.push(...planSeccomp(spec));
  out.push(['cwd', proc.cwd]);
  for (const e of proc.env ?? []) out.push(['env', e]);
  out.push(['args', ...(proc.args ?? [])]);
  if (proc.terminal) {
    out.push(['terminal', String(proc.consoleSize?.height ?? 0), String(proc.consoleSize?.width ?? 0)]);
    if (opts.consoleSocket) out.push(['console_socket', opts.consoleSocket]);
  }
  return out;
}

function planSeccomp(spec: Spec): PlanRecord[] {
  const s = spec.linux?.seccomp;
  if (!s) return [];
  const out: PlanRecord[] = [['seccomp_default', String(seccompActionValue(s.defaultAction, s.defaultErrnoRet))]];
  for (const a of s.architectures ?? []) out.push(['seccomp_arch', seccompArchName(a)]);
  for (const sc of s.syscalls ?? []) {
    const action = String(seccompActionValue(sc.action, sc.errnoRet ?? (sc.action === 'SCMP_ACT_ERRNO' ? s.defaultErrnoRet : undefined)));
    const args = (sc.args ?? []).flatMap((a) => [String(a.index), String(seccompOpValue(a.op)), u64(a.value), u64(a.valueTwo ?? 0)]);
    for (const name of sc.names) out.push(['seccomp_rule', action, name, ...args]);
  }
  return out;
}

export function planCreate(input: CreatePlanInput): PlanRecord[] {
  const { spec, id } = input;
  const proc = spec.process;
  if (!proc) throw invalidSpec('process', 'is required to create a container');
  const linux = spec.linux ?? {};
  const namespaces = linux.namespaces ?? [];
  if (!namespaces.some((n) => n.type === 'mount' && !n.path)) {
    throw invalidSpec('linux.namespaces', 'a new mount namespace is required: LXR never changes the host\'s mounts');
  }
  if (spec.hostname && !namespaces.some((n) => n.type === 'uts')) {
    throw invalidSpec('hostname', 'setting a hostname needs a uts namespace');
  }
  if (proc.terminal && !input.consoleSocket) {
    throw invalidSpec('process.terminal', 'a terminal needs a console socket to hand the PTY to (--console-socket)');
  }
  // The init joins namespaces by path after clone has created the new ones:
  // a user namespace must then be both (or neither) new and joined-free.
  const userNs = namespaces.find((n) => n.type === 'user');
  if (userNs?.path && namespaces.some((n) => n.type !== 'user' && !n.path)) {
    throw invalidSpec('linux.namespaces', 'joining a user namespace by path together with new namespaces is not supported yet');
  }
  if (userNs && !userNs.path && namespaces.some((n) => n.type !== 'user' && n.type !== 'pid' && n.path)) {
    throw invalidSpec('linux.namespaces', 'a new user namespace cannot yet be combined with namespaces joined by path');
  }
  const out: PlanRecord[] = [['id', id], ['rootfs', input.rootfs]];
  if (spec.root?.readonly) out.push(['rootfs_readonly']);
  if (input.overlay) out.push(['overlay', input.overlay.upper, input.overlay.work, ...input.overlay.lower]);
  for (const ns of namespaces) {
    if (ns.type === 'time') throw invalidSpec('linux.namespaces', 'time namespaces are not supported yet');
    out.push(['ns', NS_NAMES[ns.type], ns.path ?? '']);
  }
  for (const m of linux.uidMappings ?? []) out.push(['uid_map', String(m.containerID), String(m.hostID), String(m.size)]);
  for (const m of linux.gidMappings ?? []) out.push(['gid_map', String(m.containerID), String(m.hostID), String(m.size)]);
  for (const f of input.cgroup?.procsFiles ?? []) out.push(['cgroup', f]);
  out.push(...planMounts(spec, input.cgroup, input.bundle));
  const devIsBound = (spec.mounts ?? []).some((m) => m.destination === '/dev' && parseMountOptions(m.options).flags & MS.BIND);
  if (!devIsBound) {
    out.push(...planDevices(spec));
    for (const [target, link] of DEV_SYMLINKS) out.push(['symlink', target, link]);
  }
  for (const p of linux.maskedPaths ?? []) out.push(['masked', p]);
  for (const p of linux.readonlyPaths ?? []) out.push(['readonly', p]);
  if (linux.rootfsPropagation) out.push(['propagation', String(PROPAGATION[linux.rootfsPropagation] ?? 0)]);
  if (spec.hostname) out.push(['hostname', spec.hostname]);
  if (spec.domainname) out.push(['domainname', spec.domainname]);
  for (const [key, value] of Object.entries(linux.sysctl ?? {})) {
    if (!/^[a-zA-Z0-9_.-]+$/.test(key) || key.includes('..')) throw invalidSpec(`linux.sysctl.${key}`, 'not a sysctl name');
    out.push(['sysctl', '/proc/sys/' + key.replaceAll('.', '/'), value]);
  }
  out.push(...planProcess(proc, spec, { consoleSocket: input.consoleSocket }));
  out.push(input.stdio.mode === 'log' ? ['stdio', 'log', input.stdio.path] : ['stdio', 'inherit']);
  out.push(input.start ? ['autostart'] : ['control', input.controlSocket]);
  if (input.gate) out.push(['gate']);
  out.push(['exit_file', input.exitFile]);
  if (input.cgroup?.oomCounter) out.push(['oom_counter', input.cgroup.oomCounter.file, input.cgroup.oomCounter.key]);
  return out;
}

export interface ExecPlanInput {
  pid: number;
  spec: Spec;
  process: Process;
  procsFiles: readonly string[];
  consoleSocket?: string | undefined;
  /**
   * The helper keeps the terminal's master and relays it over its own
   * stdio (the agent's node-pty), instead of handing it to a console socket.
   */
  relayTerminal?: boolean;
  /** Reports go to this unix socket instead of fd 3 (a node-pty child has no fd 3). */
  reportSocket?: string | undefined;
  detach: boolean;
}

/** Exec joins every namespace the container has, through its init's /proc entries. */
export function planExec(input: ExecPlanInput): PlanRecord[] {
  if (input.process.terminal && !input.consoleSocket && !input.relayTerminal) {
    throw invalidSpec('process.terminal', 'a terminal needs a console socket to hand the PTY to (--console-socket)');
  }
  if (input.relayTerminal && input.detach) throw invalidSpec('process.terminal', 'a relayed terminal cannot be detached');
  const out: PlanRecord[] = planExecServer(input);
  if (input.reportSocket) out.splice(1, 0, ['report_socket', input.reportSocket]);
  out.push(...planProcess(input.process, input.spec, { consoleSocket: input.consoleSocket }));
  if (input.detach) out.push(['detach']);
  return out;
}

/**
 * A container's exec server (native/shim/exec_server.c) joins what every
 * exec joins, once: the init's namespaces and the container's cgroups.
 */
export function planExecServer(input: { pid: number; spec: Spec; procsFiles: readonly string[] }): PlanRecord[] {
  const out: PlanRecord[] = [['target', String(input.pid)]];
  for (const ns of input.spec.linux?.namespaces ?? []) {
    const name = NS_NAMES[ns.type];
    out.push(['ns', name, ns.path ?? `/proc/${input.pid}/ns/${name === 'mount' ? 'mnt' : name}`]);
  }
  for (const f of input.procsFiles) out.push(['cgroup', f]);
  return out;
}

/** The wire form of native/PLAN.md: OP\0NARGS\0ARG...\0 per record. */
export function encodePlan(records: readonly PlanRecord[]): Buffer {
  const parts: string[] = [];
  for (const [op, ...args] of records) {
    for (const f of [op, ...args]) {
      if (f.includes('\0')) throw invalidSpec(op, 'a value contains a NUL byte');
    }
    parts.push(op, String(args.length), ...args);
  }
  return Buffer.from(parts.join('\0') + '\0');
}

/** The inverse of encodePlan, for tests and for inspecting a container's plan file. */
export function decodePlan(buf: Buffer): PlanRecord[] {
  const fields = buf.toString().split('\0');
  if (fields.at(-1) === '') fields.pop();
  const out: PlanRecord[] = [];
  for (let i = 0; i < fields.length; ) {
    const op = fields[i++]!;
    const n = Number(fields[i++]);
    if (!Number.isInteger(n) || n < 0 || i + n > fields.length) throw new Error(`plan: bad record ${op}`);
    out.push([op, ...fields.slice(i, i + n)]);
    i += n;
  }
  return out;
}
