// Containers as the agent's API sees them: a named container made from an
// image (pulled if missing) on an overlay rootfs, run by the in-process OCI
// runtime, with a small durable record per container, its CRI log, cgroup
// stats and a stream of lifecycle events. A plain class: no grpc here.
//
// Decisions:
// - The container's name is its runtime id; one record per container at
//   <root>/containers/<name>.json, its files in <root>/containers/<name>/
//   (bundle config.json, overlay upper/work/rootfs, container.log).
// - Networking: with a container network (the agent started with --subnet),
//   a container gets mode "bridge" by default: an address reserved before
//   create (its /etc/hosts, /etc/resolv.conf and /etc/hostname are bind
//   mounted from its dir), its veth pair attached once its init exists.
//   Mode "none" (the only one without a container network) is an empty
//   network namespace. "host" is refused (LXR_UNSUPPORTED) instead of
//   silently ignored. Published ports (bridge only) are DNAT rules on the
//   host's own addresses, marked with the container's name; a host port
//   another container publishes is ALREADY_EXISTS.
// - tty for the main process needs a console socket the agent does not hold
//   yet: refused likewise.
// - Users named in the request are looked up in the /etc/passwd of the
//   topmost image layer that has one (the overlay is only mounted inside the
//   container), which ignores whiteouts of that file: good for real images.

import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, readFileSync, watch, type FSWatcher } from 'node:fs';
import { mkdir, open, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { alreadyExists, failAfterCleanup, invalidArgument, LxrError, notFound } from '../../proto/shared/errors.js';
import type { Logger } from '../../proto/shared/log.js';
import type { CgroupManager } from '../cgroups/cgroup.js';
import type { ImageInspect, ImageService } from '../image/service.js';
import { linuxOverlayFs, planOverlay, prepareOverlayDirs, removeOverlayDirs, type RootfsOverlay } from '../rootfs/overlay.js';
import type { ExecStartRequest } from '../exec/exec-service.js';
import { buildSpec, resolveUser, type ContainerRequest } from '../runtime/defaults.js';
import type { AttachedExec } from '../runtime/exec-io.js';
import type { Mount, Process, Spec, Status } from '../runtime/oci.js';
import type { BridgeNetwork } from '../net/bridge-network.js';
import { containerFiles, parseResolvConf, type PortMapping } from '../net/net-plan.js';
import type { ExitStatus, Runtime } from '../runtime/runtime.js';
import { stageAtomic, writeAtomic, writeAtomicSync, type StagedWrite } from '../runtime/store.js';
import { checkIde, IDE_MOUNTS, IDE_PORT, type Ide } from '../../proto/shared/ide.js';
import { requireGlibc } from '../ide/libc.js';
import { ENTRY, type IdeTools, type ToolPaths } from '../ide/tools.js';

/**
 * The steps of a create, in order, as crash points name them: the
 * container's dir, its overlay dirs, then the runtime's claim and cgroup;
 * its record and spec (written while the helper makes the container, so
 * before or after "monitor"); the runtime's monitor and state, the
 * runtime's answer, and the container's network (only with a container
 * network).
 */
export const CREATE_STEPS = ['dir', 'overlay-dirs', 'runtime-claim', 'cgroup', 'record', 'spec', 'monitor', 'runtime-state', 'created', 'network'] as const;
/** Steps of starting a stopped container again (recreate), each a crash point for tests. */
export const RESTART_STEPS = ['restart-marked', 'restart-created', 'restart-network'] as const;

export const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
export const DEFAULT_STOP_GRACE_SECONDS = 10;

export type ContainerState = 'created' | 'running' | 'stopped';

export interface Limits {
  /** Fractional cores; 0 = none. */
  cpus: number;
  memoryBytes: number;
  /** 0 = the default. */
  pids: number;
}

export interface CreateRequest {
  name: string;
  image: string;
  command?: string[];
  entrypoint?: string[];
  env?: string[];
  workdir?: string;
  user?: string;
  limits?: Partial<Limits>;
  labels?: Record<string, string>;
  network?: { mode?: string; address?: string; ports?: Array<{ hostPort?: number; containerPort?: number; protocol?: string }> };
  hostname?: string;
  tty?: boolean;
  requestId?: string;
  /** An IDE to run in it ("" = none): see agent/ide/. */
  ide?: string;
  /** Start it as well, in the same call (`docker run`). */
  start?: boolean;
}

/** What is kept on disk per container. */
export interface ContainerRecordFile {
  name: string;
  image: string;
  imageDigest: string;
  labels: Record<string, string>;
  limits: Limits;
  requestId: string;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  exit?: { exitCode: number; signal: number; oomKilled: boolean };
  bundle: string;
  overlay: RootfsOverlay;
  log: string;
  cgroupPath: string;
  /**
   * Set while create runs: a record still "creating" at start is rolled back.
   * "restarting" while a stopped container is made again (start): the next
   * start completes it.
   */
  phase?: 'creating' | 'restarting';
  /** Its address on the host's bridge (network mode "bridge"). */
  address?: string;
  ports?: PortMapping[];
  ide?: Ide;
}

export interface ContainerInfo {
  name: string;
  id: string;
  image: string;
  imageDigest: string;
  state: ContainerState;
  pid: number;
  exitCode: number;
  signal: number;
  oomKilled: boolean;
  createdAt: string;
  startedAt: string;
  finishedAt: string;
  labels: Record<string, string>;
  address: string;
  limits: Limits;
  /** The IDE it runs ("" = none), and how that IDE is (see IdeSupervisor.status). */
  ide: string;
  ideStatus: string;
}

export interface ContainerStats {
  cpuUsageNanos: number;
  memoryUsageBytes: number;
  memoryWorkingSetBytes: number;
  memoryLimitBytes: number;
  pids: number;
  networkRxBytes: number;
  networkTxBytes: number;
  oomKills: number;
}

export type EventType = 'created' | 'started' | 'died' | 'oom' | 'removed';

export interface ContainerEvent {
  type: EventType;
  name: string;
  id: string;
  time: string;
  exitCode: number;
  signal: number;
}

export interface LogLine {
  stream: 'stdout' | 'stderr';
  time: string;
  line: Buffer;
  partial: boolean;
}

export interface LogsOptions {
  follow?: boolean;
  /** Last N lines; 0 = all. */
  tail?: number;
  /** RFC 3339; lines at or after it. */
  since?: string;
  stdout?: boolean;
  stderr?: boolean;
  signal?: AbortSignal;
}

export interface ContainerServiceOptions {
  /** The agent's state root; containers/ goes inside. */
  root: string;
  images: ImageService;
  runtime: Runtime;
  cgroups: CgroupManager | null;
  /** Parent of every container's cgroup. */
  cgroupParent: string;
  log?: Logger;
  /**
   * Fault injection for crash tests: called after each step of create with
   * its name (dir, overlay-dirs, spec, record, created).
   */
  crashPoint?: (step: string) => void;
  /** The host's container network; without it containers get network mode "none". */
  network?: BridgeNetwork | null;
  /** What containers get in /etc/resolv.conf (default: the host's, without loopback nameservers). */
  dns?: { nameservers: string[]; search: string[] };
  /** The IDE tools (Node and code-server), installed at the first create with an IDE. */
  ideTools: IdeTools;
  /** How each container's IDE is (the supervisor's view). */
  ideStatus?: (name: string) => string;
}

const SIGNALS: Record<string, number> = {
  HUP: 1, INT: 2, QUIT: 3, ILL: 4, TRAP: 5, ABRT: 6, BUS: 7, FPE: 8, KILL: 9, USR1: 10, SEGV: 11, USR2: 12, PIPE: 13, ALRM: 14, TERM: 15,
  STKFLT: 16, CHLD: 17, CONT: 18, STOP: 19, TSTP: 20, TTIN: 21, TTOU: 22, URG: 23, XCPU: 24, XFSZ: 25, VTALRM: 26, PROF: 27, WINCH: 28, IO: 29, PWR: 30, SYS: 31,
};

/** "SIGTERM", "TERM" or a number (1-64); "" = SIGKILL. */
export function parseSignal(s: string | undefined): number {
  const v = (s ?? '').trim().toUpperCase();
  if (v === '') return 9;
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    if (n >= 1 && n <= 64) return n;
  } else {
    const n = SIGNALS[v.startsWith('SIG') ? v.slice(3) : v];
    if (n !== undefined) return n;
  }
  throw invalidArgument('signal', `${JSON.stringify(s)} is not a signal`);
}

/** Published ports as asked for: numbers in range, tcp or udp, no host port twice. */
export function checkPorts(raw: ReadonlyArray<{ hostPort?: number; containerPort?: number; protocol?: string }>): PortMapping[] {
  const out: PortMapping[] = [];
  raw.forEach((p, i) => {
    const field = `network.ports[${i}]`;
    const protocol = (p.protocol || 'tcp').toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp') throw invalidArgument(`${field}.protocol`, `${JSON.stringify(p.protocol)} is not tcp or udp`);
    for (const k of ['hostPort', 'containerPort'] as const) {
      const v = p[k];
      if (!Number.isInteger(v) || v! < 1 || v! > 65535) throw invalidArgument(`${field}.${k === 'hostPort' ? 'host_port' : 'container_port'}`, `${v ?? 0} is not a port (1-65535)`);
    }
    if (out.some((q) => q.hostPort === p.hostPort && q.protocol === protocol)) throw invalidArgument(`${field}.host_port`, `host port ${p.hostPort}/${protocol} is listed twice`);
    out.push({ hostPort: p.hostPort!, containerPort: p.containerPort!, protocol });
  });
  return out;
}

/** The IDE tools, read-only (and nosuid, nodev) in the workspace. */
const ideMounts = (t: ToolPaths): Mount[] => [
  { destination: IDE_MOUNTS.node, type: 'bind', source: t.node, options: ['rbind', 'ro', 'nosuid', 'nodev', 'rprivate'] },
  { destination: IDE_MOUNTS.codeServer, type: 'bind', source: t.codeServer, options: ['rbind', 'ro', 'nosuid', 'nodev', 'rprivate'] },
];

/** Where users are looked up: the topmost layer with an /etc/passwd (see the decisions above); an unpacked layer never changes. */
function userRootOf(o: RootfsOverlay): { rootfs: string; rootfsImmutable: boolean } {
  const layer = o.lower.find((l) => existsSync(path.join(l, 'etc', 'passwd')));
  return layer ? { rootfs: layer, rootfsImmutable: true } : { rootfs: o.target, rootfsImmutable: false };
}

export function checkName(name: unknown): string {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw invalidArgument('name', `${JSON.stringify(name)} must be 1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit`);
  }
  return name;
}

/** One line of a CRI log: "TIME STREAM F|P text"; null for anything else. */
export function parseCriLine(raw: Buffer): LogLine | null {
  const s1 = raw.indexOf(0x20);
  const s2 = s1 < 0 ? -1 : raw.indexOf(0x20, s1 + 1);
  if (s2 < 0) return null;
  const s3 = raw.indexOf(0x20, s2 + 1);
  const tag = raw.subarray(s2 + 1, s3 < 0 ? raw.length : s3).toString();
  const stream = raw.subarray(s1 + 1, s2).toString();
  if ((stream !== 'stdout' && stream !== 'stderr') || (tag !== 'F' && tag !== 'P')) return null;
  return { time: raw.subarray(0, s1).toString(), stream, partial: tag === 'P', line: s3 < 0 ? Buffer.alloc(0) : Buffer.from(raw.subarray(s3 + 1)) };
}

/** Compares RFC 3339 times with nanoseconds (Date keeps only milliseconds). */
function timeKey(t: string): [number, number] {
  const m = /^(.*?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(t);
  if (!m) return [Date.parse(t), 0];
  return [Date.parse(m[1]! + m[3]!), Number((m[2] ?? '').padEnd(9, '0').slice(0, 9))];
}
const atOrAfter = (t: string, since: [number, number]): boolean => {
  const k = timeKey(t);
  return k[0] > since[0] || (k[0] === since[0] && k[1] >= since[1]);
};

const nsToNum = (n: number | undefined): number => (n && Number.isFinite(n) && n > 0 ? n : 0);

export class ContainerService {
  readonly events = new EventEmitter();
  private readonly dir: string;
  /** The containers with an IDE (kept at init, create and remove). */
  private readonly ideNames = new Set<string>();
  private readonly locks = new Map<string, Promise<unknown>>();
  /** The Runtime.wait() watcher per container; settles after its 'died' event. */
  private readonly watchers = new Map<string, Promise<void>>();

  constructor(private readonly o: ContainerServiceOptions) {
    this.dir = path.join(o.root, 'containers');
    this.events.setMaxListeners(0);
  }

  /**
   * Creates the state dir, repairs what creates that crashed left behind,
   * and watches containers that survived an agent restart.
   */
  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await this.repair();
    const missed: Array<Promise<void> | undefined> = [];
    for (const rec of await this.records()) {
      if (rec.ide) this.ideNames.add(rec.name);
      const st = await this.runtimeStatus(rec.name);
      if (st === 'created' || st === 'running') this.watch(rec.name);
      else if (st === 'stopped' && !rec.exit) {
        // Exited while no agent ran: its exit is recorded before the API serves.
        this.watch(rec.name);
        missed.push(this.watchers.get(rec.name));
      }
    }
    await Promise.all(missed);
  }

  /**
   * A create interrupted at any step leaves a record still "creating", or
   * only a container dir, or only a runtime claim: each is rolled back to
   * nothing (the caller never had an answer, and a retry starts afresh).
   */
  private async repair(): Promise<void> {
    const repairedClaims = await this.o.runtime.repair();
    for (const id of repairedClaims) this.o.log?.info({ container: id }, 'repair: removed the runtime claim of a create that crashed');
    const records = new Set<string>();
    for (const rec of await this.records()) {
      if (rec.phase !== 'creating') {
        records.add(rec.name);
        continue;
      }
      try {
        await this.o.runtime.delete(rec.name, { force: true });
      } catch (e) {
        if (!(e instanceof LxrError && e.reason === 'LXR_NOT_FOUND')) throw e;
      }
      await this.releaseNetwork(rec);
      await removeOverlayDirs(rec.overlay, linuxOverlayFs);
      await rm(rec.bundle, { recursive: true, force: true });
      await rm(this.recordPath(rec.name), { force: true });
      this.o.log?.info({ container: rec.name }, 'repair: rolled back a create that crashed');
    }
    // Addresses reserved by creates that crashed before their record said so,
    // and veth ends of containers that are gone.
    if (this.o.network) {
      const recs = await this.records();
      for (const l of await this.o.network.removeLeftovers(recs.filter((r) => r.address).map((r) => r.name))) {
        this.o.log?.info({ link: l }, 'repair: removed a veth end no container holds');
      }
      const claimed = new Set(recs.map((r) => r.address).filter((a) => a));
      for (const a of this.o.network.reservedAddresses()) {
        if (claimed.has(a)) continue;
        this.o.network.release(a);
        this.o.log?.info({ address: a }, 'repair: released an address no container holds');
      }
    }
    for (const ent of await readdir(this.dir, { withFileTypes: true })) {
      if (!ent.isDirectory() || records.has(ent.name) || !NAME_RE.test(ent.name)) continue;
      await rm(path.join(this.dir, ent.name), { recursive: true, force: true });
      this.o.log?.info({ container: ent.name }, 'repair: removed the files of a create that crashed');
    }
    for (const ent of await readdir(this.dir)) {
      // Temp files of an atomic write cut short.
      if (ent.endsWith('.tmp') && ent.includes('.json.')) await rm(path.join(this.dir, ent), { force: true });
    }
  }

  /** /etc/hosts, /etc/resolv.conf and /etc/hostname in the container's dir, as bind mounts. */
  private async networkFiles(containerDir: string, hostname: string, address: string): Promise<Mount[]> {
    const dns = this.o.dns ?? parseResolvConf(await readFile('/etc/resolv.conf', 'utf8').catch(() => ''));
    const files = containerFiles({ hostname, address, nameservers: dns.nameservers, search: dns.search });
    const out: Mount[] = [];
    for (const [file, text] of [['hosts', files.hosts], ['resolv.conf', files.resolvConf], ['hostname', files.hostname]] as const) {
      const source = path.join(containerDir, `etc-${file}`);
      await writeAtomic(source, text, 0o644, false);
      out.push({ destination: `/etc/${file}`, type: 'bind', source, options: ['rbind', 'rprivate'] });
    }
    return out;
  }

  /** Gives back a container's network: its veth pair and its address. */
  private async releaseNetwork(rec: ContainerRecordFile): Promise<void> {
    if (!rec.address || !this.o.network) return;
    if (rec.ports?.length) await this.o.network.unpublish(rec.name);
    await this.o.network.detach(rec.name);
    this.o.network.release(rec.address);
  }

  private crashPoint(step: string): void {
    this.o.crashPoint?.(step);
  }

  /** Serializes operations on one name. */
  private async locked<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(name) ?? Promise.resolve();
    const run = prev.catch(() => undefined).then(fn);
    const tail = run.catch(() => undefined);
    this.locks.set(name, tail);
    try {
      return await run;
    } finally {
      if (this.locks.get(name) === tail) this.locks.delete(name);
    }
  }

  private recordPath(name: string): string {
    return path.join(this.dir, `${name}.json`);
  }

  /** The container's OCI spec as create wrote it (read at every exec: a small local file, read synchronously). */
  private bundleSpec(rec: ContainerRecordFile): Spec {
    return JSON.parse(readFileSync(path.join(rec.bundle, 'config.json'), 'utf8')) as Spec;
  }

  /** Read synchronously, as the runtime's state is: a small local file, read by every call. */
  private async readRecord(name: string): Promise<ContainerRecordFile | null> {
    return this.readRecordSync(name);
  }

  private readRecordSync(name: string): ContainerRecordFile | null {
    try {
      return JSON.parse(readFileSync(this.recordPath(name), 'utf8')) as ContainerRecordFile;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  /**
   * Reads the record, lets `change` alter it and writes it back (durably),
   * all without yielding: writers that do not hold the name's lock (the
   * exit watcher) never overwrite each other's fields. `change` returns
   * false to leave the record as it is. Null when there is no record.
   */
  private updateRecord(name: string, change: (rec: ContainerRecordFile) => boolean | void): ContainerRecordFile | null {
    const rec = this.readRecordSync(name);
    if (!rec || change(rec) === false) return rec;
    writeAtomicSync(this.recordPath(rec.name), this.recordText(rec), 0o600, true);
    return rec;
  }

  private async record(name: string): Promise<ContainerRecordFile> {
    checkName(name);
    const rec = await this.readRecord(name);
    if (!rec) throw notFound('container', name);
    return rec;
  }

  /** Atomically; `durable` (the default) also fsyncs, for what must survive a power loss. */
  private async writeRecord(rec: ContainerRecordFile, durable = true): Promise<void> {
    await writeAtomic(this.recordPath(rec.name), this.recordText(rec), 0o600, durable);
  }

  private recordText(rec: ContainerRecordFile): string {
    return JSON.stringify(rec, null, 2) + '\n';
  }

  private async records(): Promise<ContainerRecordFile[]> {
    const out: ContainerRecordFile[] = [];
    for (const f of (await readdir(this.dir).catch(() => [] as string[])).sort()) {
      if (!f.endsWith('.json')) continue;
      const rec = await this.readRecord(f.slice(0, -5)).catch(() => null);
      if (rec) out.push(rec);
    }
    return out;
  }

  /** The runtime's view; null when the runtime has no such container (e.g. after a reboot). */
  private async runtimeState(name: string): Promise<{ status: Status; pid: number } | null> {
    try {
      const s = await this.o.runtime.state(name);
      return { status: s.status, pid: s.pid ?? 0 };
    } catch (e) {
      if (e instanceof LxrError && e.reason === 'LXR_NOT_FOUND') return null;
      throw e;
    }
  }

  private async runtimeStatus(name: string): Promise<Status | null> {
    return (await this.runtimeState(name))?.status ?? null;
  }

  private emit(type: EventType, name: string, exit?: { exitCode: number; signal: number }): void {
    const ev: ContainerEvent = { type, name, id: name, time: new Date().toISOString(), exitCode: exit?.exitCode ?? 0, signal: exit?.signal ?? 0 };
    this.o.log?.debug({ container: name, event: type }, 'container event');
    this.events.emit('event', ev);
  }

  /** Waits for the container's exit, records it and emits 'died' (and 'oom'). */
  private watch(name: string): void {
    if (this.watchers.has(name)) return;
    const p = (async () => {
      let exit: ExitStatus;
      try {
        exit = await this.o.runtime.wait(name);
      } catch (e) {
        // Deleted meanwhile, or never recorded an exit: nothing to report.
        this.o.log?.debug({ container: name, err: e }, 'wait ended without an exit');
        return;
      }
      try {
        this.updateRecord(name, (rec) => {
          if (rec.exit) return false;
          rec.exit = { exitCode: exit.exitCode, signal: exit.signal, oomKilled: exit.oomKilled };
          rec.finishedAt = new Date().toISOString();
        });
      } catch (e) {
        this.o.log?.warn({ container: name, err: e }, 'cannot record the exit');
      }
      if (exit.oomKilled) this.emit('oom', name, exit);
      this.emit('died', name, exit);
    })().finally(() => {
      if (this.watchers.get(name) === p) this.watchers.delete(name);
    });
    this.watchers.set(name, p);
  }

  private async ensureImage(ref: string, signal?: AbortSignal): Promise<ImageInspect> {
    try {
      return await this.o.images.inspect(ref);
    } catch (e) {
      if (!(e instanceof LxrError && e.reason === 'LXR_NOT_FOUND')) throw e;
    }
    return this.o.images.pull(ref, signal ? { signal } : {});
  }

  async create(req: CreateRequest, signal?: AbortSignal): Promise<ContainerInfo> {
    const name = checkName(req.name);
    if (typeof req.image !== 'string' || req.image === '') throw invalidArgument('image', 'an image is required');
    const net = req.network ?? {};
    const network = this.o.network ?? null;
    const mode = net.mode || (network ? 'bridge' : 'none');
    if (mode === 'bridge' && !network) throw new LxrError('LXR_UNSUPPORTED', 'this agent has no container network (start lxr-agent with --subnet)', { field: 'network.mode' });
    if (mode !== 'bridge' && mode !== 'none') throw new LxrError('LXR_UNSUPPORTED', `network mode ${JSON.stringify(net.mode)} is not supported (bridge or none)`, { field: 'network.mode' });
    if (net.address && mode !== 'bridge') throw invalidArgument('network.address', 'an address needs network mode "bridge"');
    const ports = checkPorts(net.ports ?? []);
    if (ports.length > 0 && mode !== 'bridge') throw invalidArgument('network.ports', 'published ports need network mode "bridge"');
    if (req.tty) throw new LxrError('LXR_UNSUPPORTED', 'a terminal for the main process is not supported yet; use exec with tty', { field: 'tty' });
    const ide = checkIde(req.ide, 'ide');
    if (ide && mode !== 'bridge') throw invalidArgument('ide', `${ide} listens on the container's own address: it needs network mode "bridge"`);
    const limits: Limits = { cpus: req.limits?.cpus ?? 0, memoryBytes: req.limits?.memoryBytes ?? 0, pids: req.limits?.pids ?? 0 };
    if (!(limits.cpus >= 0) || !Number.isFinite(limits.cpus)) throw invalidArgument('limits.cpus', 'must be a non-negative number');
    for (const [k, v] of Object.entries(req.labels ?? {})) {
      if (k === '') throw invalidArgument('labels', `empty label key (value ${JSON.stringify(v)})`);
    }
    return this.locked(name, async () => {
      // Usually not there: asked without the cost of an ENOENT exception.
      const existing = existsSync(this.recordPath(name)) ? await this.readRecord(name) : null;
      if (existing) {
        if (req.requestId && existing.requestId === req.requestId) {
          // The same create again: with start, one whose start failed (still created) is started now.
          if (req.start && !existing.phase && existing.startedAt === undefined && (await this.runtimeStatus(name)) === 'created') {
            await this.recordAndStart(existing);
            return this.info(await this.record(name));
          }
          return this.info(existing);
        }
        throw alreadyExists('container', name);
      }
      if (ports.length > 0) {
        for (const other of await this.records()) {
          for (const p of other.ports ?? []) {
            const clash = ports.find((q) => q.hostPort === p.hostPort && q.protocol === p.protocol);
            if (clash) throw new LxrError('LXR_ALREADY_EXISTS', `host port ${p.hostPort}/${p.protocol} is published by container ${JSON.stringify(other.name)}`, { field: 'network.ports' });
          }
        }
      }
      const image = await this.ensureImage(req.image, signal);
      const layers = this.o.images.rootfsLayersOf(image);
      // Checked before the tools are installed: a musl image is refused at once.
      const tools = ide ? (requireGlibc([...layers].reverse(), req.image, ide), await this.o.ideTools.ensure(signal)) : null;
      const containerDir = path.join(this.dir, name);
      const cleanups: Array<() => Promise<void>> = [];
      let made: ContainerRecordFile;
      let startsNow = false;
      try {
        try {
          mkdirSync(containerDir, { mode: 0o700 });
        } catch (e) {
          // A dir without a record: the leftovers of a create that crashed.
          if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        }
        cleanups.unshift(() => rm(containerDir, { recursive: true, force: true }));
        this.crashPoint('dir');
        const overlay = planOverlay({ layers, containerDir });
        const plan: RootfsOverlay = { lower: overlay.lower, upper: overlay.upper, work: overlay.work, target: overlay.target };
        await prepareOverlayDirs(plan, linuxOverlayFs);
        cleanups.unshift(() => removeOverlayDirs(plan, linuxOverlayFs));
        this.crashPoint('overlay-dirs');
        const cgroupPath = `${this.o.cgroupParent}/${name}`;
        const creq: ContainerRequest = {
          id: name,
          ...(req.command && req.command.length > 0 ? { command: req.command } : {}),
          ...(req.entrypoint && req.entrypoint.length > 0 ? { entrypoint: req.entrypoint } : {}),
          ...(req.env && req.env.length > 0 ? { env: req.env } : {}),
          ...(req.workdir ? { workdir: req.workdir } : {}),
          ...(req.user ? { user: req.user } : {}),
          ...(req.hostname ? { hostname: req.hostname } : {}),
          limits: {
            ...(limits.cpus > 0 ? { cpus: limits.cpus } : {}),
            ...(limits.memoryBytes > 0 ? { memoryBytes: limits.memoryBytes } : {}),
            ...(limits.pids > 0 ? { pids: limits.pids } : {}),
          },
          labels: req.labels ?? {},
        };
        // Users are resolved in the topmost layer that has /etc/passwd (see above).
        const spec = buildSpec(image.config, creq, { ...userRootOf(plan), cgroupsPath: cgroupPath });
        spec.root = { path: plan.target, readonly: spec.root?.readonly ?? false };
        let address: string | undefined;
        if (mode === 'bridge' && network) {
          address = network.reserve(net.address ?? '');
          const reserved = address;
          cleanups.unshift(async () => void network.release(reserved));
          spec.mounts = [...(spec.mounts ?? []), ...(await this.networkFiles(containerDir, spec.hostname ?? name, address))];
        }
        if (tools) spec.mounts = [...(spec.mounts ?? []), ...ideMounts(tools)];
        const log = path.join(containerDir, 'container.log');
        const rec: ContainerRecordFile = {
          name,
          image: req.image,
          imageDigest: image.manifestDigest,
          labels: req.labels ?? {},
          limits,
          requestId: req.requestId ?? '',
          createdAt: new Date().toISOString(),
          bundle: containerDir,
          overlay: plan,
          log,
          cgroupPath,
          phase: 'creating',
          ...(address ? { address } : {}),
          ...(ports.length > 0 ? { ports } : {}),
          ...(ide ? { ide } : {}),
        };
        const done: ContainerRecordFile = { ...rec };
        delete done.phase;
        // With start, the start time goes into the same write (see start()).
        if (req.start) done.startedAt = new Date().toISOString();
        let staged: StagedWrite | null = null;
        cleanups.unshift(async () => staged?.discard());
        // While the helper makes the container: the record saying it is being created
        // (before the runtime records it: a repair then rolls it back; until then the
        // runtime's claim does), the bundle's config.json (exec reads it), and the
        // record as it will be once created, fsynced now and put in place (a rename)
        // when it is made.
        const meanwhile = async (): Promise<void> => {
          // Not fsynced: it guides the repair after an agent crash, which the page cache
          // survives; after a power loss nothing it describes (mounts, cgroups, links,
          // processes) is left, and a container dir without a record is taken over by
          // the next create of that name.
          await this.writeRecord(rec, false);
          cleanups.unshift(() => rm(this.recordPath(name), { force: true }));
          this.crashPoint('record');
          await writeAtomic(path.join(containerDir, 'config.json'), JSON.stringify(spec, null, 2) + '\n', 0o600, false);
          this.crashPoint('spec');
          staged = stageAtomic(this.recordPath(name), this.recordText(done));
        };
        // With start and nothing to attach before the process runs (no network),
        // the monitor starts it as soon as it is ready: no start round trip.
        const startsItself = req.start === true && !address;
        const created = await this.o.runtime.create(name, containerDir, { overlay: plan, stdio: { mode: 'log', path: log }, spec, meanwhile, ...(startsItself ? { start: true } : {}) });
        // Whatever fails from here (network, the record's rename) takes the runtime's container too.
        cleanups.unshift(() => this.o.runtime.delete(name, { force: true }));
        this.crashPoint('created');
        if (address && network) {
          // attach and publish undo their own half-made work; registered once they succeeded.
          await network.attach(name, created.pid!, address);
          cleanups.unshift(() => network.detach(name));
          if (ports.length > 0) {
            await network.publish(name, address, ports);
            cleanups.unshift(() => network.unpublish(name));
          }
          this.crashPoint('network');
        }
        await staged!.commit();
        if (ide) this.ideNames.add(name);
        this.emit('created', name);
        this.watch(name);
        if (!req.start) return await this.info(done);
        made = done;
        startsNow = startsItself;
      } catch (e) {
        return failAfterCleanup(e, cleanups);
      }
      // Created, whatever happens now: a failed start leaves it created, as `docker run` does.
      await this.runStart(made, undefined, startsNow ? () => this.o.runtime.started(name) : undefined);
      // Read again: a quick command's exit may be recorded already.
      return await this.info(await this.record(name));
    });
  }

  async start(name: string): Promise<ContainerInfo> {
    return this.locked(checkName(name), async () => {
      const rec = await this.record(name);
      const rt = await this.runtimeState(name);
      if (!rt || rt.status === 'stopped' || rec.phase === 'restarting') await this.recreate(rec);
      await this.recordAndStart(rec);
      return this.info(await this.record(name));
    });
  }

  /** Writes the start time into the record, then runs the created init (see runStart). */
  private async recordAndStart(rec: ContainerRecordFile): Promise<void> {
    // Written before the process runs: once it runs, its watcher may record its exit at any
    // moment, and a write of this copy afterwards would lose that exit.
    const before = rec.startedAt;
    rec.startedAt = new Date().toISOString();
    await this.writeRecord(rec);
    await this.runStart(rec, before);
  }

  /**
   * Runs the created init of `rec`, whose record already says when it
   * started (`start`: how; default the runtime's start, or the outcome of a
   * start the create began); on failure the record gets back `before` (when
   * it last started).
   */
  private async runStart(rec: ContainerRecordFile, before?: string, start = () => this.o.runtime.start(rec.name)): Promise<void> {
    try {
      await start();
    } catch (e) {
      // The record as it is now: the watcher may have recorded the exit of the failed start.
      const undo = (r: ContainerRecordFile) => void (before === undefined ? delete r.startedAt : (r.startedAt = before));
      undo(rec);
      try {
        this.updateRecord(rec.name, undo);
      } catch (werr) {
        this.o.log?.warn({ container: rec.name, err: werr }, 'cannot record that the start failed');
      }
      throw e;
    }
    this.emit('started', rec.name);
  }

  /**
   * A stopped container starts again the way `docker start` does: a new init
   * in new namespaces and cgroups, on the same bundle and rootfs (its upper
   * dir keeps its files), with the same address and published ports.
   * The record says "restarting" (and no longer holds the last exit) until
   * the network is back, so a crash at any step is completed by the next
   * start, and the new run's exit is recorded.
   */
  private async recreate(rec: ContainerRecordFile): Promise<void> {
    rec.phase = 'restarting';
    delete rec.exit;
    delete rec.finishedAt;
    await this.writeRecord(rec);
    this.crashPoint('restart-marked');
    // A restart cut short by a crash left a created (never started) init: end it and let its
    // monitor record its end before the state goes, or that record would be read as the new run's.
    const rt = await this.runtimeState(rec.name);
    if (rt && rt.status !== 'stopped') {
      await this.o.runtime.kill(rec.name, 9).catch(() => {});
      await (this.watchers.get(rec.name) ?? this.o.runtime.wait(rec.name).catch(() => null));
    }
    try {
      await this.o.runtime.delete(rec.name, { force: true });
    } catch (e) {
      if (!(e instanceof LxrError && e.reason === 'LXR_NOT_FOUND')) throw e;
    }
    await this.watchers.get(rec.name);
    const network = this.o.network;
    if (rec.address && network) {
      if (rec.ports?.length) await network.unpublish(rec.name);
      await network.detach(rec.name);
    }
    const created = await this.o.runtime.create(rec.name, rec.bundle, { overlay: rec.overlay, stdio: { mode: 'log', path: rec.log } });
    this.crashPoint('restart-created');
    try {
      if (rec.address && network) {
        await network.attach(rec.name, created.pid!, rec.address);
        if (rec.ports?.length) await network.publish(rec.name, rec.address, rec.ports);
      }
    } catch (e) {
      return failAfterCleanup(e, [() => this.o.runtime.delete(rec.name, { force: true })]);
    }
    this.crashPoint('restart-network');
    delete rec.phase;
    await this.writeRecord(rec);
    this.emit('created', rec.name);
    this.watch(rec.name);
  }

  /** SIGTERM, SIGKILL after `graceSeconds` (0 = the default); returns the stopped container. */
  async stop(name: string, graceSeconds = 0): Promise<ContainerInfo> {
    return this.locked(checkName(name), async () => {
      await this.record(name);
      const grace = graceSeconds > 0 ? graceSeconds : DEFAULT_STOP_GRACE_SECONDS;
      await this.o.runtime.stop(name, grace * 1000);
      await this.watchers.get(name);
      return this.info(await this.record(name));
    });
  }

  async kill(name: string, signal?: string): Promise<void> {
    const sig = parseSignal(signal);
    await this.locked(checkName(name), async () => {
      await this.record(name);
      await this.o.runtime.kill(name, sig);
    });
  }

  /**
   * Runs a process in a running container, from the container's own process
   * settings (env, cwd, user, capabilities, seccomp, ...) with the request's
   * overrides; its stdio wired to the caller (exec sessions).
   */
  async exec(name: string, req: ExecStartRequest): Promise<AttachedExec> {
    const rec = await this.record(name);
    (req.env ?? []).forEach((e, i) => {
      if (typeof e !== 'string' || e.indexOf('=') <= 0) throw invalidArgument(`start.env[${i}]`, `${JSON.stringify(e)} is not NAME=VALUE`);
    });
    if (req.cwd && !req.cwd.startsWith('/')) throw invalidArgument('start.cwd', `${JSON.stringify(req.cwd)} is not an absolute path`);
    const spec = this.bundleSpec(rec);
    const base = spec.process!;
    const env = new Map<string, string>();
    const put = (e: string): void => void env.set(e.slice(0, Math.max(0, e.indexOf('='))), e);
    (base.env ?? []).forEach(put);
    let user = base.user;
    if (req.user) {
      let u: ReturnType<typeof resolveUser>;
      try {
        u = resolveUser(userRootOf(rec.overlay).rootfs, req.user);
      } catch (e) {
        if (e instanceof LxrError && e.field === 'process.user') throw invalidArgument('start.user', e.message);
        throw e;
      }
      user = { uid: u.uid, gid: u.gid, additionalGids: u.additionalGids ?? [] };
      put(`HOME=${u.home}`);
    }
    if (req.tty && !env.has('TERM')) put('TERM=xterm');
    (req.env ?? []).forEach(put);
    const proc: Process = {
      ...base,
      args: req.args,
      env: [...env.values()],
      cwd: req.cwd || base.cwd,
      user,
      terminal: req.tty,
      ...(req.tty ? { consoleSize: { height: req.rows > 0 ? req.rows : 24, width: req.cols > 0 ? req.cols : 80 } } : {}),
    };
    return this.o.runtime.execAttached(name, proc);
  }

  /** The containers with an IDE (for the IDE supervisor, every few seconds: only their records are read). */
  async ideContainers(): Promise<Array<{ name: string; address: string; running: boolean }>> {
    const out = [];
    for (const name of this.ideNames) {
      const rec = await this.readRecord(name);
      if (!rec?.ide || !rec.address || rec.phase) continue;
      out.push({ name: rec.name, address: rec.address, running: (await this.runtimeStatus(rec.name)) === 'running' });
    }
    return out;
  }

  /**
   * Starts the container's IDE as an exec would run it (its user, env,
   * namespaces and restrictions), listening on the container's address only,
   * opening the working directory (or $HOME when that is /).
   */
  async launchIde(name: string): Promise<AttachedExec> {
    const rec = await this.record(name);
    if (!rec.ide || !rec.address) throw invalidArgument('ide', `container ${name} has no IDE`);
    const spec = this.bundleSpec(rec);
    const home = spec.process?.env?.find((e) => e.startsWith('HOME='))?.slice(5);
    const cwd = spec.process?.cwd ?? '/';
    const folder = cwd !== '/' ? cwd : (home ?? '/');
    const args = [
      `${IDE_MOUNTS.node}/bin/node`, `${IDE_MOUNTS.codeServer}/${ENTRY}`,
      '--bind-addr', `${rec.address}:${IDE_PORT}`, '--auth', 'none',
      '--disable-telemetry', '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override',
      '--config', '/dev/null', folder,
    ];
    return this.exec(name, { container: name, args, env: [], cwd: '', user: '', tty: false, rows: 0, cols: 0, idleTimeoutSeconds: 0 });
  }

  ideLogPath(name: string): string {
    return path.join(this.dir, name, 'ide.log');
  }

  async remove(name: string, force = false): Promise<void> {
    await this.locked(checkName(name), async () => {
      const rec = await this.record(name);
      try {
        await this.o.runtime.delete(name, { force });
      } catch (e) {
        if (!(e instanceof LxrError && e.reason === 'LXR_NOT_FOUND')) throw e;
      }
      await this.watchers.get(name);
      await this.releaseNetwork(rec);
      await removeOverlayDirs(rec.overlay, linuxOverlayFs);
      await rm(rec.bundle, { recursive: true, force: true });
      await rm(this.recordPath(name), { force: true });
      this.ideNames.delete(name);
      this.emit('removed', name);
    });
  }

  async get(name: string): Promise<ContainerInfo> {
    return this.info(await this.record(name));
  }

  async list(filter: { labels?: Record<string, string>; states?: string[] } = {}): Promise<ContainerInfo[]> {
    const states = (filter.states ?? []).filter((s) => s !== '');
    for (const [i, s] of states.entries()) {
      if (s !== 'created' && s !== 'running' && s !== 'stopped') throw invalidArgument(`states[${i}]`, `${JSON.stringify(s)} is not created, running or stopped`);
    }
    const out: ContainerInfo[] = [];
    for (const rec of await this.records()) {
      if (!Object.entries(filter.labels ?? {}).every(([k, v]) => rec.labels[k] === v)) continue;
      const info = await this.info(rec);
      if (states.length > 0 && !states.includes(info.state)) continue;
      out.push(info);
    }
    return out;
  }

  private async info(rec: ContainerRecordFile): Promise<ContainerInfo> {
    const rt = await this.runtimeState(rec.name);
    const state: ContainerState = rt && (rt.status === 'created' || rt.status === 'running') ? rt.status : 'stopped';
    return {
      name: rec.name,
      id: rec.name,
      image: rec.image,
      imageDigest: rec.imageDigest,
      state,
      pid: state === 'stopped' ? 0 : (rt?.pid ?? 0),
      exitCode: rec.exit?.exitCode ?? 0,
      signal: rec.exit?.signal ?? 0,
      oomKilled: rec.exit?.oomKilled ?? false,
      createdAt: rec.createdAt,
      startedAt: rec.startedAt ?? '',
      finishedAt: rec.finishedAt ?? '',
      labels: rec.labels,
      address: rec.address ?? '',
      limits: rec.limits,
      ide: rec.ide ?? '',
      ideStatus: rec.ide && state === 'running' ? (this.o.ideStatus?.(rec.name) ?? '') : '',
    };
  }

  async stats(name: string): Promise<ContainerStats> {
    const rec = await this.record(name);
    if (!this.o.cgroups) throw new LxrError('LXR_UNSUPPORTED', 'this agent runs without cgroups');
    const s = await (await this.o.cgroups.open(rec.cgroupPath)).stats();
    return {
      cpuUsageNanos: nsToNum(s.cpu.usageNanos),
      memoryUsageBytes: nsToNum(s.memory.usageBytes),
      memoryWorkingSetBytes: nsToNum(s.memory.workingSetBytes),
      memoryLimitBytes: nsToNum(s.memory.limitBytes ?? 0),
      pids: nsToNum(s.pids.current),
      networkRxBytes: 0,
      networkTxBytes: 0,
      oomKills: nsToNum(s.memory.oomKills),
    };
  }

  /**
   * The container's output from its CRI log, filtered; with follow, then
   * what comes until the container stops (and the log is drained) or the
   * signal aborts.
   */
  async *logs(name: string, o: LogsOptions = {}): AsyncGenerator<LogLine> {
    const rec = await this.record(name);
    const since = o.since ? timeKey(o.since) : null;
    if (since && Number.isNaN(since[0])) throw invalidArgument('since', `${JSON.stringify(o.since)} is not an RFC 3339 time`);
    const both = !o.stdout && !o.stderr;
    const wanted = (l: LogLine): boolean => (both || (l.stream === 'stdout' ? !!o.stdout : !!o.stderr)) && (!since || atOrAfter(l.time, since));
    let fh = await open(rec.log, 'r').catch((e: unknown) => {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    });
    let pos = 0;
    let rest = Buffer.alloc(0);
    /** Complete lines appended since the last read. */
    const readMore = async (): Promise<LogLine[]> => {
      if (!fh) {
        fh = await open(rec.log, 'r').catch(() => null);
        if (!fh) return [];
      }
      const chunks: Buffer[] = [rest];
      const buf = Buffer.alloc(1 << 16);
      for (;;) {
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead === 0) break;
        pos += bytesRead;
        chunks.push(Buffer.from(buf.subarray(0, bytesRead)));
      }
      const all = Buffer.concat(chunks);
      const lines: LogLine[] = [];
      let start = 0;
      for (let nl = all.indexOf(0x0a); nl >= 0; nl = all.indexOf(0x0a, start)) {
        const l = parseCriLine(all.subarray(start, nl));
        if (l && wanted(l)) lines.push(l);
        start = nl + 1;
      }
      rest = Buffer.from(all.subarray(start));
      return lines;
    };
    try {
      let first = await readMore();
      if (o.tail && o.tail > 0) first = first.slice(-o.tail);
      for (const l of first) {
        if (o.signal?.aborted) return;
        yield l;
      }
      if (!o.follow) return;
      const done = (): Promise<boolean> => this.runtimeStatus(name).then((s) => s !== 'created' && s !== 'running');
      for (;;) {
        if (o.signal?.aborted) return;
        const stopped = await done();
        for (const l of await readMore()) yield l;
        if (stopped) return;
        await this.changeOrTimeout(rec.log, 250, o.signal);
      }
    } finally {
      await fh?.close();
    }
  }

  /** Resolves when `file` changes, after `ms`, or on abort, whichever is first. */
  private changeOrTimeout(file: string, ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      let w: FSWatcher | undefined;
      const finish = (): void => {
        clearTimeout(t);
        w?.close();
        signal?.removeEventListener('abort', finish);
        resolve();
      };
      const t = setTimeout(finish, ms);
      signal?.addEventListener('abort', finish, { once: true });
      try {
        w = watch(file, finish);
        w.on('error', finish);
      } catch {
        // Not there yet: the timeout polls.
      }
    });
  }

  /** Containers on this host and the limits of the running ones. */
  async usage(): Promise<{ containers: number; running: number; reservedCpus: number; reservedMemoryBytes: number }> {
    const all = await this.list();
    const running = all.filter((c) => c.state === 'running');
    return {
      containers: all.length,
      running: running.length,
      reservedCpus: running.reduce((s, c) => s + c.limits.cpus, 0),
      reservedMemoryBytes: running.reduce((s, c) => s + c.limits.memoryBytes, 0),
    };
  }

  /** Waits for the exit watchers (agent shutdown does not: containers keep running). */
  async settled(): Promise<void> {
    await Promise.all([...this.watchers.values()]);
  }
}
