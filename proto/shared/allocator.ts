// The O(1) allocator, shared by the agent (container addresses in its
// host's subnet) and the controller (host subnets in the cluster pool). It
// hands out slot numbers 0..size-1; ipv4.ts maps slots to addresses and
// subnets.
//
// SlotAllocator is the structure, in memory: a cursor over slots never
// handed out, a doubly linked free list of released slots (oldest first,
// so an address just released is the last to come back), and a bitmap of
// slots in use. Allocate, take (a specific slot), release: O(1) each; the
// cursor skips slots taken ahead of it, each at most once (amortized O(1)).
// Invariant: the free list is exactly the unused slots below the cursor.
//
// PersistentAllocator makes it durable: every change is appended to a
// journal (journal.ts: snapshot.json plus journal.<generation>) and
// fdatasync'ed before it is answered, so a slot handed out is never handed
// out again, not across a crash either.
import { LxrError, type Reason } from './errors.js';
import { Journal } from './journal.js';

const NONE = -1;

export class SlotAllocator {
  private readonly used: Uint8Array;
  private readonly prev: Int32Array;
  private readonly next: Int32Array;
  private head = NONE;
  private tail = NONE;
  private cursor = 0;
  private inUse = 0;

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1 || size > 1 << 24) throw new RangeError(`allocator size ${size}: must be 1..2^24`);
    this.used = new Uint8Array(size);
    this.prev = new Int32Array(size).fill(NONE);
    this.next = new Int32Array(size).fill(NONE);
  }

  get allocated(): number {
    return this.inUse;
  }

  isUsed(slot: number): boolean {
    return this.used[slot] === 1;
  }

  private check(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.size) throw new RangeError(`slot ${slot} is outside 0..${this.size - 1}`);
  }

  private unlink(s: number): void {
    const p = this.prev[s]!;
    const n = this.next[s]!;
    if (p === NONE) this.head = n;
    else this.next[p] = n;
    if (n === NONE) this.tail = p;
    else this.prev[n] = p;
    this.prev[s] = NONE;
    this.next[s] = NONE;
  }

  private append(s: number): void {
    this.prev[s] = this.tail;
    this.next[s] = NONE;
    if (this.tail === NONE) this.head = s;
    else this.next[this.tail] = s;
    this.tail = s;
  }

  /** The oldest released slot, else the next never used one; null when full. */
  allocate(): number | null {
    let s: number;
    if (this.head !== NONE) {
      s = this.head;
      this.unlink(s);
    } else {
      while (this.cursor < this.size && this.used[this.cursor] === 1) this.cursor++;
      if (this.cursor >= this.size) return null;
      s = this.cursor++;
    }
    this.used[s] = 1;
    this.inUse++;
    return s;
  }

  /** Takes a specific slot; false when it is in use. */
  take(slot: number): boolean {
    this.check(slot);
    if (this.used[slot] === 1) return false;
    if (slot < this.cursor) this.unlink(slot);
    this.used[slot] = 1;
    this.inUse++;
    return true;
  }

  /** Releases a slot; false when it was not in use. */
  release(slot: number): boolean {
    this.check(slot);
    if (this.used[slot] !== 1) return false;
    this.used[slot] = 0;
    this.inUse--;
    // Above the cursor it is simply never-used again; the cursor hands it out.
    if (slot < this.cursor) this.append(slot);
    return true;
  }

  /** The cursor, the slots in use and the free list in order: all a snapshot needs. */
  state(): AllocatorState {
    const used: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.used[i] === 1) used.push(i);
    const free: number[] = [];
    for (let s = this.head; s !== NONE; s = this.next[s]!) free.push(s);
    return { cursor: this.cursor, used, free };
  }

  /** Rebuilds an allocator exactly, checking the invariant. */
  static fromState(size: number, st: AllocatorState): SlotAllocator {
    const a = new SlotAllocator(size);
    if (!Number.isInteger(st.cursor) || st.cursor < 0 || st.cursor > size) throw new RangeError(`cursor ${st.cursor} is outside 0..${size}`);
    a.cursor = st.cursor;
    for (const s of st.used) {
      a.check(s);
      if (a.used[s] === 1) throw new RangeError(`slot ${s} listed twice`);
      a.used[s] = 1;
      a.inUse++;
    }
    const listed = new Uint8Array(size);
    for (const s of st.free) {
      a.check(s);
      if (a.used[s] === 1 || listed[s] === 1 || s >= a.cursor) throw new RangeError(`free slot ${s} is in use, listed twice or not below the cursor`);
      listed[s] = 1;
      a.append(s);
    }
    for (let s = 0; s < a.cursor; s++) if (a.used[s] === 0 && listed[s] === 0) throw new RangeError(`slot ${s} is below the cursor but neither in use nor free`);
    return a;
  }
}

export interface AllocatorState {
  cursor: number;
  used: readonly number[];
  free: readonly number[];
}

export interface PersistentAllocatorOptions {
  /** What is allocated, for messages ("address in 10.200.3.0/24"). */
  what: string;
  /** The reason of the exhaustion error (default LXR_RESOURCE_EXHAUSTED). */
  exhausted?: Reason;
  /** Journal lines before a compaction (default max(1024, size)). */
  compactAfter?: number;
}

interface Snapshot extends AllocatorState {
  version: 1;
  size: number;
}

export class PersistentAllocator {
  private constructor(
    readonly dir: string,
    private readonly mem: SlotAllocator,
    private readonly journal: Journal<Snapshot>,
    private readonly o: PersistentAllocatorOptions,
  ) {}

  /** Opens (or creates) the allocator kept in `dir` for `size` slots. */
  static open(dir: string, size: number, o: PersistentAllocatorOptions): PersistentAllocator {
    const { journal, state: mem } = Journal.open(dir, {
      what: 'allocator',
      initial: { version: 1, size, cursor: 0, used: [], free: [] },
      compactAfter: o.compactAfter ?? Math.max(1024, size),
      restore: (snap: Snapshot) => {
        if (snap.size !== size) {
          throw new LxrError('LXR_ILLEGAL_STATE', `the allocator state in ${dir} is for ${snap.size} slots, not ${size}: the range it covers changed (move the old state away to start afresh)`);
        }
        return SlotAllocator.fromState(size, snap);
      },
      replay,
    });
    const a = new PersistentAllocator(dir, mem, journal, o);
    // A new allocator records its size at once: state kept for another size is refused later.
    if (journal.fresh) a.compact();
    return a;
  }

  private snapshot(): Snapshot {
    return { version: 1, size: this.mem.size, ...this.mem.state() };
  }

  private log(op: 'a' | 't' | 'r', slot: number): void {
    this.journal.append([`${op} ${slot}`]);
    this.journal.compactIfDue(() => this.snapshot());
  }

  /** Writes a snapshot for the next generation, then starts its journal. */
  compact(): void {
    this.journal.compact(this.snapshot());
  }

  get size(): number {
    return this.mem.size;
  }

  get allocated(): number {
    return this.mem.allocated;
  }

  isUsed(slot: number): boolean {
    return this.mem.isUsed(slot);
  }

  /** The slots in use, ascending. */
  usedSlots(): number[] {
    return [...this.mem.state().used];
  }

  /** A free slot, durably recorded as in use; RESOURCE_EXHAUSTED when none is left. */
  allocate(): number {
    const s = this.mem.allocate();
    if (s === null) throw new LxrError(this.o.exhausted ?? 'LXR_RESOURCE_EXHAUSTED', `no free ${this.o.what}: all ${this.mem.size} are in use`);
    try {
      this.log('a', s);
    } catch (e) {
      this.mem.release(s);
      throw e;
    }
    return s;
  }

  /** Takes a specific slot; false when it is in use. */
  take(slot: number): boolean {
    if (!this.mem.take(slot)) return false;
    try {
      this.log('t', slot);
    } catch (e) {
      this.mem.release(slot);
      throw e;
    }
    return true;
  }

  /** Releases a slot; false when it was not in use (releasing twice is harmless). */
  release(slot: number): boolean {
    if (!this.mem.release(slot)) return false;
    try {
      this.log('r', slot);
    } catch (e) {
      this.mem.take(slot); // not released on disk: not released at all
      throw e;
    }
    return true;
  }

  close(): void {
    this.journal.close();
  }
}

/** Applies one journal line. Replaying the same operations on the same
 *  structure gives the same answers: an allocation that comes out
 *  differently means corruption. */
function replay(mem: SlotAllocator, line: string, lineNo: number): void {
  const m = /^([atr]) (\d+)$/.exec(line);
  if (!m) throw new Error(`bad line ${JSON.stringify(line)}`);
  const slot = Number(m[2]);
  if (m[1] === 'a') {
    const got = mem.allocate();
    if (got !== slot) throw new Error(`line ${lineNo} allocated ${slot}, replay gives ${got}`);
  } else if (m[1] === 't') mem.take(slot);
  else mem.release(slot);
}
