// LXR's OCI runtime, in process: create/start/state/kill/delete/exec/wait
// on runtime-spec bundles, without starting a Node process per container.
// A thin orchestrator over the planner (plan.ts), the native helper
// (shim.ts), cgroups and the state store; the lxr-runtime command line and
// the agent both drive this class.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, watch, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { socketAccepts } from '../../proto/shared/grpc-server.js';
import { failAfterCleanup, invalidArgument, invalidSpec, LxrError, notFound, withSecondFailure } from '../../proto/shared/errors.js';
import type { CgroupHandle, CgroupLimits, CgroupManager } from '../cgroups/cgroup.js';
import type { RootfsOverlay } from '../rootfs/overlay.js';
import { ALWAYS_ALLOWED_DEVICE_RULES } from './devices.js';
import type { AttachedExec } from './exec-io.js';
import { assertLegal, type Operation } from './lifecycle.js';
import type { Process, Spec, State, Status } from './oci.js';
import { encodePlan, planCreate, planExec, planExecServer, type Stdio } from './plan.js';
import { LinuxShimLauncher, reportToError, serverCanCreate, type ShimLauncher, type ShimProcess, type ShimReport, type ShimStdio } from './shim.js';
import { processRunning } from '../../proto/shared/proc.js';
import { checkId, startTimeSync, StateStore, writeAtomic, type ContainerRecord, type ExitRecord } from './store.js';
import { sysctlNamespace, validateSpec } from './validate.js';

export interface RuntimeOptions {
  /** State root, e.g. /run/lxr/runtime. */
  root: string;
  cgroups: CgroupManager | null;
  launcher?: ShimLauncher;
  /** Parent cgroup for containers whose spec names no cgroupsPath. */
  cgroupParent?: string;
  /**
   * Fault injection for crash tests: called after each step of create with
   * the step's name (runtime-claim, cgroup, monitor, runtime-state).
   */
  crashPoint?: (step: string) => void;
}

export interface CreateOptions {
  consoleSocket?: string;
  pidFile?: string;
  /** Where the container's stdio goes: the caller's fds (runc style) or a CRI log file. */
  stdio?: Stdio;
  /** With stdio inherit: the descriptors to hand over (default: ignore all). */
  stdioFds?: ShimStdio;
  /** An overlay rootfs mounted inside the container's mount namespace. */
  overlay?: RootfsOverlay;
  /**
   * Started as part of create (`docker run`): the monitor releases the init
   * as soon as it is ready, without a start round trip. create resolves once
   * the container is recorded; started() then tells how its start went.
   */
  start?: boolean;
  /**
   * The bundle's config.json as the caller just wrote it: validated as one
   * read from the bundle would be, without reading it back.
   */
  spec?: Spec;
  /**
   * The caller's own work while the helper makes the container (on another
   * CPU): begun once the plan is handed over, finished before create goes
   * on; its failure fails the create.
   */
  meanwhile?: () => Promise<void>;
}

export interface ExecOptions {
  consoleSocket?: string;
  pidFile?: string;
  detach?: boolean;
  stdioFds?: ShimStdio;
}

export interface ExecHandle {
  pid: number;
  /** Exit code of the process (128+signal when killed); null if unknown (detached). */
  exited: Promise<number | null>;
}

export interface ExitStatus {
  exitCode: number;
  signal: number;
  oomKilled: boolean;
  error?: string;
}

const toExitStatus = (e: ExitRecord): ExitStatus => ({ exitCode: e.exitCode, signal: e.signal, oomKilled: e.oomKilled, ...(e.error ? { error: e.error } : {}) });

/** Field 22 (starttime) of /proc/PID/stat; null if the process is gone. */
export async function processStartTime(pid: number): Promise<string | null> {
  return startTimeSync(pid);
}


export function cgroupLimitsFromSpec(spec: Spec): CgroupLimits {
  const r = spec.linux?.resources ?? {};
  const limits: CgroupLimits = {};
  if (r.memory) {
    limits.memory = {};
    if (r.memory.limit !== undefined) limits.memory.limit = r.memory.limit;
    if (r.memory.reservation !== undefined) limits.memory.reservation = r.memory.reservation;
    if (r.memory.swap !== undefined) limits.memory.swap = r.memory.swap;
  }
  if (r.cpu) {
    limits.cpu = {};
    for (const k of ['shares', 'quota', 'period', 'cpus', 'mems'] as const) {
      const v = r.cpu[k];
      if (v !== undefined) (limits.cpu as Record<string, number | string>)[k] = v;
    }
  }
  if (r.pids) limits.pids = { limit: r.pids.limit };
  if (r.devices) {
    limits.devices = r.devices.map((d) => ({
      allow: d.allow,
      ...(d.type !== undefined ? { type: d.type } : {}),
      ...(d.major !== undefined ? { major: d.major } : {}),
      ...(d.minor !== undefined ? { minor: d.minor } : {}),
      ...(d.access !== undefined ? { access: d.access } : {}),
    }));
    // A spec's list starts with "deny all": the devices every container gets
    // are allowed after it, as runc does; otherwise the init cannot even open
    // /dev/null. A device the spec adds in linux.devices needs its own rule
    // in resources.devices (runc 1.1 adds none either). A rule the spec
    // already allows after its last deny (LXR's own default lists them all)
    // is not written twice: each is a write to the device cgroup.
    let lastDeny = -1;
    limits.devices.forEach((d, i) => !d.allow && (lastDeny = i));
    const key = (d: { allow: boolean; type?: string; major?: number; minor?: number; access?: string }) => `${d.allow} ${d.type ?? 'a'} ${d.major ?? '*'} ${d.minor ?? '*'} ${d.access ?? 'rwm'}`;
    const allowed = new Set(limits.devices.slice(lastDeny + 1).map(key));
    limits.devices.push(...ALWAYS_ALLOWED_DEVICE_RULES.map((d) => ({ ...d, type: d.type ?? 'a' })).filter((d) => !allowed.has(key(d))));
  }
  return limits;
}

function checkBundle(bundle: string): void {
  if (!path.isAbsolute(bundle)) throw invalidArgument('bundle', `${bundle} must be an absolute path`);
}

/** Two namespace files name the same namespace (nsfs device and inode). */
function sameNamespace(a: string, b: string): boolean {
  const stat = (p: string) => {
    try {
      return statSync(p);
    } catch {
      return null; // missing, or not ours to look at (another pid 1's /proc)
    }
  };
  const sa = stat(a);
  const sb = stat(b);
  return !!sa && !!sb && sa.dev === sb.dev && sa.ino === sb.ino;
}

/** One request to a container's monitor over its control socket; one JSON line back. */
function askMonitor(control: string, command: string): Promise<ShimReport> {
  return new Promise<ShimReport>((resolve, reject) => {
    const sock = createConnection(control);
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(command + '\n'));
    sock.on('data', (d: string) => (buf += d));
    sock.on('error', reject);
    sock.on('close', (hadError) => {
      if (hadError) return;
      try {
        resolve(JSON.parse(buf.trim()) as ShimReport);
      } catch {
        reject(new Error('the monitor closed without an answer'));
      }
    });
  });
}

export class Runtime {
  readonly store: StateStore;
  private readonly launcher: ShimLauncher;
  /** Exit reports of containers this process created, for wait() without polling. */
  private readonly exits = new Map<string, Promise<ShimReport | null>>();
  private readonly records = new Map<string, { rec: ContainerRecord; ino: number; mtimeMs: number }>();
  /** Helper handles of containers this process created; released on delete. */
  private readonly shims = new Map<string, ShimProcess>();
  /** Ends a pending wait() when its container is deleted. */
  private readonly waitEnds = new Map<string, Set<(exit: ExitRecord | null) => void>>();
  /** Exec server sockets by container (null: none to be had). */
  private readonly execServers = new Map<string, Promise<string | null>>();
  /** The starts of containers created with `start`, until they are deleted. */
  private readonly starts = new Map<string, Promise<void>>();

  constructor(private readonly opts: RuntimeOptions) {
    this.store = new StateStore(opts.root);
    this.launcher = opts.launcher ?? new LinuxShimLauncher();
  }

  private crashPoint(step: string): void {
    this.opts.crashPoint?.(step);
  }

  /**
   * Removes what creates that crashed left: an id claimed without a state
   * record whose creator is gone, with its cgroup and whatever runs in it
   * (a monitor whose init was already placed there ends with it). Returns
   * the ids repaired.
   */
  async repair(): Promise<string[]> {
    const repaired: string[] = [];
    for (const id of await this.store.list()) {
      if (!this.store.staleClaim(id)) continue;
      const cgPath = this.store.readNote(id, 'cgroup');
      if (cgPath && this.opts.cgroups) {
        const cg = await this.opts.cgroups.open(cgPath).catch((e: unknown) => {
          if (e instanceof LxrError && e.reason === 'LXR_NOT_FOUND') return null;
          throw e;
        });
        if (cg) {
          await cg.killAll();
          await cg.destroy();
        }
      }
      await this.store.remove(id);
      repaired.push(id);
    }
    return repaired;
  }

  async loadBundle(bundle: string): Promise<Spec> {
    checkBundle(bundle);
    let text: string;
    try {
      text = readFileSync(path.join(bundle, 'config.json'), 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw notFound('bundle config', path.join(bundle, 'config.json'));
      throw e;
    }
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      throw invalidSpec('config.json', `not valid JSON: ${(e as Error).message}`);
    }
    return validateSpec(raw);
  }

  /**
   * What this host cannot enforce is refused, never silently dropped: spec
   * fields LXR does not apply yet, and, on a pure cgroup v2 host (no device
   * controller without an eBPF program), anything that would let the
   * container reach device nodes.
   */
  private checkSupported(spec: Spec): void {
    const r = spec.linux?.resources ?? {};
    const unsupported: Array<[string, unknown]> = [
      ['linux.resources.unified', r.unified],
      ['linux.resources.memory.kernel', r.memory?.kernel],
      ['linux.resources.memory.swappiness', r.memory?.swappiness],
      ['linux.resources.memory.disableOOMKiller', r.memory?.disableOOMKiller],
      ['linux.resources.cpu.realtimeRuntime', r.cpu?.realtimeRuntime],
      ['linux.resources.cpu.realtimePeriod', r.cpu?.realtimePeriod],
      ['linux.resources.cpu.idle', r.cpu?.idle],
      ['linux.seccomp.flags', spec.linux?.seccomp?.flags?.length ? spec.linux.seccomp.flags : undefined],
    ];
    for (const [field, v] of unsupported) {
      if (v !== undefined) throw new LxrError('LXR_UNSUPPORTED', `${field} is not supported yet`, { field });
    }
    // A sysctl is only safe in a namespace of the container's own: one joined
    // by path may be the host's (runc's isHostNetNS check, for every type).
    for (const key of Object.keys(spec.linux?.sysctl ?? {})) {
      const type = sysctlNamespace(key);
      const joined = (spec.linux?.namespaces ?? []).find((n) => n.type === type && n.path);
      const file = type === 'network' ? 'net' : type;
      // The agent's own namespace is its host's (in the lab too); /proc/1's
      // when this process may look at it.
      if (joined && (sameNamespace(joined.path!, `/proc/self/ns/${file}`) || sameNamespace(joined.path!, `/proc/1/ns/${file}`))) {
        throw invalidSpec(`linux.sysctl.${key}`, `the ${type} namespace joined at ${joined.path} is the host's: setting it would change the host`);
      }
    }
    if (this.opts.cgroups?.mode === 'v2') {
      const caps = spec.process?.capabilities ?? {};
      if ([caps.bounding, caps.effective, caps.permitted, caps.ambient].some((set) => set?.includes('CAP_MKNOD'))) {
        throw new LxrError('LXR_UNSUPPORTED', 'CAP_MKNOD on a cgroup v2 host: LXR does not enforce device rules there yet, so a container could reach host disks', { field: 'process.capabilities' });
      }
      if ((spec.linux?.devices ?? []).length > 0) {
        throw new LxrError('LXR_UNSUPPORTED', 'linux.devices on a cgroup v2 host: LXR does not enforce device rules there yet', { field: 'linux.devices' });
      }
    }
  }

  private cgroupPath(id: string, spec: Spec): string {
    const p = spec.linux?.cgroupsPath;
    if (p) return p.replace(/^\/+/, '');
    return `${this.opts.cgroupParent ?? 'lxr'}/${id}`;
  }

  async create(id: string, bundle: string, o: CreateOptions = {}): Promise<State> {
    checkId(id);
    let spec: Spec;
    if (o.spec) {
      checkBundle(bundle);
      spec = validateSpec(o.spec);
    } else spec = await this.loadBundle(bundle);
    const rootfs = path.resolve(bundle, spec.root?.path ?? 'rootfs');
    this.checkSupported(spec);
    const cgroups = this.opts.cgroups;
    const cgPath = cgroups ? this.cgroupPath(id, spec) : '';
    await this.store.claim(id, cgroups ? { cgroup: cgPath } : {});
    this.crashPoint('runtime-claim');
    const paths = this.store.paths(id);
    const cleanups: Array<() => Promise<void>> = [() => this.store.remove(id)];
    let cgroup: CgroupHandle | null = null;
    const ownPidNs = (spec.linux?.namespaces ?? []).some((n) => n.type === 'pid' && !n.path);
    const stdioFds = o.stdioFds ?? ['ignore', 'ignore', 'ignore'];
    const viaServer = serverCanCreate(stdioFds, { viaServer: ownPidNs && !o.consoleSocket });
    // Through the helper server, the cgroup is made while the monitor sets
    // itself up (forked, its sockets and pipes made): the plan is gated, and
    // the gate opens once the cgroup is there.
    const gated = !!cgroups && viaServer;
    let openGate: (ok: boolean) => void = () => {};
    const gate = gated ? new Promise<boolean>((resolve) => (openGate = resolve)) : undefined;
    const makeCgroup = async (): Promise<CgroupHandle> => {
      const made = await cgroups!.create(cgPath, cgroupLimitsFromSpec(spec));
      cleanups.unshift(() => made.destroy());
      this.crashPoint('cgroup');
      return made;
    };
    try {
      if (cgroups) cgroup = gated ? cgroups.handle(cgPath) : await makeCgroup();
      const records = planCreate({
        id,
        spec,
        rootfs,
        bundle,
        cgroup,
        overlay: o.overlay,
        stdio: o.stdio ?? { mode: 'inherit' },
        consoleSocket: o.consoleSocket,
        controlSocket: paths.control,
        exitFile: paths.exit,
        ...(o.start ? { start: true } : {}),
        ...(gated ? { gate: true } : {}),
      });
      writeFileSync(paths.plan, encodePlan(records), { mode: 0o600 });
      const launching = this.launcher.create(paths.plan, stdioFds, {
        viaServer,
        ...(o.start ? { startsItself: true } : {}),
        ...(gate ? { gate } : {}),
      });
      // Seen now, so a helper that fails early is no unhandled rejection; awaited below.
      launching.catch(() => {});
      // The plan is with the helper now (the request is written before the first await).
      if (gated) {
        try {
          cgroup = await makeCgroup();
        } catch (e) {
          openGate(false);
          // The monitor is called off before anything of it is left; any other failure of it is told too.
          const launch = await launching.then(
            () => null,
            (le: unknown) => le,
          );
          throw launch && !(launch instanceof LxrError && launch.step === 'gate') ? withSecondFailure(e, launch, 'the helper') : e;
        }
        openGate(true);
      }
      // In a turn of its own: a meanwhile that throws at once fails like one that rejects.
      const alongside = o.meanwhile ? Promise.resolve().then(o.meanwhile).then(() => null, (e: unknown) => ({ failed: e })) : null;
      const shim = await launching.catch(async (e: unknown) => {
        const side = await alongside; // nothing of it may still run while the caller cleans up
        throw side ? withSecondFailure(e, side.failed, 'the work meanwhile') : e;
      });
      const pid = shim.first.pid!;
      this.crashPoint('monitor');
      const rec: ContainerRecord = {
        ociVersion: spec.ociVersion,
        id,
        bundle,
        rootfs,
        pid,
        pidStartTime: (await processStartTime(pid)) ?? '',
        monitorPid: shim.first.monitor ?? 0,
        created: new Date().toISOString(),
        cgroupPath: cgroup?.path ?? null,
        annotations: spec.annotations ?? {},
        spec,
      };
      this.exits.set(id, shim.exited);
      this.shims.set(id, shim);
      if (shim.started) this.starts.set(id, this.startOutcome(id, shim.started));
      cleanups.unshift(async () => {
        this.exits.delete(id);
        this.starts.delete(id);
        shim.detach();
        await this.killAndWait(rec);
      });
      const side = await alongside;
      if (side) throw side.failed;
      await this.store.write(rec);
      this.crashPoint('runtime-state');
      const st = statSync(paths.state);
      this.records.set(id, { rec, ino: st.ino, mtimeMs: st.mtimeMs });
      if (o.pidFile) await writeAtomic(o.pidFile, String(pid), 0o644);
      return this.toState(rec, 'created');
    } catch (e) {
      return failAfterCleanup(e, cleanups);
    }
  }

  /**
   * How the start of a container created with `start` went: resolves once
   * its process runs; rejects with why it did not (the container then
   * exists, stopped, with that error in its exit record).
   */
  async started(id: string): Promise<void> {
    const p = this.starts.get(id);
    if (!p) throw new LxrError('LXR_INTERNAL', `container ${id} was not created with start by this runtime`);
    return p;
  }

  /** A start report as started() tells it; never an unhandled rejection while nobody asks. */
  private startOutcome(id: string, report: Promise<ShimReport | null>): Promise<void> {
    const p = report.then((r) => {
      if (r?.type === 'started') return;
      throw r ? reportToError(r, `start ${id}`) : new LxrError('LXR_UNAVAILABLE', `start ${id}: the container's monitor went away before it reported the start`);
    });
    p.catch(() => {});
    return p;
  }

  async start(id: string): Promise<void> {
    const rec = await this.record(id);
    let reply: ShimReport;
    try {
      reply = await askMonitor(this.store.paths(id).control, 'start');
    } catch (e) {
      // Nobody listens on the control socket: the container is past
      // "created"; name the state it is in.
      assertLegal(id, await this.status(rec), 'start');
      throw new LxrError('LXR_UNAVAILABLE', `start ${id}: the container's monitor does not answer: ${(e as Error).message}`, { cause: e });
    }
    if (reply.type === 'error') {
      if (reply.errno === 'EALREADY') assertLegal(id, await this.status(rec), 'start');
      throw reportToError(reply, `start ${id}`);
    }
  }

  /**
   * The record, from memory when this process created the container and the
   * state file is still that one (another process may have deleted and
   * re-created the id).
   */
  private async record(id: string): Promise<ContainerRecord> {
    const cached = this.records.get(id);
    if (cached) {
      const st = statSync(this.store.paths(id).state, { throwIfNoEntry: false });
      if (st && st.ino === cached.ino && st.mtimeMs === cached.mtimeMs) return cached.rec;
      this.records.delete(id);
    }
    return this.store.read(id);
  }

  private async status(rec: ContainerRecord): Promise<Status> {
    if (await this.store.readExit(rec.id)) return 'stopped';
    const start = await processStartTime(rec.pid);
    if (start === null || start !== rec.pidStartTime) return 'stopped';
    // The monitor removes its control socket when the container starts.
    return existsSync(this.store.paths(rec.id).control) ? 'created' : 'running';
  }

  private toState(rec: ContainerRecord, status: Status): State {
    const s: State = { ociVersion: rec.ociVersion, id: rec.id, status, bundle: rec.bundle, annotations: rec.annotations };
    if (status !== 'stopped') s.pid = rec.pid;
    return s;
  }

  async state(id: string): Promise<State> {
    const rec = await this.record(id);
    return this.toState(rec, await this.status(rec));
  }

  async list(): Promise<State[]> {
    const out: State[] = [];
    for (const id of await this.store.list()) {
      try {
        out.push(await this.state(id));
      } catch (e) {
        if (!(e instanceof LxrError && e.reason === 'LXR_NOT_FOUND')) throw e;
      }
    }
    return out;
  }

  async kill(id: string, signal: NodeJS.Signals | number = 'SIGTERM'): Promise<void> {
    const rec = await this.record(id);
    assertLegal(id, await this.status(rec), 'kill');
    try {
      process.kill(rec.pid, signal);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') return; // exited meanwhile
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EINVAL' || code === 'ERR_UNKNOWN_SIGNAL') throw invalidArgument('signal', `${signal} is not a signal`);
      throw e;
    }
  }

  /** The container's exit; waits for it. */
  async wait(id: string): Promise<ExitStatus> {
    const inProc = this.exits.get(id);
    const rec = await this.record(id); // NOT_FOUND for an unknown id
    if (inProc) {
      // A monitor killed with -9 sends no report: a cheap liveness check
      // (no file watch on the hot path) ends the wait, and the exit record
      // below decides. A delete ends it at once with what it found.
      const gone = new AbortController();
      // Several may wait at once (stop() and the agent's watcher): each its own callback.
      let end!: (x: ExitRecord | null) => void;
      const deleted = new Promise<{ deleted: ExitRecord | null }>((resolve) => (end = (x) => resolve({ deleted: x })));
      const ends = this.waitEnds.get(id) ?? new Set();
      ends.add(end);
      this.waitEnds.set(id, ends);
      const r = await Promise.race([inProc, this.monitorGone(rec.monitorPid, gone.signal).then(() => null), deleted]);
      gone.abort();
      ends.delete(end);
      if (ends.size === 0 && this.waitEnds.get(id) === ends) this.waitEnds.delete(id);
      if (r && 'deleted' in r) {
        if (!r.deleted) throw new LxrError('LXR_NOT_FOUND', `container ${id} was deleted without an exit record`);
        return toExitStatus(r.deleted);
      }
      this.exits.delete(id);
      if (r && r.type === 'exited') {
        const rec = await this.store.readExit(id);
        return { exitCode: r.exitCode ?? 0, signal: r.signal ?? 0, oomKilled: r.oomKilled ?? false, ...(rec?.error ? { error: rec.error } : {}) };
      }
    }
    const exit = await this.waitExitFile(id, Infinity);
    if (!exit) throw new LxrError('LXR_INTERNAL', `container ${id}: exited without an exit record`);
    return toExitStatus(exit);
  }

  /** Resolves when the monitor process is gone (polled; aborted when the report came). */
  private async monitorGone(monitorPid: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await sleep(250, undefined, { signal });
      } catch {
        return new Promise(() => {}); // aborted: the report won the race
      }
      if (!processRunning(monitorPid)) return;
    }
    return new Promise(() => {});
  }

  private async waitExitFile(id: string, timeoutMs: number): Promise<ExitRecord | null> {
    const deadline = Date.now() + timeoutMs;
    const dir = this.store.paths(id).dir;
    for (;;) {
      const rec = await this.store.readExit(id);
      if (rec) return rec;
      const r = await this.store.read(id).catch(() => null);
      if (!r) return null;
      // The monitor is gone without writing a record (killed): nothing more will come.
      if ((await processStartTime(r.monitorPid)) === null && (await processStartTime(r.pid)) === null) {
        return await this.store.readExit(id);
      }
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        let w: ReturnType<typeof watch> | undefined;
        const t = setTimeout(finish, Math.min(left, 100));
        try {
          w = watch(dir, () => finish());
          w.on('error', finish);
        } catch {
          // The dir went away (a concurrent delete): the next round reports it.
        }
        function finish() {
          clearTimeout(t);
          w?.close();
          resolve();
        }
      });
    }
  }

  private async killAndWait(rec: ContainerRecord): Promise<ExitRecord | null> {
    // Only the process recorded (a container that started itself may be gone,
    // its pid reused, before its start time could be read).
    if (rec.pidStartTime !== '' && startTimeSync(rec.pid) === rec.pidStartTime) {
      try {
        process.kill(rec.pid, 'SIGKILL');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      }
    }
    const done = await this.waitExitFile(rec.id, 10_000);
    if (!done && (await processStartTime(rec.pid)) === rec.pidStartTime) {
      throw new LxrError('LXR_INTERNAL', `container ${rec.id}: pid ${rec.pid} did not die after SIGKILL`);
    }
    return done;
  }

  /** SIGTERM, then SIGKILL after the grace period. */
  async stop(id: string, graceMs = 10_000): Promise<ExitStatus> {
    const rec = await this.record(id);
    const status = await this.status(rec);
    assertLegal(id, status, 'stop');
    if (status === 'created') {
      // Not yet started: the init is LXR's code, PID 1 of its namespace, and
      // ignores SIGTERM; there is nothing to shut down gracefully.
      await this.killAndWait(rec);
    } else if (status !== 'stopped') {
      try {
        process.kill(rec.pid, 'SIGTERM');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
      }
      if (!(await this.waitExitFile(id, graceMs))) await this.killAndWait(rec);
    }
    return this.wait(id);
  }

  async delete(id: string, opts: { force?: boolean } = {}): Promise<void> {
    const rec = await this.record(id);
    const status = await this.status(rec);
    const op: Operation = opts.force ? 'force-delete' : 'delete';
    assertLegal(id, status, op);
    let exit: ExitRecord | null;
    if (status !== 'stopped') exit = await this.killAndWait(rec);
    else {
      // Stopped by /proc but maybe no record yet: the monitor is still writing it.
      // Removing the dir now would let it write into a re-created one.
      exit = (await this.store.readExit(id)) ?? (await this.waitExitFile(id, 2_000));
    }
    // Whoever waits for this container learns its end now, not from a poll.
    const waiting = this.waitEnds.get(id);
    this.waitEnds.delete(id);
    for (const end of waiting ?? []) end(exit);
    this.exits.delete(id);
    this.starts.delete(id);
    this.records.delete(id);
    this.execServers.delete(id);
    this.shims.get(id)?.detach();
    this.shims.delete(id);
    if (rec.cgroupPath && this.opts.cgroups) {
      const cg = await this.opts.cgroups.open(rec.cgroupPath).catch((e: unknown) => {
        if (e instanceof LxrError && e.reason === 'LXR_NOT_FOUND') return null;
        throw e;
      });
      if (cg) {
        // Without a new pid namespace the init's children can outlive it;
        // with one, the kernel killed them all when the init died.
        const ownPidNs = (rec.spec.linux?.namespaces ?? []).some((n) => n.type === 'pid' && !n.path);
        if (!ownPidNs) await cg.killAll();
        await cg.destroy();
      }
    }
    await this.store.remove(id);
  }

  /**
   * Exec with the process's stdio wired to the caller (pipes, or a terminal
   * relayed by the helper when proc.terminal), for exec sessions. Without a
   * terminal it goes through the container's exec server, started on the
   * first exec (native/shim/exec_server.c: no cgroup migration per exec);
   * when there is none to be had, through a helper of its own.
   */
  async execAttached(id: string, proc: Process): Promise<AttachedExec> {
    const rec = await this.record(id);
    assertLegal(id, await this.status(rec), 'exec');
    const spec = validateSpec({ ...rec.spec, process: proc });
    const tty = spec.process!.terminal === true;
    if (!tty) {
      const socket = await this.execServer(id, rec);
      if (socket) {
        // The server's child is in the cgroups and namespaces already: only the process records matter.
        const plan = encodePlan(planExec({ pid: rec.pid, spec, process: spec.process!, procsFiles: [], detach: false }));
        try {
          return await this.launcher.execViaServer(socket, plan);
        } catch (e) {
          if (!(e instanceof LxrError && e.reason === 'LXR_UNAVAILABLE')) throw e;
          this.execServers.delete(id); // it went away: a helper of its own this time
        }
      }
    }
    const procsFiles = await this.procsFiles(rec);
    // The report socket is named in the plan: a private dir with a short path (sun_path).
    const sockDir = tty ? mkdtempSync(path.join(os.tmpdir(), 'lxr-exec-')) : null;
    const reportSocket = sockDir ? path.join(sockDir, 'r') : undefined;
    const records = planExec({ pid: rec.pid, spec, process: spec.process!, procsFiles, relayTerminal: tty, reportSocket, detach: false });
    const planFile = path.join(this.store.paths(id).dir, `exec-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2, 8)}.plan`);
    writeFileSync(planFile, encodePlan(records), { mode: 0o600 });
    try {
      const size = spec.process!.consoleSize;
      return await this.launcher.execAttached(planFile, { tty, rows: size?.height ?? 0, cols: size?.width ?? 0, ...(reportSocket ? { reportSocket } : {}) });
    } finally {
      rmSync(planFile, { force: true });
      if (sockDir) rmSync(sockDir, { recursive: true, force: true });
    }
  }

  /**
   * The socket of the container's exec server, starting it when none
   * serves (also one an earlier agent started); null when it cannot be had
   * (remembered: the per-exec helper serves instead).
   */
  private async procsFiles(rec: ContainerRecord): Promise<readonly string[]> {
    return rec.cgroupPath && this.opts.cgroups ? (await this.opts.cgroups.open(rec.cgroupPath)).procsFiles : [];
  }

  private execServer(id: string, rec: ContainerRecord): Promise<string | null> {
    const known = this.execServers.get(id);
    if (known) return known;
    const socket = path.join(this.store.paths(id).dir, 'exec.sock');
    const p = (async () => {
      if (Buffer.byteLength(socket) > 107) return null;
      if (existsSync(socket) && (await socketAccepts(socket))) return socket;
      const planFile = path.join(this.store.paths(id).dir, 'exec-server.plan');
      writeFileSync(planFile, encodePlan(planExecServer({ pid: rec.pid, spec: rec.spec, procsFiles: await this.procsFiles(rec) })), { mode: 0o600 });
      try {
        await this.launcher.startExecServer(planFile, socket);
        return socket;
      } catch {
        return null;
      } finally {
        rmSync(planFile, { force: true });
      }
    })();
    // Also a null stays until delete: a server that could not start is not tried on every exec.
    this.execServers.set(id, p);
    return p;
  }

  async exec(id: string, proc: Process, o: ExecOptions = {}): Promise<ExecHandle> {
    const rec = await this.record(id);
    assertLegal(id, await this.status(rec), 'exec');
    const spec = validateSpec({ ...rec.spec, process: proc });
    const procsFiles = await this.procsFiles(rec);
    const records = planExec({ pid: rec.pid, spec, process: spec.process!, procsFiles, consoleSocket: o.consoleSocket, detach: o.detach ?? false });
    const planFile = path.join(this.store.paths(id).dir, `exec-${process.pid}-${Date.now()}-${Math.random().toString(16).slice(2, 8)}.plan`);
    writeFileSync(planFile, encodePlan(records), { mode: 0o600 });
    try {
      const shim = await this.launcher.exec(planFile, o.stdioFds ?? ['ignore', 'ignore', 'ignore']);
      const pid = shim.first.pid!;
      if (o.pidFile) await writeAtomic(o.pidFile, String(pid), 0o644);
      const exited = o.detach ? Promise.resolve(null) : shim.exited.then((r) => (r ? (r.exitCode ?? null) : null));
      if (o.detach) shim.detach();
      return { pid, exited };
    } finally {
      rmSync(planFile, { force: true });
    }
  }
}
