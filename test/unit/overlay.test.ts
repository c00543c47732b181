// Unit tests for the overlay rootfs planner and its directory steps: a table
// of valid and invalid inputs, then the fake fs's recorded calls, then the
// Linux fs against a temp dir (no root or mount needed).

import { strict as assert } from 'node:assert';
import { mkdir, stat, writeFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import {
  FakeOverlayFs,
  MAX_LAYERS,
  linuxOverlayFs,
  planOverlay,
  prepareOverlayDirs,
  removeOverlayDirs,
  type OverlayInput,
  type OverlayPlan,
} from '../../agent/rootfs/overlay.js';
import { tempDir } from '../helpers/tmp.js';

const C = '/var/lib/lxr/containers/c1';

describe('planOverlay: valid inputs', () => {
  const cases: Array<{ name: string; input: OverlayInput; want: OverlayPlan }> = [
    {
      name: 'one layer',
      input: { layers: ['/l/a'], containerDir: C },
      want: {
        lower: ['/l/a'],
        upper: `${C}/upper`,
        work: `${C}/work`,
        target: `${C}/rootfs`,
        options: `lowerdir=/l/a,upperdir=${C}/upper,workdir=${C}/work`,
      },
    },
    {
      name: 'three layers: top layer first in lowerdir',
      input: { layers: ['/l/base', '/l/mid', '/l/top'], containerDir: C },
      want: {
        lower: ['/l/top', '/l/mid', '/l/base'],
        upper: `${C}/upper`,
        work: `${C}/work`,
        target: `${C}/rootfs`,
        options: `lowerdir=/l/top:/l/mid:/l/base,upperdir=${C}/upper,workdir=${C}/work`,
      },
    },
    {
      name: 'trailing slashes and doubled separators normalised',
      input: { layers: ['/l//a/'], containerDir: '/c//x/' },
      want: {
        lower: ['/l/a'],
        upper: '/c/x/upper',
        work: '/c/x/work',
        target: '/c/x/rootfs',
        options: 'lowerdir=/l/a,upperdir=/c/x/upper,workdir=/c/x/work',
      },
    },
    {
      name: 'spaces and = are fine in paths',
      input: { layers: ['/l/with space', '/l/a=b'], containerDir: C },
      want: {
        lower: ['/l/a=b', '/l/with space'],
        upper: `${C}/upper`,
        work: `${C}/work`,
        target: `${C}/rootfs`,
        options: `lowerdir=/l/a=b:/l/with space,upperdir=${C}/upper,workdir=${C}/work`,
      },
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.deepEqual(planOverlay(c.input), c.want);
    });
  }

  test('does not modify the input', () => {
    const layers = ['/l/a', '/l/b'];
    planOverlay({ layers, containerDir: C });
    assert.deepEqual(layers, ['/l/a', '/l/b']);
  });

  test(`${MAX_LAYERS} short layers fit`, () => {
    const layers = Array.from({ length: MAX_LAYERS }, (_, i) => `/${i}`);
    assert.equal(planOverlay({ layers, containerDir: '/c' }).lower.length, MAX_LAYERS);
  });
});

describe('planOverlay: invalid inputs name the field', () => {
  const cases: Array<{ name: string; input: OverlayInput; field: string; match: RegExp }> = [
    { name: 'no layers', input: { layers: [], containerDir: C }, field: 'layers', match: /at least one layer/ },
    { name: 'relative layer', input: { layers: ['/l/a', 'l/b'], containerDir: C }, field: 'layers[1]', match: /absolute/ },
    { name: 'empty layer', input: { layers: [''], containerDir: C }, field: 'layers[0]', match: /non-empty/ },
    { name: 'colon in layer', input: { layers: ['/a', '/b', '/l:c'], containerDir: C }, field: 'layers[2]', match: /":"/ },
    { name: 'comma in layer', input: { layers: ['/l,a'], containerDir: C }, field: 'layers[0]', match: /","/ },
    { name: 'backslash in layer', input: { layers: ['/l\\a'], containerDir: C }, field: 'layers[0]', match: /"\\\\"/ },
    { name: 'NUL in layer', input: { layers: ['/l\0a'], containerDir: C }, field: 'layers[0]', match: /contains/ },
    { name: 'relative containerDir', input: { layers: ['/l/a'], containerDir: 'c1' }, field: 'containerDir', match: /absolute/ },
    { name: 'colon in containerDir', input: { layers: ['/l/a'], containerDir: '/c:1' }, field: 'containerDir', match: /":"/ },
    { name: 'comma in containerDir', input: { layers: ['/l/a'], containerDir: '/c,1' }, field: 'containerDir', match: /","/ },
    { name: 'containerDir is /', input: { layers: ['/l/a'], containerDir: '/' }, field: 'containerDir', match: /root directory/ },
    { name: 'duplicate layer', input: { layers: ['/l/a', '/l/b', '/l/a/'], containerDir: C }, field: 'layers[2]', match: /layers\[0\]/ },
    { name: 'layer inside containerDir', input: { layers: ['/l/a', `${C}/upper`], containerDir: C }, field: 'layers[1]', match: /overlaps/ },
    { name: 'containerDir inside a layer', input: { layers: ['/var/lib'], containerDir: C }, field: 'layers[0]', match: /overlaps/ },
    {
      name: 'too many layers',
      input: { layers: Array.from({ length: MAX_LAYERS + 1 }, (_, i) => `/${i}`), containerDir: C },
      field: 'layers',
      match: /at most/,
    },
    {
      name: 'options longer than a page',
      input: { layers: Array.from({ length: 40 }, (_, i) => `/${'x'.repeat(100)}/${i}`), containerDir: C },
      field: 'layers',
      match: /bytes/,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      assert.throws(
        () => planOverlay(c.input),
        (e: unknown) => {
          assert.ok(e instanceof LxrError, `not an LxrError: ${String(e)}`);
          assert.equal(e.reason, 'LXR_INVALID_ARGUMENT');
          assert.equal(e.field, c.field);
          assert.match(e.message, c.match);
          assert.ok(e.message.includes(c.field), `message names the field: ${e.message}`);
          return true;
        },
      );
    });
  }
});

describe('overlay dirs with the fake fs', () => {
  const plan = planOverlay({ layers: ['/l/a', '/l/b'], containerDir: C });

  test('prepare makes upper 0755, work 0700, target 0755 in that order', async () => {
    const fs = new FakeOverlayFs();
    await prepareOverlayDirs(plan, fs);
    assert.deepEqual(fs.calls, [
      { op: 'mkdir', path: `${C}/upper`, mode: 0o755 },
      { op: 'mkdir', path: `${C}/work`, mode: 0o700 },
      { op: 'mkdir', path: `${C}/rootfs`, mode: 0o755 },
    ]);
  });

  test('prepare is idempotent: existing dirs are kept', async () => {
    const fs = new FakeOverlayFs([plan.upper, plan.work, plan.target]);
    await prepareOverlayDirs(plan, fs);
    assert.equal(fs.calls.filter((c) => c.op === 'rm').length, 0);
  });

  test('a failed step removes only the dirs this call created, newest first', async () => {
    const fs = new FakeOverlayFs([plan.upper]); // a stopped container's files
    fs.failOn = (c) => (c.op === 'mkdir' && c.path === plan.target ? new Error('EIO on target') : undefined);
    await assert.rejects(prepareOverlayDirs(plan, fs), /EIO on target/);
    assert.deepEqual(
      fs.calls.filter((c) => c.op === 'rm'),
      [{ op: 'rm', path: plan.work, recursive: true }],
    );
    assert.ok(fs.existing.has(plan.upper));
  });

  test('a cleanup failure does not hide the original error', async () => {
    const fs = new FakeOverlayFs();
    fs.failOn = (c) => {
      if (c.op === 'mkdir' && c.path === plan.target) return new Error('EIO on target');
      if (c.op === 'rm') return new Error(`cannot remove ${c.path}`);
      return undefined;
    };
    await assert.rejects(prepareOverlayDirs(plan, fs), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.match(e.message, /EIO on target/);
      assert.match(e.message, /cleanup also failed/);
      assert.match(e.message, /cannot remove .*work/);
      assert.match(e.message, /cannot remove .*upper/);
      return true;
    });
  });

  test('remove: target non-recursively first, then work and upper', async () => {
    const fs = new FakeOverlayFs();
    await removeOverlayDirs(plan, fs);
    assert.deepEqual(fs.calls, [
      { op: 'rm', path: plan.target, recursive: false },
      { op: 'rm', path: plan.work, recursive: true },
      { op: 'rm', path: plan.upper, recursive: true },
    ]);
  });

  test('remove stops when the mountpoint cannot go (something mounted there)', async () => {
    const fs = new FakeOverlayFs();
    fs.failOn = (c) => (c.path === plan.target ? new Error('EBUSY') : undefined);
    await assert.rejects(removeOverlayDirs(plan, fs), /EBUSY/);
    assert.equal(fs.calls.length, 1);
  });

  test('remove attempts upper even when work fails, and reports both', async () => {
    const fs = new FakeOverlayFs();
    fs.failOn = (c) => (c.path !== plan.target ? new Error(`EPERM ${c.path}`) : undefined);
    await assert.rejects(removeOverlayDirs(plan, fs), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_CLEANUP_FAILED');
      assert.match(e.message, /work/);
      assert.match(e.message, /upper/);
      return true;
    });
    assert.equal(fs.calls.length, 3);
  });
});

describe('overlay dirs with the Linux fs', () => {
  test('prepare then remove in a temp dir', async () => {
    const base = await tempDir('overlay');
    const containerDir = join(base, 'c1');
    const plan = planOverlay({ layers: [join(base, 'layer')], containerDir });
    await prepareOverlayDirs(plan, linuxOverlayFs);
    assert.equal((await stat(plan.upper)).mode & 0o7777, 0o755);
    assert.equal((await stat(plan.work)).mode & 0o7777, 0o700);
    assert.equal((await stat(plan.target)).mode & 0o7777, 0o755);
    await writeFile(join(plan.upper, 'kept'), 'x');
    await prepareOverlayDirs(plan, linuxOverlayFs); // again: keeps upper's files
    assert.deepEqual(await readdir(plan.upper), ['kept']);
    await removeOverlayDirs(plan, linuxOverlayFs);
    assert.deepEqual(await readdir(containerDir), []);
    await removeOverlayDirs(plan, linuxOverlayFs); // already gone is fine
  });

  test('a non-empty mountpoint is not removed and upper is kept', async () => {
    const base = await tempDir('overlay');
    const plan = planOverlay({ layers: [join(base, 'layer')], containerDir: join(base, 'c1') });
    await prepareOverlayDirs(plan, linuxOverlayFs);
    await mkdir(join(plan.target, 'bin'));
    await assert.rejects(removeOverlayDirs(plan, linuxOverlayFs), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_CLEANUP_FAILED');
      assert.equal(e.errno, 'ENOTEMPTY');
      return true;
    });
    await stat(plan.upper);
  });

  test('mkdir over a file fails with an LxrError naming the step', async () => {
    const base = await tempDir('overlay');
    const plan = planOverlay({ layers: [join(base, 'layer')], containerDir: join(base, 'c1') });
    await mkdir(join(base, 'c1'));
    await writeFile(plan.work, 'not a dir');
    await assert.rejects(prepareOverlayDirs(plan, linuxOverlayFs), (e: unknown) => {
      assert.ok(e instanceof LxrError);
      assert.equal(e.reason, 'LXR_HOST_SETUP_FAILED');
      assert.equal(e.step, `mkdir ${plan.work}`);
      return true;
    });
    // upper was created by this call, so it was removed again
    await assert.rejects(stat(plan.upper), { code: 'ENOENT' });
  });
});
