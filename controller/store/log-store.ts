// The controller's own durable store: a log-structured key/value table on
// the shared journal (proto/shared/journal.ts). Why not SQLite: no native
// module can be installed here and Node 20 has no node:sqlite; the state is
// small (hosts, workspaces), the interface etcd-shaped (keys, revisions,
// compare-and-set commits) and every acknowledged commit fdatasync'ed, which
// a journal of commits plus a snapshot gives in a few hundred lines.
//
// Each commit is one journal line, {rev, ops} (the effects; expectations
// were checked before it was written). Commits made in the same turn of the
// event loop are group-committed: one append, one fdatasync for all of them,
// and each is answered, and applied in memory, only once that is durable.
import { LxrError, invalidArgument } from '../../proto/shared/errors.js';
import { Journal } from '../../proto/shared/journal.js';
import { checkOps, type CheckedOp } from './ops.js';
import type { StoreOp } from './store.js';
import { Table } from './table.js';
import { TableStore } from './table-store.js';

export interface LogStoreOptions {
  /** Journal lines (commits) before a compaction into the snapshot (default 10000). */
  compactAfter?: number;
}

interface Snapshot {
  version: 1;
  revision: number;
  records: Array<{ key: string; revision: number; value: unknown }>;
}

interface Pending {
  ops: CheckedOp[];
  resolve(revision: number): void;
  reject(e: unknown): void;
}

export class LogStore extends TableStore {
  private pending: Pending[] = [];
  private flushing: NodeJS.Immediate | undefined;

  private constructor(
    readonly dir: string,
    table: Table,
    private readonly journal: Journal<Snapshot>,
  ) {
    super(table, `the store in ${dir}`);
  }

  /** Opens (or creates) the store kept in `dir`: every commit acknowledged before is there. */
  static async open(dir: string, o: LogStoreOptions = {}): Promise<LogStore> {
    const compactAfter = o.compactAfter ?? 10_000;
    if (!Number.isInteger(compactAfter) || compactAfter < 1) throw invalidArgument('compactAfter', `${compactAfter} is not a whole number >= 1`);
    const { journal, state } = Journal.open(dir, {
      what: 'store',
      initial: { version: 1, revision: 0, records: [] },
      compactAfter,
      restore,
      replay,
    });
    return new LogStore(dir, state, journal);
  }

  /** fdatasyncs of commits so far (group commit makes it fewer than the commits). */
  get syncs(): number {
    return this.journal.syncs;
  }

  commit(ops: StoreOp[]): Promise<number> {
    return new Promise((resolve, reject) => {
      this.usable();
      this.pending.push({ ops: checkOps(ops), resolve, reject });
      this.flushing ??= setImmediate(() => this.flush());
    });
  }

  /** Writes the commits made since the last flush with one append, then answers them. */
  private flush(): void {
    this.flushing = undefined;
    const group = this.pending;
    this.pending = [];
    const batch = this.table.batch();
    const staged: Array<{ p: Pending; revision: number }> = [];
    const lines: string[] = [];
    for (const p of group) {
      // In order: a commit is checked against the ones staged before it. If
      // the append then fails, a conflict may have been judged against a
      // commit that never happened; LXR_CONFLICT means "read and retry", and
      // the retry sees the truth.
      try {
        const revision = batch.stage(p.ops);
        staged.push({ p, revision });
        lines.push(logLine(revision, p.ops));
      } catch (e) {
        p.reject(e);
      }
    }
    if (lines.length === 0) return;
    try {
      this.journal.append(lines);
    } catch (e) {
      const err = new LxrError('LXR_INTERNAL', `the store in ${this.dir} could not write a commit: ${(e as Error).message}`, {
        cause: e,
        ...((e as NodeJS.ErrnoException).code ? { errno: (e as NodeJS.ErrnoException).code! } : {}),
      });
      for (const s of staged) s.p.reject(err);
      return;
    }
    batch.apply();
    for (const s of staged) s.p.resolve(s.revision);
    this.journal.compactIfDue(() => snapshotOf(this.table));
  }

  /** Writes the commits already made, then closes; later calls reject. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.flushing) {
      clearImmediate(this.flushing);
      this.flush();
    }
    this.journal.close();
  }
}

function logLine(rev: number, ops: readonly CheckedOp[]): string {
  // Built from the JSON texts already made: values are not serialised twice.
  const parts = ops.map((op) => (op.type === 'put' ? `{"type":"put","key":${JSON.stringify(op.key)},"value":${op.json}}` : `{"type":"delete","key":${JSON.stringify(op.key)}}`));
  return `{"rev":${rev},"ops":[${parts.join(',')}]}`;
}

function snapshotOf(t: Table): Snapshot {
  const records = [...t.entries].map(([key, e]) => ({ key, revision: e.revision, value: JSON.parse(e.json) as unknown }));
  return { version: 1, revision: t.revision, records };
}

const isRevision = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0;

/** Errors thrown here are corruption: the journal names the file. */
function restore(s: Snapshot): Table {
  if (s.version !== 1) throw new Error(`version ${String(s.version)} is not 1`);
  if (!isRevision(s.revision)) throw new Error(`revision ${String(s.revision)} is not a revision`);
  if (!Array.isArray(s.records)) throw new Error('records is not a list');
  const t = new Table();
  t.revision = s.revision;
  for (const r of s.records) {
    const key = (r as { key?: unknown } | null)?.key;
    if (typeof key !== 'string' || key === '' || key.includes('\n')) throw new Error(`record key ${JSON.stringify(key)} is not a key`);
    if (!isRevision(r.revision) || r.revision < 1 || r.revision > s.revision) throw new Error(`record ${JSON.stringify(key)}: revision ${String(r.revision)} is not in 1..${s.revision}`);
    if (t.entries.has(key)) throw new Error(`record ${JSON.stringify(key)} appears twice`);
    t.entries.set(key, { json: JSON.stringify(r.value), revision: r.revision });
  }
  return t;
}

function replay(t: Table, line: string, lineNo: number): void {
  let c: { rev?: unknown; ops?: unknown };
  try {
    c = JSON.parse(line) as typeof c;
  } catch (e) {
    throw new Error(`line ${lineNo}: not JSON (${(e as Error).message})`);
  }
  if (c?.rev !== t.revision + 1) throw new Error(`line ${lineNo}: revision ${String(c?.rev)} does not follow ${t.revision}`);
  if (!Array.isArray(c.ops)) throw new Error(`line ${lineNo}: no list of ops`);
  let ops: CheckedOp[];
  try {
    ops = checkOps(c.ops.map((op: StoreOp) => ({ ...op, expect: undefined })));
  } catch (e) {
    throw new Error(`line ${lineNo}: ${(e as Error).message}`);
  }
  const batch = t.batch();
  batch.stage(ops);
  batch.apply();
}
