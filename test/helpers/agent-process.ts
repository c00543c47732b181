// lxr-agent as a real separate process for tests that kill it, restart it
// or measure it: the compiled agent/main.js of the same dist tree the test
// runs from, on the test's own root, socket, runtime root and cgroup
// parent, with clients for every service. Agents are ended by pid only.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';

/**
 * Extra node flags for every agent spawned (space-separated), to profile a
 * test or a benchmark: LXR_TEST_AGENT_NODE_FLAGS='--cpu-prof --cpu-prof-dir=DIR'.
 */
const NODE_FLAGS = (process.env.LXR_TEST_AGENT_NODE_FLAGS ?? '').split(' ').filter(Boolean);
import { CLIENT_OPTIONS, ContainersClient, ExecClient, HealthClient, ImagesClient, repoRoot, unary } from '../../proto/shared/api.js';

/** agent/main.js of the dist tree this file was compiled into (dist/, or another --outDir). */
export function agentMain(): string {
  const root = repoRoot();
  const self = fileURLToPath(import.meta.url);
  const distDir = path.relative(root, self).split(path.sep)[0]!;
  return path.join(root, distDir, 'agent', 'main.js');
}

export interface AgentProc {
  proc: ChildProcess;
  pid: number;
  logFile: string;
  address: string;
  ctrs: ContainersClient;
  images: ImagesClient;
  health: HealthClient;
  exec: ExecClient;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const running = (p: ChildProcess): boolean => p.exitCode === null && p.signalCode === null;

export class AgentProcesses {
  readonly agents: AgentProc[] = [];
  readonly socket: string;

  constructor(private readonly o: { work: string; cgroupParent: string; args?: string[]; wrap?: string[] }) {
    this.socket = path.join(o.work, 'run', 'agent.sock');
  }

  logs(): string {
    return this.agents.map((a) => `--- ${a.logFile}:\n${existsSync(a.logFile) ? readFileSync(a.logFile, 'utf8') : ''}`).join('\n');
  }

  /** The newest agent still running. */
  live(): AgentProc | undefined {
    return this.agents.filter((a) => running(a.proc)).at(-1);
  }

  /** Spawns lxr-agent (with extra environment) and waits until its health check says SERVING. */
  async spawn(env: Record<string, string> = {}): Promise<AgentProc> {
    const { work, cgroupParent } = this.o;
    mkdirSync(work, { recursive: true });
    const logFile = path.join(work, `agent-${this.agents.length + 1}.log`);
    const fd = openSync(logFile, 'a');
    let proc: ChildProcess;
    try {
      // `wrap` runs the agent under another command that execs it in place (e.g. unshare --net).
      const [cmd, ...pre] = [...(this.o.wrap ?? []), process.execPath, ...NODE_FLAGS];
      proc = spawn(
        cmd!,
        [...pre, agentMain(), '--root', path.join(work, 'root'), '--socket', this.socket, '--run-root', path.join(work, 'runtime'), '--cgroup-parent', cgroupParent, ...(this.o.args ?? [])],
        { stdio: ['ignore', fd, fd], env: { ...process.env, LXR_LOG_LEVEL: process.env.LXR_LOG_LEVEL ?? 'debug', ...env } },
      );
    } finally {
      closeSync(fd);
    }
    if (proc.pid === undefined) throw new Error('cannot spawn lxr-agent');
    const creds = grpc.credentials.createInsecure();
    const address = `unix://${this.socket}`;
    const a: AgentProc = {
      proc,
      pid: proc.pid,
      logFile,
      address,
      ctrs: new ContainersClient(address, creds, CLIENT_OPTIONS),
      images: new ImagesClient(address, creds, CLIENT_OPTIONS),
      health: new HealthClient(address, creds, CLIENT_OPTIONS),
      exec: new ExecClient(address, creds, CLIENT_OPTIONS),
    };
    this.agents.push(a);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (!running(proc)) throw new Error(`lxr-agent exited (${proc.exitCode ?? proc.signalCode}):\n${this.logs()}`);
      const ok = await unary(a.health, a.health.Check, { service: '' }, { deadline: Date.now() + 1000 }).then(
        (r) => r.status === 'SERVING',
        () => false,
      );
      if (ok) return a;
      if (Date.now() > deadline) throw new Error(`lxr-agent did not serve within 20 s:\n${this.logs()}`);
      await sleep(100);
    }
  }

  /** Waits until `a` exits on its own (e.g. a crash the test injected). */
  async exited(a: AgentProc, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (running(a.proc)) {
      if (Date.now() > deadline) throw new Error(`lxr-agent ${a.pid} still runs after ${ms} ms`);
      await sleep(50);
    }
  }

  /**
   * SIGKILLs `a` (by pid) unless it already exited, and closes its clients;
   * SIGTERM when it runs with node flags (a profiler writes its output at a
   * clean exit).
   */
  async kill(a: AgentProc): Promise<void> {
    for (const c of [a.ctrs, a.images, a.health, a.exec]) c.close();
    if (!running(a.proc)) return;
    const exited = new Promise<void>((resolve) => a.proc.once('exit', () => resolve()));
    process.kill(a.pid, NODE_FLAGS.length > 0 ? 'SIGTERM' : 'SIGKILL');
    await exited;
  }

  async killAll(): Promise<void> {
    for (const a of this.agents) await this.kill(a);
  }
}
