// Shared pieces of the runtime integration tests (runtime-*.test.ts): shell
// configs, running containers kept alive for exec/inspection, exec with
// captured output, error assertions and the "nothing left behind" check.

import { strict as assert } from 'node:assert';
import { closeSync, openSync } from 'node:fs';
import { access, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { LxrError, type Reason } from '../../proto/shared/errors.js';
import type { Process, Spec } from '../../agent/runtime/oci.js';
import type { CreateOptions } from '../../agent/runtime/runtime.js';
import { cgroupDirs } from '../helpers/cgroups.js';
import { parseCriLog, type RuntimeFixture } from '../helpers/runtime.js';
import { baseConfig, type BaseConfigOptions } from '../helpers/runc-spec.js';
import { tempDir, uniqueId } from '../helpers/tmp.js';

/** Bounded, so a hung container fails its test instead of the run. */
export const T = { timeout: 30_000 } as const;

/** baseConfig running `sh -c script`. */
export function sh(script: string, opts: BaseConfigOptions = {}): Spec {
  return baseConfig({ ...opts, args: ['sh', '-c', script] });
}

/** Awaits `p`, asserts it rejects with an LxrError of `reason` whose message matches every pattern. */
export async function rejectsWith(p: Promise<unknown>, reason: Reason, ...patterns: RegExp[]): Promise<LxrError> {
  let caught: unknown;
  try {
    await p;
  } catch (e) {
    caught = e;
  }
  assert.ok(caught !== undefined, `expected an LxrError ${reason}, but the call succeeded`);
  assert.ok(caught instanceof LxrError, `expected an LxrError ${reason}, got ${String((caught as Error)?.stack ?? caught)}`);
  assert.equal(caught.reason, reason, `reason of: ${caught.message}`);
  for (const re of patterns) assert.match(caught.message, re);
  return caught;
}

export interface Started {
  id: string;
  pid: number;
  log: string;
  /** What the container printed so far (CRI log, split by stream). */
  output(): Promise<{ stdout: string; stderr: string }>;
}

/** create (stdio to a CRI log) + start; the caller deletes (the fixture does at the end anyway). */
export async function startContainer(fx: RuntimeFixture, config: Spec, opts: CreateOptions = {}): Promise<Started> {
  const bundle = await fx.bundle(config);
  const id = uniqueId('c');
  const log = path.join(await tempDir('log'), 'container.log');
  const st = await fx.rt.create(id, bundle, { stdio: { mode: 'log', path: log }, ...opts });
  await fx.rt.start(id);
  return {
    id,
    pid: st.pid!,
    log,
    output: async () => parseCriLog(await readFile(log, 'utf8').catch(() => '')),
  };
}

/** Polls `cond` (every 50 ms, bounded by the test's timeout) until it holds. */
export async function until(what: string, cond: () => Promise<boolean>, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The process section of baseConfig with other args, for exec. */
export function execProcess(args: string[], patch: Partial<Process> = {}): Process {
  return { ...baseConfig().process!, args, ...patch };
}

export interface ExecResult {
  pid: number;
  code: number | null;
  stdout: string;
  stderr: string;
}

/** rt.exec with stdout/stderr captured in files (the exec'd process gets real fds, not pipes). */
export async function execCapture(fx: RuntimeFixture, id: string, proc: Process): Promise<ExecResult> {
  const dir = await tempDir('exec');
  const outPath = path.join(dir, 'out');
  const errPath = path.join(dir, 'err');
  const out = openSync(outPath, 'w');
  const err = openSync(errPath, 'w');
  let h;
  try {
    h = await fx.rt.exec(id, proc, { stdioFds: ['ignore', out, err] });
  } finally {
    // The helper has its own copies by now.
    closeSync(out);
    closeSync(err);
  }
  const code = await h.exited;
  return { pid: h.pid, code, stdout: await readFile(outPath, 'utf8'), stderr: await readFile(errPath, 'utf8') };
}

/** Pids of processes whose command line mentions `needle` (e.g. a container id in a plan path). */
export async function processesMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const cmd = await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(needle)) pids.push(Number(name));
  }
  return pids;
}

/** After a failed create: no state directory, no cgroup in any hierarchy, no helper or init process. */
export async function assertNothingLeft(fx: RuntimeFixture, id: string): Promise<void> {
  const dir = path.join(fx.root, id);
  assert.equal(await access(dir).then(() => true, () => false), false, `state directory ${dir} is left behind`);
  assert.deepEqual(await cgroupDirs(path.join(fx.cgroupParent, id)), [], 'cgroup directories are left behind');
  assert.deepEqual(await processesMentioning(dir), [], 'processes of the container are left behind');
  assert.deepEqual((await fx.rt.list()).map((s) => s.id).filter((x) => x === id), []);
}

/** The fields of /proc/PID/status (or self) printed by a container: "Name:\tvalue" lines. */
export function statusFields(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i > 0) m.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return m;
}

/** Capability numbers (linux/capability.h) of the names tests use. */
export const CAP = {
  CAP_CHOWN: 0,
  CAP_DAC_OVERRIDE: 1,
  CAP_KILL: 5,
  CAP_SETPCAP: 8,
  CAP_NET_BIND_SERVICE: 10,
  CAP_NET_RAW: 13,
  CAP_SYS_ADMIN: 21,
  CAP_AUDIT_WRITE: 29,
} as const;

/** The 16-hex-digit mask /proc/PID/status shows for a set of capability names. */
export function capHex(names: Array<keyof typeof CAP>): string {
  let m = 0n;
  for (const n of names) m |= 1n << BigInt(CAP[n]);
  return m.toString(16).padStart(16, '0');
}

/** One line of /proc/self/mountinfo, parsed. */
export interface MountLine {
  root: string;
  mountPoint: string;
  options: string[];
  optional: string[];
  fstype: string;
  source: string;
  superOptions: string[];
}

export function parseMountinfo(text: string): MountLine[] {
  const out: MountLine[] = [];
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const pre = line.slice(0, sep).split(' ');
    const post = line.slice(sep + 3).split(' ');
    out.push({
      root: pre[3]!,
      mountPoint: pre[4]!,
      options: pre[5]!.split(','),
      optional: pre.slice(6),
      fstype: post[0]!,
      source: post[1]!,
      superOptions: (post[2] ?? '').split(','),
    });
  }
  return out;
}

/** The last (topmost) mount at `mountPoint`. */
export function mountAt(mounts: MountLine[], mountPoint: string): MountLine {
  const m = mounts.filter((x) => x.mountPoint === mountPoint).at(-1);
  assert.ok(m, `no mount at ${mountPoint} in ${mounts.map((x) => x.mountPoint).join(' ')}`);
  return m;
}
