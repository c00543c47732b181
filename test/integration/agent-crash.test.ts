// A create interrupted at any step is repaired at the next start: a real
// lxr-agent process is made to SIGKILL itself right after each step of a
// container create in turn (LXR_TEST_CRASH_AT, agent/main.ts); the next
// agent on the same state must leave no record, dir, runtime state, cgroup
// or process of it behind, and the same create, retried with the same
// request id, must then work from scratch.
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { CREATE_STEPS, RESTART_STEPS } from '../../agent/containers/container-service.js';
import { unary, type PullResponse } from '../../proto/shared/api.js';
import { AgentProcesses } from '../helpers/agent-process.js';
import { agentTestSkip, busyboxRegistry, cleanupSteps, collect, grpcErr } from '../helpers/agent.js';
import { cgroupDirs, removeCgroupTree } from '../helpers/cgroups.js';
import { ExecStream } from '../helpers/exec-stream.js';
import type { TestRegistry } from '../helpers/registry.js';
import { ownedTempDir, uniqueId } from '../helpers/tmp.js';

describe('agent crash during create: repaired at the next start', { skip: agentTestSkip, timeout: 300_000 }, () => {
  let work: string;
  let reg: TestRegistry;
  let image: string;
  let lab: AgentProcesses;
  let cgroupParent: string;
  const made = new Set<string>();

  before(async () => {
    work = await ownedTempDir('agentcrash');
    cgroupParent = uniqueId('lxr-test-');
    ({ reg, image } = await busyboxRegistry(work));
    lab = new AgentProcesses({ work, cgroupParent });
    const a = await lab.spawn();
    assert.equal((await collect<PullResponse>(a.images.Pull({ image }))).at(-1)?.event, 'image');
    await lab.kill(a);
  });

  after(async () => {
    const { step, done } = cleanupSteps();
    const live = lab?.live();
    for (const name of made) if (live) await step(() => unary(live.ctrs, live.ctrs.Remove, { name, force: true }).catch(() => {}));
    await step(() => lab?.killAll());
    await step(() => reg?.stop());
    await step(() => removeCgroupTree(cgroupParent));
    await step(() => work && rm(work, { recursive: true, force: true }));
    done('agent-crash');
  });

  // This agent has no container network: its step never comes. With start, the
  // monitor starts the process itself once it is made (no network to attach
  // first): from "monitor" on, a crash leaves a running process to be ended.
  const steps = CREATE_STEPS.filter((s) => s !== 'network');
  for (const [start, crashAt] of [false, true].flatMap((s) => steps.map((c) => [s, c] as const))) {
    test(`killed after "${crashAt}"${start ? ' of a create with start' : ''}: nothing is left half made, and the retry works`, async () => {
      const name = uniqueId('c');
      const requestId = `req-${crashAt}${start ? '-start' : ''}`;
      made.add(name);
      const doomed = await lab.spawn({ LXR_TEST_CRASH_AT: crashAt });
      await assert.rejects(unary(doomed.ctrs, doomed.ctrs.Create, { name, image, command: ['sleep', '3600'], requestId, start }));
      await lab.exited(doomed);
      assert.equal(doomed.proc.signalCode, 'SIGKILL', `the agent did not crash at ${crashAt}:\n${lab.logs()}`);
      await lab.kill(doomed);

      const a = await lab.spawn();
      await assert.rejects(unary(a.ctrs, a.ctrs.Get, { name }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
      const containers = path.join(work, 'root', 'containers');
      assert.deepEqual(readdirSync(containers).filter((f) => f.startsWith(name)), [], 'container files left');
      assert.equal(existsSync(path.join(work, 'runtime', name)), false, 'runtime state left');
      assert.deepEqual(await cgroupDirs(`${cgroupParent}/${name}`), [], 'cgroup left');

      const c = (await unary(a.ctrs, a.ctrs.Create, { name, image, command: ['sleep', '3600'], requestId, start })).container!;
      if (start) assert.equal(c.state, 'running');
      else {
        assert.equal(c.state, 'created');
        assert.equal((await unary(a.ctrs, a.ctrs.Start, { name })).container!.state, 'running');
      }
      const r = await ExecStream.start(a.exec, { container: name, args: ['echo', 'ok'] }).done;
      assert.equal(r.stdout.toString(), 'ok\n');
      await unary(a.ctrs, a.ctrs.Remove, { name, force: true });
      made.delete(name);
      assert.deepEqual(await cgroupDirs(`${cgroupParent}/${name}`), []);
      await lab.kill(a);
    });
  }

  // Starting a stopped container again (a new init on the same rootfs): a crash at any step is
  // completed by the next start, with the files kept and the new run's exit recorded.
  for (const crashAt of RESTART_STEPS) {
    test(`killed after "${crashAt}" of a restart: the next start completes it`, async () => {
      const name = uniqueId('r');
      made.add(name);
      // Run 1 leaves a marker and sleeps; run 2 finds it and exits 7.
      const command = ['sh', '-c', 'if [ -e /root/again ]; then exit 7; fi; touch /root/again; exec sleep 3600'];
      const a = await lab.spawn();
      await unary(a.ctrs, a.ctrs.Create, { name, image, command });
      await unary(a.ctrs, a.ctrs.Start, { name });
      const stopped = (await unary(a.ctrs, a.ctrs.Stop, { name, graceSeconds: 1 })).container!;
      assert.deepEqual([stopped.state, stopped.exitCode], ['stopped', 137]);
      await lab.kill(a);

      const doomed = await lab.spawn({ LXR_TEST_CRASH_AT: crashAt });
      const before = (await unary(doomed.ctrs, doomed.ctrs.Get, { name })).container!;
      assert.deepEqual([before.state, before.exitCode], ['stopped', 137], 'the new agent sees it stopped');
      await assert.rejects(unary(doomed.ctrs, doomed.ctrs.Start, { name }), (e: unknown) => true, `the start did not crash the agent:\n${lab.logs().slice(-3000)}`);
      await lab.exited(doomed);
      assert.equal(doomed.proc.signalCode, 'SIGKILL', `the agent did not crash at ${crashAt}:\n${lab.logs()}`);
      await lab.kill(doomed);

      const b = await lab.spawn();
      await unary(b.ctrs, b.ctrs.Start, { name });
      let c = (await unary(b.ctrs, b.ctrs.Get, { name })).container!;
      // Stopped, and its exit recorded (finishedAt is written with it).
      for (let i = 0; i < 100 && !(c.state === 'stopped' && c.finishedAt); i++) {
        await new Promise((r) => setTimeout(r, 50));
        c = (await unary(b.ctrs, b.ctrs.Get, { name })).container!;
      }
      assert.deepEqual([c.state, c.exitCode], ['stopped', 7], `run 2 found run 1's file and its own exit was recorded\n${lab.logs().slice(-3000)}`);
      await unary(b.ctrs, b.ctrs.Remove, { name, force: true });
      made.delete(name);
      assert.deepEqual(await cgroupDirs(`${cgroupParent}/${name}`), []);
      await lab.kill(b);
    });
  }
});
