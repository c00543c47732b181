// ChainID computation, the image store's name index and untag semantics, and
// the pure helpers of the image service and importer.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { PassThrough, Readable } from 'node:stream';
import path from 'node:path';
import { describe, test } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { canonicalName, type ImageRecord, ImageStore } from '../../agent/image/image-store.js';
import { dockerLayerType, inside, ociNames } from '../../agent/image/import.js';
import { chainIds, LayerStore } from '../../agent/image/layer-store.js';
import { FakeFsOps } from '../../agent/image/unpack.js';
import { tarOf } from '../helpers/oci-image.js';
import { digestOf } from '../../agent/image/digest.js';
import { MediaType } from '../../agent/image/registry/mediatypes.js';
import { planLayers } from '../../agent/image/service.js';
import { tempDir } from '../helpers/tmp.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const sha = (s: string): string => 'sha256:' + createHash('sha256').update(s).digest('hex');

const isErr = (reason: string, message?: RegExp) => (e: unknown) => {
  assert.ok(e instanceof LxrError, String(e));
  assert.equal(e.reason, reason, e.message);
  if (message) assert.match(e.message, message);
  return true;
};

describe('chainIds', () => {
  const [a, b, c] = [d('a'), d('b'), d('c')];
  const ab = sha(`${a} ${b}`);
  const cases: Array<[string, string[], string[]]> = [
    ['no layers', [], []],
    ['one layer: its diffID', [a], [a]],
    ['two layers', [a, b], [a, ab]],
    ['three layers chain on the previous chainID', [a, b, c], [a, ab, sha(`${ab} ${c}`)]],
    ['order matters', [b, a], [b, sha(`${b} ${a}`)]],
    ['a repeated diffID still changes the chain', [a, a], [a, sha(`${a} ${a}`)]],
  ];
  for (const [name, input, want] of cases) test(name, () => assert.deepEqual(chainIds(input), want));
  test('a malformed diffID is INVALID_ARGUMENT naming its index', () => {
    assert.throws(() => chainIds([a, 'sha256:nope']), (e: unknown) => isErr('LXR_INVALID_ARGUMENT')(e) && (e as LxrError).field === 'rootfs.diff_ids[1]');
  });
});

describe('planLayers', () => {
  const desc = (x: string) => ({ mediaType: MediaType.OciLayerGzip, digest: d(x), size: 1 });
  test('counts must agree', () => {
    assert.throws(() => planLayers({ rootfs: { type: 'layers', diff_ids: [d('a')] } }, [desc('1'), desc('2')], 'img'), isErr('LXR_INVALID_ARGUMENT'));
    assert.throws(() => planLayers({ rootfs: { type: 'layers', diff_ids: [] } }, [], 'img'), isErr('LXR_INVALID_ARGUMENT'));
    assert.deepEqual(planLayers({ rootfs: { type: 'layers', diff_ids: [d('a')] } }, [desc('1')], 'img'), [d('a')]);
  });
});

describe('import helpers', () => {
  test('ociNames', () => {
    assert.deepEqual(ociNames(undefined), []);
    assert.deepEqual(ociNames({ 'org.opencontainers.image.ref.name': 'example.com/a/b:1' }), ['example.com/a/b:1']);
    assert.deepEqual(ociNames({ 'org.opencontainers.image.ref.name': 'latest' }), []);
    assert.deepEqual(ociNames({ 'org.opencontainers.image.ref.name': 'v2' }, 'busybox'), ['docker.io/library/busybox:v2']);
    assert.deepEqual(ociNames({ 'io.containerd.image.name': 'docker.io/x/y:z', 'org.opencontainers.image.ref.name': 'z' }), ['docker.io/x/y:z']);
  });
  test('dockerLayerType sniffs compression', () => {
    assert.equal(dockerLayerType(Buffer.from([0x1f, 0x8b, 8, 0])), MediaType.DockerLayerGzip);
    assert.equal(dockerLayerType(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), MediaType.DockerLayerZstd);
    assert.equal(dockerLayerType(Buffer.from('abcd')), MediaType.DockerLayer);
  });
  test('inside refuses paths leaving the archive', () => {
    assert.equal(inside('/x/y', 'a/b.tar'), '/x/y/a/b.tar');
    for (const p of ['../etc/passwd', '/etc/passwd', 'a/../../b', '', '.']) assert.throws(() => inside('/x/y', p), isErr('LXR_INVALID_ARGUMENT'), p);
  });
});

function rec(hex: string, layers: string[] = [d('1')]): Omit<ImageRecord, 'names'> {
  return {
    manifestDigest: d(hex),
    configDigest: d('c'),
    layers,
    layerBlobs: layers,
    layerSizes: layers.map(() => 10),
    platform: { os: 'linux', architecture: 'amd64' },
    size: 10 * layers.length,
    created: '2024-01-01T00:00:00Z',
  };
}

describe('ImageStore', () => {
  test('canonical names', () => {
    assert.equal(canonicalName('busybox'), 'docker.io/library/busybox:latest');
    assert.equal(canonicalName('localhost:5000/a/b:1'), 'localhost:5000/a/b:1');
    assert.throws(() => canonicalName('UPPER'), isErr('LXR_INVALID_ARGUMENT'));
  });

  test('put, resolve by name, digest or id; the index file maps names to digests', async () => {
    const root = path.join(await tempDir('imgstore'), 'images');
    const s = new ImageStore(root);
    const { record } = await s.put(rec('a'), ['busybox', 'busybox:1']);
    assert.deepEqual(record.names, ['docker.io/library/busybox:1', 'docker.io/library/busybox:latest']);
    for (const q of ['busybox', 'docker.io/library/busybox:latest', 'busybox:1', d('a'), 'a'.repeat(64)]) {
      assert.equal((await s.resolve(q)).manifestDigest, d('a'), q);
    }
    const onDisk = JSON.parse(await readFile(path.join(root, 'names.json'), 'utf8'));
    assert.deepEqual(onDisk, { 'docker.io/library/busybox:1': d('a'), 'docker.io/library/busybox:latest': d('a') });
    await assert.rejects(s.resolve('busybox:2'), isErr('LXR_NOT_FOUND'));
    await assert.rejects(s.resolve(d('f')), isErr('LXR_NOT_FOUND'));
  });

  test('re-putting the same image merges names', async () => {
    const s = new ImageStore(path.join(await tempDir('imgstore'), 'images'));
    await s.put(rec('a'), ['x:1']);
    const { record } = await s.put(rec('a'), ['x:2']);
    assert.deepEqual(record.names, ['docker.io/library/x:1', 'docker.io/library/x:2']);
    assert.equal((await s.list()).length, 1);
  });

  test('a name moves to the new image; an image left nameless is dropped', async () => {
    const s = new ImageStore(path.join(await tempDir('imgstore'), 'images'));
    await s.put(rec('a'), ['x:1', 'x:keep']);
    await s.put(rec('b'), ['y:1']);
    const first = await s.put(rec('c'), ['x:1', 'y:1']);
    assert.deepEqual(first.dropped.map((r) => r.manifestDigest), [d('b')]);
    assert.deepEqual((await s.resolve(d('a'))).names, ['docker.io/library/x:keep']);
    assert.equal((await s.resolve('x:1')).manifestDigest, d('c'));
    assert.deepEqual((await s.list()).map((r) => r.manifestDigest), [d('a'), d('c')]);
  });

  test('untag removes one name; the record goes with the last; unknown is NOT_FOUND', async () => {
    const s = new ImageStore(path.join(await tempDir('imgstore'), 'images'));
    await s.put(rec('a'), ['x:1', 'x:2']);
    let r = await s.untag('x:1');
    assert.equal(r.deleted, false);
    assert.deepEqual(r.record.names, ['docker.io/library/x:2']);
    await assert.rejects(s.resolve('x:1'), isErr('LXR_NOT_FOUND'));
    await assert.rejects(s.untag('x:1'), isErr('LXR_NOT_FOUND'));
    r = await s.untag('x:2');
    assert.equal(r.deleted, true);
    assert.deepEqual(await s.list(), []);
    assert.deepEqual(await s.names(), {});
    await assert.rejects(s.untag('nothing-here'), isErr('LXR_NOT_FOUND'));
  });

  test('untag by digest removes every name', async () => {
    const s = new ImageStore(path.join(await tempDir('imgstore'), 'images'));
    await s.put(rec('a'), ['x:1', 'x:2']);
    await s.put(rec('b'), ['z']);
    const r = await s.untag(d('a'));
    assert.equal(r.deleted, true);
    assert.deepEqual(await s.names(), { 'docker.io/library/z:latest': d('b') });
  });

  test('concurrent puts never lose a name', async () => {
    const s = new ImageStore(path.join(await tempDir('imgstore'), 'images'));
    await Promise.all(Array.from({ length: 20 }, (_, i) => s.put(rec((i % 16).toString(16)), [`n:${i}`])));
    assert.equal(Object.keys(await s.names()).length, 20);
  });
});

describe('LayerStore', () => {
  const tar = tarOf({ 'etc/hello': 'hi\n' });
  const diffId = digestOf(tar);
  const base = { chainId: diffId, parent: null, diffId, blob: d('b'), mediaType: MediaType.OciLayer };

  test('concurrent ensures of one chainID share one unpack; later ones find it', async () => {
    const root = path.join(await tempDir('layers'), 'layers');
    const ls = new LayerStore(root, { fsops: new FakeFsOps() });
    let opens = 0;
    const open = async () => {
      opens++;
      return Readable.from([tar]);
    };
    const [a, b] = await Promise.all([ls.ensure({ ...base, open }), ls.ensure({ ...base, open })]);
    assert.equal(opens, 1);
    assert.deepEqual(a.record, b.record);
    assert.equal(a.existed, false);
    assert.equal(a.record.size, tar.length);
    assert.equal(await readFile(path.join(ls.fsPath(diffId), 'etc', 'hello'), 'utf8'), 'hi\n');
    const c = await ls.ensure({ ...base, open });
    assert.equal(c.existed, true);
    assert.equal(opens, 1);
    assert.deepEqual((await ls.list()).map((l) => l.chainId), [diffId]);
    assert.equal(await ls.delete(diffId), true);
    assert.equal(await ls.delete(diffId), false);
    assert.deepEqual(await readdir(root), []);
  });

  test('a diffID mismatch leaves nothing behind', async () => {
    const root = path.join(await tempDir('layers'), 'layers');
    const ls = new LayerStore(root, { fsops: new FakeFsOps() });
    const wrong = { ...base, diffId: d('e'), chainId: d('e') };
    await assert.rejects(ls.ensure({ ...wrong, open: async () => Readable.from([tar]) }), isErr('LXR_INVALID_ARGUMENT'));
    assert.deepEqual(await readdir(root), []);
  });

  test('cancelling the only waiter stops the unpack and cleans up before rejecting', async () => {
    const root = path.join(await tempDir('layers'), 'layers');
    const ls = new LayerStore(root, { fsops: new FakeFsOps() });
    const ac = new AbortController();
    const src = new PassThrough();
    src.write(tar.subarray(0, 512));
    const p = ls.ensure({ ...base, open: async () => src, signal: ac.signal });
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await assert.rejects(p, isErr('LXR_UNAVAILABLE', /^pull cancelled$/));
    assert.deepEqual(await readdir(root), []);
    // A later ensure starts afresh.
    const again = await ls.ensure({ ...base, open: async () => Readable.from([tar]) });
    assert.equal(again.existed, false);
  });

  test('one waiter cancelling does not stop the unpack another waits for', async () => {
    const root = path.join(await tempDir('layers'), 'layers');
    const ls = new LayerStore(root, { fsops: new FakeFsOps() });
    const ac = new AbortController();
    const src = new PassThrough();
    const p1 = ls.ensure({ ...base, open: async () => src, signal: ac.signal });
    const p2 = ls.ensure({ ...base, open: async () => src });
    ac.abort();
    await assert.rejects(p1, isErr('LXR_UNAVAILABLE'));
    src.end(tar);
    assert.equal((await p2).record.chainId, diffId);
  });
});

describe('docker-save import refuses files that lead outside the archive', () => {
  test('a Config that is a symlink to a host file is refused, and nothing of it is read', async () => {
    const { importArchive } = await import('../../agent/image/import.js');
    const { BlobStore } = await import('../../agent/image/blob-store.js');
    const { mkdtemp, writeFile: wf, symlink: sl, rm: rmr } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = await mkdtemp(join(tmpdir(), 'lxr-test-imp-'));
    try {
      const secret = join(dir, '..', `lxr-test-secret-${process.pid}`);
      await wf(secret, 'root:$6$secret');
      const archive = join(dir, 'save');
      await (await import('node:fs/promises')).mkdir(archive);
      await sl(secret, join(archive, 'cfg'));
      await wf(join(archive, 'manifest.json'), JSON.stringify([{ Config: 'cfg', RepoTags: ['x:1'], Layers: [] }]));
      const blobs = new BlobStore(join(dir, 'blobs'));
      await assert.rejects(
        importArchive(archive, { blobs } as never),
        (e: Error) => /leads outside the archive/.test(e.message) && !e.message.includes('secret'),
      );
      assert.deepEqual(await blobs.list(), []);
      await rmr(secret, { force: true });
    } finally {
      await rmr(dir, { recursive: true, force: true });
    }
  });
});

describe('tar imports are bounded', () => {
  test('more entries or bytes than the limits stop the import with a clear error and leave no temp dir', async () => {
    const { importArchive } = await import('../../agent/image/import.js');
    const { BlobStore } = await import('../../agent/image/blob-store.js');
    const { mkdtemp, writeFile: wf, rm: rmr, readdir: rd, mkdir: md } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { c: createTar } = await import('tar');
    const dir = await mkdtemp(join(tmpdir(), 'lxr-test-implim-'));
    try {
      const src = join(dir, 'src');
      await md(src);
      for (let i = 0; i < 20; i++) await wf(join(src, `f${i}`), 'x'.repeat(1000));
      const archive = join(dir, 'a.tar');
      await createTar({ file: archive, cwd: src }, (await rd(src)).sort());
      const tmp = join(dir, 'tmp');
      await md(tmp);
      const blobs = new BlobStore(join(dir, 'blobs'));
      await assert.rejects(importArchive(archive, { blobs } as never, { tmpDir: tmp, limits: { maxEntries: 5 } }), (e: LxrError) => e.reason === 'LXR_RESOURCE_EXHAUSTED' && e.field === 'limits.maxEntries');
      await assert.rejects(importArchive(archive, { blobs } as never, { tmpDir: tmp, limits: { maxBytes: 5000 } }), (e: LxrError) => e.reason === 'LXR_RESOURCE_EXHAUSTED' && e.field === 'limits.maxBytes');
      assert.deepEqual(await rd(tmp), []);
    } finally {
      await rmr(dir, { recursive: true, force: true });
    }
  });
});
