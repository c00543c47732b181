// The host's cgroup hierarchies as tests and benchmarks see them: every
// cgroup v1/v2 mount point, whether a test's cgroup exists in any of them,
// and the removal of a test-made cgroup tree from all of them.

import { readdir, readFile, rmdir, stat } from 'node:fs/promises';
import { posix } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { parseMountinfo, readMountinfo } from '../../agent/cgroups/index.js';

/**
 * Mount points of every cgroup (v1) and cgroup2 mount in /proc/self/mountinfo,
 * each once, in mountinfo order. Deliberately every mount, not detectLayout's
 * hierarchies under /sys/fs/cgroup: teardown must reach cgroups wherever
 * they were made, and it must not depend on the detection it tests.
 */
export async function cgroupMountpoints(): Promise<string[]> {
  const out = new Set<string>();
  for (const m of parseMountinfo(await readMountinfo())) {
    if (m.fstype === 'cgroup' || m.fstype === 'cgroup2') out.add(m.mountpoint);
  }
  return [...out];
}

/**
 * `rel` as a path below a hierarchy root ("a/b" for "/a/b"). Refuses the root
 * itself and anything outside it: removal kills what a tree holds, and the
 * root cgroup holds the whole host.
 */
function below(rel: string): string {
  const p = posix.normalize(rel).replace(/^\/+|\/+$/g, '');
  if (p === '' || p === '.' || p === '..' || p.startsWith('../')) throw new Error(`not a cgroup below a hierarchy root: ${JSON.stringify(rel)}`);
  return p;
}

async function isDir(p: string): Promise<boolean> {
  return stat(p).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

/** The directories of cgroup `rel` that exist, one per hierarchy that has it. */
export async function cgroupDirs(rel: string): Promise<string[]> {
  const sub = below(rel);
  const found: string[] = [];
  for (const mp of await cgroupMountpoints()) {
    const dir = posix.join(mp, sub);
    if (await isDir(dir)) found.push(dir);
  }
  return found;
}

/** Whether cgroup `rel` exists in any hierarchy. */
export async function cgroupExists(rel: string): Promise<boolean> {
  return (await cgroupDirs(rel)).length > 0;
}

export interface RemoveOptions {
  /** rmdir attempts per directory while it is EBUSY (default 100, 20 ms apart: ~2 s). */
  attempts?: number;
  intervalMs?: number;
}

export interface Removed {
  /** Directories removed, deepest first per hierarchy. */
  removed: string[];
  /** Pids that were still in the tree and got SIGKILL. */
  killed: number[];
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

/** Every directory of the tree at `dir`, parents before children; [] when it does not exist. */
async function treeOf(dir: string, failures: Error[]): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') failures.push(new Error(`cannot list cgroup ${dir}: ${(e as Error).message}`));
    return [];
  }
  const out = [dir];
  for (const d of entries) if (d.isDirectory()) out.push(...(await treeOf(posix.join(dir, d.name), failures)));
  return out;
}

/** SIGKILLs the processes listed in `dir`/cgroup.procs (never this process); returns their pids. */
async function killProcs(dir: string): Promise<number[]> {
  const text = await readFile(posix.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  const pids = text
    .split('\n')
    .filter((l) => l !== '')
    .map(Number)
    .filter((pid) => pid > 0 && pid !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Exited meanwhile.
    }
  }
  return pids;
}

/**
 * Removes cgroup `rel` and everything below it from every hierarchy: the
 * processes still in the tree (which only the caller's test put there) are
 * SIGKILLed, then the directories are removed deepest first. EBUSY is retried
 * (a killed process leaves its cgroup a moment after it dies, and a v1
 * hierarchy may still be releasing it), with the kill repeated in case a
 * process was placed meanwhile; ENOENT counts as removed. Every hierarchy is
 * tried even when one fails, and all failures are thrown together.
 */
export async function removeCgroupTree(rel: string, opts: RemoveOptions = {}): Promise<Removed> {
  const attempts = opts.attempts ?? 100;
  const intervalMs = opts.intervalMs ?? 20;
  const sub = below(rel);
  const failures: Error[] = [];
  const removed: string[] = [];
  const killed = new Set<number>();
  for (const mp of await cgroupMountpoints()) {
    const dirs = await treeOf(posix.join(mp, sub), failures);
    // All of the tree first, so no process is left running to be placed or
    // to fork into a cgroup already visited.
    for (const d of dirs) for (const pid of await killProcs(d)) killed.add(pid);
    const blocked = new Set<string>();
    for (const d of dirs.reverse()) {
      // A parent whose child could not go cannot go either; its EBUSY would
      // only repeat the child's failure after a full round of retries.
      if (blocked.has(d)) {
        blocked.add(posix.dirname(d));
        continue;
      }
      for (let i = 1; ; i++) {
        try {
          await rmdir(d);
          removed.push(d);
          break;
        } catch (e) {
          const code = errnoOf(e);
          if (code === 'ENOENT') break;
          if (code !== 'EBUSY' || i >= attempts) {
            failures.push(new Error(`cannot remove cgroup ${d}: ${(e as Error).message}`));
            blocked.add(posix.dirname(d));
            break;
          }
          await delay(intervalMs);
          for (const pid of await killProcs(d)) killed.add(pid);
        }
      }
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, `cannot remove cgroup ${sub}: ${failures.map((f) => f.message).join('; ')}`);
  return { removed, killed: [...killed] };
}
