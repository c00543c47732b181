// Image layer unpacking as root: real files, owners, set-id modes, overlay
// whiteouts that a real overlay mount honours, and a corpus of hostile
// layers, each refused with an error naming the entry, with nothing changed
// outside the layer directory and nothing partial left behind.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { FakeFsOps, LinuxFsOps, unpackLayer, type UnpackLimits } from '../../agent/image/unpack.js';
import { MEDIA, gzipBomb, gzipLayer, sha256, tarLayer, zstdLayer, type TarEntry } from '../helpers/layers.js';
import { tempDir } from '../helpers/tmp.js';

const T = { timeout: 120_000 };
const LIMITS: UnpackLimits = { maxBytes: 1 << 30, maxEntries: 100_000 };
const MTIME = 1_600_000_000;

/** A readable that counts how much of the blob was pulled. */
function source(blob: Buffer, chunk = 16 * 1024): { stream: Readable; pulled: () => number } {
  let off = 0;
  const stream = new Readable({
    read() {
      if (off >= blob.length) return void this.push(null);
      this.push(blob.subarray(off, off + chunk));
      off += chunk;
    },
  });
  return { stream, pulled: () => Math.min(off, blob.length) };
}

/** An xattr's value, '' when it is not set (getfattr may not be installed). */
const getxattr = (p: string, name: string): string =>
  execFileSync('python3', ['-c', [
    'import errno, os, sys',
    'try: sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).decode())',
    'except OSError as e:',
    '    if e.errno != errno.ENODATA: raise',
  ].join('\n'), p, name], { encoding: 'utf8' });

const NORMAL: TarEntry[] = [
  { path: './', type: 'dir', mode: 0o755, mtime: MTIME },
  { path: 'etc/', type: 'dir', mode: 0o755, mtime: MTIME },
  { path: 'etc/hostname', body: 'lxr\n', mode: 0o644, mtime: MTIME },
  { path: 'usr/bin/', type: 'dir', mode: 0o755, mtime: MTIME },
  { path: 'usr/bin/passwd', body: '#!/bin/sh\n', mode: 0o4755, mtime: MTIME },
  { path: 'usr/bin/crontab', body: 'cron', mode: 0o2755, uid: 0, gid: 101, mtime: MTIME },
  { path: 'usr/bin/crontab2', type: 'link', linkpath: 'usr/bin/crontab', mtime: MTIME },
  { path: 'home/user/', type: 'dir', mode: 0o750, uid: 1000, gid: 1000, mtime: MTIME },
  { path: 'home/user/.profile', body: 'export X=1\n', mode: 0o600, uid: 1000, gid: 1000, mtime: MTIME },
  { path: 'bin', type: 'symlink', linkpath: 'usr/bin', mtime: MTIME },
  { path: 'etc/os', type: 'symlink', linkpath: '/usr/lib/os-release', uid: 5, gid: 6, mtime: MTIME },
  { path: 'usr/lib/up', type: 'symlink', linkpath: '../../../../../etc/hostname', mtime: MTIME },
  { path: 'tmp/', type: 'dir', mode: 0o1777, mtime: MTIME },
  { path: 'ro/', type: 'dir', mode: 0o555, mtime: MTIME },
  { path: 'ro/file', body: 'r', mode: 0o444, mtime: MTIME },
  { path: 'shared', body: 'w', mode: 0o666, mtime: MTIME },
  { path: 'long/' + 'd'.repeat(120) + '/' + 'f'.repeat(150), body: 'long name', mtime: MTIME },
];

describe('unpack a normal layer', () => {
  for (const [name, mediaType, wrap] of [
    ['tar', MEDIA.tar, (b: Buffer) => b],
    ['gzip', MEDIA.gzip, gzipLayer],
    ['docker gzip', MEDIA.dockerGzip, gzipLayer],
    ['zstd', MEDIA.zstd, (b: Buffer) => zstdLayer(b)],
  ] as const) {
    test(`${name}: contents, owners, modes, links, times and the diffID`, T, async () => {
      const root = await tempDir('unpack');
      const tar = tarLayer(NORMAL);
      const dest = path.join(root, 'layers', 'l1');
      const res = await unpackLayer({ source: Readable.from([wrap(tar)]), mediaType, dest, expectedDiffId: sha256(tar), limits: LIMITS });
      assert.deepEqual(res, { diffId: sha256(tar), size: tar.length, entries: NORMAL.length });
      assert.deepEqual(readdirSync(path.join(root, 'layers')), ['l1'], 'only the layer dir is left');
      const at = (p: string): string => path.join(dest, p);
      const mode = (p: string): number => lstatSync(at(p)).mode & 0o7777;
      assert.equal(readFileSync(at('etc/hostname'), 'utf8'), 'lxr\n');
      assert.equal(mode('usr/bin/passwd'), 0o4755);
      assert.equal(mode('usr/bin/crontab'), 0o2755);
      assert.equal(statSync(at('usr/bin/crontab')).gid, 101);
      assert.equal(statSync(at('usr/bin/crontab2')).ino, statSync(at('usr/bin/crontab')).ino, 'hardlink shares the inode');
      assert.equal(statSync(at('home/user')).uid, 1000);
      assert.equal(mode('home/user'), 0o750);
      assert.equal(statSync(at('home/user/.profile')).uid, 1000);
      assert.equal(mode('home/user/.profile'), 0o600);
      assert.equal(readlinkSync(at('bin')), 'usr/bin');
      assert.equal(readlinkSync(at('etc/os')), '/usr/lib/os-release', 'absolute symlink targets are kept');
      assert.equal(lstatSync(at('etc/os')).uid, 5, 'symlinks get their owner');
      assert.equal(lstatSync(at('etc/os')).gid, 6);
      assert.equal(readlinkSync(at('usr/lib/up')), '../../../../../etc/hostname', 'climbing targets are kept, never resolved');
      assert.equal(mode('tmp'), 0o1777);
      assert.equal(mode('ro'), 0o555);
      assert.equal(mode('ro/file'), 0o444);
      assert.equal(mode('shared'), 0o666);
      assert.equal(mode('.'), 0o755);
      assert.equal(readFileSync(at('long/' + 'd'.repeat(120) + '/' + 'f'.repeat(150)), 'utf8'), 'long name');
      for (const p of ['etc', 'usr/bin', 'etc/hostname', 'tmp', 'ro', 'bin', 'etc/os']) {
        assert.equal(lstatSync(at(p)).mtimeMs, MTIME * 1000, `${p} keeps its mtime`);
      }
    });
  }

  test('a big layer streams through with backpressure', T, async () => {
    const root = await tempDir('unpack');
    const entries: TarEntry[] = [];
    for (let i = 0; i < 2000; i++) entries.push({ path: `d${i % 20}/f${i}`, body: Buffer.alloc(4096 + i, i % 251) });
    entries.push({ path: 'big', body: Buffer.alloc(32 << 20, 7) });
    const tar = tarLayer(entries);
    const dest = path.join(root, 'l');
    const res = await unpackLayer({ source: source(gzipLayer(tar), 64 * 1024).stream, mediaType: MEDIA.gzip, dest, expectedDiffId: sha256(tar), limits: LIMITS });
    assert.equal(res.entries, 2001);
    assert.equal(statSync(path.join(dest, 'big')).size, 32 << 20);
    assert.equal(readFileSync(path.join(dest, 'd7/f1987')).length, 4096 + 1987);
  });
});

describe('whiteouts', () => {
  test('become 0/0 character devices and opaque xattrs', T, async () => {
    const root = await tempDir('unpack');
    const tar = tarLayer([
      { path: 'etc/', type: 'dir' },
      { path: 'etc/.wh.motd' },
      { path: 'var/lib/.wh.old' }, // parents the layer does not list
      { path: 'opt/', type: 'dir' },
      { path: 'opt/.wh..wh..opq' },
      { path: 'opt/new', body: 'n' },
    ]);
    const dest = path.join(root, 'l');
    await unpackLayer({ source: Readable.from([tar]), mediaType: MEDIA.tar, dest, limits: LIMITS });
    for (const p of ['etc/motd', 'var/lib/old']) {
      const st = lstatSync(path.join(dest, p));
      assert.ok(st.isCharacterDevice(), `${p} is a character device`);
      assert.equal(st.rdev, 0);
      assert.equal(st.uid, 0);
    }
    assert.equal(existsSync(path.join(dest, 'etc/.wh.motd')), false, 'the OCI marker itself is not extracted');
    assert.equal(existsSync(path.join(dest, 'opt/.wh..wh..opq')), false);
    assert.equal(getxattr(path.join(dest, 'opt'), 'trusted.overlay.opaque'), 'y');
  });

  test('an overlay of two unpacked layers hides whited-out files and opaque dirs', T, async () => {
    const root = await tempDir('unpack');
    const lower = tarLayer([
      { path: 'a/', type: 'dir' },
      { path: 'a/keep', body: 'keep\n' },
      { path: 'a/gone', body: 'gone\n' },
      { path: 'a/gonedir/inner', body: 'x' },
      { path: 'dir/', type: 'dir' },
      { path: 'dir/old1', body: '1' },
      { path: 'dir/old2', body: '2' },
      { path: 'redo/', type: 'dir' },
      { path: 'redo/stale', body: 's' },
    ]);
    const upper = tarLayer([
      { path: 'a/', type: 'dir' },
      { path: 'a/.wh.gone' },
      { path: 'a/.wh.gonedir' },
      { path: 'dir/', type: 'dir' },
      { path: 'dir/.wh..wh..opq' },
      { path: 'dir/new', body: 'new' },
      // Deleted and recreated in the same layer: the new one, opaque.
      { path: '.wh.redo' },
      { path: 'redo/', type: 'dir' },
      { path: 'redo/fresh', body: 'f' },
    ]);
    const l0 = path.join(root, 'l0');
    const l1 = path.join(root, 'l1');
    await unpackLayer({ source: Readable.from([lower]), mediaType: MEDIA.tar, dest: l0, limits: LIMITS });
    await unpackLayer({ source: Readable.from([gzipLayer(upper)]), mediaType: MEDIA.gzip, dest: l1, limits: LIMITS });
    const mnt = path.join(root, 'mnt');
    await mkdir(mnt);
    // A private mount namespace: the mount dies with the shell, never on the host.
    const out = execFileSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c',
      `mount -t overlay overlay -o lowerdir=${l1}:${l0} ${mnt} && ls -A ${mnt}/a && echo -- && ls -A ${mnt}/dir && echo -- && ls -A ${mnt}/redo`], { encoding: 'utf8' });
    assert.equal(out, 'keep\n--\nnew\n--\nfresh\n');
    assert.deepEqual(readdirSync(mnt), [], 'nothing mounted on the host');
  });
});

interface Hostile {
  name: string;
  /** Entries, or a function of the test's outside dir. */
  entries?: (outside: string) => TarEntry[];
  blob?: (outside: string) => Buffer | Promise<Buffer>;
  mediaType?: string;
  limits?: Partial<UnpackLimits>;
  expectedDiffId?: string;
  /** The message must contain this (the entry name, the digests, ...). */
  names: (outside: string) => string;
  reason?: string;
}

const HOSTILE: Hostile[] = [
  { name: 'absolute path', entries: (o) => [{ path: `${o}/abs`, body: 'pwned' }], names: (o) => `"${o}/abs"` },
  { name: 'dot-dot path', entries: () => [{ path: '../outside/dotdot', body: 'pwned' }], names: () => '"../outside/dotdot"' },
  { name: 'dot-dot in the middle', entries: () => [{ path: 'a/../../outside/mid', body: 'pwned' }], names: () => '"a/../../outside/mid"' },
  { name: 'symlink then write through it', entries: (o) => [{ path: 'a', type: 'symlink', linkpath: o }, { path: 'a/target', body: 'pwned' }], names: () => '"a/target"' },
  { name: 'relative symlink to a dir then a file through it', entries: () => [{ path: 'd', type: 'symlink', linkpath: '../outside' }, { path: 'd/new', body: 'pwned' }], names: () => '"d/new"' },
  { name: 'symlink then a directory over it', entries: (o) => [{ path: 'a', type: 'symlink', linkpath: o }, { path: 'a/', type: 'dir' }], names: () => '"a/"' },
  { name: 'whiteout through a symlink', entries: (o) => [{ path: 'a', type: 'symlink', linkpath: o }, { path: 'a/.wh.target' }], names: () => '"a/.wh.target"' },
  { name: 'opaque marker through a symlink', entries: (o) => [{ path: 'a', type: 'symlink', linkpath: o }, { path: 'a/.wh..wh..opq' }], names: () => '"a/.wh..wh..opq"' },
  { name: 'hardlink escaping with dot-dot', entries: () => [{ path: 'x', type: 'link', linkpath: '../../outside/target' }], names: () => '"x"' },
  { name: 'hardlink to an absolute path', entries: (o) => [{ path: 'x', type: 'link', linkpath: `${o}/target` }], names: () => '"x"' },
  { name: 'hardlink to a file not (yet) in the layer', entries: () => [{ path: 'x', type: 'link', linkpath: 'y' }, { path: 'y', body: 'y' }], names: () => '"x"' },
  { name: 'hardlink through a symlink', entries: (o) => [{ path: 's', type: 'symlink', linkpath: o }, { path: 'x', type: 'link', linkpath: 's/target' }], names: () => '"x"' },
  { name: 'character device', entries: () => [{ path: 'dev/mem', type: 'char', devmajor: 1, devminor: 1 }], names: () => '"dev/mem"' },
  { name: 'block device', entries: () => [{ path: 'sda', type: 'block', devmajor: 8, devminor: 0 }], names: () => '"sda"' },
  { name: 'fifo', entries: () => [{ path: 'pipe', type: 'fifo' }], names: () => '"pipe"' },
  { name: 'whiteout naming nothing', entries: () => [{ path: 'etc/.wh.' }], names: () => '"etc/.wh."' },
  { name: 'whiteout of dot-dot', entries: () => [{ path: 'etc/.wh..' }], names: () => '"etc/.wh.."' },
  { name: 'near-miss opaque marker', entries: () => [{ path: 'etc/.wh..wh..opq2' }], names: () => '"etc/.wh..wh..opq2"' },
  { name: 'AUFS metadata', entries: () => [{ path: '.wh..wh.plnk/1.2', body: 'x' }], names: () => '".wh..wh.plnk/1.2"' },
  { name: 'whiteout escaping its parent', entries: () => [{ path: '../outside/.wh.target' }], names: () => '"../outside/.wh.target"' },
  { name: 'a bad entry after good ones', entries: () => [{ path: 'ok/', type: 'dir' }, { path: 'ok/file', body: 'fine' }, { path: 'ok/../../outside/late', body: 'pwned' }], names: () => '"ok/../../outside/late"' },
  {
    name: 'gzip bomb',
    blob: () => gzipBomb(200 << 20),
    mediaType: MEDIA.gzip,
    limits: { maxBytes: 10 << 20 },
    names: () => 'limits.maxBytes (10485760 uncompressed bytes)',
    reason: 'LXR_RESOURCE_EXHAUSTED',
  },
  {
    name: 'zstd bomb',
    blob: () => zstdLayer(tarLayer([{ path: 'zeros', body: Buffer.alloc(64 << 20) }]), ['-19']),
    mediaType: MEDIA.zstd,
    limits: { maxBytes: 4 << 20 },
    names: () => 'limits.maxBytes',
    reason: 'LXR_RESOURCE_EXHAUSTED',
  },
  {
    name: 'zstd frame with a 2 GiB window',
    blob: () => zstdLayer(tarLayer([{ path: 'f', body: 'x' }]), ['--long=31']),
    mediaType: MEDIA.zstd,
    names: () => 'exceeds the 134217728-byte decoder limit',
  },
  {
    name: 'too many entries',
    entries: () => Array.from({ length: 50 }, (_, i) => ({ path: `f${i}`, body: 'x' })),
    limits: { maxEntries: 10 },
    names: () => 'limits.maxEntries (10 entries)',
    reason: 'LXR_RESOURCE_EXHAUSTED',
  },
  {
    name: 'wrong diffID',
    entries: () => [{ path: 'f', body: 'x' }],
    expectedDiffId: 'sha256:' + '0'.repeat(64),
    names: () => `the image config says sha256:${'0'.repeat(64)}, the uncompressed layer is ${sha256(tarLayer([{ path: 'f', body: 'x' }]))}`,
  },
  { name: 'truncated gzip', blob: () => gzipLayer(tarLayer([{ path: 'f', body: randomBytes(100_000) }])).subarray(0, 5000), mediaType: MEDIA.gzip, names: () => 'invalid gzip layer' },
  { name: 'truncated zstd', blob: () => zstdLayer(tarLayer([{ path: 'f', body: randomBytes(100_000) }])).subarray(0, 5000), mediaType: MEDIA.zstd, names: () => 'invalid zstd layer' },
  { name: 'truncated tar', blob: () => tarLayer([{ path: 'f', body: Buffer.alloc(100_000, 1) }]).subarray(0, 5000), names: () => 'Truncated input' },
  { name: 'not a tar at all', blob: () => Buffer.alloc(4096, 0x41), names: () => 'invalid layer tar' },
  { name: 'gzip data labelled as a plain tar', blob: () => gzipLayer(tarLayer([{ path: 'f' }])), mediaType: MEDIA.tar, names: () => 'the layer data is gzip data' },
  { name: 'gzip data labelled zstd', blob: () => gzipLayer(tarLayer([{ path: 'f' }])), mediaType: MEDIA.zstd, names: () => 'says zstd data, but the layer data is gzip data' },
  { name: 'plain tar labelled gzip', blob: () => tarLayer([{ path: 'f' }]), mediaType: MEDIA.gzip, names: () => 'says gzip data, but the layer data is an uncompressed tar' },
  { name: 'gzip inside gzip', blob: () => gzipLayer(gzipLayer(tarLayer([{ path: 'f' }]))), mediaType: MEDIA.gzip, names: () => 'itself gzip data' },
];

describe('hostile layers', () => {
  for (const h of HOSTILE) {
    test(h.name, T, async () => {
      const root = await tempDir('hostile');
      const outside = path.join(root, 'outside');
      await mkdir(outside);
      await writeFile(path.join(outside, 'target'), 'original\n');
      const layers = path.join(root, 'layers');
      await mkdir(layers);
      const dest = path.join(layers, 'l');
      const blob = h.blob ? await h.blob(outside) : tarLayer(h.entries!(outside));
      const src = source(blob);
      const err = await unpackLayer({
        source: src.stream,
        mediaType: h.mediaType ?? MEDIA.tar,
        dest,
        ...(h.expectedDiffId ? { expectedDiffId: h.expectedDiffId } : {}),
        limits: { ...LIMITS, ...h.limits },
      }).then(() => null, (e: unknown) => e);
      assert.ok(err instanceof LxrError, `refused with an LxrError, got ${String(err)}`);
      assert.equal(err.reason, h.reason ?? 'LXR_INVALID_ARGUMENT', err.message);
      assert.ok(err.message.includes(h.names(outside)), `"${err.message}" should contain ${h.names(outside)}`);
      assert.deepEqual(readdirSync(layers), [], 'no layer dir, no temp dir');
      assert.deepEqual(readdirSync(outside), ['target'], 'nothing new outside');
      assert.equal(readFileSync(path.join(outside, 'target'), 'utf8'), 'original\n', 'the file outside is unchanged');
      assert.deepEqual(readdirSync(root).sort(), ['layers', 'outside']);
      // The limit stops the stream: most of the bomb is never even read.
      if (h.name === 'gzip bomb') assert.ok(src.pulled() < blob.length, `stopped early: read ${src.pulled()} of ${blob.length} compressed bytes`);
    });
  }
});

describe('the extractor', () => {
  test('rewritten and hardlinked files, small and big, end up as the last entry says', T, async () => {
    const root = await tempDir('unpack');
    const big = (n: number) => Buffer.alloc(300 * 1024 + n, n);
    const entries: TarEntry[] = [
      { path: 'a', body: 'first', mode: 0o600 },
      { path: 'b', type: 'link', linkpath: 'a' },
      { path: 'a', body: 'second', mode: 0o640, mtime: MTIME },
      { path: 'big', body: big(1) },
      { path: 'big2', type: 'link', linkpath: 'big' },
      { path: 'small-then-big', body: 'small' },
      { path: 'small-then-big', body: big(2), mode: 0o755 },
      { path: 'big-then-small', body: big(3) },
      { path: 'big-then-small', body: 'small', mode: 0o600 },
      { path: 'deep/er/and/deeper/file', body: 'd' },
      { path: 'deep/', type: 'dir', mode: 0o700, mtime: MTIME },
    ];
    const tar = tarLayer(entries);
    const dest = path.join(root, 'l');
    await unpackLayer({ source: source(gzipLayer(tar), 4096).stream, mediaType: MEDIA.gzip, dest, expectedDiffId: sha256(tar), limits: LIMITS });
    const at = (p: string): string => path.join(dest, p);
    assert.equal(readFileSync(at('a'), 'utf8'), 'second');
    assert.equal(readFileSync(at('b'), 'utf8'), 'first', 'the earlier link keeps the replaced inode');
    assert.notEqual(statSync(at('a')).ino, statSync(at('b')).ino);
    assert.equal(lstatSync(at('a')).mode & 0o7777, 0o640);
    assert.equal(lstatSync(at('a')).mtimeMs, MTIME * 1000);
    assert.ok(readFileSync(at('big')).equals(big(1)));
    assert.equal(statSync(at('big2')).ino, statSync(at('big')).ino);
    assert.ok(readFileSync(at('small-then-big')).equals(big(2)));
    assert.equal(lstatSync(at('small-then-big')).mode & 0o7777, 0o755);
    assert.equal(readFileSync(at('big-then-small'), 'utf8'), 'small');
    assert.equal(lstatSync(at('big-then-small')).mode & 0o7777, 0o600);
    assert.equal(readFileSync(at('deep/er/and/deeper/file'), 'utf8'), 'd');
    assert.equal(lstatSync(at('deep')).mode & 0o7777, 0o700);
    assert.equal(lstatSync(at('deep')).mtimeMs, MTIME * 1000);
  });

  for (const format of ['gnu', 'posix'] as const) {
    test(`a layer made by GNU tar (--format=${format}) unpacks as GNU tar unpacks it`, T, async () => {
      const root = await tempDir('unpack');
      const src = path.join(root, 'src');
      const long = 'l'.repeat(140);
      const files: Record<string, string | Buffer> = {
        'etc/passwd': 'root:x:0:0\n',
        [`usr/share/${long}/${long}.txt`]: 'a long name\n',
        'usr/lib/big.bin': randomBytes(600_000),
        'usr/lib/empty': '',
        'home/u/ünïcode': 'utf-8 name\n',
      };
      for (const [p, c] of Object.entries(files)) {
        await mkdir(path.dirname(path.join(src, p)), { recursive: true });
        await writeFile(path.join(src, p), c);
      }
      execFileSync('chown', ['-R', '1234:5678', path.join(src, 'home')]);
      execFileSync('chmod', ['4755', path.join(src, 'usr/lib/big.bin')]);
      execFileSync('ln', [path.join(src, 'usr/lib/big.bin'), path.join(src, `usr/share/${long}/hard-${long}`)]);
      // Whole seconds: pax keeps nanoseconds, the attrs plan milliseconds.
      execFileSync('find', [src, '-exec', 'touch', '-h', '-d', '@1500000000', '{}', '+']);
      const tar = execFileSync('tar', ['-C', src, `--format=${format}`, '--sort=name', '-cf', '-', '.'], { maxBuffer: 1 << 28 });
      const ours = path.join(root, 'ours');
      await unpackLayer({ source: source(tar, 1000).stream, mediaType: MEDIA.tar, dest: ours, expectedDiffId: sha256(tar), limits: LIMITS });
      const gnu = path.join(root, 'gnu');
      await mkdir(gnu);
      execFileSync('tar', ['-C', gnu, '--same-owner', '-xpf', '-'], { input: tar });
      const listing = (dir: string): string =>
        execFileSync('find', ['.', '-printf', '%p %y %m %U %G %s %T@ %n\\n'], { cwd: dir, encoding: 'utf8' }).split('\n').sort().join('\n');
      assert.equal(listing(ours), listing(gnu));
      execFileSync('diff', ['-r', '--no-dereference', ours, gnu]);
    });
  }
});

describe('arguments and cleanup', () => {
  test('an unknown media type is refused before anything is made', async () => {
    const root = await tempDir('unpack');
    const dest = path.join(root, 'l');
    await assert.rejects(
      unpackLayer({ source: Readable.from([Buffer.alloc(0)]), mediaType: 'application/vnd.example.layer.v1.squashfs', dest, limits: LIMITS }),
      (e: unknown) => e instanceof LxrError && e.field === 'mediaType' && e.message.includes('application/vnd.example.layer.v1.squashfs'),
    );
    assert.deepEqual(readdirSync(root), []);
  });

  test('an existing destination is refused and left alone', async () => {
    const root = await tempDir('unpack');
    const dest = path.join(root, 'l');
    await mkdir(dest);
    await writeFile(path.join(dest, 'mine'), 'x');
    await assert.rejects(
      unpackLayer({ source: Readable.from([tarLayer([{ path: 'f' }])]), mediaType: MEDIA.tar, dest, limits: LIMITS }),
      (e: unknown) => e instanceof LxrError && e.reason === 'LXR_ALREADY_EXISTS',
    );
    assert.deepEqual(readdirSync(root), ['l']);
    assert.deepEqual(readdirSync(dest), ['mine']);
  });

  test('bad limits and digests are invalid arguments', async () => {
    const root = await tempDir('unpack');
    const base = { source: Readable.from([Buffer.alloc(0)]), mediaType: MEDIA.tar, dest: path.join(root, 'l') };
    await assert.rejects(unpackLayer({ ...base, limits: { maxBytes: 0, maxEntries: 1 } }), /limits\.maxBytes/);
    await assert.rejects(unpackLayer({ ...base, limits: { maxBytes: 1, maxEntries: -1 } }), /limits\.maxEntries/);
    await assert.rejects(unpackLayer({ ...base, expectedDiffId: 'md5:abc', limits: LIMITS }), /expectedDiffId/);
    await assert.rejects(unpackLayer({ ...base, dest: 'relative', limits: LIMITS }), /dest/);
    assert.deepEqual(readdirSync(root), []);
  });

  test('the plan goes to FsOps in one call; its failure removes the temp dir', async () => {
    const root = await tempDir('unpack');
    const dest = path.join(root, 'l');
    const fake = new FakeFsOps(new Error('injected fsops failure'));
    const tar = tarLayer([{ path: 'a/.wh.b' }, { path: 's', type: 'symlink', linkpath: '/x' }, { path: 'f', body: 'f' }]);
    await assert.rejects(unpackLayer({ source: Readable.from([tar]), mediaType: MEDIA.tar, dest, limits: LIMITS }, { fsops: fake }), /injected fsops failure/);
    assert.equal(fake.calls.length, 1);
    assert.match(fake.calls[0]!.dir, /\/l\.tmp-[0-9a-f]{12}$/);
    assert.deepEqual(fake.calls[0]!.plan.whiteouts, ['a/b']);
    assert.deepEqual(fake.calls[0]!.plan.symlinks, [{ path: 's', target: '/x' }]);
    assert.deepEqual(readdirSync(root), []);
  });

  test('lxr-fsops itself never follows a symlink, whatever plan it is given', async () => {
    const root = await tempDir('unpack');
    const layer = path.join(root, 'layer');
    const outside = path.join(root, 'outside');
    await mkdir(layer);
    await mkdir(outside);
    await writeFile(path.join(outside, 'target'), 'original\n');
    execFileSync('ln', ['-s', outside, path.join(layer, 'link')]);
    const fsops = new LinuxFsOps();
    const none = { symlinks: [], whiteouts: [], opaque: [], attrs: [] };
    const plans = [
      { ...none, whiteouts: ['link/new'] },
      { ...none, opaque: ['link'] },
      { ...none, symlinks: [{ path: 'link/s', target: '/' }] },
      { ...none, attrs: [{ path: 'link/target', mode: 0o777, uid: 1234 }] },
      { ...none, whiteouts: ['../outside/new'] },
    ];
    for (const plan of plans) {
      await assert.rejects(fsops.apply(layer, plan), (e: unknown) => {
        assert.ok(e instanceof LxrError);
        assert.ok(['ELOOP', 'EXDEV', 'EINVAL'].includes(e.errno ?? ''), `${e.errno}: ${e.message}`);
        return true;
      });
    }
    assert.deepEqual(readdirSync(outside), ['target']);
    const st = statSync(path.join(outside, 'target'));
    assert.equal(st.mode & 0o7777, 0o644);
    assert.equal(st.uid, 0);
    assert.equal(getxattr(outside, 'trusted.overlay.opaque').length, 0);
  });
});
