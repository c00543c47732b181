// Detection of the cgroup mode and hierarchies from mountinfo text, and the
// binding of controllers to hierarchies.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { bindControllers, detectLayout, hierarchyLabel, parseMountinfo } from '../../agent/cgroups/index.js';
import { MOUNTINFO_HYBRID_COMBINED, MOUNTINFO_HYBRID_SEPARATE, MOUNTINFO_V1_COMBINED, MOUNTINFO_V1_SEPARATE, MOUNTINFO_V2 } from './cgroups-fixtures.js';

describe('detectLayout', () => {
  const cases: Array<{ name: string; text: string; mode: string; hierarchies: Array<[string, string]> }> = [
    {
      name: 'v1 with separate cpu and cpuacct mounts',
      text: MOUNTINFO_V1_SEPARATE,
      mode: 'v1',
      hierarchies: [
        ['cpu', 'cpu'],
        ['cpuacct', 'cpuacct'],
        ['cpuset', 'cpuset'],
        ['memory', 'memory'],
        ['devices', 'devices'],
        ['freezer', 'freezer'],
        ['blkio', 'blkio'],
        ['pids', 'pids'],
        ['systemd', 'name=systemd'],
      ],
    },
    {
      name: 'v1 with a combined cpu,cpuacct mount',
      text: MOUNTINFO_V1_COMBINED,
      mode: 'v1',
      hierarchies: [
        ['systemd', 'name=systemd'],
        ['cpu,cpuacct', 'cpu,cpuacct'],
        ['memory', 'memory'],
        ['cpuset', 'cpuset'],
        ['net_cls,net_prio', 'net_cls,net_prio'],
        ['pids', 'pids'],
        ['devices', 'devices'],
        ['freezer', 'freezer'],
      ],
    },
    {
      name: 'hybrid (this machine): separate mounts plus cgroup2 at unified',
      text: MOUNTINFO_HYBRID_SEPARATE,
      mode: 'hybrid',
      hierarchies: [
        ['cpu', 'cpu'],
        ['cpuacct', 'cpuacct'],
        ['cpuset', 'cpuset'],
        ['memory', 'memory'],
        ['devices', 'devices'],
        ['freezer', 'freezer'],
        ['blkio', 'blkio'],
        ['pids', 'pids'],
        ['systemd', 'name=systemd'],
        ['unified', 'cgroup2'],
      ],
    },
    {
      name: 'hybrid with combined cpu,cpuacct',
      text: MOUNTINFO_HYBRID_COMBINED,
      mode: 'hybrid',
      hierarchies: [
        ['unified', 'cgroup2'],
        ['systemd', 'name=systemd'],
        ['cpu,cpuacct', 'cpu,cpuacct'],
        ['memory', 'memory'],
        ['cpuset', 'cpuset'],
        ['pids', 'pids'],
      ],
    },
    { name: 'pure v2', text: MOUNTINFO_V2, mode: 'v2', hierarchies: [['', 'cgroup2']] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const layout = detectLayout(c.text, '/sys/fs/cgroup');
      assert.equal(layout.mode, c.mode);
      assert.deepEqual(
        layout.hierarchies.map((h) => [h.subdir, hierarchyLabel(h)]),
        c.hierarchies,
      );
      for (const h of layout.hierarchies) assert.equal(h.mountpoint, h.subdir === '' ? '/sys/fs/cgroup' : `/sys/fs/cgroup/${h.subdir}`);
    });
  }

  it('keeps the v1 controllers of a combined mount and ignores mount options', () => {
    const layout = detectLayout(MOUNTINFO_V1_COMBINED);
    const systemd = layout.hierarchies.find((h) => h.name === 'systemd');
    assert.deepEqual(systemd?.controllers, []);
    assert.deepEqual(layout.hierarchies.find((h) => h.subdir === 'cpu,cpuacct')?.controllers, ['cpu', 'cpuacct']);
  });

  it('ignores cgroup mounts outside the root (e.g. inside a container rootfs) and honours another root', () => {
    const text = `${MOUNTINFO_V2}90 26 0:23 / /var/lib/lxr/c1/rootfs/sys/fs/cgroup rw - cgroup2 cgroup2 rw\n`;
    assert.equal(detectLayout(text).hierarchies.length, 1);
    const moved = `50 1 0:40 / /run/lab/h1/cgroup rw - cgroup2 cgroup2 rw\n`;
    assert.equal(detectLayout(moved, '/run/lab/h1/cgroup/').hierarchies[0]?.mountpoint, '/run/lab/h1/cgroup');
  });

  it('counts a hierarchy mounted twice once, and a later mount on the same point hides the earlier', () => {
    const twice = `${MOUNTINFO_V1_COMBINED}60 24 0:25 / /sys/fs/cgroup/memory2 rw - cgroup cgroup rw,memory\n`;
    assert.equal(detectLayout(twice).hierarchies.filter((h) => h.controllers.includes('memory')).length, 1);
    const over = `${MOUNTINFO_V1_COMBINED}61 29 0:99 / /sys/fs/cgroup/memory rw - tmpfs tmpfs rw\n`;
    assert.equal(detectLayout(over).hierarchies.some((h) => h.controllers.includes('memory')), false);
  });

  it('unescapes octal escapes in mount points', () => {
    const [m] = parseMountinfo('70 24 0:50 / /sys/fs/cgroup/a\\040b rw shared:1 master:2 - cgroup cgroup rw,name=a\\040b\n');
    assert.equal(m?.mountpoint, '/sys/fs/cgroup/a b');
    assert.equal(m?.fstype, 'cgroup');
    assert.deepEqual(m?.superOptions, ['rw', 'name=a b']);
  });

  it('fails with LXR_UNSUPPORTED when nothing is mounted', () => {
    const text = '22 1 8:1 / / rw,relatime - ext4 /dev/root rw\n31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n';
    assert.throws(
      () => detectLayout(text),
      (e: unknown) => e instanceof LxrError && e.reason === 'LXR_UNSUPPORTED' && /\/sys\/fs\/cgroup/.test(e.message),
    );
  });

  it('skips malformed lines', () => {
    assert.deepEqual(parseMountinfo('garbage\n\n1 2 3\n'), []);
  });
});

describe('bindControllers', () => {
  const bound = (text: string, available: string[]) =>
    Object.fromEntries([...bindControllers(detectLayout(text), available)].map(([c, h]) => [c, hierarchyLabel(h)]));

  it('binds v1 controllers to their mounts, combined or not', () => {
    assert.deepEqual(bound(MOUNTINFO_V1_SEPARATE, []), { memory: 'memory', cpu: 'cpu', cpuacct: 'cpuacct', cpuset: 'cpuset', pids: 'pids', devices: 'devices' });
    assert.deepEqual(bound(MOUNTINFO_V1_COMBINED, []), { memory: 'memory', cpu: 'cpu,cpuacct', cpuacct: 'cpu,cpuacct', cpuset: 'cpuset', pids: 'pids', devices: 'devices' });
  });

  it('on hybrid prefers v1 and falls back to the unified hierarchy for what v1 lacks', () => {
    const noPids = MOUNTINFO_HYBRID_COMBINED.split('\n').filter((l) => !l.includes('rw,pids')).join('\n');
    assert.deepEqual(bound(noPids, ['pids', 'hugetlb']), { memory: 'memory', cpu: 'cpu,cpuacct', cpuacct: 'cpu,cpuacct', cpuset: 'cpuset', pids: 'cgroup2' });
    assert.equal(bound(noPids, [])['pids'], undefined);
  });

  it('on v2 binds what the root offers; cpu usage is always there', () => {
    assert.deepEqual(bound(MOUNTINFO_V2, ['cpuset', 'cpu', 'io', 'memory', 'pids']), { memory: 'cgroup2', cpu: 'cgroup2', cpuacct: 'cgroup2', cpuset: 'cgroup2', pids: 'cgroup2' });
    assert.deepEqual(bound(MOUNTINFO_V2, ['memory']), { memory: 'cgroup2', cpuacct: 'cgroup2' });
  });
});
