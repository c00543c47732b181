// Parsers of the kernel's cgroup accounting files.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { inactiveFile, oomKills, parseCounter, parseKeyed, parseLimit, v1CpuUsage, v2CpuUsage, workingSet } from '../../agent/cgroups/stats.js';

const V1_MEMORY_STAT = `cache 1351680
rss 270336
rss_huge 0
shmem 0
mapped_file 540672
inactive_anon 270336
active_anon 0
inactive_file 405504
active_file 946176
hierarchical_memory_limit 268435456
total_cache 2351680
total_rss 270336
total_inactive_file 1405504
total_active_file 946176
`;

const V2_MEMORY_STAT = `anon 2031616
file 5541888
kernel 1159168
inactive_anon 2027520
active_anon 4096
inactive_file 3338240
active_file 2203648
`;

describe('parseLimit', () => {
  const table: Array<[string, number | null]> = [
    ['max\n', null],
    ['-1\n', null],
    ['9223372036854771712\n', null],
    ['9223372036854710272\n', null], // 64 KiB pages
    ['268435456\n', 268435456],
    ['0\n', 0],
    ['64', 64],
  ];
  for (const [text, want] of table) it(`${JSON.stringify(text)} -> ${want}`, () => assert.equal(parseLimit(text, 'memory.max'), want));
  it('rejects garbage naming the file', () => {
    assert.throws(() => parseLimit('lots\n', 'pids.max'), (e: unknown) => e instanceof LxrError && e.message.includes('pids.max'));
  });
});

describe('parseCounter', () => {
  it('reads a single number', () => assert.equal(parseCounter('123456789\n', 'cpuacct.usage'), 123456789));
  for (const bad of ['', 'max', '-1', '1 2']) {
    it(`rejects ${JSON.stringify(bad)}`, () => assert.throws(() => parseCounter(bad, 'memory.current'), /memory\.current/));
  }
});

describe('parseKeyed', () => {
  it('reads key value lines and skips the rest', () => {
    const m = parseKeyed('user 10\nsystem 20\n\nnested a b\nbad x\n');
    assert.deepEqual([...m], [['user', 10], ['system', 20]]);
  });
});

describe('cpu usage', () => {
  it('v1: cpuacct.usage in ns, cpuacct.stat in USER_HZ ticks', () => {
    assert.deepEqual(v1CpuUsage('1500000000\n', 'user 120\nsystem 30\n'), { usageNanos: 1500000000, userNanos: 1200000000, systemNanos: 300000000 });
  });
  it('v1: missing stat keys count as zero', () => {
    assert.deepEqual(v1CpuUsage('5\n', ''), { usageNanos: 5, userNanos: 0, systemNanos: 0 });
  });
  it('v2: cpu.stat in microseconds', () => {
    const stat = 'usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n';
    assert.deepEqual(v2CpuUsage(stat), { usageNanos: 2500000, userNanos: 2000000, systemNanos: 500000 });
  });
});

describe('memory', () => {
  it('v1 uses the hierarchical total_inactive_file', () => assert.equal(inactiveFile(V1_MEMORY_STAT, 1), 1405504));
  it('v2 uses inactive_file', () => assert.equal(inactiveFile(V2_MEMORY_STAT, 2), 3338240));
  it('v1 falls back to inactive_file when the total is missing', () => assert.equal(inactiveFile('inactive_file 7\n', 1), 7));
  const table: Array<[number, number, number]> = [
    [10_000_000, 3_338_240, 6_661_760],
    [100, 100, 0],
    [100, 500, 0],
    [0, 0, 0],
  ];
  for (const [usage, inactive, want] of table) it(`working set of ${usage} - ${inactive} is ${want}`, () => assert.equal(workingSet(usage, inactive), want));
  it('oom_kill from memory.events and memory.oom_control', () => {
    assert.equal(oomKills('low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n'), 2);
    assert.equal(oomKills('oom_kill_disable 0\nunder_oom 0\noom_kill 5\n'), 5);
    assert.equal(oomKills('oom_kill_disable 0\nunder_oom 0\n'), 0);
  });
});
