// Test-scoped resources: temporary directories, short unique ids, and a
// cleanup stack that undoes a test's steps in reverse even when some fail.

import { randomBytes } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** Short random ids ("t" + 8 hex by default): short because they end up in
 *  interface names and cgroup paths, random so parallel runs never collide. */
export function uniqueId(prefix = 't'): string {
  return prefix + randomBytes(4).toString('hex');
}

export interface Cleanups {
  /** Registers a step; steps run last-added first. */
  add(step: () => Promise<void> | void): void;
  /** Runs every registered step (in reverse) once, all of them even when some
   *  fail; then throws the failure (an AggregateError when several). */
  run(): Promise<void>;
}

export function cleanups(): Cleanups {
  const steps: Array<() => Promise<void> | void> = [];
  return {
    add(step) {
      steps.push(step);
    },
    async run() {
      const failures: unknown[] = [];
      // Popped before running, so a second run() (an after-hook following an
      // explicit run) never repeats a step.
      for (let step = steps.pop(); step !== undefined; step = steps.pop()) {
        try {
          await step();
        } catch (e) {
          failures.push(e);
        }
      }
      if (failures.length === 1) throw failures[0];
      if (failures.length > 1) {
        const msg = failures.map((f) => (f instanceof Error ? f.message : String(f))).join('; ');
        throw new AggregateError(failures, `${failures.length} cleanup steps failed: ${msg}`);
      }
    },
  };
}

// Directories still present at exit (a crash between steps, a killed test)
// are removed synchronously as a last resort.
const pendingDirs = new Set<string>();
let exitHookInstalled = false;

function removePendingSync(): void {
  for (const dir of pendingDirs) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // The process is exiting; there is nowhere left to report this.
    }
  }
  pendingDirs.clear();
}

/** Removes a directory made by tempDir now rather than after the test. */
export async function removeTempDir(path: string): Promise<void> {
  await rm(path, { recursive: true, force: true });
  pendingDirs.delete(path);
}

/** Test dirs carry their owner's pid: `lxr-test-<pid>-<prefix>-XXXXXX`. */
const OWNED = /^lxr-test-(\d+)-/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let swept = false;

/**
 * A test process killed by a signal (a runner timeout, Ctrl-C) runs no exit
 * hook: the first tempDir of every later test process removes the dirs
 * whose owner is gone, so nothing piles up in /tmp.
 */
export function sweepStaleTempDirs(): void {
  if (swept) return;
  swept = true;
  for (const name of readdirSync(tmpdir())) {
    const m = OWNED.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
      try {
        rmSync(join(tmpdir(), name), { recursive: true, force: true });
      } catch {
        // Best effort: a dir we cannot remove is left for the next sweep.
      }
    }
  }
}

/** mkdtemp under os.tmpdir() with this process's pid in the name (see sweepStaleTempDirs). */
export async function ownedTempDir(prefix: string): Promise<string> {
  sweepStaleTempDirs();
  return mkdtemp(join(tmpdir(), `lxr-test-${process.pid}-${prefix}-`));
}

/**
 * Makes `os.tmpdir()/lxr-test-<pid>-<prefix>-XXXXXX` and registers its removal
 * with node:test's `after`, which, called inside a test, runs when that test
 * ends (passed or failed), and at top level when the file's tests end. A
 * process-exit hook catches whatever is left.
 */
export async function tempDir(prefix = 'tmp'): Promise<string> {
  const path = await ownedTempDir(prefix);
  pendingDirs.add(path);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', removePendingSync);
  }
  after(() => removeTempDir(path));
  return path;
}
