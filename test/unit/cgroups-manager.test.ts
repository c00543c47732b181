// The cgroup manager against a fake cgroupfs, per mode: what create writes
// where, cleanup after a failed create, stats, killAll, destroy and open.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { posix } from 'node:path';
import { LxrError } from '../../proto/shared/errors.js';
import { createCgroupManager, type CgroupLimits, type FakeCgroupFs } from '../../agent/cgroups/index.js';
import { fakeHost, MOUNTINFO_HYBRID_COMBINED, MOUNTINFO_HYBRID_SEPARATE, MOUNTINFO_V1_COMBINED, MOUNTINFO_V1_SEPARATE, MOUNTINFO_V2, ROOT, writesUnder, type FakeHostOptions } from './cgroups-fixtures.js';

const noSleep = async () => {};

/** Hierarchies are handled concurrently, so only the order within one
 *  hierarchy is fixed: parents made before children, children removed first. */
function assertOrderedPerHierarchy(paths: string[], childFirst: boolean): void {
  for (const [i, a] of paths.entries()) {
    for (const b of paths.slice(i + 1)) {
      const aIsParentOfB = b.startsWith(a + '/');
      const bIsParentOfA = a.startsWith(b + '/');
      if (childFirst) assert.ok(!aIsParentOfB, `${a} removed before its child ${b}`);
      else assert.ok(!bIsParentOfA, `${a} made before its parent ${b}`);
    }
  }
}
const sorted = (xs: string[]) => [...xs].sort();

async function setup(mountinfo: string, opts: FakeHostOptions & { kill?: (pid: number, sig: NodeJS.Signals) => void; attempts?: number } = {}) {
  const host = fakeHost(mountinfo, opts);
  const manager = await createCgroupManager({
    fs: host.fs,
    mountinfo,
    root: ROOT,
    sleep: noSleep,
    kill: opts.kill ?? (() => assert.fail('unexpected kill')),
    retry: { attempts: opts.attempts ?? 3, intervalMs: 1 },
  });
  return { ...host, manager };
}

const ALL: CgroupLimits = {
  memory: { limit: 268435456, reservation: 134217728, swap: 536870912 },
  cpu: { shares: 512, quota: 50000, period: 100000, cpus: '1', mems: '0' },
  pids: { limit: 64 },
};

/** Limit writes only: leave out cpuset inheritance and v2 delegation. */
const limitWrites = (fs: FakeCgroupFs, leaf: string) =>
  writesUnder(fs).filter(([p]) => posix.dirname(p).endsWith(leaf) && !p.endsWith('cgroup.subtree_control'));

describe('create: limits -> writes, per mode', () => {
  const table: Array<{ name: string; mountinfo: string; opts?: FakeHostOptions; limits: CgroupLimits; want: Array<[string, string]> }> = [
    {
      name: 'v1, separate cpu/cpuacct',
      mountinfo: MOUNTINFO_V1_SEPARATE,
      limits: ALL,
      want: [
        // The new cpuset cgroup inherits its parent's (the fake root: 0-3, 0), then gets the limit.
        ['cpuset/lxr/c1/cpuset.cpus', '0-3'],
        ['cpuset/lxr/c1/cpuset.mems', '0'],
        ['cpuset/lxr/c1/cpuset.cpus', '1'],
        ['cpuset/lxr/c1/cpuset.mems', '0'],
        ['memory/lxr/c1/memory.limit_in_bytes', '268435456'],
        ['memory/lxr/c1/memory.memsw.limit_in_bytes', '536870912'],
        ['memory/lxr/c1/memory.soft_limit_in_bytes', '134217728'],
        ['cpu/lxr/c1/cpu.shares', '512'],
        ['cpu/lxr/c1/cpu.cfs_period_us', '100000'],
        ['cpu/lxr/c1/cpu.cfs_quota_us', '50000'],
        ['pids/lxr/c1/pids.max', '64'],
      ],
    },
    {
      name: 'v1, combined cpu,cpuacct, no swap accounting',
      mountinfo: MOUNTINFO_V1_COMBINED,
      opts: { swap: false },
      limits: ALL,
      want: [
        ['cpuset/lxr/c1/cpuset.cpus', '0-3'],
        ['cpuset/lxr/c1/cpuset.mems', '0'],
        ['cpuset/lxr/c1/cpuset.cpus', '1'],
        ['cpuset/lxr/c1/cpuset.mems', '0'],
        ['memory/lxr/c1/memory.limit_in_bytes', '268435456'],
        ['memory/lxr/c1/memory.soft_limit_in_bytes', '134217728'],
        ['cpu,cpuacct/lxr/c1/cpu.shares', '512'],
        ['cpu,cpuacct/lxr/c1/cpu.cfs_period_us', '100000'],
        ['cpu,cpuacct/lxr/c1/cpu.cfs_quota_us', '50000'],
        ['pids/lxr/c1/pids.max', '64'],
      ],
    },
    {
      name: 'hybrid: limits go to v1, nothing to unified',
      mountinfo: MOUNTINFO_HYBRID_SEPARATE,
      limits: { memory: { limit: -1 }, cpu: { quota: -1 }, pids: { limit: 0 } },
      want: [
        ['cpuset/lxr/c1/cpuset.cpus', '0-3'],
        ['cpuset/lxr/c1/cpuset.mems', '0'],
        ['memory/lxr/c1/memory.limit_in_bytes', '-1'],
        ['cpu/lxr/c1/cpu.cfs_quota_us', '-1'],
        ['pids/lxr/c1/pids.max', 'max'],
      ],
    },
    {
      name: 'v2',
      mountinfo: MOUNTINFO_V2,
      limits: ALL,
      want: [
        ['lxr/c1/cpuset.cpus', '1'],
        ['lxr/c1/cpuset.mems', '0'],
        ['lxr/c1/memory.max', '268435456'],
        ['lxr/c1/memory.swap.max', '268435456'],
        ['lxr/c1/memory.low', '134217728'],
        ['lxr/c1/cpu.weight', '20'],
        ['lxr/c1/cpu.max', '50000 100000'],
        ['lxr/c1/pids.max', '64'],
      ],
    },
    {
      name: 'v2, unlimited',
      mountinfo: MOUNTINFO_V2,
      limits: { memory: { limit: -1, swap: -1 }, cpu: { quota: -1, shares: 1024 }, pids: { limit: -1 } },
      want: [
        ['lxr/c1/memory.max', 'max'],
        ['lxr/c1/memory.swap.max', 'max'],
        ['lxr/c1/cpu.weight', '39'],
        ['lxr/c1/cpu.max', 'max 100000'],
        ['lxr/c1/pids.max', 'max'],
      ],
    },
  ];
  for (const c of table) {
    it(c.name, async () => {
      const { fs, manager } = await setup(c.mountinfo, c.opts);
      await manager.create('lxr/c1', c.limits);
      assert.deepEqual(limitWrites(fs, 'lxr/c1'), c.want);
    });
  }
});

describe('create: placement', () => {
  it('makes the directory in every hierarchy, named ones and unified included (hybrid)', async () => {
    const { fs, manager, layout } = await setup(MOUNTINFO_HYBRID_SEPARATE);
    const cg = await manager.create('lxr/c1', {});
    assert.equal(manager.mode, 'hybrid');
    const subdirs = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd', 'unified'];
    // The leaf is tried first (its parent usually exists); here it does not: parent, then leaf.
    for (const s of subdirs) {
      assert.deepEqual(fs.pathsOf('mkdir').filter((p) => p.startsWith(`${ROOT}/${s}/`)), [`${ROOT}/${s}/lxr/c1`, `${ROOT}/${s}/lxr`, `${ROOT}/${s}/lxr/c1`]);
      assert.equal(fs.hasDir(`${ROOT}/${s}/lxr/c1`), true);
    }
    // With the parent there, one mkdir per hierarchy and nothing read before it.
    const before = fs.calls.length;
    await manager.create('lxr/c2', {});
    const second = fs.calls.slice(before);
    assert.deepEqual(sorted(second.filter((c) => c.op === 'mkdir').map((c) => c.path)), sorted(subdirs.map((s) => `${ROOT}/${s}/lxr/c2`)));
    assert.deepEqual(second.filter((c) => c.op === 'subdirs' || c.path.endsWith('/cgroup.procs')), []);
    assert.deepEqual(cg.procsFiles, subdirs.map((s) => `${ROOT}/${s}/lxr/c1/cgroup.procs`));
    const fresh = (s: string) => (s === 'unified' ? { fsType: 'cgroup2', data: '' } : { fsType: 'cgroup', data: s === 'systemd' ? 'none,name=systemd' : s });
    assert.deepEqual(cg.mountSources, subdirs.map((s) => ({ hostDir: `${ROOT}/${s}/lxr/c1`, subdir: s, ...fresh(s) })));
    assert.deepEqual(cg.oomCounter, { file: `${ROOT}/memory/lxr/c1/memory.oom_control`, key: 'oom_kill' });
    assert.equal(layout.hierarchies.length, subdirs.length);
    // Nothing to delegate: the unified root offers no controllers here.
    assert.equal(fs.writes().some(([p]) => p.endsWith('cgroup.subtree_control')), false);
  });

  it('uses the combined mount directory as the subdir', async () => {
    const { manager } = await setup(MOUNTINFO_HYBRID_COMBINED);
    const cg = await manager.create('c1', {});
    assert.deepEqual(cg.mountSources.map((m) => m.subdir), ['unified', 'systemd', 'cpu,cpuacct', 'memory', 'cpuset', 'pids']);
    // A fresh mount names the controllers mounted together, as mountinfo does.
    assert.deepEqual(cg.mountSources.map((m) => m.data), ['', 'none,name=systemd', 'cpu,cpuacct', 'memory', 'cpuset', 'pids']);
  });

  it('v2: one directory, one mount source with subdir "", memory.events as the OOM counter', async () => {
    const { manager } = await setup(MOUNTINFO_V2);
    const cg = await manager.create('/lxr/c1', {});
    assert.equal(cg.path, 'lxr/c1');
    assert.deepEqual(cg.procsFiles, [`${ROOT}/lxr/c1/cgroup.procs`]);
    assert.deepEqual(cg.mountSources, [{ hostDir: `${ROOT}/lxr/c1`, subdir: '', fsType: 'cgroup2', data: '' }]);
    assert.deepEqual(cg.oomCounter, { file: `${ROOT}/lxr/c1/memory.events`, key: 'oom_kill' });
  });

  it('v1 cpuset: every created level inherits cpus and mems from its parent', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_SEPARATE);
    fs.addDir(`${ROOT}/cpuset/lxr`).setFile(`${ROOT}/cpuset/lxr/cpuset.cpus`, '2-3\n').setFile(`${ROOT}/cpuset/lxr/cpuset.mems`, '0\n');
    await manager.create('lxr/a/b', {});
    const cpuset = writesUnder(fs).filter(([p]) => p.startsWith('cpuset/'));
    assert.deepEqual(cpuset, [
      ['cpuset/lxr/a/cpuset.cpus', '2-3'],
      ['cpuset/lxr/a/cpuset.mems', '0'],
      ['cpuset/lxr/a/b/cpuset.cpus', '2-3'],
      ['cpuset/lxr/a/b/cpuset.mems', '0'],
    ]);
    // "lxr" already existed: not ours, not touched.
    assert.equal(fs.writes().some(([p]) => posix.dirname(p) === `${ROOT}/cpuset/lxr`), false);
  });

  it('v2: delegates controllers from the root down to the parent, only those missing', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    fs.setFile(`${ROOT}/cgroup.subtree_control`, 'cpu memory\n');
    await manager.create('lxr/c1', { pids: { limit: 10 } });
    const delegation = writesUnder(fs).filter(([p]) => p.endsWith('cgroup.subtree_control'));
    assert.deepEqual(delegation, [
      ['cgroup.subtree_control', '+cpuset'],
      ['cgroup.subtree_control', '+pids'],
      ['lxr/cgroup.subtree_control', '+cpu'],
      ['lxr/cgroup.subtree_control', '+cpuset'],
      ['lxr/cgroup.subtree_control', '+memory'],
      ['lxr/cgroup.subtree_control', '+pids'],
    ]);
  });

  it('v2: a controller no limit needs may fail to delegate; a needed one may not', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    fs.failOn('writeFile', `${ROOT}/cgroup.subtree_control`, 'EOPNOTSUPP', { data: '+cpuset' });
    await manager.create('lxr/c1', { memory: { limit: 1 << 20 } });
    await assert.rejects(manager.create('lxr/c2', { cpu: { cpus: '0' } }), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_HOST_SETUP_FAILED');
      assert.equal(e.errno, 'EOPNOTSUPP');
      assert.match(e.message, /cgroup\.subtree_control = "\+cpuset"/);
      return true;
    });
    assert.equal(fs.hasDir(`${ROOT}/lxr/c2`), false);
  });

  it('reuses an empty existing cgroup and refuses one with processes', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    await manager.create('lxr/c1', {});
    await manager.create('lxr/c1', { pids: { limit: 5 } });
    assert.equal(fs.file(`${ROOT}/lxr/c1/pids.max`), '5');
    fs.setFile(`${ROOT}/lxr/c1/cgroup.procs`, '42\n');
    await assert.rejects(manager.create('lxr/c1', {}), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_ALREADY_EXISTS' && /42/.test(e.message));
  });

  it('rejects a path escaping the hierarchy, naming linux.cgroupsPath, before touching anything', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_SEPARATE);
    for (const bad of ['../x', 'lxr/../../x', '']) {
      await assert.rejects(manager.create(bad, {}), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_INVALID_ARGUMENT' && e.field === 'linux.cgroupsPath');
    }
    await assert.rejects(manager.open('../x'), (e: unknown) => e instanceof LxrError && e.field === 'linux.cgroupsPath');
    assert.deepEqual(fs.calls, []);
  });

  it('rejects bad limits before touching anything', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    await assert.rejects(manager.create('c1', { cpu: { shares: 1 } }), (e: unknown) => e instanceof LxrError && e.field === 'linux.resources.cpu.shares');
    assert.deepEqual(fs.pathsOf('mkdir'), []);
    // v2 swap needs a memory limit to subtract: found out while planning, after mkdir, so it is undone.
    await assert.rejects(manager.create('c1', { memory: { swap: 1 << 20 } }), (e: unknown) => e instanceof LxrError && e.field === 'linux.resources.memory.swap');
    assert.equal(fs.hasDir(`${ROOT}/c1`), false);
  });

  it('a limit for a controller the host lacks is LXR_UNSUPPORTED naming the field', async () => {
    const noPids = MOUNTINFO_HYBRID_COMBINED.split('\n').filter((l) => !l.includes('rw,pids')).join('\n');
    const { manager } = await setup(noPids);
    await assert.rejects(manager.create('c1', { pids: { limit: 5 } }), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_UNSUPPORTED' && e.field === 'linux.resources.pids.limit');
  });

  it('hybrid: a controller only the unified hierarchy offers is delegated and written there', async () => {
    const noPids = MOUNTINFO_HYBRID_COMBINED.split('\n').filter((l) => !l.includes('rw,pids')).join('\n');
    const { fs, manager } = await setup(noPids, { v2Controllers: 'pids' });
    const cg = await manager.create('c1', { pids: { limit: 5 }, memory: { limit: 1 << 20 } });
    assert.deepEqual(writesUnder(fs).filter(([p]) => p.startsWith('unified/')), [
      ['unified/cgroup.subtree_control', '+pids'],
      ['unified/c1/pids.max', '5'],
    ]);
    assert.equal(fs.file(`${ROOT}/memory/c1/memory.limit_in_bytes`), '1048576');
    assert.equal(cg.oomCounter?.file, `${ROOT}/memory/c1/memory.oom_control`);
  });
});

describe('create: failure midway', () => {
  it('a refused write becomes an error naming file, value and errno, and everything created is removed', async () => {
    const { fs, manager } = await setup(MOUNTINFO_HYBRID_SEPARATE);
    fs.failOn('writeFile', `${ROOT}/memory/lxr/c1/memory.limit_in_bytes`, 'EBUSY');
    await assert.rejects(manager.create('lxr/c1', { memory: { limit: 4096 } }), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_INVALID_ARGUMENT');
      assert.equal(e.errno, 'EBUSY');
      assert.equal(e.field, 'linux.resources.memory.limit');
      assert.match(e.message, /memory\.limit_in_bytes = "4096"/);
      assert.match(e.message, /EBUSY/);
      return true;
    });
    const subdirs = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids', 'systemd', 'unified'];
    assert.deepEqual(sorted(fs.pathsOf('rmdir')), sorted(subdirs.flatMap((s) => [`${ROOT}/${s}/lxr/c1`, `${ROOT}/${s}/lxr`])));
    assertOrderedPerHierarchy(fs.pathsOf('rmdir'), true);
    for (const s of subdirs) assert.equal(fs.hasDir(`${ROOT}/${s}/lxr`), false);
  });

  it('removes only what it created: pre-existing parents stay', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    await manager.create('lxr/other', {});
    fs.failOn('writeFile', `${ROOT}/lxr/c1/pids.max`, 'EINVAL');
    await assert.rejects(manager.create('lxr/c1', { pids: { limit: 3 } }), (e: unknown) => e instanceof LxrError && e.errno === 'EINVAL');
    assert.deepEqual(fs.pathsOf('rmdir'), [`${ROOT}/lxr/c1`]);
    assert.equal(fs.hasDir(`${ROOT}/lxr/other`), true);
  });

  it('a mkdir failure in a later hierarchy removes the earlier ones', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_COMBINED);
    fs.failOn('mkdir', `${ROOT}/pids/c1`, 'EACCES');
    await assert.rejects(manager.create('c1', {}), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_HOST_SETUP_FAILED' && e.errno === 'EACCES' && e.message.includes(`${ROOT}/pids/c1`));
    // Hierarchies are placed concurrently: whatever was made, in any of them, is removed.
    const made = fs.pathsOf('mkdir').filter((d) => d !== `${ROOT}/pids/c1`);
    assert.ok(made.includes(`${ROOT}/memory/c1`));
    assert.deepEqual(sorted(fs.pathsOf('rmdir')), sorted(made));
    for (const d of made) assert.equal(fs.hasDir(d), false);
  });

  it('a cleanup failure is reported alongside the original error, which keeps its reason', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_SEPARATE);
    fs.failOn('writeFile', `${ROOT}/cpuset/lxr/c1/cpuset.cpus`, 'ERANGE', { data: '999' });
    fs.failOn('rmdir', `${ROOT}/memory/lxr/c1`, 'EPERM');
    await assert.rejects(manager.create('lxr/c1', { cpu: { cpus: '999' } }), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_INVALID_ARGUMENT');
      assert.equal(e.errno, 'ERANGE');
      assert.match(e.message, /cpuset\.cpus = "999"/);
      assert.match(e.message, /cleanup also failed/);
      assert.match(e.message, /rmdir \/sys\/fs\/cgroup\/memory\/lxr\/c1/);
      assert.match(e.message, /EPERM/);
      return true;
    });
    // The other hierarchies were still cleaned up.
    assert.equal(fs.hasDir(`${ROOT}/cpu/lxr`), false);
    assert.equal(fs.hasDir(`${ROOT}/memory/lxr/c1`), true);
  });
});

describe('update', () => {
  it('v1: grows memsw before a limit that would exceed it', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_SEPARATE);
    const cg = await manager.create('c1', { memory: { limit: 1 << 20, swap: 2 << 20 } });
    const before = fs.writes().length;
    await cg.update({ memory: { limit: 8 << 20, swap: 16 << 20 } });
    assert.deepEqual(writesUnder(fs).slice(before), [
      ['memory/c1/memory.memsw.limit_in_bytes', '16777216'],
      ['memory/c1/memory.limit_in_bytes', '8388608'],
    ]);
  });

  it('v2: a period alone keeps the quota already set', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    const cg = await manager.create('c1', { cpu: { quota: 25000, period: 100000 } });
    await cg.update({ cpu: { period: 50000 } });
    assert.equal(fs.file(`${ROOT}/c1/cpu.max`), '25000 50000');
  });

  it('v2: swap alone is computed against the memory.max already set', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    const cg = await manager.create('c1', { memory: { limit: 1 << 20 } });
    await cg.update({ memory: { swap: 3 << 20 } });
    assert.equal(fs.file(`${ROOT}/c1/memory.swap.max`), String(2 << 20));
  });

  it('a refused write names the file, value and errno', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    const cg = await manager.create('c1', {});
    fs.failOn('writeFile', `${ROOT}/c1/cpu.max`, 'EINVAL');
    await assert.rejects(cg.update({ cpu: { quota: 10, period: 100000 } }), (e: unknown) => e instanceof LxrError && e.errno === 'EINVAL' && e.message.includes('cpu.max = "10 100000"') && e.field === 'linux.resources.cpu.quota');
  });
});

describe('stats', () => {
  it('v1: cpuacct, memory.stat total_inactive_file, unlimited limit as null, oom_kill, pids', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_COMBINED);
    const cg = await manager.create('c1', { pids: { limit: 50 } });
    const d = (s: string) => `${ROOT}/${s}/c1`;
    fs.setFile(`${d('cpu,cpuacct')}/cpuacct.usage`, '2000000000\n').setFile(`${d('cpu,cpuacct')}/cpuacct.stat`, 'user 150\nsystem 50\n');
    fs.setFile(`${d('memory')}/memory.usage_in_bytes`, '10485760\n').setFile(`${d('memory')}/memory.stat`, 'inactive_file 1\ntotal_inactive_file 4194304\n');
    fs.setFile(`${d('memory')}/memory.oom_control`, 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
    fs.setFile(`${d('pids')}/pids.current`, '3\n');
    assert.deepEqual(await cg.stats(), {
      cpu: { usageNanos: 2000000000, userNanos: 1500000000, systemNanos: 500000000 },
      memory: { usageBytes: 10485760, workingSetBytes: 6291456, limitBytes: null, oomKills: 2 },
      pids: { current: 3, limit: 50 },
    });
  });

  it('v2: cpu.stat, memory.current, memory.max, memory.events', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    const cg = await manager.create('c1', { memory: { limit: 1 << 30 } });
    fs.setFile(`${ROOT}/c1/cpu.stat`, 'usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\n');
    fs.setFile(`${ROOT}/c1/memory.current`, '5000\n').setFile(`${ROOT}/c1/memory.stat`, 'inactive_file 6000\n');
    fs.setFile(`${ROOT}/c1/memory.events`, 'oom 1\noom_kill 1\n').setFile(`${ROOT}/c1/pids.current`, '1\n');
    assert.deepEqual(await cg.stats(), {
      cpu: { usageNanos: 3000000, userNanos: 2000000, systemNanos: 1000000 },
      memory: { usageBytes: 5000, workingSetBytes: 0, limitBytes: 1 << 30, oomKills: 1 },
      pids: { current: 1, limit: null },
    });
  });

  it('missing controller files read as zero; a removed cgroup is NOT_FOUND', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    const cg = await manager.create('c1', {});
    fs.removeFile(`${ROOT}/c1/memory.current`).removeFile(`${ROOT}/c1/pids.max`);
    const s = await cg.stats();
    assert.equal(s.memory.usageBytes, 0);
    assert.equal(s.pids.limit, null);
    await cg.destroy();
    await assert.rejects(cg.stats(), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_NOT_FOUND');
  });
});

describe('killAll', () => {
  it('v1: SIGKILLs every pid, sub-cgroups included, until all hierarchies are empty', async () => {
    const killed: Array<[number, string]> = [];
    let fsRef: FakeCgroupFs | undefined;
    const { fs, manager } = await setup(MOUNTINFO_V1_COMBINED, {
      kill: (pid, sig) => {
        killed.push([pid, sig]);
        for (const f of [`${ROOT}/memory/c1/cgroup.procs`, `${ROOT}/pids/c1/cgroup.procs`, `${ROOT}/memory/c1/sub/cgroup.procs`]) {
          const left = (fsRef?.file(f) ?? '').split('\n').filter((l) => l !== '' && l !== String(pid));
          if (fsRef?.file(f) !== undefined) fsRef.setFile(f, left.join('\n'));
        }
        if (pid === 11) throw Object.assign(new Error('gone'), { code: 'ESRCH' });
      },
    });
    fsRef = fs;
    const cg = await manager.create('c1', {});
    fs.setFile(`${ROOT}/memory/c1/cgroup.procs`, '10\n11\n');
    fs.setFile(`${ROOT}/pids/c1/cgroup.procs`, '10\n11\n');
    await fs.mkdir(`${ROOT}/memory/c1/sub`);
    fs.setFile(`${ROOT}/memory/c1/sub/cgroup.procs`, '12\n');
    await cg.killAll();
    assert.deepEqual(killed, [[10, 'SIGKILL'], [11, 'SIGKILL'], [12, 'SIGKILL']]);
    assert.equal(fs.writes().some(([p]) => p.endsWith('cgroup.kill')), false);
  });

  it('v2: writes cgroup.kill and then only confirms the cgroup is empty', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    fs.onWrite = (p, data, f) => {
      if (p.endsWith('/cgroup.kill') && data === '1') f.setFile(posix.join(posix.dirname(p), 'cgroup.procs'), '');
    };
    const cg = await manager.create('c1', {});
    fs.setFile(`${ROOT}/c1/cgroup.procs`, '77\n');
    await cg.killAll();
    assert.deepEqual(writesUnder(fs).filter(([p]) => p.endsWith('cgroup.kill')), [['c1/cgroup.kill', '1']]);
  });

  it('gives up after bounded retries naming the pids left', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_SEPARATE, { kill: () => {}, attempts: 4 });
    const cg = await manager.create('c1', {});
    fs.setFile(`${ROOT}/memory/c1/cgroup.procs`, '501\n502\n');
    await assert.rejects(cg.killAll(), (e: unknown) => e instanceof LxrError && /501, 502/.test(e.message));
  });

  it('refuses to kill the agent itself', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_SEPARATE);
    const cg = await manager.create('c1', {});
    fs.setFile(`${ROOT}/memory/c1/cgroup.procs`, `${process.pid}\n`);
    await assert.rejects(cg.killAll(), (e: unknown) => e instanceof LxrError && e.message.includes(String(process.pid)));
  });

  it('an already removed cgroup has nothing to kill', async () => {
    const { manager } = await setup(MOUNTINFO_HYBRID_SEPARATE);
    const cg = await manager.create('c1', {});
    await cg.destroy();
    await cg.killAll();
  });
});

describe('destroy and open', () => {
  it('removes the leaf in every hierarchy, keeps shared parents, and is idempotent', async () => {
    const { fs, manager } = await setup(MOUNTINFO_HYBRID_SEPARATE);
    const cg = await manager.create('lxr/c1', {});
    await cg.destroy();
    for (const m of cg.mountSources) {
      assert.equal(fs.hasDir(m.hostDir), false);
      assert.equal(fs.hasDir(posix.dirname(m.hostDir)), true);
    }
    await cg.destroy();
  });

  it('removes sub-cgroups the container made, deepest first', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    const cg = await manager.create('c1', {});
    await fs.mkdir(`${ROOT}/c1/a`);
    await fs.mkdir(`${ROOT}/c1/a/b`);
    await cg.destroy();
    // The leaf's rmdir is tried first (a container rarely makes sub-cgroups);
    // refused, the children go deepest first and the leaf follows.
    assert.deepEqual(fs.pathsOf('rmdir').slice(-3), [`${ROOT}/c1/a/b`, `${ROOT}/c1/a`, `${ROOT}/c1`]);
    assert.equal(fs.hasDir(`${ROOT}/c1`), false);
  });

  it('retries EBUSY briefly, then names the hierarchy; other hierarchies are still removed', async () => {
    const { fs, manager } = await setup(MOUNTINFO_HYBRID_SEPARATE);
    const cg = await manager.create('c1', {});
    fs.setFile(`${ROOT}/freezer/c1/cgroup.procs`, '999\n');
    await assert.rejects(cg.destroy(), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_CLEANUP_FAILED');
      assert.equal(e.errno, 'EBUSY');
      assert.match(e.message, /freezer hierarchy/);
      return true;
    });
    assert.equal(fs.pathsOf('rmdir').filter((p) => p === `${ROOT}/freezer/c1`).length, 3);
    assert.equal(fs.hasDir(`${ROOT}/memory/c1`), false);
    assert.equal(fs.hasDir(`${ROOT}/unified/c1`), false);
  });

  it('a busy cgroup that empties during the retries is removed', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    const cg = await manager.create('c1', {});
    fs.failOn('rmdir', `${ROOT}/c1`, 'EBUSY', { times: 2 });
    await cg.destroy();
    assert.equal(fs.hasDir(`${ROOT}/c1`), false);
  });

  it('reports every hierarchy that failed', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V1_COMBINED);
    const cg = await manager.create('c1', {});
    fs.failOn('rmdir', `${ROOT}/memory/c1`, 'EPERM').failOn('rmdir', `${ROOT}/pids/c1`, 'EROFS');
    await assert.rejects(cg.destroy(), (e: unknown) => e instanceof LxrError && /EPERM/.test(e.message) && /EROFS/.test(e.message) && /memory hierarchy/.test(e.message) && /pids hierarchy/.test(e.message));
  });

  it('open finds an existing cgroup and is NOT_FOUND otherwise', async () => {
    const { manager } = await setup(MOUNTINFO_HYBRID_SEPARATE);
    const created = await manager.create('lxr/c1', {});
    const opened = await manager.open('lxr/c1');
    assert.deepEqual(opened.procsFiles, created.procsFiles);
    assert.deepEqual(opened.oomCounter, created.oomCounter);
    await assert.rejects(manager.open('lxr/nope'), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_NOT_FOUND' && e.message.includes('lxr/nope'));
  });
});

describe('reuse of an existing cgroup', () => {
  it('refused in one hierarchy: the leaves made in the others are removed, the existing one stays untouched', async () => {
    const { fs, manager } = await setup(MOUNTINFO_HYBRID_SEPARATE);
    await fs.mkdir(`${ROOT}/memory/lxr`);
    await fs.mkdir(`${ROOT}/memory/lxr/c1`);
    fs.setFile(`${ROOT}/memory/lxr/c1/cgroup.procs`, '42\n');
    await assert.rejects(manager.create('lxr/c1', { pids: { limit: 5 } }), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_ALREADY_EXISTS' && /42/.test(e.message) && /memory hierarchy/.test(e.message));
    assert.equal(fs.hasDir(`${ROOT}/memory/lxr/c1`), true);
    for (const s of ['cpu', 'pids', 'unified']) assert.equal(fs.hasDir(`${ROOT}/${s}/lxr`), false, `${s} left`);
    // Only the cpuset inheritance of the dirs it made: no limit, nothing in the existing cgroup.
    assert.deepEqual(fs.writes().filter(([p]) => !/\/cpuset\/lxr(\/c1)?\/cpuset\.(cpus|mems)$/.test(p)), []);
  });

  it('is refused when it has child cgroups (a parent is not a container leaf)', async () => {
    const { fs, manager } = await setup(MOUNTINFO_V2);
    await manager.create('slice/c1', {});
    await assert.rejects(manager.create('slice', { pids: { limit: 5 } }), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_ALREADY_EXISTS' && e.field === 'linux.cgroupsPath' && /child cgroups/.test(e.message));
    assert.notEqual(fs.file(`${ROOT}/slice/pids.max`), '5', 'the limit reached the parent');
  });
});
