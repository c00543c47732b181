// Validation of an OCI runtime config (config.json) before anything touches
// the host: the first offending field is named, so a bad bundle fails with a
// message its author can act on instead of an errno from deep inside create.

import { posix } from 'node:path';
import { invalidSpec } from '../../proto/shared/errors.js';
import { isCapability, isRlimit } from './capabilities.js';
import type { Spec } from './oci.js';
import { ERRNO_ACTIONS, SECCOMP_FLAGS, isSeccompAction, isSeccompArch, isSeccompOp } from './seccomp.js';

type Obj = Record<string, unknown>;

export interface ValidateOptions {
  /**
   * `create` needs a process; other commands (state, delete) read configs of
   * bundles that may describe only the container. Default true.
   */
  requireProcess?: boolean;
}

const NAMESPACE_TYPES = ['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time'];
const CAP_SETS = ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const;
const PROPAGATIONS = ['shared', 'slave', 'private', 'unbindable', 'rshared', 'rslave', 'rprivate', 'runbindable'];
const U32_MAX = 0xffffffff;
/** 2^32-1 is "no id" to the kernel: setresuid(-1) leaves the id unchanged, so running as it would stay root. */
const ID_MAX = U32_MAX - 1;
/** The kernel takes at most this many lines in one uid_map/gid_map write. */
const MAX_ID_MAPPINGS = 340;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const describe = (v: unknown): string => (v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v);

// Each checker returns the value narrowed, or throws naming `field`; the
// optional forms return undefined for an absent key so callers read top-down.

function object(v: unknown, field: string): Obj {
  if (!isObj(v)) throw invalidSpec(field, `must be an object, got ${describe(v)}`);
  return v;
}

function string(v: unknown, field: string): string {
  if (typeof v !== 'string') throw invalidSpec(field, `must be a string, got ${describe(v)}`);
  return v;
}

function boolean(v: unknown, field: string): boolean {
  if (typeof v !== 'boolean') throw invalidSpec(field, `must be a boolean, got ${describe(v)}`);
  return v;
}

function integer(v: unknown, field: string, min?: number, max?: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw invalidSpec(field, `must be an integer, got ${JSON.stringify(v) ?? describe(v)}`);
  if (min !== undefined && v < min) throw invalidSpec(field, `must be >= ${min}, got ${v}`);
  if (max !== undefined && v > max) throw invalidSpec(field, `must be <= ${max}, got ${v}`);
  return v;
}

function array(v: unknown, field: string): unknown[] {
  if (!Array.isArray(v)) throw invalidSpec(field, `must be an array, got ${describe(v)}`);
  return v;
}

function stringArray(v: unknown, field: string): string[] {
  return array(v, field).map((e, i) => string(e, `${field}[${i}]`));
}

function absolutePath(v: unknown, field: string): string {
  const s = string(v, field);
  if (!s.startsWith('/')) throw invalidSpec(field, `must be an absolute path, got ${JSON.stringify(s)}`);
  return s;
}

function oneOf(v: unknown, field: string, allowed: readonly string[]): string {
  const s = string(v, field);
  if (!allowed.includes(s)) throw invalidSpec(field, `unknown value ${JSON.stringify(s)} (expected one of ${allowed.join(', ')})`);
  return s;
}

function stringMap(v: unknown, field: string): void {
  const o = object(v, field);
  for (const [k, val] of Object.entries(o)) string(val, `${field}.${k}`);
}

/** Present and not undefined: JSON has no undefined, but callers may hand us objects built in code. */
const has = (o: Obj, key: string): boolean => o[key] !== undefined;

/** cpuset list syntax ("0-2,4,7-9"), as cpuset.cpus/cpuset.mems take it. */
function cpuset(v: unknown, field: string): void {
  const s = string(v, field);
  if (s === '') return; // empty means "inherit the parent's"
  for (const part of s.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (m === null) throw invalidSpec(field, `bad cpuset list ${JSON.stringify(s)} (expected e.g. "0-2,4")`);
    if (m[2] !== undefined && Number(m[2]) < Number(m[1])) throw invalidSpec(field, `range ${part} is reversed`);
  }
}

function validateProcess(p: Obj): void {
  if (has(p, 'terminal')) boolean(p.terminal, 'process.terminal');
  if (has(p, 'consoleSize')) {
    const cs = object(p.consoleSize, 'process.consoleSize');
    integer(cs.height, 'process.consoleSize.height', 0, 0xffff);
    integer(cs.width, 'process.consoleSize.width', 0, 0xffff);
  }

  if (!has(p, 'user')) throw invalidSpec('process.user', 'is required');
  const user = object(p.user, 'process.user');
  integer(user.uid, 'process.user.uid', 0, ID_MAX);
  integer(user.gid, 'process.user.gid', 0, ID_MAX);
  if (has(user, 'umask')) integer(user.umask, 'process.user.umask', 0, 0o777);
  if (has(user, 'additionalGids')) {
    array(user.additionalGids, 'process.user.additionalGids').forEach((g, i) =>
      integer(g, `process.user.additionalGids[${i}]`, 0, ID_MAX),
    );
  }

  if (!has(p, 'args')) throw invalidSpec('process.args', 'is required (the command to run)');
  const args = stringArray(p.args, 'process.args');
  if (args.length === 0) throw invalidSpec('process.args', 'must not be empty (args[0] is the program to run)');

  if (has(p, 'env')) {
    stringArray(p.env, 'process.env').forEach((e, i) => {
      const eq = e.indexOf('=');
      if (eq < 0) throw invalidSpec(`process.env[${i}]`, `must be KEY=VALUE, got ${JSON.stringify(e)}`);
      if (eq === 0) throw invalidSpec(`process.env[${i}]`, `has an empty variable name: ${JSON.stringify(e)}`);
    });
  }

  if (!has(p, 'cwd')) throw invalidSpec('process.cwd', 'is required');
  absolutePath(p.cwd, 'process.cwd');

  if (has(p, 'capabilities')) {
    const caps = object(p.capabilities, 'process.capabilities');
    for (const set of CAP_SETS) {
      if (!has(caps, set)) continue;
      stringArray(caps[set], `process.capabilities.${set}`).forEach((c, i) => {
        if (!isCapability(c)) throw invalidSpec(`process.capabilities.${set}[${i}]`, `unknown capability ${JSON.stringify(c)}`);
      });
    }
  }

  if (has(p, 'rlimits')) {
    const seen = new Set<string>();
    array(p.rlimits, 'process.rlimits').forEach((r, i) => {
      const f = `process.rlimits[${i}]`;
      const rl = object(r, f);
      const type = string(rl.type, `${f}.type`);
      if (!isRlimit(type)) throw invalidSpec(`${f}.type`, `unknown rlimit ${JSON.stringify(type)}`);
      // setrlimit applies each type once; a second entry would silently win.
      if (seen.has(type)) throw invalidSpec(`${f}.type`, `duplicate rlimit ${type}`);
      seen.add(type);
      const hard = integer(rl.hard, `${f}.hard`, 0);
      const soft = integer(rl.soft, `${f}.soft`, 0);
      if (soft > hard) throw invalidSpec(`${f}.soft`, `soft limit ${soft} exceeds hard limit ${hard}`);
    });
  }

  if (has(p, 'noNewPrivileges')) boolean(p.noNewPrivileges, 'process.noNewPrivileges');
  if (has(p, 'oomScoreAdj')) integer(p.oomScoreAdj, 'process.oomScoreAdj', -1000, 1000);
  if (has(p, 'apparmorProfile')) string(p.apparmorProfile, 'process.apparmorProfile');
  if (has(p, 'selinuxLabel')) string(p.selinuxLabel, 'process.selinuxLabel');
}

function validateMounts(v: unknown): void {
  array(v, 'mounts').forEach((m, i) => {
    const f = `mounts[${i}]`;
    const mount = object(m, f);
    if (!has(mount, 'destination')) throw invalidSpec(`${f}.destination`, 'is required');
    absolutePath(mount.destination, `${f}.destination`);
    if (has(mount, 'type')) string(mount.type, `${f}.type`);
    if (has(mount, 'source')) string(mount.source, `${f}.source`);
    if (has(mount, 'options')) stringArray(mount.options, `${f}.options`);
  });
}

function validateIdMappings(v: unknown, field: string): void {
  const maps = array(v, field);
  if (maps.length > MAX_ID_MAPPINGS) throw invalidSpec(field, `has ${maps.length} entries; the kernel takes at most ${MAX_ID_MAPPINGS}`);
  maps.forEach((m, i) => {
    const f = `${field}[${i}]`;
    const map = object(m, f);
    const c = integer(map.containerID, `${f}.containerID`, 0, U32_MAX);
    const h = integer(map.hostID, `${f}.hostID`, 0, U32_MAX);
    const size = integer(map.size, `${f}.size`, 1, U32_MAX);
    if (c + size - 1 > U32_MAX || h + size - 1 > U32_MAX) throw invalidSpec(`${f}.size`, 'range runs past the 32-bit id space');
  });
}

function validateResources(res: Obj): void {
  const base = 'linux.resources';
  if (has(res, 'devices')) {
    array(res.devices, `${base}.devices`).forEach((d, i) => {
      const f = `${base}.devices[${i}]`;
      const rule = object(d, f);
      boolean(rule.allow, `${f}.allow`);
      if (has(rule, 'type')) oneOf(rule.type, `${f}.type`, ['a', 'c', 'b']);
      if (has(rule, 'major')) integer(rule.major, `${f}.major`, -1);
      if (has(rule, 'minor')) integer(rule.minor, `${f}.minor`, -1);
      if (has(rule, 'access') && !/^[rwm]*$/.test(string(rule.access, `${f}.access`))) {
        throw invalidSpec(`${f}.access`, `must be made of r, w and m, got ${JSON.stringify(rule.access)}`);
      }
    });
  }
  if (has(res, 'memory')) {
    const mem = object(res.memory, `${base}.memory`);
    if (has(mem, 'limit')) {
      const limit = integer(mem.limit, `${base}.memory.limit`);
      if (limit !== -1 && limit <= 0) throw invalidSpec(`${base}.memory.limit`, `must be -1 (unlimited) or > 0, got ${limit}`);
    }
    if (has(mem, 'reservation')) integer(mem.reservation, `${base}.memory.reservation`, -1);
    if (has(mem, 'swap')) integer(mem.swap, `${base}.memory.swap`, -1);
    if (has(mem, 'kernel')) integer(mem.kernel, `${base}.memory.kernel`, -1);
    if (has(mem, 'swappiness')) integer(mem.swappiness, `${base}.memory.swappiness`, 0, 100);
    if (has(mem, 'disableOOMKiller')) boolean(mem.disableOOMKiller, `${base}.memory.disableOOMKiller`);
  }
  if (has(res, 'cpu')) {
    const cpu = object(res.cpu, `${base}.cpu`);
    if (has(cpu, 'shares')) integer(cpu.shares, `${base}.cpu.shares`, 2);
    if (has(cpu, 'quota')) {
      const q = integer(cpu.quota, `${base}.cpu.quota`);
      if (q !== -1 && q <= 0) throw invalidSpec(`${base}.cpu.quota`, `must be -1 (unlimited) or > 0, got ${q}`);
    }
    if (has(cpu, 'period')) integer(cpu.period, `${base}.cpu.period`, 1);
    if (has(cpu, 'realtimeRuntime')) integer(cpu.realtimeRuntime, `${base}.cpu.realtimeRuntime`);
    if (has(cpu, 'realtimePeriod')) integer(cpu.realtimePeriod, `${base}.cpu.realtimePeriod`, 0);
    if (has(cpu, 'cpus')) cpuset(cpu.cpus, `${base}.cpu.cpus`);
    if (has(cpu, 'mems')) cpuset(cpu.mems, `${base}.cpu.mems`);
    if (has(cpu, 'idle')) integer(cpu.idle, `${base}.cpu.idle`, 0, 1);
  }
  if (has(res, 'pids')) {
    const pids = object(res.pids, `${base}.pids`);
    if (!has(pids, 'limit')) throw invalidSpec(`${base}.pids.limit`, 'is required');
    integer(pids.limit, `${base}.pids.limit`, -1);
  }
  if (has(res, 'unified')) stringMap(res.unified, `${base}.unified`);
}

function validateSeccomp(sc: Obj): void {
  const base = 'linux.seccomp';
  if (!has(sc, 'defaultAction')) throw invalidSpec(`${base}.defaultAction`, 'is required');
  const def = string(sc.defaultAction, `${base}.defaultAction`);
  if (!isSeccompAction(def)) throw invalidSpec(`${base}.defaultAction`, `unknown action ${JSON.stringify(def)}`);
  if (has(sc, 'defaultErrnoRet')) {
    integer(sc.defaultErrnoRet, `${base}.defaultErrnoRet`, 0, 0xffff);
    if (!ERRNO_ACTIONS.includes(def)) throw invalidSpec(`${base}.defaultErrnoRet`, `only applies to ${ERRNO_ACTIONS.join(' and ')}, not ${def}`);
  }
  if (has(sc, 'architectures')) {
    stringArray(sc.architectures, `${base}.architectures`).forEach((a, i) => {
      if (!isSeccompArch(a)) throw invalidSpec(`${base}.architectures[${i}]`, `unknown architecture ${JSON.stringify(a)}`);
    });
  }
  if (has(sc, 'flags')) {
    stringArray(sc.flags, `${base}.flags`).forEach((fl, i) => {
      if (!SECCOMP_FLAGS.includes(fl)) throw invalidSpec(`${base}.flags[${i}]`, `unknown flag ${JSON.stringify(fl)}`);
    });
  }
  if (!has(sc, 'syscalls')) return;
  array(sc.syscalls, `${base}.syscalls`).forEach((s, i) => {
    const f = `${base}.syscalls[${i}]`;
    const rule = object(s, f);
    if (!has(rule, 'names')) throw invalidSpec(`${f}.names`, 'is required');
    const names = stringArray(rule.names, `${f}.names`);
    if (names.length === 0) throw invalidSpec(`${f}.names`, 'must name at least one syscall');
    names.forEach((n, j) => {
      if (n === '') throw invalidSpec(`${f}.names[${j}]`, 'must not be empty');
    });
    if (!has(rule, 'action')) throw invalidSpec(`${f}.action`, 'is required');
    const action = string(rule.action, `${f}.action`);
    if (!isSeccompAction(action)) throw invalidSpec(`${f}.action`, `unknown action ${JSON.stringify(action)}`);
    if (has(rule, 'errnoRet')) {
      integer(rule.errnoRet, `${f}.errnoRet`, 0, 0xffff);
      if (!ERRNO_ACTIONS.includes(action)) throw invalidSpec(`${f}.errnoRet`, `only applies to ${ERRNO_ACTIONS.join(' and ')}, not ${action}`);
    }
    if (!has(rule, 'args')) return;
    const args = array(rule.args, `${f}.args`);
    // libseccomp (and the kernel's six syscall arguments) allow at most six comparisons per rule.
    if (args.length > 6) throw invalidSpec(`${f}.args`, `has ${args.length} comparisons; a rule takes at most 6`);
    args.forEach((a, j) => {
      const af = `${f}.args[${j}]`;
      const arg = object(a, af);
      integer(arg.index, `${af}.index`, 0, 5);
      integer(arg.value, `${af}.value`, 0);
      if (has(arg, 'valueTwo')) integer(arg.valueTwo, `${af}.valueTwo`, 0);
      const op = string(arg.op, `${af}.op`);
      if (!isSeccompOp(op)) throw invalidSpec(`${af}.op`, `unknown operator ${JSON.stringify(op)}`);
    });
  });
}

function validateLinux(linux: Obj): Set<string> {
  const nsTypes = new Set<string>();
  const nsPaths = new Map<string, boolean>();
  if (has(linux, 'namespaces')) {
    array(linux.namespaces, 'linux.namespaces').forEach((n, i) => {
      const f = `linux.namespaces[${i}]`;
      const ns = object(n, f);
      const type = oneOf(ns.type, `${f}.type`, NAMESPACE_TYPES);
      if (nsTypes.has(type)) throw invalidSpec(`${f}.type`, `duplicate namespace ${type}`);
      nsTypes.add(type);
      if (has(ns, 'path')) absolutePath(ns.path, `${f}.path`);
      nsPaths.set(type, has(ns, 'path'));
    });
  }

  // A user namespace nobody maps ids into runs everything as the overflow
  // id; mappings without a namespace have nothing to apply to. Joining an
  // existing namespace (path) inherits its mappings. (runc's rule.)
  const hasUid = has(linux, 'uidMappings');
  const hasGid = has(linux, 'gidMappings');
  if (hasUid) validateIdMappings(linux.uidMappings, 'linux.uidMappings');
  if (hasGid) validateIdMappings(linux.gidMappings, 'linux.gidMappings');
  if (nsTypes.has('user')) {
    if (nsPaths.get('user') !== true) {
      if (!hasUid) throw invalidSpec('linux.uidMappings', 'is required with a new user namespace');
      if (!hasGid) throw invalidSpec('linux.gidMappings', 'is required with a new user namespace');
    }
  } else {
    if (hasUid) throw invalidSpec('linux.uidMappings', 'requires a user namespace in linux.namespaces');
    if (hasGid) throw invalidSpec('linux.gidMappings', 'requires a user namespace in linux.namespaces');
  }

  if (has(linux, 'devices')) {
    array(linux.devices, 'linux.devices').forEach((d, i) => {
      const f = `linux.devices[${i}]`;
      const dev = object(d, f);
      const type = oneOf(dev.type, `${f}.type`, ['c', 'b', 'u', 'p']);
      const path = absolutePath(dev.path, `${f}.path`);
      // Normalise first so "/dev/../etc/passwd" cannot pose as a device node.
      if (!posix.normalize(path).startsWith('/dev/')) throw invalidSpec(`${f}.path`, `must be under /dev, got ${JSON.stringify(path)}`);
      if (type !== 'p') {
        if (!has(dev, 'major')) throw invalidSpec(`${f}.major`, `is required for type ${type}`);
        if (!has(dev, 'minor')) throw invalidSpec(`${f}.minor`, `is required for type ${type}`);
      }
      if (has(dev, 'major')) integer(dev.major, `${f}.major`, 0);
      if (has(dev, 'minor')) integer(dev.minor, `${f}.minor`, 0);
      if (has(dev, 'fileMode')) integer(dev.fileMode, `${f}.fileMode`, 0, 0o7777);
      if (has(dev, 'uid')) integer(dev.uid, `${f}.uid`, 0, ID_MAX);
      if (has(dev, 'gid')) integer(dev.gid, `${f}.gid`, 0, ID_MAX);
    });
  }

  if (has(linux, 'cgroupsPath')) string(linux.cgroupsPath, 'linux.cgroupsPath');
  if (has(linux, 'resources')) validateResources(object(linux.resources, 'linux.resources'));
  if (has(linux, 'rootfsPropagation')) oneOf(linux.rootfsPropagation, 'linux.rootfsPropagation', PROPAGATIONS);
  if (has(linux, 'seccomp')) validateSeccomp(object(linux.seccomp, 'linux.seccomp'));
  if (has(linux, 'sysctl')) stringMap(linux.sysctl, 'linux.sysctl');
  if (has(linux, 'maskedPaths')) {
    array(linux.maskedPaths, 'linux.maskedPaths').forEach((p, i) => absolutePath(p, `linux.maskedPaths[${i}]`));
  }
  if (has(linux, 'readonlyPaths')) {
    array(linux.readonlyPaths, 'linux.readonlyPaths').forEach((p, i) => absolutePath(p, `linux.readonlyPaths[${i}]`));
  }
  if (has(linux, 'mountLabel')) string(linux.mountLabel, 'linux.mountLabel');
  return nsTypes;
}

const IPC_SYSCTLS = new Set(['kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem', 'kernel.shmall', 'kernel.shmmax', 'kernel.shmmni', 'kernel.shm_rmid_forced']);

/** The namespace type that isolates a sysctl, or null for a host-wide one. */
export function sysctlNamespace(key: string): string | null {
  if (IPC_SYSCTLS.has(key) || key.startsWith('fs.mqueue.')) return 'ipc';
  if (key.startsWith('net.')) return 'network';
  if (key === 'kernel.hostname' || key === 'kernel.domainname') return 'uts';
  return null;
}

/**
 * Checks an already JSON.parse'd config.json and returns it typed. Fields are
 * checked in document order (ociVersion, root, process, hostname, mounts,
 * annotations, linux), so the error names the first bad one. Unknown fields
 * pass: the spec is extensible and other engines add their own.
 */
export function validateSpec(raw: unknown, opts: ValidateOptions = {}): Spec {
  const spec = object(raw, '$');

  if (!has(spec, 'ociVersion')) throw invalidSpec('ociVersion', 'is required');
  const version = string(spec.ociVersion, 'ociVersion');
  if (!version.startsWith('1.')) throw invalidSpec('ociVersion', `unsupported version ${JSON.stringify(version)} (LXR reads runtime-spec 1.x)`);

  if (!has(spec, 'root')) throw invalidSpec('root', 'is required');
  const root = object(spec.root, 'root');
  if (!has(root, 'path')) throw invalidSpec('root.path', 'is required');
  if (string(root.path, 'root.path') === '') throw invalidSpec('root.path', 'must not be empty');
  if (has(root, 'readonly')) boolean(root.readonly, 'root.readonly');

  if (has(spec, 'process')) validateProcess(object(spec.process, 'process'));
  else if (opts.requireProcess ?? true) throw invalidSpec('process', 'is required to create a container');

  if (has(spec, 'hostname')) string(spec.hostname, 'hostname');
  if (has(spec, 'domainname')) string(spec.domainname, 'domainname');
  if (has(spec, 'mounts')) validateMounts(spec.mounts);
  if (has(spec, 'annotations')) stringMap(spec.annotations, 'annotations');

  const nsTypes = has(spec, 'linux') ? validateLinux(object(spec.linux, 'linux')) : new Set<string>();
  // sethostname in the host's UTS namespace would rename the host.
  if (typeof spec.hostname === 'string' && spec.hostname !== '' && !nsTypes.has('uts')) {
    throw invalidSpec('hostname', 'setting a hostname requires a uts namespace in linux.namespaces');
  }
  if (typeof spec.domainname === 'string' && spec.domainname !== '' && !nsTypes.has('uts')) {
    throw invalidSpec('domainname', 'setting a domainname requires a uts namespace in linux.namespaces');
  }
  // The init writes sysctls from inside the container: one that no namespace
  // isolates, or whose namespace the container shares with the host, would
  // change the host (runc refuses the same ones).
  const sysctl = isObj(spec.linux) ? spec.linux.sysctl : undefined;
  if (isObj(sysctl)) {
    for (const key of Object.keys(sysctl)) {
      const ns = sysctlNamespace(key);
      if (ns === null) throw invalidSpec(`linux.sysctl.${key}`, 'is not isolated by any namespace: setting it would change the host');
      if (!nsTypes.has(ns)) throw invalidSpec(`linux.sysctl.${key}`, `needs a ${ns} namespace in linux.namespaces: setting it would change the host's`);
    }
  }

  return spec as unknown as Spec;
}
