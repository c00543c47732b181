// Pure planning of cgroup writes: path and limit validation, the v1 and v2
// dialects (file, value, order), and OCI -> v2 value conversions.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { normalizeCgroupPath, planSubtreeControl, planV1Writes, planV2Writes, sharesToWeight, validateLimits, type CgroupLimits } from '../../agent/cgroups/index.js';
import { swapMax } from '../../agent/cgroups/v2.js';

const invalid = (field: string) => (e: unknown) => e instanceof LxrError && e.reason === 'LXR_INVALID_ARGUMENT' && e.field === field && e.message.includes(field);

describe('normalizeCgroupPath', () => {
  const good: Array<[string, string]> = [
    ['lxr/abc', 'lxr/abc'],
    ['/lxr/abc', 'lxr/abc'],
    ['lxr//abc/', 'lxr/abc'],
    ['ctr', 'ctr'],
    ['lxr/a..b', 'lxr/a..b'],
  ];
  for (const [input, want] of good) it(`accepts ${JSON.stringify(input)}`, () => assert.equal(normalizeCgroupPath(input), want));

  const bad = ['../x', 'lxr/../../etc', 'lxr/..', './x', 'a/./b', '', '/', '//', 'a\nb', 'a\0b'];
  for (const input of bad) {
    it(`rejects ${JSON.stringify(input)} naming linux.cgroupsPath`, () => assert.throws(() => normalizeCgroupPath(input), invalid('linux.cgroupsPath')));
  }
});

describe('validateLimits', () => {
  const bad: Array<[CgroupLimits, string]> = [
    [{ memory: { limit: -2 } }, 'linux.resources.memory.limit'],
    [{ memory: { limit: 1.5 } }, 'linux.resources.memory.limit'],
    [{ memory: { limit: Number.NaN } }, 'linux.resources.memory.limit'],
    [{ memory: { reservation: -5 } }, 'linux.resources.memory.reservation'],
    [{ memory: { limit: 2000, swap: 1000 } }, 'linux.resources.memory.swap'],
    [{ memory: { swap: -3 } }, 'linux.resources.memory.swap'],
    [{ cpu: { shares: 1 } }, 'linux.resources.cpu.shares'],
    [{ cpu: { shares: 262145 } }, 'linux.resources.cpu.shares'],
    [{ cpu: { quota: -2 } }, 'linux.resources.cpu.quota'],
    [{ cpu: { period: -1 } }, 'linux.resources.cpu.period'],
    [{ cpu: { cpus: '0-' } }, 'linux.resources.cpu.cpus'],
    [{ cpu: { cpus: '0\n1' } }, 'linux.resources.cpu.cpus'],
    [{ cpu: { mems: 'all' } }, 'linux.resources.cpu.mems'],
    [{ pids: { limit: -2 } }, 'linux.resources.pids.limit'],
  ];
  for (const [limits, field] of bad) {
    it(`rejects ${JSON.stringify(limits)} naming ${field}`, () => assert.throws(() => validateLimits(limits), invalid(field)));
  }
  it('accepts unlimited and unset values', () => {
    validateLimits({ memory: { limit: -1, swap: -1, reservation: 0 }, cpu: { shares: 0, quota: -1, period: 0, cpus: '', mems: '0' }, pids: { limit: 0 } });
    validateLimits({ memory: { limit: 1000, swap: -1 }, cpu: { shares: 2, cpus: '0-3,8,10-11' }, pids: { limit: -1 } });
  });
});

describe('sharesToWeight', () => {
  const table: Array<[number, number]> = [
    [2, 1],
    [1024, 39],
    [512, 20],
    [262144, 10000],
    [100, 4],
  ];
  for (const [shares, weight] of table) it(`${shares} shares -> weight ${weight}`, () => assert.equal(sharesToWeight(shares), weight));
});

describe('planV1Writes', () => {
  const ctx = { memswAvailable: true };
  const table: Array<{ name: string; limits: CgroupLimits; ctx?: Parameters<typeof planV1Writes>[1]; want: Array<[string, string]> }> = [
    { name: 'nothing', limits: {}, want: [] },
    {
      name: 'everything',
      limits: { memory: { limit: 268435456, reservation: 134217728, swap: 536870912 }, cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0-1', mems: '0' }, pids: { limit: 64 } },
      want: [
        ['cpuset.cpus', '0-1'],
        ['cpuset.mems', '0'],
        ['memory.limit_in_bytes', '268435456'],
        ['memory.memsw.limit_in_bytes', '536870912'],
        ['memory.soft_limit_in_bytes', '134217728'],
        ['cpu.shares', '512'],
        ['cpu.cfs_period_us', '100000'],
        ['cpu.cfs_quota_us', '50000'],
        ['pids.max', '64'],
      ],
    },
    {
      name: 'unlimited values',
      limits: { memory: { limit: -1, swap: -1, reservation: -1 }, cpu: { quota: -1 }, pids: { limit: -1 } },
      want: [
        ['memory.limit_in_bytes', '-1'],
        ['memory.memsw.limit_in_bytes', '-1'],
        ['memory.soft_limit_in_bytes', '-1'],
        ['cpu.cfs_quota_us', '-1'],
        ['pids.max', 'max'],
      ],
    },
    { name: 'pids 0 is unlimited', limits: { pids: { limit: 0 } }, want: [['pids.max', 'max']] },
    { name: 'zeros mean unset', limits: { memory: { limit: 0, swap: 0 }, cpu: { shares: 0, quota: 0, period: 0, cpus: '' } }, want: [] },
    { name: 'swap without swap accounting is skipped', limits: { memory: { limit: 1 << 20, swap: 2 << 20 } }, ctx: { memswAvailable: false }, want: [['memory.limit_in_bytes', '1048576']] },
    {
      name: 'a limit above the current memsw grows memsw first',
      limits: { memory: { limit: 4 << 20, swap: 8 << 20 } },
      ctx: { memswAvailable: true, currentMemswLimit: 2 << 20 },
      want: [
        ['memory.memsw.limit_in_bytes', '8388608'],
        ['memory.limit_in_bytes', '4194304'],
      ],
    },
    {
      name: 'a limit under the current memsw goes first',
      limits: { memory: { limit: 1 << 20, swap: 2 << 20 } },
      ctx: { memswAvailable: true, currentMemswLimit: 8 << 20 },
      want: [
        ['memory.limit_in_bytes', '1048576'],
        ['memory.memsw.limit_in_bytes', '2097152'],
      ],
    },
    {
      name: 'lifting both limits lifts memsw first',
      limits: { memory: { limit: -1, swap: -1 } },
      ctx: { memswAvailable: true, currentMemswLimit: 8 << 20 },
      want: [
        ['memory.memsw.limit_in_bytes', '-1'],
        ['memory.limit_in_bytes', '-1'],
      ],
    },
  ];
  for (const c of table) {
    it(c.name, () => {
      const writes = planV1Writes(c.limits, c.ctx ?? ctx);
      assert.deepEqual(writes.map((w) => [w.file, w.value]), c.want);
      for (const w of writes) assert.match(w.field, /^linux\.resources\./);
    });
  }
});

describe('planV2Writes', () => {
  const ctx = { swapAvailable: true };
  const table: Array<{ name: string; limits: CgroupLimits; ctx?: Parameters<typeof planV2Writes>[1]; want: Array<[string, string]> }> = [
    { name: 'nothing', limits: {}, want: [] },
    {
      name: 'everything',
      limits: { memory: { limit: 268435456, reservation: 134217728, swap: 536870912 }, cpu: { shares: 512, quota: 50000, period: 100000, cpus: '0-1', mems: '0' }, pids: { limit: 64 } },
      want: [
        ['cpuset.cpus', '0-1'],
        ['cpuset.mems', '0'],
        ['memory.max', '268435456'],
        ['memory.swap.max', '268435456'],
        ['memory.low', '134217728'],
        ['cpu.weight', '20'],
        ['cpu.max', '50000 100000'],
        ['pids.max', '64'],
      ],
    },
    {
      name: 'unlimited values',
      limits: { memory: { limit: -1, swap: -1, reservation: -1 }, cpu: { quota: -1 }, pids: { limit: -1 } },
      want: [
        ['memory.max', 'max'],
        ['memory.swap.max', 'max'],
        ['memory.low', 'max'],
        ['cpu.max', 'max 100000'],
        ['pids.max', 'max'],
      ],
    },
    { name: 'swap equal to the limit means no swap', limits: { memory: { limit: 1 << 20, swap: 1 << 20 } }, want: [['memory.max', '1048576'], ['memory.swap.max', '0']] },
    { name: 'quota alone keeps the current period', limits: { cpu: { quota: 20000 } }, ctx: { swapAvailable: true, currentCpuMax: 'max 50000\n' }, want: [['cpu.max', '20000 50000']] },
    { name: 'period alone keeps the current quota', limits: { cpu: { period: 200000 } }, ctx: { swapAvailable: true, currentCpuMax: '30000 100000\n' }, want: [['cpu.max', '30000 200000']] },
    { name: 'period alone on a fresh cgroup', limits: { cpu: { period: 200000 } }, want: [['cpu.max', 'max 200000']] },
    { name: 'swap alone uses the current memory.max', limits: { memory: { swap: 3 << 20 } }, ctx: { swapAvailable: true, currentMemoryMax: 1 << 20 }, want: [['memory.swap.max', '2097152']] },
    { name: 'swap without swap accounting is skipped', limits: { memory: { limit: 1 << 20, swap: 3 << 20 } }, ctx: { swapAvailable: false }, want: [['memory.max', '1048576']] },
  ];
  for (const c of table) {
    it(c.name, () => assert.deepEqual(planV2Writes(c.limits, c.ctx ?? ctx).map((w) => [w.file, w.value]), c.want));
  }

  it('refuses swap without a memory limit, naming the field', () => {
    assert.throws(() => planV2Writes({ memory: { swap: 1 << 20 } }, { swapAvailable: true, currentMemoryMax: null }), invalid('linux.resources.memory.swap'));
    assert.throws(() => planV2Writes({ memory: { limit: -1, swap: 1 << 20 } }, ctx), invalid('linux.resources.memory.swap'));
    assert.throws(() => swapMax(1 << 20, 2 << 20), invalid('linux.resources.memory.swap'));
  });
});

describe('planSubtreeControl', () => {
  it('asks each level, root first, only for the controllers it does not delegate yet', () => {
    assert.deepEqual(planSubtreeControl(['cpuset cpu io memory pids\n', 'memory\n', '\n'], ['cpu', 'memory', 'pids']), [[], ['+cpu', '+pids'], ['+cpu', '+memory', '+pids']]);
    assert.deepEqual(planSubtreeControl([], ['cpu']), []);
  });
});

describe('v1 device rules', () => {
  it('are written in order to devices.deny / devices.allow, naming each rule', () => {
    const writes = planV1Writes(
      {
        devices: [
          { allow: false, access: 'rwm' },
          { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
          { allow: true, type: 'c', major: 136, access: 'rw' },
          { allow: true, type: 'b', minor: 0 },
        ],
      },
      { memswAvailable: false },
    );
    assert.deepEqual(
      writes.map((w) => [w.controller, w.file, w.value, w.field]),
      [
        ['devices', 'devices.deny', 'a *:* rwm', 'linux.resources.devices[0]'],
        ['devices', 'devices.allow', 'c 1:3 rwm', 'linux.resources.devices[1]'],
        ['devices', 'devices.allow', 'c 136:* rw', 'linux.resources.devices[2]'],
        ['devices', 'devices.allow', 'b *:0 rwm', 'linux.resources.devices[3]'],
      ],
    );
  });
});
