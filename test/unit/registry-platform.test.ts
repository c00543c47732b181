// Platform selection from indexes: normalisation, variant fallbacks, the
// host default, and the error listing what an index offers.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { hostPlatform, normalizePlatform, parsePlatform, type Platform, platformRank, selectPlatform } from '../../agent/image/registry/platform.js';

interface Entry {
  digest: string;
  platform?: Platform;
}

const entry = (s: string, digest = s): Entry => {
  const [os, architecture, variant] = s.split('/');
  return { digest, platform: { os: os!, architecture: architecture!, ...(variant ? { variant } : {}) } as Platform };
};

const INDEX: Entry[] = [
  entry('linux/amd64'),
  entry('linux/arm/v6'),
  entry('linux/arm/v7'),
  entry('linux/arm64/v8'),
  entry('linux/386'),
  entry('windows/amd64'),
  { digest: 'attestation', platform: { os: 'unknown', architecture: 'unknown' } },
  { digest: 'no-platform' },
];

const cases: Array<{ want: string; index?: Entry[]; pick: string | null }> = [
  { want: 'linux/amd64', pick: 'linux/amd64' },
  { want: 'linux/x86_64', pick: 'linux/amd64' },
  { want: 'linux/amd64/v3', pick: 'linux/amd64' },
  { want: 'linux/arm64', pick: 'linux/arm64/v8' },
  { want: 'linux/aarch64', pick: 'linux/arm64/v8' },
  { want: 'linux/arm64/v8', pick: 'linux/arm64/v8' },
  { want: 'linux/arm64', index: [entry('linux/arm64')], pick: 'linux/arm64' },
  { want: 'linux/arm64/v8', index: [entry('linux/arm64')], pick: 'linux/arm64' },
  { want: 'linux/arm/v7', pick: 'linux/arm/v7' },
  { want: 'linux/arm', pick: 'linux/arm/v7' },
  { want: 'linux/armhf', pick: 'linux/arm/v7' },
  { want: 'linux/arm/v6', pick: 'linux/arm/v6' },
  { want: 'linux/arm/v8', pick: 'linux/arm/v7' },
  { want: 'linux/arm/v5', pick: null },
  { want: 'linux/arm/v7', index: [entry('linux/arm/v5'), entry('linux/arm/v6')], pick: 'linux/arm/v6' },
  { want: 'linux/amd64', index: [entry('linux/amd64/v2')], pick: null },
  { want: 'linux/i386', pick: 'linux/386' },
  { want: 'windows/amd64', pick: 'windows/amd64' },
  { want: 'linux/s390x', pick: null },
  { want: 'linux/amd64', index: [entry('linux/amd64', 'first'), entry('linux/amd64', 'second')], pick: 'first' },
];

describe('selectPlatform', () => {
  for (const c of cases) {
    it(`${c.want} -> ${c.pick ?? 'none'}`, () => {
      const index = c.index ?? INDEX;
      if (c.pick === null) {
        assert.throws(() => selectPlatform(index, parsePlatform(c.want), 'image x'), (e: LxrError) => e.reason === 'LXR_NOT_FOUND');
      } else {
        assert.equal(selectPlatform(index, parsePlatform(c.want)).digest, c.pick);
      }
    });
  }

  it('lists what the index offers, without attestations', () => {
    assert.throws(
      () => selectPlatform(INDEX, { os: 'linux', architecture: 'riscv64' }, 'image r'),
      (e: LxrError) =>
        e.message === 'image r has no manifest for platform linux/riscv64; it offers linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64/v8, linux/386, windows/amd64',
    );
    assert.throws(() => selectPlatform<Entry>([{ digest: 'x' }], { os: 'linux', architecture: 'amd64' }), /offers no platforms/);
  });
});

describe('platforms', () => {
  it('maps the host architecture to GOARCH names', () => {
    assert.deepEqual(hostPlatform('x64'), { os: 'linux', architecture: 'amd64' });
    assert.deepEqual(hostPlatform('arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.deepEqual(hostPlatform('arm', 6), { os: 'linux', architecture: 'arm', variant: 'v6' });
    assert.deepEqual(hostPlatform('arm', undefined), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.deepEqual(hostPlatform('ia32'), { os: 'linux', architecture: '386' });
    assert.deepEqual(hostPlatform('ppc64'), { os: 'linux', architecture: 'ppc64le' });
    assert.deepEqual(hostPlatform('s390x'), { os: 'linux', architecture: 's390x' });
    assert.equal(hostPlatform().os, 'linux');
  });

  it('normalises aliases and default variants', () => {
    assert.deepEqual(normalizePlatform({ os: 'Linux', architecture: 'aarch64' }), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'armel' }), { os: 'linux', architecture: 'arm', variant: 'v6' });
    assert.deepEqual(normalizePlatform({ os: 'linux', architecture: 'arm', variant: '7' }), { os: 'linux', architecture: 'arm', variant: 'v7' });
    assert.equal(platformRank({ os: 'linux', architecture: 'arm', variant: 'v7' }, { os: 'linux', architecture: 'arm', variant: 'v5' }), 2);
    assert.equal(platformRank({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'arm64', variant: 'v9' }), undefined);
  });

  it('parses os/arch[/variant]', () => {
    assert.deepEqual(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64', variant: 'v8' });
    for (const bad of ['linux', 'linux/', '/amd64', 'a/b/c/d']) assert.throws(() => parsePlatform(bad), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT');
  });
});
