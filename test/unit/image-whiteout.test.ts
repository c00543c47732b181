// Layer entry policy and whiteout planning (agent/image/whiteout.ts), plus
// the pure parts of decompression and the helper's record encoding.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import {
  LayerPlanner,
  classifyWhiteout,
  normalizeEntryPath,
  planLayer,
  type LayerEntry,
} from '../../agent/image/whiteout.js';
import { ZstdFrameGuard, compressionForMediaType, sniffCompression } from '../../agent/image/decompress.js';
import { encodeFsPlan } from '../../agent/image/unpack.js';

const refused = (fn: () => unknown, entry: string, re: RegExp): void => {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof LxrError, String(e));
    assert.equal(e.reason, 'LXR_INVALID_ARGUMENT');
    assert.ok(e.message.includes(JSON.stringify(entry)), `${e.message} does not name ${entry}`);
    assert.match(e.message, re);
    return true;
  });
};

describe('normalizeEntryPath', () => {
  const ok: Array<[string, string]> = [
    ['a', 'a'],
    ['./a/b/', 'a/b'],
    ['a//b/./c', 'a/b/c'],
    ['.', ''],
    ['./', ''],
    ['..foo/bar..', '..foo/bar..'],
  ];
  for (const [raw, want] of ok) test(`${JSON.stringify(raw)} -> ${JSON.stringify(want)}`, () => assert.equal(normalizeEntryPath(raw), want));
  const bad: Array<[string, RegExp]> = [
    ['/etc/passwd', /absolute path/],
    ['../x', /contains '\.\.'/],
    ['a/../../x', /contains '\.\.'/],
    ['a/..', /contains '\.\.'/],
    ['', /empty path/],
    ['a\0b', /NUL/],
  ];
  for (const [raw, re] of bad) test(`refuses ${JSON.stringify(raw)}`, () => refused(() => normalizeEntryPath(raw), raw, re));
});

describe('classifyWhiteout', () => {
  const cases: Array<[string, ReturnType<typeof classifyWhiteout>]> = [
    ['usr/bin/ls', null],
    ['usr/.wh.ls', { kind: 'whiteout', target: 'usr/ls' }],
    ['.wh.etc', { kind: 'whiteout', target: 'etc' }],
    ['.wh..hidden', { kind: 'whiteout', target: '.hidden' }],
    ['.wh....', { kind: 'whiteout', target: '...' }],
    ['a/b/.wh..wh..opq', { kind: 'opaque', dir: 'a/b' }],
    ['.wh..wh..opq', { kind: 'opaque', dir: '' }],
    ['a.wh.b', null],
    ['x/.whfoo', null],
  ];
  for (const [p, want] of cases) test(`${p}`, () => assert.deepEqual(classifyWhiteout(p), want));
  const bad: Array<[string, RegExp]> = [
    ['a/.wh.', /names nothing/],
    ['.wh..', /"\." is not allowed/],
    ['a/.wh..wh..opqx', /unknown whiteout meta name/],
    ['.wh..wh.plnk', /unknown whiteout meta name/],
    ['.wh..wh.', /unknown whiteout meta name/],
    ['.wh.dir/file', /cannot be a directory/],
    ['a/.wh..wh..opq/x', /cannot be a directory/],
  ];
  for (const [p, re] of bad) test(`refuses ${p}`, () => refused(() => classifyWhiteout(p), p, re));
  test('refuses a whiteout that is a directory entry', () => refused(() => classifyWhiteout('a/.wh.b', 'dir'), 'a/.wh.b', /cannot be a directory/));
});

const f = (path: string, more: Partial<LayerEntry> = {}): LayerEntry => ({ path, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeMs: 1000, ...more });
const d = (path: string, more: Partial<LayerEntry> = {}): LayerEntry => ({ path, type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeMs: 1000, ...more });
const l = (path: string, linkpath: string): LayerEntry => ({ path, type: 'symlink', linkpath, uid: 0, gid: 0, mtimeMs: 1000 });
const h = (path: string, linkpath: string): LayerEntry => ({ path, type: 'hardlink', linkpath });

describe('LayerPlanner: whiteout plan', () => {
  const cases: Array<{ name: string; entries: LayerEntry[]; whiteouts: string[]; opaque: string[] }> = [
    { name: 'a whiteout and an opaque dir', entries: [d('etc'), f('etc/.wh.motd'), d('var'), f('var/.wh..wh..opq'), f('var/new')], whiteouts: ['etc/motd'], opaque: ['var'] },
    { name: 'whiteout in a directory the layer does not list', entries: [f('a/b/.wh.c')], whiteouts: ['a/b/c'], opaque: [] },
    { name: 'the layer own file wins over its whiteout', entries: [f('.wh.x'), f('x')], whiteouts: [], opaque: [] },
    { name: 'a whiteout then the same name as a directory becomes opaque', entries: [f('.wh.dir'), d('dir'), f('dir/new')], whiteouts: [], opaque: ['dir'] },
    { name: 'an implicit directory also wins', entries: [f('.wh.dir'), f('dir/new')], whiteouts: [], opaque: ['dir'] },
    { name: 'duplicates collapse', entries: [f('.wh.x'), f('.wh.x'), f('a/.wh..wh..opq'), f('a/.wh..wh..opq')], whiteouts: ['x'], opaque: ['a'] },
    { name: 'opaque root', entries: [f('.wh..wh..opq'), f('only')], whiteouts: [], opaque: [''] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const plan = planLayer(c.entries);
      assert.deepEqual(plan.whiteouts, c.whiteouts);
      assert.deepEqual(plan.opaque, c.opaque);
    });
  }
  test('whiteouts are not extracted; ordinary entries are; symlinks are deferred', () => {
    const p = new LayerPlanner();
    assert.equal(p.add(f('.wh.x')), false);
    assert.equal(p.add(f('a')), true);
    assert.equal(p.add(d('dir')), true);
    assert.equal(p.add(h('b', 'a')), true);
    assert.equal(p.add(l('s', '/etc/passwd')), false);
    assert.equal(p.entries, 5);
    assert.deepEqual(p.finish().symlinks, [{ path: 's', target: '/etc/passwd' }]);
  });
});

describe('LayerPlanner: attributes', () => {
  test('directories always, files only when the extractor would get them wrong', () => {
    const plan = planLayer(
      [d('.', { mode: 0o755 }), d('ro', { mode: 0o555 }), f('plain'), f('su', { mode: 0o4755 }), f('wr', { mode: 0o666 }), l('s', 'plain'), f('again'), f('again')],
      { umask: 0o022 },
    );
    assert.deepEqual(plan.attrs.map((a) => [a.path, a.mode]), [
      ['', 0o755],
      ['ro', 0o555],
      ['su', 0o4755],
      ['wr', 0o666],
      ['s', undefined],
      ['again', 0o644],
    ]);
    assert.deepEqual(plan.attrs[2], { path: 'su', mode: 0o4755, uid: 0, gid: 0, mtimeMs: 1000 });
  });
  test('the umask decides which plain modes need a fix', () => {
    assert.deepEqual(planLayer([f('x', { mode: 0o640 })], { umask: 0o077 }).attrs.map((a) => a.path), ['x']);
    assert.deepEqual(planLayer([f('x', { mode: 0o640 })], { umask: 0o022 }).attrs, []);
  });
});

describe('LayerPlanner: refusals', () => {
  const cases: Array<{ name: string; entries: LayerEntry[]; entry: string; re: RegExp }> = [
    { name: 'absolute path', entries: [f('/etc/passwd')], entry: '/etc/passwd', re: /absolute path/ },
    { name: 'dot-dot', entries: [f('../../x')], entry: '../../x', re: /'\.\.'/ },
    { name: 'symlink then write through it', entries: [l('a', '/etc'), f('a/passwd')], entry: 'a/passwd', re: /through the symlink "a"/ },
    { name: 'symlink to a dir then a deep write', entries: [d('x'), l('x/d', '../..'), f('x/d/e/f')], entry: 'x/d/e/f', re: /through the symlink "x\/d"/ },
    { name: 'whiteout through a symlink', entries: [l('a', '/etc'), f('a/.wh.passwd')], entry: 'a/.wh.passwd', re: /through the symlink/ },
    { name: 'file as a parent', entries: [f('a'), f('a/b')], entry: 'a/b', re: /parent "a" is a file/ },
    { name: 'symlink replacing a directory', entries: [d('a'), l('a', '/etc')], entry: 'a', re: /replaces the dir/ },
    { name: 'symlink replacing an implicit directory', entries: [f('a/b'), l('a', '/etc')], entry: 'a', re: /replaces the dir/ },
    { name: 'directory replacing a symlink', entries: [l('a', '/etc'), d('a')], entry: 'a', re: /replaces the symlink/ },
    { name: 'file replacing a symlink', entries: [l('a', '/etc/passwd'), f('a')], entry: 'a', re: /replaces the symlink/ },
    { name: 'hardlink outside', entries: [h('x', '../../etc/passwd')], entry: 'x', re: /'\.\.'/ },
    { name: 'hardlink absolute', entries: [h('x', '/etc/passwd')], entry: 'x', re: /absolute hardlink target/ },
    { name: 'hardlink to a later entry', entries: [h('x', 'y'), f('y')], entry: 'x', re: /not an earlier file/ },
    { name: 'hardlink to a symlink', entries: [l('s', '/etc/passwd'), h('x', 's')], entry: 'x', re: /is a symlink/ },
    { name: 'hardlink to a directory', entries: [d('dd'), h('x', 'dd')], entry: 'x', re: /is a dir/ },
    { name: 'hardlink to itself', entries: [f('x'), h('x', 'x')], entry: 'x', re: /itself/ },
    { name: 'character device', entries: [{ path: 'dev/null', type: 'char' }], entry: 'dev/null', re: /char device nodes are not allowed/ },
    { name: 'block device', entries: [{ path: 'sda', type: 'block' }], entry: 'sda', re: /block device/ },
    { name: 'fifo', entries: [{ path: 'p', type: 'fifo' }], entry: 'p', re: /FIFO/ },
    { name: 'unsupported type', entries: [{ path: 's', type: 'other', typeName: 'SparseFile' }], entry: 's', re: /unsupported entry type SparseFile/ },
    { name: 'root as a file', entries: [f('./')], entry: './', re: /layer root/ },
    { name: 'empty symlink target', entries: [l('s', '')], entry: 's', re: /empty target/ },
    { name: 'bad whiteout', entries: [f('a/.wh.')], entry: 'a/.wh.', re: /names nothing/ },
  ];
  for (const c of cases) test(c.name, () => refused(() => planLayer(c.entries), c.entry, c.re));
});

describe('compression', () => {
  test('media types', () => {
    assert.equal(compressionForMediaType('application/vnd.oci.image.layer.v1.tar'), 'none');
    assert.equal(compressionForMediaType('application/vnd.oci.image.layer.v1.tar+gzip'), 'gzip');
    assert.equal(compressionForMediaType('application/vnd.docker.image.rootfs.diff.tar.gzip'), 'gzip');
    assert.equal(compressionForMediaType('application/vnd.oci.image.layer.v1.tar+zstd'), 'zstd');
    assert.throws(() => compressionForMediaType('application/x-bogus'), (e: unknown) => e instanceof LxrError && e.field === 'mediaType' && /application\/x-bogus/.test(e.message));
    assert.throws(() => compressionForMediaType('toString'), LxrError);
  });
  test('magic bytes', () => {
    assert.equal(sniffCompression(Buffer.from([0x1f, 0x8b, 8])), 'gzip');
    assert.equal(sniffCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), 'zstd');
    assert.equal(sniffCompression(Buffer.from('etc/')), 'none');
    assert.equal(sniffCompression(Buffer.from([0x28, 0xb5])), null);
    assert.equal(sniffCompression(Buffer.from([0x28, 0xb5]), true), 'none');
  });
  test('zstd frame guard refuses windows over 128 MiB and walks frames', () => {
    // magic, FHD (no single segment, no checksum), window descriptor.
    const frame = (wd: number): Buffer => Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, wd]);
    const raw = (last: boolean, bytes: number[]): Buffer => {
      const bh = (last ? 1 : 0) | (0 << 1) | (bytes.length << 3);
      return Buffer.from([bh & 0xff, (bh >> 8) & 0xff, (bh >> 16) & 0xff, ...bytes]);
    };
    const g = new ZstdFrameGuard();
    g.feed(Buffer.concat([frame((17 << 3) | 0), raw(false, [1, 2]), raw(true, [3])])); // 128 MiB: allowed
    assert.equal(g.atBoundary, true);
    const skippable = Buffer.from([0x50, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9, 9]);
    for (const b of skippable) g.feed(Buffer.from([b])); // byte by byte
    assert.equal(g.atBoundary, true);
    g.feed(frame(17 << 3).subarray(0, 5));
    assert.equal(g.atBoundary, false);
    assert.throws(() => new ZstdFrameGuard().feed(frame((17 << 3) | 1)), /exceeds the 134217728-byte decoder limit/);
    assert.throws(() => new ZstdFrameGuard().feed(frame(21 << 3)), /window of 2147483648 bytes/);
    assert.throws(() => new ZstdFrameGuard().feed(Buffer.from('not zstd')), /bad frame magic/);
  });
});

test('fsops records', () => {
  const rec = encodeFsPlan({
    symlinks: [{ path: 'bin', target: 'usr/bin' }],
    whiteouts: ['etc/motd'],
    opaque: [''],
    attrs: [{ path: 'tmp', mode: 0o1777, uid: 0, gid: 0, mtimeMs: 1500 }, { path: 's', uid: 7 }],
  });
  assert.equal(
    rec.toString(),
    ['symlink', 'bin', 'usr/bin', 'whiteout', 'etc/motd', 'opaque', '', 'attr', 'tmp', '1023', '0', '0', '1500', 'attr', 's', '', '7', '', ''].join('\0') + '\0',
  );
  assert.equal(encodeFsPlan({ symlinks: [], whiteouts: [], opaque: [], attrs: [] }).length, 0);
});

describe('entry paths beyond what Linux or any real image needs', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['a path longer than PATH_MAX', 'a/'.repeat(2100) + 'x', /longer than 4095 bytes/],
    ['a name longer than NAME_MAX', 'd/' + 'n'.repeat(256), /name in the path is longer than 255/],
    ['more than 1024 levels', 'a/'.repeat(1100) + 'x', /longer than 4095|deeper than 1024/],
  ];
  for (const [name, path, re] of cases) {
    test(`${name} is refused before any walk`, () => {
      assert.throws(() => normalizeEntryPath(path), (e: LxrError) => e.reason === 'LXR_INVALID_ARGUMENT' && re.test(e.message));
    });
  }
  test('the link target of a hardlink is held to the same limits', () => {
    assert.throws(() => normalizeEntryPath('x'.repeat(300), 'h', 'linkpath'), /name in the linkpath is longer than 255/);
  });
});
