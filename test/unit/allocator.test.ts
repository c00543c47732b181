// The O(1) allocator: the in-memory structure against a reference model
// over random operations, reuse order, specific requests, exhaustion; the
// persistent one across reopen, torn journal lines, compaction (also cut
// short), a changed size, and a writer SIGKILLed at a random moment; and
// the IPv4 slot mappings (network, gateway, broadcast never handed out).
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { PersistentAllocator, SlotAllocator } from '../../proto/shared/allocator.js';
import { LxrError } from '../../proto/shared/errors.js';
import { formatCidr, formatIpv4, HostAddresses, parseCidr, parseIpv4, Subnets } from '../../proto/shared/ipv4.js';
import { runUntilKilled } from '../helpers/sigkill.js';
import { tempDir } from '../helpers/tmp.js';

/** A deterministic PRNG, so a failing sequence can be replayed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const opts = { what: 'slot' };

describe('SlotAllocator', () => {
  it('hands out slots in order, then the oldest released first', () => {
    const a = new SlotAllocator(5);
    assert.deepEqual([a.allocate(), a.allocate(), a.allocate()], [0, 1, 2]);
    assert.equal(a.release(1), true);
    assert.equal(a.release(0), true);
    // released slots first, oldest first; then never-used ones
    assert.deepEqual([a.allocate(), a.allocate(), a.allocate(), a.allocate()], [1, 0, 3, 4]);
    assert.equal(a.allocate(), null);
    assert.equal(a.allocated, 5);
  });

  it('honours specific requests ahead of and behind the cursor, and refuses taken ones', () => {
    const a = new SlotAllocator(6);
    assert.equal(a.take(3), true);
    assert.equal(a.take(3), false);
    assert.deepEqual([a.allocate(), a.allocate(), a.allocate()], [0, 1, 2]);
    // the cursor skips 3, which was taken ahead of it
    assert.equal(a.allocate(), 4);
    a.release(1);
    assert.equal(a.take(1), true); // from the middle of the free list
    assert.equal(a.allocate(), 5);
    assert.equal(a.allocate(), null);
    // released ahead of the cursor: not on the free list, handed out by the cursor once
    const b = new SlotAllocator(4);
    b.take(2);
    b.release(2);
    assert.deepEqual([b.allocate(), b.allocate(), b.allocate(), b.allocate(), b.allocate()], [0, 1, 2, 3, null]);
  });

  it('release of a free slot is false; out-of-range slots are refused', () => {
    const a = new SlotAllocator(3);
    assert.equal(a.release(0), false);
    a.allocate();
    assert.equal(a.release(0), true);
    assert.equal(a.release(0), false);
    assert.throws(() => a.take(3), RangeError);
    assert.throws(() => a.release(-1), RangeError);
    assert.throws(() => new SlotAllocator(0), RangeError);
  });

  it('never hands out a slot twice: 20k random operations against a reference model', () => {
    for (const seed of [1, 2, 3]) {
      const rand = prng(seed);
      const size = 257;
      const a = new SlotAllocator(size);
      const held = new Set<number>();
      for (let i = 0; i < 20_000; i++) {
        const r = rand();
        if (r < 0.5) {
          const s = a.allocate();
          if (s === null) {
            assert.equal(held.size, size, `seed ${seed} op ${i}: null while ${held.size} held`);
            continue;
          }
          assert.ok(!held.has(s), `seed ${seed} op ${i}: ${s} handed out twice`);
          held.add(s);
        } else if (r < 0.85) {
          if (held.size === 0) continue;
          const s = [...held][Math.floor(rand() * held.size)]!;
          assert.equal(a.release(s), true);
          held.delete(s);
        } else {
          const s = Math.floor(rand() * size);
          const ok = a.take(s);
          assert.equal(ok, !held.has(s), `seed ${seed} op ${i}: take(${s})`);
          if (ok) held.add(s);
        }
        assert.equal(a.allocated, held.size);
      }
    }
  });

  it('state() and fromState() round-trip, keeping the free list order', () => {
    const a = new SlotAllocator(10);
    for (let i = 0; i < 8; i++) a.allocate();
    a.release(5);
    a.release(2);
    a.take(9);
    const b = SlotAllocator.fromState(10, a.state());
    const drain = (x: SlotAllocator) => {
      const out: Array<number | null> = [];
      for (let i = 0; i < 5; i++) out.push(x.allocate());
      return out;
    };
    assert.deepEqual(drain(b), drain(a));
    assert.throws(() => SlotAllocator.fromState(4, { cursor: 2, used: [1, 1], free: [0] }), RangeError);
    assert.throws(() => SlotAllocator.fromState(4, { cursor: 2, used: [1], free: [1] }), RangeError);
    assert.throws(() => SlotAllocator.fromState(4, { cursor: 2, used: [1], free: [] }), /neither in use nor free/);
    assert.throws(() => SlotAllocator.fromState(4, { cursor: 1, used: [0], free: [3] }), RangeError);
  });
});

describe('PersistentAllocator', () => {
  it('survives a reopen with the same state and reuse order', async () => {
    const dir = path.join(await tempDir('alloc'), 'a');
    const a = PersistentAllocator.open(dir, 8, opts);
    assert.deepEqual([a.allocate(), a.allocate(), a.allocate(), a.allocate()], [0, 1, 2, 3]);
    a.release(2);
    a.release(0);
    assert.equal(a.take(6), true);
    a.close();
    const b = PersistentAllocator.open(dir, 8, opts);
    assert.equal(b.allocated, 3);
    assert.deepEqual([1, 3, 6].map((s) => b.isUsed(s)), [true, true, true]);
    assert.deepEqual([b.allocate(), b.allocate(), b.allocate(), b.allocate()], [2, 0, 4, 5]);
    b.close();
  });

  it('exhaustion is RESOURCE_EXHAUSTED with the reason given, naming what ran out', async () => {
    const a = PersistentAllocator.open(path.join(await tempDir('alloc'), 'a'), 2, { what: 'address in 10.0.0.0/30', exhausted: 'LXR_IP_EXHAUSTED' });
    a.allocate();
    a.allocate();
    assert.throws(
      () => a.allocate(),
      (e: LxrError) => e.reason === 'LXR_IP_EXHAUSTED' && e.code === 8 && /address in 10\.0\.0\.0\/30/.test(e.message),
    );
    a.close();
  });

  it('a torn last journal line (a crash mid-write) was never answered: it is dropped', async () => {
    const dir = path.join(await tempDir('alloc'), 'a');
    const a = PersistentAllocator.open(dir, 8, opts);
    a.allocate();
    a.allocate();
    a.close();
    // A new allocator starts at generation 1 (its first snapshot records its size).
    appendFileSync(path.join(dir, 'journal.1'), 'a 5');
    const b = PersistentAllocator.open(dir, 8, opts);
    assert.equal(b.isUsed(5), false);
    assert.equal(b.allocate(), 2);
    b.close();
    assert.equal(readFileSync(path.join(dir, 'journal.1'), 'utf8'), 'a 0\na 1\na 2\n');
  });

  it('compacts into a snapshot; a compaction cut short before the old journal went is still right', async () => {
    const dir = path.join(await tempDir('alloc'), 'a');
    const a = PersistentAllocator.open(dir, 16, { ...opts, compactAfter: 5 });
    for (let i = 0; i < 6; i++) a.allocate();
    a.release(1);
    a.close();
    assert.ok(existsSync(path.join(dir, 'snapshot.json')));
    const files = readdirSync(dir).sort();
    assert.deepEqual(files, ['journal.2', 'snapshot.json']);
    // The crash window: the new snapshot is in place, the old journal not yet removed.
    writeFileSync(path.join(dir, 'journal.1'), 'a 0\na 1\na 2\na 3\na 4\nr 0\nr 2\nr 3\n');
    const b = PersistentAllocator.open(dir, 16, opts);
    assert.equal(b.allocated, 5);
    assert.deepEqual([0, 2, 3, 4, 5].map((s) => b.isUsed(s)), [true, true, true, true, true]);
    assert.equal(b.allocate(), 1);
    assert.equal(b.allocate(), 6);
    b.close();
  });

  it('state kept for another size is refused clearly, and bad journals are named', async () => {
    const dir = path.join(await tempDir('alloc'), 'a');
    const a = PersistentAllocator.open(dir, 8, { ...opts, compactAfter: 1 });
    a.allocate();
    a.close();
    assert.throws(() => PersistentAllocator.open(dir, 16, opts), (e: LxrError) => e.reason === 'LXR_ILLEGAL_STATE' && /for 8 slots, not 16/.test(e.message));
    const dir2 = path.join(await tempDir('alloc'), 'b');
    PersistentAllocator.open(dir2, 8, opts).close();
    writeFileSync(path.join(dir2, 'journal.1'), 'x 1\n');
    assert.throws(() => PersistentAllocator.open(dir2, 8, opts), (e: LxrError) => e.reason === 'LXR_INTERNAL' && /bad line/.test(e.message));
    writeFileSync(path.join(dir2, 'journal.1'), 'a 3\n');
    assert.throws(() => PersistentAllocator.open(dir2, 8, opts), (e: LxrError) => /allocated 3, replay gives 0/.test(e.message));
  });

  it('a writer SIGKILLed at a random moment: every slot it was given stays taken', async () => {
    const dir = path.join(await tempDir('alloc'), 'a');
    const mod = fileURLToPath(new URL('../../proto/shared/allocator.js', import.meta.url));
    // Allocates and releases in a loop; it says (synchronously) "a N" once an
    // allocation was answered, and "r N" before it starts a release.
    const script = `
      import { writeSync } from 'node:fs';
      import { PersistentAllocator } from ${JSON.stringify(mod)};
      const a = PersistentAllocator.open(${JSON.stringify(dir)}, 4096, { what: 'slot', compactAfter: 50 });
      const held = [];
      for (let i = 0; ; i++) {
        if (held.length > 20 && i % 3 === 0) { const s = held.shift(); writeSync(1, 'r ' + s + '\\n'); a.release(s); }
        else { const s = a.allocate(); held.push(s); writeSync(1, 'a ' + s + '\\n'); }
      }`;
    for (const delay of [30, 90, 200]) {
      const out = await runUntilKilled(script, delay);
      // What the writer was given and had not started to give back.
      const held = new Set<number>();
      for (const line of out.split('\n')) {
        const m = /^([ar]) (\d+)$/.exec(line);
        if (!m) continue;
        if (m[1] === 'a') held.add(Number(m[2]));
        else held.delete(Number(m[2]));
      }
      const b = PersistentAllocator.open(dir, 4096, opts);
      for (const s of held) assert.ok(b.isUsed(s), `slot ${s} was handed out before the crash but is free after it (delay ${delay})`);
      // Nothing is handed out twice from here: fresh allocations avoid every held slot.
      for (let i = 0; i < 50; i++) assert.ok(!held.has(b.allocate()));
      b.close();
    }
  });
});

describe('IPv4 slots', () => {
  it('parses and formats addresses and CIDR blocks; bad ones name the field', () => {
    assert.equal(formatIpv4(parseIpv4('10.200.3.7')), '10.200.3.7');
    assert.equal(formatCidr(parseCidr('198.18.0.0/15')), '198.18.0.0/15');
    for (const bad of ['10.0.0', '10.0.0.256', '10.0.0.01', 'a.b.c.d', '']) assert.throws(() => parseIpv4(bad, 'network.address'), (e: LxrError) => e.field === 'network.address');
    assert.throws(() => parseCidr('10.200.0.1/16'), (e: LxrError) => e.field === 'cidr' && /host bits set/.test(e.message));
    assert.throws(() => parseCidr('10.200.0.0/33'), (e: LxrError) => e.field === 'cidr');
    assert.throws(() => parseCidr('10.200.0.0'), (e: LxrError) => e.field === 'cidr');
  });

  it('container addresses never include the network, the gateway or the broadcast address', () => {
    const h = new HostAddresses(parseCidr('10.200.3.0/24'));
    assert.equal(h.size, 253);
    assert.equal(formatIpv4(h.gateway), '10.200.3.1');
    assert.equal(formatIpv4(h.address(0)), '10.200.3.2');
    assert.equal(formatIpv4(h.address(h.size - 1)), '10.200.3.254');
    assert.equal(h.slot(parseIpv4('10.200.3.2')), 0);
    assert.throws(() => h.slot(parseIpv4('10.200.3.0')), /network address/);
    assert.throws(() => h.slot(parseIpv4('10.200.3.1')), /gateway/);
    assert.throws(() => h.slot(parseIpv4('10.200.3.255')), /broadcast/);
    assert.throws(() => h.slot(parseIpv4('10.200.4.2')), /not in 10\.200\.3\.0\/24/);
    assert.throws(() => new HostAddresses(parseCidr('10.0.0.0/30')), /too small/);
    // Every slot of a small block maps inside it, and back.
    const small = new HostAddresses(parseCidr('10.0.0.8/29'));
    const a = new SlotAllocator(small.size);
    const got: string[] = [];
    for (let s = a.allocate(); s !== null; s = a.allocate()) got.push(formatIpv4(small.address(s)));
    assert.deepEqual(got, ['10.0.0.10', '10.0.0.11', '10.0.0.12', '10.0.0.13', '10.0.0.14']);
  });

  it('a pool carved into subnets', () => {
    const p = new Subnets(parseCidr('10.200.0.0/16'), 24);
    assert.equal(p.size, 256);
    assert.equal(formatCidr(p.subnet(0)), '10.200.0.0/24');
    assert.equal(formatCidr(p.subnet(255)), '10.200.255.0/24');
    assert.equal(p.slot(parseCidr('10.200.7.0/24')), 7);
    assert.throws(() => p.slot(parseCidr('10.201.0.0/24')), /not a \/24 subnet/);
    assert.throws(() => p.slot(parseCidr('10.200.0.0/25')), /not a \/24 subnet/);
    assert.throws(() => new Subnets(parseCidr('10.200.0.0/16'), 8), (e: LxrError) => e.field === 'subnet_prefix');
  });
});
