// One container cgroup across every mounted hierarchy: placing it (mkdir in
// each, cpuset inheritance, v2 delegation), writing limits through the v1 or
// v2 dialect of whichever hierarchy serves each controller, reading stats,
// emptying it and removing it. v1, v2 and hybrid hosts differ only in layout.

import { posix } from 'node:path';
import { LxrError, failAfterCleanup, notFound, withCleanupFailure, type Reason } from '../../proto/shared/errors.js';
import type { CgroupHandle, CgroupLimits, CgroupManager, CgroupMode, CgroupMountSource, CgroupStats } from './cgroup.js';
import { hierarchyLabel, type CgroupLayout, type Controller, type Hierarchy } from './detect.js';
import { errnoOf, type CgroupFs } from './fs.js';
import { controllersNeeded, normalizeCgroupPath, pickLimits, validateLimits, type CgroupWrite } from './limits.js';
import { inactiveFile, oomKills, parseCounter, parseLimit, v1CpuUsage, v2CpuUsage, workingSet } from './stats.js';
import { CPUSET_INHERITED, V1_FILES, planV1Writes } from './v1.js';
import { V2_DELEGATED, V2_FILES, planSubtreeControl, planV2Writes } from './v2.js';

export interface ManagerConfig {
  fs: CgroupFs;
  layout: CgroupLayout;
  /** Which hierarchy serves each controller (see bindControllers). */
  bindings: Map<Controller, Hierarchy>;
  kill: (pid: number, signal: NodeJS.Signals) => void;
  sleep: (ms: number) => Promise<void>;
  /** The agent's own pid: killAll refuses to kill it. */
  selfPid: number;
  /** killAll and destroy poll this many times, this far apart, before giving up. */
  retry: { attempts: number; intervalMs: number };
}

// Errnos with which the kernel rejects a value (a limit below usage is EBUSY
// on v1, a cpu that does not exist ERANGE/EINVAL): the request is at fault.
const VALUE_REFUSED = new Set(['EINVAL', 'ERANGE', 'EBUSY', 'EOVERFLOW']);

function writeRefused(dir: string, w: CgroupWrite, e: unknown): LxrError {
  const errno = errnoOf(e) ?? 'EIO';
  const reason = VALUE_REFUSED.has(errno) ? 'LXR_INVALID_ARGUMENT' : 'LXR_HOST_SETUP_FAILED';
  return new LxrError(reason, `cgroup ${dir}: the kernel refused ${w.file} = ${JSON.stringify(w.value)} (${w.field}): ${errno}`, {
    field: w.field,
    errno,
    step: `write ${w.file}`,
    cause: e,
  });
}

function hostFailure(step: string, e: unknown, reason: Reason = 'LXR_HOST_SETUP_FAILED'): LxrError {
  const errno = errnoOf(e);
  const detail = e instanceof Error ? e.message : String(e);
  return new LxrError(reason, `cgroup: ${step}: ${detail}`, { step, cause: e, ...(errno !== undefined ? { errno } : {}) });
}

/** Several cleanup failures become one error; the first stays in front, the others are not lost. */
function combine(errors: LxrError[]): LxrError {
  const [first, ...rest] = errors;
  if (first === undefined) throw new Error('combine needs an error');
  if (rest.length === 0) return first;
  return withCleanupFailure(first, rest.length === 1 ? rest[0] : new AggregateError(rest, rest.map((r) => r.message).join('; ')));
}

interface Placement {
  hierarchy: Hierarchy;
  dir: string;
}

export class HierarchyCgroupManager implements CgroupManager {
  readonly mode: CgroupMode;

  constructor(private readonly cfg: ManagerConfig) {
    this.mode = cfg.layout.mode;
  }

  get layout(): CgroupLayout {
    return this.cfg.layout;
  }

  async create(path: string, limits: CgroupLimits): Promise<CgroupHandle> {
    const rel = normalizeCgroupPath(path);
    validateLimits(limits);
    this.checkSupported(limits);
    const cg = new HierarchyCgroup(this.cfg, rel);

    const created: string[] = [];
    const leaves = new Set(cg.placements.map((p) => p.dir));
    try {
      // Hierarchies are independent: placing them concurrently keeps container
      // start from paying ~10 sequential filesystem round trips.
      // allSettled, not all: cleanup must not start while a sibling is still making directories.
      const placed = await Promise.allSettled(cg.placements.map((p) => this.place(p.hierarchy, rel, created)));
      const failed = placed.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
      // A leaf that was there already is checked before anything is written to it.
      for (const [i, p] of cg.placements.entries()) if (!(placed[i] as PromiseFulfilledResult<boolean>).value) await this.checkReusable(rel, p);
      await this.delegateV2(rel, limits);
      await cg.apply(limits);
    } catch (e) {
      const failure = e instanceof LxrError ? e : hostFailure(`create ${rel}`, e);
      // Deepest first: `created` lists each hierarchy's levels top-down.
      await failAfterCleanup(
        failure,
        [...created].reverse().map((dir) => () => this.removeCreated(dir, leaves.has(dir))),
      );
    }
    return cg;
  }

  handle(path: string): CgroupHandle {
    return new HierarchyCgroup(this.cfg, normalizeCgroupPath(path));
  }

  async open(path: string): Promise<CgroupHandle> {
    const rel = normalizeCgroupPath(path);
    const cg = new HierarchyCgroup(this.cfg, rel);
    for (const p of cg.placements) if (await this.cfg.fs.exists(p.dir)) return cg;
    throw notFound('cgroup', rel);
  }

  private checkSupported(limits: CgroupLimits): void {
    for (const [controller, field] of controllersNeeded(limits)) {
      if (!this.cfg.bindings.has(controller)) {
        throw new LxrError('LXR_UNSUPPORTED', `the ${controller} cgroup controller is not available on this host (needed by ${field})`, { field });
      }
    }
  }

  /**
   * Reuse is only safe for an empty cgroup: a populated one belongs to a
   * live container, and one with children is someone's parent (a slice,
   * another container's parent): limits written there and the kill/remove
   * on delete would reach everything below it.
   */
  private async checkReusable(rel: string, p: Placement): Promise<void> {
    const { fs } = this.cfg;
    const children = await fs.subdirs(p.dir).catch(() => [] as string[]);
    if (children.length > 0) {
      throw new LxrError('LXR_ALREADY_EXISTS', `cgroup ${JSON.stringify(rel)} already exists and has child cgroups (${children.slice(0, 3).join(', ')}) in the ${hierarchyLabel(p.hierarchy)} hierarchy: a container needs a leaf of its own`, {
        field: 'linux.cgroupsPath',
      });
    }
    const pids = await readPids(fs, posix.join(p.dir, 'cgroup.procs'));
    if (pids.length > 0) {
      throw new LxrError('LXR_ALREADY_EXISTS', `cgroup ${JSON.stringify(rel)} already exists and has processes (${pids.join(', ')}) in the ${hierarchyLabel(p.hierarchy)} hierarchy`, {
        field: 'linux.cgroupsPath',
      });
    }
  }

  /**
   * mkdir the leaf of `rel` in one hierarchy (each missing level above it
   * first, when there are any), recording what it made; false when the leaf
   * was there already. The leaf first: its parents usually exist.
   */
  private async place(h: Hierarchy, rel: string, created: string[]): Promise<boolean> {
    const { fs } = this.cfg;
    const inheritsCpuset = h.version === 1 && h.controllers.includes('cpuset');
    const leaf = posix.join(h.mountpoint, rel);
    let parentMissing = false;
    try {
      await fs.mkdir(leaf);
    } catch (e) {
      if (errnoOf(e) === 'EEXIST') return false;
      if (errnoOf(e) !== 'ENOENT') throw hostFailure(`mkdir ${leaf}`, e);
      parentMissing = true;
    }
    if (!parentMissing) {
      created.push(leaf);
      if (inheritsCpuset) await this.inheritCpuset(posix.dirname(leaf), leaf);
      return true;
    }
    let parent = h.mountpoint;
    let made = false;
    for (const segment of rel.split('/')) {
      const dir = posix.join(parent, segment);
      made = true;
      try {
        await fs.mkdir(dir);
        created.push(dir);
      } catch (e) {
        if (errnoOf(e) !== 'EEXIST') throw hostFailure(`mkdir ${dir}`, e);
        made = false;
      }
      if (made && inheritsCpuset) await this.inheritCpuset(parent, dir);
      parent = dir;
    }
    return made;
  }

  /** A new v1 cpuset cgroup starts with empty cpus/mems and refuses tasks until they are set. */
  private async inheritCpuset(parent: string, dir: string): Promise<void> {
    const { fs } = this.cfg;
    for (const file of CPUSET_INHERITED) {
      let value = '';
      try {
        if ((await fs.readFile(posix.join(dir, file))).trim() !== '') continue;
        value = (await fs.readFile(posix.join(parent, file))).trim();
        await fs.writeFile(posix.join(dir, file), value);
      } catch (e) {
        throw hostFailure(`write ${file} = ${JSON.stringify(value)} in ${dir} (inherited from its parent)`, e);
      }
    }
  }

  /**
   * On v2 a controller's files exist in a cgroup only when every ancestor
   * delegates it in cgroup.subtree_control. Controllers no limit needs are
   * delegated on a best-effort basis (stats then read zeros without them).
   */
  private async delegateV2(rel: string, limits: CgroupLimits): Promise<void> {
    const v2 = this.cfg.layout.hierarchies.find((h) => h.version === 2);
    if (!v2) return;
    const wanted = V2_DELEGATED.filter((c) => this.cfg.bindings.get(c) === v2);
    if (wanted.length === 0) return;
    const required = new Set(controllersNeeded(limits).keys());
    const { fs } = this.cfg;
    const segments = rel.split('/');
    // The hierarchy root and every level above the leaf.
    const levels = segments.map((_, depth) => posix.join(v2.mountpoint, ...segments.slice(0, depth)));
    const current: string[] = [];
    for (const dir of levels) current.push(await fs.readFile(posix.join(dir, V2_FILES.subtreeControl)));
    const plan = planSubtreeControl(current, wanted);
    for (const [i, dir] of levels.entries()) {
      for (const value of plan[i] ?? []) {
        try {
          await fs.writeFile(posix.join(dir, V2_FILES.subtreeControl), value);
        } catch (e) {
          if (!required.has(value.slice(1) as Controller)) continue;
          const errno = errnoOf(e) ?? 'EIO';
          throw new LxrError('LXR_HOST_SETUP_FAILED', `cgroup ${dir}: the kernel refused cgroup.subtree_control = ${JSON.stringify(value)}: ${errno}`, {
            errno,
            step: 'write cgroup.subtree_control',
            cause: e,
          });
        }
      }
    }
  }

  private async removeCreated(dir: string, leaf: boolean): Promise<void> {
    try {
      await this.cfg.fs.rmdir(dir);
    } catch (e) {
      const errno = errnoOf(e);
      if (errno === 'ENOENT') return;
      // A parent we made may meanwhile hold another container's cgroup: it is theirs now.
      if (!leaf && (errno === 'EBUSY' || errno === 'ENOTEMPTY')) return;
      throw hostFailure(`rmdir ${dir}`, e, 'LXR_CLEANUP_FAILED');
    }
  }
}

/** A hierarchy's filesystem type and mount options, as a fresh mount of it names them. */
function freshMount(h: Hierarchy): { fsType: 'cgroup' | 'cgroup2'; data: string } {
  if (h.version === 2) return { fsType: 'cgroup2', data: '' };
  const parts = h.controllers.length > 0 ? [...h.controllers] : ['none'];
  if (h.name) parts.push(`name=${h.name}`);
  return { fsType: 'cgroup', data: parts.join(',') };
}

async function readOptional(fs: CgroupFs, file: string): Promise<string | undefined> {
  try {
    return await fs.readFile(file);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT' || errnoOf(e) === 'ENODEV') return undefined;
    throw hostFailure(`read ${file}`, e, 'LXR_INTERNAL');
  }
}

async function readPids(fs: CgroupFs, procsFile: string): Promise<number[]> {
  const text = await readOptional(fs, procsFile);
  if (text === undefined) return [];
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .map(Number)
    .filter((n) => Number.isSafeInteger(n) && n > 0);
}

class HierarchyCgroup implements CgroupHandle {
  readonly procsFiles: string[];
  readonly mountSources: CgroupMountSource[];
  readonly oomCounter: { file: string; key: string } | null;
  readonly placements: Placement[];

  constructor(
    private readonly cfg: ManagerConfig,
    readonly path: string,
  ) {
    this.placements = cfg.layout.hierarchies.map((hierarchy) => ({ hierarchy, dir: posix.join(hierarchy.mountpoint, path) }));
    this.procsFiles = this.placements.map((p) => posix.join(p.dir, 'cgroup.procs'));
    this.mountSources = this.placements.map((p) => ({ hostDir: p.dir, subdir: cfg.layout.mode === 'v2' ? '' : p.hierarchy.subdir, ...freshMount(p.hierarchy) }));
    const mem = this.bound('memory');
    this.oomCounter = mem
      ? { file: posix.join(mem.dir, mem.hierarchy.version === 2 ? V2_FILES.memEvents : V1_FILES.memOom), key: 'oom_kill' }
      : null;
  }

  private bound(c: Controller): Placement | undefined {
    const h = this.cfg.bindings.get(c);
    return h ? this.placements.find((p) => p.hierarchy === h) : undefined;
  }

  async update(limits: CgroupLimits): Promise<void> {
    validateLimits(limits);
    for (const [controller, field] of controllersNeeded(limits)) {
      if (!this.cfg.bindings.has(controller)) {
        throw new LxrError('LXR_UNSUPPORTED', `the ${controller} cgroup controller is not available on this host (needed by ${field})`, { field });
      }
    }
    await this.apply(limits);
  }

  /** Plans with each controller's dialect, reading only what ordering or conversion needs. */
  async apply(limits: CgroupLimits): Promise<void> {
    const { fs } = this.cfg;
    const version = (c: Controller) => this.cfg.bindings.get(c)?.version;
    const writes: CgroupWrite[] = [];

    const v1 = pickLimits(limits, (c) => version(c) === 1);
    if (Object.keys(v1).length > 0) {
      const mem = this.bound('memory');
      let memswAvailable = false;
      let currentMemswLimit: number | null | undefined;
      if (mem && v1.memory && v1.memory.swap !== undefined && v1.memory.swap !== 0) {
        const memsw = posix.join(mem.dir, V1_FILES.memsw);
        memswAvailable = await fs.exists(memsw);
        if (memswAvailable && v1.memory.limit !== undefined && v1.memory.limit !== 0) {
          currentMemswLimit = parseLimit(await fs.readFile(memsw), V1_FILES.memsw);
        }
      }
      writes.push(...planV1Writes(v1, { memswAvailable, ...(currentMemswLimit !== undefined ? { currentMemswLimit } : {}) }));
    }

    const v2 = pickLimits(limits, (c) => version(c) === 2);
    if (Object.keys(v2).length > 0) {
      const mem = this.bound('memory');
      const cpu = this.bound('cpu');
      const ctx: Parameters<typeof planV2Writes>[1] = { swapAvailable: false };
      const m = v2.memory;
      if (mem && m && m.swap !== undefined && m.swap !== 0) {
        ctx.swapAvailable = await fs.exists(posix.join(mem.dir, V2_FILES.swapMax));
        if (ctx.swapAvailable && (m.limit === undefined || m.limit === 0)) {
          ctx.currentMemoryMax = parseLimit(await fs.readFile(posix.join(mem.dir, V2_FILES.memLimit)), V2_FILES.memLimit);
        }
      }
      const c = v2.cpu;
      if (cpu && c && !((c.quota ?? 0) !== 0 && (c.period ?? 0) !== 0) && ((c.quota ?? 0) !== 0 || (c.period ?? 0) !== 0)) {
        const current = await readOptional(fs, posix.join(cpu.dir, V2_FILES.cpuMax));
        if (current !== undefined) ctx.currentCpuMax = current;
      }
      writes.push(...planV2Writes(v2, ctx));
    }

    for (const w of writes) {
      const p = this.bound(w.controller);
      if (!p) continue; // checkSupported ran first; kept for type narrowing.
      try {
        await fs.writeFile(posix.join(p.dir, w.file), w.value);
      } catch (e) {
        throw writeRefused(p.dir, w, e);
      }
    }
  }

  async stats(): Promise<CgroupStats> {
    const { fs } = this.cfg;
    let present = false;
    for (const p of this.placements) if (await fs.exists(p.dir)) present = true;
    if (!present) throw notFound('cgroup', this.path);

    const read = (p: Placement | undefined, file: string) => (p ? readOptional(fs, posix.join(p.dir, file)) : Promise.resolve(undefined));

    let cpu = { usageNanos: 0, userNanos: 0, systemNanos: 0 };
    const acct = this.bound('cpuacct');
    if (acct?.hierarchy.version === 1) {
      const [usage, stat] = await Promise.all([read(acct, V1_FILES.cpuUsage), read(acct, V1_FILES.cpuStat)]);
      if (usage !== undefined) cpu = v1CpuUsage(usage, stat ?? '');
    } else if (acct) {
      const stat = await read(acct, V2_FILES.cpuStat);
      if (stat !== undefined) cpu = v2CpuUsage(stat);
    }

    const memory: CgroupStats['memory'] = { usageBytes: 0, workingSetBytes: 0, limitBytes: null, oomKills: 0 };
    const mem = this.bound('memory');
    if (mem) {
      const v = mem.hierarchy.version;
      const f = v === 1 ? { usage: V1_FILES.memUsage, stat: V1_FILES.memStat, limit: V1_FILES.memLimit, oom: V1_FILES.memOom } : { usage: V2_FILES.memUsage, stat: V2_FILES.memStat, limit: V2_FILES.memLimit, oom: V2_FILES.memEvents };
      const [usage, stat, limit, oom] = await Promise.all([read(mem, f.usage), read(mem, f.stat), read(mem, f.limit), read(mem, f.oom)]);
      if (usage !== undefined) memory.usageBytes = parseCounter(usage, f.usage);
      memory.workingSetBytes = workingSet(memory.usageBytes, stat !== undefined ? inactiveFile(stat, v) : 0);
      if (limit !== undefined) memory.limitBytes = parseLimit(limit, f.limit);
      if (oom !== undefined) memory.oomKills = oomKills(oom);
    }

    const pids: CgroupStats['pids'] = { current: 0, limit: null };
    const pp = this.bound('pids');
    if (pp) {
      const [current, max] = await Promise.all([read(pp, 'pids.current'), read(pp, 'pids.max')]);
      if (current !== undefined) pids.current = parseCounter(current, 'pids.current');
      if (max !== undefined) pids.limit = parseLimit(max, 'pids.max');
    }
    return { cpu, memory, pids };
  }

  /**
   * v2's cgroup.kill kills atomically, forks included; where it is missing
   * (v1, kernels before 5.14) pids are read and SIGKILLed until none are left.
   * That loop can race with pid reuse between read and kill; the window is a
   * few microseconds and the freezer would only move the problem to thawing.
   * On hybrid hosts the unified cgroup holds the same processes, so its
   * cgroup.kill is used too; the loop then only confirms the cgroup is empty.
   */
  async killAll(): Promise<void> {
    const { fs, retry } = this.cfg;
    for (const p of this.placements) {
      if (p.hierarchy.version !== 2) continue;
      const killFile = posix.join(p.dir, V2_FILES.kill);
      if (!(await fs.exists(killFile))) continue;
      try {
        await fs.writeFile(killFile, '1');
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw hostFailure(`write 1 to ${killFile}`, e);
      }
    }
    let left: number[] = [];
    for (let attempt = 0; attempt < retry.attempts; attempt++) {
      left = await this.allPids();
      if (left.length === 0) return;
      if (left.includes(this.cfg.selfPid)) {
        throw new LxrError('LXR_INTERNAL', `cgroup ${JSON.stringify(this.path)} contains the agent itself (pid ${this.cfg.selfPid}); refusing to kill it`);
      }
      for (const pid of left) {
        try {
          this.cfg.kill(pid, 'SIGKILL');
        } catch (e) {
          if (errnoOf(e) !== 'ESRCH') throw hostFailure(`kill -KILL ${pid}`, e);
        }
      }
      await this.cfg.sleep(retry.intervalMs);
    }
    left = await this.allPids();
    if (left.length === 0) return;
    throw new LxrError('LXR_INTERNAL', `cgroup ${JSON.stringify(this.path)} still has processes after SIGKILL: ${left.join(', ')}`, {
      step: 'kill cgroup processes',
    });
  }

  /** Every pid in this cgroup and its descendants (a container may make sub-cgroups), in every hierarchy. */
  private async allPids(): Promise<number[]> {
    const seen = new Set<number>();
    const walk = async (dir: string): Promise<void> => {
      for (const pid of await readPids(this.cfg.fs, posix.join(dir, 'cgroup.procs'))) seen.add(pid);
      for (const child of await this.subdirsOrNone(dir)) await walk(posix.join(dir, child));
    };
    for (const p of this.placements) await walk(p.dir);
    return [...seen].sort((a, b) => a - b);
  }

  private async subdirsOrNone(dir: string): Promise<string[]> {
    try {
      return await this.cfg.fs.subdirs(dir);
    } catch (e) {
      if (errnoOf(e) === 'ENOENT') return [];
      throw hostFailure(`list ${dir}`, e);
    }
  }

  /** Removes the leaf (and any sub-cgroups the container made) everywhere; parents such as "lxr" are shared and stay. */
  async destroy(): Promise<void> {
    const results = await Promise.allSettled(this.placements.map((p) => this.removeTree(p.hierarchy, p.dir)));
    const failures: LxrError[] = [];
    results.forEach((r, i) => {
      if (r.status === 'rejected') {
        const e: unknown = r.reason;
        failures.push(e instanceof LxrError ? e : hostFailure(`remove ${this.placements[i]!.dir}`, e, 'LXR_CLEANUP_FAILED'));
      }
    });
    if (failures.length > 0) throw combine(failures);
  }

  private async removeTree(h: Hierarchy, dir: string): Promise<void> {
    const { fs, retry } = this.cfg;
    let childrenGone = false;
    for (let attempt = 0; ; attempt++) {
      try {
        await fs.rmdir(dir);
        return;
      } catch (e) {
        const errno = errnoOf(e);
        if (errno === 'ENOENT') return;
        // Usually a container made no sub-cgroups: try the rmdir first, and
        // list children only when it is refused.
        if (errno === 'EBUSY' && !childrenGone) {
          childrenGone = true;
          const children = await this.subdirsOrNone(dir);
          for (const child of children) await this.removeTree(h, posix.join(dir, child));
          if (children.length > 0) {
            attempt--;
            continue;
          }
        }
        // Exiting processes leave the cgroup a moment after they die.
        if (errno === 'EBUSY' && attempt + 1 < retry.attempts) {
          await this.cfg.sleep(retry.intervalMs);
          continue;
        }
        const why = errno === 'EBUSY' ? ' (processes are still inside)' : '';
        throw new LxrError('LXR_CLEANUP_FAILED', `cgroup: cannot remove ${dir} in the ${hierarchyLabel(h)} hierarchy${why}: ${errno ?? String(e)}`, {
          step: `rmdir ${dir}`,
          cause: e,
          ...(errno !== undefined ? { errno } : {}),
        });
      }
    }
  }
}
