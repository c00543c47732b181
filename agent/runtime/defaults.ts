// Building a container's OCI spec from an image config and a request: Docker's
// rules for command, env and user, plus the secure defaults containerd gives
// every container (capabilities, mounts, masked paths, seccomp, limits).

import { lstatSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { invalidSpec } from '../../proto/shared/errors.js';
import { DEFAULT_CAPABILITIES } from './capabilities.js';
import { ALWAYS_ALLOWED_DEVICE_RULES } from './devices.js';
import type { DeviceRule, Mount, Namespace, Resources, Spec, User } from './oci.js';
import { defaultSeccompProfile } from './seccomp.js';
import { validateSpec } from './validate.js';

/** The subset of the OCI image config's `config` object that shapes a container. */
export interface ImageConfig {
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  Env?: string[] | null;
  WorkingDir?: string;
  User?: string;
  Labels?: Record<string, string> | null;
  ExposedPorts?: Record<string, object> | null;
}

export interface ContainerRequest {
  id: string;
  /** Replaces the image's Cmd. */
  command?: string[];
  /** Replaces the image's Entrypoint (and, as in Docker, drops its Cmd); [] clears it. */
  entrypoint?: string[];
  /** Merged over the image's Env by key, later wins; "KEY" alone removes KEY. */
  env?: string[];
  workdir?: string;
  /** "uid", "uid:gid", "name", "name:group" (names resolved in the rootfs). */
  user?: string;
  hostname?: string;
  tty?: boolean;
  limits?: { memoryBytes?: number; cpus?: number; pids?: number };
  labels?: Record<string, string>;
  readonlyRootfs?: boolean;
  network?: { namespacePath?: string };
}

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_PIDS_LIMIT = 4096;
export const DEFAULT_NOFILE = 1048576;
/** CFS period for `cpus`: 100ms, Docker's and the kernel's default. */
export const CPU_PERIOD_US = 100000;

const OCI_VERSION = '1.2.0';
const HOSTNAME_MAX = 63;

/** containerd's default mounts, plus runc's read-only cgroup mount. */
export const DEFAULT_MOUNTS: readonly Mount[] = Object.freeze([
  { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
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
]);

/** containerd's masked paths: host information and kernel knobs a container has no business reading. */
export const DEFAULT_MASKED_PATHS: readonly string[] = Object.freeze([
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
]);

/** containerd's read-only paths: proc files that write to the host kernel. */
export const DEFAULT_READONLY_PATHS: readonly string[] = Object.freeze([
  '/proc/bus',
  '/proc/fs',
  '/proc/irq',
  '/proc/sys',
  '/proc/sysrq-trigger',
]);

/**
 * Device cgroup: deny everything (containerd's default), then allow the
 * devices every container needs, the list runc appends on its own
 * (AllowedDevices). Spelling the allows out keeps the spec self-contained: a
 * runtime that applies the rules literally still gets a working /dev/null,
 * while CAP_MKNOD alone cannot open a host disk.
 */
export const DEFAULT_DEVICE_RULES: readonly DeviceRule[] = Object.freeze([{ allow: false, access: 'rwm' }, ...ALWAYS_ALLOWED_DEVICE_RULES]);

/**
 * Docker's rule for the command: a request entrypoint replaces the image's
 * and drops the image Cmd (it was written for the old entrypoint); a request
 * command replaces Cmd; args = entrypoint ++ cmd.
 */
export function resolveArgs(image: ImageConfig, req: Pick<ContainerRequest, 'command' | 'entrypoint'>): string[] {
  const entrypoint = req.entrypoint ?? image.Entrypoint ?? [];
  let cmd: readonly string[];
  if (req.command !== undefined && req.command.length > 0) cmd = req.command;
  else if (req.entrypoint !== undefined && req.entrypoint.length > 0) cmd = [];
  else cmd = image.Cmd ?? [];
  const args = [...entrypoint, ...cmd];
  if (args.length === 0) {
    throw invalidSpec('process.args', 'no command to run: the image has no Entrypoint or Cmd and the request gives none');
  }
  return args;
}

/**
 * Docker's env merge: replace by key in place, append new keys, and an entry
 * without "=" removes its key. Later layers win over earlier ones.
 */
export function mergeEnv(...layers: ReadonlyArray<readonly string[] | null | undefined>): string[] {
  const out: string[] = [];
  const keyOf = (e: string): string => {
    const eq = e.indexOf('=');
    return eq < 0 ? e : e.slice(0, eq);
  };
  for (const layer of layers) {
    for (const entry of layer ?? []) {
      const key = keyOf(entry);
      if (key === '') throw invalidSpec('process.env', `empty variable name in ${JSON.stringify(entry)}`);
      const at = out.findIndex((e) => keyOf(e) === key);
      if (!entry.includes('=')) {
        if (at >= 0) out.splice(at, 1);
      } else if (at >= 0) out[at] = entry;
      else out.push(entry);
    }
  }
  return out;
}

// ---------------------------------------------------------------------------
// Users and groups from the image's own /etc/passwd and /etc/group.

interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

const SYMLINK_HOPS = 40;

/**
 * The host path of `path` inside `rootfs`, following symlinks as the
 * container would see them: absolute targets and ".." stay inside the rootfs.
 * A plain join would let an image's /etc/passwd -> /etc/shadow link read the
 * host's file.
 */
export function resolveInRootfs(rootfs: string, path: string): string {
  const pending = path.split('/').filter((p) => p !== '' && p !== '.');
  let done: string[] = [];
  let hops = 0;
  for (let part = pending.shift(); part !== undefined; part = pending.shift()) {
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(rootfs, ...done, part);
    let isLink = false;
    try {
      isLink = lstatSync(host).isSymbolicLink();
    } catch {
      // Missing components resolve lexically; the read reports ENOENT.
    }
    if (!isLink) {
      done.push(part);
      continue;
    }
    if (++hops > SYMLINK_HOPS) throw invalidSpec('process.user', `too many symbolic links resolving ${path} in the rootfs`);
    const target = readlinkSync(host);
    if (target.startsWith('/')) done = [];
    pending.unshift(...target.split('/').filter((p) => p !== ''));
  }
  return join(rootfs, ...done);
}

function readRootfsFile(rootfs: string, path: string): string | undefined {
  try {
    return readFileSync(resolveInRootfs(rootfs, path), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}

const isDecimal = (s: string): boolean => /^\d+$/.test(s);

function parseColonFile(text: string | undefined, minFields: number): string[][] {
  if (text === undefined) return [];
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => l.split(':'))
    .filter((f) => f.length >= minFields);
}

function parsePasswd(text: string | undefined): PasswdEntry[] {
  return parseColonFile(text, 4)
    .filter((f) => isDecimal(f[2] ?? '') && isDecimal(f[3] ?? ''))
    .map((f) => ({ name: f[0] ?? '', uid: Number(f[2]), gid: Number(f[3]), home: f[5] ?? '' }));
}

function parseGroup(text: string | undefined): GroupEntry[] {
  return parseColonFile(text, 3)
    .filter((f) => isDecimal(f[2] ?? ''))
    .map((f) => ({
      name: f[0] ?? '',
      gid: Number(f[2]),
      members: (f[3] ?? '').split(',').map((m) => m.trim()).filter((m) => m !== ''),
    }));
}

export interface ResolvedUser extends User {
  /** HOME from the passwd entry, "/" when the user has none. */
  home: string;
}

/**
 * Resolves Docker's user syntax the way runc's GetExecUser does: a numeric
 * uid need not exist in /etc/passwd (gid then defaults to 0), a name must.
 * Supplementary groups come from /etc/group membership only in the implicit
 * form; an explicit group means exactly that group.
 */
export function resolveUser(rootfs: string, userSpec = ''): ResolvedUser {
  const colon = userSpec.indexOf(':');
  const userPart = colon < 0 ? userSpec : userSpec.slice(0, colon);
  const groupPart = colon < 0 ? undefined : userSpec.slice(colon + 1);
  const passwd = parsePasswd(readRootfsFile(rootfs, '/etc/passwd'));
  const groups = parseGroup(readRootfsFile(rootfs, '/etc/group'));

  let uid: number;
  let entry: PasswdEntry | undefined;
  if (userPart === '' || isDecimal(userPart)) {
    uid = userPart === '' ? 0 : Number(userPart);
    entry = passwd.find((p) => p.uid === uid);
  } else {
    entry = passwd.find((p) => p.name === userPart);
    if (entry === undefined) throw invalidSpec('process.user', `user ${JSON.stringify(userPart)} not found in the image's /etc/passwd`);
    uid = entry.uid;
  }
  let gid = entry?.gid ?? 0;
  let additionalGids: number[] = [];

  if (groupPart !== undefined) {
    if (groupPart === '') throw invalidSpec('process.user', `empty group in ${JSON.stringify(userSpec)}`);
    if (isDecimal(groupPart)) gid = Number(groupPart);
    else {
      const g = groups.find((gr) => gr.name === groupPart);
      if (g === undefined) throw invalidSpec('process.user', `group ${JSON.stringify(groupPart)} not found in the image's /etc/group`);
      gid = g.gid;
    }
  } else if (entry !== undefined) {
    const name = entry.name;
    additionalGids = [...new Set(groups.filter((g) => g.members.includes(name)).map((g) => g.gid))].filter((g) => g !== gid);
  }

  const home = entry?.home !== undefined && entry.home !== '' ? entry.home : '/';
  return { uid, gid, additionalGids, home };
}

// ---------------------------------------------------------------------------

function resources(limits: ContainerRequest['limits']): Resources {
  const res: Resources = { devices: DEFAULT_DEVICE_RULES.map((d) => ({ ...d })) };
  if (limits?.memoryBytes !== undefined) res.memory = { limit: limits.memoryBytes };
  if (limits?.cpus !== undefined) {
    const cpus = limits.cpus;
    // The kernel refuses a CFS quota under 1ms; Docker's minimum is 0.01 cpus for the same reason.
    if (!Number.isFinite(cpus) || cpus < 0.01) {
      throw invalidSpec('linux.resources.cpu.quota', `cpus must be at least 0.01, got ${cpus}`);
    }
    res.cpu = { quota: Math.round(cpus * CPU_PERIOD_US), period: CPU_PERIOD_US };
  }
  res.pids = { limit: limits?.pids ?? DEFAULT_PIDS_LIMIT };
  return res;
}

/**
 * The container's spec: image config and request over LXR's secure defaults.
 * The result is validated before it is returned, so a bad request fails here
 * naming the spec field, never later inside the runtime.
 */
/**
 * The NOFILE hard limit this process may hand on: raising it needs
 * CAP_SYS_RESOURCE, which some hosts withhold even from root, so the default
 * is capped at what the agent itself has.
 */
let ownNofileHard: number | undefined;
export function hostNofileHard(limitsText?: string): number {
  let text = limitsText;
  if (text === undefined) {
    // This process's own limit: read once (the agent never changes it).
    if (ownNofileHard !== undefined) return ownNofileHard;
    try {
      text = readFileSync('/proc/self/limits', 'utf8');
    } catch {
      return DEFAULT_NOFILE;
    }
    return (ownNofileHard = hostNofileHard(text));
  }
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(text);
  const hard = m && m[1] !== 'unlimited' ? Number(m[1]) : DEFAULT_NOFILE;
  return Number.isFinite(hard) && hard > 0 ? hard : DEFAULT_NOFILE;
}

/** Users resolved in rootfs dirs that never change (unpacked image layers), by dir and user. */
const usersOfImmutable = new Map<string, ResolvedUser>();
const USERS_KEPT = 256;

function resolveUserOnce(rootfs: string, userSpec: string): ResolvedUser {
  const key = `${rootfs}\0${userSpec}`;
  let u = usersOfImmutable.get(key);
  if (!u) {
    u = resolveUser(rootfs, userSpec);
    if (usersOfImmutable.size >= USERS_KEPT) usersOfImmutable.delete(usersOfImmutable.keys().next().value!);
    usersOfImmutable.set(key, u);
  }
  return { ...u, ...(u.additionalGids ? { additionalGids: [...u.additionalGids] } : {}) };
}

export function buildSpec(
  image: ImageConfig,
  req: ContainerRequest,
  /** rootfsImmutable: its files never change (an unpacked layer), so users looked up there are kept. */
  opts: { rootfs: string; cgroupsPath: string; nofileHard?: number; rootfsImmutable?: boolean },
): Spec {
  const nofile = Math.min(DEFAULT_NOFILE, opts.nofileHard ?? hostNofileHard());
  const args = resolveArgs(image, req);
  const hostname = req.hostname ?? req.id.slice(0, HOSTNAME_MAX);
  const userSpec = req.user ?? image.User ?? '';
  const user = opts.rootfsImmutable ? resolveUserOnce(opts.rootfs, userSpec) : resolveUser(opts.rootfs, userSpec);
  const tty = req.tty ?? false;

  // Docker's order: its own defaults first, so the image and the request can override them.
  const defaults = [`PATH=${DEFAULT_PATH}`, `HOSTNAME=${hostname}`, ...(tty ? ['TERM=xterm'] : [])];
  const env = mergeEnv(defaults, image.Env, req.env);
  // runc's init sets HOME from passwd when absent; LXR's native init does no lookups, so it is decided here.
  if (!env.some((e) => e.startsWith('HOME='))) env.push(`HOME=${user.home}`);

  const namespaces: Namespace[] = [
    { type: 'pid' },
    { type: 'ipc' },
    { type: 'uts' },
    { type: 'mount' },
    req.network?.namespacePath !== undefined ? { type: 'network', path: req.network.namespacePath } : { type: 'network' },
    { type: 'cgroup' },
  ];

  const spec: Spec = {
    ociVersion: OCI_VERSION,
    process: {
      terminal: tty,
      user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids ?? [] },
      args,
      env,
      cwd: req.workdir || image.WorkingDir || '/',
      capabilities: {
        bounding: [...DEFAULT_CAPABILITIES],
        effective: [...DEFAULT_CAPABILITIES],
        permitted: [...DEFAULT_CAPABILITIES],
        inheritable: [],
        ambient: [],
      },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }],
      noNewPrivileges: true,
    },
    root: { path: opts.rootfs, readonly: req.readonlyRootfs ?? false },
    hostname,
    mounts: DEFAULT_MOUNTS.map((m) => ({ ...m, options: [...(m.options ?? [])] })),
    annotations: { ...(req.labels ?? {}) },
    linux: {
      namespaces,
      cgroupsPath: opts.cgroupsPath,
      resources: resources(req.limits),
      seccomp: defaultSeccompProfile(),
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
    },
  };
  return validateSpec(spec);
}
