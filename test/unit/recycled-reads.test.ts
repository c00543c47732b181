// Output read into recycled slabs (agent/runtime/recycled-reads.ts): a slab
// is reused only once every chunk cut from it was released, short reads are
// copied out, and a real unix socket read this way delivers every byte, in
// order, as chunks or (nobody taking them) as plain 'data'.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chunkTaker, connectRecycled, COPY_BELOW, READ_MAX, SlabReader } from '../../agent/runtime/recycled-reads.js';

/** Simulates one read of `n` bytes of `fill` into what next() offers. */
function read(r: SlabReader, n: number, fill: number): { data: Buffer; release: () => void } {
  const into = r.next();
  assert.ok(into.length >= n, `a read of ${n} fits in the ${into.length} bytes offered`);
  into.fill(fill, 0, n);
  return r.take(n);
}

describe('SlabReader', () => {
  test('offers at most READ_MAX, and large reads are views of one slab, one after the other', () => {
    const r = new SlabReader(1 << 20);
    assert.equal(r.next().length, READ_MAX);
    const a = read(r, 100_000, 1);
    const b = read(r, 100_000, 2);
    assert.ok(a.data.buffer === b.data.buffer, 'the same slab');
    assert.equal(b.data.byteOffset, a.data.byteOffset + 100_000, 'back to back');
    assert.equal(r.allocated, 1);
  });

  test('short reads are copied out: they hold nothing and the space is read into again', () => {
    const r = new SlabReader(1 << 20);
    const first = r.next();
    const a = read(r, COPY_BELOW - 1, 7);
    assert.ok(a.data.buffer !== first.buffer, 'a copy');
    assert.ok(a.data.equals(Buffer.alloc(COPY_BELOW - 1, 7)));
    assert.equal(r.next().byteOffset, first.byteOffset, 'the next read goes to the same place');
  });

  test('a full slab is reused only after every chunk cut from it was released', () => {
    const r = new SlabReader(256 * 1024);
    const chunks = [read(r, 100_000, 1), read(r, 100_000, 2)];
    // 56 KiB left: less than a read is offered, so the next read takes a new slab.
    const c = read(r, 100_000, 3);
    assert.equal(r.allocated, 2);
    assert.ok(c.data.buffer !== chunks[0]!.data.buffer, 'a new slab');
    chunks[0]!.release();
    chunks[0]!.release(); // twice counts once
    read(r, 100_000, 4);
    read(r, 100_000, 5);
    // Slab 2 is full too; slab 1 still lends chunk 2: a third slab.
    read(r, 100_000, 6);
    assert.equal(r.allocated, 3);
    assert.ok(chunks[1]!.data.equals(Buffer.alloc(100_000, 2)), 'a lent chunk was not written over');
    chunks[1]!.release();
    assert.equal(r.freeSlabs, 1, 'slab 1 is free once its last chunk is back');
    // Slab 3 has less than a read left: the next read goes to slab 1, from its start.
    const reused = read(r, 100_000, 8);
    assert.ok(reused.data.buffer === chunks[0]!.data.buffer, 'slab 1 is read into again');
    assert.equal(reused.data.byteOffset, chunks[0]!.data.byteOffset);
    assert.equal(r.allocated, 3, 'no new slab');
    assert.ok(reused.data.equals(Buffer.alloc(100_000, 8)));
  });

  test('refuses a slab smaller than a read', () => {
    assert.throws(() => new SlabReader(1024), /at least/);
  });
});

describe('connectRecycled', () => {
  let dir: string;
  let server: net.Server;
  let sock: string;
  /** What the server writes to each connection, and how. */
  let send: (c: net.Socket) => void = () => {};

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'lxr-recycled-'));
    sock = path.join(dir, 's');
    server = net.createServer((c) => send(c));
    await new Promise<void>((resolve) => server.listen(sock, resolve));
  });

  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes `data` in pieces, then ends. */
  const writer = (data: Buffer) => (c: net.Socket) => {
    let at = 0;
    const step = (): void => {
      while (at < data.length) {
        const n = Math.min(data.length - at, 1 + Math.floor(Math.random() * 300_000));
        const more = c.write(data.subarray(at, at + n));
        at += n;
        if (!more) return void c.once('drain', step);
      }
      c.end();
    };
    step();
  };

  /** Connects (recycled) to a server that sends `data`; `ended` resolves at the socket's end. */
  function connect(data: Buffer): { s: ReturnType<typeof connectRecycled>; ended: Promise<void> } {
    send = writer(data);
    const s = connectRecycled(sock);
    return { s, ended: new Promise<void>((resolve) => s.once('end', resolve)) };
  }

  /** Takes the chunks of `s` as copies, releasing each at once; `each` sees every chunk. */
  function takeCopies(s: ReturnType<typeof connectRecycled>, each: (d: Buffer) => void = () => {}): Buffer[] {
    const got: Buffer[] = [];
    const take = chunkTaker(s);
    assert.ok(take, 'a recycled socket offers its chunks');
    take((d, release) => {
      got.push(Buffer.from(d));
      release();
      each(d);
    });
    return got;
  }

  for (const c of [
    { name: 'chunks taken (and released) carry every byte in order, then end', bytes: 8 << 20, takeAfterMs: 0 },
    { name: 'what was read before the chunks were taken comes first', bytes: 64 * 1024, takeAfterMs: 50 },
  ]) {
    test(c.name, async () => {
      const data = randomBytes(c.bytes);
      const { s, ended } = connect(data);
      if (c.takeAfterMs) await new Promise((resolve) => setTimeout(resolve, c.takeAfterMs));
      const got = takeCopies(s);
      await ended;
      assert.ok(Buffer.concat(got).equals(data));
      s.destroy();
    });
  }

  test('held chunks are not written over while released ones are read into again', async () => {
    const data = randomBytes(16 << 20);
    const { s, ended } = connect(data);
    const all: Buffer[] = [];
    const held: Array<{ d: Buffer; copy: Buffer; release: () => void }> = [];
    chunkTaker(s)!((d, release) => {
      all.push(Buffer.from(d));
      // One chunk in ten is kept, the rest given back at once: the slabs without a kept
      // chunk are read into again while the kept ones stay.
      if (all.length % 10 === 1) held.push({ d, copy: Buffer.from(d), release });
      else release();
    });
    await ended;
    for (const h of held) assert.ok(h.d.equals(h.copy), 'a lent view still holds what was read into it');
    assert.ok(Buffer.concat(all).equals(data));
    for (const h of held) h.release();
    s.destroy();
  });

  test('paused, it reads nothing more; resumed, it goes on', async () => {
    const data = randomBytes(16 << 20);
    const { s, ended } = connect(data);
    let n = 0;
    let paused = false;
    const got = takeCopies(s, (d) => {
      n += d.length;
      if (n >= 1 << 20 && !paused) {
        paused = true;
        s.pause();
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const atPause = n;
    assert.ok(paused && atPause < data.length, 'stopped before the end');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(n, atPause, 'nothing read while paused');
    s.resume();
    await ended;
    assert.ok(Buffer.concat(got).equals(data));
    s.destroy();
  });

  test('with nobody taking chunks it is a plain socket: copies as data, with backpressure', async () => {
    const data = randomBytes(2 << 20);
    const { s, ended } = connect(data);
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => {
      got.push(d);
      // A slow consumer now and then: what was read meanwhile waits in the stream.
      if (got.length % 8 === 0) {
        s.pause();
        setTimeout(() => s.resume(), 5);
      }
    });
    await ended;
    assert.ok(Buffer.concat(got).equals(data));
    // Copies: none of them shares memory with another.
    assert.equal(new Set(got.map((d) => d.buffer)).size, got.length);
    s.destroy();
  });

  test('a stream that is not recycled offers no chunks', () => {
    assert.equal(chunkTaker(new net.Socket()), null);
  });
});
