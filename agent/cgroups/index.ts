// Entry point of the cgroup module: detects this host's cgroup layout and
// returns the CgroupManager for it (v1, v2 or hybrid), plus the pure pieces
// other modules and tests use.

import { posix } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { bindControllers, DEFAULT_CGROUP_ROOT, detectLayout, readMountinfo } from './detect.js';
import { errnoOf, linuxFs, type CgroupFs } from './fs.js';
import { HierarchyCgroupManager } from './manager.js';
import { V2_FILES } from './v2.js';

export type * from './cgroup.js';
export { bindControllers, detectLayout, hierarchyLabel, parseMountinfo, readMountinfo, DEFAULT_CGROUP_ROOT } from './detect.js';
export type { CgroupLayout, Controller, Hierarchy, MountEntry } from './detect.js';
export { FakeCgroupFs, linuxFs } from './fs.js';
export type { CgroupFs, FakeCall, FakeOp } from './fs.js';
export { normalizeCgroupPath, validateLimits } from './limits.js';
export type { CgroupWrite } from './limits.js';
export { planV1Writes } from './v1.js';
export { planSubtreeControl, planV2Writes, sharesToWeight } from './v2.js';
export { HierarchyCgroupManager } from './manager.js';

export interface CgroupManagerOptions {
  /** Where the hierarchies are mounted (default /sys/fs/cgroup). */
  root?: string;
  /** mountinfo text to detect from (default: read /proc/self/mountinfo). */
  mountinfo?: string;
  /** Filesystem access (default: the real one); tests pass a FakeCgroupFs. */
  fs?: CgroupFs;
  /** Default process.kill; tests replace it. */
  kill?: (pid: number, signal: NodeJS.Signals) => void;
  sleep?: (ms: number) => Promise<void>;
  /** Polling of killAll and destroy (default 100 attempts, 20 ms apart: ~2 s). */
  retry?: { attempts?: number; intervalMs?: number };
}

export async function createCgroupManager(opts: CgroupManagerOptions = {}): Promise<HierarchyCgroupManager> {
  const fs = opts.fs ?? linuxFs;
  const layout = detectLayout(opts.mountinfo ?? (await readMountinfo()), opts.root ?? DEFAULT_CGROUP_ROOT);
  // What the unified hierarchy can serve: on hybrid hosts usually nothing
  // (every controller is bound to v1), on v2 hosts everything.
  const v2 = layout.hierarchies.find((h) => h.version === 2);
  let v2Available: string[] = [];
  if (v2) {
    try {
      v2Available = (await fs.readFile(posix.join(v2.mountpoint, V2_FILES.controllers))).trim().split(/\s+/).filter((c) => c !== '');
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e;
    }
  }
  return new HierarchyCgroupManager({
    fs,
    layout,
    bindings: bindControllers(layout, v2Available),
    kill: opts.kill ?? ((pid, signal) => process.kill(pid, signal)),
    sleep: opts.sleep ?? ((ms) => delay(ms)),
    selfPid: process.pid,
    retry: { attempts: opts.retry?.attempts ?? 100, intervalMs: opts.retry?.intervalMs ?? 20 },
  });
}
