// The agent benchmark (issue 4), LXR and its peers side by side in one run:
// - exec latency: request to the first output byte of `echo`, through the
//   agent's Exec stream, against `runc exec` and `podman exec` (each timed
//   from spawning the command to its first stdout byte);
// - exec throughput: 1 GiB of stdout through an exec session over the
//   agent's unix socket, against a plain pipe out of the same container
//   through `nsenter` (into `wc -c`);
// - create-and-start from an image: one Create with start on the agent
//   (as `podman run -d` is one command), against `podman run -d`.
// LXR's agent runs as its own process, as in production; the client is this
// process. Podman runs with --runtime runc, --network none (nothing of the
// host's network is touched) and the ulimits this machine needs; its
// containers and the image it pulled are removed at the end.
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { unary, type PullResponse } from '../../proto/shared/api.js';
import { AgentProcesses, type AgentProc } from '../helpers/agent-process.js';
import { busyboxRegistry, collect } from '../helpers/agent.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import { ExecStream } from '../helpers/exec-stream.js';
import type { TestRegistry } from '../helpers/registry.js';
import { makeBundle } from '../helpers/rootfs.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { catchInterrupts, checkInterrupted, trackChild } from './interrupt.js';
import { formatTable, round, speedRatio, summarize } from './stats.js';

const RUNC_BIN = '/usr/sbin/runc';
const PODMAN_BIN = '/usr/bin/podman';
const NSENTER_BIN = '/usr/bin/nsenter';
const PODMAN_RUN = ['--runtime', 'runc', 'run', '-d', '--network', 'none', '--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=4096:4096'];
const GIB = 1 << 30;

/** The parts of this benchmark, each run alone with `--only`. */
export const AGENT_PARTS = ['latency', 'throughput', 'create'] as const;
export type AgentPart = (typeof AGENT_PARTS)[number];

export interface AgentBenchOptions {
  /** Samples per contender for latency and create-and-start. */
  count: number;
  log: (line: string) => void;
  /** The parts to run (default: all). */
  only?: readonly AgentPart[];
}

interface Stat {
  median: number;
  p90: number;
  min: number;
  n: number;
}

export interface AgentBenchResult {
  latencyMs: Record<string, Stat>;
  throughputGBps: Record<string, number>;
  createStartMs: Record<string, Stat>;
  targets: Record<string, { met: boolean | null; text: string }>;
  notes: string[];
}

const stat = (samples: number[]): Stat => {
  const s = summarize(samples);
  return { median: round(s.median), p90: round(s.p90), min: round(s.min), n: s.n };
};

/**
 * Runs a command to its end; its stdout; throws with its stderr on failure.
 * With `errFile`, its stdio go to that file instead of pipes: for `runc run
 * -d`, whose container inherits them and would hold a pipe open forever.
 */
async function run(cmd: string, args: string[], errFile?: string): Promise<string> {
  checkInterrupted();
  const fd = errFile ? openSync(errFile, 'w') : null;
  let child;
  try {
    child = spawn(cmd, args, { stdio: fd === null ? ['ignore', 'pipe', 'pipe'] : ['ignore', fd, fd], detached: true });
  } finally {
    if (fd !== null) closeSync(fd);
  }
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await trackChild(child);
  if (errFile) err = readFileSync(errFile, 'utf8');
  if (code !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${code}: ${err.trim()}`);
  return out;
}

/** ms from spawning a command to its first stdout byte (it must then exit 0). */
async function firstByte(cmd: string, args: string[]): Promise<number> {
  checkInterrupted();
  const t0 = process.hrtime.bigint();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let t1: bigint | null = null;
  let err = '';
  child.stdout!.once('data', () => (t1 = process.hrtime.bigint()));
  child.stdout!.resume();
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await trackChild(child);
  if (code !== 0 || t1 === null) throw new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${code}: ${err.trim()}`);
  return Number(t1 - t0) / 1e6;
}

/** LXR: ms from opening the Exec stream to the first output message. */
async function lxrFirstByte(a: AgentProc, container: string): Promise<number> {
  checkInterrupted();
  const t0 = process.hrtime.bigint();
  const s = ExecStream.start(a.exec, { container, args: ['echo', 'hi'] });
  let t1: bigint | null = null;
  s.onOutput = () => {
    t1 ??= process.hrtime.bigint();
  };
  const r = await s.done;
  if (r.exit?.code !== 0 || t1 === null) throw new Error(`lxr exec echo: ${JSON.stringify(r.exit)} ${r.stderr.toString()}`);
  return Number(t1 - t0) / 1e6;
}

/** LXR: GB/s of `head -c 1GiB /dev/zero` through an exec session. */
async function lxrThroughput(a: AgentProc, container: string): Promise<number> {
  checkInterrupted();
  const t0 = process.hrtime.bigint();
  const s = ExecStream.start(a.exec, { container, args: ['dd', 'if=/dev/zero', 'bs=1048576', `count=${GIB >> 20}`, 'status=none'] });
  let n = 0;
  s.onOutput = (_stream, d) => (n += d.length);
  const r = await s.done;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.exit?.code !== 0 || n !== GIB) throw new Error(`lxr exec head: ${n} bytes, ${JSON.stringify(r.exit)}`);
  return GIB / secs / 1e9;
}

/** The peer: GB/s of the same through a plain pipe out of the container (nsenter ... | wc -c). */
async function nsenterThroughput(pid: number): Promise<number> {
  const t0 = process.hrtime.bigint();
  const out = await run('/bin/sh', ['-c', `${NSENTER_BIN} -t ${pid} -m -u -i -n -p -C dd if=/dev/zero bs=1048576 count=${GIB >> 20} status=none | wc -c`]);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (Number(out.trim()) !== GIB) throw new Error(`nsenter pipe: ${out.trim()} bytes`);
  return GIB / secs / 1e9;
}

export async function agentBench(o: AgentBenchOptions): Promise<AgentBenchResult> {
  const { count, log } = o;
  const want = (p: AgentPart): boolean => !o.only || o.only.includes(p);
  const notes: string[] = [];
  const rand = Math.random().toString(16).slice(2, 8);
  const cgroupParent = `lxr-bench-${rand}`;
  const work = await mkdtemp(path.join(tmpdir(), 'lxr-bench-agent-'));
  const release = catchInterrupts(`containers lxrbench-${rand}-*, cgroup ${cgroupParent}, podman containers lxrbench-${rand}-*`);
  let reg: TestRegistry | null = null;
  const lab = new AgentProcesses({ work, cgroupParent });
  const lxrNames = new Set<string>();
  const podmanNames = new Set<string>();
  const runcRoot = path.join(work, 'runc');
  const runcId = `lxrbench-${rand}-runc`;
  let runcMade = false;
  let podmanImage: string | null = null;
  const havePodman = existsSync(PODMAN_BIN) && (want('latency') || want('create'));
  const haveRunc = existsSync(RUNC_BIN) && want('latency');
  if (!existsSync(PODMAN_BIN)) notes.push(`${PODMAN_BIN} not found: podman skipped`);
  if (!existsSync(RUNC_BIN)) notes.push(`${RUNC_BIN} not found: runc skipped`);
  try {
    let image: string;
    ({ reg, image } = await busyboxRegistry(work));
    const a = await lab.spawn({ LXR_LOG_LEVEL: 'warn' });
    await collect<PullResponse>(a.images.Pull({ image }));
    const target = `lxrbench-${rand}-exec`;
    lxrNames.add(target);
    await unary(a.ctrs, a.ctrs.Create, { name: target, image, command: ['sleep', '1000000'] });
    const lxrPid = (await unary(a.ctrs, a.ctrs.Start, { name: target })).container!.pid;

    if (haveRunc) {
      const bundle = path.join(work, 'bundle');
      await makeBundle(bundle, baseConfig({ args: ['sleep', '1000000'] }));
      runcMade = true;
      await run(RUNC_BIN, ['--root', runcRoot, 'run', '-d', '--bundle', bundle, runcId], path.join(work, 'runc-run.log'));
    }
    let podmanExec: string | null = null;
    if (havePodman) {
      podmanImage = image;
      await run(PODMAN_BIN, ['pull', '-q', '--tls-verify=false', image]);
      if (want('latency')) {
        podmanExec = `lxrbench-${rand}-pexec`;
        podmanNames.add(podmanExec);
        await run(PODMAN_BIN, [...PODMAN_RUN, '--name', podmanExec, image, 'sleep', '1000000']);
      }
    }

    // Exec latency, contenders alternating.
    log(
      `agent bench: ${[
        want('latency') && `exec latency (${count} per contender)`,
        want('throughput') && 'throughput (3 x 1 GiB)',
        want('create') && `create-and-start (${count} per contender)`,
      ]
        .filter(Boolean)
        .join(', ')}`,
    );
    const lat: Record<string, number[]> = { lxr: [], ...(haveRunc ? { 'runc exec': [] } : {}), ...(podmanExec ? { 'podman exec': [] } : {}) };
    for (let i = 0; want('latency') && i < count + 2; i++) {
      const warm = i < 2;
      const add = (k: string, v: number) => !warm && lat[k]!.push(v);
      add('lxr', await lxrFirstByte(a, target));
      if (haveRunc) add('runc exec', await firstByte(RUNC_BIN, ['--root', runcRoot, 'exec', runcId, 'echo', 'hi']));
      if (podmanExec) add('podman exec', await firstByte(PODMAN_BIN, ['exec', podmanExec, 'echo', 'hi']));
    }
    if (want('latency')) log(`  exec latency medians (ms): ${Object.entries(lat).map(([k, v]) => `${k} ${summarize(v).median.toFixed(2)}`).join(', ')}`);

    // Throughput.
    const tp: Record<string, number[]> = { lxr: [], 'nsenter pipe': [] };
    for (let i = 0; want('throughput') && i < 3; i++) {
      tp['lxr']!.push(await lxrThroughput(a, target));
      tp['nsenter pipe']!.push(await nsenterThroughput(lxrPid));
    }
    if (want('throughput')) log(`  throughput (GB/s): ${Object.entries(tp).map(([k, v]) => `${k} ${v.map((x) => x.toFixed(2)).join(' ')}`).join('; ')}`);

    // Create-and-start from an image.
    const cs: Record<string, number[]> = { lxr: [], ...(havePodman ? { 'podman run': [] } : {}) };
    for (let i = 0; want('create') && i < count + 1; i++) {
      const warm = i < 1;
      checkInterrupted();
      const name = `lxrbench-${rand}-c${i}`;
      lxrNames.add(name);
      const t0 = process.hrtime.bigint();
      const made = await unary(a.ctrs, a.ctrs.Create, { name, image, command: ['sleep', '1000000'], start: true });
      const t1 = process.hrtime.bigint();
      if (made.container?.state !== 'running') throw new Error(`lxr create with start: ${name} is ${made.container?.state}`);
      if (!warm) cs['lxr']!.push(Number(t1 - t0) / 1e6);
      await unary(a.ctrs, a.ctrs.Remove, { name, force: true });
      lxrNames.delete(name);
      if (havePodman) {
        const pname = `lxrbench-${rand}-p${i}`;
        podmanNames.add(pname);
        const p0 = process.hrtime.bigint();
        await run(PODMAN_BIN, [...PODMAN_RUN, '--name', pname, image, 'sleep', '1000000']);
        const p1 = process.hrtime.bigint();
        if (!warm) cs['podman run']!.push(Number(p1 - p0) / 1e6);
        await run(PODMAN_BIN, ['rm', '-f', '-t', '0', pname]);
        podmanNames.delete(pname);
      }
    }
    if (want('create')) log(`  create-and-start medians (ms): ${Object.entries(cs).map(([k, v]) => `${k} ${summarize(v).median.toFixed(1)}`).join(', ')}`);

    const stats = (m: Record<string, number[]>): Record<string, Stat> => Object.fromEntries(Object.entries(m).filter(([, v]) => v.length > 0).map(([k, v]) => [k, stat(v)]));
    const result: AgentBenchResult = {
      latencyMs: stats(lat),
      throughputGBps: Object.fromEntries(Object.entries(tp).filter(([, v]) => v.length > 0).map(([k, v]) => [k, round(summarize(v).median)])),
      createStartMs: stats(cs),
      targets: {},
      notes,
    };
    if (want('latency')) {
      const lxrLat = result.latencyMs['lxr']!.median;
      const runcLat = result.latencyMs['runc exec']?.median;
      result.targets['exec latency below runc exec'] = {
        met: runcLat === undefined ? null : lxrLat < runcLat,
        text: runcLat === undefined ? 'runc not measured' : speedRatio('lxr', lxrLat, 'runc exec', runcLat).text,
      };
    }
    if (want('throughput')) {
      const gbps = result.throughputGBps['lxr']!;
      result.targets['exec throughput at least 1 GB/s'] = { met: gbps >= 1, text: `${gbps.toFixed(2)} GB/s (plain nsenter pipe ${result.throughputGBps['nsenter pipe']!.toFixed(2)} GB/s)` };
    }
    if (want('create')) {
      const lxrCs = result.createStartMs['lxr']!.median;
      const podCs = result.createStartMs['podman run']?.median;
      result.targets['create-and-start at least 10x faster than podman run'] = {
        met: podCs === undefined ? null : podCs / lxrCs >= 10,
        text: podCs === undefined ? 'podman not measured' : speedRatio('lxr', lxrCs, 'podman run', podCs).text,
      };
    }
    return result;
  } finally {
    release();
    const problems: string[] = [];
    const attempt = async (what: string, f: () => Promise<unknown>) => {
      try {
        await f();
      } catch (e) {
        problems.push(`${what}: ${(e as Error).message}`);
      }
    };
    const live = lab.live();
    for (const name of lxrNames) if (live) await attempt(`remove ${name}`, () => unary(live.ctrs, live.ctrs.Remove, { name, force: true }));
    await attempt('stop the agent', () => lab.killAll());
    if (runcMade) await attempt('runc delete', () => run(RUNC_BIN, ['--root', runcRoot, 'delete', '-f', runcId]));
    for (const name of podmanNames) await attempt(`podman rm ${name}`, () => run(PODMAN_BIN, ['rm', '-f', '-t', '0', name]));
    if (podmanImage) await attempt('podman rmi', () => run(PODMAN_BIN, ['rmi', '-f', podmanImage!]));
    await attempt('registry', async () => reg?.stop());
    await attempt('cgroups', () => removeCgroupTree(cgroupParent));
    await attempt('temp dir', () => rm(work, { recursive: true, force: true }));
    if (problems.length) log(`cleanup problems: ${problems.join('; ')}${existsSync(path.join(work, 'agent-1.log')) ? '\n' + readFileSync(path.join(work, 'agent-1.log'), 'utf8').slice(-2000) : ''}`);
  }
}

export function formatAgentReport(r: AgentBenchResult): string {
  const rows = (m: Record<string, Stat>) => Object.entries(m).map(([k, s]) => [k, s.median.toFixed(2), s.p90.toFixed(2), s.min.toFixed(2), String(s.n)]);
  const section = (title: string, table: string): string[] => [title, table, ''];
  return [
    ...(Object.keys(r.latencyMs).length ? section('exec latency: request to first output byte of `echo` (ms)', formatTable(['contender', 'median', 'p90', 'min', 'n'], rows(r.latencyMs))) : []),
    ...(Object.keys(r.throughputGBps).length
      ? section('exec stdout throughput, 1 GiB (GB/s, median of 3)', formatTable(['contender', 'GB/s'], Object.entries(r.throughputGBps).map(([k, v]) => [k, v.toFixed(2)])))
      : []),
    ...(Object.keys(r.createStartMs).length ? section('create-and-start from an image (ms)', formatTable(['contender', 'median', 'p90', 'min', 'n'], rows(r.createStartMs))) : []),
    'targets:',
    ...Object.entries(r.targets).map(([k, t]) => `  ${t.met === null ? '?' : t.met ? 'met' : 'NOT met'}  ${k}: ${t.text}`),
    ...r.notes.map((n) => `note: ${n}`),
  ].join('\n');
}
