// Reading a process's output socket into memory that is used again.
//
// A net.Socket allocates a new 64 KiB buffer for every read. For exec output
// at 1 GiB that is a GiB of short-lived external memory, and the garbage
// collector's external-memory pressure was the agent's biggest cost. Here a
// socket reads (net's `onread`) straight into slabs: each read gets the free
// end of the current slab, and what it read becomes a chunk, a view of the
// slab. A slab goes back to a small free list once it is full and every
// chunk cut from it was released; the exec session's ring releases a chunk
// when it drops it. Short reads (interactive output) are copied out instead,
// so a session that keeps a few bytes does not keep a slab.
import net from 'node:net';
import { Readable } from 'node:stream';

/** Reads shorter than this are copied out of the slab (nothing is held). */
export const COPY_BELOW = 16 * 1024;
/** The most one read asks for. */
export const READ_MAX = 256 * 1024;
/** A read is offered at least this much; a slab with less left is retired. */
const READ_MIN = 64 * 1024;
const SLAB_BYTES = 1 << 20;
const FREE_MAX = 4;

interface Slab {
  buf: Buffer;
  /** Where the next read goes. */
  used: number;
  /** Chunks cut from it and not released yet. */
  refs: number;
}

/** A chunk of output and how to say that its bytes are no longer needed (once; later calls do nothing). */
export type OnChunk = (data: Buffer, release: () => void) => void;

const noop = (): void => {};

export class SlabReader {
  private current: Slab | null = null;
  private readonly free: Slab[] = [];
  /** Slabs allocated so far (for tests). */
  allocated = 0;

  constructor(private readonly slabBytes = SLAB_BYTES) {
    if (slabBytes < READ_MIN) throw new RangeError(`a slab must hold at least ${READ_MIN} bytes`);
  }

  /** Where the next read goes: the free end of the current slab (net's onread.buffer). */
  next(): Buffer {
    let s = this.current;
    if (!s || s.buf.length - s.used < READ_MIN) {
      if (s) this.retire(s);
      s = this.current = this.free.pop() ?? this.newSlab();
      s.used = 0;
    }
    return s.buf.subarray(s.used, Math.min(s.buf.length, s.used + READ_MAX));
  }

  /** `n` bytes were read into what next() gave: the chunk and its release. */
  take(n: number): { data: Buffer; release: () => void } {
    const s = this.current!;
    const view = s.buf.subarray(s.used, s.used + n);
    if (n < COPY_BELOW) return { data: Buffer.from(view), release: noop };
    s.used += n;
    s.refs++;
    let released = false;
    return {
      data: view,
      release: () => {
        if (released) return;
        released = true;
        s.refs--;
        if (s.refs === 0 && s !== this.current) this.recycle(s);
      },
    };
  }

  /** Slabs waiting for reuse (for tests). */
  get freeSlabs(): number {
    return this.free.length;
  }

  private newSlab(): Slab {
    this.allocated++;
    return { buf: Buffer.allocUnsafeSlow(this.slabBytes), used: 0, refs: 0 };
  }

  private retire(s: Slab): void {
    this.current = null;
    if (s.refs === 0) this.recycle(s);
  }

  private recycle(s: Slab): void {
    if (this.free.length < FREE_MAX) this.free.push(s);
  }
}

/**
 * A unix socket connection that reads into a SlabReader once someone takes
 * its chunks (takeChunks). Until then it behaves as any socket: it reads into
 * one small buffer of its own, and what it reads is copied and emitted as
 * 'data' (so a socket nobody takes chunks from, or a short exec, holds no
 * slab). Pausing and resuming work in both modes.
 */
export function connectRecycled(path: string): net.Socket & { takeChunks(f: OnChunk): void } {
  let slabs: SlabReader | null = null;
  let taker: OnChunk | null = null;
  const plain = Buffer.allocUnsafe(READ_MIN);
  /** Whether the read in progress goes into `plain` (chosen before the read, by `buffer`). */
  let intoPlain = true;
  const s = net.createConnection({
    path,
    onread: {
      buffer: () => {
        intoPlain = !taker;
        return taker ? (slabs ??= new SlabReader()).next() : plain;
      },
      callback: (n: number) => {
        if (intoPlain) {
          const copy = Buffer.from(plain.subarray(0, n));
          if (!taker) return Readable.prototype.push.call(s, copy);
          taker(copy, noop);
          return true;
        }
        const c = slabs!.take(n);
        taker!(c.data, c.release);
        return true;
      },
    },
  }) as net.Socket & { takeChunks(f: OnChunk): void };
  s.takeChunks = (f) => {
    // What was read before (and pushed as copies) comes first.
    for (let d: Buffer | null = s.read() as Buffer | null; d !== null; d = s.read() as Buffer | null) f(d, noop);
    taker = f;
    // Flowing, so that 'end' is emitted (nothing is pushed as 'data' any more).
    s.resume();
  };
  return s;
}

/** The chunk-taking of a stream made by connectRecycled, or null for any other stream. */
export function chunkTaker(r: Readable): ((f: OnChunk) => void) | null {
  const t = (r as Partial<{ takeChunks: (f: OnChunk) => void }>).takeChunks;
  return typeof t === 'function' ? t : null;
}
