// The lab: a multi-host LXR cluster on one machine, the way kind gives one
// for Kubernetes. A "switch" network namespace holds a bridge (br0,
// 198.18.0.254/24) and a registry (198.18.0.254:5000); each host is a real
// lxr-agent in a network and mount namespace of its own (unshare), with its
// own state dir, socket and cgroup parent (the namespaces are held by a
// process of their own, so an agent can be killed and started again in
// them), joined to the switch by a veth
// pair (198.18.0.N/24), with container subnet 198.19.N.0/24 and routes to
// the other hosts (Host.SetPeers). Everything is in 198.18.0.0/15; nothing
// touches the machine's own network namespace.
//
// The lab outlives the command that made it: its processes are recorded
// (pid and start time, so a reused pid is never signalled) in lab.json in
// its directory. Teardown always runs to the end: containers removed
// through their agent when it answers, then every process still in a lab
// cgroup killed (by pid), the cgroups, the processes and the directory
// removed; what failed is reported, not stopped at.
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { requestJoinToken } from '../../proto/shared/join-token.js';
import * as grpc from '@grpc/grpc-js';
import { ClusterHostsClient, ContainersClient, HealthClient, HostClient, unary } from '../../proto/shared/api.js';
import { alreadyExists, invalidArgument, LxrError } from '../../proto/shared/errors.js';
import { startTimeSync } from '../../proto/shared/proc.js';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const SWITCH_ADDRESS = '198.18.0.254';
export const REGISTRY_PORT = 5000;
export const POOL = '198.19.0.0/16';
export const CONTROLLER_PORT = 7000;
export const CONTROLLER_METRICS_PORT = 7001;
export const AGENT_PORT = 7070;
/** The controller's HTTPS side for browsers (web terminal). */
export const CONTROLLER_WEB_PORT = 7443;
const REGISTRY_BIN = '/usr/bin/docker-registry';
const MAX_HOSTS = 200;

export interface Proc {
  pid: number;
  /** Field 22 of /proc/PID/stat when it started: tells a reused pid apart. */
  start: string;
}

export interface LabHost {
  name: string;
  address: string;
  subnet: string;
  root: string;
  socket: string;
  cgroupParent: string;
  /** Holds the host's network and mount namespaces, so its agent can be killed and started again in them. */
  holder: Proc;
  agent: Proc;
  /** The agent's arguments (after node and main.js), to start it again. */
  args: string[];
  log: string;
}

export interface LabController {
  proc: Proc;
  args: string[];
  log: string;
  socket: string;
  /** HOST:PORT of its gRPC API and of /metrics in the lab. */
  address: string;
  metrics: string;
}

export interface LabState {
  name: string;
  dir: string;
  createdAt: string;
  switch: Proc;
  registry: Proc | null;
  /** With a controller, hosts join it and get their subnets and peers from it. */
  controller?: LabController | null;
  hosts: LabHost[];
}

export const alive = (p: Proc | null): boolean => !!p && startTimeSync(p.pid) === p.start;

/** Signals a recorded process only if it is still that process. */
function signal_(p: Proc | null, sig: NodeJS.Signals): boolean {
  if (!alive(p)) return false;
  try {
    process.kill(p!.pid, sig);
    return true;
  } catch {
    return false;
  }
}

async function stop(p: Proc | null, graceMs = 3000): Promise<void> {
  if (!signal_(p, 'SIGTERM')) return;
  for (let t = 0; t < graceMs && alive(p); t += 50) await sleep(50);
  signal_(p, 'SIGKILL');
  for (let t = 0; t < 2000 && alive(p); t += 50) await sleep(50);
}

const stateFile = (dir: string): string => path.join(dir, 'lab.json');

export function readLab(dir: string): LabState | null {
  try {
    return JSON.parse(readFileSync(stateFile(dir), 'utf8')) as LabState;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new LxrError('LXR_INTERNAL', `lab state ${stateFile(dir)} is unreadable: ${(e as Error).message}`);
  }
}

function writeLab(s: LabState): void {
  writeFileSync(stateFile(s.dir) + '.tmp', JSON.stringify(s, null, 2) + '\n');
  renameSync(stateFile(s.dir) + '.tmp', stateFile(s.dir));
}

/** Starts a long-lived process of the lab in its own session; its Proc. */
function daemon(cmd: string, args: string[], log: string): Proc {
  const fd = openSync(log, 'a');
  try {
    const p = spawn(cmd, args, { stdio: ['ignore', fd, fd], detached: true });
    p.unref();
    if (p.pid === undefined) throw new LxrError('LXR_HOST_SETUP_FAILED', `lab: cannot start ${cmd}`);
    return { pid: p.pid, start: '' };
  } finally {
    closeSync(fd);
  }
}

/** Waits until the process has exec'd its final program (unshare/nsenter exec in place). */
async function settle(p: Proc, program: string, ms = 5000): Promise<Proc> {
  for (let t = 0; t < ms; t += 20) {
    const exe = await readFile(`/proc/${p.pid}/cmdline`, 'utf8').catch(() => '');
    const st = startTimeSync(p.pid);
    if (st === null) throw new LxrError('LXR_HOST_SETUP_FAILED', `lab: ${program} (pid ${p.pid}) exited at start`);
    if (exe.split('\0').some((a) => a.endsWith(program))) return { pid: p.pid, start: st };
    await sleep(20);
  }
  throw new LxrError('LXR_HOST_SETUP_FAILED', `lab: ${program} (pid ${p.pid}) did not start`);
}

const ipIn = (pid: number, ...args: string[]) => run('nsenter', ['-t', String(pid), '-n', 'ip', ...args]);

function componentMain(component: 'agent' | 'controller'): string {
  // dist/cli/lab/lab.js -> dist/<component>/main.js
  return path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', component, 'main.js');
}

async function waitServing(socket: string, log: string, agent: Proc): Promise<void> {
  const health = new HealthClient(`unix://${socket}`, grpc.credentials.createInsecure());
  try {
    for (let t = 0; t < 20_000; t += 100) {
      if (!alive(agent)) throw new LxrError('LXR_HOST_SETUP_FAILED', `lab: a server exited at start; its log ${log}:\n${readFileSync(log, 'utf8').slice(-2000)}`);
      const ok = await unary(health, health.Check, { service: '' }, { deadline: Date.now() + 1000 }).then(
        (r) => r.status === 'SERVING',
        () => false,
      );
      if (ok) return;
      await sleep(100);
    }
    throw new LxrError('LXR_UNAVAILABLE', `lab: a server did not serve within 20 s (log ${log})`);
  } finally {
    health.close();
  }
}

export interface LabUpOptions {
  name: string;
  dir: string;
  hosts: number;
  /** Prefix of the hosts' cgroup parents (default lxr-lab-NAME). */
  cgroupPrefix?: string;
  /** Run a controller (in the switch's namespace) that the hosts join. */
  controller?: boolean;
  /** Extra controller flags (tests: --unready-policy ...). */
  controllerArgs?: string[];
  /**
   * The IDE tools directory every lab host's agent uses (default
   * DEFAULT_LAB_TOOLS_DIR). The hosts share the machine's: they are on one
   * machine, and their agents cannot reach npm from inside the lab, so the
   * tools are installed outside it (`lxr-agent tools install`).
   */
  toolsDir?: string;
}

export const DEFAULT_LAB_TOOLS_DIR = '/var/lib/lxr/tools';

/** Starts a host's agent inside the host's namespaces (nsenter execs it in place). */
async function startAgentIn(h: LabHost): Promise<Proc> {
  return settle(daemon('nsenter', ['-t', String(h.holder.pid), '-n', '-m', '--', process.execPath, componentMain('agent'), ...h.args], h.log), 'main.js');
}

async function startControllerIn(s: LabState): Promise<Proc> {
  const c = s.controller!;
  const p = await settle(daemon('nsenter', ['-t', String(s.switch.pid), '-n', '--', process.execPath, componentMain('controller'), ...c.args], c.log), 'main.js');
  await waitServing(c.socket, c.log, p);
  return p;
}

/** A join token from the controller, asked on its unix socket (as `lxr-controller token create` does). */
export async function labJoinToken(socket: string, ttlSeconds = 0): Promise<string> {
  return (await requestJoinToken(socket, ttlSeconds)).token;
}

/** Restarts the lab's controller (after killing it with `signal`, SIGKILL by default); resolves once it serves. */
export async function labRestartController(dir: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<LabController> {
  const s = readLab(dir);
  if (!s?.controller) throw new LxrError('LXR_NOT_FOUND', `no lab with a controller in ${dir}`);
  if (signal === 'SIGKILL') {
    signal_(s.controller.proc, 'SIGKILL');
    for (let t = 0; t < 5000 && alive(s.controller.proc); t += 50) await sleep(50);
  } else await stop(s.controller.proc);
  s.controller.proc = await startControllerIn(s);
  writeLab(s);
  return s.controller;
}

/** Waits until the controller lists every lab host Ready; fills in their subnets. */
async function waitHostsReady(s: LabState, ms = 30_000): Promise<void> {
  const c = new ClusterHostsClient(`unix://${s.controller!.socket}`, grpc.credentials.createInsecure());
  try {
    for (let t = 0; ; t += 200) {
      const hosts = await unary(c, c.List, {}, { deadline: Date.now() + 2000 }).then((r) => r.hosts, () => []);
      const ready = s.hosts.every((h) => hosts.some((x) => x.name === h.name && x.state === 'Ready'));
      if (ready) {
        for (const h of s.hosts) h.subnet = hosts.find((x) => x.name === h.name)!.subnet;
        return;
      }
      if (t >= ms) throw new LxrError('LXR_UNAVAILABLE', `lab: the hosts did not all become Ready in the controller within ${ms / 1000} s (log ${s.controller!.log})`);
      await sleep(200);
    }
  } finally {
    c.close();
  }
}

/**
 * Restarts a host's agent in the same namespaces and state (after killing
 * it with `signal`, SIGKILL by default: a crash); resolves once it serves.
 */
export async function labRestartAgent(dir: string, hostName: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<LabHost> {
  const s = readLab(dir);
  const h = s?.hosts.find((x) => x.name === hostName);
  if (!s || !h) throw new LxrError('LXR_NOT_FOUND', `no host ${JSON.stringify(hostName)} in the lab in ${dir}`);
  if (signal === 'SIGKILL') {
    signal_(h.agent, 'SIGKILL');
    for (let t = 0; t < 5000 && alive(h.agent); t += 50) await sleep(50);
  } else await stop(h.agent);
  h.agent = await startAgentIn(h);
  writeLab(s);
  await waitServing(h.socket, h.log, h.agent);
  return h;
}

/** Brings a lab up; on any failure, what was made is torn down again. */
export async function labUp(o: LabUpOptions): Promise<LabState> {
  if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(o.name)) throw invalidArgument('name', `${JSON.stringify(o.name)} must be 1-31 lowercase letters, digits or '-'`);
  if (!Number.isInteger(o.hosts) || o.hosts < 1 || o.hosts > MAX_HOSTS) throw invalidArgument('hosts', `must be 1-${MAX_HOSTS}, got ${o.hosts}`);
  if (readLab(o.dir)) throw alreadyExists('lab', o.name);
  mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  const state: LabState = { name: o.name, dir: o.dir, createdAt: new Date().toISOString(), switch: { pid: 0, start: '' }, registry: null, hosts: [] };
  try {
    state.switch = await settle(daemon('unshare', ['--net', '--', 'sleep', 'infinity'], path.join(o.dir, 'switch.log')), 'sleep');
    writeLab(state);
    const sw = state.switch.pid;
    await ipIn(sw, 'link', 'add', 'br0', 'type', 'bridge');
    await ipIn(sw, 'addr', 'add', `${SWITCH_ADDRESS}/24`, 'dev', 'br0');
    await ipIn(sw, 'link', 'set', 'br0', 'up');
    await ipIn(sw, 'link', 'set', 'lo', 'up');
    if (existsSync(REGISTRY_BIN)) {
      const regDir = path.join(o.dir, 'registry');
      mkdirSync(regDir, { recursive: true });
      const config = path.join(regDir, 'config.yml');
      writeFileSync(config, `version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: ${regDir}/data\n  delete:\n    enabled: true\nhttp:\n  addr: ${SWITCH_ADDRESS}:${REGISTRY_PORT}\n`);
      state.registry = await settle(daemon('nsenter', ['-t', String(sw), '-n', REGISTRY_BIN, 'serve', config], path.join(regDir, 'registry.log')), 'docker-registry');
      writeLab(state);
    }
    if (o.controller) {
      const cdir = path.join(o.dir, 'controller');
      mkdirSync(cdir, { recursive: true, mode: 0o700 });
      state.controller = {
        proc: { pid: 0, start: '' },
        log: path.join(cdir, 'controller.log'),
        socket: path.join(cdir, 'controller.sock'),
        address: `${SWITCH_ADDRESS}:${CONTROLLER_PORT}`,
        metrics: `${SWITCH_ADDRESS}:${CONTROLLER_METRICS_PORT}`,
        args: [
          '--root', path.join(cdir, 'state'), '--socket', path.join(cdir, 'controller.sock'),
          '--listen', `${SWITCH_ADDRESS}:${CONTROLLER_PORT}`, '--metrics-listen', `${SWITCH_ADDRESS}:${CONTROLLER_METRICS_PORT}`, '--web-listen', `${SWITCH_ADDRESS}:${CONTROLLER_WEB_PORT}`,
          '--pool', POOL, '--heartbeat-interval', '1', '--host-grace', '3', '--reconcile-interval', '1', ...(o.controllerArgs ?? []),
        ],
      };
      state.controller.proc = await startControllerIn(state);
      writeLab(state);
    }
    // Hosts join as real ones do: with a join token pinning the controller's CA.
    const token = state.controller ? await labJoinToken(state.controller.socket) : '';
    for (let i = 1; i <= o.hosts; i++) {
      const name = `n${i}`;
      const root = path.join(o.dir, name);
      mkdirSync(root, { recursive: true, mode: 0o700 });
      const host: LabHost = {
        name,
        address: `198.18.0.${i}`,
        subnet: `198.19.${i}.0/24`,
        root,
        socket: path.join(root, 'agent.sock'),
        cgroupParent: `${o.cgroupPrefix ?? `lxr-lab-${o.name}`}-${name}`,
        holder: { pid: 0, start: '' },
        agent: { pid: 0, start: '' },
        args: [],
        log: path.join(root, 'agent.log'),
      };
      host.args = [
        '--root', path.join(root, 'state'), '--socket', host.socket, '--run-root', path.join(root, 'run'),
        '--cgroup-parent', host.cgroupParent,
        ...(state.controller
          ? ['--join', state.controller.address, '--token', token, '--name', name, '--listen', `${host.address}:${AGENT_PORT}`]
          : ['--subnet', host.subnet, '--pool', POOL]),
        '--insecure-registry', `${SWITCH_ADDRESS}:${REGISTRY_PORT}`, '--metrics-listen', '0.0.0.0:9100', '--label', `lab.host=${name}`,
        '--tools-dir', o.toolsDir ?? DEFAULT_LAB_TOOLS_DIR,
      ];
      host.holder = await settle(daemon('unshare', ['--net', '--mount', '--propagation', 'private', '--', 'sleep', 'infinity'], host.log), 'sleep');
      state.hosts.push(host);
      writeLab(state);
      // The uplink's host end is made in the host's namespace (no move afterwards).
      await ipIn(sw, 'link', 'add', `h${i}`, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', String(host.holder.pid));
      await ipIn(sw, 'link', 'set', `h${i}`, 'master', 'br0', 'up');
      await ipIn(host.holder.pid, 'addr', 'add', `${host.address}/24`, 'dev', 'uplink');
      await ipIn(host.holder.pid, 'link', 'set', 'uplink', 'up');
      await ipIn(host.holder.pid, 'link', 'set', 'lo', 'up');
      host.agent = await startAgentIn(host);
      writeLab(state);
      await waitServing(host.socket, host.log, host.agent);
    }
    if (state.controller) {
      await waitHostsReady(state);
      writeLab(state);
      return state;
    }
    for (const h of state.hosts) {
      const client = new HostClient(`unix://${h.socket}`, grpc.credentials.createInsecure());
      try {
        await unary(client, client.SetPeers, { peers: state.hosts.filter((p) => p !== h).map((p) => ({ name: p.name, address: p.address, subnet: p.subnet })) });
      } finally {
        client.close();
      }
    }
    return state;
  } catch (e) {
    await labDown(o.dir).catch(() => {});
    throw e;
  }
}

/** Every process in a cgroup below `parent` in any hierarchy is killed; the cgroups removed. */
async function sweepCgroups(parent: string): Promise<string[]> {
  const problems: string[] = [];
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => {
      const [pre, post] = l.split(' - ');
      return post && /^cgroup2? /.test(post) ? pre!.split(' ')[4]! : null;
    })
    .filter((m): m is string => !!m);
  const dirs: string[] = [];
  const walk = async (d: string): Promise<void> => {
    const ents = await readdir(d, { withFileTypes: true }).catch(() => []);
    for (const e of ents) if (e.isDirectory()) await walk(path.join(d, e.name));
    dirs.push(d);
  };
  for (const mp of new Set(mounts)) if (existsSync(path.join(mp, parent))) await walk(path.join(mp, parent));
  for (let round = 0; round < 3; round++) {
    for (const d of dirs) {
      for (const pid of (await readFile(path.join(d, 'cgroup.procs'), 'utf8').catch(() => '')).split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    await sleep(100);
  }
  for (const d of dirs) {
    for (let t = 0; t < 40; t++) {
      const err = await rmdir(d).then(() => null, (e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? null : e));
      if (!err) break;
      if (t === 39) problems.push(`cannot remove cgroup ${d}: ${err.message}`);
      await sleep(50);
    }
  }
  return problems;
}

/** Tears the lab in `dir` down, all the way; the problems met on the way (empty: all gone). */
export async function labDown(dir: string): Promise<string[]> {
  const s = readLab(dir);
  if (!s) {
    if (existsSync(dir)) rmSync(dir, { recursive: true, force: true });
    return [];
  }
  const problems: string[] = [];
  const attempt = async (what: string, f: () => Promise<unknown>) => {
    try {
      await f();
    } catch (e) {
      problems.push(`${what}: ${(e as Error).message}`);
    }
  };
  // The controller first, so it does not recreate what is being removed.
  if (s.controller) await attempt('stop the controller', () => stop(s.controller!.proc));
  for (const h of s.hosts) {
    if (alive(h.agent)) {
      await attempt(`remove the containers of ${h.name}`, async () => {
        const c = new ContainersClient(`unix://${h.socket}`, grpc.credentials.createInsecure());
        try {
          const list = await unary(c, c.List, {}, { deadline: Date.now() + 5000 });
          for (const ctr of list.containers) await unary(c, c.Remove, { name: ctr.name, force: true }, { deadline: Date.now() + 15_000 }).catch(() => {});
        } finally {
          c.close();
        }
      });
    }
    await attempt(`stop the agent of ${h.name}`, () => stop(h.agent));
    await attempt(`cgroups of ${h.name}`, async () => problems.push(...(await sweepCgroups(h.cgroupParent))));
    await attempt(`stop the namespaces of ${h.name}`, () => stop(h.holder));
  }
  await attempt('stop the registry', () => stop(s.registry));
  await attempt('stop the switch', () => stop(s.switch));
  await attempt('remove the lab directory', async () => rmSync(dir, { recursive: true, force: true }));
  return problems;
}

export interface LabStatus {
  name: string;
  dir: string;
  /** The lab's own network namespace (the switch). */
  namespace: { pid: number; alive: boolean; netns: string };
  registry: { address: string; alive: boolean } | null;
  controller: { address: string; grpc: string; metrics: string; alive: boolean } | null;
  hosts: Array<{ name: string; address: string; subnet: string; alive: boolean; grpc: string; metrics: string; netns: string; cgroupParent: string }>;
}

export function labStatus(dir: string): LabStatus | null {
  const s = readLab(dir);
  if (!s) return null;
  return {
    name: s.name,
    dir: s.dir,
    namespace: { pid: s.switch.pid, alive: alive(s.switch), netns: `/proc/${s.switch.pid}/ns/net` },
    registry: s.registry ? { address: `${SWITCH_ADDRESS}:${REGISTRY_PORT}`, alive: alive(s.registry) } : null,
    controller: s.controller ? { address: s.controller.address, grpc: `unix://${s.controller.socket}`, metrics: `http://${s.controller.metrics}/metrics`, alive: alive(s.controller.proc) } : null,
    hosts: s.hosts.map((h) => ({
      name: h.name,
      address: h.address,
      subnet: h.subnet,
      alive: alive(h.agent),
      grpc: `unix://${h.socket}`,
      metrics: `http://${h.address}:9100/metrics`,
      netns: `/proc/${h.holder.pid}/ns/net`,
      cgroupParent: h.cgroupParent,
    })),
  };
}
