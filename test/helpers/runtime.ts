// A Runtime for one test file: its own state root under a temp dir, its own
// cgroup parent, busybox bundles on demand, and a cleanup that force-deletes
// every container it made and removes the cgroup parent from every
// hierarchy, also when the test failed.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after } from 'node:test';
import { createCgroupManager } from '../../agent/cgroups/index.js';
import type { Spec } from '../../agent/runtime/oci.js';
import { Runtime, type CreateOptions, type ExitStatus } from '../../agent/runtime/runtime.js';
import { removeCgroupTree } from './cgroups.js';
import { makeBundle } from './rootfs.js';
import { tempDir, uniqueId } from './tmp.js';

export interface RunResult extends ExitStatus {
  stdout: string;
  stderr: string;
}

export interface RuntimeFixture {
  rt: Runtime;
  root: string;
  cgroupParent: string;
  /** A fresh bundle dir (busybox rootfs + this config). */
  bundle(config: Spec): Promise<string>;
  /** create (stdout/stderr to a CRI log) + start + wait + delete; returns what the container printed. */
  run(config: Spec, opts?: CreateOptions): Promise<RunResult>;
  cleanup(): Promise<void>;
}

/** Splits a CRI log ("TIME STREAM F|P text") into the two streams. */
export function parseCriLog(text: string): { stdout: string; stderr: string } {
  const out = { stdout: '', stderr: '' };
  for (const line of text.split('\n')) {
    const m = /^\S+ (stdout|stderr) ([FP]) (.*)$/.exec(line);
    if (!m) continue;
    out[m[1] as 'stdout' | 'stderr'] += m[3] + (m[2] === 'F' ? '\n' : '');
  }
  return out;
}

export async function runtimeFixture(): Promise<RuntimeFixture> {
  const dir = await tempDir('rt');
  const root = path.join(dir, 'state');
  const cgroupParent = uniqueId('lxr-test-');
  const rt = new Runtime({ root, cgroups: await createCgroupManager(), cgroupParent });
  let n = 0;
  const fx: RuntimeFixture = {
    rt,
    root,
    cgroupParent,
    bundle: (config) => makeBundle(path.join(dir, `b${n++}`), config),
    async run(config, opts = {}) {
      const bundle = await fx.bundle(config);
      const id = uniqueId('c');
      const log = path.join(dir, `${id}.log`);
      await rt.create(id, bundle, { stdio: { mode: 'log', path: log }, ...opts });
      try {
        await rt.start(id);
        const exit = await rt.wait(id);
        const text = await readFile(log, 'utf8').catch(() => '');
        return { ...exit, ...parseCriLog(text) };
      } finally {
        await rt.delete(id, { force: true });
      }
    },
    async cleanup() {
      const errors: unknown[] = [];
      for (const s of await rt.list().catch(() => [])) {
        await rt.delete(s.id, { force: true }).catch((e: unknown) => errors.push(e));
      }
      // Processes still there after every container was deleted are a leak
      // the tests should have caught: cleaned up, but reported.
      try {
        const { killed } = await removeCgroupTree(cgroupParent);
        if (killed.length > 0) errors.push(new Error(`processes were left in test cgroup ${cgroupParent}: ${killed.join(' ')}`));
      } catch (e) {
        errors.push(e);
      }
      if (errors.length) throw new AggregateError(errors, 'runtime fixture cleanup failed');
    },
  };
  after(() => fx.cleanup());
  return fx;
}
