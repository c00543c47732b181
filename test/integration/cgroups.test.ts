// The cgroup manager on this host's real hierarchies (root only): placement
// in every hierarchy, limits as the kernel reads them back, a real process
// joining, stats, killAll and destroy, and the kernel refusing bad values.
// Everything lives under a unique lxr-test-* parent removed in after().

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { removeCgroupTree } from '../helpers/cgroups.js';
import { createCgroupManager, type CgroupHandle, type CgroupLimits, type Hierarchy, type HierarchyCgroupManager } from '../../agent/cgroups/index.js';

const isRoot = process.getuid?.() === 0;
const PARENT = `lxr-test-${randomBytes(4).toString('hex')}`;
const MiB = 1024 * 1024;

const children: ChildProcess[] = [];

/** A shell that waits for "go" on stdin (so it runs only once placed), then does `work` and prints "ready". */
function spawnWorker(work: string): ChildProcess {
  const child = spawn('sh', ['-c', `read go; ${work}; echo ready; sleep 30`], { stdio: ['pipe', 'pipe', 'ignore'] });
  children.push(child);
  return child;
}

function exited(child: ChildProcess, ms = 5000): Promise<NodeJS.Signals | number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.signalCode ?? child.exitCode);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pid ${child.pid} did not exit`)), ms);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve(signal ?? code);
    });
  });
}

/** Puts the child in the cgroup the way the native helper does, then lets it run until "ready". */
async function placeAndStart(child: ChildProcess, cg: CgroupHandle): Promise<void> {
  for (const f of cg.procsFiles) await writeFile(f, String(child.pid));
  let out = '';
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes('ready')) resolve();
    });
    child.once('exit', () => reject(new Error(`worker exited early: ${out}`)));
  });
  child.stdin!.write('go\n');
  await ready;
}

async function isDir(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isDirectory();
  } catch {
    return false;
  }
}

/** /proc/<pid>/cgroup as [hierarchy id, controllers, path]. */
async function procCgroups(pid: number): Promise<Array<[string, string[], string]>> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => {
      const [id = '', ctrls = '', ...rest] = l.split(':');
      return [id, ctrls === '' ? [] : ctrls.split(','), rest.join(':')];
    });
}

function lineFor(lines: Array<[string, string[], string]>, h: Hierarchy): [string, string[], string] | undefined {
  if (h.version === 2) return lines.find(([id, c]) => id === '0' && c.length === 0);
  const want = h.name !== undefined ? [`name=${h.name}`] : h.controllers;
  return lines.find(([id, c]) => id !== '0' && c.length === want.length && want.every((w) => c.includes(w)));
}

describe('cgroups on this host', { skip: isRoot ? false : 'needs root' }, () => {
  let manager: HierarchyCgroupManager;

  before(async () => {
    manager = await createCgroupManager();
  });

  after(async () => {
    for (const c of children) {
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          // already gone
        }
        await exited(c).catch(() => {});
      }
    }
    // Test-side teardown, independent of the manager under test.
    await removeCgroupTree(PARENT);
  });

  it('detects the mode and every mounted hierarchy', async () => {
    const mountinfo = await readFile('/proc/self/mountinfo', 'utf8');
    const cgroupMounts = mountinfo.split('\n').filter((l) => / - cgroup2? /.test(l) && l.includes(' /sys/fs/cgroup'));
    assert.equal(manager.layout.hierarchies.length, cgroupMounts.length);
    if (manager.mode === 'hybrid') {
      assert.ok(manager.layout.hierarchies.some((h) => h.version === 2 && h.subdir === 'unified'));
      assert.ok(manager.layout.hierarchies.some((h) => h.name === 'systemd'));
    }
    for (const h of manager.layout.hierarchies) assert.ok(await isDir(h.mountpoint), h.mountpoint);
  });

  it('creates, limits, places a real process, reports stats, kills and destroys', async () => {
    const path = `${PARENT}/ctr1`;
    const limits: CgroupLimits = {
      memory: { limit: 256 * MiB, reservation: 128 * MiB, swap: 512 * MiB },
      cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0', mems: '0' },
      pids: { limit: 64 },
    };
    const cg = await manager.create(path, limits);
    assert.equal(cg.procsFiles.length, manager.layout.hierarchies.length);
    for (const m of cg.mountSources) assert.ok(await isDir(m.hostDir), `${m.hostDir} exists`);

    // What the kernel reads back.
    const dirOf = (controller: string) => {
      const h = manager.layout.hierarchies.find((x) => x.controllers.includes(controller)) ?? manager.layout.hierarchies.find((x) => x.version === 2)!;
      return { dir: posix.join(h.mountpoint, path), v: h.version };
    };
    const readBack = async (controller: string, file: string) => (await readFile(posix.join(dirOf(controller).dir, file), 'utf8')).trim();
    if (dirOf('memory').v === 1) {
      assert.equal(await readBack('memory', 'memory.limit_in_bytes'), String(256 * MiB));
      assert.equal(await readBack('memory', 'memory.soft_limit_in_bytes'), String(128 * MiB));
      if (await isFile(posix.join(dirOf('memory').dir, 'memory.memsw.limit_in_bytes'))) {
        assert.equal(await readBack('memory', 'memory.memsw.limit_in_bytes'), String(512 * MiB));
      }
    } else {
      assert.equal(await readBack('memory', 'memory.max'), String(256 * MiB));
    }
    if (dirOf('cpu').v === 1) {
      assert.equal(await readBack('cpu', 'cpu.shares'), '512');
      assert.equal(await readBack('cpu', 'cpu.cfs_quota_us'), '50000');
      assert.equal(await readBack('cpu', 'cpu.cfs_period_us'), '100000');
    } else {
      assert.equal(await readBack('cpu', 'cpu.max'), '50000 100000');
      assert.equal(await readBack('cpu', 'cpu.weight'), '20');
    }
    assert.equal(await readBack('cpuset', 'cpuset.cpus'), '0');
    assert.equal(await readBack('cpuset', 'cpuset.mems'), '0');
    assert.equal(await readBack('pids', 'pids.max'), '64');
    if (dirOf('cpuset').v === 1) {
      // The shared parent got its cpuset from the root, or nothing could join below it.
      const parentCpus = (await readFile(posix.join(posix.dirname(dirOf('cpuset').dir), 'cpuset.cpus'), 'utf8')).trim();
      assert.notEqual(parentCpus, '');
    }

    // A real process joins every hierarchy.
    const child = spawnWorker('i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done');
    await placeAndStart(child, cg);
    const lines = await procCgroups(child.pid!);
    for (const h of manager.layout.hierarchies) {
      const line = lineFor(lines, h);
      assert.ok(line, `/proc/${child.pid}/cgroup has a line for ${h.mountpoint}`);
      assert.equal(line[2], `/${path}`, `${h.mountpoint}: ${JSON.stringify(line)}`);
    }

    const s = await cg.stats();
    assert.ok(s.pids.current >= 1, `pids.current ${s.pids.current}`);
    assert.equal(s.pids.limit, 64);
    assert.ok(s.cpu.usageNanos > 0, `cpu usage ${s.cpu.usageNanos}`);
    assert.ok(s.cpu.userNanos + s.cpu.systemNanos >= 0);
    assert.equal(s.memory.limitBytes, 256 * MiB);
    assert.ok(s.memory.workingSetBytes <= s.memory.usageBytes);
    assert.equal(s.memory.oomKills, 0);
    assert.ok(cg.oomCounter && (await isFile(cg.oomCounter.file)));

    const opened = await manager.open(path);
    assert.deepEqual(opened.procsFiles, cg.procsFiles);

    await cg.update({ pids: { limit: 32 }, cpu: { shares: 1024 } });
    assert.equal(await readBack('pids', 'pids.max'), '32');
    assert.equal((await cg.stats()).pids.limit, 32);

    // A populated cgroup is not reused.
    await assert.rejects(manager.create(path, {}), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_ALREADY_EXISTS');

    await cg.killAll();
    assert.equal(await exited(child), 'SIGKILL');
    for (const f of cg.procsFiles) assert.equal((await readFile(f, 'utf8')).trim(), '', f);

    await cg.destroy();
    for (const m of cg.mountSources) {
      assert.equal(await isDir(m.hostDir), false, `${m.hostDir} removed`);
      assert.equal(await isDir(posix.dirname(m.hostDir)), true, `shared parent ${posix.dirname(m.hostDir)} kept`);
    }
    await cg.destroy();
    await assert.rejects(manager.open(path), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_NOT_FOUND');
  });

  it('a cpu that does not exist is refused naming cpuset.cpus, and nothing is left behind', async () => {
    const path = `${PARENT}/bad-cpus`;
    await assert.rejects(manager.create(path, { cpu: { cpus: '999' } }), (e: unknown) => {
      assert.ok(e instanceof LxrError, String(e));
      assert.equal(e.reason, 'LXR_INVALID_ARGUMENT');
      assert.equal(e.field, 'linux.resources.cpu.cpus');
      assert.match(e.message, /cpuset\.cpus = "999"/);
      assert.ok(e.errno === 'EINVAL' || e.errno === 'ERANGE', `errno ${e.errno}`);
      return true;
    });
    for (const h of manager.layout.hierarchies) assert.equal(await isDir(posix.join(h.mountpoint, path)), false, h.mountpoint);
  });

  it('memory limits the kernel refuses become errors naming the file, value and errno', async (t) => {
    const memory = manager.layout.hierarchies.find((h) => h.controllers.includes('memory'));
    if (!memory) return t.skip('memory is not a v1 controller here');
    const path = `${PARENT}/mem`;
    const cg = await manager.create(path, { memory: { limit: 64 * MiB } });
    try {
      // OCI swap is memory+swap: below the memory limit the kernel says EINVAL.
      if (await isFile(posix.join(memory.mountpoint, path, 'memory.memsw.limit_in_bytes'))) {
        await assert.rejects(cg.update({ memory: { swap: 32 * MiB } }), (e: unknown) => {
          assert.ok(e instanceof LxrError, String(e));
          assert.equal(e.errno, 'EINVAL');
          assert.equal(e.field, 'linux.resources.memory.swap');
          assert.match(e.message, /memory\.memsw\.limit_in_bytes = "33554432"/);
          return true;
        });
      }
      // A limit below what the processes use, with nothing to swap to: v1 gives up with EBUSY.
      const swapTotal = /SwapTotal:\s+(\d+)/.exec(await readFile('/proc/meminfo', 'utf8'))?.[1];
      if (swapTotal === '0') {
        const child = spawnWorker('x=$(head -c 8000000 /dev/zero | tr "\\0" a)');
        await placeAndStart(child, cg);
        await assert.rejects(cg.update({ memory: { limit: 1 * MiB } }), (e: unknown) => {
          assert.ok(e instanceof LxrError, String(e));
          assert.equal(e.errno, 'EBUSY');
          assert.equal(e.reason, 'LXR_INVALID_ARGUMENT');
          assert.match(e.message, /memory\.limit_in_bytes = "1048576"/);
          return true;
        });
        assert.equal((await readFile(posix.join(memory.mountpoint, path, 'memory.limit_in_bytes'), 'utf8')).trim(), String(64 * MiB));
        await cg.killAll();
        await exited(child);
      }
    } finally {
      await cg.killAll();
      await cg.destroy();
    }
  });

  it('refuses paths that leave the hierarchy, before touching it', async () => {
    await assert.rejects(manager.create(`${PARENT}/../../x`, {}), (e: unknown) => e instanceof LxrError && e.field === 'linux.cgroupsPath');
    await assert.rejects(manager.create('../x', {}), (e: unknown) => e instanceof LxrError && e.field === 'linux.cgroupsPath');
    for (const h of manager.layout.hierarchies) assert.equal(await isDir(posix.join(posix.dirname(h.mountpoint), 'x')), false);
  });
});

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}
