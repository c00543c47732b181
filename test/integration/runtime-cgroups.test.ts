// Cgroup limits of a container, read back from inside (its own cgroup
// directories are bind-mounted at /sys/fs/cgroup/...) and on the host; the
// pids limit and the memory limit enforced (fork failure, OOM kill reported
// by wait); stats through the cgroup handle; bad limits failing cleanly.

import { strict as assert } from 'node:assert';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, test } from 'node:test';
import { createCgroupManager } from '../../agent/cgroups/index.js';
import type { Spec } from '../../agent/runtime/oci.js';
import { cgroupDirs } from '../helpers/cgroups.js';
import { runtimeFixture } from '../helpers/runtime.js';
import { baseConfig } from '../helpers/runc-spec.js';
import { uniqueId } from '../helpers/tmp.js';
import { assertNothingLeft, rejectsWith, sh, startContainer, T, until } from './runtime-common.js';

const fx = await runtimeFixture();
const manager = await createCgroupManager();
const v2Only = manager.mode === 'v2';

const MiB = 1024 * 1024;

/** Where a limit lives: controller dir (v1) or "" (v2 root), file name, and how the kernel prints the value. */
const FILES = v2Only
  ? {
      memory: ['', 'memory.max'],
      shares: ['', 'cpu.weight'],
      quota: ['', 'cpu.max'],
      cpus: ['', 'cpuset.cpus'],
      pids: ['', 'pids.max'],
    }
  : {
      memory: ['memory', 'memory.limit_in_bytes'],
      shares: ['cpu', 'cpu.shares'],
      quota: ['cpu', 'cpu.cfs_quota_us'],
      period: ['cpu', 'cpu.cfs_period_us'],
      cpus: ['cpuset', 'cpuset.cpus'],
      pids: ['pids', 'pids.max'],
    };

function withResources(cfg: Spec, resources: NonNullable<NonNullable<Spec['linux']>['resources']>): Spec {
  cfg.linux!.resources = { ...cfg.linux!.resources, ...resources };
  return cfg;
}

describe('limits', () => {
  test('memory, cpu, cpuset and pids limits show inside the container and on the host', T, async () => {
    const files = Object.entries(FILES).map(([k, [dir, file]]) => [k, path.posix.join('/sys/fs/cgroup', dir!, file!)] as const);
    const cfg = withResources(sh(`${files.map(([k, f]) => `echo ${k}=$(cat ${f})`).join('; ')}; echo ready; sleep 30`), {
      memory: { limit: 64 * MiB },
      cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0' },
      pids: { limit: 64 },
    });
    const c = await startContainer(fx, cfg);
    try {
      await until('the container to print its limits', async () => (await c.output()).stdout.includes('ready'));
      const inside = Object.fromEntries((await c.output()).stdout.trim().split('\n').filter((l) => l.includes('=')).map((l) => l.split('=') as [string, string]));
      const expected: Record<string, string> = v2Only
        ? { memory: String(64 * MiB), shares: '20', quota: '50000 100000', cpus: '0', pids: '64' }
        : { memory: String(64 * MiB), shares: '512', quota: '50000', period: '100000', cpus: '0', pids: '64' };
      if (v2Only) {
        // cgroup v2 maps shares 2..262144 onto weights 1..10000.
        expected.shares = String(1 + Math.floor(((512 - 2) * 9999) / 262142));
      }
      assert.deepEqual(inside, expected);
      // The same files, seen from the host through the container's cgroup path.
      const rec = await fx.rt.store.read(c.id);
      assert.ok(rec.cgroupPath?.startsWith(fx.cgroupParent + '/'), `cgroup path ${rec.cgroupPath}`);
      for (const [k, [dir, file]] of Object.entries(FILES)) {
        const host = (await readFile(path.join('/sys/fs/cgroup', dir!, rec.cgroupPath!, file!), 'utf8')).trim();
        assert.equal(host, expected[k], `${k} on the host`);
      }
      // The container's init is a member of that cgroup in every hierarchy.
      const memberships = (await readFile(`/proc/${c.pid}/cgroup`, 'utf8')).trim().split('\n');
      for (const line of memberships) assert.ok(line.endsWith(`/${rec.cgroupPath}`), `init is in ${line}`);
    } finally {
      await fx.rt.delete(c.id, { force: true });
    }
  });

  test('the container cannot change its own limits (its cgroup mount is read-only)', T, async () => {
    const [dir, file] = FILES.pids;
    const cfg = withResources(sh(`echo 1000 > ${path.posix.join('/sys/fs/cgroup', dir!, file!)}; cat ${path.posix.join('/sys/fs/cgroup', dir!, file!)}`), {
      pids: { limit: 32 },
    });
    const r = await fx.run(cfg);
    assert.match(r.stderr, /Read-only file system/);
    assert.equal(r.stdout.trim(), '32');
  });

  test('delete removes the cgroup from every hierarchy, started or not', T, async () => {
    const c = await startContainer(fx, sh('sleep 30'));
    const rec = await fx.rt.store.read(c.id);
    assert.ok((await cgroupDirs(rec.cgroupPath!)).length > 0);
    await fx.rt.delete(c.id, { force: true });
    assert.deepEqual(await cgroupDirs(rec.cgroupPath!), []);

    const id = uniqueId('c');
    await fx.rt.create(id, await fx.bundle(sh('true')));
    const created = await fx.rt.store.read(id);
    assert.ok((await cgroupDirs(created.cgroupPath!)).length > 0);
    await fx.rt.delete(id);
    assert.deepEqual(await cgroupDirs(created.cgroupPath!), []);
  });

  test('a cpuset list that is reversed is an invalid spec naming the field', T, async () => {
    const cfg = withResources(sh('true'), { cpu: { cpus: '3-1' } });
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'linux.resources.cpu.cpus');
    await assertNothingLeft(fx, id);
  });

  test('a cpu the host does not have is refused by the kernel and leaves nothing', T, async () => {
    const cfg = withResources(sh('true'), { cpu: { cpus: '4095' } });
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_ARGUMENT', /cpuset\.cpus/);
    assert.equal(e.field, 'linux.resources.cpu.cpus');
    await assertNothingLeft(fx, id);
  });

  test('a memory limit that is not a number is an invalid spec', T, async () => {
    const cfg = withResources(sh('true'), { memory: { limit: '64m' as unknown as number } });
    const id = uniqueId('c');
    const e = await rejectsWith(fx.rt.create(id, await fx.bundle(cfg)), 'LXR_INVALID_SPEC');
    assert.equal(e.field, 'linux.resources.memory.limit');
    await assertNothingLeft(fx, id);
  });
});

describe('enforcement', () => {
  test('the pids limit bounds forks', T, async () => {
    // A non-interactive busybox sh exits when fork fails, so an inner shell
    // forks until it cannot; the outer one (pid 1) then reads the count and
    // kills the sleeps with builtins only.
    const pidsDir = v2Only ? '/sys/fs/cgroup' : '/sys/fs/cgroup/pids';
    const cfg = withResources(
      sh(`sh -c 'for i in 1 2 3 4 5 6 7 8; do sleep 5 & done; wait'; echo inner=$?; read c < ${pidsDir}/pids.current; echo current=$c; kill -9 -1; true`),
      { pids: { limit: 5 } },
    );
    const r = await fx.run(cfg);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.match(r.stderr, /can't fork: Resource temporarily unavailable/);
    assert.match(r.stdout, /^inner=2$/m);
    const current = Number(/current=(\d+)/.exec(r.stdout)?.[1]);
    // The outer sh and the sleeps the inner one managed to start: never more than the limit.
    assert.ok(current >= 2 && current <= 5, `pids.current ${current}: ${r.stdout}`);
  });

  test('a process past the memory limit is OOM-killed and wait() says so', T, async () => {
    const cfg = withResources(baseConfig({ args: ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'] }), {
      memory: { limit: 16 * MiB, swap: 16 * MiB },
    });
    const r = await fx.run(cfg);
    assert.equal(r.oomKilled, true, JSON.stringify(r));
    assert.equal(r.signal, 9);
    assert.equal(r.exitCode, 137);
  });

  test('a SIGKILL that is not the OOM killer\'s is not reported as OOM', T, async () => {
    const c = await startContainer(fx, withResources(sh('sleep 30'), { memory: { limit: 64 * MiB } }));
    try {
      await fx.rt.kill(c.id, 'SIGKILL');
      const exit = await fx.rt.wait(c.id);
      assert.deepEqual({ signal: exit.signal, oomKilled: exit.oomKilled }, { signal: 9, oomKilled: false });
    } finally {
      await fx.rt.delete(c.id, { force: true });
    }
  });
});

describe('stats', () => {
  test('the cgroup handle reports pids, memory and cpu of a running container', T, async () => {
    const c = await startContainer(
      fx,
      withResources(sh('i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo busy-done; sleep 30'), {
        memory: { limit: 48 * MiB },
        pids: { limit: 20 },
      }),
    );
    try {
      await until('the busy loop to end', async () => (await c.output()).stdout.includes('busy-done'));
      const rec = await fx.rt.store.read(c.id);
      const stats = await (await manager.open(rec.cgroupPath!)).stats();
      assert.ok(stats.pids.current >= 1, `pids.current ${stats.pids.current}`);
      assert.equal(stats.pids.limit, 20);
      assert.equal(stats.memory.limitBytes, 48 * MiB);
      assert.ok(stats.memory.usageBytes > 0);
      assert.ok(stats.cpu.usageNanos > 0);
    } finally {
      await fx.rt.delete(c.id, { force: true });
    }
  });

  test('OOM kills are counted in the stats', T, async () => {
    const bundle = await fx.bundle(
      withResources(sh('dd if=/dev/zero of=/dev/null bs=64M count=1; echo survived; sleep 30'), { memory: { limit: 16 * MiB, swap: 16 * MiB } }),
    );
    const id = uniqueId('c');
    await fx.rt.create(id, bundle);
    try {
      await fx.rt.start(id);
      const rec = await fx.rt.store.read(id);
      const handle = await manager.open(rec.cgroupPath!);
      await until('the OOM kill to be counted', async () => (await handle.stats()).memory.oomKills >= 1);
      // The shell (pid 1) survives the kill of dd and keeps running.
      assert.equal((await fx.rt.state(id)).status, 'running');
    } finally {
      await fx.rt.delete(id, { force: true });
    }
  });
});
