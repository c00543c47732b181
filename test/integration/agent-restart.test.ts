// Agent restarts and crashes: containers outlive lxr-agent, and the next
// agent adopts them. The agent runs as a real separate process (the compiled
// agent/main.js of the same dist tree this test runs from) on a temp root,
// socket, runtime root and cgroup parent; it is SIGKILLed with containers
// running, one container exits while no agent runs, and a new agent on the
// same state reports both: the running one as running, then its exit (Get
// and the 'died' event), the other as stopped with its exit code.
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { processRunning } from '../../proto/shared/proc.js';
import { unary, type Event, type PullResponse } from '../../proto/shared/api.js';
import { AgentProcesses } from '../helpers/agent-process.js';
import { ExecStream } from '../helpers/exec-stream.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import type { TestRegistry } from '../helpers/registry.js';
import { agentTestSkip, busyboxRegistry, cleanupSteps, collect } from '../helpers/agent.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

const skip = agentTestSkip;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// A zombie counts as gone: its exit is what the monitor collects.
const pidAlive = async (pid: number): Promise<boolean> => processRunning(pid);

/** Init of the container: exits with `code` on SIGTERM (a trap: PID 1 ignores unhandled signals). */
const untilTerm = (code: number): string[] => ['sh', '-c', `trap 'exit ${code}' TERM; while :; do sleep 1; done`];

describe('agent restart: containers outlive the agent and are adopted', { skip, timeout: 180_000 }, () => {
  let work: string;
  let reg: TestRegistry;
  let cgroupParent: string;
  let image: string;
  let lab: AgentProcesses;
  const made = new Set<string>();

  before(async () => {
    work = await ownedTempDir('agentrestart');
    cgroupParent = uniqueId('lxr-test-');
    lab = new AgentProcesses({ work, cgroupParent });
    ({ reg, image } = await busyboxRegistry(work));
  });

  after(async () => {
    const { step, done } = cleanupSteps();
    const live = lab?.live();
    if (live) {
      for (const name of made) {
        await step(() =>
          unary(live.ctrs, live.ctrs.Remove, { name, force: true }).catch((e: grpc.ServiceError) => {
            if (e.code !== grpc.status.NOT_FOUND) throw e;
          }),
        );
      }
    }
    await step(() => lab?.killAll());
    await step(() => reg?.stop());
    await step(async () => {
      // Containers no agent removed (a failure before the second agent came up) die here.
      const { killed } = await removeCgroupTree(cgroupParent);
      if (killed.length > 0 && made.size === 0) throw new Error(`processes left in ${cgroupParent}: ${killed.join(' ')}`);
    });
    await step(() => work && rm(work, { recursive: true, force: true }));
    done('agent-restart');
  });

  test('SIGKILLed agent: containers keep running; the next agent adopts them and reports their exits', async () => {
    const a1 = await lab.spawn();
    const pulled = await collect<PullResponse>(a1.images.Pull({ image }));
    assert.equal(pulled.at(-1)?.event, 'image');

    const adopted = uniqueId('c');
    const exitedMeanwhile = uniqueId('c');
    const pids = new Map<string, number>();
    for (const [name, code] of [
      [adopted, 7],
      [exitedMeanwhile, 9],
    ] as const) {
      made.add(name);
      await unary(a1.ctrs, a1.ctrs.Create, { name, image, command: untilTerm(code) });
      const started = (await unary(a1.ctrs, a1.ctrs.Start, { name })).container!;
      assert.equal(started.state, 'running');
      assert.ok(started.pid > 0);
      pids.set(name, started.pid);
    }
    // The traps are set before the first signal comes.
    await sleep(300);
    // An exec before the crash starts the container's exec server.
    assert.equal((await ExecStream.start(a1.exec, { container: adopted, args: ['echo', 'before'] }).done).stdout.toString(), 'before\n');

    await lab.kill(a1);
    assert.equal(a1.proc.signalCode, 'SIGKILL');
    for (const [name, pid] of pids) assert.ok(await pidAlive(pid), `${name}: init ${pid} died with the agent`);

    // One container exits while no agent runs; its monitor records the exit.
    const gonePid = pids.get(exitedMeanwhile)!;
    process.kill(gonePid, 'SIGTERM');
    for (let i = 0; i < 100 && (await pidAlive(gonePid)); i++) await sleep(50);
    assert.equal(await pidAlive(gonePid), false, 'the container did not exit on SIGTERM');
    assert.ok(await pidAlive(pids.get(adopted)!));

    const a2 = await lab.spawn();
    const c2 = (await unary(a2.ctrs, a2.ctrs.Get, { name: exitedMeanwhile })).container!;
    assert.equal(c2.state, 'stopped', JSON.stringify(c2));
    assert.equal(c2.exitCode, 9, JSON.stringify(c2));
    assert.equal(c2.pid, 0);
    assert.ok(c2.finishedAt, JSON.stringify(c2));

    const events: Event[] = [];
    const evStream = a2.ctrs.Events({ names: [adopted] });
    evStream.on('data', (e: Event) => events.push(e));
    const evDone = new Promise<void>((resolve) => {
      evStream.on('error', () => resolve());
      evStream.on('end', () => resolve());
    });
    await sleep(200); // the stream is registered before the exit

    const c1 = (await unary(a2.ctrs, a2.ctrs.Get, { name: adopted })).container!;
    assert.equal(c1.state, 'running', JSON.stringify(c1));
    // Exec works in an adopted container (through the exec server the first agent started, if any).
    const ex = await ExecStream.start(a2.exec, { container: adopted, args: ['echo', 'adopted'] }).done;
    assert.equal(ex.stdout.toString(), 'adopted\n');
    assert.deepEqual(ex.exit, { code: 0, signal: 0 });
    assert.equal(c1.pid, pids.get(adopted));
    assert.deepEqual(
      (await unary(a2.ctrs, a2.ctrs.List, { states: ['running'] })).containers.map((c) => c.name),
      [adopted],
    );

    // The container exits on its own (the agent is not asked): the new agent collects it.
    process.kill(pids.get(adopted)!, 'SIGTERM');
    for (let i = 0; i < 100 && !events.some((e) => e.type === 'died'); i++) await sleep(50);
    evStream.cancel();
    await evDone;
    const died = events.filter((e) => e.type === 'died');
    assert.equal(died.length, 1, JSON.stringify(events));
    assert.equal(died[0]!.name, adopted);
    assert.equal(died[0]!.exitCode, 7);

    const c1After = (await unary(a2.ctrs, a2.ctrs.Get, { name: adopted })).container!;
    assert.equal(c1After.state, 'stopped', JSON.stringify(c1After));
    assert.equal(c1After.exitCode, 7, JSON.stringify(c1After));
    assert.equal(c1After.pid, 0);
    assert.ok(c1After.finishedAt);

    for (const name of [adopted, exitedMeanwhile]) {
      await unary(a2.ctrs, a2.ctrs.Remove, { name });
      made.delete(name);
    }
    assert.deepEqual((await unary(a2.ctrs, a2.ctrs.List, {})).containers, []);
  });
});
