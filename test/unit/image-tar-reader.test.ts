// The streaming tar reader (agent/image/tar-reader.ts): ustar, pax (per
// entry and global), GNU long names and base-256 numbers, fed in chunks of
// every awkward size; checksum and truncation errors.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { LxrError } from '../../proto/shared/errors.js';
import { TarReader, type TarHeader } from '../../agent/image/tar-reader.js';
import { tarLayer } from '../helpers/layers.js';

interface Got extends TarHeader {
  body: Buffer;
}

/** Parses `tar` fed in `chunk`-byte pieces, with an async sink every other call. */
async function read(tar: Buffer, chunk = tar.length): Promise<Got[]> {
  const out: Got[] = [];
  let parts: Buffer[] = [];
  let n = 0;
  const maybeAsync = (): void | Promise<void> => (n++ % 2 === 0 ? undefined : new Promise((r) => setImmediate(r)));
  const reader = new TarReader({
    entry(h) {
      parts = [];
      out.push({ ...h, body: Buffer.alloc(0) });
      return maybeAsync();
    },
    data(c) {
      parts.push(Buffer.from(c));
      return maybeAsync();
    },
    end() {
      out[out.length - 1]!.body = Buffer.concat(parts);
      return maybeAsync();
    },
  });
  for (let off = 0; off < tar.length; off += chunk) await reader.write(tar.subarray(off, off + chunk));
  await reader.end();
  return out;
}

function octal(h: Buffer, off: number, len: number, v: number): void {
  h.write(v.toString(8).padStart(len - 1, '0') + '\0', off, len, 'ascii');
}

/** A raw header; `gnu` uses the GNU magic ("ustar  \0"), numbers may be base-256. */
function rawHeader(o: { name: string; type: string; size?: number; uid?: number; linkname?: string; gnu?: boolean; base256Size?: number; mtime?: number }): Buffer {
  const h = Buffer.alloc(512);
  h.write(o.name, 0, 100, 'utf8');
  octal(h, 100, 8, 0o644);
  if (o.uid !== undefined && o.uid > 0o7777777) {
    h[108] = 0x80;
    h.writeUIntBE(o.uid, 112, 4);
  } else octal(h, 108, 8, o.uid ?? 0);
  octal(h, 116, 8, 0);
  if (o.base256Size !== undefined) {
    h[124] = 0x80;
    h.writeUIntBE(o.base256Size, 130, 6);
  } else octal(h, 124, 12, o.size ?? 0);
  octal(h, 136, 12, o.mtime ?? 1_700_000_000);
  h.write(o.type, 156, 1, 'latin1');
  if (o.linkname) h.write(o.linkname, 157, 100, 'utf8');
  h.write(o.gnu ? 'ustar  \0' : 'ustar\u000000', 257, 8, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return h;
}

const padded = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);

function paxBody(records: Record<string, string>): Buffer {
  let s = '';
  for (const [k, v] of Object.entries(records)) {
    const body = ` ${k}=${v}\n`;
    let len = Buffer.byteLength(body) + 1;
    while (String(len).length + Buffer.byteLength(body) !== len) len = String(len).length + Buffer.byteLength(body);
    s += `${len}${body}`;
  }
  return Buffer.from(s);
}

const END = Buffer.alloc(1024);

describe('tar reader', () => {
  const bodyA = randomBytes(70_000);
  const longName = 'deep/' + 'x'.repeat(150) + '/name';
  const tar = tarLayer([
    { path: './', type: 'dir', mode: 0o755 },
    { path: 'a/file', body: bodyA, mode: 0o4755, uid: 1000, gid: 100, mtime: 1_600_000_000 },
    { path: 'a/empty', body: '' },
    { path: 'a/link', type: 'link', linkpath: 'a/file' },
    { path: 'a/sym', type: 'symlink', linkpath: '/' + 'y'.repeat(120) },
    { path: longName, body: 'long' },
    { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3 },
  ]);

  for (const chunk of [1, 7, 511, 512, 513, 4096, 65_536, tar.length]) {
    test(`ustar + pax entries in ${chunk}-byte chunks`, async () => {
      const got = await read(tar, chunk);
      assert.deepEqual(
        got.map((g) => [g.path, g.typeflag, g.size, g.body.length]),
        [
          ['./', '5', 0, 0],
          ['a/file', '0', 70_000, 70_000],
          ['a/empty', '0', 0, 0],
          ['a/link', '1', 0, 0],
          ['a/sym', '2', 0, 0],
          [longName, '0', 4, 4],
          ['dev/null', '3', 0, 0],
        ],
      );
      assert.ok(got[1]!.body.equals(bodyA));
      assert.equal(got[1]!.mode, 0o4755);
      assert.equal(got[1]!.uid, 1000);
      assert.equal(got[1]!.gid, 100);
      assert.equal(got[1]!.mtime, 1_600_000_000);
      assert.equal(got[3]!.linkpath, 'a/file');
      assert.equal(got[4]!.linkpath, '/' + 'y'.repeat(120));
      assert.equal(got[5]!.body.toString(), 'long');
      assert.equal(got[6]!.typeName, 'CharacterDevice');
    });
  }

  test('ustar prefix field', async () => {
    const h = rawHeader({ name: 'file', type: '0', size: 1 });
    h.write('some/prefix', 345, 155, 'utf8');
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
    const got = await read(Buffer.concat([h, padded(Buffer.from('z')), END]));
    assert.equal(got[0]!.path, 'some/prefix/file');
  });

  test('GNU long names, long link names and base-256 numbers', async () => {
    const name = 'gnu/' + 'n'.repeat(300);
    const link = 'gnu/' + 'l'.repeat(200);
    const big = randomBytes(1000);
    const t = Buffer.concat([
      rawHeader({ name: '././@LongLink', type: 'L', size: name.length + 1, gnu: true }),
      padded(Buffer.from(name + '\0')),
      rawHeader({ name: name.slice(0, 99), type: '0', base256Size: big.length, uid: 0o7777777 + 5, gnu: true }),
      padded(big),
      rawHeader({ name: '././@LongLink', type: 'K', size: link.length + 1, gnu: true }),
      padded(Buffer.from(link + '\0')),
      rawHeader({ name: 'gnu/hard', type: '1', linkname: link.slice(0, 99), gnu: true }),
      END,
    ]);
    for (const chunk of [1, 100, t.length]) {
      const got = await read(t, chunk);
      assert.equal(got.length, 2);
      assert.equal(got[0]!.path, name);
      assert.equal(got[0]!.size, 1000);
      assert.equal(got[0]!.uid, 0o7777777 + 5);
      assert.ok(got[0]!.body.equals(big));
      assert.equal(got[1]!.path, 'gnu/hard');
      assert.equal(got[1]!.linkpath, link);
    }
  });

  test('pax: global records apply to what follows, per-entry ones win and size overrides', async () => {
    const g = paxBody({ uid: '4242', mtime: '1234.5' });
    const x = paxBody({ path: 'över/ünïcode', size: '3', uid: '7' });
    const t = Buffer.concat([
      rawHeader({ name: 'pax_global_header', type: 'g', size: g.length }),
      padded(g),
      rawHeader({ name: 'one', type: '0', size: 0 }),
      rawHeader({ name: 'PaxHeader/two', type: 'x', size: x.length }),
      padded(x),
      rawHeader({ name: 'two', type: '0', size: 0 }), // the pax size (3) wins
      padded(Buffer.from('abc')),
      rawHeader({ name: 'three', type: '5' }),
      END,
    ]);
    const got = await read(t, 13);
    assert.deepEqual(
      got.map((e) => [e.path, e.uid, e.mtime, e.body.toString()]),
      [
        ['one', 4242, 1234.5, ''],
        ['över/ünïcode', 7, 1234.5, 'abc'],
        ['three', 4242, 1234.5, ''],
      ],
    );
  });

  test('stops at the end-of-archive marker and accepts a tar without one', async () => {
    const one = tarLayer([{ path: 'f', body: 'x' }]);
    assert.equal((await read(Buffer.concat([one, randomBytes(3000)]))).length, 1, 'bytes after the marker are ignored');
    assert.equal((await read(one.subarray(0, one.length - 1024))).length, 1);
  });

  const refused = async (t: Buffer, re: RegExp): Promise<void> => {
    await assert.rejects(read(t, 100), (e: unknown) => e instanceof LxrError && e.reason === 'LXR_INVALID_ARGUMENT' && re.test(e.message));
  };

  test('a bad checksum is an invalid tar', async () => {
    const t = tarLayer([{ path: 'f', body: 'x' }]);
    t[0] = 0x67; // 'g' instead of 'f'
    await refused(t, /invalid layer tar: bad header checksum/);
    await refused(Buffer.alloc(4096, 0x41), /invalid layer tar/);
  });

  test('input ending inside an entry is truncated', async () => {
    const t = tarLayer([{ path: 'f', body: Buffer.alloc(5000, 1) }]);
    for (const cut of [100, 512, 1000, 512 + 5000, 512 + 5100]) await refused(t.subarray(0, cut), /Truncated input/);
    const x = paxBody({ path: 'p' });
    await refused(Buffer.concat([rawHeader({ name: 'PaxHeader', type: 'x', size: x.length }), padded(x)]), /Truncated input/);
  });

  test('bad numbers and pax records are refused', async () => {
    const h = rawHeader({ name: 'f', type: '0' });
    h.write('12x4567\0', 124, 8, 'latin1');
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
    await refused(Buffer.concat([h, END]), /bad size/);
    const bad = Buffer.from('99 path=x\n');
    await refused(Buffer.concat([rawHeader({ name: 'P', type: 'x', size: bad.length }), padded(bad), rawHeader({ name: 'f', type: '0' }), END]), /pax record/);
    const huge = rawHeader({ name: 'P', type: 'x', size: 2 << 20 });
    await refused(Buffer.concat([huge, END]), /limit/);
  });
});
