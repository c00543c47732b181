// The runtime benchmark: N sequential `true` containers from one bundle,
// each create+start+wait+delete, under
//   - LXR's Runtime in process (as the agent drives it: no Node start per container),
//   - the lxr-runtime command (one Node start per container),
//   - runc and crun (`run --bundle`),
// plus `node -e 0` so the command's own start-up cost is visible.
//
// All contenders use the same config.json, which names no cgroupsPath: runc
// and crun then place each container at /<id> in every hierarchy (runc
// relative to its own cgroup, which matters where the caller sits in a
// non-root memory cgroup), the lxr-runtime command at lxr/<id> and the
// in-process Runtime under a bench-unique parent. All of them remove the
// container's cgroup when it is deleted; the cleanup here sweeps whatever an
// interrupted run leaves, by id prefix and parent, in every hierarchy.
//
// The commands are timed by one bash loop per round (bash's $EPOCHREALTIME
// around each command, so no extra process per sample and the same method
// for every command). crun 1.8 refuses hybrid cgroup hosts, so its loop runs
// in a private mount namespace (unshare --mount --propagation private) where
// the cgroup2 mount at /sys/fs/cgroup/unified is replaced by a throwaway
// tmpfs: crun then sees a v1 host. (Merely unmounting it would not do: crun
// still creates <id>/cgroup.procs under "unified", which would then land on
// the host's /sys/fs/cgroup tmpfs, hidden under the cgroup2 mount, and leak.)

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCgroupManager } from '../../agent/cgroups/index.js';
import { Runtime } from '../../agent/runtime/runtime.js';
import { cgroupMountpoints, removeCgroupTree } from '../helpers/cgroups.js';
import { makeBundle } from '../helpers/rootfs.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { round, speedRatio, splitEvenly, summarize, formatTable, type Summary } from './stats.js';
import { catchInterrupts, checkInterrupted, trackChild } from './interrupt.js';

export const IN_PROCESS = 'lxr in-process';
export const COMMAND = 'lxr-runtime command';
export const RUNC = 'runc';
export const CRUN = 'crun';
export const NODE = 'node start-up';
const COMMAND_MINUS_NODE = 'lxr-runtime command minus node start-up';

const WARMUP = 3;
const MAX_ROUNDS = 10;
const RUNC_BIN = '/usr/sbin/runc';
const CRUN_BIN = '/usr/bin/crun';
const CLI = fileURLToPath(new URL('../../agent/runtime/cli.js', import.meta.url));

export interface RuntimeBenchOptions {
  count: number;
  /** Progress and notes (stderr); the result is returned, not printed. */
  log: (line: string) => void;
}

export interface RuntimeBenchResult {
  count: number;
  contenders: Record<string, Summary>;
  derived: Record<string, number>;
  ratios: Record<string, number | null>;
  targets: Record<string, { met: boolean | null; ratio: number | null; text: string }>;
  notes: string[];
}

// ---------------------------------------------------------------------------
// Timing loops for commands.

/**
 * argv: MODE PREFIX FIRST COUNT ERRLOG CMD... ; runs CMD [PREFIX<i>] for i in
 * FIRST..FIRST+COUNT-1 with stdio to /dev/null (stderr to ERRLOG), printing
 * "RC START_US END_US" per run. MODE "private-v1" first swaps the cgroup2
 * mount for a tmpfs (only ever inside a private mount namespace).
 */
const LOOP = `
set -u
export LC_ALL=C
mode=$1 prefix=$2 first=$3 count=$4 errlog=$5
shift 5
if [ "$mode" = private-v1 ]; then
  umount /sys/fs/cgroup/unified || { echo "lxr-bench: cannot unmount /sys/fs/cgroup/unified in the private mount namespace" >&2; exit 90; }
  mount -t tmpfs -o size=1m,mode=755 lxr-bench-unified /sys/fs/cgroup/unified || { echo "lxr-bench: cannot mount a tmpfs on /sys/fs/cgroup/unified" >&2; exit 91; }
fi
for ((i = first; i < first + count; i++)); do
  t0=$EPOCHREALTIME
  "$@" \${prefix:+"$prefix$i"} </dev/null >/dev/null 2>"$errlog"
  rc=$?
  t1=$EPOCHREALTIME
  echo "$rc \${t0/./} \${t1/./}"
  if [ "$rc" != 0 ]; then cat "$errlog" >&2; exit 92; fi
done
`;

interface LoopSpec {
  privateV1: boolean;
  /** Container id prefix; "" to append no id (node start-up). */
  prefix: string;
  first: number;
  count: number;
  cmd: string[];
  errlog: string;
}

/** Runs one timing loop; the per-run durations in ms. */
async function timeLoop(spec: LoopSpec): Promise<number[]> {
  checkInterrupted();
  if (spec.count === 0) return [];
  const args = ['-c', LOOP, 'lxr-bench-loop', spec.privateV1 ? 'private-v1' : 'host', spec.prefix, String(spec.first), String(spec.count), spec.errlog, ...spec.cmd];
  const [file, argv] = spec.privateV1 ? ['unshare', ['--mount', '--propagation', 'private', 'bash', ...args]] : ['bash', args];
  const child = spawn(file, argv as string[], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const done = trackChild(child);
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await done;
  checkInterrupted();
  const lines = out.split('\n').filter((l) => l !== '');
  const times: number[] = [];
  for (const l of lines) {
    const [rc, t0, t1] = l.split(' ');
    if (rc !== '0') throw new Error(`${spec.cmd.join(' ')} ${spec.prefix}…: exit ${rc}: ${err.trim()}`);
    times.push((Number(t1) - Number(t0)) / 1000);
  }
  if (code !== 0 || times.length !== spec.count) {
    throw new Error(`timing loop for ${spec.cmd.join(' ')} failed (exit ${code}, ${times.length}/${spec.count} runs): ${err.trim()}`);
  }
  return times;
}

// ---------------------------------------------------------------------------
// Cgroup sweep.

/** Distinct non-root cgroup paths of this process (runc nests under them). */
async function ownCgroupPaths(): Promise<string[]> {
  const text = await readFile('/proc/self/cgroup', 'utf8');
  const paths = new Set<string>();
  for (const line of text.split('\n')) {
    const p = line.split(':').slice(2).join(':');
    if (p && p !== '/') paths.add(p);
  }
  return [...paths];
}

interface Sweep {
  idPrefix: string;
  cgroupParent: string;
  /** Mountpoints where "lxr" (the command's default parent) did not exist before the run. */
  lxrAbsent: string[];
}

/**
 * Finds every cgroup the run may have made, in any hierarchy, and removes it;
 * returns the top directory of each tree removed.
 */
async function sweepCgroups(s: Sweep): Promise<string[]> {
  const own = await ownCgroupPaths();
  const mountpoints = await cgroupMountpoints();
  // Relative paths, so one removal covers every hierarchy holding the name.
  const rels = new Set([s.cgroupParent]);
  for (const mp of mountpoints) {
    for (const parent of ['', 'lxr', ...own]) {
      for (const name of await readdir(path.join(mp, parent)).catch(() => [] as string[])) {
        if (name.startsWith(s.idPrefix)) rels.add(path.posix.join(parent, name).replace(/^\//, ''));
      }
    }
  }
  const removed: string[] = [];
  const failures: string[] = [];
  for (const rel of rels) {
    try {
      removed.push(...(await removeCgroupTree(rel)).removed.filter((d) => d.endsWith(`/${rel}`)));
    } catch (e) {
      failures.push((e as Error).message);
    }
  }
  // Only if empty: once other users' cgroups live there, "lxr" is shared.
  for (const mp of s.lxrAbsent) await rmdir(path.join(mp, 'lxr')).catch(() => {});
  if (failures.length > 0) throw new Error(failures.join('; '));
  return removed;
}

// ---------------------------------------------------------------------------

function which(bin: string): boolean {
  return existsSync(bin);
}

export async function runtimeBench(opts: RuntimeBenchOptions): Promise<RuntimeBenchResult> {
  const { count, log } = opts;
  const notes: string[] = [];
  const rand = randomBytes(3).toString('hex');
  const idPrefix = `lxrbench-${rand}-`;
  const cgroupParent = `lxr-bench-${rand}`;
  const dir = await mkdtemp(path.join(tmpdir(), 'lxr-bench-'));
  const sweep: Sweep = { idPrefix, cgroupParent, lxrAbsent: (await cgroupMountpoints()).filter((mp) => !existsSync(path.join(mp, 'lxr'))) };
  const releaseSignals = catchInterrupts('cgroups named lxrbench-*/lxr-bench-*');

  try {
    const bundle = path.join(dir, 'bundle');
    await makeBundle(bundle, baseConfig({ args: ['true'] }));
    const errlog = path.join(dir, 'stderr.log');
    const state = (name: string) => path.join(dir, `state-${name}`);
    for (const n of ['lxr', 'cli', 'runc', 'crun']) await mkdir(state(n));

    const rt = new Runtime({ root: state('lxr'), cgroups: await createCgroupManager(), cgroupParent });
    const inProcess = async (prefix: string, first: number, n: number): Promise<number[]> => {
      const times: number[] = [];
      for (let i = first; i < first + n; i++) {
        checkInterrupted();
        const id = `${prefix}${i}`;
        const t0 = process.hrtime.bigint();
        await rt.create(id, bundle, { stdio: { mode: 'inherit' } });
        await rt.start(id);
        const exit = await rt.wait(id);
        await rt.delete(id);
        const t1 = process.hrtime.bigint();
        if (exit.exitCode !== 0 || exit.signal !== 0) throw new Error(`${IN_PROCESS} ${id}: exit ${exit.exitCode} signal ${exit.signal} ${exit.error ?? ''}`);
        times.push(Number(t1 - t0) / 1e6);
      }
      return times;
    };
    const loop = (cmd: string[], privateV1 = false) => (prefix: string, first: number, n: number) =>
      timeLoop({ privateV1, prefix, first, count: n, cmd, errlog });

    type Run = (prefix: string, first: number, n: number) => Promise<number[]>;
    const contenders: Array<{ name: string; tag: string; run: Run }> = [
      { name: IN_PROCESS, tag: 'l', run: inProcess },
      { name: COMMAND, tag: 'c', run: loop([process.execPath, CLI, '--root', state('cli'), 'run', '--bundle', bundle]) },
    ];
    if (which(RUNC_BIN)) contenders.push({ name: RUNC, tag: 'r', run: loop([RUNC_BIN, '--root', state('runc'), 'run', '--bundle', bundle]) });
    else notes.push(`${RUNC_BIN} not found: runc skipped`);
    if (which(CRUN_BIN)) contenders.push({ name: CRUN, tag: 'k', run: loop([CRUN_BIN, '--root', state('crun'), 'run', '--bundle', bundle], true) });
    else notes.push(`${CRUN_BIN} not found: crun skipped`);
    const nodeRun: Run = (_prefix, _first, n) => timeLoop({ privateV1: false, prefix: '', first: 0, count: n, cmd: [process.execPath, '-e', '0'], errlog });

    log(`runtime bench: ${count} containers per contender (true, one bundle), ${WARMUP} warm-up each; ids ${idPrefix}*, LXR cgroup parent ${cgroupParent}`);
    for (const c of contenders) {
      await c.run(`${idPrefix}${c.tag}w`, 0, WARMUP);
    }
    await nodeRun('', 0, 1);

    const rounds = Math.max(1, Math.min(MAX_ROUNDS, count));
    const sizes = splitEvenly(count, rounds);
    const nodeSizes = splitEvenly(Math.max(1, Math.round(count / 5)), rounds);
    const samples = new Map<string, number[]>([...contenders.map((c) => [c.name, []] as [string, number[]]), [NODE, []]]);
    const done = new Map<string, number>();
    for (let r = 0; r < rounds; r++) {
      // Rotate the order so no contender always follows the same neighbour.
      const order = contenders.map((_, i) => contenders[(i + r) % contenders.length]!);
      for (const c of order) {
        const first = done.get(c.name) ?? 0;
        samples.get(c.name)!.push(...(await c.run(`${idPrefix}${c.tag}`, first, sizes[r]!)));
        done.set(c.name, first + sizes[r]!);
      }
      samples.get(NODE)!.push(...(await nodeRun('', 0, nodeSizes[r]!)));
      const row = order.map((c) => `${c.name} ${summarize(samples.get(c.name)!.slice(-sizes[r]!)).median.toFixed(1)}`).join(', ');
      log(`  round ${r + 1}/${rounds}: medians (ms) ${row}`);
    }

    const result: RuntimeBenchResult = { count, contenders: {}, derived: {}, ratios: {}, targets: {}, notes };
    for (const [name, s] of samples) {
      const sum = summarize(s);
      result.contenders[name] = { median: round(sum.median), p90: round(sum.p90), min: round(sum.min), n: sum.n };
    }
    const med = (n: string) => result.contenders[n]?.median;
    const cmd = med(COMMAND);
    const node = med(NODE);
    if (cmd !== undefined && node !== undefined) result.derived[COMMAND_MINUS_NODE] = round(cmd - node);

    const lxr = med(IN_PROCESS)!;
    const crun = med(CRUN);
    const runc = med(RUNC);
    const cmp = (subject: string, peer: string) => {
      const a = med(subject);
      const b = med(peer);
      return a === undefined || b === undefined ? null : speedRatio(subject, a, peer, b);
    };
    for (const [subject, peer] of [
      [IN_PROCESS, CRUN],
      [IN_PROCESS, RUNC],
      [COMMAND, CRUN],
      [COMMAND, RUNC],
    ] as const) {
      result.ratios[`${peer}/${subject}`] = cmp(subject, peer) ? round(cmp(subject, peer)!.ratio) : null;
    }
    const vsCrun = cmp(IN_PROCESS, CRUN);
    const vsRunc = cmp(IN_PROCESS, RUNC);
    result.targets[`${IN_PROCESS} no slower than crun`] = {
      met: crun === undefined ? null : lxr <= crun,
      ratio: vsCrun ? round(vsCrun.ratio) : null,
      text: vsCrun?.text ?? 'crun not measured',
    };
    result.targets[`${IN_PROCESS} at least 2x faster than runc`] = {
      met: runc === undefined ? null : runc / lxr >= 2,
      ratio: vsRunc ? round(vsRunc.ratio) : null,
      text: vsRunc?.text ?? 'runc not measured',
    };
    return result;
  } finally {
    releaseSignals();
    const errors: string[] = [];
    const removed = await sweepCgroups(sweep).catch((e: unknown) => {
      errors.push((e as Error).message);
      return [] as string[];
    });
    const leftovers = removed.filter((p) => !p.endsWith(`/${cgroupParent}`));
    if (leftovers.length) log(`cleanup: removed ${leftovers.length} leftover container cgroup(s), e.g. ${leftovers[0]}`);
    await rm(dir, { recursive: true, force: true }).catch((e: unknown) => errors.push((e as Error).message));
    if (errors.length) log(`cleanup problems: ${errors.join('; ')}`);
  }
}

/** The human-readable report. */
export function formatRuntimeReport(r: RuntimeBenchResult): string {
  const fmt = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : '-');
  const rows = Object.entries(r.contenders).map(([name, s]) => [name, fmt(s.median), fmt(s.p90), fmt(s.min), String(s.n)]);
  for (const [name, v] of Object.entries(r.derived)) rows.push([name, fmt(v), '', '', '']);
  const out = [
    `Runtime: ${r.count} sequential containers (true, same bundle), per container create+start+wait+delete; times in ms`,
    '',
    formatTable(['contender', 'median', 'p90', 'min', 'n'], rows),
    '',
    'Ratios (median per container; peer/subject > 1 means the subject is faster):',
  ];
  for (const [subject, peer] of [
    [IN_PROCESS, CRUN],
    [IN_PROCESS, RUNC],
    [COMMAND, CRUN],
    [COMMAND, RUNC],
  ] as const) {
    const a = r.contenders[subject]?.median;
    const b = r.contenders[peer]?.median;
    if (a !== undefined && b !== undefined) out.push(`  ${subject} vs ${peer}: ${speedRatio(subject, a, peer, b).text}`);
  }
  out.push('', 'Targets (reported, not asserted):');
  for (const [name, t] of Object.entries(r.targets)) {
    out.push(`  ${t.met === null ? 'SKIP' : t.met ? 'PASS' : 'MISS'}  ${name}  (${t.text})`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n');
}
