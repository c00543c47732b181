// The exec output ring: one byte-offset space for stdout and stderr, reads
// that coalesce only adjacent chunks of one stream, gaps for evicted data,
// and eviction that never drops past what every reader has been sent.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OutputRing, type RingRead } from '../../agent/exec/output-ring.js';

const b = (s: string): Buffer => Buffer.from(s);

/** A read as plain values, so assert.deepEqual compares the bytes as text. */
function show(r: RingRead | null): unknown {
  if (!r || r.kind === 'gap') return r;
  const data = Buffer.concat(r.pieces);
  assert.equal(r.length, data.length, 'length counts the pieces');
  return { kind: r.kind, stream: r.stream, offset: r.offset, data: data.toString() };
}

describe('OutputRing', () => {
  it('rejects a capacity that is not positive', () => {
    assert.throws(() => new OutputRing(0), RangeError);
    assert.throws(() => new OutputRing(-1), RangeError);
    assert.throws(() => new OutputRing(Number.NaN), RangeError);
    assert.equal(new OutputRing(1).capacity, 1);
  });

  it('gives stdout and stderr bytes offsets in one space', () => {
    const r = new OutputRing(1024);
    assert.equal(r.start, 0);
    assert.equal(r.end, 0);
    r.append('stdout', b('abc'));
    r.append('stderr', b('DE'));
    r.append('stdout', b(''));
    r.append('stdout', b('fghi'));
    assert.equal(r.start, 0);
    assert.equal(r.end, 9);
    assert.equal(r.size, 9);
    assert.deepEqual(show(r.read(0, 100)), { kind: 'data', stream: 'stdout', offset: 0, data: 'abc' });
    assert.deepEqual(show(r.read(3, 100)), { kind: 'data', stream: 'stderr', offset: 3, data: 'DE' });
    assert.deepEqual(show(r.read(5, 100)), { kind: 'data', stream: 'stdout', offset: 5, data: 'fghi' });
  });

  it('returns null for a reader that has everything', () => {
    const r = new OutputRing(16);
    assert.equal(r.read(0, 10), null);
    r.append('stdout', b('abc'));
    assert.equal(r.read(3, 10), null);
    assert.equal(r.read(7, 10), null);
  });

  it('coalesces adjacent chunks of the same stream, up to max', () => {
    const r = new OutputRing(1024);
    r.append('stdout', b('ab'));
    r.append('stdout', b('cd'));
    r.append('stdout', b('ef'));
    r.append('stderr', b('XY'));
    r.append('stdout', b('gh'));
    // All of stdout up to the stderr chunk, never past it.
    assert.deepEqual(show(r.read(0, 100)), { kind: 'data', stream: 'stdout', offset: 0, data: 'abcdef' });
    // Cut at max, in the middle of a chunk.
    assert.deepEqual(show(r.read(0, 3)), { kind: 'data', stream: 'stdout', offset: 0, data: 'abc' });
    assert.deepEqual(show(r.read(0, 4)), { kind: 'data', stream: 'stdout', offset: 0, data: 'abcd' });
    assert.deepEqual(show(r.read(0, 1)), { kind: 'data', stream: 'stdout', offset: 0, data: 'a' });
    assert.deepEqual(show(r.read(6, 100)), { kind: 'data', stream: 'stderr', offset: 6, data: 'XY' });
    assert.deepEqual(show(r.read(8, 100)), { kind: 'data', stream: 'stdout', offset: 8, data: 'gh' });
  });

  it('reads from the middle of a chunk', () => {
    const r = new OutputRing(1024);
    r.append('stderr', b('0123'));
    r.append('stdout', b('456789'));
    r.append('stdout', b('ab'));
    assert.deepEqual(show(r.read(2, 100)), { kind: 'data', stream: 'stderr', offset: 2, data: '23' });
    assert.deepEqual(show(r.read(7, 100)), { kind: 'data', stream: 'stdout', offset: 7, data: '789ab' });
    assert.deepEqual(show(r.read(7, 2)), { kind: 'data', stream: 'stdout', offset: 7, data: '78' });
    assert.deepEqual(show(r.read(9, 2)), { kind: 'data', stream: 'stdout', offset: 9, data: '9a' });
    assert.deepEqual(show(r.read(11, 100)), { kind: 'data', stream: 'stdout', offset: 11, data: 'b' });
  });

  it('finds the right chunk among many (binary search)', () => {
    const r = new OutputRing(1 << 20);
    for (let i = 0; i < 200; i++) r.append(i % 2 === 0 ? 'stdout' : 'stderr', b(String.fromCharCode(65 + (i % 26)).repeat(3)));
    for (let i = 0; i < 200; i++) {
      for (const k of [0, 1, 2]) {
        const got = r.read(i * 3 + k, 100);
        assert.ok(got && got.kind === 'data');
        assert.equal(got.stream, i % 2 === 0 ? 'stdout' : 'stderr');
        assert.equal(Buffer.concat(got.pieces).toString(), String.fromCharCode(65 + (i % 26)).repeat(3 - k));
      }
    }
  });

  it('evicts whole oldest chunks while over capacity', () => {
    const r = new OutputRing(8);
    r.append('stdout', b('aaaa'));
    r.append('stdout', b('bbbb'));
    assert.equal(r.evict(Infinity), true);
    assert.equal(r.start, 0, 'within capacity: nothing dropped');
    r.append('stderr', b('cc'));
    assert.equal(r.evict(Infinity), true);
    assert.equal(r.start, 4, 'only as much as needed, whole chunks');
    assert.equal(r.size, 6);
    assert.deepEqual(show(r.read(4, 100)), { kind: 'data', stream: 'stdout', offset: 4, data: 'bbbb' });
  });

  it('tells a reader below start the gap', () => {
    const r = new OutputRing(4);
    r.append('stdout', b('aaaa'));
    r.append('stdout', b('bbbb'));
    assert.equal(r.evict(Infinity), true);
    assert.equal(r.start, 4);
    assert.deepEqual(r.read(0, 100), { kind: 'gap', until: 4 });
    assert.deepEqual(r.read(3, 100), { kind: 'gap', until: 4 });
    assert.deepEqual(show(r.read(4, 100)), { kind: 'data', stream: 'stdout', offset: 4, data: 'bbbb' });
  });

  it('never drops a chunk that ends after the limit', () => {
    const r = new OutputRing(4);
    r.append('stdout', b('aaaa')); // [0,4)
    r.append('stdout', b('bbbb')); // [4,8)
    r.append('stdout', b('cccc')); // [8,12)
    assert.equal(r.evict(0), false, 'nothing may go: over capacity');
    assert.equal(r.start, 0);
    assert.equal(r.evict(3), false, 'a limit inside a chunk keeps that chunk');
    assert.equal(r.start, 0);
    assert.equal(r.evict(4), false, 'the first chunk may go, not the second');
    assert.equal(r.start, 4);
    assert.equal(r.size, 8);
    assert.deepEqual(show(r.read(4, 100)), { kind: 'data', stream: 'stdout', offset: 4, data: 'bbbbcccc' });
    assert.equal(r.evict(12), true);
    assert.equal(r.start, 8);
    assert.equal(r.size, 4);
  });

  it('returns false when even dropping everything allowed does not fit', () => {
    const r = new OutputRing(4);
    r.append('stdout', b('0123456789'));
    assert.equal(r.evict(5), false);
    assert.equal(r.start, 0);
    assert.equal(r.evict(10), true, 'a chunk larger than capacity goes whole');
    assert.equal(r.start, 10);
    assert.equal(r.size, 0);
    assert.equal(r.read(10, 100), null);
    assert.deepEqual(r.read(9, 100), { kind: 'gap', until: 10 });
  });

  it('keeps reading right after many evictions (compaction)', () => {
    const r = new OutputRing(10);
    let expectStart = 0;
    for (let i = 0; i < 5000; i++) {
      r.append(i % 3 === 0 ? 'stderr' : 'stdout', b(String(i % 10).repeat(5)));
      assert.equal(r.evict(Infinity), true);
      expectStart = Math.max(0, (i - 1) * 5);
      assert.equal(r.start, expectStart);
      assert.equal(r.end, (i + 1) * 5);
    }
    assert.deepEqual(show(r.read(r.start, 100)), { kind: 'data', stream: 'stderr', offset: 4998 * 5, data: '88888' });
    assert.deepEqual(show(r.read(r.end - 2, 100)), { kind: 'data', stream: 'stdout', offset: r.end - 2, data: '99' });
    assert.deepEqual(r.read(0, 1), { kind: 'gap', until: r.start });
  });

  it('releases lent chunks when it drops them, oldest first, and never one it keeps', () => {
    const r = new OutputRing(10);
    const released: string[] = [];
    for (const d of ['aaaa', 'bbbb', 'cccc', 'dddd']) r.append('stdout', Buffer.from(d), () => released.push(d));
    assert.deepEqual(released, [], 'appending drops nothing');
    r.evict(4); // over capacity (16 > 10), but the limit keeps all after offset 4
    assert.deepEqual(released, ['aaaa']);
    r.evict(Infinity);
    assert.deepEqual(released, ['aaaa', 'bbbb'], 'only down to the capacity');
    assert.deepEqual(show(r.read(r.start, 100)), { kind: 'data', stream: 'stdout', offset: 8, data: 'ccccdddd' }, 'what is kept is intact');
  });

  it('releases an empty lent chunk at once (it is never kept)', () => {
    const r = new OutputRing(10);
    let released = 0;
    r.append('stdout', Buffer.alloc(0), () => released++);
    assert.equal(released, 1);
    assert.equal(r.end, 0);
  });
});
