// What both stores share: reads from the in-memory table (checked keys and
// prefixes), the store revision, and refusing use once closed. They differ
// only in how a commit becomes durable and what closing releases.
import { LxrError } from '../../proto/shared/errors.js';
import { checkKey, checkPrefix } from './ops.js';
import type { Store, StoredRecord, StoreOp } from './store.js';
import type { Table } from './table.js';

export abstract class TableStore implements Store {
  protected closed = false;

  constructor(
    protected readonly table: Table,
    /** Named in the error a closed store gives ("the store in DIR"). */
    private readonly what: string,
  ) {}

  get revision(): number {
    return this.table.revision;
  }

  protected usable(): void {
    if (this.closed) throw new LxrError('LXR_UNAVAILABLE', `${this.what} is closed`);
  }

  async get<T>(key: string): Promise<StoredRecord<T> | undefined> {
    this.usable();
    return this.table.get<T>(checkKey(key));
  }

  async list<T>(prefix: string): Promise<StoredRecord<T>[]> {
    this.usable();
    return this.table.list<T>(checkPrefix(prefix));
  }

  abstract commit(ops: StoreOp[]): Promise<number>;
  abstract close(): Promise<void>;
}
