// An exec session's output: stdout and stderr in one byte-offset space (the
// offset of a byte is how many bytes the session produced before it), of
// which the newest `capacity` bytes are kept. Whoever evicts says up to
// which offset data may go (what every attached client's stream has
// written), so output nobody has seen yet is never dropped while someone is
// attached. Chunks may be lent memory (recycled-reads.ts): the ring releases
// each when it drops it.

export type OutputStream = 'stdout' | 'stderr';

interface Chunk {
  offset: number;
  stream: OutputStream;
  data: Buffer;
  /** Called when the chunk is dropped: its memory may be reused (recycled-reads.ts). */
  release?: () => void;
}

export type RingRead =
  | { kind: 'gap'; until: number }
  | { kind: 'data'; stream: OutputStream; offset: number; pieces: Buffer[]; length: number };

/** What a dropped chunk's slot holds until the list is compacted (its data no longer referenced). */
const DROPPED: Chunk = { offset: 0, stream: 'stdout', data: Buffer.alloc(0) };

export class OutputRing {
  private chunks: Chunk[] = [];
  private head = 0;
  /** Offset of the oldest byte kept. */
  start = 0;
  /** Offset the next byte will get. */
  end = 0;

  constructor(readonly capacity: number) {
    if (!(capacity > 0)) throw new RangeError('ring capacity must be positive');
  }

  get size(): number {
    return this.end - this.start;
  }

  /**
   * Adds output. With `release`, the data's memory is lent: the ring calls
   * it when the chunk is dropped, and no view of it may be used afterwards.
   */
  append(stream: OutputStream, data: Buffer, release?: () => void): void {
    if (data.length === 0) {
      release?.();
      return;
    }
    this.chunks.push(release ? { offset: this.end, stream, data, release } : { offset: this.end, stream, data });
    this.end += data.length;
  }

  /**
   * Drops the oldest chunks while over capacity, but none that ends after
   * `limit`; true when the ring is within its capacity afterwards.
   */
  evict(limit: number): boolean {
    while (this.size > this.capacity && this.head < this.chunks.length) {
      const c = this.chunks[this.head]!;
      const cEnd = c.offset + c.data.length;
      if (cEnd > limit) break;
      this.chunks[this.head] = DROPPED;
      this.head++;
      this.start = cEnd;
      c.release?.();
    }
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.head = 0;
    }
    return this.size <= this.capacity;
  }

  /**
   * What a reader at offset `from` gets next: a gap when its data is gone,
   * else up to `max` bytes of one stream, as views of the chunks (not
   * concatenated: the wire encoder copies them once); null when it has
   * everything.
   */
  read(from: number, max: number): RingRead | null {
    if (from < this.start) return { kind: 'gap', until: this.start };
    if (from >= this.end) return null;
    // Binary search for the chunk holding `from`.
    let lo = this.head;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid]!.offset <= from) lo = mid;
      else hi = mid - 1;
    }
    const first = this.chunks[lo]!;
    const parts: Buffer[] = [first.data.subarray(from - first.offset, from - first.offset + max)];
    let n = parts[0]!.length;
    for (let i = lo + 1; i < this.chunks.length && n < max; i++) {
      const c = this.chunks[i]!;
      if (c.stream !== first.stream) break;
      const part = c.data.subarray(0, max - n);
      parts.push(part);
      n += part.length;
    }
    return { kind: 'data', stream: first.stream, offset: from, pieces: parts, length: n };
  }
}
