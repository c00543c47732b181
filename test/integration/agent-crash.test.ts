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
import { CREATE_STEPS } from '../../agent/containers/container-service.js';
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

  // This agent has no container network: its step never comes.
  for (const crashAt of CREATE_STEPS.filter((s) => s !== 'network')) {
    test(`killed after "${crashAt}": nothing is left half made, and the retry works`, async () => {
      const name = uniqueId('c');
      const requestId = `req-${crashAt}`;
      made.add(name);
      const doomed = await lab.spawn({ LXR_TEST_CRASH_AT: crashAt });
      await assert.rejects(unary(doomed.ctrs, doomed.ctrs.Create, { name, image, command: ['sleep', '3600'], requestId }));
      await lab.exited(doomed);
      assert.equal(doomed.proc.signalCode, 'SIGKILL', `the agent did not crash at ${crashAt}:\n${lab.logs()}`);
      await lab.kill(doomed);

      const a = await lab.spawn();
      await assert.rejects(unary(a.ctrs, a.ctrs.Get, { name }), grpcErr(grpc.status.NOT_FOUND, 'LXR_NOT_FOUND'));
      const containers = path.join(work, 'root', 'containers');
      assert.deepEqual(readdirSync(containers).filter((f) => f.startsWith(name)), [], 'container files left');
      assert.equal(existsSync(path.join(work, 'runtime', name)), false, 'runtime state left');
      assert.deepEqual(await cgroupDirs(`${cgroupParent}/${name}`), [], 'cgroup left');

      const c = (await unary(a.ctrs, a.ctrs.Create, { name, image, command: ['sleep', '3600'], requestId })).container!;
      assert.equal(c.state, 'created');
      assert.equal((await unary(a.ctrs, a.ctrs.Start, { name })).container!.state, 'running');
      const r = await ExecStream.start(a.exec, { container: name, args: ['echo', 'ok'] }).done;
      assert.equal(r.stdout.toString(), 'ok\n');
      await unary(a.ctrs, a.ctrs.Remove, { name, force: true });
      made.delete(name);
      assert.deepEqual(await cgroupDirs(`${cgroupParent}/${name}`), []);
      await lab.kill(a);
    });
  }
});
