// The durable journal under every piece of state LXR keeps on local disk
// (the allocators, the controller's store): a snapshot plus the lines
// appended since, each append fdatasync'ed before the change it records is
// answered, so a crash (kill -9, power loss) never loses an answered change.
//
// Layout of a directory: snapshot.json names a generation; journal.<gen>
// holds the lines after it. A compaction writes the next snapshot to a
// temp file (fsync'ed, renamed, directory fsync'ed), starts the next
// generation's journal, then removes the old one. A line cut short by a
// crash (no '\n' yet) was never answered: it is dropped and truncated away;
// a bad complete line is corruption and is refused, naming file and line.
import { closeSync, existsSync, fdatasyncSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import { LxrError } from './errors.js';

const SNAPSHOT = 'snapshot.json';
const JOURNAL = /^journal\.(\d+)$/;

/**
 * S: the snapshot's JSON shape; T: the owner's in-memory state built from it.
 * A plain Error thrown by restore or replay is corruption and is reported
 * with the file named; an LxrError is the owner's own verdict and passes
 * through unchanged.
 */
export interface JournalOptions<S extends object, T> {
  /** Names the state in messages: "<what> state <file> is ...", "<what> journal <file>: ...". */
  what: string;
  /** The snapshot before the first compaction. Its shape must not use the key "generation" (the journal's own). */
  initial: S;
  /** Lines appended before compactIfDue compacts. */
  compactAfter: number;
  /** Builds the state from the snapshot, checking it. */
  restore(snapshot: S): T;
  /** Applies one journal line to the state, in order. */
  replay(state: T, line: string, lineNo: number): void;
}

export class Journal<S extends object> {
  private fd = -1;
  private lines = 0;
  /** Bytes of whole lines in the current journal: a failed append is cut back to this. */
  private bytes = 0;
  private appendSyncs = 0;
  /** Why the journal refuses to go on (a failed fdatasync or compaction); cleared by a reopen. */
  private broken: Error | undefined;
  private closed = false;

  private constructor(
    readonly dir: string,
    private readonly what: string,
    private readonly compactAfter: number,
    private generation: number,
    /** No snapshot was found: the owner's first compact() records one. */
    readonly fresh: boolean,
  ) {}

  /** Opens (or creates) the journal kept in `dir`: the state restored from the snapshot, with the lines after it replayed. */
  static open<S extends object, T>(dir: string, o: JournalOptions<S, T>): { journal: Journal<S>; state: T } {
    if (!Number.isInteger(o.compactAfter) || o.compactAfter < 1) throw new RangeError(`compactAfter ${o.compactAfter}: must be a whole number >= 1`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const snapFile = path.join(dir, SNAPSHOT);
    const fresh = !existsSync(snapFile);
    let generation = 0;
    let state = o.initial;
    if (!fresh) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(snapFile, 'utf8'));
      } catch (e) {
        throw new LxrError('LXR_INTERNAL', `${o.what} state ${snapFile} is unreadable: ${(e as Error).message}`, { cause: e });
      }
      const { generation: g, ...rest } = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { generation?: unknown };
      if (typeof g !== 'number' || !Number.isInteger(g) || g < 0) throw new LxrError('LXR_INTERNAL', `${o.what} state ${snapFile} is inconsistent: no generation`);
      generation = g;
      state = rest as S;
    }
    let restored: T;
    try {
      restored = o.restore(state);
    } catch (e) {
      throw corruption(e, `${o.what} state ${snapFile} is inconsistent`);
    }
    const journal = new Journal<S>(dir, o.what, o.compactAfter, generation, fresh);
    journal.removeDead();
    journal.replay((line, lineNo) => o.replay(restored, line, lineNo));
    return { journal, state: restored };
  }

  private file(gen = this.generation): string {
    return path.join(this.dir, `journal.${gen}`);
  }

  /** Applies the current generation's journal; drops (and truncates) a torn last line. */
  private replay(apply: (line: string, lineNo: number) => void): void {
    const file = this.file();
    const buf = existsSync(file) ? readFileSync(file) : Buffer.alloc(0);
    const end = buf.lastIndexOf(0x0a) + 1;
    let lineNo = 0;
    let n = 0;
    for (const line of buf.subarray(0, end).toString('utf8').split('\n')) {
      lineNo++;
      if (line === '') continue;
      try {
        apply(line, lineNo);
      } catch (e) {
        throw corruption(e, `${this.what} journal ${file}`);
      }
      n++;
    }
    this.fd = this.openJournal(file, 'a');
    try {
      if (end < buf.length) ftruncateSync(this.fd, end);
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
    this.lines = n;
    this.bytes = end;
  }

  /**
   * Finishes a compaction cut short by a crash: its temp snapshot (never
   * renamed: the old snapshot stands) and the journals before the current
   * generation (history once the snapshot names the next one) go. A journal
   * after it can only be an empty one started just before the rename; one
   * with lines means the snapshot was removed or replaced by hand.
   */
  private removeDead(): void {
    rmSync(path.join(this.dir, `${SNAPSHOT}.tmp`), { force: true });
    for (const name of readdirSync(this.dir)) {
      const m = JOURNAL.exec(name);
      if (!m) continue;
      const gen = Number(m[1]);
      const file = path.join(this.dir, name);
      if (gen > this.generation && statSync(file).size > 0) {
        throw new LxrError('LXR_INTERNAL', `${this.what} state in ${this.dir} is inconsistent: ${name} has lines but ${SNAPSHOT} names generation ${this.generation} (was the snapshot removed or replaced?)`);
      }
      if (gen !== this.generation) rmSync(file, { force: true });
    }
  }

  /** Opens a journal file; a new one's directory entry is made durable, or its lines could vanish with it. */
  private openJournal(file: string, flags: 'a' | 'w'): number {
    const created = flags === 'w' || !existsSync(file);
    const fd = openSync(file, flags, 0o600);
    if (created) {
      try {
        syncDir(this.dir);
      } catch (e) {
        closeSync(fd);
        throw e;
      }
    }
    return fd;
  }

  private usable(): void {
    if (this.closed) throw new LxrError('LXR_ILLEGAL_STATE', `${this.what} journal in ${this.dir} is closed`);
    if (this.broken) throw new LxrError('LXR_INTERNAL', `${this.what} journal in ${this.dir} is unusable until reopened: ${this.broken.message}`, { cause: this.broken });
  }

  /** fdatasyncs of appended lines so far: one per append, however many lines. */
  get syncs(): number {
    return this.appendSyncs;
  }

  /** Appends lines (no '\n' in any) with one write and one fdatasync; when it returns, they are durable. */
  append(lines: readonly string[]): void {
    this.usable();
    if (lines.length === 0) return;
    for (const line of lines) if (line === '' || line.includes('\n')) throw new RangeError(`${this.what} journal line ${JSON.stringify(line.slice(0, 80))}: must be non-empty, without '\\n'`);
    const buf = Buffer.from(`${lines.join('\n')}\n`);
    let written = false;
    try {
      writeAll(this.fd, buf);
      written = true;
      fdatasyncSync(this.fd);
      this.appendSyncs++;
    } catch (e) {
      // Nothing of a failed append may stay: a line written after a partial
      // one would make a bad line in the middle. After a failed fdatasync the
      // kernel may have dropped the dirty pages, so what is on disk is
      // unknown: refuse to go on rather than answer on top of it.
      try {
        ftruncateSync(this.fd, this.bytes);
        if (written) this.broken = e as Error;
      } catch {
        this.broken = e as Error;
      }
      throw e;
    }
    this.bytes += buf.length;
    this.lines += lines.length;
  }

  /** Compacts once compactAfter lines were appended. The lines are durable already: a compaction that fails is left to the next call and never undoes them. */
  compactIfDue(state: () => S): void {
    if (this.lines < this.compactAfter || this.closed || this.broken) return;
    try {
      this.compact(state());
    } catch {
      // Left to the next call (or refused by append if the journal is broken).
    }
  }

  /** Writes `state` (which must include every line appended) as the next generation's snapshot, then starts its journal. */
  compact(state: S): void {
    this.usable();
    const gen = this.generation + 1;
    const file = path.join(this.dir, SNAPSHOT);
    const tmp = `${file}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeAll(fd, Buffer.from(JSON.stringify({ ...state, generation: gen })));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    const next = this.file(gen);
    const nextFd = this.openJournal(next, 'w');
    try {
      renameSync(tmp, file);
    } catch (e) {
      closeSync(nextFd);
      rmSync(next, { force: true });
      throw e;
    }
    // From here the snapshot names the new generation: the old journal is history.
    const oldFd = this.fd;
    const oldFile = this.file();
    this.generation = gen;
    this.fd = nextFd;
    this.lines = 0;
    this.bytes = 0;
    try {
      syncDir(this.dir);
    } catch (e) {
      // The rename may not be durable: lines in the new journal could be lost with it.
      this.broken = e as Error;
      throw e;
    }
    try {
      closeSync(oldFd);
      rmSync(oldFile, { force: true });
    } catch {
      // The compaction is complete; a leftover old journal is removed at the next open.
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeSync(this.fd);
    this.fd = -1;
  }
}

function corruption(e: unknown, where: string): LxrError {
  if (e instanceof LxrError) return e;
  return new LxrError('LXR_INTERNAL', `${where}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

function writeAll(fd: number, buf: Buffer): void {
  for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
}

function syncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
