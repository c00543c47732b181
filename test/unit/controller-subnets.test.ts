// The cluster's subnet pool as tables: a pool's subnets in order, a
// specific subnet taken (or refused, naming the field), exhaustion naming
// the pool, release and reuse, and pools or prefixes that cannot work.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SubnetPool } from '../../controller/subnets/subnet-pool.js';
import { Code, LxrError } from '../../proto/shared/errors.js';
import { throwsWith } from '../helpers/lxr-errors.js';


describe('subnet pool: allocation order and size', () => {
  const cases: Array<[string, string, number, number, string[]]> = [
    ['/16 in /24s', '10.200.0.0/16', 24, 256, ['10.200.0.0/24', '10.200.1.0/24', '10.200.2.0/24']],
    ['/16 in /20s', '10.200.0.0/16', 20, 16, ['10.200.0.0/20', '10.200.16.0/20', '10.200.32.0/20']],
    ['/24 in /26s', '198.18.5.0/24', 26, 4, ['198.18.5.0/26', '198.18.5.64/26', '198.18.5.128/26']],
    ['/24 is one /24', '10.200.7.0/24', 24, 1, ['10.200.7.0/24']],
    ['/24 in /29s (the smallest)', '10.1.2.0/24', 29, 32, ['10.1.2.0/29', '10.1.2.8/29', '10.1.2.16/29']],
  ];
  for (const [title, pool, prefix, size, first] of cases) {
    it(title, () => {
      const p = new SubnetPool(pool, prefix);
      assert.equal(p.size, size);
      assert.equal(p.used, 0);
      assert.deepEqual(
        first.map(() => p.allocate()),
        first,
      );
      assert.equal(p.used, first.length);
    });
  }

  it('a /16 with /24 gives all 256 subnets in order, each once', () => {
    const p = new SubnetPool('10.200.0.0/16', 24);
    const got = Array.from({ length: 256 }, () => p.allocate());
    assert.deepEqual(
      got,
      Array.from({ length: 256 }, (_, i) => `10.200.${i}.0/24`),
    );
    assert.equal(p.used, 256);
    for (const s of got) assert.equal(p.isUsed(s), true);
  });
});

describe('subnet pool: taking a specific subnet', () => {
  it('a free subnet of the pool is taken once; the second take says false', () => {
    const p = new SubnetPool('10.200.0.0/16', 24);
    assert.equal(p.take('10.200.5.0/24'), true);
    assert.equal(p.isUsed('10.200.5.0/24'), true);
    assert.equal(p.take('10.200.5.0/24'), false);
    assert.equal(p.used, 1);
    assert.equal(p.slotOf('10.200.5.0/24'), 5);
  });

  it('allocation skips subnets taken ahead of it', () => {
    const p = new SubnetPool('10.200.0.0/16', 24);
    assert.equal(p.take('10.200.1.0/24'), true);
    assert.equal(p.take('10.200.2.0/24'), true);
    assert.deepEqual([p.allocate(), p.allocate()], ['10.200.0.0/24', '10.200.3.0/24']);
  });

  const bad: Array<[string, string, RegExp]> = [
    ['not aligned to the prefix (host bits set)', '10.200.1.128/24', /host bits set/],
    ['another prefix (a /25)', '10.200.1.0/25', /is not a \/24 subnet of 10\.200\.0\.0\/16/],
    ['another prefix (a /16)', '10.200.0.0/16', /is not a \/24 subnet of 10\.200\.0\.0\/16/],
    ['outside the pool, below', '10.199.255.0/24', /10\.199\.255\.0\/24 is not a \/24 subnet of 10\.200\.0\.0\/16/],
    ['outside the pool, above', '10.201.0.0/24', /is not a \/24 subnet of 10\.200\.0\.0\/16/],
    ['not a CIDR block', '10.200.1.0', /is not a CIDR block/],
    ['not an address', '10.200.300.0/24', /is not an IPv4 address/],
  ];
  for (const [title, cidr, pattern] of bad) {
    it(`refused: ${title}`, () => {
      const p = new SubnetPool('10.200.0.0/16', 24);
      throwsWith(() => p.take(cidr), 'LXR_INVALID_ARGUMENT', pattern, 'subnet');
      throwsWith(() => p.release(cidr), 'LXR_INVALID_ARGUMENT', pattern, 'subnet');
      throwsWith(() => p.slotOf(cidr, 'spec.subnet'), 'LXR_INVALID_ARGUMENT', /spec\.subnet/, 'spec.subnet');
      assert.equal(p.used, 0);
    });
  }
});

describe('subnet pool: exhaustion, release and reuse', () => {
  it('a full pool is LXR_SUBNET_EXHAUSTED (RESOURCE_EXHAUSTED) naming the pool, and stays consistent', () => {
    const p = new SubnetPool('10.200.0.0/23', 24);
    assert.deepEqual([p.allocate(), p.allocate()], ['10.200.0.0/24', '10.200.1.0/24']);
    throwsWith(() => p.allocate(), 'LXR_SUBNET_EXHAUSTED', /10\.200\.0\.0\/23.*all 2/);
    assert.throws(() => p.allocate(), (e: unknown) => e instanceof LxrError && e.code === Code.RESOURCE_EXHAUSTED);
    assert.equal(p.used, 2);
  });

  it('a released subnet is used again; releasing twice says false', () => {
    const p = new SubnetPool('10.200.0.0/23', 24);
    p.allocate();
    p.allocate();
    assert.equal(p.release('10.200.0.0/24'), true);
    assert.equal(p.release('10.200.0.0/24'), false);
    assert.equal(p.isUsed('10.200.0.0/24'), false);
    assert.equal(p.used, 1);
    assert.equal(p.allocate(), '10.200.0.0/24');
    throwsWith(() => p.allocate(), 'LXR_SUBNET_EXHAUSTED', /10\.200\.0\.0\/23/);
  });

  it('released subnets come back oldest first, before never used ones', () => {
    const p = new SubnetPool('10.200.0.0/16', 24);
    for (let i = 0; i < 4; i++) p.allocate();
    p.release('10.200.2.0/24');
    p.release('10.200.0.0/24');
    assert.deepEqual([p.allocate(), p.allocate(), p.allocate()], ['10.200.2.0/24', '10.200.0.0/24', '10.200.4.0/24']);
  });

  it('a released subnet can be taken by name again', () => {
    const p = new SubnetPool('10.200.0.0/16', 24);
    const s = p.allocate();
    p.release(s);
    assert.equal(p.take(s), true);
    assert.equal(p.allocate(), '10.200.1.0/24');
  });
});

describe('subnet pool: pools and prefixes that cannot work', () => {
  const cases: Array<[string, string, number, string, RegExp]> = [
    ['pool not a CIDR block', '10.200.0.0', 24, 'pool', /is not a CIDR block/],
    ['pool with host bits set', '10.200.1.0/16', 24, 'pool', /host bits set/],
    ['pool not an address', 'ten/16', 24, 'pool', /is not an IPv4 address/],
    ['prefix shorter than the pool', '10.200.0.0/16', 15, 'subnet_prefix', /\/15 subnets do not fit 10\.200\.0\.0\/16/],
    ['prefix too long for containers', '10.200.0.0/16', 30, 'subnet_prefix', /to \/29/],
    ['prefix not whole', '10.200.0.0/16', 24.5, 'subnet_prefix', /do not fit/],
  ];
  for (const [title, pool, prefix, field, pattern] of cases) {
    it(title, () => throwsWith(() => new SubnetPool(pool, prefix), 'LXR_INVALID_ARGUMENT', pattern, field));
  }
});
