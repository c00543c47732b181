// The keyed table both stores keep in memory: each key's JSON text and the
// revision of its last change, the store revision, and the compare-and-set
// check of a commit. A Batch stages commits in order (each checked against
// the table plus the commits staged before it), so a group of commits can be
// written to disk at once and applied only once that write is durable.
import { LxrError } from '../../proto/shared/errors.js';
import type { CheckedOp } from './ops.js';
import type { StoredRecord } from './store.js';

export interface Entry {
  json: string;
  revision: number;
}

export class Table {
  readonly entries = new Map<string, Entry>();
  revision = 0;

  get<T>(key: string): StoredRecord<T> | undefined {
    const e = this.entries.get(key);
    return e && record<T>(key, e);
  }

  list<T>(prefix: string): StoredRecord<T>[] {
    const keys = [...this.entries.keys()].filter((k) => k.startsWith(prefix)).sort();
    return keys.map((k) => record<T>(k, this.entries.get(k)!));
  }

  batch(): Batch {
    return new Batch(this);
  }
}

function record<T>(key: string, e: Entry): StoredRecord<T> {
  return { key, value: JSON.parse(e.json) as T, revision: e.revision };
}

export class Batch {
  /** Staged changes by key; null: deleted. */
  private readonly changes = new Map<string, Entry | null>();
  private revision: number;

  constructor(private readonly table: Table) {
    this.revision = table.revision;
  }

  /** Checks a commit's expectations and stages it at the next revision, which it returns; on LXR_CONFLICT nothing of it is staged. */
  stage(ops: readonly CheckedOp[]): number {
    ops.forEach((op, i) => {
      if (op.expect === undefined) return;
      const staged = this.changes.get(op.key);
      const found = (staged === undefined ? this.table.entries.get(op.key) : staged)?.revision ?? 0;
      if (found !== op.expect) {
        throw new LxrError('LXR_CONFLICT', `conflict on key ${JSON.stringify(op.key)}: the commit expected revision ${op.expect}, the key is at ${found} (0: it does not exist)`, { field: `ops[${i}].expect` });
      }
    });
    const revision = ++this.revision;
    for (const op of ops) this.changes.set(op.key, op.type === 'put' ? { json: op.json, revision } : null);
    return revision;
  }

  /** Writes the staged commits into the table. */
  apply(): void {
    for (const [key, e] of this.changes) {
      if (e) this.table.entries.set(key, e);
      else this.table.entries.delete(key);
    }
    this.table.revision = this.revision;
  }
}
