// The allocator benchmark (issue 5): allocate and release 1,000,000
// addresses in a /24 and in a /8 with the in-memory structure, and report
// the cost per operation of each and their ratio (O(1): the /8 should cost
// no more than 1.5x the /24). Also the durable cost per operation of the
// persistent allocator (journal + fdatasync), for information.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { PersistentAllocator, SlotAllocator } from '../../proto/shared/allocator.js';
import { HostAddresses, parseCidr } from '../../proto/shared/ipv4.js';
import { formatTable } from './stats.js';

export interface AllocBenchResult {
  nsPerOp: Record<string, number>;
  ratio: number;
  durableUsPerOp: number;
  target: { met: boolean; text: string };
}

/** 1,000,000 operations: allocate while under half full, else release the oldest held. */
function churn(size: number, ops: number): number {
  const a = new SlotAllocator(size);
  const held = new Int32Array(ops);
  let head = 0;
  let tail = 0;
  const limit = Math.min(Math.floor(size / 2), 500_000);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    if (tail - head < limit) {
      const s = a.allocate();
      if (s === null) throw new Error('full');
      held[tail++] = s;
    } else {
      a.release(held[head++]!);
    }
  }
  return Number(process.hrtime.bigint() - t0) / ops;
}

export async function allocBench(o: { ops: number; log: (l: string) => void }): Promise<AllocBenchResult> {
  const sizes: Record<string, number> = {
    '/24': new HostAddresses(parseCidr('10.200.3.0/24')).size,
    '/8': new HostAddresses(parseCidr('10.0.0.0/8')).size,
  };
  const ns: Record<string, number> = {};
  // Each round is a million operations (~10 ms): rounds alternate between the
  // ranges and the best of five counts, so a GC pause or a timer tick does not decide.
  for (const round of [0, 1, 2, 3, 4, 5]) {
    for (const [k, size] of Object.entries(sizes)) {
      const v = churn(size, o.ops);
      if (round > 0) ns[k] = Math.min(ns[k] ?? Infinity, v); // the first round warms the JIT
    }
  }
  o.log(`allocator: ${o.ops} operations each: /24 ${ns['/24']!.toFixed(1)} ns/op, /8 ${ns['/8']!.toFixed(1)} ns/op`);
  const dir = await mkdtemp(path.join(tmpdir(), 'lxr-bench-alloc-'));
  let durable: number;
  try {
    const p = PersistentAllocator.open(path.join(dir, 'a'), sizes['/24']!, { what: 'address' });
    const n = 2000;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n / 2; i++) p.release(p.allocate());
    durable = Number(process.hrtime.bigint() - t0) / n / 1000;
    p.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const ratio = ns['/8']! / ns['/24']!;
  return { nsPerOp: ns, ratio, durableUsPerOp: durable, target: { met: ratio <= 1.5, text: `/8 costs ${ratio.toFixed(2)}x the /24 per operation` } };
}

export function formatAllocReport(r: AllocBenchResult): string {
  return [
    formatTable(['range', 'ns/op'], Object.entries(r.nsPerOp).map(([k, v]) => [k, v.toFixed(1)])),
    `durable (journal + fdatasync): ${r.durableUsPerOp.toFixed(1)} µs/op`,
    `target: ${r.target.met ? 'met' : 'NOT met'}  O(1): ${r.target.text} (at most 1.5x)`,
  ].join('\n');
}
